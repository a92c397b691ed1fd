#!/usr/bin/env python3
"""bench.py - appends/s from Python: stele against the standard library's sqlite3, in the same run.

    PYTHONPATH=build/python python3 bindings/python/bench.py [--duration S] [--runs N]
        [--threads 1,32] [--record-size BYTES] [--dir PATH] [--stele-bench build/bench/stele-bench]

Each round measures, on fresh stores, for every thread count:
  stele  durability sync, every append with a unique idempotency key (Log.append, the GIL
         released while it waits: the threads' appends share group commits);
  sqlite WAL, synchronous=FULL, a table with a UNIQUE key column, one INSERT and COMMIT per
         event, a connection per thread (busy_timeout 60 s);
then, on one thread with durability none and no key: Log.append from Python, and the C API's
rate through `stele-bench --threads 1 --durability none --record-size BYTES --duration S` (when
--stele-bench is given), so that the binding's cost shows against the same engine. Rounds are
interleaved so that a noisy machine weighs on every store alike; the medians of the rounds
are reported with each ratio. Nothing here is asserted: it is a measurement.
"""
import argparse
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import stele


def run_threads(threads, duration, setup, append):
    """Runs append(state, thread, i) in threads threads for duration seconds; returns appends/s."""
    states = [setup(t) for t in range(threads)]
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    stop = [0.0]
    errors = []

    def worker(t):
        state, n = states[t], 0
        barrier.wait()
        deadline = stop[0]
        try:
            while time.monotonic() < deadline:
                append(state, t, n)
                n += 1
        except Exception as e:
            errors.append(e)
        counts[t] = n

    ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    start = time.monotonic()
    stop[0] = start + duration
    barrier.wait()
    for th in ths:
        th.join()
    elapsed = time.monotonic() - start
    if errors:
        raise errors[0]
    return sum(counts) / elapsed, states


def bench_stele(path, threads, duration, payload, durability, keys):
    log = stele.open(path, durability=durability)
    try:
        if keys:
            rate, _ = run_threads(threads, duration, lambda t: None,
                                  lambda s, t, i: log.append("bench", payload, key=f"{t}-{i}"))
        else:
            rate, _ = run_threads(threads, duration, lambda t: None, lambda s, t, i: log.append("bench", payload))
    finally:
        log.close()
    return rate


def bench_sqlite(path, threads, duration, payload):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, type TEXT, payload BLOB)")
    db.commit()
    db.close()

    def setup(t):
        c = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA synchronous=FULL")
        return c

    def append(c, t, i):
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO events (key, type, payload) VALUES (?, ?, ?)", (f"{t}-{i}", "bench", payload))
        c.execute("COMMIT")

    rate, conns = run_threads(threads, duration, setup, append)
    for c in conns:
        c.close()
    return rate


def bench_c(stele_bench, directory, duration, size):
    cmd = [stele_bench, "--threads", "1", "--durability", "none", "--record-size", str(size),
           "--duration", str(duration), "--dir", directory]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "stele" and len(f) > 6 and re.fullmatch(r"\d+(\.\d+)?", f[6]):
            return float(f[6])
    raise RuntimeError(f"bench: no stele line in the output of {' '.join(cmd)}:\n{out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    ap.add_argument("--runs", type=int, default=3, help="rounds; medians are reported (default 3)")
    ap.add_argument("--threads", default="1,32", help="thread counts of the durable runs (default 1,32)")
    ap.add_argument("--record-size", type=int, default=100, help="payload bytes (default 100)")
    ap.add_argument("--dir", default=None, help="where the stores are made (default: a temporary directory)")
    ap.add_argument("--stele-bench", default=None, help="path of stele-bench, for the C API's rate")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    payload = os.urandom(args.record_size // 2).hex().encode()[: args.record_size]
    base = tempfile.mkdtemp(prefix="stele-pybench-", dir=args.dir)
    results = {}

    def record(name, rate):
        results.setdefault(name, []).append(rate)
        print(f"  {name:<28} {rate:12.0f} appends/s", flush=True)

    def fresh(name):
        p = os.path.join(base, name)
        shutil.rmtree(p, ignore_errors=True)
        if os.path.exists(p):
            os.unlink(p)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(p + suffix):
                os.unlink(p + suffix)
        return p

    try:
        for run in range(1, args.runs + 1):
            print(f"round {run}/{args.runs}", flush=True)
            for n in threads:
                record(f"stele sync key {n}t", bench_stele(fresh("log"), n, args.duration, payload, "sync", True))
                record(f"sqlite3 FULL key {n}t", bench_sqlite(fresh("db.sqlite"), n, args.duration, payload))
            record("stele none 1t (Python)", bench_stele(fresh("log"), 1, args.duration, payload, "none", False))
            if args.stele_bench:
                d = fresh("cbench")
                os.makedirs(d)
                record("stele none 1t (C API)", bench_c(args.stele_bench, d, args.duration, args.record_size))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nmedians of {args.runs} rounds, {args.duration:g} s each, {args.record_size}-byte payloads:")
    for k, v in med.items():
        lo, hi = min(results[k]), max(results[k])
        print(f"  {k:<28} {v:12.0f} appends/s   (range {lo:.0f}-{hi:.0f})")
    for n in threads:
        a, b = med[f"stele sync key {n}t"], med[f"sqlite3 FULL key {n}t"]
        print(f"  durable, {n} thread{'s' if n > 1 else ''}: stele / sqlite3 = {a / b:.1f}x")
    if args.stele_bench:
        a, b = med["stele none 1t (Python)"], med["stele none 1t (C API)"]
        print(f"  durability none, 1 thread: Python / C API = {a / b:.2f}")
    print(f"  python {sys.version.split()[0]}, stele {stele.__version__}, sqlite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
