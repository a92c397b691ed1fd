/*
 * stele.c - the `stele` command: global options, dispatch to one subcommand,
 * the option parsing every subcommand shares, and error printing with the
 * documented exit codes (PRODUCT.md, "Command line (`stele`) - the contract").
 *
 * Every error is one line on stderr, "stele: <what failed>: <why>", and the
 * process exits with the code the failure maps to. Output goes to stdout only.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "stele.h"

static const struct command {
    const char *name;
    cli_cmd_fn fn;
    const char *usage;
} commands[] = {
    {"init", cmd_init,
     "stele init DIR [--segment-size BYTES] [--idem-window DURATION] [--compression none|zstd]\n"
     "                [--compression-level N] [--durability sync|interval|none]"},
    {"append", cmd_append,
     "stele append DIR [--type T] [--key K] [--stream S] [--expect-version N] [--actor A]\n"
     "                  [--event-time TIME] [--data TEXT] [--durability sync|interval|none]\n"
     "       stele append DIR --jsonl [--durability sync|interval|none]   (event objects on stdin)\n"
     "         prints {\"lsn\":N,\"decision\":\"new\"|\"duplicate\"|\"conflict\",\"stream_version\":V}; a conflict\n"
     "         adds \"reason\":\"different_request\" (exit 3); a stream not at --expect-version prints\n"
     "         {\"lsn\":null,\"decision\":\"conflict\",\"stream_version\":CURRENT,\n"
     "          \"reason\":\"stream_version\"} (exit 3)"},
    {"intent", cmd_intent,
     "stele intent DIR --key K [--type T] [--stream S] [--expect-version N] [--actor A] [--data TEXT]\n"
     "         an action whose outcome is not known yet (pending); prints append's receipt"},
    {"resolve", cmd_resolve,
     "stele resolve DIR --key K --outcome confirmed|failed [--type T] [--actor A] [--data TEXT]\n"
     "         the outcome joins the intent's stream; prints append's receipt plus \"ref\", the\n"
     "         intent's LSN; exit 3 when the other outcome is recorded, 4 when no intent has key K,\n"
     "         2 when K holds an event"},
    {"status", cmd_status,
     "stele status DIR --key K\n"
     "         {\"key\",\"state\":\"event\"|\"pending\"|\"confirmed\"|\"failed\"|\"compensated\",\n"
     "          \"lsn\",\"recorded_at\",\"stream_version\",\"outcome_lsn\",\"compensation_lsn\"};\n"
     "         exit 4 when the key is unknown"},
    {"pending", cmd_pending,
     "stele pending DIR [--older-than DURATION] [--limit N]\n"
     "         one {\"key\",\"lsn\",\"recorded_at\",\"age_s\"} per pending intent, oldest first"},
    {"compensate", cmd_compensate,
     "stele compensate DIR (--lsn N | --key K | --from L --to L [--type T] [--stream S]\n"
     "                      | --backfill-run FILE.jsonl [--derive-keys] [--type T] [--stream S])\n"
     "                      --reason TEXT [--rules FILE] [--actor A] [--data TEXT] [--dry-run]\n"
     "         appends compensations (ref = the event, or the key's confirmed outcome) in the target's\n"
     "         stream; one record prints append's receipt plus \"ref\", a selection one summary object"},
    {"backfill", cmd_backfill,
     "stele backfill DIR FILE.jsonl [--derive-keys] [--dry-run]\n"
     "         imports historic events, each once; prints {\"new\",\"duplicate\",\"conflict\",\"invalid\",...}"},
    {"get", cmd_get,
     "stele get DIR (--lsn N | --key K) [--proof [--size M]]\n"
     "         one record; with --proof also its RFC 9162 inclusion proof, verified"},
    {"read", cmd_read,
     "stele read DIR [--from LSN] [--to LSN] [--since TIME] [--until TIME] [--type T] [--stream S]\n"
     "                [--limit N] [--follow]"},
    {"replay", cmd_replay,
     "stele replay DIR --consumer NAME (--exec CMD | --stdout) [--batch N] [--from LSN] [--since TIME]\n"
     "                  [--type T] [--stream S] [--max-attempts N] [--backoff-base MS] [--backoff-max MS]\n"
     "                  [--timeout MS] [--rate N] [--on-dead-letter stop|skip] [--seed N] [--follow]\n"
     "                  [--dry-run]\n"
     "       stele replay DIR --consumer NAME --dead-letters [--all] | --redrive (--exec CMD | --stdout)\n"
     "         delivers events at least once in LSN order with a durable cursor, retries and dead\n"
     "         letters (stele replay --help)"},
#ifdef STELE_HAVE_NATS
    {"relay", cmd_relay,
     "stele relay DIR --name NAME --nats URL[,URL...] --stream STREAM --subject TEMPLATE [--follow]\n"
     "         publishes the log into a NATS JetStream stream exactly once (stele relay --help)"},
    {"inbox", cmd_inbox,
     "stele inbox DIR --nats URL[,URL...] --stream STREAM --durable NAME [--follow]\n"
     "         appends a JetStream stream's messages to the log, each once (stele inbox --help)"},
#endif
#ifdef STELE_HAVE_DELIVER
    {"deliver", cmd_deliver,
     "stele deliver DIR --endpoint NAME --url URL --secret-file F [--type T] [--stream S] [--follow]\n"
     "         [--concurrency N] [--max-attempts N] [--breaker N] ...   | --endpoint NAME --status\n"
     "         POSTs events as signed Standard Webhooks, at least once, per stream in order, with\n"
     "         retries, Retry-After, a circuit breaker and dead letters (stele deliver --help)"},
#endif
#ifdef STELE_HAVE_SERVE
    {"serve", cmd_serve,
     "stele serve DIR... [--listen HOST:PORT] [--allow-remote]\n"
     "         serves a status page (/), /metrics (Prometheus), /healthz, /readyz and /api/status over\n"
     "         HTTP, read-only, on 127.0.0.1:9464 by default (stele serve --help)"},
#endif
    {"verify", cmd_verify, "stele verify DIR"},
    {"prove", cmd_prove,
     "stele prove DIR (--lsn N | --from-size A) [--size M]\n"
     "         an RFC 9162 inclusion or consistency proof from the log's Merkle tree, as JSON"},
    {"keygen", cmd_keygen,
     "stele keygen --out NAME [--name KEYNAME]\n"
     "         an Ed25519 key pair for signing checkpoints: NAME.key (private, mode 0600) and NAME.pub"},
    {"checkpoint", cmd_checkpoint,
     "stele checkpoint DIR --key NAME.key [--origin ORIGIN]\n"
     "       stele checkpoint --verify FILE --public-key NAME.pub [--origin ORIGIN]\n"
     "         prints a signed C2SP checkpoint (size, root) of the log's Merkle tree; --verify checks one"},
    {"audit", cmd_audit,
     "stele audit DIR --checkpoint FILE --public-key NAME.pub [--origin ORIGIN]\n"
     "         checks the log still holds the history a signed checkpoint committed to (exit 5 if not)"},
    {"stats", cmd_stats, "stele stats DIR [--prometheus]"},
    {"dump", cmd_dump, "stele dump DIR [--segment N]   (segments, batches, records with offsets)"},
    {"backup", cmd_backup, "stele backup DIR DEST   (an online, consistent, verified copy)"},
    {"dict", cmd_dict,
     "stele dict train DIR [--sample N] [--sample-bytes BYTES] [--dict-size BYTES]\n"
     "         trains a zstd dictionary on the newest N records (default 100000, at most 16 MiB of\n"
     "         them) and stores it as DIR/<id>.dict; later batches of a zstd log use it"},

};

/* The manual page --help prints after the synopsis (help.c), NULL = none. */
static const char *help_of(const char *name)
{
    static const struct {
        const char *name;
        const char *help;
    } pages[] = {
        {"backfill", cli_help_backfill},
        {"compensate", cli_help_compensate},
        {"dump", cli_help_dump},
        {"backup", cli_help_backup},
        {"stats", cli_help_stats},
        {"serve", cli_help_serve},
        {"prove", cli_help_prove},
        {"keygen", cli_help_keygen},
        {"checkpoint", cli_help_checkpoint},
        {"audit", cli_help_audit},
    };
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++)
        if (strcmp(pages[i].name, name) == 0)
            return pages[i].help;
    return NULL;
}

