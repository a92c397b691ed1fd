/*
 * keymap.c - open-addressing hash map with linear probing and full-key
 * comparison (see keymap.h). Keys live in one growing arena, so a slot is a
 * fixed 48 bytes plus the key itself.
 */
#include "keymap.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static uint64_t default_hash(const void *key, size_t key_size)
{
    return XXH3_64bits(key, key_size);
}

int keymap_init(struct keymap *m)
{
    memset(m, 0, sizeof *m);
    m->slot_count = 1024;
    m->slots = calloc(m->slot_count, sizeof *m->slots);
    m->hash_fn = default_hash;
    return m->slots ? 0 : -1;
}

void keymap_free(struct keymap *m)
{
    free(m->slots);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

static uint64_t hash_of(struct keymap *m, const void *key, size_t key_size)
{
    uint64_t h = m->hash_fn(key, key_size);
    return h ? h : 1; /* 0 marks an empty slot */
}

static struct keymap_slot *find(struct keymap *m, uint64_t h, const void *key, size_t key_size)
{
    size_t mask = m->slot_count - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        struct keymap_slot *s = &m->slots[i];
        if (s->hash == 0)
            return s;
        if (s->hash == h && s->key_size == key_size && memcmp(m->arena + s->key_off, key, key_size) == 0)
            return s;
    }
}

static int grow_table(struct keymap *m)
{
    size_t n = m->slot_count * 2;
    struct keymap_slot *slots = calloc(n, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->slot_count; i++) {
        struct keymap_slot *s = &m->slots[i];
        if (s->hash == 0)
            continue;
        size_t j = (size_t)s->hash & (n - 1);
        while (slots[j].hash != 0)
            j = (j + 1) & (n - 1);
        slots[j] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->slot_count = n;
    return 0;
}

struct keymap_value *keymap_get(struct keymap *m, const void *key, size_t key_size)
{
    struct keymap_slot *s = find(m, hash_of(m, key, key_size), key, key_size);
    return s->hash ? &s->value : NULL;
}

struct keymap_value *keymap_put(struct keymap *m, const void *key, size_t key_size,
                                const struct keymap_value *value)
{
    uint64_t h = hash_of(m, key, key_size);
    struct keymap_slot *s = find(m, h, key, key_size);
    if (s->hash) {
        s->value = *value;
        return &s->value;
    }
    if ((m->used + 1) * 10 > m->slot_count * 7) {
        if (grow_table(m) != 0)
            return NULL;
        s = find(m, h, key, key_size);
    }
    if (m->arena_size + key_size > m->arena_cap) {
        size_t cap = m->arena_cap ? m->arena_cap * 2 : 65536;
        while (cap < m->arena_size + key_size)
            cap *= 2;
        uint8_t *a = realloc(m->arena, cap);
        if (!a)
            return NULL;
        m->arena = a;
        m->arena_cap = cap;
    }
    if (key_size)
        memcpy(m->arena + m->arena_size, key, key_size);
    s->hash = h;
    s->key_off = m->arena_size;
    s->key_size = (uint8_t)key_size;
    s->value = *value;
    m->arena_size += key_size;
    m->used++;
    return &s->value;
}
