/*
 * stele.h - the public API of stele, an embeddable, immutable event log.
 *
 * A log is a directory of checksummed, append-only segment files. One process
 * writes a log at a time (an exclusive lock); any number of threads in it may
 * append and read concurrently; other processes may open it read-only (they
 * see its durable records) and run consumers with their own cursors.
 *
 * Conventions:
 *  - Every fallible function returns a stele_code (0 = STELE_OK). The code is
 *    stable forever; stele_errmsg() gives the detail of the calling thread's
 *    last failure (operation, path, offset, errno text).
 *  - Outputs come last and are written only on success unless documented.
 *  - Close and free functions accept NULL.
 *  - Sizes are in bytes (`_size`), times in nanoseconds since the Unix epoch
 *    (`_ns`) unless the name says otherwise.
 *
 * SPEC.md is the normative description of the format and the guarantees.
 */
#ifndef STELE_H
#define STELE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STELE_VERSION_MAJOR 0
#define STELE_VERSION_MINOR 1
#define STELE_VERSION_PATCH 0
#define STELE_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define STELE_API __attribute__((visibility("default")))
#define STELE_NODISCARD __attribute__((warn_unused_result))
#else
#define STELE_API
#define STELE_NODISCARD
#endif

/* Error codes. Values are pinned forever; new codes are only appended. */
typedef enum stele_code {
    STELE_OK = 0,
    STELE_ERR_INVALID = 1,         /* a bad argument, option or input; nothing was changed */
    STELE_ERR_IO = 2,              /* a system call failed; the message names it, the path and errno */
    STELE_ERR_NOSPACE = 3,         /* ENOSPC or EDQUOT */
    STELE_ERR_CORRUPT = 4,         /* bytes on disk fail a check; the message names file, offset, LSN */
    STELE_ERR_LOCKED = 5,          /* another process holds the log's write lock, or another handle a
                                      consumer's lock (the message names which and the holder's pid) */
    STELE_ERR_NOT_FOUND = 6,       /* no such log, LSN or key */
    STELE_ERR_FENCED = 7,          /* an earlier write or sync failed: no more writes until reopen */
    STELE_ERR_TOO_LARGE = 8,       /* a field, record or batch exceeds its limit */
    STELE_ERR_CONFLICT = 9,        /* a different request holds the key, the intent's outcome, or the
                                      compensation of that record (fingerprints differ) */
    STELE_ERR_STREAM_VERSION = 10, /* the stream is not at the expected version */
    STELE_ERR_NOMEM = 11,          /* memory allocation failed */
    STELE_ERR_FORMAT = 12,         /* a format version this library does not read */
    STELE_ERR_EXISTS = 13,         /* creating a log where one already exists */
    STELE_ERR_READ_ONLY = 14,      /* a write on a handle opened read-only, or a change to a consumer
                                      whose lock file cannot be made (a read-only file system) */
    STELE_ERR_OUTCOME_UNKNOWN = 15,/* the write or sync carrying this append failed: it may or may
                                      not be on disk. Reopen, then retry with the same key. */
    STELE_ERR_CLOSED = 16,         /* the handle is closing */
} stele_code;

/* A stable, static description of code; never NULL (unknown codes get a generic text). */
STELE_API const char *stele_strerror(int code);

/* The detail of the calling thread's most recent failed stele call: what failed
 * and why (path, offset, LSN, errno text). "" when there is none. The pointer
 * stays valid until the thread's next stele call. */
STELE_API const char *stele_errmsg(void);

/* The library's version string, e.g. "0.1.0". */
STELE_API const char *stele_version(void);

/* ------------------------------------------------------------------ options */

typedef enum stele_durability {
    STELE_DURABILITY_DEFAULT = 0,  /* on open: the log's default, set at creation */
    STELE_DURABILITY_SYNC = 1,     /* acknowledged once on stable storage (group commit) */
    STELE_DURABILITY_INTERVAL = 2, /* acknowledged once written; a sync at least every sync_interval_ms */
    STELE_DURABILITY_NONE = 3,     /* acknowledged once encoded and indexed in memory (written within
                                      about 1 ms); durable only after stele_sync() or stele_close() */
} stele_durability;

typedef enum stele_compression {
    STELE_COMPRESSION_NONE = 0,
    STELE_COMPRESSION_ZSTD = 1,    /* zstd per batch, kept only when it saves space */
} stele_compression;

typedef enum stele_io_backend {
    STELE_IO_URING = 0,            /* writes through io_uring (default) */
    STELE_IO_POSIX = 1,            /* pwrite + fdatasync; for kernels without io_uring */
} stele_io_backend;

typedef struct stele_options {
    int create;                    /* 1: create the log when dir holds none (dir itself may be created). Default 0. */
    int read_only;                 /* 1: no writer lock, never writes the log; sees what writers have made
                                      durable (it fdatasyncs the active segment, through its own
                                      descriptor, before new records become visible: SPEC.md §10.2).
                                      Default 0. */
    stele_durability durability;   /* Default STELE_DURABILITY_DEFAULT (the log's own default). */
    uint32_t sync_interval_ms;     /* interval mode: ms between syncs. Default 100, bounds [1, 60000]. */
    stele_io_backend io_backend;   /* Default STELE_IO_URING. */
    uint32_t queue_records_max;    /* records encoded and not yet taken for writing before appenders
                                      block.
                                      Default 65536, bounds [1, 1048576]. */
    uint64_t checkpoint_records;   /* the writer checkpoints the index when a segment is sealed
                                      and at least this many records (and at least as many as
                                      the index holds keys) came since the last one, and
                                      always at close. Default 1000000; 0 = only at close. */
    int direct_io;                 /* 1: batches are written to the active segment with O_DIRECT
                                      (no copy into the page cache) where the file system allows
                                      it; where it does not, buffered writes plus fdatasync as
                                      with 0, and stats say so (direct_io, direct_io_fallbacks,
                                      io_note). 0: always buffered. Default 1. */
    uint64_t dict_train_records;   /* writer handles of zstd logs without a dictionary: once the log
                                      holds this many records, train one (stele_dict_train with
                                      default options) on a thread of its own, once per open; its
                                      outcome is in stele_stats. Default 0 = never. stele_close
                                      waits for a training in progress. */
    int compression_level_override;/* the zstd level this handle's writer compresses with instead of
                                      the log's own (stele.meta, set at creation). Default 0 = the
                                      log's level; else bounds [1, 19]. Only a log created with
                                      STELE_COMPRESSION_ZSTD compresses. */

    /* Fixed when the log is created (stored in the log; ignored when opening an existing one). */
    uint64_t segment_size;         /* bytes per segment file. Default 64 MiB, bounds [64 KiB, 4 GiB], a multiple of 4096. */
    uint64_t idem_window_ns;       /* how long idempotency keys are remembered (recorded time). Default 24 h; 0 = forever. */
    uint32_t payload_size_max;     /* largest payload accepted. Default 1 MiB, bounds [0, 16 MiB]. A record
                                      with every field at its maximum must fit one batch frame in one
                                      segment: payload_size_max + 1092, rounded up to 4096 together with
                                      the 64-byte batch header, must be <= segment_size - 8192
                                      (e.g. at most 56188 for 64 KiB segments). */
    stele_compression compression; /* Default STELE_COMPRESSION_NONE. */
    int compression_level;         /* zstd level. Default 3, bounds [1, 19]. */
    stele_durability default_durability; /* the log's default mode. Default STELE_DURABILITY_SYNC. */
} stele_options;

