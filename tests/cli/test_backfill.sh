# test_backfill.sh - proves `stele backfill` (PRODUCT.md, SPEC.md §17.1): each
# line becomes a backfilled record keeping its event_time; a second run is all
# duplicates and appends nothing; a run killed with SIGKILL mid-way completes
# on the next run with every key exactly once; a file with invalid lines is
# reported line by line and appends nothing (exit 2); --derive-keys gives the
# same key to the same line in every run and log; --dry-run classifies
# without writing; a key holding a different event is a conflict (exit 3),
# and the other lines are appended.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L"

last_lsn() {
    "$STELE" stats "$1" | jq .last_lsn
}

cat >"$T/in.jsonl" <<'JSONL'
{"key":"ord-1","type":"order.placed","stream":"order-1","event_time":"2019-03-01T10:00:00Z","actor":"legacy","data":{"total":120}}
{"key":"ord-2","type":"order.placed","stream":"order-2","event_time":"2019-03-02T11:30:00.5Z","data":{"total":80}}
{"key":"ord-1-paid","type":"order.paid","stream":"order-1","event_time":1551437000000000000,"data_text":"cash"}
JSONL

# --- first run: all new, flagged, event_time kept
run 0 "$STELE" backfill "$L" "$T/in.jsonl"
check_stderr_empty "first run (not a terminal: no progress)"
check_eq "$(cat "$T/out")" '{"new":3,"duplicate":0,"conflict":0,"invalid":0,"lines":3,"first_lsn":1,"last_lsn":3,"dry_run":false}' "first run summary"
run 0 "$STELE" read "$L"
check_jq "$T/out" 'length == 3 and all(.[]; .backfilled == true and .kind == "event")
    and .[0].event_time == "2019-03-01T10:00:00.000000000Z" and .[1].event_time == "2019-03-02T11:30:00.500000000Z"
    and .[2].event_time == "2019-03-01T10:43:20.000000000Z" and .[0].actor == "legacy"
    and .[2].stream_version == 2 and .[2].data_text == "cash"' "backfilled records"
check_jq "$T/out" 'all(.[]; .recorded_at > .event_time)' "recorded_at is now, event_time the original"

# --- second run: all duplicates, nothing appended
run 0 "$STELE" backfill "$L" "$T/in.jsonl"
check_eq "$(cat "$T/out")" '{"new":0,"duplicate":3,"conflict":0,"invalid":0,"lines":3,"first_lsn":null,"last_lsn":null,"dry_run":false}' "second run summary"
check_eq "$(last_lsn "$L")" 3 "the second run appended nothing"

# --- invalid lines: every one reported with its line number, nothing appended
cat >"$T/bad.jsonl" <<'JSONL'
{"key":"new-1","type":"t","event_time":"2020-01-01T00:00:00Z","data":1}
{"type":"t","event_time":"2020-01-01T00:00:00Z","data":2}
not json
{"key":"new-3","type":"t","data":3}
{"key":"new-4","kind":"intent","type":"t","event_time":"2020-01-01T00:00:00Z"}
{"key":"new-5","type":"t","event_time":"2020-01-01T00:00:00Z","ref":1}
{"key":"new-6","type":"t","event_time":"2020-01-01T00:00:00Z","colour":"red"}
JSONL
run 2 "$STELE" backfill "$L" "$T/bad.jsonl"
check_eq "$(jq -c '[.new, .invalid, .lines]' "$T/out")" '[0,6,7]' "invalid summary"
for n in 2 3 4 5 6 7; do
    grep -q "bad.jsonl line $n: " "$T/err" || fail "line $n is reported: $(cat "$T/err")"
