#!/usr/bin/env bash
# run.sh - runs the libFuzzer targets of tests/fuzz/ (RELIABILITY G10), one
# after the other (two cores: campaigns run in series), each for SECONDS.
#
#   tests/fuzz/run.sh [--build DIR] [--time SECONDS] [TARGET...]
#       DIR defaults to build-fuzz; it is configured (clang, -DSTELE_FUZZ=ON)
#       and built (target stele_fuzzers) as needed. SECONDS defaults to 60.
#       TARGETs default to all: record segment roundtrip open event_json index segidx dict.
#   tests/fuzz/run.sh --check        exit 0 if clang can build libFuzzer targets
#   tests/fuzz/run.sh --regenerate [BUILD_DIR]
#       rewrites tests/fuzz/corpus/ with BUILD_DIR/tests/fuzz/gen_corpus
#       (BUILD_DIR defaults to build; regressions/ is left alone).
#
# Each target fuzzes in DIR/fuzz-corpus/TARGET (kept between runs), seeded
# from corpus/TARGET and regressions/TARGET, which are never written. A
# crash, leak, timeout (10 s) or sanitizer report stops that target; the input
# is saved under DIR/fuzz-artifacts/TARGET/ and the script exits 1 after the
# other targets ran. Add a crasher to regressions/TARGET/ together with its
# fix: every build then replays it (ctest test fuzz_TARGET).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
all_targets=(record segment roundtrip open event_json index segidx dict)

have_libfuzzer() {
    command -v clang >/dev/null 2>&1 || return 1
    local tmp
    tmp=$(mktemp -d)
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' >"$tmp/t.c"
    local rc=0
    clang -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" >/dev/null 2>&1 || rc=1
    rm -rf "$tmp"
    return $rc
}

build="build-fuzz"
seconds=60
targets=()
while (($#)); do
    case $1 in
    --check)
        have_libfuzzer
        exit
        ;;
    --regenerate)
        gen=${2:-build}/tests/fuzz/gen_corpus
        [[ -x $gen ]] || { echo "run.sh: $gen not found: build it first" >&2; exit 2; }
        rm -rf "$here/corpus"
        "$gen" "$here/corpus"
        du -sh "$here/corpus"
        exit
        ;;
    --build)
        build=$2
        shift 2
        ;;
    --time)
        seconds=$2
        shift 2
        ;;
    -h | --help)
        sed -n '2,20p' "${BASH_SOURCE[0]}"
        exit
        ;;
    -*)
        echo "run.sh: unknown option $1" >&2
        exit 2
        ;;
    *)
        targets+=("$1")
        shift
        ;;
    esac
done
((${#targets[@]})) || targets=("${all_targets[@]}")
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "run.sh: --time needs a positive number of seconds" >&2
    exit 2
fi
if ! have_libfuzzer; then
    echo "run.sh: clang with libFuzzer is not available (Debian: apt-get install clang libclang-rt-dev)" >&2
    exit 77
fi

cd "$root"
if [[ ! -f $build/CMakeCache.txt ]]; then
    cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DSTELE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target stele_fuzzers -j"$(nproc 2>/dev/null || echo 2)" >/dev/null

# The open target's scratch log lives in memory when it can (it syncs a lot).
export STELE_FUZZ_TMP=${STELE_FUZZ_TMP:-$( [[ -w /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
summary=()
for t in "${targets[@]}"; do
    bin=$build/tests/fuzz/fuzz_$t
    if [[ ! -x $bin ]]; then
        echo "run.sh: no target $t ($bin)" >&2
        exit 2
    fi
    work=$build/fuzz-corpus/$t
    artifacts=$build/fuzz-artifacts/$t
    mkdir -p "$work" "$artifacts"
    seeds=("$here/corpus/$t")
    [[ -d $here/regressions/$t ]] && seeds+=("$here/regressions/$t")
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$artifacts/")
    [[ -f $here/$t.dict ]] && args+=(-dict="$here/$t.dict")
    log=$build/fuzz-$t.log
    echo "run.sh: fuzzing $t for ${seconds} s (log: $log)"
    rc=0
    "$bin" "${args[@]}" "$work" "${seeds[@]}" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    corpus=$(find "$work" -type f | wc -l)
    if ((rc != 0)); then
        failed+=("$t")
        echo "run.sh: $t FAILED (exit $rc); the end of its log:" >&2
        tail -n 40 "$log" >&2
        echo "run.sh: the input is in $artifacts/; replay it with a normal build: build/tests/fuzz/replay_$t FILE" >&2
        summary+=("$(printf '%-11s FAILED  %10s execs  %6s exec/s  %s  corpus %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-}" "$corpus")")
    else
        summary+=("$(printf '%-11s ok      %10s execs  %6s exec/s  %s  corpus %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-}" "$corpus")")
    fi
done
printf 'run.sh: %s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "run.sh: failed: ${failed[*]}" >&2
    exit 1
fi
