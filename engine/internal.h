/*
 * internal.h - the engine's private structures, shared by its files.
 *
 * Threads and locks (SPEC.md §11):
 *  - one writer thread per writable handle assembles batches, writes them,
 *    syncs, rolls segments and completes appenders' requests;
 *  - q_lock guards the request queue, the counters and the visible/durable
 *    LSNs; q_cond wakes the writer, done_cond wakes appenders and readers;
 *  - seg_lock (rwlock) guards the segment table; each segment's batch index
 *    has its own mutex, so a reader building an index never stalls the writer.
 */
#ifndef STELE_INTERNAL_H
#define STELE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "batch.h"
#include "dict.h"
#include "io.h"
#include "idx.h"
#include "record.h"
#include "segment.h"
#include "stele.h"

/* error.c */
void err_clear(void);
int err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int err_code_from_errno(int e);
int err_sys(int e, const char *op, const char *path);

/* io_posix.c functions the other backends reuse. */
int posix_open(struct io *io, const char *path, int flags, mode_t mode);
int posix_close(struct io *io, int fd);
ssize_t posix_pread(struct io *io, int fd, void *buf, size_t len, uint64_t off);
int posix_fdatasync(struct io *io, int fd);
int posix_fsync(struct io *io, int fd);
int posix_fallocate_(struct io *io, int fd, uint64_t len);
int posix_ftruncate(struct io *io, int fd, uint64_t len);
int posix_fchmod(struct io *io, int fd, mode_t mode);
int posix_rename(struct io *io, const char *from, const char *to);
int posix_unlink(struct io *io, const char *path);
int posix_sync_dir(struct io *io, const char *dir);

/* Where one batch lives. */
struct batch_ref {
    uint64_t first_lsn;
    uint64_t offset;
    uint32_t record_count;
    uint32_t frame_size;
    uint64_t recorded_at_ns; /* of every record of the batch (SPEC.md §4) */
};

struct segment {
    char path[4096 + 32];
    uint64_t seq;
    uint64_t first_lsn;
    uint64_t last_lsn;       /* first_lsn - 1 while empty */
    uint64_t seed;
    uint64_t capacity;       /* the segment size it was created with */
    uint64_t data_end;       /* offset after the last batch frame */
    uint64_t prev_chain;
    uint64_t chain;          /* chain value of the last batch (prev_chain when empty) */
    uint64_t batch_count;
    int fd;                  /* -1 while a sealed segment's fd is closed (segment_fd_acquire) */
    int dio_fd;              /* the writer's O_DIRECT fd (segment_write_fd): -2 = not tried yet,
                                -1 = none (buffered writes through fd) */
    int sealed;              /* read and written with __atomic: the writer seals, others look */
    unsigned mode;           /* file mode bits seen at open */
    unsigned fd_users;       /* readers using fd now; guarded by log->fd_lock */
    uint64_t fd_last_use;    /* LRU tick; guarded by log->fd_lock */
    /* Batch index for reads: complete for the active segment, built on first
     * use for sealed ones. */
    pthread_mutex_t index_lock;
    struct batch_ref *index;
    size_t index_count;
    size_t index_cap;
    int indexed;
    int index_from_file;     /* the table came from the index file (segidx.c) */
    int index_distrusted;    /* it disagreed with the segment: rebuild, never load the file again */
};

/* What the appender's thread works out for each event before it takes any
 * lock: the record's fingerprint (it does not depend on the LSN or the time)
 * and the key's index hash. */
struct event_prep {
    uint64_t fingerprint;
    uint32_t key_hash;       /* 0 without a key */
};

/* An append, a sync, or a reader's wait for a record to be written: on the
 * caller's stack for the blocking calls, from the log's pool for
 * stele_append_async. Once its records are encoded (append.c) it waits in
 * the log's await list, in ack_lsn order, until the pipeline (writer.c) has
 * made everything up to ack_lsn durable (sync mode, stele_sync) or written
 * (interval and none mode). */
