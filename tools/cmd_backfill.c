/*
 * cmd_backfill.c - `stele backfill DIR FILE.jsonl [--derive-keys] [--dry-run]`:
 * import historic events (PRODUCT.md, "Command line"; SPEC.md §17.1).
 *
 * Every line of FILE is an event object (event_json.h). A backfilled record
 * keeps the line's event_time (which is required: a historic event without
 * the time it happened is not history) and carries STELE_FLAG_BACKFILLED.
 * Only kind "event" is imported: intents, outcomes and compensations refer to
 * LSNs of the log they were written to, which mean nothing in this one; and
 * expect_version is refused, since a re-run must not depend on where a
 * stream stands.
 *
 * Every line needs a key, so that the engine's idempotency makes a re-run
 * harmless: a key already in the log with the same request is a duplicate
 * (nothing appended), with another request a conflict (nothing appended,
 * counted, exit 3). With --derive-keys a line without a key gets
 * "bf-" + 32 hex digits of XXH3-128 over the line's canonical content
 * (backfill_key.c; SPEC.md §17.1); a line's own key is always kept.
 *
 * The rule for invalid lines: the whole file is validated before anything
 * is written. Any invalid line (reported on stderr with its line number and
 * reason) means nothing is appended at all and the exit status is 2; fix the
 * file and run again. So a file never half-applies because of bad input.
 * Then the file is read a second time and appended in groups of up to
 * GROUP_RECORDS_MAX lines through stele_append_batch: each group is one
 * atomic batch, so a run killed at any moment leaves whole groups, and the
 * next run finds them as duplicates and appends the rest. FILE must be a
 * regular file (it is read twice).
 *
 * Re-runs are safe within the log's idempotency window (default 24 h of
 * recorded time; `stele init --idem-window 0` keeps keys forever): a key the
 * window has forgotten is new again.
 *
 * --dry-run opens the log read-only and classifies every valid line as new,
 * duplicate or conflict from the public key API (stele_get_key: the same
 * type, stream, kind and payload as the record holding the key is a
 * duplicate, as the engine's fingerprint decides) and from the lines before
 * it in the file, without writing. The summary is one JSON object on stdout:
 *
 *   {"new":a,"duplicate":b,"conflict":c,"invalid":d,"lines":n,
 *    "first_lsn":F,"last_lsn":L,"dry_run":false}
 *
 * first_lsn and last_lsn span the records this run appended (null when none).
 * Exit status: 1 when the log failed (the summary still says what was done;
 * run again to complete), 2 with invalid lines, 3 with conflicts, else 0.
 * A progress line goes to stderr only when stderr is a terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "backfill_key.h"
#include "cli.h"
#include "event_json.h"
#include "line_reader.h"
#include "stele.h"

/* Lines per stele_append_batch, and record bytes per batch (shrunk to fit
 * one segment, as append --jsonl does). */
#define GROUP_RECORDS_MAX 4096u
#define GROUP_BYTES_MAX (8u * 1024u * 1024u)
#define SEGMENT_OVERHEAD_SIZE (3u * 4096u)
#define RECORD_OVERHEAD_SIZE 72u

/* Invalid lines reported one by one; after this many only the count. */
#define INVALID_REPORTED_MAX 100u

#define PROGRESS_INTERVAL_NS 500000000ull

enum { OPT_DERIVE_KEYS = 256, OPT_DRY_RUN };

static const struct option backfill_options[] = {
    {"derive-keys", no_argument, NULL, OPT_DERIVE_KEYS},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    CLI_COMMON_OPTIONS,
};

/* Keys seen earlier in the file (dry run only): key -> identity hash. */
struct seen {
    char **keys;
    uint64_t *ids;
    size_t cap, count;
};

struct backfill {
    const struct cli_ctx *ctx;
    const char *path;
    int fd;
    int derive_keys, dry_run;
    stele_log *log;
    uint64_t payload_size_max;
    uint64_t group_bytes_max;
    /* the group being assembled */
    struct event_in in[GROUP_RECORDS_MAX];
    stele_event events[GROUP_RECORDS_MAX];
    stele_receipt receipts[GROUP_RECORDS_MAX];
    long lines[GROUP_RECORDS_MAX];
    char keys[GROUP_RECORDS_MAX][BACKFILL_KEY_SIZE];
    size_t count, bytes;
    /* the summary */
    uint64_t line_count, valid, new_count, duplicate, conflict, invalid;
    uint64_t first_lsn, last_lsn;
    int failed;
    struct seen seen;
    /* progress */
    int progress;
    const char *phase;       /* what the progress line says we are doing */
    uint64_t progress_at_ns;
};

