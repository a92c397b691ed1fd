# test_replay.sh - proves `stele replay` (PRODUCT.md, "A replay handler ...";
# issue 6 item 1) through the built program:
#  - at-least-once delivery in LSN order, the event on the handler's stdin and
#    STELE_LSN/KEY/ATTEMPT/CONSUMER in its environment; --stdout; --batch;
#  - the cursor resumes where the last run ended, and a run killed with
#    SIGKILL at random points, then run again, delivers every event with no
#    gap and redelivers at most one batch per kill;
#  - exit 75 is retried (STELE_ATTEMPT counts up), exit 1 is a dead letter at
#    once, a timeout kills the handler's process group and is retried;
#  - backoff: every printed wait is within [0, min(max, base*2^(attempt-1))],
#    the handler's measured gaps are at least the waits, a seed reproduces the
#    waits and another seed changes them;
#  - --on-dead-letter stop (exit 1, cursor stays before it) vs skip; a batch
#    that fails is delivered one event at a time so that only the failing
#    events become dead letters;
#    --dead-letters lists with reason, attempts and last stderr line;
#    --redrive delivers and resolves; SIGTERM lets the event in hand finish,
#    commits and exits 0; --follow, --dry-run, filters, --rate, the progress
#    line on a terminal (and only there), usage errors,
#    a damaged cursor file (exit 5, never reset), --help;
#  - beside a writer (another process holding the log writable and appending
#    slowly through a FIFO): one-shot replays run again and again and a
#    --follow replay runs, and by the end each delivered every event exactly
#    once, in order, with no gap; a second replay of a consumer being replayed
#    exits 1 naming the lock file and the holder's pid, while --dead-letters
#    and --dry-run run beside it.
# The cursor's position is read from its file as SPEC.md §16.2 lays it out
# (u64 at offset 40), independently of the tool.
source "$(dirname "$0")/lib.sh"
L=$T/log
H=$T/handlers
mkdir -p "$H"
run 0 "$STELE" init "$L"

# append_events FIRST LAST: events FIRST..LAST, types alternating a/b, streams s0..s2.
append_events() {
    local i
    for i in $(seq "$1" "$2"); do
        printf '{"type":"%s","key":"k%d","stream":"s%d","data":{"n":%d}}\n' \
            "$([ $((i % 2)) -eq 0 ] && echo a || echo b)" "$i" $((i % 3)) "$i"
    done | "$STELE" append "$L" --jsonl >/dev/null
}
append_events 1 20

position() { # position NAME: the committed LSN in DIR/consumers/NAME.cursor
    od -An -tu8 -j40 -N8 "$L/consumers/$1.cursor" | tr -d ' '
}

