# test_retry.sh - the retry classes of stele deliver (SPEC.md §22.3) against
# a real HTTP receiver with scripted answers: 503s, 425 and 504 retried with the same
# webhook-id and body; Retry-After in seconds and as an HTTP date honoured,
# and capped at --backoff-max; a stall past --timeout retried; 400 and 302
# dead letters at once (with the response body); the last failed attempt a
# dead letter; connection refused retried then a dead letter; 410 Gone
# disables the endpoint until --enable. Waits are checked as lower bounds
# only (a loaded machine can only make them longer).
source "$(dirname "$0")/lib.sh"
run 0 "$STELE" init "$T/log"
append_events 10 0
receiver_start '{"by_lsn": {
    "2": [503, 503],
    "3": [{"status": 429, "retry_after": "1"}],
    "4": [{"status": 503, "retry_after_in_s": 2}],
    "5": [{"status": 400, "body": "bad payload: no customer"}],
    "6": [302],
    "7": [503, 503, 503],
    "8": [{"status": 200, "hold_ms": 1500}],
    "9": [{"status": 429, "retry_after": "3600"}],
    "10": [425, 504]}}'
run 0 deliver --breaker 0 --max-attempts 3 --backoff-base 10 --backoff-max 1500 --timeout 400
check_jq "$T/out" '.[0] | .delivered == 7 and .dead_letters == 3 and .cursor == 10 and .by_class.transport == 1
    and .by_class.dead_status == 2 and .by_class.retryable_status == 10' "the run's summary"
check_signed
check_jq "$T/recv.log" '[.[] | select(.lsn == 2) | .attempt] == [1, 2, 3]' "503, 503, then 200"
check_jq "$T/recv.log" '[group_by(.id)[] | map(.sha) | unique | length == 1] | all' "retries carry the same body"
gap() { jq -s "[.[] | select(.lsn == $1) | .t] | .[1] - .[0]" "$T/recv.log"; }
check_jq "$T/recv.log" "[.[] | select(.lsn == 3)] | length == 2" "the 429 is retried"
python3 -c "import sys; sys.exit(not $(gap 3) >= 0.95)" || fail "Retry-After: 1 waited only $(gap 3) s"
python3 -c "import sys; sys.exit(not $(gap 4) >= 0.9)" || fail "Retry-After as a date waited only $(gap 4) s"
python3 -c "import sys; sys.exit(not (1.4 <= $(gap 9) < 30))" || fail "Retry-After: 3600 capped at 1.5 s waited $(gap 9) s"
check_jq "$T/recv.log" '[.[] | select(.lsn == 8)] | length == 2' "the stalled request is retried"
check_jq "$T/recv.log" '[.[] | select(.lsn == 5 or .lsn == 6)] | length == 2' "400 and 302 are not retried"
check_jq "$T/recv.log" '[.[] | select(.lsn == 7)] | length == 3' "--max-attempts 3"
check_jq "$T/recv.log" '[.[] | select(.lsn == 10) | .status] == [425, 504, 200]' "425 and 504 are retried"
grep -q 'LSN 8: attempt 1 of 3 failed (Timeout' "$T/err" || fail "the timeout is reported: $(cat "$T/err")"
grep -q 'LSN 3: attempt 1 of 3 failed (HTTP 429); retrying in 1000 ms (Retry-After)' "$T/err" ||
    fail "the Retry-After wait is reported: $(cat "$T/err")"
run 0 "$STELE" replay "$T/log" --consumer webhook.e1 --dead-letters
check_jq "$T/out" 'map({lsn, reason, attempts, last_stderr}) == [
    {"lsn": 5, "reason": "HTTP 400", "attempts": 1, "last_stderr": "bad payload: no customer"},
    {"lsn": 6, "reason": "HTTP 302", "attempts": 1, "last_stderr": "ok"},
    {"lsn": 7, "reason": "HTTP 503", "attempts": 3, "last_stderr": "ok"}]' "the dead letters"
run 0 "$STELE" deliver "$T/log" --endpoint e1 --status
check_jq "$T/out" '.[0].dead_letters == 3 and .[0].backlog == 0' "--status counts the dead letters"
receiver_stop

# Connection refused: a port nobody listens on.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run 0 "$STELE" deliver "$T/log" --endpoint e2 --url "http://127.0.0.1:$PORT/" --secret-file "$T/secret" \
    --breaker 0 --max-attempts 2 --backoff-base 1 --backoff-max 5 --type t.a
check_jq "$T/out" '.[0] | .delivered == 0 and .dead_letters == 5 and .by_class.transport == 10 and .cursor == 10' \
    "refused connections are retried, then dead letters"
run 0 "$STELE" replay "$T/log" --consumer webhook.e2 --dead-letters
check_jq "$T/out" 'length == 5 and all(.[]; .attempts == 2 and (.reason | test("connect"; "i")))' \
    "the dead letters say the connection failed"

# 410 Gone disables the endpoint: the run stops, the next refuses, --enable goes on.
receiver_start '{"by_lsn": {"4": [410]}}'
run 1 deliver --endpoint e3 --concurrency 1 --window 1
grep -q 'LSN 4 answered 410 Gone' "$T/err" || fail "the 410 is reported: $(cat "$T/err")"
check_jq "$T/out" '.[0] | .delivered == 3 and .by_class.gone == 1 and .cursor == 4' "the run stops at the 410"
check_jq "$T/recv.log" '[.[].lsn] == [1, 2, 3, 4]' "nothing is sent after the 410"
run 1 deliver --endpoint e3
grep -q 'endpoint e3 is disabled: LSN 4 was answered 410' "$T/err" || fail "a disabled endpoint: $(cat "$T/err")"
run 0 deliver --endpoint e3 --enable
check_jq "$T/out" '.[0] | .delivered == 6 and .cursor == 10' "--enable delivers the rest"
echo "ok"
