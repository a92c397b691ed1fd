/*
 * dict_file.h - zstd dictionary files (SPEC.md §18). Pure: bytes in caller
 * buffers in, structs out, and back.
 *
 * A dictionary file is a 64-byte header followed by the dictionary exactly
 * as zstd's ZDICT trainer produced it. One file per dictionary id, written
 * once and never changed; batches name the id they were compressed with.
 */
#ifndef STELE_FORMAT_DICT_FILE_H
#define STELE_FORMAT_DICT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "checksum.h"
#include "status.h"

/* SPEC.md §18.1: the header, and the dictionary sizes a file may hold. The
 * maximum bounds what a reader allocates for a file it has not checked yet. */
#define STELE_DICT_HEADER_SIZE 64u
#define STELE_DICT_SIZE_MIN 256u
#define STELE_DICT_SIZE_MAX (1024u * 1024u)
#define STELE_DICT_FILE_SIZE_MAX (STELE_DICT_HEADER_SIZE + STELE_DICT_SIZE_MAX)
/* SPEC.md §18.1: dictionary ids are 1, 2, 3 ... and fit the batch header's u32;
 * the file name is the id as 10 decimal digits then ".dict". */
#define STELE_DICT_ID_MAX UINT32_MAX
#define STELE_DICT_NAME_SIZE 16u /* 15 characters and the NUL */

_Static_assert(STELE_DICT_SIZE_MIN < STELE_DICT_SIZE_MAX, "dictionary size bounds");
_Static_assert(STELE_DICT_FILE_SIZE_MAX < UINT32_MAX, "dictionary file sizes fit u32");

struct fmt_dict_header {
    uint32_t dict_id;           /* >= 1; equals the id in the file name */
    uint32_t dict_size;         /* bytes of dictionary after the header */
    uint8_t log_id[STELE_LOG_ID_SIZE];
    uint64_t created_at_ns;
    uint64_t trained_through_lsn; /* newest LSN the training sample came from */
};

/* Writes the header and copies the dictionary after it; returns the file's
 * size (64 + dict_size). dst_capacity must be at least that. */
size_t fmt_dict_encode(const struct fmt_dict_header *h, const uint8_t *dict, uint8_t *dst, size_t dst_capacity);

/* Checks a whole dictionary file of src_size bytes (SPEC.md §18.3 D2-D7):
 * on FMT_OK *out holds the header and *out_dict points at the dictionary
 * inside src. FMT_BAD_VERSION for a version other than 1. */
enum fmt_status fmt_dict_decode(const uint8_t *src, size_t src_size, struct fmt_dict_header *out,
                                const uint8_t **out_dict);

/* "%010u.dict"; dst_capacity >= STELE_DICT_NAME_SIZE. */
size_t fmt_dict_name(uint32_t dict_id, char *dst, size_t dst_capacity);
/* Parses a dictionary file name; 0 when name is not one (or names id 0). */
int fmt_dict_name_parse(const char *name, uint32_t *out_id);

#endif
