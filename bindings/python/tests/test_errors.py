"""Error mapping: one exception class per stele_code, under stele.Error, carrying the engine's
message; every code a test can reach without fault injection is reached for real."""
import glob
import os

import pytest

import stele

CODES = {1: stele.Invalid, 2: stele.IOFailure, 3: stele.NoSpace, 4: stele.Corrupt, 5: stele.Locked,
         6: stele.NotFound, 7: stele.Fenced, 8: stele.TooLarge, 9: stele.Conflict, 10: stele.StreamVersion,
         11: stele.NoMemory, 12: stele.Format, 13: stele.Exists, 14: stele.ReadOnly, 15: stele.OutcomeUnknown,
         16: stele.Closed}


def test_one_class_per_code():
    assert len(set(CODES.values())) == len(CODES)
    for code, cls in CODES.items():
        assert stele.error_class(code) is cls and issubclass(cls, stele.Error)
        assert stele.strerror(code) and cls.__doc__
    assert stele.error_class(999) is stele.Error
    assert issubclass(stele.NotFound, LookupError) and issubclass(stele.Invalid, ValueError)


def check(exc, cls, *words):
    assert type(exc) is cls, type(exc)
    assert exc.code == next(c for c, k in CODES.items() if k is cls)
    assert exc.message == str(exc)
    for w in words:
        assert w in str(exc), (w, str(exc))


def test_reachable_codes(logdir):
    with pytest.raises(stele.NotFound) as e:
        stele.open(logdir, create=False)
    check(e.value, stele.NotFound, logdir)
    with pytest.raises(stele.Invalid) as e:
        stele.open(logdir, segment_size=1000)
    check(e.value, stele.Invalid, "segment_size")
    stele.create(logdir, payload_size_max=1000, durability="none")
    with pytest.raises(stele.Exists) as e:
        stele.create(logdir)
    check(e.value, stele.Exists)
    with stele.open(logdir, durability="none") as log:
        with pytest.raises(stele.Locked) as e:
            stele.open(logdir)
        check(e.value, stele.Locked, str(os.getpid()))
        with pytest.raises(stele.TooLarge) as e:
            log.append("t", b"x" * 1001)
        check(e.value, stele.TooLarge)
        with pytest.raises(stele.TooLarge) as e:
            log.append("t", b"x", key="k" * 256)
        check(e.value, stele.TooLarge, "key is 256 bytes")
        with pytest.raises(stele.Invalid):
            log.append(b"\xff\xfe", b"x")  # type must be UTF-8
        log.append("t", b"one", key="k")
        with pytest.raises(stele.Conflict) as e:
            log.append("t", b"two", key="k")
        check(e.value, stele.Conflict, "LSN 1")
        log.append("t", b"x", stream="s")
        with pytest.raises(stele.StreamVersion) as e:
            log.append("t", b"x", stream="s", expect_version=5)
        check(e.value, stele.StreamVersion)
        with pytest.raises(stele.NotFound) as e:
            log.get(99)
        check(e.value, stele.NotFound, "99")
        with pytest.raises(stele.NotFound):
            log.status("nope")
        with pytest.raises(stele.NotFound):
            log.get_key("nope")
    with stele.open(logdir, read_only=True) as ro:
        with pytest.raises(stele.ReadOnly) as e:
            ro.append("t", b"x")
        check(e.value, stele.ReadOnly)
    with pytest.raises(stele.Closed) as e:
        log.get(1)
    check(e.value, stele.Closed, "closed")


def test_argument_errors(logdir):
    with stele.open(logdir, durability="none") as log:
        with pytest.raises(TypeError, match="unexpected keyword argument 'kye'"):
            log.append("t", kye="x")
        with pytest.raises(TypeError, match="data must be"):
            log.append("t", 3.5)
        with pytest.raises(TypeError, match="at most 2 positional"):
            log.append("t", b"", "k")
        with pytest.raises(ValueError, match="expect_version"):
            log.append("t", stream="s", expect_version=-1)
        with pytest.raises(stele.Invalid, match="durability"):
            stele.open(logdir + "2", durability="sometimes")
        with pytest.raises(TypeError, match="needs a key"):
            log.intent(None)


def test_corrupt(logdir):
    """A flipped byte inside an acknowledged, durable record is Corrupt, naming the file."""
    with stele.open(logdir, durability="sync") as log:
        for i in range(20):
            log.append("t", b"P" * 100, key=f"k{i}")
    seg = sorted(glob.glob(os.path.join(logdir, "*.seg")) or
                 [p for p in glob.glob(os.path.join(logdir, "*")) if os.path.getsize(p) > 8192])[0]
    with open(seg, "r+b") as f:
        data = f.read()
        off = data.index(b"P" * 100) + 50
        f.seek(off)
        f.write(b"Q")
    with pytest.raises(stele.Corrupt) as e:
        stele.open(logdir)
    check(e.value, stele.Corrupt, seg, "offset 4096", "refusing to cut durable records")
    # A read-only open refuses too (its message is stele_strerror's alone: the engine sets no detail there).
    with pytest.raises(stele.Corrupt):
        stele.open(logdir, read_only=True)
