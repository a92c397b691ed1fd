/*
 * cmd_append.c - `stele append DIR`: append one event described by options,
 * or with --jsonl one event object per stdin line (PRODUCT.md, "Command line").
 *
 * Each append prints a receipt, {"lsn":N,"decision":"new"|"duplicate"|
 * "conflict","stream_version":V} (V is 0 without a stream). A conflict adds
 * "reason": "different_request" (the key holds another request; lsn is the
 * original's) or "stream_version" (the stream is not at --expect-version;
 * lsn is null, V is where the stream stands), exits 3 and says so on stderr
 * too. With --jsonl every receipt also carries "line" (1-based input line),
 * and a line that cannot be appended gets {"line":N,"error":"...","code":C}
 * instead (C is the stele_code). The receipt is rendered in event_json.c;
 * the single append is cli_append_report, which intent, resolve and
 * compensate share.
 *
 * --jsonl throughput: the lines already available on stdin (at most
 * GROUP_RECORDS_MAX) go to the engine as one stele_append_batch, so they
 * share one write and one sync; we never wait for more input before sending
 * what we have, so a slow producer still gets each acknowledgement promptly.
 * Receipts are printed and flushed as soon as their batch returns, i.e. once
 * the records are acknowledged under the log's durability mode. Results come
 * out in input order: an invalid line first flushes the group before it.
 *
 * --jsonl exit status, most severe first: 1 when appending failed for a reason
 * other than the input (I/O, fenced log, ...: we stop at once, since every
 * later append would fail too), else 2 when any line was invalid (bad JSON or
 * fields, too large, or refused by the engine as invalid or referring to a
 * record that does not exist), else 3 when any line was a conflict (key or
 * stream version), else 0. A problem with the log outranks one with a line,
 * and a line that can never succeed outranks one that lost to another.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "event_json.h"
#include "line_reader.h"
#include "stele.h"

/* Lines per batch, and record bytes per batch. A batch must fit one segment
 * (it is never split), so the byte limit also shrinks to the segment size
 * less its header, footer and batch header blocks. */
#define GROUP_RECORDS_MAX 1024u
#define GROUP_BYTES_MAX (8u * 1024u * 1024u)
#define SEGMENT_OVERHEAD_SIZE (3u * 4096u)

/* A record's size in a batch is at most its fields plus a 64-byte header and
 * 8-byte alignment (SPEC.md §5); we only need an upper bound. */
#define RECORD_OVERHEAD_SIZE 72u

enum { OPT_JSONL = 256, OPT_DURABILITY };

static const struct option append_options[] = {
    {"type", required_argument, NULL, CLI_OPT_TYPE},
    {"key", required_argument, NULL, CLI_OPT_KEY},
    {"stream", required_argument, NULL, CLI_OPT_STREAM},
    {"expect-version", required_argument, NULL, CLI_OPT_EXPECT_VERSION},
    {"actor", required_argument, NULL, CLI_OPT_ACTOR},
    {"event-time", required_argument, NULL, CLI_OPT_EVENT_TIME},
    {"data", required_argument, NULL, CLI_OPT_DATA},
    {"jsonl", no_argument, NULL, OPT_JSONL},
    {"durability", required_argument, NULL, OPT_DURABILITY},
    CLI_COMMON_OPTIONS,
};

struct append_args {
    stele_event ev;      /* the single event, built from options */
    const char *data;    /* --data, applied after parsing */
    int single_options;  /* how many single-event options were given */
    int jsonl;
    int durability;      /* STELE_DURABILITY_DEFAULT unless --durability */
};

static int append_option(struct cli_ctx *ctx, int c, struct append_args *a)
{
    a->single_options += c != OPT_JSONL && c != OPT_DURABILITY;
    switch (c) {
    case OPT_JSONL:
        a->jsonl = 1;
        return 0;
    case OPT_DURABILITY:
        a->durability = cli_opt_durability(ctx, optarg);
        return a->durability < 0 ? CLI_EXIT_USAGE : 0;
    default: {
        int rc = cli_event_option(ctx, c, optarg, &a->ev, &a->data);
        return rc < 0 ? CLI_EXIT_USAGE : rc;
    }
    }
}

/* Prints one receipt (event_json.h); returns -1 only when out of memory. */
static int print_receipt(const struct cli_ctx *ctx, long line, uint64_t ref, const stele_receipt *r, int code,
                         const char *detail)
{
    if (ctx->human) {
        receipt_write_human(stdout, line, ref, r, code, detail);
        return 0;
    }
    json_t *o = receipt_json(line, ref, r, code, detail);
    int rc = o ? json_write_line(stdout, o) : -1;
    json_decref(o);
    return rc;
}

