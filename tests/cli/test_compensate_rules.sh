# test_compensate_rules.sh - proves the selection form and --rules of
# `stele compensate` (PRODUCT.md guarantee 5, SPEC.md §17): --from/--to with
# --type and --stream select records; --rules turns each payment.captured
# into a payment.refunded that refs the original, copies and negates fields
# and sets constants; intents, failed outcomes, compensations and types
# without a rule are skipped; a record the rule cannot apply to is refused
# with the field named (exit 2); a record compensated differently is refused
# (exit 3); a second run compensates nothing twice (all duplicates); --dry-run
# predicts exactly what the real run does and writes nothing; a bad rules
# file changes nothing.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L"

last_lsn() {
    "$STELE" stats "$L" | jq .last_lsn
}

# LSN 1-6: three captures, an order event, a capture with a text amount, a capture in another stream.
cat >"$T/events.jsonl" <<'JSONL'
{"key":"cap-1","type":"payment.captured","stream":"pay-1","data":{"amount":1250,"currency":"EUR","order":"o-1","card":"x"}}
{"key":"cap-2","type":"payment.captured","stream":"pay-2","data":{"amount":99.5,"currency":"EUR","order":"o-2"}}
{"key":"ord-1","type":"order.placed","stream":"o-1","data":{"items":3}}
{"key":"cap-3","type":"payment.captured","stream":"pay-3","data":{"amount":-40,"currency":"USD","order":"o-3"}}
{"key":"cap-4","type":"payment.captured","stream":"pay-4","data":{"amount":"12","currency":"USD","order":"o-4"}}
{"key":"cap-5","type":"payment.captured","stream":"other","data":{"amount":7,"currency":"USD","order":"o-5"}}
JSONL
run 0 "$STELE" append "$L" --jsonl <"$T/events.jsonl"
# LSN 7-9: an intent confirmed (a capture by outcome), a pending intent.
run 0 "$STELE" intent "$L" --key cap-6 --type payment.captured --stream pay-6 --data '{"amount":5,"currency":"EUR","order":"o-6"}'
run 0 "$STELE" resolve "$L" --key cap-6 --outcome confirmed --type payment.captured --data '{"amount":5,"currency":"EUR","order":"o-6"}'
run 0 "$STELE" intent "$L" --key cap-7 --type payment.captured --stream pay-7 --data '{"amount":1}'
check_eq "$(last_lsn)" 9 "setup"

cat >"$T/rules.json" <<'JSON'
{"payment.captured": {"type": "payment.refunded", "copy": ["order", "currency"], "negate": ["amount"],
                      "set": {"source": "reversal", "version": 2}}}
JSON

# --- dry run first: predicts, writes nothing
run 2 "$STELE" compensate "$L" --from 1 --to 9 --rules "$T/rules.json" --reason 'incident 7' --dry-run
cp "$T/out" "$T/dry"
check_eq "$(last_lsn)" 9 "dry run appended nothing"
check_jq "$T/dry" '.[-1] | .selected == 6 and .compensated == 5 and .refused == 1 and .skipped == 3 and .dry_run == true
    and .refusals.rule_does_not_apply == 1 and .from == 1 and .to == 9' "dry-run summary"
check_jq "$T/dry" '[.[] | select(.decision == "would_append") | .ref] == [1,2,4,6,8]' "dry run: targets (the outcome, not the intent)"

# --- the real run
run 2 "$STELE" compensate "$L" --from 1 --to 9 --rules "$T/rules.json" --reason 'incident 7' --actor ops
cp "$T/out" "$T/real"
check_jq "$T/real" '.[-1] | .selected == 6 and .compensated == 5 and .already_compensated == 0 and .refused == 1
    and .skipped == 3 and .dry_run == false' "summary"
check_jq "$T/real" '[.[] | select(.decision == "new") | [.ref, .lsn]] == [[1,10],[2,11],[4,12],[6,13],[8,14]]' "new compensations in order"
check_jq "$T/real" '[.[] | select(.decision == "refused")] | length == 1 and .[0].ref == 5 and .[0].lsn == null
    and (.[0].reason | test("amount.*not a number"))' "the text amount is refused, naming the field"
# The dry run said exactly what would happen, record by record.
check_eq "$(jq -c 'select(.ref) | [.ref, .decision, .reason]' "$T/dry" | sed 's/would_append/new/')" \
    "$(jq -c 'select(.ref) | [.ref, .decision, .reason]' "$T/real")" "dry run matches the run"

run 0 "$STELE" read "$L" --from 10
check_jq "$T/out" 'length == 5 and all(.[]; .kind == "compensation" and .type == "payment.refunded" and .key == null and .actor == "ops")' "compensation records"
check_jq "$T/out" '.[0] | .ref == 1 and .stream == "pay-1" and .stream_version == 2
    and .data == {"reason":"incident 7","order":"o-1","currency":"EUR","amount":-1250,"source":"reversal","version":2}' "payment.refunded of LSN 1"
check_jq "$T/out" '.[1].data.amount == -99.5 and .[2].data.amount == 40 and .[4].ref == 8 and .[4].data.order == "o-6"' "negated reals, negatives; an outcome"
run 0 "$STELE" status "$L" --key cap-1
check_jq "$T/out" '.[0] | .state == "compensated" and .compensation_lsn == 10' "cap-1 compensated"
run 0 "$STELE" status "$L" --key cap-6
check_jq "$T/out" '.[0] | .state == "compensated" and .compensation_lsn == 14' "the confirmed intent compensated"
run 0 "$STELE" status "$L" --key ord-1
check_jq "$T/out" '.[0].state == "event"' "a type without a rule is untouched"
run 0 "$STELE" status "$L" --key cap-7
check_jq "$T/out" '.[0].state == "pending"' "the pending intent is untouched"

