# test_health.sh - proves what stele serve says about logs it cannot read,
# and its command line: with a good log and a corrupt one (stele.meta
# overwritten), serve starts, /healthz and /readyz answer 503 naming the
# corrupt log and the error, /metrics has stele_log_up 1 and 0 and the good
# log's samples only, /api/status says which log is down and why; repairing
# the log (the original stele.meta back) makes the next probe 200, since a
# log that failed is opened again at each request. SIGINT stops serve
# (exit 0). A DIR holding no log refuses to start (exit 4), a non-loopback
# address without --allow-remote is refused (exit 2), as are bad --listen
# values, no DIR and a DIR twice; the port in use is a failure naming the address (1).
source "$(dirname "$0")/lib.sh"
A=$T/good
B=$T/bad
run 0 "$STELE" init "$A"
run 0 "$STELE" init "$B"
run 0 "$STELE" append "$A" --type t --key a1 --data 1
run 0 "$STELE" append "$B" --type t --key b1 --data 1
cp "$B/stele.meta" "$T/meta.saved"
chmod u+w "$B/stele.meta"
head -c 4096 /dev/urandom >"$B/stele.meta"

serve_start "$A" "$B"
grep -q "opening log $B" "$T/serve.err" || fail "serve did not say that $B fails to open: $(cat "$T/serve.err")"
for p in /healthz /readyz; do
    http 503 "$p"
    grep -q "^opening log $B: " "$T/body" || fail "$p does not name $B: $(cat "$T/body")"
    grep -q "$A" "$T/body" && fail "$p names the good log: $(cat "$T/body")"
done
http 200 /metrics
prom_validate "$T/body"
check_eq "$(metric "$T/body" "stele_log_up{log=\"$A\"}")" 1 "good log up"
check_eq "$(metric "$T/body" "stele_log_up{log=\"$B\"}")" 0 "bad log down"
check_eq "$(metric "$T/body" "stele_log_fenced{log=\"$B\"}")" 0 "bad log down, not fenced"
check_eq "$(metric "$T/body" "stele_records_total{log=\"$A\"}")" 1 "good log's records"
grep -q "stele_records_total{log=\"$B\"}" "$T/body" && fail "samples for the log that is down"
http 200 /api/status
cp "$T/body" "$T/status.json"
check_jq "$T/status.json" '.[0] | (.healthy | not) and .logs[0].up and (.logs[1].up | not)
    and (.logs[1].error | startswith("opening log")) and .logs[0].stats.last_lsn == 1
    and .logs[0].state == "healthy" and .logs[1].state == "unreadable"' "status of a good and a bad log"

# Repaired: the next probe opens it.
cp "$T/meta.saved" "$B/stele.meta"
http 200 /healthz
check_eq "$(cat "$T/body")" "ok" "/healthz after the repair"
http 200 /metrics
check_eq "$(metric "$T/body" "stele_records_total{log=\"$B\"}")" 1 "repaired log's records"
serve_stop INT

# The command line.
# (Under timeout(1): a serve that wrongly started would exit 124, not hang.)
run 4 timeout 20 "$STELE" serve "$A" "$T/nosuch" --listen 127.0.0.1:0
grep -q "opening log $T/nosuch" "$T/err" || fail "no such log: $(cat "$T/err")"
run 2 timeout 20 "$STELE" serve "$A" --listen 0.0.0.0:0
grep -q "not a loopback address; give --allow-remote" "$T/err" || fail "non-loopback: $(cat "$T/err")"
run 2 timeout 20 "$STELE" serve "$A" --listen "[::]:0"
for bad in localhost:9464 127.0.0.1 127.0.0.1:65536 :80 "[::1:80" 1.2.3.4.5:1; do
    run 2 timeout 20 "$STELE" serve "$A" --listen "$bad"
    grep -qF -- "--listen: '$bad' is not HOST:PORT" "$T/err" || fail "--listen $bad: $(cat "$T/err")"
done
run 2 timeout 20 "$STELE" serve
run 2 timeout 20 "$STELE" serve "$A" "$A"
grep -q "given twice" "$T/err" || fail "a DIR twice: $(cat "$T/err")"
run 2 timeout 20 "$STELE" serve "$A" --bogus
run 0 "$STELE" serve --help
grep -q '^ENDPOINTS' "$T/out" || fail "serve --help lacks ENDPOINTS"
# The port in use (by a serve we start): a failure naming the address.
serve_start "$A"
run 1 timeout 20 "$STELE" serve "$A" --listen "127.0.0.1:$PORT"
grep -q "listening on 127.0.0.1:$PORT: Address already in use" "$T/err" || fail "port in use: $(cat "$T/err")"
serve_stop TERM
echo "ok"
