/*
 * cmd_verify.c - `stele verify DIR`: check every byte of a log without
 * writing anything (PRODUCT.md, "Command line"; stele_verify in stele.h).
 *
 * Each problem is one line on stdout as it is found,
 * {"problem":WHAT,"path":P,"offset":N,"lsn":L|null}, then a summary,
 * {"segments","batches","records","bytes","last_lsn","torn_bytes","problems"}.
 * Exit 0 when everything checks out, 5 when a problem was found. Progress goes
 * to stderr, and only when stderr is a terminal: in a pipe we stay quiet.
 */
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

static const struct option verify_options[] = {
    CLI_COMMON_OPTIONS,
};

struct verify_state {
    const struct cli_ctx *ctx;
    int progress;        /* stderr is a terminal */
    int percent_shown;   /* last percentage drawn, -1 for none */
    int failed;          /* out of memory while printing */
};

static void clear_progress(struct verify_state *v)
{
    if (v->percent_shown >= 0)
        fputs("\r\033[K", stderr);
    v->percent_shown = -1;
}

static void show_progress(struct verify_state *v, uint64_t done, uint64_t total)
{
    int percent = total ? (int)(done * 100 / total) : 100;
    if (percent == v->percent_shown)
        return;
    fprintf(stderr, "\rverifying: %3d%% (%" PRIu64 " of %" PRIu64 " MiB)", percent, done >> 20, total >> 20);
    fflush(stderr);
    v->percent_shown = percent;
}

static void print_problem(struct verify_state *v, const stele_verify_problem *p)
{
    if (v->ctx->human) {
        printf("problem: %s at offset %" PRIu64, p->path ? p->path : "?", p->offset);
        if (p->lsn)
            printf(" (LSN %" PRIu64 ")", p->lsn);
        printf(": %s\n", p->what ? p->what : "?");
    } else {
        json_t *o = json_pack("{s:s?, s:s?, s:I, s:o}", "problem", p->what, "path", p->path, "offset",
                              (json_int_t)p->offset, "lsn",
                              p->lsn ? json_integer((json_int_t)p->lsn) : json_null());
        if (!o || json_write_line(stdout, o) != 0)
            v->failed = 1;
        json_decref(o);
    }
    /* Problems reach a reader (or the terminal, above the progress line) at once. */
    fflush(stdout);
}

/* stele_verify_fn: a problem, or progress when problem is NULL. */
static int on_verify(void *ctx, const stele_verify_problem *problem, uint64_t done, uint64_t total)
{
    struct verify_state *v = ctx;
    if (!problem) {
        if (v->progress)
            show_progress(v, done, total);
        return 0;
    }
    clear_progress(v);
    print_problem(v, problem);
    return 0;
}

static void print_summary(const struct cli_ctx *ctx, const stele_verify_report *r)
{
    if (ctx->human) {
        printf("checked %" PRIu64 " segments, %" PRIu64 " batches, %" PRIu64 " records, %" PRIu64
               " bytes (last LSN %" PRIu64 ", %" PRIu64 " bytes of torn tail): %s%" PRIu64 " problems\n",
               r->segments, r->batches, r->records, r->bytes, r->last_lsn, r->torn_bytes,
               r->problems ? "" : "clean, ", r->problems);
        return;
    }
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "segments", (json_int_t)r->segments,
                          "batches", (json_int_t)r->batches, "records", (json_int_t)r->records, "bytes",
                          (json_int_t)r->bytes, "last_lsn", (json_int_t)r->last_lsn, "torn_bytes",
                          (json_int_t)r->torn_bytes, "problems", (json_int_t)r->problems);
    if (o)
        json_write_line(stdout, o);
    json_decref(o);
}

int cmd_verify(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *dir;
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, verify_options)) != -1)
        return c == CLI_OPT_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    struct verify_state v = {.ctx = ctx, .progress = isatty(STDERR_FILENO), .percent_shown = -1};
    stele_verify_report report = {0};
    int code = stele_verify(dir, on_verify, &v, &report);
    clear_progress(&v);
    if (code != STELE_OK && code != STELE_ERR_CORRUPT)
        return cli_fail(ctx, code, "verifying log %s", dir);
    print_summary(ctx, &report);
    if (v.failed)
        return cli_error(ctx, CLI_EXIT_FAILURE, "out of memory while reporting");
    if (code == STELE_ERR_CORRUPT)
        return cli_error(ctx, CLI_EXIT_CORRUPT, "log %s: %" PRIu64 " problem(s) found", dir, report.problems);
    return CLI_EXIT_OK;
}
