# test_basic.sh - stele deliver to a real HTTP receiver on loopback: every
# event arrives once, signed (checked by the receiver with Python's hmac,
# itself checked against the Standard Webhooks specification's example),
# with webhook-id evt_<log id>_<LSN>; the cursor reaches the end and a second
# run sends nothing; per-stream order holds at concurrency 8 while some
# events fail with 503 and are retried; the filters, --dry-run, --status and
# the usage errors.
source "$(dirname "$0")/lib.sh"
# The receiver's check signs the specification's example as the specification does.
python3 "$HERE/receiver.py" --self-test || fail "the receiver's signature check fails the specification's example"
run 0 "$STELE" init "$T/log"
append_events 200 8
LOG_ID=$("$STELE" stats "$T/log" | jq -r .log_id)
# Every 7th event fails twice with 503 before it is taken; LSN 1 (stream s1)
# is answered after 300 ms, while other streams go on.
plan=$(python3 -c 'import json; p = {str(l): [503, 503] for l in range(7, 201, 7)}; p["1"] = [{"status": 200, "hold_ms": 300}]; print(json.dumps({"by_lsn": p}))')
receiver_start "$plan"

run 0 deliver --dry-run
check_jq "$T/out" 'length == 200 and .[0].webhook_id == "evt_'"$LOG_ID"'_1"' "--dry-run lists every event"
check_eq "$(wc -l < "$T/recv.log")" 0 "--dry-run sends nothing"

run 0 deliver --concurrency 8 --backoff-base 5 --backoff-max 20
# 56 failed answers; on a slow machine (ASan) the breaker may open and a failed
# request is then a probe, not a retry (probes do not use up attempts).
check_jq "$T/out" '.[0].delivered == 200 and .[0].cursor == 200 and .[0].requests == 256 and .[0].dead_letters == 0
    and .[0].by_class["2xx"] == 200 and .[0].by_class.retryable_status == 56
    and .[0].retries <= 56 and .[0].retries + .[0].probes >= 56
    and (.[0].breaker_opens > 0 or .[0].retries == 56)' "the run's summary"
check_signed
check_jq "$T/recv.log" '[.[] | select(.status == 200) | .lsn] | sort == [range(1; 201)]' "each event taken once"
check_jq "$T/recv.log" 'all(.[]; .id == "evt_'"$LOG_ID"'_\(.lsn)")' "webhook-id is the log id and the LSN"
check_jq "$T/recv.log" '[group_by(.id)[] | map(.sha) | unique | length == 1] | all' "retries carry the same body"
check_jq "$T/recv.log" '[.[].active] | max > 1' "requests ran in parallel"
check_jq "$T/recv.log" '(map(.lsn) | index(1)) > 20 and ([.[] | select(.stream == "s1") | .lsn][0] == 1)' \
    "other streams went on while LSN 1 was held; s1 waited for it"
check_stream_order

run 0 "$STELE" deliver "$T/log" --endpoint e1 --status
check_jq "$T/out" '.[0] == {"endpoint":"e1","cursor":200,"last_lsn":200,"backlog":0,
    "oldest_undelivered_age_s":null,"dead_letters":0}' "--status at the end"
run 0 deliver
check_jq "$T/out" '.[0].requests == 0 and .[0].cursor == 200' "a second run sends nothing"

# Filters: a new endpoint, --type and --stream; the cursor still passes the rest.
append_events 10 0
: > "$T/recv.log"
run 0 "$STELE" deliver "$T/log" --endpoint e2 --url "$URL" --secret-file "$T/secret" --stream s3 --type t.a
check_jq "$T/recv.log" 'all(.[]; .stream == "s3") and ([.[].lsn] | . == (sort)) and length == 25' \
    "--stream and --type select the events"
run 0 "$STELE" deliver "$T/log" --endpoint e3 --url "$URL" --secret-file "$T/secret" --type t.a
check_jq "$T/out" '.[0].delivered == 105 and .[0].cursor == 210' "--type; the cursor reaches the end"

# --header and --rate: 25 events at 200/s start at least 24/200 s apart
# from first to last (answers: less the first one's latency, a few ms).
: > "$T/recv.log"
run 0 "$STELE" deliver "$T/log" --endpoint e4 --url "$URL" --secret-file "$T/secret" --type t.a --stream s5 \
    --header 'X-Test: abc' --rate 200
check_jq "$T/recv.log" 'length == 25 and all(.[]; .x_test == "abc" and .content_type == "application/json")' \
    "--header is sent with the Standard Webhooks headers"
check_jq "$T/recv.log" '(sort_by(.t) | .[-1].t - .[0].t) > 20 / 200' "--rate paces the requests"
# Usage and setup errors.
run 2 "$STELE" deliver "$T/log" --endpoint e1 --url "$URL"
run 2 "$STELE" deliver "$T/log" --endpoint 'bad/name' --url "$URL" --secret-file "$T/secret"
run 2 "$STELE" deliver "$T/log" --endpoint e1 --url "ftp://x" --secret-file "$T/secret"
echo "not a secret" > "$T/bad"
run 2 "$STELE" deliver "$T/log" --endpoint e1 --url "$URL" --secret-file "$T/bad"
grep -q 'whsec_' "$T/err" || fail "the bad secret's message names the format: $(cat "$T/err")"
run 1 "$STELE" deliver "$T/log" --endpoint e1 --url "$URL" --secret-file "$T/nonexistent"
run 4 "$STELE" deliver "$T/nolog" --endpoint e1 --url "$URL" --secret-file "$T/secret"
echo "ok"
