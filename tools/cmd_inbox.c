/*
 * cmd_inbox.c - `stele inbox DIR --nats URL --stream STREAM --durable NAME`:
 * append the messages of a JetStream stream to the local log, each once
 * (SPEC.md §21.6).
 *
 * A durable pull consumer (explicit acks) hands out batches; each batch is
 * appended with stele_append_batch, every message under an idempotency key
 * (its Nats-Msg-Id by default, --key-header or --key-field otherwise, and
 * STREAM:SEQUENCE when it has none), and only once that call returned -
 * the records durable - is each message acknowledged. A crash between the
 * append and the ack makes JetStream redeliver the message after the ack
 * wait; its key then makes it a duplicate, which is acknowledged. A key that
 * holds a different record is a conflict: the message is terminated (never
 * redelivered) and kept as a dead letter of the consumer inbox.NAME, with
 * the reason; stele replay --consumer inbox.NAME --dead-letters lists them.
 * The log's idempotency window bounds this: a message redelivered after the
 * window forgot its key would be appended again (use --idem-window 0 or a
 * window longer than any redelivery).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "nats_sink.h"
#include "stele.h"

#define INBOX_BATCH_DEFAULT 256u
#define INBOX_BATCH_MAX 4096u
#define INBOX_MS_MAX (24ull * 3600 * 1000)

enum {
    OPT_STREAM = 256, OPT_DURABLE, OPT_FILTER, OPT_KEY_HEADER, OPT_KEY_FIELD, OPT_BATCH, OPT_FOLLOW,
    OPT_WAIT, OPT_ACK_WAIT,
};

static const struct option inbox_options[] = {
    {"stream", required_argument, NULL, OPT_STREAM},
    {"durable", required_argument, NULL, OPT_DURABLE},
    {"filter", required_argument, NULL, OPT_FILTER},
    {"key-header", required_argument, NULL, OPT_KEY_HEADER},
    {"key-field", required_argument, NULL, OPT_KEY_FIELD},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    {"wait", required_argument, NULL, OPT_WAIT},
    {"ack-wait", required_argument, NULL, OPT_ACK_WAIT},
    NATS_CONF_OPTIONS,
    CLI_COMMON_OPTIONS,
};

static const char inbox_synopsis[] =
    "stele inbox DIR --nats URL[,URL...] --stream STREAM --durable NAME [--filter SUBJECT]\n"
    "                 [--key-header H | --key-field FIELD] [--batch N] [--follow] [--wait MS]\n"
    "                 [--ack-wait MS] [--creds FILE] [--user U --password P] [--token T]\n"
    "                 [--tlscert FILE --tlskey FILE] [--tlsca FILE] [--nats-timeout MS]";

static const char *const inbox_manual[] = {
    "\n"
    "DESCRIPTION\n"
    "  Appends the messages of the JetStream stream STREAM to the log in DIR, through the durable\n"
    "  pull consumer NAME (created when missing, explicit acks, from the stream's first message;\n"
    "  --filter narrows it to a subject). Each message becomes an event whose idempotency key is\n"
    "  its Nats-Msg-Id header (or the header --key-header H, or the top-level string field FIELD\n"
    "  of its JSON payload with --key-field; STREAM:SEQUENCE when the message has no Nats-Msg-Id),\n"
    "  type its Stele-Type header or else its subject, stream its Stele-Stream header, event time\n"
    "  its Stele-Event-Time header, content its Stele-Content header (else json when the payload\n"
    "  parses as JSON, text when it is UTF-8, binary otherwise).\n"
    "\n"
    "  A message is acknowledged only after its record is durable. A run killed in between gets\n"
    "  the message again (after --ack-wait) and its key makes it a duplicate, acknowledged: every\n"
    "  message is in the log once, within the log's idempotency window. A message whose key holds\n"
    "  a different record (a conflict) is terminated, never redelivered, and kept as a dead letter\n"
    "  of the consumer inbox.NAME with the reason (stele replay DIR --consumer inbox.NAME\n"
    "  --dead-letters); a message without a key is terminated and reported.\n",
    "\n"
    "OPTIONS\n"
    "  --stream STREAM     the JetStream stream (required)\n"
    "  --durable NAME      the durable consumer, 1-58 characters of A-Z a-z 0-9 . _ - (required)\n"
    "  --filter SUBJECT    only messages on SUBJECT (wildcards allowed); set when the consumer is\n"
    "                      created\n"
    "  --key-header H, --key-field FIELD  where the idempotency key comes from (see above)\n"
    "  --batch N           messages fetched and appended at a time, 1-4096 (default 256)\n"
    "  --follow            keep fetching until SIGINT/SIGTERM\n"
    "  --wait MS           without --follow, stop when a fetch waited MS ms for nothing (default 1000)\n"
    "  --ack-wait MS       redelivery delay of an unacknowledged message, for a consumer created\n"
    "                      here (default 30000)\n",
    NULL, /* the connection options: nats_conf_manual */
    "\n"
    "OUTPUT\n"
    "  At the end one object: {\"inbox\",\"stream\",\"new\",\"duplicate\",\"conflict\",\"invalid\"}.\n"
    "\n"
    "EXIT STATUS\n"
    "  0 done; 1 NATS or the log failed (messages not acknowledged come again); 2 usage; 3 at\n"
    "  least one conflict (the others were appended); 4 no log in DIR.\n",
};

