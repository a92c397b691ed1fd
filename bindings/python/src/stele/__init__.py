"""stele: an embeddable, immutable event log, from Python.

Open a log with stele.open() (a context manager), append with Log.append()
(idempotency keys, streams with expected versions, intents and outcomes,
compensations), read back with Log.get(), Log.get_key() and Log.read().
Every error is an exception under stele.Error, one class per stele error
code (stele.Conflict, stele.Corrupt, stele.Fenced, stele.OutcomeUnknown ...),
whose message says what failed and why.

    import stele
    with stele.open("orders.log", durability="sync") as log:
        r = log.append("order.placed", {"amount": 250}, key="order-2")
        print(r.lsn, r.decision)            # 1 Decision.NEW
        for rec in log.read(type="order.placed"):
            print(rec.lsn, rec.key, rec.value())

The calls that can block release the GIL, so threads append concurrently;
`await log.append_async(...)` appends from asyncio without a thread.
The extension is stele._stele, written against the public C header stele.h.
"""

import asyncio
import datetime as _datetime
import enum
import json as _json

from . import _stele
from ._stele import (  # noqa: F401  (re-exported)
    Error, Invalid, IOFailure, NoSpace, Corrupt, Locked, NotFound, Fenced, TooLarge, Conflict,
    StreamVersion, NoMemory, Format, Exists, ReadOnly, OutcomeUnknown, Closed,
    Record, Reader, Receipt, Status, PendingIntent, Stats, Cursor, DeadLetter, ConsumerInfo,
    strerror, error_class, verify, segment_inspect,
)

__version__ = _stele.library_version

__all__ = [
    "open", "create", "verify", "Log", "Record", "Reader", "Receipt", "Status", "PendingIntent", "Stats",
    "Cursor", "DeadLetter", "ConsumerInfo",
    "Decision", "Kind", "Outcome", "Content", "State", "Durability", "Compression", "IOBackend",
    "Error", "Invalid", "IOFailure", "NoSpace", "Corrupt", "Locked", "NotFound", "Fenced", "TooLarge",
    "Conflict", "StreamVersion", "NoMemory", "Format", "Exists", "ReadOnly", "OutcomeUnknown", "Closed",
    "strerror", "error_class", "segment_inspect",
]


class Decision(enum.IntEnum):
    """What an append did (Receipt.decision)."""
    NONE = 0       #: not decided: the append failed
    NEW = 1        #: appended
    DUPLICATE = 2  #: the key holds the same request: nothing appended, lsn = the original
    CONFLICT = 3   #: the key holds another request: nothing appended, lsn = the original


class Kind(enum.IntEnum):
    """A record's kind (Record.kind)."""
    EVENT = 1
    INTENT = 2
    OUTCOME = 3
    COMPENSATION = 4


class Outcome(enum.IntEnum):
    """An intent's outcome (Record.outcome, Log.resolve)."""
    NONE = 0
    CONFIRMED = 1
    FAILED = 2


class Content(enum.IntEnum):
    """How a payload is encoded (Record.content; inferred from append's data)."""
    JSON = 1
    TEXT = 2
    BINARY = 3


class State(enum.IntEnum):
    """What a key holds (Status.state)."""
    EVENT = 1
    PENDING = 2
    CONFIRMED = 3
    FAILED = 4
    COMPENSATED = 5


class Durability(enum.IntEnum):
    """When an append is acknowledged: "sync" (on stable storage, group commit), "interval"
    (written; synced every sync_interval_ms) or "none" (written; durable after sync())."""
    DEFAULT = 0
    SYNC = 1
    INTERVAL = 2
    NONE = 3


class Compression(enum.IntEnum):
    """A log's compression, fixed at creation."""
    NONE = 0
    ZSTD = 1


class IOBackend(enum.IntEnum):
    """How batches are written: io_uring (default) or pwrite + fdatasync."""
    URING = 0
    POSIX = 1


_EPOCH = _datetime.datetime(1970, 1, 1, tzinfo=_datetime.timezone.utc)


