/*
 * inspect.c - stele_segment_inspect: a read-only walk of one segment file
 * for the tools that show or copy the log's files (stele dump, stele backup;
 * SPEC.md §17.2, §17.3).
 *
 * It shares only the format decoders with the rest of the engine and needs
 * no log handle: the segment seed comes from the file's own header (log id,
 * seq, first LSN), so a copy of a segment can be inspected where it lies.
 * Each batch is checked in the order of SPEC.md §8.5 (header, continuity of
 * LSN and chain, frame inside the limit, body checksum, zero padding,
 * decompression, every record) before anything of it is shown, so the
 * callback never sees bytes that fail a check. The walk does not classify
 * what it stops at (torn tail or damage): that is stele_verify's job.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct walker {
    const char *path;
    int fd;
    uint64_t seed;
    uint64_t limit;          /* batches end at or before here */
    uint64_t next_lsn;
    uint64_t chain;
    struct batch_buf b;
    stele_inspect_fn fn;
    void *ctx;
    stele_batch_info info;
    int stopped;             /* fn asked to stop */
};

static void note(stele_segment_info *out, const char *fmt, const char *what)
{
    snprintf(out->stop_note, sizeof out->stop_note, fmt, what);
}

/* Reads len bytes at off; 0, or -1 with errno (ENODATA: the file ends). */
static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
    ssize_t got = posix_pread(NULL, fd, buf, len, off);
    if (got < 0)
        return -1;
    if ((size_t)got != len) {
        errno = ENODATA;
        return -1;
    }
    return 0;
}

static int show_record(void *ctx, uint64_t lsn, const struct fmt_record *r, size_t offset)
{
    struct walker *w = ctx;
    stele_record rec;
    record_from_fmt(r, lsn, &rec);
    uint64_t size = STELE_RECORD_HEADER_SIZE + (uint64_t)r->type_size + r->stream_size + r->key_size +
                    r->actor_size + r->payload_size;
    if (w->fn(w->ctx, &w->info, &rec, offset, size) != 0)
        w->stopped = 1;
    return w->stopped;
}

/* Checks the batch at off; returns its frame size, or 0 with the reason in
 * out->stop_note (or -1 cast: a read error, errno set). */
static uint64_t walk_batch(struct walker *w, uint64_t off, stele_segment_info *out, int *out_errno)
{
    uint8_t hb[STELE_BATCH_HEADER_SIZE];
    struct fmt_batch_header h;
    uint64_t chain;
    if (off + sizeof hb > w->limit) {
        note(out, "%s", off >= w->limit ? "end of the batch area" : "no room for a batch header before the limit");
        return 0;
    }
    if (read_full(w->fd, hb, sizeof hb, off) != 0) {
        *out_errno = errno;
        return 0;
    }
    enum fmt_status st = fmt_batch_header_decode(hb, sizeof hb, w->seed, &h, &chain);
    if (st != FMT_OK) {
        note(out, "batch header %s", fmt_status_str(st));
        return 0;
    }
    uint64_t frame = fmt_batch_frame_size(h.stored_size);
    const char *bad = h.first_lsn != w->next_lsn ? "batch LSN does not continue the segment"
                      : h.prev_chain != w->chain ? "hash chain broken (batch does not follow its predecessor)"
                      : off + frame > w->limit ? "batch extends past the limit" : NULL;
    if (bad) {
        note(out, "%s", bad);
        return 0;
    }
    if (w->b.frame_cap < frame) {
        uint8_t *p = realloc(w->b.frame, frame);
        if (!p) {
            *out_errno = ENOMEM;
            return 0;
        }
        w->b.frame = p;
        w->b.frame_cap = frame;
    }
    if (read_full(w->fd, w->b.frame, frame, off) != 0) {
        *out_errno = errno;
        return 0;
    }
    w->b.header = h;
    const uint8_t *stored = w->b.frame + STELE_BATCH_HEADER_SIZE;
    st = fmt_batch_body_check(&h, stored, frame - STELE_BATCH_HEADER_SIZE, w->seed);
    if (st == FMT_OK && !fmt_is_zero(stored + h.stored_size, frame - STELE_BATCH_HEADER_SIZE - h.stored_size))
        st = FMT_BAD_FIELD;
    if (st != FMT_OK) {
        note(out, "batch body %s", fmt_status_str(st));
        return 0;
    }
    if (batch_body_open(&w->b, stored, w->path, off) != STELE_OK) {
        note(out, "%s", stele_errmsg());
        return 0;
    }
    uint64_t bad_lsn = 0;
    st = fmt_batch_records(&h, w->b.body, h.raw_size, w->seed, NULL, NULL, &bad_lsn);
    if (st != FMT_OK) {
        note(out, "record %s", fmt_status_str(st));
        return 0;
    }
    w->info = (stele_batch_info){.offset = off, .frame_size = frame, .first_lsn = h.first_lsn,
                                 .record_count = h.record_count, .stored_size = h.stored_size,
                                 .raw_size = h.raw_size, .compression = (stele_compression)h.compression, .dict_id = h.dict_id,
                                 .durable_lsn = h.durable_lsn, .chain = chain};
    if (w->fn && w->fn(w->ctx, &w->info, NULL, 0, 0) != 0)
        w->stopped = 1;
    if (w->fn && !w->stopped)
        (void)fmt_batch_records(&h, w->b.body, h.raw_size, w->seed, show_record, w, &bad_lsn);
    w->next_lsn += h.record_count;
    w->chain = chain;
    return frame;
}

