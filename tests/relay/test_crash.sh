# test_crash.sh - stele relay killed with SIGKILL at random moments while a
# writer appends, then run to the end: the R3 stream holds every LSN exactly
# once, in order (SPEC.md §21.3). Then an outage five times the duplicate
# window (1 s): the whole cluster paused (SIGSTOP) for 5 s under a running
# relay, the relay killed in the middle of it, and a new run afterwards:
# still exactly once. The stream is read back with js_tool (the JetStream
# API), not with stele. Kill moments come from $RANDOM, seeded and printed.
source "$(dirname "$0")/../cli/lib.sh"
JS=${2:?usage: $0 STELE JS_TOOL}
source "$(dirname "$0")/cluster.sh"
KILLS=${STELE_RELAY_KILLS:-20}
SEED=${STELE_TEST_SEED:-$$}
RANDOM=$SEED
echo "seed $SEED, $KILLS kills"
cluster_start
run 0 "$STELE" init "$T/log"

relay() {
    "$STELE" relay "$T/log" --name r1 --nats "$NATS_URLS" --stream ORD --subject 'orders.{type}' --window 128 \
        --ack-timeout 1000 --nats-timeout 1000 --backoff-base 20 --backoff-max 300 "$@"
}
# relay_bg ARGS... &: the same, as the background job itself (exec), so
# that $! is the relay's pid and SIGKILL reaches it.
relay_bg() { exec "$STELE" relay "$T/log" --name r1 --nats "$NATS_URLS" --stream ORD --subject 'orders.{type}' \
    --window 128 --ack-timeout 1000 --nats-timeout 1000 --backoff-base 20 --backoff-max 300 "$@"; }

# writer FIRST LAST: appends events FIRST..LAST at about 2000 a second.
writer() {
    local i
    for i in $(seq "$1" "$2"); do
        echo "{\"type\":\"order.t$((i % 3))\",\"key\":\"k$i\",\"data\":{\"i\":$i}}"
        [ $((i % 20)) != 0 ] || sleep 0.02
    done | "$STELE" append "$T/log" --jsonl > /dev/null
}

# The stream, R3 with a 1 s duplicate window, made by a relay of its own.
run 0 "$STELE" relay "$T/log" --name creator --nats "$NATS_URLS" --stream ORD --subject 'orders.{type}' \
    --create-stream --replicas 3 --dupe-window 1s
$JS leader "$NATS_URLS" ORD > /dev/null || fail "no leader for ORD"

N=6000
writer 1 $N &  # (a function in the background: killing $! would not stop stele)
wpid=$!
mid=0
for k in $(seq 1 "$KILLS"); do
    relay_bg --follow > "$T/run.$k" 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ "$(cursor_of "$T/log" relay.r1)" -ge $N ] || mid=$((mid + 1))
done
wait "$wpid"
echo "$mid kills before the end; cursor after the kills: $(cursor_of "$T/log" relay.r1) of $N"
run 0 relay
echo "final run: $(cat "$T/out")"
check_jq "$T/out" '.[0].cursor == '$N 'the final run reaches the end'
$JS dump "$NATS_URLS" ORD > "$T/dump"
seq 1 $N > "$T/want"
check_exactly_once "$T/dump" "$T/want"
grep -q '^[0-9]* orders.order.t1 1 ' "$T/dump" || fail "LSN 1 not on subject orders.order.t1"

# The outage: a relay following a writer, the cluster stopped for 5 s,
# the relay killed 2.5 s into it; after it a new run to the end.
M=4000
writer $((N + 1)) $((N + M)) &
wpid=$!
relay_bg --follow --window 256 > "$T/outage.out" 2> "$T/outage.err" &
pid=$!
wait_cursor "$T/log" relay.r1 $((N + 500)) 30
for i in 1 2 3; do node_pause "$i"; done
sleep 2.5
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
sleep 2.5
for i in 1 2 3; do node_resume "$i"; done
wait "$wpid"
run 0 relay
echo "final run: $(cat "$T/out")"
check_jq "$T/out" '.[0].cursor == '$((N + M)) 'the run after the outage reaches the end'
echo "retries during the outage: $(grep -c retrying "$T/outage.err" || true); after it: $(cat "$T/out")"; head -3 "$T/err"
$JS dump "$NATS_URLS" ORD > "$T/dump"
seq 1 $((N + M)) > "$T/want"
check_exactly_once "$T/dump" "$T/want"
echo "ok: $((N + M)) LSNs exactly once after $KILLS kills and a 5 s outage"
