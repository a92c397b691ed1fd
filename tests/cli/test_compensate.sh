# test_compensate.sh - proves `stele compensate` (PRODUCT.md guarantee 5):
# a compensation refs the event or the confirmed outcome it reverses (by
# --lsn, or by --key through the key's status), carries no key, takes the
# target's stream and its next version, and holds {"reason":...} with --data
# merged in or under "data"; the key's state becomes compensated; the same
# compensation again is a duplicate (exit 0), another one a conflict (exit
# 3); a pending or failed intent, an intent, a failed outcome or a
# compensation as target exit 2, an unknown one 4, appending nothing - and
# the engine refuses the same through `append --jsonl`; --dry-run prints the
# record that would be appended (which `append --jsonl` then accepts as is)
# and appends nothing.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L"

last_lsn() {
    run 0 "$STELE" stats "$L"
    jq .last_lsn "$T/out"
}

# --- an event, compensated by key
run 0 "$STELE" append "$L" --key ev-1 --stream acct-1 --type deposited --data '{"amount":100}'   # 1
run 0 "$STELE" compensate "$L" --key ev-1 --reason 'typo in amount' --actor ops
check_stderr_empty "compensate"
check_eq "$(cat "$T/out")" '{"lsn":2,"decision":"new","stream_version":2,"ref":1}' "compensation receipt"
run 0 "$STELE" get "$L" --lsn 2
check_jq "$T/out" '.[0] | .kind == "compensation" and .ref == 1 and .key == null and .type == "compensation"
    and .stream == "acct-1" and .stream_version == 2 and .actor == "ops" and .data == {"reason":"typo in amount"}' "the compensation record"
run 0 "$STELE" status "$L" --key ev-1
check_jq "$T/out" '.[0] | .state == "compensated" and .lsn == 1 and .compensation_lsn == 2 and .outcome_lsn == null' "compensated event"

# The same compensation again (by key or by LSN): duplicate of LSN 2. Another one: conflict.
run 0 "$STELE" compensate "$L" --key ev-1 --reason 'typo in amount' --actor ops
check_eq "$(cat "$T/out")" '{"lsn":2,"decision":"duplicate","stream_version":2,"ref":1}' "compensate twice by key"
run 0 "$STELE" compensate "$L" --lsn 1 --reason 'typo in amount'
check_eq "$(jq -c '[.lsn, .decision]' "$T/out")" '[2,"duplicate"]' "compensate twice by LSN (the actor is not identity)"
run 3 "$STELE" compensate "$L" --key ev-1 --reason 'fraud'
check_eq "$(cat "$T/out")" '{"lsn":2,"decision":"conflict","stream_version":2,"ref":1,"reason":"different_request"}' "a different compensation"
check_stderr_line "a different compensation"
check_eq "$(last_lsn)" 2 "duplicate and conflict appended nothing"

# --- a confirmed intent, compensated by key: the target is its outcome.
run 0 "$STELE" intent "$L" --key pay-1 --stream payment-1 --type payment.requested --data '{"amount":10}'   # 3
run 0 "$STELE" resolve "$L" --key pay-1 --outcome confirmed                                                   # 4
run 0 "$STELE" compensate "$L" --key pay-1 --reason refund --type payment.refunded --data '{"amount":10,"by":"card"}'
check_eq "$(cat "$T/out")" '{"lsn":5,"decision":"new","stream_version":3,"ref":4}' "compensating a confirmed intent refs its outcome"
run 0 "$STELE" get "$L" --lsn 5
check_jq "$T/out" '.[0] | .type == "payment.refunded" and .stream == "payment-1" and .ref == 4
    and .data == {"reason":"refund","amount":10,"by":"card"}' "an object --data is merged after the reason"
run 0 "$STELE" status "$L" --key pay-1
check_jq "$T/out" '.[0] | .state == "compensated" and .lsn == 3 and .outcome_lsn == 4 and .compensation_lsn == 5' "compensated intent"
run 0 "$STELE" compensate "$L" --key pay-1 --reason refund --type payment.refunded --data '{"amount":10,"by":"card"}'
check_eq "$(jq -c '[.lsn, .decision, .ref]' "$T/out")" '[5,"duplicate",4]' "compensating a compensated intent again"

# --- other --data: under "data", as JSON or as text. Events without a stream.
run 0 "$STELE" append "$L" --data 1     # 6
run 0 "$STELE" append "$L" --data 2     # 7
run 0 "$STELE" compensate "$L" --lsn 6 --reason r --data '[1, 2]'
check_eq "$(cat "$T/out")" '{"lsn":8,"decision":"new","stream_version":0,"ref":6}' "an unstreamed target: no stream"
run 0 "$STELE" get "$L" --lsn 8
check_jq "$T/out" '.[0] | .data == {"reason":"r","data":[1,2]} and .stream == null' "JSON --data under data"
run 0 "$STELE" compensate "$L" --lsn 7 --reason r --data 'not json'
run 0 "$STELE" get "$L" --lsn 9
check_jq "$T/out" '.[0].data == {"reason":"r","data":"not json"}' "text --data under data"
run 2 "$STELE" compensate "$L" --lsn 7 --reason r --data '{"reason":"other"}'
check_stderr_line "--data with its own reason"