/* ------------------------------------------------------------ the lines */

static void report_invalid(struct backfill *b, long line, const char *why)
{
    b->invalid++;
    if (b->invalid <= INVALID_REPORTED_MAX)
        fprintf(stderr, "stele: backfill: %s line %ld: %s\n", b->path, line, why);
    else if (b->invalid == INVALID_REPORTED_MAX + 1)
        fprintf(stderr, "stele: backfill: %s: more invalid lines; only the first %u are listed\n", b->path,
                INVALID_REPORTED_MAX);
}

/* Parses one line with backfill's rules (backfill_key.h). Returns 0, or -1
 * with the reason in err. */
static int parse_line(struct backfill *b, const char *text, size_t size, struct event_in *in,
                      char key[BACKFILL_KEY_SIZE], char err[EVENT_ERR_SIZE])
{
    return backfill_parse_line(text, size, b->derive_keys, b->payload_size_max, in, key, err);
}

static void progress(struct backfill *b, int last)
{
    if (!b->progress)
        return;
    uint64_t now = cli_now_ns();
    if (!last && now - b->progress_at_ns < PROGRESS_INTERVAL_NS)
        return;
    b->progress_at_ns = now;
    fprintf(stderr, "\rbackfill: %s line %" PRIu64 ": %s%" PRIu64 " new, %" PRIu64 " duplicate, %" PRIu64
                    " conflict, %" PRIu64 " invalid%s",
            last ? "done," : b->phase, b->line_count, b->dry_run ? "would be " : "", b->new_count, b->duplicate,
            b->conflict, b->invalid, last ? "\n" : "");
}

static int validate_line(struct backfill *b, long line, const char *text, size_t size);

/* Reads FILE from the start, calling fn for every line. Returns 0, or -1
 * after printing (read error, or fn failed). */
static int each_line(struct backfill *b, int (*fn)(struct backfill *b, long line, const char *text, size_t size))
{
    if (lseek(b->fd, 0, SEEK_SET) != 0) {
        cli_error(b->ctx, CLI_EXIT_FAILURE, "seeking to the start of %s: %s", b->path, strerror(errno));
        return -1;
    }
    struct line_reader rd;
    line_reader_init(&rd, b->fd);
    long line = 0;
    int rc = 0;
    b->line_count = 0;
    b->phase = fn == validate_line ? "validating" : b->dry_run ? "classifying" : "appending";
    for (;;) {
        char *text;
        size_t size;
        enum line_result res = line_reader_next(&rd, 1, &text, &size);
        if (res == LINE_END)
            break;
        if (res == LINE_ERROR) {
            cli_error(b->ctx, CLI_EXIT_FAILURE, "reading %s after line %ld: %s", b->path, line, strerror(errno));
            rc = -1;
            break;
        }
        b->line_count = (uint64_t)++line;
        if (res == LINE_TOO_LONG) {
            if (fn == validate_line) /* the other passes skip what this one reported */
                report_invalid(b, line, BACKFILL_LINE_TOO_LONG);
            continue;
        }
        if (fn(b, line, text, size) != 0) {
            rc = -1;
            break;
        }
        progress(b, 0);
    }
    line_reader_free(&rd);
    return rc;
}

/* Pass 1: validate every line, write nothing. */
static int validate_line(struct backfill *b, long line, const char *text, size_t size)
{
    struct event_in in = {0};
    char key[BACKFILL_KEY_SIZE], err[EVENT_ERR_SIZE];
    if (parse_line(b, text, size, &in, key, err) != 0) {
        report_invalid(b, line, err);
        return 0;
    }
    b->valid++;
    event_in_release(&in);
    return 0;
}

/* ------------------------------------------------------------ appending */

static void note_new(struct backfill *b, uint64_t lsn)
{
    b->new_count++;
    if (b->first_lsn == 0 || lsn < b->first_lsn)
        b->first_lsn = lsn;
    if (lsn > b->last_lsn)
        b->last_lsn = lsn;
}

