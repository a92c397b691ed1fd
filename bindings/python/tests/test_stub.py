"""The type stub (stele/__init__.pyi) and the Python enums say what the C library does: every
enum holds exactly the values of engine/include/stele.h, and the stub lists the same enum
members and NamedTuple fields as the runtime objects, so the three cannot drift apart."""
import ast
import enum
import os
import re

import stele

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "..", "..", "..", "engine", "include", "stele.h")
STUB = os.path.join(HERE, "..", "src", "stele", "__init__.pyi")

# Python enum -> the prefix of its constants in stele.h.
PREFIXES = {
    stele.Decision: "STELE_DECISION_",
    stele.Kind: "STELE_KIND_",
    stele.Outcome: "STELE_OUTCOME_",
    stele.Content: "STELE_CONTENT_",
    stele.State: "STELE_STATE_",
    stele.Durability: "STELE_DURABILITY_",
    stele.Compression: "STELE_COMPRESSION_",
    stele.IOBackend: "STELE_IO_",
}


def header_constants():
    with open(HEADER) as f:
        text = f.read()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s*(STELE_[A-Z_]+)\s*=\s*(\d+)\s*,", text, re.M)}


def stub_classes():
    with open(STUB) as f:
        tree = ast.parse(f.read())
    enums, tuples = {}, {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not node.bases:
            continue
        base = ast.unparse(node.bases[0])
        if base == "enum.IntEnum":
            enums[node.name] = {t.targets[0].id: ast.literal_eval(t.value) for t in node.body if isinstance(t, ast.Assign)}
        elif base == "NamedTuple":
            tuples[node.name] = [t.target.id for t in node.body if isinstance(t, ast.AnnAssign)]
    return enums, tuples


def test_enums_hold_the_values_of_stele_h():
    consts = header_constants()
    for cls, prefix in PREFIXES.items():
        want = {name[len(prefix):]: value for name, value in consts.items() if name.startswith(prefix)}
        assert want, f"no {prefix}* constant found in {HEADER}"
        have = {m.name: m.value for m in cls}
        assert have == want, f"stele.{cls.__name__} differs from {prefix}* in stele.h"


def test_stub_lists_the_runtime_enums_and_fields():
    enums, tuples = stub_classes()
    runtime_enums = {n for n in stele.__all__ if isinstance(getattr(stele, n), enum.EnumMeta)}
    assert set(enums) == runtime_enums
    for name, members in enums.items():
        assert members == {m.name: m.value for m in getattr(stele, name)}, f"stub of stele.{name}"
    assert tuples, "no NamedTuple class in the stub"
    for name, fields in tuples.items():
        cls = getattr(stele, name)  # a C struct sequence: its fields in order are __match_args__
        assert fields == list(cls.__match_args__), f"stub of stele.{name}"
