# test_verify.sh - proves `stele verify`: on a clean log of several sealed
# 64 KiB segments it exits 0, prints only the summary (counts that match the
# log) and nothing on stderr in a pipe; after one byte of a sealed segment is
# flipped it exits 5 with one JSON line per problem naming the file, offset
# and LSN, and the other read commands refuse the damaged records with exit 5.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L" --segment-size 64K

# 400 events of about 1 KiB: enough to fill and seal several segments.
pad=$(printf 'abcdefghijklmnopqrstuvwxyz0123456789%.0s' $(seq 28))
for i in $(seq 400); do
    printf '{"type":"filler","key":"k-%d","data":{"n":%d,"pad":"%s"}}\n' "$i" "$i" "$pad"
done >"$T/in"
run 0 "$STELE" append "$L" --jsonl <"$T/in"

run 0 "$STELE" verify "$L"
check_stderr_empty "verify in a pipe shows no progress"
check_eq "$(wc -l <"$T/out")" 1 "a clean verify prints only the summary"
check_jq "$T/out" '.[0] | .problems == 0 and .records == 400 and .last_lsn == 400 and .segments >= 4
    and .batches >= .segments - 1 and .bytes > 400000 and .torn_bytes == 0' "clean summary"
segments=$(jq .segments "$T/out")

# The sealed segments are read-only files (checked by mode bits: root may
# write anything); pick the second one.
sealed=()
for f in "$L"/*.seg; do
    [[ $(basename "$f") =~ ^[0-9]{20}\.seg$ ]] || fail "segment file name $f"
    if [[ $(stat -c %A "$f") != ??w* ]]; then
        sealed+=("$f")
    fi
done
[ "${#sealed[@]}" -ge 3 ] || fail "expected at least 3 sealed segments, found ${#sealed[@]}"
victim=${sealed[1]}
first_lsn=$((10#$(basename "$victim" .seg)))
cp -r "$L" "$T/pristine"
chmod u+w "$victim"
flip_byte "$victim" 6000

run 5 "$STELE" verify "$L"
check_stderr_line "verify reports corruption"
cp "$T/out" "$T/report"
check_jq "$T/report" 'length >= 2 and (last | .problems >= 1 and .segments == '"$segments"')' "summary counts the problem"
check_jq "$T/report" '(.[:-1] | length) == (last.problems) and all(.[:-1][]; has("problem") and has("path") and has("offset") and has("lsn"))' "one JSON line per problem"
check_jq "$T/report" '.[0].path | endswith("'"$(basename "$victim")"'")' "the problem names the damaged file"
check_jq "$T/report" '.[0].lsn >= '"$first_lsn"' and .[0].offset >= 4096' "the problem names an LSN and offset inside it"

run 5 "$STELE" read "$L"
check_stderr_line "read over a damaged record"
run 5 "$STELE" get "$L" --lsn "$first_lsn"
run 5 "$STELE" --human verify "$L"
grep -q '^problem: .*'"$(basename "$victim")"' at offset' "$T/out" || fail "--human problem line: $(cat "$T/out")"
# Records outside the damaged segment are still served.
run 0 "$STELE" get "$L" --lsn 1

# Nothing was repaired behind our back: the damage is still there.
cmp -s "$victim" "$T/pristine/$(basename "$victim")" && fail "the damaged segment was rewritten"
run 0 "$STELE" verify "$T/pristine"
echo "ok"
