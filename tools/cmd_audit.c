/*
 * cmd_audit.c - `stele audit DIR --checkpoint FILE --public-key NAME.pub
 * [--origin O]`: checks that the log still holds, unchanged, the history a
 * signed checkpoint committed to (SPEC.md §20.5, §20.7).
 *
 * The checkpoint's signature is verified first (cmd_checkpoint.c); only then
 * are its size and root handed to stele_audit, which rehashes every record
 * of the log, trusting no derived file. One JSON report goes to stdout
 * either way; when the log does not extend the checkpoint (a record
 * rewritten, history truncated or replaced) the report names the first
 * differing LSN where the library can, stderr says why, and the exit is 5.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "note.h"

enum { OPT_CHECKPOINT = 256, OPT_PUBLIC_KEY, OPT_ORIGIN };

static const struct option audit_options[] = {
    {"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
    {"public-key", required_argument, NULL, OPT_PUBLIC_KEY},
    {"origin", required_argument, NULL, OPT_ORIGIN},
    CLI_COMMON_OPTIONS,
};

static json_t *report_json(const struct note_checkpoint *c, const stele_audit_report *r, int ok)
{
    char root[2 * STELE_HASH_SIZE + 1];
    cli_hex(r->root, STELE_HASH_SIZE, root);
    json_t *first_bad = r->first_bad_lsn ? json_integer((json_int_t)r->first_bad_lsn) : json_null();
    return json_pack("{s:b, s:o?, s:I, s:I, s:I, s:s, s:o, s:b}", "ok", ok, "checkpoint", cli_checkpoint_json(c),
                     "records", (json_int_t)r->records, "bytes", (json_int_t)r->bytes, "tree_size",
                     (json_int_t)r->size, "root", root, "first_bad_lsn", first_bad, "evidence", r->evidence);
}

static void print_human(const struct note_checkpoint *c, const stele_audit_report *r, int ok)
{
    printf("%s\ncheckpoint  %s, %llu records\nlog         %llu records (%llu bytes) hashed, tree size %llu\n",
           ok ? "the log extends the checkpoint" : "the log does NOT extend the checkpoint", c->origin,
           (unsigned long long)c->size, (unsigned long long)r->records, (unsigned long long)r->bytes,
           (unsigned long long)r->size);
    if (r->first_bad_lsn)
        printf("first differing LSN  %llu\n", (unsigned long long)r->first_bad_lsn);
}

static int audit(const struct cli_ctx *ctx, const char *dir, const char *note, const char *pub, const char *origin)
{
    struct note_checkpoint c;
    int rc = cli_checkpoint_load(ctx, note, pub, origin, &c);
    if (rc != 0)
        return rc;
    stele_log *log;
    if ((rc = cli_open_read_only(ctx, dir, &log)) != 0)
        return rc;
    stele_audit_report r;
    int code = stele_audit(log, c.size, c.root, &r);
    int ok = code == STELE_OK;
    if (code == STELE_OK || code == STELE_ERR_CORRUPT) { /* the report is filled in either way */
        if (ctx->human) {
            print_human(&c, &r, ok);
        } else {
            json_t *o = report_json(&c, &r, ok);
            if (!o || json_write_line(stdout, o) != 0)
                rc = cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
            json_decref(o);
        }
    }
    if (!ok && rc == 0)
        rc = cli_fail(ctx, code, "auditing %s against %s", dir, note);
    stele_close(log); /* read-only: nothing to flush */
    return rc;
}

int cmd_audit(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *note = NULL, *pub = NULL, *origin = NULL, *dir;
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, audit_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == OPT_CHECKPOINT)
            note = optarg;
        else if (c == OPT_PUBLIC_KEY)
            pub = optarg;
        else if (c == OPT_ORIGIN)
            origin = optarg;
        else
            return CLI_EXIT_USAGE;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if (!note || !pub)
        return cli_usage_error(ctx, "--checkpoint FILE and --public-key NAME.pub are required (see stele audit --help)");
    return audit(ctx, dir, note, pub, origin);
}
