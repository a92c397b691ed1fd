/*
 * cmd_checkpoint.c - `stele checkpoint DIR --key NAME.key [--origin O]`
 * prints a signed checkpoint of the log's Merkle tree (SPEC.md §20.7: a C2SP
 * tlog-checkpoint in a C2SP signed note, signed with Ed25519);
 * `stele checkpoint --verify FILE --public-key NAME.pub [--origin O]` checks
 * one and prints what it commits to, as JSON.
 *
 * The size and root signed are the tree of every durable record
 * (stele_tree_root); the default origin is "stele/" and the log id in hex,
 * which names this log and no other. checkpoint_load is the verification
 * `stele audit` runs before it trusts a checkpoint.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "note.h"

enum { OPT_KEY = 256, OPT_ORIGIN, OPT_VERIFY, OPT_PUBLIC_KEY };

static const struct option checkpoint_options[] = {
    {"key", required_argument, NULL, OPT_KEY},
    {"origin", required_argument, NULL, OPT_ORIGIN},
    {"verify", required_argument, NULL, OPT_VERIFY},
    {"public-key", required_argument, NULL, OPT_PUBLIC_KEY},
    CLI_COMMON_OPTIONS,
};

/* Reads and parses a key file; exit code 0 or that of the failure. */
static int key_load(const struct cli_ctx *ctx, const char *path, int want_private, struct note_key *out)
{
    static char text[NOTE_FILE_SIZE_MAX + 1];
    char why[NOTE_WHY_SIZE];
    size_t n;
    if (note_crypto_init() != 0) /* before any other libsodium call */
        return cli_error(ctx, CLI_EXIT_FAILURE, "libsodium failed to initialise");
    int rc = note_file_read(path, text, &n, why);
    if (rc != 0)
        return cli_error(ctx, rc == -ENOENT ? CLI_EXIT_NOT_FOUND : rc == -EFBIG ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE,
                         "reading the %s key: %s", want_private ? "private" : "public", why);
    rc = note_key_parse(text, n, want_private, out, why);
    sodium_memzero(text, n);
    if (rc != 0)
        return cli_usage_error(ctx, "%s is not a stele %s key (SPEC.md §20.7.1): %s", path,
                               want_private ? "private" : "public", why);
    return 0;
}

int cli_checkpoint_load(const struct cli_ctx *ctx, const char *note_path, const char *pub_path,
                        const char *origin, struct note_checkpoint *out)
{
    struct note_key k;
    int rc = key_load(ctx, pub_path, 0, &k);
    if (rc != 0)
        return rc;
    static char note[NOTE_FILE_SIZE_MAX + 1];
    char why[NOTE_WHY_SIZE];
    size_t n;
    rc = note_file_read(note_path, note, &n, why);
    if (rc != 0)
        return cli_error(ctx, rc == -ENOENT ? CLI_EXIT_NOT_FOUND : rc == -EFBIG ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE,
                         "reading the checkpoint: %s", why);
    switch (note_open(&k, note, n, out, why)) {
    case NOTE_OK:
        break;
    case NOTE_MALFORMED:
        return cli_usage_error(ctx, "%s: %s (SPEC.md §20.7.3)", note_path, why);
    default: /* unsigned by this key, or a signature that does not verify */
        return cli_error(ctx, CLI_EXIT_CORRUPT, "%s: %s", note_path, why);
    }
    if (origin && strcmp(origin, out->origin) != 0)
        return cli_error(ctx, CLI_EXIT_CORRUPT, "%s: the checkpoint is of origin '%s', not '%s'", note_path,
                         out->origin, origin);
    return 0;
}

json_t *cli_checkpoint_json(const struct note_checkpoint *c)
{
    char root[2 * STELE_HASH_SIZE + 1];
    cli_hex(c->root, STELE_HASH_SIZE, root);
    return json_pack("{s:s, s:I, s:s}", "origin", c->origin, "tree_size", (json_int_t)c->size, "root", root);
}

