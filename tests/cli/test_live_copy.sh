# test_live_copy.sh - proves RELIABILITY S31 (SPEC.md §14, §17.2): a log's
# directory copied file by file while a writer appends is either a valid
# prefix of the log holding every record acknowledged before the copy began,
# or refused with an error that names what is wrong - never a log that opens
# with a hole, a phantom or a duplicate; and `stele backup` under the same
# writer always succeeds with such a prefix.
#
# How: a background writer runs `stele append --jsonl` processes one after
# the other, each appending a batch of 20 keyed events (64 KiB segments, so
# segments roll and seal every few batches), and after each process exits 0
# adds the batch number to an acknowledgement file. Before each copy the test
# waits until the writer has acknowledged 1-3 more batches (a random number),
# notes how many batches were acknowledged, then copies the live log: with
# `cp -r` (readdir order, one pass), file by file in name order waiting
# for the writer to acknowledge another batch before the last few files (as a
# slow rsync), file by file with the last segment copied in 4 KiB chunks,
# waiting for another batch halfway (so a batch lands mid-copy, and a seal
# when the segment fills), or segment by segment listing the directory again
# each time, waiting after the active segment N until the writer has made
# N+1 (as a tool making several passes: a copy with a hole at the end of N);
# or runs `stele backup`; or, with the writer held between two batches,
# copies the quiet log with `cp -r`. Every wait is on a condition (a batch
# acknowledged, a segment made, the writer holding), never on a time slice,
# so the same copies are made on an idle or a loaded machine. After the
# writer stops,
# each copy is opened with `stele verify` and `stele read`:
#  - either verify exits 0 with no problem, read exits 0, and the copy is
#    LSN 1..N without a gap, every record byte for byte the source's record
#    at that LSN (so no phantom and no duplicate: the source's keys are
#    unique), N covering every key acknowledged before the copy began;
#  - or verify exits 5 with a problem line naming a file of the copy, and
#    read either exits non-zero with one "stele: ..." line or returns a
#    prefix that passes the same checks (read and verify must not both
#    accept a copy that is not such a prefix).
# Every backup and every quiet copy must take the first branch (so the
# checks of a clean copy's contents always run); the log rolls during the
# copies (each relisting copy waits for a new segment). A raw copy that opened clean is then
# opened by a writer: the key of its last record is a duplicate, the key of
# the source's next record (which a copied index checkpoint may hold) is new
# at N+1.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L" --segment-size 64K

BATCH=20
COPIES=${STELE_LIVE_COPIES:-30}

# One batch's events: keys w-B-1..w-B-20, payloads derived from the key.
batch_events() {
    awk -v b="$1" -v n=$BATCH 'BEGIN { for (j = 1; j <= n; j++) printf "{\"key\":\"w-%d-%d\",\"type\":\"tick\",\"stream\":\"s-%d\",\"data\":{\"b\":%d,\"j\":%d,\"pad\":\"%0200d\"}}\n", b, j, j % 5, b, j, b * 100 + j }'
}

# The writer holds between two batches while $T/hold exists (saying so with
# $T/held), for the quiet copies.
writer() {
    local b=1
    while [ ! -e "$T/stop" ]; do
        if [ -e "$T/hold" ]; then
            touch "$T/held"
            while [ -e "$T/hold" ] && [ ! -e "$T/stop" ]; do sleep 0.01; done
            rm -f "$T/held"
            continue
        fi
        batch_events $b | "$STELE" append "$L" --jsonl >/dev/null 2>"$T/writer.err" ||
            { echo "batch $b: exit $?" >"$T/writer_failed"; return; }
        echo $b >>"$T/acked"
        b=$((b + 1))
    done
}

# acked_now: the number of batches acknowledged so far (complete lines only).
acked_now() {
    local n
    n=$(wc -l <"$T/acked" 2>/dev/null || echo 0)
    echo "$n"
}

# wait_for WHAT CONDITION...: polls the condition (a command) until it holds.
# The deadline only turns a writer that stopped into a failure naming it
# instead of a hang; nothing waits for a time to pass.
wait_for() {
    local what=$1 deadline=$((SECONDS + 90))
    shift
    until "$@"; do
        [ ! -e "$T/writer_failed" ] || fail "the writer failed: $(cat "$T/writer_failed") $(cat "$T/writer.err")"
        ((SECONDS < deadline)) || fail "waited 90 s for $what"
        sleep 0.01
    done
}
acked_at_least() { [ "$(acked_now)" -ge "$1" ]; }
segments_at_least() { [ "$(ls "$L" | grep -c '\.seg$')" -ge "$1" ]; }
# wait_batch: until the writer has acknowledged one more batch than now.
wait_batch() {
    local want=$(($(acked_now) + 1))
    wait_for "batch $want" acked_at_least $want
}