/* Fills every field of opts with its default. */
STELE_API void stele_options_init(stele_options *opts);

/* --------------------------------------------------------------- records */

typedef enum stele_kind {
    STELE_KIND_EVENT = 1,          /* a fact (0 in stele_event.kind means event too) */
    STELE_KIND_INTENT = 2,         /* an action whose outcome is not known yet */
    STELE_KIND_OUTCOME = 3,        /* the outcome of an intent: same key; ref = the intent's LSN */
    STELE_KIND_COMPENSATION = 4,   /* reverses the record at ref */
} stele_kind;

typedef enum stele_outcome {
    STELE_OUTCOME_NONE = 0,
    STELE_OUTCOME_CONFIRMED = 1,
    STELE_OUTCOME_FAILED = 2,
} stele_outcome;

typedef enum stele_content {
    STELE_CONTENT_JSON = 1,
    STELE_CONTENT_TEXT = 2,
    STELE_CONTENT_BINARY = 3,      /* (0 in stele_event.content means binary too) */
} stele_content;

#define STELE_FLAG_BACKFILLED 1u        /* stele_event.flags / stele_record.flags: imported by a backfill */
#define STELE_EXPECT_ANY UINT64_MAX     /* stele_event.expect_version: no expectation */

/* An append request. Zero-initialise, then set what applies: a zeroed event is
 * a binary `event` with no type, stream, key or payload and no version check.
 * String fields are (pointer, size) pairs, not NUL-terminated; sizes are limited
 * to 255 bytes (type, stream, key, actor) and payload_size_max (payload); type
 * and actor must be valid UTF-8. An intent needs a key, an outcome the key of
 * its intent, a compensation a ref and no key, and has_expect_version needs a
 * stream (STELE_ERR_INVALID otherwise; the rules of each kind are in the
 * section "keys, outcomes, streams" below).
 * event_time_ns 0 means "the recorded time", so the epoch itself cannot be stated. */
typedef struct stele_event {
    stele_kind kind;               /* 0 = STELE_KIND_EVENT */
    stele_outcome outcome;         /* set exactly when kind is STELE_KIND_OUTCOME */
    stele_content content;         /* 0 = STELE_CONTENT_BINARY */
    uint32_t flags;                /* STELE_FLAG_BACKFILLED */
    uint64_t event_time_ns;        /* when it happened; 0 = the recorded time */
    uint64_t ref;                  /* LSN referred to (outcome, compensation); 0 = none */
    uint64_t expect_version;       /* checked only with has_expect_version: 0 = stream must not exist */
    int has_expect_version;
    const char *type;   size_t type_size;
    const char *stream; size_t stream_size;
    const char *key;    size_t key_size;
    const char *actor;  size_t actor_size;
    const void *payload; size_t payload_size;
} stele_event;

typedef enum stele_decision {
    STELE_DECISION_NONE = 0,       /* not decided: the append failed (see the receipt's code) */
    STELE_DECISION_NEW = 1,        /* appended */
    STELE_DECISION_DUPLICATE = 2,  /* the key holds the same request: nothing appended, lsn = the original */
    STELE_DECISION_CONFLICT = 3,   /* the key holds another request: nothing appended, lsn = the original */
} stele_decision;

/* What happened to one append. */
typedef struct stele_receipt {
    uint64_t lsn;                  /* the record's LSN, or the original's for duplicate and conflict */
    uint64_t stream_version;       /* the record's stream version (for a duplicate or a key conflict, the
                                      original's); on STELE_ERR_STREAM_VERSION, the stream's current one */
    stele_decision decision;
    stele_code code;               /* STELE_OK, or why this append failed */
} stele_receipt;

/* A record read back. Strings point into memory owned by whoever returned the record. */
typedef struct stele_record {
    uint64_t lsn;
    uint64_t recorded_at_ns;
    uint64_t event_time_ns;
    uint64_t stream_version;       /* 0 when the record has no stream */
    uint64_t fingerprint;
    uint64_t ref;
    stele_kind kind;
    stele_outcome outcome;
    stele_content content;
    uint32_t flags;
    const char *type;   size_t type_size;
    const char *stream; size_t stream_size;
    const char *key;    size_t key_size;
    const char *actor;  size_t actor_size;
    const void *payload; size_t payload_size;
} stele_record;

/* ------------------------------------------------------------- the log */

typedef struct stele_log stele_log;

/* Opens (and with opts->create, creates) the log in dir. opts may be NULL for
 * defaults. A writer takes an exclusive lock and recovers the log: a torn tail
 * is cut (and counted in stats); damage to durable bytes fails the open.
 * A read-only handle takes no lock and never writes the log, and shows durable
 * records only: before records become visible to it (at open, and whenever it
 * catches up with the writer) it fdatasyncs the segment holding them through
 * its own descriptor. If that sync fails, the call fails (IO, NOSPACE, naming
 * the segment), nothing new becomes visible, and every later catch-up of the
 * handle is FENCED until it is reopened (SPEC.md §10.2).
 * Returns STELE_OK, INVALID (bad option: the message names the field), NOT_FOUND
 * (no log and not create), LOCKED (the message names the holder's pid), CORRUPT,
 * FORMAT, IO, NOSPACE, NOMEM. */
