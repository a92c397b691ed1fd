# test_compensate_backfill_run.sh - proves `stele compensate --backfill-run
# FILE [--derive-keys]` (SPEC.md §17.1): it reverses exactly the records a
# backfill of FILE imported (own keys, and derived keys), not the ordinary
# appends around them; a second run compensates nothing twice; --dry-run
# predicts the real run record by record and leaves the log's bytes as they
# were; --rules applies; a key of FILE that holds a record backfill did not
# import is refused ("not a backfilled record", exit 2); a line whose key
# holds another backfilled event (a conflict at import) is refused (exit 3);
# a line never imported counts as not_found; a file with an invalid line is
# reported line by line, compensates nothing and exits 2.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L"

last_lsn() {
    "$STELE" stats "$L" | jq .last_lsn
}
# The log directory's bytes, every file, in one checksum (a dry run takes no
# lock, so even stele.lock stays as it was).
log_bytes() {
    (cd "$L" && find . -type f | sort | xargs sha256sum | sha256sum)
}
# The same without stele.lock, where a run that opens the log for writing
# leaves its process id: the log's data, meta and index checkpoint.
data_bytes() {
    (cd "$L" && find . -type f ! -name stele.lock | sort | xargs sha256sum | sha256sum)
}

# The run to reverse: captures and an order, each with its own key.
cat >"$T/run.jsonl" <<'JSONL'
{"key":"old-cap-1","type":"payment.captured","stream":"pay-1","event_time":"2019-03-01T10:00:00Z","data":{"amount":1250,"currency":"EUR","order":"o-1"}}
{"key":"old-ord-1","type":"order.placed","stream":"o-1","event_time":"2019-03-01T09:00:00Z","data":{"items":3}}
{"key":"old-cap-2","type":"payment.captured","stream":"pay-2","event_time":"2019-03-02T10:00:00Z","data":{"amount":80,"currency":"USD","order":"o-2"}}
JSONL
# Another run, keys derived.
cat >"$T/derived.jsonl" <<'JSONL'
{"type":"sensor.read","stream":"s-1","event_time":"2021-05-05T05:05:05Z","data":{"c":21.5}}
{"type":"sensor.read","stream":"s-1","event_time":"2021-05-05T05:05:06Z","data":{"c":21.7}}
JSONL

# LSN 1 ordinary, 2-4 run.jsonl, 5 ordinary, 6-7 derived.jsonl, 8 ordinary.
run 0 "$STELE" append "$L" --key live-1 --type payment.captured --stream pay-9 --data '{"amount":5,"currency":"EUR","order":"o-9"}'
run 0 "$STELE" backfill "$L" "$T/run.jsonl"
check_jq "$T/out" '.[0] | .new == 3 and .first_lsn == 2 and .last_lsn == 4' "backfill of run.jsonl"
run_lsns=$(jq -c '[range(.first_lsn; .last_lsn + 1)]' "$T/out")
run 0 "$STELE" append "$L" --key live-2 --type order.placed --stream o-9 --data '{"items":1}'
run 0 "$STELE" backfill "$L" "$T/derived.jsonl" --derive-keys
check_jq "$T/out" '.[0] | .new == 2 and .first_lsn == 6 and .last_lsn == 7' "backfill of derived.jsonl"
derived_lsns=$(jq -c '[range(.first_lsn; .last_lsn + 1)]' "$T/out")
run 0 "$STELE" append "$L" --key live-3 --type payment.captured --stream pay-9 --data '{"amount":6,"currency":"EUR","order":"o-9"}'
check_eq "$(last_lsn)" 8 "setup"

cat >"$T/rules.json" <<'JSON'
{"payment.captured": {"type": "payment.refunded", "copy": ["order", "currency"], "negate": ["amount"]},
 "order.placed": {"type": "order.cancelled", "copy": ["items"]}}
JSON

# --- dry run: predicts, and the log's bytes stay as they were
before=$(log_bytes)
run 0 "$STELE" compensate "$L" --backfill-run "$T/run.jsonl" --rules "$T/rules.json" --reason 'bad import' --dry-run
cp "$T/out" "$T/dry"
check_eq "$(log_bytes)" "$before" "the dry run changed no byte of the log"
check_jq "$T/dry" '.[-1] | .selected == 3 and .compensated == 3 and .already_compensated == 0 and .refused == 0
    and .not_found == 0 and .dry_run == true and .from == null and .to == null' "dry-run summary"
check_jq "$T/dry" "[.[] | select(.decision == \"would_append\") | .ref] == $run_lsns" "dry run: the run's records"

# --- the real run: exactly the run's records, in LSN order, by the rules
run 0 "$STELE" compensate "$L" --backfill-run "$T/run.jsonl" --rules "$T/rules.json" --reason 'bad import'
check_stderr_empty "real run"
cp "$T/out" "$T/real"
check_jq "$T/real" "[.[] | select(.decision == \"new\") | .ref] == $run_lsns" "refs are the backfill's LSNs"
check_jq "$T/real" '[.[] | select(.ref) | .lsn] == [9, 10, 11]' "compensations appended in LSN order"
check_jq "$T/real" ".[-1] | .selected == 3 and .compensated == 3 and .refused == 0 and .skipped == 0
    and .backfill_run == \"$T/run.jsonl\" and .not_found == 0 and .dry_run == false
    and .refusals.not_backfilled == 0 and .refusals.key_holds_another_event == 0" "summary"
