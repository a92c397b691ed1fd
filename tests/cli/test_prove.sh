# test_prove.sh - proves `stele prove` (SPEC.md §20) against an independent
# verifier: Python's hashlib reads the segment files as SPEC.md §3-§5 lay
# them out, computes every leaf (SHA-256 of 0x00 and the record's bytes [8,
# record_size)) and the RFC 9162 root of every size, and checks each printed
# proof with RFC 9162 §2.1.3.2 / §2.1.4.2 written out again here: inclusion
# of every LSN of a 40-record log spanning several segments, in the current
# tree and in earlier ones; consistency from every size to the current tree
# and between earlier sizes; each proof with one hash changed fails. Bad
# arguments exit 2, LSNs and sizes beyond the log 4; --human labels the
# same hashes. `stele get --proof` prints the record with the very proof
# `stele prove` gave for it (so the verifier above covers it), by LSN and by
# key, in the current tree and an earlier one.
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "SKIP: needs python3"; exit 77; }
L=$T/log
N=40
run 0 "$STELE" init "$L" --segment-size 64K
awk -v n=$N 'BEGIN { for (i = 1; i <= n; i++) printf "{\"type\":\"order.placed\",\"stream\":\"o-%d\",\"data\":{\"i\":%d,\"pad\":\"%03000d\"}}\n", i % 3, i, i }' >"$T/in.jsonl"
split -l 4 "$T/in.jsonl" "$T/part." # batches of 4 records (12 KiB), so that they span several segments
for part in "$T"/part.*; do
    "$STELE" append "$L" --jsonl <"$part" >/dev/null || fail "append $part"
done
[ "$(ls "$L" | grep -c '\.seg$')" -ge 3 ] || fail "setup: expected several segments"

P=$T/proofs.jsonl
: >"$P"
for lsn in $(seq 1 $N); do
    run 0 "$STELE" prove "$L" --lsn "$lsn"
    check_stderr_empty "prove --lsn $lsn"
    cat "$T/out" >>"$P"
done
for size in 1 2 16 17 33; do
    for lsn in 1 $(((size + 1) / 2)) "$size"; do
        run 0 "$STELE" prove "$L" --lsn "$lsn" --size "$size"
        cat "$T/out" >>"$P"
    done
done
for from in $(seq 1 $N); do
    run 0 "$STELE" prove "$L" --from-size "$from"
    cat "$T/out" >>"$P"
done
for pair in "1 2" "3 7" "8 16" "15 33" "16 17" "20 20"; do
    set -- $pair
    run 0 "$STELE" prove "$L" --from-size "$1" --size "$2"
    cat "$T/out" >>"$P"
done
check_jq "$P" "length == $((N + 15 + N + 6)) and all(.[]; .hashes | all(test(\"^[0-9a-f]{64}$\")))" "every proof printed, hex hashes"

python3 - "$L" "$P" "$N" <<'PY' || fail "the independent verifier rejected a proof (above)"
import hashlib, json, os, struct, sys
log, proofs, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
H = lambda b: hashlib.sha256(b).digest()
node = lambda l, r: H(b"\x01" + l + r)
leaves = []
for name in sorted(f for f in os.listdir(log) if f.endswith(".seg")):
    seg = open(os.path.join(log, name), "rb").read()
    off = 4096
    while off + 64 <= len(seg) and seg[off + 8:off + 12] == b"STBA":
        count, first = struct.unpack_from("<IQ", seg, off + 12)
        stored, raw, comp = struct.unpack_from("<IIB", seg, off + 48)
        assert comp == 0 and first == len(leaves) + 1, (name, off, first)
        body, p = seg[off + 64:off + 64 + stored], 0
        for _ in range(count):
            size = struct.unpack_from("<I", body, p + 8)[0]
            leaves.append(H(b"\x00" + body[p + 8:p + size]))
            p += (size + 7) // 8 * 8
        off += (64 + stored + 4095) // 4096 * 4096
assert len(leaves) == n, len(leaves)

def mth(d):
    if len(d) == 0: return H(b"")
    if len(d) == 1: return d[0]
    k = 1
    while k * 2 < len(d): k *= 2
    return node(mth(d[:k]), mth(d[k:]))
roots = [mth(leaves[:m]) for m in range(n + 1)]

def inclusion_ok(leaf, index, size, path, root):  # RFC 9162 §2.1.3.2
    if index >= size: return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0: fn >>= 1; sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1; sn >>= 1
    return sn == 0 and r == root

def consistency_ok(first, second, old, new, path):  # RFC 9162 §2.1.4.2
    if first == second: return not path and old == new
    if first & (first - 1) == 0: path = [old] + path
    if not path: return False
    fn, sn = first - 1, second - 1
    while fn & 1: fn >>= 1; sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0: fn >>= 1; sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1; sn >>= 1
    return sn == 0 and fr == old and sr == new