/* The engine's conflict receipt names the original's LSN only (SPEC.md
 * §15.3: the request's stream need not be the original's, so it cannot say
 * which version). Our receipts have always carried the original's stream
 * version, so we read it from the original; should that read fail, the
 * engine's 0 stays (the decision, which is what matters, is unaffected). */
static void fill_conflict_version(stele_log *log, stele_receipt *r)
{
    stele_record *orig;
    if (r->decision != STELE_DECISION_CONFLICT || r->lsn == 0 || stele_get(log, r->lsn, &orig) != STELE_OK)
        return;
    r->stream_version = orig->stream_version;
    stele_record_free(orig);
}

/* See cli.h. Shared by append, intent, resolve and compensate, so that every
 * appending command answers in the same shape with the same exit codes. */
int cli_append_report(const struct cli_ctx *ctx, stele_log *log, const stele_event *ev, uint64_t ref,
                      const char *what)
{
    stele_receipt r = {0};
    char detail[512];
    int code = stele_append(log, ev, &r);
    if (code != STELE_OK && code != STELE_ERR_CONFLICT && code != STELE_ERR_STREAM_VERSION)
        return cli_fail(ctx, code, "%s", what);
    snprintf(detail, sizeof detail, "%s", code == STELE_OK ? "" : stele_errmsg());
    fill_conflict_version(log, &r);
    /* A decision: the receipt is the output; a conflict also says so on stderr. */
    if (print_receipt(ctx, 0, ref, &r, code, NULL) != 0)
        return cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    if (code == STELE_ERR_STREAM_VERSION)
        return cli_error(ctx, CLI_EXIT_CONFLICT, "%s: stream %.*s is at version %" PRIu64 ", not the expected %" PRIu64,
                         what, (int)ev->stream_size, ev->stream, r.stream_version, ev->expect_version);
    if (code == STELE_ERR_CONFLICT) {
        /* Not cli_fail: its code text speaks of keys, and a compensation has none. */
        return cli_error(ctx, CLI_EXIT_CONFLICT, "%s: conflict: LSN %" PRIu64 " holds a different request%s%s",
                         what, r.lsn, detail[0] ? ": " : "", detail);
    }
    return CLI_EXIT_OK;
}

int cli_append_command(const struct cli_ctx *ctx, const char *dir, struct event_in *in, const char *data,
                       int (*fn)(const struct cli_ctx *ctx, stele_log *log, struct event_in *in))
{
    stele_log *log;
    int rc = cli_open_log(ctx, dir, NULL, &log);
    if (rc != 0) {
        event_in_release(in);
        return rc;
    }
    if (data && event_in_set_data_arg(in, data) != 0)
        rc = cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    else
        rc = fn(ctx, log, in);
    event_in_release(in);
    return cli_close_log(ctx, log, dir, rc);
}

static int append_single(struct cli_ctx *ctx, stele_log *log, struct append_args *a)
{
    struct event_in in = {.ev = a->ev};
    if (a->data && event_in_set_data_arg(&in, a->data) != 0)
        return cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    int rc = cli_append_report(ctx, log, &in.ev, 0, "appending");
    event_in_release(&in);
    return rc;
}

/* ------------------------------------------------------------- --jsonl */

struct jsonl {
    const struct cli_ctx *ctx;
    stele_log *log;
    uint64_t payload_size_max;
    uint64_t group_bytes_max;
    struct event_in in[GROUP_RECORDS_MAX];
    stele_event events[GROUP_RECORDS_MAX];
    stele_receipt receipts[GROUP_RECORDS_MAX];
    long lines[GROUP_RECORDS_MAX]; /* input line of each grouped event */
    size_t count, bytes;
    int invalid, conflict, failed; /* what the exit status depends on */
};

