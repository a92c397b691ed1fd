#!/bin/bash
# relay_bench.sh - stele relay's throughput against a plain asynchronous
# JetStream publish loop (js_tool bench: the same headers, payload size and
# window, libnats too) into R3 streams of one 3-node cluster on loopback, in
# one run (issue 18, target: relay >= 80% of the loop).
#
#   bench/relay_bench.sh BUILD_DIR [N] [ROUNDS] [WINDOW]
#
# Each round makes two fresh R3 streams and runs the loop into one and the
# relay of a log of N records into the other, alternating which goes first.
# The relay's time is the whole process (open the log, connect, find the
# stream, the resume scan, publish, the last ack, commit); the loop's is from
# its first publish to its last ack. Prints each round and the medians.
set -euo pipefail
B=${1:?usage: $0 BUILD_DIR [N] [ROUNDS] [WINDOW]}
N=${2:-20000}
ROUNDS=${3:-5}
WINDOW=${4:-128}
STELE_TEST_TMP=${TMPDIR:-/tmp}
export STELE_TEST_TMP
set -- "$B/tools/stele"
source "$(dirname "$0")/../tests/cli/lib.sh"
source "$(dirname "$0")/../tests/relay/cluster.sh"
JS=$B/tests/relay/js_tool
cluster_start
run 0 "$STELE" init "$T/log0"
pad=$(printf 'x%.0s' $(seq 1 100))
for i in $(seq 1 "$N"); do echo "{\"type\":\"order.t1\",\"data\":{\"p\":\"$pad\"}}"; done > "$T/in"
run 0 "$STELE" append "$T/log0" --jsonl < "$T/in"
size=$("$STELE" get "$T/log0" --lsn 1 | jq -c .data | tr -d '\n' | wc -c)
echo "N=$N records of $size payload bytes, window $WINDOW, $ROUNDS rounds"
ns() { date +%s%N; }
for r in $(seq 1 "$ROUNDS"); do
    "$JS" create "$NATS_URLS" "P$r" "p$r.>" 3 120000
    "$JS" create "$NATS_URLS" "R$r" "r$r.>" 3 120000
    rm -rf "$T/log"; cp -r "$T/log0" "$T/log"
    relay_once() {
        local t0 t1
        t0=$(ns)
        "$STELE" relay "$T/log" --name b --nats "$NATS_URLS" --stream "R$r" --subject "r$r.{type}" --window "$WINDOW" > /dev/null
        t1=$(ns)
        echo "scale=4; ($t1 - $t0) / 1000000000" | bc
    }
    if [ $((r % 2)) = 1 ]; then
        p=$("$JS" bench "$NATS_URLS" "p$r.x" "$N" "$WINDOW" "$size"); s=$(relay_once)
    else
        s=$(relay_once); p=$("$JS" bench "$NATS_URLS" "p$r.x" "$N" "$WINDOW" "$size")
    fi
    echo "round $r: loop $p s ($(echo "$N / $p" | bc) msg/s), relay $s s ($(echo "$N / $s" | bc) msg/s), ratio $(echo "scale=3; $p / $s" | bc)"
    echo "$p $s" >> "$T/rounds"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
pm=$(awk '{print $1}' "$T/rounds" | median); sm=$(awk '{print $2}' "$T/rounds" | median)
rm_=$(awk '{print $1 / $2}' "$T/rounds" | median)
echo "median: loop $pm s ($(echo "$N / $pm" | bc) msg/s), relay $sm s ($(echo "$N / $sm" | bc) msg/s); median of the per-round ratios (relay throughput / loop's) $rm_"
