# test_dump.sh - proves `stele dump` (SPEC.md §17.3): every segment file is
# listed in LSN order with its header fields and state (sealed or active);
# every batch with its offset (from 4096, each frame after the previous one),
# LSN range and compression; every record once, with LSN, offset in its batch,
# kind, type, key and stream@version; the active segment's walk stops at the
# written end and says so; --segment N lists one segment (4 when none); a
# changed byte in a sealed segment is listed up to the problem and exits 5;
# dump writes nothing.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L" --segment-size 64K
awk 'BEGIN { for (i = 1; i <= 800; i++) printf "{\"key\":\"k-%d\",\"type\":\"order.placed\",\"stream\":\"o-%d\",\"data\":{\"i\":%d,\"pad\":\"%0100d\"}}\n", i, i % 7, i, i }' >"$T/in.jsonl"
run 0 "$STELE" append "$L" --jsonl <"$T/in.jsonl"
run 0 "$STELE" intent "$L" --key pay-1 --type 'pay ment' --stream p-1          # 801
run 0 "$STELE" resolve "$L" --key pay-1 --outcome confirmed                     # 802
files=$(ls "$L" | grep -c '\.seg$')
[ "$files" -ge 3 ] || fail "setup: expected several segments, got $files"
cp -r "$L" "$T/before"

run 0 "$STELE" dump "$L"
check_stderr_empty "dump"
D=$T/dump
cp "$T/out" "$D"
grep -q "^log $L id=[0-9a-f]\{32\} .* last_lsn=802 segments=$files$" "$D" || fail "log line: $(head -1 "$D")"
check_eq "$(grep -c '^segment ' "$D")" "$files" "one line per segment file"
check_eq "$(grep '^segment ' "$D" | awk '{print $2}' | tr '\n' ' ')" "$(ls "$L" | grep '\.seg$' | tr '\n' ' ')" "segments in LSN order"
check_eq "$(grep -c '^segment .* sealed sealed_at=' "$D")" $((files - 1)) "all but the last are sealed"
grep '^segment ' "$D" | tail -1 | grep -q ' active$' || fail "the last segment is active"
grep -q '^segment 00000000000000000001.seg seq=1 first_lsn=1 file_size=[0-9]* capacity=65536 ' "$D" || fail "first segment line"
# Records: every LSN exactly once, in order.
check_eq "$(grep -c "^    record " "$D")" 802 "every record listed once"
check_eq "$(grep '^    record ' "$D" | sed 's/.*lsn=\([0-9]*\) .*/\1/' | tr '\n' ' ')" "$(seq 1 802 | tr '\n' ' ')" "records in LSN order"
grep -q '^    record lsn=1 +0 size=[0-9]* kind=event type=order.placed key=k-1 stream=o-1@1 payload=[0-9]*B content=json$' "$D" ||
    fail "record line: $(grep 'lsn=1 ' "$D")"
grep -q '^    record lsn=801 +0 size=[0-9]* kind=intent type=pay\\x20ment key=pay-1 stream=p-1@1 ' "$D" || fail "escaped type: $(grep 'lsn=801 ' "$D")"
grep -q '^    record lsn=802 .* kind=outcome outcome=confirmed .* ref=801 ' "$D" || fail "outcome record: $(grep 'lsn=802 ' "$D")"
# Batches: each segment's first at 4096, each next at offset + frame; LSN ranges tile 1..802.
awk '/^segment /{ next_off = 4096 } /^  batch /{
        split($2, o, "@"); split($3, f, "="); split($4, l, "[=-]");
        if (o[2] != next_off) { print "batch at " o[2] " expected " next_off; bad = 1 }
        next_off = o[2] + f[2];
        if (l[2] != next_lsn + 1) { print "batch lsns " $4 " after " next_lsn; bad = 1 }
        next_lsn = l[3] }
     END { if (next_lsn != 802) { print "last batch ends at " next_lsn; bad = 1 } exit bad }' "$D" || fail "batch offsets and LSNs"
check_eq "$(grep -c '^  end .*: footer$' "$D")" $((files - 1)) "sealed walks end at the footer"
grep '^  end ' "$D" | tail -1 | grep -q 'last_lsn=802 .*: all zero (end of written data)$' || fail "active walk end: $(grep '^  end' "$D" | tail -1)"

# --- one segment
second=$(ls "$L" | grep '\.seg$' | sed -n 2p)
n=$((10#${second%.seg}))
run 0 "$STELE" dump "$L" --segment $n
check_eq "$(grep -c '^segment ' "$T/out")" 1 "--segment lists one"
grep -q "^segment $second seq=2 first_lsn=$n " "$T/out" || fail "--segment $n: $(grep '^segment' "$T/out")"
run 4 "$STELE" dump "$L" --segment 99999
check_stderr_line "no such segment"
run 2 "$STELE" dump "$L" --segment 0
run 4 "$STELE" dump "$T/nosuch"

# --- compressed batches
run 0 "$STELE" init "$T/z" --compression zstd
run 0 "$STELE" append "$T/z" --jsonl <"$T/in.jsonl"
run 0 "$STELE" dump "$T/z"
grep -q '^  batch .* compression=zstd stored=[0-9]* raw=[0-9]* ' "$T/out" || fail "a zstd batch: $(grep batch "$T/out" | head -2)"
check_eq "$(grep -c "^    record " "$T/out")" 800 "records of compressed batches"

# --- dump wrote nothing
diff -r "$L" "$T/before" >/dev/null || fail "dump changed the log"

# --- a changed byte in a sealed segment: listed up to the problem, exit 5
chmod u+w "$L/00000000000000000001.seg"
flip_byte "$L/00000000000000000001.seg" $((4096 + 200))
run 5 "$STELE" dump "$L"
grep -q '^segment 00000000000000000001.seg .* sealed' "$T/out" || fail "the damaged segment is still listed"
grep -q "^stele: dump: segment .*00000000000000000001.seg: .*offset 4096" "$T/err" || fail "the problem names file and offset: $(cat "$T/err")"
check_eq "$(grep -c '^segment ' "$T/out")" "$files" "the other segments are listed too"
run 0 "$STELE" dump --help
grep -q '^EXIT STATUS' "$T/out" || fail "--help is a manual page"
echo "ok"