done
grep -q 'line 1: ' "$T/err" && fail "a valid line is reported as invalid: $(cat "$T/err")"
grep -q 'line 2: no "key"' "$T/err" || fail "the missing key is the reason: $(cat "$T/err")"
grep -q 'line 4: "event_time" is required' "$T/err" || fail "the missing event_time is the reason: $(cat "$T/err")"
grep -q 'nothing appended' "$T/err" || fail "says that nothing was appended: $(cat "$T/err")"
check_eq "$(last_lsn "$L")" 3 "a file with invalid lines appends nothing, not even its valid lines"
run 2 "$STELE" backfill "$L" "$T/bad.jsonl" --dry-run
check_eq "$(jq -c '[.new, .invalid, .dry_run]' "$T/out")" '[1,6,true]' "dry run of a file with invalid lines"

# --- conflict: same key, different content; counted, exit 3, the rest appended
cat >"$T/conflict.jsonl" <<'JSONL'
{"key":"ord-2","type":"order.placed","stream":"order-2","event_time":"2019-03-02T11:30:00.5Z","data":{"total":81}}
{"key":"ord-3","type":"order.placed","stream":"order-3","event_time":"2019-03-03T09:00:00Z","data":{"total":5}}
{"key":"ord-1","type":"order.placed","stream":"order-1","event_time":"2019-03-01T10:00:00Z","data":{"total":120}}
JSONL
run 3 "$STELE" backfill "$L" "$T/conflict.jsonl" --dry-run
check_eq "$(jq -c '[.new, .duplicate, .conflict, .dry_run]' "$T/out")" '[1,1,1,true]' "dry run sees the conflict"
check_eq "$(last_lsn "$L")" 3 "dry run wrote nothing"
run 3 "$STELE" backfill "$L" "$T/conflict.jsonl"
check_eq "$(jq -c '[.new, .duplicate, .conflict, .first_lsn]' "$T/out")" '[1,1,1,4]' "conflict summary"
grep -q 'line 1: conflict: key ord-2 is held by LSN 2' "$T/err" || fail "the conflict names line, key and LSN: $(cat "$T/err")"
check_eq "$(last_lsn "$L")" 4 "only the new line was appended"
run 3 "$STELE" backfill "$L" "$T/conflict.jsonl"
check_eq "$(jq -c '[.new, .duplicate, .conflict]' "$T/out")" '[0,2,1]' "conflict again on a re-run"

# --- --derive-keys: deterministic, independent of whitespace, and of the log
printf '%s\n' '{"type":"sensor.read","stream":"s-1","event_time":"2021-05-05T05:05:05Z","data":{"c":21.5}}' \
    '{"type":"sensor.read","stream":"s-1","event_time":"2021-05-05T05:05:06Z","data":{"c":21.5}}' >"$T/nokeys.jsonl"
run 2 "$STELE" backfill "$L" "$T/nokeys.jsonl"
check_eq "$(jq .invalid "$T/out")" 2 "lines without keys need --derive-keys"
run 0 "$STELE" backfill "$L" "$T/nokeys.jsonl" --derive-keys
check_eq "$(jq -c '[.new, .duplicate]' "$T/out")" '[2,0]' "derived keys: new"
run 0 "$STELE" read "$L" --from 5
jq -r .key "$T/out" >"$T/keys1"
grep -Eq '^bf-[0-9a-f]{32}$' "$T/keys1" || fail "derived key shape: $(cat "$T/keys1")"
check_eq "$(sort -u "$T/keys1" | wc -l)" 2 "different lines get different keys"
# The same lines with other whitespace, into a fresh log: the same keys.
printf '%s\n' '{ "type": "sensor.read", "stream": "s-1", "event_time": "2021-05-05T05:05:05Z", "data": { "c": 21.5 } }' \
    '{"type":"sensor.read","stream":"s-1","event_time":"2021-05-05T05:05:06Z","data":{"c":21.5}}' >"$T/nokeys2.jsonl"
run 0 "$STELE" init "$T/log2"
run 0 "$STELE" backfill "$T/log2" "$T/nokeys2.jsonl" --derive-keys
run 0 "$STELE" read "$T/log2"
jq -r .key "$T/out" >"$T/keys2"
check_eq "$(cat "$T/keys2")" "$(cat "$T/keys1")" "derived keys are the same in another log and run"
run 0 "$STELE" backfill "$L" "$T/nokeys2.jsonl" --derive-keys
check_eq "$(jq -c '[.new, .duplicate]' "$T/out")" '[0,2]' "derived keys: a re-run is all duplicates"

