/*
 * note.h - C2SP signed notes and tlog checkpoints (SPEC.md §20.7): Ed25519 key
 * files in the signed-note key formats (the `vkey` and `skey` of Go's
 * golang.org/x/mod/sumdb/note), a note's signature line, and the checkpoint
 * body (origin, tree size, base64 root). Used by `stele keygen`, `stele
 * checkpoint` and `stele audit`; pure functions over caller buffers, except
 * note_file_read, which reads a small file.
 *
 * Every function that can fail returns 0 or -1 with a reason (a sentence, no
 * trailing period) in the caller's char[NOTE_WHY_SIZE].
 */
#ifndef STELE_TOOLS_NOTE_H
#define STELE_TOOLS_NOTE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "stele.h"

#define NOTE_WHY_SIZE 256u
#define NOTE_KEY_NAME_SIZE_MAX 255u    /* SPEC.md §20.7.1: a key name's bytes */
#define NOTE_ORIGIN_SIZE_MAX 255u      /* SPEC.md §20.7.2: an origin's bytes */
#define NOTE_FILE_SIZE_MAX 65536u      /* a key file or a note, whole */
#define NOTE_SIGNATURE_COUNT_MAX 100u  /* signature lines a note may carry (Go's limit) */
#define NOTE_PUBLIC_KEY_SIZE 32u
#define NOTE_SEED_SIZE 32u
#define NOTE_SIGNATURE_SIZE 64u
#define NOTE_ALG_ED25519 0x01u         /* the signature type byte of Ed25519 */

/* A public key (the verifier) and, for a private key file, the seed. */
struct note_key {
    char name[NOTE_KEY_NAME_SIZE_MAX + 1];
    uint8_t id[4];                     /* SHA-256(name || 0x0A || 0x01 || public)[0, 4) */
    uint8_t public_key[NOTE_PUBLIC_KEY_SIZE];
    uint8_t seed[NOTE_SEED_SIZE];      /* private keys only; zero otherwise */
    int has_seed;
};

/* The checkpoint a note's body states. */
struct note_checkpoint {
    char origin[NOTE_ORIGIN_SIZE_MAX + 1];
    uint64_t size;
    uint8_t root[STELE_HASH_SIZE];
};

/* 0 after libsodium is initialised (once per process), -1 if it cannot be. */
int note_crypto_init(void);

/* 1 when name[0, n) is a key name stele accepts (SPEC.md §20.7.1). */
int note_key_name_valid(const char *name, size_t n);
/* 1 when origin[0, n) is an origin stele accepts (SPEC.md §20.7.2). */
int note_origin_valid(const char *origin, size_t n);

/* A new key pair named name (note_key_name_valid), from libsodium's RNG. */
int note_key_generate(const char *name, struct note_key *out, char *why);
/* The key's id from its name and public key (SPEC.md §20.7.1). */
void note_key_id(const char *name, const uint8_t public_key[NOTE_PUBLIC_KEY_SIZE], uint8_t out_id[4]);

/* Formats the key as its vkey (public) or skey (private) line, no newline.
 * dst_capacity >= NOTE_KEY_TEXT_SIZE. */
#define NOTE_KEY_TEXT_SIZE (12u + NOTE_KEY_NAME_SIZE_MAX + 1u + 8u + 1u + 48u + 1u)
void note_key_format_public(const struct note_key *k, char *dst, size_t dst_capacity);
void note_key_format_private(const struct note_key *k, char *dst, size_t dst_capacity);

/* Parses a key file's text (one line, one trailing newline allowed): a vkey
 * when want_private is 0, an skey when 1. The key id it states must be the
 * one its name and key give. */
int note_key_parse(const char *text, size_t text_size, int want_private, struct note_key *out, char *why);

/* The checkpoint body: "origin\nsize\nbase64(root)\n". Returns its length,
 * or 0 when dst_capacity is too small. */
size_t note_checkpoint_body(const struct note_checkpoint *c, char *dst, size_t dst_capacity);

/* Signs body (which ends in a newline) with k: writes body, a blank line and
 * the signature line "— name base64(id || signature)\n" to dst. Returns the
 * note's length, or 0 when dst_capacity is too small. */
size_t note_sign(const struct note_key *k, const char *body, size_t body_size, char *dst, size_t dst_capacity);

/* How note_open ended. */
enum note_verdict {
    NOTE_OK = 0,
    NOTE_MALFORMED,     /* not a signed note, or not a checkpoint (why says what) */
    NOTE_UNSIGNED,      /* no signature line by this key (name and id) */
    NOTE_BAD_SIGNATURE, /* this key's signature line does not verify */
};

/* Checks note[0, note_size) is a signed note with a valid signature by k
 * (the first line with k's name and id decides, as in Go's note.Open;
 * lines by other keys are ignored), then parses its body as a checkpoint
 * into *out (extension lines after the root are allowed and ignored). */
enum note_verdict note_open(const struct note_key *k, const char *note, size_t note_size, struct note_checkpoint *out,
                            char *why);

/* Reads path whole (at most NOTE_FILE_SIZE_MAX bytes) into dst (capacity
 * NOTE_FILE_SIZE_MAX + 1, NUL-terminated). Returns 0, or -errno (-EFBIG when
 * too large) with why set. */
int note_file_read(const char *path, char *dst, size_t *out_size, char *why);

/* {"origin","tree_size","root"} with the root in hex, as `stele checkpoint
 * --verify` and `stele audit` print it (cmd_checkpoint.c); NULL when out of
 * memory. */
json_t *cli_checkpoint_json(const struct note_checkpoint *c);

#endif
