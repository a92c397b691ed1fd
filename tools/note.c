/*
 * note.c - C2SP signed notes and tlog checkpoints (SPEC.md §20.7), with
 * libsodium's Ed25519 and SHA-256: the key formats of §20.7.1, the checkpoint
 * body of §20.7.2 and the note and its signature line of §20.7.3. Every byte of a
 * note or key file is hostile input: lengths are checked before use and a
 * malformed text is an error naming what is wrong, never an assert.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "cli.h"
#include "note.h"

#define EM_DASH_SPACE "\xe2\x80\x94 " /* U+2014 and a space: how a signature line starts */
#define SKEY_PREFIX "PRIVATE+KEY+"

_Static_assert(BASE64_ENCODED_SIZE(1 + NOTE_PUBLIC_KEY_SIZE) == 44, "a key's base64 is 44 characters");
_Static_assert(crypto_sign_PUBLICKEYBYTES == NOTE_PUBLIC_KEY_SIZE, "Ed25519 public keys are 32 bytes");
_Static_assert(crypto_sign_SEEDBYTES == NOTE_SEED_SIZE, "Ed25519 seeds are 32 bytes");
_Static_assert(crypto_sign_BYTES == NOTE_SIGNATURE_SIZE, "Ed25519 signatures are 64 bytes");
_Static_assert(crypto_hash_sha256_BYTES == STELE_HASH_SIZE, "SHA-256 is 32 bytes");

static int why_set(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int why_set(char *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, NOTE_WHY_SIZE, fmt, ap);
    va_end(ap);
    return -1;
}

int note_crypto_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

int note_key_name_valid(const char *name, size_t n)
{
    if (n == 0 || n > NOTE_KEY_NAME_SIZE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] <= 0x20 || (unsigned char)name[i] >= 0x7f || name[i] == '+')
            return 0;
    return 1;
}

int note_origin_valid(const char *origin, size_t n)
{
    if (n == 0 || n > NOTE_ORIGIN_SIZE_MAX || !cli_utf8_valid(origin, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)origin[i] < 0x20 || origin[i] == 0x7f)
            return 0;
    return 1;
}

void note_key_id(const char *name, const uint8_t public_key[NOTE_PUBLIC_KEY_SIZE], uint8_t out_id[4])
{
    crypto_hash_sha256_state s;
    uint8_t h[crypto_hash_sha256_BYTES];
    const uint8_t sep[2] = {'\n', NOTE_ALG_ED25519};
    crypto_hash_sha256_init(&s);
    crypto_hash_sha256_update(&s, (const uint8_t *)name, strlen(name));
    crypto_hash_sha256_update(&s, sep, sizeof sep);
    crypto_hash_sha256_update(&s, public_key, NOTE_PUBLIC_KEY_SIZE);
    crypto_hash_sha256_final(&s, h);
    memcpy(out_id, h, 4);
}

int note_key_generate(const char *name, struct note_key *out, char *why)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(name);
    if (!note_key_name_valid(name, n))
        return why_set(why, "key name '%s' is not 1 to %u printable ASCII characters without space or '+'", name,
                       NOTE_KEY_NAME_SIZE_MAX);
    memcpy(out->name, name, n + 1);
    randombytes_buf(out->seed, sizeof out->seed);
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_seed_keypair(out->public_key, sk, out->seed);
    sodium_memzero(sk, sizeof sk);
    note_key_id(out->name, out->public_key, out->id);
    out->has_seed = 1;
    return 0;
}

static void key_format(const struct note_key *k, int private_key, char *dst, size_t dst_capacity)
{
    uint8_t raw[1 + NOTE_PUBLIC_KEY_SIZE];
    char b64[BASE64_ENCODED_SIZE(sizeof raw) + 1], id[9];
    raw[0] = NOTE_ALG_ED25519;
    memcpy(raw + 1, private_key ? k->seed : k->public_key, NOTE_PUBLIC_KEY_SIZE);
    base64_encode(raw, sizeof raw, b64);
    cli_hex(k->id, 4, id);
    snprintf(dst, dst_capacity, "%s%s+%s+%s", private_key ? SKEY_PREFIX : "", k->name, id, b64);
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(b64, sizeof b64);
}

