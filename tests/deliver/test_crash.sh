# test_crash.sh - stele deliver killed with SIGKILL at random moments while a
# writer appends (SPEC.md §22.4), then run to the end: every event was
# answered 200 at least once, every request of an event carried the same
# webhook-id and body, the receiver's dedup on webhook-id leaves each event
# exactly once, and the re-sends are at most the window per kill. Some events
# fail with 503 first, so retries are in flight when the kills come. Kill
# moments come from $RANDOM, seeded and printed.
source "$(dirname "$0")/lib.sh"
KILLS=${STELE_DELIVER_KILLS:-50}
SEED=${STELE_TEST_SEED:-$$}
RANDOM=$SEED
WINDOW=32
N=3000
echo "seed $SEED, $KILLS kills"
run 0 "$STELE" init "$T/log"
LOG_ID=$("$STELE" stats "$T/log" | jq -r .log_id)
receiver_start "$(python3 -c 'import json; print(json.dumps({"by_lsn": {str(l): [503] for l in range(13, 3001, 13)}}))')"

# writer: N events in 6 streams (every 5th without one), about 3000 a second.
python3 -c '
import json, sys, time
for i in range(1, int(sys.argv[1]) + 1):
    e = {"type": "t", "key": "c%d" % i, "data": {"i": i}}
    if i % 5:
        e["stream"] = "s%d" % (i % 6)
    print(json.dumps(e), flush=True)
    if i % 30 == 0:
        time.sleep(0.01)
' $N | "$STELE" append "$T/log" --jsonl > /dev/null &
wpid=$!
deliver_bg() { exec "$STELE" deliver "$T/log" --endpoint e1 --url "$URL" --secret-file "$T/secret" \
    --concurrency 8 --window $WINDOW --backoff-base 5 --backoff-max 20 "$@"; }
for k in $(seq 1 "$KILLS"); do
    deliver_bg --follow > "$T/run.$k" 2>&1 &
    pid=$!
    sleep "0.0$((RANDOM % 10))"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
wait "$wpid"
mid=$(jq -s '[.[] | select(.status == 200)] | length' "$T/recv.log")
echo "answered 200 before the final run: $mid"
run 0 deliver --concurrency 8 --window $WINDOW --backoff-base 5 --backoff-max 20
check_jq "$T/out" '.[0].cursor == '$N 'the final run reaches the end'
check_signed
check_jq "$T/recv.log" '[.[] | select(.status == 200) | .lsn] | unique == [range(1; '$((N + 1))')]' \
    "every event answered 200 at least once"
check_jq "$T/recv.log" 'all(.[]; .id == "evt_'"$LOG_ID"'_\(.lsn)")' "the same webhook-id on every attempt"
check_jq "$T/recv.log" '[group_by(.id)[] | map(.sha) | unique | length == 1] | all' "the same body on every attempt"
dups=$(jq -s '([.[] | select(.status == 200)] | length) - '$N "$T/recv.log")
echo "duplicates (200s beyond one per event): $dups, bound $KILLS x $WINDOW"
[ "$dups" -le $((KILLS * WINDOW)) ] || fail "$dups re-sends is more than $KILLS kills x window $WINDOW"
echo "ok"