check_eq "$(jq -c 'select(.ref) | [.ref, .decision, .reason]' "$T/dry" | sed 's/would_append/new/')" \
    "$(jq -c 'select(.ref) | [.ref, .decision, .reason]' "$T/real")" "the dry run matches the run"
run 0 "$STELE" read "$L" --from 9
check_jq "$T/out" 'length == 3 and all(.[]; .kind == "compensation" and .backfilled == false)' "three compensations"
check_jq "$T/out" '.[0] | .ref == 2 and .type == "payment.refunded" and .stream == "pay-1"
    and .data == {"reason":"bad import","order":"o-1","currency":"EUR","amount":-1250}' "rule for a capture"
check_jq "$T/out" '.[1] | .ref == 3 and .type == "order.cancelled" and .data == {"reason":"bad import","items":3}' "rule for an order"
for k in live-1 live-2 live-3; do
    run 0 "$STELE" status "$L" --key "$k"
    check_jq "$T/out" '.[0].state == "event"' "ordinary append $k untouched"
done
run 0 "$STELE" status "$L" --key old-cap-2
check_jq "$T/out" '.[0] | .state == "compensated" and .compensation_lsn == 11' "old-cap-2 compensated"

# --- a second run compensates nothing twice
run 0 "$STELE" compensate "$L" --backfill-run "$T/run.jsonl" --rules "$T/rules.json" --reason 'bad import'
check_jq "$T/out" '.[-1] | .compensated == 0 and .already_compensated == 3 and .refused == 0' "second run: all already compensated"
check_jq "$T/out" '[.[] | select(.decision == "duplicate") | [.ref, .lsn]] == [[2,9],[3,10],[4,11]]' "duplicates name the compensations"
check_eq "$(last_lsn)" 11 "the second run appended nothing"
before=$(log_bytes)
run 0 "$STELE" compensate "$L" --backfill-run "$T/run.jsonl" --rules "$T/rules.json" --reason 'bad import' --dry-run
check_jq "$T/out" '.[-1] | .compensated == 0 and .already_compensated == 3' "dry run after: all already compensated"
check_eq "$(log_bytes)" "$before" "the second dry run changed no byte"

# --- derived keys: without --derive-keys every keyless line is invalid, nothing written
before=$(data_bytes)
run 2 "$STELE" compensate "$L" --backfill-run "$T/derived.jsonl" --reason 'sensor drift'
check_eq "$(data_bytes)" "$before" "keyless lines without --derive-keys wrote nothing"
[ ! -s "$T/out" ] || fail "an invalid file prints no result: $(cat "$T/out")"
grep -q 'derived.jsonl line 1: no "key"' "$T/err" && grep -q 'derived.jsonl line 2: no "key"' "$T/err" ||
    fail "both keyless lines reported as backfill reports them: $(cat "$T/err")"
run 0 "$STELE" compensate "$L" --backfill-run "$T/derived.jsonl" --derive-keys --reason 'sensor drift' --stream s-1
check_jq "$T/out" "[.[] | select(.decision == \"new\") | .ref] == $derived_lsns and .[-1].compensated == 2" "derived keys find the run"
run 0 "$STELE" get "$L" --lsn 12
check_jq "$T/out" '.[0] | .kind == "compensation" and .type == "compensation" and .ref == 6 and .data == {"reason":"sensor drift"}' "default compensation"
check_eq "$(last_lsn)" 13 "two compensations"

# --- a key of an ordinary append is refused; a line never imported is not found; a line twice is one record
cat >"$T/mixed.jsonl" <<'JSONL'
{"key":"live-1","type":"payment.captured","stream":"pay-9","event_time":"2019-01-01T00:00:00Z","data":{"amount":5,"currency":"EUR","order":"o-9"}}
{"key":"never-imported","type":"payment.captured","stream":"pay-7","event_time":"2019-01-01T00:00:00Z","data":{"amount":7}}
{"key":"old-cap-1","type":"payment.captured","stream":"pay-1","event_time":"2019-03-01T10:00:00Z","data":{"amount":1250,"currency":"EUR","order":"o-1"}}
{"key":"old-cap-1","type":"payment.captured","stream":"pay-1","event_time":"2019-03-01T10:00:00Z","data":{"amount":1250,"currency":"EUR","order":"o-1"}}
JSONL
run 2 "$STELE" compensate "$L" --backfill-run "$T/mixed.jsonl" --rules "$T/rules.json" --reason 'bad import' --dry-run
cp "$T/out" "$T/dry"
run 2 "$STELE" compensate "$L" --backfill-run "$T/mixed.jsonl" --rules "$T/rules.json" --reason 'bad import'
check_jq "$T/out" '.[0] | .ref == 1 and .lsn == null and .decision == "refused"
    and (.reason | startswith("not a backfilled record")) and (.reason | test("key live-1 .*mixed.jsonl line 1"))' "refused: not backfilled"
