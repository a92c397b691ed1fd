/*
 * base64.h - standard base64 (RFC 4648 §4, with padding) for the data_b64
 * field of event objects.
 */
#ifndef STELE_TOOLS_BASE64_H
#define STELE_TOOLS_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Characters base64_encode writes for n bytes, NUL not included. */
#define BASE64_ENCODED_SIZE(n) ((((n) + 2) / 3) * 4)

/* Encodes src into dst (capacity >= BASE64_ENCODED_SIZE(src_size) + 1) and
 * NUL-terminates it. Returns the number of characters written. */
size_t base64_encode(const void *src, size_t src_size, char *dst);

/* Decodes text (padding required, no whitespace) into dst, whose capacity
 * must be >= text_size / 4 * 3. Returns 0 and the byte count in *out_size,
 * or -1 when text is not canonical base64. */
int base64_decode(const char *text, size_t text_size, uint8_t *dst, size_t *out_size);

#endif
