#!/usr/bin/env python3
"""verify_note.py - an independent verifier of stele's signed checkpoints
(SPEC.md §20.7) and inclusion proofs, written from the C2SP signed-note and
tlog-checkpoint specifications and RFC 9162 with nothing but hashlib and
PyNaCl (python3-nacl): none of stele's code is used.

  verify_note.py --self-test
      checks this verifier against the key and note of Go's
      golang.org/x/mod/sumdb/note tests (the PeterNeumann vector).
  verify_note.py NOTE PUB [--log DIR] [PROOFS.jsonl ...]
      checks NOTE's signature by the public key in PUB (key id recomputed),
      parses its checkpoint and prints {"origin","tree_size","root"}; then
      checks every inclusion proof in PROOFS (lines `stele prove --lsn N`
      printed) against the checkpoint's size and root (RFC 9162 §2.1.3.2),
      and that the proof fails with its first hash changed; with --log, each
      proof's leaf is recomputed from DIR's segment files (SPEC.md §3-§5,
      §20.1) instead of trusting the proof's leaf_hash.

Exit 0 when everything holds, 1 with the reason on stderr otherwise.
"""
import base64
import hashlib
import json
import os
import struct
import sys

import nacl.exceptions
import nacl.signing

DASH = "\u2014 ".encode()


def fail(msg):
    sys.stderr.write("verify_note: %s\n" % msg)
    sys.exit(1)


def sha256(b):
    return hashlib.sha256(b).digest()


def parse_vkey(text):
    """name+hex id+base64(0x01 || key) -> (name, id bytes, 32-byte key)."""
    name, rest = text.strip("\n").split("+", 1)
    hexid, b64 = rest.split("+", 1)
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != 33 or raw[0] != 1:
        fail("public key is not type 0x01 (Ed25519) and 32 bytes")
    kid = sha256(name.encode() + b"\n" + raw[:1] + raw[1:])[:4]
    if kid.hex() != hexid.lower():
        fail("key id %s is not SHA-256(name || 0x0A || 0x01 || key)[:4] = %s" % (hexid, kid.hex()))
    return name, kid, raw[1:]


def open_note(note, vkey):
    """The note's signed text, after checking its signature by vkey."""
    name, kid, key = vkey
    if not note.endswith(b"\n"):
        fail("note does not end in a newline")
    split = note.rfind(b"\n\n")
    if split < 0:
        fail("note has no blank line before its signatures")
    text, sigs = note[:split + 1], note[split + 2:]
    for line in sigs.split(b"\n")[:-1]:
        if not line.startswith(DASH):
            fail("signature line does not start with an em dash and a space: %r" % line)
        sname, b64 = line[len(DASH):].split(b" ", 1)
        blob = base64.b64decode(b64, validate=True)
        if sname.decode() != name or blob[:4] != kid:
            continue  # another key's signature: ignored
        try:
            nacl.signing.VerifyKey(key).verify(text, blob[4:])
        except nacl.exceptions.BadSignatureError:
            fail("the signature by %s does not verify" % name)
        return text
    fail("no signature by key %s+%s" % (name, kid.hex()))


def parse_checkpoint(text):
    lines = text.decode().split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    if not origin or str(size) != lines[1] or len(root) != 32:
        fail("not a checkpoint: %r" % text)
    return origin, size, root


def node(l, r):
    return sha256(b"\x01" + l + r)


def inclusion_ok(leaf, index, size, path, root):  # RFC 9162 §2.1.3.2
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def leaves_of(log):
    """Every record's leaf, SHA-256(0x00 || record bytes [8, record_size)),
    read from the segment files as SPEC.md §3-§5 lay them out."""
    leaves = []
    for name in sorted(f for f in os.listdir(log) if f.endswith(".seg")):
        with open(os.path.join(log, name), "rb") as f:
            seg = f.read()
        off = 4096
        while off + 64 <= len(seg) and seg[off + 8:off + 12] == b"STBA":
            count, first = struct.unpack_from("<IQ", seg, off + 12)
            stored, _raw, comp = struct.unpack_from("<IIB", seg, off + 48)
            if comp != 0 or first != len(leaves) + 1:
                fail("%s: batch at %d is compressed or out of order" % (name, off))
            body, p = seg[off + 64:off + 64 + stored], 0
            for _ in range(count):
                size = struct.unpack_from("<I", body, p + 8)[0]
                leaves.append(sha256(b"\x00" + body[p + 8:p + size]))
                p += (size + 7) // 8 * 8
            off += (64 + stored + 4095) // 4096 * 4096
    return leaves


def self_test():
    vkey = parse_vkey("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    text = (b"If you think cryptography is the answer to your problem,\n"
            b"then you don't know what your problem is.\n")
    sig = "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    if open_note(text + b"\n" + sig.encode(), vkey) != text:
        fail("self-test: the Go note's text")
    print(json.dumps({"self_test": "ok"}))


def main(argv):
    if argv == ["--self-test"]:
        return self_test()
    if len(argv) < 2:
        fail("usage: verify_note.py NOTE PUB [--log DIR] [PROOFS.jsonl ...] | --self-test")
    note_path, pub_path, rest = argv[0], argv[1], argv[2:]
    log = None
    if rest[:1] == ["--log"]:
        log, rest = rest[1], rest[2:]
    with open(pub_path) as f:
        vkey = parse_vkey(f.read())
    with open(note_path, "rb") as f:
        origin, size, root = parse_checkpoint(open_note(f.read(), vkey))
    leaves = leaves_of(log) if log else None
    proofs = 0
    for path in rest:
        for line in open(path):
            p = json.loads(line)
            if p["proof"] != "inclusion" or p["tree_size"] != size or bytes.fromhex(p["root"]) != root:
                fail("proof is not an inclusion proof against the checkpoint (size %d): %s" % (size, line))
            lsn, hs = p["lsn"], [bytes.fromhex(h) for h in p["hashes"]]
            leaf = leaves[lsn - 1] if leaves else bytes.fromhex(p["leaf_hash"])
            if bytes.fromhex(p["leaf_hash"]) != leaf:
                fail("LSN %d: the proof's leaf is not the record's hash" % lsn)
            if not inclusion_ok(leaf, lsn - 1, size, hs, root):
                fail("LSN %d: the inclusion proof does not verify" % lsn)
            if hs and inclusion_ok(leaf, lsn - 1, size, [bytes([hs[0][0] ^ 1]) + hs[0][1:]] + hs[1:], root):
                fail("LSN %d: the proof verifies with a hash changed" % lsn)
            proofs += 1
    print(json.dumps({"origin": origin, "tree_size": size, "root": root.hex(), "proofs": proofs}))


if __name__ == "__main__":
    main(sys.argv[1:])
