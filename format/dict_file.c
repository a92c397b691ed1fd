/*
 * dict_file.c - encode and decode zstd dictionary files (SPEC.md §18.1, §18.3).
 */
#include "dict_file.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "endian.h"

#define DICT_MAGIC "STELEDIC"
#define DICT_VERSION 1u

size_t fmt_dict_encode(const struct fmt_dict_header *h, const uint8_t *dict, uint8_t *dst, size_t dst_capacity)
{
    size_t size = STELE_DICT_HEADER_SIZE + (size_t)h->dict_size;
    assert(h->dict_id >= 1);
    assert(h->dict_size >= STELE_DICT_SIZE_MIN && h->dict_size <= STELE_DICT_SIZE_MAX);
    assert(dst_capacity >= size);
    (void)dst_capacity;
    memcpy(dst + 8, DICT_MAGIC, 8);
    le32_store(dst + 16, DICT_VERSION);
    le32_store(dst + 20, h->dict_id);
    le32_store(dst + 24, h->dict_size);
    le32_store(dst + 28, 0);
    memcpy(dst + 32, h->log_id, STELE_LOG_ID_SIZE);
    le64_store(dst + 48, h->created_at_ns);
    le64_store(dst + 56, h->trained_through_lsn);
    if (dst + STELE_DICT_HEADER_SIZE != dict) /* the caller may have built it in place */
        memmove(dst + STELE_DICT_HEADER_SIZE, dict, h->dict_size);
    le64_store(dst, stele_checksum(dst + 8, size - 8, STELE_SEED_BASE));
    return size;
}

enum fmt_status fmt_dict_decode(const uint8_t *src, size_t src_size, struct fmt_dict_header *out,
                                const uint8_t **out_dict)
{
    /* D2: the size is bounded before anything else is looked at; D3: nothing
     * is believed before the checksum over every byte after it. */
    if (src_size < STELE_DICT_HEADER_SIZE + STELE_DICT_SIZE_MIN)
        return FMT_SHORT;
    if (src_size > STELE_DICT_FILE_SIZE_MAX)
        return FMT_BAD_FIELD;
    if (fmt_is_zero(src, STELE_DICT_HEADER_SIZE))
        return FMT_ZERO;
    if (le64_load(src) != stele_checksum(src + 8, src_size - 8, STELE_SEED_BASE))
        return FMT_BAD_CHECKSUM;
    if (memcmp(src + 8, DICT_MAGIC, 8) != 0)
        return FMT_BAD_MAGIC;
    if (le32_load(src + 16) != DICT_VERSION)
        return FMT_BAD_VERSION;
    struct fmt_dict_header h;
    h.dict_id = le32_load(src + 20);
    h.dict_size = le32_load(src + 24);
    memcpy(h.log_id, src + 32, STELE_LOG_ID_SIZE);
    h.created_at_ns = le64_load(src + 48);
    h.trained_through_lsn = le64_load(src + 56);
    if (le32_load(src + 28) != 0 || h.dict_id == 0 || h.dict_size < STELE_DICT_SIZE_MIN ||
        h.dict_size > STELE_DICT_SIZE_MAX || (size_t)h.dict_size != src_size - STELE_DICT_HEADER_SIZE)
        return FMT_BAD_FIELD;
    *out = h;
    *out_dict = src + STELE_DICT_HEADER_SIZE;
    return FMT_OK;
}

size_t fmt_dict_name(uint32_t dict_id, char *dst, size_t dst_capacity)
{
    assert(dst_capacity >= STELE_DICT_NAME_SIZE);
    int n = snprintf(dst, dst_capacity, "%010u.dict", (unsigned)dict_id);
    assert(n == (int)STELE_DICT_NAME_SIZE - 1);
    return (size_t)n;
}

int fmt_dict_name_parse(const char *name, uint32_t *out_id)
{
    uint64_t id = 0;
    for (int i = 0; i < 10; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        id = id * 10 + (uint64_t)(name[i] - '0');
    }
    if (strcmp(name + 10, ".dict") != 0 || id == 0 || id > STELE_DICT_ID_MAX)
        return 0;
    *out_id = (uint32_t)id;
    return 1;
}
