/*
 * cmd_relay.c - `stele relay DIR --name NAME --nats URL --stream STREAM
 * --subject TEMPLATE`: publish the log's records into a NATS JetStream
 * stream exactly once, in LSN order, with a durable cursor (SPEC.md §21).
 *
 * The loop reads records after the cursor, publishes each selected one
 * asynchronously (nats_sink.c) and keeps the LSNs whose acknowledgement has
 * not come in a queue, ascending. The in-memory cursor M is the LSN before
 * the oldest unacknowledged one (or the last record read when none is
 * waiting); it is committed (stele_cursor_commit) every 100 ms and at the
 * end, so the durable cursor never passes an LSN whose PubAck did not
 * arrive. A record is published only while its LSN is at most
 * M + --window: at any publish of LSN x every selected LSN <= x - window is
 * stored. That bound is what lets a resume find everything (§21.3).
 *
 * Any failure (a publish refused or not acknowledged within --ack-timeout,
 * the connection lost, no responders) ends the connection: every publish in
 * flight has an unknown outcome. After a backoff with full jitter the relay
 * connects again, asks the stream which of its LSNs above M it already
 * holds (nats_scan_relay: headers Stele-Log and Stele-Relay), and reads the
 * log again from M + 1, publishing only what the stream does not hold. The
 * same happens at start, so a relay killed after the broker stored a message
 * but before its cursor moved never publishes it twice, however long the
 * outage (the duplicate window is not needed for this; it still catches the
 * retries of one connection). A failure that will not heal (stream missing,
 * message too large, permission denied) stops the relay, exit 1, cursor kept.
 *
 * The log is opened read-only, as by replay: the relay runs beside the
 * process that writes the log and with --follow relays its appends once they
 * are durable. Its cursor is the consumer "relay.NAME" (stele stats shows
 * its position and lag).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "cli.h"
#include "event_json.h"
#include "nats_sink.h"
#include "stele.h"

#define RELAY_WINDOW_DEFAULT 128u
#define RELAY_COMMIT_INTERVAL_NS 100000000ull /* the cursor is committed at most every 100 ms */
#define RELAY_FOLLOW_WAIT_MS 200
#define RELAY_MS_MAX (24ull * 3600 * 1000)
#define RELAY_SUBJECT_SIZE_MAX 1024u
#define RELAY_HEADERS_MAX 12u
#define RELAY_ACKS_PER_TAKE 256u

enum {
    OPT_NAME = 256, OPT_STREAM, OPT_SUBJECT, OPT_FOLLOW, OPT_FROM, OPT_SINCE, OPT_TYPE, OPT_LOG_STREAM,
    OPT_CREATE, OPT_REPLICAS, OPT_SUBJECTS, OPT_DUP_WINDOW, OPT_WINDOW, OPT_ACK_TIMEOUT, OPT_BACKOFF_BASE,
    OPT_BACKOFF_MAX, OPT_SEED,
};

static const struct option relay_options[] = {
    {"name", required_argument, NULL, OPT_NAME},
    {"stream", required_argument, NULL, OPT_STREAM},
    {"subject", required_argument, NULL, OPT_SUBJECT},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    {"from", required_argument, NULL, OPT_FROM},
    {"since", required_argument, NULL, OPT_SINCE},
    {"type", required_argument, NULL, OPT_TYPE},
    {"log-stream", required_argument, NULL, OPT_LOG_STREAM},
    {"create-stream", no_argument, NULL, OPT_CREATE},
    {"replicas", required_argument, NULL, OPT_REPLICAS},
    {"stream-subjects", required_argument, NULL, OPT_SUBJECTS},
    {"dupe-window", required_argument, NULL, OPT_DUP_WINDOW},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"ack-timeout", required_argument, NULL, OPT_ACK_TIMEOUT},
    {"backoff-base", required_argument, NULL, OPT_BACKOFF_BASE},
    {"backoff-max", required_argument, NULL, OPT_BACKOFF_MAX},
    {"seed", required_argument, NULL, OPT_SEED},
    NATS_CONF_OPTIONS,
    CLI_COMMON_OPTIONS,
};

