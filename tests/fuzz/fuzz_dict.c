/*
 * fuzz_dict.c - hostile dictionary files (SPEC.md §18.1, §18.3) and hostile
 * zstd frames decompressed with them: fmt_dict_decode, then the engine's
 * path for a batch that names a dictionary (dict.c: the file read from a
 * log directory, checked, turned into a ZSTD_DDict, the frame decompressed
 * with output bounded by the batch's raw_size).
 *
 * Input: byte 0 selects the mode, bytes [1, 3) are the file's length L
 * (little-endian, cut to what is there), then L bytes of dictionary file,
 * then the stored body of a batch (a zstd frame).
 *   mode & 1: fix up the file's checksum, so that mutations reach the
 *             magic, version, size, id and zstd checks behind it.
 *   mode & 2: the batch's raw_size is the frame's declared content size
 *             (when it declares one of at most 1 MiB), else 4096.
 * The file is written as 0000000001.dict in a scratch directory under
 * $STELE_FUZZ_TMP (or /dev/shm, $TMPDIR, /tmp); the batch names id 1 and
 * the log id is the file's own (bytes [32, 48)), so the id and log checks
 * pass unless the input breaks them.
 * What must hold: an accepted file re-encodes to exactly its bytes, with
 * its size in bounds; the batch decompresses to exactly raw_size bytes or
 * fails with CORRUPT, FORMAT or NOMEM, and a failure caused by the
 * dictionary (not by the frame) names the dictionary file.
 */
#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "checksum.h"
#include "dict_file.h"
#include "internal.h"
#include "stele.h"

static char scratch[4096];
static char file_path[4200];

static void cleanup(void)
{
    if (scratch[0]) {
        unlink(file_path);
        rmdir(scratch);
    }
}

static void setup(void)
{
    if (scratch[0])
        return;
    const char *base = getenv("STELE_FUZZ_TMP");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(scratch, sizeof scratch, "%s/stele-fuzz-dict.XXXXXX", base);
    FUZZ_CHECK(mkdtemp(scratch) != NULL, "mkdtemp %s: %s", scratch, strerror(errno));
    snprintf(file_path, sizeof file_path, "%s/0000000001.dict", scratch);
    atexit(cleanup);
}

static void decode(const uint8_t *file, size_t n)
{
    struct fmt_dict_header h;
    const uint8_t *dict;
    enum fmt_status st = fmt_dict_decode(file, n, &h, &dict);
    if (st != FMT_OK)
        return;
    FUZZ_CHECK(n >= STELE_DICT_HEADER_SIZE + STELE_DICT_SIZE_MIN && n <= STELE_DICT_FILE_SIZE_MAX &&
                   h.dict_size == n - STELE_DICT_HEADER_SIZE && h.dict_id >= 1 && dict == file + STELE_DICT_HEADER_SIZE,
               "accepted a dictionary file with fields out of range");
    uint8_t *again = malloc(n);
    FUZZ_CHECK(again != NULL, "out of memory");
    FUZZ_CHECK(fmt_dict_encode(&h, dict, again, n) == n, "encode size");
    FUZZ_CHECK(memcmp(again, file, n) == 0, "re-encoding the decoded dictionary file gives other bytes");
    free(again);
}

static void batch(const uint8_t *file, size_t n, const uint8_t *frame, size_t frame_size, int declared)
{
    int fd = open(file_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    FUZZ_CHECK(fd >= 0, "create %s: %s", file_path, strerror(errno));
    FUZZ_CHECK(write(fd, file, n) == (ssize_t)n, "write %s", file_path);
    close(fd);
    uint8_t log_id[STELE_LOG_ID_SIZE] = {0};
    if (n >= 48)
        memcpy(log_id, file + 32, sizeof log_id);
    struct dict_cache *c = dict_cache_new(scratch, log_id);
    FUZZ_CHECK(c != NULL, "out of memory");
    uint32_t raw = 4096;
    unsigned long long size = ZSTD_getFrameContentSize(frame, frame_size);
    if (declared && size <= 1024u * 1024u)
        raw = (uint32_t)size;
    struct batch_buf b = {0};
    b.dicts = c;
    b.header = (struct fmt_batch_header){.record_count = 1, .first_lsn = 1, .stored_size = (uint32_t)frame_size,
                                         .raw_size = raw, .compression = FMT_COMPRESSION_ZSTD, .dict_id = 1};
    int rc = batch_body_open(&b, frame, "fuzz.seg", 4096);
    FUZZ_CHECK(rc == STELE_OK || rc == STELE_ERR_CORRUPT || rc == STELE_ERR_FORMAT || rc == STELE_ERR_NOMEM,
               "batch_body_open returned %d: %s", rc, stele_errmsg());
    if (getenv("STELE_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_dict: file %zu bytes (%s), frame %zu bytes, raw_size %u: %s: %s\n", n,
                fmt_status_str(fmt_dict_decode(file, n, &(struct fmt_dict_header){0}, &(const uint8_t *){NULL})),
                frame_size, raw, stele_strerror(rc), rc ? stele_errmsg() : "decompressed");
    if (rc == STELE_OK)
        FUZZ_CHECK(b.body == b.raw && b.raw_cap >= raw, "decompressed body not in the bounded buffer");
    if (rc != STELE_OK && b.dict_error)
        FUZZ_CHECK(strstr(stele_errmsg(), "0000000001.dict") != NULL, "dictionary failure without the file: %s",
                   stele_errmsg());
    batch_buf_free(&b);
    dict_cache_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 3)
        return 0;
    uint8_t mode = data[0];
    size_t n = (size_t)data[1] | (size_t)data[2] << 8;
    if (n > size - 3)
        n = size - 3;
    uint8_t *file = malloc(n ? n : 1);
    FUZZ_CHECK(file != NULL, "out of memory");
    memcpy(file, data + 3, n);
    if ((mode & 1) && n >= 8) {
        uint64_t c = stele_checksum(file + 8, n - 8, STELE_SEED_BASE);
        for (int i = 0; i < 8; i++)
            file[i] = (uint8_t)(c >> (8 * i));
    }
    decode(file, n);
    batch(file, n, data + 3 + n, size - 3 - n, mode & 2);
    free(file);
    return 0;
}
