"""Consumer cursors, dead letters and verify, over a real log."""
import glob
import os

import pytest

import stele


def test_cursor_commit_and_dead_letters(logdir):
    with stele.open(logdir, durability="none") as log:
        for i in range(5):
            log.append("t", b"x", key=f"k{i}")
        with log.cursor("billing") as c:
            assert c.name == "billing" and c.position == 0 and c.exclusive
            c.check_exclusive()
            c.commit(3)
            assert c.position == 3
            with pytest.raises(stele.Invalid):
                c.commit(2)  # positions never go back
            with pytest.raises(stele.Invalid):
                c.commit(99)  # beyond the log
            c.dead_letter(4, "handler exited 1", key="k3", attempts=3, last_stderr="boom")
            [d] = c.dead_letters()
            assert (d.lsn, d.key, d.reason, d.attempts, d.last_stderr, d.resolved_at_ns) == (
                4, "k3", "handler exited 1", 3, "boom", 0)
            other = log.cursor("billing")  # a second handle: reads, may not change it
            assert not other.exclusive and other.position == 3
            with pytest.raises(stele.Locked):
                other.commit(4)
            with pytest.raises(stele.Locked):
                other.check_exclusive()
            other.close()
            assert [(i.name, i.position, i.dead_letters) for i in log.consumers()] == [("billing", 3, 1)]
            c.resolve_dead_letter(4)
            assert c.dead_letters() == [] and c.dead_letters(include_resolved=True)[0].resolved_at_ns > 0
            with pytest.raises(stele.NotFound):
                c.resolve_dead_letter(4)
        with pytest.raises(stele.Closed):
            c.position
        with pytest.raises(stele.Invalid):
            log.cursor("bad name")
        kept = log.cursor("kept")
    with pytest.raises(stele.Closed, match="log is closed"):
        kept.commit(1)  # the log's close closed it
    with stele.open(logdir) as log, log.cursor("billing") as c:
        assert c.position == 3  # durable


def test_verify(logdir):
    with stele.open(logdir, durability="sync") as log:
        for i in range(10):
            log.append("t", b"V" * 64)
    rep = stele.verify(logdir)
    assert rep["records"] == 10 and rep["last_lsn"] == 10 and rep["problems"] == [] and rep["problem_count"] == 0
    seg = glob.glob(os.path.join(logdir, "*.seg"))[0]
    with open(seg, "r+b") as f:
        data = f.read()
        f.seek(data.index(b"V" * 64) + 10)
        f.write(b"W")
    rep = stele.verify(logdir)
    assert rep["problem_count"] >= 1 and rep["problems"][0]["path"] == seg and rep["problems"][0]["what"]
    with pytest.raises(stele.NotFound):
        stele.verify(logdir + "-missing")
