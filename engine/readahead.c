/*
 * readahead.c - large reads for sequential scans (SPEC.md §19.5): an
 * iterator walking a segment reads the batches ahead of it in one pread of
 * up to READAHEAD_SIZE_MAX instead of one per batch, then checks each frame
 * from memory exactly as a single read would (batch_check). Only bytes of
 * batches the table lists and readers may see are read ahead: in the active
 * segment nothing past the visible LSN. A random read (stele_get, the first
 * batch of an iterator) still reads just its own frame.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define READAHEAD_SIZE_MAX (4u << 20)

void readahead_free(struct readahead *ra)
{
    free(ra->buf);
    memset(ra, 0, sizeof *ra);
}

/* Bytes of the consecutive batches from ref on, visible and at most
 * READAHEAD_SIZE_MAX together (but at least ref's frame). */
static size_t extent(stele_log *log, struct segment *seg, const struct batch_ref *ref)
{
    uint64_t vis = __atomic_load_n(&log->visible_lsn, __ATOMIC_ACQUIRE);
    size_t total = ref->frame_size;
    pthread_mutex_lock(&seg->index_lock);
    size_t lo = 0, hi = seg->index_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg->index[mid].first_lsn < ref->first_lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo + 1; i < seg->index_count; i++) {
        const struct batch_ref *r = &seg->index[i];
        if (r->first_lsn + r->record_count - 1 > vis || total + r->frame_size > READAHEAD_SIZE_MAX)
            break;
        total += r->frame_size;
    }
    pthread_mutex_unlock(&seg->index_lock);
    return total;
}

int batch_read_ahead(stele_log *log, struct segment *seg, const struct batch_ref *ref, struct batch_buf *b,
                     struct readahead *ra)
{
    int code;
    if (ra->seg == seg && ref->offset >= ra->off && ref->offset + ref->frame_size <= ra->off + ra->len) {
        segidx_count_read(log, 0);
        code = batch_check(log, seg, ref, ra->buf + (ref->offset - ra->off), b);
    } else if (ra->seg != seg || ref->offset != ra->next_off) {
        ra->seg = seg; /* not sequential (yet): just this frame */
        ra->len = 0;
        code = batch_read(log, seg, ref, b);
    } else {
        size_t want = extent(log, seg, ref);
        if (want > ra->cap) {
            uint8_t *p = realloc(ra->buf, want);
            if (!p)
                return err_set(STELE_ERR_NOMEM, "out of memory for a %zu-byte read of %s", want, seg->path);
            ra->buf = p;
            ra->cap = want;
        }
        int fd;
        ra->len = 0;
        if ((code = segment_fd_acquire(log, seg, &fd)) != STELE_OK)
            return code;
        int r = io_read_full(log->io, fd, ra->buf, want, ref->offset);
        segment_fd_release(log, seg);
        if (r < 0)
            return err_set(err_code_from_errno(-r) == STELE_ERR_NOT_FOUND ? STELE_ERR_IO : err_code_from_errno(-r),
                           "read batches at %s offset %llu (LSN %llu on): %s", seg->path,
                           (unsigned long long)ref->offset, (unsigned long long)ref->first_lsn,
                           r == -ENODATA ? "file ends early" : strerror(-r));
        __atomic_fetch_add(&log->rstats.read_bytes, want, __ATOMIC_RELAXED);
        segidx_count_read(log, 0);
        ra->off = ref->offset;
        ra->len = want;
        code = batch_check(log, seg, ref, ra->buf, b);
    }
    if (code == STELE_OK)
        ra->next_off = ref->offset + ref->frame_size;
    return code;
}
