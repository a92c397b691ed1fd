/*
 * keymap.h - an open-addressing hash map from short byte strings (idempotency
 * keys, stream names; at most 255 bytes) to a small fixed value. Full keys are
 * stored and compared, so a hash collision can never make two keys one
 * (RELIABILITY S30). Used by the writer thread only; no locking.
 */
#ifndef STELE_KEYMAP_H
#define STELE_KEYMAP_H

#include <stddef.h>
#include <stdint.h>

struct keymap_value {
    uint64_t lsn;            /* the record that holds the key / the stream's last record */
    uint64_t fingerprint;    /* idempotency: the request's fingerprint */
    uint64_t recorded_at_ns; /* idempotency: when the original was recorded */
    uint64_t version;        /* streams: the current stream version */
};

struct keymap_slot {
    uint64_t hash;           /* 0 = empty */
    uint64_t key_off;        /* offset of the key bytes in the arena */
    uint8_t key_size;
    struct keymap_value value;
};

struct keymap {
    struct keymap_slot *slots;
    size_t slot_count;       /* a power of two */
    size_t used;
    uint8_t *arena;
    size_t arena_size;
    size_t arena_cap;
    uint64_t (*hash_fn)(const void *key, size_t key_size); /* tests force collisions with this */
};

int keymap_init(struct keymap *m);
void keymap_free(struct keymap *m);
/* Returns the value for key or NULL. */
struct keymap_value *keymap_get(struct keymap *m, const void *key, size_t key_size);
/* Inserts or overwrites; returns the stored value or NULL when out of memory. */
struct keymap_value *keymap_put(struct keymap *m, const void *key, size_t key_size,
                                const struct keymap_value *value);

#endif
