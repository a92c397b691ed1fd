/*
 * dict.h - zstd dictionaries of a log (SPEC.md §18): the files in the log
 * directory, the readers' cache of decompression dictionaries, and the
 * writer's compression dictionary.
 */
#ifndef STELE_ENGINE_DICT_H
#define STELE_ENGINE_DICT_H

#include <stddef.h>
#include <stdint.h>

#include "checksum.h"

struct batch_buf;
struct stele_log;

/* Decompression dictionaries by id, loaded from dir on first use and kept
 * until the cache is freed (dictionaries never change, so an entry never
 * goes stale). Thread-safe. A load that fails is not cached: a restored
 * file is found on the next read. */
struct dict_cache;
struct dict_cache *dict_cache_new(const char *dir, const uint8_t log_id[STELE_LOG_ID_SIZE]);
void dict_cache_free(struct dict_cache *c);

/* Decompresses b's stored body, compressed with dictionary b->header.dict_id,
 * into b->raw (sized by the caller to raw_size) and points b->body at it.
 * A dictionary that is missing or fails a check (SPEC.md §18.3) is CORRUPT
 * naming the dictionary file and the batch (path, offset), and sets
 * b->dict_error; a frame that does not decompress is CORRUPT. */
int dict_body_decompress(struct batch_buf *b, const uint8_t *stored, const char *path, uint64_t offset);

/* The highest dictionary id in dir (0 = none) and how many files there are. */
int dict_scan(const char *dir, uint32_t *out_newest, uint32_t *out_count);

/* SPEC.md §18.2: batches with more raw bytes than this are compressed
 * without the dictionary (zstd's cut-off for referencing a dictionary's
 * tables instead of copying them, at levels 3 and 4). An engine choice, not
 * a format limit: readers take a dictionary on a batch of any size. */
#define DICT_BATCH_RAW_SIZE_MAX (16u * 1024u)

/* Writer handles of compressing logs: loads the newest dictionary (if any)
 * for the writer. CORRUPT when that file fails a check. */
int dict_writer_open(struct stele_log *log);
/* The writer thread: the compression dictionary to use now (taking over one
 * that stele_dict_train made since), and its id; NULL and 0 for none. */
const void *dict_writer_current(struct stele_log *log, uint32_t *out_id);
void dict_writer_close(struct stele_log *log);

#endif
