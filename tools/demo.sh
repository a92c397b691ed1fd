#!/usr/bin/env bash
# demo.sh BUILD_DIR - stele's main job, shown end to end on a scratch log:
#
#   1. a producer streams keyed payment events into `stele append --jsonl`;
#   2. the appender is killed with SIGKILL in mid-stream, after thousands of
#      acknowledgements were printed;
#   3. `stele verify` finds every byte intact (a torn tail is not damage);
#   4. every acknowledged event is in the log at its LSN with its key and
#      payload, and nothing else is (no phantom, no hole);
#   5. the producer, not knowing what got through, resends everything: what
#      is already in the log comes back as `duplicate`, the rest is appended
#      once, and the log ends with each event exactly once.
#
# Needs jq. Exits non-zero if any check fails.
set -euo pipefail

BUILD=${1:?usage: tools/demo.sh BUILD_DIR}
STELE=$BUILD/tools/stele
[ -x "$STELE" ] || { echo "demo: no stele binary at $STELE; build first" >&2; exit 2; }
command -v jq >/dev/null || { echo "demo: this demo needs jq" >&2; exit 2; }

N=100000          # events the producer has to send
KILL_AFTER=12345  # acknowledgements to wait for before the kill
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stele-demo.XXXXXX")
LOG=$WORK/log
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    chmod -R u+w "$WORK" 2>/dev/null || true # sealed segments are read-only
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n%s\n' "$*"; }
die() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }

# generate FROM TO [THROTTLE]: events FROM..TO, one JSON object per line. The
# payload is a function of n, so any record can be checked on its own. With
# THROTTLE the producer pauses briefly every 1,000 events, as a real one
# would, so that the kill lands in mid-stream on a fast machine too.
generate() {
    awk -v from="$1" -v to="$2" -v throttle="${3:-0}" 'BEGIN {
        for (n = from; n <= to; n++) {
            printf "{\"type\":\"payment.captured\",\"key\":\"payment-%d\",\"stream\":\"customer-%d\",", n, n % 100
            printf "\"actor\":\"demo\",\"data\":{\"n\":%d,\"amount_cents\":%d,\"memo\":\"order %d\"}}\n", n, (n * 7919) % 100000, n
            if (throttle && n % 1000 == 0) { fflush(); system("sleep 0.005") }
        }
    }'
}
# The payload event n was sent with, as jq computes it.
EXPECTED='def expected(n): {n: n, amount_cents: ((n * 7919) % 100000), memo: "order \(n)"};'

say "Creating a new log in $LOG, with 1 MiB segments so that several fill up and are sealed."
"$STELE" init "$LOG" --segment-size 1M --durability sync

say "Starting 'stele append --jsonl' and a producer that sends $N keyed payment events to it."
echo "Each result line is printed only once its event is on stable storage (durability sync)."
mkfifo "$WORK/events"
: >"$WORK/acks" # exists before the loop below looks at it
"$STELE" append "$LOG" --jsonl <"$WORK/events" >"$WORK/acks" 2>"$WORK/append.err" &
APPEND_PID=$!
PIDS+=("$APPEND_PID")
generate 1 "$N" throttle >"$WORK/events" &
PIDS+=($!)

acks=0
for _ in $(seq 3000); do
    acks=$(wc -l <"$WORK/acks")
    [ "$acks" -ge "$KILL_AFTER" ] && break
    kill -0 "$APPEND_PID" 2>/dev/null || die "the appender stopped early: $(cat "$WORK/append.err")"
    sleep 0.01
done
[ "$acks" -ge "$KILL_AFTER" ] || die "only $acks acknowledgements after 30 s"

say "$acks acknowledgements so far: killing the appender with kill -9, in the middle of the stream."
kill -KILL "$APPEND_PID"
wait "$APPEND_PID" 2>/dev/null || true
wait 2>/dev/null || true # the producer dies of a broken pipe

# A result line counts only if it was printed whole; the kill may cut the last.
if [ -s "$WORK/acks" ] && [ "$(tail -c1 "$WORK/acks" | od -An -c | tr -d ' ')" != '\n' ]; then
    sed -i '$d' "$WORK/acks"
