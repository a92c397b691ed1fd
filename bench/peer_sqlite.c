/*
 * peer_sqlite.c - SQLite as an event store, set up the way an application
 * that needs idempotent, durable appends would set it up:
 *
 *   - WAL mode, synchronous=FULL: a commit returns once the WAL is synced;
 *   - a table with a UNIQUE idempotency-key column and the payload as a blob,
 *     so every insert also checks and updates the key index;
 *   - one transaction per event (BEGIN IMMEDIATE, INSERT, COMMIT; with
 *     --batch N, N inserts per transaction);
 *   - a connection per thread. SQLite has one writer at a time: the others
 *     wait in a busy handler and retry, which is how concurrent writers share
 *     a SQLite database in practice. There is no group commit.
 *
 * With --durability interval, synchronous=NORMAL (in WAL mode the WAL is
 * synced only at checkpoints: durable up to the last one, like a sync at
 * intervals); with none, synchronous=OFF (never synced).
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

/* A waiting writer retries after a sleep that doubles from 20 us up to 4 ms.
 * SQLite's own busy timeout (sqlite3_busy_timeout) lets a few writers win
 * again and again while the others sleep for seconds (p99.9 over 2 s at 16
 * threads, throughput swinging from run to run); a short fixed poll makes
 * dozens of waiters burn the CPU the lock holder needs. This handler gave
 * SQLite its best and steadiest numbers here, with no writer starved for seconds. */
#define BUSY_SLEEP_NS_MIN 20000u
#define BUSY_SLEEP_NS_MAX 4000000u
#define BUSY_WAIT_NS_MAX 30000000000u

struct sq_db {
    char path[4096];
    const char *synchronous;
};

struct sq_thread {
    sqlite3 *conn;
    sqlite3_stmt *begin, *insert, *commit, *rollback;
    uint64_t busy_since_ns;
};

static int fail(sqlite3 *conn, const char *what, int code)
{
    fprintf(stderr, "stele-bench: sqlite: %s: %s\n", what, conn ? sqlite3_errmsg(conn) : sqlite3_errstr(code));
    return -1;
}

static int sq_open(const struct config *cfg, const char *dir, void **out_db)
{
    /* Connections are used from many threads (one each): SQLite must be built thread-safe. */
    if (!sqlite3_threadsafe()) {
        fprintf(stderr, "stele-bench: sqlite: this SQLite is built without thread support\n");
        return -1;
    }
    struct sq_db *db = calloc(1, sizeof *db);
    if (!db)
        return fail(NULL, "open", SQLITE_NOMEM);
    snprintf(db->path, sizeof db->path, "%s/events.db", dir);
    db->synchronous = cfg->durability == STELE_DURABILITY_SYNC       ? "FULL"
                      : cfg->durability == STELE_DURABILITY_INTERVAL ? "NORMAL"
                                                                     : "OFF";
    /* The journal mode is stored in the database file, so setting it once here holds for every connection. */
    sqlite3 *conn = NULL;
    int rc = sqlite3_open(db->path, &conn);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(conn,
                          "PRAGMA journal_mode=WAL;"
                          "CREATE TABLE events(id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
                          " payload BLOB NOT NULL);",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        fail(conn, "create", rc);
        sqlite3_close(conn);
        free(db);
        return -1;
    }
    sqlite3_close(conn);
    *out_db = db;
    return 0;
}

static int busy_wait(void *ctx, int tries)
{
    struct sq_thread *t = ctx;
    uint64_t now = mono_ns();
    if (tries == 0)
        t->busy_since_ns = now;
    if (now - t->busy_since_ns > BUSY_WAIT_NS_MAX)
        return 0; /* give up: SQLITE_BUSY reaches the caller, which reports it */
    uint64_t nap = BUSY_SLEEP_NS_MIN << (tries < 8 ? tries : 8);
    nap = nap < BUSY_SLEEP_NS_MAX ? nap : BUSY_SLEEP_NS_MAX;
    nanosleep(&(struct timespec){0, (long)nap}, NULL);
    return 1;
}

static int prepare(struct sq_thread *t)
{
    const struct {
        const char *sql;
        sqlite3_stmt **stmt;
    } all[] = {{"BEGIN IMMEDIATE", &t->begin},
               {"INSERT INTO events(key, payload) VALUES(?1, ?2)", &t->insert},
               {"COMMIT", &t->commit},
               {"ROLLBACK", &t->rollback}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (sqlite3_prepare_v2(t->conn, all[i].sql, -1, all[i].stmt, NULL) != SQLITE_OK)
            return -1;
    return 0;
}

static void sq_thread_close(void *thread)
{
    struct sq_thread *t = thread;
    sqlite3_finalize(t->begin);
    sqlite3_finalize(t->insert);
    sqlite3_finalize(t->commit);
    sqlite3_finalize(t->rollback);
    sqlite3_close(t->conn);
    free(t);
}

static int sq_thread_open(void *dbp, int thread_id, void **out_thread)
{
    (void)thread_id;
    struct sq_db *db = dbp;
    struct sq_thread *t = calloc(1, sizeof *t);
    if (!t)
        return fail(NULL, "connect", SQLITE_NOMEM);
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA synchronous=%s", db->synchronous);
    /* NOMUTEX: each connection is used by one thread only, so SQLite's own locking of it is overhead. */
    int rc = sqlite3_open_v2(db->path, &t->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_handler(t->conn, busy_wait, t);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(t->conn, pragma, NULL, NULL, NULL);
    if (rc != SQLITE_OK || prepare(t) != 0) {
        fail(t->conn, "connect", rc);
        sq_thread_close(t);
        return -1;
    }
    *out_thread = t;
    return 0;
}

static int step(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int sq_append(void *thread, const struct bench_record *recs, int count)
{
    struct sq_thread *t = thread;
    int rc = step(t->begin);
    if (rc != SQLITE_OK)
        return fail(t->conn, "begin", rc);
    for (int i = 0; i < count && rc == SQLITE_OK; i++) {
        sqlite3_bind_text(t->insert, 1, recs[i].key, (int)recs[i].key_size, SQLITE_STATIC);
        sqlite3_bind_blob(t->insert, 2, recs[i].payload, (int)recs[i].payload_size, SQLITE_STATIC);
        rc = step(t->insert);
    }
    if (rc == SQLITE_OK)
        rc = step(t->commit);
    if (rc != SQLITE_OK) {
        fail(t->conn, "insert", rc);
        step(t->rollback);
        return -1;
    }
    return 0;
}

static int sq_close(void *db, struct target_stats *out_stats)
{
    (void)out_stats; /* SQLite does not count its syncs */
    free(db);
    return 0;
}

const struct target peer_sqlite = {
    .name = "sqlite",
    .always_keyed = 1,
    .open = sq_open,
    .thread_open = sq_thread_open,
    .append = sq_append,
    .thread_close = sq_thread_close,
    .close = sq_close,
};
