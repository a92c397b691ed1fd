/*
 * idx.c - the index derived from the log (SPEC.md §15): idempotency keys with
 * the pending-intent list, streams, compensations, and the checkpoint file
 * (format/index.h has its byte layout).
 *
 * Keys. An open-addressing table of 8-byte slots {entry + 1, 32-bit hash}
 * with linear probing at load <= 3/4 points into a pool of 40-byte entries
 * (fixed-size chunks, so growing never copies a huge array; freed entries
 * go on a free list). The key bytes live in a chunked arena as
 * [u8 size][bytes]; the entry holds their position. Everything an event
 * needs fits in its entry; intents (and any key whose recorded_at_ns differs
 * from last_at_ns or whose stream version exceeds 32 bits) also own a
 * 48-byte side record: outcome, recorded time, stream version and the links
 * of the pending list. So an event key costs 40 bytes + 8/load of slot +
 * 1 + key bytes; an intent 48 bytes more.
 *
 * Deletion (expiry) uses backward-shift deletion, so lookups never meet a
 * tombstone (but for the old table of a migration in progress, see struct
 * table). The slot's hash is also its home position (h32 & mask), so a
 * shift or a move to a larger table never needs the key bytes. Dead key bytes stay in the
 * arena until they outnumber the live ones (and exceed ARENA_COMPACT_MIN);
 * then expiry copies the live keys into a fresh arena, so the arena holds at
 * most about twice the live key bytes plus one chunk. SPEC.md §15.7 has the
 * measured figures.
 */
#include "idx.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "endian.h"
#include "index.h"
#include "internal.h"

/* ---------------------------------------------------------------- pools */

/* Memory from malloc, or (mapped) mapped directly, zeroed and asked for
 * huge pages: for slot tables probed at random, where with 4 KiB pages
 * nearly every probe would also miss the TLB. */
static void *mem_alloc(size_t bytes, int mapped)
{
    if (!mapped)
        return malloc(bytes);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without huge pages it works the same */
    return p;
}

static void mem_free(void *p, size_t bytes, int mapped)
{
    if (!mapped)
        free(p);
    else if (p)
        munmap(p, bytes);
}

/* Fresh memory is slow to get: the kernel zeroes each page at its first
 * write (and under a hypervisor the host may fault it in too), which at
 * millions of keys was a quarter of an insert's time. So the memory an
 * index will soon need (the next whole chunk of a pool or an arena, once it
 * has filled one; a large slot table's successor) is allocated and touched
 * on a short-lived thread (a spare) while the current one fills, and the
 * thread that inserts, the log's writer, only takes it over. Small indexes
 * never start a thread. */
struct chunk_spare {
    pthread_t thread;
    size_t bytes;
    int mapped;           /* mem_alloc's */
    uint8_t *mem;         /* NULL when it could not be allocated */
};

static void *chunk_spare_main(void *arg)
{
    struct chunk_spare *cs = arg;
    pthread_setname_np(pthread_self(), "stele-idx-grow");
    cs->mem = mem_alloc(cs->bytes, cs->mapped);
    if (cs->mem) {
        /* One write per 4 KiB page (huge pages or not) makes it present. */
        volatile uint8_t *p = cs->mem;
        for (size_t off = 0; off < cs->bytes; off += 4096)
            p[off] = 0;
    }
    return NULL;
}

/* Starts preparing bytes of memory unless some are being prepared already. */
static void chunk_spare_start(struct chunk_spare **slot, size_t bytes, int mapped)
{
    if (*slot)
        return;
    struct chunk_spare *cs = malloc(sizeof *cs);
    if (!cs)
        return; /* the memory will be allocated when needed */
    *cs = (struct chunk_spare){.bytes = bytes, .mapped = mapped};
    if (pthread_create(&cs->thread, NULL, chunk_spare_main, cs) != 0) {
        free(cs);
        return;
    }
    *slot = cs;
}

/* The prepared chunk of bytes, or NULL (none, another size, or it failed);
 * the thread is joined either way. */
static uint8_t *chunk_spare_take(struct chunk_spare **slot, size_t bytes)
{
    struct chunk_spare *cs = *slot;
    if (!cs)
        return NULL;
    pthread_join(cs->thread, NULL);
    uint8_t *mem = cs->mem;
    if (mem && cs->bytes != bytes) {
        mem_free(mem, cs->bytes, cs->mapped);
        mem = NULL;
    }
    free(cs);
    *slot = NULL;
    return mem;
}

static void chunk_spare_discard(struct chunk_spare **slot)
{
    chunk_spare_take(slot, 0); /* a size nothing has: freed */
}

/* A whole chunk of bytes: the prepared one when there is one (then the next
 * is started), else from malloc. */
static uint8_t *chunk_alloc(struct chunk_spare **slot, size_t bytes)
{
    uint8_t *c = chunk_spare_take(slot, bytes);
    if (!c)
        c = malloc(bytes);
    if (c)
        chunk_spare_start(slot, bytes, 0);
    return c;
}

/* A pool of fixed-size elements in chunks of POOL_CHUNK. The first chunk
 * grows (by realloc, from POOL_TAIL_MIN), so small indexes stay small; the
 * later ones are whole from the start, so a big pool never copies. */
#define POOL_CHUNK_SHIFT 14u
#define POOL_CHUNK (1u << POOL_CHUNK_SHIFT)
#define POOL_TAIL_MIN 64u
#define POOL_INDEX_MAX (UINT32_MAX - 1u) /* indexes are stored + 1 in a u32 */

struct pool {
    uint8_t **chunks;
    uint32_t chunk_count;
    uint32_t chunk_cap;   /* of the chunks array */
    uint32_t tail_cap;    /* elements the last chunk holds */
    uint32_t top;         /* elements ever handed out */
    uint32_t free_head;   /* index + 1 of the first free element, 0 = none */
    uint32_t elem_size;
    uint64_t bytes;       /* allocated */
    struct chunk_spare *spare; /* the next whole chunk, being prepared */
    /* While a snapshot is alive (idx_snapshot): its copy of chunks. A
     * chunk both still point at is shared: the owner copies it before
     * changing any element in it, even one the snapshot does not hold (a
     * pointer into a chunk must stay good until the next reserve). */
    uint8_t **shared;
    uint32_t shared_count;
};

static void *pool_at(const struct pool *p, uint32_t i)
{
    return p->chunks[i >> POOL_CHUNK_SHIFT] + (size_t)(i & (POOL_CHUNK - 1)) * p->elem_size;
}

static uint64_t pool_capacity(const struct pool *p)
{
    return p->chunk_count == 0 ? 0 : (uint64_t)(p->chunk_count - 1) * POOL_CHUNK + p->tail_cap;
}

static int grow_ptrs(uint8_t ***arr, uint32_t *cap, uint64_t *bytes)
{
    uint32_t n = *cap ? *cap * 2 : 8;
    uint8_t **a = realloc(*arr, (size_t)n * sizeof *a);
    if (!a)
        return -1;
    *bytes += (uint64_t)(n - *cap) * sizeof *a;
    *arr = a;
    *cap = n;
    return 0;
}

/* chunks[c] grown from old_size to new_size bytes. A chunk a snapshot
 * shares is copied, never moved by realloc: the snapshot keeps the old one. */
static uint8_t *grow_chunk(uint8_t **chunks, uint32_t c, uint8_t **shared, uint32_t shared_count, size_t old_size,
                           size_t new_size)
{
    if (c >= shared_count || chunks[c] != shared[c])
        return realloc(chunks[c], new_size);
    uint8_t *n = malloc(new_size);
    if (n)
        memcpy(n, chunks[c], old_size);
    return n;
}

/* Makes sure pool_take cannot fail. */
static int pool_reserve(struct pool *p)
{
    if (p->free_head || p->top < pool_capacity(p))
        return 0;
    if (p->top >= POOL_INDEX_MAX)
        return -1;
    if (p->chunk_count > 0 && p->tail_cap < POOL_CHUNK) {
        uint32_t cap = p->tail_cap * 2;
        uint8_t *c = grow_chunk(p->chunks, p->chunk_count - 1, p->shared, p->shared_count,
                                (size_t)p->tail_cap * p->elem_size, (size_t)cap * p->elem_size);
        if (!c)
            return -1;
        p->chunks[p->chunk_count - 1] = c;
        p->bytes += (uint64_t)(cap - p->tail_cap) * p->elem_size;
        p->tail_cap = cap;
        return 0;
    }
    if (p->chunk_count == p->chunk_cap && grow_ptrs(&p->chunks, &p->chunk_cap, &p->bytes) != 0)
        return -1;
    uint32_t cap = p->chunk_count ? POOL_CHUNK : POOL_TAIL_MIN;
    uint8_t *c = p->chunk_count ? chunk_alloc(&p->spare, (size_t)cap * p->elem_size)
                                : malloc((size_t)cap * p->elem_size);
    if (!c)
        return -1;
    p->chunks[p->chunk_count++] = c;
    p->tail_cap = cap;
    p->bytes += (uint64_t)cap * p->elem_size;
    return 0;
}

static uint32_t pool_take(struct pool *p)
{
    if (p->free_head) {
        uint32_t i = p->free_head - 1;
        memcpy(&p->free_head, pool_at(p, i), sizeof p->free_head);
        return i;
    }
    assert(p->top < pool_capacity(p));
    return p->top++;
}

/* The free list's link overwrites the first 4 bytes of element i, whose
 * writable address (pool_w) is elem. */
static void pool_put(struct pool *p, uint32_t i, void *elem)
{
    memcpy(elem, &p->free_head, sizeof p->free_head);
    p->free_head = i + 1;
}

static void free_chunks(uint8_t **chunks, uint32_t chunk_count)
{
    for (uint32_t i = 0; i < chunk_count; i++)
        free(chunks[i]);
    free(chunks);
}

static void pool_free(struct pool *p)
{
    chunk_spare_discard(&p->spare);
    free_chunks(p->chunks, p->chunk_count);
}

/* ---------------------------------------------------------------- arena */

/* Key (or stream name) bytes as [u8 size][bytes], in chunks of ARENA_CHUNK;
 * a record never straddles two chunks. A position (ref) is chunk << 20 |
 * offset and fits in 48 bits. */
#define ARENA_CHUNK_SHIFT 20u
#define ARENA_CHUNK (1u << ARENA_CHUNK_SHIFT)
#define ARENA_TAIL_MIN 4096u
#define ARENA_CHUNK_COUNT_MAX (1u << 28)
#define ARENA_COMPACT_MIN (64u * 1024u)
#define REF_MASK ((UINT64_C(1) << 48) - 1)

_Static_assert(1 + STELE_KEY_SIZE_MAX <= ARENA_TAIL_MIN && 1 + STELE_STREAM_SIZE_MAX <= ARENA_TAIL_MIN,
               "a record fits a fresh chunk");