# --- targets that cannot be compensated: exit 2, nothing appended.
run 0 "$STELE" intent "$L" --key pay-2                              # 10
run 0 "$STELE" resolve "$L" --key pay-2 --outcome failed            # 11
run 0 "$STELE" intent "$L" --key pay-3                              # 12
before=$(last_lsn)
check_eq "$before" 12 "setup"
run 2 "$STELE" compensate "$L" --key pay-2 --reason x
check_stderr_line "a failed intent by key"
grep -q 'failed' "$T/err" || fail "the message says the intent failed: $(cat "$T/err")"
run 2 "$STELE" compensate "$L" --lsn 11 --reason x
check_stderr_line "a failed outcome by LSN"
run 2 "$STELE" compensate "$L" --key pay-3 --reason x
check_stderr_line "a pending intent by key"
grep -q 'pending' "$T/err" || fail "the message says the intent is pending: $(cat "$T/err")"
run 2 "$STELE" compensate "$L" --lsn 12 --reason x
check_stderr_line "an intent by LSN"
run 2 "$STELE" compensate "$L" --lsn 2 --reason x
check_stderr_line "a compensation"
run 4 "$STELE" compensate "$L" --lsn 999 --reason x
check_stderr_line "no such LSN"
run 4 "$STELE" compensate "$L" --key nosuch --reason x
check_stderr_line "no such key"
check_eq "$(last_lsn)" "$before" "refused compensations appended nothing"
run 0 "$STELE" status "$L" --key pay-3
check_jq "$T/out" '.[0].state == "pending"' "the pending intent is untouched"

# The engine enforces the same rules for any writer (here: raw compensation records).
printf '%s\n' '{"kind":"compensation","ref":11,"data":{"reason":"x"}}' '{"kind":"compensation","ref":12,"data":{"reason":"x"}}' \
    '{"kind":"compensation","ref":2,"data":{"reason":"x"}}' '{"kind":"compensation","ref":999,"data":{"reason":"x"}}' \
    '{"kind":"compensation","ref":1,"key":"k","data":{"reason":"x"}}' >"$T/bad"
run 2 "$STELE" append "$L" --jsonl <"$T/bad"
check_jq "$T/out" 'map(.code) == [1,1,1,6,1] and all(.[]; has("error"))' "engine refusals through --jsonl"
run 3 "$STELE" append "$L" --jsonl <<<'{"kind":"compensation","ref":1,"type":"compensation","stream":"acct-1","data":{"reason":"fraud"}}'
check_jq "$T/out" '.[0] | .decision == "conflict" and .lsn == 2' "engine: a second, different compensation"
check_eq "$(last_lsn)" "$before" "nothing appended by the engine's refusals"

# --- --dry-run: prints the record, appends nothing; append --jsonl takes it as is.
run 0 "$STELE" append "$L" --key ev-3 --stream acct-1 --type deposited --data '{"amount":3}'   # 13, acct-1 v3
run 0 "$STELE" compensate "$L" --key ev-3 --reason 'dry' --dry-run
check_stderr_empty "dry run"
cp "$T/out" "$T/dry"
check_jq "$T/dry" 'length == 1 and (.[0] | .kind == "compensation" and .ref == 13 and .stream == "acct-1" and .stream_version == 4
    and .type == "compensation" and .key == null and .lsn == null and .recorded_at == null and .data == {"reason":"dry"})' "dry-run object"
check_eq "$(last_lsn)" 13 "dry run appended nothing"
run 0 "$STELE" status "$L" --key ev-3
check_jq "$T/out" '.[0].state == "event"' "dry run compensated nothing"
run 0 "$STELE" append "$L" --jsonl <"$T/dry"
check_jq "$T/out" '.[0] | .lsn == 14 and .decision == "new" and .stream_version == 4' "the dry-run object appended"
run 0 "$STELE" compensate "$L" --key ev-3 --reason 'dry'
check_eq "$(jq -c '[.lsn, .decision]' "$T/out")" '[14,"duplicate"]' "the dry run showed exactly what compensate appends"
run 2 "$STELE" compensate "$L" --key pay-3 --reason x --dry-run
check_stderr_line "dry run of a pending intent"

# --- usage
run 2 "$STELE" compensate "$L" --reason x
check_stderr_line "neither --lsn nor --key"
run 2 "$STELE" compensate "$L" --lsn 1 --key ev-1 --reason x
run 2 "$STELE" compensate "$L" --lsn 1
check_stderr_line "no --reason"
run 2 "$STELE" compensate "$L" --lsn 1 --reason ''
run 2 "$STELE" compensate "$L" --lsn 1 --from 1 --reason x
check_stderr_line "a record and a range"
run 2 "$STELE" compensate "$L" --lsn 1 --reason x --rules "$T/no-such-rules.json"
check_stderr_line "missing rules file"

# --- --human
run 0 "$STELE" --human compensate "$L" --lsn 1 --reason 'typo in amount'
check_eq "$(cat "$T/out")" "duplicate lsn=2 stream_version=2 ref=1" "--human compensate"
run 0 "$STELE" --human compensate "$L" --lsn 6 --reason other --dry-run
grep -q '^would append: compensation  type=compensation  ref=6$' "$T/out" || fail "--human dry run: $(cat "$T/out")"
echo "ok"
