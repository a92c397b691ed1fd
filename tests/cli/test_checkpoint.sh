# test_checkpoint.sh - proves `stele keygen`, `stele checkpoint` and `stele
# audit` (SPEC.md §20.5, §20.7) against an attacker and an independent
# verifier:
#  - keygen writes NAME.key (mode 0600) and NAME.pub in the C2SP key formats
#    and never overwrites them;
#  - a checkpoint of a 40-record log over several sealed segments is a C2SP
#    signed note (origin stele/<log id>, size, base64 root, blank line,
#    "— name base64" signature line) that `checkpoint --verify` accepts with
#    the root `stele prove` gives; a flipped signature byte, a changed size, a
#    note signed by another key or of another --origin exit 5; malformed
#    files exit 2, missing ones 4;
#  - Go's sumdb/note test key (PeterNeumann) signs a checkpoint that verifies
#    under Go's own vkey: the key id and formats agree with Go's;
#  - verify_note.py (hashlib + PyNaCl, none of stele's code) checks the
#    signatures, a flipped one fails, and inclusion proofs from `stele
#    prove` (both ends, either side of tile and power-of-two boundaries;
#    test_prove.sh checks every LSN) against the checkpoint's root, with
#    leaves hashed from the segment files;
#  - audit passes on the log; then stele_tamper (tests/tamper_tool.c)
#    rewrites one record in a sealed segment with every checksum and chain
#    value recomputed: `stele verify` calls the log clean, `stele audit`
#    exits 5 naming that LSN. The same in the active segment. Dropping the
#    newest segment: verify is clean, audit exits 5 naming the first missing
#    LSN. A log replaced by a rewritten copy exits 5 too.
source "$(dirname "$0")/lib.sh"
HERE=$(dirname "$0")
TAMPER=${STELE_TAMPER:?STELE_TAMPER: the path of stele_tamper (tests/CMakeLists.txt sets it)}
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import nacl.signing' 2>/dev/null; then
        PY=$p
        break
    fi
done
[ -n "$PY" ] || { echo "SKIP: needs python3 with PyNaCl (Debian: python3-nacl)"; exit 77; }

L=$T/log
N=40
run 0 "$STELE" init "$L" --segment-size 64K
awk -v n=$N 'BEGIN { for (i = 1; i <= n; i++) printf "{\"type\":\"pay\",\"data\":{\"i\":%d,\"pad\":\"%03000d\"}}\n", i, i }' >"$T/in.jsonl"
split -l 4 "$T/in.jsonl" "$T/part." # batches of 4 records (12 KiB): several sealed segments
for part in "$T"/part.*; do
    "$STELE" append "$L" --jsonl <"$part" >/dev/null || fail "append $part"
done
[ "$(ls "$L" | grep -c '\.seg$')" -ge 3 ] || fail "setup: expected several segments"

# keygen
K=$T/keys/orders
mkdir "$T/keys"
run 0 "$STELE" keygen --out "$K"
check_stderr_empty keygen
check_eq "$(stat -c %a "$K.key")" 600 "private key mode"
grep -Eq '^orders\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$' "$K.pub" || fail "public key format: $(cat "$K.pub")"
grep -Eq '^PRIVATE\+KEY\+orders\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$' "$K.key" || fail "private key format"
check_jq "$T/out" ".[0].name == \"orders\" and .[0].vkey == \"$(cat "$K.pub")\"" "keygen's output"
cp "$K.key" "$T/key.before"
run 2 "$STELE" keygen --out "$K"
check_stderr_line "keygen over an existing key"
cmp -s "$K.key" "$T/key.before" || fail "keygen overwrote a key"
run 2 "$STELE" keygen --out "$T/keys/x" --name 'has space'
[ ! -e "$T/keys/x.key" ] || fail "a refused keygen left a file"
run 0 "$STELE" keygen --out "$T/keys/other" --name other.example/log