# --- --dry-run changes nothing (a fresh file: all would be new)
awk 'BEGIN { for (i = 1; i <= 50; i++) printf "{\"key\":\"dry-%d\",\"type\":\"t\",\"event_time\":%d,\"data\":%d}\n", i, 1000000000 + i, i }' >"$T/dry.jsonl"
before=$(last_lsn "$L")
cp -r "$L" "$T/snapshot"
run 0 "$STELE" backfill "$L" "$T/dry.jsonl" --dry-run
check_eq "$(cat "$T/out")" '{"new":50,"duplicate":0,"conflict":0,"invalid":0,"lines":50,"first_lsn":null,"last_lsn":null,"dry_run":true}' "dry run summary"
check_eq "$(last_lsn "$L")" "$before" "dry run appended nothing"
diff -r "$L" "$T/snapshot" >/dev/null || fail "dry run changed a file of the log"
# A file repeating a key in itself: the dry run counts the repeat as the engine will.
printf '%s\n' '{"key":"rep","type":"t","event_time":5,"data":1}' '{"key":"rep","type":"t","event_time":5,"data":1}' \
    '{"key":"rep","type":"t","event_time":5,"data":2}' >"$T/rep.jsonl"
run 3 "$STELE" backfill "$L" "$T/rep.jsonl" --dry-run
check_eq "$(jq -c '[.new, .duplicate, .conflict]' "$T/out")" '[1,1,1]' "dry run: repeats within the file"
run 3 "$STELE" backfill "$L" "$T/rep.jsonl"
check_eq "$(jq -c '[.new, .duplicate, .conflict]' "$T/out")" '[1,1,1]' "the engine agrees with the dry run"

# --- killed with SIGKILL mid-run, then re-run: every key exactly once
N=200000
K=$T/killed
run 0 "$STELE" init "$K"
awk -v n=$N 'BEGIN { for (i = 1; i <= n; i++) printf "{\"key\":\"k-%d\",\"type\":\"bulk\",\"stream\":\"s-%d\",\"event_time\":%d,\"data\":{\"i\":%d}}\n", i, i % 97, 1000000000 + i, i }' >"$T/big.jsonl"
"$STELE" backfill "$K" "$T/big.jsonl" >"$T/killed.out" 2>"$T/killed.err" &
pid=$!
for _ in $(seq 1 2000); do
    [ "$(last_lsn "$K" 2>/dev/null || echo 0)" -gt 0 ] && break
    sleep 0.01
done
kill -9 $pid
wait $pid 2>/dev/null || true
got=$(last_lsn "$K")
[ "$got" -gt 0 ] && [ "$got" -lt $N ] || fail "the kill did not land mid-run (last LSN $got of $N)"
run 0 "$STELE" backfill "$K" "$T/big.jsonl"
check_jq "$T/out" ".[0] | .new + .duplicate == $N and .duplicate == $got and .conflict == 0 and .first_lsn == $got + 1 and .last_lsn == $N" "the re-run completes the killed one"
"$STELE" read "$K" | jq -r .key | sort | uniq -d >"$T/dups"
[ ! -s "$T/dups" ] || fail "keys appended twice: $(head "$T/dups")"
check_eq "$(last_lsn "$K")" $N "every line exactly once"
run 0 "$STELE" verify "$K"

# --- usage
run 2 "$STELE" backfill "$L"
check_stderr_line "no file"
run 4 "$STELE" backfill "$L" "$T/nosuch.jsonl"
check_stderr_line "missing file"
run 2 "$STELE" backfill "$L" /dev/stdin </dev/null
check_stderr_line "not a regular file"
run 0 "$STELE" backfill --help
grep -q '^EXIT STATUS' "$T/out" || fail "--help is a manual page"
echo "ok"