# A handler recording, per delivery, "LSN KEY ATTEMPT CONSUMER BATCH_SIZE" and
# the LSN of every stdin line (so stdin and environment can be compared).
cat >"$H/record.sh" <<'EOF'
#!/bin/sh
echo "$STELE_LSN $STELE_KEY $STELE_ATTEMPT $STELE_CONSUMER $STELE_BATCH_SIZE" >>"$OUT.env"
sed -E 's/^\{"lsn":([0-9]+),.*"key":"([^"]*)".*$/\1 \2/' >>"$OUT.stdin"
EOF
chmod +x "$H"/*.sh

# --- at-least-once, in LSN order, with the event on stdin and the environment set
export OUT=$T/r1
run 0 "$STELE" replay "$L" --consumer c1 --exec "$H/record.sh"
check_stderr_empty "replay"
check_eq "$(cut -d' ' -f1 "$OUT.stdin" | tr '\n' ' ')" "$(seq 1 20 | tr '\n' ' ')" "every event once, in LSN order"
check_eq "$(awk '{print $1" k"$1" 1 c1 1"}' "$OUT.stdin" | md5sum)" "$(md5sum <"$OUT.env")" \
    "STELE_LSN, STELE_KEY, STELE_ATTEMPT, STELE_CONSUMER, STELE_BATCH_SIZE match the event on stdin"
check_eq "$(cut -d' ' -f2 "$OUT.stdin" | head -3 | tr '\n' ' ')" "k1 k2 k3 " "keys on stdin"
check_eq "$(position c1)" 20 "cursor committed at the last LSN"

# --- the cursor resumes: only new events on the next runs
append_events 21 25
run 0 "$STELE" replay "$L" --consumer c1 --exec "$H/record.sh"
check_eq "$(cut -d' ' -f1 "$OUT.stdin" | tr '\n' ' ')" "$(seq 1 25 | tr '\n' ' ')" "the re-run delivered 21..25 only"
run 0 "$STELE" replay "$L" --consumer c1 --exec "$H/record.sh"
check_eq "$(wc -l <"$OUT.stdin")" 25 "a run with nothing new delivers nothing"

# --- --stdout, and --from which never rewinds a cursor
run 0 "$STELE" replay "$L" --consumer s1 --stdout
check_jq "$T/out" '[.[].lsn] == [range(1;26)] and .[4].key == "k5" and .[4].data == {"n":5}' "--stdout prints event objects"
run 0 "$STELE" replay "$L" --consumer s1 --stdout --from 3
check_eq "$(wc -c <"$T/out")" 0 "--from below the cursor does not rewind"
run 0 "$STELE" replay "$L" --consumer s2 --stdout --from 24
check_jq "$T/out" '[.[].lsn] == [24,25]' "--from on a new consumer"

# --- --batch: N events per delivery, cursor after each batch
export OUT=$T/b1
run 0 "$STELE" replay "$L" --consumer b1 --exec "$H/record.sh" --batch 4
check_eq "$(cut -d' ' -f1,5 "$OUT.env" | tr '\n' ' ')" "1 4 5 4 9 4 13 4 17 4 21 4 25 1 " "batches of 4 (the last one short)"
check_eq "$(cut -d' ' -f1 "$OUT.stdin" | tr '\n' ' ')" "$(seq 1 25 | tr '\n' ' ')" "batched events in order"
check_eq "$(position b1)" 25 "batched cursor"

# --- filters: --type, --stream, --since; the cursor moves past what they exclude
run 0 "$STELE" replay "$L" --consumer f1 --stdout --type a
check_jq "$T/out" '[.[].lsn] == [range(2;26;2)] and all(.[]; .type == "a")' "--type"
check_eq "$(position f1)" 25 "cursor past the filtered events"
run 0 "$STELE" replay "$L" --consumer f2 --stdout --stream s1
check_jq "$T/out" '[.[].lsn] == [1,4,7,10,13,16,19,22,25]' "--stream"
run 0 "$STELE" get "$L" --lsn 21
since=$(jq -r .recorded_at "$T/out")
run 0 "$STELE" replay "$L" --consumer f3 --stdout --since "$since"
check_jq "$T/out" '[.[].lsn] == [21,22,23,24,25]' "--since"

# --- --dry-run: prints, runs nothing, commits nothing
export OUT=$T/dry
run 0 "$STELE" replay "$L" --consumer d1 --exec "$H/record.sh" --dry-run --from 23
check_jq "$T/out" '[.[].lsn] == [23,24,25]' "--dry-run prints what would be delivered"
[ ! -e "$OUT.env" ] || fail "--dry-run ran the handler"
[ ! -e "$L/consumers/d1.cursor" ] || fail "--dry-run committed a cursor"

lines() { if [ -e "$1" ]; then wc -l <"$1"; else echo 0; fi; }
wait_lines() { # wait_lines FILE N: until FILE has at least N lines (30 s at most)
    local i
    for i in $(seq 1 300); do
        [ "$(lines "$1")" -lt "$2" ] || return 0
        sleep 0.1
    done
    fail "$1: $(lines "$1") lines after 30 s, expected $2"
}

# --- killed with SIGKILL at random points, then re-run: no gap, at most one batch again per kill
K=$T/kill
run 0 "$STELE" init "$K"
for i in $(seq 1 300); do printf '{"type":"t","data":%d}\n' "$i"; done | "$STELE" append "$K" --jsonl >/dev/null
cat >"$H/slow.sh" <<'EOF'
#!/bin/sh
sed -E 's/^\{"lsn":([0-9]+),.*$/\1/' >>"$OUT"
EOF
chmod +x "$H/slow.sh"
export OUT=$T/killed.lsns
RANDOM=7
kills=0
for round in $(seq 1 8); do
    "$STELE" replay "$K" --consumer k --exec "$H/slow.sh" --batch 3 >/dev/null 2>"$T/kill.err" &
    pid=$!
    sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
    if kill -KILL "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
    wait "$pid" 2>/dev/null || true
done
# A handler of a killed run may still be finishing its batch: wait until none runs.
for _ in $(seq 1 600); do pgrep -f "$H/slow.sh" >/dev/null || break; sleep 0.05; done
! pgrep -f "$H/slow.sh" >/dev/null || fail "handlers of the killed runs still run after 30 s"
run 0 "$STELE" replay "$K" --consumer k --exec "$H/slow.sh" --batch 3
check_eq "$(sort -n -u "$OUT" | tr '\n' ' ')" "$(seq 1 300 | tr '\n' ' ')" "every event delivered after $kills kills"
dups=$(($(wc -l <"$OUT") - 300))
[ "$dups" -le $((kills * 3)) ] || fail "$dups redeliveries after $kills kills with batches of 3"
echo "kill loop: $kills kills, $dups redeliveries" >&2

# --- exit 75 then success: retried, STELE_ATTEMPT counts up
cat >"$H/flaky.sh" <<'EOF'
#!/bin/sh
cat >/dev/null
echo "$STELE_LSN $STELE_ATTEMPT $(date +%s%N)" >>"$OUT"
if [ "$STELE_LSN" = "$FAIL_LSN" ] && [ "$STELE_ATTEMPT" -lt "$FAIL_UNTIL" ]; then
    echo "upstream busy (attempt $STELE_ATTEMPT)" >&2
    exit 75
fi
exit 0
EOF
chmod +x "$H/flaky.sh"
export OUT=$T/flaky FAIL_LSN=3 FAIL_UNTIL=3
run 0 "$STELE" replay "$L" --consumer r1 --exec "$H/flaky.sh" --backoff-base 10 --backoff-max 40
check_eq "$(awk '$1 <= 4 {print $1":"$2}' "$OUT" | tr '\n' ' ')" "1:1 2:1 3:1 3:2 3:3 4:1 " "LSN 3 retried with attempts 1, 2, 3"
check_eq "$(grep -c 'LSN 3: attempt [12] of 5 failed (exit 75 (EX_TEMPFAIL)); retrying in' "$T/err")" 2 "two retries reported"
check_eq "$(grep -c 'upstream busy' "$T/err")" 2 "the handler's stderr passes through"
run 0 "$STELE" replay "$L" --consumer r1 --dead-letters
check_eq "$(wc -c <"$T/out")" 0 "no dead letter after a successful retry"

# --- exit 1: a dead letter at once; skip goes on, stop stays
cat >"$H/perm.sh" <<'EOF'
#!/bin/sh
cat >/dev/null
echo "$STELE_LSN $STELE_ATTEMPT" >>"$OUT"
if [ "$STELE_LSN" = 3 ] || [ "$STELE_LSN" = 6 ]; then
    echo "first line" >&2
    echo "invalid address for $STELE_KEY" >&2
    exit 1
fi
EOF
chmod +x "$H/perm.sh"
export OUT=$T/perm
run 0 "$STELE" replay "$L" --consumer p1 --exec "$H/perm.sh" --on-dead-letter skip --max-attempts 4
check_eq "$(awk '{print $1":"$2}' "$OUT" | head -8 | tr '\n' ' ')" "1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 " "exit 1 is not retried; skip goes on"
check_eq "$(position p1)" 25 "skip: cursor past the dead letters"
check_eq "$(grep -c 'dead letter after 1 attempt (exit 1): invalid address for k3' "$T/err")" 1 "dead letter reported"
run 0 "$STELE" replay "$L" --consumer p1 --dead-letters
check_stderr_empty "--dead-letters"
check_jq "$T/out" 'length == 2 and (.[0] | keys_unsorted) == ["consumer","lsn","key","reason","attempts","last_stderr","dead_at","resolved_at"]' "dead letter fields"
check_jq "$T/out" '.[0] | .consumer == "p1" and .lsn == 3 and .key == "k3" and .reason == "exit 1" and .attempts == 1
    and .last_stderr == "invalid address for k3" and (.dead_at | test("Z$")) and .resolved_at == null' "dead letter of LSN 3"
check_jq "$T/out" '.[1].lsn == 6' "dead letter of LSN 6"

export OUT=$T/stop
run 1 "$STELE" replay "$L" --consumer p2 --exec "$H/perm.sh"
check_eq "$(cut -d' ' -f1 "$OUT" | tr '\n' ' ')" "1 2 3 " "stop: nothing after the dead letter"
check_eq "$(position p2)" 2 "stop: the cursor stays before the dead letter"
grep -q 'stopped at the dead letter of LSN 3' "$T/err" || fail "stop is explained: $(cat "$T/err")"
run 1 "$STELE" replay "$L" --consumer p2 --exec "$H/perm.sh"
check_eq "$(cut -d' ' -f1 "$OUT" | tr '\n' ' ')" "1 2 3 3 " "stop: the next run tries it again"
run 0 "$STELE" replay "$L" --consumer p2 --dead-letters
check_jq "$T/out" 'length == 1 and .[0].lsn == 3' "listed once"

# --- a batch that fails for good is delivered one event at a time: only the failing events
# become dead letters
cat >"$H/badlsn.sh" <<'EOF'
#!/bin/sh
in=$(cat)
echo "$STELE_LSN $STELE_BATCH_SIZE" >>"$OUT"
if printf '%s\n' "$in" | grep -q '^{"lsn":\(3\|6\),'; then echo "cannot handle it" >&2; exit 1; fi
EOF
chmod +x "$H/badlsn.sh"
export OUT=$T/isolate
run 0 "$STELE" replay "$L" --consumer i1 --exec "$H/badlsn.sh" --batch 4 --on-dead-letter skip
check_eq "$(head -6 "$OUT" | tr '\n' ' ')" "1 4 1 1 2 1 3 1 4 1 5 4 " "batch 1-4 failed, then its events one by one"
grep -q 'LSNs 1-4 (4 events): the batch failed (exit 1); delivering its events one at a time' "$T/err" ||
    fail "the split is reported: $(cat "$T/err")"
run 0 "$STELE" replay "$L" --consumer i1 --dead-letters
check_jq "$T/out" '[.[].lsn] == [3,6] and all(.[]; .reason == "exit 1" and .last_stderr == "cannot handle it")' "only LSNs 3 and 6 are dead letters"
check_eq "$(position i1)" 25 "skip: past the batch"
export OUT=$T/isolate2
run 1 "$STELE" replay "$L" --consumer i2 --exec "$H/badlsn.sh" --batch 4
check_eq "$(tr '\n' ' ' <"$OUT")" "1 4 1 1 2 1 3 1 " "stop: nothing after the dead letter inside the batch"
check_eq "$(position i2)" 2 "stop: the cursor stays right before the dead letter inside the batch"

# --- --redrive: delivers the dead letters and resolves those that succeed
export OUT=$T/redrive
run 1 "$STELE" replay "$L" --consumer p1 --redrive --exec "$H/perm.sh"
grep -q '2 dead letters of consumer p1 could not be delivered' "$T/err" || fail "failed redrive: $(cat "$T/err")"
run 0 "$STELE" replay "$L" --consumer p1 --redrive --exec "$H/record.sh"
check_eq "$(cut -d' ' -f1 "$OUT.stdin" | tr '\n' ' ')" "3 6 " "redrive delivered the dead letters"
check_eq "$(position p1)" 25 "redrive does not move the cursor"
run 0 "$STELE" replay "$L" --consumer p1 --dead-letters
check_eq "$(wc -c <"$T/out")" 0 "redriven dead letters are no longer listed"
run 0 "$STELE" replay "$L" --consumer p1 --dead-letters --all
check_jq "$T/out" 'length == 2 and all(.[]; .resolved_at != null) and .[0].attempts == 1' "--all shows them resolved"

# --- timeout: the handler's process group is killed, and the attempt retried
cat >"$H/hang.sh" <<'EOF'
#!/bin/sh
cat >/dev/null
echo "$STELE_LSN $STELE_ATTEMPT" >>"$OUT"
if [ "$STELE_LSN" = 2 ] && [ "$STELE_ATTEMPT" = 1 ]; then
    sleep 30 &
    echo $! >"$OUT.child"
    wait
fi
EOF
chmod +x "$H/hang.sh"
export OUT=$T/hang
start=$(date +%s%N)
run 0 "$STELE" replay "$L" --consumer t1 --exec "$H/hang.sh" --timeout 300 --backoff-base 1 --backoff-max 1
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
check_eq "$(awk '$1 <= 3 {print $1":"$2}' "$OUT" | tr '\n' ' ')" "1:1 2:1 2:2 3:1 " "a timed-out attempt is retried"
grep -q 'LSN 2: attempt 1 of 5 failed (timeout after 300 ms)' "$T/err" || fail "timeout reported: $(cat "$T/err")"
[ "$elapsed_ms" -lt 10000 ] || fail "the hung handler was waited for ($elapsed_ms ms)"
# Gone, or a zombie nobody has reaped yet (its parent was killed too): not running.
state=$(awk '{print $3}' "/proc/$(cat "$OUT.child")/stat" 2>/dev/null || true)
[ -z "$state" ] || [ "$state" = Z ] || fail "the handler's child survived the timeout (state $state): process group not killed"

# --- backoff bounds, jitter and the seed
export OUT=$T/backoff FAIL_LSN=1 FAIL_UNTIL=100
backoff_run() { # backoff_run CONSUMER SEED: 6 attempts of LSN 1, all exit 75 -> a dead letter
    : >"$OUT"
    run 1 "$STELE" replay "$L" --consumer "$1" --exec "$H/flaky.sh" --max-attempts 6 --backoff-base 40 \
        --backoff-max 200 --seed "$2"
    grep -o 'attempt [0-9] of 6 failed (exit 75 (EX_TEMPFAIL)); retrying in [0-9]* ms' "$T/err" |
        awk '{print $2, $(NF-1)}' >"$T/delays.$1"
}
backoff_run bo1 42
check_eq "$(wc -l <"$T/delays.bo1")" 5 "five waits between six attempts"
grep -q 'LSN 1: dead letter after 6 attempts (exit 75 (EX_TEMPFAIL)): upstream busy (attempt 6)' "$T/err" ||
    fail "last attempt makes a dead letter: $(cat "$T/err")"
while read -r attempt delay; do
    cap=$((40 << (attempt - 1)))
    [ "$cap" -le 200 ] || cap=200
    [ "$delay" -ge 0 ] && [ "$delay" -le "$cap" ] || fail "attempt $attempt waited $delay ms, outside [0, $cap]"
    # The handler's own clock: the next attempt started at least `delay` ms later.
    t1=$(awk -v a="$attempt" '$1 == 1 && $2 == a {print $3}' "$OUT")
    t2=$(awk -v a="$((attempt + 1))" '$1 == 1 && $2 == a {print $3}' "$OUT")
    [ $(((t2 - t1) / 1000000)) -ge "$delay" ] || fail "attempt $attempt: waited $(((t2 - t1) / 1000000)) ms < $delay ms"
done <"$T/delays.bo1"
backoff_run bo2 42
check_eq "$(cat "$T/delays.bo2")" "$(cat "$T/delays.bo1")" "the same seed, the same waits"
backoff_run bo3 43
[ "$(cat "$T/delays.bo3")" != "$(cat "$T/delays.bo1")" ] || fail "another seed, the same waits: no jitter"
run 2 "$STELE" replay "$L" --consumer bo4 --exec true --backoff-base 500 --backoff-max 100
check_stderr_line "--backoff-base above --backoff-max"

# --- SIGTERM: the event in hand finishes, the cursor is committed, exit 0
cat >"$H/sleepy.sh" <<'EOF'
#!/bin/sh
cat >/dev/null
sleep 0.2
echo "$STELE_LSN" >>"$OUT"
EOF
chmod +x "$H/sleepy.sh"
export OUT=$T/term
"$STELE" replay "$L" --consumer g1 --exec "$H/sleepy.sh" >/dev/null 2>"$T/term.err" &
pid=$!
wait_lines "$OUT" 2 # two events delivered (0.2 s each), the third in hand
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
check_eq "$rc" 0 "SIGTERM exits 0"
n=$(wc -l <"$OUT")
[ "$n" -ge 2 ] && [ "$n" -lt 25 ] || fail "SIGTERM: $n events delivered, expected a few"
check_eq "$(position g1)" "$n" "SIGTERM: the cursor holds every finished event (the one in hand included)"
run 0 "$STELE" replay "$L" --consumer g1 --exec "$H/sleepy.sh" --rate 1000
check_eq "$(sort -n "$OUT" | tr '\n' ' ')" "$(seq 1 25 | tr '\n' ' ')" "the next run delivers the rest, none twice"

# --- --follow waits at the end; SIGTERM ends it with the cursor committed
"$STELE" replay "$L" --consumer w1 --stdout --follow >"$T/follow.out" 2>"$T/follow.err" &
pid=$!
wait_lines "$T/follow.out" 25
sleep 0.3 # then it must still be waiting, not gone
kill -0 "$pid" 2>/dev/null || fail "--follow exited at the end of the log"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
check_eq "$rc" 0 "--follow ends with SIGTERM, exit 0"
check_eq "$(wc -l <"$T/follow.out")" 25 "--follow printed every event"
check_eq "$(position w1)" 25 "--follow committed"

# --- --rate: 10 events at 20/s take at least 0.45 s
start=$(date +%s%N)
run 0 "$STELE" replay "$L" --consumer rt --stdout --batch 1 --rate 20 --from 16
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
[ "$elapsed_ms" -ge 450 ] || fail "--rate 20: 10 events in $elapsed_ms ms"

# --- a progress line on a terminal only (the first run above proved stderr stays quiet in a
# file); script(1) gives the replay a terminal
if command -v script >/dev/null; then
    script -qec "'$STELE' replay '$L' --consumer pg --stdout --batch 5 >/dev/null" /dev/null >"$T/tty.out"
    grep -q 'stele: replay: delivered 25 ([0-9]*/s), lag 0, retries 0, dead letters 0' "$T/tty.out" ||
        fail "no progress line on a terminal: $(cat -A "$T/tty.out")"
