/*
 * check_idx.c - proves that the derived index (engine/idx.c) remembers keys,
 * pending intents, streams and compensations exactly, forgets only what the
 * window allows, stays within its memory budget, and that its checkpoint
 * file (format/index.c, SPEC.md §15.6) round-trips and refuses every damaged
 * or hostile byte string.
 *
 * How:
 *  - Keys: put/get/replace of events and intents with every field checked,
 *    including the values that need a side record (recorded_at_ns other than
 *    last_at_ns, a stream version above 32 bits). With every key forced onto
 *    one hash (idx_set_hash), 10,000 distinct keys - many of them prefixes
 *    of each other - are all found, none confused, absent keys absent, and
 *    expiry's backward-shift deletion keeps the survivors findable.
 *  - Pending list: intents put out of LSN order come back oldest first;
 *    resolving, replacing by an event and re-putting at another LSN move
 *    them; the callback's non-zero return stops the walk.
 *  - Expiry: the window's boundary exactly (now - last_at == window stays,
 *    one more nanosecond goes), now before last_at, windows 0 and near
 *    UINT64_MAX (no overflow), pending intents never; and over many
 *    insert/expire cycles of one working-set size idx_memory() stops growing.
 *  - Streams and compensations against a model, with forced collisions too.
 *  - File: a randomized index of ~100k keys with intents, streams and
 *    compensations is saved and loaded and compared with the model field by
 *    field, pending order included. A small file (a few KiB) has every bit
 *    flipped and is truncated at every length: each load fails with CORRUPT
 *    or FORMAT and sets nothing (AddressSanitizer, in build-asan, reports any
 *    leak or overread). Fields are tampered with and the header checksum and
 *    file hash fixed up, so that each validation rule is seen to fire, with
 *    controls that must still load.
 *  - Snapshots (copy on write, SPEC.md §15.5): an index is snapshotted again
 *    and again while keys, outcomes, expiry, streams and compensations
 *    change it, with and without expiry (so with and without reuse of freed
 *    memory); each snapshot saves byte for byte the file the index saved at
 *    that moment, the index itself still saves and loads after each release,
 *    and copies refused for want of memory make the owner wait and go on.
 *  - Growth in steps (a table moved into one twice its size 32 slots per
 *    insert): after each insert while a migration is in progress, hinted
 *    and plain gets and puts, prefetch, replaces, expiry steps (deletions
 *    from both tables), and at each migration's start every key, a
 *    save/load round trip and a snapshot saved after the migration went on
 *    under it, all against a model; with the default hash, 7 hashes, and 7
 *    whose run wraps round the table's end; a sweep of everything mid-
 *    migration keeps the pending intents; idx_memory counts both tables and
 *    drops by the old one at the end; no insert moves more than 32 old
 *    slots (the old code rehashed the whole table in one insert). The
 *    stream table the same way.
 *  - Memory: 1,000,000 event keys of 16 bytes cost at most 64 + 16 + 1
 *    bytes each by idx_memory(); the figures (events and intents) are printed.
 *
 * Seeded randomness (tu_seed; STELE_TEST_SEED replays a failure).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "idx.h"
#include "index.h"
#include "stele.h"
#include "testutil.h"

static uint64_t g_seed;

/* ---- helpers --------------------------------------------------------------- */

static uint64_t same_hash(const void *key, size_t key_size)
{
    (void)key;
    (void)key_size;
    return UINT64_C(0xfeedfacecafebeef);
}

/* Few distinct hashes: long runs that mix homes, for backward shifts. */
static uint64_t few_hashes(const void *key, size_t key_size)
{
    const uint8_t *p = key;
    return (uint64_t)(p[key_size - 1] % 7) * UINT64_C(0x9E3779B97F4A7C15);
}

/* Few hashes whose homes are the last slots of any table: one run that
 * wraps round the end, so that the slot a migration begins at matters. */
static uint64_t wrap_hashes(const void *key, size_t key_size)
{
    const uint8_t *p = key;
    return UINT64_C(0xffffffff) - (uint64_t)(p[key_size - 1] % 7) * 3;
}