struct request {
    const stele_event *events;
    const struct event_prep *prep; /* one per event */
    stele_receipt *receipts;
    size_t count;
    size_t body_size;        /* encoded size of its records */
    int sync;                /* stele_sync(): needs ack_lsn durable in every mode */
    int done;
    int code;
    uint64_t ack_lsn;        /* complete once this LSN is acknowledged (durable or written) */
    stele_append_fn fn;      /* async: called once, outside every lock */
    void *fn_ctx;
    pthread_cond_t *cond;    /* blocking: its thread sleeps on it (NULL for async) */
    int sleeping;            /* its thread waits on cond now */
    int kicked;              /* cond was signalled to hand it a role, not yet seen */
    int batch_changed;       /* its encoding opened a batch (a linger started) or closed one:
                                the background threads must be told (none mode) */
    stele_receipt inline_receipt; /* async, count == 1: no allocation */
    struct event_prep inline_prep;
    /* async, count > 1: receipts then preparations for spare_count events,
     * kept with the request in the pool and grown only when a larger call
     * comes, so that appends allocate nothing once warmed up */
    void *spare;
    size_t spare_count;
    struct request *next;
};

/* A batch written but not yet known durable (sync mode), for the ack hook. */
struct inflight {
    const struct segment *seg;
    uint64_t offset;
    uint64_t size;
    uint64_t first_lsn;
    uint64_t last_lsn;
};

/* Bound on batches written and not yet synced: the in-flight window. */
#define WRITER_INFLIGHT_MAX 64

/* A batch of the write pipeline (SPEC.md §11.1): appenders encode their
 * records into the open one (log->fill) under idx_lock; the thread holding
 * the write role takes it, frames and writes it, and gives it back. */
struct wbatch {
    uint8_t *buf;            /* the frame: header space, then the body; O_DIRECT-aligned */
    size_t cap;
    size_t body_size;
    uint64_t first_lsn;      /* its records are [first_lsn, next_lsn) */
    uint64_t next_lsn;
    uint64_t recorded_at_ns; /* of every record of the batch (SPEC.md §4) */
    uint64_t reserved;       /* bytes of its segment reserved for its frame (the raw frame's size) */
    struct segment *seg;     /* the segment it goes to (its seed is in every record checksum) */
    struct wbatch *next;
};

/* Batches that can be filled, full or being written at once: with all in
 * use, appenders wait (backpressure). */
#define WRITER_BATCHES 8
/* None mode: how long an open batch that nobody waits for may stay in
 * memory before a background thread writes it (SPEC.md §11.1). */
#define NONE_LINGER_NS 1000000u

struct stele_log {
    char *dir;
    struct io *io;
    struct fmt_meta meta;
    stele_options opts;
    stele_durability durability;
    int lock_fd;

    pthread_rwlock_t seg_lock;
    pthread_mutex_t refresh_lock; /* serialises log_refresh (read-only handles) */
    pthread_mutex_t fd_lock; /* the sealed-segment fd cache */
    size_t open_fds;
    uint64_t fd_tick;
    struct segment **segs;
    size_t seg_count;
    size_t seg_cap;

    /* The write pipeline (writer.c, SPEC.md §11.1). Appenders decide and
     * encode their records themselves under idx_lock; whichever thread
     * finds the write role (w_busy) or the sync role (s_busy) vacant when
     * there is work for it takes it: an appender waiting for its own
     * records, or one of the two background threads (for async appends,
     * none and interval mode). Under q_lock unless said otherwise. */
    pthread_mutex_t q_lock;
    pthread_cond_t done_cond;   /* readers waiting for visible_lsn; close */
    pthread_cond_t pipe_cond;   /* appenders waiting for room (a batch, a roll) and a roll for its drain */
    pthread_cond_t bg_cond;     /* the background threads wait for work */
    int stopping;
    int fenced;
    int fence_code;
    uint64_t visible_lsn;    /* readers see LSNs up to here (atomic stores) */
    uint64_t durable_lsn;    /* on stable storage up to here (atomic stores) */
    uint64_t written_lsn;    /* written (maybe not synced) up to here */
    uint64_t attempted_lsn;  /* highest LSN whose write was started: after a fence, the outcome of
                                requests up to here is unknown, of later ones known (not written) */
    uint64_t assigned_lsn;   /* highest LSN encoded (written under idx_lock, read with __atomic) */
    uint64_t taken_lsn;      /* highest LSN the write role has taken (ditto) */
    uint64_t sync_wanted_lsn;/* stele_sync in interval or none mode wants this durable */
    uint64_t closed_lsn;     /* last LSN of the newest batch closed for writing (full, or the
                                segment's end); __atomic */
    uint64_t fill_since_ns;  /* none mode: when the open batch got its first record; __atomic */
    uint64_t linger_ns;      /* none mode: an open batch is written at the latest this long after
                                its first record (NONE_LINGER_NS; tests may set it, under q_lock,
                                before the first append) */
    int w_busy;              /* the write role is held (read with __atomic by appenders) */
    int s_busy;              /* the sync role is held */
    int roll_wanted;         /* the next batch does not fit the active segment (or there is none):
                                set under idx_lock, cleared under idx_lock by the roll; __atomic */
    unsigned stalled;        /* appenders waiting on pipe_cond */
    unsigned bg_idle;        /* background threads waiting on bg_cond (__atomic reads) */
    pthread_t bg[2];
    int bg_started;          /* background threads to join */
    int writer_started;
    struct request *await_head; /* encoded, waiting for their acknowledgement; ack_lsn ascending */
    struct request *await_tail;
    struct segment *written_seg; /* segment of the last batch written */
    struct inflight inflight[WRITER_INFLIGHT_MAX];
    size_t inflight_head;
    size_t inflight_count;
    struct wbatch batches[WRITER_BATCHES];
    struct wbatch *free_batches;
    struct request *pool;    /* free async requests */
    struct request *pool_blocks; /* their allocations, freed at close */
    struct request *callbacks; /* completed async requests whose fn is due */
    int callbacks_running;   /* a thread is running callbacks; it drains the list */

