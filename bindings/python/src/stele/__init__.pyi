# Type hints for the stele package (the C extension stele._stele and stele/__init__.py).
import datetime
import enum
from collections.abc import Iterator, Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import Any, NamedTuple

__version__: str

Data = bytes | bytearray | memoryview | str | dict[str, Any] | list[Any] | None
Time = datetime.datetime | int | None
Key = str | bytes

class Decision(enum.IntEnum):
    NONE = 0
    NEW = 1
    DUPLICATE = 2
    CONFLICT = 3

class Kind(enum.IntEnum):
    EVENT = 1
    INTENT = 2
    OUTCOME = 3
    COMPENSATION = 4

class Outcome(enum.IntEnum):
    NONE = 0
    CONFIRMED = 1
    FAILED = 2

class Content(enum.IntEnum):
    JSON = 1
    TEXT = 2
    BINARY = 3

class State(enum.IntEnum):
    EVENT = 1
    PENDING = 2
    CONFIRMED = 3
    FAILED = 4
    COMPENSATED = 5

class Durability(enum.IntEnum):
    DEFAULT = 0
    SYNC = 1
    INTERVAL = 2
    NONE = 3

class Compression(enum.IntEnum):
    NONE = 0
    ZSTD = 1

class IOBackend(enum.IntEnum):
    URING = 0
    POSIX = 1

class Receipt(NamedTuple):
    lsn: int
    decision: Decision
    stream_version: int
    code: int

class Status(NamedTuple):
    state: State
    lsn: int
    recorded_at_ns: int
    stream_version: int
    outcome_lsn: int
    compensation_lsn: int

class PendingIntent(NamedTuple):
    lsn: int
    recorded_at_ns: int
    key: str

class Stats(NamedTuple):
    log_id: str
    created_at_ns: int
    first_lsn: int
    last_lsn: int
    durable_lsn: int
    segment_count: int
    sealed_segment_count: int
    disk_size: int
    data_size: int
    segment_size: int
    idem_window_ns: int
    payload_size_max: int
    compression: int
    durability: int
    read_only: bool
    fenced: bool
    appends_new: int
    appends_duplicate: int
    appends_conflict: int
    appends_failed: int
    batches_written: int
    syncs: int
    bytes_written: int
    direct_io: bool
    direct_io_fallbacks: int
    io_note: str
    segment_spare_failures: int
    spare_note: str
    index_keys: int
    index_pending: int
    index_streams: int
    index_memory: int
    index_checkpoint_lsn: int
    index_checkpoints: int
    index_checkpoint_failures: int
    index_expired: int
    index_scanned: int
    index_rebuilt: bool
    index_note: str
    recovery_torn_bytes: int
    recovery_torn_batches: int
    recovery_stray_files: int
    read_batches: int
    read_bytes: int
    read_index_loaded: int
    read_index_rebuilt: int
    read_index_written: int
    read_index_write_failures: int
    read_index_note: str
    compression_level: int
    dict_in_use: int
    dict_newest: int
    dict_count: int
    dict_auto_train_code: int
    dict_note: str

class Record:
    lsn: int
    recorded_at_ns: int
    event_time_ns: int
    stream_version: int
    fingerprint: int
    ref: int
    flags: int
    type: str
    stream: str | None
    key: str | None
    actor: str | None
    kind: Kind
    outcome: Outcome
    content: Content
    data: memoryview
    recorded_at: datetime.datetime
    event_time: datetime.datetime
    backfilled: bool
    def value(self) -> Any: ...
    def __buffer__(self, flags: int) -> memoryview: ...

class Reader(Iterator[Record]):
    def __iter__(self) -> Reader: ...
    def __next__(self) -> Record: ...
    def close(self) -> None: ...
    def __enter__(self) -> Reader: ...
    def __exit__(self, *exc: object) -> None: ...

class DeadLetter(NamedTuple):
    lsn: int
    dead_at_ns: int
    resolved_at_ns: int
    attempts: int
    key: str
    reason: str
    last_stderr: str

class ConsumerInfo(NamedTuple):
    name: str
    position: int
    dead_letters: int