static const char relay_synopsis[] =
    "stele relay DIR --name NAME --nats URL[,URL...] --stream STREAM --subject TEMPLATE [--follow]\n"
    "                 [--from LSN | --since TIME] [--type T] [--log-stream S] [--create-stream\n"
    "                 [--replicas N] [--stream-subjects S,...] [--dupe-window DURATION]] [--window N]\n"
    "                 [--ack-timeout MS] [--backoff-base MS] [--backoff-max MS] [--seed N]\n"
    "                 [--creds FILE] [--user U --password P] [--token T] [--tlscert FILE --tlskey FILE]\n"
    "                 [--tlsca FILE] [--nats-timeout MS]";

static const char *const relay_manual[] = {
    "\n"
    "DESCRIPTION\n"
    "  Publishes the records of the log in DIR into the NATS JetStream stream STREAM, each exactly\n"
    "  once, in LSN order, and keeps a durable cursor, the consumer relay.NAME (NAME: 1-58\n"
    "  characters of A-Z a-z 0-9 . _ -). Each record goes to the subject TEMPLATE with {type} and\n"
    "  {stream} replaced by the record's type and stream (bytes a subject cannot carry, and an\n"
    "  empty value, become '_'), with the payload as the message body and the headers\n"
    "    Nats-Msg-Id       LOGID:LSN (the log's 32-hex-digit id and the LSN: unique forever)\n"
    "    Stele-Lsn, Stele-Key, Stele-Type, Stele-Kind, Stele-Stream, Stele-Stream-Version,\n"
    "    Stele-Event-Time (RFC 3339), Stele-Content (json|text|binary), Stele-Log (LOGID),\n"
    "    Stele-Relay (NAME); a field the record does not have is left out.\n"
    "  Publishes are asynchronous, at most --window LSNs past the cursor at a time; the cursor\n"
    "  moves only past LSNs whose acknowledgement (PubAck) arrived, in order.\n"
    "\n"
    "  Exactly once: at start, and after any failure, the relay reads back from the stream the\n"
    "  messages it published past its cursor (headers Stele-Log and Stele-Relay) and publishes\n"
    "  only what the stream lacks. A relay killed at any moment and run again, however long after,\n"
    "  therefore adds no duplicate and loses nothing, independently of the stream's duplicate\n"
    "  window; only the moment a new stream leader takes over leans on that window. After a\n"
    "  failure a message lost in flight may be stored after later ones. SPEC.md §21.5 says\n"
    "  exactly what is guaranteed and under which assumptions.\n"
    "\n"
    "  Broker unavailable, leader changes, publish timeouts and no responders are retried after\n"
    "  a wait drawn from [0, min(backoff-max, backoff-base * 2^(n-1))] ms; each retry is reported on\n"
    "  stderr. The stream missing (without --create-stream), a message too large or a permission\n"
    "  denied stop the relay (exit 1) with the cursor where it was.\n",
    "\n"
    "OPTIONS\n"
    "  --name NAME         the relay, its cursor and its mark on the messages (required)\n"
    "  --stream STREAM     the JetStream stream (required)\n"
    "  --subject TEMPLATE  the subject, e.g. orders.{type} (required)\n"
    "  --follow            at the log's end, wait for new records until SIGINT/SIGTERM\n"
    "  --from LSN          start at LSN (the cursor never goes back)\n"
    "  --since TIME        start at the first record recorded at or after TIME (RFC 3339)\n"
    "  --type T            relay only records of type T\n"
    "  --log-stream S      relay only records of the log's stream S\n"
    "  --create-stream     create STREAM when it does not exist, file storage, with\n"
    "  --replicas N        replicas (1-5, default 1; 3 on a 3-node cluster),\n"
    "  --stream-subjects S,...  its subjects (default: TEMPLATE up to the token holding the first\n"
    "                      {...}, then '>': orders.{type} makes orders.>)\n"
    "  --dupe-window DURATION  and its duplicate window (default: the server's, 2m)\n"
    "  --window N          LSNs past the cursor that may be in flight, 1-256 (default 128)\n"
    "  --ack-timeout MS    a publish not acknowledged within MS ms is a failure (default 5000)\n"
    "  --backoff-base MS, --backoff-max MS  retry waits (default 100 and 5000)\n"
    "  --seed N            seed of the jitter (default: from the clock)\n",
    NULL, /* the connection options: nats_conf_manual */
    "\n"
    "OUTPUT\n"
    "  At the end one object: {\"relay\",\"stream\",\"published\",\"already_stored\",\"duplicates\",\n"
    "  \"retries\",\"cursor\"}: records published and acknowledged, records the resume found stored,\n"
    "  acknowledgements the stream marked duplicate, retries, and the cursor committed.\n"
    "\n"
    "EXIT STATUS\n"
    "  0 done (or stopped by SIGINT/SIGTERM after the acknowledgements in flight); 1 a failure that\n"
    "  does not heal, another relay of NAME running, or another failure; 2 usage; 4 no log in DIR.\n"
    "\n"
    "EXAMPLES\n"
    "  stele relay /var/lib/pay --name out --nats nats://n1:4222,nats://n2:4222 --stream PAY \\\n"
    "      --subject 'pay.{type}' --create-stream --replicas 3 --follow\n",
};

