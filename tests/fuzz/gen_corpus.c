/*
 * gen_corpus.c - writes the seed corpora of the fuzz targets: valid inputs
 * that a mutator can start from, cut from real logs written by the engine.
 *
 *   gen_corpus OUT_DIR     (writes OUT_DIR/{record,segment,open,roundtrip,event_json,index,dict}/)
 *
 * Two logs are written in a temporary directory with 64 KiB segments: one
 * with every kind of record (streams, keys, actors, outcomes with refs,
 * compensations, backfilled, JSON, text and binary content, empty and 6 KiB
 * payloads, one stele_append_batch call) until its first segment is sealed;
 * one zstd-compressed with a single active segment. From them:
 *   open/       directory images: two segments (sealed + active), an empty
 *               log, a compressed active segment, a torn tail to cut, a seal
 *               interrupted before the truncate, a sealed last segment not
 *               yet made read-only;
 *   record/     batch frames, single records and raw batch bodies;
 *   segment/    the meta block, segment headers, a footer, a segment name;
 *   event_json/ event lines covering every field and payload form;
 *   roundtrip/  recipes (the target builds valid values from any bytes);
 *   dict/       a dictionary file (trained on a third log) with and without a
 *               frame compressed with it, and a frame without its file;
 *   index/      index (checkpoint) files written by idx_save: empty, small
 *               (events, pending and resolved intents, streams,
 *               compensations) and one of ~200 keys, each as mode 0 (as is)
 *               and mode 3 (the target fixes the size, checksum and hash).
 * Log ids and times are fresh each run, so the files differ run to run; the
 * committed corpus is one run (tests/fuzz/run.sh --regenerate replaces it).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "checksum.h"
#include "idx.h"
#include "record.h"
#include "segment.h"
#include "segidx.h"
#include "dict_file.h"
#include <zstd.h>
#include "stele.h"

#define SEGMENT_SIZE (64u * 1024u)

static const char *out_dir;

static void die(const char *what)
{
    fprintf(stderr, "gen_corpus: %s: %s (%s)\n", what, stele_errmsg(), strerror(errno));
    exit(1);
}

static void put(const char *sub, const char *name, const void *a, size_t an, const void *b, size_t bn)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, an, f) != an || (bn && fwrite(b, 1, bn, f) != bn) || fclose(f) != 0)
        die(path);
}

static uint8_t *slurp(const char *dir, const char *name, size_t *out_size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        die(path);
    fclose(f);
    *out_size = (size_t)n;
    return buf;
}

/* Size without the trailing all-zero blocks (an active segment's unused room). */
static size_t trimmed(const uint8_t *buf, size_t n)
{
    while (n >= 4096) {
        size_t i = n - 4096;
        while (i < n && buf[i] == 0)
            i++;
        if (i < n)
            break;
        n -= 4096;
    }
    return n;
}

static void append(stele_log *log, stele_event *ev)
{
    stele_receipt r;
    if (stele_append(log, ev, &r) != STELE_OK)
        die("append");
}

static stele_event text_event(const char *type, const char *stream, const char *key, const char *actor,
                              stele_content content, const void *payload, size_t payload_size)
{
    stele_event ev;
    memset(&ev, 0, sizeof ev);
    ev.content = content;
    ev.type = type;
    ev.type_size = type ? strlen(type) : 0;
    ev.stream = stream;
    ev.stream_size = stream ? strlen(stream) : 0;
    ev.key = key;
    ev.key_size = key ? strlen(key) : 0;
    ev.actor = actor;
    ev.actor_size = actor ? strlen(actor) : 0;
    ev.payload = payload;
    ev.payload_size = payload_size;
    return ev;
}