class Cursor:
    name: str
    position: int
    exclusive: bool
    def commit(self, lsn: int) -> None: ...
    def check_exclusive(self) -> None: ...
    def dead_letter(self, lsn: int, reason: str | bytes, *, key: Key | None = None, attempts: int = 1,
                    last_stderr: str | bytes | None = None) -> None: ...
    def resolve_dead_letter(self, lsn: int) -> None: ...
    def dead_letters(self, include_resolved: bool = False) -> list[DeadLetter]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Cursor: ...
    def __exit__(self, *exc: object) -> bool: ...

class Error(Exception):
    code: int
    message: str
    receipt: Receipt | None
    receipts: list[Receipt] | None

class Invalid(Error, ValueError): ...
class IOFailure(Error): ...
class NoSpace(Error): ...
class Corrupt(Error): ...
class Locked(Error): ...
class NotFound(Error, LookupError): ...
class Fenced(Error): ...
class TooLarge(Error, ValueError): ...
class Conflict(Error): ...
class StreamVersion(Error): ...
class NoMemory(Error, MemoryError): ...
class Format(Error): ...
class Exists(Error): ...
class ReadOnly(Error): ...
class OutcomeUnknown(Error): ...
class Closed(Error): ...

class Log:
    closed: bool
    def __init__(self, path: str | bytes | PathLike[str], **options: Any) -> None: ...
    def __enter__(self) -> Log: ...
    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> bool: ...
    def append(self, type: str | bytes | None = None, data: Data = None, *, key: Key | None = None,
               stream: Key | None = None, expect_version: int | None = None, event_time: Time = None,
               actor: str | bytes | None = None, content: Content | str | None = None) -> Receipt: ...
    async def append_async(self, type: str | bytes | None = None, data: Data = None, *, key: Key | None = None,
                           stream: Key | None = None, expect_version: int | None = None, event_time: Time = None,
                           actor: str | bytes | None = None, content: Content | str | None = None) -> Receipt: ...
    def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[Receipt]: ...
    def intent(self, key: Key, type: str | bytes | None = None, data: Data = None, *, stream: Key | None = None,
               expect_version: int | None = None, event_time: Time = None, actor: str | bytes | None = None,
               content: Content | str | None = None) -> Receipt: ...
    def resolve(self, key: Key, outcome: Outcome | str, type: str | bytes | None = None, data: Data = None, *,
                stream: Key | None = None, expect_version: int | None = None, event_time: Time = None,
                actor: str | bytes | None = None, content: Content | str | None = None) -> Receipt: ...
    def compensate(self, ref: int, type: str | bytes | None = None, data: Data = None, *,
                   stream: Key | None = None, expect_version: int | None = None, event_time: Time = None,
                   actor: str | bytes | None = None, content: Content | str | None = None) -> Receipt: ...
    def get(self, lsn: int) -> Record: ...
    def get_key(self, key: Key) -> Record: ...
    def status(self, key: Key) -> Status: ...
    def pending(self, older_than: Time = None, limit: int = 0) -> list[PendingIntent]: ...
    def stream_version(self, stream: Key) -> tuple[int, int]: ...
    def lsn_at_time(self, when: datetime.datetime | int) -> int: ...
    def read(self, from_lsn: int = 0, type: str | bytes | None = None, *, stream: Key | None = None,
             from_version: int = 0, follow: bool = False, timeout: float | None = None) -> Reader: ...
    def cursor(self, name: str) -> Cursor: ...
    def consumers(self) -> list[ConsumerInfo]: ...
    def stats(self) -> Stats: ...
    def compression(self) -> dict[str, int]: ...
    def dict_train(self, *, sample_records: int | None = None, sample_size_max: int | None = None,
                   dict_size_max: int | None = None) -> dict[str, int]: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...

def open(path: str | bytes | PathLike[str], create: bool = True, **options: Any) -> Log: ...
def create(path: str | bytes | PathLike[str], **options: Any) -> None: ...
def verify(path: str | bytes | PathLike[str]) -> dict[str, Any]: ...
def segment_inspect(path: str | bytes | PathLike[str], batches: bool = False) -> dict[str, Any]: ...
def strerror(code: int) -> str: ...
def error_class(code: int) -> type[Error]: ...