# The ways of copying a live directory without the tool.
# cp complains (exit 1) when a file it listed is gone, e.g. a temporary file
# renamed meanwhile; it copies the rest, and a user may well carry on.
copy_cp() {
    cp -r "$L" "$1" 2>/dev/null || true
}
# The quiet copy: the writer held between two batches, nothing changes.
copy_quiet() {
    touch "$T/hold"
    wait_for "the writer to hold" test -e "$T/held"
    cp -r "$L" "$1"
    rm "$T/hold"
}
copy_slow() {
    mkdir "$1"
    local f files waited=0
    files=($(ls "$L"))
    for f in "${files[@]}"; do
        # Sealed segments go fast; before the last few files a batch lands.
        if [[ ! $f < ${files[-6]} ]] && ((waited++ == 0)); then wait_batch; fi
        cp "$L/$f" "$1/$f" 2>/dev/null || true # a file may vanish (a temp renamed)
    done
}
# A copy that lists the directory again before each segment, as a tool
# making several passes would: after copying the last (active) segment N it
# waits until the writer has made N+1 (N is then sealed) and copies that
# too - a copy with a hole at the end of N, which must be refused.
copy_relist() {
    mkdir "$1"
    local f last segs pauses=0
    while f=$(comm -23 <(ls "$L" | grep '\.seg$') <(ls "$1" | grep '\.seg$') | head -1) && [ -n "$f" ]; do
        segs=$(ls "$L" | grep -c '\.seg$')
        last=$(ls "$L" | grep '\.seg$' | tail -1)
        cp "$L/$f" "$1/$f" 2>/dev/null || true
        if [ "$f" = "$last" ]; then
            ((pauses++ < 1)) || break
            wait_for "segment $((segs + 1))" segments_at_least $((segs + 1))
        fi
    done
    cp "$L/stele.meta" "$1/"
}
copy_chunked() {
    mkdir "$1"
    local f last size off
    last=$(ls "$L" | grep '\.seg$' | tail -1)
    for f in $(ls "$L"); do
        if [ "$f" != "$last" ]; then
            cp "$L/$f" "$1/$f" 2>/dev/null || true
            continue
        fi
        size=$(stat -c %s "$L/$f")
        for ((off = 0; off < size; off += 4096)); do
            dd if="$L/$f" of="$1/$f" bs=4096 skip=$((off / 4096)) seek=$((off / 4096)) count=1 conv=notrunc status=none
            ((off != size / 8192 * 4096)) || wait_batch
        done
    done
}

touch "$T/acked"
writer &
wpid=$!
trap 'touch "$T/stop"; wait $wpid 2>/dev/null; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
wait_for "10 batches" acked_at_least 10

segs_at_start=$(ls "$L" | grep -c '\.seg$')
for ((k = 1; k <= COPIES; k++)); do
    wait_for "more batches" acked_at_least $(($(acked_now) + 1 + RANDOM % 3))
    acked=$(acked_now)
    case $((k % 6)) in
    0) how=backup ;;
    1) how=cp ;;
    2) how=slow ;;
    3) how=chunked ;;
    4) how=relist ;;
    5) how=quiet ;;
    esac
    echo "$how $acked" >"$T/c$k.meta"
    if [ $how = backup ]; then
        "$STELE" backup "$L" "$T/c$k" >"$T/c$k.backup" 2>"$T/c$k.backup_err" || echo $? >"$T/c$k.backup_rc"
    else
        copy_$how "$T/c$k"
    fi
    [ ! -e "$T/writer_failed" ] || fail "the writer failed: $(cat "$T/writer_failed") $(cat "$T/writer.err")"
done
copies=$COPIES
touch "$T/stop"
wait $wpid
[ ! -e "$T/writer_failed" ] || fail "the writer failed: $(cat "$T/writer_failed") $(cat "$T/writer.err")"
run 0 "$STELE" verify "$L"
final=$(jq .last_lsn "$T/out")
segs_at_end=$(ls "$L" | grep -c '\.seg$')
[ "$segs_at_end" -ge $((segs_at_start + 5)) ] ||
    fail "setup: the log should roll during the copies (segments $segs_at_start -> $segs_at_end)"
"$STELE" read "$L" >"$T/src"
jq -r .key "$T/src" | sort | uniq -d >"$T/dups"
[ ! -s "$T/dups" ] || fail "the source holds keys twice: $(head -3 "$T/dups")"
check_eq "$(wc -l <"$T/src")" "$final" "the source is LSN 1..$final"