struct arena {
    uint8_t **chunks;
    uint32_t chunk_count;
    uint32_t chunk_cap;
    uint32_t tail_cap;
    uint32_t tail_used;
    uint64_t live;        /* bytes of live records */
    uint64_t dead;        /* bytes of forgotten records */
    uint64_t bytes;       /* allocated */
    struct chunk_spare *spare; /* the next whole chunk, being prepared */
    /* While a snapshot is alive: its copy of chunks. Records are only ever
     * appended, so only growing the tail chunk has to mind it. */
    uint8_t **shared;
    uint32_t shared_count;
};

static const uint8_t *arena_at(const struct arena *a, uint64_t ref)
{
    return a->chunks[ref >> ARENA_CHUNK_SHIFT] + (ref & (ARENA_CHUNK - 1));
}

/* A record of n bytes starts a new chunk exactly when this is true; the
 * compaction replays it to know where each record went. */
static int arena_starts_chunk(uint32_t chunk_count, uint32_t used, size_t n)
{
    return chunk_count == 0 || used + n > ARENA_CHUNK;
}

/* Makes sure arena_push of n bytes cannot fail. */
static int arena_reserve(struct arena *a, size_t n)
{
    if (!arena_starts_chunk(a->chunk_count, a->tail_used, n)) {
        if (a->tail_used + n <= a->tail_cap)
            return 0;
        uint32_t cap = a->tail_cap;
        while (cap < a->tail_used + n)
            cap *= 2;
        uint8_t *c = grow_chunk(a->chunks, a->chunk_count - 1, a->shared, a->shared_count, a->tail_used, cap);
        if (!c)
            return -1;
        a->chunks[a->chunk_count - 1] = c;
        a->bytes += cap - a->tail_cap;
        a->tail_cap = cap;
        return 0;
    }
    if (a->chunk_count >= ARENA_CHUNK_COUNT_MAX)
        return -1;
    if (a->chunk_count == a->chunk_cap && grow_ptrs(&a->chunks, &a->chunk_cap, &a->bytes) != 0)
        return -1;
    uint32_t cap = a->chunk_count ? ARENA_CHUNK : ARENA_TAIL_MIN;
    uint8_t *c = a->chunk_count ? chunk_alloc(&a->spare, cap) : malloc(cap);
    if (!c)
        return -1;
    a->chunks[a->chunk_count++] = c;
    a->tail_cap = cap;
    a->tail_used = 0;
    a->bytes += cap;
    return 0;
}

/* Appends [size][bytes] (after arena_reserve(1 + size)); returns its ref. */
static uint64_t arena_push(struct arena *a, const void *bytes, size_t size)
{
    assert(size >= 1 && size <= UINT8_MAX && a->tail_used + 1 + size <= a->tail_cap);
    uint8_t *p = a->chunks[a->chunk_count - 1] + a->tail_used;
    uint64_t ref = (uint64_t)(a->chunk_count - 1) << ARENA_CHUNK_SHIFT | a->tail_used;
    p[0] = (uint8_t)size;
    memcpy(p + 1, bytes, size);
    a->tail_used += (uint32_t)(1 + size);
    a->live += 1 + size;
    return ref;
}

static void arena_free(struct arena *a)
{
    chunk_spare_discard(&a->spare);
    free_chunks(a->chunks, a->chunk_count);
}

/* ---------------------------------------------------------------- tables */

struct slot {
    uint32_t entry;       /* index + 1, 0 = empty, SLOT_DEAD in an old table: deleted */
    uint32_t h32;         /* the key's hash; h32 & mask is its home slot */
};

/* Entry and stream indexes stay below POOL_INDEX_MAX, so + 1 never reaches it. */
#define SLOT_DEAD UINT32_MAX

/* A table grows incrementally (in the manner of Redis's dict): when it
 * would pass load 3/4 a table twice the size becomes the current one, and
 * the old one is moved into it a few slots at a time, TABLE_MIGRATE_SLOTS
 * with every insert, so that no insert does work in proportion to the
 * table. Meanwhile a key is in exactly one of the two: inserts go to the
 * current table, lookups consult both.
 *
 * The old table is taken over in slot order from an empty slot
 * (old_start), so that no run of it crosses the point where the migration
 * began. Slots at migration order (i - old_start) & (old_cap - 1) below
 * old_done have been moved; their contents are stale and never read. The
 * old table's empty slots never change (nothing is inserted into it) and a
 * deletion in it marks the slot SLOT_DEAD instead of shifting (so its runs
 * stay as they were). A lookup of a key whose home has been moved starts at
 * the first slot not moved (old_done), and only if a run goes on there
 * (old_run): a key displaced past the migration point is found from there,
 * and if the last slot moved was empty no key of an earlier home is left in
 * the old table. Every probe of the old table thus reads only slots not
 * moved and ends at an empty slot at the latest at old_start. */
struct table {
    struct slot *slots;
    uint64_t cap;         /* 0 or a power of two, at most 2^32 */
    uint64_t used;        /* live slots of slots */
    struct chunk_spare *spare; /* the next, larger table, being prepared; or NULL */
    /* The table being moved into slots; old == NULL when none. */
    struct slot *old;
    uint64_t old_cap;
    uint64_t old_used;    /* its live slots, not yet moved */
    uint64_t old_start;   /* an empty slot: the migration began there */
    uint64_t old_done;    /* slots moved, in migration order from old_start */
    int old_run;          /* the last slot moved was not empty */
    /* Tests (idx_grow_stats): migrations begun, and the most old slots any
     * one call moved or looked at. */
    uint64_t migrations;
    uint64_t step_slots_max;
};

#define TABLE_CAP_MIN 64u
#define TABLE_CAP_MAX (UINT64_C(1) << 32)
/* So that the table stays at load <= 3/4 within TABLE_CAP_MAX. */
#define IDX_KEY_COUNT_MAX (TABLE_CAP_MAX / 4 * 3)
#define IDX_STREAM_COUNT_MAX IDX_KEY_COUNT_MAX
/* Old slots moved per insert. A migration begins at load 3/8 of the new
 * table and must end before load 3/4, that is within old_cap * 3/4
 * inserts: any bound above 4/3 does; a larger one ends it sooner (lookups
 * consult two tables meanwhile) at a higher cost per insert (mostly one
 * cache miss in the new table per live slot moved). */
#define TABLE_MIGRATE_SLOTS 32u
_Static_assert(TABLE_MIGRATE_SLOTS * 3 > 4, "a migration ends before the new table needs to grow");

/* Slot tables of 2 MiB and more are mapped (mem_alloc); smaller ones come
 * from calloc. Both start zeroed. */
#define TABLE_HUGE_BYTES (UINT64_C(2) << 20)

static struct slot *slots_alloc(uint64_t cap)
{
    size_t bytes = (size_t)cap * sizeof(struct slot);
    return bytes < TABLE_HUGE_BYTES ? calloc(cap, sizeof(struct slot)) : mem_alloc(bytes, 1);
}

static void slots_free(struct slot *s, uint64_t cap)
{
    size_t bytes = (size_t)cap * sizeof(struct slot);
    mem_free(s, bytes, bytes >= TABLE_HUGE_BYTES);
}

/* Live slots in both tables. */
static uint64_t table_count(const struct table *t)
{
    return t->used + t->old_used;
}

/* A large table's successor is prepared as a spare (chunk_spare) shortly
 * before it is needed: from load 7/10, the table growing at 3/4, so that the
 * writer only takes it over. Until then it is not allocated at all: the
 * memory per key stays what idx_memory says. */
static void spare_maybe_start(struct table *t)
{
    if (t->spare || t->old || t->used * 10 < t->cap * 7 || t->cap * 2 > TABLE_CAP_MAX ||
        t->cap * 2 * sizeof(struct slot) < TABLE_HUGE_BYTES)
        return;
    chunk_spare_start(&t->spare, (size_t)t->cap * 2 * sizeof(struct slot), 1);
}

/* Puts slot sl (not in the table) into slots by its stored hash. */
static void slots_place(struct table *t, struct slot sl)
{
    uint64_t mask = t->cap - 1;
    uint64_t j = sl.h32 & mask;
    while (t->slots[j].entry != 0)
        j = (j + 1) & mask;
    t->slots[j] = sl;
    t->used++;
}

static void migration_end(struct table *t)
{
    assert(t->old_used == 0);
    slots_free(t->old, t->old_cap);
    t->old = NULL;
    t->old_cap = t->old_done = t->old_start = 0;
    t->old_run = 0;
}

/* Moves up to n slots of the old table into the current one (n = UINT64_MAX:
 * all of them); the old table is freed once none is left. */
static void table_migrate(struct table *t, uint64_t n)
{
    if (!t->old)
        return;
    uint64_t mask = t->old_cap - 1, k = 0;
    for (; k < n && t->old_done < t->old_cap && t->old_used > 0; k++) {
        struct slot sl = t->old[(t->old_start + t->old_done) & mask];
        if (sl.entry != 0 && sl.entry != SLOT_DEAD) {
            slots_place(t, sl);
            t->old_used--;
        }
        t->old_run = sl.entry != 0;
        t->old_done++;
    }
    if (k > t->step_slots_max)
        t->step_slots_max = k;
    if (t->old_used == 0)
        migration_end(t); /* whatever is left is empty or dead */
}

/* Makes room for count more keys: grows when the inserts would pass load
 * 3/4. One key: a migration begins (or goes on, at the insert). More (idx_load
 * sizing the table ahead): any migration is finished first and the new one
 * at once, as loading has no writer to keep waiting. */
static int table_reserve_n(struct table *t, uint64_t count)
{
    if ((table_count(t) + count) * 4 <= t->cap * 3) {
        spare_maybe_start(t);
        return 0;
    }
    uint64_t cap = t->cap ? t->cap * 2 : TABLE_CAP_MIN;
    while (cap <= TABLE_CAP_MAX && (table_count(t) + count) * 4 > cap * 3)
        cap *= 2;
    if (cap > TABLE_CAP_MAX)
        return -1;
    struct slot *s = (struct slot *)chunk_spare_take(&t->spare, (size_t)cap * sizeof(struct slot));
    if (!s)
        s = slots_alloc(cap);
    if (!s)
        return -1;
    /* Inserts keep pace with a migration (TABLE_MIGRATE_SLOTS), so only a
     * reservation of many finds one still going. */
    assert(!t->old || count > 1);
    table_migrate(t, UINT64_MAX);
    if (t->used == 0) {
        slots_free(t->slots, t->cap);
    } else {
        t->old = t->slots;
        t->old_cap = t->cap;
        t->old_used = t->used;
        /* An empty slot to begin at: one lies within the longest run. */
        uint64_t i = 0;
        while (t->old[i].entry != 0)
            i++;
        t->old_start = i;
        t->old_done = 0;
        t->old_run = 0;
        t->migrations++;
    }
    t->slots = s;
    t->cap = cap;
    t->used = 0;
    if (count > 1)
        table_migrate(t, UINT64_MAX);
    return 0;
}

