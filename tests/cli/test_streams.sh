# test_streams.sh - proves streams through the command line (PRODUCT.md
# guarantee 6): --expect-version N appends only when the stream is at N (0 =
# it must not exist yet) and otherwise exits 3 with the stream's current
# version, appending nothing - for append, append --jsonl ("expect_version")
# and intent; `read --stream S` prints exactly S's records in version order,
# the same records a filter over the full read picks, with the other filters
# still applying, and --follow waits for S's new records only; `get --key`
# prints the key's record.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L"

# --- expected versions
run 0 "$STELE" append "$L" --stream acct-1 --expect-version 0 --type opened --key open-1 --data '{"owner":"ann"}'
check_eq "$(cat "$T/out")" '{"lsn":1,"decision":"new","stream_version":1}' "version 0: a new stream"
run 3 "$STELE" append "$L" --stream acct-1 --expect-version 0 --type opened --data '{"owner":"bob"}'
check_eq "$(cat "$T/out")" '{"lsn":null,"decision":"conflict","stream_version":1,"reason":"stream_version"}' "the stream exists already"
check_stderr_line "stream version mismatch"
grep -q 'stream acct-1 is at version 1, not the expected 0' "$T/err" || fail "the message names both versions: $(cat "$T/err")"
run 0 "$STELE" append "$L" --stream acct-1 --expect-version 1 --type deposited --data '{"amount":5}'
check_eq "$(cat "$T/out")" '{"lsn":2,"decision":"new","stream_version":2}' "version 1 met"
run 3 "$STELE" append "$L" --stream acct-1 --expect-version 5 --type deposited --data '{"amount":6}'
check_jq "$T/out" '.[0] | .stream_version == 2 and .lsn == null and .reason == "stream_version"' "ahead of the stream: current version 2"
run 3 "$STELE" append "$L" --stream acct-1 --expect-version 1 --type deposited --data '{"amount":6}'
check_jq "$T/out" '.[0].stream_version == 2' "behind the stream: current version 2"
run 3 "$STELE" --human append "$L" --stream acct-1 --expect-version 1
check_eq "$(cat "$T/out")" "conflict: the stream is at version 2" "--human mismatch"
run 0 "$STELE" stats "$L"
check_jq "$T/out" '.[0].last_lsn == 2' "mismatches appended nothing"
# The keyed first append, repeated with its expectation, is a duplicate, not a mismatch.
run 0 "$STELE" append "$L" --stream acct-1 --expect-version 0 --type opened --key open-1 --data '{"owner":"ann"}'
check_eq "$(cat "$T/out")" '{"lsn":1,"decision":"duplicate","stream_version":1}' "a retried keyed append with its expectation"

# --jsonl: "expect_version" per line; a mismatch is that line's conflict (exit 3).
printf '%s\n' '{"stream":"acct-2","expect_version":0,"type":"opened"}' \
    '{"stream":"acct-1","expect_version":2,"type":"deposited","data":{"amount":7}}' \
    '{"stream":"acct-1","expect_version":2,"type":"deposited","data":{"amount":8}}' \
    '{"stream":"acct-2","expect_version":1,"type":"closed"}' >"$T/in"
run 3 "$STELE" append "$L" --jsonl <"$T/in"
check_jq "$T/out" 'map([.line, .lsn, .decision, .stream_version, .reason]) ==
    [[1,3,"new",1,null],[2,4,"new",3,null],[3,null,"conflict",3,"stream_version"],[4,5,"new",2,null]]' "--jsonl expect_version"
run 2 "$STELE" append "$L" --jsonl <<<'{"expect_version":0}'
check_jq "$T/out" '.[0].error | test("needs a \"stream\"")' "expect_version without a stream"

# intent takes an expectation too.
run 3 "$STELE" intent "$L" --key wd-1 --stream acct-1 --expect-version 2 --type withdrawal.requested
check_jq "$T/out" '.[0] | .stream_version == 3 and .reason == "stream_version"' "intent: mismatch"
run 0 "$STELE" intent "$L" --key wd-1 --stream acct-1 --expect-version 3 --type withdrawal.requested
check_eq "$(cat "$T/out")" '{"lsn":6,"decision":"new","stream_version":4}' "intent: expectation met"
run 2 "$STELE" intent "$L" --key wd-2 --expect-version 3
check_stderr_line "--expect-version without --stream"
run 0 "$STELE" resolve "$L" --key wd-1 --outcome confirmed
check_eq "$(cat "$T/out")" '{"lsn":7,"decision":"new","stream_version":5,"ref":6}' "the outcome takes the stream's next version"