struct relay_args {
    const char *name, *stream, *subject, *type, *log_stream, *subjects;
    int follow, create, has_seed;
    uint64_t from, since, replicas, dup_window_ns, window, ack_timeout_ms, backoff_base_ms, backoff_max_ms, seed;
    struct nats_conf conf;
};

/* A publish waiting for its acknowledgement. */
struct flight {
    uint64_t lsn, sent_ns;
    int acked;
};

struct relay {
    const struct cli_ctx *ctx;
    const struct relay_args *a;
    stele_log *log;
    stele_cursor *cur;
    stele_iter *iter;
    struct nats_link *link;
    char log_id[33], cursor_name[STELE_CURSOR_NAME_SIZE_MAX + 1];
    struct flight *q;          /* the publishes in flight, ascending LSN, a ring of a->window */
    size_t q_head, q_count;
    uint64_t last_read;        /* every LSN up to here was read and handled or is in q */
    uint64_t committed, commit_ns;
    uint64_t *found;           /* the resume scan's LSNs already in the stream, ascending */
    size_t found_count, found_next;
    uint64_t published, already, duplicates, retries, rng;
    unsigned attempt;          /* failures since the last progress */
    int permanent;             /* a failure that does not heal stopped the run */
};

/* --------------------------------------------------------------- options */

static int opt_bounded(struct cli_ctx *ctx, const char *name, const char *text, uint64_t lo, uint64_t hi,
                       uint64_t *out)
{
    int rc = cli_opt_u64(ctx, name, text, out);
    if (rc == 0 && (*out < lo || *out > hi))
        return cli_usage_error(ctx, "--%s: %" PRIu64 " is outside [%" PRIu64 ", %" PRIu64 "]", name, *out, lo, hi);
    return rc;
}

static int relay_option(struct cli_ctx *ctx, int c, struct relay_args *a)
{
    char err[NATS_TEXT_SIZE];
    int n = nats_conf_option(&a->conf, c, optarg, err);
    if (n >= 0)
        return n ? cli_usage_error(ctx, "%s", err) : 0;
    switch (c) {
    case OPT_NAME: a->name = optarg; return 0;
    case OPT_STREAM: a->stream = optarg; return 0;
    case OPT_SUBJECT: a->subject = optarg; return 0;
    case OPT_FOLLOW: a->follow = 1; return 0;
    case OPT_FROM: return cli_opt_u64(ctx, "from", optarg, &a->from);
    case OPT_SINCE: return cli_opt_time(ctx, "since", optarg, &a->since);
    case OPT_TYPE: a->type = optarg; return cli_opt_field(ctx, "type", optarg);
    case OPT_LOG_STREAM: a->log_stream = optarg; return cli_opt_key(ctx, "log-stream", optarg);
    case OPT_CREATE: a->create = 1; return 0;
    case OPT_REPLICAS: return opt_bounded(ctx, "replicas", optarg, 1, 5, &a->replicas);
    case OPT_SUBJECTS: a->subjects = optarg; return 0;
    case OPT_DUP_WINDOW: return cli_opt_duration(ctx, "dupe-window", optarg, &a->dup_window_ns);
    case OPT_WINDOW: return opt_bounded(ctx, "window", optarg, 1, NATS_RELAY_WINDOW_MAX, &a->window);
    case OPT_ACK_TIMEOUT: return opt_bounded(ctx, "ack-timeout", optarg, 1, RELAY_MS_MAX, &a->ack_timeout_ms);
    case OPT_BACKOFF_BASE: return opt_bounded(ctx, "backoff-base", optarg, 0, RELAY_MS_MAX, &a->backoff_base_ms);
    case OPT_BACKOFF_MAX: return opt_bounded(ctx, "backoff-max", optarg, 0, RELAY_MS_MAX, &a->backoff_max_ms);
    case OPT_SEED: a->has_seed = 1; return cli_opt_u64(ctx, "seed", optarg, &a->seed);
    default: return CLI_EXIT_USAGE;
    }
}