STELE_API STELE_NODISCARD int stele_open(const char *dir, const stele_options *opts, stele_log **out_log);

/* Creates a log in dir; fails with EXISTS if one is there. Same options as open. */
STELE_API STELE_NODISCARD int stele_create(const char *dir, const stele_options *opts);

/* Waits for every pending append, makes everything written durable, releases
 * the lock and frees log. Returns the first error of the final sync (the handle
 * is freed either way). */
STELE_API int stele_close(stele_log *log);

/* Appends one record and waits for it to be acknowledged per the durability
 * mode. out (may be NULL) receives the receipt. Returns the receipt's code:
 * OK (decision new or duplicate), CONFLICT, STREAM_VERSION, INVALID, TOO_LARGE,
 * FENCED, READ_ONLY, OUTCOME_UNKNOWN, CLOSED. */
STELE_API STELE_NODISCARD int stele_append(stele_log *log, const stele_event *event, stele_receipt *out);

/* Appends count records atomically: every new record of the call lands in one
 * batch, so after a crash all of them are there or none. Each receipt says what
 * happened to its record. Invalid input fails the whole call with nothing
 * appended, and so does a call whose records together do not fit one batch
 * frame in one segment (TOO_LARGE: a batch is never split across segments).
 * Returns OK when every record is new or duplicate, otherwise the first
 * failing receipt's code; stele_errmsg() describes that first failure only.
 * When the call's batch failed (OUTCOME_UNKNOWN, FENCED, IO, NOSPACE, CLOSED)
 * every receipt carries that code and no decision: not even a conflict is
 * final then, since it may rest on a record that never became durable.
 * count is at most 65536. */
STELE_API STELE_NODISCARD int stele_append_batch(stele_log *log, const stele_event *events, size_t count,
                                                 stele_receipt *out_receipts);

/* Called once per stele_append_async call when its records are acknowledged
 * (or failed): code is what stele_append_batch would have returned, receipts
 * (valid only during the call) say what happened to each record. It runs on
 * an engine thread: it must be quick and must not call stele functions that
 * wait (append, sync, close); stele_append_async is not allowed either. */
typedef void (*stele_append_fn)(void *ctx, int code, const stele_receipt *receipts, size_t count);

/* Decides and encodes count records like stele_append_batch (atomically, one
 * batch) and returns without waiting for their write: fn is called once they
 * are acknowledged per the durability mode, or have failed. The events are
 * copied into the batch before this returns: the caller may reuse them at
 * once. Returns OK when queued (fn will be called exactly once), or INVALID,
 * TOO_LARGE, READ_ONLY, FENCED, CLOSED, NOMEM without queuing anything (fn
 * is not called). Waits only when queue_records_max records are already
 * queued (backpressure). Completions arrive in LSN order. */
STELE_API STELE_NODISCARD int stele_append_async(stele_log *log, const stele_event *events, size_t count,
                                                 stele_append_fn fn, void *ctx);

/* Makes every record acknowledged so far durable (all modes). */
STELE_API STELE_NODISCARD int stele_sync(stele_log *log);

/* Reads the record at lsn. On success *out_rec is one allocation; free it with
 * stele_record_free. Returns NOT_FOUND (lsn beyond the log or 0), CORRUPT, IO. */
STELE_API STELE_NODISCARD int stele_get(stele_log *log, uint64_t lsn, stele_record **out_rec);
STELE_API void stele_record_free(stele_record *rec);

/* ------------------------------------------------- keys, outcomes, streams
 *
 * The engine keeps an index derived from the log (SPEC.md §15): every
 * idempotency key with what it holds, every intent's outcome, every stream's
 * records in version order, and every compensation. It is checkpointed to the
 * log's index file and reloaded at open, so reopening does not rescan the log.
 *
 * Decision rules, enforced inside stele_append* (the receipt says which):
 *  - event with key K: K unknown -> new; K holds the same request (equal
 *    fingerprint) -> duplicate, original LSN; otherwise -> CONFLICT.
 *  - intent: needs a key; same rules as an event. State pending.
 *  - outcome: needs the intent's key (ref may be 0: the engine sets it to the
 *    intent's LSN; a non-zero ref must be that LSN, INVALID otherwise). No such
 *    key -> NOT_FOUND; the key holds an event -> INVALID; no outcome yet -> new
 *    (state confirmed or failed); the same outcome again -> duplicate (the
 *    outcome's LSN); another outcome -> CONFLICT (the outcome's LSN).
 *  - compensation: needs ref and no key. The record at ref must be an event or
 *    a confirmed outcome (INVALID otherwise; NOT_FOUND when ref is not an
 *    acknowledged record). Not compensated yet -> new; compensated by an
 *    identical compensation -> duplicate; by another one -> CONFLICT (both with
 *    the existing compensation's LSN).
 *  - stream with has_expect_version: the stream must be at that version
 *    (0 = must not exist), STREAM_VERSION otherwise with the current version.
 * Keys are forgotten once their latest record is older than the log's
 * idempotency window (recorded time), except pending intents, which are kept
 * until their outcome. Compensations are never forgotten.
 *
 * Queries see acknowledged records only (up to stats.last_lsn). On a
 * read-only handle they see what the writer had made durable when the handle
 * last caught up (every query catches up first). */

typedef enum stele_state {
    STELE_STATE_EVENT = 1,         /* the key holds an event */
    STELE_STATE_PENDING = 2,       /* an intent with no outcome yet */
    STELE_STATE_CONFIRMED = 3,
    STELE_STATE_FAILED = 4,
    STELE_STATE_COMPENSATED = 5,   /* an event or confirmed outcome that a compensation reverses */
} stele_state;

typedef struct stele_status {
    stele_state state;
    uint64_t lsn;                  /* the key's record: the event or the intent */
    uint64_t recorded_at_ns;       /* of that record */
    uint64_t stream_version;       /* of that record (0 without a stream) */
    uint64_t outcome_lsn;          /* the outcome record, 0 if none */
    uint64_t compensation_lsn;     /* the compensation, 0 if none */
} stele_status;

