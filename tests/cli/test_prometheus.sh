# test_prometheus.sh - proves `stele stats --prometheus` (SPEC.md §17.4):
# the output parses as the Prometheus text exposition format 0.0.4 (checked
# by the awk validator prometheus.awk: HELP and TYPE once per family and before its
# samples, valid names and labels, numeric values, counters end in _total,
# histograms have cumulative buckets ending in +Inf equal to _count, plus
# _sum), and its figures agree with the log: records with last_lsn, pending
# intents and the age of the oldest, the active segment's batches with
# `stele dump`. The validator is itself shown bad inputs, so that it can fail.
source "$(dirname "$0")/lib.sh"
L=$T/log

validate() {
    awk -f "$(dirname "$0")/prometheus.awk" "$1"
}

# The validator rejects what it should.
printf '# HELP stele_x_total x\n# TYPE stele_x_total counter\nstele_x_total abc\n' >"$T/bad1"
printf 'stele_y 1\n' >"$T/bad2"
printf '# HELP stele_z z\n# TYPE stele_z counter\nstele_z 1\n' >"$T/bad3"
printf '# HELP stele_h h\n# TYPE stele_h histogram\nstele_h_bucket{le="1"} 2\nstele_h_bucket{le="+Inf"} 1\nstele_h_sum 1\nstele_h_count 1\n' >"$T/bad4"
printf '# HELP stele_g g\n# TYPE stele_g gauge\nstele_g{a="1",} 1\n' >"$T/bad5"
for f in bad1 bad2 bad3 bad4 bad5; do
    if validate "$T/$f" >/dev/null; then fail "the validator accepts $f"; fi
done

run 0 "$STELE" init "$L" --segment-size 64K
run 0 "$STELE" stats "$L" --prometheus
cp "$T/out" "$T/empty.prom"
validate "$T/empty.prom" || fail "an empty log's metrics do not parse"
grep -qx 'stele_records_total 0' "$T/empty.prom" || fail "empty: records"
grep -qx 'stele_active_segment_batch_records_count 0' "$T/empty.prom" || fail "empty: no batches"

awk 'BEGIN { for (i = 1; i <= 500; i++) printf "{\"key\":\"k-%d\",\"type\":\"t\",\"data\":{\"pad\":\"%0100d\"}}\n", i, i }' >"$T/in.jsonl"
run 0 "$STELE" append "$L" --jsonl <"$T/in.jsonl"
run 0 "$STELE" intent "$L" --key pay-1
run 0 "$STELE" intent "$L" --key pay-2
run 0 "$STELE" resolve "$L" --key pay-2 --outcome failed
sleep 1
run 0 "$STELE" stats "$L" --prometheus
check_stderr_empty "stats --prometheus"
P=$T/full.prom
cp "$T/out" "$P"
validate "$P" || fail "the metrics do not parse"
for m in stele_records_total stele_durable_lsn stele_segments stele_disk_bytes stele_data_bytes stele_index_keys \
    stele_pending_intents stele_pending_oldest_age_seconds stele_appends_total stele_syncs_total \
    stele_bytes_written_total stele_batches_written_total stele_recovery_torn_bytes_total \
    stele_active_segment_batch_records stele_active_segment_batch_bytes; do
    grep -q "^# TYPE $m " "$P" || fail "metric $m is missing"
done
run 0 "$STELE" stats "$L"
check_eq "$(awk '$1 == "stele_records_total" { print $2 }' "$P")" "$(jq .last_lsn "$T/out")" "records = last_lsn"
check_eq "$(awk '$1 == "stele_segments" { print $2 }' "$P")" "$(jq .segment_count "$T/out")" "segments"
check_eq "$(awk '$1 == "stele_pending_intents" { print $2 }' "$P")" 1 "one pending intent"
awk '$1 == "stele_pending_oldest_age_seconds" { exit !($2 >= 1 && $2 < 600) }' "$P" || fail "age of the oldest pending intent: $(grep oldest_age "$P")"
grep -qx 'stele_appends_total{decision="new"} 0' "$P" || fail "a read-only process appended nothing"
# The histogram counts the active segment's batches, as dump lists them.
run 0 "$STELE" dump "$L"
active_batches=$(awk '/^segment /{ n = 0 } /^  batch /{ n++ } END { print n }' "$T/out")
active_records=$(awk '/^segment /{ n = 0 } /^    record /{ n++ } END { print n }' "$T/out")
check_eq "$(awk '$1 == "stele_active_segment_batch_records_count" { print $2 }' "$P")" "$active_batches" "batches of the active segment"
check_eq "$(awk '$1 == "stele_active_segment_batch_records_sum" { print $2 }' "$P")" "$active_records" "records of the active segment"
# Consumers: position, lag and dead letters per cursor. Consumer a takes
# everything; consumer b's handler fails for good on every even LSN above 10
# (a dead letter each, skipped). Then 5 more records come: both lag by 5.
grep -q '^stele_consumer' "$P" && fail "consumer metrics before any consumer"
run 0 "$STELE" stats "$L"
last=$(jq .last_lsn "$T/out")
run 0 "$STELE" replay "$L" --consumer a --stdout
cat >"$T/h.sh" <<'SH'
#!/bin/sh
cat >/dev/null
if [ "$STELE_LSN" -gt 10 ] && [ $((STELE_LSN % 2)) -eq 0 ]; then echo "no" >&2; exit 1; fi
exit 0
SH
chmod +x "$T/h.sh"
"$STELE" replay "$L" --consumer b --exec "$T/h.sh" --on-dead-letter skip >/dev/null 2>&1 || fail "replay of consumer b"
want_dead=$(( (last - 10) / 2 ))
for i in 1 2 3 4 5; do run 0 "$STELE" append "$L" --type t --data "$i"; done
run 0 "$STELE" stats "$L" --prometheus
C=$T/consumers.prom
cp "$T/out" "$C"
validate "$C" || fail "the metrics with consumers do not parse"
for c in a b; do
    check_eq "$(awk -v m="stele_consumer_position{consumer=\"$c\"}" '$1 == m { print $2 }' "$C")" "$last" "consumer $c's position"
    check_eq "$(awk -v m="stele_consumer_lag_records{consumer=\"$c\"}" '$1 == m { print $2 }' "$C")" 5 "consumer $c's lag"
done
check_eq "$(awk '$1 == "stele_consumer_dead_letters{consumer=\"a\"}" { print $2 }' "$C")" 0 "consumer a's dead letters"
check_eq "$(awk '$1 == "stele_consumer_dead_letters{consumer=\"b\"}" { print $2 }' "$C")" "$want_dead" "consumer b's dead letters"

run 4 "$STELE" stats "$T/nosuch" --prometheus
check_stderr_line "no such log"
echo "ok"