struct inbox_args {
    const char *stream, *durable, *filter, *key_header, *key_field;
    int follow;
    uint64_t batch, wait_ms, ack_wait_ms;
    struct nats_conf conf;
};

struct inbox {
    const struct cli_ctx *ctx;
    const struct inbox_args *a;
    stele_log *log;
    stele_cursor *dead;
    struct nats_link *link;
    struct nats_pull *pull;
    uint64_t fresh, duplicate, conflict, invalid;
};

/* What one message becomes, with the memory its strings point at. */
struct inbound {
    stele_event ev;
    char key[CLI_FIELD_SIZE_MAX + 1];
    json_t *payload_json;  /* the parsed payload, for --key-field */
    int ok;                /* has a key and fits the fields' limits */
    char why[160];
};

static int inbox_option(struct cli_ctx *ctx, int c, struct inbox_args *a)
{
    char err[NATS_TEXT_SIZE];
    int n = nats_conf_option(&a->conf, c, optarg, err);
    uint64_t v;
    if (n >= 0)
        return n ? cli_usage_error(ctx, "%s", err) : 0;
    switch (c) {
    case OPT_STREAM: a->stream = optarg; return 0;
    case OPT_DURABLE: a->durable = optarg; return 0;
    case OPT_FILTER: a->filter = optarg; return 0;
    case OPT_KEY_HEADER: a->key_header = optarg; return 0;
    case OPT_KEY_FIELD: a->key_field = optarg; return 0;
    case OPT_FOLLOW: a->follow = 1; return 0;
    case OPT_BATCH:
        if (cli_opt_u64(ctx, "batch", optarg, &v) || v < 1 || v > INBOX_BATCH_MAX)
            return cli_usage_error(ctx, "--batch: expected 1 to %u", INBOX_BATCH_MAX);
        a->batch = v;
        return 0;
    case OPT_WAIT:
    case OPT_ACK_WAIT:
        if (cli_opt_u64(ctx, c == OPT_WAIT ? "wait" : "ack-wait", optarg, &v) || v < 1 || v > INBOX_MS_MAX)
            return cli_usage_error(ctx, "--%s: expected 1 to %llu ms", c == OPT_WAIT ? "wait" : "ack-wait",
                                   INBOX_MS_MAX);
        *(c == OPT_WAIT ? &a->wait_ms : &a->ack_wait_ms) = v;
        return 0;
    default:
        return CLI_EXIT_USAGE;
    }
}

