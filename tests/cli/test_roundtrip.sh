# test_roundtrip.sh - proves that init, append, get and read round-trip every
# field of an event: what `stele append` was given is what `get` and `read`
# print, times in RFC 3339 UTC with nanoseconds (offsets converted), absent
# fields as null, and that a repeated append with the same key is a
# `duplicate` of the original LSN while the log stays unchanged.
source "$(dirname "$0")/lib.sh"
L=$T/log

run 0 "$STELE" init "$L"
check_stderr_empty "init"
check_jq "$T/out" '.[0].created != null and .[0].durability == "sync" and .[0].idem_window == "24h"' "init prints what it created"

run 0 "$STELE" append "$L" --type payment.captured --key pay-1 --stream payment-42 --actor alice \
    --event-time 2026-11-28T18:19:23.123456789+01:00 --data '{"amount": 12.5, "currency": "EUR", "tags": ["a", "b"]}'
check_stderr_empty "append"
check_eq "$(cat "$T/out")" '{"lsn":1,"decision":"new","stream_version":1}' "first append's receipt"

# The same request again: a duplicate of LSN 1, nothing appended.
run 0 "$STELE" append "$L" --type payment.captured --key pay-1 --stream payment-42 --actor alice \
    --event-time 2026-11-28T18:19:23.123456789+01:00 --data '{"amount":12.5,"currency":"EUR","tags":["a","b"]}'
check_eq "$(cat "$T/out")" '{"lsn":1,"decision":"duplicate","stream_version":1}' "repeated append's receipt"

run 0 "$STELE" append "$L" --stream payment-42 --data 'a plain note'
check_eq "$(cat "$T/out")" '{"lsn":2,"decision":"new","stream_version":2}' "second record"

run 0 "$STELE" append "$L"
check_eq "$(cat "$T/out")" '{"lsn":3,"decision":"new","stream_version":0}' "an empty event"

run 0 "$STELE" get "$L" --lsn 1
check_stderr_empty "get"
cp "$T/out" "$T/get1"
check_jq "$T/get1" 'length == 1 and (.[0] | keys_unsorted) == ["lsn","recorded_at","event_time","kind","outcome","type","stream","stream_version","key","fingerprint","ref","actor","backfilled","data"]' "get prints every field in the documented order"
check_jq "$T/get1" '.[0] | .lsn == 1 and .kind == "event" and .outcome == null and .type == "payment.captured"
    and .stream == "payment-42" and .stream_version == 1 and .key == "pay-1" and .actor == "alice"
    and .ref == null and .backfilled == false and .data == {"amount":12.5,"currency":"EUR","tags":["a","b"]}' "get returns what was appended"
check_jq "$T/get1" '.[0].event_time == "2026-11-28T17:19:23.123456789Z"' "event time converted to UTC with nanoseconds"
check_jq "$T/get1" '.[0].recorded_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}Z$")' "recorded_at is RFC 3339 UTC with nanoseconds"
check_jq "$T/get1" '.[0].fingerprint | test("^[0-9a-f]{16}$")' "fingerprint is 16 hex digits"

run 0 "$STELE" read "$L"
check_stderr_empty "read"
cp "$T/out" "$T/all"
check_jq "$T/all" 'map(.lsn) == [1,2,3]' "read prints every record in LSN order"
check_eq "$(head -n1 "$T/all")" "$(cat "$T/get1")" "read and get print the same object"
check_jq "$T/all" '.[1] | .data_text == "a plain note" and .type == null and .key == null and .actor == null and .event_time == .recorded_at' "defaults: no type, key or actor; event time = recorded time"
check_jq "$T/all" '.[2] | .data_b64 == "" and .stream == null and .stream_version == null' "an empty event is an empty binary payload"

# --human renders for people: not JSON, but carries the same facts.
run 0 "$STELE" --human get "$L" --lsn 1
grep -q '^#1 .*type=payment.captured.*stream=payment-42@1.*key=pay-1' "$T/out" || fail "--human header: $(cat "$T/out")"
run 0 "$STELE" read "$L" --human
check_eq "$(grep -c '^#' "$T/out")" 3 "--human read prints one header per record"

# Feeding read's output back into an empty log reproduces the records.
run 0 "$STELE" init "$T/copy"
run 0 "$STELE" append "$T/copy" --jsonl <"$T/all"
run 0 "$STELE" read "$T/copy"
check_eq "$(jq -c 'del(.recorded_at)' "$T/out")" "$(jq -c 'del(.recorded_at)' "$T/all")" \
    "read output fed to append --jsonl reproduces every record but its recorded time"

# stats: one object with every stele_stats field.
run 0 "$STELE" stats "$L"
check_jq "$T/out" '.[0] | .last_lsn == 3 and .first_lsn == 1 and (.log_id | test("^[0-9a-f]{32}$"))
    and (.created_at | endswith("Z")) and .read_only == true and .fenced == false and .compression == "none"
    and .durability == "sync" and .idem_window_ns == 86400000000000 and has("recovery_torn_bytes")
    and has("appends_new") and has("durable_lsn") and has("sealed_segment_count")' "stats fields"

# --help is not an error.
run 0 "$STELE" append --help
grep -q 'stele append DIR' "$T/out" || fail "append --help prints the synopsis"
echo "ok"
