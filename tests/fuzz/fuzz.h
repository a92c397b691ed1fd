/*
 * fuzz.h - what the fuzz targets share (RELIABILITY G10).
 *
 * Each fuzz_<name>.c defines LLVMFuzzerTestOneInput and is built twice:
 * with clang and libFuzzer when STELE_FUZZ=ON, and in every build as
 * replay_<name> (replay.c supplies main), a ctest test that runs every file
 * of corpus/<name>/ and regressions/<name>/ through the target once.
 *
 * A target treats its input as hostile bytes and the code under test as the
 * suspect: besides the sanitizers, FUZZ_CHECK states what must hold for any
 * input (a decoder that accepts bytes re-encodes them exactly, a round trip
 * gives back what went in, ...) and aborts with a message when it does not.
 */
#ifndef STELE_FUZZ_H
#define STELE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Little-endian loads from input bytes that may be short (missing bytes read as 0). */
static inline uint64_t fuzz_le(const uint8_t *p, size_t avail, size_t width)
{
    uint64_t v = 0;
    for (size_t i = 0; i < width && i < avail; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A cursor over the input for targets that build structures from it. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline uint64_t fuzz_take(struct fuzz_in *in, size_t width)
{
    uint64_t v = fuzz_le(in->p, in->n, width);
    size_t used = width < in->n ? width : in->n;
    in->p += used;
    in->n -= used;
    return v;
}

/* Up to want bytes of the input (fewer when it runs out); *out_size says how many. */
static inline const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t want, size_t *out_size)
{
    const uint8_t *p = in->p;
    size_t n = want < in->n ? want : in->n;
    in->p += n;
    in->n -= n;
    *out_size = n;
    return p;
}

#endif