static void print_usage(FILE *f)
{
    fprintf(f, "usage: stele [--human] COMMAND ARGS...   (stele --version, stele COMMAND --help)\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %s\n", commands[i].usage);
    fprintf(f, "Output is JSON, one object per line, unless --human is given. Exit codes: 0 ok,\n"
               "2 usage or invalid input, 3 conflict, 4 not found, 5 corruption, 1 other failure.\n");
}

int cli_exit_for(int code)
{
    switch (code) {
    case STELE_OK:
        return CLI_EXIT_OK;
    case STELE_ERR_INVALID:
    case STELE_ERR_TOO_LARGE:
        return CLI_EXIT_USAGE;
    case STELE_ERR_CONFLICT:
    case STELE_ERR_STREAM_VERSION:
        return CLI_EXIT_CONFLICT;
    case STELE_ERR_NOT_FOUND:
        return CLI_EXIT_NOT_FOUND;
    case STELE_ERR_CORRUPT:
        return CLI_EXIT_CORRUPT;
    default:
        return CLI_EXIT_FAILURE;
    }
}

int cli_fail(const struct cli_ctx *ctx, int code, const char *fmt, ...)
{
    /* Copy the detail first: it belongs to the failing call and nothing else. */
    char detail[1024];
    const char *msg = stele_errmsg();
    snprintf(detail, sizeof detail, "%s", msg ? msg : "");
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "stele: %s: ", ctx->cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (detail[0])
        fprintf(stderr, ": %s: %s\n", stele_strerror(code), detail);
    else
        fprintf(stderr, ": %s\n", stele_strerror(code));
    return cli_exit_for(code);
}

