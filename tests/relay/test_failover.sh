# test_failover.sh - stele relay --follow under a writer while the stream's
# leader is killed (SIGKILL) and later one node is paused (SIGSTOP) for 2 s:
# the relay retries, nothing is lost or duplicated, and the selected records
# (--type order.t1, on subjects with {stream}) are in the R3 stream exactly
# once, in order. Read back with js_tool (the JetStream API).
source "$(dirname "$0")/../cli/lib.sh"
JS=${2:?usage: $0 STELE JS_TOOL}
source "$(dirname "$0")/cluster.sh"
cluster_start
run 0 "$STELE" init "$T/log"
"$JS" create "$NATS_URLS" PAY 'pay.>' 3 1000 || fail "creating stream PAY"

# The writer appends about 1000 events a second until $T/stop exists.
writer() {
    local i=0
    date +%s.%N > "$T/writer.start"
    while [ ! -e "$T/stop" ]; do
        i=$((i + 1))
        echo "{\"type\":\"order.t$((i % 3))\",\"stream\":\"acct-$((i % 7))\",\"data\":{\"i\":$i}}"
        [ $((i % 20)) != 0 ] || sleep 0.02
    done | "$STELE" append "$T/log" --jsonl > /dev/null
}
writer &
wpid=$!
relay_bg() { exec "$STELE" relay "$T/log" --name pay --nats "$NATS_URLS" --stream PAY --subject 'pay.{stream}.{type}' \
    --type order.t1 --follow --ack-timeout 1000 --nats-timeout 1000 --backoff-base 20 --backoff-max 200; }
relay_bg > "$T/relay.out" 2> "$T/relay.err" &
rpid=$!

wait_cursor "$T/log" relay.pay 600 30
leader=$(node_of "$("$JS" leader "$NATS_URLS" PAY)")
echo "killing the leader, n$leader, at cursor $(cursor_of "$T/log" relay.pay), $(date +%T.%N)"
node_kill "$leader"
at=$(cursor_of "$T/log" relay.pay)
wait_cursor "$T/log" relay.pay $((at + 300)) 30
echo "moving again at cursor $(cursor_of "$T/log" relay.pay), $(date +%T.%N)"
node_start "$leader"
other=$(( leader % 3 + 1 ))
at=$(cursor_of "$T/log" relay.pay)
wait_cursor "$T/log" relay.pay $((at + 300)) 30
echo "pausing n$other at cursor $(cursor_of "$T/log" relay.pay)"
node_pause "$other"
sleep 2
node_resume "$other"
at=$(cursor_of "$T/log" relay.pay)
wait_cursor "$T/log" relay.pay $((at + 300)) 30
touch "$T/stop"
wait "$wpid"
N=$("$STELE" stats "$T/log" | jq .last_lsn)
echo "the writer stopped at LSN $N"
wait_cursor "$T/log" relay.pay $N 60
kill -TERM "$rpid"
wait "$rpid" || fail "relay exit status $? (stderr: $(tail -3 "$T/relay.err"))"
echo "relay: $(cat "$T/relay.out"); retries reported: $(grep -c retrying "$T/relay.err" || true)"
sed "s/^/  /" "$T/relay.err"
check_jq "$T/relay.out" '.[0].cursor == '$N 'the relay reached the end'

"$JS" dump "$NATS_URLS" PAY > "$T/dump"
seq 1 $N | awk '$1 % 3 == 1' > "$T/want"
check_exactly_once "$T/dump" "$T/want"
grep -q '^1 pay.acct-1.order.t1 1 ' "$T/dump" || fail "LSN 1 is not the first message, on pay.acct-1.order.t1: $(head -1 "$T/dump")"

# Failures that do not heal stop the relay (exit 1) and keep its cursor.
run 1 "$STELE" relay "$T/log" --name other --nats "$NATS_URLS" --stream NOPE --subject 'nope.{type}'
grep -q 'stream NOPE does not exist (--create-stream makes it)' "$T/err" || fail "stream missing: $(cat "$T/err")"
# 1048500 payload bytes fit the log (1 MiB) but not, with the headers, NATS's max_payload (1 MiB).
{ printf '{"type":"order.t1","data_text":"'; head -c 1048500 /dev/zero | tr '\0' 'x'; printf '"}\n'; } > "$T/big"
run 0 "$STELE" append "$T/log" --jsonl < "$T/big"
run 1 "$STELE" relay "$T/log" --name pay --nats "$NATS_URLS" --stream PAY --subject 'pay.{stream}.{type}' --type order.t1
grep -q "publishing LSN $((N + 1)) to pay._.order.t1: .*not retried; the cursor stays at $N" "$T/err" ||
    fail "message too large: $(cat "$T/err")"
check_eq "$(cursor_of "$T/log" relay.pay)" "$N" "the cursor after a message too large"
echo "ok: $(wc -l < "$T/want") records exactly once through a leader kill and a paused node; permanent failures stop"