/* What key holds. Returns OK, NOT_FOUND (unknown, or forgotten after the
 * window), INVALID (no key or longer than 255 bytes), NOMEM, IO, CORRUPT. */
STELE_API STELE_NODISCARD int stele_status_get(stele_log *log, const void *key, size_t key_size, stele_status *out);

/* Reads the record key holds (the event or the intent; the outcome is at
 * stele_status.outcome_lsn). Free it with stele_record_free. Returns as
 * stele_status_get, and as stele_get. */
STELE_API STELE_NODISCARD int stele_get_key(stele_log *log, const void *key, size_t key_size,
                                            stele_record **out_rec);

/* A pending intent, as listed by stele_pending. */
typedef struct stele_pending_item {
    uint64_t lsn;                  /* the intent */
    uint64_t recorded_at_ns;
    const char *key;
    size_t key_size;
} stele_pending_item;

/* Lists the pending intents recorded at or before older_than_ns (0 = all),
 * oldest first, at most limit of them (0 = no limit), from the index.
 * *out_items is one allocation (free it with stele_pending_free) holding
 * *out_count items. Returns OK, NOMEM, IO, CORRUPT. */
STELE_API STELE_NODISCARD int stele_pending(stele_log *log, uint64_t older_than_ns, size_t limit,
                                            stele_pending_item **out_items, size_t *out_count);
STELE_API void stele_pending_free(stele_pending_item *items);

/* The current version of stream (0 = no such stream) and, when out_lsn is not
 * NULL, the LSN of its last record. Returns OK, INVALID, NOMEM, IO, CORRUPT. */
STELE_API STELE_NODISCARD int stele_stream_version(stele_log *log, const void *stream, size_t stream_size,
                                                   uint64_t *out_version, uint64_t *out_lsn);

/* The first LSN recorded at or after time_ns (recorded_at_ns, which never
 * decreases along the log), or stats.last_lsn + 1 when none is (yet). Answered
 * from the per-segment read indexes (SPEC.md §19): a binary search over the
 * segments, then within one, reading no record. Start an iterator there to
 * read from a time. Returns OK, INVALID, CORRUPT, IO, NOMEM. */
STELE_API STELE_NODISCARD int stele_lsn_at_time(stele_log *log, uint64_t time_ns, uint64_t *out_lsn);

/* ------------------------------------------------------------ iterators */

typedef struct stele_iter stele_iter;

/* An iterator over records in LSN order starting at from_lsn (0 or 1 = the start). */
STELE_API STELE_NODISCARD int stele_iter_open(stele_log *log, uint64_t from_lsn, stele_iter **out_iter);

/* Next record. When the iterator has reached the end of the log it waits up to
 * timeout_ms for a new record (0 = do not wait, -1 = forever) and sets *out_rec
 * to NULL if none came. The record stays valid until the next call.
 * Returns OK, CORRUPT, IO, CLOSED. */
STELE_API STELE_NODISCARD int stele_iter_next(stele_iter *iter, int timeout_ms, const stele_record **out_rec);
STELE_API void stele_iter_close(stele_iter *iter);

/* An iterator over one stream's records in version order, starting at
 * from_version (0 or 1 = the first), answered from the index: it reads only
 * the stream's records. stele_iter_next works on it as on any iterator and
 * waits the same way for the stream's next version. A stream that does not
 * exist (yet) gives an iterator with nothing to read (yet). Returns OK,
 * INVALID (no stream or longer than 255 bytes), NOMEM. */
STELE_API STELE_NODISCARD int stele_iter_open_stream(stele_log *log, const void *stream, size_t stream_size,
                                                     uint64_t from_version, stele_iter **out_iter);

/* ------------------------------------------- consumer cursors, dead letters
 *
 * A consumer (a program the log is replayed into, e.g. by `stele replay`)
 * keeps a named, durable cursor in the log directory: the last LSN it has
 * finished (0 = none yet), and a list of dead letters, the records it gave up
 * on. Both are files under DIR/consumers/ (SPEC.md §16), every record of them
 * checksummed; a damaged file is reported (CORRUPT, naming the path and the
 * offset), never reset. They are auxiliary files: the log itself never
 * depends on them.
 *
 * The consumer's state is the consumer's, not the log writer's: it changes
 * through a read-only log handle as well as a writable one, so a consumer
 * runs beside the process that writes the log. One handle changes a
 * consumer at a time: stele_cursor_open takes an exclusive flock on
 * DIR/consumers/NAME.lock (created as needed; it holds the holder's pid as
 * text). A handle that does not get it (another process, or another handle
 * of this one, holds it) still opens and reads the position and the dead
 * letters afresh at each call, but every change is LOCKED, the message naming
 * the consumer and the holder's pid; stele_cursor_exclusive tells which kind
 * of handle this is. The lock is released by stele_cursor_close (or the
 * process's death). A commit or dead letter never names an LSN beyond what
 * the log handle shows (a read-only handle catches up first, and shows
 * durable records only), so a cursor never survives a crash its record does
 * not.
 *
 * A cursor handle belongs to one thread at a time. Close cursors before
 * their log. */

#define STELE_CURSOR_NAME_SIZE_MAX 64u    /* a consumer name: 1..64 bytes of [A-Za-z0-9._-] */
#define STELE_DEAD_REASON_SIZE_MAX 1024u  /* stele_dead_letter.reason, bytes */
#define STELE_DEAD_STDERR_SIZE_MAX 1024u  /* stele_dead_letter.last_stderr, bytes */

typedef struct stele_cursor stele_cursor;

/* Opens the consumer cursor name of log, reading its position and checking
 * its files. Nothing is created until the first commit or dead letter; a
 * cursor that was never committed is at position 0. The consumers/ directory
 * and the lock file are created as needed, and the lock is taken (a busy
 * lock is retried for up to 1 s, since io_uring can keep a killed process's
 * files open briefly). With the lock, a temporary file left by a commit that
 * crashed is removed, and a torn tail of the dead-letter file (an append that
 * never completed) is cut. Without it the cursor opens for reading only: that
 * is not an error (see stele_cursor_exclusive). Returns OK,
 * INVALID (name empty, longer than STELE_CURSOR_NAME_SIZE_MAX or not of
 * [A-Za-z0-9._-], or "." or ".."), CORRUPT (a cursor or dead-letter file fails
 * a check: the message names the path and offset; nothing is changed), FORMAT
 * (a cursor file of another format version), TOO_LARGE (a dead-letter file
 * over 256 MiB), IO, NOSPACE, NOMEM. */