check_jq "$T/out" 'length == 3 and (.[1] | .ref == 2 and .decision == "duplicate" and .lsn == 9)' "the backfilled line, twice in the file: one record, already compensated"
check_jq "$T/out" '.[-1] | .selected == 2 and .refused == 1 and .refusals.not_backfilled == 1 and .already_compensated == 1
    and .not_found == 1 and .compensated == 0' "mixed summary"
check_eq "$(jq -c 'select(.ref) | [.ref, .decision, .reason]' "$T/dry")" \
    "$(jq -c 'select(.ref) | [.ref, .decision, .reason]' "$T/out")" "the dry run matches the mixed run"
check_eq "$(last_lsn)" 13 "the refusal appended nothing"
run 0 "$STELE" status "$L" --key live-1
check_jq "$T/out" '.[0].state == "event"' "the ordinary append is not compensated"

# --- a line whose key holds another backfilled event (a conflict at import): refused, exit 3
printf '%s\n' '{"key":"late-1","type":"order.placed","stream":"o-5","event_time":"2019-04-01T09:00:00Z","data":{"items":1}}' >"$T/late.jsonl"
printf '%s\n' '{"key":"late-1","type":"order.placed","stream":"o-5","event_time":"2019-04-01T09:00:00Z","data":{"items":2}}' >"$T/conflict.jsonl"
run 0 "$STELE" backfill "$L" "$T/late.jsonl"            # LSN 14
run 3 "$STELE" backfill "$L" "$T/conflict.jsonl"        # conflict: nothing imported
run 3 "$STELE" compensate "$L" --backfill-run "$T/conflict.jsonl" --reason x
check_jq "$T/out" '.[0] | .ref == 14 and .decision == "refused" and .lsn == null
    and (.reason | test("key late-1 .*conflict.jsonl line 1.*a backfilled event other than the line"))' "a conflicting line's key is not its record"
check_jq "$T/out" '.[-1] | .refusals.key_holds_another_event == 1 and .refused == 1 and .compensated == 0' "counted"
check_eq "$(last_lsn)" 14 "the conflict appended nothing"
run 0 "$STELE" status "$L" --key late-1
check_jq "$T/out" '.[0].state == "event"' "late-1 is not compensated"

# --- an invalid file: reported with line numbers, exit 2, no byte written
cat >"$T/bad.jsonl" <<'JSONL'
{"key":"old-cap-2","type":"payment.captured","stream":"pay-2","event_time":"2019-03-02T10:00:00Z","data":{"amount":80,"currency":"USD","order":"o-2"}}
not json
{"key":"x","type":"t","data":3}
{"key":"y","kind":"intent","type":"t","event_time":"2020-01-01T00:00:00Z"}
JSONL
run 0 "$STELE" backfill "$L" "$T/run.jsonl"  # all duplicates: appends nothing
before=$(data_bytes)
for dry in "" --dry-run; do
    run 2 "$STELE" compensate "$L" --backfill-run "$T/bad.jsonl" --reason x $dry
    [ ! -s "$T/out" ] || fail "an invalid file prints no result: $(cat "$T/out")"
    for n in 2 3 4; do
        grep -q "bad.jsonl line $n: " "$T/err" || fail "line $n is reported: $(cat "$T/err")"
    done
    grep -q 'line 1: ' "$T/err" && fail "a valid line is reported: $(cat "$T/err")"
    grep -q 'line 3: "event_time" is required' "$T/err" || fail "backfill's reason: $(cat "$T/err")"
    grep -q '3 invalid lines: nothing compensated' "$T/err" || fail "says nothing was compensated: $(cat "$T/err")"
    check_eq "$(data_bytes)" "$before" "an invalid file$dry wrote nothing"
done

# --- usage
run 4 "$STELE" compensate "$L" --backfill-run "$T/missing.jsonl" --reason x
check_stderr_line "missing FILE"
grep -q 'missing.jsonl' "$T/err" || fail "names the file: $(cat "$T/err")"
run 2 "$STELE" compensate "$L" --backfill-run "$T/run.jsonl"
check_stderr_line "--backfill-run without --reason"
run 2 "$STELE" compensate "$L" --backfill-run "$T/run.jsonl" --from 1 --reason x
check_stderr_line "--backfill-run with --from"
run 2 "$STELE" compensate "$L" --backfill-run "$T/run.jsonl" --to 3 --reason x
check_stderr_line "--backfill-run with --to"
run 2 "$STELE" compensate "$L" --from 1 --derive-keys --reason x
check_stderr_line "--derive-keys without --backfill-run"
check_eq "$(last_lsn)" 14 "usage errors appended nothing"
run 0 "$STELE" compensate --help
grep -q -- '--backfill-run' "$T/out" || fail "--help describes --backfill-run"
echo "ok"
