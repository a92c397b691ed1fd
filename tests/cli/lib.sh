# lib.sh - what the tests/cli/test_*.sh scripts share: the binary under test
# (first argument), a scratch directory removed on exit, and assertions that
# print the command, its output and what was expected when they fail.
# Sourced, not run.
set -euo pipefail

STELE=${1:?usage: $0 PATH_TO_STELE_BINARY}
if ! command -v jq >/dev/null; then
    echo "SKIP: these tests need jq"
    exit 77
fi
TMP_BASE=${STELE_TEST_TMP:-/tmp}
mkdir -p "$TMP_BASE"
T=$(mktemp -d "$TMP_BASE/cli.XXXXXX")
# Sealed segments are read-only files: make them writable so rm can go.
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# run WANT_EXIT CMD...: runs CMD with stdout in $T/out and stderr in $T/err
# and checks the exit status. Stdin is whatever the caller redirects.
run() {
    local want=$1 rc=0
    shift
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    if [ "$rc" != "$want" ]; then
        echo "command: $*" >&2
        echo "--- stdout:" >&2
        head -c 4000 "$T/out" >&2
        echo "--- stderr:" >&2
        head -c 4000 "$T/err" >&2
        fail "exit status $rc, expected $want"
    fi
}

# check_eq GOT WANT WHAT
check_eq() {
    [ "$1" == "$2" ] || fail "$3: got '$1', expected '$2'"
}

# check_jq FILE FILTER WHAT: jq -s FILTER over FILE (all lines as one array)
# must print true.
check_jq() {
    local got
    got=$(jq -s "$2" "$1") || fail "$3: jq failed on $1"
    if [ "$got" != "true" ]; then
        echo "--- $1:" >&2
        head -c 4000 "$1" >&2
        fail "$3 (jq -s '$2' gave $got)"
    fi
}

# check_stderr_empty WHAT: successful commands print nothing on stderr.
check_stderr_empty() {
    [ ! -s "$T/err" ] || fail "$1: unexpected stderr: $(cat "$T/err")"
}

# check_stderr_line WHAT: a failure is exactly one "stele: ..." line on stderr.
check_stderr_line() {
    [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^stele: ' "$T/err" ||
        fail "$1: stderr is not one 'stele: ...' line: $(cat "$T/err")"
}

# flip_byte FILE OFFSET: inverts every bit of one byte in place.
flip_byte() {
    local byte
    byte=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((byte ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