int cli_open_log(const struct cli_ctx *ctx, const char *dir, const stele_options *opts, stele_log **out_log)
{
    int rc = stele_open(dir, opts, out_log);
    if (rc != STELE_OK)
        return cli_fail(ctx, rc, "opening log %s", dir);
    return 0;
}

int cli_open_read_only(const struct cli_ctx *ctx, const char *dir, stele_log **out_log)
{
    stele_options opts;
    stele_options_init(&opts);
    opts.read_only = 1;
    return cli_open_log(ctx, dir, &opts, out_log);
}

int cli_close_log(const struct cli_ctx *ctx, stele_log *log, const char *dir, int rc)
{
    int code = stele_close(log);
    if (code != STELE_OK && rc == CLI_EXIT_OK)
        rc = cli_fail(ctx, code, "closing log %s", dir);
    return rc;
}

static void vprint_error(const struct cli_ctx *ctx, const char *fmt, va_list ap)
{
    fprintf(stderr, "stele: %s: ", ctx->cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_usage_error(const struct cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint_error(ctx, fmt, ap);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_error(const struct cli_ctx *ctx, int exit_code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint_error(ctx, fmt, ap);
    va_end(ap);
    return exit_code;
}

static void push_positional(struct cli_ctx *ctx, const char *arg)
{
    if (ctx->arg_count < CLI_ARGS_MAX)
        ctx->args[ctx->arg_count] = arg;
    ctx->arg_count++;
}

/* The optstring "-:" makes getopt_long hand back positional arguments as
 * value 1 in order (so options may follow DIR even with POSIXLY_CORRECT set)
 * and report a missing option value as ':' instead of '?'. */
int cli_next_opt(struct cli_ctx *ctx, int argc, char **argv, const struct option *longopts)
{
    for (;;) {
        int c = getopt_long(argc, argv, "-:", longopts, NULL);
        if (c == 1) {
            push_positional(ctx, optarg);
            continue;
        }
        if (c == -1) {
            /* Whatever follows "--" is positional too. */
            for (; optind < argc; optind++)
                push_positional(ctx, argv[optind]);
            return -1;
        }
        if (c == CLI_OPT_HUMAN) {
            ctx->human = 1;
            continue;
        }
        if (c == CLI_OPT_HELP) {
            printf("usage: %s\n", ctx->usage);
            if (ctx->help)
                printf("\n%s", ctx->help);
            return CLI_OPT_HELP;
        }
        if (c == ':') {
            cli_usage_error(ctx, "option '%s' needs a value (see stele %s --help)", argv[optind - 1],
                            ctx->cmd);
            return CLI_OPT_INVALID;
        }
        if (c == '?') {
            /* For a short option optind may still point at its cluster; name the character. */
            if (optopt > ' ' && optopt < 127)
                cli_usage_error(ctx, "unknown option '-%c' (see stele %s --help)", optopt, ctx->cmd);
            else
                cli_usage_error(ctx, "unknown, ambiguous or malformed option '%s' (see stele %s --help)",
                                argv[optind - 1], ctx->cmd);
            return CLI_OPT_INVALID;
        }
        return c;
    }
}

int cli_take_dir(struct cli_ctx *ctx, const char **out_dir)
{
    if (ctx->arg_count != 1)
        return cli_usage_error(ctx, "expected exactly one DIR argument, got %d (see stele %s --help)",
                               ctx->arg_count, ctx->cmd);
    if (ctx->args[0][0] == '\0')
        return cli_usage_error(ctx, "DIR is empty");
    *out_dir = ctx->args[0];
    return 0;
}

int cli_opt_u64(const struct cli_ctx *ctx, const char *name, const char *text, uint64_t *out)
{
    if (cli_parse_u64(text, out) != 0)
        return cli_usage_error(ctx, "--%s: '%s' is not a non-negative decimal integer", name, text);
    return 0;
}

int cli_opt_size(const struct cli_ctx *ctx, const char *name, const char *text, uint64_t *out)
{
    if (cli_parse_size(text, out) != 0)
        return cli_usage_error(ctx, "--%s: '%s' is not a size (bytes, or with K, M, G, T: 64K, 16MiB)",
                               name, text);
    return 0;
}

int cli_opt_duration(const struct cli_ctx *ctx, const char *name, const char *text, uint64_t *out)
{
    if (cli_parse_duration(text, out) != 0)
        return cli_usage_error(ctx, "--%s: '%s' is not a duration (0, or e.g. 24h, 30m, 10s, 500ms, 1h30m)",
                               name, text);
    return 0;
}

int cli_opt_time(const struct cli_ctx *ctx, const char *name, const char *text, uint64_t *out)
{
    if (cli_parse_time(text, out) != 0)
        return cli_usage_error(ctx, "--%s: '%s' is not an RFC 3339 time (e.g. 2026-11-28T17:19:23.5Z)",
                               name, text);
    return 0;
}

int cli_opt_field(const struct cli_ctx *ctx, const char *name, const char *text)
{
    if (strlen(text) > CLI_FIELD_SIZE_MAX)
        return cli_usage_error(ctx, "--%s: longer than %u bytes", name, CLI_FIELD_SIZE_MAX);
    if (!cli_utf8_valid(text, strlen(text)))
        return cli_usage_error(ctx, "--%s: not valid UTF-8", name);
    return 0;
}

int cli_opt_key(const struct cli_ctx *ctx, const char *name, const char *text)
{
    if (text[0] == '\0')
        return cli_usage_error(ctx, "--%s: empty", name);
    return cli_opt_field(ctx, name, text);
}

/* cli_opt_field on text, then (*out, *out_size) = text: a stele_event string
 * field set from an option. */
static int set_string(const struct cli_ctx *ctx, const char *name, const char *text, const char **out,
                      size_t *out_size)
{
    if (cli_opt_field(ctx, name, text) != 0)
        return CLI_EXIT_USAGE;
    *out = text;
    *out_size = strlen(text);
    return 0;
}

int cli_event_option(const struct cli_ctx *ctx, int c, const char *text, stele_event *ev, const char **data)
{
    switch (c) {
    case CLI_OPT_KEY:
        return set_string(ctx, "key", text, &ev->key, &ev->key_size);
    case CLI_OPT_TYPE:
        return set_string(ctx, "type", text, &ev->type, &ev->type_size);
    case CLI_OPT_STREAM:
        return set_string(ctx, "stream", text, &ev->stream, &ev->stream_size);
    case CLI_OPT_ACTOR:
        return set_string(ctx, "actor", text, &ev->actor, &ev->actor_size);
    case CLI_OPT_EXPECT_VERSION:
        ev->has_expect_version = 1;
        return cli_opt_u64(ctx, "expect-version", text, &ev->expect_version);
    case CLI_OPT_EVENT_TIME:
        if (cli_opt_time(ctx, "event-time", text, &ev->event_time_ns) != 0)
            return CLI_EXIT_USAGE;
        /* stele.h reads event time 0 as "the recorded time": refuse rather than substitute. */
        if (ev->event_time_ns == 0)
            return cli_usage_error(ctx, "--event-time: the epoch itself (time 0) cannot be stored");
        return 0;
    case CLI_OPT_DATA:
        *data = text;
        return 0;
    default:
        return -1;
    }
}

int cli_opt_durability(const struct cli_ctx *ctx, const char *text)
{
    if (strcmp(text, "sync") == 0)
        return STELE_DURABILITY_SYNC;
    if (strcmp(text, "interval") == 0)
        return STELE_DURABILITY_INTERVAL;
    if (strcmp(text, "none") == 0)
        return STELE_DURABILITY_NONE;
    cli_usage_error(ctx, "--durability: '%s' is not sync, interval or none", text);
    return -1;
}

const char *cli_durability_name(int durability)
{
    switch (durability) {
    case STELE_DURABILITY_SYNC:
        return "sync";
    case STELE_DURABILITY_INTERVAL:
        return "interval";
    case STELE_DURABILITY_NONE:
        return "none";
    default:
        return "default";
    }
}

const char *cli_compression_name(int compression)
{
    return compression == STELE_COMPRESSION_ZSTD ? "zstd" : "none";
}

/* Options before the command: --human, --help, --version. Returns the index
 * of the command word, or a negative exit code to return (-1 - code). */
static int global_options(int argc, char **argv, struct cli_ctx *ctx)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--human") == 0) {
            ctx->human = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return -1 - CLI_EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("stele %s (library %s)\n", STELE_VERSION_STRING, stele_version());
            return -1 - CLI_EXIT_OK;
        } else {
            fprintf(stderr, "stele: unknown option '%s' (see stele --help)\n", argv[i]);
            return -1 - CLI_EXIT_USAGE;
        }
    }
    if (i == argc) {
        print_usage(stderr);
        return -1 - CLI_EXIT_USAGE;
    }
    return i;
}

