/*
 * peer_sqlite.c - SQLite as an event store, set up the way an application
 * that needs durable appends would set it up, in two ways of sharing it
 * between threads:
 *
 *   - WAL mode, synchronous=FULL: a commit returns once the WAL is synced;
 *   - a table with the payload as a blob and, when the workload has keys
 *     (--keys, as stele's cell has), a UNIQUE idempotency-key column, so
 *     every insert also checks and updates the key index;
 *   - one transaction per event (BEGIN IMMEDIATE, INSERT, COMMIT; with
 *     --batch N, N inserts per transaction).
 *
 * "sqlite": ONE connection shared by every thread, its use serialised by a
 * mutex (opened NOMUTEX: the mutex is the bench's). That is how a careful
 * user runs SQLite from many threads: SQLite has one writer at a time
 * anyway, and the threads queue on a mutex instead of sleeping in a busy
 * handler. There is no group commit: every event is its own WAL sync.
 *
 * "sqlite-conn-per-thread": a connection per thread; the others wait in a
 * busy handler and retry. Under contention its throughput collapses (the
 * handler sleeps while the lock is free), so it flatters stele's ratio;
 * it is kept to show what the naive arrangement costs.
 *
 * With --durability interval, synchronous=NORMAL (in WAL mode the WAL is
 * synced only at checkpoints: durable up to the last one, like a sync at
 * intervals); with none, synchronous=OFF (never synced).
 */
#include <pthread.h>
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

struct sq_conn {
    sqlite3 *conn;
    sqlite3_stmt *begin, *insert, *commit, *rollback;
    uint64_t busy_since_ns;
};

struct sq_db {
    char path[4096];
    const char *synchronous;
    int keyed;                       /* the table has a UNIQUE key column */
    struct sq_conn *shared;          /* "sqlite": the one connection, used under mu */
    pthread_mutex_t mu;
};

static int fail(sqlite3 *conn, const char *what, int code)
{
    fprintf(stderr, "stele-bench: sqlite: %s: %s\n", what, conn ? sqlite3_errmsg(conn) : sqlite3_errstr(code));
    return -1;
}

static int busy_wait(void *ctx, int tries)
{
    struct sq_conn *c = ctx;
    uint64_t now = mono_ns();
    if (tries == 0)
        c->busy_since_ns = now;
    if (now - c->busy_since_ns > BUSY_WAIT_NS_MAX)
        return 0; /* give up: SQLITE_BUSY reaches the caller, which reports it */
    uint64_t nap = BUSY_SLEEP_NS_MIN << (tries < 8 ? tries : 8);
    nap = nap < BUSY_SLEEP_NS_MAX ? nap : BUSY_SLEEP_NS_MAX;
    nanosleep(&(struct timespec){0, (long)nap}, NULL);
    return 1;
}