void note_key_format_public(const struct note_key *k, char *dst, size_t dst_capacity)
{
    key_format(k, 0, dst, dst_capacity);
}

void note_key_format_private(const struct note_key *k, char *dst, size_t dst_capacity)
{
    key_format(k, 1, dst, dst_capacity);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* name "+" 8 hex digits "+" base64(0x01 || 32 bytes), the part of a vkey or
 * skey after the skey's prefix. */
static int key_fields(const char *t, size_t n, struct note_key *out, uint8_t key[NOTE_PUBLIC_KEY_SIZE],
                      uint8_t stated_id[4], char *why)
{
    const char *plus = memchr(t, '+', n);
    if (!plus)
        return why_set(why, "no '+' after the key name");
    size_t name_size = (size_t)(plus - t);
    if (!note_key_name_valid(t, name_size))
        return why_set(why, "the key name is not 1 to %u printable ASCII characters without space or '+'",
                       NOTE_KEY_NAME_SIZE_MAX);
    memcpy(out->name, t, name_size);
    out->name[name_size] = '\0';
    const char *h = plus + 1, *end = t + n;
    if (end - h < 9 || h[8] != '+')
        return why_set(why, "the key id is not 8 hex digits followed by '+'");
    for (int i = 0; i < 4; i++) {
        int hi = hex_digit(h[2 * i]), lo = hex_digit(h[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return why_set(why, "the key id is not 8 hex digits followed by '+'");
        stated_id[i] = (uint8_t)(hi << 4 | lo);
    }
    const char *b64 = h + 9;
    size_t b64_size = (size_t)(end - b64), raw_size;
    uint8_t raw[64];
    if (b64_size != 44 || base64_decode(b64, b64_size, raw, &raw_size) != 0 || raw_size != 1 + NOTE_PUBLIC_KEY_SIZE)
        return why_set(why, "the key is not the base64 of 33 bytes (a type byte and a 32-byte key)");
    if (raw[0] != NOTE_ALG_ED25519) {
        sodium_memzero(raw, sizeof raw);
        return why_set(why, "signature type 0x%02x is not Ed25519 (0x01)", raw[0]);
    }
    memcpy(key, raw + 1, NOTE_PUBLIC_KEY_SIZE);
    sodium_memzero(raw, sizeof raw);
    return 0;
}

int note_key_parse(const char *text, size_t n, int want_private, struct note_key *out, char *why)
{
    memset(out, 0, sizeof *out);
    if (n > 0 && text[n - 1] == '\n')
        n--;
    if (memchr(text, '\n', n) || memchr(text, '\0', n))
        return why_set(why, "not one line");
    const size_t prefix = sizeof SKEY_PREFIX - 1;
    int is_private = n >= prefix && memcmp(text, SKEY_PREFIX, prefix) == 0;
    if (is_private != want_private)
        return why_set(why, want_private ? "not a private key (it does not start with " SKEY_PREFIX ")"
                                         : "a private key, not a public one (give the .pub file)");
    uint8_t key[NOTE_PUBLIC_KEY_SIZE], stated[4];
    if (key_fields(text + (is_private ? prefix : 0), n - (is_private ? prefix : 0), out, key, stated, why) != 0)
        return -1;
    if (is_private) {
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
        memcpy(out->seed, key, NOTE_SEED_SIZE);
        crypto_sign_seed_keypair(out->public_key, sk, out->seed);
        sodium_memzero(sk, sizeof sk);
        sodium_memzero(key, sizeof key);
        out->has_seed = 1;
    } else {
        memcpy(out->public_key, key, NOTE_PUBLIC_KEY_SIZE);
    }
    note_key_id(out->name, out->public_key, out->id);
    if (memcmp(out->id, stated, 4) != 0) {
        char got[9], want[9];
        cli_hex(stated, 4, got);
        cli_hex(out->id, 4, want);
        sodium_memzero(out, sizeof *out);
        return why_set(why, "the key id %s is not the one its name and key give (%s)", got, want);
    }
    return 0;
}

size_t note_checkpoint_body(const struct note_checkpoint *c, char *dst, size_t dst_capacity)
{
    char root[BASE64_ENCODED_SIZE(STELE_HASH_SIZE) + 1];
    base64_encode(c->root, STELE_HASH_SIZE, root);
    int n = snprintf(dst, dst_capacity, "%s\n%llu\n%s\n", c->origin, (unsigned long long)c->size, root);
    return n > 0 && (size_t)n < dst_capacity ? (size_t)n : 0;
}

size_t note_sign(const struct note_key *k, const char *body, size_t body_size, char *dst, size_t dst_capacity)
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES], blob[4 + NOTE_SIGNATURE_SIZE];
    char b64[BASE64_ENCODED_SIZE(sizeof blob) + 1];
    crypto_sign_seed_keypair(pk, sk, k->seed);
    memcpy(blob, k->id, 4);
    crypto_sign_detached(blob + 4, NULL, (const uint8_t *)body, body_size, sk);
    sodium_memzero(sk, sizeof sk);
    base64_encode(blob, sizeof blob, b64);
    int n = snprintf(dst, dst_capacity, "%.*s\n" EM_DASH_SPACE "%s %s\n", (int)body_size, body, k->name, b64);
    return n > 0 && (size_t)n < dst_capacity ? (size_t)n : 0;
}

/* A decimal u64 without sign, leading zeros (but "0") or anything else. */
static int parse_size(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* The body of a checkpoint note (SPEC.md §20.7.2): origin, size, root, then
 * extension lines, each non-empty; body ends in a newline. */
static int checkpoint_parse(const char *body, size_t n, struct note_checkpoint *out, char *why)
{
    const char *line[3], *p = body, *end = body + n;
    size_t len[3];
    for (int i = 0; i < 3; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return why_set(why, "the note's text is not a checkpoint: it has fewer than three lines (origin, "
                                "tree size, root hash)");
        line[i] = p, len[i] = (size_t)(nl - p), p = nl + 1;
    }
    if (!note_origin_valid(line[0], len[0]))
        return why_set(why, "the checkpoint's origin (line 1) is empty, longer than %u bytes, or holds a control "
                            "character", NOTE_ORIGIN_SIZE_MAX);
    if (parse_size(line[1], len[1], &out->size) != 0)
        return why_set(why, "the checkpoint's tree size (line 2) '%.*s' is not a decimal number without leading "
                            "zeros", (int)(len[1] > 40 ? 40 : len[1]), line[1]);
    size_t root_size;
    uint8_t root[48];
    if (len[2] != BASE64_ENCODED_SIZE(STELE_HASH_SIZE) || base64_decode(line[2], len[2], root, &root_size) != 0 ||
        root_size != STELE_HASH_SIZE)
        return why_set(why, "the checkpoint's root hash (line 3) is not the base64 of 32 bytes");
    for (const char *q = p; q < end;) { /* extension lines: allowed, not interpreted */
        const char *nl = memchr(q, '\n', (size_t)(end - q));
        if (nl == q)
            return why_set(why, "the checkpoint has an empty extension line");
        q = nl + 1;
    }
    memcpy(out->origin, line[0], len[0]);
    out->origin[len[0]] = '\0';
    memcpy(out->root, root, STELE_HASH_SIZE);
    return 0;
}

/* The last "\n\n" of note, or NULL. */
static const char *last_blank_line(const char *note, size_t n)
{
    for (size_t i = n - 1; i > 0; i--)
        if (note[i] == '\n' && note[i - 1] == '\n')
            return note + i - 1;
    return NULL;
}

/* One signature line [p, nl): "— name base64". *out_match is set when it is
 * k's (name and id), with the signature in sig. */
static int signature_line(const struct note_key *k, const char *p, const char *nl, int *out_match,
                          uint8_t sig[NOTE_SIGNATURE_SIZE], size_t *out_sig_size, char *why)
{
    const size_t dash = sizeof EM_DASH_SPACE - 1;
    if ((size_t)(nl - p) < dash || memcmp(p, EM_DASH_SPACE, dash) != 0)
        return why_set(why, "a line after the blank line does not start with an em dash (U+2014) and a space");
    const char *name = p + dash, *sp = memchr(name, ' ', (size_t)(nl - name));
    if (!sp || !note_key_name_valid(name, (size_t)(sp - name)))
        return why_set(why, "a signature line's key name is missing or holds a space or '+'");
    static uint8_t blob[NOTE_FILE_SIZE_MAX];
    size_t b64_size = (size_t)(nl - sp - 1), blob_size;
    if (base64_decode(sp + 1, b64_size, blob, &blob_size) != 0 || blob_size < 5)
        return why_set(why, "a signature line's signature is not base64 of a key id and a signature");
    size_t name_size = (size_t)(sp - name);
    *out_match = name_size == strlen(k->name) && memcmp(name, k->name, name_size) == 0 && memcmp(blob, k->id, 4) == 0;
    if (*out_match) {
        *out_sig_size = blob_size - 4;
        memcpy(sig, blob + 4, blob_size - 4 < NOTE_SIGNATURE_SIZE ? blob_size - 4 : NOTE_SIGNATURE_SIZE);
    }
    return 0;
}

enum note_verdict note_open(const struct note_key *k, const char *note, size_t n, struct note_checkpoint *out,
                            char *why)
{
    if (n == 0 || n > NOTE_FILE_SIZE_MAX || note[n - 1] != '\n')
        return why_set(why, "not a signed note: empty, larger than %u bytes, or not ending in a newline",
                       NOTE_FILE_SIZE_MAX), NOTE_MALFORMED;
    if (!cli_utf8_valid(note, n))
        return why_set(why, "not a signed note: not valid UTF-8"), NOTE_MALFORMED;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)note[i] < 0x20 && note[i] != '\n') || note[i] == 0x7f)
            return why_set(why, "not a signed note: byte %zu is a control character", i), NOTE_MALFORMED;
    const char *split = last_blank_line(note, n);
    if (!split)
        return why_set(why, "not a signed note: no blank line before the signatures"), NOTE_MALFORMED;
    size_t body_size = (size_t)(split - note) + 1;
    int found = 0;
    uint8_t sig[NOTE_SIGNATURE_SIZE];
    size_t sig_size = 0, lines = 0;
    for (const char *p = split + 2, *end = note + n; p < end; lines++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (lines == NOTE_SIGNATURE_COUNT_MAX)
            return why_set(why, "more than %u signature lines", NOTE_SIGNATURE_COUNT_MAX), NOTE_MALFORMED;
        int match = 0;
        uint8_t line_sig[NOTE_SIGNATURE_SIZE];
        size_t line_sig_size = 0;
        if (signature_line(k, p, nl, &match, line_sig, &line_sig_size, why) != 0)
            return NOTE_MALFORMED;
        if (match && !found) { /* the first line by this key decides (Go's note.Open) */
            memcpy(sig, line_sig, sizeof sig);
            sig_size = line_sig_size;
            found = 1;
        }
        p = nl + 1;
    }
    if (lines == 0)
        return why_set(why, "not a signed note: no signature line"), NOTE_MALFORMED;
    char id[9];
    cli_hex(k->id, 4, id);
    if (!found)
        return why_set(why, "no signature by key %s+%s", k->name, id), NOTE_UNSIGNED;
    if (sig_size != NOTE_SIGNATURE_SIZE ||
        crypto_sign_verify_detached(sig, (const uint8_t *)note, body_size, k->public_key) != 0)
        return why_set(why, "the signature by key %s+%s does not verify: the note is not the one this key signed",
                       k->name, id), NOTE_BAD_SIGNATURE;
    if (checkpoint_parse(note, body_size, out, why) != 0)
        return NOTE_MALFORMED;
    return NOTE_OK;
}

int note_file_read(const char *path, char *dst, size_t *out_size, char *why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        why_set(why, "%s: %s", path, strerror(e));
        return -e;
    }
    size_t n = 0;
    int rc = 0;
    for (;;) {
        ssize_t got = read(fd, dst + n, NOTE_FILE_SIZE_MAX + 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = -errno;
            why_set(why, "reading %s: %s", path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        n += (size_t)got;
        if (n > NOTE_FILE_SIZE_MAX) {
            rc = -EFBIG;
            why_set(why, "%s is larger than %u bytes: not a key or a note", path, NOTE_FILE_SIZE_MAX);
            break;
        }
    }
    close(fd);
    dst[n] = '\0';
    *out_size = n;
    return rc;
}