# checkpoint, and --verify
C=$T/ckpt
run 0 "$STELE" checkpoint "$L" --key "$K.key"
check_stderr_empty checkpoint
cp "$T/out" "$C"
run 0 "$STELE" stats "$L"
origin="stele/$(jq -r .log_id "$T/out")"
run 0 "$STELE" prove "$L" --lsn 1
root=$(jq -r .root "$T/out")
root_b64=$("$PY" -c 'import base64, sys; print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode())' "$root")
printf '%s\n%s\n%s\n\n' "$origin" "$N" "$root_b64" >"$T/want_body"
head -c "$(wc -c <"$T/want_body")" "$C" | cmp -s - "$T/want_body" || fail "checkpoint body: $(cat "$C")"
check_eq "$(wc -l <"$C")" 5 "checkpoint lines"
tail -1 "$C" | grep -Eq "^$(printf '\xe2\x80\x94') orders [A-Za-z0-9+/]{91}=$" || fail "signature line: $(tail -1 "$C")"
run 0 "$STELE" checkpoint --verify "$C" --public-key "$K.pub"
check_jq "$T/out" ".[0] == {origin: \"$origin\", tree_size: $N, root: \"$root\", verified: true}" "verify's output"
run 0 "$STELE" checkpoint --verify "$C" --public-key "$K.pub" --origin "$origin"
run 5 "$STELE" checkpoint --verify "$C" --public-key "$K.pub" --origin example.com/other
check_stderr_line "another origin"
run 5 "$STELE" checkpoint --verify "$C" --public-key "$T/keys/other.pub"
grep -q 'no signature by key other.example/log+' "$T/err" || fail "unsigned: $(cat "$T/err")"

# A flipped signature byte (a base64 digit changed), and a changed size.
sig=$(tail -1 "$C")
c=${sig:20:1}
[ "$c" = A ] && d=B || d=A
{ head -4 "$C"; printf '%s%s%s\n' "${sig:0:20}" "$d" "${sig:21}"; } >"$T/bad_sig"
run 5 "$STELE" checkpoint --verify "$T/bad_sig" --public-key "$K.pub"
grep -q 'does not verify' "$T/err" || fail "bad signature message: $(cat "$T/err")"
sed "2 s/^$N\$/$((N + 1))/" "$C" >"$T/bad_size"
run 5 "$STELE" checkpoint --verify "$T/bad_size" --public-key "$K.pub"
# Malformed notes and keys exit 2, missing files 4.
head -3 "$C" >"$T/no_sig"
run 2 "$STELE" checkpoint --verify "$T/no_sig" --public-key "$K.pub"
run 2 "$STELE" checkpoint --verify "$C" --public-key "$K.key"
run 2 "$STELE" checkpoint "$L" --key "$K.pub"
run 4 "$STELE" checkpoint --verify "$T/nothing" --public-key "$K.pub"
run 4 "$STELE" checkpoint "$L" --key "$T/nothing.key"
run 2 "$STELE" checkpoint "$L"
run 2 "$STELE" checkpoint --verify "$C"

# Go's sumdb/note test key signs; Go's vkey verifies (key id c74f20a3).
echo 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz' >"$T/peter.key"
echo 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW' >"$T/peter.pub"
run 0 "$STELE" checkpoint "$L" --key "$T/peter.key" --origin example.com/orders
cp "$T/out" "$T/peter_ckpt"
tail -1 "$T/peter_ckpt" | grep -q "^$(printf '\xe2\x80\x94') PeterNeumann x08go" || fail "Go key id: $(tail -1 "$T/peter_ckpt")"
run 0 "$STELE" checkpoint --verify "$T/peter_ckpt" --public-key "$T/peter.pub"

# The independent verifier: Go's vector, the signatures, every inclusion proof.
run 0 "$PY" "$HERE/verify_note.py" --self-test
: >"$T/proofs"
PROVEN="1 2 10 13 16 17 32 33 39 40" # both ends, either side of tile (16) and power-of-two boundaries
for lsn in $PROVEN; do
    "$STELE" prove "$L" --lsn "$lsn" >>"$T/proofs" || fail "prove --lsn $lsn"
