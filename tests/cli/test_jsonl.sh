# test_jsonl.sh - proves `stele append --jsonl` at volume and in time:
# 20,000 keyed events in, one receipt per line in input order, LSNs 1..20000,
# and `read` gives back exactly the events that went in; sending the same
# input again appends nothing (20,000 duplicates with the original LSNs); and
# a receipt is printed as soon as its record is acknowledged, without waiting
# for more input.
source "$(dirname "$0")/lib.sh"
L=$T/log
N=20000
run 0 "$STELE" init "$L"

# Events with every input field that a plain event uses; streams interleave.
awk -v n=$N 'BEGIN {
    for (i = 1; i <= n; i++)
        printf "{\"type\":\"order.placed.%d\",\"key\":\"order-%d\",\"stream\":\"customer-%d\",\"actor\":\"gen\",\"event_time\":\"2026-01-02T03:04:05.%09dZ\",\"data\":{\"n\":%d,\"price\":%d.25,\"note\":\"line %d \\u00e9\"}}\n", i % 7, i, i % 97, i, i, i % 1000, i
}' >"$T/in"

run 0 "$STELE" append "$L" --jsonl <"$T/in"
check_stderr_empty "append --jsonl"
cp "$T/out" "$T/receipts"
check_eq "$(wc -l <"$T/receipts")" "$N" "one receipt per input line"
check_jq "$T/receipts" 'to_entries | all(.[]; .value.line == .key + 1 and .value.lsn == .key + 1 and .value.decision == "new")' "receipts in input order with LSNs 1..N, all new"
check_jq "$T/receipts" '(map(.stream_version) | max) == ('$N' / 97 | ceil)' "stream versions count within each stream"

run 0 "$STELE" read "$L"
cp "$T/out" "$T/read"
check_eq "$(wc -l <"$T/read")" "$N" "read returns every record"
check_eq "$(jq -c '{type, key, stream, actor, event_time, data}' "$T/read" | md5sum)" \
    "$(jq -c '{type, key, stream, actor, event_time, data}' "$T/in" | md5sum)" "records read back identical to the input"
check_eq "$(jq -r .lsn "$T/read" | md5sum)" "$(seq $N | md5sum)" "LSNs are exactly 1..N in order"

# Again: every line is a duplicate of its original, nothing is appended.
run 0 "$STELE" append "$L" --jsonl <"$T/in"
check_jq "$T/out" 'length == '$N' and (to_entries | all(.[]; .value.lsn == .key + 1 and .value.decision == "duplicate"))' "resent input is all duplicates"
run 0 "$STELE" stats "$L"
check_jq "$T/out" '.[0].last_lsn == '$N "the log did not grow"

# Receipts stream: each line is acknowledged before the next one is written.
mkfifo "$T/fifo"
: >"$T/slow"
"$STELE" append "$L" --jsonl <"$T/fifo" >"$T/slow" 2>"$T/slow.err" &
pid=$!
exec 3>"$T/fifo"
for i in 1 2 3; do
    printf '{"key":"slow-%d","data":%d}\n' "$i" "$i" >&3
    for _ in $(seq 200); do
        [ "$(wc -l <"$T/slow")" -ge "$i" ] && break
        sleep 0.05
    done
    [ "$(wc -l <"$T/slow")" -ge "$i" ] || fail "no receipt for line $i within 10 s while stdin stays open"
done
exec 3>&-
wait "$pid" || fail "append --jsonl from a fifo failed: $(cat "$T/slow.err")"
check_jq "$T/slow" 'map(.lsn) == ['$((N + 1))','$((N + 2))','$((N + 3))']' "slow lines appended in order"
echo "ok"