static int check_args(struct cli_ctx *ctx, const struct inbox_args *a)
{
    if (!a->conf.urls || !a->stream || !a->durable)
        return cli_usage_error(ctx, "--nats, --stream and --durable are required (see stele inbox --help)");
    if (a->key_header && a->key_field)
        return cli_usage_error(ctx, "--key-header and --key-field exclude each other");
    if (strlen(a->durable) + 6 > STELE_CURSOR_NAME_SIZE_MAX)
        return cli_usage_error(ctx, "--durable: longer than %u bytes", STELE_CURSOR_NAME_SIZE_MAX - 6);
    for (const char *p = a->durable; *p; p++)
        if (!(*p == '.' || *p == '_' || *p == '-' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z')))
            return cli_usage_error(ctx, "--durable: only A-Z a-z 0-9 . _ - (not '%c')", *p);
    return 0;
}

/* ---------------------------------------------------- message to event */

static void set_field(const char *v, const char **out, size_t *out_size)
{
    if (v && *v && strlen(v) <= CLI_FIELD_SIZE_MAX && cli_utf8_valid(v, strlen(v))) {
        *out = v;
        *out_size = strlen(v);
    }
}

static void set_content(struct inbound *in, const struct nats_in *m)
{
    const char *c = nats_in_header(m, "Stele-Content");
    if (c && strcmp(c, "json") == 0) {
        in->ev.content = STELE_CONTENT_JSON;
    } else if (c && strcmp(c, "text") == 0) {
        in->ev.content = STELE_CONTENT_TEXT;
    } else if (c && strcmp(c, "binary") == 0) {
        in->ev.content = STELE_CONTENT_BINARY;
    } else if (in->payload_json) {
        in->ev.content = STELE_CONTENT_JSON;
    } else {
        in->ev.content = cli_utf8_valid(m->data, m->data_size) ? STELE_CONTENT_TEXT : STELE_CONTENT_BINARY;
    }
}

static void set_key(struct inbound *in, const struct nats_in *m, const struct inbox_args *a)
{
    const char *k = NULL;
    if (a->key_field) {
        json_t *f = in->payload_json ? json_object_get(in->payload_json, a->key_field) : NULL;
        k = f && json_is_string(f) ? json_string_value(f) : NULL;
        if (!k)
            snprintf(in->why, sizeof in->why, "the payload has no string field \"%s\"", a->key_field);
    } else if (a->key_header) {
        k = nats_in_header(m, a->key_header);
        if (!k)
            snprintf(in->why, sizeof in->why, "no header %s", a->key_header);
    } else if (!(k = nats_in_header(m, "Nats-Msg-Id"))) {
        snprintf(in->key, sizeof in->key, "%s:%" PRIu64, a->stream, m->stream_seq);
        k = in->key;
    }
    if (k && (!*k || strlen(k) > CLI_FIELD_SIZE_MAX)) {
        snprintf(in->why, sizeof in->why, "its key is empty or longer than %u bytes", CLI_FIELD_SIZE_MAX);
        k = NULL;
    }
    if (!k)
        return;
    if (k != in->key)
        snprintf(in->key, sizeof in->key, "%s", k);
    in->ev.key = in->key;
    in->ev.key_size = strlen(in->key);
    in->ok = 1;
}

static void inbound_make(struct inbound *in, const struct nats_in *m, const struct inbox_args *a)
{
    memset(in, 0, sizeof in->ev);
    in->ok = 0;
    in->why[0] = '\0';
    in->payload_json = m->data_size ? json_loadb(m->data, m->data_size, JSON_DECODE_ANY, NULL) : NULL;
    in->ev.kind = STELE_KIND_EVENT;
    in->ev.payload = m->data;
    in->ev.payload_size = m->data_size;
    set_field(nats_in_header(m, "Stele-Type"), &in->ev.type, &in->ev.type_size);
    if (!in->ev.type_size)
        set_field(m->subject, &in->ev.type, &in->ev.type_size);
    set_field(nats_in_header(m, "Stele-Stream"), &in->ev.stream, &in->ev.stream_size);
    const char *t = nats_in_header(m, "Stele-Event-Time");
    uint64_t ns;
    if (t && cli_parse_time(t, &ns) == 0 && ns)
        in->ev.event_time_ns = ns;
    set_content(in, m);
    set_key(in, m, a);
}

/* ------------------------------------------------------------ one batch */

static int dead_letter(struct inbox *b, const struct nats_in *m, const struct inbound *in, uint64_t lsn)
{
    char reason[STELE_DEAD_REASON_SIZE_MAX];
    int n = snprintf(reason, sizeof reason, "conflict: message %" PRIu64 " of stream %s (subject %s) has key %s, "
                     "which holds a different record", m->stream_seq, b->a->stream, m->subject, in->key);
    stele_dead_letter dl = {.lsn = lsn, .key = in->key, .key_size = strlen(in->key), .reason = reason,
                            .reason_size = n > 0 ? (size_t)n < sizeof reason ? (size_t)n : sizeof reason - 1 : 0,
                            .attempts = (uint32_t)m->delivered, .dead_at_ns = cli_now_ns()};
    int code = stele_dead_letter_add(b->dead, &dl);
    if (code != STELE_OK)
        return cli_fail(b->ctx, code, "recording the dead letter of message %" PRIu64, m->stream_seq);
    fprintf(stderr, "stele: inbox: %s (kept as a dead letter of consumer inbox.%s)\n", reason, b->a->durable);
    return 0;
}

/* Acts on one message's receipt: ack, or terminate and keep it. */
static int settle(struct inbox *b, struct nats_in *m, const struct inbound *in, const stele_receipt *rc_in)
{
    char err[NATS_TEXT_SIZE];
    int term = 0, rc = 0;
    if (!in->ok) {
        b->invalid++;
        term = 1;
        fprintf(stderr, "stele: inbox: message %" PRIu64 " of stream %s (subject %s) not appended: %s; terminated\n",
                m->stream_seq, b->a->stream, m->subject, in->why);
    } else if (rc_in->code == STELE_ERR_CONFLICT) {
        b->conflict++;
        term = 1;
        if ((rc = dead_letter(b, m, in, rc_in->lsn)) != 0)
            return rc; /* not terminated: it comes again */
    } else if (rc_in->code != STELE_OK) {
        b->invalid++;
        term = 1;
        fprintf(stderr, "stele: inbox: message %" PRIu64 " of stream %s not appended: %s; terminated\n",
                m->stream_seq, b->a->stream, stele_strerror(rc_in->code));
    } else if (rc_in->decision == STELE_DECISION_DUPLICATE) {
        b->duplicate++;
    } else {
        b->fresh++;
    }
    /* An ack that is lost only brings the message again, a duplicate: no retry here. */
    if (nats_in_ack(m, term, err) != NATS_FAULT_NONE)
        fprintf(stderr, "stele: inbox: %s (the message will come again)\n", err);
    return 0;
}

/* The whole batch failed on bad input: append its messages one at a time,
 * so that only the bad ones are refused. */
static int append_singly(struct inbox *b, struct inbound *ins, stele_receipt *rcs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!ins[i].ok)
            continue;
        int code = stele_append(b->log, &ins[i].ev, &rcs[i]);
        if (code != STELE_OK && code != STELE_ERR_CONFLICT && code != STELE_ERR_INVALID && code != STELE_ERR_TOO_LARGE)
            return cli_fail(b->ctx, code, "appending message %zu of the batch", i);
        rcs[i].code = code;
        if (code == STELE_ERR_INVALID || code == STELE_ERR_TOO_LARGE)
            snprintf(ins[i].why, sizeof ins[i].why, "%s", stele_errmsg());
    }
    return 0;
}

