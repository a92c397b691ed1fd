/*
 * base64.c - standard base64 with padding (RFC 4648 §4).
 *
 * The decoder is strict: the length must be a multiple of four, padding only
 * at the end, and the unused bits of the last group must be zero, so every
 * byte string has exactly one accepted text and a mangled field is reported
 * instead of silently decoded into something else.
 */
#include "base64.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encode(const void *src, size_t src_size, char *dst)
{
    const uint8_t *s = src;
    size_t o = 0, i = 0;
    for (; i + 3 <= src_size; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        dst[o++] = alphabet[v >> 18 & 63];
        dst[o++] = alphabet[v >> 12 & 63];
        dst[o++] = alphabet[v >> 6 & 63];
        dst[o++] = alphabet[v & 63];
    }
    if (i < src_size) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < src_size ? (uint32_t)s[i + 1] << 8 : 0);
        dst[o++] = alphabet[v >> 18 & 63];
        dst[o++] = alphabet[v >> 12 & 63];
        dst[o++] = i + 1 < src_size ? alphabet[v >> 6 & 63] : '=';
        dst[o++] = '=';
    }
    dst[o] = '\0';
    return o;
}

/* The 6-bit value of c, or -1. */
static int sextet(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int base64_decode(const char *text, size_t text_size, uint8_t *dst, size_t *out_size)
{
    if (text_size % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < text_size; i += 4) {
        int last = i + 4 == text_size;
        int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=' && text[i + 3] == '=') : 0;
        uint32_t v = 0;
        for (int k = 0; k < 4 - pad; k++) {
            int x = sextet(text[i + k]);
            if (x < 0)
                return -1;
            v = v << 6 | (uint32_t)x;
        }
        v <<= 6 * pad;
        /* Non-canonical: bits that padding should have left zero are set. */
        if ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0))
            return -1;
        dst[o++] = (uint8_t)(v >> 16);
        if (pad < 2)
            dst[o++] = (uint8_t)(v >> 8);
        if (pad < 1)
            dst[o++] = (uint8_t)v;
    }
    *out_size = o;
    return 0;
}