/* Log A: every kind of record, until segment 1 is sealed. */
static void write_log_a(const char *dir)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.io_backend = STELE_IO_POSIX;
    o.segment_size = SEGMENT_SIZE;
    o.payload_size_max = 16384;
    stele_log *log;
    if (stele_open(dir, &o, &log) != STELE_OK)
        die("open log A");
    static const char json[] = "{\"amount\":100,\"currency\":\"EUR\",\"tags\":[\"a\",\"b\"],\"ok\":true,\"x\":1.5}";
    stele_event ev = text_event("payment.captured", "order-1", "pay-1", "api", STELE_CONTENT_JSON, json, strlen(json));
    append(log, &ev);
    ev = text_event("order.intent", "order-1", "intent-1", NULL, STELE_CONTENT_TEXT, "ship it", 7);
    ev.kind = STELE_KIND_INTENT;
    ev.has_expect_version = 1;
    ev.expect_version = 1;
    append(log, &ev);
    ev = text_event("order.outcome", NULL, "intent-1", "worker", STELE_CONTENT_JSON, "{}", 2);
    ev.kind = STELE_KIND_OUTCOME;
    ev.outcome = STELE_OUTCOME_CONFIRMED;
    ev.ref = 2;
    append(log, &ev);
    ev = text_event("order.compensate", "order-1", NULL, NULL, STELE_CONTENT_BINARY, "\x00\x01\x02", 3);
    ev.kind = STELE_KIND_COMPENSATION;
    ev.ref = 1;
    ev.flags = STELE_FLAG_BACKFILLED;
    ev.event_time_ns = 1700000000000000000ull;
    append(log, &ev);
    ev = text_event(NULL, NULL, NULL, NULL, 0, NULL, 0); /* the zeroed event */
    append(log, &ev);

    stele_event batch[5];
    char keys[5][16];
    for (int i = 0; i < 5; i++) {
        snprintf(keys[i], sizeof keys[i], "batch-%d", i);
        batch[i] = text_event("batch.item", "batch-stream", keys[i], NULL, STELE_CONTENT_TEXT, keys[i], strlen(keys[i]));
    }
    stele_receipt rcs[5];
    if (stele_append_batch(log, batch, 5, rcs) != STELE_OK)
        die("append_batch");

    static uint8_t big[6000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 131 + (i >> 7));
    stele_stats st;
    for (int i = 0; stele_stats_get(log, &st) == STELE_OK && st.segment_count < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "fill-%d", i);
        ev = text_event("fill", NULL, key, NULL, STELE_CONTENT_BINARY, big, sizeof big);
        append(log, &ev);
    }
    ev = text_event("after.roll", "order-2", "after-1", NULL, STELE_CONTENT_TEXT, "the second segment", 18);
    append(log, &ev);
    if (stele_close(log) != STELE_OK)
        die("close log A");
}

/* Log B: zstd, one active segment with compressible batches. */
static void write_log_b(const char *dir)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.io_backend = STELE_IO_POSIX;
    o.segment_size = SEGMENT_SIZE;
    o.payload_size_max = 16384;
    o.compression = STELE_COMPRESSION_ZSTD;
    stele_log *log;
    if (stele_open(dir, &o, &log) != STELE_OK)
        die("open log B");
    static char text[3000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = "compressible text "[i % 18];
    for (int i = 0; i < 3; i++) {
        char key[16];
        snprintf(key, sizeof key, "z-%d", i);
        stele_event ev = text_event("zstd.event", "z", key, NULL, STELE_CONTENT_TEXT, text, sizeof text);
        append(log, &ev);
    }
    if (stele_close(log) != STELE_OK)
        die("close log B");
}