static int append_batch(struct inbox *b, struct nats_in *msgs, size_t n, struct inbound *ins, stele_event *evs,
                        stele_receipt *rcs, size_t *idx)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        inbound_make(&ins[i], &msgs[i], b->a);
        memset(&rcs[i], 0, sizeof rcs[i]);
        if (ins[i].ok) {
            evs[k] = ins[i].ev;
            idx[k++] = i;
        }
    }
    stele_receipt *krc = rcs + n; /* the receipts of the k keyed ones */
    int code = k ? stele_append_batch(b->log, evs, k, krc) : STELE_OK;
    if (code == STELE_ERR_INVALID || code == STELE_ERR_TOO_LARGE)
        return append_singly(b, ins, rcs, n);
    if (code != STELE_OK && code != STELE_ERR_CONFLICT)
        return cli_fail(b->ctx, code, "appending %zu messages of stream %s (not acknowledged: they come again)", k,
                        b->a->stream);
    for (size_t j = 0; j < k; j++)
        rcs[idx[j]] = krc[j];
    return 0;
}

static int run_batch(struct inbox *b, struct nats_in *msgs, size_t n)
{
    struct inbound *ins = calloc(n, sizeof *ins);
    stele_event *evs = calloc(n, sizeof *evs);
    stele_receipt *rcs = calloc(2 * n, sizeof *rcs);
    size_t *idx = calloc(n, sizeof *idx);
    int rc = ins && evs && rcs && idx ? append_batch(b, msgs, n, ins, evs, rcs, idx)
                                      : cli_error(b->ctx, CLI_EXIT_FAILURE, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = settle(b, &msgs[i], &ins[i], &rcs[i]);
    for (size_t i = 0; ins && i < n; i++)
        json_decref(ins[i].payload_json);
    free(ins);
    free(evs);
    free(rcs);
    free(idx);
    return rc;
}

/* ------------------------------------------------------------ the loop */

static int inbox_loop(struct inbox *b)
{
    char err[NATS_TEXT_SIZE];
    struct nats_in *msgs = calloc(b->a->batch, sizeof *msgs);
    if (!msgs)
        return cli_error(b->ctx, CLI_EXIT_FAILURE, "out of memory");
    int rc = 0;
    while (rc == 0 && !cli_stop_requested()) {
        size_t n = 0;
        enum nats_fault f = nats_pull_fetch(b->pull, (int)b->a->batch, (int)b->a->wait_ms, msgs, &n, err);
        if (f != NATS_FAULT_NONE) {
            rc = cli_error(b->ctx, CLI_EXIT_FAILURE, "%s", err);
            break;
        }
        if (n == 0 && !b->a->follow)
            break;
        rc = run_batch(b, msgs, n);
        nats_in_release(msgs, n);
    }
    free(msgs);
    return rc;
}

static int print_summary(struct inbox *b)
{
    json_t *o = json_object();
    if (!o)
        return cli_error(b->ctx, CLI_EXIT_FAILURE, "out of memory");
    json_object_set_new(o, "inbox", json_string(b->a->durable));
    json_object_set_new(o, "stream", json_string(b->a->stream));
    json_object_set_new(o, "new", json_integer((json_int_t)b->fresh));
    json_object_set_new(o, "duplicate", json_integer((json_int_t)b->duplicate));
    json_object_set_new(o, "conflict", json_integer((json_int_t)b->conflict));
    json_object_set_new(o, "invalid", json_integer((json_int_t)b->invalid));
    int rc = json_write_line(stdout, o) ? cli_error(b->ctx, CLI_EXIT_FAILURE, "out of memory") : 0;
    json_decref(o);
    return rc ? rc : b->conflict ? CLI_EXIT_CONFLICT : 0;
}

static int run(struct inbox *b, const char *dir)
{
    stele_options opts;
    stele_options_init(&opts);
    opts.durability = STELE_DURABILITY_SYNC; /* acked to NATS only once durable, whatever the log's default */
    int rc = cli_open_log(b->ctx, dir, &opts, &b->log);
    if (rc)
        return rc;
    char name[STELE_CURSOR_NAME_SIZE_MAX + 1], err[NATS_TEXT_SIZE];
    snprintf(name, sizeof name, "inbox.%s", b->a->durable);
    int code = stele_cursor_open(b->log, name, &b->dead);
    if (code == STELE_OK)
        code = stele_cursor_exclusive(b->dead);
    if (code != STELE_OK) {
        rc = cli_fail(b->ctx, code, "opening consumer %s", name);
        goto done;
    }
    if (nats_link_open(&b->a->conf, 0, &b->link, err) != NATS_FAULT_NONE ||
        nats_pull_open(b->link, b->a->stream, b->a->durable, b->a->filter, b->a->ack_wait_ms, &b->pull, err) !=
            NATS_FAULT_NONE) {
        rc = cli_error(b->ctx, CLI_EXIT_FAILURE, "%s", err);
        goto done;
    }
    cli_stop_install(0);
    rc = inbox_loop(b);
    if (rc == 0)
        rc = print_summary(b);
done:
    nats_pull_close(b->pull);
    nats_link_close(b->link);
    nats_shutdown();
    stele_cursor_close(b->dead);
    return cli_close_log(b->ctx, b->log, dir, rc);
}

int cmd_inbox(struct cli_ctx *ctx, int argc, char **argv)
{
    struct inbox_args a = {.batch = INBOX_BATCH_DEFAULT, .wait_ms = 1000, .ack_wait_ms = 30000,
                           .conf = {.timeout_ms = 5000}};
    const char *dir;
    int c, rc;
    ctx->usage = inbox_synopsis;
    while ((c = cli_next_opt(ctx, argc, argv, inbox_options)) != -1) {
        if (c == CLI_OPT_HELP) {
            for (size_t i = 0; i < sizeof inbox_manual / sizeof inbox_manual[0]; i++)
                fputs(inbox_manual[i] ? inbox_manual[i] : nats_conf_manual, stdout);
            return CLI_EXIT_OK;
        }
        if (c == CLI_OPT_INVALID)
            return CLI_EXIT_USAGE;
        if ((rc = inbox_option(ctx, c, &a)) != 0)
            return rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0 || (rc = check_args(ctx, &a)) != 0)
        return rc;
    struct inbox b = {.ctx = ctx, .a = &a};
    return run(&b, dir);
}