    /* Under idx_lock (appenders encoding, the write role taking a batch). */
    struct wbatch *fill;     /* the batch being filled; NULL = none open */
    struct wbatch *full_head;/* filled batches waiting for the write role, in LSN order */
    struct wbatch *full_tail;
    uint64_t next_lsn;       /* the LSN the next new record gets */
    uint64_t last_recorded_at_ns;
    uint64_t seg_reserved;   /* bytes of the active segment reserved by batches not yet written
                                (__atomic: the write role gives them back) */

    /* The write role's state (whoever holds it). */
    uint64_t last_sync_ns;   /* under q_lock */
    void *file_hash;         /* XXH3 state over the active segment's bytes */
    void *cctx;              /* ZSTD_CCtx when the log compresses */
    uint8_t *zbuf;           /* compressed frame being assembled */
    size_t zbuf_cap;
    /* Dictionaries (dict.c, SPEC.md §18). */
    int compression_level;   /* the level this handle compresses with */
    struct dict_cache *dicts;/* readers' decompression dictionaries */
    void *cdict;             /* writer thread: ZSTD_CDict of dictionary cdict_id, NULL = none */
    uint32_t cdict_id;
    uint32_t dict_in_use;    /* cdict_id, for stats (atomic) */
    pthread_mutex_t dict_lock; /* guards the hand-over below */
    void *cdict_next;        /* a new dictionary for the writer to take over */
    uint32_t cdict_next_id;
    int cdict_pending;       /* cdict_next is set (atomic: the writer looks without the lock) */
    pthread_mutex_t dict_train_lock; /* one stele_dict_train at a time */
    pthread_t auto_train_thread; /* options.dict_train_records (dict.c) */
    int auto_train_started;  /* writer thread only: tried once per open */
    int auto_train_joinable;
    int auto_train_code;     /* -1 until it finished; under dict_lock */
    char auto_train_note[160];
    /* The index (index.c, SPEC.md §15), under idx_lock: the writer holds it
     * while it decides and encodes a round; queries hold it briefly. */
    pthread_mutex_t idx_lock;
    struct idx *idx;         /* NULL until built (read-only handles: at the first query) */
    uint64_t idx_lsn;        /* every record up to here is in idx, none after */
    uint64_t idx_ckpt_lsn;   /* what the last checkpoint started or loaded covers */
    uint64_t ckpt_stored_lsn;/* what the last checkpoint stored or loaded covers (under q_lock) */
    struct io *aux_io;       /* io_uring logs: plain I/O for background files (owned); else NULL */
    struct seg_spare *spare; /* the next segment's file, being made (segment_io.c); writer thread */
    pthread_t ckpt_thread;   /* writes a checkpoint started at a seal */
    int ckpt_started;        /* ckpt_thread is to be joined */
    int ckpt_done;           /* ckpt_thread has finished (under q_lock) */
    uint64_t idx_expired_at; /* recorded time the last expiry sweep ended */
    int idx_sweeping;        /* an expiry sweep is in progress (index_expire) */
    char fence_msg[512];     /* why the log was fenced, for every later caller */

    stele_stats stats;       /* counters, under q_lock */

    /* The Merkle tree (tree.c, SPEC.md §20): made at the first call that needs it. */
    pthread_mutex_t tree_lock;
    struct tree *tree;