static void put_open(const char *name, uint8_t flags, const uint8_t *meta, size_t meta_size, const uint8_t *seg1,
                     size_t seg1_size, const uint8_t *seg2, size_t seg2_size)
{
    size_t n = 1 + 4 + meta_size + (seg1 ? 4 + seg1_size + seg2_size : 0);
    uint8_t *buf = malloc(n), *p = buf;
    if (!buf)
        die("malloc");
    *p++ = flags;
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(meta_size >> (8 * i));
    memcpy(p, meta, meta_size);
    p += meta_size;
    if (seg1) {
        for (int i = 0; i < 4; i++)
            *p++ = (uint8_t)(seg1_size >> (8 * i));
        memcpy(p, seg1, seg1_size);
        p += seg1_size;
        if (seg2_size)
            memcpy(p, seg2, seg2_size);
    }
    put("open", name, buf, n, NULL, 0);
    free(buf);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* record/ and segment/ seeds from one segment file. */
static void cut_segment(const char *tag, const struct fmt_meta *meta, const uint8_t *seg, size_t size, int batches_max)
{
    struct fmt_segment_header h;
    if (fmt_segment_header_decode(seg, size, &h) != FMT_OK)
        die("segment header");
    uint64_t seed = stele_segment_seed(meta->log_id, h.seq, h.first_lsn);
    char name[64];
    uint8_t prefix[17] = {0};
    put_le64(prefix + 9, seed);
    snprintf(name, sizeof name, "%s-header", tag);
    prefix[0] = 1; /* segment target: mode 1 = header; its 8-byte seed follows */
    put("segment", name, prefix, 9, seg, STELE_SEGMENT_HEADER_SIZE);
    uint64_t off = STELE_SEGMENT_HEADER_SIZE, chain;
    for (int i = 0; i < batches_max && off + STELE_BATCH_HEADER_SIZE <= size; i++) {
        struct fmt_batch_header b;
        if (fmt_batch_header_decode(seg + off, size - off, seed, &b, &chain) != FMT_OK)
            break;
        put_le64(prefix + 1, b.first_lsn);
        prefix[0] = 1 | (uint8_t)(i % 2 ? 0 : 4) | (uint8_t)((b.record_count - 1) % 16) << 4;
        snprintf(name, sizeof name, "%s-batch-%d", tag, i);
        put("record", name, prefix, 17, seg + off, STELE_BATCH_HEADER_SIZE + b.stored_size);
        if (b.compression == FMT_COMPRESSION_NONE) {
            const uint8_t *raw = seg + off + STELE_BATCH_HEADER_SIZE;
            struct fmt_record r;
            size_t rsize;
            if (fmt_record_decode(raw, b.raw_size, b.first_lsn, seed, &r, &rsize) == FMT_OK) {
                prefix[0] = 0;
                snprintf(name, sizeof name, "%s-record-%d", tag, i);
                put("record", name, prefix, 17, raw, rsize);
            }
            if (b.record_count <= 16) {
                prefix[0] = (uint8_t)(2 | (b.record_count - 1) << 4);
                snprintf(name, sizeof name, "%s-body-%d", tag, i);
                put("record", name, prefix, 17, raw, b.raw_size);
            }
        }
        off += fmt_batch_frame_size(b.stored_size);
    }
    struct fmt_footer f;
    if (size >= 2 * STELE_BLOCK_SIZE && fmt_footer_decode(seg + size - STELE_FOOTER_SIZE, STELE_FOOTER_SIZE, seed, &f) == FMT_OK) {
        uint8_t fp[9];
        fp[0] = 2;
        put_le64(fp + 1, seed);
        snprintf(name, sizeof name, "%s-footer", tag);
        put("segment", name, fp, 9, seg + size - STELE_FOOTER_SIZE, STELE_FOOTER_SIZE);
    }
}

static void event_json_seeds(void)
{
    static const char *lines[] = {
        "{\"type\":\"payment.captured\",\"key\":\"pay-42\",\"data\":{\"amount\":100,\"currency\":\"EUR\"}}",
        "{\"kind\":\"intent\",\"type\":\"charge\",\"stream\":\"order-7\",\"expect_version\":0,\"actor\":\"api\","
        "\"event_time\":\"2026-11-28T18:19:23.5+01:00\",\"data_text\":\"charge card\"}",
        "{\"kind\":\"outcome\",\"outcome\":\"confirmed\",\"ref\":12,\"type\":\"charge.done\",\"data_b64\":\"AAECAw==\"}",
        "{\"kind\":\"compensation\",\"ref\":3,\"type\":\"refund\",\"event_time\":1764350363000000001,\"data\":[1,2.5,-0.0,"
        "1e300,\"x\\u0000y\",null,true,false,{\"nested\":{}}]}",
        "{\"lsn\":5,\"recorded_at\":\"2026-11-28T17:19:23.123456789Z\",\"event_time\":\"2026-11-28T17:19:23.123456789Z\","
        "\"kind\":\"event\",\"outcome\":null,\"type\":\"t\",\"stream\":\"s\",\"stream_version\":2,\"key\":\"k\","
        "\"fingerprint\":\"0123456789abcdef\",\"ref\":null,\"actor\":null,\"backfilled\":false,\"data\":\"\\u00e9\\ud83d\\ude00\"}",
        "{\"kind\":\"outcome\",\"outcome\":\"failed\",\"ref\":1,\"data\":null}",
        "{}",
        "2026-11-28T18:19:23.123456789-05:30",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "line-%zu", i);
        put("event_json", name, lines[i], strlen(lines[i]), NULL, 0);
    }
}

