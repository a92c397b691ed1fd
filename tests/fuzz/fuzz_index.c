/*
 * fuzz_index.c - idx_load (engine/idx.c) on hostile index (checkpoint)
 * files, SPEC.md §15.6.
 *
 * Input: byte 0 selects the mode, the rest is the file.
 *   mode & 1: set the header's file_size to the file's length,
 *   mode & 2: fix up the header checksum and the file hash (last 8 bytes),
 *             so that mutations reach the field, count and order checks
 *             behind them (mode 3 does both).
 * What must hold: idx_load returns 0, STELE_ERR_CORRUPT or STELE_ERR_FORMAT
 * (never another code, never an index on failure), with a message naming an
 * offset on failure. What it accepts is exactly file_size bytes long; saved
 * again, it loads again with the same counts and info, and that second save
 * is the same file as the first save, up to the order of compensations.
 */
#include "fuzz.h"

#include "checksum.h"
#include "idx.h"
#include "index.h"
#include "stele.h"

struct mem {
    uint8_t *buf;
    size_t size;
    size_t cap;
    size_t off;
};

static int mem_read(void *ctx, void *buf, size_t size)
{
    struct mem *m = ctx;
    if (size > m->size - m->off)
        return STELE_ERR_CORRUPT;
    memcpy(buf, m->buf + m->off, size);
    m->off += size;
    return 0;
}

static int mem_write(void *ctx, const void *buf, size_t size)
{
    struct mem *m = ctx;
    if (m->size + size > m->cap) {
        size_t cap = (m->size + size) * 2;
        uint8_t *p = realloc(m->buf, cap);
        FUZZ_CHECK(p != NULL, "out of memory");
        m->buf = p;
        m->cap = cap;
    }
    memcpy(m->buf + m->size, buf, size);
    m->size += size;
    return 0;
}

static void store_le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void fix_up(uint8_t *buf, size_t n, unsigned mode)
{
    if (n < STELE_INDEX_HEADER_SIZE + 8)
        return;
    if (mode & 1)
        store_le(buf + 80, n);
    if (mode & 2) {
        store_le(buf, stele_checksum(buf + 8, STELE_INDEX_HEADER_SIZE - 8, STELE_SEED_INDEX));
        store_le(buf + n - 8, stele_checksum(buf, n - 8, STELE_SEED_INDEX));
    }
}

static struct mem save(const struct idx *x, const struct idx_ckpt_info *info)
{
    struct mem m = {0};
    FUZZ_CHECK(idx_save(x, info, mem_write, &m) == 0, "idx_save failed: %s", stele_errmsg());
    return m;
}

/* An accepted file saves and loads again to the same thing. */
static void check_accepted(const struct idx *x, const struct idx_ckpt_info *info, size_t n)
{
    struct mem a = save(x, info);
    FUZZ_CHECK(a.size == n, "accepted a %zu-byte file that saves as %zu bytes", n, a.size);
    struct idx *y = NULL;
    struct idx_ckpt_info info2;
    a.off = 0;
    FUZZ_CHECK(idx_load(0, mem_read, &a, &y, &info2) == 0, "a saved index does not load: %s", stele_errmsg());
    FUZZ_CHECK(memcmp(info->log_id, info2.log_id, sizeof info2.log_id) == 0 &&
                   info->covered_lsn == info2.covered_lsn && info->covered_fingerprint == info2.covered_fingerprint &&
                   info->covered_recorded_at_ns == info2.covered_recorded_at_ns &&
                   info->window_ns == info2.window_ns && info->written_at_ns == info2.written_at_ns,
               "info changed across save and load");
    FUZZ_CHECK(idx_key_count(y) == idx_key_count(x) && idx_pending_count(y) == idx_pending_count(x) &&
                   idx_intent_count(y) == idx_intent_count(x) && idx_stream_count(y) == idx_stream_count(x) &&
                   idx_comp_count(y) == idx_comp_count(x),
               "counts changed across save and load");
    struct mem b = save(y, info);
    size_t comps = (size_t)idx_comp_count(x) * STELE_INDEX_COMP_SIZE;
    size_t body_end = a.size - STELE_INDEX_FOOTER_SIZE - comps;
    FUZZ_CHECK(b.size == a.size && memcmp(a.buf, b.buf, body_end) == 0,
               "saving the loaded index gives other keys or streams");
    for (size_t off = body_end; off < body_end + comps; off += STELE_INDEX_COMP_SIZE) {
        uint64_t c, f;
        FUZZ_CHECK(idx_comp_get(y, fuzz_le(a.buf + off, 8, 8), &c, &f) == 1 && c == fuzz_le(a.buf + off + 8, 8, 8) &&
                       f == fuzz_le(a.buf + off + 16, 8, 8),
                   "a compensation changed across save and load");
    }
    idx_free(y);
    free(a.buf);
    free(b.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    size_t n = size - 1;
    struct mem in = {.buf = malloc(n ? n : 1), .size = n};
    if (!in.buf)
        return 0;
    memcpy(in.buf, data + 1, n);
    fix_up(in.buf, n, mode);
    struct idx *x = NULL;
    struct idx_ckpt_info info;
    memset(&info, 0, sizeof info);
    int rc = idx_load(1000, mem_read, &in, &x, &info);
    FUZZ_CHECK(rc == 0 || rc == STELE_ERR_CORRUPT || rc == STELE_ERR_FORMAT, "idx_load returned %d: %s", rc,
               stele_errmsg());
    if (rc != 0) {
        FUZZ_CHECK(x == NULL, "idx_load failed with %d but returned an index", rc);
        FUZZ_CHECK(strstr(stele_errmsg(), "offset") != NULL, "message without an offset: %s", stele_errmsg());
    } else {
        FUZZ_CHECK(x != NULL, "idx_load succeeded without an index");
        FUZZ_CHECK(fuzz_le(in.buf + 80, 8, 8) == n, "accepted %zu bytes whose header states another size", n);
        check_accepted(x, &info, n);
        idx_free(x);
    }
    free(in.buf);
    return 0;
}
