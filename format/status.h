/*
 * status.h - what a format decoder says about the bytes it was given.
 *
 * Decoders never assert on input and never trust a length before checking it;
 * they return one of these, and the engine turns it into a public error code
 * with the file and offset attached.
 */
#ifndef STELE_FORMAT_STATUS_H
#define STELE_FORMAT_STATUS_H

enum fmt_status {
    FMT_OK = 0,
    FMT_ZERO = 1,         /* the structure's bytes are all zero: never written */
    FMT_SHORT = 2,        /* fewer bytes than the structure needs */
    FMT_BAD_MAGIC = 3,    /* not this structure */
    FMT_BAD_CHECKSUM = 4, /* checksum mismatch */
    FMT_BAD_VERSION = 5,  /* a format version this code does not read */
    FMT_BAD_FIELD = 6,    /* checksum fine, but a field is out of range */
};

#include <stddef.h>
#include <stdint.h>

const char *fmt_status_str(enum fmt_status status);

/* True when buf[0, size) is all zero bytes. */
int fmt_is_zero(const uint8_t *buf, size_t size);

#endif