    /* Per-segment read indexes (segidx.c, SPEC.md §19). */
    pthread_mutex_t segidx_lock; /* one load or rebuild of a sealed segment's table at a time */
    struct io *segidx_io;    /* index files' I/O: plain POSIX, owned (tests: segidx_set_io) */
    int segidx_io_owned;
    pthread_t segidx_thread; /* writes the index file of the segment just sealed */
    int segidx_started;      /* segidx_thread is to be joined */
    struct {                 /* counters: __atomic, so that readers take no lock to count */
        uint64_t loaded, rebuilt, written, write_failures, read_batches, read_bytes;
        char note[160];      /* under q_lock */
    } rstats;

    /* Tests: called (under q_lock) just before a sync-mode batch is
     * acknowledged, with where it was written, so a simulated disk can check
     * that those bytes and their directory entry are durable (I0). */
    void (*ack_hook)(void *ctx, const char *seg_path, uint64_t offset, uint64_t size, uint64_t first_lsn,
                     uint64_t last_lsn);
    void *ack_ctx;

    /* Tests: the clock recorded times come from (NULL = the real one);
     * set with log_set_clock before the first append. */
    uint64_t (*clock_fn)(void *ctx);
    void *clock_ctx;
};

/* Tests: recorded times (and so the idempotency window) follow fn from now on. */
void log_set_clock(stele_log *log, uint64_t (*fn)(void *ctx), void *ctx);

/* log.c */
uint64_t now_ns(void);
int log_seg_path(const stele_log *log, uint64_t first_lsn, char *dst, size_t dst_capacity);
struct segment *log_active(stele_log *log);
struct segment *log_find_segment(stele_log *log, uint64_t lsn);
int log_add_segment(stele_log *log, struct segment *seg);
int stele_open_io(const char *dir, const stele_options *opts, struct io *io, stele_log **out_log);

/* segment_io.c */
struct segment *segment_new(const char *path);
void segment_free(stele_log *log, struct segment *seg);
int segment_create(stele_log *log, uint64_t seq, uint64_t first_lsn, uint64_t prev_chain,
                   struct segment **out_seg);
int segment_seal(stele_log *log, struct segment *seg);
/* Starts making the next segment's file ahead, unless one is being made
 * (or the log has no background I/O): writer thread. */
void segment_spare_start(stele_log *log);
/* Waits for the spare's thread and removes the spare (at close). */
void segment_spare_discard(stele_log *log);
/* The fd batches are written through: the O_DIRECT one (opened at the first
 * call for a segment the handle did not create) or else the plain one. */
int segment_write_fd(stele_log *log, struct segment *seg, int *out_fd);
int segment_open_sealed(stele_log *log, struct segment *seg, uint64_t file_size);
int segment_index_add(struct segment *seg, const struct batch_ref *ref);
/* Sealed segments keep their fd open only while used or among the most
 * recently used (SEALED_FDS_MAX), so a log of any length stays within the
 * process's fd limit. The active segment's fd is always open. */
void segment_fd_adopt(stele_log *log, struct segment *seg, int fd);
int segment_fd_acquire(stele_log *log, struct segment *seg, int *out_fd);
void segment_fd_release(stele_log *log, struct segment *seg);
static inline int segment_sealed(const struct segment *seg)
{
    return __atomic_load_n(&seg->sealed, __ATOMIC_ACQUIRE);
}
static inline void segment_set_sealed(struct segment *seg)
{
    __atomic_store_n(&seg->sealed, 1, __ATOMIC_RELEASE);
}
/* segidx.c (SPEC.md §19): makes seg's batch table present, from its index
 * file or (missing, damaged, stale) rebuilt from the segment. */
int segment_ensure_index(stele_log *log, struct segment *seg);
/* The writer, once a seal is durable: writes seg's index file on a thread of
 * its own; segidx_write_wait joins it. Failures are counted, never fatal. */
void segidx_write_start(stele_log *log, struct segment *seg);
void segidx_write_wait(stele_log *log);
/* Writable open: makes sure the newest sealed segment has its index file. */
void segidx_open_check(stele_log *log);
/* A read found seg's batch where its table, loaded from the index file,
 * said it was not: forgets the table so that the next read rebuilds it from
 * the segment (SPEC.md §19.3). Returns 1 if so, 0 when the table did not
 * come from a file (then the segment itself is damaged). */
int segidx_distrust(stele_log *log, struct segment *seg, uint64_t offset);
/* Counts one batch frame of bytes read for a reader. */
void segidx_count_read(stele_log *log, uint64_t bytes);
void segidx_stats(stele_log *log, stele_stats *out);
/* Tests: index files' I/O goes through io from now on (not owned), e.g. a
 * fault-injecting backend. By default it has a plain POSIX backend of its
 * own, so that faults injected into the log's I/O, which the tests count
 * call by call, meet only the segments' I/O. */