static int table_reserve(struct table *t)
{
    return table_reserve_n(t, 1);
}

/* Positions in the old table are told apart from the current one's by
 * this bit (tables have at most 2^32 slots). */
#define POS_OLD (UINT64_C(1) << 63)

static struct slot *table_slot(const struct table *t, uint64_t pos)
{
    return pos & POS_OLD ? &t->old[pos & ~POS_OLD] : &t->slots[pos];
}

/* Where a probe of the old table for hash h32 begins, or UINT64_MAX when
 * the key cannot be there (see struct table). */
static uint64_t old_probe_start(const struct table *t, uint32_t h32)
{
    if (!t->old)
        return UINT64_MAX;
    uint64_t mask = t->old_cap - 1, home = h32 & mask;
    if (((home - t->old_start) & mask) >= t->old_done)
        return home;
    return t->old_run ? (t->old_start + t->old_done) & mask : UINT64_MAX;
}

/* Inserts sl at pos (an empty slot of the current table, from a lookup),
 * then moves the next old slots. */
static void table_insert_at(struct table *t, uint64_t pos, struct slot sl)
{
    assert(!(pos & POS_OLD) && t->slots[pos].entry == 0);
    t->slots[pos] = sl;
    t->used++;
    table_migrate(t, TABLE_MIGRATE_SLOTS);
}

/* Removes slot i of the current table, moving later members of its run
 * back so that no lookup meets a gap before its key (backward-shift
 * deletion). */
