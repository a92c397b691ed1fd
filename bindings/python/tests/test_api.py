"""The Python API over a real log: every call, the values it returns, the records read back."""
import datetime
import gc
import weakref

import pytest

import stele


def test_append_get_read(logdir):
    with stele.open(logdir, durability="none") as log:
        r1 = log.append("order.placed", {"amount": 100}, key="order-1")
        r2 = log.append("order.placed", b"\x00\x01binary", key="order-2")
        r3 = log.append("note", "text é", actor="alice")
        assert (r1.lsn, r2.lsn, r3.lsn) == (1, 2, 3)
        assert r1.decision is stele.Decision.NEW and r1.code == 0 and r1.stream_version == 0
        rec = log.get(1)
        assert (rec.lsn, rec.type, rec.key, rec.stream, rec.actor) == (1, "order.placed", "order-1", None, None)
        assert rec.kind is stele.Kind.EVENT and rec.content is stele.Content.JSON
        assert isinstance(rec.data, memoryview) and rec.data.readonly
        assert bytes(rec.data) == b'{"amount":100}' and rec.value() == {"amount": 100}
        assert bytes(memoryview(rec)) == b'{"amount":100}'
        rec2 = log.get(2)
        assert rec2.content is stele.Content.BINARY and rec2.value() == b"\x00\x01binary"
        rec3 = log.get_key("order-2")
        assert rec3.lsn == 2
        third = log.get(3)
        assert third.value() == "text é" and third.content is stele.Content.TEXT and third.actor == "alice"
        assert [r.lsn for r in log.read()] == [1, 2, 3]
        assert [r.lsn for r in log.read(from_lsn=2)] == [2, 3]
        assert [r.lsn for r in log.read(type="order.placed")] == [1, 2]
        assert [r.lsn for r in log.read(type="nothing")] == []


def test_memoryview_outlives_record(logdir):
    """The memoryview keeps its record alive: no dangling pointer after the record is dropped."""
    with stele.open(logdir, durability="none") as log:
        log.append("t", b"payload-bytes")
        view = log.get(1).data
        it_view = next(iter(log.read())).data
        gc.collect()
        assert bytes(view) == b"payload-bytes" and bytes(it_view) == b"payload-bytes"


def test_duplicate_and_conflict(logdir):
    with stele.open(logdir, durability="none") as log:
        first = log.append("t", {"a": 1}, key="k")
        dup = log.append("t", {"a": 1}, key="k")
        assert dup.decision is stele.Decision.DUPLICATE and dup.lsn == first.lsn
        with pytest.raises(stele.Conflict) as e:
            log.append("t", {"a": 2}, key="k")
        assert e.value.receipt.decision is stele.Decision.CONFLICT and e.value.receipt.lsn == first.lsn
        assert e.value.code == 9 and "conflict" in str(e.value)
        assert log.stats().appends_new == 1


def test_streams_and_expect_version(logdir):
    with stele.open(logdir, durability="none") as log:
        a = log.append("acct.opened", {"id": 7}, stream="acct-7", expect_version=0)
        b = log.append("acct.credited", {"n": 5}, stream="acct-7", expect_version=1)
        assert (a.stream_version, b.stream_version) == (1, 2)
        with pytest.raises(stele.StreamVersion) as e:
            log.append("acct.credited", {"n": 6}, stream="acct-7", expect_version=1)
        assert e.value.receipt.stream_version == 2
        log.append("other", b"x")
        assert log.stream_version("acct-7") == (2, b.lsn)
        assert log.stream_version("none") == (0, 0)
        assert [r.stream_version for r in log.read(stream="acct-7")] == [1, 2]
        assert [r.lsn for r in log.read(stream="acct-7", from_version=2)] == [b.lsn]
        with pytest.raises(TypeError, match="from_version"):
            log.read(stream="acct-7", from_lsn=2)
        with pytest.raises(TypeError, match="needs a stream"):
            log.read(from_version=2)


def test_event_time(logdir):
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc)
    with stele.open(logdir, durability="none") as log:
        log.append("t", b"", event_time=when)
        log.append("t", b"", event_time=1_000_000_123)
        r = log.get(1)
        assert r.event_time == when
        assert r.event_time_ns == int(when.timestamp()) * 10**9 + 678901000
        assert log.get(2).event_time_ns == 1_000_000_123
        assert r.recorded_at.tzinfo is datetime.timezone.utc
        assert log.lsn_at_time(0) == 1
        assert log.lsn_at_time(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)) == 3