static void roundtrip_seeds(void)
{
    uint64_t s = 0x5eed5eed5eedULL;
    static const size_t sizes[] = {64, 300, 1500, 5000, 200};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t buf[5000];
        for (size_t j = 0; j < sizes[i]; j++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            buf[j] = (uint8_t)s;
        }
        buf[0] = (uint8_t)(i == 4 ? 0x80 : i * 3 + (i == 2 ? 8 : 0)); /* mode: count, zstd, blocks */
        char name[32];
        snprintf(name, sizeof name, "recipe-%zu", i);
        put("roundtrip", name, buf, sizes[i], NULL, 0);
    }
}

struct index_buf {
    uint8_t *p;
    size_t size;
};

static int index_write(void *ctx, const void *buf, size_t size)
{
    struct index_buf *b = ctx;
    uint8_t *p = realloc(b->p, b->size + size);
    if (!p)
        return STELE_ERR_NOMEM;
    memcpy(p + b->size, buf, size);
    b->p = p;
    b->size += size;
    return 0;
}

/* An index of n + 5 keys (events, pending and resolved intents; none for n
 * 0) with two streams and some compensations, saved as mode 0 and mode 3. */
static void index_seed(const char *name, unsigned n)
{
    struct idx *x = idx_new(1000);
    uint64_t covered = 0;
    if (!x)
        die("idx_new");
    for (unsigned i = 0; n > 0 && i < n + 5; i++) {
        char key[32];
        int len = snprintf(key, sizeof key, "order-%u-key", i);
        uint64_t lsn = 2 * (uint64_t)i + 1;
        struct idx_key v = {.lsn = lsn, .fingerprint = lsn * 0x9E3779B97F4A7C15ULL, .recorded_at_ns = 1000 + lsn,
                            .last_at_ns = 1000 + lsn, .kind = i % 3 ? STELE_KIND_INTENT : STELE_KIND_EVENT};
        if (i % 3 == 2) {
            v.outcome = i % 2 ? STELE_OUTCOME_CONFIRMED : STELE_OUTCOME_FAILED;
            v.outcome_lsn = lsn + 1;
            v.outcome_fingerprint = lsn;
            v.last_at_ns = 1001 + lsn;
        }
        const char *stream = i % 2 ? "odd" : "even";
        if (idx_key_put(x, key, (size_t)len, &v) != 0 || idx_stream_append(x, stream, strlen(stream), lsn) == 0 ||
            (i % 4 == 0 && idx_comp_put(x, lsn, lsn + 1, lsn ^ 0x55) != 0))
            die("building an index");
        covered = lsn + 1;
    }
    struct idx_ckpt_info info = {.log_id = "gen-corpus-index", .covered_lsn = covered,
                                 .covered_fingerprint = covered ? 0xc0ffee : 0,
                                 .covered_recorded_at_ns = covered ? 1000 + covered : 0, .window_ns = 1000,
                                 .written_at_ns = 5000};
    struct index_buf b = {0};
    if (idx_save(x, &info, index_write, &b) != 0)
        die("idx_save");
    for (uint8_t mode = 0; mode < 4; mode += 3) {
        char file[64];
        snprintf(file, sizeof file, "%s-mode%u", name, (unsigned)mode);
        put("index", file, &mode, 1, b.p, b.size);
    }
    free(b.p);
    idx_free(x);
}