static void report_conflict(struct backfill *b, long line, const stele_event *ev, uint64_t lsn)
{
    b->conflict++;
    fprintf(stderr, "stele: backfill: %s line %ld: conflict: key %.*s is held by LSN %" PRIu64
                    ", a different event (nothing appended for this line)\n",
            b->path, line, (int)ev->key_size, ev->key, lsn);
}

/* Appends the group as one batch and counts every receipt. */
static int flush_group(struct backfill *b)
{
    if (b->count == 0)
        return 0;
    memset(b->receipts, 0, b->count * sizeof b->receipts[0]);
    int rc = stele_append_batch(b->log, b->events, b->count, b->receipts);
    char detail[512];
    snprintf(detail, sizeof detail, "%s", rc == STELE_OK ? "" : stele_errmsg());
    for (size_t i = 0; i < b->count && !b->failed; i++) {
        const stele_receipt *r = &b->receipts[i];
        if (r->code == STELE_OK && r->decision == STELE_DECISION_NEW) {
            note_new(b, r->lsn);
        } else if (r->code == STELE_OK && r->decision == STELE_DECISION_DUPLICATE) {
            b->duplicate++;
        } else if (r->decision == STELE_DECISION_CONFLICT) {
            report_conflict(b, b->lines[i], &b->events[i], r->lsn);
        } else {
            /* Validated input cannot fail on its own: the log did (I/O,
             * fenced, ...), and every later batch would fail too. */
            int code = r->code != STELE_OK ? (int)r->code : rc;
            cli_error(b->ctx, CLI_EXIT_FAILURE,
                      "appending %s lines %ld-%ld: %s%s%s (run backfill again: records already appended are "
                      "duplicates then)", b->path, b->lines[0], b->lines[b->count - 1], stele_strerror(code),
                      detail[0] ? ": " : "", detail);
            b->failed = 1;
        }
    }
    for (size_t i = 0; i < b->count; i++)
        event_in_release(&b->in[i]);
    b->count = b->bytes = 0;
    return b->failed ? -1 : 0;
}

/* Pass 2: group lines and append. */
static int append_line(struct backfill *b, long line, const char *text, size_t size)
{
    char err[EVENT_ERR_SIZE];
    struct event_in *in = &b->in[b->count];
    memset(in, 0, sizeof *in);
    if (parse_line(b, text, size, in, b->keys[b->count], err) != 0) {
        /* Pass 1 accepted this line: the file changed under us. */
        cli_error(b->ctx, CLI_EXIT_USAGE, "%s line %ld changed since it was validated: %s", b->path, line, err);
        b->failed = 1;
        return -1;
    }
    const stele_event *ev = &in->ev;
    uint64_t record_size = ev->payload_size + ev->type_size + ev->stream_size + ev->key_size + ev->actor_size +
                           RECORD_OVERHEAD_SIZE;
    if (b->count > 0 && b->bytes + record_size > b->group_bytes_max) {
        /* Send what we have first; this line opens the next group (its
         * derived key moves with it). */
        struct event_in held = *in;
        char key[BACKFILL_KEY_SIZE];
        int derived = held.ev.key == b->keys[b->count];
        memcpy(key, b->keys[b->count], sizeof key);
        if (flush_group(b) != 0) {
            event_in_release(&held);
            return -1;
        }
        b->in[0] = held;
        if (derived) {
            memcpy(b->keys[0], key, sizeof key);
            b->in[0].ev.key = b->keys[0];
        }
    }
    b->events[b->count] = b->in[b->count].ev;
    b->lines[b->count] = line;
    b->bytes += record_size;
    b->count++;
    return b->count == GROUP_RECORDS_MAX ? flush_group(b) : 0;
}

/* ------------------------------------------------------------ dry run */

static uint64_t identity_hash(const stele_event *ev)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return 0;
    XXH3_64bits_reset(st);
    uint8_t kind = (uint8_t)ev->kind;
    XXH3_64bits_update(st, &kind, 1);
    uint64_t sizes[3] = {ev->type_size, ev->stream_size, ev->payload_size};
    XXH3_64bits_update(st, sizes, sizeof sizes);
    XXH3_64bits_update(st, ev->type ? ev->type : "", ev->type_size);
    XXH3_64bits_update(st, ev->stream ? ev->stream : "", ev->stream_size);
    XXH3_64bits_update(st, ev->payload ? ev->payload : "", ev->payload_size);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