fi

# --- usage, missing log, damaged cursor
run 2 "$STELE" replay "$L" --stdout
check_stderr_line "no --consumer"
run 2 "$STELE" replay "$L" --consumer x --stdout --exec true
check_stderr_line "--stdout and --exec"
run 2 "$STELE" replay "$L" --consumer x
check_stderr_line "neither --stdout nor --exec"
run 2 "$STELE" replay "$L" --consumer 'a/b' --stdout
grep -q "consumer name 'a/b'" "$T/err" || fail "bad name: $(cat "$T/err")"
run 2 "$STELE" replay "$L" --consumer x --stdout --batch 0
run 2 "$STELE" replay "$L" --consumer x --stdout --on-dead-letter maybe
run 4 "$STELE" replay "$T/nolog" --consumer x --stdout
cp "$L/consumers/c1.cursor" "$T/c1.saved"
flip_byte "$L/consumers/c1.cursor" 44
cp "$L/consumers/c1.cursor" "$T/c1.flipped"
run 5 "$STELE" replay "$L" --consumer c1 --stdout
check_stderr_line "damaged cursor"
grep -q "consumers/c1.cursor offset 0: checksum mismatch" "$T/err" || fail "damage named: $(cat "$T/err")"
cmp -s "$L/consumers/c1.cursor" "$T/c1.flipped" || fail "a damaged cursor file was rewritten"
cp "$T/c1.saved" "$L/consumers/c1.cursor"
run 0 "$STELE" replay "$L" --consumer c1 --stdout
check_eq "$(wc -c <"$T/out")" 0 "the restored cursor is where it was"