STELE_API STELE_NODISCARD int stele_cursor_open(stele_log *log, const char *name, stele_cursor **out_cursor);

/* The committed position: the last LSN the consumer finished, 0 = none. On a
 * handle without the consumer's lock the file is read again first, so the
 * holder's commits are seen. Returns OK, CORRUPT, IO, NOMEM (and, on a
 * read-only log that must catch up to check the position, the errors of
 * catching up: IO, FENCED). */
STELE_API STELE_NODISCARD int stele_cursor_position(stele_cursor *cursor, uint64_t *out_lsn);

/* Makes lsn the committed position, durably: when it returns OK the new
 * position survives a crash, and until then the old one does (the file is
 * replaced whole: temporary file, fdatasync, rename, directory fsync).
 * Committing the current position again is OK and writes nothing. Returns
 * OK, INVALID (lsn below the current position: positions never go back; or
 * beyond the log's last acknowledged LSN, which on a read-only log handle is
 * its last durable LSN once it has caught up), LOCKED (another handle holds
 * the consumer's lock: the message names the consumer and the holder's pid),
 * READ_ONLY (no lock file could be made, e.g. a read-only file system: the
 * message names the path and errno), FENCED (an earlier commit or dead letter
 * of this handle failed: reopen the cursor, which reads what the files hold),
 * IO, NOSPACE (the message names the path and errno). After a failure the
 * committed position is the old one or the new one; reopening tells which. */
STELE_API STELE_NODISCARD int stele_cursor_commit(stele_cursor *cursor, uint64_t lsn);

/* Whether this handle may change the consumer: OK when it holds the
 * consumer's lock, LOCKED when another handle does (the message names the
 * consumer and the holder's pid), READ_ONLY when no lock file could be made
 * (the message names the path and errno), INVALID without a cursor. A tool
 * that is about to deliver events calls it first, so that it stops before
 * delivering anything it could not commit. */
STELE_API STELE_NODISCARD int stele_cursor_exclusive(stele_cursor *cursor);

/* Closes the cursor and releases the consumer's lock (nothing to flush:
 * every commit is durable). NULL is fine. */
STELE_API void stele_cursor_close(stele_cursor *cursor);

/* A record the consumer gave up on. */
typedef struct stele_dead_letter {
    uint64_t lsn;                  /* the record */
    uint64_t dead_at_ns;           /* when it was given up on (the latest time, if several) */
    uint64_t resolved_at_ns;       /* when it was marked resolved (redriven), 0 = still dead */
    uint32_t attempts;             /* deliveries tried */
    const char *key;         size_t key_size;         /* the record's key (<= 255 bytes; may be empty) */
    const char *reason;      size_t reason_size;      /* why (<= STELE_DEAD_REASON_SIZE_MAX bytes) */
    const char *last_stderr; size_t last_stderr_size; /* the handler's last stderr line
                                                         (<= STELE_DEAD_STDERR_SIZE_MAX bytes) */
} stele_dead_letter;

/* Records dead letter dl (its resolved_at_ns is ignored) durably: appended to
 * the cursor's dead-letter file and fdatasync'ed before OK is returned.
 * Recording an LSN again replaces what the list says about it (reason,
 * attempts, time) and makes it dead again if it was resolved. Does not move
 * the position. Returns OK, INVALID (lsn 0 or beyond the log's last
 * acknowledged LSN, or a field over its limit), LOCKED, READ_ONLY, FENCED,
 * IO, NOSPACE. */
STELE_API STELE_NODISCARD int stele_dead_letter_add(stele_cursor *cursor, const stele_dead_letter *dl);

/* Marks the dead letter of lsn resolved (redriven successfully), durably
 * like stele_dead_letter_add. Returns OK, NOT_FOUND (no dead letter has that
 * LSN, or it is resolved already), LOCKED, READ_ONLY, FENCED, IO, NOSPACE. */
STELE_API STELE_NODISCARD int stele_dead_letter_resolve(stele_cursor *cursor, uint64_t lsn);

/* Lists the cursor's dead letters in LSN order, one per LSN (the latest
 * record of each), resolved ones included when include_resolved is set.
 * The file is read again first. *out_items is one allocation holding
 * *out_count items and their strings (each also NUL-terminated); free it with
 * stele_dead_letter_free. Returns OK, CORRUPT, TOO_LARGE, IO, NOMEM. */
STELE_API STELE_NODISCARD int stele_dead_letter_list(stele_cursor *cursor, int include_resolved,
                                                     stele_dead_letter **out_items, size_t *out_count);
STELE_API void stele_dead_letter_free(stele_dead_letter *items);

/* A consumer as its files say, for monitoring (stele stats --prometheus). */
typedef struct stele_consumer_info {
    char name[STELE_CURSOR_NAME_SIZE_MAX + 1];
    uint64_t position;             /* the committed position, 0 = none */
    uint64_t dead_letters;         /* dead letters not resolved */
} stele_consumer_info;

/* Every consumer of the log (a cursor or dead-letter file in DIR/consumers),
 * sorted by name, read without taking any consumer's lock: a replay running
 * meanwhile is neither disturbed nor waited for (a commit it makes during
 * the call may or may not be seen). *out_items is one allocation (free it
 * with stele_consumers_free); no consumer is OK with *out_count 0. Returns
 * OK, CORRUPT (a consumer's file fails its checks: the message names the
 * path and offset), FORMAT, TOO_LARGE, IO, NOMEM. */
STELE_API STELE_NODISCARD int stele_consumers(stele_log *log, stele_consumer_info **out_items, size_t *out_count);
STELE_API void stele_consumers_free(stele_consumer_info *items);

/* ---------------------------------------------------------------- stats */

