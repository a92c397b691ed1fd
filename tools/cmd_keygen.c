/*
 * cmd_keygen.c - `stele keygen --out NAME [--name KEYNAME]`: a new Ed25519
 * key pair for signing checkpoints (SPEC.md §20.7.1), written as NAME.key (the
 * private key, mode 0600) and NAME.pub (the public key, mode 0644) in the
 * C2SP signed-note key formats, so that Go's golang.org/x/mod/sumdb/note and
 * other C2SP tools read them as they are.
 *
 * Neither file is ever overwritten: both are created with O_EXCL, and when
 * the second cannot be created the first is removed, so a failed run leaves
 * nothing. Each file is written, fsync'd and closed, then the directory is
 * fsync'd: once keygen has printed the key it survives a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "event_json.h"
#include "note.h"

enum { OPT_OUT = 256, OPT_NAME };

static const struct option keygen_options[] = {
    {"out", required_argument, NULL, OPT_OUT},
    {"name", required_argument, NULL, OPT_NAME},
    CLI_COMMON_OPTIONS,
};

/* Creates path (O_EXCL, mode) holding text and a newline, fsync'd. */
static int write_new_file(const struct cli_ctx *ctx, const char *path, mode_t mode, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return errno == EEXIST ? cli_usage_error(ctx, "%s exists: keygen never overwrites a key", path)
                               : cli_error(ctx, CLI_EXIT_FAILURE, "creating %s: %s", path, strerror(errno));
    size_t n = strlen(text), done = 0;
    int rc = 0;
    while (done <= n && rc == 0) { /* the text, then its newline */
        const char *p = done < n ? text + done : "\n";
        size_t want = done < n ? n - done : 1;
        ssize_t got = write(fd, p, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            rc = cli_error(ctx, CLI_EXIT_FAILURE, "writing %s: %s", path, got < 0 ? strerror(errno) : "no progress");
        else
            done += (size_t)got;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = cli_error(ctx, CLI_EXIT_FAILURE, "syncing %s: %s", path, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = cli_error(ctx, CLI_EXIT_FAILURE, "closing %s: %s", path, strerror(errno));
    if (rc != 0)
        unlink(path);
    return rc;
}

static int sync_dir_of(const struct cli_ctx *ctx, const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return cli_error(ctx, CLI_EXIT_FAILURE, "syncing directory %s: %s", dir, strerror(e));
    }
    close(fd);
    return 0;
}

static int print_result(const struct cli_ctx *ctx, const struct note_key *k, const char *key_path,
                        const char *pub_path, const char *vkey)
{
    char id[9];
    cli_hex(k->id, 4, id);
    if (ctx->human) {
        printf("private key  %s (keep it secret)\npublic key   %s\nkey          %s\n", key_path, pub_path, vkey);
        return CLI_EXIT_OK;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", k->name, "key_id", id, "private_key", key_path,
                          "public_key", pub_path, "vkey", vkey);
    int rc = o && json_write_line(stdout, o) == 0 ? CLI_EXIT_OK : cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    json_decref(o);
    return rc;
}

static int keygen(const struct cli_ctx *ctx, const char *out, const char *name)
{
    char key_path[4096], pub_path[4096], base[4096], why[NOTE_WHY_SIZE];
    if (snprintf(key_path, sizeof key_path, "%s.key", out) >= (int)sizeof key_path ||
        snprintf(pub_path, sizeof pub_path, "%s.pub", out) >= (int)sizeof pub_path)
        return cli_usage_error(ctx, "--out: path too long");
    if (!name) { /* the file's own name, without its directory */
        snprintf(base, sizeof base, "%s", out);
        name = basename(base);
    }
    if (note_crypto_init() != 0)
        return cli_error(ctx, CLI_EXIT_FAILURE, "libsodium failed to initialise");
    if (access(pub_path, F_OK) == 0)
        return cli_usage_error(ctx, "%s exists: keygen never overwrites a key", pub_path);
    struct note_key k;
    if (note_key_generate(name, &k, why) != 0)
        return cli_usage_error(ctx, "--name: %s (give --name)", why);
    char skey[NOTE_KEY_TEXT_SIZE], vkey[NOTE_KEY_TEXT_SIZE];
    note_key_format_private(&k, skey, sizeof skey);
    note_key_format_public(&k, vkey, sizeof vkey);
    sodium_memzero(&k.seed, sizeof k.seed);
    int rc = write_new_file(ctx, key_path, 0600, skey);
    sodium_memzero(skey, sizeof skey);
    if (rc != 0)
        return rc;
    if ((rc = write_new_file(ctx, pub_path, 0644, vkey)) != 0) {
        unlink(key_path);
        return rc;
    }
    if ((rc = sync_dir_of(ctx, key_path)) != 0)
        return rc;
    return print_result(ctx, &k, key_path, pub_path, vkey);
}

int cmd_keygen(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *out = NULL, *name = NULL;
    int c;
    while ((c = cli_next_opt(ctx, argc, argv, keygen_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == OPT_OUT)
            out = optarg;
        else if (c == OPT_NAME)
            name = optarg;
        else
            return CLI_EXIT_USAGE;
    }
    if (ctx->arg_count != 0)
        return cli_usage_error(ctx, "takes no DIR argument: the key belongs to whoever signs, not to a log "
                                    "(see stele keygen --help)");
    if (!out || !out[0])
        return cli_usage_error(ctx, "--out NAME is required: the key pair is written to NAME.key and NAME.pub");
    return keygen(ctx, out, name);
}