/* The slot of key in the table (empty or holding key). */
static size_t seen_slot(const struct seen *s, const char *key, size_t key_size)
{
    size_t i = (size_t)XXH3_64bits(key, key_size) & (s->cap - 1);
    while (s->keys[i] && (strlen(s->keys[i]) != key_size || memcmp(s->keys[i], key, key_size) != 0))
        i = (i + 1) & (s->cap - 1);
    return i;
}

static int seen_grow(struct seen *s)
{
    size_t cap = s->cap ? s->cap * 2 : 1024;
    struct seen n = {.keys = calloc(cap, sizeof *n.keys), .ids = calloc(cap, sizeof *n.ids), .cap = cap};
    if (!n.keys || !n.ids) {
        free(n.keys);
        free(n.ids);
        return -1;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->keys[i])
            continue;
        size_t j = seen_slot(&n, s->keys[i], strlen(s->keys[i]));
        n.keys[j] = s->keys[i];
        n.ids[j] = s->ids[i];
    }
    n.count = s->count;
    free(s->keys);
    free(s->ids);
    *s = n;
    return 0;
}

static void seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->keys[i]);
    free(s->keys);
    free(s->ids);
}

/* Classifies one line against the log and the earlier lines. */
static int classify_line(struct backfill *b, long line, const char *text, size_t size)
{
    struct event_in in = {0};
    char key[BACKFILL_KEY_SIZE], err[EVENT_ERR_SIZE];
    if (parse_line(b, text, size, &in, key, err) != 0)
        return 0; /* reported by pass 1 */
    const stele_event *ev = &in.ev;
    stele_record *rec = NULL;
    int rc = 0, code = stele_get_key(b->log, ev->key, ev->key_size, &rec);
    if (code == STELE_OK) {
        if (backfill_same_request(rec, ev))
            b->duplicate++;
        else
            report_conflict(b, line, ev, rec->lsn);
        stele_record_free(rec);
    } else if (code != STELE_ERR_NOT_FOUND) {
        cli_fail(b->ctx, code, "%s line %ld: looking up key %.*s", b->path, line, (int)ev->key_size, ev->key);
        rc = -1;
    } else if (2 * (b->seen.count + 1) > b->seen.cap && seen_grow(&b->seen) != 0) {
        cli_error(b->ctx, CLI_EXIT_FAILURE, "out of memory");
        rc = -1;
    } else {
        uint64_t id = identity_hash(ev);
        size_t i = seen_slot(&b->seen, ev->key, ev->key_size);
        if (!b->seen.keys[i]) {
            b->seen.keys[i] = strndup(ev->key, ev->key_size);
            b->seen.ids[i] = id;
            b->seen.count += b->seen.keys[i] != NULL;
            b->new_count++;
        } else if (b->seen.ids[i] == id) {
            b->duplicate++;
        } else {
            b->conflict++;
            fprintf(stderr, "stele: backfill: %s line %ld: conflict: key %.*s is used by an earlier line "
                            "for a different event\n", b->path, line, (int)ev->key_size, ev->key);
        }
    }
    event_in_release(&in);
    if (rc != 0)
        b->failed = 1;
    return rc;
}

/* ------------------------------------------------------------ command */

static int print_summary(const struct backfill *b)
{
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:b}", "new", (json_int_t)b->new_count,
                          "duplicate", (json_int_t)b->duplicate, "conflict", (json_int_t)b->conflict, "invalid",
                          (json_int_t)b->invalid, "lines", (json_int_t)b->line_count, "first_lsn",
                          b->first_lsn ? json_integer((json_int_t)b->first_lsn) : json_null(), "last_lsn",
                          b->last_lsn ? json_integer((json_int_t)b->last_lsn) : json_null(), "dry_run", b->dry_run);
    if (!o)
        return -1;
    int rc;
    if (b->ctx->human) {
        printf("%s%" PRIu64 " new, %" PRIu64 " duplicate, %" PRIu64 " conflict, %" PRIu64 " invalid of %" PRIu64
               " lines", b->dry_run ? "dry run: would be " : "", b->new_count, b->duplicate, b->conflict,
               b->invalid, b->line_count);
        if (b->first_lsn)
            printf("; appended LSN %" PRIu64 "-%" PRIu64, b->first_lsn, b->last_lsn);
        printf("\n");
        rc = 0;
    } else {
        rc = json_write_line(stdout, o);
    }
    json_decref(o);
    return rc;
}

