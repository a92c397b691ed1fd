/*
 * peer_leveldb.c - LevelDB as an event store through its C API
 * (leveldb/c.h, Debian's libleveldb-dev): one database, every thread writing
 * to it, key = the idempotency key ("k<thread>-<seq>", unique in the run),
 * value = the payload.
 *
 * Options: create_if_missing; write_buffer_size 64 MiB (LevelDB's default is
 * 4 MiB, which at these rates fills a memtable every fraction of a second and
 * stalls writers on its compaction; 64 MiB is RocksDB's default, so both KV
 * peers run with the same memtable); compression left at LevelDB's default
 * (snappy); everything else default.
 *
 * With --durability sync, WriteOptions sync=true: a write returns once its
 * log record is synced. LevelDB queues concurrent writers and lets the first
 * write the group's log record and sync it (its own group commit). With
 * interval or none, sync=false: each write reaches the log file (the OS has
 * it) and nothing waits for a sync. As for RocksDB, a put is a blind write:
 * no idempotency check. LevelDB does not count its syncs.
 */
#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

#define WRITE_BUFFER_SIZE (64u * 1024u * 1024u)

struct ldb {
    leveldb_t *db;
    leveldb_options_t *options;
    leveldb_writeoptions_t *write_options;
};

struct ldb_thread {
    struct ldb *l;
    leveldb_writebatch_t *batch;
};

static int fail(const char *what, char *err)
{
    fprintf(stderr, "stele-bench: leveldb: %s: %s\n", what, err ? err : "out of memory");
    leveldb_free(err);
    return -1;
}

static void ldb_free(struct ldb *l)
{
    if (l->write_options)
        leveldb_writeoptions_destroy(l->write_options);
    if (l->options)
        leveldb_options_destroy(l->options);
    free(l);
}

static int ldb_open(const struct config *cfg, const char *dir, void **out_db)
{
    struct ldb *l = calloc(1, sizeof *l);
    if (!l || !(l->options = leveldb_options_create()) || !(l->write_options = leveldb_writeoptions_create())) {
        if (l)
            ldb_free(l);
        return fail("open", NULL);
    }
    leveldb_options_set_create_if_missing(l->options, 1);
    leveldb_options_set_write_buffer_size(l->options, WRITE_BUFFER_SIZE);
    leveldb_writeoptions_set_sync(l->write_options, cfg->durability == STELE_DURABILITY_SYNC);
    char path[4096], *err = NULL;
    snprintf(path, sizeof path, "%s/db", dir);
    l->db = leveldb_open(l->options, path, &err);
    if (err) {
        ldb_free(l);
        return fail(path, err);
    }
    *out_db = l;
    return 0;
}

static int ldb_thread_open(void *db, int thread_id, void **out_thread)
{
    (void)thread_id;
    struct ldb_thread *t = calloc(1, sizeof *t);
    if (!t || !(t->batch = leveldb_writebatch_create())) {
        free(t);
        return fail("thread", NULL);
    }
    t->l = db;
    *out_thread = t;
    return 0;
}

static int ldb_append(void *thread, const struct bench_record *recs, int count)
{
    struct ldb_thread *t = thread;
    char *err = NULL;
    if (count == 1) {
        leveldb_put(t->l->db, t->l->write_options, recs[0].key, recs[0].key_size, recs[0].payload,
                    recs[0].payload_size, &err);
    } else {
        /* A batch is one atomic write, as stele_append_batch is. */
        leveldb_writebatch_clear(t->batch);
        for (int i = 0; i < count; i++)
            leveldb_writebatch_put(t->batch, recs[i].key, recs[i].key_size, recs[i].payload, recs[i].payload_size);
        leveldb_write(t->l->db, t->l->write_options, t->batch, &err);
    }
    return err ? fail("write", err) : 0;
}

static void ldb_thread_close(void *thread)
{
    struct ldb_thread *t = thread;
    leveldb_writebatch_destroy(t->batch);
    free(t);
}

static int ldb_close(void *db, struct target_stats *out_stats)
{
    (void)out_stats;
    struct ldb *l = db;
    leveldb_close(l->db);
    ldb_free(l);
    return 0;
}

const struct target peer_leveldb = {
    .name = "leveldb",
    .always_keyed = 1,
    .open = ldb_open,
    .thread_open = ldb_thread_open,
    .append = ldb_append,
    .thread_close = ldb_thread_close,
    .close = ldb_close,
};