# More records in other streams, interleaved.
for i in 1 2 3; do
    run 0 "$STELE" append "$L" --stream acct-2 --type noise --data "$i"
    run 0 "$STELE" append "$L" --stream acct-1 --type deposited --data "{\"amount\":$i}"
    run 0 "$STELE" append "$L" --type unstreamed --data "$i"
done

# --- read --stream: exactly the stream's records, in version order.
run 0 "$STELE" read "$L"
cp "$T/out" "$T/all"
run 0 "$STELE" read "$L" --stream acct-1
check_stderr_empty "read --stream"
check_jq "$T/out" 'map(.stream_version) == [range(1; length + 1)] and length == 8' "acct-1: versions 1..8 in order"
check_eq "$(jq -c -s 'map(.lsn)' "$T/out")" "$(jq -c -s 'map(select(.stream == "acct-1") | .lsn)' "$T/all")" "acct-1: the records the full read holds"
check_eq "$(jq -c . "$T/out")" "$(jq -c 'select(.stream == "acct-1")' "$T/all")" "acct-1: the same objects"

# read_matches JQ_SELECT ARGS...: as in test_read_filters.sh.
read_matches() {
    local sel=$1
    shift
    run 0 "$STELE" read "$L" "$@"
    check_eq "$(jq -c -s 'map(.lsn)' "$T/out")" "$(jq -c -s "map(select($sel) | .lsn)" "$T/all")" "read $*"
}
read_matches '.stream == "acct-2"' --stream acct-2
read_matches '.stream == "acct-1" and .lsn >= 7' --stream acct-1 --from 7
read_matches '.stream == "acct-1" and .lsn <= 10' --stream acct-1 --to 10
read_matches '.stream == "acct-1" and .lsn >= 4 and .lsn <= 12' --stream acct-1 --from 4 --to 12
read_matches '.stream == "acct-1" and .type == "deposited"' --stream acct-1 --type deposited
read_matches 'false' --stream acct-1 --type noise
read_matches 'false' --stream nosuchstream
run 0 "$STELE" read "$L" --stream acct-1 --limit 3
check_jq "$T/out" 'map(.stream_version) == [1,2,3]' "--stream --limit 3"
t=$(jq -r 'select(.lsn == 9) | .recorded_at' "$T/all")
read_matches ".stream == \"acct-1\" and .recorded_at >= \"$t\"" --stream acct-1 --since "$t"
read_matches ".stream == \"acct-1\" and .recorded_at <= \"$t\"" --stream acct-1 --until "$t"

# --follow on a stream prints that stream's new records only, and stops at --limit.
"$STELE" read "$L" --stream acct-3 --follow --limit 2 >"$T/follow" 2>"$T/follow.err" &
pid=$!
run 0 "$STELE" append "$L" --stream acct-2 --data '"not this one"'
run 0 "$STELE" append "$L" --stream acct-3 --expect-version 0 --data '"first"'
run 0 "$STELE" append "$L" --data '"nor this one"'
run 0 "$STELE" append "$L" --stream acct-3 --expect-version 1 --data '"second"'
for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    fail "read --stream --follow --limit 2 did not stop by itself: $(cat "$T/follow")"
fi
wait "$pid" || fail "read --stream --follow failed: $(cat "$T/follow.err")"
check_jq "$T/follow" 'map([.data, .stream_version]) == [["first",1],["second",2]]' "--stream --follow"

# --- get --key: the key's record, the same object get --lsn prints.
run 0 "$STELE" get "$L" --key open-1
cp "$T/out" "$T/bykey"
run 0 "$STELE" get "$L" --lsn 1
check_eq "$(cat "$T/bykey")" "$(cat "$T/out")" "get --key open-1 is get --lsn 1"
check_jq "$T/bykey" '.[0] | .key == "open-1" and .stream == "acct-1" and .data == {"owner":"ann"}' "get --key"
run 0 "$STELE" --human get "$L" --key open-1
grep -q '^#1 .*stream=acct-1@1.*key=open-1' "$T/out" || fail "--human get --key: $(cat "$T/out")"
run 4 "$STELE" get "$L" --key open-2
check_stderr_line "get --key of an unknown key"

run 0 "$STELE" stats "$L"
check_jq "$T/out" '.[0].index_streams == 3' "stats: three streams"
echo "ok"
