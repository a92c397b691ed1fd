#!/usr/bin/env bash
# check_install.sh - tests stele as an outside program sees it (run by ctest).
#
#   check_install.sh install BUILD_DIR HERE CMAKE CC [CFLAGS]
#     Installs BUILD_DIR with `cmake --install` into a scratch prefix, builds
#     HERE/example.c three ways against that prefix only (pkg-config; CMake
#     find_package with stele::stele; with stele::stele_static), runs each on a
#     fresh log, checks the output, then runs one again on the same log and
#     checks that every append is now a duplicate. Then the installed commands:
#     PREFIX/bin/stele makes, appends to and reads a log; stele-bench runs;
#     `man stele` and `man stele-replay` find their pages through MANPATH,
#     and every installed page, rendered by man, is its command's --help text
#     (the page's SYNOPSIS the synopsis, its sections the help's sections).
#   check_install.sh readme README.md example.c
#     Checks that README.md links example.c and that its first ```c block is
#     lines of example.c, byte for byte.
set -euo pipefail

fail() {
    echo "check_install: $*" >&2
    exit 1
}

check_readme() {
    local readme=$1 example=$2 block start
    [[ -f $readme ]] || fail "$readme is missing"
    grep -qF '(tests/install/example.c)' "$readme" || fail "$readme does not link tests/install/example.c"
    block=$(awk '/^```c$/ { inside = 1; next } /^```$/ && inside { exit } inside' "$readme")
    [[ -n $block ]] || fail "$readme has no \`\`\`c block quoting $example"
    # The block is a run of example.c's lines, byte for byte, from the line its first line matches.
    start=$(grep -nxF -- "$(head -1 <<<"$block")" "$example" | head -1 | cut -d: -f1)
    [[ -n $start ]] || fail "the first line of $readme's \`\`\`c block is not a line of $example"
    diff -u <(tail -n +"$start" "$example" | head -n "$(wc -l <<<"$block")") <(printf '%s\n' "$block") ||
        fail "the first \`\`\`c block of $readme is not an excerpt of $example (diff above)"
    echo "README.md links $example and quotes it verbatim"
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

    check_commands "$prefix"
}

# page_as_help PAGE: the rendered page PAGE (on stdin) turned back into the
# --help text it was made from: header, NAME and SEE ALSO dropped, the body's
# 7-column indent taken off, "usage: " put back before the synopsis.
page_as_help() {
    awk 'NR > 1 { line[++n] = $0 }
        END {
            n--                                  # the footer
            while (n > 0 && line[n] == "") n--
            for (i = 1; i <= n && line[i] != "SYNOPSIS"; i++);
            first = 1
            for (i++; i <= n; i++) {
                if (line[i] == "SEE ALSO") break
                out[++m] = line[i]
            }
            while (m > 0 && out[m] == "") m--
            for (i = 1; i <= m; i++) {
                s = out[i]
                if (s ~ /^[A-Z]/) { print s; continue }
                sub(/^       /, "", s)
                if (first && s != "") { s = "usage: " s; first = 0 }
                print s
            }
        }'
}

# check_commands PREFIX: the installed stele, stele-bench and manual pages.
check_commands() {
    local prefix=$1 bin=$1/bin mandir=$1/share/man
    [[ -x $bin/stele ]] || fail "stele was not installed in $bin"
    [[ -x $bin/stele-bench ]] || fail "stele-bench was not installed in $bin"
    local out
    out=$("$bin/stele" init "$work/cmdlog") || fail "installed stele init failed: $out"
    out=$("$bin/stele" append "$work/cmdlog" --type t --key k --data '{"a":1}') || fail "installed stele append failed"
    [[ $out == '{"lsn":1,"decision":"new","stream_version":0}' ]] || fail "installed stele append printed $out"
    out=$("$bin/stele" get "$work/cmdlog" --key k) || fail "installed stele get failed"
    [[ $out == *'"lsn":1'*'"data":{"a":1}'* ]] || fail "installed stele get printed $out"
    "$bin/stele-bench" --help >/dev/null || fail "installed stele-bench --help failed"
    command -v man >/dev/null || fail "man is not installed (Debian package man-db, in .ci/run's list)"

    local page name cmd count=0
    for name in stele stele-replay; do
        MANPATH=$mandir MANWIDTH=200 LC_ALL=C.UTF-8 man "$name" >"$work/$name.man" 2>"$work/man.err" ||
            fail "man $name (MANPATH=$mandir) failed: $(cat "$work/man.err")"
        grep -q "^NAME" "$work/$name.man" || fail "man $name printed no NAME section"
    done
    for page in "$mandir"/man1/stele*.1; do
        name=$(basename "$page" .1)
        cmd=${name#stele}
        cmd=${cmd#-}
        # shellcheck disable=SC2086  # no command word for stele(1) itself
        "$bin/stele" $cmd --help >"$work/help.txt" || fail "stele $cmd --help failed"
        MANWIDTH=200 LC_ALL=C.UTF-8 man -l "$page" 2>"$work/man.err" | page_as_help >"$work/page.txt"
        [[ ! -s $work/man.err ]] || fail "man -l $page warned: $(cat "$work/man.err")"
        diff -u "$work/help.txt" "$work/page.txt" >&2 || fail "$page is not the text of stele $cmd --help (diff above)"
        count=$((count + 1))
    done
    local commands
    commands=$("$bin/stele" --help | awk '/^  stele / { print $2 }' | sort -u | wc -l)
    ((commands >= 1 && count == commands + 1)) ||
        fail "$count manual pages installed for $commands commands: one per command plus stele(1) expected"
    echo "stele, stele-bench and $count manual pages: ok (each page is its --help)"
}

case ${1:-} in
install) shift; check_install "$@" ;;
readme) shift; check_readme "$@" ;;
*) fail "usage: check_install.sh install BUILD HERE CMAKE CC [CFLAGS] | readme README.md example.c" ;;
esac