fi
acked=$(wc -l <"$WORK/acks")
[ "$acked" -lt "$N" ] || die "the whole stream finished before the kill; nothing was demonstrated"
jq -e -s 'all(.[]; .decision == "new" and .lsn == .line)' "$WORK/acks" >/dev/null ||
    die "unexpected result lines before the crash"
echo "The producer saw $acked acknowledgements (lines 1 to $acked got LSNs 1 to $acked) before the crash."

say "Verifying every byte of the log after the crash (stele verify, read-only)."
if ! "$STELE" --human verify "$LOG"; then
    die "verify found damage after a crash"
fi

say "Reading the log back and checking it against what was acknowledged."
"$STELE" read "$LOG" >"$WORK/records" || die "read failed after the crash"
present=$(wc -l <"$WORK/records")
# Every acknowledged event is there, at its LSN, with its key and payload.
missing=$(jq -n --slurpfile acks "$WORK/acks" --slurpfile recs "$WORK/records" "$EXPECTED"'
    ($recs | map({key: (.lsn | tostring), value: .}) | from_entries) as $by_lsn
    | [$acks[] | . as $a | $by_lsn[$a.lsn | tostring] as $r
       | select($r == null or $r.key != "payment-\($a.line)" or $r.data != expected($a.line))] | length')
[ "$missing" -eq 0 ] || die "$missing acknowledged events are missing or differ"
# And everything present is a real event, in order, with no hole.
jq -e -s "$EXPECTED"'to_entries | all(.[]; .value.lsn == .key + 1 and .value.key == "payment-\(.key + 1)"
    and .value.data == expected(.key + 1))' "$WORK/records" >/dev/null ||
    die "the log holds a record the producer never sent, or has a hole"
[ "$present" -ge "$acked" ] || die "fewer records than acknowledgements"
echo "All $acked acknowledged events are present, byte for byte. The log holds $present records:"
echo "the $((present - acked)) after the last acknowledgement were written, but the crash came before they"
echo "were acknowledged; the producer cannot know about them, which is what idempotency keys are for."

say "The log's statistics (read-only open: no recovery has run yet):"
"$STELE" --human stats "$LOG" | grep -E 'last_lsn|durable_lsn|segment_count|sealed_segment_count|data_size'

say "The producer restarts and, not knowing what got through, resends all $N events."
echo "Opening the log for writing recovers it first: an unfinished tail batch, if any, is cut."
rc=0
generate 1 "$N" | "$STELE" append "$LOG" --jsonl >"$WORK/resend" || rc=$?
[ "$rc" -eq 0 ] || die "the resend failed with exit status $rc"
dups=$(jq -s 'map(select(.decision == "duplicate")) | length' "$WORK/resend")
new=$(jq -s 'map(select(.decision == "new")) | length' "$WORK/resend")
echo "Result: $dups duplicates (already in the log, original LSN returned) and $new new events."
[ "$dups" -eq "$present" ] && [ "$new" -eq $((N - present)) ] ||
    die "expected $present duplicates and $((N - present)) new events"
jq -e -s 'all(.[]; .lsn == .line)' "$WORK/resend" >/dev/null || die "a resent event got an unexpected LSN"

say "Checking the final log: $N events, each exactly once, LSNs 1 to $N."
"$STELE" verify "$LOG" >/dev/null || die "verify failed on the final log"
"$STELE" read "$LOG" >"$WORK/final"
jq -e -s "$EXPECTED"'length == '"$N"' and (to_entries | all(.[]; .value.lsn == .key + 1
    and .value.key == "payment-\(.key + 1)" and .value.data == expected(.key + 1)))' "$WORK/final" >/dev/null ||
    die "the final log is not exactly the $N events"
"$STELE" --human stats "$LOG" | grep -E 'last_lsn|segment_count|sealed_segment_count|data_size'

say "Done: a crash in mid-stream lost no acknowledged event, added nothing, and a blind resend"
echo "completed the stream with every event exactly once."
