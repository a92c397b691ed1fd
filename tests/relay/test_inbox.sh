# test_inbox.sh - stele inbox: a JetStream stream's messages into the local
# log, each exactly once, although the inbox is killed (SIGKILL) again and
# again, often between an append and its ack (redelivered after --ack-wait,
# then a duplicate by its key). Then a conflict: a message whose Nats-Msg-Id
# comes back with another payload (after the stream's 1 s duplicate window)
# is terminated, kept as a dead letter, and the run exits 3. Finally a relay
# into the stream and an inbox of another log back: the round trip keeps
# type, stream and payload.
source "$(dirname "$0")/../cli/lib.sh"
JS=${2:?usage: $0 STELE JS_TOOL}
source "$(dirname "$0")/cluster.sh"
KILLS=${STELE_INBOX_KILLS:-12}
SEED=${STELE_TEST_SEED:-$$}
RANDOM=$SEED
echo "seed $SEED, $KILLS kills"
cluster_start
run 0 "$STELE" init "$T/log"
"$JS" create "$NATS_URLS" IN 'in.>' 3 1000 || fail "creating stream IN"
N=3000
"$JS" pub "$NATS_URLS" in.orders $N m || fail "publishing"

inbox_bg() { exec "$STELE" inbox "$T/log" --nats "$NATS_URLS" --stream IN --durable d1 --batch 4 --ack-wait 500 \
    --follow; }
mid=0
for k in $(seq 1 "$KILLS"); do
    inbox_bg > "$T/run.$k" 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ "$("$STELE" stats "$T/log" | jq .last_lsn)" -ge $N ] || mid=$((mid + 1))
done
echo "$mid kills before the end; records after the kills: $("$STELE" stats "$T/log" | jq .last_lsn) of $N"
# The last run waits past the ack wait for what the kills left unacknowledged.
run 0 "$STELE" inbox "$T/log" --nats "$NATS_URLS" --stream IN --durable d1 --batch 50 --wait 1500
echo "final run: $(cat "$T/out")"
run 0 "$STELE" read "$T/log"
check_jq "$T/out" 'length == '$N' and ([.[].key] | unique | length) == '$N 'every message once in the log'
check_jq "$T/out" '([.[].data.i] | sort) == [range(1; '$((N + 1))')]' 'every payload once'
check_jq "$T/out" 'all(.[]; .type == "in.orders" and (.key | startswith("m-")))' 'type from the subject, key from Nats-Msg-Id'

# After the stream's duplicate window (1 s) the stream takes m-1..m-7 again,
# the same payloads: the inbox finds them duplicates of what the log holds.
sleep 1.1
"$JS" pub "$NATS_URLS" in.orders 7 m || fail "publishing"
run 0 "$STELE" inbox "$T/log" --nats "$NATS_URLS" --stream IN --durable d1 --wait 500
check_jq "$T/out" '.[0].new == 0 and .[0].duplicate == 7' 'messages repeated after the duplicate window add nothing'
# m-1 once more with another payload: a conflict, terminated, a dead letter, exit 3.
sleep 1.1
JS_TOOL_SALT=x "$JS" pub "$NATS_URLS" in.orders 1 m || fail "publishing"
run 3 "$STELE" inbox "$T/log" --nats "$NATS_URLS" --stream IN --durable d1 --wait 500
check_jq "$T/out" '.[0].conflict == 1 and .[0].new == 0' 'a conflict is counted'
grep -q 'has key m-1, which holds a different record' "$T/err" || fail "the conflict is not reported: $(cat "$T/err")"
# m-1's LSN is where the kills and redeliveries let it land, not always 1.
run 0 "$STELE" get "$T/log" --key m-1
m1=$(jq .lsn "$T/out")
run 0 "$STELE" replay "$T/log" --consumer inbox.d1 --dead-letters
check_jq "$T/out" 'length == 1 and .[0].key == "m-1" and .[0].lsn == '"$m1"' and (.[0].reason | test("^conflict"))' \
    'the conflict is a dead letter of inbox.d1, naming the record that holds m-1'
run 0 "$STELE" inbox "$T/log" --nats "$NATS_URLS" --stream IN --durable d1 --wait 500
check_jq "$T/out" '.[0].conflict == 0' 'a terminated message does not come again'
# A message without the key field --key-field names is refused (terminated).
"$JS" pub "$NATS_URLS" in.other 1 x || fail "publishing"
run 0 "$STELE" inbox "$T/log" --nats "$NATS_URLS" --stream IN --durable d1 --key-field nope --wait 500
check_jq "$T/out" '.[0].invalid == 1' 'a message without its key field is refused'

# The round trip: relay the log into a stream, inbox it into a second log.
run 0 "$STELE" init "$T/log2"
run 0 "$STELE" append "$T/log" --type pay.captured --stream acct-9 --data '{"amount":5}'
run 0 "$STELE" relay "$T/log" --name back --nats "$NATS_URLS" --stream BACK --subject 'back.{type}' \
    --create-stream --replicas 3 --from $((N + 1))
run 0 "$STELE" inbox "$T/log2" --nats "$NATS_URLS" --stream BACK --durable copy --wait 500
check_jq "$T/out" '.[0].new == 1' 'one record came back'
run 0 "$STELE" read "$T/log2"
check_jq "$T/out" '.[0].type == "pay.captured" and .[0].stream == "acct-9" and .[0].data == {"amount":5}' \
    'type, stream and payload kept'
echo "ok: $N messages exactly once after $KILLS kills; conflict, invalid and round trip"