static void put_le(uint8_t *p, uint64_t v, unsigned width)
{
    for (unsigned i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static struct idx_key event(uint64_t lsn, uint64_t at_ns)
{
    return (struct idx_key){.lsn = lsn, .fingerprint = lsn * 31 + 7, .recorded_at_ns = at_ns,
                            .last_at_ns = at_ns, .kind = STELE_KIND_EVENT};
}

static struct idx_key intent(uint64_t lsn, uint64_t at_ns)
{
    struct idx_key v = event(lsn, at_ns);
    v.kind = STELE_KIND_INTENT;
    return v;
}

static struct idx_key resolved(uint64_t lsn, uint64_t at_ns, uint64_t outcome_lsn, uint64_t outcome_at_ns)
{
    struct idx_key v = intent(lsn, at_ns);
    v.outcome = STELE_OUTCOME_CONFIRMED;
    v.outcome_lsn = outcome_lsn;
    v.outcome_fingerprint = outcome_lsn ^ UINT64_C(0xabcdef);
    v.last_at_ns = outcome_at_ns;
    return v;
}

static int key_eq(const struct idx_key *a, const struct idx_key *b)
{
    return a->lsn == b->lsn && a->fingerprint == b->fingerprint && a->recorded_at_ns == b->recorded_at_ns &&
           a->stream_version == b->stream_version && a->last_at_ns == b->last_at_ns && a->kind == b->kind &&
           a->outcome == b->outcome && a->outcome_lsn == b->outcome_lsn &&
           a->outcome_fingerprint == b->outcome_fingerprint;
}

static void put_ok(struct idx *x, const char *key, const struct idx_key *v)
{
    ck_assert_int_eq(idx_key_put(x, key, strlen(key), v), 0);
}

static void expect_key(const struct idx *x, const void *key, size_t key_size, const struct idx_key *want)
{
    struct idx_key got;
    REQUIRE(idx_key_get(x, key, key_size, &got) == 1, "key of %zu bytes (LSN %llu) missing", key_size,
            (unsigned long long)want->lsn);
    REQUIRE(key_eq(&got, want), "key of %zu bytes: LSN %llu read back as LSN %llu or with other fields", key_size,
            (unsigned long long)want->lsn, (unsigned long long)got.lsn);
}

/* Collects the pending list's LSNs. */
struct lsn_list {
    uint64_t *lsn;
    size_t count;
    size_t cap;
    size_t stop_after;  /* return 1 after this many, 0 = never */
};

static int collect(void *ctx, const void *key, size_t key_size, const struct idx_key *v)
{
    struct lsn_list *l = ctx;
    (void)key;
    REQUIRE(key_size >= 1 && key_size <= 255, "pending key size %zu", key_size);
    REQUIRE(v->kind == STELE_KIND_INTENT && v->outcome_lsn == 0, "a pending entry that is not a pending intent");
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->lsn = realloc(l->lsn, l->cap * sizeof *l->lsn);
        ck_assert_ptr_nonnull(l->lsn);
    }
    l->lsn[l->count++] = v->lsn;
    return l->stop_after && l->count == l->stop_after;
}

/* An in-memory file for idx_save and idx_load. */
struct mem {
    uint8_t *buf;
    size_t size;
    size_t cap;
    size_t off;
    size_t writes;
    size_t write_max;
};

static int mem_write(void *ctx, const void *buf, size_t size)
{
    struct mem *m = ctx;
    if (m->size + size > m->cap) {
        m->cap = (m->size + size) * 2;
        m->buf = realloc(m->buf, m->cap);
        ck_assert_ptr_nonnull(m->buf);
    }
    memcpy(m->buf + m->size, buf, size);
    m->size += size;
    m->writes++;
    if (size > m->write_max)
        m->write_max = size;
    return 0;
}

static int mem_read(void *ctx, void *buf, size_t size)
{
    struct mem *m = ctx;
    if (size > m->size - m->off)
        return STELE_ERR_CORRUPT;
    memcpy(buf, m->buf + m->off, size);
    m->off += size;
    return 0;
}

static const struct idx_ckpt_info INFO = {
    .log_id = {'c', 'h', 'e', 'c', 'k', '-', 'i', 'd', 'x', '-', 'l', 'o', 'g', '-', 'i', 'd'},
    .covered_lsn = 0,
    .covered_fingerprint = 0x1111,
    .covered_recorded_at_ns = 0x2222,
    .window_ns = 1000,
    .written_at_ns = 0x3333,
};

static struct mem save(const struct idx *x, uint64_t covered_lsn)
{
    struct mem m = {0};
    struct idx_ckpt_info info = INFO;
    info.covered_lsn = covered_lsn;
    if (covered_lsn == 0)
        info.covered_fingerprint = info.covered_recorded_at_ns = 0;
    ck_assert_int_eq(idx_save(x, &info, mem_write, &m), 0);
    return m;
}

/* Loads size bytes of buf from a heap copy of exactly that size (so ASan
 * sees any overread). Returns the code; *out_x set on success only. */
static int load_bytes(const uint8_t *buf, size_t size, struct idx **out_x, struct idx_ckpt_info *out_info)
{
    struct mem m = {.buf = malloc(size ? size : 1), .size = size};
    ck_assert_ptr_nonnull(m.buf);
    memcpy(m.buf, buf, size);
    int rc = idx_load(500, mem_read, &m, out_x, out_info);
    free(m.buf);
    return rc;
}

/* ---- keys ------------------------------------------------------------------ */

START_TEST(test_put_get_replace)
{
    struct idx *x = idx_new(0);
    ck_assert_ptr_nonnull(x);
    struct idx_key v = event(1, 100), got;
    ck_assert_int_eq(idx_key_get(x, "a", 1, &got), 0);
    put_ok(x, "a", &v);
    expect_key(x, "a", 1, &v);
    ck_assert_int_eq(idx_key_get(x, "b", 1, &got), 0);
    ck_assert_int_eq(idx_key_get(x, "aa", 2, &got), 0);

    /* Sizes 1 and 255, bytes 0 and 255. */
    uint8_t big[255];
    memset(big, 0xff, sizeof big);
    big[7] = 0;
    struct idx_key vb = event(2, 200);
    vb.stream_version = 2;
    ck_assert_int_eq(idx_key_put(x, big, sizeof big, &vb), 0);
    expect_key(x, big, sizeof big, &vb);
    ck_assert_int_eq(idx_key_get(x, big, 254, &got), 0);

    /* Events whose fields do not fit the 40-byte entry. */
    struct idx_key odd = event(3, 300);
    odd.last_at_ns = 301;
    odd.stream_version = UINT64_C(1) << 40;
    put_ok(x, "odd", &odd);
    expect_key(x, "odd", 3, &odd);
    odd.stream_version = UINT32_MAX;
    odd.last_at_ns = odd.recorded_at_ns;
    put_ok(x, "odd", &odd); /* and back into the entry alone */
    expect_key(x, "odd", 3, &odd);

    /* Replace: an event by an intent, the intent by its resolution, by an event again. */
    struct idx_key i = intent(4, 400);
    put_ok(x, "a", &i);
    expect_key(x, "a", 1, &i);
    ck_assert_uint_eq(idx_pending_count(x), 1);
    ck_assert_uint_eq(idx_intent_count(x), 1);
    struct idx_key r = resolved(4, 400, 5, 500);
    r.outcome = STELE_OUTCOME_FAILED;
    put_ok(x, "a", &r);
    expect_key(x, "a", 1, &r);
    ck_assert_uint_eq(idx_pending_count(x), 0);
    ck_assert_uint_eq(idx_intent_count(x), 1);
    struct idx_key e = event(6, 600);
    put_ok(x, "a", &e);
    expect_key(x, "a", 1, &e);
    ck_assert_uint_eq(idx_intent_count(x), 0);
    ck_assert_uint_eq(idx_key_count(x), 3);
    ck_assert_uint_eq(idx_expire(x, UINT64_MAX), 0); /* window 0: never */
    idx_free(x);
    idx_free(NULL);
}
END_TEST

/* Keys that are prefixes of each other and of nothing else: "k", "kk", ...,
 * plus decimal numbers ("1" is a prefix of "10" and "100"). */
static size_t collision_key(unsigned i, char *dst)
{
    if (i < 255) {
        memset(dst, 'k', i + 1);
        return i + 1;
    }
    return (size_t)sprintf(dst, "%u", i);
}

static void check_collisions(uint64_t (*hash)(const void *, size_t))
{
    enum { N = 10000 };
    struct idx *x = idx_new(1000);
    idx_set_hash(x, hash);
    char k[256];
    for (unsigned i = 0; i < N; i++) {
        size_t n = collision_key(i, k);
        struct idx_key v = event(i + 1, i % 2 ? 10 : 5000);
        ck_assert_int_eq(idx_key_put(x, k, n, &v), 0);
    }
    ck_assert_uint_eq(idx_key_count(x), N);
    for (unsigned i = 0; i < N; i++) {
        size_t n = collision_key(i, k);
        struct idx_key v = event(i + 1, i % 2 ? 10 : 5000);
        expect_key(x, k, n, &v);
    }
    struct idx_key got;
    REQUIRE(!idx_key_get(x, "k", 0, &got) && !idx_key_get(x, "x", 1, &got) && !idx_key_get(x, "100000", 6, &got),
            "an absent key was found");
    memset(k, 'k', 256);
    REQUIRE(!idx_key_get(x, k, 256, &got), "an over-long key was found");
    /* Odd keys are old: expiry deletes them from the middle of the run. */
    ck_assert_uint_eq(idx_expire(x, 5500), N / 2);
    for (unsigned i = 0; i < N; i++) {
        size_t n = collision_key(i, k);
        struct idx_key v = event(i + 1, 5000);
        if (i % 2)
            REQUIRE(!idx_key_get(x, k, n, &got), "expired key %u still found", i);
        else
            expect_key(x, k, n, &v);
    }
    idx_free(x);
}

START_TEST(test_forced_collisions)
{
    check_collisions(same_hash);
    check_collisions(few_hashes);
}
END_TEST

/* ---- pending list ---------------------------------------------------------- */

static void expect_pending(const struct idx *x, const uint64_t *want, size_t count)
{
    struct lsn_list l = {0};
    ck_assert_int_eq(idx_pending_each(x, collect, &l), 0);
    ck_assert_uint_eq(l.count, count);
    ck_assert_uint_eq(idx_pending_count(x), count);
    for (size_t i = 0; i < count; i++)
        REQUIRE(l.lsn[i] == want[i], "pending[%zu] is LSN %llu, want %llu", i, (unsigned long long)l.lsn[i],
                (unsigned long long)want[i]);
    free(l.lsn);
}

START_TEST(test_pending_order)
{
    struct idx *x = idx_new(10);
    /* LSNs 10, 20, ..., 200 put in a shuffled order, events in between. */
    uint64_t order[20];
    for (int i = 0; i < 20; i++)
        order[i] = (uint64_t)(i + 1) * 10;
    uint64_t rng = g_seed;
    for (int i = 19; i > 0; i--) {
        int j = (int)(tu_rand(&rng) % (uint64_t)(i + 1));
        uint64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    char k[32];
    for (int i = 0; i < 20; i++) {
        sprintf(k, "i%llu", (unsigned long long)order[i]);
        struct idx_key v = intent(order[i], 1);
        put_ok(x, k, &v);
        sprintf(k, "e%d", i);
        struct idx_key e = event(order[i] + 1, 1);
        put_ok(x, k, &e);
    }
    uint64_t want[20];
    for (int i = 0; i < 20; i++)
        want[i] = (uint64_t)(i + 1) * 10;
    expect_pending(x, want, 20);

    /* Stop early. */
    struct lsn_list l = {.stop_after = 3};
    ck_assert_int_eq(idx_pending_each(x, collect, &l), 1);
    ck_assert_uint_eq(l.count, 3);
    free(l.lsn);

    /* Resolve the oldest, one in the middle and the newest. */
    struct idx_key r = resolved(10, 1, 201, 2);
    put_ok(x, "i10", &r);
    r = resolved(100, 1, 202, 2);
    put_ok(x, "i100", &r);
    r = resolved(200, 1, 203, 2);
    put_ok(x, "i200", &r);
    uint64_t w2[] = {20, 30, 40, 50, 60, 70, 80, 90, 110, 120, 130, 140, 150, 160, 170, 180, 190};
    expect_pending(x, w2, 17);
    /* Replace one by an event, move one to a later LSN, one to the front. */
    struct idx_key e = event(300, 3);
    put_ok(x, "i50", &e);
    struct idx_key v = intent(250, 3);
    put_ok(x, "i20", &v);
    v = intent(5, 3);
    put_ok(x, "i190", &v);
    uint64_t w3[] = {5, 30, 40, 60, 70, 80, 90, 110, 120, 130, 140, 150, 160, 170, 180, 250};
    expect_pending(x, w3, 16);
    /* Pending intents survive any expiry; the rest (all at <= 3) go. */
    uint64_t keys = idx_key_count(x);
    ck_assert_uint_eq(idx_expire(x, UINT64_MAX), keys - 16);
    expect_pending(x, w3, 16);
    ck_assert_uint_eq(idx_key_count(x), 16);
    idx_free(x);
}
END_TEST

/* ---- expiry ---------------------------------------------------------------- */

START_TEST(test_expiry_boundaries)
{
    struct idx *x = idx_new(100);
    struct idx_key v = event(1, 1000), got;
    put_ok(x, "a", &v);
    ck_assert_uint_eq(idx_expire(x, 0), 0);      /* now before last_at */
    ck_assert_uint_eq(idx_expire(x, 1000), 0);
    ck_assert_uint_eq(idx_expire(x, 1100), 0);   /* now - last_at == window: kept */
    ck_assert_int_eq(idx_key_get(x, "a", 1, &got), 1);
    ck_assert_uint_eq(idx_expire(x, 1101), 1);   /* one more ns: forgotten */
    ck_assert_int_eq(idx_key_get(x, "a", 1, &got), 0);

    /* A resolved intent counts from its outcome's time, not its own. */
    struct idx_key r = resolved(2, 1000, 3, 2000);
    put_ok(x, "r", &r);
    ck_assert_uint_eq(idx_expire(x, 2100), 0);
    ck_assert_uint_eq(idx_expire(x, 2101), 1);
    /* A pending intent, however old, stays. */
    struct idx_key p = intent(4, 0);
    put_ok(x, "p", &p);
    ck_assert_uint_eq(idx_expire(x, UINT64_MAX), 0);
    ck_assert_int_eq(idx_key_get(x, "p", 1, &got), 1);
    idx_free(x);

    /* Huge windows: last_at + window would overflow. */
    x = idx_new(UINT64_MAX);
    v = event(1, 0);
    put_ok(x, "a", &v);
    ck_assert_uint_eq(idx_expire(x, UINT64_MAX), 0);
    idx_free(x);
    x = idx_new(UINT64_MAX - 1);
    put_ok(x, "a", &v);
    v = event(2, 1);
    put_ok(x, "b", &v);
    ck_assert_uint_eq(idx_expire(x, UINT64_MAX), 1);
    ck_assert_int_eq(idx_key_get(x, "b", 1, &got), 1);
    idx_free(x);

    /* Window 0: never. */
    x = idx_new(0);
    v = event(1, 0);
    put_ok(x, "a", &v);
    ck_assert_uint_eq(idx_expire(x, UINT64_MAX), 0);
    idx_free(x);
}
END_TEST

/* An expiry sweep in steps (idx_expire_step, the writer's once a round):
 * each step does no more work than it is given, keys stay right
 * while the sweep is half way (lookups, new keys, a replaced key, keys
 * stored behind the sweep), and when it is done exactly the expired keys
 * are gone; a key stored behind the sweep with an old time is expired by
 * the next sweep, not lost from view. */
START_TEST(test_expiry_in_steps)
{
    enum { N = 10000, STEP = 700, WINDOW = 1000 };
    struct idx *x = idx_new(WINDOW);
    char k[64];
    /* Even keys old (time 10), odd keys recent (time 5000); 100 pending
     * intents among the old ones, never expired. */
    for (unsigned i = 0; i < N; i++) {
        int n = sprintf(k, "key-%05u", i);
        struct idx_key v = i % 100 == 0 ? intent(i + 1, 10) : event(i + 1, i % 2 ? 5000 : 10);
        ck_assert_int_eq(idx_key_put(x, k, (size_t)n, &v), 0);
    }
    uint64_t forgotten = 0, now = 5500;
    unsigned steps = 0;
    int done = 0;
    while (!done) {
        uint64_t before = idx_key_count(x);
        uint64_t n = idx_expire_step(x, now, STEP, &done);
        forgotten += n;
        steps++;
        ck_assert_uint_eq(idx_key_count(x), before - n);
        REQUIRE(n <= STEP / (1 + IDX_EXPIRE_DELETE_COST) + 1, "step %u forgot %llu keys on a budget of %u", steps,
                (unsigned long long)n, STEP);
        if (steps == 3) {
            /* Half way: the index answers as before, and takes new keys,
             * some of them into entries the sweep has passed. */
            struct idx_key got;
            for (unsigned i = 1; i < N; i += 2) {
                int m = sprintf(k, "key-%05u", i);
                struct idx_key v = event(i + 1, 5000);
                expect_key(x, k, (size_t)m, &v);
            }
            for (unsigned i = 0; i < 50; i++) {
                int m = sprintf(k, "new-%05u", i);
                struct idx_key v = event(N + 1 + i, i == 0 ? 20 : 5400); /* new-00000: old time */
                ck_assert_int_eq(idx_key_put(x, k, (size_t)m, &v), 0);
            }
            REQUIRE(idx_key_get(x, "new-00049", 9, &got) == 1, "a key put during the sweep is missing");
            /* A step without budget does nothing and says the sweep goes on. */
            uint64_t keys = idx_key_count(x);
            int still = 1;
            ck_assert_uint_eq(idx_expire_step(x, now, 0, &still), 0);
            ck_assert_int_eq(still, 0);
            ck_assert_uint_eq(idx_key_count(x), keys);
        }
    }
    /* 10,000 entries looked at and 4,900 keys forgotten, a step going past
     * its budget by at most the last key's cost: at least (10,000 + 4,900 *
     * 32) / (700 + 32) steps. */
    REQUIRE(steps >= (N + (N / 2 - N / 100) * IDX_EXPIRE_DELETE_COST) / (STEP + IDX_EXPIRE_DELETE_COST),
            "the sweep took only %u steps", steps);
    /* Old events are gone except the pending intents; new-00000 went into an
     * entry the sweep had freed and passed: it is not forgotten yet. */
    ck_assert_uint_eq(forgotten, N / 2 - N / 100);
    struct idx_key got;
    for (unsigned i = 0; i < N; i++) {
        int n = sprintf(k, "key-%05u", i);
        int present = idx_key_get(x, k, (size_t)n, &got);
        if (i % 100 == 0 || i % 2)
            REQUIRE(present, "key %u was forgotten", i);
        else
            REQUIRE(!present, "expired key %u still present", i);
    }
    /* The next sweep finds the key stored behind the last one. */
    ck_assert_uint_eq(idx_expire_step(x, now, STEP, &done) + (done ? 0 : idx_expire(x, now)), 1);
    REQUIRE(!idx_key_get(x, "new-00000", 9, &got), "an expired key stored behind a sweep was never forgotten");
    /* Nothing left to expire: a step looks at nothing and is done. */
    ck_assert_uint_eq(idx_expire_step(x, now, STEP, &done), 0);
    ck_assert_int_eq(done, 1);
    idx_free(x);
}
END_TEST

START_TEST(test_expiry_memory_reused)
{
    /* Each cycle puts N new keys (events, resolved intents, a few pending
     * that are resolved the next cycle) and expires the previous cycle's. */
    enum { N = 5000, WARM = 10, CYCLES = 80 };
    struct idx *x = idx_new(1000);
    uint64_t mem_warm = 0, mem_late = 0, lsn = 1;
    char k[64];
    for (unsigned c = 0; c < CYCLES; c++) {
        uint64_t t = (uint64_t)c * 10000 + 10000;
        for (unsigned i = 0; i < N; i++) {
            int n = sprintf(k, "cycle-%03u-key-%05u%s", c, i, i % 3 ? "" : "-with-a-longer-tail");
            struct idx_key v = i % 4 == 0 ? resolved(lsn, t, lsn + 1, t) : i % 50 == 1 ? intent(lsn, t) : event(lsn, t);
            lsn += 2;
            ck_assert_int_eq(idx_key_put(x, k, (size_t)n, &v), 0);
        }
        if (c > 0) {
            for (unsigned i = 1; i < N; i += 50) {
                int n = sprintf(k, "cycle-%03u-key-%05u%s", c - 1, i, i % 3 ? "" : "-with-a-longer-tail");
                struct idx_key got;
                ck_assert_int_eq(idx_key_get(x, k, (size_t)n, &got), 1);
                struct idx_key r = resolved(got.lsn, got.recorded_at_ns, lsn++, t - 5000);
                ck_assert_int_eq(idx_key_put(x, k, (size_t)n, &r), 0);
            }
        }
        uint64_t before = idx_memory(x);
        uint64_t gone = idx_expire(x, t + 500);
        ck_assert_uint_eq(idx_key_count(x), N);
        if (c > 0)
            ck_assert_uint_eq(gone, N);
        uint64_t m = before > idx_memory(x) ? before : idx_memory(x);
        if (c < WARM && m > mem_warm)
            mem_warm = m;
        if (c >= WARM && m > mem_late)
            mem_late = m;
    }
    fprintf(stderr, "check_idx: %u-key working set: peak memory %llu bytes in cycles 0-%u, %llu in %u-%u\n", N,
            (unsigned long long)mem_warm, WARM - 1, (unsigned long long)mem_late, WARM, CYCLES - 1);
    REQUIRE(mem_late <= mem_warm, "memory grows across expiry cycles: %llu after warm-up, %llu later",
            (unsigned long long)mem_warm, (unsigned long long)mem_late);
    idx_free(x);
}
END_TEST

/* ---- streams and compensations --------------------------------------------- */

START_TEST(test_streams)
{
    for (int forced = 0; forced < 2; forced++) {
        struct idx *x = idx_new(0);
        if (forced)
            idx_set_hash(x, same_hash);
        enum { S = 300 };
        uint64_t count[S] = {0}, last[S] = {0};
        char name[256];
        uint64_t rng = g_seed + (uint64_t)forced;
        for (uint64_t lsn = 1; lsn <= 20000; lsn++) {
            unsigned s = (unsigned)(tu_rand(&rng) % S);
            memset(name, 's', s % 255 + 1); /* prefixes of each other */
            name[0] = (char)('A' + s / 255);
            ck_assert_uint_eq(idx_stream_append(x, name, s % 255 + 1, lsn), ++count[s]);
            last[s] = lsn;
        }
        uint64_t streams = 0;
        for (unsigned s = 0; s < S; s++) {
            memset(name, 's', s % 255 + 1);
            name[0] = (char)('A' + s / 255);
            uint64_t got_last = 7;
            ck_assert_uint_eq(idx_stream_version(x, name, s % 255 + 1, &got_last), count[s]);
            ck_assert_uint_eq(got_last, last[s]);
            streams += count[s] > 0;
            if (count[s]) {
                ck_assert_uint_eq(idx_stream_lsn(x, name, s % 255 + 1, count[s]), last[s]);
                ck_assert_uint_eq(idx_stream_lsn(x, name, s % 255 + 1, 0), 0);
                ck_assert_uint_eq(idx_stream_lsn(x, name, s % 255 + 1, count[s] + 1), 0);
                uint64_t prev = 0;
                for (uint64_t v = 1; v <= count[s]; v++) {
                    uint64_t l = idx_stream_lsn(x, name, s % 255 + 1, v);
                    REQUIRE(l > prev, "stream %u version %llu", s, (unsigned long long)v);
                    prev = l;
                }
            }
        }
        ck_assert_uint_eq(idx_stream_count(x), streams);
        uint64_t got_last = 7;
        ck_assert_uint_eq(idx_stream_version(x, "zz", 2, &got_last), 0);
        ck_assert_uint_eq(got_last, 0);
        ck_assert_uint_eq(idx_stream_version(x, "zz", 2, NULL), 0);
        ck_assert_uint_eq(idx_stream_lsn(x, "zz", 2, 1), 0);
        idx_free(x);
    }
}
END_TEST

START_TEST(test_compensations)
{
    struct idx *x = idx_new(0);
    uint64_t c = 9, f = 9;
    ck_assert_int_eq(idx_comp_get(x, 1, &c, &f), 0);
    ck_assert_int_eq(idx_comp_get(x, 0, &c, &f), 0);
    enum { N = 100000 };
    for (uint64_t t = 1; t <= N; t++)
        ck_assert_int_eq(idx_comp_put(x, t * 3, t * 3 + 1, t ^ 0x55), 0);
    ck_assert_uint_eq(idx_comp_count(x), N);
    ck_assert_int_eq(idx_comp_put(x, 3, 1000000, 77), 0); /* overwrite */
    ck_assert_uint_eq(idx_comp_count(x), N);
    for (uint64_t t = 1; t <= N; t++) {
        REQUIRE(idx_comp_get(x, t * 3, &c, &f) == 1, "target %llu", (unsigned long long)t * 3);
        REQUIRE(c == (t == 1 ? 1000000 : t * 3 + 1) && f == (t == 1 ? 77 : t ^ 0x55), "target %llu fields",
                (unsigned long long)t * 3);
        REQUIRE(idx_comp_get(x, t * 3 + 1, NULL, NULL) == 0, "absent target found");
    }
    idx_free(x);
}
END_TEST

/* ---- save and load --------------------------------------------------------- */

struct model_key {
    char key[48];
    uint8_t key_size;
    uint8_t live;
    struct idx_key v;
};

struct model {
    struct model_key *keys;
    size_t key_count;
    uint64_t (*comp)[3];
    size_t comp_count;
    uint64_t covered_lsn;
};

/* A randomized index: ~n keys (events, pending and resolved intents) put
 * nearly in LSN order, some replaced, some expired; streams; compensations. */
static struct idx *build_random(size_t n, uint64_t *rng, struct model *m)
{
    struct idx *x = idx_new(1000000);
    m->keys = calloc(n, sizeof *m->keys);
    ck_assert_ptr_nonnull(m->keys);
    m->key_count = n;
    uint64_t lsn = 0;
    for (size_t i = 0; i < n; i++) {
        struct model_key *k = &m->keys[i];
        int len = sprintf(k->key, "%zx:", i);
        size_t extra = tu_rand(rng) % 30;
        for (size_t j = 0; j < extra; j++)
            k->key[len++] = (char)tu_rand(rng);
        k->key_size = (uint8_t)len;
        lsn += 1 + tu_rand(rng) % 3;
        uint64_t at = 5000000 + lsn * 10;
        uint64_t r = tu_rand(rng) % 100;
        k->v = r < 60 ? event(lsn, at) : r < 85 ? resolved(lsn, at, lsn + 1 + tu_rand(rng) % 5, at + 7)
                                               : intent(lsn, at);
        k->v.fingerprint = tu_rand(rng);
        k->v.stream_version = tu_rand(rng) % (lsn + 1);
        if (k->v.outcome_lsn)
            k->v.outcome = (uint8_t)(1 + tu_rand(rng) % 2);
        if (k->v.kind == STELE_KIND_EVENT && tu_rand(rng) % 10 == 0)
            k->v.last_at_ns = 1; /* old: expired below */
        k->live = 1;
    }
    m->covered_lsn = lsn + 10;
    /* Put in blocks of 64 reversed: the pending list sees out-of-order LSNs. */
    for (size_t b = 0; b < n; b += 64)
        for (size_t i = (b + 64 < n ? b + 64 : n); i-- > b;)
            ck_assert_int_eq(idx_key_put(x, m->keys[i].key, m->keys[i].key_size, &m->keys[i].v), 0);
    for (size_t i = 0; i < n; i += 97) { /* replace: a pending intent gets its outcome */
        struct model_key *k = &m->keys[i];
        if (k->v.kind == STELE_KIND_INTENT && k->v.outcome_lsn == 0) {
            k->v = resolved(k->v.lsn, k->v.recorded_at_ns, m->covered_lsn - 1, k->v.recorded_at_ns + 3);
            ck_assert_int_eq(idx_key_put(x, k->key, k->key_size, &k->v), 0);
        }
    }
    uint64_t gone = idx_expire(x, 2000000);
    uint64_t want_gone = 0;
    for (size_t i = 0; i < n; i++)
        if (m->keys[i].v.last_at_ns == 1) {
            m->keys[i].live = 0;
            want_gone++;
        }
    ck_assert_uint_eq(gone, want_gone);
    /* Streams: about half of the LSNs, in 1000 streams. */
    char name[16];
    for (uint64_t l = 1; l <= m->covered_lsn; l++)
        if (tu_rand(rng) % 2) {
            int len = sprintf(name, "st-%llu", (unsigned long long)(tu_rand(rng) % 1000));
            ck_assert_uint_ne(idx_stream_append(x, name, (size_t)len, l), 0);
        }
    m->comp_count = n / 10;
    m->comp = calloc(m->comp_count, sizeof *m->comp);
    ck_assert_ptr_nonnull(m->comp);
    for (size_t i = 0; i < m->comp_count; i++) {
        m->comp[i][0] = i * 7 + 1;
        m->comp[i][1] = m->comp[i][0] + 1 + tu_rand(rng) % 5;
        m->comp[i][2] = tu_rand(rng);
        ck_assert_int_eq(idx_comp_put(x, m->comp[i][0], m->comp[i][1], m->comp[i][2]), 0);
    }
    return x;
}

static void model_free(struct model *m)
{
    free(m->keys);
    free(m->comp);
}

static void expect_same_streams(const struct idx *a, const struct idx *b)
{
    ck_assert_uint_eq(idx_stream_count(a), idx_stream_count(b));
    char name[16];
    for (unsigned s = 0; s < 1000; s++) {
        int len = sprintf(name, "st-%u", s);
        uint64_t la, lb;
        uint64_t va = idx_stream_version(a, name, (size_t)len, &la);
        ck_assert_uint_eq(va, idx_stream_version(b, name, (size_t)len, &lb));
        ck_assert_uint_eq(la, lb);
        for (uint64_t v = 1; v <= va; v++)
            REQUIRE(idx_stream_lsn(a, name, (size_t)len, v) == idx_stream_lsn(b, name, (size_t)len, v),
                    "stream %s version %llu differs", name, (unsigned long long)v);
    }
}

START_TEST(test_save_load_roundtrip)
{
    uint64_t rng = g_seed;
    struct model m;
    struct idx *x = build_random(100000, &rng, &m);
    struct mem f = save(x, m.covered_lsn);
    REQUIRE(f.write_max <= 1024 * 1024 && f.writes > 1, "writes: %zu, largest %zu", f.writes, f.write_max);
    ck_assert_uint_eq(get_le(f.buf + 80, 8), f.size); /* the header's file_size */
    fprintf(stderr, "check_idx: %llu keys (%llu pending), %llu streams, %llu compensations: file %zu bytes\n",
            (unsigned long long)idx_key_count(x), (unsigned long long)idx_pending_count(x),
            (unsigned long long)idx_stream_count(x), (unsigned long long)idx_comp_count(x), f.size);

    struct idx *y = NULL;
    struct idx_ckpt_info info;
    f.off = 0;
    ck_assert_int_eq(idx_load(77, mem_read, &f, &y, &info), 0);
    ck_assert_ptr_nonnull(y);
    ck_assert_mem_eq(info.log_id, INFO.log_id, 16);
    ck_assert_uint_eq(info.covered_lsn, m.covered_lsn);
    ck_assert_uint_eq(info.covered_fingerprint, INFO.covered_fingerprint);
    ck_assert_uint_eq(info.covered_recorded_at_ns, INFO.covered_recorded_at_ns);
    ck_assert_uint_eq(info.window_ns, INFO.window_ns);
    ck_assert_uint_eq(info.written_at_ns, INFO.written_at_ns);

    ck_assert_uint_eq(idx_key_count(y), idx_key_count(x));
    ck_assert_uint_eq(idx_intent_count(y), idx_intent_count(x));
    ck_assert_uint_eq(idx_pending_count(y), idx_pending_count(x));
    ck_assert_uint_eq(idx_comp_count(y), idx_comp_count(x));
    size_t live = 0;
    for (size_t i = 0; i < m.key_count; i++) {
        struct model_key *k = &m.keys[i];
        struct idx_key got;
        if (k->live) {
            expect_key(y, k->key, k->key_size, &k->v);
            live++;
        } else {
            REQUIRE(!idx_key_get(y, k->key, k->key_size, &got), "expired key %zu came back", i);
        }
    }
    ck_assert_uint_eq(idx_key_count(y), live);
    struct lsn_list pa = {0}, pb = {0};
    idx_pending_each(x, collect, &pa);
    idx_pending_each(y, collect, &pb);
    ck_assert_uint_eq(pa.count, pb.count);
    for (size_t i = 0; i < pa.count; i++) {
        REQUIRE(pa.lsn[i] == pb.lsn[i], "pending[%zu] differs", i);
        REQUIRE(i == 0 || pa.lsn[i] > pa.lsn[i - 1], "pending list out of order at %zu", i);
    }
    free(pa.lsn);
    free(pb.lsn);
    expect_same_streams(x, y);
    for (size_t i = 0; i < m.comp_count; i++) {
        uint64_t c, fp;
        REQUIRE(idx_comp_get(y, m.comp[i][0], &c, &fp) == 1 && c == m.comp[i][1] && fp == m.comp[i][2],
                "compensation of %llu", (unsigned long long)m.comp[i][0]);
    }
    /* The loaded index saves to a file of the same size, and loads again. */
    struct mem g = save(y, m.covered_lsn);
    ck_assert_uint_eq(g.size, f.size);
    struct idx *z = NULL;
    ck_assert_int_eq(load_bytes(g.buf, g.size, &z, NULL), 0);
    idx_free(z);
    free(g.buf);
    free(f.buf);
    idx_free(y);
    idx_free(x);
    model_free(&m);
}
END_TEST

START_TEST(test_empty_roundtrip)
{
    struct idx *x = idx_new(0);
    struct mem f = save(x, 0);
    ck_assert_uint_eq(f.size, STELE_INDEX_HEADER_SIZE + STELE_INDEX_FOOTER_SIZE);
    struct idx *y = NULL;
    struct idx_ckpt_info info;
    ck_assert_int_eq(load_bytes(f.buf, f.size, &y, &info), 0);
    ck_assert_uint_eq(idx_key_count(y), 0);
    ck_assert_uint_eq(info.covered_lsn, 0);
    idx_free(y);
    idx_free(x);
    free(f.buf);
}
END_TEST

/* The small file of the corruption matrix, with a layout the tamper cases
 * know (SPEC.md §15.6.8): keys a, b (events), c (resolved intent), d, e
 * (pending, LSN 4 and 6); streams "s" {1, 2} and "t" {3}; compensations of 1
 * and 2; covered LSN 8. Padded with more keys to a few KiB when big. */
static struct mem small_file(int big)
{
    struct idx *x = idx_new(0);
    struct idx_key v = event(1, 10);
    put_ok(x, "a", &v);
    v = event(2, 20);
    v.stream_version = 2;
    put_ok(x, "b", &v);
    v = resolved(3, 30, 5, 50);
    put_ok(x, "c", &v);
    v = intent(6, 60);
    put_ok(x, "e", &v);
    v = intent(4, 40);
    put_ok(x, "d", &v);
    ck_assert_uint_eq(idx_stream_append(x, "s", 1, 1), 1);
    ck_assert_uint_eq(idx_stream_append(x, "s", 1, 2), 2);
    ck_assert_uint_eq(idx_stream_append(x, "t", 1, 3), 1);
    ck_assert_int_eq(idx_comp_put(x, 1, 7, 0x77), 0);
    ck_assert_int_eq(idx_comp_put(x, 2, 6, 0x66), 0);
    uint64_t covered = 8;
    if (big) {
        char k[32];
        for (int i = 0; i < 40; i++) {
            int n = sprintf(k, "padding-key-%d", i);
            v = i % 3 ? event(9 + (uint64_t)i, 90) : i % 2 ? intent(9 + (uint64_t)i, 90)
                                                            : resolved(9 + (uint64_t)i, 90, 60, 91);
            ck_assert_int_eq(idx_key_put(x, k, (size_t)n, &v), 0);
            ck_assert_uint_ne(idx_stream_append(x, "s", 1, 9 + (uint64_t)i), 0);
        }
        covered = 60;
    }
    struct mem f = save(x, covered);
    idx_free(x);
    return f;
}

START_TEST(test_corrupt_every_bit)
{
    struct mem f = small_file(1);
    REQUIRE(f.size >= 2048 && f.size <= 8192, "small file is %zu bytes", f.size);
    struct idx *x = NULL;
    ck_assert_int_eq(load_bytes(f.buf, f.size, &x, NULL), 0);
    idx_free(x);
    x = NULL;
    for (size_t bit = 0; bit < f.size * 8; bit++) {
        f.buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = load_bytes(f.buf, f.size, &x, NULL);
        f.buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        REQUIRE(rc == STELE_ERR_CORRUPT || rc == STELE_ERR_FORMAT, "bit %zu flipped: load returned %d", bit, rc);
        REQUIRE(x == NULL, "bit %zu flipped: an index was returned", bit);
        REQUIRE(strstr(stele_errmsg(), "offset") != NULL, "bit %zu: message without offset: %s", bit,
                stele_errmsg());
    }
    free(f.buf);
}
END_TEST

START_TEST(test_truncated_every_length)
{
    struct mem f = small_file(1);
    struct idx *x = NULL;
    for (size_t n = 0; n < f.size; n++) {
        int rc = load_bytes(f.buf, n, &x, NULL);
        REQUIRE(rc == STELE_ERR_CORRUPT, "truncated to %zu of %zu bytes: load returned %d", n, f.size, rc);
        REQUIRE(x == NULL, "truncated to %zu: an index was returned", n);
    }
    /* One byte too many is refused too. */
    uint8_t *longer = malloc(f.size + 1);
    memcpy(longer, f.buf, f.size);
    longer[f.size] = 0;
    ck_assert_int_eq(load_bytes(longer, f.size + 1, &x, NULL), STELE_ERR_CORRUPT);
    ck_assert_ptr_null(x);
    free(longer);
    free(f.buf);
}
END_TEST

/* Recomputes the header checksum and the file hash after a tamper. */
static void fix_up(uint8_t *buf, size_t size)
{
    put_le(buf, stele_checksum(buf + 8, STELE_INDEX_HEADER_SIZE - 8, STELE_SEED_INDEX), 8);
    put_le(buf + size - 8, stele_checksum(buf, size - 8, STELE_SEED_INDEX), 8);
}

struct tamper {
    const char *what;
    const char *says;  /* in the error message */
    size_t off;
    unsigned width;
    uint64_t value;
    int want;   /* 0 = a control that must load */
    int no_records; /* also set every count to 0 */
};

/* Offsets in small_file(0): header 0, a 192, b 241, c 290, d 355, e 420,
 * stream s 485, stream t 518, first compensation 543, second 567, footer 591. */
enum { KA = 192, KB = 241, KC = 290, KD = 355, KE = 420, SS = 485, ST = 518, C1 = 543, C2 = 567, FT = 591,
       SMALL_SIZE = 615 };

static const struct tamper TAMPERS[] = {
    {"control: covered fingerprint", NULL, 48, 8, 12345, 0, 0},
    {"control: key a fingerprint", NULL, KA + 16, 8, 99, 0, 0},
    {"control: key a last_at", NULL, KA + 40, 8, 1, 0, 0},
    {"control: key c outcome failed", NULL, KC + 2, 1, 2, 0, 0},
    {"control: compensation fingerprint", NULL, C1 + 16, 8, 5, 0, 0},
    {"version 2", "format version 2", 16, 4, 2, STELE_ERR_FORMAT, 0},
    {"version 0", "format version 0", 16, 4, 0, STELE_ERR_FORMAT, 0},
    {"header size", "header_size is not 192", 20, 4, 128, STELE_ERR_CORRUPT, 0},
    {"header reserved", "header: reserved bytes", 140, 1, 1, STELE_ERR_CORRUPT, 0},
    {"covered LSN 0", "than covered LSNs", 40, 8, 0, STELE_ERR_CORRUPT, 0},
    {"covered LSN below a compensation", "567: compensation record: comp_lsn", 40, 8, 6, STELE_ERR_CORRUPT, 0},
    {"covered LSN below a key", "420: key record: lsn is 0 or past", 40, 8, 5, STELE_ERR_CORRUPT, 0},
    {"covered fingerprint without covered LSN", "without a covered LSN", 40, 8, 0, STELE_ERR_CORRUPT, 1},
    {"file size one more", "truncated", 80, 8, SMALL_SIZE + 1, STELE_ERR_CORRUPT, 0},
    {"file size one less", "file_size too small", 80, 8, SMALL_SIZE - 1, STELE_ERR_CORRUPT, 0},
    {"file size huge", "truncated", 80, 8, UINT64_C(1) << 62, STELE_ERR_CORRUPT, 0},
    {"key count + 1", "file_size too small", 88, 8, 6, STELE_ERR_CORRUPT, 0},
    {"key count - 1", "2 intents (1 pending) where the header states 3 (2)", 88, 8, 4, STELE_ERR_CORRUPT, 0},
    {"key count huge", "than covered LSNs", 88, 8, UINT64_MAX, STELE_ERR_CORRUPT, 0},
    {"intent count", "where the header states 2 (2)", 96, 8, 2, STELE_ERR_CORRUPT, 0},
    {"pending count", "where the header states 3 (1)", 104, 8, 1, STELE_ERR_CORRUPT, 0},
    {"stream count", "2 stream LSNs where the header states 3", 112, 8, 1, STELE_ERR_CORRUPT, 0},
    {"stream LSN count", "file_size too small", 120, 8, 4, STELE_ERR_CORRUPT, 0},
    {"compensation count", "the records end here", 128, 8, 1, STELE_ERR_CORRUPT, 0},
    {"key size 0", "key_size is 0", KA, 1, 0, STELE_ERR_CORRUPT, 0},
    {"key size 2", "242: key record: kind 0", KA, 1, 2, STELE_ERR_CORRUPT, 0},
    {"kind 0", "192: key record: kind 0", KA + 1, 1, 0, STELE_ERR_CORRUPT, 0},
    {"kind 3", "kind 3 is not", KA + 1, 1, 3, STELE_ERR_CORRUPT, 0},
    {"event with an outcome", "an event with an outcome", KA + 2, 1, 1, STELE_ERR_CORRUPT, 0},
    {"key reserved", "192: key record: reserved", KA + 3, 1, 1, STELE_ERR_CORRUPT, 0},
    {"key LSN 0", "192: key record: lsn is 0", KA + 8, 8, 0, STELE_ERR_CORRUPT, 0},
    {"key LSN past covered", "192: key record: lsn is 0", KA + 8, 8, 9, STELE_ERR_CORRUPT, 0},
    {"stream version past LSN", "stream_version is above lsn", KB + 32, 8, 3, STELE_ERR_CORRUPT, 0},
    {"duplicate key", "duplicate key (LSN 2)", KB + 48, 1, 'a', STELE_ERR_CORRUPT, 0},
    {"resolved intent without outcome", "290: key record: a pending intent with", KC + 2, 1, 0, STELE_ERR_CORRUPT, 0},
    {"outcome 3", "outcome is not 0, 1 or 2", KC + 2, 1, 3, STELE_ERR_CORRUPT, 0},
    {"outcome LSN before intent", "290: key record: outcome_lsn", KC + 48, 8, 3, STELE_ERR_CORRUPT, 0},
    {"outcome LSN past covered", "290: key record: outcome_lsn", KC + 48, 8, 9, STELE_ERR_CORRUPT, 0},
    {"pending with outcome", "355: key record: outcome_lsn", KD + 2, 1, 1, STELE_ERR_CORRUPT, 0},
    {"pending with outcome fingerprint", "355: key record: a pending intent with", KD + 56, 8, 1, STELE_ERR_CORRUPT, 0},
    {"pending out of LSN order", "LSN 6 is not after the one at LSN 7", KD + 8, 8, 7, STELE_ERR_CORRUPT, 0},
    {"pending LSN repeated", "LSN 4 is not after the one at LSN 4", KE + 8, 8, 4, STELE_ERR_CORRUPT, 0},
    {"stream name size 0", "name_size is 0", SS, 1, 0, STELE_ERR_CORRUPT, 0},
    {"stream reserved", "stream record: reserved", SS + 1, 1, 1, STELE_ERR_CORRUPT, 0},
    {"stream LSN count 0", "lsn_count is 0", SS + 8, 8, 0, STELE_ERR_CORRUPT, 0},
    {"stream LSN count past the total", "exceeds the header's total", SS + 8, 8, 4, STELE_ERR_CORRUPT, 0},
    {"stream LSN count huge", "exceeds the header's total", SS + 8, 8, UINT64_MAX, STELE_ERR_CORRUPT, 0},
    {"stream LSNs not increasing", "510: stream LSN 2 is not in (2,", SS + 17, 8, 2, STELE_ERR_CORRUPT, 0},
    {"stream LSN 0", "502: stream LSN 0", SS + 17, 8, 0, STELE_ERR_CORRUPT, 0},
    {"stream LSN past covered", "510: stream LSN 9", SS + 25, 8, 9, STELE_ERR_CORRUPT, 0},
    {"duplicate stream", "518: duplicate stream", ST + 16, 1, 's', STELE_ERR_CORRUPT, 0},
    {"compensation target 0", "target_lsn is 0", C1, 8, 0, STELE_ERR_CORRUPT, 0},
    {"compensation before its target", "543: compensation record: comp_lsn", C1 + 8, 8, 1, STELE_ERR_CORRUPT, 0},
    {"compensation past covered", "543: compensation record: comp_lsn", C1 + 8, 8, 9, STELE_ERR_CORRUPT, 0},
    {"footer magic", "591: footer: bad magic", FT, 1, 'X', STELE_ERR_CORRUPT, 0},
    {"footer file size", "footer file size 623, header 615", FT + 8, 8, SMALL_SIZE + 8, STELE_ERR_CORRUPT, 0},
};

START_TEST(test_tamper_fixed_up)
{
    struct mem f = small_file(0);
    ck_assert_uint_eq(f.size, SMALL_SIZE);
    /* The layout the offsets above assume. */
    REQUIRE(f.buf[KA] == 1 && f.buf[KA + 48] == 'a' && f.buf[KB + 48] == 'b' && f.buf[KC + 64] == 'c' &&
                f.buf[KD + 64] == 'd' && f.buf[KE + 64] == 'e' && f.buf[SS + 16] == 's' && f.buf[ST + 16] == 't' &&
                get_le(f.buf + KD + 8, 8) == 4 && get_le(f.buf + KE + 8, 8) == 6,
            "small_file layout changed");
    uint8_t *buf = malloc(f.size);
    for (size_t i = 0; i < sizeof TAMPERS / sizeof TAMPERS[0]; i++) {
        const struct tamper *t = &TAMPERS[i];
        memcpy(buf, f.buf, f.size);
        put_le(buf + t->off, t->value, t->width);
        for (size_t off = 88; t->no_records && off <= 128; off += 8)
            put_le(buf + off, 0, 8);
        fix_up(buf, f.size);
        struct idx *x = NULL;
        int rc = load_bytes(buf, f.size, &x, NULL);
        REQUIRE(rc == t->want, "%s: load returned %d, want %d (%s)", t->what, rc, t->want, stele_errmsg());
        REQUIRE((x != NULL) == (t->want == 0), "%s: index returned on failure", t->what);
        REQUIRE(!t->says || (strstr(stele_errmsg(), t->says) && strstr(stele_errmsg(), "offset")),
                "%s: the message is \"%s\", not about \"%s\"", t->what, stele_errmsg(), t->says);
        idx_free(x);
    }
    /* The two compensations: one target repeated. */
    memcpy(buf, f.buf, f.size);
    memcpy(buf + C2, buf + C1, 8);
    put_le(buf + C2 + 8, get_le(buf + C1, 8) + 1, 8);
    fix_up(buf, f.size);
    struct idx *x = NULL;
    ck_assert_int_eq(load_bytes(buf, f.size, &x, NULL), STELE_ERR_CORRUPT);
    ck_assert_ptr_null(x);
    REQUIRE(strstr(stele_errmsg(), "567: LSN") && strstr(stele_errmsg(), "compensated twice"), "message: %s",
            stele_errmsg());
    free(buf);
    free(f.buf);
}
END_TEST

/* The worked example of SPEC.md §15.6.8 is small_file(0) written with INFO
 * at covered LSN 8: its checksums are pinned here, so that format v1 stays
 * byte for byte what it is, and the spec's example cannot drift. */
#define GOLDEN_HEADER_CHECKSUM UINT64_C(0x7cd20cf3e34c36c7)
#define GOLDEN_FILE_HASH UINT64_C(0xdffc5ca6577103c3)

START_TEST(test_golden_small_file)
{
    struct mem f = small_file(0);
    ck_assert_uint_eq(f.size, SMALL_SIZE);
    uint64_t header_checksum = get_le(f.buf, 8), file_hash = get_le(f.buf + f.size - 8, 8);
    REQUIRE(header_checksum == GOLDEN_HEADER_CHECKSUM && file_hash == GOLDEN_FILE_HASH,
            "v1 bytes changed: header checksum 0x%016llx, file hash 0x%016llx", (unsigned long long)header_checksum,
            (unsigned long long)file_hash);
    ck_assert_mem_eq(f.buf + 8, "STELEidx", 8);
    ck_assert_mem_eq(f.buf + FT, "STELEixe", 8);
    ck_assert_uint_eq(get_le(f.buf + 16, 4), 1);
    ck_assert_uint_eq(get_le(f.buf + 20, 4), STELE_INDEX_HEADER_SIZE);
    ck_assert_uint_eq(get_le(f.buf + 40, 8), 8);
    uint64_t counts[] = {SMALL_SIZE, 5, 3, 2, 2, 3, 2};
    for (size_t i = 0; i < 7; i++)
        ck_assert_uint_eq(get_le(f.buf + 80 + 8 * i, 8), counts[i]);
    ck_assert_uint_eq(get_le(f.buf + FT + 8, 8), SMALL_SIZE);
    free(f.buf);
}
END_TEST

/* Both small files load, with their pending intents. */
START_TEST(test_small_files_load)
{
    for (int big = 0; big < 2; big++) {
        struct mem f = small_file(big);
        struct idx *x = NULL;
        ck_assert_int_eq(load_bytes(f.buf, f.size, &x, NULL), 0);
        ck_assert_uint_eq(idx_pending_count(x), big ? 7 + 2 : 2);
        idx_free(x);
        free(f.buf);
    }
}
END_TEST

/* ---- memory ---------------------------------------------------------------- */

START_TEST(test_memory_per_key)
{
    enum { N = 1000000 };
    struct idx *x = idx_new(1000);
    uint64_t empty = idx_memory(x);
    uint8_t k[16];
    memset(k, 'k', sizeof k);
    for (uint32_t i = 0; i < N; i++) {
        memcpy(k, &i, sizeof i);
        struct idx_key v = event(i + 1, 1000 + i);
        v.stream_version = i % 5;
        ck_assert_int_eq(idx_key_put(x, k, sizeof k, &v), 0);
    }
    ck_assert_uint_eq(idx_key_count(x), N);
    double per_event = (double)idx_memory(x) / N;
    fprintf(stderr, "check_idx: %d event keys of 16 bytes: %llu bytes (empty index %llu): %.2f bytes per key\n", N,
            (unsigned long long)idx_memory(x), (unsigned long long)empty, per_event);
    REQUIRE(idx_memory(x) <= (uint64_t)N * (64 + 16 + 1), "%.2f bytes per 16-byte key, more than 64 + 16 + 1",
            per_event);
    for (uint32_t i = 0; i < N; i += 997) {
        memcpy(k, &i, sizeof i);
        struct idx_key v = event(i + 1, 1000 + i);
        v.stream_version = i % 5;
        expect_key(x, k, sizeof k, &v);
    }
    idx_free(x);

    /* The same with resolved intents, for the figure. */
    x = idx_new(1000);
    for (uint32_t i = 0; i < N; i++) {
        memcpy(k, &i, sizeof i);
        struct idx_key v = resolved(2 * (uint64_t)i + 1, 1000, 2 * (uint64_t)i + 2, 2000);
        ck_assert_int_eq(idx_key_put(x, k, sizeof k, &v), 0);
    }
    fprintf(stderr, "check_idx: %d intent keys of 16 bytes: %.2f bytes per key\n", N,
            (double)idx_memory(x) / N);
    idx_free(x);
}
END_TEST

/* ---- snapshots (copy on write) ---------------------------------------------- */

/* A changing index: keys k<n> (events and intents, some resolved later),
 * 40 streams, compensations, expiry with a window of 20,000 ns of
 * recorded time (one op = 1 ns), so keys are forgotten and their entries,
 * side records and key bytes reused. */
struct churn {
    struct idx *x;
    uint64_t rng, lsn, now, next_key;
    uint64_t *pending;   /* key numbers of pending intents */
    size_t pending_count, pending_cap;
};

static int churn_key(char *buf, uint64_t n)
{
    return sprintf(buf, "k%llu-%llx", (unsigned long long)n, (unsigned long long)(n * 0x9E3779B97F4A7C15u >> 40));
}

static void churn_op(struct churn *c)
{
    char key[64], name[16];
    uint64_t r = tu_rand(&c->rng) % 100;
    c->lsn++;
    c->now++;
    if (r < 45 || (r < 60 && c->pending_count == 0)) { /* a new event */
        int len = churn_key(key, c->next_key++);
        struct idx_key v = event(c->lsn, c->now);
        v.stream_version = r % 5 == 0 ? c->lsn - 1 : r; /* above 2^32: a side record */
        ck_assert_int_eq(idx_key_put(c->x, key, (size_t)len, &v), 0);
    } else if (r < 60) { /* an outcome for a pending intent */
        size_t i = tu_rand(&c->rng) % c->pending_count;
        int len = churn_key(key, c->pending[i]);
        struct idx_key v;
        ck_assert_int_eq(idx_key_get(c->x, key, (size_t)len, &v), 1);
        v.outcome = (uint8_t)(1 + r % 2);
        v.outcome_lsn = c->lsn;
        v.outcome_fingerprint = r;
        v.last_at_ns = c->now;
        ck_assert_int_eq(idx_key_put(c->x, key, (size_t)len, &v), 0);
        c->pending[i] = c->pending[--c->pending_count];
    } else if (r < 72) { /* a new intent */
        if (c->pending_count == c->pending_cap) {
            c->pending_cap = c->pending_cap ? c->pending_cap * 2 : 64;
            c->pending = realloc(c->pending, c->pending_cap * sizeof *c->pending);
            ck_assert_ptr_nonnull(c->pending);
        }
        c->pending[c->pending_count++] = c->next_key;
        int len = churn_key(key, c->next_key++);
        struct idx_key v = intent(c->lsn, c->now);
        ck_assert_int_eq(idx_key_put(c->x, key, (size_t)len, &v), 0);
    } else if (r < 92) { /* a stream record; now and then a new stream */
        int len = sprintf(name, "s%llu", (unsigned long long)(tu_rand(&c->rng) % (r == 72 ? 100000 : 40)));
        ck_assert_uint_ne(idx_stream_append(c->x, name, (size_t)len, c->lsn), 0);
    } else if (r < 97) {
        ck_assert_int_eq(idx_comp_put(c->x, c->lsn, c->lsn + 1, r), 0);
        c->lsn++;
    } else if (r == 97) {
        idx_expire(c->x, c->now);
    }
}

struct snap_reader {
    const struct idx *snap;
    uint64_t covered_lsn;
    struct mem out;
    int saved;
};

/* idx_snapshot's wait: the "reader" finishes (saves) right now. */
static void snap_wait(void *ctx)
{
    struct snap_reader *r = ctx;
    if (!r->saved) {
        struct idx_ckpt_info info = INFO;
        info.covered_lsn = r->covered_lsn;
        ck_assert_int_eq(idx_save(r->snap, &info, mem_write, &r->out), 0);
        r->saved = 1;
    }
}

static int g_cow_budget; /* copies cow_alloc_limited still makes; < 0 = no limit */

static void *cow_alloc_limited(size_t size)
{
    if (g_cow_budget == 0)
        return NULL;
    if (g_cow_budget > 0)
        g_cow_budget--;
    return malloc(size);
}

/* A snapshot saves exactly what the index held when it was taken, however
 * the index changes meanwhile: new keys in the chunks it shares and past
 * them, outcomes, expiry (entries, side records and key bytes reused),
 * streams growing and created, compensations; with the small first chunks
 * of a young index growing too. Each snapshot's file is byte for byte the
 * file the index saved at that moment; after its release the index still
 * saves and loads. With copies refused (out of memory) the owner calls wait
 * and goes on in place. */
static void snapshot_rounds(uint64_t window_ns, uint64_t keys)
{
    struct churn c = {.x = idx_new(window_ns), .rng = g_seed ^ window_ns, .lsn = UINT64_C(1) << 33};
    ck_assert_ptr_nonnull(c.x);
    idx_set_cow_alloc(c.x, cow_alloc_limited);
    unsigned snapshots = 0, refused = 0;
    uint64_t copied_max = 0;
    while (c.next_key < keys) {
        for (uint64_t n = tu_rand(&c.rng) % 3000; n > 0; n--)
            churn_op(&c);
        struct idx_ckpt_info info = INFO;
        info.covered_lsn = c.lsn;
        struct mem want = {0};
        ck_assert_int_eq(idx_save(c.x, &info, mem_write, &want), 0);
        uint64_t before = idx_memory(c.x);
        struct snap_reader rd = {.covered_lsn = c.lsn};
        g_cow_budget = snapshots % 4 == 3 ? (int)(tu_rand(&c.rng) % 4) : -1;
        rd.snap = idx_snapshot(c.x, snap_wait, &rd);
        ck_assert_ptr_nonnull(rd.snap);
        for (uint64_t n = tu_rand(&c.rng) % 20000; n > 0; n--)
            churn_op(&c);
        if (idx_memory(c.x) > before && idx_memory(c.x) - before > copied_max)
            copied_max = idx_memory(c.x) - before;
        refused += rd.saved; /* the owner ran out of copies and waited */
        snap_wait(&rd);
        idx_snapshot_release(c.x);
        g_cow_budget = -1;
        REQUIRE(rd.out.size == want.size && memcmp(rd.out.buf, want.buf, want.size) == 0,
                "snapshot %u: saved %zu bytes, the index held %zu then", snapshots, rd.out.size, want.size);
        free(rd.out.buf);
        free(want.buf);
        /* The index itself is whole: it saves (idx_save checks its counts
         * against what it writes) and loads. */
        struct mem now = {0};
        info.covered_lsn = c.lsn;
        ck_assert_int_eq(idx_save(c.x, &info, mem_write, &now), 0);
        struct idx *y = NULL;
        int lrc = load_bytes(now.buf, now.size, &y, NULL);
        REQUIRE(lrc == 0, "snapshot %u: the index saved after it does not load: %s", snapshots, stele_errmsg());
        ck_assert_uint_eq(idx_key_count(y), idx_key_count(c.x));
        ck_assert_uint_eq(idx_pending_count(y), idx_pending_count(c.x));
        idx_free(y);
        free(now.buf);
        snapshots++;
    }
    fprintf(stderr, "check_idx: window %llu: %u snapshots of an index changing under them (%u ran out of copies "
                    "and waited), %llu keys at the end; at most %llu bytes copied for one\n",
            (unsigned long long)window_ns, snapshots, refused, (unsigned long long)idx_key_count(c.x),
            (unsigned long long)copied_max);
    ck_assert_uint_gt(refused, 0);
    /* A snapshot still alive at idx_free is released with it (ASan: no leak). */
    struct snap_reader rd = {0};
    rd.snap = idx_snapshot(c.x, snap_wait, &rd);
    for (int n = 0; n < 5000; n++)
        churn_op(&c);
    idx_free(c.x);
    free(c.pending);
}

START_TEST(test_snapshot_copy_on_write)
{
    snapshot_rounds(100000, 160000); /* keys forgotten and their memory reused */
    snapshot_rounds(0, 60000);       /* nothing forgotten: every new key in fresh memory */
}
END_TEST

/* ---- growth in steps (a migration in progress) ----------------------------- */

/* Keys g<i>-<i % 13 x 'x'>: of several lengths. Key i is put at time i
 * (window 1000 below), so expiry forgets the oldest. */
static size_t grow_key(uint8_t *buf, uint32_t i)
{
    int n = snprintf((char *)buf, 64, "g%u-", i);
    for (uint32_t k = 0; k < i % 13; k++)
        buf[n++] = 'x';
    return (size_t)n;
}

struct grow {
    struct idx *x;
    uint32_t n;          /* keys 0..n-1 put */
    struct idx_key *v;   /* what key i holds */
    uint8_t *gone;       /* 1 once key i was found forgotten by expiry */
    uint64_t swept_now;  /* the latest now given to an expiry */
    uint64_t window;
    uint64_t rng;
};

/* Every key put is as the model says (a forgotten one expired), every key
 * not put is absent. */
static void grow_check_all(struct grow *g, const struct idx *x)
{
    uint8_t k[64];
    uint64_t present = 0;
    for (uint32_t i = 0; i < g->n + 50; i++) {
        size_t ks = grow_key(k, i);
        struct idx_key got;
        int r = idx_key_get(x, k, ks, &got);
        if (i >= g->n) {
            REQUIRE(r == 0, "key %u, never put, found", i);
            continue;
        }
        if (r == 1) {
            REQUIRE(!g->gone[i], "key %u found after it was forgotten", i);
            REQUIRE(key_eq(&got, &g->v[i]), "key %u read back as LSN %llu", i, (unsigned long long)got.lsn);
            present++;
            continue;
        }
        REQUIRE(g->v[i].kind == STELE_KIND_EVENT || g->v[i].outcome_lsn != 0, "pending intent %u missing", i);
        REQUIRE(g->v[i].last_at_ns + g->window < g->swept_now, "key %u (at %llu) missing, not expired at %llu", i,
                (unsigned long long)g->v[i].last_at_ns, (unsigned long long)g->swept_now);
        g->gone[i] = 1;
    }
    ck_assert_uint_eq(idx_key_count(x), present);
}

/* Puts key n: through the writer's path (hash, prefetch, lookup with a
 * hint, put with it) or plainly, in turn. */
static void grow_put(struct grow *g)
{
    uint8_t k[64];
    uint32_t i = g->n;
    size_t ks = grow_key(k, i);
    g->v[i] = i % 5 == 0 ? intent(i + 1, i) : event(i + 1, i);
    if (i % 2) {
        uint32_t h = idx_key_hash(g->x, k, ks);
        struct idx_hint hint;
        struct idx_key got;
        idx_prefetch(g->x, h);
        ck_assert_int_eq(idx_key_get_h(g->x, h, k, ks, &got, &hint), 0);
        ck_assert_int_eq(idx_key_put_h(g->x, h, k, ks, &g->v[i], &hint), 0);
    } else {
        ck_assert_int_eq(idx_key_put(g->x, k, ks, &g->v[i]), 0);
    }
    g->n++;
}

/* Replaces a random earlier key (if not forgotten) through a hinted lookup:
 * its slot may be in either table. Intents get their outcome (no longer
 * pending: then they may expire). */
static void grow_replace_random(struct grow *g)
{
    uint8_t k[64];
    uint32_t i = (uint32_t)(tu_rand(&g->rng) % g->n);
    size_t ks = grow_key(k, i);
    uint32_t h = idx_key_hash(g->x, k, ks);
    struct idx_hint hint;
    struct idx_key got;
    idx_prefetch(g->x, h);
    int r = idx_key_get_h(g->x, h, k, ks, &got, &hint);
    if (r == 0) {
        REQUIRE(g->v[i].last_at_ns + g->window < g->swept_now, "key %u missing mid-migration", i);
        g->gone[i] = 1;
        return;
    }
    REQUIRE(key_eq(&got, &g->v[i]), "key %u read back as LSN %llu mid-migration", i, (unsigned long long)got.lsn);
    if (g->v[i].kind == STELE_KIND_INTENT && g->v[i].outcome_lsn == 0)
        g->v[i] = resolved(g->v[i].lsn, g->v[i].recorded_at_ns, g->n + 1000000, g->v[i].recorded_at_ns + 1);
    else
        g->v[i].fingerprint ^= 0x5a5a;
    ck_assert_int_eq(idx_key_put_h(g->x, h, k, ks, &g->v[i], &hint), 0);
}

/* Saves the index, loads it back, and the loaded one holds what the model
 * says; a snapshot taken now saves the same bytes after the migration went
 * on under it. */
static void grow_check_file(struct grow *g)
{
    struct mem m = save(g->x, g->n + 2000000); /* above every LSN, outcomes included */
    struct idx *y = NULL;
    struct idx_ckpt_info info;
    ck_assert_int_eq(load_bytes(m.buf, m.size, &y, &info), 0);
    uint64_t window = g->window;
    g->window = 500; /* load_bytes loads with window 500: no effect on what is present */
    grow_check_all(g, y);
    g->window = window;
    idx_free(y);

    struct snap_reader rd = {.covered_lsn = g->n + 2000000};
    rd.snap = idx_snapshot(g->x, snap_wait, &rd);
    ck_assert_ptr_nonnull(rd.snap);
    for (int j = 0; j < 40; j++) {
        grow_put(g);
        grow_replace_random(g);
    }
    snap_wait(&rd);
    idx_snapshot_release(g->x);
    REQUIRE(rd.out.size == m.size && memcmp(rd.out.buf, m.buf, m.size) == 0,
            "the snapshot taken mid-migration saved other bytes (%zu, want %zu)", rd.out.size, m.size);
    free(rd.out.buf);
    free(m.buf);
}

static void grow_run(uint64_t (*hash)(const void *, size_t), uint32_t count, uint32_t check_every)
{
    struct grow g = {.x = idx_new(1000), .window = 1000, .rng = g_seed ^ count};
    ck_assert_ptr_nonnull(g.x);
    if (hash)
        idx_set_hash(g.x, hash);
    g.v = calloc(count + 50, sizeof *g.v);
    g.gone = calloc(count + 50, 1);
    ck_assert_ptr_nonnull(g.v);
    ck_assert_ptr_nonnull(g.gone);
    struct idx_grow_stats st, prev = {0};
    uint64_t seen_in_progress = 0, mem_prev = idx_memory(g.x), file_checks = 0;
    while (g.n < count) {
        grow_put(&g);
        idx_grow_stats(g.x, 0, &st);
        uint64_t mem = idx_memory(g.x);
        if (st.migrations != prev.migrations) {
            /* Begun by this insert: both tables are counted (the new one,
             * twice the size, may have been counted as a spare before). */
            REQUIRE(st.old_slots > 0 && mem >= st.old_slots * 3 * 8 && mem >= mem_prev,
                    "migration from %llu slots: memory %llu after %llu", (unsigned long long)st.old_slots,
                    (unsigned long long)mem, (unsigned long long)mem_prev);
        }
        if (prev.old_slots && !st.old_slots && st.migrations == prev.migrations) {
            /* Ended by this insert: the old table is freed. */
            REQUIRE(mem + prev.old_slots * 8 <= mem_prev + 4096, "migration from %llu slots ended: memory %llu after %llu",
                    (unsigned long long)prev.old_slots, (unsigned long long)mem, (unsigned long long)mem_prev);
        }
        if (st.old_slots) {
            seen_in_progress++;
            grow_replace_random(&g);
            if (g.n % 3 == 0) {
                /* Expiry in small steps: deletions from both tables. */
                int done;
                g.swept_now = g.n;
                idx_expire_step(g.x, g.n, hash ? 4000 : 40, &done); /* collisions: many dead slots */
            }
            if (g.n % check_every == 0 || st.migrations != prev.migrations)
                grow_check_all(&g, g.x);
            if (st.migrations != prev.migrations && st.old_slots >= 1024) {
                grow_check_file(&g);
                file_checks++;
                idx_grow_stats(g.x, 0, &st);
            }
        }
        prev = st;
        mem_prev = idx_memory(g.x);
    }
    grow_check_all(&g, g.x);
    idx_grow_stats(g.x, 0, &st);
    REQUIRE(st.migrations >= 5 && seen_in_progress > count / 64 && file_checks >= 2,
            "%llu migrations, %llu inserts saw one in progress, %llu files", (unsigned long long)st.migrations,
            (unsigned long long)seen_in_progress, (unsigned long long)file_checks);
    /* Bounded work per insert: what makes a keyed append's tail. */
    REQUIRE(st.step_slots_max <= 32, "one insert moved %llu old slots", (unsigned long long)st.step_slots_max);
    /* Everything expires but the pending intents, in the middle of a
     * migration: keys of either table, moved or not, some in slots that
     * wrapped round the old table's end. */
    g.v = realloc(g.v, (count + count / 2 + 50) * sizeof *g.v);
    g.gone = realloc(g.gone, count + count / 2 + 50);
    ck_assert_ptr_nonnull(g.v);
    ck_assert_ptr_nonnull(g.gone);
    memset(g.gone + count, 0, count / 2 + 50);
    do {
        grow_put(&g);
        idx_grow_stats(g.x, 0, &st);
    } while (g.n < count + count / 2 - 200 && (st.old_slots == 0 || st.old_live > st.old_slots / 4));
    REQUIRE(st.old_slots > 0, "no migration after %u keys", g.n);
    g.swept_now = UINT64_C(1) << 40;
    idx_expire(g.x, g.swept_now);
    grow_check_all(&g, g.x);
    for (int j = 0; j < 200; j++)
        grow_put(&g);
    grow_check_all(&g, g.x);
    idx_free(g.x);
    free(g.v);
    free(g.gone);
}

START_TEST(test_growth_in_steps)
{
    grow_run(NULL, 100000, 20011);
    grow_run(few_hashes, 3000, 97); /* 7 hashes: runs cross the migration point */
    grow_run(wrap_hashes, 3000, 97); /* and wrap round the table's end */
}
END_TEST

/* One hash: a run of 768 keys from slot 21 of 1,024. Expired mid-migration,
 * keys 0-199 leave dead slots in the old table, among them slots 63, 95...
 * where inserts' steps of 32 end: a key whose home was moved is still found
 * past the migration point (the last slot moved was dead, not empty). */
START_TEST(test_growth_dead_slot_at_step_end)
{
    struct grow g = {.x = idx_new(1000), .window = 1000, .rng = g_seed};
    ck_assert_ptr_nonnull(g.x);
    idx_set_hash(g.x, same_hash);
    g.v = calloc(1200, sizeof *g.v);
    g.gone = calloc(1200, 1);
    ck_assert_ptr_nonnull(g.v);
    ck_assert_ptr_nonnull(g.gone);
    while (g.n < 769)
        grow_put(&g);
    struct idx_grow_stats st;
    idx_grow_stats(g.x, 0, &st);
    REQUIRE(st.old_slots == 1024 && st.old_live > 700, "old table of %llu slots, %llu keys",
            (unsigned long long)st.old_slots, (unsigned long long)st.old_live);
    g.swept_now = 1200;
    ck_assert_uint_eq(idx_expire(g.x, g.swept_now), 160); /* 0-199 but the pending intents */
    grow_check_all(&g, g.x);
    int steps = 0;
    for (; st.old_slots && steps < 100; steps++) {
        grow_put(&g);
        grow_check_all(&g, g.x);
        idx_grow_stats(g.x, 0, &st);
    }
    REQUIRE(st.old_slots == 0 && steps >= 20, "migration still going after %d inserts", steps);
    idx_free(g.x);
    free(g.v);
    free(g.gone);
}
END_TEST

/* The stream table grows the same way: every stream's versions stay
 * readable while it moves. */
START_TEST(test_stream_growth_in_steps)
{
    struct idx *x = idx_new(0);
    ck_assert_ptr_nonnull(x);
    uint64_t in_progress = 0;
    char name[32];
    const uint32_t count = 20000;
    for (uint32_t i = 0; i < count; i++) {
        int n = snprintf(name, sizeof name, "s%u", i);
        ck_assert_uint_eq(idx_stream_append(x, name, (size_t)n, 2 * i + 1), 1);
        struct idx_grow_stats st;
        idx_grow_stats(x, 1, &st);
        if (!st.old_slots)
            continue;
        in_progress++;
        /* A second record on an earlier stream, and every stream read. */
        uint32_t j = (uint32_t)((i * 2654435761u) % (i + 1));
        n = snprintf(name, sizeof name, "s%u", j);
        uint64_t last;
        uint64_t ver = idx_stream_version(x, name, (size_t)n, &last);
        REQUIRE(ver >= 1, "stream %u missing mid-migration", j);
        ck_assert_uint_eq(idx_stream_append(x, name, (size_t)n, 2 * count + 2 * i), ver + 1);
        if (i % 1024 == 0)
            for (uint32_t k = 0; k <= i + 10; k++) {
                n = snprintf(name, sizeof name, "s%u", k);
                REQUIRE((idx_stream_version(x, name, (size_t)n, NULL) >= 1) == (k <= i), "stream %u", k);
                REQUIRE(k > i || idx_stream_lsn(x, name, (size_t)n, 1) == 2 * k + 1, "stream %u version 1", k);
            }
    }
    struct idx_grow_stats st;
    idx_grow_stats(x, 1, &st);
    REQUIRE(st.migrations >= 5 && in_progress > 0 && st.step_slots_max <= 32,
            "%llu stream table migrations, %llu inserts in one, %llu slots in one step",
            (unsigned long long)st.migrations, (unsigned long long)in_progress, (unsigned long long)st.step_slots_max);
    ck_assert_uint_eq(idx_stream_count(x), count);
    idx_free(x);
}
END_TEST

static Suite *idx_suite(void)
{
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("keys");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_put_get_replace);
    tcase_add_test(tc, test_forced_collisions);
    tcase_add_test(tc, test_pending_order);
    tcase_add_test(tc, test_expiry_boundaries);
    tcase_add_test(tc, test_expiry_in_steps);
    tcase_add_test(tc, test_expiry_memory_reused);
    tcase_add_test(tc, test_streams);
    tcase_add_test(tc, test_compensations);
    tcase_add_test(tc, test_growth_in_steps);
    tcase_add_test(tc, test_growth_dead_slot_at_step_end);
    tcase_add_test(tc, test_stream_growth_in_steps);
    suite_add_tcase(s, tc);

    tc = tcase_create("file");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_save_load_roundtrip);
    tcase_add_test(tc, test_empty_roundtrip);
    tcase_add_test(tc, test_small_files_load);
    tcase_add_test(tc, test_corrupt_every_bit);
    tcase_add_test(tc, test_truncated_every_length);
    tcase_add_test(tc, test_tamper_fixed_up);
    tcase_add_test(tc, test_golden_small_file);
    tcase_add_test(tc, test_snapshot_copy_on_write);
    suite_add_tcase(s, tc);

    tc = tcase_create("memory");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_memory_per_key);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    g_seed = tu_seed("check_idx");
    SRunner *sr = srunner_create(idx_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
