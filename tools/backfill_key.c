/*
 * backfill_key.c - backfill's line rules and derived keys (backfill_key.h,
 * SPEC.md §17.1).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "backfill_key.h"

#define DERIVED_KEY_DOMAIN "stele backfill key v1"

static void put_u64(XXH3_state_t *st, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    XXH3_128bits_update(st, b, sizeof b);
}

static void put_field(XXH3_state_t *st, const void *p, size_t n)
{
    put_u64(st, n);
    if (n)
        XXH3_128bits_update(st, p, n);
}

/* SPEC.md §17.1: XXH3-128 (seed 0) over the domain string and, each as an
 * 8-byte little-endian length then the bytes, type, stream and payload, with
 * event_time_ns (8 bytes LE) and the content byte between stream and payload.
 * The payload is what would be stored: "data" re-serialised compactly (so
 * whitespace does not matter, member order does), data_text's text, or
 * data_b64's decoded bytes. Actor is left out, as in the fingerprint. */
static int derive_key(const stele_event *ev, char dst[BACKFILL_KEY_SIZE])
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return -1;
    XXH3_128bits_reset(st);
    XXH3_128bits_update(st, DERIVED_KEY_DOMAIN, sizeof DERIVED_KEY_DOMAIN);
    put_field(st, ev->type, ev->type_size);
    put_field(st, ev->stream, ev->stream_size);
    put_u64(st, ev->event_time_ns);
    uint8_t content = (uint8_t)ev->content;
    XXH3_128bits_update(st, &content, 1);
    put_field(st, ev->payload, ev->payload_size);
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    snprintf(dst, BACKFILL_KEY_SIZE, "bf-%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
    return 0;
}

/* What backfill adds to event_in_parse's rules (see cmd_backfill.c). */
static const char *check_line(const stele_event *ev, int derive_keys)
{
    if (ev->kind != 0 && ev->kind != STELE_KIND_EVENT)
        return "backfill imports events only (kind \"event\"): intents, outcomes and compensations refer to "
               "LSNs of another log";
    if (ev->ref != 0)
        return "\"ref\" refers to an LSN of another log: backfill imports events without it";
    if (ev->has_expect_version)
        return "\"expect_version\" is not taken by backfill (a re-run must not depend on the stream's version)";
    if (ev->event_time_ns == 0)
        return "\"event_time\" is required: a backfilled event keeps the time it happened";
    if (ev->key_size == 0 && !derive_keys)
        return "no \"key\": every backfilled event needs one so that a re-run appends nothing twice "
               "(or run with --derive-keys)";
    return NULL;
}

int backfill_parse_line(const char *text, size_t size, int derive_keys, uint64_t payload_size_max,
                        struct event_in *in, char key[BACKFILL_KEY_SIZE], char err[EVENT_ERR_SIZE])
{
    if (event_in_parse(text, size, in, err) != 0)
        return -1;
    const char *why = check_line(&in->ev, derive_keys);
    if (!why && in->ev.payload_size > payload_size_max) {
        snprintf(err, EVENT_ERR_SIZE, "the payload is %zu bytes, more than the log's maximum of %" PRIu64,
                 in->ev.payload_size, payload_size_max);
        event_in_release(in);
        return -1;
    }
    if (why) {
        snprintf(err, EVENT_ERR_SIZE, "%s", why);
        event_in_release(in);
        return -1;
    }
    in->ev.kind = STELE_KIND_EVENT;
    in->ev.flags |= STELE_FLAG_BACKFILLED;
    if (in->ev.key_size == 0) {
        if (derive_key(&in->ev, key) != 0) {
            snprintf(err, EVENT_ERR_SIZE, "out of memory");
            event_in_release(in);
            return -1;
        }
        in->ev.key = key;
        in->ev.key_size = strlen(key);
    }
    return 0;
}

int backfill_same_request(const stele_record *r, const stele_event *ev)
{
    return r->kind == STELE_KIND_EVENT && r->outcome == STELE_OUTCOME_NONE && r->ref == 0 &&
           r->type_size == ev->type_size && r->stream_size == ev->stream_size &&
           r->payload_size == ev->payload_size && (!ev->type_size || !memcmp(r->type, ev->type, ev->type_size)) &&
           (!ev->stream_size || !memcmp(r->stream, ev->stream, ev->stream_size)) &&
           (!ev->payload_size || !memcmp(r->payload, ev->payload, ev->payload_size));
}
