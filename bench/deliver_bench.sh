#!/bin/bash
# deliver_bench.sh - stele deliver's deliveries per second against a local C
# endpoint (tests/deliver/http_sink serve: libmicrohttpd, answers 200), and
# the same requests sent by a plain libcurl multi loop (http_sink blast: same
# body size and concurrency, no log, no signature, no cursor) in the same
# run (issue 20, target: >= 5,000 deliveries/s at concurrency 32).
#
#   bench/deliver_bench.sh BUILD_DIR [N] [ROUNDS] [CONCURRENCY]
#
# Events have no stream (all may go in parallel). Each round delivers the
# whole log to a new endpoint (a new cursor) and runs the loop, alternating
# which goes first. deliver's time is the whole process (open the log, read,
# sign, send, commit); the loop's is from its first request to its last
# answer. Prints each round and the medians; the sink's count at the end.
set -euo pipefail
B=${1:?usage: $0 BUILD_DIR [N] [ROUNDS] [CONCURRENCY]}
N=${2:-20000}
ROUNDS=${3:-5}
CONC=${4:-32}
STELE_TEST_TMP=${TMPDIR:-/tmp}
export STELE_TEST_TMP
set -- "$B/tools/stele"
source "$(dirname "$0")/../tests/cli/lib.sh"
SINK=$B/tests/deliver/http_sink
[ -x "$SINK" ] || { echo "no $SINK (libmicrohttpd-dev missing?)"; exit 1; }
"$SINK" serve "$T/port" > "$T/sink.out" &
spid=$!
trap 'kill $spid 2>/dev/null; chmod -R u+w "$T"; rm -rf "$T"' EXIT
for k in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.05; done
URL="http://127.0.0.1:$(cat "$T/port")/hook"
printf 'whsec_%s\n' "$(head -c 32 /dev/urandom | base64 -w0)" > "$T/secret"
run 0 "$STELE" init "$T/log"
pad=$(printf 'x%.0s' $(seq 1 100))
for i in $(seq 1 "$N"); do echo "{\"type\":\"order.placed\",\"key\":\"o$i\",\"data\":{\"p\":\"$pad\"}}"; done > "$T/in"
run 0 "$STELE" append "$T/log" --jsonl < "$T/in"
size=$("$STELE" read "$T/log" --limit 1 | head -c -1 | wc -c)
echo "N=$N events, bodies of $size bytes, concurrency $CONC, $ROUNDS rounds; $(nproc) cores, shared"
ns() { date +%s%N; }
for r in $(seq 1 "$ROUNDS"); do
    deliver_once() {
        local t0 t1
        t0=$(ns)
        "$STELE" deliver "$T/log" --endpoint "b$r" --url "$URL" --secret-file "$T/secret" --concurrency "$CONC" \
            > "$T/deliver.$r"
        t1=$(ns)
        jq -e ".delivered == $N" "$T/deliver.$r" > /dev/null || { cat "$T/deliver.$r"; exit 1; }
        echo "scale=4; ($t1 - $t0) / 1000000000" | bc
    }
    if [ $((r % 2)) = 1 ]; then
        p=$("$SINK" blast "$URL" "$N" "$CONC" "$size"); s=$(deliver_once)
    else
        s=$(deliver_once); p=$("$SINK" blast "$URL" "$N" "$CONC" "$size")
    fi
    echo "round $r: loop $p s ($(echo "$N / $p" | bc)/s), deliver $s s ($(echo "$N / $s" | bc)/s), ratio $(echo "scale=3; $p / $s" | bc)"
    echo "$p $s" >> "$T/rounds"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
pm=$(awk '{print $1}' "$T/rounds" | median); sm=$(awk '{print $2}' "$T/rounds" | median)
rm_=$(awk '{print $1 / $2}' "$T/rounds" | median)
echo "median: loop $pm s ($(echo "$N / $pm" | bc)/s), deliver $sm s ($(echo "$N / $sm" | bc)/s); median of the per-round ratios (deliver throughput / loop's) $rm_"
kill "$spid"; wait "$spid" || true
echo "sink: $(cat "$T/sink.out") (deliver's requests carry webhook-ids; the loop's do not)"