/* dict/: a small dictionary trained on a log of its own, alone and with a
 * frame compressed with it (modes as fuzz_dict.c reads them), and a frame
 * whose dictionary file is empty (missing). */
static void dict_seeds(const char *dir)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.io_backend = STELE_IO_POSIX;
    o.compression = STELE_COMPRESSION_ZSTD;
    o.durability = STELE_DURABILITY_NONE;
    stele_log *log;
    if (stele_open(dir, &o, &log) != STELE_OK)
        die("open log C");
    static const char *cur[] = {"EUR", "USD", "GBP"};
    char buf[256];
    for (int i = 0; i < 400; i++) {
        int n = snprintf(buf, sizeof buf, "{\"id\":\"pay_%05d\",\"amount\":%d,\"currency\":\"%s\",\"status\":\"%s\"}",
                         i * 7919 % 100000, i * 31 % 5000, cur[i % 3], i % 5 ? "succeeded" : "failed");
        stele_event ev = text_event("payment.captured", NULL, NULL, NULL, STELE_CONTENT_JSON, buf, (size_t)n);
        append(log, &ev);
    }
    stele_dict_options d;
    stele_dict_options_init(&d);
    d.dict_size_max = 1024;
    stele_dict_info info;
    if (stele_dict_train(log, &d, &info) != STELE_OK)
        die("train a dictionary for log C");
    if (stele_close(log) != STELE_OK)
        die("close log C");
    size_t fsize;
    uint8_t *file = slurp(dir, "0000000001.dict", &fsize);
    int n = snprintf(buf, sizeof buf, "{\"id\":\"pay_00042\",\"amount\":1234,\"currency\":\"EUR\",\"status\":\"succeeded\"}");
    uint8_t frame[512];
    size_t fn = ZSTD_compress_usingDict(ZSTD_createCCtx(), frame, sizeof frame, buf, (size_t)n,
                                        file + STELE_DICT_HEADER_SIZE, fsize - STELE_DICT_HEADER_SIZE, 3);
    if (ZSTD_isError(fn))
        die("compress with the dictionary");
    uint8_t *in = malloc(3 + fsize + fn);
    if (!in)
        die("malloc");
    in[1] = (uint8_t)fsize;
    in[2] = (uint8_t)(fsize >> 8);
    memcpy(in + 3, file, fsize);
    memcpy(in + 3 + fsize, frame, fn);
    in[0] = 0;
    put("dict", "file", in, 3 + fsize, NULL, 0);
    in[0] = 2;
    put("dict", "file-frame", in, 3 + fsize + fn, NULL, 0);
    in[0] = 3;
    put("dict", "file-frame-fixup", in, 3 + fsize + fn, NULL, 0);
    uint8_t head[3] = {2, 0, 0};
    put("dict", "missing-file", head, 3, frame, fn);
    free(in);
    free(file);
}

static void index_seeds(void)
{
    index_seed("empty", 0);
    index_seed("small", 7);
    index_seed("keys-200", 200);
}

/* A read index file (SPEC.md §19) as the engine wrote it at a seal, saved
 * as mode 0 and mode 1 (checksum fixed up after mutation). */