int main(int argc, char **argv)
{
    struct cli_ctx ctx = {0};
    int i = global_options(argc, argv, &ctx);
    if (i < 0)
        return -1 - i;
    const struct command *cmd = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (strcmp(argv[i], commands[k].name) == 0)
            cmd = &commands[k];
    if (!cmd) {
        /* A command this build left out (tools/optional.cmake) says so, and what it needs. */
        static const struct {
            const char *name, *needs;
        } left_out[] = {
#ifndef STELE_HAVE_NATS
            {"relay", "libnats (Debian: libnats-dev)"},
            {"inbox", "libnats (Debian: libnats-dev)"},
#endif
#ifndef STELE_HAVE_DELIVER
            {"deliver", "libcurl and libsodium (Debian: libcurl4-openssl-dev libsodium-dev)"},
#endif
#ifndef STELE_HAVE_SERVE
            {"serve", "libmicrohttpd (Debian: libmicrohttpd-dev)"},
#endif
            {NULL, NULL},
        };
        for (size_t k = 0; left_out[k].name; k++)
            if (strcmp(argv[i], left_out[k].name) == 0) {
                fprintf(stderr, "stele: %s: not in this build of stele: it needs %s when stele is built\n",
                        argv[i], left_out[k].needs);
                return CLI_EXIT_USAGE;
            }
        fprintf(stderr, "stele: unknown command '%s' (see stele --help)\n", argv[i]);
        return CLI_EXIT_USAGE;
    }
    ctx.cmd = cmd->name;
    ctx.usage = cmd->usage;
    ctx.help = help_of(cmd->name);
    opterr = 0; /* cli_next_opt prints its own one-line errors */
    int rc = cmd->fn(&ctx, argc - i, argv + i);
    /* Output that never reached its reader is a failure, not a success (a
     * command that already failed has said so; one error line is enough). */
    if ((fflush(stdout) != 0 || ferror(stdout)) && rc == CLI_EXIT_OK) {
        fprintf(stderr, "stele: %s: writing output: %s\n", ctx.cmd, strerror(errno));
        rc = CLI_EXIT_FAILURE;
    }
    return rc;
}