# --- beside a writer: another process holds the log writable (`stele append --jsonl` fed from a
# FIFO) and appends slowly while one-shot replays run again and again and a --follow replay runs;
# by the end every event was delivered exactly once, in order, with no gap
W=$T/live
LIVE=300
run 0 "$STELE" init "$W"
wpos() { od -An -tu8 -j40 -N8 "$W/consumers/$1.cursor" | tr -d ' '; }
event_line() { printf '{"type":"t","key":"e%d","data":{"n":%d}}\n' "$1" "$1"; }
mkfifo "$T/feed"
"$STELE" append "$W" --jsonl <"$T/feed" >"$T/live.acks" 2>"$T/live.append.err" &
apid=$!
exec 7>"$T/feed"
event_line 1 >&7
wait_lines "$T/live.acks" 1
run 1 "$STELE" append "$W" --data '"x"'
grep -q "locked by another process.*pid $apid" "$T/err" || fail "the writer does not hold the log: $(cat "$T/err")"
timeout --preserve-status 120 "$STELE" replay "$W" --consumer follow --stdout --batch 1 --follow \
    >"$T/live.follow" 2>"$T/live.follow.err" &
fpid=$!
# Ten events go to the writer, then a one-shot replay runs while it appends them: 30 rounds,
# whatever the machine's speed (the replay waits for nothing the writer does).
rounds=0
first=
for ((i = 2; i <= LIVE; i += 10)); do
    for ((j = i; j < i + 10 && j <= LIVE; j++)); do event_line "$j"; done >&7
    "$STELE" replay "$W" --consumer once --stdout --batch 7 >>"$T/live.once" 2>"$T/live.once.err" ||
        fail "a one-shot replay beside the writer failed: $(cat "$T/live.once.err")"
    rounds=$((rounds + 1))
    [ -n "$first" ] || first=$(lines "$T/live.once")
