/*
 * target_stele.c - stele itself behind the bench's store interface, through
 * the public header only: one log per run, every thread appending to the
 * same handle (the engine's writer batches them into shared syncs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define TYPE_NAME "bench.event"

struct stele_db {
    stele_log *log;
    int batch;
};

struct stele_thread {
    struct stele_db *db;
    stele_event ev[BENCH_BATCH_MAX];
    stele_receipt receipts[BENCH_BATCH_MAX];
};

static int fail(const char *what, int code)
{
    fprintf(stderr, "stele-bench: stele: %s: %s: %s\n", what, stele_strerror(code), stele_errmsg());
    return -1;
}

static int stele_db_open(const struct config *cfg, const char *dir, void **out_db)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/log", dir);
    struct stele_db *db = calloc(1, sizeof *db);
    if (!db)
        return fail("open", STELE_ERR_NOMEM);
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.durability = cfg->durability;
    o.io_backend = cfg->backend;
    /* Large records must fit: payload_size_max is fixed at creation. */
    if (cfg->record_size > o.payload_size_max)
        o.payload_size_max = (uint32_t)cfg->record_size;
    int code = stele_open(path, &o, &db->log);
    if (code != STELE_OK) {
        free(db);
        return fail("open", code);
    }
    db->batch = cfg->batch;
    *out_db = db;
    return 0;
}

static int stele_thread_open(void *db, int thread_id, void **out_thread)
{
    (void)thread_id;
    struct stele_thread *t = calloc(1, sizeof *t);
    if (!t)
        return fail("thread", STELE_ERR_NOMEM);
    t->db = db;
    *out_thread = t;
    return 0;
}

static int stele_target_append(void *thread, const struct bench_record *recs, int count)
{
    struct stele_thread *t = thread;
    for (int i = 0; i < count; i++) {
        t->ev[i] = (stele_event){.type = TYPE_NAME, .type_size = sizeof TYPE_NAME - 1,
                                 .key = recs[i].key, .key_size = recs[i].key_size,
                                 .payload = recs[i].payload, .payload_size = recs[i].payload_size};
    }
    /* One record goes through stele_append, the call an application makes per event. */
    int code = count == 1 ? stele_append(t->db->log, t->ev, t->receipts)
                          : stele_append_batch(t->db->log, t->ev, (size_t)count, t->receipts);
    if (code != STELE_OK)
        return fail("append", code);
    return 0;
}

static void stele_thread_close(void *thread)
{
    free(thread);
}

static int stele_db_close(void *dbp, struct target_stats *out_stats)
{
    struct stele_db *db = dbp;
    stele_stats st;
    int rc = 0;
    if (stele_stats_get(db->log, &st) == STELE_OK) {
        out_stats->syncs = st.syncs;
        out_stats->syncs_known = 1;
    }
    int code = stele_close(db->log);
    if (code != STELE_OK)
        rc = fail("close", code);
    free(db);
    return rc;
}

const struct target target_stele = {
    .name = "stele",
    .open = stele_db_open,
    .thread_open = stele_thread_open,
    .append = stele_target_append,
    .thread_close = stele_thread_close,
    .close = stele_db_close,
};