# --- idempotent: a second run compensates nothing twice
run 2 "$STELE" compensate "$L" --from 1 --to 9 --rules "$T/rules.json" --reason 'incident 7' --actor ops
check_jq "$T/out" '.[-1] | .compensated == 0 and .already_compensated == 5 and .refused == 1' "second run: all already compensated"
check_jq "$T/out" '[.[] | select(.decision == "duplicate") | [.ref, .lsn]] == [[1,10],[2,11],[4,12],[6,13],[8,14]]' "duplicates name the compensations"
check_eq "$(last_lsn)" 14 "the second run appended nothing"
run 2 "$STELE" compensate "$L" --from 1 --to 9 --rules "$T/rules.json" --reason 'incident 7' --dry-run
check_jq "$T/out" '.[-1] | .compensated == 0 and .already_compensated == 5' "dry run after: all already compensated"

# --- a different compensation of the same records: refused as conflicts (exit 3)
run 3 "$STELE" compensate "$L" --from 1 --to 2 --rules "$T/rules.json" --reason 'another reason'
check_jq "$T/out" '.[-1] | .refused == 2 and .refusals.compensated_differently == 2 and .compensated == 0' "different compensation refused"
check_jq "$T/out" '.[0] | .decision == "refused" and (.reason | test("different compensation at LSN 10"))' "names the existing compensation"
run 3 "$STELE" compensate "$L" --from 1 --to 2 --rules "$T/rules.json" --reason 'another reason' --dry-run
check_jq "$T/out" '.[-1].refusals.compensated_differently == 2' "the dry run sees the conflict too"
check_eq "$(last_lsn)" 14 "refusals appended nothing"

# --- selection filters without rules: --type and --stream; default type "compensation"
run 0 "$STELE" append "$L" --key ord-2 --type order.placed --stream o-2 --data '{"items":1}'      # 15
run 0 "$STELE" append "$L" --key ord-3 --type order.placed --stream o-3 --data '{"items":2}'      # 16
run 0 "$STELE" compensate "$L" --from 3 --type order.placed --stream o-3 --reason 'cancelled'
check_jq "$T/out" 'length == 2 and .[0].ref == 16 and .[0].decision == "new" and .[1].selected == 1 and .[1].to == 16' "--type and --stream select; --to defaults to the last LSN"
run 0 "$STELE" get "$L" --lsn 17
check_jq "$T/out" '.[0] | .type == "compensation" and .ref == 16 and .data == {"reason":"cancelled"}' "default compensation"

# --- one record with --rules
run 0 "$STELE" append "$L" --key cap-8 --type payment.captured --stream pay-8 --data '{"amount":3,"currency":"EUR","order":"o-8"}'  # 18
run 0 "$STELE" compensate "$L" --key cap-8 --rules "$T/rules.json" --reason 'customer refund'
check_eq "$(cat "$T/out")" '{"lsn":19,"decision":"new","stream_version":2,"ref":18}' "single record with rules"
run 0 "$STELE" get "$L" --lsn 19
check_jq "$T/out" '.[0] | .type == "payment.refunded" and .data.amount == -3' "single record's refund"
run 2 "$STELE" compensate "$L" --key ord-2 --rules "$T/rules.json" --reason x
check_stderr_line "no rule for the record's type"
run 2 "$STELE" compensate "$L" --key cap-4 --rules "$T/rules.json" --reason x
check_stderr_line "the rule does not apply"
grep -q '"amount" to negate is not a number' "$T/err" || fail "names the field: $(cat "$T/err")"

# --- bad rules files: exit 2, nothing appended
before=$(last_lsn)
bad_rules() {
    printf '%s' "$1" >"$T/bad.json"
    run 2 "$STELE" compensate "$L" --from 1 --rules "$T/bad.json" --reason x
    check_stderr_line "bad rules: $1"
    grep -q "$2" "$T/err" || fail "bad rules $1: the message says '$2': $(cat "$T/err")"
}
bad_rules '{"payment.captured": {"copy": ["a"]}}' 'must be the compensation.s type'
bad_rules '{"payment.captured": {"type": "r", "negate": "amount"}}' '"negate" must be an array'
bad_rules '{"payment.captured": {"type": "r", "copy": ["reason"]}}' 'names "reason"'
bad_rules '{"payment.captured": {"type": "r", "sett": {}}}' 'not a rule member'
bad_rules '[1]' 'not a JSON object'
bad_rules '{"a": ' 'line 1'
check_eq "$(last_lsn)" "$before" "bad rules appended nothing"

# --- usage
run 2 "$STELE" compensate "$L" --from 1 --to 3
check_stderr_line "selection without --reason"
run 2 "$STELE" compensate "$L" --from 5 --to 3 --reason x
check_stderr_line "--to before --from"
run 2 "$STELE" compensate "$L" --to 3 --reason x
check_stderr_line "--to without --from"
run 2 "$STELE" compensate "$L" --lsn 1 --stream s --reason x
check_stderr_line "--stream without --from"
run 2 "$STELE" compensate "$L" --from 1 --rules "$T/rules.json" --data '{}' --reason x
check_stderr_line "--data with --rules"
run 0 "$STELE" compensate --help
grep -q '^EXIT STATUS' "$T/out" || fail "--help is a manual page"
echo "ok"