def bad(msg): print("prove:", msg); sys.exit(1)
for line in open(proofs):
    p = json.loads(line)
    hs = [bytes.fromhex(h) for h in p["hashes"]]
    size, root = p["tree_size"], bytes.fromhex(p["root"])
    if root != roots[size]: bad("root of size %d differs: %s" % (size, line))
    if p["proof"] == "inclusion":
        lsn, leaf = p["lsn"], bytes.fromhex(p["leaf_hash"])
        if p["leaf_index"] != lsn - 1 or leaf != leaves[lsn - 1]: bad("leaf of LSN %d differs" % lsn)
        ok = lambda path: inclusion_ok(leaves[lsn - 1], lsn - 1, size, path, roots[size])
    else:
        a = p["from_size"]
        if bytes.fromhex(p["from_root"]) != roots[a]: bad("from_root of size %d differs" % a)
        ok = lambda path: consistency_ok(a, size, roots[a], roots[size], path)
    if not ok(hs): bad("does not verify: " + line)
    for i in range(len(hs)):
        flipped = list(hs); flipped[i] = bytes([hs[i][0] ^ 1]) + hs[i][1:]
        if ok(flipped): bad("verifies with hash %d changed: %s" % (i, line))
PY

# --human: the same hashes, labelled.
run 0 "$STELE" prove "$L" --lsn 5
first=$(jq -r '.hashes[0]' "$T/out")
root=$(jq -r '.root' "$T/out")
run 0 "$STELE" prove "$L" --lsn 5 --human
grep -q "^inclusion of LSN 5 in the tree of $N records$" "$T/out" || fail "human header: $(head -1 "$T/out")"
grep -q "^root  *$root$" "$T/out" || fail "human root"
grep -q "^hash 0  *$first$" "$T/out" || fail "human first hash"

# stele get --proof: the record and the same proof `stele prove` gave (checked by the
# verifier above), by LSN and by key, in the current tree and an earlier one.
for spec in "5 0" "1 0" "$N 0" "7 9" "9 9"; do
    set -- $spec
    if [ "$2" = 0 ]; then sz=(); else sz=(--size "$2"); fi
    run 0 "$STELE" get "$L" --lsn "$1" --proof "${sz[@]}"
    check_stderr_empty "get --lsn $1 --proof"
    [ "$(jq -r .lsn "$T/out")" = "$1" ] || fail "get --proof: record $(jq -c .lsn "$T/out"), want $1"
    jq -cS .proof "$T/out" >"$T/got"
    run 0 "$STELE" prove "$L" --lsn "$1" "${sz[@]}"
    jq -cS . "$T/out" >"$T/want"
    cmp -s "$T/got" "$T/want" || fail "get --lsn $1 --proof ${sz[*]}: $(cat "$T/got") is not prove's $(cat "$T/want")"
done

# Usage and range errors.
run 2 "$STELE" prove "$L"
run 2 "$STELE" prove "$L" --lsn 1 --from-size 1
run 2 "$STELE" prove "$L" --lsn 0
run 2 "$STELE" prove "$L" --from-size 0
run 2 "$STELE" prove "$L" --lsn 10 --size 5
run 2 "$STELE" prove "$L" --from-size 10 --size 5
run 4 "$STELE" prove "$L" --lsn $((N + 1))
grep -q "^stele: prove: " "$T/err" || fail "error line: $(cat "$T/err")"
run 4 "$STELE" prove "$L" --from-size 1 --size $((N + 1))
run 4 "$STELE" prove "$T/nolog" --lsn 1

# get --proof by key (a record appended now: the tree grows by one).
"$STELE" append "$L" --type t --key proof-key --data '{}' >/dev/null || fail "append proof-key"
run 0 "$STELE" get "$L" --key proof-key --proof
[ "$(jq -r .proof.lsn "$T/out")" = "$(jq -r .lsn "$T/out")" ] || fail "get --key --proof: proof of another LSN"
[ "$(jq -r .proof.tree_size "$T/out")" = $((N + 1)) ] || fail "get --key --proof: tree size $(jq .proof.tree_size "$T/out")"
run 0 "$STELE" get "$L" --lsn 3 --proof --human
grep -q "^inclusion of LSN 3 in the tree of $((N + 1)) records$" "$T/out" || fail "get --proof --human"
run 2 "$STELE" get "$L" --lsn 3 --size 5
run 4 "$STELE" get "$L" --lsn 3 --proof --size $((N + 2))
run 2 "$STELE" get "$L" --lsn 10 --proof --size 5
echo "PASS"