void segidx_set_io(stele_log *log, struct io *io);
/* The recorded time of a batch: its first record's (all of a batch share
 * it); 0, or -1 when that record fails its checks. */
int batch_recorded_at(const uint8_t *raw, size_t raw_size, uint64_t first_lsn, uint64_t seed, uint64_t *out_ns);

/* batch reading (segment_io.c): reads and checks one frame, decompressing
 * into *raw (malloc'd, grown as needed). */
struct batch_buf {
    uint8_t *frame;
    size_t frame_cap;
    uint8_t *raw;
    size_t raw_cap;
    const uint8_t *body;     /* raw records of the last batch read */
    struct fmt_batch_header header;
    struct dict_cache *dicts;/* where batches naming a dictionary find it (dict.h; not owned) */
    void *dctx;              /* ZSTD_DCtx for dictionary batches, made on first use */
    int dict_error;          /* the last failure was a missing or damaged dictionary */
};
void batch_buf_free(struct batch_buf *b);
int batch_read(stele_log *log, struct segment *seg, const struct batch_ref *ref, struct batch_buf *b);
/* Checks the frame of ref at frame (already read) as batch_read does. */
int batch_check(stele_log *log, struct segment *seg, const struct batch_ref *ref, const uint8_t *frame,
                struct batch_buf *b);
/* Sequential reads (iterators, readahead.c): the batch of ref, from one
 * large read of the batches after it when the previous batch served was the
 * one just before it; a single frame otherwise. b->body may point into ra
 * until the next call. */
struct readahead {
    uint8_t *buf;
    size_t cap;
    const struct segment *seg; /* whose bytes [off, off + len) buf holds */
    uint64_t off;
    size_t len;
    uint64_t next_off;       /* offset after the last batch served */
};
int batch_read_ahead(stele_log *log, struct segment *seg, const struct batch_ref *ref, struct batch_buf *b,
                     struct readahead *ra);
void readahead_free(struct readahead *ra);
/* Decompresses a stored body into b->raw (or points b->body at it). */
int batch_body_open(struct batch_buf *b, const uint8_t *stored, const char *path, uint64_t offset);

/* tree.c: closes the tree's files (log_free). */
void tree_free(stele_log *log);

/* recover.c: scans the active segment, cuts a torn tail, checks the rest. */
int recover_segments(stele_log *log);
int log_refresh(stele_log *log);

/* reader.c: the highest LSN acknowledged on this handle, which its reads
 * and queries show: visible_lsn, or in none mode on a writable handle
 * every record encoded (SPEC.md §11.1; a read of one not yet written waits
 * for its write). */
uint64_t log_acked_lsn(stele_log *log);
/* None mode: waits until lsn, acknowledged, is written (and so readable);
 * OK at once in other modes or when it is. FENCED or CLOSED, with a
 * message naming the LSN, when it never will be (reader.c). */
int log_catch_up(stele_log *log, uint64_t lsn);

/* writer.c: the pipeline */
int writer_start(stele_log *log);
void writer_stop(stele_log *log);
/* Encodes r (append.c's append_encode_locked, making room when it asks for
 * it) and waits for its acknowledgement, taking the write or sync role when
 * they are vacant; an async r (fn set) returns once encoded. A none-mode
 * blocking append returns once encoded too. Returns r's code. */
int writer_submit(stele_log *log, struct request *r);
/* Readers on a writable handle: waits until lsn (at most the highest LSN
 * encoded) is written, so that an append's record can be read back at once
 * in none mode. Returns OK, or FENCED / CLOSED. */
int writer_flush_to(stele_log *log, uint64_t lsn);
/* The batch pool's buffers (log_free). */
void writer_free_batches(stele_log *log);

/* append.c: the caller's half */
#define APPEND_WANT_ROOM 1000 /* append_encode_locked: no room; writer_submit makes some, then retries */
/* Decides and encodes r's events into log->fill under idx_lock, or returns
 * APPEND_WANT_ROOM having changed nothing (a full fill is moved to the full
 * list, or roll_wanted set). On success r->ack_lsn is set. */
int append_encode_locked(stele_log *log, struct request *r);
/* Fences the log with code (an append that changed the index and could
 * not finish); q_lock taken inside. */