# check_prefix K FILE: FILE (stele read's output of copy K) is the source's
# LSN 1..N for some N, byte for byte, and holds every batch acknowledged
# before copy K began. Prints N.
check_prefix() {
    local k=$1 file=$2 n acked
    acked=$(cut -d' ' -f2 "$T/c$k.meta")
    n=$(wc -l <"$file")
    [ "$n" -le "$final" ] || fail "copy $k ($(cut -d' ' -f1 "$T/c$k.meta")): $n records, more than the source's $final"
    head -n "$n" "$T/src" | cmp -s - "$file" ||
        fail "copy $k ($(cut -d' ' -f1 "$T/c$k.meta")): its $n records are not the source's LSN 1..$n byte for byte (hole, phantom or duplicate)"
    # Every key acknowledged before the copy began is among them.
    jq -r .key "$file" | sort >"$T/keys_have"
    awk -v a="$acked" -v n=$BATCH 'BEGIN { for (b = 1; b <= a; b++) for (j = 1; j <= n; j++) print "w-" b "-" j }' |
        sort >"$T/keys_want"
    comm -23 "$T/keys_want" "$T/keys_have" >"$T/keys_lost"
    [ ! -s "$T/keys_lost" ] ||
        fail "copy $k ($(cut -d' ' -f1 "$T/c$k.meta")): lost $(wc -l <"$T/keys_lost") records acknowledged before the copy began, e.g. $(head -1 "$T/keys_lost")"
    echo "$n"
}

clean=0 refused=0 raw_clean=0 torn=0 backups=0
: >"$T/refusals"
for ((k = 1; k <= copies; k++)); do
    how=$(cut -d' ' -f1 "$T/c$k.meta")
    if [ $how = backup ]; then
        [ ! -e "$T/c$k.backup_rc" ] || fail "backup $k failed (exit $(cat "$T/c$k.backup_rc")): $(cat "$T/c$k.backup_err")"
        [ ! -s "$T/c$k.backup_err" ] || fail "backup $k: stderr: $(cat "$T/c$k.backup_err")"
        backups=$((backups + 1))
    fi
    vrc=0
    "$STELE" verify "$T/c$k" >"$T/v$k" 2>"$T/v$k.err" || vrc=$?
    rrc=0
    "$STELE" read "$T/c$k" >"$T/r$k" 2>"$T/r$k.err" || rrc=$?
    if [ $vrc = 0 ]; then
        check_jq "$T/v$k" 'length == 1 and .[0].problems == 0' "copy $k ($how): a clean verify reports no problem"
        [ $rrc = 0 ] || fail "copy $k ($how): verify accepts it but read fails: $(cat "$T/r$k.err")"
        n=$(check_prefix $k "$T/r$k")
        check_eq "$(jq .last_lsn "$T/v$k")" "$n" "copy $k ($how): verify's last LSN is read's"
        if [ $how = backup ]; then
            check_eq "$(jq .last_lsn "$T/c$k.backup")" "$n" "backup $k: its summary's last LSN"
        else
            raw_clean=$((raw_clean + 1))
            [ "$(jq .torn_bytes "$T/v$k")" = 0 ] || torn=$((torn + 1))
            # The copy is a log: a writer opens it (recovery cuts any torn
            # tail; the copied index checkpoint may cover records past N
            # and must not be trusted). Its last record's key is a
            # duplicate; the source's next record, absent from the copy,
            # is new at N+1.
            sed -n "${n}p;$((n + 1))p" "$T/src" | jq -c '{key, type, stream, data}' >"$T/again"
            [ "$n" -lt "$final" ] || echo '{"key":"after-copy","data":1}' >>"$T/again"
            run 0 "$STELE" append "$T/c$k" --jsonl <"$T/again"
            check_jq "$T/out" ".[0].lsn == $n and .[0].decision == \"duplicate\" and .[1].lsn == $n + 1
                and .[1].decision == \"new\"" "copy $k ($how): a writer knows the copy's keys, not the later ones, and continues at N+1"
            run 0 "$STELE" verify "$T/c$k"
        fi
        clean=$((clean + 1))
    else
        [ $how != backup ] || fail "backup $k: the copy does not verify (exit $vrc): $(cat "$T/v$k")"
        [ $how != quiet ] || fail "quiet copy $k: a copy of a log no one writes does not verify (exit $vrc): $(cat "$T/v$k")"
        [ $vrc = 5 ] || fail "copy $k ($how): verify exit $vrc, expected 0 or 5: $(cat "$T/v$k.err")"
        check_jq "$T/v$k" '(last.problems >= 1) and (.[:-1] | length >= 1 and all(.[]; (.problem | length > 0) and (.path | type == "string")))' \
            "copy $k ($how): a refused copy names each problem and its file"
        if [ $rrc = 0 ]; then
            check_prefix $k "$T/r$k" >/dev/null
        else
            grep -q '^stele: ' "$T/r$k.err" || fail "copy $k ($how): read fails without saying why: $(cat "$T/r$k.err")"
        fi
        jq -s -r --arg how $how '$how + ": " + ([.[] | .problem // empty][0])' "$T/v$k" >>"$T/refusals"
        refused=$((refused + 1))
    fi
done
check_eq "$backups" $((COPIES / 6)) "setup: backups made"
check_eq "$(grep -l '^quiet ' "$T"/c*.meta | wc -l)" $(((COPIES + 1) / 6)) "setup: quiet copies made"
echo "$copies copies of a live log ($backups backups), final LSN $final: $clean opened clean ($raw_clean raw, $torn of them with a torn tail cut), $refused refused"
sort "$T/refusals" | uniq -c
echo "ok"
