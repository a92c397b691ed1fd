"""A child process appends durably from 4 threads and prints each acknowledgement; it is killed
with SIGKILL mid-append (after at least 300 acknowledgements, while appends are in flight),
then the log is reopened from Python: every acknowledged append is there, byte for byte, at
the LSN its receipt gave, and the log holds no gap and no duplicate key."""
import os
import signal
import subprocess
import sys

import stele

CHILD = r"""
import sys, threading, stele
log = stele.open(sys.argv[1], durability="sync")
lock = threading.Lock()
def worker(t):
    i = 0
    while True:
        key = f"{t}-{i}"
        r = log.append("crash", key.encode() * 3, key=key)
        with lock:
            sys.stdout.write(f"{r.lsn} {key}\n")
            sys.stdout.flush()
        i += 1
threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(4)]
for th in threads:
    th.start()
print("started", flush=True)
for th in threads:
    th.join()
"""


def test_sigkill_mid_append(logdir):
    child = subprocess.Popen([sys.executable, "-c", CHILD, logdir], stdout=subprocess.PIPE, text=True)
    acked = {}
    try:
        while len(acked) < 300:
            line = child.stdout.readline()
            assert line, f"the child ended early with status {child.poll()}"
            if line.startswith("started"):
                continue
            lsn, key = line.split()
            acked[key] = int(lsn)
        os.kill(child.pid, signal.SIGKILL)
        # What the child printed before it died was acknowledged too.
        for line in child.stdout:
            if line.endswith("\n") and not line.startswith("started"):
                lsn, key = line.split()
                acked[key] = int(lsn)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    with stele.open(logdir, create=False) as log:
        st = log.stats()
        assert st.last_lsn >= max(acked.values())
        for key, lsn in acked.items():
            rec = log.get_key(key)
            assert rec.lsn == lsn and bytes(rec.data) == key.encode() * 3
        keys = [r.key for r in log.read()]
        assert len(keys) == st.last_lsn and len(set(keys)) == len(keys)
        # A retry of an acknowledged append after the crash is a duplicate, not a second record.
        some = next(iter(acked))
        assert log.append("crash", some.encode() * 3, key=some).decision is stele.Decision.DUPLICATE