done
wait_lines "$T/live.acks" "$LIVE"
kill -0 "$apid" 2>/dev/null || fail "the writer exited before the end"
run 0 "$STELE" replay "$W" --consumer once --stdout --batch 7
check_stderr_empty "one-shot replay beside the writer"
cat "$T/out" >>"$T/live.once"
[ "$rounds" -ge 3 ] && [ "$first" -lt "$LIVE" ] ||
    fail "the one-shot replays did not run while the writer appended ($rounds rounds, $first events first)"
check_eq "$(jq -r .lsn "$T/live.once" | tr '\n' ' ')" "$(seq 1 "$LIVE" | tr '\n' ' ')" \
    "one-shot replays beside a writer: every event exactly once, in order ($rounds rounds)"
check_eq "$(jq -r .key "$T/live.once" | sed -n '1p;$p' | tr '\n' ' ')" "e1 e$LIVE " "the events are the writer's"
check_eq "$(wpos once)" "$LIVE" "one-shot cursor"
echo "beside a writer: $rounds one-shot replays, the first delivered $first of $LIVE events" >&2
wait_lines "$T/live.follow" "$LIVE"
kill -TERM "$fpid"
rc=0
wait "$fpid" || rc=$?
check_eq "$rc" 0 "--follow beside a writer ends with SIGTERM, exit 0 (stderr: $(cat "$T/live.follow.err"))"
check_eq "$(jq -r .lsn "$T/live.follow" | tr '\n' ' ')" "$(seq 1 "$LIVE" | tr '\n' ' ')" \
    "--follow saw another process's appends: every event exactly once, in order"
