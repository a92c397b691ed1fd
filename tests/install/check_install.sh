#!/usr/bin/env bash
# check_install.sh - tests stele as an outside program sees it (run by ctest).
#
#   check_install.sh install BUILD_DIR HERE CMAKE CC [CFLAGS]
#     Installs BUILD_DIR with `cmake --install` into a scratch prefix, builds
#     HERE/example.c three ways against that prefix only (pkg-config; CMake
#     find_package with stele::stele; with stele::stele_static), runs each on a
#     fresh log, checks the output, then runs one again on the same log and
#     checks that every append is now a duplicate.
#   check_install.sh readme README.md example.c
#     Checks that the first ```c block of README.md is example.c, byte for byte.
set -euo pipefail

fail() {
    echo "check_install: $*" >&2
    exit 1
}

check_readme() {
    local readme=$1 example=$2
    [[ -f $readme ]] || fail "$readme is missing"
    diff -u "$example" <(awk '/^```c$/ { inside = 1; next } /^```$/ && inside { exit } inside' "$readme") ||
        fail "the first \`\`\`c block of $readme differs from $example (diff above)"
    echo "README.md quotes $example verbatim"
}

expected_output() {
    local decision=$1
    cat <<OUT
append order-1: lsn 1, $decision
append order-2: lsn 2, $decision
append order-3: lsn 3, $decision
get: lsn 2, type order.placed, key order-2, payload {"amount":250}
iter: lsn 1, type order.placed, key order-1, payload {"amount":100}
iter: lsn 2, type order.placed, key order-2, payload {"amount":250}
iter: lsn 3, type order.placed, key order-3, payload {"amount":75}
OUT
}

# run_app NAME PROGRAM LOG_DIR DECISION: runs the program and compares its output.
run_app() {
    local name=$1 program=$2 log=$3 decision=$4 out
    out=$(LD_LIBRARY_PATH="$libdir" "$program" "$log") || fail "$name exited with status $? (output: $out)"
    diff -u <(expected_output "$decision") <(printf '%s\n' "$out") || fail "$name printed something else (diff above)"
    echo "$name: ok ($decision)"
}

check_install() {
    local build=$1 here=$2 cmake=$3 cc=$4 cflags=${5:-}
    local scratch=${STELE_TEST_TMP:-${TMPDIR:-/tmp}}
    mkdir -p "$scratch"
    work=$(mktemp -d "$scratch/install.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    local prefix=$work/prefix

    "$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" ||
        { cat "$work/install.log" >&2; fail "cmake --install failed"; }
    [[ -f $prefix/include/stele.h ]] || fail "stele.h was not installed"
    local pc
    pc=$(find "$prefix" -name stele.pc -print -quit)
    [[ -n $pc ]] || fail "stele.pc was not installed"
    libdir=$(dirname "$(dirname "$pc")")
    ls "$libdir"/libstele.so.0 "$libdir"/libstele.a >/dev/null || fail "a library is missing in $libdir"

    # 1. pkg-config, against the scratch prefix only.
    local flags
    flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs stele) || fail "pkg-config --cflags --libs stele failed"
    [[ $flags == *"$prefix"* ]] || fail "pkg-config flags do not point into the prefix: $flags"
    PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --validate stele || fail "stele.pc does not validate"
    # shellcheck disable=SC2086  # word splitting of the flags is intended
    "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror $cflags "$here/example.c" $flags -o "$work/app_pkgconfig" ||
        fail "building example.c with pkg-config failed"
    # ldd's output is read whole before it is searched: `ldd | grep -q` under pipefail fails
    # whenever grep stops reading first and ldd dies of SIGPIPE (the flaky failure this was).
    local libs
    libs=$(LD_LIBRARY_PATH="$libdir" ldd "$work/app_pkgconfig") || fail "ldd app_pkgconfig failed"
    [[ $libs == *"$libdir/libstele.so.0"* ]] || fail "app_pkgconfig does not load libstele.so.0 from the prefix: $libs"

    # 2. CMake: find_package(stele), stele::stele and stele::stele_static.
    mkdir -p "$work/consumer"
    cp "$here/example.c" "$work/consumer/"
    cat >"$work/consumer/CMakeLists.txt" <<'CML'
cmake_minimum_required(VERSION 3.16)
project(stele_consumer LANGUAGES C)
find_package(stele 0.1 REQUIRED)
add_executable(app_cmake example.c)
target_link_libraries(app_cmake PRIVATE stele::stele)
add_executable(app_cmake_static example.c)
target_link_libraries(app_cmake_static PRIVATE stele::stele_static)
CML
    "$cmake" -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" \
        >"$work/consumer.log" 2>&1 || { cat "$work/consumer.log" >&2; fail "configuring the find_package(stele) project failed"; }
    grep -q "^stele_DIR:PATH=$prefix/" "$work/consumer/build/CMakeCache.txt" ||
        fail "find_package(stele) did not find the package in the prefix"
    "$cmake" --build "$work/consumer/build" >>"$work/consumer.log" 2>&1 ||
        { cat "$work/consumer.log" >&2; fail "building the find_package(stele) project failed"; }
    libs=$(LD_LIBRARY_PATH="$libdir" ldd "$work/consumer/build/app_cmake_static") || fail "ldd app_cmake_static failed"
    if [[ $libs == *libstele* ]]; then
        fail "app_cmake_static loads libstele.so: stele::stele_static is not the static library"
    fi

    run_app app_pkgconfig "$work/app_pkgconfig" "$work/log1" new
    run_app app_cmake "$work/consumer/build/app_cmake" "$work/log2" new
    run_app app_cmake_static "$work/consumer/build/app_cmake_static" "$work/log3" new
    # The same keys again: nothing appended, the original LSNs returned.
    run_app "app_pkgconfig (again)" "$work/app_pkgconfig" "$work/log1" duplicate
}

case ${1:-} in
install) shift; check_install "$@" ;;
readme) shift; check_readme "$@" ;;
*) fail "usage: check_install.sh install BUILD HERE CMAKE CC [CFLAGS] | readme README.md example.c" ;;
esac