/* Records what one line's result means for the exit status and prints it. */
static void report(struct jsonl *j, long line, const stele_receipt *r, int code, const char *detail)
{
    stele_receipt shown = *r;
    if (code == STELE_ERR_CONFLICT)
        fill_conflict_version(j->log, &shown);
    if (print_receipt(j->ctx, line, 0, &shown, code, detail) != 0) {
        cli_error(j->ctx, CLI_EXIT_FAILURE, "out of memory");
        j->failed = 1;
    }
    if (code == STELE_ERR_CONFLICT || code == STELE_ERR_STREAM_VERSION) {
        j->conflict = 1;
    } else if (code == STELE_ERR_INVALID || code == STELE_ERR_TOO_LARGE || code == STELE_ERR_NOT_FOUND) {
        /* Refused for what the line says (NOT_FOUND: a ref to no record). */
        j->invalid = 1;
    } else if (code != STELE_OK) {
        /* The log cannot take appends any more; say why once, on stderr too. */
        if (!j->failed)
            cli_error(j->ctx, CLI_EXIT_FAILURE, "appending line %ld: %s%s%s", line, stele_strerror(code),
                      detail && *detail ? ": " : "", detail ? detail : "");
        j->failed = 1;
    }
}

/* Flushes the results out. A producer that cannot see its acknowledgements
 * must not be fed more of them: a failed write stops the run. */
static void check_output(struct jsonl *j)
{
    if (fflush(stdout) == 0 && !ferror(stdout))
        return;
    if (!j->failed)
        cli_error(j->ctx, CLI_EXIT_FAILURE, "writing results: %s", strerror(errno));
    j->failed = 1;
}

/* The code that applies to receipt i after a batch call returned rc. A
 * receipt the engine left undecided and without a code shares the call's. */
static int receipt_code(const struct jsonl *j, size_t i, int rc)
{
    const stele_receipt *r = &j->receipts[i];
    if (r->code == STELE_OK && r->decision == STELE_DECISION_NONE && rc != STELE_OK)
        return rc;
    return r->code;
}

/* Appends the group one event at a time: used when the batch was refused as
 * a whole for bad input, so each line gets its own verdict. */
static void append_one_by_one(struct jsonl *j)
{
    for (size_t i = 0; i < j->count && !j->failed; i++) {
        stele_receipt r = {0};
        char detail[512];
        int code = stele_append(j->log, &j->events[i], &r);
        snprintf(detail, sizeof detail, "%s", code == STELE_OK ? "" : stele_errmsg());
        report(j, j->lines[i], &r, code, detail);
    }
}

static int any_decided(const struct jsonl *j)
{
    for (size_t i = 0; i < j->count; i++)
        if (j->receipts[i].decision != STELE_DECISION_NONE)
            return 1;
    return 0;
}

/* Appends the grouped events as one batch and prints every receipt. */
static void flush_group(struct jsonl *j)
{
    if (j->count == 0)
        return;
    memset(j->receipts, 0, j->count * sizeof j->receipts[0]);
    int rc = stele_append_batch(j->log, j->events, j->count, j->receipts);
    char detail[512];
    snprintf(detail, sizeof detail, "%s", rc == STELE_OK ? "" : stele_errmsg());
    int decided = any_decided(j);
    /* NOT_FOUND too: an outcome whose intent is unknown, or a compensation
     * of no record, may be refused for the whole call. */
    if ((rc == STELE_ERR_INVALID || rc == STELE_ERR_TOO_LARGE || rc == STELE_ERR_NOT_FOUND) && !decided) {
        append_one_by_one(j);
    } else {
        /* The call's message describes one record (or, when none was
         * decided, all of them); a per-record failure otherwise gets only
         * its code's text, since receipts carry no message of their own. */
        for (size_t i = 0; i < j->count; i++) {
            int code = receipt_code(j, i, rc);
            report(j, j->lines[i], &j->receipts[i], code, decided ? NULL : detail);
        }
    }
    check_output(j);
    for (size_t i = 0; i < j->count; i++)
        event_in_release(&j->in[i]);
    j->count = j->bytes = 0;
}

/* An input line that cannot become an append: report it on its own, after
 * everything before it, so results stay in input order. why is the whole
 * message: no engine code text is prefixed, since no engine call was made. */
static void reject_line(struct jsonl *j, long line, const char *why)
{
    flush_group(j);
    j->invalid = 1;
    if (j->ctx->human) {
        printf("line %ld: error: %s\n", line, why);
    } else {
        json_t *o = json_pack("{s:I, s:o, s:i}", "line", (json_int_t)line, "error", json_string_lossy(why, strlen(why)),
                              "code", STELE_ERR_INVALID);
        if (!o || json_write_line(stdout, o) != 0) {
            cli_error(j->ctx, CLI_EXIT_FAILURE, "out of memory");
            j->failed = 1;
        }
        json_decref(o);
    }
    check_output(j);
}