done
run 0 "$PY" "$HERE/verify_note.py" "$C" "$K.pub" --log "$L" "$T/proofs"
check_jq "$T/out" ".[0] == {origin: \"$origin\", tree_size: $N, root: \"$root\", proofs: $(echo $PROVEN | wc -w)}" "verify_note.py"
run 0 "$PY" "$HERE/verify_note.py" "$T/peter_ckpt" "$T/peter.pub"
run 1 "$PY" "$HERE/verify_note.py" "$T/bad_sig" "$K.pub"
run 1 "$PY" "$HERE/verify_note.py" "$T/bad_size" "$K.pub"

# The audit passes; copies for the other attacks.
run 0 "$STELE" audit "$L" --checkpoint "$C" --public-key "$K.pub"
check_stderr_empty audit
check_jq "$T/out" ".[0].ok and .[0].records == $N and .[0].first_bad_lsn == null and .[0].evidence and .[0].root == \"$root\"" "clean audit"
run 5 "$STELE" audit "$L" --checkpoint "$T/bad_sig" --public-key "$K.pub"
cp -a "$L" "$T/active"
cp -a "$L" "$T/truncated"

# The attacker rewrites LSN 10, in the first (sealed) segment.
run 0 "$STELE" get "$L" --lsn 10
cp "$T/out" "$T/before10"
run 0 "$TAMPER" "$L" 10
run 0 "$STELE" verify "$L"
check_jq "$T/out" ".[0].problems == 0 and .[0].records == $N" "verify calls the rewritten log clean"
run 0 "$STELE" get "$L" --lsn 10
cmp -s "$T/out" "$T/before10" && fail "the tamper tool changed nothing"
run 5 "$STELE" audit "$L" --checkpoint "$C" --public-key "$K.pub"
check_stderr_line "audit of a rewritten record"
grep -q 'LSN 10 ' "$T/err" || fail "audit does not name LSN 10: $(cat "$T/err")"
check_jq "$T/out" ".[0].ok == false and .[0].first_bad_lsn == 10 and .[0].evidence and .[0].root != \"$root\"" "audit report"

# The same in the active segment.
run 0 "$TAMPER" "$T/active" 39
run 0 "$STELE" verify "$T/active"
run 5 "$STELE" audit "$T/active" --checkpoint "$C" --public-key "$K.pub"
check_jq "$T/out" ".[0].first_bad_lsn == 39" "audit of a rewrite in the active segment"

# History truncated: the newest segment dropped.
newest=$(ls "$T/truncated" | grep '\.seg$' | sort | tail -1)
rm -f "$T/truncated/$newest" "$T/truncated/$newest.idx"
first_missing=$((10#${newest%.seg}))
run 0 "$STELE" verify "$T/truncated"
run 5 "$STELE" audit "$T/truncated" --checkpoint "$C" --public-key "$K.pub"
grep -q "LSN $first_missing and after are missing" "$T/err" || fail "truncation: $(cat "$T/err")"
check_jq "$T/out" ".[0].first_bad_lsn == $first_missing and .[0].records == $((first_missing - 1))" "truncation report"

# The whole log replaced by a rewritten copy (a new log holding the same events, one changed):
# caught, though without tree files that reproduce the checkpoint no LSN can be named.
R=$T/replaced
run 0 "$STELE" init "$R" --segment-size 64K
sed -i '3 s/"i":7,/"i":70,/' "$T/part.ab"
for part in "$T"/part.*; do
    "$STELE" append "$R" --jsonl <"$part" >/dev/null || fail "append $part to the copy"
done
run 0 "$STELE" verify "$R"
run 5 "$STELE" audit "$R" --checkpoint "$C" --public-key "$K.pub"
grep -q "do not hash to the checkpoint's root" "$T/err" || fail "replaced log: $(cat "$T/err")"
check_jq "$T/out" ".[0].first_bad_lsn == null and (.[0].evidence | not) and .[0].records == $N" "replaced log report"

# Usage.
run 2 "$STELE" audit "$L" --checkpoint "$C"
run 2 "$STELE" audit --checkpoint "$C" --public-key "$K.pub"
run 0 "$STELE" keygen --help
run 0 "$STELE" checkpoint --help
run 0 "$STELE" audit --help
echo "ok"
