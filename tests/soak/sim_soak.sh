#!/usr/bin/env bash
# sim_soak.sh - crash-state exploration at nightly size (RELIABILITY G1, G2):
# runs tests/check_sim.c in its soak mode (STELE_SIM_SOAK=1, outside Check),
# which explores workloads from a random seed (or STELE_TEST_SEED) until
# STATES crash states have been checked, printing progress every 10 s. Each
# round uses a fresh seed; it stops at the first failure, printing the
# workload seed, crash point and crash mode that replay it and keeping the
# state's directory.
#
#   tests/soak/sim_soak.sh [BUILD_DIR [STATES [ROUNDS]]]
#   tests/soak/sim_soak.sh build 5000000          # the nightly size
#   STELE_TEST_SEED=1234 tests/soak/sim_soak.sh build 100000 1   # replay a seed
#
# STELE_SIM_JOBS (default: CPUs, at most 4) sets the worker processes;
# STELE_SIM_NESTED_EVERY / STELE_SIM_PROCESS_EVERY how often a state also gets
# crashes inside recovery (S7) and a crash point a process crash (S8). Scratch
# directories go to /dev/shm when it is writable (fsync is free there), else
# to $STELE_SIM_TMP.
set -euo pipefail

build=${1:-build}
states=${2:-5000000}
rounds=${3:-1}
bin=$build/tests/check_sim
if [[ ! -x $bin ]]; then
    echo "sim_soak: $bin not found: build first (cmake --build $build)" >&2
    exit 2
fi
if ! [[ $states =~ ^[0-9]+$ && $rounds =~ ^[0-9]+$ ]] || ((states == 0 || rounds == 0)); then
    echo "sim_soak: STATES and ROUNDS must be positive integers" >&2
    exit 2
fi
for ((round = 1; round <= rounds; round++)); do
    seed=${STELE_TEST_SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}
    echo "sim_soak: round $round of $rounds: $states states from workload seed $seed"
    if ! STELE_SIM_SOAK=1 STELE_SIM_STATES=$states STELE_TEST_SEED=$seed "$bin"; then
        echo "sim_soak: FAILED in round $round; replay with: STELE_TEST_SEED=$seed $0 $build $states 1" >&2
        exit 1
    fi
done
echo "sim_soak: $rounds round(s) of $states states passed"
