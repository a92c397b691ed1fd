"""Dictionaries, the compression report and the segment walk, as a user of a zstd log checks them."""
import os

import pytest

import stele


def order(i):
    return {"order": i, "customer": f"c-{i % 50}", "amount": i * 3, "currency": "EUR", "note": "standard shipping"}


def segment_files(logdir):
    return sorted(os.path.join(logdir, f) for f in os.listdir(logdir) if f.endswith(".seg"))


def test_dict_train_then_batches_use_it(logdir):
    # interval mode: one thread's appends are small batches, which compress with the dictionary
    # (batches over 16 KiB, as none mode makes, are their own history: SPEC.md §18)
    with stele.open(logdir, compression="zstd", durability="interval", sync_interval_ms=60000) as log:
        with pytest.raises(stele.Invalid, match="no records"):
            log.dict_train()
        for i in range(2000):
            log.append("order.placed", order(i), key=f"k{i}")
        with pytest.raises(stele.Invalid, match="sample_records"):
            log.dict_train(sample_records=1)  # below the bound of 16
        with pytest.raises(TypeError):
            log.dict_train(sample_records="many")
        info = log.dict_train(sample_records=2000)
        assert info["dict_id"] == 1 and info["trained_through_lsn"] == 2000
        assert info["sample_records"] == 2000 and 0 < info["dict_size"] <= 112640
        assert os.path.exists(os.path.join(logdir, "0000000001.dict"))
        for i in range(2000, 3000):
            log.append("order.placed", order(i), key=f"k{i}")
        log.sync()
        rep = log.compression()
        assert rep["dict_id_max"] == 1 and rep["batches_dict"] > 0
        assert rep["batches_zstd"] <= rep["batches"] and rep["stored_size"] < rep["raw_size"]
        assert log.stats().dict_in_use == 1
    # the records read back whole through the dictionary, after reopening
    with stele.open(logdir, create=False, read_only=True) as log:
        assert [r.value()["order"] for r in log.read(2990)] == list(range(2989, 3000))


def test_segment_inspect_walks_what_was_written(logdir):
    with stele.open(logdir) as log:
        log.append_batch([{"type": "e", "data": {"i": i}} for i in range(10)])
        for i in range(5):
            log.append("e", {"i": i})
        last = log.stats().last_lsn
    (seg,) = segment_files(logdir)
    info = stele.segment_inspect(seg, batches=True)
    assert info["seq"] == 1 and info["first_lsn"] == 1 and info["last_lsn"] == last == 15
    assert info["record_count"] == 15 and info["batch_count"] == len(info["batches"])
    assert sum(b["record_count"] for b in info["batches"]) == 15
    assert info["batches"][0]["offset"] == 4096 and info["batches"][0]["first_lsn"] == 1
    assert "batches" not in stele.segment_inspect(seg)

    # a flipped byte in the second batch's body: the walk of this unsealed segment stops there
    second = info["batches"][1]["offset"]
    with open(seg, "r+b") as f:
        f.seek(second + 100)
        b = f.read(1)
        f.seek(second + 100)
        f.write(bytes([b[0] ^ 0x40]))
    cut = stele.segment_inspect(seg)
    assert cut["data_end"] == second and cut["batch_count"] == 1 and cut["stop_note"]

    with pytest.raises(stele.NotFound, match="nope"):
        stele.segment_inspect(os.path.join(logdir, "nope.seg"))
