/*
 * webhook_sign.c - Standard Webhooks secrets and signatures (see
 * webhook_sign.h; SPEC.md §22.2).
 */
#include "webhook_sign.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base64.h"

#define SECRET_PREFIX "whsec_"

int webhook_secret_parse(const char *text, size_t text_size, uint8_t *key, size_t *out_size, char *err,
                         size_t err_capacity)
{
    while (text_size && (text[text_size - 1] == '\n' || text[text_size - 1] == '\r' ||
                         text[text_size - 1] == ' ' || text[text_size - 1] == '\t'))
        text_size--;
    size_t prefix = strlen(SECRET_PREFIX);
    if (text_size < prefix || memcmp(text, SECRET_PREFIX, prefix) != 0) {
        snprintf(err, err_capacity, "a secret is \"%s\" followed by base64", SECRET_PREFIX);
        return -1;
    }
    text += prefix;
    text_size -= prefix;
    uint8_t buf[BASE64_ENCODED_SIZE(WEBHOOK_KEY_SIZE_MAX) / 4 * 3];
    size_t n = 0;
    if (text_size > BASE64_ENCODED_SIZE(WEBHOOK_KEY_SIZE_MAX) || base64_decode(text, text_size, buf, &n) != 0) {
        snprintf(err, err_capacity, "what follows \"%s\" is not base64 of at most %u bytes", SECRET_PREFIX,
                 WEBHOOK_KEY_SIZE_MAX);
        return -1;
    }
    if (n < WEBHOOK_KEY_SIZE_MIN || n > WEBHOOK_KEY_SIZE_MAX) {
        snprintf(err, err_capacity, "the key is %zu bytes; %u to %u are accepted", n, WEBHOOK_KEY_SIZE_MIN,
                 WEBHOOK_KEY_SIZE_MAX);
        return -1;
    }
    memcpy(key, buf, n);
    sodium_memzero(buf, sizeof buf);
    *out_size = n;
    return 0;
}

int webhook_sign(const uint8_t *key, size_t key_size, const char *id, uint64_t timestamp, const char *body,
                 size_t body_size, char *dst)
{
    if (sodium_init() < 0)
        return -1;
    char ts[24];
    int ts_size = snprintf(ts, sizeof ts, "%" PRIu64, timestamp);
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, key, key_size);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)id, strlen(id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, (unsigned long long)ts_size);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, body_size);
    crypto_auth_hmacsha256_final(&st, mac);
    memcpy(dst, "v1,", 3);
    base64_encode(mac, sizeof mac, dst + 3);
    return 0;
}