def _dt_to_ns(value):
    """A datetime (naive = local time, as datetime.timestamp) as ns since the epoch."""
    if not isinstance(value, _datetime.datetime):
        raise TypeError(f"a time must be a datetime or ns since the epoch (int), not {type(value).__name__}")
    if value.tzinfo is None:
        value = value.astimezone()
    d = value - _EPOCH
    return (d.days * 86400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000


def _ns_to_dt(ns):
    return _EPOCH + _datetime.timedelta(microseconds=ns // 1000)


def _json_dumps(obj):
    return _json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


_stele._set_enums(Decision, Kind, Outcome, Content, State)
_stele._set_helpers(_dt_to_ns, _ns_to_dt, _json_dumps, _json.loads)


def _choice(enum_cls, value, name):
    if value is None or isinstance(value, int):
        return value
    try:
        return enum_cls[str(value).upper()]
    except KeyError:
        names = ", ".join(repr(m.name.lower()) for m in enum_cls)
        raise Invalid(f"open: {name} {value!r} is not one of {names}") from None


def _seconds_to_ns(value, name):
    if value is None:
        return None
    if isinstance(value, _datetime.timedelta):
        return (value.days * 86400 + value.seconds) * 1_000_000_000 + value.microseconds * 1000
    if isinstance(value, (int, float)) and value >= 0:
        return int(value * 1_000_000_000)
    raise TypeError(f"open: {name} must be seconds (int, float) or a timedelta")


def _options(durability=None, io_backend=None, compression=None, default_durability=None,
             idem_window=None, **opts):
    opts["durability"] = _choice(Durability, durability, "durability")
    opts["io_backend"] = _choice(IOBackend, io_backend, "io_backend")
    opts["compression"] = _choice(Compression, compression, "compression")
    opts["default_durability"] = _choice(Durability, default_durability, "default_durability")
    if idem_window is not None:
        opts["idem_window_ns"] = _seconds_to_ns(idem_window, "idem_window")
    for flag in ("create", "read_only", "direct_io"):
        if opts.get(flag) is not None:
            opts[flag] = int(bool(opts[flag]))
    return opts


class Log(_stele.Log):
    """An open log. Use it as a context manager (close() at the end).

    Options (keyword arguments; None = the default, see stele.h's stele_options):
    create (default True here), read_only, durability ("sync", "interval", "none" or a
    Durability), sync_interval_ms, io_backend ("uring", "posix"), queue_records_max,
    checkpoint_records, direct_io, dict_train_records, compression_level_override;
    fixed at creation: segment_size, idem_window (seconds or timedelta; or idem_window_ns),
    payload_size_max, compression ("none", "zstd"), compression_level, default_durability.
    """

    def __init__(self, path, **options):
        super().__init__(path, **_options(**options))
        self._loop = None

    # -- asyncio --------------------------------------------------------------------------

    def _bind_loop(self, loop):
        old = self._loop
        if old is loop:
            return
        fd = self._async_fd()
        if old is not None and not old.is_closed():
            if old.is_running():
                raise RuntimeError("append_async: this log is bound to another running event loop")
            old.remove_reader(fd)
        loop.add_reader(fd, self._async_ready)
        self._loop = loop

    def _async_ready(self):
        for fut, receipt, exc in self._async_drain():
            if fut.cancelled():
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(receipt)

    async def append_async(self, type=None, data=None, *, key=None, stream=None, expect_version=None,
                           event_time=None, actor=None, content=None):
        """Appends one event like append() and awaits its acknowledgement.

        The request is queued with stele_append_async (the calling thread does not wait for the
        write or the sync); the engine's completion wakes the event loop through an eventfd.
        Many appends in flight share batches and syncs. Queuing waits only when
        queue_records_max records are already queued. A cancelled await does not cancel the
        append. Raises as append() does."""
        loop = asyncio.get_running_loop()
        self._bind_loop(loop)
        fut = loop.create_future()
        self._append_async(fut, type, data, key=key, stream=stream, expect_version=expect_version,
                           event_time=event_time, actor=actor, content=content)
        return await fut

    # -- conveniences over the C calls -----------------------------------------------------

    def pending(self, older_than=None, limit=0):
        """The pending intents (no outcome yet) recorded at or before older_than (a datetime or
        ns; None = all), oldest first, at most limit of them (0 = no limit): [PendingIntent]."""
        ns = 0 if older_than is None else (older_than if isinstance(older_than, int) else _dt_to_ns(older_than))
        return self._pending(ns, limit)

    def lsn_at_time(self, when):
        """The first LSN recorded at or after when (a datetime or ns), or stats().last_lsn + 1."""
        return self._lsn_at_time(when if isinstance(when, int) else _dt_to_ns(when))

    def close(self):
        """Waits for every pending append (async ones included), makes everything durable and
        releases the log. Raises the final sync's error, if any."""
        try:
            super().close()
        finally:
            loop, self._loop = getattr(self, "_loop", None), None
            if loop is not None and not loop.is_closed():
                try:
                    running = asyncio.get_running_loop()
                except RuntimeError:
                    running = None
                if running is loop:
                    loop.remove_reader(self._async_fd())
                    self._async_ready()
                else:
                    loop.call_soon_threadsafe(self._finish_async, loop)

    def _finish_async(self, loop):
        loop.remove_reader(self._async_fd())
        self._async_ready()


def open(path, create=True, **options):
    """Opens the log in directory path (creating it when create and there is none) and returns
    a Log, to be used as a context manager. Options as Log's. Raises NotFound (no log and not
    create), Locked (another process writes it), Corrupt, Format, IOFailure, Invalid ..."""
    return Log(path, create=create, **options)


def create(path, **options):
    """Creates a log in directory path; Exists if there is one. Options as Log's."""
    _stele._create(path, **_options(**options))
