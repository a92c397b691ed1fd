/*
 * cmd_get.c - `stele get DIR (--lsn N | --key K) [--proof [--size M]]`:
 * print one record as an event object (PRODUCT.md, "Command line"): the
 * record at LSN N, or the record idempotency key K holds (the event, or the
 * intent: its outcome is at the LSN `stele status` names). No such record
 * exits 4. With --proof the object also holds "proof": the record's RFC 9162
 * inclusion proof in the tree of M records (default: every durable record),
 * as `stele prove --lsn` prints it, checked before it is printed (a verified
 * read, in the manner of immudb's).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

enum { OPT_LSN = 256, OPT_KEY, OPT_PROOF, OPT_SIZE };

static const struct option get_options[] = {
    {"lsn", required_argument, NULL, OPT_LSN},
    {"key", required_argument, NULL, OPT_KEY},
    {"proof", no_argument, NULL, OPT_PROOF},
    {"size", required_argument, NULL, OPT_SIZE},
    CLI_COMMON_OPTIONS,
};

/* Prints rec, with its inclusion proof in the tree of size records when
 * proof is set. */
static int print_record(struct cli_ctx *ctx, stele_log *log, const char *dir, const stele_record *rec, int proof,
                        uint64_t size)
{
    if (!proof)
        return cli_print_record(ctx, rec);
    static stele_proof p; /* 4 KiB of hashes: not on the stack */
    int rc = cli_prove(ctx, log, dir, rec->lsn, 0, size, &p);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (ctx->human) {
        if ((rc = cli_print_record(ctx, rec)) == 0)
            cli_proof_print_human(&p);
        return rc;
    }
    json_t *o = event_json_from_record(rec);
    if (o && json_object_set_new(o, "proof", cli_proof_json(&p)) == 0 && json_write_line(stdout, o) == 0)
        rc = CLI_EXIT_OK;
    else
        rc = cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    json_decref(o);
    return rc;
}

/* Reads the record by key when key is not NULL, else by lsn, and prints it. */
static int get_record(struct cli_ctx *ctx, const char *dir, uint64_t lsn, const char *key, int proof, uint64_t size)
{
    stele_log *log;
    stele_record *rec = NULL;
    int rc, code;
    if ((rc = cli_open_read_only(ctx, dir, &log)) != 0)
        return rc;
    if (key) {
        code = stele_get_key(log, key, strlen(key), &rec);
        rc = code == STELE_OK ? 0 : cli_fail(ctx, code, "reading key %s", key);
    } else {
        code = stele_get(log, lsn, &rec);
        rc = code == STELE_OK ? 0 : cli_fail(ctx, code, "reading LSN %llu", (unsigned long long)lsn);
    }
    if (rc == 0)
        rc = print_record(ctx, log, dir, rec, proof, size);
    stele_record_free(rec);
    stele_close(log); /* read-only: nothing to flush, nothing to report */
    return rc;
}

int cmd_get(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *dir, *key = NULL;
    uint64_t lsn = 0, size = 0;
    int has_lsn = 0, proof = 0, has_size = 0, c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, get_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == OPT_LSN) {
            if ((rc = cli_opt_u64(ctx, "lsn", optarg, &lsn)) != 0)
                return rc;
            has_lsn = 1;
        } else if (c == OPT_KEY) {
            if ((rc = cli_opt_key(ctx, "key", optarg)) != 0)
                return rc;
            key = optarg;
        } else if (c == OPT_PROOF) {
            proof = 1;
        } else if (c == OPT_SIZE) {
            if ((rc = cli_opt_u64(ctx, "size", optarg, &size)) != 0)
                return rc;
            has_size = 1;
        } else {
            return CLI_EXIT_USAGE;
        }
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if (has_lsn == (key != NULL))
        return cli_usage_error(ctx, "give exactly one of --lsn N and --key K (see stele get --help)");
    if (has_size && !proof)
        return cli_usage_error(ctx, "--size is the proof's tree size: it needs --proof (see stele get --help)");
    return get_record(ctx, dir, lsn, key, proof, size);
}
