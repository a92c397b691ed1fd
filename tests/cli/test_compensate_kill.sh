# test_compensate_kill.sh - proves RELIABILITY S34 (SPEC.md §14, §17.1):
# `stele compensate` over thousands of targets, and `stele backfill`, killed
# with SIGKILL at several random moments and re-run until they complete,
# leave every target compensated exactly once, every line imported exactly
# once, and history unedited:
#  - compensate --from 1 --to N over N events: killed while opening (a few
#    milliseconds after start) and after a random number of new
#    compensations, five times or more, then re-run until it exits 0. Then
#    the log is the N original records, byte for byte as before (read back,
#    and the segments sealed before the first run are the same files), then
#    exactly N compensations, one per target (counted per ref), each in its
#    target's stream; verify is clean; one more run selects N and reports
#    all of them already compensated, appending nothing;
#  - backfill of a 60,000-line file, killed three times after a random
#    number of imported groups, then re-run: every key once, LSNs dense, the
#    re-run counts as duplicates exactly what the killed runs imported;
#  - compensate --backfill-run on a 2,500-line subset of that file, killed
#    the same way: every record of the subset compensated once, no other
#    record, and a further run reports them all already compensated.
source "$(dirname "$0")/lib.sh"

last_lsn() {
    "$STELE" stats "$1" 2>/dev/null | jq .last_lsn
}

