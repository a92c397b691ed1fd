# test_malformed.sh - proves that bad requests get 4xx or a closed
# connection, never a crash or a wedged server: client.py's loop sends
# garbage request lines, binary bytes, huge headers and URLs (beyond the
# 32 KiB request limit), bodies, bad lengths and chunks, truncated requests
# (the socket dropped mid-request), pipelined requests and 300 seeded
# mutations of a valid request (bytes flipped, truncated and dropped, random
# bytes), each on its own connection, checking
# GET /healthz answers 200 along the way; then slow clients holding half a
# request and more connections at once than the limit. Afterwards serve is
# still running, answers /metrics correctly and stops on SIGTERM (exit 0).
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L"
for i in 1 2 3; do run 0 "$STELE" append "$L" --type t --key "k$i" --data "$i"; done
serve_start "$L"
python3 "$HERE/client.py" malformed "$PORT" >"$T/summary" || fail "the malformed-request loop failed"
cat "$T/summary"
kill -0 "$SERVE_PID" 2>/dev/null || fail "stele serve died: $(cat "$T/serve.err")"
http 200 /metrics
prom_validate "$T/body"
check_eq "$(metric "$T/body" "stele_records_total{log=\"$L\"}")" 3 "records after the loop"
http 200 /healthz
serve_stop TERM
echo "ok"