/* The subjects a created stream takes: TEMPLATE with every token that holds
 * a {...} made '*', and '>' from the first one on when it is the last
 * token's ("orders.{type}" -> "orders.>", since a type may hold dots). */
static int default_subjects(const char *tmpl, char *dst, size_t cap)
{
    const char *brace = strchr(tmpl, '{');
    if (!brace) {
        if (strlen(tmpl) >= cap)
            return -1;
        strcpy(dst, tmpl);
        return 0;
    }
    const char *tok = brace;
    while (tok > tmpl && tok[-1] != '.')
        tok--;
    int n = snprintf(dst, cap, "%.*s>", (int)(tok - tmpl), tmpl);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int check_args(struct cli_ctx *ctx, struct relay_args *a)
{
    if (!a->name || !a->conf.urls || !a->stream || !a->subject)
        return cli_usage_error(ctx, "--name, --nats, --stream and --subject are required (see stele relay --help)");
    if (strlen(a->name) + 6 > STELE_CURSOR_NAME_SIZE_MAX)
        return cli_usage_error(ctx, "--name: longer than %u bytes", STELE_CURSOR_NAME_SIZE_MAX - 6);
    if (a->from && a->since)
        return cli_usage_error(ctx, "--from and --since exclude each other");
    if (!*a->subject || strlen(a->subject) >= RELAY_SUBJECT_SIZE_MAX / 2)
        return cli_usage_error(ctx, "--subject: empty or longer than %u bytes", RELAY_SUBJECT_SIZE_MAX / 2 - 1);
    for (const char *p = a->subject; *p; p++)
        if (*p == '{' && strncmp(p, "{type}", 6) != 0 && strncmp(p, "{stream}", 8) != 0)
            return cli_usage_error(ctx, "--subject: only {type} and {stream} may be replaced, not '%s'", p);
    if ((a->replicas || a->subjects || a->dup_window_ns) && !a->create)
        return cli_usage_error(ctx, "--replicas, --stream-subjects and --dupe-window go with --create-stream");
    if (a->backoff_max_ms < a->backoff_base_ms)
        return cli_usage_error(ctx, "--backoff-max is below --backoff-base");
    return 0;
}

/* ------------------------------------------------------ one record out */

/* Appends s[0, n) to the subject in dst as a subject token's text. */
static size_t put_token_text(char *dst, size_t at, size_t cap, const char *s, size_t n)
{
    if (n == 0)
        s = "_", n = 1;
    for (size_t i = 0; i < n && at + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[at++] = c <= ' ' || c == 0x7f || c == '*' || c == '>' ? '_' : (char)c;
    }
    return at;
}

static int render_subject(const char *tmpl, const stele_record *rec, char *dst, size_t cap)
{
    size_t at = 0;
    for (const char *p = tmpl; *p && at + 1 < cap;) {
        if (strncmp(p, "{type}", 6) == 0) {
            at = put_token_text(dst, at, cap, rec->type, rec->type_size);
            p += 6;
        } else if (strncmp(p, "{stream}", 8) == 0) {
            at = put_token_text(dst, at, cap, rec->stream, rec->stream_size);
            p += 8;
        } else {
            dst[at++] = *p++;
        }
    }
    dst[at] = '\0';
    return at + 1 < cap ? 0 : -1;
}

/* A header value from a record's field: NUL-terminated, and refused when it
 * holds a byte a header cannot carry (NUL, CR, LF). */
static int header_text(const char *s, size_t n, char *dst, size_t cap)
{
    if (n >= cap || memchr(s, '\0', n) || memchr(s, '\r', n) || memchr(s, '\n', n))
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static const char *content_name(int content)
{
    return content == STELE_CONTENT_JSON ? "json" : content == STELE_CONTENT_TEXT ? "text" : "binary";
}

/* Publishes rec. Returns 0 (fault in *fault, message printed for a
 * permanent one) or an exit code. */
static int publish_record(struct relay *r, const stele_record *rec, enum nats_fault *fault, char err[NATS_TEXT_SIZE])
{
    char subject[RELAY_SUBJECT_SIZE_MAX], id[64], lsn[24], ev_time[CLI_TIME_TEXT_SIZE], version[24];
    char key[CLI_FIELD_SIZE_MAX + 1], type[CLI_FIELD_SIZE_MAX + 1], stream[CLI_FIELD_SIZE_MAX + 1];
    struct nats_header h[RELAY_HEADERS_MAX];
    size_t n = 0;
    if (render_subject(r->a->subject, rec, subject, sizeof subject) != 0)
        return cli_error(r->ctx, CLI_EXIT_FAILURE, "LSN %" PRIu64 ": the subject is longer than %u bytes", rec->lsn,
                         RELAY_SUBJECT_SIZE_MAX - 1);
    if (header_text(rec->key, rec->key_size, key, sizeof key) || header_text(rec->type, rec->type_size, type, sizeof type) ||
        header_text(rec->stream, rec->stream_size, stream, sizeof stream))
        return cli_error(r->ctx, CLI_EXIT_FAILURE, "LSN %" PRIu64 ": its key, type or stream holds a NUL, CR or LF "
                         "byte, which a NATS header cannot carry", rec->lsn);
    snprintf(id, sizeof id, "%s:%" PRIu64, r->log_id, rec->lsn);
    snprintf(lsn, sizeof lsn, "%" PRIu64, rec->lsn);
    snprintf(version, sizeof version, "%" PRIu64, rec->stream_version);
    cli_time_format(rec->event_time_ns, ev_time, sizeof ev_time);
    h[n++] = (struct nats_header){"Nats-Msg-Id", id};
    h[n++] = (struct nats_header){"Stele-Lsn", lsn};
    if (rec->key_size)
        h[n++] = (struct nats_header){"Stele-Key", key};
    if (rec->type_size)
        h[n++] = (struct nats_header){"Stele-Type", type};
    h[n++] = (struct nats_header){"Stele-Kind", event_kind_name(rec->kind)};
    if (rec->stream_size) {
        h[n++] = (struct nats_header){"Stele-Stream", stream};
        h[n++] = (struct nats_header){"Stele-Stream-Version", version};
    }
    h[n++] = (struct nats_header){"Stele-Event-Time", ev_time};
    h[n++] = (struct nats_header){"Stele-Content", content_name(rec->content)};
    h[n++] = (struct nats_header){"Stele-Log", r->log_id};
    h[n++] = (struct nats_header){"Stele-Relay", r->a->name};
    *fault = nats_publish_async(r->link, r->a->stream, subject, h, n, rec->payload, rec->payload_size, rec->lsn, err);
    return 0;
}

/* ------------------------------------------------------------- the window */

/* The in-memory cursor: every selected LSN up to it is in the stream. */
static uint64_t position(const struct relay *r)
{
    return r->q_count ? r->q[r->q_head].lsn - 1 : r->last_read;
}

static struct flight *flight_at(struct relay *r, size_t i)
{
    return &r->q[(r->q_head + i) % r->a->window];
}

static void flight_acked(struct relay *r, uint64_t lsn)
{
    size_t lo = 0, hi = r->q_count;
    while (lo < hi) { /* ascending: a binary search */
        size_t mid = lo + (hi - lo) / 2;
        if (flight_at(r, mid)->lsn < lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < r->q_count && flight_at(r, lo)->lsn == lsn)
        flight_at(r, lo)->acked = 1;
    while (r->q_count && r->q[r->q_head].acked) {
        r->q_head = (r->q_head + 1) % r->a->window;
        r->q_count--;
    }
}

static int commit(struct relay *r, int force)
{
    uint64_t pos = position(r), now = cli_mono_ns();
    if (pos <= r->committed || (!force && now - r->commit_ns < RELAY_COMMIT_INTERVAL_NS))
        return 0;
    int code = stele_cursor_commit(r->cur, pos);
    if (code != STELE_OK)
        return cli_fail(r->ctx, code, "committing relay %s at LSN %" PRIu64, r->a->name, pos);
    r->committed = pos;
    r->commit_ns = now;
    return 0;
}

/* Takes the acknowledgements that came (waiting up to wait_ms for one);
 * *fault is set by a failed one, with its message in err. */
static void take_acks(struct relay *r, int wait_ms, enum nats_fault *fault, char err[NATS_TEXT_SIZE])
{
    struct nats_ack acks[RELAY_ACKS_PER_TAKE];
    size_t n = nats_acks_take(r->link, wait_ms, acks, RELAY_ACKS_PER_TAKE);
    for (size_t i = 0; i < n; i++) {
        if (acks[i].fault != NATS_FAULT_NONE) {
            if (*fault < acks[i].fault) {
                *fault = acks[i].fault;
                memcpy(err, acks[i].text, NATS_TEXT_SIZE);
            }
            continue;
        }
        r->published++;
        r->duplicates += acks[i].duplicate != 0;
        r->attempt = 0;
        flight_acked(r, acks[i].tag);
    }
    if (*fault == NATS_FAULT_NONE && r->q_count &&
        cli_mono_ns() - r->q[r->q_head].sent_ns > r->a->ack_timeout_ms * 1000000u) {
        *fault = NATS_FAULT_RETRY;
        snprintf(err, NATS_TEXT_SIZE, "no acknowledgement for LSN %" PRIu64 " within %" PRIu64 " ms",
                 r->q[r->q_head].lsn, r->a->ack_timeout_ms);
    }
}

/* ----------------------------------------------------------- connecting */

static int field_is(const char *want, const char *s, size_t n)
{
    return !want || (strlen(want) == n && memcmp(want, s, n) == 0);
}

/* Opens the iterator at the LSN after position(r) (nothing in flight). */
static int open_iter(struct relay *r)
{
    stele_iter_close(r->iter);
    r->iter = NULL;
    int code;
    if (r->a->log_stream)
        code = stele_iter_open_stream(r->log, r->a->log_stream, strlen(r->a->log_stream), 1, &r->iter);
    else
        code = stele_iter_open(r->log, r->last_read + 1, &r->iter);
    return code == STELE_OK ? 0 : cli_fail(r->ctx, code, "reading from LSN %" PRIu64, r->last_read + 1);
}

/* Connects, makes sure of the stream, and finds which LSNs past the cursor
 * the stream already holds. Returns 0 with *fault set (the message in err),
 * or an exit code. */
static int connect_and_scan(struct relay *r, enum nats_fault *fault, char err[NATS_TEXT_SIZE])
{
    *fault = nats_link_open(&r->a->conf, (int)r->a->window, &r->link, err);
    if (*fault)
        return 0;
    char subjects[RELAY_SUBJECT_SIZE_MAX];
    if (!r->a->subjects && default_subjects(r->a->subject, subjects, sizeof subjects) != 0)
        return cli_error(r->ctx, CLI_EXIT_USAGE, "--subject: too long");
    int replicas = 0;
    *fault = nats_stream_ensure(r->link, r->a->stream, r->a->create, r->a->subjects ? r->a->subjects : subjects,
                                r->a->replicas ? (int)r->a->replicas : 1, r->a->dup_window_ns, &replicas, err);
    if (*fault)
        return 0;
    struct nats_scan scan = {.stream = r->a->stream, .log_id = r->log_id, .relay = r->a->name,
                             .cursor = position(r)};
    *fault = nats_scan_relay(r->link, &scan, err);
    if (*fault)
        return 0;
    free(r->found);
    r->found = scan.lsns;
    r->found_count = scan.lsn_count;
    r->found_next = 0;
    return open_iter(r);
}

/* After a failure: drop the connection and everything in flight, wait, and
 * connect again. Returns 0 (connected, or stopped by a signal) or an exit code. */
static int recover(struct relay *r, enum nats_fault fault, char err[NATS_TEXT_SIZE])
{
    for (;;) {
        nats_link_close(r->link);
        r->link = NULL;
        /* What was in flight is unknown: read again after the position. */
        r->last_read = position(r);
        r->q_count = r->q_head = 0;
        if (fault == NATS_FAULT_PERMANENT) {
            r->permanent = 1;
            return cli_error(r->ctx, CLI_EXIT_FAILURE, "%s (not retried; the cursor stays at %" PRIu64 ")", err,
                             r->committed);
        }
        if (fault != NATS_FAULT_NONE) {
            r->attempt++;
            r->retries++;
            uint64_t delay = backoff_delay_ms(r->a->backoff_base_ms, r->a->backoff_max_ms, r->attempt, &r->rng);
            fprintf(stderr, "stele: relay: %s; retrying (attempt %u) in %" PRIu64 " ms from LSN %" PRIu64 "\n", err,
                    r->attempt, delay, position(r) + 1);
            if (cli_sleep_ms(delay))
                return 0;
        }
        int rc = connect_and_scan(r, &fault, err);
        if (rc == 0 && fault == NATS_FAULT_NONE && r->attempt)
            fprintf(stderr, "stele: relay: connected again; the stream holds %zu of its LSNs after %" PRIu64
                    " (%" PRIu64 " duplicates so far)\n", r->found_count, position(r), r->duplicates);
        if (rc || fault == NATS_FAULT_NONE)
            return rc;
    }
}

/* ------------------------------------------------------------- the loop */

/* Handles record rec: passed over, found in the stream, or published. */
static int handle_record(struct relay *r, const stele_record *rec, enum nats_fault *fault, char err[NATS_TEXT_SIZE])
{
    int selected = field_is(r->a->type, rec->type, rec->type_size);
    while (r->found_next < r->found_count && r->found[r->found_next] < rec->lsn)
        r->found_next++;
    if (selected && r->found_next < r->found_count && r->found[r->found_next] == rec->lsn) {
        r->already++;
        selected = 0; /* the stream holds it */
    }
    if (!selected) {
        r->last_read = rec->lsn;
        return 0;
    }
    int rc = publish_record(r, rec, fault, err);
    if (rc || *fault)
        return rc;
    struct flight *f = flight_at(r, r->q_count);
    *f = (struct flight){.lsn = rec->lsn, .sent_ns = cli_mono_ns()};
    r->q_count++;
    r->last_read = rec->lsn;
    return 0;
}

/* Waits until LSN lsn fits the window (or a fault, or a stop). */
static void wait_window(struct relay *r, uint64_t lsn, enum nats_fault *fault, char err[NATS_TEXT_SIZE])
{
    while (*fault == NATS_FAULT_NONE && !cli_stop_requested() && r->q_count &&
           (lsn - position(r) > r->a->window || r->q_count == r->a->window))
        take_acks(r, 50, fault, err);
}

/* One pass: read and publish until the end of the log (without --follow),
 * a fault or a stop. */
static int pass(struct relay *r, enum nats_fault *fault, char err[NATS_TEXT_SIZE], int *done)
{
    int rc = 0;
    while (rc == 0 && *fault == NATS_FAULT_NONE && !cli_stop_requested()) {
        take_acks(r, 0, fault, err);
        if (*fault || (rc = commit(r, 0)) != 0)
            break;
        const stele_record *rec = NULL;
        int wait = r->q_count ? 0 : r->a->follow ? RELAY_FOLLOW_WAIT_MS : 0;
        int code = stele_iter_next(r->iter, wait, &rec);
        if (code != STELE_OK)
            return cli_fail(r->ctx, code, "reading after LSN %" PRIu64, r->last_read);
        if (!rec) {
            if (r->q_count)
                take_acks(r, 20, fault, err);
            else if (!r->a->follow) {
                *done = 1;
                break;
            }
            continue;
        }
        if (rec->lsn <= r->last_read)
            continue; /* a stream read starts at the stream's first record */
        if (r->a->log_stream && !r->q_count)
            r->last_read = rec->lsn - 1; /* the LSNs between are no part of the stream */
        wait_window(r, rec->lsn, fault, err);
        if (*fault || cli_stop_requested())
            break; /* rec is read again after the reconnection */
        rc = handle_record(r, rec, fault, err);
    }
    return rc;
}

/* SIGINT/SIGTERM: the acknowledgements in flight get --ack-timeout to come. */
static void drain(struct relay *r)
{
    enum nats_fault fault = NATS_FAULT_NONE;
    char err[NATS_TEXT_SIZE];
    while (r->link && r->q_count && fault == NATS_FAULT_NONE)
        take_acks(r, 50, &fault, err);
}

static int relay_loop(struct relay *r)
{
    enum nats_fault fault = NATS_FAULT_NONE;
    char err[NATS_TEXT_SIZE] = "";
    int rc = recover(r, NATS_FAULT_NONE, err), done = 0;
    while (rc == 0 && !done && !cli_stop_requested()) {
        rc = pass(r, &fault, err, &done);
        if (rc == 0 && fault != NATS_FAULT_NONE) {
            int crc = commit(r, 1);
            rc = crc ? crc : recover(r, fault, err);
            fault = NATS_FAULT_NONE;
        }
    }
    if (!r->permanent)
        drain(r);
    int crc = commit(r, 1);
    return rc ? rc : crc;
}

static int print_summary(struct relay *r)
{
    json_t *o = json_object();
    if (!o)
        return cli_error(r->ctx, CLI_EXIT_FAILURE, "out of memory");
    json_object_set_new(o, "relay", json_string(r->a->name));
    json_object_set_new(o, "stream", json_string(r->a->stream));
    json_object_set_new(o, "published", json_integer((json_int_t)r->published));
    json_object_set_new(o, "already_stored", json_integer((json_int_t)r->already));
    json_object_set_new(o, "duplicates", json_integer((json_int_t)r->duplicates));
    json_object_set_new(o, "retries", json_integer((json_int_t)r->retries));
    json_object_set_new(o, "cursor", json_integer((json_int_t)r->committed));
    int rc = json_write_line(stdout, o) ? cli_error(r->ctx, CLI_EXIT_FAILURE, "out of memory") : 0;
    json_decref(o);
    fflush(stdout);
    return rc;
}

/* The starting point: after the cursor, --from, --since. */
static int start_position(struct relay *r)
{
    int code = stele_cursor_position(r->cur, &r->committed);
    if (code != STELE_OK)
        return cli_fail(r->ctx, code, "reading relay %s's cursor", r->a->name);
    r->last_read = r->committed;
    if (r->a->from > r->last_read + 1)
        r->last_read = r->a->from - 1;
    if (r->a->since) {
        uint64_t lsn;
        if ((code = stele_lsn_at_time(r->log, r->a->since, &lsn)) != STELE_OK)
            return cli_fail(r->ctx, code, "finding the first LSN at --since");
        if (lsn > r->last_read + 1)
            r->last_read = lsn - 1;
    }
    return 0;
}

static int run(struct relay *r, const char *dir)
{
    int rc = cli_open_read_only(r->ctx, dir, &r->log);
    if (rc)
        return rc;
    stele_stats st;
    int code = stele_stats_get(r->log, &st);
    if (code != STELE_OK) {
        rc = cli_fail(r->ctx, code, "reading the log's id");
        goto done;
    }
    cli_hex(st.log_id, sizeof st.log_id, r->log_id);
    snprintf(r->cursor_name, sizeof r->cursor_name, "relay.%s", r->a->name);
    if ((code = stele_cursor_open(r->log, r->cursor_name, &r->cur)) != STELE_OK) {
        rc = cli_fail(r->ctx, code, "opening relay %s's cursor", r->a->name);
        goto done;
    }
    if ((code = stele_cursor_exclusive(r->cur)) != STELE_OK) {
        rc = cli_fail(r->ctx, code, "relaying as %s", r->a->name);
        goto done;
    }
    r->q = calloc(r->a->window, sizeof *r->q);
    if (!r->q) {
        rc = cli_error(r->ctx, CLI_EXIT_FAILURE, "out of memory");
        goto done;
    }
    if ((rc = start_position(r)) != 0)
        goto done;
    cli_stop_install(1);
    rc = relay_loop(r);
    if (rc == 0)
        rc = print_summary(r);
done:
    nats_link_close(r->link);
    nats_shutdown();
    free(r->found);
    free(r->q);
    stele_iter_close(r->iter);
    stele_cursor_close(r->cur);
    return cli_close_log(r->ctx, r->log, dir, rc);
}

int cmd_relay(struct cli_ctx *ctx, int argc, char **argv)
{
    struct relay_args a = {.window = RELAY_WINDOW_DEFAULT, .ack_timeout_ms = 5000, .backoff_base_ms = 100,
                           .backoff_max_ms = 5000, .conf = {.timeout_ms = 5000}};
    const char *dir;
    int c, rc;
    ctx->usage = relay_synopsis;
    while ((c = cli_next_opt(ctx, argc, argv, relay_options)) != -1) {
        if (c == CLI_OPT_HELP) {
            for (size_t i = 0; i < sizeof relay_manual / sizeof relay_manual[0]; i++)
                fputs(relay_manual[i] ? relay_manual[i] : nats_conf_manual, stdout);
            return CLI_EXIT_OK;
        }
        if (c == CLI_OPT_INVALID)
            return CLI_EXIT_USAGE;
        if ((rc = relay_option(ctx, c, &a)) != 0)
            return rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0 || (rc = check_args(ctx, &a)) != 0)
        return rc;
    a.conf.name = a.name;
    struct relay r = {.ctx = ctx, .a = &a};
    r.rng = a.has_seed ? a.seed : cli_now_ns() ^ ((uint64_t)getpid() << 32);
    return run(&r, dir);
}