static int sign(const struct cli_ctx *ctx, const char *dir, const char *key_path, const char *origin)
{
    struct note_key k;
    int rc = key_load(ctx, key_path, 1, &k);
    if (rc != 0)
        return rc;
    stele_log *log;
    if ((rc = cli_open_read_only(ctx, dir, &log)) != 0)
        goto out;
    struct note_checkpoint c;
    stele_stats st;
    int code = stele_tree_root(log, &c.size, c.root);
    if (code != STELE_OK) {
        rc = cli_fail(ctx, code, "computing the tree root of %s", dir);
    } else if ((code = stele_stats_get(log, &st)) != STELE_OK) {
        rc = cli_fail(ctx, code, "reading the log id of %s", dir);
    } else {
        char id[2 * sizeof st.log_id + 1];
        cli_hex(st.log_id, sizeof st.log_id, id);
        snprintf(c.origin, sizeof c.origin, "%s%s", origin ? "" : "stele/", origin ? origin : id);
        char body[NOTE_ORIGIN_SIZE_MAX + 128], note[sizeof body + NOTE_KEY_NAME_SIZE_MAX + 128];
        size_t body_size = note_checkpoint_body(&c, body, sizeof body);
        size_t note_size = body_size ? note_sign(&k, body, body_size, note, sizeof note) : 0;
        if (note_size == 0)
            rc = cli_error(ctx, CLI_EXIT_FAILURE, "the checkpoint does not fit its buffer");
        else
            fwrite(note, 1, note_size, stdout); /* main reports a failed write */
    }
    stele_close(log); /* read-only: nothing to flush */
out:
    sodium_memzero(&k, sizeof k);
    return rc;
}

static int verify(const struct cli_ctx *ctx, const char *note_path, const char *pub_path, const char *origin)
{
    struct note_checkpoint c;
    int rc = cli_checkpoint_load(ctx, note_path, pub_path, origin, &c);
    if (rc != 0)
        return rc;
    if (ctx->human) {
        char root[2 * STELE_HASH_SIZE + 1];
        cli_hex(c.root, STELE_HASH_SIZE, root);
        printf("signature good\norigin     %s\ntree size  %llu\nroot       %s\n", c.origin,
               (unsigned long long)c.size, root);
        return CLI_EXIT_OK;
    }
    json_t *o = cli_checkpoint_json(&c);
    rc = o && json_object_set_new(o, "verified", json_true()) == 0 && json_write_line(stdout, o) == 0
             ? CLI_EXIT_OK
             : cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    json_decref(o);
    return rc;
}

int cmd_checkpoint(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *key = NULL, *origin = NULL, *note = NULL, *pub = NULL;
    int c;
    while ((c = cli_next_opt(ctx, argc, argv, checkpoint_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == OPT_KEY)
            key = optarg;
        else if (c == OPT_ORIGIN)
            origin = optarg;
        else if (c == OPT_VERIFY)
            note = optarg;
        else if (c == OPT_PUBLIC_KEY)
            pub = optarg;
        else
            return CLI_EXIT_USAGE;
    }
    if (origin && !note_origin_valid(origin, strlen(origin)))
        return cli_usage_error(ctx, "--origin: empty, longer than %u bytes, not UTF-8 or holding a control character",
                               NOTE_ORIGIN_SIZE_MAX);
    if (note) {
        if (key || ctx->arg_count != 0)
            return cli_usage_error(ctx, "--verify takes no DIR and no --key (see stele checkpoint --help)");
        if (!pub)
            return cli_usage_error(ctx, "--verify FILE needs --public-key NAME.pub");
        return verify(ctx, note, pub, origin);
    }
    const char *dir;
    int rc = cli_take_dir(ctx, &dir);
    if (rc != 0)
        return rc;
    if (pub)
        return cli_usage_error(ctx, "--public-key is for --verify; signing takes --key NAME.key");
    if (!key)
        return cli_usage_error(ctx, "--key NAME.key is required (make one with stele keygen --out NAME)");
    return sign(ctx, dir, key, origin);
}