def test_intents_outcomes_compensation(logdir):
    with stele.open(logdir, durability="none") as log:
        i = log.intent("pay-1", "payment.requested", {"amount": 5})
        log.intent("pay-2", "payment.requested", {"amount": 6})
        st = log.status("pay-1")
        assert st.state is stele.State.PENDING and st.lsn == i.lsn and st.outcome_lsn == 0
        assert [(p.lsn, p.key) for p in log.pending()] == [(1, "pay-1"), (2, "pay-2")]
        assert [p.key for p in log.pending(limit=1)] == ["pay-1"]
        o = log.resolve("pay-1", "confirmed", "payment.done")
        assert log.resolve("pay-1", stele.Outcome.CONFIRMED, "payment.done").decision is stele.Decision.DUPLICATE
        with pytest.raises(stele.Conflict):
            log.resolve("pay-1", "failed")
        with pytest.raises(stele.NotFound):
            log.resolve("pay-9", "failed")
        out = log.get(o.lsn)
        assert out.kind is stele.Kind.OUTCOME and out.outcome is stele.Outcome.CONFIRMED and out.ref == i.lsn
        assert log.status("pay-1").state is stele.State.CONFIRMED
        assert [p.key for p in log.pending()] == ["pay-2"]
        c = log.compensate(o.lsn, "payment.refunded", {"why": "test"})
        assert log.get(c.lsn).kind is stele.Kind.COMPENSATION and log.get(c.lsn).ref == o.lsn
        assert log.status("pay-1").state is stele.State.COMPENSATED
        assert log.status("pay-1").compensation_lsn == c.lsn


def test_append_batch(logdir):
    with stele.open(logdir, durability="none") as log:
        rs = log.append_batch([{"type": "a", "data": b"1", "key": "b1"},
                               {"type": "b", "data": {"x": 1}, "stream": "s", "expect_version": 0},
                               {"kind": "intent", "type": "i", "key": "b3"}])
        assert [r.lsn for r in rs] == [1, 2, 3] and all(r.decision is stele.Decision.NEW for r in rs)
        assert log.get(3).kind is stele.Kind.INTENT and log.stats().batches_written >= 1  # the get waits for the write
        with pytest.raises(stele.Conflict) as e:
            log.append_batch([{"type": "a", "data": b"other", "key": "b1"}, {"type": "c", "key": "b4"}])
        got = [r.decision for r in e.value.receipts]
        assert got == [stele.Decision.CONFLICT, stele.Decision.NEW] and e.value.receipt is e.value.receipts[0]
        with pytest.raises(TypeError, match="unknown field"):
            log.append_batch([{"tpye": "a"}])
        with pytest.raises(stele.Invalid, match="1 to 65536 events"):
            log.append_batch([])


def test_follow_with_timeout(logdir):
    import threading
    with stele.open(logdir, durability="none") as log:
        log.append("t", b"1")
        reader = log.read(follow=True, timeout=10)
        assert next(reader).lsn == 1
        started = threading.Event()

        def writer():
            started.wait()
            log.append("t", b"2")
        t = threading.Thread(target=writer)
        t.start()
        started.set()
        assert next(reader).lsn == 2  # waited for it, with the GIL released
        t.join()
        short = log.read(from_lsn=3, follow=True, timeout=0.05)
        assert list(short) == []  # nothing came within 50 ms: the iteration ends
        reader.close()


def test_stats_and_reopen(logdir):
    with stele.open(logdir, durability="sync") as log:
        for i in range(10):
            log.append("t", b"x", key=f"k{i}")
        st = log.stats()
        assert st.last_lsn == 10 and st.durable_lsn == 10 and st.appends_new == 10 and st.index_keys == 10
        assert st.durability == stele.Durability.SYNC and len(st.log_id) == 32 and not st.fenced
    with stele.open(logdir, create=False, read_only=True) as ro:
        assert ro.stats().read_only and ro.get_key("k3").lsn == 4
        with pytest.raises(stele.ReadOnly):
            ro.append("t", b"x")


def test_close_and_closed(logdir):
    log = stele.open(logdir, durability="none")
    log.append("t", b"x")
    reader = log.read()
    log.close()
    assert log.closed
    log.close()  # a second close is a no-op
    with pytest.raises(stele.Closed):
        log.append("t", b"x")
    with pytest.raises(stele.Closed):
        next(reader)
    ref = weakref.ref(log)
    del log, reader
    gc.collect()
    assert ref() is None


def test_help_shows_docstrings():
    import pydoc
    text = pydoc.render_doc(stele, renderer=pydoc.plaintext)
    for needle in ("append(type=None, data=None", "append_batch(events)", "read(from_lsn=0", "class Conflict",
                   "append_async", "Appends one event and waits"):
        assert needle in text, needle
