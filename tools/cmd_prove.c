/*
 * cmd_prove.c - `stele prove DIR (--lsn N | --from-size A) [--size M]`: an
 * RFC 9162 proof from the log's Merkle tree (SPEC.md §20.2), as one JSON
 * object: an inclusion proof of record N, or a consistency proof from the
 * tree of A records, against the tree of M records (default: every durable
 * record). Hashes are lowercase hex, in the RFC's order (deepest first), so
 * that a proof can be checked with nothing but SHA-256 (stele prove --help).
 *
 * The proof is checked (stele_proof_verify) before it is printed: one that
 * does not hold is never printed, and exits 5.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

enum { OPT_LSN = 256, OPT_FROM_SIZE, OPT_SIZE };

static const struct option prove_options[] = {
    {"lsn", required_argument, NULL, OPT_LSN},
    {"from-size", required_argument, NULL, OPT_FROM_SIZE},
    {"size", required_argument, NULL, OPT_SIZE},
    CLI_COMMON_OPTIONS,
};

static json_t *hex_json(const uint8_t h[STELE_HASH_SIZE])
{
    char text[2 * STELE_HASH_SIZE + 1];
    cli_hex(h, STELE_HASH_SIZE, text);
    return json_string(text);
}

/* See cli.h. */
json_t *cli_proof_json(const stele_proof *p)
{
    json_t *o = json_object(), *hashes = json_array();
    int bad = !o || !hashes;
    for (size_t i = 0; !bad && i < p->hash_count; i++)
        bad = json_array_append_new(hashes, hex_json(p->hashes[i])) != 0;
    const struct { const char *name; json_t *value; } inclusion[] = {
        {"proof", json_string("inclusion")},
        {"lsn", json_integer((json_int_t)p->lsn)},
        {"leaf_index", json_integer((json_int_t)(p->lsn - 1))},
        {"tree_size", json_integer((json_int_t)p->size)},
        {"leaf_hash", hex_json(p->leaf)},
        {"root", hex_json(p->root)},
    }, consistency[] = {
        {"proof", json_string("consistency")},
        {"from_size", json_integer((json_int_t)p->from_size)},
        {"tree_size", json_integer((json_int_t)p->size)},
        {"from_root", hex_json(p->from_root)},
        {"root", hex_json(p->root)},
    };
    const size_t n = p->lsn ? sizeof inclusion / sizeof inclusion[0] : sizeof consistency / sizeof consistency[0];
    for (size_t i = 0; i < n; i++) { /* each value is taken, even on failure */
        const char *name = p->lsn ? inclusion[i].name : consistency[i].name;
        json_t *value = p->lsn ? inclusion[i].value : consistency[i].value;
        if (bad || json_object_set_new(o, name, value) != 0)
            bad = 1;
    }
    /* The unused table's values are freed: both were built. */
    for (size_t i = 0; i < sizeof inclusion / sizeof inclusion[0] && !p->lsn; i++)
        json_decref(inclusion[i].value);
    for (size_t i = 0; i < sizeof consistency / sizeof consistency[0] && p->lsn; i++)
        json_decref(consistency[i].value);
    if (bad || json_object_set_new(o, "hashes", hashes) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* See cli.h. */
void cli_proof_print_human(const stele_proof *p)
{
    char hex[2 * STELE_HASH_SIZE + 1];
    cli_hex(p->lsn ? p->leaf : p->from_root, STELE_HASH_SIZE, hex);
    if (p->lsn)
        printf("inclusion of LSN %llu in the tree of %llu records\nleaf_hash  %s\n", (unsigned long long)p->lsn,
               (unsigned long long)p->size, hex);
    else
        printf("consistency of the tree of %llu records with the tree of %llu\nfrom_root  %s\n",
               (unsigned long long)p->from_size, (unsigned long long)p->size, hex);
    cli_hex(p->root, STELE_HASH_SIZE, hex);
    printf("root       %s\n", hex);
    for (size_t h = 0; h < p->hash_count; h++) {
        cli_hex(p->hashes[h], STELE_HASH_SIZE, hex);
        printf("hash %-4zu  %s\n", h, hex);
    }
}

/* See cli.h. */
int cli_prove(struct cli_ctx *ctx, stele_log *log, const char *dir, uint64_t lsn, uint64_t from, uint64_t size,
              stele_proof *p)
{
    int code = lsn ? stele_prove_inclusion(log, lsn, size, p) : stele_prove_consistency(log, from, size, p);
    if (code != STELE_OK)
        return lsn ? cli_fail(ctx, code, "proving LSN %llu", (unsigned long long)lsn)
                   : cli_fail(ctx, code, "proving consistency from tree size %llu", (unsigned long long)from);
    if (!stele_proof_verify(p))
        return cli_error(ctx, CLI_EXIT_CORRUPT, "the proof the tree files gave does not verify: %s's tree files "
                                                "are damaged (remove tree.frontier to rebuild them)", dir);
    return CLI_EXIT_OK;
}

static int prove(struct cli_ctx *ctx, const char *dir, uint64_t lsn, uint64_t from, uint64_t size)
{
    stele_log *log;
    int rc = cli_open_read_only(ctx, dir, &log);
    if (rc != 0)
        return rc;
    static stele_proof p; /* 4 KiB of hashes: not on the stack */
    if ((rc = cli_prove(ctx, log, dir, lsn, from, size, &p)) != CLI_EXIT_OK) {
        ;
    } else if (ctx->human) {
        cli_proof_print_human(&p);
    } else {
        json_t *o = cli_proof_json(&p);
        rc = o && json_write_line(stdout, o) == 0 ? CLI_EXIT_OK : cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
        json_decref(o);
    }
    stele_close(log); /* read-only: nothing to flush, nothing to report */
    return rc;
}

int cmd_prove(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *dir;
    uint64_t lsn = 0, from = 0, size = 0;
    int has_lsn = 0, has_from = 0, c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, prove_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == OPT_LSN)
            rc = cli_opt_u64(ctx, "lsn", optarg, &lsn), has_lsn = 1;
        else if (c == OPT_FROM_SIZE)
            rc = cli_opt_u64(ctx, "from-size", optarg, &from), has_from = 1;
        else if (c == OPT_SIZE)
            rc = cli_opt_u64(ctx, "size", optarg, &size);
        else
            return CLI_EXIT_USAGE;
        if (rc != 0)
            return rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if (has_lsn == has_from)
        return cli_usage_error(ctx, "give exactly one of --lsn N and --from-size A (see stele prove --help)");
    if (has_lsn && lsn == 0)
        return cli_usage_error(ctx, "--lsn: LSNs start at 1");
    if (has_from && from == 0)
        return cli_usage_error(ctx, "--from-size: must be at least 1 (every tree is consistent with the empty one)");
    return prove(ctx, dir, lsn, from, size);
}