/* The header; sets the seed, the LSN and chain the first batch continues. */
static int read_header(struct walker *w, stele_segment_info *out)
{
    uint8_t block[STELE_SEGMENT_HEADER_SIZE];
    struct fmt_segment_header h;
    if (read_full(w->fd, block, sizeof block, 0) != 0)
        return errno == ENODATA ? err_set(STELE_ERR_CORRUPT, "%s offset 0: shorter than a segment header", w->path)
                                : err_sys(errno, "read", w->path);
    enum fmt_status st = fmt_segment_header_decode(block, sizeof block, &h);
    if (st == FMT_BAD_VERSION)
        return err_set(STELE_ERR_FORMAT, "%s offset 0: unsupported format version", w->path);
    if (st != FMT_OK)
        return err_set(STELE_ERR_CORRUPT, "%s offset 0: segment header %s", w->path, fmt_status_str(st));
    out->seq = h.seq;
    out->first_lsn = h.first_lsn;
    out->segment_size = h.segment_size;
    out->created_at_ns = h.created_at_ns;
    out->prev_chain = h.prev_chain;
    out->last_lsn = h.first_lsn - 1;
    out->data_end = STELE_SEGMENT_HEADER_SIZE;
    out->durable_end = STELE_SEGMENT_HEADER_SIZE;
    w->seed = stele_segment_seed(h.log_id, h.seq, h.first_lsn);
    w->next_lsn = h.first_lsn;
    w->chain = h.prev_chain;
    /* Batches naming a dictionary find it beside the segment (SPEC.md §18). */
    char dir[4096];
    const char *slash = strrchr(w->path, '/');
    int n = slash ? snprintf(dir, sizeof dir, "%.*s", (int)(slash - w->path), w->path)
                  : snprintf(dir, sizeof dir, ".");
    if (n < 0 || (size_t)n >= sizeof dir)
        return err_set(STELE_ERR_INVALID, "segment path too long: %s", w->path);
    if (!(w->b.dicts = dict_cache_new(slash == w->path ? "/" : dir, h.log_id)))
        return err_set(STELE_ERR_NOMEM, "out of memory inspecting %s", w->path);
    return STELE_OK;
}

/* Sealed when the last block is a valid footer whose data_end matches (the
 * test stele_verify and recovery apply, SPEC.md §8.4 F1-F8). */
static void read_footer(struct walker *w, stele_segment_info *out, struct fmt_footer *f)
{
    uint8_t block[STELE_FOOTER_SIZE];
    uint64_t size = out->file_size;
    out->sealed = size >= 2 * STELE_BLOCK_SIZE && size % STELE_BLOCK_SIZE == 0 && size <= out->segment_size &&
                  read_full(w->fd, block, sizeof block, size - STELE_FOOTER_SIZE) == 0 &&
                  fmt_footer_decode(block, sizeof block, w->seed, f) == FMT_OK &&
                  f->data_end == size - STELE_FOOTER_SIZE && f->last_lsn + 1 == out->first_lsn + f->record_count;
}

/* Walks every batch up to w->limit, keeping out's counts. Returns OK or an
 * error code for a failed read. */