typedef struct stele_stats {
    uint8_t log_id[16];
    uint64_t created_at_ns;
    uint64_t first_lsn;            /* 1, or 0 when the log is empty */
    uint64_t last_lsn;             /* highest LSN readers can see */
    uint64_t durable_lsn;          /* highest LSN known on stable storage */
    uint64_t segment_count;
    uint64_t sealed_segment_count;
    uint64_t disk_size;            /* bytes of segment files, preallocation included */
    uint64_t data_size;            /* bytes of headers and batch frames written */
    uint64_t segment_size;
    uint64_t idem_window_ns;
    uint32_t payload_size_max;
    stele_compression compression;
    stele_durability durability;   /* the mode this handle runs in */
    int read_only;
    int fenced;                    /* 1 after a failed write or sync */
    /* counters since open */
    uint64_t appends_new;
    uint64_t appends_duplicate;
    uint64_t appends_conflict;
    uint64_t appends_failed;
    uint64_t batches_written;
    uint64_t syncs;
    uint64_t bytes_written;
    int direct_io;                 /* 1: the active segment is written with O_DIRECT (options.direct_io) */
    uint64_t direct_io_fallbacks;  /* segments written buffered although direct_io asked otherwise */
    char io_note[160];             /* why O_DIRECT is not used, "" when it is or was not asked for */
    uint64_t segment_spare_failures; /* rolls that found the next segment's file could not be made ahead
                                        (SPEC.md §7.2) and made it themselves; spare_note says why */
    char spare_note[160];          /* the last such failure: the file and the error; "" if none */
    /* the index (SPEC.md §15) */
    uint64_t index_keys;           /* keys remembered (not yet forgotten) */
    uint64_t index_pending;        /* pending intents */
    uint64_t index_streams;
    uint64_t index_memory;         /* bytes of memory the index holds */
    uint64_t index_checkpoint_lsn; /* LSN the last checkpoint written or loaded covers (0 = none) */
    uint64_t index_checkpoints;    /* checkpoints written since open */
    uint64_t index_checkpoint_failures; /* checkpoints that failed since open (index_note says why) */
    uint64_t index_expired;        /* keys forgotten since open (older than the window) */
    uint64_t index_scanned;        /* records indexed from the log at open (after the checkpoint) */
    int index_rebuilt;             /* 1: the checkpoint was missing or untrusted, the index was rebuilt */
    char index_note[160];          /* why the checkpoint was not used, "" if it was */
    /* what recovery did at open */
    uint64_t recovery_torn_bytes;  /* bytes of torn tail cut */
    uint64_t recovery_torn_batches;
    uint64_t recovery_stray_files; /* unfinished segment files removed */
    /* reads and the per-segment read indexes (SPEC.md §19), counters since open */
    uint64_t read_batches;         /* batch frames read by get, iterators and recovery */
    uint64_t read_bytes;           /* bytes of segment files they read, index rebuilds included */
    uint64_t read_index_loaded;    /* sealed segments whose index file was loaded and trusted */
    uint64_t read_index_rebuilt;   /* sealed segments whose index was rebuilt from the segment, because its
                                      file was missing, damaged or stale (read_index_note says which) */
    uint64_t read_index_written;   /* index files written (at seals, and after rebuilds by a writable handle) */
    uint64_t read_index_write_failures; /* index files that could not be written; never fatal */
    char read_index_note[160];     /* the last index rebuilt or not written, and why; "" if none */
    /* compression (SPEC.md §18; the ratio is stele_compression_get's) */
    int compression_level;         /* the zstd level this handle compresses with */
    uint32_t dict_in_use;          /* the dictionary this handle's writer compresses new batches
                                      with (SPEC.md §18.2), 0 = none (or not a writer) */
    uint32_t dict_newest;          /* the highest dictionary id in the log directory, 0 = none */
    uint32_t dict_count;           /* dictionary files in the log directory */
    int dict_auto_train_code;      /* options.dict_train_records: -1 not run (yet), else the stele_code
                                      the training returned */
    char dict_note[160];           /* why that training failed, "" otherwise */
} stele_stats;

STELE_API STELE_NODISCARD int stele_stats_get(stele_log *log, stele_stats *out);

/* ------------------------------------------------ compression, dictionaries
 *
 * A log created with STELE_COMPRESSION_ZSTD compresses each batch as one
 * zstd frame and keeps it only when it is smaller (SPEC.md §4). Small events
 * compress far better with a dictionary trained on the log's own records
 * (SPEC.md §18): stele_dict_train stores one as file `<id>.dict` in the log
 * directory (ids 1, 2, 3 ...), durably, and the writer compresses every
 * batch of up to 16 KiB of records it assembles afterwards with the newest
 * dictionary, naming its id in the batch header (larger batches are their
 * own history: they are compressed without one). Dictionary files are never changed or deleted; readers
 * load them by id when a batch names one. A batch whose dictionary is
 * missing or damaged fails to read with STELE_ERR_CORRUPT naming the
 * dictionary file and the batch's segment and offset, and stele_verify
 * reports it. Copy the .dict files with the segments. */

typedef struct stele_dict_options {
    uint64_t sample_records;       /* the newest this-many acknowledged records are the sample, read
                                      oldest first. Default 100000, bounds [16, 10000000]. */
    uint64_t sample_size_max;      /* ... until their bytes (each record as encoded in a batch: the
                                      64-byte header, type, stream, key, actor, payload) would exceed
                                      this. Default 16 MiB, bounds [64 KiB, 256 MiB]. */
    uint32_t dict_size_max;        /* the dictionary's capacity. Default 112640 (110 KiB, zstd's
                                      default), bounds [256, 1 MiB]. */
} stele_dict_options;

/* Fills every field of opts with its default. */
STELE_API void stele_dict_options_init(stele_dict_options *opts);

typedef struct stele_dict_info {
    uint32_t dict_id;              /* the new dictionary's id: the highest one before it plus 1 */
    uint32_t dict_size;            /* bytes of dictionary (the file has a 64-byte header too) */
    uint64_t created_at_ns;
    uint64_t trained_through_lsn;  /* the newest record in the sample */
    uint64_t sample_records;       /* records sampled */
    uint64_t sample_size;          /* bytes sampled */
} stele_dict_info;

