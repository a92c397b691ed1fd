/*
 * cmd_init.c - `stele init DIR`: create a log with the options that are fixed
 * at creation (segment size, idempotency window, compression and its zstd
 * level, default durability). PRODUCT.md, "Command line".
 *
 * Bounds are the engine's to check (stele_options documents them); an
 * out-of-range value comes back as INVALID naming the field, exit 2.
 *
 * The largest payload must fit a segment (stele.h), and the default (1 MiB)
 * does not fit a small segment such as 64 KiB. There is no option for it on
 * this command line, so with a small --segment-size we lower the maximum to
 * what surely fits: the segment less its header and footer blocks, one block
 * for a batch frame's header and rounding, and a record's header, its four
 * 255-byte fields and alignment.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

#define BLOCK_SIZE 4096u
#define RECORD_FIXED_SIZE_MAX (64u + 4u * 255u + 8u)

enum { OPT_SEGMENT_SIZE = 1 + 256, OPT_IDEM_WINDOW, OPT_COMPRESSION, OPT_COMPRESSION_LEVEL, OPT_DURABILITY };

static const struct option init_options[] = {
    {"segment-size", required_argument, NULL, OPT_SEGMENT_SIZE},
    {"idem-window", required_argument, NULL, OPT_IDEM_WINDOW},
    {"compression", required_argument, NULL, OPT_COMPRESSION},
    {"compression-level", required_argument, NULL, OPT_COMPRESSION_LEVEL},
    {"durability", required_argument, NULL, OPT_DURABILITY},
    CLI_COMMON_OPTIONS,
};

/* Applies one option to opts; returns 0 or an exit code. */
static int init_option(struct cli_ctx *ctx, int c, stele_options *opts)
{
    int d, rc;
    uint64_t level;
    switch (c) {
    case OPT_COMPRESSION_LEVEL:
        /* Bounds are the engine's (stele_options): only keep the value in an int. */
        if ((rc = cli_opt_u64(ctx, "compression-level", optarg, &level)) != 0)
            return rc;
        opts->compression_level = level > 1000 ? 1000 : (int)level;
        return 0;
    case OPT_SEGMENT_SIZE:
        return cli_opt_size(ctx, "segment-size", optarg, &opts->segment_size);
    case OPT_IDEM_WINDOW:
        return cli_opt_duration(ctx, "idem-window", optarg, &opts->idem_window_ns);
    case OPT_COMPRESSION:
        if (strcmp(optarg, "none") == 0)
            opts->compression = STELE_COMPRESSION_NONE;
        else if (strcmp(optarg, "zstd") == 0)
            opts->compression = STELE_COMPRESSION_ZSTD;
        else
            return cli_usage_error(ctx, "--compression: '%s' is not none or zstd", optarg);
        return 0;
    case OPT_DURABILITY:
        d = cli_opt_durability(ctx, optarg);
        if (d < 0)
            return CLI_EXIT_USAGE;
        opts->default_durability = (stele_durability)d;
        return 0;
    default:
        return CLI_EXIT_USAGE;
    }
}

/* See the head comment: the default payload maximum, lowered to fit the segment. */
static void fit_payload_size_max(stele_options *opts)
{
    uint64_t overhead = 3u * BLOCK_SIZE + RECORD_FIXED_SIZE_MAX;
    if (opts->segment_size <= overhead)
        return; /* the engine will refuse the segment size itself */
    if (opts->payload_size_max > opts->segment_size - overhead)
        opts->payload_size_max = (uint32_t)(opts->segment_size - overhead);
}

static void print_created(const struct cli_ctx *ctx, const char *dir, const stele_options *opts)
{
    char window[32];
    cli_duration_format(opts->idem_window_ns, window, sizeof window);
    if (ctx->human) {
        printf("created log %s: segment size %" PRIu64 " bytes, payloads up to %" PRIu32
               " bytes, idempotency window %s, compression %s (level %d), durability %s\n",
               dir, opts->segment_size, opts->payload_size_max, window, cli_compression_name(opts->compression),
               opts->compression_level,
               cli_durability_name(opts->default_durability));
        return;
    }
    json_t *o = json_pack("{s:s, s:I, s:I, s:s, s:s, s:i, s:s}", "created", dir, "segment_size",
                          (json_int_t)opts->segment_size, "payload_size_max", (json_int_t)opts->payload_size_max,
                          "idem_window", window, "compression",
                          cli_compression_name(opts->compression), "compression_level", opts->compression_level,
                          "durability",
                          cli_durability_name(opts->default_durability));
    if (o)
        json_write_line(stdout, o);
    json_decref(o);
}

int cmd_init(struct cli_ctx *ctx, int argc, char **argv)
{
    stele_options opts;
    const char *dir;
    int c, rc;
    stele_options_init(&opts);
    opts.create = 1;
    while ((c = cli_next_opt(ctx, argc, argv, init_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == CLI_OPT_INVALID)
            return CLI_EXIT_USAGE;
        if ((rc = init_option(ctx, c, &opts)) != 0)
            return rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    fit_payload_size_max(&opts);
    rc = stele_create(dir, &opts);
    if (rc != STELE_OK)
        return cli_fail(ctx, rc, "creating a log in %s", dir);
    print_created(ctx, dir, &opts);
    return CLI_EXIT_OK;
}