static int walk_batches(struct walker *w, stele_segment_info *out)
{
    uint64_t off = STELE_SEGMENT_HEADER_SIZE, frame;
    int e = 0;
    note(out, "%s", "end of the batch area");
    while (!w->stopped && (frame = walk_batch(w, off, out, &e)) != 0) {
        off += frame;
        out->batch_count++;
        out->record_count += w->info.record_count;
        out->last_lsn = w->next_lsn - 1;
        out->data_end = off;
        if (w->info.durable_lsn > out->durable_lsn)
            out->durable_lsn = w->info.durable_lsn;
        note(out, "%s", "end of the batch area");
    }
    if (e == ENODATA)
        note(out, "%s", "end of file");
    else if (e == ENOMEM)
        return err_set(STELE_ERR_NOMEM, "out of memory reading %s", w->path);
    else if (e)
        return err_sys(e, "read", w->path);
    if (strncmp(out->stop_note, "batch header all zero", 21) == 0)
        note(out, "%s", "all zero (end of written data)");
    return STELE_OK;
}

/* durable_end: after the last batch all of whose records are durable. The
 * batches are walked again from their headers only (cheap). */
static int find_durable_end(struct walker *w, stele_segment_info *out)
{
    uint64_t off = STELE_SEGMENT_HEADER_SIZE;
    uint8_t hb[STELE_BATCH_HEADER_SIZE];
    for (uint64_t i = 0; i < out->batch_count; i++) {
        struct fmt_batch_header h;
        uint64_t chain;
        if (read_full(w->fd, hb, sizeof hb, off) != 0)
            return err_sys(errno == ENODATA ? EIO : errno, "read", w->path);
        if (fmt_batch_header_decode(hb, sizeof hb, w->seed, &h, &chain) != FMT_OK)
            return err_set(STELE_ERR_CORRUPT, "%s offset %llu: batch header changed during inspection", w->path,
                           (unsigned long long)off);
        if (h.first_lsn + h.record_count - 1 > out->durable_lsn)
            break;
        off += fmt_batch_frame_size(h.stored_size);
        out->durable_end = off;
    }
    return STELE_OK;
}

int stele_segment_inspect(const char *path, stele_inspect_fn fn, void *ctx, stele_segment_info *out)
{
    err_clear();
    stele_segment_info info;
    memset(&info, 0, sizeof info);
    if (!path)
        return err_set(STELE_ERR_INVALID, "segment inspect: no path given");
    struct walker w = {.path = path, .fn = fn, .ctx = ctx};
    struct stat st;
    struct fmt_footer f;
    int code;
    w.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (w.fd < 0)
        return err_sys(errno, "open", path);
    if (fstat(w.fd, &st) != 0) {
        code = err_sys(errno, "stat", path);
        goto out;
    }
    info.file_size = (uint64_t)st.st_size;
    if ((code = read_header(&w, &info)) != STELE_OK)
        goto out;
    read_footer(&w, &info, &f);
    /* SPEC.md §8.5 B1: batches end at data_end in a sealed segment, before
     * the footer block in an active one. */
    w.limit = info.sealed ? f.data_end : info.segment_size - STELE_FOOTER_SIZE;
    if (w.limit > info.file_size)
        w.limit = info.file_size;
    if ((code = walk_batches(&w, &info)) != STELE_OK)
        goto out;
    if (info.sealed) {
        info.sealed_at_ns = f.sealed_at_ns;
        if (!w.stopped && (info.data_end != f.data_end || info.last_lsn != f.last_lsn || w.chain != f.chain)) {
            code = err_set(STELE_ERR_CORRUPT, "%s offset %llu (LSN %llu): sealed segment: %s", path,
                           (unsigned long long)info.data_end, (unsigned long long)(info.last_lsn + 1),
                           info.data_end != f.data_end ? info.stop_note : "the footer disagrees with the batches");
            goto out;
        }
        /* Sealing synced every batch before the footer (SPEC.md §7.3). */
        info.durable_lsn = info.last_lsn;
        info.durable_end = info.data_end;
        note(&info, "%s", w.stopped ? "stopped by the caller" : "footer");
    } else {
        if (info.durable_lsn > info.last_lsn)
            info.durable_lsn = info.last_lsn; /* a watermark from before this segment's end */
        code = find_durable_end(&w, &info);
        if (w.stopped)
            note(&info, "%s", "stopped by the caller");
    }
out:
    close(w.fd);
    dict_cache_free(w.b.dicts);
    batch_buf_free(&w.b);
    if (out)
        *out = info;
    return code;
}
