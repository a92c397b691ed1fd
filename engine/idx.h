/*
 * idx.h - the index derived from the log (SPEC.md §15): idempotency keys
 * (with every intent's outcome and the list of pending intents), streams
 * (version -> LSN), and compensations (target LSN -> compensation). Its
 * checkpoint file body is written and read here too (format/index.h has the
 * byte layout).
 *
 * Full keys are stored and compared, so a hash collision never makes two keys
 * one (RELIABILITY S30). Not thread-safe: the caller serialises (the engine
 * holds log->idx_lock).
 */
#ifndef STELE_IDX_H
#define STELE_IDX_H

#include <stddef.h>
#include <stdint.h>

/* What a key holds, copied in and out. */
struct idx_key {
    uint64_t lsn;              /* the key's record: the event or the intent */
    uint64_t fingerprint;      /* that record's fingerprint */
    uint64_t recorded_at_ns;   /* that record's recorded time */
    uint64_t stream_version;   /* that record's stream version (0 = none) */
    uint64_t last_at_ns;       /* recorded time of the key's latest record (the outcome's once
                                  there is one): the window counts from here */
    uint8_t kind;              /* STELE_KIND_EVENT or STELE_KIND_INTENT */
    /* intents only (all 0 while pending; always 0 for events) */
    uint8_t outcome;           /* STELE_OUTCOME_CONFIRMED or _FAILED */
    uint64_t outcome_lsn;
    uint64_t outcome_fingerprint;
};

struct idx; /* opaque */

/* Metadata of a checkpoint, stored in the index file's header. */
struct idx_ckpt_info {
    uint8_t log_id[16];
    uint64_t covered_lsn;            /* every record up to here is in the index, none after */
    uint64_t covered_fingerprint;    /* the record at covered_lsn (0 when covered_lsn is 0) */
    uint64_t covered_recorded_at_ns; /* ditto */
    uint64_t window_ns;              /* the log's idempotency window when written */
    uint64_t written_at_ns;
};

/* Returns a new empty index, NULL when out of memory. window_ns 0 = forever. */
struct idx *idx_new(uint64_t window_ns);
void idx_free(struct idx *x);

/* Tests force hash collisions with this (before anything is put). */
void idx_set_hash(struct idx *x, uint64_t (*fn)(const void *key, size_t key_size));

/* --- keys (1..255 bytes) */

/* 1 and *out filled when the key is present (expired or not: the caller
 * compares last_at_ns with the window), 0 when absent. */
int idx_key_get(const struct idx *x, const void *key, size_t key_size, struct idx_key *out);

/* The writer hashes each key once: idx_key_hash gives the hash the _h
 * forms take (equal to what idx_key_get and idx_key_put compute), and
 * idx_prefetch starts loading the cache line a lookup of that hash probes
 * first. The writer prefetches some records ahead of deciding them, so that
 * the cache misses of a large table overlap instead of adding up. */
uint32_t idx_key_hash(const struct idx *x, const void *key, size_t key_size);
void idx_prefetch(const struct idx *x, uint32_t hash);

/* Where a lookup of the key table ended (the key's slot, or the empty one
 * it would take), so that a put of the same key right after it need not
 * probe again: the writer looks a key up to decide, then indexes it. It
 * holds until anything changes the key table; a put given a stale one
 * probes as if it had none. */
struct idx_hint {
    uint64_t pos;
    uint64_t gen;
    int found;
};

/* idx_key_get with the hash given; hint (may be NULL) is filled. */
int idx_key_get_h(const struct idx *x, uint32_t hash, const void *key, size_t key_size, struct idx_key *out,
                  struct idx_hint *hint);
/* idx_key_put with the hash given; hint (may be NULL) from a lookup of
 * this key. */
int idx_key_put_h(struct idx *x, uint32_t hash, const void *key, size_t key_size, const struct idx_key *v,
                  const struct idx_hint *hint);

/* Inserts or replaces what key holds. Keeps the pending list: an intent with
 * outcome_lsn 0 is pending; inserts come in LSN order from the writer, in any
 * order from idx_load (which restores the order). Returns 0, or -1 when out
 * of memory (the index is unchanged then). */
int idx_key_put(struct idx *x, const void *key, size_t key_size, const struct idx_key *v);

/* Calls fn for each pending intent, oldest (lowest LSN) first, while fn
 * returns 0; returns what fn returned last (0 if never called). */
int idx_pending_each(const struct idx *x,
                     int (*fn)(void *ctx, const void *key, size_t key_size, const struct idx_key *v), void *ctx);

/* Forgets every key whose last_at_ns + window < now_ns (never a pending
 * intent; nothing with window 0). Returns the number forgotten. Memory is
 * reused by later keys. */
uint64_t idx_expire(struct idx *x, uint64_t now_ns);

/* The same in bounded steps, so that a large index is not walked in one go:
 * a sweep starts when some key may have expired, and each step goes on in
 * entry order from where the last one stopped, for budget units of work: an
 * entry looked at costs 1, a key forgotten IDX_EXPIRE_DELETE_COST more (its
 * hash, a probe and a shift in the slot table). *out_done is set when no
 * sweep is in progress after the step. Keys stored while a sweep is in
 * progress are not missed: one it did not look at is looked at by the next
 * sweep. Returns the number forgotten. */