/* Trains a zstd dictionary (ZDICT_trainFromBuffer) on a sample of the log's
 * records (opts may be NULL for defaults; the sample is described there),
 * writes it durably as the next id's file (temporary file, fdatasync, rename,
 * directory fsync) and, when the log compresses, makes the writer use it for
 * every batch it assembles from then on. Takes seconds for a large sample;
 * appends continue meanwhile. out (may be NULL) receives what was made.
 * Returns OK; INVALID (an option out of bounds, the message names it; or
 * too few or too uniform records for zstd to train on: the message gives
 * the sample's counts and zstd's reason); READ_ONLY; TOO_LARGE (no id left);
 * IO, NOSPACE (writing the file: the message names path and errno); NOMEM;
 * CORRUPT, IO (reading the sample). */
STELE_API STELE_NODISCARD int stele_dict_train(stele_log *log, const stele_dict_options *opts,
                                               stele_dict_info *out);

typedef struct stele_compression_report {
    uint64_t batches;              /* batch frames in the log */
    uint64_t batches_zstd;         /* stored compressed */
    uint64_t batches_dict;         /* compressed with a dictionary */
    uint64_t raw_size;             /* bytes of records before compression (sum of raw_size) */
    uint64_t stored_size;          /* bytes of bodies as stored (sum of stored_size) */
    uint64_t frame_size;           /* bytes of batch frames: 64-byte headers, stored bodies and the
                                      zero padding to the next 4096-byte block */
    uint32_t dict_id_max;          /* the highest dictionary id a batch names, 0 = none */
} stele_compression_report;

/* Sums the batch headers of every segment (one 64-byte read per batch; no
 * body is read): the compression ratio is raw_size / stored_size.
 * Returns OK, CORRUPT (a batch header fails its checks: the message names
 * file and offset), IO, NOMEM. */
STELE_API STELE_NODISCARD int stele_compression_get(stele_log *log, stele_compression_report *out);

/* ----------------------------------------------------------- inspection
 *
 * A read-only walk of one segment file for tools that show or copy the
 * log's files (stele dump, stele backup; SPEC.md §17.2, §17.3). It opens
 * nothing but the file, takes no lock and writes nothing, so it runs beside
 * a writer. Every byte is checked as a reader does (SPEC.md §8.3-§8.6), but
 * it does not judge the log: in a segment without a valid footer the walk
 * simply stops at the first position holding no valid batch and says why
 * (stele_verify decides whether that is a torn tail or damage). */

typedef struct stele_segment_info {
    uint64_t seq;                  /* from the header */
    uint64_t first_lsn;
    uint64_t segment_size;         /* the capacity the file was created with */
    uint64_t created_at_ns;
    uint64_t prev_chain;
    uint64_t file_size;            /* bytes, when the walk began */
    int sealed;                    /* 1: the file ends in a valid footer that matches its size */
    uint64_t sealed_at_ns;         /* the footer's; 0 when not sealed */
    uint64_t data_end;             /* offset after the last valid batch walked (sealed: the footer's) */
    uint64_t batch_count;          /* valid batches walked */
    uint64_t record_count;         /* their records */
    uint64_t last_lsn;             /* of the last valid batch; first_lsn - 1 when none */
    uint64_t durable_lsn;          /* the highest durable watermark the batch headers record (SPEC.md
                                      §4); for a sealed segment its last_lsn (sealing syncs) */
    uint64_t durable_end;          /* offset after the last batch whose records are all <= durable_lsn */
    char stop_note[160];           /* why the walk stopped at data_end: "end of file", "all zero (end of
                                      written data)" or the check that failed */
} stele_segment_info;

typedef struct stele_batch_info {
    uint64_t offset;               /* of the frame in the file */
    uint64_t frame_size;           /* header, body and padding */
    uint64_t first_lsn;
    uint32_t record_count;
    uint32_t stored_size;          /* body bytes as stored */
    uint32_t raw_size;             /* after decompression */
    stele_compression compression;
    uint64_t durable_lsn;          /* the writer's durable watermark when it assembled the batch */
    uint32_t dict_id;              /* the dictionary the body was compressed with, 0 = none */
    uint64_t chain;                /* the batch's chain value (its header checksum) */
} stele_batch_info;

/* Called once per valid batch with rec == NULL, then once per record of it
 * with rec_offset its offset within the batch's raw body and rec_size its
 * unpadded size. rec and its strings are valid during the call only.
 * Return non-zero to stop the walk (stele_segment_inspect returns OK). */
typedef int (*stele_inspect_fn)(void *ctx, const stele_batch_info *batch, const stele_record *rec,
                                uint64_t rec_offset, uint64_t rec_size);

/* Walks the segment file at path: header, then every batch from offset 4096
 * while they are valid and continue each other (LSN and chain), then the
 * footer. fn (may be NULL) sees each batch and record; out (may be NULL)
 * receives the summary, also when the walk stops early. Returns OK; or
 * NOT_FOUND, IO (opening or reading; the message names path and errno),
 * NOMEM; CORRUPT when the header is invalid, or when the file is sealed and
 * a batch before the footer is invalid (the message names path, offset and
 * LSN; out describes the walk up to there); FORMAT for an unknown version. */
STELE_API STELE_NODISCARD int stele_segment_inspect(const char *path, stele_inspect_fn fn, void *ctx,
                                                    stele_segment_info *out);

/* ------------------------------------------------------ the Merkle tree
 *
 * Tamper evidence (SPEC.md §20): the records in LSN order are the leaves of
 * an RFC 9162 Merkle tree, leaf(L) = SHA-256(0x00 || the record's bytes from
 * offset 8 to its unpadded size), node = SHA-256(0x01 || left || right). The
 * tree of size n covers LSNs 1..n. A signed root (a checkpoint) commits to the
 * whole history up to n; inclusion and consistency proofs show a record is in
 * it and that a later tree only appended to it.
 *
 * The engine keeps the tree in derived files in the log directory (the
 * frontier and tiles of stored hashes, SPEC.md §20.3), computed off the
 * appenders' path: each call below first catches the files up with the
 * durable records, reading them from the log, and rebuilds them from the log
 * when they are missing or damaged (counted in stele_tree_info). Read-only
 * handles write these files too (they are not the log). The calls of one
 * handle are serialised; any thread may make them. */

#define STELE_HASH_SIZE 32
#define STELE_PROOF_HASH_COUNT_MAX 128   /* a consistency proof of a tree of 2^63 leaves: 126 */

