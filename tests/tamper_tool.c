/*
 * tamper_tool.c - the attacker of tests/cli/test_checkpoint.sh, a test-only
 * executable (stele_tamper) that knows the on-disk format (SPEC.md §3-§7):
 *
 *   stele_tamper DIR LSN
 *
 * changes one payload byte of record LSN (the second-to-last, so that a JSON
 * payload such as {"n":123} stays one) and then recomputes everything
 * `stele verify` checks, as someone with write access to the disk and a copy
 * of SPEC.md would: the record's checksum, its batch's body checksum and
 * header checksum (the chain value), the prev_chain and header checksum of
 * every later batch of the log, the footer of every sealed segment from that
 * one on (chain, file hash, checksum) and the prev_chain and header checksum
 * of every later segment. The read index of each rewritten sealed segment
 * (<segment>.idx, derived and rebuilt when missing, §19) is removed. The tree
 * files (§20.3) are left alone: they are the evidence `stele audit` names the
 * LSN from.
 *
 * It works on uncompressed batches only and says so otherwise. Exit 0 when
 * the record was rewritten, 1 with a message on stderr otherwise.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checksum.h"

/* SPEC.md §3, §4, §7.1: the offsets this tool reads and writes. */
#define BLOCK 4096u
#define HDR_LOG_ID 24u
#define HDR_SEQ 40u
#define HDR_FIRST_LSN 48u
#define HDR_PREV_CHAIN 72u
#define HDR_ENCODED 128u
#define BATCH_HEADER 64u
#define BATCH_MAGIC 0x41425453u /* "STBA" */
#define FOOTER_MAGIC "STELEEND"
#define SEGMENTS_MAX 4096u

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

static void st64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "stele_tamper: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Rewrites record lsn in the batch at h (uncompressed), with its body
 * checksum; the caller recomputes the header. */
static int rewrite_record(uint8_t *h, uint64_t lsn, uint64_t seed)
{
    uint64_t first = ld64(h + 16);
    uint32_t count = ld32(h + 12), stored = ld32(h + 48);
    if (h[56] != 0)
        return die("LSN %llu is in a compressed batch: not supported", (unsigned long long)lsn);
    uint8_t *r = h + BATCH_HEADER;
    for (uint64_t l = first; l < lsn; l++)
        r += (ld32(r + 8) + 7u) / 8u * 8u;
    uint32_t rsize = ld32(r + 8), psize = ld32(r + 12);
    if (lsn >= first + count || psize < 2)
        return die("LSN %llu has a payload of fewer than 2 bytes", (unsigned long long)lsn);
    r[rsize - 2] ^= 0x01;
    st64(r, stele_checksum(r + 8, (rsize + 7u) / 8u * 8u - 8u, seed ^ lsn));
    st64(h + 40, stele_checksum(h + BATCH_HEADER, stored, seed));
    return 0;
}

/* One segment: with set_prev, its header's prev_chain becomes *chain; every
 * batch is chained anew from it (record lsn rewritten on the way, if here);
 * a sealed segment's footer follows. *chain is the segment's last chain
 * value on return; *found is set when the record was rewritten here. */
static int rechain(uint8_t *buf, size_t size, int set_prev, uint64_t *chain, uint64_t lsn, int *found,
                   int *sealed)
{
    if (size < 2 * BLOCK || memcmp(buf + 8, "STELESEG", 8) != 0)
        return die("a file is not a segment");
    uint64_t seed = stele_segment_seed(buf + HDR_LOG_ID, ld64(buf + HDR_SEQ), ld64(buf + HDR_FIRST_LSN));
    if (set_prev) {
        st64(buf + HDR_PREV_CHAIN, *chain);
        st64(buf, stele_checksum(buf + 8, HDR_ENCODED - 8, STELE_SEED_BASE));
    }
    *chain = ld64(buf + HDR_PREV_CHAIN);
    uint8_t *footer = buf + size - BLOCK;
    /* An active segment's last block is reserved for the footer and zero (§4). */
    *sealed = memcmp(footer + 8, FOOTER_MAGIC, 8) == 0 && ld64(footer + 40) == size - BLOCK;
    size_t end = *sealed ? (size_t)ld64(footer + 40) : size - BLOCK, off = BLOCK;
    while (off + BATCH_HEADER <= end && ld32(buf + off + 8) == BATCH_MAGIC) {
        uint8_t *h = buf + off;
        uint64_t first = ld64(h + 16);
        if (lsn >= first && lsn < first + ld32(h + 12)) {
            if (rewrite_record(h, lsn, seed) != 0)
                return 1;
            *found = 1;
        }
        st64(h + 32, *chain);
        st64(h, stele_checksum(h + 8, BATCH_HEADER - 8, seed));
        *chain = ld64(h);
        off += (BATCH_HEADER + ld32(h + 48) + BLOCK - 1) / BLOCK * BLOCK;
    }
    if (*sealed) {
        st64(footer + 48, *chain);
        st64(footer + 56, stele_checksum(buf, end, seed));
        st64(footer, stele_checksum(footer + 8, HDR_ENCODED - 8, seed));
    }
    return 0;
}

/* Reads, rechains and writes back one segment file (made writable for the
 * write, its mode restored after). */
static int tamper_file(const char *dir, const char *name, int set_prev, uint64_t *chain, uint64_t lsn, int *found)
{
    char path[4096], idx[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0)
        return die("%s: %s", path, strerror(errno));
    uint8_t *buf = malloc((size_t)st.st_size);
    int rc = !buf || pread(fd, buf, (size_t)st.st_size, 0) != st.st_size;
    close(fd);
    int sealed = 0;
    if (rc)
        rc = die("reading %s: %s", path, strerror(errno));
    else
        rc = rechain(buf, (size_t)st.st_size, set_prev, chain, lsn, found, &sealed);
    if (rc == 0) {
        chmod(path, st.st_mode | S_IWUSR);
        fd = open(path, O_WRONLY);
        if (fd < 0 || pwrite(fd, buf, (size_t)st.st_size, 0) != st.st_size || fsync(fd) != 0)
            rc = die("writing %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        chmod(path, st.st_mode);
    }
    snprintf(idx, sizeof idx, "%s.idx", path);
    if (rc == 0 && sealed && unlink(idx) != 0 && errno != ENOENT)
        rc = die("removing %s: %s", idx, strerror(errno));
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return die("usage: stele_tamper DIR LSN (got %d arguments)", argc - 1);
    const char *dir = argv[1];
    char *end;
    unsigned long long lsn = strtoull(argv[2], &end, 10);
    if (*end || lsn == 0)
        return die("LSN '%s' is not a positive number", argv[2]);
    DIR *d = opendir(dir);
    if (!d)
        return die("%s: %s", dir, strerror(errno));
    static char *names[SEGMENTS_MAX];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < SEGMENTS_MAX)
        if (strlen(de->d_name) == 24 && strcmp(de->d_name + 20, ".seg") == 0)
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], by_name);
    size_t first = 0; /* the segment holding lsn: the last whose first LSN is <= lsn */
    while (first + 1 < n && strtoull(names[first + 1], NULL, 10) <= lsn)
        first++;
    uint64_t chain = 0;
    int found = 0, rc = n == 0 ? die("%s holds no segment", dir) : 0;
    for (size_t i = first; i < n && rc == 0; i++)
        rc = tamper_file(dir, names[i], i > first, &chain, lsn, &found);
    if (rc == 0 && !found)
        rc = die("LSN %llu is in no batch of the log", lsn);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    return rc;
}
