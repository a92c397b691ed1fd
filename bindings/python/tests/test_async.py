"""asyncio: await log.append_async(...) over stele_append_async, completions delivered to the
event loop through an eventfd reader."""
import asyncio

import pytest

import stele


def test_append_async(logdir):
    async def main(log):
        rs = await asyncio.gather(*(log.append_async("a", {"i": i}, key=f"k{i}") for i in range(200)))
        assert sorted(r.lsn for r in rs) == list(range(1, 201))
        assert all(r.decision is stele.Decision.NEW for r in rs)
        dup = await log.append_async("a", {"i": 0}, key="k0")
        assert dup.decision is stele.Decision.DUPLICATE and dup.lsn == rs[0].lsn
        with pytest.raises(stele.Conflict) as e:
            await log.append_async("a", {"i": 1}, key="k0")
        assert e.value.receipt.lsn == rs[0].lsn
        with pytest.raises(stele.StreamVersion):
            await log.append_async("a", b"", stream="s", expect_version=3)
        with pytest.raises(stele.TooLarge):  # refused before queuing: raised at once
            await log.append_async("a", b"", key="k" * 300)
        return rs

    with stele.open(logdir, durability="sync") as log:
        rs = asyncio.run(main(log))
        st = log.stats()
        assert st.appends_new == 200 and st.durable_lsn >= 200
        # A batch frame per few appends: the 200 in flight shared syncs.
        assert st.syncs < 200
        assert log.get(rs[5].lsn).value() == {"i": 5}
        # Another event loop on the same log (the first one is closed).
        r = asyncio.run(log.append_async("b", b"again"))
        assert r.lsn == 201


def test_close_with_appends_in_flight(logdir):
    """close() waits for the queued appends; their futures are settled, none is lost."""
    async def main():
        log = stele.open(logdir, durability="sync")
        tasks = [asyncio.ensure_future(log.append_async("c", b"x", key=f"c{i}")) for i in range(50)]
        await asyncio.sleep(0)  # every task runs up to its await: all 50 are queued
        log.close()
        rs = await asyncio.gather(*tasks)
        assert sorted(r.lsn for r in rs) == list(range(1, 51))
        with pytest.raises(stele.Closed):
            await log.append_async("c", b"late")

    asyncio.run(main())
    with stele.open(logdir) as log:
        assert log.stats().last_lsn == 50