typedef struct stele_tree_info {
    uint64_t size;                 /* leaves: the tree covers LSNs 1..size (the durable records) */
    uint8_t root[STELE_HASH_SIZE];
    uint64_t leaves_hashed;        /* records this handle read and hashed to catch the files up */
    uint64_t rebuilt;              /* times this handle found the files missing or damaged and rebuilt them */
    char note[160];                /* why the last rebuild happened, "" if none */
} stele_tree_info;

/* Catches the tree up with the durable records and gives its size and root.
 * Returns OK; CORRUPT when the tree files cover more records than the log
 * holds (durable records lost, or the log replaced: the files are left as
 * they are, as evidence; the message names both sizes) or a record fails its
 * checks; IO (the message names the path and errno), NOSPACE, NOMEM. */
STELE_API STELE_NODISCARD int stele_tree_info_get(stele_log *log, stele_tree_info *out);
/* The size and root of the current tree (stele_tree_info_get's). */
STELE_API STELE_NODISCARD int stele_tree_root(stele_log *log, uint64_t *out_size, uint8_t out_root[STELE_HASH_SIZE]);
/* The root of the tree of the first size records, size <= the current tree's
 * (SHA-256 of nothing for size 0). Returns OK, NOT_FOUND (size beyond the
 * durable records), and the codes of stele_tree_info_get. */
STELE_API STELE_NODISCARD int stele_tree_root_at(stele_log *log, uint64_t size, uint8_t out_root[STELE_HASH_SIZE]);

/* A proof, hashes in RFC 9162 order (deepest first). */
typedef struct stele_proof {
    uint64_t lsn;                  /* inclusion: the record (leaf index lsn - 1); consistency: 0 */
    uint64_t from_size;            /* consistency: the earlier tree's size; inclusion: 0 */
    uint64_t size;                 /* the tree the proof is against */
    uint8_t leaf[STELE_HASH_SIZE]; /* inclusion: the record's leaf hash */
    uint8_t from_root[STELE_HASH_SIZE]; /* consistency: the earlier tree's root */
    uint8_t root[STELE_HASH_SIZE]; /* the root of the tree of size leaves */
    size_t hash_count;
    uint8_t hashes[STELE_PROOF_HASH_COUNT_MAX][STELE_HASH_SIZE];
} stele_proof;

/* RFC 9162 §2.1.3: the inclusion proof of record lsn in the tree of size
 * records (0 = the current tree). Returns OK, NOT_FOUND (lsn 0, or lsn or size
 * beyond the durable records), INVALID (lsn > size), and the codes of
 * stele_tree_info_get. */
STELE_API STELE_NODISCARD int stele_prove_inclusion(stele_log *log, uint64_t lsn, uint64_t size, stele_proof *out);
/* RFC 9162 §2.1.4: the consistency proof from the tree of from_size records
 * to that of size (0 = the current tree). Returns OK, NOT_FOUND (size beyond
 * the durable records), INVALID (from_size 0 or above size), and the codes
 * of stele_tree_info_get. */
STELE_API STELE_NODISCARD int stele_prove_consistency(stele_log *log, uint64_t from_size, uint64_t size,
                                                      stele_proof *out);
/* Checks a proof as RFC 9162 §2.1.3.2 / §2.1.4.2 do, needing no log: 1 when
 * it holds (an inclusion proof when proof->lsn is set, else consistency). */
STELE_API int stele_proof_verify(const stele_proof *proof);

typedef struct stele_audit_report {
    uint64_t records;              /* records read and hashed, the whole log */
    uint64_t bytes;                /* bytes of segment data they came from */
    uint64_t size;                 /* the log's tree size now */
    uint8_t root[STELE_HASH_SIZE]; /* the root recomputed from every record */
    uint64_t first_bad_lsn;        /* 0 when the log matches; else the first LSN <= the checkpoint's size whose
                                      record differs from what the checkpoint committed to, or is missing */
    int evidence;                  /* 1: the stored tree files reproduce the checkpoint's root, so they name
                                      the differing record; 0: they do not (rewritten too, or missing) and a
                                      differing log can only be said to differ (first_bad_lsn is then 0
                                      unless records are missing) */
} stele_audit_report;

/* Recomputes every leaf from the log's records, trusting no derived file,
 * and checks that the first size of them have the root root: that the log
 * holds, unchanged, the history a checkpoint of (size, root) committed to.
 * Returns OK when it does; CORRUPT when it does not (out says where, the
 * message names the LSN) or a record fails its checks; IO, NOMEM. out is
 * filled in either way when the walk ran. */
STELE_API STELE_NODISCARD int stele_audit(stele_log *log, uint64_t size, const uint8_t root[STELE_HASH_SIZE],
                                          stele_audit_report *out);

/* --------------------------------------------------------------- verify */

typedef struct stele_verify_problem {
    const char *path;              /* file with the problem */
    uint64_t offset;               /* byte offset in that file */
    uint64_t lsn;                  /* LSN concerned, 0 if none */
    const char *what;              /* description */
} stele_verify_problem;

typedef struct stele_verify_report {
    uint64_t segments;
    uint64_t batches;
    uint64_t records;
    uint64_t bytes;                /* bytes read and checked */
    uint64_t last_lsn;
    uint64_t problems;
    uint64_t torn_bytes;           /* unsynced tail bytes after the last valid batch (not a problem) */
} stele_verify_report;

/* Called for each problem found, and with problem == NULL for progress
 * (bytes checked so far out of bytes_total). Return non-zero to stop. */
typedef int (*stele_verify_fn)(void *ctx, const stele_verify_problem *problem, uint64_t bytes_done,
                               uint64_t bytes_total);

/* Checks every byte of the log in dir without writing anything: headers,
 * every batch and record checksum, the hash chain, LSN continuity, the
 * footers' whole-file hashes, zero padding. Returns OK when everything checks
 * out, CORRUPT when a problem was found (the report counts them), or another
 * code when verification itself could not run. fn and out may be NULL. */
STELE_API STELE_NODISCARD int stele_verify(const char *dir, stele_verify_fn fn, void *ctx,
                                           stele_verify_report *out);

#ifdef __cplusplus
}
#endif

#endif