static int open_input(struct backfill *b)
{
    struct stat st;
    b->fd = open(b->path, O_RDONLY | O_CLOEXEC);
    if (b->fd < 0)
        return cli_error(b->ctx, errno == ENOENT ? CLI_EXIT_NOT_FOUND : CLI_EXIT_FAILURE, "opening %s: %s",
                         b->path, strerror(errno));
    if (fstat(b->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        close(b->fd);
        b->fd = -1;
        return S_ISREG(st.st_mode) ? cli_error(b->ctx, CLI_EXIT_FAILURE, "stat %s: %s", b->path, strerror(e))
                                   : cli_usage_error(b->ctx, "%s is not a regular file (backfill reads it twice: "
                                                     "once to validate, once to append)", b->path);
    }
    return 0;
}

static int run(struct backfill *b, const char *dir)
{
    stele_stats stats;
    int rc = b->dry_run ? cli_open_read_only(b->ctx, dir, &b->log) : cli_open_log(b->ctx, dir, NULL, &b->log);
    if (rc != 0)
        return rc;
    int code = stele_stats_get(b->log, &stats);
    if (code != STELE_OK) {
        rc = cli_fail(b->ctx, code, "reading the limits of %s", dir);
        goto out;
    }
    b->payload_size_max = stats.payload_size_max;
    b->group_bytes_max = GROUP_BYTES_MAX;
    if (stats.segment_size > SEGMENT_OVERHEAD_SIZE && stats.segment_size - SEGMENT_OVERHEAD_SIZE < GROUP_BYTES_MAX)
        b->group_bytes_max = stats.segment_size - SEGMENT_OVERHEAD_SIZE;
    if (each_line(b, validate_line) != 0) {
        rc = CLI_EXIT_FAILURE;
        goto out;
    }
    if (b->dry_run) {
        if (each_line(b, classify_line) != 0)
            b->failed = 1;
    } else if (b->invalid == 0) {
        if (each_line(b, append_line) == 0)
            flush_group(b);
        for (size_t i = 0; i < b->count; i++) /* left over only after a failure */
            event_in_release(&b->in[i]);
    } else {
        fprintf(stderr, "stele: backfill: %s: %" PRIu64 " invalid line%s: nothing appended (the whole file is "
                        "validated first)\n", b->path, b->invalid, b->invalid == 1 ? "" : "s");
    }
    progress(b, 1);
    if (print_summary(b) != 0)
        b->failed = 1;
    rc = b->failed ? CLI_EXIT_FAILURE : b->invalid ? CLI_EXIT_USAGE : b->conflict ? CLI_EXIT_CONFLICT : CLI_EXIT_OK;
out:
    if (b->dry_run) {
        stele_close(b->log); /* read-only: nothing to flush */
        return rc;
    }
    return cli_close_log(b->ctx, b->log, dir, rc);
}

int cmd_backfill(struct cli_ctx *ctx, int argc, char **argv)
{
    int c, derive = 0, dry = 0;
    while ((c = cli_next_opt(ctx, argc, argv, backfill_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == OPT_DERIVE_KEYS)
            derive = 1;
        else if (c == OPT_DRY_RUN)
            dry = 1;
        else
            return CLI_EXIT_USAGE;
    }
    if (ctx->arg_count != 2)
        return cli_usage_error(ctx, "expected DIR and FILE.jsonl, got %d arguments (see stele backfill --help)",
                               ctx->arg_count);
    /* The group arrays are large; keep them off the stack. */
    struct backfill *b = calloc(1, sizeof *b);
    if (!b)
        return cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    b->ctx = ctx;
    b->path = ctx->args[1];
    b->derive_keys = derive;
    b->dry_run = dry;
    b->progress = isatty(STDERR_FILENO);
    int rc = open_input(b);
    if (rc == 0) {
        rc = run(b, ctx->args[0]);
        close(b->fd);
    }
    seen_free(&b->seen);
    free(b);
    return rc;
}
