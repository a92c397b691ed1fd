# test_jsonl_invalid.sh - proves that with `stele append --jsonl` a bad input
# line gets its own {"line":N,"error":...} result, appends nothing, and does
# not disturb the lines around it (they are appended, receipts in input
# order); that input made only of bad lines leaves the log untouched; and the
# documented exit status: 2 when any line was invalid (even with conflicts),
# 3 for conflicts only, 0 for new and duplicate only.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L"

long=$(printf 'x%.0s' $(seq 256))
cat >"$T/in" <<IN
{"key":"a","data":1}
{"key":
{"key":"b","data":2}
[1,2]
{"key":"c","colour":"red"}
{"kind":"outcome","ref":1}
{"type":"$long"}
{"data_b64":"not base64!"}

{"data":1,"data_text":"two payloads"}
{"kind":"outcome","outcome":"confirmed","ref":999999}
{"expect_version":0}
{"key":"a","data":"changed"}
{"key":"a","key":"dup field"}
{"event_time":"yesterday"}
{"key":"d"}
IN
run 2 "$STELE" append "$L" --jsonl <"$T/in"
cp "$T/out" "$T/results"
check_eq "$(wc -l <"$T/results")" 16 "one result per input line"
check_jq "$T/results" 'map(.line) == [range(1; 17)]' "results in input order"
check_jq "$T/results" '[.[] | select(has("error")) | .line] == [2,4,5,6,7,8,9,10,11,12,14,15]' "exactly the bad lines get errors"
check_jq "$T/results" 'all(.[] | select(has("error")); (.error | type) == "string" and (.error | length) > 0 and .code > 0 and (has("lsn") | not))' "error results carry a message and a code and no LSN"
check_jq "$T/results" '[.[] | select(has("lsn")) | [.line, .lsn, .decision]] == [[1,1,"new"],[3,2,"new"],[13,1,"conflict"],[16,3,"new"]]' "the good lines around them were appended"
grep -q '"line":5,"error":".*unknown field \\"colour\\"' "$T/results" || fail "unknown field named: $(sed -n 5p "$T/results")"
grep -q '"line":2,"error":"invalid JSON' "$T/results" || fail "bad JSON named: $(sed -n 2p "$T/results")"
run 0 "$STELE" read "$L"
check_jq "$T/out" 'map(.key) == ["a","b","d"] and .[0].data == 1' "the log holds only the good lines"

# Only bad lines: nothing changes.
run 0 "$STELE" init "$T/empty"
printf '%s\n' '{"key":' 'nonsense' '{"kind":"sideways"}' >"$T/bad"
run 2 "$STELE" append "$T/empty" --jsonl <"$T/bad"
check_jq "$T/out" 'length == 3 and all(.[]; has("error"))' "three error results"
run 0 "$STELE" stats "$T/empty"
check_jq "$T/out" '.[0].last_lsn == 0' "the log is still empty"
run 0 "$STELE" verify "$T/empty"
check_jq "$T/out" '.[0].records == 0 and .[0].problems == 0' "and verifies clean"

# Exit status: conflicts alone give 3; duplicates and new give 0.
printf '%s\n' '{"key":"b","data":2}' '{"key":"b","data":3}' '{"key":"e"}' >"$T/conflict"
run 3 "$STELE" append "$L" --jsonl <"$T/conflict"
check_jq "$T/out" 'map(.decision) == ["duplicate","conflict","new"]' "duplicate, conflict, new"
run 0 "$STELE" append "$L" --jsonl <<<'{"key":"e"}'
check_jq "$T/out" '.[0].decision == "duplicate" and .[0].lsn == 4' "duplicate of line e"
# Stream version conflicts count as conflicts too.
printf '%s\n' '{"stream":"s","expect_version":0}' '{"stream":"s","expect_version":0}' >"$T/versions"
run 3 "$STELE" append "$L" --jsonl <"$T/versions"
check_jq "$T/out" '.[0].decision == "new" and .[1].decision == "conflict" and .[1].reason == "stream_version" and .[1].stream_version == 1' "stream version conflict"
# Empty input: no results, success.
run 0 "$STELE" append "$L" --jsonl </dev/null
[ ! -s "$T/out" ] || fail "empty input printed something"
echo "ok"