# kill_run LOG MODE CMD...: starts CMD in the background and kills it with
# SIGKILL: MODE "early" after 0-29 ms, MODE "after:K" once LOG's last LSN
# has grown by K (or when CMD exits by itself: the caller checks with the
# LSNs that it did not). Sets killed_lsn_before and killed_lsn_after.
kill_run() {
    local log=$1 mode=$2 pid target
    shift 2
    killed_lsn_before=$(last_lsn "$log")
    "$@" >"$T/killed.out" 2>"$T/killed.err" &
    pid=$!
    if [ "$mode" = early ]; then
        sleep 0.0$((RANDOM % 3))$((RANDOM % 10))
    else
        target=$((killed_lsn_before + ${mode#after:}))
        while kill -0 $pid 2>/dev/null; do
            [ "$(last_lsn "$log")" -lt "$target" ] || break
            sleep 0.005
        done
    fi
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    killed_lsn_after=$(last_lsn "$log")
}

# rerun_until_done WHAT CMD...: runs CMD without interruption until it exits
# 0 (at most 3 times: a run can only fail here if the log refuses it).
rerun_until_done() {
    local what=$1 i rc
    shift
    for i in 1 2 3; do
        rc=0
        "$@" >"$T/out" 2>"$T/err" || rc=$?
        [ $rc != 0 ] || return 0
        echo "$what: run $i exit $rc: $(cat "$T/err")" >&2
    done
    fail "$what never completed"
}

# ------------------------------------------------------------ compensate --from
L=$T/log
N=3000
run 0 "$STELE" init "$L" --segment-size 64K
awk -v n=$N 'BEGIN { for (i = 1; i <= n; i++) printf "{\"key\":\"ch-%d\",\"type\":\"charge\",\"stream\":\"acct-%d\",\"data\":{\"i\":%d,\"amount\":%d}}\n", i, i % 40, i, 3 * i }' >"$T/events.jsonl"
run 0 "$STELE" append "$L" --jsonl <"$T/events.jsonl"
"$STELE" read "$L" >"$T/orig"
check_eq "$(wc -l <"$T/orig")" $N "setup: $N events"
# Sealed segments are the read-only ones (by mode bits: root may write anything).
(cd "$L" && for f in *.seg; do [[ $(stat -c %A "$f") == ??w* ]] || sha256sum "$f"; done) >"$T/sealed.sha"
[ "$(wc -l <"$T/sealed.sha")" -ge 2 ] || fail "setup: the events should fill sealed segments"

COMP=("$STELE" compensate "$L" --from 1 --to $N --reason "charged twice" --actor ops)
landed=0
for mode in early after:$((100 + RANDOM % 250)) after:$((100 + RANDOM % 250)) early after:$((100 + RANDOM % 250)) \
    after:$((100 + RANDOM % 250)) after:$((100 + RANDOM % 250)); do
    kill_run "$L" "$mode" "${COMP[@]}"
    done_now=$((killed_lsn_after - N))
    [ $done_now -lt $N ] || fail "setup: a run completed before it was killed ($mode)"
    if [ "$killed_lsn_after" -gt "$killed_lsn_before" ]; then
        landed=$((landed + 1))
    fi
done
[ $landed -ge 5 ] || fail "setup: only $landed kills landed while compensations were being appended"
before_rerun=$((killed_lsn_after - N))
echo "compensate --from: $N targets, 7 kills ($landed while appending), $before_rerun compensated before the re-run"
rerun_until_done "compensate --from after kills" "${COMP[@]}"
check_jq "$T/out" "last | .selected == $N and .already_compensated == $before_rerun and .compensated == $N - $before_rerun
    and .refused == 0 and .skipped == 0" "the re-run completes the killed ones"
check_jq "$T/out" '.[:-1] | length == '$N' and ([.[].ref] == [range(1; '$N' + 1)])' "one line per target, in LSN order"

check_eq "$(last_lsn "$L")" $((2 * N)) "N events, then N compensations"
"$STELE" read "$L" --to $N | cmp -s - "$T/orig" || fail "an original record changed"
(cd "$L" && sha256sum -c --quiet "$T/sealed.sha") || fail "a segment sealed before the runs changed"
"$STELE" read "$L" --from $((N + 1)) >"$T/comps"
check_jq "$T/comps" 'all(.[]; .kind == "compensation" and .actor == "ops" and .data == {"reason":"charged twice"})' \
    "everything appended is a compensation"
check_jq "$T/comps" '[group_by(.ref)[] | length] | (length == '$N' and all(.[]; . == 1))' "every target compensated exactly once"
check_jq "$T/comps" '([.[].ref] | sort) == [range(1; '$N' + 1)]' "the targets are exactly LSN 1..N"
jq -s --slurpfile o "$T/orig" -e '[.[] | [.ref, .stream]] | sort == ($o | map([.lsn, .stream]) | sort)' "$T/comps" >/dev/null ||
    fail "a compensation is not in its target's stream"
run 0 "$STELE" verify "$L"
run 0 "${COMP[@]}"
check_jq "$T/out" "last | .selected == $N and .already_compensated == $N and .compensated == 0" "a further run: all already compensated"
check_eq "$(last_lsn "$L")" $((2 * N)) "a further run appends nothing"
run 0 "$STELE" status "$L" --key ch-1
check_jq "$T/out" '.[0].state == "compensated"' "the key's state"

# ------------------------------------------------------------ backfill
B=$T/bf
M=60000
run 0 "$STELE" init "$B" --segment-size 1M
awk -v n=$M 'BEGIN { for (i = 1; i <= n; i++) printf "{\"key\":\"old-%d\",\"type\":\"charge\",\"stream\":\"acct-%d\",\"event_time\":%d,\"data\":{\"i\":%d}}\n", i, i % 97, 1000000000 + i, i }' >"$T/big.jsonl"
for k in 1 2 3; do
    kill_run "$B" after:$((1 + RANDOM % 2000)) "$STELE" backfill "$B" "$T/big.jsonl"
    [ "$killed_lsn_after" -lt $M ] || fail "setup: backfill completed before kill $k"
done
got=$(last_lsn "$B")
echo "backfill: $M lines, 3 kills, $got imported before the re-run"
[ "$got" -gt 0 ] || fail "setup: the killed backfills imported nothing"
rerun_until_done "backfill after kills" "$STELE" backfill "$B" "$T/big.jsonl"
check_jq "$T/out" ".[0] | .new + .duplicate == $M and .duplicate == $got and .conflict == 0" "the re-run completes the killed ones"
"$STELE" read "$B" >"$T/bf_all"
check_jq "$T/bf_all" "length == $M and ([.[].lsn] == [range(1; $M + 1)]) and ([.[].key] | unique | length) == $M
    and all(.[]; .backfilled)" "every line exactly once, LSNs dense"
run 0 "$STELE" verify "$B"

# ------------------------------------------------------------ compensate --backfill-run
awk 'NR % 24 == 5' "$T/big.jsonl" >"$T/sub.jsonl"
S=$(wc -l <"$T/sub.jsonl")
jq -r .key "$T/sub.jsonl" | LC_ALL=C sort >"$T/sub_keys"
jq -r '"\(.key) \(.lsn)"' "$T/bf_all" | LC_ALL=C sort >"$T/key_lsn"
LC_ALL=C join "$T/sub_keys" "$T/key_lsn" | cut -d' ' -f2 | sort -n >"$T/sub_lsns"
check_eq "$(wc -l <"$T/sub_lsns")" "$S" "setup: every line of the subset was imported"
BCOMP=("$STELE" compensate "$B" --backfill-run "$T/sub.jsonl" --reason "imported twice")
landed=0
for mode in early after:$((100 + RANDOM % 300)) after:$((100 + RANDOM % 300)) after:$((100 + RANDOM % 300)); do
    kill_run "$B" "$mode" "${BCOMP[@]}"
    [ $((killed_lsn_after - M)) -lt "$S" ] || fail "setup: a --backfill-run run completed before it was killed ($mode)"
    if [ "$killed_lsn_after" -gt "$killed_lsn_before" ]; then
        landed=$((landed + 1))
    fi
done
[ $landed -ge 3 ] || fail "setup: only $landed kills of --backfill-run landed mid-run"
before_rerun=$((killed_lsn_after - M))
echo "compensate --backfill-run: $S targets, 4 kills ($landed while appending), $before_rerun compensated before the re-run"
rerun_until_done "compensate --backfill-run after kills" "${BCOMP[@]}"
check_jq "$T/out" "last | .selected == $S and .already_compensated == $before_rerun and .compensated == $S - $before_rerun
    and .refused == 0 and .not_found == 0" "the --backfill-run re-run completes the killed ones"
check_eq "$(last_lsn "$B")" $((M + S)) "the imported records, then one compensation per line of the subset"
"$STELE" read "$B" --to $M | cmp -s - "$T/bf_all" || fail "a backfilled record changed"
"$STELE" read "$B" --from $((M + 1)) | jq -s -r 'map(select(.kind == "compensation")) | .[].ref' | sort -n >"$T/refs"
cmp -s "$T/refs" "$T/sub_lsns" || fail "the compensations are not one per record of the subset: $(diff "$T/refs" "$T/sub_lsns" | head -5)"
run 0 "$STELE" verify "$B"
run 0 "${BCOMP[@]}"
check_jq "$T/out" "last | .selected == $S and .already_compensated == $S and .compensated == 0" "a further --backfill-run: all already compensated"
check_eq "$(last_lsn "$B")" $((M + S)) "a further --backfill-run appends nothing"
echo "ok"
