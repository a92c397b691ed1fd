# test_backup.sh - proves `stele backup` (RELIABILITY S31, SPEC.md §17.2):
# while a background `stele append --jsonl` loop writes (small segments, so
# segments roll and seal during the copy), every backup verifies, holds LSN
# 1..N with no gap, N at least the last LSN acknowledged before the backup
# started, and every copied record is byte for byte the source's (compared
# after the writer stops); the copy opens for writing and continues at N+1;
# an idle log is copied whole; DEST must be new or empty; backup writes
# nothing to the source.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L" --segment-size 64K

last_lsn() {
    "$STELE" stats "$1" | jq .last_lsn
}

# The writer: batches of 40 events, each run of append a new writer process.
writer() {
    local i=0
    while [ ! -e "$T/stop" ]; do
        awk -v b=$i 'BEGIN { for (j = 1; j <= 40; j++) printf "{\"key\":\"w-%d-%d\",\"type\":\"tick\",\"stream\":\"s-%d\",\"data\":{\"b\":%d,\"j\":%d,\"pad\":\"%0150d\"}}\n", b, j, j % 5, b, j, j }' |
            "$STELE" append "$L" --jsonl >/dev/null || { echo "writer failed" >"$T/writer_failed"; return; }
        i=$((i + 1))
    done
}
writer &
wpid=$!
trap 'touch "$T/stop"; wait $wpid 2>/dev/null; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
until [ "$(last_lsn "$L")" -gt 600 ]; do sleep 0.05; done

for k in 1 2 3; do
    before=$(last_lsn "$L")
    run 0 "$STELE" backup "$L" "$T/copy$k"
    check_stderr_empty "backup $k"
    cp "$T/out" "$T/summary$k"
    check_jq "$T/summary$k" '.[0] | .verified == true and .last_lsn == .records and .segments >= 1' "backup $k summary"
    n=$(jq .last_lsn "$T/summary$k")
    [ "$n" -ge "$before" ] || fail "backup $k: holds LSN 1..$n, but $before were acknowledged before it started"
    run 0 "$STELE" verify "$T/copy$k"
    "$STELE" read "$T/copy$k" | jq -s -e --argjson n "$n" '[.[].lsn] == [range(1; $n + 1)]' >/dev/null ||
        fail "backup $k: LSNs are not exactly 1..$n"
    echo "$n" >"$T/n$k"
done
touch "$T/stop"
wait $wpid
[ ! -e "$T/writer_failed" ] || fail "the writer failed (a backup must not disturb it)"
run 0 "$STELE" verify "$L"
final=$(last_lsn "$L")
# At least one backup ran while segments were being sealed behind it.
[ "$(ls "$T/copy3" | grep -c '\.seg$')" -ge 3 ] || fail "setup: the log should span several segments"

# Every copied record is the source's record, byte for byte.
for k in 1 2 3; do
    n=$(cat "$T/n$k")
    [ "$n" -lt "$final" ] || fail "backup $k: the writer should have gone on after it (n=$n, final=$final)"
    "$STELE" read "$L" --to "$n" >"$T/src$k"
    "$STELE" read "$T/copy$k" >"$T/dst$k"
    cmp -s "$T/src$k" "$T/dst$k" || fail "backup $k: records differ from the source's"
done

# The copy is a log: a writer opens it and continues after N.
n=$(cat "$T/n1")
run 0 "$STELE" append "$T/copy1" --key after-backup --data 1
check_jq "$T/out" ".[0] | .lsn == $n + 1 and .decision == \"new\"" "the copy continues at N+1"
run 0 "$STELE" append "$T/copy1" --jsonl <<<'{"key":"w-0-1","type":"tick","stream":"s-1","data":{"b":0,"j":1,"pad":"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001"}}'
check_jq "$T/out" '.[0].decision == "duplicate" and .[0].lsn == 1' "the copy's index knows the keys"
run 0 "$STELE" verify "$T/copy1"

# --- an idle log is copied whole (nothing is left out for lack of a later batch)
run 0 "$STELE" backup "$L" "$T/idle"
check_jq "$T/out" ".[0].last_lsn == $final" "an idle log is copied up to its last record"
"$STELE" read "$L" >"$T/all_src"
"$STELE" read "$T/idle" >"$T/all_dst"
cmp -s "$T/all_src" "$T/all_dst" || fail "idle copy differs"
ls -l "$T/idle" | grep -q '^-r--r--r--.* 00000000000000000001.seg$' || fail "sealed copies are read-only: $(ls -l "$T/idle")"

# --- an empty log, and an empty existing DEST
run 0 "$STELE" init "$T/empty"
mkdir "$T/emptydest"
run 0 "$STELE" backup "$T/empty" "$T/emptydest"
check_jq "$T/out" '.[0] | .last_lsn == 0 and .verified' "empty log"

# --- refusals: DEST not empty, DEST a file, no log; nothing written to DEST
run 2 "$STELE" backup "$L" "$T/copy1"
check_stderr_line "DEST not empty"
touch "$T/afile"
run 2 "$STELE" backup "$L" "$T/afile"
check_stderr_line "DEST a file"
run 4 "$STELE" backup "$T/nosuch" "$T/new"
check_stderr_line "no log"
[ ! -e "$T/new" ] || fail "a failed backup of no log created DEST"
run 2 "$STELE" backup "$L"
run 0 "$STELE" backup --help
grep -q '^EXIT STATUS' "$T/out" || fail "--help is a manual page"
echo "ok"