#define IDX_EXPIRE_DELETE_COST 32u
uint64_t idx_expire_step(struct idx *x, uint64_t now_ns, uint64_t budget, int *out_done);

/* --- streams (1..255 bytes) */

/* Appends lsn as the next version of stream (creating it at version 1).
 * Returns the new version, or 0 when out of memory (unchanged then). */
uint64_t idx_stream_append(struct idx *x, const void *stream, size_t stream_size, uint64_t lsn);

/* The stream's current version (0 = no such stream); *out_last_lsn (may be
 * NULL) gets its last record's LSN. */
uint64_t idx_stream_version(const struct idx *x, const void *stream, size_t stream_size, uint64_t *out_last_lsn);

/* LSN of the stream's record at version (1-based), 0 when there is none. */
uint64_t idx_stream_lsn(const struct idx *x, const void *stream, size_t stream_size, uint64_t version);

/* --- compensations */

/* Records that comp_lsn (with fingerprint) compensates target_lsn.
 * Returns 0, or -1 when out of memory. */
int idx_comp_put(struct idx *x, uint64_t target_lsn, uint64_t comp_lsn, uint64_t fingerprint);

/* 1 with the compensation of target_lsn, 0 when it is not compensated. */
int idx_comp_get(const struct idx *x, uint64_t target_lsn, uint64_t *out_comp_lsn, uint64_t *out_fingerprint);

/* --- size */

uint64_t idx_key_count(const struct idx *x);
uint64_t idx_pending_count(const struct idx *x);
uint64_t idx_stream_count(const struct idx *x);
uint64_t idx_intent_count(const struct idx *x);  /* keys of kind intent, pending or not */
uint64_t idx_comp_count(const struct idx *x);
uint64_t idx_memory(const struct idx *x);   /* bytes allocated, everything included */

/* Tests: the growth of the key table (streams: the stream table), which
 * moves the old table into the new one a few slots per insert. */
struct idx_grow_stats {
    uint64_t migrations;      /* begun since idx_new */
    uint64_t old_slots;       /* slots of the table being moved, 0 when none */
    uint64_t old_live;        /* its keys not yet moved */
    uint64_t step_slots_max;  /* the most old slots one insert moved or looked at */
};
void idx_grow_stats(const struct idx *x, int streams, struct idx_grow_stats *out);

/* --- snapshots, so that a checkpoint is written while the index changes */

/* Freezes what x holds now, for one other thread to save (idx_save on the
 * returned snapshot, which it may call while the owner goes on changing x
 * under its own lock). Costs a copy of the chunk pointer arrays (about one
 * pointer per 16,384 keys); after it, the first change to anything the
 * snapshot shares copies that chunk or array first (copy on write, at most
 * once per chunk: the memory of a checkpoint in flight is at most the
 * index's pools and arrays once more, counted in idx_memory). Key bytes
 * are not compacted while it lives. If a copy cannot be allocated, the
 * owner calls wait(ctx), which must return once the saving thread no
 * longer reads the snapshot, and releases it. One snapshot at a time;
 * NULL when out of memory (nothing changed then). */
const struct idx *idx_snapshot(struct idx *x, void (*wait)(void *ctx), void *ctx);

/* Once the saving thread is done with it: frees what only the snapshot
 * still holds. Nothing without a snapshot; idx_free calls it. */
void idx_snapshot_release(struct idx *x);

/* Tests: the allocator of the copies (NULL = malloc). */
void idx_set_cow_alloc(struct idx *x, void *(*fn)(size_t size));

/* --- checkpoint file (format/index.h has the layout) */

typedef int (*idx_write_fn)(void *ctx, const void *buf, size_t size);   /* 0 or a stele code */
typedef int (*idx_read_fn)(void *ctx, void *buf, size_t size);          /* 0, or a stele code; a short
                                                                           file is STELE_ERR_CORRUPT */

/* Writes the whole index file (header with info, every section, the
 * whole-file checksum) through write, in chunks of at most 1 MiB. Returns 0,
 * STELE_ERR_NOMEM (its 1 MiB buffer), or what write returned. */
int idx_save(const struct idx *x, const struct idx_ckpt_info *info, idx_write_fn write, void *ctx);

/* Reads an index file written by idx_save into a new index (window_ns as
 * idx_new). The input is hostile: every count, size and checksum is checked,
 * and any mismatch returns STELE_ERR_CORRUPT (or STELE_ERR_FORMAT for an
 * unknown version) with err_set naming what is wrong and its byte offset;
 * *out_x is set only on success. Reads exactly the file size the header
 * states, then one byte more, which must fail with STELE_ERR_CORRUPT (EOF:
 * nothing may follow the footer). Returns 0, a stele code from read,
 * CORRUPT, FORMAT, NOMEM. */
int idx_load(uint64_t window_ns, idx_read_fn read, void *ctx, struct idx **out_x, struct idx_ckpt_info *out_info);

#endif
