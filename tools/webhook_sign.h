/*
 * webhook_sign.h - Standard Webhooks signatures for `stele deliver`
 * (standardwebhooks.com; SPEC.md §22.2).
 *
 * A secret is "whsec_" followed by the standard base64 (RFC 4648 §4) of
 * WEBHOOK_KEY_SIZE_MIN..WEBHOOK_KEY_SIZE_MAX random bytes, the key. A
 * request's webhook-signature header is "v1," followed by the base64 of
 * HMAC-SHA256(key, id "." timestamp "." body), where id is the webhook-id
 * header and timestamp the webhook-timestamp header (Unix seconds, decimal).
 * The HMAC is libsodium's crypto_auth_hmacsha256.
 */
#ifndef STELE_TOOLS_WEBHOOK_SIGN_H
#define STELE_TOOLS_WEBHOOK_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define WEBHOOK_KEY_SIZE_MIN 16u
#define WEBHOOK_KEY_SIZE_MAX 64u
/* "v1," + base64 of 32 bytes (44 characters) + NUL. */
#define WEBHOOK_SIGNATURE_SIZE 48u

/* Decodes text[0, text_size) ("whsec_" + base64; trailing whitespace is
 * ignored) into key (capacity WEBHOOK_KEY_SIZE_MAX). Returns 0 and the key's
 * size in *out_size, or -1 with why in err (capacity err_capacity). */
int webhook_secret_parse(const char *text, size_t text_size, uint8_t *key, size_t *out_size, char *err,
                         size_t err_capacity);

/* Writes the webhook-signature value of (id, timestamp, body) into dst
 * (capacity >= WEBHOOK_SIGNATURE_SIZE). Returns 0, or -1 when libsodium
 * could not be initialised. */
int webhook_sign(const uint8_t *key, size_t key_size, const char *id, uint64_t timestamp, const char *body,
                 size_t body_size, char *dst);

#endif
