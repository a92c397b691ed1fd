# test_metrics.sh - proves stele serve's /metrics, /healthz, /readyz and
# /api/status against a live log: `stele append --jsonl` keeps appending
# (fed line by line through a FIFO) while serve runs; after each round of
# appends is acknowledged, /metrics reaches the acknowledged count (serve's
# read-only handle follows the writer). Once the writer stopped, every
# sample of /metrics equals `stele stats --prometheus` of the same log (the
# log="DIR" label taken off; the age of the oldest pending intent, which
# moves with the clock, within a second; the index checkpoint at open, which
# differs between a handle opened before the writer and one after),
# /api/status agrees with `stele stats` and its oldest pending intents with
# `stele pending`, and the answers to HEAD, unknown paths, other methods and
# bodies are 200 without body, 404, 405 and 413. SIGTERM stops serve (exit 0).
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L" --segment-size 64K

# serve first: it must not inherit the FIFO's write end (append would never see EOF).
serve_start "$L"
mkfifo "$T/feed"
"$STELE" append "$L" --jsonl <"$T/feed" >"$T/receipts" 2>"$T/append.err" &
APPEND_PID=$!
exec 3>"$T/feed"
trap 'exec 3>&- 2>/dev/null; kill $APPEND_PID 2>/dev/null || true; serve_kill; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
http 200 /healthz
check_eq "$(cat "$T/body")" "ok" "/healthz body"
http 200 /readyz

# wait_until SECONDS CMD...: polls CMD until it succeeds.
wait_until() {
    local end=$(( $(date +%s) + $1 ))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.05
    done
}
receipts_are() { [ "$(wc -l <"$T/receipts")" -ge "$1" ]; }
scraped_records() {
    http 200 /metrics 3>&-
    [ "$(metric "$T/body" "stele_records_total{log=\"$L\"}")" == "$1" ]
}

n=0
for round in 1 2 3; do
    for i in $(seq 1 40); do
        n=$((n + 1))
        # Every 10th line an intent, every 20th its outcome: pending intents move.
        if [ $((n % 10)) -eq 0 ]; then
            printf '{"kind":"intent","key":"pay-%d","type":"pay"}\n' "$n" >&3
        elif [ $((n % 20)) -eq 1 ] && [ "$n" -gt 20 ]; then
            printf '{"kind":"outcome","key":"pay-%d","type":"pay","outcome":"confirmed"}\n' "$((n - 11))" >&3
        else
            printf '{"key":"k-%d","type":"t","stream":"s%d","data":{"i":%d}}\n' "$n" "$((n % 3))" "$n" >&3
        fi
    done
    wait_until 30 receipts_are "$n" || fail "round $round: $n receipts not printed: $(cat "$T/append.err")"
    wait_until 30 scraped_records "$n" || fail "round $round: /metrics did not reach $n records: $(grep records_total "$T/body")"
done
jq -e 'select(.error)' "$T/receipts" >/dev/null && fail "an append failed: $(jq -c 'select(.error)' "$T/receipts")"
exec 3>&-
wait "$APPEND_PID" || fail "stele append exited $?: $(cat "$T/append.err")"

# The writer is gone: serve's figures and stele stats' must agree.
http 200 /metrics
cp "$T/body" "$T/serve.prom"
prom_validate "$T/serve.prom"
grep -q '^# TYPE stele_pending_intents gauge' "$T/serve.prom" || fail "no stele_pending_intents family"
check_eq "$(metric "$T/serve.prom" "stele_log_up{log=\"$L\"}")" 1 "stele_log_up"
check_eq "$(metric "$T/serve.prom" "stele_log_fenced{log=\"$L\"}")" 0 "stele_log_fenced"
run 0 "$STELE" stats "$L" --prometheus
cp "$T/out" "$T/stats.prom"
# Label taken off; left out: stele_log_up and _fenced (serve's own), the clock-bound
# age, and what the index checkpoint was when each handle opened (serve's
# opened before the writer wrote one at close; stats' after).
skip=(-e '^stele_pending_oldest_age_seconds' -e '^stele_index_checkpoint_lsn' -e '^stele_index_rebuilt')
sed -e "s|{log=\"$L\",|{|" -e "s|{log=\"$L\"}||" "$T/serve.prom" |
    grep -v "${skip[@]}" -e 'stele_log_up' -e 'stele_log_fenced' >"$T/serve.cmp"
grep -v "${skip[@]}" "$T/stats.prom" >"$T/stats.cmp"
[ "$(wc -l <"$T/stats.cmp")" -gt 60 ] || fail "too few samples compared: $(wc -l <"$T/stats.cmp")"
diff "$T/stats.cmp" "$T/serve.cmp" >"$T/diff" || fail "/metrics differs from stele stats --prometheus: $(head -40 "$T/diff")"
age_serve=$(metric "$T/serve.prom" "stele_pending_oldest_age_seconds{log=\"$L\"}")
age_stats=$(metric "$T/stats.prom" stele_pending_oldest_age_seconds)
awk -v a="$age_serve" -v b="$age_stats" 'BEGIN { d = a - b; exit !(a > 0 && d > -1 && d < 1) }' ||
    fail "oldest pending age: serve $age_serve, stats $age_stats"
check_eq "$(metric "$T/serve.prom" "stele_records_total{log=\"$L\"}")" "$n" "records"
pending=$(metric "$T/serve.prom" "stele_pending_intents{log=\"$L\"}")
[ "$pending" -gt 0 ] || fail "no pending intent counted"

# /api/status: the stats object of stele stats, and the pending figures.
http 200 /api/status
grep -qi '^Content-Type: application/json' "$T/head" || fail "/api/status content type: $(cat "$T/head")"
cp "$T/body" "$T/status.json"
run 0 "$STELE" stats "$L"
check_jq "$T/status.json" '.[0].healthy and (.[0].logs | length == 1) and .[0].logs[0].up' "status: healthy, one log"
at_open='.index_memory, .index_checkpoint_lsn, .index_rebuilt, .index_note'
check_eq "$(jq -c ".logs[0].stats | del($at_open)" "$T/status.json")" \
    "$(jq -c "del($at_open, .compression_level, .dict_in_use, .dict_newest, .dict_count, .batches, .batches_zstd, .batches_dict, .raw_bytes, .stored_bytes, .frame_bytes, .compression_ratio)" "$T/out")" \
    "/api/status stats = stele stats"
check_eq "$(jq .logs[0].log "$T/status.json")" "\"$L\"" "status: log"
check_jq "$T/status.json" '.[0] | (.time | type == "number") and .logs[0].state == "healthy"' "status: time, state"
# The oldest pending intents (the status page's list) are those of stele pending.
run 0 "$STELE" pending "$L" --limit 10
check_eq "$(jq -c '[.logs[0].pending_oldest[] | {key, lsn, stream}]' "$T/status.json")" \
    "$(jq -sc '[.[] | {key, lsn, stream: ""}]' "$T/out")" "/api/status pending_oldest = stele pending --limit 10"

# HEAD: the headers of GET, no body.
http 200 /metrics HEAD
[ ! -s "$T/body" ] || fail "HEAD /metrics has a body: $(head -c 200 "$T/body")"
grep -qi '^Content-Type: text/plain; version=0.0.4' "$T/head" || fail "/metrics content type: $(cat "$T/head")"
http 404 /nope
http 404 /metrics/x
http 405 /metrics POST
grep -qi '^Allow: GET, HEAD' "$T/head" || fail "405 without Allow: $(cat "$T/head")"
http 405 /healthz DELETE
http 405 /api/status PUT x
http 413 /metrics GET somebody

serve_stop TERM
echo "ok"