check_eq "$(wpos follow)" "$LIVE" "--follow cursor"

# --- one replay per consumer at a time: a second one exits 1 naming the lock and its holder;
# --dead-letters and --dry-run run beside it
printf '%s\n' '#!/bin/sh' 'cat >/dev/null' 'touch "$OUT.started"' \
    'while [ ! -e "$OUT.release" ]; do sleep 0.05; done' >"$H/block.sh"
chmod +x "$H/block.sh"
export OUT=$T/block
"$STELE" replay "$W" --consumer dup --exec "$H/block.sh" --batch 100 >/dev/null 2>"$T/dup.err" &
dpid=$!
for _ in $(seq 1 300); do [ ! -e "$OUT.started" ] || break; sleep 0.1; done
[ -e "$OUT.started" ] || fail "the first replay never ran its handler: $(cat "$T/dup.err")"
run 1 "$STELE" replay "$W" --consumer dup --stdout
check_stderr_line "a second replay of the same consumer"
grep -q "replaying consumer dup: .*pid $dpid holds $W/consumers/dup.lock" "$T/err" ||
    fail "the second replay does not name the lock and its holder: $(cat "$T/err")"
check_eq "$(wc -c <"$T/out")" 0 "the second replay delivered nothing"
run 1 "$STELE" replay "$W" --consumer dup --redrive --stdout
grep -q "pid $dpid holds" "$T/err" || fail "--redrive beside a replay: $(cat "$T/err")"
run 0 "$STELE" replay "$W" --consumer dup --dead-letters
check_stderr_empty "--dead-letters beside a replay of the consumer"
run 0 "$STELE" replay "$W" --consumer dup --stdout --dry-run --from "$((LIVE - 1))"
check_jq "$T/out" "[.[].lsn] == [$((LIVE - 1)),$LIVE]" "--dry-run beside a replay of the consumer"
touch "$OUT.release"
rc=0
wait "$dpid" || rc=$?
check_eq "$rc" 0 "the first replay finished (stderr: $(cat "$T/dup.err"))"
check_eq "$(wpos dup)" "$LIVE" "the first replay committed"
run 0 "$STELE" replay "$W" --consumer dup --stdout
check_eq "$(wc -c <"$T/out")" 0 "the lock was released and nothing is left"
exec 7>&-
rc=0
wait "$apid" || rc=$?
check_eq "$rc" 0 "the writer process (stderr: $(cat "$T/live.append.err"))"
check_eq "$(wc -l <"$T/live.acks")" "$LIVE" "the writer acknowledged every event"

# --- --help reads like a manual
run 0 "$STELE" replay --help
for section in DESCRIPTION OPTIONS ENVIRONMENT SIGNALS "EXIT STATUS" EXAMPLES; do
    grep -q "^$section" "$T/out" || fail "--help has no $section section"
done
grep -q '^usage: stele replay DIR --consumer NAME' "$T/out" || fail "--help starts with the synopsis"
echo "ok"
