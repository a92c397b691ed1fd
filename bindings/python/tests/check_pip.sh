#!/usr/bin/env bash
# check_pip.sh BUILD_DIR SOURCE_DIR CMAKE PYTHON - the binding as a newcomer installs it (ctest
# python_pip): `cmake --install` of BUILD_DIR into a scratch prefix, a venv of PYTHON (seeing
# Debian's pip and setuptools: --system-site-packages), `pip install --no-build-isolation` of a
# copy of SOURCE_DIR (bindings/python; pip builds inside the tree it is given) finding the
# library through pkg-config and PKG_CONFIG_PATH, then example.py run twice by the venv's
# python with no PYTHONPATH or LD_LIBRARY_PATH: the output must be three new appends, then
# three duplicates.
set -euo pipefail
build=$1 src=$2 cmake=$3 python=$4
fail() {
    echo "check_pip: $*" >&2
    exit 1
}
base=${STELE_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$base"
tmp=$(mktemp -d "$base/pip.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$cmake" --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" || fail "cmake --install failed: $(cat "$tmp/install.log")"
pc=$(find "$tmp/prefix" -name stele.pc | head -1)
[[ -n $pc ]] || fail "no stele.pc under $tmp/prefix"
cp -r "$src" "$tmp/src"
rm -rf "$tmp/src/tests" "$tmp/src/build" "$tmp/src"/*.egg-info
"$python" -m venv --without-pip --system-site-packages "$tmp/venv" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
PKG_CONFIG_PATH=$(dirname "$pc") "$tmp/venv/bin/python" -m pip install -q --no-build-isolation --no-deps --no-index \
    "$tmp/src" >"$tmp/pip.log" 2>&1 || fail "pip install failed: $(cat "$tmp/pip.log")"
expected() {
    cat <<OUT
append order-1: lsn 1, $1
append order-2: lsn 2, $1
append order-3: lsn 3, $1
get: {'amount': 250}
read: lsn 1, key order-1, payload {"amount":100}
read: lsn 2, key order-2, payload {"amount":250}
read: lsn 3, key order-3, payload {"amount":75}
OUT
}
cd "$tmp"
for decision in new duplicate; do
    out=$(env -u PYTHONPATH -u LD_LIBRARY_PATH "$tmp/venv/bin/python" "$src/example.py" "$tmp/log") ||
        fail "example.py exited with status $? (output: $out)"
    diff -u <(expected "$decision") <(printf '%s\n' "$out") || fail "example.py printed something else (diff above)"
done
where=$("$tmp/venv/bin/python" -c 'import stele._stele as m; print(m.__file__)')
[[ $where == "$tmp/venv/"* ]] || fail "stele was imported from $where, not from the venv"
echo "pip install --no-build-isolation: ok (pkg-config, venv at $tmp/venv, example.py new then duplicate)"
