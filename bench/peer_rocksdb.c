/*
 * peer_rocksdb.c - RocksDB as an event store through its C API (rocksdb/c.h):
 * one database, every thread writing to it, key = the idempotency key,
 * value = the payload, WriteOptions with sync=true so a write returns once
 * its WAL record is synced. RocksDB groups concurrent writers into one WAL
 * write and sync (its own group commit), which is what it is measured on.
 *
 * A put does not look the key up first: RocksDB overwrites a key it holds,
 * so unlike stele and the SQLite peer it checks no idempotency. Checking
 * would need a read (or a transaction) per write; the blind write is the
 * flattering case for RocksDB, and the honest floor for a comparison.
 *
 * With --durability interval or none, sync=false: each write still goes to
 * the WAL file (the OS has it), but nothing waits for a sync.
 */
#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define WAL_SYNCED_TICKER "rocksdb.wal.synced COUNT : "

struct rdb {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_writeoptions_t *write_options;
};

struct rdb_thread {
    struct rdb *r;
    rocksdb_writebatch_t *batch;
};

static int fail(const char *what, char *err)
{
    fprintf(stderr, "stele-bench: rocksdb: %s: %s\n", what, err ? err : "out of memory");
    rocksdb_free(err);
    return -1;
}

static void rdb_free(struct rdb *r)
{
    if (r->write_options)
        rocksdb_writeoptions_destroy(r->write_options);
    if (r->options)
        rocksdb_options_destroy(r->options);
    free(r);
}

static int rdb_open(const struct config *cfg, const char *dir, void **out_db)
{
    struct rdb *r = calloc(1, sizeof *r);
    if (!r || !(r->options = rocksdb_options_create()) || !(r->write_options = rocksdb_writeoptions_create())) {
        if (r)
            rdb_free(r);
        return fail("open", NULL);
    }
    rocksdb_options_set_create_if_missing(r->options, 1);
    /* Background flushes and compactions get the machine's cores, as RocksDB's tuning guide advises. */
    rocksdb_options_increase_parallelism(r->options, 2);
    /* Statistics tell how many WAL syncs served how many writes (the cost is a few counters). */
    rocksdb_options_enable_statistics(r->options);
    rocksdb_writeoptions_set_sync(r->write_options, cfg->durability == STELE_DURABILITY_SYNC);
    char path[4096], *err = NULL;
    snprintf(path, sizeof path, "%s/db", dir);
    r->db = rocksdb_open(r->options, path, &err);
    if (err) {
        rdb_free(r);
        return fail("open", err);
    }
    *out_db = r;
    return 0;
}

static int rdb_thread_open(void *db, int thread_id, void **out_thread)
{
    (void)thread_id;
    struct rdb_thread *t = calloc(1, sizeof *t);
    if (!t || !(t->batch = rocksdb_writebatch_create())) {
        free(t);
        return fail("thread", NULL);
    }
    t->r = db;
    *out_thread = t;
    return 0;
}

static int rdb_append(void *thread, const struct bench_record *recs, int count)
{
    struct rdb_thread *t = thread;
    char *err = NULL;
    if (count == 1) {
        rocksdb_put(t->r->db, t->r->write_options, recs[0].key, recs[0].key_size, recs[0].payload,
                    recs[0].payload_size, &err);
    } else {
        /* A batch is one atomic write, as stele_append_batch is. */
        rocksdb_writebatch_clear(t->batch);
        for (int i = 0; i < count; i++)
            rocksdb_writebatch_put(t->batch, recs[i].key, recs[i].key_size, recs[i].payload, recs[i].payload_size);
        rocksdb_write(t->r->db, t->r->write_options, t->batch, &err);
    }
    return err ? fail("write", err) : 0;
}

static void rdb_thread_close(void *thread)
{
    struct rdb_thread *t = thread;
    rocksdb_writebatch_destroy(t->batch);
    free(t);
}

/* The WAL sync count from the statistics dump ("rocksdb.wal.synced COUNT : N"). */
static int wal_syncs(rocksdb_options_t *options, uint64_t *out)
{
    char *text = rocksdb_options_statistics_get_string(options);
    const char *at = text ? strstr(text, WAL_SYNCED_TICKER) : NULL;
    int ok = at && sscanf(at + strlen(WAL_SYNCED_TICKER), "%" SCNu64, out) == 1;
    rocksdb_free(text);
    return ok;
}

static int rdb_close(void *db, struct target_stats *out_stats)
{
    struct rdb *r = db;
    out_stats->syncs_known = wal_syncs(r->options, &out_stats->syncs);
    rocksdb_close(r->db);
    rdb_free(r);
    return 0;
}

const struct target peer_rocksdb = {
    .name = "rocksdb",
    .always_keyed = 1,
    .open = rdb_open,
    .thread_open = rdb_thread_open,
    .append = rdb_append,
    .thread_close = rdb_thread_close,
    .close = rdb_close,
};