/* Parses one line into the group, or rejects it. */
static void add_line(struct jsonl *j, long line, const char *text, size_t size)
{
    char err[EVENT_ERR_SIZE];
    struct event_in *in = &j->in[j->count];
    memset(in, 0, sizeof *in);
    if (event_in_parse(text, size, in, err) != 0) {
        reject_line(j, line, err);
        return;
    }
    if (in->ev.payload_size > j->payload_size_max) {
        snprintf(err, sizeof err, "the payload is %zu bytes, more than the log's maximum of %" PRIu64,
                 in->ev.payload_size, j->payload_size_max);
        event_in_release(in);
        reject_line(j, line, err);
        return;
    }
    const stele_event *ev = &in->ev;
    uint64_t record_size = ev->payload_size + ev->type_size + ev->stream_size + ev->key_size +
                           ev->actor_size + RECORD_OVERHEAD_SIZE;
    if (j->count > 0 && j->bytes + record_size > j->group_bytes_max) {
        /* Send what we have first; this event opens the next group. */
        struct event_in held = *in;
        flush_group(j);
        j->in[0] = held;
    }
    j->events[j->count] = j->in[j->count].ev;
    j->lines[j->count] = line;
    j->bytes += record_size;
    j->count++;
    if (j->count == GROUP_RECORDS_MAX)
        flush_group(j);
}

/* Reads stdin to the end (or the first failure), appending group by group. */
static void jsonl_loop(struct jsonl *j, struct line_reader *rd)
{
    long line = 0;
    while (!j->failed) {
        char *text;
        size_t size;
        /* Wait for input only when nothing is waiting to be appended. */
        enum line_result res = line_reader_next(rd, j->count == 0, &text, &size);
        if (res == LINE_OK) {
            add_line(j, ++line, text, size);
        } else if (res == LINE_TOO_LONG) {
            reject_line(j, ++line, "the line is longer than 64 MiB");
        } else if (res == LINE_WOULD_BLOCK) {
            flush_group(j);
        } else {
            flush_group(j);
            if (res == LINE_ERROR) {
                cli_error(j->ctx, CLI_EXIT_FAILURE, "reading stdin: %s", strerror(errno));
                j->failed = 1;
            }
            return;
        }
    }
}

static int append_jsonl(struct cli_ctx *ctx, stele_log *log)
{
    stele_stats stats;
    int code = stele_stats_get(log, &stats);
    if (code != STELE_OK)
        return cli_fail(ctx, code, "reading the log's limits");
    /* The group arrays are large; keep them off the stack. */
    struct jsonl *j = calloc(1, sizeof *j);
    if (!j)
        return cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    j->ctx = ctx;
    j->log = log;
    j->payload_size_max = stats.payload_size_max;
    j->group_bytes_max = GROUP_BYTES_MAX;
    if (stats.segment_size > SEGMENT_OVERHEAD_SIZE && stats.segment_size - SEGMENT_OVERHEAD_SIZE < GROUP_BYTES_MAX)
        j->group_bytes_max = stats.segment_size - SEGMENT_OVERHEAD_SIZE;
    struct line_reader rd;
    line_reader_init(&rd, STDIN_FILENO);
    jsonl_loop(j, &rd);
    line_reader_free(&rd);
    for (size_t i = 0; i < j->count; i++) /* left over only after a failure */
        event_in_release(&j->in[i]);
    int rc = j->failed ? CLI_EXIT_FAILURE : j->invalid ? CLI_EXIT_USAGE : j->conflict ? CLI_EXIT_CONFLICT
                                                                                     : CLI_EXIT_OK;
    free(j);
    return rc;
}

int cmd_append(struct cli_ctx *ctx, int argc, char **argv)
{
    struct append_args a = {0};
    const char *dir;
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, append_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == CLI_OPT_INVALID)
            return CLI_EXIT_USAGE;
        if ((rc = append_option(ctx, c, &a)) != 0)
            return rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if (a.jsonl && a.single_options > 0)
        return cli_usage_error(ctx, "--jsonl takes the events from stdin; the event options do not apply");
    stele_options opts;
    stele_log *log;
    stele_options_init(&opts);
    opts.durability = (stele_durability)a.durability;
    if ((rc = cli_open_log(ctx, dir, &opts, &log)) != 0)
        return rc;
    rc = a.jsonl ? append_jsonl(ctx, log) : append_single(ctx, log, &a);
    return cli_close_log(ctx, log, dir, rc);
}