void writer_fence(stele_log *log, int code);
#define REQUEST_BLOCK 256 /* async requests per pool block; block[0] only links the blocks */
/* Takes a free batch for the fill (q_lock taken inside); NULL if none. */
struct wbatch *writer_batch_get(stele_log *log);

/* index.c */
#define INDEX_FILE_NAME "index.ckpt"
uint64_t log_now(const stele_log *log);
/* Writer handles at open: loads the checkpoint (or rebuilds) and indexes the
 * records after it. */
int index_open(stele_log *log);
/* Adds an appended record to the index; idx_lock held. key_hash is its
 * key's idx_key_hash when the caller has it, NULL otherwise. Returns OK,
 * NOMEM, or CORRUPT when the record contradicts the index (a stream version
 * out of step). */
int index_apply(stele_log *log, const struct fmt_record *rec, uint64_t lsn, const uint32_t *key_hash,
                const struct idx_hint *hint);
/* Writes a checkpoint covering idx_lsn, which must be durable; idx_lock held
 * (or no other thread running). A failed checkpoint changes nothing but the
 * temporary file, which it removes; it is counted in stats. */
int index_checkpoint(stele_log *log);
/* The same, serialised and written by a thread of its own from a snapshot
 * of the index (the writer at a seal; idx_lock held): returns once the
 * snapshot is taken. Skipped while the previous one is still being
 * written. */
void index_checkpoint_start(stele_log *log);
/* Waits for a checkpoint being written by index_checkpoint_start and
 * releases its snapshot; idx_lock held (or no other thread running). */
void index_checkpoint_wait(stele_log *log);
/* The same if that checkpoint is already written; else nothing. */
void index_checkpoint_reap(stele_log *log);
/* Whether what k holds is still remembered at recorded time now (SPEC.md
 * §15.2): within the window, or a pending intent. */
int index_key_live(const stele_log *log, const struct idx_key *k, uint64_t now);
/* Forgets the keys the window has passed (SPEC.md §15.2): whole (budget 0),
 * or one step of a sweep of budget units (idx_expire_step; the writer, once
 * per round while log->idx_sweeping says the sweep goes on). idx_lock held. */
void index_expire(stele_log *log, uint64_t now, uint64_t budget);
/* The writer, after deciding a round of records records at recorded time
 * now: a step of the expiry sweep in progress, or of a new one when one is
 * due (every 1/16 of the window); none while a checkpoint's snapshot is
 * being written. The step's budget grows with the round, so that sweeps
 * keep up with keys coming at any rate: a sweep looks at every entry once
 * per 1/16 of the window (16 entries per record appended, in a steady
 * state) and forgets about as many keys as come (32 units each), so
 * INDEX_EXPIRE_PER_RECORD units per record leave it a margin. idx_lock
 * held. */
#define INDEX_EXPIRE_STEP 4096u
#define INDEX_EXPIRE_PER_RECORD 64u
void index_expire_round(stele_log *log, uint64_t now, uint64_t records);
/* The version the record at lsn has in stream (0 if not in it); idx_lock held. */
uint64_t index_stream_version_of(stele_log *log, const void *stream, size_t stream_size, uint64_t lsn);
/* Makes the index current for a query (read-only handles catch up with the
 * files) and takes idx_lock; index_unlock releases it. */
int index_lock_current(stele_log *log);
void index_unlock(stele_log *log);
void index_free(stele_log *log);
/* For stream iterators: LSN of stream's record at version, 0 when there is
 * none that is acknowledged. */
int index_stream_lsn(stele_log *log, const void *stream, size_t stream_size, uint64_t version, uint64_t *out_lsn);

/* dict.c (also dict.h) */
void dict_stats(stele_log *log, stele_stats *out);
/* The writer thread, q_lock held, after each round: starts the automatic
 * training when options.dict_train_records asks for it and it is due. */
void dict_auto_train_check_locked(stele_log *log);
/* Waits for an automatic training in progress (stele_close). */
void dict_auto_train_join(stele_log *log);
int dict_check_all(const char *dir, const uint8_t log_id[STELE_LOG_ID_SIZE],
                   void (*fn)(void *ctx, const char *path, const char *what), void *ctx);

/* reader.c */
void record_from_fmt(const struct fmt_record *r, uint64_t lsn, stele_record *out);
/* Calls fn for every visible record from from_lsn on; a non-zero return
 * from fn stops the scan and is returned. */
int log_scan(stele_log *log, uint64_t from_lsn, int (*fn)(void *ctx, uint64_t lsn, const struct fmt_record *rec),
             void *ctx);

#endif