static void segidx_seed(const char *name, const uint8_t *file, size_t size)
{
    for (uint8_t mode = 0; mode < 2; mode++) {
        char seed_name[64];
        snprintf(seed_name, sizeof seed_name, "%s-mode%u", name, (unsigned)mode);
        put("segidx", seed_name, &mode, 1, file, size);
    }
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUT_DIR\n");
        return 2;
    }
    out_dir = argv[1];
    mkdir(out_dir, 0755);
    char tmp[] = "/tmp/stele-gen-corpus.XXXXXX";
    if (!mkdtemp(tmp))
        die("mkdtemp");
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/a", tmp);
    snprintf(b, sizeof b, "%s/b", tmp);
    write_log_a(a);
    write_log_b(b);

    size_t meta_size, s1_size, s2_size, bmeta_size, b1_size;
    uint8_t *meta = slurp(a, "stele.meta", &meta_size);
    uint8_t *s1 = slurp(a, "00000000000000000001.seg", &s1_size);
    struct fmt_footer f;
    struct fmt_meta m, bm;
    if (fmt_meta_decode(meta, meta_size, &m) != FMT_OK)
        die("meta A");
    uint64_t seed1 = stele_segment_seed(m.log_id, 1, 1);
    if (fmt_footer_decode(s1 + s1_size - STELE_FOOTER_SIZE, STELE_FOOTER_SIZE, seed1, &f) != FMT_OK)
        die("segment 1 of log A is not sealed");
    char s2_name[64];
    snprintf(s2_name, sizeof s2_name, "%020llu.seg", (unsigned long long)(f.last_lsn + 1));
    uint8_t *s2 = slurp(a, s2_name, &s2_size);
    uint8_t *bmeta = slurp(b, "stele.meta", &bmeta_size);
    uint8_t *b1 = slurp(b, "00000000000000000001.seg", &b1_size);
    if (fmt_meta_decode(bmeta, bmeta_size, &bm) != FMT_OK)
        die("meta B");
    size_t s2_trim = trimmed(s2, s2_size), b1_trim = trimmed(b1, b1_size);

    /* open/: flags 1, 2 extend segment 1, 2; 4, 8 make them read-only. */
    put_open("two-segments", 2 | 4, meta, meta_size, s1, s1_size, s2, s2_trim);
    put_open("empty-log", 0, meta, meta_size, NULL, 0, NULL, 0);
    put_open("zstd-active", 1, bmeta, bmeta_size, b1, b1_trim, NULL, 0);
    put_open("interrupted-seal", 1, meta, meta_size, s1, s1_size, NULL, 0);
    put_open("sealed-not-read-only", 0, meta, meta_size, s1, s1_size, NULL, 0);
    uint8_t *torn = malloc(b1_trim + 4096);
    memcpy(torn, b1, b1_trim);
    memcpy(torn + b1_trim, b1 + STELE_SEGMENT_HEADER_SIZE, 100); /* a batch header and a bit, torn */
    torn[b1_trim + 70] ^= 0x5a;
    put_open("torn-tail", 1, bmeta, bmeta_size, torn, b1_trim + 100, NULL, 0);

    /* segment/ and record/. */
    uint8_t mp[9] = {0};
    put("segment", "meta", mp, 9, meta, STELE_META_SIZE);
    put("segment", "meta-zstd", mp, 9, bmeta, STELE_META_SIZE);
    mp[0] = 3;
    put("segment", "name", mp, 9, "00000000000000000001.seg", 24);
    cut_segment("a1", &m, s1, s1_size, 4);
    cut_segment("a2", &m, s2, s2_trim, 2);
    cut_segment("b1", &bm, b1, b1_trim, 2);

    event_json_seeds();
    roundtrip_seeds();
    index_seeds();
    size_t x1_size;
    uint8_t *x1 = slurp(a, "00000000000000000001.seg" STELE_SEGIDX_SUFFIX, &x1_size);
    segidx_seed("a1", x1, x1_size);
    free(x1);
    uint8_t empty[STELE_SEGIDX_HEADER_SIZE];
    struct fmt_segidx_header eh = {.segment_seed = seed1, .first_lsn = 7, .last_lsn = 6, .data_end = 4096,
                                   .footer_checksum = 0x1234};
    if (fmt_segidx_encode(&eh, NULL, empty, sizeof empty) != sizeof empty)
        die("segidx encode");
    segidx_seed("empty-segment", empty, sizeof empty);
    char c[4200];
    snprintf(c, sizeof c, "%s/c", tmp);
    dict_seeds(c);
    free(torn);
    free(meta);
    free(s1);
    free(s2);
    free(bmeta);
    free(b1);
    rm_dir(a);
    rm_dir(b);
    rm_dir(c);
    rmdir(tmp);
    return 0;
}
