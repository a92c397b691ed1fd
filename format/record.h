/*
 * record.h - the record frame (SPEC.md §5): a 64-byte header, the variable
 * fields (type, stream, key, actor, payload) and zero padding to 8 bytes.
 * Pure: encode into a caller buffer, decode into a view that points into it.
 */
#ifndef STELE_FORMAT_RECORD_H
#define STELE_FORMAT_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "limits.h"
#include "status.h"

/* SPEC.md §5.1: values of the kind, outcome and content bytes. */
enum { FMT_KIND_EVENT = 1, FMT_KIND_INTENT = 2, FMT_KIND_OUTCOME = 3, FMT_KIND_COMPENSATION = 4 };
enum { FMT_OUTCOME_NONE = 0, FMT_OUTCOME_CONFIRMED = 1, FMT_OUTCOME_FAILED = 2 };
enum { FMT_CONTENT_JSON = 1, FMT_CONTENT_TEXT = 2, FMT_CONTENT_BINARY = 3 };
enum { FMT_FLAG_BACKFILLED = 1u };

struct fmt_record {
    uint64_t recorded_at_ns;
    uint64_t event_time_ns;
    uint64_t stream_version; /* 0 exactly when the record has no stream */
    uint64_t fingerprint;
    uint64_t ref;            /* LSN referred to, 0 = none; always below the record's own LSN */
    uint8_t kind;
    uint8_t outcome;
    uint8_t content;
    uint8_t flags;
    const uint8_t *type;
    const uint8_t *stream;
    const uint8_t *key;
    const uint8_t *actor;
    const uint8_t *payload;
    uint8_t type_size;
    uint8_t stream_size;
    uint8_t key_size;
    uint8_t actor_size;
    uint32_t payload_size;
};

/* Encoded size of r, padding included. */
size_t fmt_record_size(const struct fmt_record *r);

/* Checks the fields a writer supplies (kinds, outcome, content, flags, ref, stream version). */
enum fmt_status fmt_record_check(const struct fmt_record *r, uint64_t lsn);

/* Writes r at dst; dst_capacity must be >= fmt_record_size(r). The checksum is
 * seeded with seed ^ lsn so a record is only valid at its own LSN in its own segment. */
size_t fmt_record_encode(const struct fmt_record *r, uint64_t lsn, uint64_t seed, uint8_t *dst,
                         size_t dst_capacity);

/* Decodes the record at src (hostile bytes); on FMT_OK *out points into src and
 * *out_size is the encoded size including padding. */
enum fmt_status fmt_record_decode(const uint8_t *src, size_t src_size, uint64_t lsn, uint64_t seed,
                                  struct fmt_record *out, size_t *out_size);

/* SPEC.md §5.2: the request fingerprint over kind, outcome, type, stream, ref and payload. */
uint64_t fmt_fingerprint(const struct fmt_record *r);

#endif