static int prepare(struct sq_conn *c, int keyed)
{
    const struct {
        const char *sql;
        sqlite3_stmt **stmt;
    } all[] = {{"BEGIN IMMEDIATE", &c->begin},
               {keyed ? "INSERT INTO events(key, payload) VALUES(?1, ?2)" : "INSERT INTO events(payload) VALUES(?2)",
                &c->insert},
               {"COMMIT", &c->commit},
               {"ROLLBACK", &c->rollback}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (sqlite3_prepare_v2(c->conn, all[i].sql, -1, all[i].stmt, NULL) != SQLITE_OK)
            return -1;
    return 0;
}

static void conn_close(struct sq_conn *c)
{
    if (!c)
        return;
    sqlite3_finalize(c->begin);
    sqlite3_finalize(c->insert);
    sqlite3_finalize(c->commit);
    sqlite3_finalize(c->rollback);
    sqlite3_close(c->conn);
    free(c);
}

/* A connection with the database's synchronous setting and the statements prepared. */
static int conn_open(const struct sq_db *db, struct sq_conn **out)
{
    struct sq_conn *c = calloc(1, sizeof *c);
    if (!c)
        return fail(NULL, "connect", SQLITE_NOMEM);
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA synchronous=%s", db->synchronous);
    /* NOMUTEX: a connection is used by one thread at a time (its own, or the holder of db->mu). */
    int rc = sqlite3_open_v2(db->path, &c->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_handler(c->conn, busy_wait, c);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->conn, pragma, NULL, NULL, NULL);
    if (rc != SQLITE_OK || prepare(c, db->keyed) != 0) {
        fail(c->conn, "connect", rc);
        conn_close(c);
        return -1;
    }
    *out = c;
    return 0;
}

static void db_free(struct sq_db *db)
{
    conn_close(db->shared);
    pthread_mutex_destroy(&db->mu);
    free(db);
}

static int db_open(const struct config *cfg, const char *dir, int shared, void **out_db)
{
    /* Connections are used from many threads: SQLite must be built thread-safe. */
    if (!sqlite3_threadsafe()) {
        fprintf(stderr, "stele-bench: sqlite: this SQLite is built without thread support\n");
        return -1;
    }
    struct sq_db *db = calloc(1, sizeof *db);
    if (!db)
        return fail(NULL, "open", SQLITE_NOMEM);
    pthread_mutex_init(&db->mu, NULL);
    snprintf(db->path, sizeof db->path, "%s/events.db", dir);
    db->keyed = cfg->keys;
    db->synchronous = cfg->durability == STELE_DURABILITY_SYNC       ? "FULL"
                      : cfg->durability == STELE_DURABILITY_INTERVAL ? "NORMAL"
                                                                     : "OFF";
    /* The journal mode is stored in the database file, so setting it once here holds for every connection. */
    sqlite3 *conn = NULL;
    int rc = sqlite3_open(db->path, &conn);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(conn, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(conn,
                          db->keyed ? "CREATE TABLE events(id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
                                      " payload BLOB NOT NULL)"
                                    : "CREATE TABLE events(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        fail(conn, "create", rc);
        sqlite3_close(conn);
        db_free(db);
        return -1;
    }
    sqlite3_close(conn);
    if (shared && conn_open(db, &db->shared) != 0) {
        db_free(db);
        return -1;
    }
    *out_db = db;
    return 0;
}

static int step(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* One transaction: the records inserted and committed, or rolled back. */
static int conn_insert(struct sq_conn *c, const struct bench_record *recs, int count)
{
    int rc = step(c->begin);
    if (rc != SQLITE_OK)
        return fail(c->conn, "begin", rc);
    for (int i = 0; i < count && rc == SQLITE_OK; i++) {
        if (recs[i].key)
            sqlite3_bind_text(c->insert, 1, recs[i].key, (int)recs[i].key_size, SQLITE_STATIC);
        sqlite3_bind_blob(c->insert, 2, recs[i].payload, (int)recs[i].payload_size, SQLITE_STATIC);
        rc = step(c->insert);
    }
    if (rc == SQLITE_OK)
        rc = step(c->commit);
    if (rc != SQLITE_OK) {
        fail(c->conn, "insert", rc);
        step(c->rollback);
        return -1;
    }
    return 0;
}

static int sq_close(void *db, struct target_stats *out_stats)
{
    (void)out_stats; /* SQLite does not count its syncs */
    db_free(db);
    return 0;
}

/* "sqlite": one connection, serialised by the bench's mutex. */
static int shared_open(const struct config *cfg, const char *dir, void **out_db)
{
    return db_open(cfg, dir, 1, out_db);
}

static int shared_thread_open(void *db, int thread_id, void **out_thread)
{
    (void)thread_id;
    *out_thread = db;
    return 0;
}

static int shared_append(void *thread, const struct bench_record *recs, int count)
{
    struct sq_db *db = thread;
    pthread_mutex_lock(&db->mu);
    int rc = conn_insert(db->shared, recs, count);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

static void shared_thread_close(void *thread)
{
    (void)thread; /* the connection is the database's, closed with it */
}

const struct target peer_sqlite = {
    .name = "sqlite",
    .open = shared_open,
    .thread_open = shared_thread_open,
    .append = shared_append,
    .thread_close = shared_thread_close,
    .close = sq_close,
};

/* "sqlite-conn-per-thread": a connection per thread, sharing the database through its busy handler. */
static int per_thread_open(const struct config *cfg, const char *dir, void **out_db)
{
    return db_open(cfg, dir, 0, out_db);
}

static int per_thread_thread_open(void *db, int thread_id, void **out_thread)
{
    (void)thread_id;
    return conn_open(db, (struct sq_conn **)out_thread);
}

static int per_thread_append(void *thread, const struct bench_record *recs, int count)
{
    return conn_insert(thread, recs, count);
}

static void per_thread_thread_close(void *thread)
{
    conn_close(thread);
}

const struct target peer_sqlite_per_thread = {
    .name = "sqlite-conn-per-thread",
    .open = per_thread_open,
    .thread_open = per_thread_thread_open,
    .append = per_thread_append,
    .thread_close = per_thread_thread_close,
    .close = sq_close,
};