static void slots_delete_at(struct table *t, uint64_t i)
{
    uint64_t mask = t->cap - 1;
    uint64_t hole = i;
    for (uint64_t j = (i + 1) & mask; t->slots[j].entry != 0; j = (j + 1) & mask) {
        uint64_t home = t->slots[j].h32 & mask;
        /* It may move into the hole unless its home lies in (hole, j]. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole] = (struct slot){0, 0};
    t->used--;
}

/* Removes the slot at pos (either table). */
static void table_delete_at(struct table *t, uint64_t pos)
{
    if (!(pos & POS_OLD)) {
        slots_delete_at(t, pos);
        return;
    }
    t->old[pos & ~POS_OLD].entry = SLOT_DEAD;
    if (--t->old_used == 0)
        migration_end(t);
}

/* The position of the slot holding entry (+ 1) of hash h32; it is there. */
static uint64_t table_locate(const struct table *t, uint32_t h32, uint32_t entry)
{
    uint64_t mask = t->cap - 1;
    for (uint64_t i = h32 & mask; t->slots[i].entry != 0; i = (i + 1) & mask)
        if (t->slots[i].entry == entry)
            return i;
    uint64_t i = old_probe_start(t, h32);
    assert(i != UINT64_MAX);
    for (mask = t->old_cap - 1; t->old[i].entry != entry; i = (i + 1) & mask)
        assert(t->old[i].entry != 0);
    return i | POS_OLD;
}
static int arena_equal(const struct arena *a, uint64_t ref, const void *key, size_t key_size)
{
    const uint8_t *p = arena_at(a, ref);
    return p[0] == key_size && memcmp(p + 1, key, key_size) == 0;
}

/* ---------------------------------------------------------------- the index */

/* 40 bytes: everything an event key needs. */
struct entry {
    uint64_t lsn;           /* free: the free list's link in the first 4 bytes */
    uint64_t fingerprint;
    uint64_t last_at_ns;    /* also recorded_at_ns when there is no side record */
    uint64_t ref_kind;      /* bits 0-47 key position in the arena, 48-55 kind (0 = free) */
    uint32_t stream_version; /* when there is no side record */
    uint32_t side;          /* side record index + 1, 0 = none */
};
_Static_assert(sizeof(struct entry) == 40, "an event key costs 40 bytes plus its slot and bytes");

/* 48 bytes, for intents and keys whose fields do not fit the entry. */
struct side {
    uint64_t recorded_at_ns;
    uint64_t stream_version;
    uint64_t outcome_lsn;
    uint64_t outcome_fingerprint;
    uint32_t prev;          /* pending list: side index + 1, 0 = none */
    uint32_t next;
    uint32_t entry;         /* the owning entry */
    uint8_t outcome;
    uint8_t pending;        /* linked into the pending list */
};
_Static_assert(sizeof(struct side) == 48, "an intent costs 48 bytes more");

struct stream {
    uint64_t name_ref;
    uint64_t *lsns;         /* version v at lsns[v - 1] */
    uint64_t count;
    uint64_t cap;
};

struct comp {
    uint64_t target_lsn;    /* 0 = empty slot */
    uint64_t comp_lsn;
    uint64_t fingerprint;
};

struct idx {
    uint64_t window_ns;
    uint64_t (*hash)(const void *key, size_t key_size);

    /* The live snapshot (idx_snapshot), or NULL; in a snapshot, itself. */
    struct idx *snap;
    void (*snap_wait)(void *ctx);
    void *snap_wait_ctx;
    uint64_t snap_bytes;    /* copies made since the snapshot was taken */
    void *(*cow_alloc)(size_t size); /* tests: malloc when NULL */

    struct table keys;
    uint64_t key_gen;       /* changes whenever a slot of keys does (struct idx_hint) */
    struct pool entries;
    struct pool sides;
    struct arena key_arena;
    uint64_t key_count;
    uint64_t intent_count;
    uint64_t pending_count;
    uint32_t pending_head;  /* side index + 1 of the oldest pending intent */
    uint32_t pending_tail;
    uint64_t oldest_at_ns;  /* <= last_at_ns of every key that is not pending (but see sweep_next) */
    /* The expiry sweep in progress (idx_expire_step): the entry it goes on
     * at (0 = none in progress) and the oldest last_at_ns it kept so far.
     * While it runs, oldest_at_ns covers only the keys stored since it
     * started. */
    uint32_t sweep_next;
    uint64_t sweep_oldest;

    struct table streams;
    struct stream *stream_v;
    uint64_t stream_count;
    uint64_t stream_cap;
    struct arena stream_arena;
    uint64_t stream_lsn_count;
    uint64_t stream_lsn_bytes; /* allocated for the LSN arrays */

    struct comp *comps;
    uint64_t comp_cap;      /* 0 or a power of two */
    uint64_t comp_count;
};

static uint64_t default_hash(const void *key, size_t key_size)
{
    return XXH3_64bits(key, key_size);
}

static uint32_t hash32(const struct idx *x, const void *key, size_t key_size)
{
    uint64_t h = x->hash(key, key_size);
    return (uint32_t)h ^ (uint32_t)(h >> 32);
}

static const struct entry *entry_at(const struct idx *x, uint32_t e)
{
    return pool_at(&x->entries, e);
}

static const struct side *side_at(const struct idx *x, uint32_t s)
{
    return pool_at(&x->sides, s);
}

/* ------------------------------------------------------- copy on write */

/* A snapshot (idx_snapshot) is a second struct idx that shares the live
 * index's memory: the chunks of the entry and side pools and of the arenas,
 * the stream array and the compensation table. Until it is released, the
 * owner never writes anything it shares: the first change to a shared
 * chunk of a pool (or to the stream array, or the compensation table)
 * copies it and changes the copy; the snapshot keeps the original. Key
 * bytes, stream names and a stream's LSNs are only ever appended past what
 * the snapshot holds, in place; only moving them (growing an arena's tail
 * chunk, an LSN array) copies instead. */

static void snapshot_end(struct idx *x)
{
    x->snap_wait(x->snap_wait_ctx);
    idx_snapshot_release(x);
}

static void *cow_alloc(struct idx *x, size_t size)
{
    void *p = x->cow_alloc ? x->cow_alloc(size) : malloc(size);
    if (p)
        x->snap_bytes += size;
    return p;
}

/* Element i of pool p (x's entries or sides), to be changed. Out of
 * memory for the copy, it waits for the snapshot's reader to finish with
 * it instead (nothing is shared after that). */
static void *pool_w(struct idx *x, struct pool *p, uint32_t i)
{
    uint32_t c = i >> POOL_CHUNK_SHIFT;
    if (c < p->shared_count && p->chunks[c] == p->shared[c]) {
        size_t size = (size_t)(c + 1 == p->chunk_count ? p->tail_cap : POOL_CHUNK) * p->elem_size;
        uint8_t *n = cow_alloc(x, size);
        if (n) {
            memcpy(n, p->chunks[c], size);
            p->chunks[c] = n;
        } else {
            snapshot_end(x);
        }
    }
    return pool_at(p, i);
}

static struct entry *entry_w(struct idx *x, uint32_t e)
{
    return pool_w(x, &x->entries, e);
}

static struct side *side_w(struct idx *x, uint32_t s)
{
    return pool_w(x, &x->sides, s);
}

/* 1 when array a (of x) is the one the snapshot holds. */
static int array_shared(const struct idx *x, const void *a, const void *snap_a)
{
    return x->snap && a == snap_a;
}

/* *a (size bytes, used bytes of them in use), to be changed: copied first
 * when the snapshot holds it. */
static void *array_w(struct idx *x, void *a, const void *snap_a, size_t size, size_t used)
{
    if (!array_shared(x, a, snap_a))
        return a;
    void *v = cow_alloc(x, size);
    if (v)
        return memcpy(v, a, used);
    snapshot_end(x);
    return a;
}

/* Stream i, to be changed. */
static struct stream *stream_w(struct idx *x, uint64_t i)
{
    x->stream_v = array_w(x, x->stream_v, x->snap ? x->snap->stream_v : NULL, x->stream_cap * sizeof *x->stream_v,
                          x->stream_count * sizeof *x->stream_v);
    return &x->stream_v[i];
}

/* The compensation table, to be changed. */
static struct comp *comps_w(struct idx *x)
{
    size_t size = x->comp_cap * sizeof *x->comps;
    return x->comps = array_w(x, x->comps, x->snap ? x->snap->comps : NULL, size, size);
}

static uint64_t entry_ref(const struct entry *en)
{
    return en->ref_kind & REF_MASK;
}

static uint8_t entry_kind(const struct entry *en)
{
    return (uint8_t)(en->ref_kind >> 48);
}

/* 1 with *out_pos at the slot of key (whose bytes are in arena a at
 * ref_of(member)), in either table (see table_slot), or 0 with *out_pos at
 * the empty slot of the current table where it would go (undefined when
 * the table has no slots). */
static int table_find(const struct idx *x, const struct table *t, const struct arena *a,
                      uint64_t (*ref_of)(const struct idx *x, uint32_t i), uint32_t h32, const void *key,
                      size_t key_size, uint64_t *out_pos)
{
    if (t->cap == 0)
        return 0;
    uint64_t mask = t->cap - 1;
    for (uint64_t i = h32 & mask;; i = (i + 1) & mask) {
        struct slot sl = t->slots[i];
        if (sl.entry == 0) {
            *out_pos = i;
            break;
        }
        if (sl.h32 == h32 && arena_equal(a, ref_of(x, sl.entry - 1), key, key_size)) {
            *out_pos = i;
            return 1;
        }
    }
    uint64_t i = old_probe_start(t, h32);
    if (i == UINT64_MAX)
        return 0;
    for (mask = t->old_cap - 1;; i = (i + 1) & mask) {
        struct slot sl = t->old[i];
        if (sl.entry == 0)
            return 0;
        if (sl.entry != SLOT_DEAD && sl.h32 == h32 && arena_equal(a, ref_of(x, sl.entry - 1), key, key_size)) {
            *out_pos = i | POS_OLD;
            return 1;
        }
    }
}

struct idx *idx_new(uint64_t window_ns)
{
    struct idx *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->window_ns = window_ns;
    x->hash = default_hash;
    x->entries.elem_size = sizeof(struct entry);
    x->sides.elem_size = sizeof(struct side);
    x->oldest_at_ns = UINT64_MAX;
    return x;
}

void idx_free(struct idx *x)
{
    if (!x)
        return;
    assert(x->snap != x); /* a snapshot is released, never freed */
    idx_snapshot_release(x);
    chunk_spare_discard(&x->keys.spare);
    chunk_spare_discard(&x->streams.spare);
    slots_free(x->keys.slots, x->keys.cap);
    slots_free(x->keys.old, x->keys.old_cap);
    pool_free(&x->entries);
    pool_free(&x->sides);
    arena_free(&x->key_arena);
    slots_free(x->streams.slots, x->streams.cap);
    slots_free(x->streams.old, x->streams.old_cap);
    for (uint64_t i = 0; i < x->stream_count; i++)
        free(x->stream_v[i].lsns);
    free(x->stream_v);
    arena_free(&x->stream_arena);
    free(x->comps);
    free(x);
}

void idx_set_hash(struct idx *x, uint64_t (*fn)(const void *key, size_t key_size))
{
    assert(x->key_count == 0 && x->stream_count == 0);
    x->hash = fn ? fn : default_hash;
}

/* ---------------------------------------------------------------- keys */

static uint64_t key_ref_of(const struct idx *x, uint32_t e)
{
    return entry_ref(entry_at(x, e));
}

static int key_find(const struct idx *x, uint32_t h32, const void *key, size_t key_size, uint64_t *out_pos)
{
    return table_find(x, &x->keys, &x->key_arena, key_ref_of, h32, key, key_size, out_pos);
}

static void key_read(const struct idx *x, uint32_t e, struct idx_key *out)
{
    const struct entry *en = entry_at(x, e);
    memset(out, 0, sizeof *out);
    out->lsn = en->lsn;
    out->fingerprint = en->fingerprint;
    out->last_at_ns = en->last_at_ns;
    out->kind = entry_kind(en);
    if (en->side == 0) {
        out->recorded_at_ns = en->last_at_ns;
        out->stream_version = en->stream_version;
        return;
    }
    const struct side *s = side_at(x, en->side - 1);
    out->recorded_at_ns = s->recorded_at_ns;
    out->stream_version = s->stream_version;
    out->outcome = s->outcome;
    out->outcome_lsn = s->outcome_lsn;
    out->outcome_fingerprint = s->outcome_fingerprint;
}

uint32_t idx_key_hash(const struct idx *x, const void *key, size_t key_size)
{
    return hash32(x, key, key_size);
}

void idx_prefetch(const struct idx *x, uint32_t hash)
{
    if (x->keys.cap)
        __builtin_prefetch(&x->keys.slots[hash & (x->keys.cap - 1)]);
    uint64_t i = old_probe_start(&x->keys, hash);
    if (i != UINT64_MAX)
        __builtin_prefetch(&x->keys.old[i]);
}

int idx_key_get_h(const struct idx *x, uint32_t hash, const void *key, size_t key_size, struct idx_key *out,
                  struct idx_hint *hint)
{
    uint64_t pos = 0;
    int found = key_size >= 1 && key_size <= STELE_KEY_SIZE_MAX && key_find(x, hash, key, key_size, &pos);
    if (hint)
        /* A table without slots has no position to give: the put probes. */
        *hint = (struct idx_hint){pos, x->keys.cap ? x->key_gen : x->key_gen - 1, found};
    if (found)
        key_read(x, table_slot(&x->keys, pos)->entry - 1, out);
    return found;
}

int idx_key_get(const struct idx *x, const void *key, size_t key_size, struct idx_key *out)
{
    return key_size && key_size <= STELE_KEY_SIZE_MAX &&
           idx_key_get_h(x, hash32(x, key, key_size), key, key_size, out, NULL);
}

static int is_pending(const struct idx_key *v)
{
    return v->kind == STELE_KIND_INTENT && v->outcome_lsn == 0;
}

static int needs_side(const struct idx_key *v)
{
    return v->kind == STELE_KIND_INTENT || v->recorded_at_ns != v->last_at_ns || v->stream_version > UINT32_MAX;
}

static void pending_unlink(struct idx *x, uint32_t s)
{
    struct side *sd = side_w(x, s);
    assert(sd->pending);
    if (sd->prev)
        side_w(x, sd->prev - 1)->next = sd->next;
    else
        x->pending_head = sd->next;
    if (sd->next)
        side_w(x, sd->next - 1)->prev = sd->prev;
    else
        x->pending_tail = sd->prev;
    sd->prev = sd->next = 0;
    sd->pending = 0;
    x->pending_count--;
}

/* Links side record s (its entry's LSN set) in LSN order. The writer's puts
 * come in LSN order, so the walk back from the tail stops at once. */
static void pending_link(struct idx *x, uint32_t s)
{
    struct side *sd = side_w(x, s);
    uint64_t lsn = entry_at(x, sd->entry)->lsn;
    uint32_t after = x->pending_tail;
    while (after && entry_at(x, side_at(x, after - 1)->entry)->lsn > lsn)
        after = side_at(x, after - 1)->prev;
    sd->prev = after;
    sd->next = after ? side_at(x, after - 1)->next : x->pending_head;
    if (sd->prev)
        side_w(x, sd->prev - 1)->next = s + 1;
    else
        x->pending_head = s + 1;
    if (sd->next)
        side_w(x, sd->next - 1)->prev = s + 1;
    else
        x->pending_tail = s + 1;
    sd->pending = 1;
    x->pending_count++;
}

/* Writes v into entry e, which owns side record side (+ 1, or 0) exactly
 * when needs_side(v). The entry is out of the pending list and not counted. */
static void entry_store(struct idx *x, uint32_t e, uint32_t side, const struct idx_key *v)
{
    struct entry *en = entry_w(x, e);
    en->lsn = v->lsn;
    en->fingerprint = v->fingerprint;
    en->last_at_ns = v->last_at_ns;
    en->ref_kind = entry_ref(en) | (uint64_t)v->kind << 48;
    en->stream_version = side ? 0 : (uint32_t)v->stream_version;
    en->side = side;
    if (v->kind == STELE_KIND_INTENT)
        x->intent_count++;
    if (side) {
        struct side *sd = side_w(x, side - 1);
        *sd = (struct side){
            .recorded_at_ns = v->recorded_at_ns,
            .stream_version = v->stream_version,
            .outcome_lsn = v->outcome_lsn,
            .outcome_fingerprint = v->outcome_fingerprint,
            .entry = e,
            .outcome = v->outcome,
        };
    }
    if (is_pending(v))
        pending_link(x, side - 1);
    else if (v->last_at_ns < x->oldest_at_ns)
        x->oldest_at_ns = v->last_at_ns;
}

/* Takes entry e out of the counts and the pending list; frees its side
 * record unless keep_side. Returns the side record (+ 1) kept, or 0. */
static uint32_t entry_clear(struct idx *x, uint32_t e, int keep_side)
{
    struct entry *en = entry_w(x, e);
    uint32_t side = en->side;
    if (entry_kind(en) == STELE_KIND_INTENT)
        x->intent_count--;
    if (side && side_at(x, side - 1)->pending)
        pending_unlink(x, side - 1);
    if (side && !keep_side) {
        pool_put(&x->sides, side - 1, side_w(x, side - 1));
        side = 0;
    }
    en->side = 0;
    return side;
}

static int key_replace(struct idx *x, uint32_t e, const struct idx_key *v)
{
    int need = needs_side(v);
    if (need && entry_at(x, e)->side == 0 && pool_reserve(&x->sides) != 0)
        return -1;
    uint32_t side = entry_clear(x, e, need);
    if (need && side == 0)
        side = pool_take(&x->sides) + 1;
    entry_store(x, e, side, v);
    return 0;
}

/* idx_key_put, and with only_new (idx_load) an insert that leaves an
 * existing key alone and returns 1: one probe of the table per key. */
static int key_put(struct idx *x, uint32_t h32, const void *key, size_t key_size, const struct idx_key *v,
                   int only_new, const struct idx_hint *hint)
{
    assert(key_size >= 1 && key_size <= STELE_KEY_SIZE_MAX);
    assert(v->kind == STELE_KIND_EVENT || v->kind == STELE_KIND_INTENT);
    assert(v->kind == STELE_KIND_INTENT || (v->outcome == 0 && v->outcome_lsn == 0 && v->outcome_fingerprint == 0));
    assert(!is_pending(v) || (v->outcome == 0 && v->outcome_fingerprint == 0));
    uint64_t pos;
    int found;
    if (hint && hint->gen == x->key_gen) {
        pos = hint->pos;
        found = hint->found;
    } else {
        found = key_find(x, h32, key, key_size, &pos);
    }
    if (found)
        return only_new ? 1 : key_replace(x, table_slot(&x->keys, pos)->entry - 1, v);
    /* Every allocation first, so that a failure leaves the index unchanged. */
    int need = needs_side(v);
    uint64_t cap = x->keys.cap;
    if (x->key_count >= IDX_KEY_COUNT_MAX || table_reserve(&x->keys) != 0 || pool_reserve(&x->entries) != 0 ||
        (need && pool_reserve(&x->sides) != 0) || arena_reserve(&x->key_arena, 1 + key_size) != 0)
        return -1;
    if (x->keys.cap != cap)
        key_find(x, h32, key, key_size, &pos); /* the table grew: pos is in the new one */
    uint32_t e = pool_take(&x->entries);
    uint32_t side = need ? pool_take(&x->sides) + 1 : 0;
    struct entry *en = entry_w(x, e);
    en->ref_kind = arena_push(&x->key_arena, key, key_size);
    entry_store(x, e, side, v);
    table_insert_at(&x->keys, pos, (struct slot){e + 1, h32}); /* and a migration step */
    x->key_count++;
    x->key_gen++; /* slots changed, moved ones too: every hint is stale */
    return 0;
}

int idx_key_put(struct idx *x, const void *key, size_t key_size, const struct idx_key *v)
{
    return key_put(x, hash32(x, key, key_size), key, key_size, v, 0, NULL);
}

int idx_key_put_h(struct idx *x, uint32_t hash, const void *key, size_t key_size, const struct idx_key *v,
                  const struct idx_hint *hint)
{
    return key_put(x, hash, key, key_size, v, 0, hint);
}

int idx_pending_each(const struct idx *x,
                     int (*fn)(void *ctx, const void *key, size_t key_size, const struct idx_key *v), void *ctx)
{
    int rc = 0;
    for (uint32_t s = x->pending_head; s && rc == 0;) {
        const struct side *sd = side_at(x, s - 1);
        uint32_t next = sd->next;
        struct idx_key v;
        key_read(x, sd->entry, &v);
        const uint8_t *k = arena_at(&x->key_arena, entry_ref(entry_at(x, sd->entry)));
        rc = fn(ctx, k + 1, k[0], &v);
        s = next;
    }
    return rc;
}

/* ---------------------------------------------------------------- expiry */

static int expired(uint64_t last_at_ns, uint64_t now_ns, uint64_t window_ns)
{
    return now_ns > last_at_ns && now_ns - last_at_ns > window_ns;
}

/* Forgets entry e: its slot, its side record, its key bytes. */
static void key_delete(struct idx *x, uint32_t e)
{
    struct entry *en = entry_w(x, e);
    const uint8_t *k = arena_at(&x->key_arena, entry_ref(en));
    table_delete_at(&x->keys, table_locate(&x->keys, hash32(x, k + 1, k[0]), e + 1));
    x->key_gen++;
    entry_clear(x, e, 0);
    x->key_arena.live -= 1u + k[0];
    x->key_arena.dead += 1u + k[0];
    en->ref_kind = 0;
    pool_put(&x->entries, e, en);
    x->key_count--;
}

/* Copies the live keys into a fresh arena. All its memory is allocated
 * first; then the copy replays arena_starts_chunk to know each key's new
 * position, so nothing can fail half way. Out of memory: keep the old. */
static void key_arena_compact(struct idx *x)
{
    struct arena fresh = {0};
    for (uint32_t e = 0; e < x->entries.top; e++) {
        const struct entry *en = entry_at(x, e);
        if (entry_kind(en) == 0)
            continue;
        const uint8_t *k = arena_at(&x->key_arena, entry_ref(en));
        if (arena_reserve(&fresh, 1u + k[0]) != 0) {
            arena_free(&fresh);
            return;
        }
        arena_push(&fresh, k + 1, k[0]);
    }
    uint32_t chunk_count = 0;
    uint32_t used = 0;
    for (uint32_t e = 0; e < x->entries.top; e++) {
        const struct entry *en = entry_at(x, e);
        if (entry_kind(en) == 0)
            continue;
        size_t n = 1u + arena_at(&x->key_arena, entry_ref(en))[0];
        if (arena_starts_chunk(chunk_count, used, n)) {
            chunk_count++;
            used = 0;
        }
        uint64_t ref = (uint64_t)(chunk_count - 1) << ARENA_CHUNK_SHIFT | used;
        used += (uint32_t)n;
        assert(arena_at(&fresh, ref)[0] == n - 1);
        entry_w(x, e)->ref_kind = (en->ref_kind & ~REF_MASK) | ref;
    }
    arena_free(&x->key_arena);
    x->key_arena = fresh;
}

uint64_t idx_expire_step(struct idx *x, uint64_t now_ns, uint64_t budget, int *out_done)
{
    *out_done = x->sweep_next == 0;
    if (x->window_ns == 0 || budget == 0)
        return 0;
    if (x->sweep_next == 0) {
        if (!expired(x->oldest_at_ns, now_ns, x->window_ns))
            return 0;
        x->sweep_oldest = x->oldest_at_ns = UINT64_MAX;
    }
    uint64_t forgotten = 0;
    uint32_t e = x->sweep_next;
    for (; e < x->entries.top && budget > 0; e++) {
        budget--;
        const struct entry *en = entry_at(x, e);
        if (entry_kind(en) == 0 || (en->side && side_at(x, en->side - 1)->pending))
            continue;
        if (expired(en->last_at_ns, now_ns, x->window_ns)) {
            key_delete(x, e);
            forgotten++;
            budget = budget > IDX_EXPIRE_DELETE_COST ? budget - IDX_EXPIRE_DELETE_COST : 0;
        } else if (en->last_at_ns < x->sweep_oldest) {
            x->sweep_oldest = en->last_at_ns;
        }
    }
    if (e < x->entries.top) {
        x->sweep_next = e;
        *out_done = 0;
        return forgotten;
    }
    /* Keys stored meanwhile behind the sweep were not seen by it, but
     * oldest_at_ns was. */
    x->sweep_next = 0;
    *out_done = 1;
    if (x->sweep_oldest < x->oldest_at_ns)
        x->oldest_at_ns = x->sweep_oldest;
    /* Compaction rewrites every key's position and frees the old arena: not
     * while a snapshot reads it (the next expiry after it compacts). */
    if (!x->snap && x->key_arena.dead > x->key_arena.live && x->key_arena.dead >= ARENA_COMPACT_MIN)
        key_arena_compact(x);
    return forgotten;
}

uint64_t idx_expire(struct idx *x, uint64_t now_ns)
{
    uint64_t forgotten = 0;
    int done;
    do
        forgotten += idx_expire_step(x, now_ns, UINT64_MAX, &done);
    while (!done);
    return forgotten;
}

/* ---------------------------------------------------------------- streams */

static uint64_t stream_ref_of(const struct idx *x, uint32_t i)
{
    return x->stream_v[i].name_ref;
}

static int stream_find(const struct idx *x, uint32_t h32, const void *name, size_t name_size, uint64_t *out_pos)
{
    return table_find(x, &x->streams, &x->stream_arena, stream_ref_of, h32, name, name_size, out_pos);
}

/* Index + 1 of the stream in stream_v, 0 when there is none. */
static uint64_t stream_get(const struct idx *x, const void *name, size_t name_size)
{
    uint64_t pos;
    if (name_size == 0 || name_size > STELE_STREAM_SIZE_MAX ||
        !stream_find(x, hash32(x, name, name_size), name, name_size, &pos))
        return 0;
    return table_slot(&x->streams, pos)->entry;
}

static int stream_push(struct idx *x, uint64_t i, uint64_t lsn)
{
    struct stream *s = stream_w(x, i);
    assert(lsn != 0 && (s->count == 0 || lsn > s->lsns[s->count - 1]));
    if (s->count == s->cap) {
        uint64_t cap = s->cap ? s->cap * 2 : 4;
        uint64_t *a = NULL;
        if (cap > SIZE_MAX / sizeof *a)
            return -1;
        /* A snapshot may hold this array: then it is copied, not moved (or,
         * without memory for that, grown once the snapshot is done). */
        if (x->snap && i < x->snap->stream_count && x->snap->stream_v[i].lsns == s->lsns) {
            if ((a = cow_alloc(x, cap * sizeof *a)) != NULL)
                memcpy(a, s->lsns, s->count * sizeof *a);
            else
                snapshot_end(x);
        }
        if (!a)
            a = realloc(s->lsns, cap * sizeof *a);
        if (!a)
            return -1;
        x->stream_lsn_bytes += (cap - s->cap) * sizeof *a;
        s->lsns = a;
        s->cap = cap;
    }
    s->lsns[s->count++] = lsn;
    x->stream_lsn_count++;
    return 0;
}

/* A new stream without LSNs; returns its index + 1, or 0 when out of memory. */
static uint64_t stream_create(struct idx *x, uint32_t h32, const void *name, size_t name_size)
{
    if (x->stream_count >= IDX_STREAM_COUNT_MAX || table_reserve(&x->streams) != 0 ||
        arena_reserve(&x->stream_arena, 1 + name_size) != 0)
        return 0;
    if (x->stream_count == x->stream_cap) {
        uint64_t cap = x->stream_cap ? x->stream_cap * 2 : 16;
        struct stream *v = NULL;
        if (array_shared(x, x->stream_v, x->snap ? x->snap->stream_v : NULL)) {
            if ((v = cow_alloc(x, cap * sizeof *v)) != NULL)
                memcpy(v, x->stream_v, x->stream_count * sizeof *v);
            else
                snapshot_end(x);
        }
        if (!v)
            v = realloc(x->stream_v, cap * sizeof *v);
        if (!v)
            return 0;
        x->stream_v = v;
        x->stream_cap = cap;
    }
    uint64_t pos;
    stream_find(x, h32, name, name_size, &pos);
    /* Above what a snapshot holds: written in place even when shared. */
    struct stream *s = &x->stream_v[x->stream_count];
    *s = (struct stream){.name_ref = arena_push(&x->stream_arena, name, name_size)};
    table_insert_at(&x->streams, pos, (struct slot){(uint32_t)(x->stream_count + 1), h32});
    return ++x->stream_count;
}

uint64_t idx_stream_append(struct idx *x, const void *stream, size_t stream_size, uint64_t lsn)
{
    assert(stream_size >= 1 && stream_size <= STELE_STREAM_SIZE_MAX);
    uint64_t i = stream_get(x, stream, stream_size);
    if (i)
        return stream_push(x, i - 1, lsn) == 0 ? x->stream_v[i - 1].count : 0;
    /* A new stream: its first LSN's array first, so that no failure leaves
     * an empty stream behind. */
    uint64_t *lsns = malloc(4 * sizeof *lsns);
    if (!lsns)
        return 0;
    i = stream_create(x, hash32(x, stream, stream_size), stream, stream_size);
    if (!i) {
        free(lsns);
        return 0;
    }
    struct stream *s = &x->stream_v[i - 1]; /* above what a snapshot holds */
    s->lsns = lsns;
    s->cap = 4;
    x->stream_lsn_bytes += 4 * sizeof *lsns;
    stream_push(x, i - 1, lsn);
    return 1;
}

uint64_t idx_stream_version(const struct idx *x, const void *stream, size_t stream_size, uint64_t *out_last_lsn)
{
    uint64_t i = stream_get(x, stream, stream_size);
    const struct stream *s = i ? &x->stream_v[i - 1] : NULL;
    if (out_last_lsn)
        *out_last_lsn = s ? s->lsns[s->count - 1] : 0;
    return s ? s->count : 0;
}

uint64_t idx_stream_lsn(const struct idx *x, const void *stream, size_t stream_size, uint64_t version)
{
    uint64_t i = stream_get(x, stream, stream_size);
    const struct stream *s = i ? &x->stream_v[i - 1] : NULL;
    return s && version >= 1 && version <= s->count ? s->lsns[version - 1] : 0;
}

/* ---------------------------------------------------------------- compensations */

static uint64_t comp_home(uint64_t target_lsn, uint64_t cap)
{
    uint64_t h = target_lsn * UINT64_C(0x9E3779B97F4A7C15);
    return (h ^ (h >> 32)) & (cap - 1);
}

/* The slot of target_lsn, or the empty one where it would go; SIZE_MAX
 * when the table has none. */
static size_t comp_slot(const struct idx *x, uint64_t target_lsn)
{
    if (x->comp_cap == 0)
        return SIZE_MAX;
    uint64_t mask = x->comp_cap - 1;
    for (uint64_t i = comp_home(target_lsn, x->comp_cap);; i = (i + 1) & mask) {
        const struct comp *c = &x->comps[i];
        if (c->target_lsn == target_lsn || c->target_lsn == 0)
            return (size_t)i;
    }
}

static int comp_grow(struct idx *x)
{
    uint64_t cap = x->comp_cap ? x->comp_cap * 2 : TABLE_CAP_MIN;
    struct comp *v = cap <= SIZE_MAX / sizeof *v ? calloc(cap, sizeof *v) : NULL;
    if (!v)
        return -1;
    for (uint64_t i = 0; i < x->comp_cap; i++) {
        if (x->comps[i].target_lsn == 0)
            continue;
        uint64_t j = comp_home(x->comps[i].target_lsn, cap);
        while (v[j].target_lsn != 0)
            j = (j + 1) & (cap - 1);
        v[j] = x->comps[i];
    }
    if (!array_shared(x, x->comps, x->snap ? x->snap->comps : NULL))
        free(x->comps); /* else the snapshot keeps it */
    x->comps = v;
    x->comp_cap = cap;
    return 0;
}

int idx_comp_put(struct idx *x, uint64_t target_lsn, uint64_t comp_lsn, uint64_t fingerprint)
{
    assert(target_lsn != 0);
    size_t i = comp_slot(x, target_lsn);
    if (i == SIZE_MAX || x->comps[i].target_lsn == 0) {
        if ((x->comp_count + 1) * 4 > x->comp_cap * 3) {
            if (comp_grow(x) != 0)
                return -1;
            i = comp_slot(x, target_lsn);
        }
        x->comp_count++;
    }
    comps_w(x)[i] = (struct comp){target_lsn, comp_lsn, fingerprint};
    return 0;
}

int idx_comp_get(const struct idx *x, uint64_t target_lsn, uint64_t *out_comp_lsn, uint64_t *out_fingerprint)
{
    size_t i = target_lsn ? comp_slot(x, target_lsn) : SIZE_MAX;
    const struct comp *c = i == SIZE_MAX ? NULL : &x->comps[i];
    if (!c || c->target_lsn == 0)
        return 0;
    if (out_comp_lsn)
        *out_comp_lsn = c->comp_lsn;
    if (out_fingerprint)
        *out_fingerprint = c->fingerprint;
    return 1;
}

/* ---------------------------------------------------------------- size */

uint64_t idx_key_count(const struct idx *x)
{
    return x->key_count;
}

uint64_t idx_pending_count(const struct idx *x)
{
    return x->pending_count;
}

uint64_t idx_intent_count(const struct idx *x)
{
    return x->intent_count;
}

uint64_t idx_stream_count(const struct idx *x)
{
    return x->stream_count;
}

uint64_t idx_comp_count(const struct idx *x)
{
    return x->comp_count;
}

void idx_grow_stats(const struct idx *x, int streams, struct idx_grow_stats *out)
{
    const struct table *t = streams ? &x->streams : &x->keys;
    *out = (struct idx_grow_stats){t->migrations, t->old ? t->old_cap : 0, t->old_used, t->step_slots_max};
}

uint64_t idx_memory(const struct idx *x)
{
    const struct chunk_spare *chunks[] = {x->keys.spare,    x->streams.spare,   x->entries.spare,
                                          x->sides.spare,   x->key_arena.spare, x->stream_arena.spare};
    uint64_t chunk_bytes = 0;
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++)
        chunk_bytes += chunks[i] ? chunks[i]->bytes : 0;
    return sizeof *x + x->snap_bytes + (x->keys.cap + x->keys.old_cap) * sizeof(struct slot) + chunk_bytes +
           x->entries.bytes + x->sides.bytes + x->key_arena.bytes +
           (x->streams.cap + x->streams.old_cap) * sizeof(struct slot) + x->stream_cap * sizeof(struct stream) + x->stream_arena.bytes +
           x->stream_lsn_bytes + x->comp_cap * sizeof(struct comp);
}

/* ---------------------------------------------------------------- snapshots */

static uint8_t **dup_ptrs(uint8_t *const *a, uint32_t n)
{
    uint8_t **d = malloc((n ? n : 1) * sizeof *d);
    if (d && n)
        memcpy(d, a, n * sizeof *d);
    return d;
}

const struct idx *idx_snapshot(struct idx *x, void (*wait)(void *ctx), void *ctx)
{
    assert(!x->snap && wait);
    struct idx *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    *s = *x;
    s->entries.chunks = dup_ptrs(x->entries.chunks, x->entries.chunk_count);
    s->sides.chunks = dup_ptrs(x->sides.chunks, x->sides.chunk_count);
    s->key_arena.chunks = dup_ptrs(x->key_arena.chunks, x->key_arena.chunk_count);
    s->stream_arena.chunks = dup_ptrs(x->stream_arena.chunks, x->stream_arena.chunk_count);
    if (!s->entries.chunks || !s->sides.chunks || !s->key_arena.chunks || !s->stream_arena.chunks) {
        free(s->entries.chunks);
        free(s->sides.chunks);
        free(s->key_arena.chunks);
        free(s->stream_arena.chunks);
        free(s);
        return NULL;
    }
    /* What idx_save reads, and nothing else: no tables, no spares. */
    s->keys = s->streams = (struct table){0};
    s->entries.spare = s->sides.spare = s->key_arena.spare = s->stream_arena.spare = NULL;
    s->snap = s;
    x->entries.shared = s->entries.chunks;
    x->entries.shared_count = x->entries.chunk_count;
    x->sides.shared = s->sides.chunks;
    x->sides.shared_count = x->sides.chunk_count;
    x->key_arena.shared = s->key_arena.chunks;
    x->key_arena.shared_count = x->key_arena.chunk_count;
    x->stream_arena.shared = s->stream_arena.chunks;
    x->stream_arena.shared_count = x->stream_arena.chunk_count;
    x->snap = s;
    x->snap_wait = wait;
    x->snap_wait_ctx = ctx;
    x->snap_bytes = 0;
    return s;
}

/* Frees the chunks only the snapshot still points at, and its array. */
static void unshare_chunks(uint8_t *const *live, uint32_t live_count, uint8_t **snap, uint32_t snap_count)
{
    for (uint32_t c = 0; c < snap_count; c++)
        if (c >= live_count || live[c] != snap[c])
            free(snap[c]);
    free(snap);
}

void idx_snapshot_release(struct idx *x)
{
    struct idx *s = x->snap;
    if (!s)
        return;
    unshare_chunks(x->entries.chunks, x->entries.chunk_count, s->entries.chunks, s->entries.chunk_count);
    unshare_chunks(x->sides.chunks, x->sides.chunk_count, s->sides.chunks, s->sides.chunk_count);
    unshare_chunks(x->key_arena.chunks, x->key_arena.chunk_count, s->key_arena.chunks, s->key_arena.chunk_count);
    unshare_chunks(x->stream_arena.chunks, x->stream_arena.chunk_count, s->stream_arena.chunks,
            s->stream_arena.chunk_count);
    /* Every change to an existing stream copied the array first (stream_w),
     * so an LSN array copied since differs only where the array does. */
    if (s->stream_v != x->stream_v) {
        for (uint64_t i = 0; i < s->stream_count; i++)
            if (s->stream_v[i].lsns != x->stream_v[i].lsns)
                free(s->stream_v[i].lsns);
        free(s->stream_v);
    }
    if (s->comps != x->comps)
        free(s->comps);
    free(s);
    x->entries.shared = x->sides.shared = x->key_arena.shared = x->stream_arena.shared = NULL;
    x->entries.shared_count = x->sides.shared_count = x->key_arena.shared_count = x->stream_arena.shared_count = 0;
    x->snap = NULL;
    x->snap_bytes = 0;
}

void idx_set_cow_alloc(struct idx *x, void *(*fn)(size_t size))
{
    x->cow_alloc = fn;
}

/* ---------------------------------------------------------------- checkpoint file */

#define IO_CHUNK (1024u * 1024u)

/* The writer's buffer: flushed through write in chunks of IO_CHUNK, each
 * chunk hashed first. */
struct wr {
    idx_write_fn write;
    void *ctx;
    uint8_t *buf;
    size_t used;
    uint64_t off;          /* bytes flushed */
    XXH3_state_t *hash;
    int code;
};

static int wr_flush(struct wr *w)
{
    if (w->code == 0 && w->used > 0) {
        XXH3_64bits_update(w->hash, w->buf, w->used);
        w->code = w->write(w->ctx, w->buf, w->used);
        w->off += w->used;
    }
    w->used = 0;
    return w->code;
}

/* n contiguous bytes of the buffer to encode into (n <= IO_CHUNK). */
static uint8_t *wr_space(struct wr *w, size_t n)
{
    if (w->used + n > IO_CHUNK)
        wr_flush(w);
    uint8_t *p = w->buf + w->used;
    w->used += n;
    return p;
}

static void wr_bytes(struct wr *w, const void *src, size_t n)
{
    memcpy(wr_space(w, n), src, n);
}

static void save_key(struct wr *w, const struct idx *x, uint32_t e)
{
    struct idx_key v;
    key_read(x, e, &v);
    const uint8_t *k = arena_at(&x->key_arena, entry_ref(entry_at(x, e)));
    struct fmt_index_key fk = {
        .key_size = k[0],
        .kind = v.kind,
        .outcome = v.outcome,
        .lsn = v.lsn,
        .fingerprint = v.fingerprint,
        .recorded_at_ns = v.recorded_at_ns,
        .stream_version = v.stream_version,
        .last_at_ns = v.last_at_ns,
        .outcome_lsn = v.outcome_lsn,
        .outcome_fingerprint = v.outcome_fingerprint,
    };
    size_t head = v.kind == STELE_KIND_INTENT ? STELE_INDEX_INTENT_HEAD_SIZE : STELE_INDEX_EVENT_HEAD_SIZE;
    uint8_t *p = wr_space(w, head + k[0]);
    fmt_index_key_encode(&fk, p, head);
    memcpy(p + head, k + 1, k[0]);
}

/* Keys that are not pending in entry order, then the pending intents
 * oldest first, so that a reader checks and restores their order in one
 * pass (SPEC.md §15.6.2). */
static void save_keys(struct wr *w, const struct idx *x)
{
    for (uint32_t e = 0; e < x->entries.top; e++) {
        const struct entry *en = entry_at(x, e);
        if (entry_kind(en) != 0 && !(en->side && side_at(x, en->side - 1)->pending))
            save_key(w, x, e);
    }
    for (uint32_t s = x->pending_head; s; s = side_at(x, s - 1)->next)
        save_key(w, x, side_at(x, s - 1)->entry);
}

static void save_streams(struct wr *w, const struct idx *x)
{
    for (uint64_t i = 0; i < x->stream_count; i++) {
        const struct stream *s = &x->stream_v[i];
        const uint8_t *name = arena_at(&x->stream_arena, s->name_ref);
        struct fmt_index_stream fs = {.name_size = name[0], .lsn_count = s->count};
        fmt_index_stream_encode(&fs, wr_space(w, STELE_INDEX_STREAM_HEAD_SIZE), STELE_INDEX_STREAM_HEAD_SIZE);
        wr_bytes(w, name + 1, name[0]);
        for (uint64_t j = 0; j < s->count; j++)
            le64_store(wr_space(w, 8), s->lsns[j]);
    }
}

static void save_comps(struct wr *w, const struct idx *x)
{
    for (uint64_t i = 0; i < x->comp_cap; i++) {
        const struct comp *c = &x->comps[i];
        if (c->target_lsn == 0)
            continue;
        struct fmt_index_comp fc = {c->target_lsn, c->comp_lsn, c->fingerprint};
        fmt_index_comp_encode(&fc, wr_space(w, STELE_INDEX_COMP_SIZE), STELE_INDEX_COMP_SIZE);
    }
}

/* The file's size follows from the counts and the live key and name bytes. */
static uint64_t save_size(const struct idx *x)
{
    return STELE_INDEX_HEADER_SIZE + x->key_count * STELE_INDEX_EVENT_HEAD_SIZE +
           x->intent_count * (STELE_INDEX_INTENT_HEAD_SIZE - STELE_INDEX_EVENT_HEAD_SIZE) +
           (x->key_arena.live - x->key_count) + x->stream_count * STELE_INDEX_STREAM_HEAD_SIZE +
           (x->stream_arena.live - x->stream_count) + x->stream_lsn_count * 8 +
           x->comp_count * STELE_INDEX_COMP_SIZE + STELE_INDEX_FOOTER_SIZE;
}

int idx_save(const struct idx *x, const struct idx_ckpt_info *info, idx_write_fn write, void *ctx)
{
    assert(info->covered_lsn != 0 || (info->covered_fingerprint == 0 && info->covered_recorded_at_ns == 0));
    struct wr w = {.write = write, .ctx = ctx, .buf = malloc(IO_CHUNK), .hash = XXH3_createState()};
    if (!w.buf || !w.hash || XXH3_64bits_reset_withSeed(w.hash, STELE_SEED_INDEX) != XXH_OK) {
        w.code = err_set(STELE_ERR_NOMEM, "saving the index: out of memory");
        goto done;
    }
    struct fmt_index_header h = {
        .covered_lsn = info->covered_lsn,
        .covered_fingerprint = info->covered_fingerprint,
        .covered_recorded_at_ns = info->covered_recorded_at_ns,
        .window_ns = info->window_ns,
        .written_at_ns = info->written_at_ns,
        .file_size = save_size(x),
        .key_count = x->key_count,
        .intent_count = x->intent_count,
        .pending_count = x->pending_count,
        .stream_count = x->stream_count,
        .stream_lsn_count = x->stream_lsn_count,
        .comp_count = x->comp_count,
    };
    memcpy(h.log_id, info->log_id, sizeof h.log_id);
    fmt_index_header_encode(&h, wr_space(&w, STELE_INDEX_HEADER_SIZE), STELE_INDEX_HEADER_SIZE);
    save_keys(&w, x);
    save_streams(&w, x);
    save_comps(&w, x);
    /* The footer's last 8 bytes are the hash of everything before them. */
    uint8_t *foot = wr_space(&w, STELE_INDEX_FOOTER_SIZE);
    struct fmt_index_footer f = {.file_size = h.file_size};
    fmt_index_footer_encode(&f, foot, STELE_INDEX_FOOTER_SIZE);
    w.used -= 8;
    if (wr_flush(&w) != 0)
        goto done;
    assert(w.off + 8 == h.file_size);
    uint8_t hash[8];
    le64_store(hash, XXH3_64bits_digest(w.hash));
    w.code = write(ctx, hash, sizeof hash);
done:
    if (w.hash)
        XXH3_freeState(w.hash);
    free(w.buf);
    return w.code;
}

/* The reader's buffer: reads through read in chunks of at most IO_CHUNK,
 * never past the file size the header states, hashing every byte before the
 * footer's file_hash as it arrives. */
struct rd {
    idx_read_fn read;
    void *ctx;
    uint8_t *buf;
    size_t cap;            /* min(IO_CHUNK, bytes after the header) */
    size_t pos;            /* next unconsumed byte */
    size_t len;            /* bytes in buf */
    uint64_t buf_off;      /* file offset of buf[0] */
    uint64_t file_size;    /* what the header states */
    uint64_t hash_end;     /* bytes before this offset are hashed: file_size - 8 */
    XXH3_state_t *hash;
};

static uint64_t rd_off(const struct rd *r)
{
    return r->buf_off + r->pos;
}

/* A short read is a truncated file: say where, keeping what read said. */
static int rd_short(int rc, uint64_t off, size_t n, const char *what)
{
    if (rc != STELE_ERR_CORRUPT)
        return rc;
    char said[256];
    snprintf(said, sizeof said, "%s", stele_errmsg());
    return err_set(rc, "index file offset %llu: truncated while reading %zu bytes (%s)%s%s", (unsigned long long)off,
                   n, what, said[0] ? ": " : "", said);
}

/* Points *out at the next n bytes and consumes them. Anything that fits the
 * file fits the buffer: cap >= min(IO_CHUNK, what is left of the file). */
static int rd_take(struct rd *r, size_t n, const char *what, const uint8_t **out)
{
    if (r->len - r->pos < n) {
        if (rd_off(r) + n > r->file_size)
            return err_set(STELE_ERR_CORRUPT,
                           "index file offset %llu: %s (%zu bytes) runs past the file size %llu the header states",
                           (unsigned long long)rd_off(r), what, n, (unsigned long long)r->file_size);
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->buf_off += r->pos;
        r->len -= r->pos;
        r->pos = 0;
        uint64_t end = r->buf_off + r->len;
        size_t want = r->cap - r->len;
        if (want > r->file_size - end)
            want = (size_t)(r->file_size - end);
        assert(r->len + want >= n);
        err_clear(); /* so that rd_short quotes only what read says now */
        int rc = r->read(r->ctx, r->buf + r->len, want);
        if (rc != 0)
            return rd_short(rc, end, want, what);
        if (end < r->hash_end)
            XXH3_64bits_update(r->hash, r->buf + r->len, (size_t)(want < r->hash_end - end ? want : r->hash_end - end));
        r->len += want;
    }
    *out = r->buf + r->pos;
    r->pos += n;
    return 0;
}

static int corrupt(uint64_t off, const char *what, enum fmt_status st, const char *why)
{
    return err_set(STELE_ERR_CORRUPT, "index file offset %llu: %s: %s", (unsigned long long)off, what,
                   why ? why : fmt_status_str(st));
}

struct load {
    struct rd r;
    struct fmt_index_header h;
    struct idx *x;
    uint64_t last_pending_lsn;
};

/* A key record read ahead of its insert (load_keys pipelines them). */
struct loaded_key {
    struct idx_key v;
    uint64_t off;
    uint32_t h32;
    uint8_t key_size;
    uint8_t key[STELE_KEY_SIZE_MAX];
};

/* Reads and checks one key record into *out. */
static int load_key(struct load *l, uint64_t *intents, uint64_t *pending, struct loaded_key *out)
{
    uint64_t off = rd_off(&l->r);
    const uint8_t *p = NULL;
    struct fmt_index_key k;
    int rc = rd_take(&l->r, STELE_INDEX_KEY_HEAD_PEEK, "key record", &p);
    if (rc != 0)
        return rc;
    size_t head = fmt_index_key_head_size(p);
    if (head == 0)
        return err_set(STELE_ERR_CORRUPT, "index file offset %llu: key record: kind %u is not event or intent",
                       (unsigned long long)off, p[1]);
    size_t key_size = p[0];
    l->r.pos -= STELE_INDEX_KEY_HEAD_PEEK; /* take the whole record at once */
    if ((rc = rd_take(&l->r, head + key_size, "key record", &p)) != 0)
        return rc;
    const char *why;
    enum fmt_status st = fmt_index_key_decode(p, head + key_size, l->h.covered_lsn, &k, &why);
    if (st != FMT_OK)
        return corrupt(off, "key record", st, why);
    out->v = (struct idx_key){
        .lsn = k.lsn,
        .fingerprint = k.fingerprint,
        .recorded_at_ns = k.recorded_at_ns,
        .stream_version = k.stream_version,
        .last_at_ns = k.last_at_ns,
        .kind = k.kind,
        .outcome = k.outcome,
        .outcome_lsn = k.outcome_lsn,
        .outcome_fingerprint = k.outcome_fingerprint,
    };
    if (is_pending(&out->v)) {
        if (out->v.lsn <= l->last_pending_lsn)
            return err_set(STELE_ERR_CORRUPT,
                           "index file offset %llu: pending intent at LSN %llu is not after the one at LSN %llu",
                           (unsigned long long)off, (unsigned long long)out->v.lsn,
                           (unsigned long long)l->last_pending_lsn);
        l->last_pending_lsn = out->v.lsn;
        ++*pending;
    }
    *intents += out->v.kind == STELE_KIND_INTENT;
    out->off = off;
    out->key_size = (uint8_t)key_size;
    memcpy(out->key, p + head, key_size);
    out->h32 = hash32(l->x, out->key, key_size);
    return 0;
}

static int insert_loaded(struct load *l, const struct loaded_key *k)
{
    int put = key_put(l->x, k->h32, k->key, k->key_size, &k->v, 1, NULL);
    if (put < 0)
        return err_set(STELE_ERR_NOMEM, "loading the index: out of memory at key %llu", (unsigned long long)k->v.lsn);
    if (put > 0)
        return err_set(STELE_ERR_CORRUPT, "index file offset %llu: key record: duplicate key (LSN %llu)",
                       (unsigned long long)k->off, (unsigned long long)k->v.lsn);
    return 0;
}

/* Key records are read LOAD_AHEAD ahead of their insert, and the table slot
 * each will probe first is prefetched when it is read: a table of millions
 * of keys misses the cache on every probe, and this overlaps the misses. */
#define LOAD_AHEAD 16u
#define LOAD_PRESIZE (UINT64_C(1) << 20)

static int load_keys(struct load *l)
{
    uint64_t intents = 0, pending = 0, n = l->h.key_count;
    /* The table is sized ahead (so that it is not rehashed again and again),
     * but never on the header's word alone: at most LOAD_PRESIZE keys at
     * first, then 4 times the keys actually read, so that memory stays in
     * proportion to the bytes the file really holds. */
    uint64_t sized = n < LOAD_PRESIZE ? n : LOAD_PRESIZE;
    if (table_reserve_n(&l->x->keys, sized) != 0)
        return err_set(STELE_ERR_NOMEM, "loading the index: out of memory for %llu keys", (unsigned long long)sized);
    struct loaded_key *ring = malloc(LOAD_AHEAD * sizeof *ring);
    if (!ring)
        return err_set(STELE_ERR_NOMEM, "loading the index: out of memory");
    const struct table *t = &l->x->keys;
    int rc = 0;
    for (uint64_t i = 0; i < n + LOAD_AHEAD && rc == 0; i++) {
        if (i == sized && sized < n) {
            sized = n / 4 < sized ? n : sized * 4;
            if (table_reserve_n(&l->x->keys, sized - table_count(t)) != 0)
                rc = err_set(STELE_ERR_NOMEM, "loading the index: out of memory for %llu keys",
                             (unsigned long long)sized);
        }
        if (rc == 0 && i >= LOAD_AHEAD)
            rc = insert_loaded(l, &ring[(i - LOAD_AHEAD) % LOAD_AHEAD]);
        if (rc == 0 && i < n && (rc = load_key(l, &intents, &pending, &ring[i % LOAD_AHEAD])) == 0 && t->cap)
            __builtin_prefetch(&t->slots[ring[i % LOAD_AHEAD].h32 & (t->cap - 1)]);
    }
    free(ring);
    if (rc != 0)
        return rc;
    if (intents != l->h.intent_count || pending != l->h.pending_count)
        return err_set(STELE_ERR_CORRUPT,
                       "index file offset %llu: %llu intents (%llu pending) where the header states %llu (%llu)",
                       (unsigned long long)rd_off(&l->r), (unsigned long long)intents, (unsigned long long)pending,
                       (unsigned long long)l->h.intent_count, (unsigned long long)l->h.pending_count);
    return 0;
}

static int load_stream_lsns(struct load *l, const uint8_t *name, size_t name_size, uint64_t count)
{
    uint64_t prev = 0;
    for (uint64_t j = 0; j < count; j++) {
        uint64_t off = rd_off(&l->r);
        const uint8_t *p = NULL;
        int rc = rd_take(&l->r, 8, "stream LSN", &p);
        if (rc != 0)
            return rc;
        uint64_t lsn = le64_load(p);
        if (lsn <= prev || lsn > l->h.covered_lsn)
            return err_set(STELE_ERR_CORRUPT,
                           "index file offset %llu: stream LSN %llu is not in (%llu, covered LSN %llu]",
                           (unsigned long long)off, (unsigned long long)lsn, (unsigned long long)prev,
                           (unsigned long long)l->h.covered_lsn);
        if (idx_stream_append(l->x, name, name_size, lsn) == 0)
            return err_set(STELE_ERR_NOMEM, "loading the index: out of memory at a stream LSN");
        prev = lsn;
    }
    return 0;
}

static int load_streams(struct load *l)
{
    for (uint64_t i = 0; i < l->h.stream_count; i++) {
        uint64_t off = rd_off(&l->r);
        const uint8_t *p = NULL;
        struct fmt_index_stream s;
        int rc = rd_take(&l->r, STELE_INDEX_STREAM_HEAD_SIZE, "stream record", &p);
        if (rc != 0)
            return rc;
        const char *why;
        enum fmt_status st = fmt_index_stream_decode(p, STELE_INDEX_STREAM_HEAD_SIZE, &s, &why);
        if (st != FMT_OK)
            return corrupt(off, "stream record", st, why);
        if (s.lsn_count > l->h.stream_lsn_count - l->x->stream_lsn_count)
            return err_set(STELE_ERR_CORRUPT, "index file offset %llu: stream of %llu LSNs exceeds the header's total",
                           (unsigned long long)off, (unsigned long long)s.lsn_count);
        /* The name is copied: reading the LSNs may move the buffer. */
        uint8_t name[STELE_STREAM_SIZE_MAX];
        if ((rc = rd_take(&l->r, s.name_size, "stream name", &p)) != 0)
            return rc;
        memcpy(name, p, s.name_size);
        if (idx_stream_version(l->x, name, s.name_size, NULL) != 0)
            return err_set(STELE_ERR_CORRUPT, "index file offset %llu: duplicate stream", (unsigned long long)off);
        if ((rc = load_stream_lsns(l, name, s.name_size, s.lsn_count)) != 0)
            return rc;
    }
    if (l->x->stream_lsn_count != l->h.stream_lsn_count)
        return err_set(STELE_ERR_CORRUPT, "index file offset %llu: %llu stream LSNs where the header states %llu",
                       (unsigned long long)rd_off(&l->r), (unsigned long long)l->x->stream_lsn_count,
                       (unsigned long long)l->h.stream_lsn_count);
    return 0;
}

static int load_comps(struct load *l)
{
    for (uint64_t i = 0; i < l->h.comp_count; i++) {
        uint64_t off = rd_off(&l->r);
        const uint8_t *p = NULL;
        struct fmt_index_comp c;
        int rc = rd_take(&l->r, STELE_INDEX_COMP_SIZE, "compensation record", &p);
        if (rc != 0)
            return rc;
        const char *why;
        enum fmt_status st = fmt_index_comp_decode(p, STELE_INDEX_COMP_SIZE, l->h.covered_lsn, &c, &why);
        if (st != FMT_OK)
            return corrupt(off, "compensation record", st, why);
        if (idx_comp_get(l->x, c.target_lsn, NULL, NULL))
            return err_set(STELE_ERR_CORRUPT, "index file offset %llu: LSN %llu compensated twice",
                           (unsigned long long)off, (unsigned long long)c.target_lsn);
        if (idx_comp_put(l->x, c.target_lsn, c.comp_lsn, c.fingerprint) != 0)
            return err_set(STELE_ERR_NOMEM, "loading the index: out of memory at a compensation");
    }
    return 0;
}

/* Reads and checks the header, then sizes the buffer for the rest. */
static int load_header(struct load *l)
{
    uint8_t p[STELE_INDEX_HEADER_SIZE];
    err_clear();
    int rc = l->r.read(l->r.ctx, p, sizeof p);
    if (rc != 0)
        return rd_short(rc, 0, sizeof p, "header");
    const char *why;
    enum fmt_status st = fmt_index_header_decode(p, sizeof p, &l->h, &why);
    if (st == FMT_BAD_VERSION)
        return err_set(STELE_ERR_FORMAT, "index file offset 16: format version %u is not one this library reads",
                       (unsigned)le32_load(p + 16));
    if (st != FMT_OK)
        return corrupt(0, "header", st, why);
    if (l->h.key_count > IDX_KEY_COUNT_MAX || l->h.stream_count > IDX_STREAM_COUNT_MAX)
        return err_set(STELE_ERR_CORRUPT, "index file offset 88: %llu keys or %llu streams exceed the index's limit",
                       (unsigned long long)l->h.key_count, (unsigned long long)l->h.stream_count);
    XXH3_64bits_update(l->r.hash, p, sizeof p);
    uint64_t rest = l->h.file_size - STELE_INDEX_HEADER_SIZE;
    l->r.cap = rest < IO_CHUNK ? (size_t)rest : IO_CHUNK;
    l->r.buf = malloc(l->r.cap);
    if (!l->r.buf)
        return err_set(STELE_ERR_NOMEM, "loading the index: out of memory");
    l->r.buf_off = STELE_INDEX_HEADER_SIZE;
    l->r.file_size = l->h.file_size;
    l->r.hash_end = l->h.file_size - 8;
    return 0;
}

static int load_footer(struct load *l)
{
    uint64_t off = rd_off(&l->r);
    const uint8_t *p = NULL;
    struct fmt_index_footer f;
    if (off + STELE_INDEX_FOOTER_SIZE != l->h.file_size)
        return err_set(STELE_ERR_CORRUPT, "index file offset %llu: the records end here, but the header states a "
                       "file of %llu bytes", (unsigned long long)off, (unsigned long long)l->h.file_size);
    int rc = rd_take(&l->r, STELE_INDEX_FOOTER_SIZE, "footer", &p);
    if (rc != 0)
        return rc;
    enum fmt_status st = fmt_index_footer_decode(p, STELE_INDEX_FOOTER_SIZE, &f);
    if (st != FMT_OK)
        return corrupt(off, "footer", st, NULL);
    if (f.file_size != l->h.file_size)
        return err_set(STELE_ERR_CORRUPT, "index file offset %llu: footer file size %llu, header %llu",
                       (unsigned long long)(off + 8), (unsigned long long)f.file_size,
                       (unsigned long long)l->h.file_size);
    uint64_t hash = XXH3_64bits_digest(l->r.hash);
    if (f.file_hash != hash)
        return err_set(STELE_ERR_CORRUPT, "index file offset %llu: file hash %016llx, computed %016llx",
                       (unsigned long long)(off + 16), (unsigned long long)f.file_hash, (unsigned long long)hash);
    /* Nothing may follow the footer: a read of one more byte must find EOF. */
    uint8_t extra;
    rc = l->r.read(l->r.ctx, &extra, 1);
    if (rc == 0)
        return err_set(STELE_ERR_CORRUPT, "index file offset %llu: bytes follow the footer",
                       (unsigned long long)l->h.file_size);
    if (rc != STELE_ERR_CORRUPT)
        return rc;
    err_clear(); /* read may have described the EOF it met */
    return 0;
}

int idx_load(uint64_t window_ns, idx_read_fn read, void *ctx, struct idx **out_x, struct idx_ckpt_info *out_info)
{
    struct load l = {
        .r = {.read = read, .ctx = ctx, .hash = XXH3_createState()},
        .x = idx_new(window_ns),
    };
    int rc;
    if (!l.r.hash || !l.x || XXH3_64bits_reset_withSeed(l.r.hash, STELE_SEED_INDEX) != XXH_OK) {
        rc = err_set(STELE_ERR_NOMEM, "loading the index: out of memory");
        goto done;
    }
    if ((rc = load_header(&l)) != 0 || (rc = load_keys(&l)) != 0 || (rc = load_streams(&l)) != 0 ||
        (rc = load_comps(&l)) != 0 || (rc = load_footer(&l)) != 0)
        goto done;
    assert(l.x->key_count == l.h.key_count && l.x->pending_count == l.h.pending_count);
    if (out_info) {
        memcpy(out_info->log_id, l.h.log_id, sizeof out_info->log_id);
        out_info->covered_lsn = l.h.covered_lsn;
        out_info->covered_fingerprint = l.h.covered_fingerprint;
        out_info->covered_recorded_at_ns = l.h.covered_recorded_at_ns;
        out_info->window_ns = l.h.window_ns;
        out_info->written_at_ns = l.h.written_at_ns;
    }
    *out_x = l.x;
    l.x = NULL;
done:
    idx_free(l.x);
    if (l.r.hash)
        XXH3_freeState(l.r.hash);
    free(l.r.buf);
    return rc;
}
