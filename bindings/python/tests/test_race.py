"""32 Python threads race on the same 100 keys (durability sync, the GIL released in every
append): each key gets exactly one NEW record, every other attempt is a DUPLICATE naming it."""
import collections
import random
import threading

import stele

THREADS = 32
KEYS = 100


def test_key_race(logdir):
    with stele.open(logdir, durability="sync") as log:
        barrier = threading.Barrier(THREADS)
        results = [[] for _ in range(THREADS)]
        errors = []

        def worker(t):
            order = list(range(KEYS))
            random.Random(t).shuffle(order)
            try:
                barrier.wait()
                for k in order:
                    r = log.append("race", {"k": k}, key=f"key-{k}")
                    results[t].append((k, r.decision, r.lsn))
            except Exception as e:  # reported below: a thread's failure must fail the test
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        by_key = collections.defaultdict(list)
        for res in results:
            for k, decision, lsn in res:
                by_key[k].append((decision, lsn))
        assert sorted(by_key) == list(range(KEYS))
        for k, got in by_key.items():
            assert len(got) == THREADS
            new = [lsn for d, lsn in got if d is stele.Decision.NEW]
            assert len(new) == 1, (k, got)
            assert all(d is stele.Decision.DUPLICATE and lsn == new[0] for d, lsn in got if d is not stele.Decision.NEW)
            assert log.get_key(f"key-{k}").lsn == new[0]
        st = log.stats()
        assert st.last_lsn == KEYS and st.appends_new == KEYS
        assert st.appends_duplicate == KEYS * (THREADS - 1)
