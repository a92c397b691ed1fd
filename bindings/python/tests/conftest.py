"""Shared fixtures of the stele binding's tests (run by ctest as `python`, or by hand:
PYTHONPATH=build/python python3 -m pytest bindings/python/tests)."""
import os
import tempfile

import pytest


@pytest.fixture
def logdir():
    """A fresh directory for a log, under STELE_TEST_TMP when ctest sets it; removed afterwards."""
    base = os.environ.get("STELE_TEST_TMP")
    if base:
        os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="py-", dir=base) as d:
        yield os.path.join(d, "log")


def sanitized():
    """True under the ASan+UBSan build (the ctest test sets STELE_PY_SANITIZE)."""
    return os.environ.get("STELE_PY_SANITIZE") == "1"
