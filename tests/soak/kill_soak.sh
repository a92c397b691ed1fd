#!/usr/bin/env bash
# kill_soak.sh - the kill -9 loop of tests/check_killloop.c (RELIABILITY G3),
# for thousands of cycles: runs check_killloop again and again, each run a
# fresh log living through CYCLES_PER_RUN kills (a log that grows forever
# would make every cycle's full check slower), each with a new seed, until
# TOTAL cycles have passed. Stops at the first failure, keeping that log and
# printing the seed that replays its kill schedule (STELE_TEST_SEED).
#
#   tests/soak/kill_soak.sh [BUILD_DIR [TOTAL [CYCLES_PER_RUN]]]
#   tests/soak/kill_soak.sh build 20000 1000      # the nightly size
#
# Logs go to $STELE_TEST_TMP (default BUILD_DIR/tests/tmp): put that on the
# file system to be tested (ext4, xfs, ...).
set -euo pipefail

build=${1:-build}
total=${2:-5000}
per_run=${3:-1000}
bin=$build/tests/check_killloop
if [[ ! -x $bin ]]; then
    echo "kill_soak: $bin not found: build first (cmake --build $build)" >&2
    exit 2
fi
if ! [[ $total =~ ^[0-9]+$ && $per_run =~ ^[0-9]+$ ]] || ((total == 0 || per_run == 0)); then
    echo "kill_soak: TOTAL and CYCLES_PER_RUN must be positive integers" >&2
    exit 2
fi
export STELE_TEST_TMP=${STELE_TEST_TMP:-$build/tests/tmp}
mkdir -p "$STELE_TEST_TMP"

done_cycles=0
runs=0
while ((done_cycles < total)); do
    n=$((total - done_cycles < per_run ? total - done_cycles : per_run))
    seed=$(od -An -N6 -tu8 /dev/urandom | tr -d ' ')
    out=$(mktemp)
    if ! STELE_TEST_SEED=$seed STELE_KILLLOOP_CYCLES=$n "$bin" >"$out" 2>&1; then
        cat "$out"
        rm -f "$out"
        echo "kill_soak: FAILED in run $((runs + 1)) after $done_cycles earlier cycles; replay with:" >&2
        echo "  STELE_TEST_SEED=$seed STELE_KILLLOOP_CYCLES=$n $bin" >&2
        exit 1
    fi
    grep '^check_killloop: [0-9]* cycles' "$out" || true
    rm -f "$out"
    done_cycles=$((done_cycles + n))
    runs=$((runs + 1))
    printf 'kill_soak: %d of %d cycles passed (%d runs, %d s)\n' "$done_cycles" "$total" "$runs" "$SECONDS"
done
echo "kill_soak: all $total cycles passed, 0 violations"
