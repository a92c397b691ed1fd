# test_follow.sh - stele deliver --follow beside a writer: events appended
# while it runs are delivered as they become durable; SIGTERM lets the
# requests in flight finish, commits the cursor and exits 0 with the
# summary; a second deliver of the endpoint meanwhile stops (its lock).
source "$(dirname "$0")/lib.sh"
run 0 "$STELE" init "$T/log"
append_events 5 2
receiver_start
"$STELE" deliver "$T/log" --endpoint e1 --url "$URL" --secret-file "$T/secret" --follow > "$T/f.out" 2> "$T/f.err" &
fpid=$!
# wait_received N: until the receiver has answered N requests (10 s at most).
wait_received() {
    local k
    for k in $(seq 1 200); do
        [ "$(wc -l < "$T/recv.log")" -ge "$1" ] && return
        sleep 0.05
    done
    fail "the receiver has $(wc -l < "$T/recv.log") requests after 10 s, expected $1"
}
wait_received 5
run 1 deliver
grep -q 'consumer webhook.e1' "$T/err" || fail "a second deliver names the lock: $(cat "$T/err")"
append_events 20 4
wait_received 25
kill -TERM "$fpid"
rc=0
wait "$fpid" || rc=$?
check_eq "$rc" 0 "deliver --follow exits 0 on SIGTERM"
check_jq "$T/f.out" '.[0].delivered == 25 and .[0].cursor == 25' "the summary after SIGTERM"
check_jq "$T/recv.log" '[.[].lsn] | sort == [range(1; 26)]' "each event once"
check_stream_order
run 0 "$STELE" deliver "$T/log" --endpoint e1 --status
check_jq "$T/out" '.[0].cursor == 25' "the cursor was committed"
echo "ok"
