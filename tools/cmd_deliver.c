/*
 * cmd_deliver.c - `stele deliver DIR --endpoint NAME --url URL --secret-file F`:
 * deliver the log's events to an HTTP endpoint as Standard Webhooks, at least
 * once, per stream in LSN order, with retry classes, Retry-After, a circuit
 * breaker and dead letters (SPEC.md §22; issue 20).
 *
 * The endpoint NAME is the consumer "webhook.NAME" (SPEC.md §16): its durable
 * cursor and dead letters. The loop keeps a window of at most --window events
 * read after the cursor, in LSN order, and runs up to --concurrency HTTP
 * requests at once on libcurl's multi interface (one thread, one poll). An
 * event may start only when every earlier event of its stream in the window
 * is done, so one stream's events arrive in LSN order while different streams
 * go in parallel. An event is done when a 2xx came back or it was recorded
 * durably as a dead letter. The cursor is committed to the window's low-water
 * mark: the LSN before the oldest event not done (or the last LSN read, when
 * the window is empty), and a done event leaves the window only once a
 * commit covers it. A crash therefore re-sends only events of the window (at
 * most --window), and every re-send carries the event's webhook-id, so
 * receivers deduplicate.
 *
 * Retry classes (SPEC.md §22.3): 2xx delivered; 408, 425, 429, 5xx and
 * transport failures (refused, reset, DNS, timeout) retried after a capped
 * exponential backoff with full jitter (backoff.c), Retry-After (seconds or
 * an HTTP date) raising the wait up to --backoff-max; 410 Gone makes the
 * event a dead letter and disables the endpoint (the run stops, exit 1);
 * every other status (3xx are not followed) is a dead letter at once with the
 * status and the first 1 KiB of the response body. After --breaker N
 * consecutive retryable failures the endpoint's circuit breaker opens: no
 * request is started but a single probe (the oldest ready event) once per
 * backoff interval; a probe's failure does not count against the event's
 * attempts, its success closes the breaker.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "cli.h"
#include "event_json.h"
#include "stele.h"
#include "webhook_sign.h"

/* Limits (STYLE.md: a limit on everything). */
#define DELIVER_CONCURRENCY_MAX 1024u
#define DELIVER_WINDOW_MAX 65536u
#define DELIVER_ATTEMPTS_MAX 1000u
#define DELIVER_MS_MAX (24ull * 3600 * 1000) /* backoff and timeout bounds: a day */
#define DELIVER_HEADERS_MAX 32u
#define DELIVER_URL_SIZE_MAX 4096u
#define DELIVER_SECRET_FILE_SIZE_MAX 1024u
#define DELIVER_BODY_KEPT_MAX STELE_DEAD_STDERR_SIZE_MAX /* response bytes kept for a dead letter */
#define DELIVER_ENDPOINT_PREFIX "webhook."
#define DELIVER_ENDPOINT_SIZE_MAX (STELE_CURSOR_NAME_SIZE_MAX - 8u)
#define DELIVER_WAIT_MS_MAX 200    /* longest poll, so that a stop signal is seen soon */
#define DELIVER_COMMIT_INTERVAL_MS 100/* cursor commits at most this often while busy */
#define DELIVER_LATENCY_BUCKETS 32 /* log2 buckets of microseconds */

_Static_assert(sizeof(DELIVER_ENDPOINT_PREFIX) - 1 + DELIVER_ENDPOINT_SIZE_MAX == STELE_CURSOR_NAME_SIZE_MAX,
               "an endpoint name and its prefix make a consumer name");

enum {
    OPT_ENDPOINT = 256, OPT_URL, OPT_SECRET_FILE, OPT_TYPE, OPT_STREAM, OPT_FOLLOW, OPT_CONCURRENCY, OPT_WINDOW,
    OPT_TIMEOUT, OPT_MAX_ATTEMPTS, OPT_BACKOFF_BASE, OPT_BACKOFF_MAX, OPT_RATE, OPT_HEADER, OPT_DRY_RUN,
    OPT_BREAKER, OPT_SEED, OPT_STATUS, OPT_ENABLE,
};

static const struct option deliver_options[] = {
    {"endpoint", required_argument, NULL, OPT_ENDPOINT},
    {"url", required_argument, NULL, OPT_URL},
    {"secret-file", required_argument, NULL, OPT_SECRET_FILE},
    {"type", required_argument, NULL, OPT_TYPE},
    {"stream", required_argument, NULL, OPT_STREAM},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
    {"backoff-base", required_argument, NULL, OPT_BACKOFF_BASE},
    {"backoff-max", required_argument, NULL, OPT_BACKOFF_MAX},
    {"rate", required_argument, NULL, OPT_RATE},
    {"header", required_argument, NULL, OPT_HEADER},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"breaker", required_argument, NULL, OPT_BREAKER},
    {"seed", required_argument, NULL, OPT_SEED},
    {"status", no_argument, NULL, OPT_STATUS},
    {"enable", no_argument, NULL, OPT_ENABLE},
    CLI_COMMON_OPTIONS,
};

static const char deliver_synopsis[] =
    "stele deliver DIR --endpoint NAME --url URL --secret-file F [--type T] [--stream S] [--follow]\n"
    "                   [--concurrency N] [--window N] [--timeout MS] [--max-attempts N]\n"
    "                   [--backoff-base MS] [--backoff-max MS] [--breaker N] [--rate N]\n"
    "                   [--header 'K: V']... [--seed N] [--dry-run] [--enable]\n"
    "       stele deliver DIR --endpoint NAME --status";

static const char *const deliver_manual[] = {
    "\n"
    "DESCRIPTION\n"
    "  Delivers the events of the log in DIR to an HTTP endpoint as Standard Webhooks\n"
    "  (standardwebhooks.com), at least once. Each event is one POST of its event object (JSON,\n"
    "  as stele read prints it) with the headers webhook-id (\"evt_\" + the log's id + \"_\" + the\n"
    "  LSN: the same on every attempt, so a receiver deduplicates on it), webhook-timestamp (Unix\n"
    "  seconds of the attempt) and webhook-signature (\"v1,\" + base64 of HMAC-SHA256 of\n"
    "  id.timestamp.body with the key of the secret file, which holds \"whsec_\" + base64).\n"
    "\n"
    "  The endpoint NAME (1-56 characters of A-Z a-z 0-9 . _ -) is the consumer webhook.NAME: a\n"
    "  durable cursor and dead letters in DIR/consumers/ (stele replay --consumer webhook.NAME\n"
    "  --dead-letters lists them). Events of one stream are delivered in LSN order, one at a time;\n"
    "  different streams (and events without one) in parallel, up to --concurrency requests. The\n"
    "  cursor moves to the LSN before the oldest event not yet done, so a run killed at any point\n"
    "  re-sends at most the --window events it held.\n"
    "\n"
    "  2xx is delivered. 408, 425, 429, 5xx and transport failures (connection refused or reset,\n"
    "  DNS, timeout) are retried after a wait drawn from [0, min(backoff-max, backoff-base *\n"
    "  2^(attempt-1))] ms, at least the Retry-After the endpoint sent (seconds or HTTP date) up to\n"
    "  --backoff-max, until --max-attempts. Any other status (redirects are not followed) makes the\n"
    "  event a dead letter at once, with the status and the first 1 KiB of the response body; so\n"
    "  does the last failed attempt. 410 Gone also disables the endpoint: the run stops, exit 1,\n"
    "  and later runs refuse to start (exit 1) until one is given --enable.\n"
    "  After --breaker consecutive retryable failures the circuit breaker opens: one probe request\n"
    "  per backoff interval instead of one request per event; probes do not use up attempts; the\n"
    "  first success closes it. Retries, dead letters and the breaker are reported on stderr; at\n"
    "  the end one JSON line on stdout sums the run up.\n",
    "\n"
    "OPTIONS\n"
    "  --endpoint NAME     the endpoint (its consumer is webhook.NAME; required)\n"
    "  --url URL           where to POST (http or https; required)\n"
    "  --secret-file F     the file holding the signing secret, whsec_... (required)\n"
    "  --type T, --stream S  deliver only events of that type, of that stream\n"
    "  --follow            at the log's end, wait for new events until SIGINT/SIGTERM\n"
    "  --concurrency N     requests at once, 1-1024 (default 8)\n"
    "  --window N          events held at once, concurrency-65536 (default 4 x concurrency): the\n"
    "                      most a crash re-sends\n"
    "  --timeout MS        a request's time limit, a retryable failure (default 10000)\n"
    "  --max-attempts N    attempts per event, 1-1000 (default 8)\n"
    "  --backoff-base MS   first retry's wait bound (default 500)\n"
    "  --backoff-max MS    largest wait bound, and the cap on Retry-After (default 60000)\n"
    "  --breaker N         consecutive failures that open the breaker, 0 = never (default 5)\n"
    "  --rate N            at most N requests per second (default: no limit)\n"
    "  --header 'K: V'     an extra request header (up to 32)\n"
    "  --seed N            seed of the jitter (default: from the clock)\n"
    "  --dry-run           print {\"lsn\",\"webhook_id\",\"url\"} per event; send and commit nothing\n"
    "  --enable            enable an endpoint disabled by a 410: its 410 dead letters are marked\n"
    "                      resolved (those events are not sent again) and delivery goes on\n"
    "  --status            print the endpoint's {\"endpoint\",\"cursor\",\"last_lsn\",\"backlog\",\n"
    "                      \"oldest_undelivered_age_s\",\"dead_letters\"} and exit\n"
    "\n"
    "OUTPUT\n"
    "  {\"endpoint\",\"cursor\",\"delivered\",\"dead_letters\",\"requests\",\"retries\",\"by_class\":\n"
    "  {\"2xx\",\"retryable_status\",\"transport\",\"dead_status\",\"gone\"},\"breaker_opens\",\"probes\",\n"
    "  \"latency_ms\":{\"p50\",\"p99\",\"max\"}} (latency: request start to answer; p50 and p99 are the\n"
    "  upper bounds of power-of-two buckets of microseconds)\n"
    "\n"
    "EXIT STATUS\n"
    "  0 done (or stopped by a signal); 1 the endpoint answered 410 Gone, another deliver of the\n"
    "  endpoint running, or another failure; 2 usage; 4 no log in DIR; 5 a damaged cursor or\n"
    "  dead-letter file.\n"
    "\n"
    "EXAMPLES\n"
    "  stele deliver /var/lib/pay --endpoint crm --url https://crm.example/hooks \\\n"
    "      --secret-file /etc/stele/crm.secret --concurrency 16 --follow\n"
    "  stele deliver /var/lib/pay --endpoint crm --status\n",
};

struct deliver_args {
    const char *endpoint, *url, *secret_file, *type, *stream;
    const char *headers[DELIVER_HEADERS_MAX];
    unsigned header_count;
    int follow, dry_run, status, enable, has_seed;
    uint64_t concurrency, window, timeout_ms, max_attempts, backoff_base_ms, backoff_max_ms, breaker, rate, seed;
};

/* An event of the window. */
enum slot_state { SLOT_QUEUED, SLOT_FLIGHT, SLOT_DONE };
struct slot {
    uint64_t lsn;
    uint64_t blocker;  /* 1 + the window sequence of the previous event of its stream, 0 = none */
    char *stream;      /* NUL-terminated, NULL when the event has none */
    char *key;
    char *body;
    size_t body_size;
    char id[64];       /* webhook-id */
    unsigned attempts; /* counted attempts (a probe's failure is not counted) */
    uint64_t due_ns;   /* not before (a retry's wait) */
    enum slot_state state;
};

/* A request slot: one reusable easy handle. */
struct req {
    CURL *easy;
    struct curl_slist *headers;
    uint64_t seq;       /* the window sequence of its event */
    uint64_t started_ns;
    int probe;          /* sent while the breaker was half-open */
    int busy;
    char error[CURL_ERROR_SIZE];
    char body[DELIVER_BODY_KEPT_MAX + 1];
    size_t body_size;
};

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct deliver {
    const struct cli_ctx *ctx;
    const struct deliver_args *a;
    char consumer[STELE_CURSOR_NAME_SIZE_MAX + 1];
    stele_log *log;
    stele_cursor *cur;
    stele_iter *iter;
    uint64_t start;      /* first LSN to deliver */
    char log_id[33];
    uint8_t key[WEBHOOK_KEY_SIZE_MAX];
    size_t key_size;
    struct curl_slist *extra_headers;
    CURLM *multi;
    struct req *reqs;
    unsigned in_flight;
    struct slot *ring;   /* the window: sequence s at ring[s % window] */
    uint64_t head, tail; /* sequences: [head, tail) are in the window */
    uint64_t seen;       /* the last LSN read (filtered out or not) */
    uint64_t committed, last_commit_ns; /* committed: durable, as the committer last said */
    struct committer *committer;        /* NULL in a dry run or --status */
    int at_end, gone;
    uint64_t rng;
    /* the breaker */
    enum breaker_state breaker;
    unsigned failures, opens;
    int probe_in_flight;
    uint64_t breaker_until_ns;
    /* pacing (--rate) */
    uint64_t rate_start_ns, rate_count;
    /* counters of the summary */
    uint64_t delivered, dead, requests, retries, breaker_opens, probes;
    uint64_t by_ok, by_retry_status, by_transport, by_dead_status, by_gone;
    uint64_t latency_us_max, latency[DELIVER_LATENCY_BUCKETS];
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

static int header_option(struct cli_ctx *ctx, struct deliver_args *a, const char *text)
{
    const char *colon = strchr(text, ':');
    if (!colon || colon == text || strpbrk(text, "\r\n"))
        return cli_usage_error(ctx, "--header: '%s' is not 'Name: value' on one line", text);
    if (a->header_count == DELIVER_HEADERS_MAX)
        return cli_usage_error(ctx, "--header: more than %u headers", DELIVER_HEADERS_MAX);
    a->headers[a->header_count++] = text;
    return 0;
}

static int deliver_option(struct cli_ctx *ctx, int c, struct deliver_args *a)
{
    switch (c) {
    case OPT_ENDPOINT: a->endpoint = optarg; return 0;
    case OPT_URL: a->url = optarg; return 0;
    case OPT_SECRET_FILE: a->secret_file = optarg; return 0;
    case OPT_TYPE: a->type = optarg; return cli_opt_field(ctx, "type", optarg);
    case OPT_STREAM: a->stream = optarg; return cli_opt_key(ctx, "stream", optarg);
    case OPT_FOLLOW: a->follow = 1; return 0;
    case OPT_CONCURRENCY: return opt_bounded(ctx, "concurrency", optarg, 1, DELIVER_CONCURRENCY_MAX, &a->concurrency);
    case OPT_WINDOW: return opt_bounded(ctx, "window", optarg, 1, DELIVER_WINDOW_MAX, &a->window);
    case OPT_TIMEOUT: return opt_bounded(ctx, "timeout", optarg, 1, DELIVER_MS_MAX, &a->timeout_ms);
    case OPT_MAX_ATTEMPTS: return opt_bounded(ctx, "max-attempts", optarg, 1, DELIVER_ATTEMPTS_MAX, &a->max_attempts);
    case OPT_BACKOFF_BASE: return opt_bounded(ctx, "backoff-base", optarg, 0, DELIVER_MS_MAX, &a->backoff_base_ms);
    case OPT_BACKOFF_MAX: return opt_bounded(ctx, "backoff-max", optarg, 0, DELIVER_MS_MAX, &a->backoff_max_ms);
    case OPT_BREAKER: return opt_bounded(ctx, "breaker", optarg, 0, DELIVER_ATTEMPTS_MAX, &a->breaker);
    case OPT_RATE: return opt_bounded(ctx, "rate", optarg, 1, UINT32_MAX, &a->rate);
    case OPT_HEADER: return header_option(ctx, a, optarg);
    case OPT_SEED: a->has_seed = 1; return cli_opt_u64(ctx, "seed", optarg, &a->seed);
    case OPT_DRY_RUN: a->dry_run = 1; return 0;
    case OPT_STATUS: a->status = 1; return 0;
    case OPT_ENABLE: a->enable = 1; return 0;
    default: return CLI_EXIT_USAGE;
    }
}

static int check_args(struct cli_ctx *ctx, struct deliver_args *a)
{
    if (!a->endpoint)
        return cli_usage_error(ctx, "--endpoint NAME is required (see stele deliver --help)");
    size_t n = strlen(a->endpoint);
    if (n == 0 || n > DELIVER_ENDPOINT_SIZE_MAX || strspn(a->endpoint, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                                    "0123456789._-") != n)
        return cli_usage_error(ctx, "--endpoint: '%s' is not 1-%u characters of A-Z a-z 0-9 . _ -", a->endpoint,
                               DELIVER_ENDPOINT_SIZE_MAX);
    if (ctx->human)
        return cli_usage_error(ctx, "--human: deliver prints JSON only");
    if (a->status)
        return a->url || a->secret_file || a->dry_run || a->follow
                   ? cli_usage_error(ctx, "--status only reports: it takes no delivery options")
                   : 0;
    if (!a->url || !a->secret_file)
        return cli_usage_error(ctx, "--url URL and --secret-file F are required");
    if (strlen(a->url) > DELIVER_URL_SIZE_MAX || (strncmp(a->url, "http://", 7) != 0 && strncmp(a->url, "https://", 8) != 0))
        return cli_usage_error(ctx, "--url: '%s' is not an http:// or https:// URL of at most %u bytes", a->url,
                               DELIVER_URL_SIZE_MAX);
    if (a->backoff_base_ms > a->backoff_max_ms)
        return cli_usage_error(ctx, "--backoff-base (%" PRIu64 ") is above --backoff-max (%" PRIu64 ")",
                               a->backoff_base_ms, a->backoff_max_ms);
    if (!a->window)
        a->window = a->concurrency * 4 < DELIVER_WINDOW_MAX ? a->concurrency * 4 : DELIVER_WINDOW_MAX;
    if (a->window < a->concurrency)
        return cli_usage_error(ctx, "--window (%" PRIu64 ") is below --concurrency (%" PRIu64 ")", a->window,
                               a->concurrency);
    return 0;
}

/* Reads and decodes the secret file. Returns 0 or the exit code. */
static int read_secret(struct deliver *d)
{
    const char *path = d->a->secret_file;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_error(d->ctx, CLI_EXIT_FAILURE, "reading the secret file %s: %s", path, strerror(errno));
    char text[DELIVER_SECRET_FILE_SIZE_MAX + 1];
    size_t size = 0;
    for (;;) {
        ssize_t n = read(fd, text + size, sizeof text - size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return cli_error(d->ctx, CLI_EXIT_FAILURE, "reading the secret file %s: %s", path, strerror(e));
        }
        if (n == 0 || (size += (size_t)n) == sizeof text)
            break;
    }
    close(fd);
    char err[128];
    int rc = size > DELIVER_SECRET_FILE_SIZE_MAX
                 ? (snprintf(err, sizeof err, "more than %u bytes", DELIVER_SECRET_FILE_SIZE_MAX), -1)
                 : webhook_secret_parse(text, size, d->key, &d->key_size, err, sizeof err);
    memset(text, 0, sizeof text);
    return rc ? cli_error(d->ctx, CLI_EXIT_USAGE, "the secret file %s: %s", path, err) : 0;
}

/* ---------------------------------------------------------------- window */

static struct slot *slot_at(struct deliver *d, uint64_t seq)
{
    return &d->ring[seq % d->a->window];
}

static int seq_done(struct deliver *d, uint64_t seq)
{
    return seq < d->head || slot_at(d, seq)->state == SLOT_DONE;
}

static void slot_release(struct slot *s)
{
    free(s->stream);
    free(s->key);
    free(s->body);
    memset(s, 0, sizeof *s);
}

static int field_is(const char *want, const char *s, size_t n)
{
    return !want || (strlen(want) == n && memcmp(want, s, n) == 0);
}

/* Adds rec to the window's tail. Returns 0 or -1 (out of memory). */
static int window_add(struct deliver *d, const stele_record *rec)
{
    uint64_t seq = d->tail;
    struct slot *s = slot_at(d, seq);
    json_t *o = event_json_from_record(rec);
    s->body = o ? json_compact(o, &s->body_size) : NULL;
    json_decref(o);
    s->key = s->body ? strndup(rec->key ? rec->key : "", rec->key_size) : NULL;
    s->stream = s->key && rec->stream_size ? strndup(rec->stream, rec->stream_size) : NULL;
    if (!s->key || (rec->stream_size && !s->stream)) {
        slot_release(s);
        return -1;
    }
    s->lsn = rec->lsn;
    s->state = SLOT_QUEUED;
    snprintf(s->id, sizeof s->id, "evt_%s_%" PRIu64, d->log_id, rec->lsn);
    /* The previous event of the same stream still in the window blocks it. */
    for (uint64_t p = seq; s->stream && p-- > d->head;) {
        const struct slot *q = slot_at(d, p);
        if (q->state != SLOT_DONE && q->stream && strcmp(q->stream, s->stream) == 0) {
            s->blocker = p + 1;
            break;
        }
    }
    d->tail++;
    return 0;
}

/* The committer: a thread of its own that commits the cursor, so that the
 * loop goes on sending while a commit waits for its fdatasync (a few ms to
 * tens of ms, against a request's fraction of a ms on loopback). The loop
 * asks for a position (want); the thread commits the latest one asked and
 * says what is durable (durable), waking the loop's poll. The cursor handle
 * belongs to one thread at a time (stele.h): cur_mu is held around every
 * call on it, the thread's commits and the loop's dead letters alike. */
struct committer {
    pthread_t thread;
    pthread_mutex_t mu, cur_mu;
    pthread_cond_t cv;
    stele_cursor *cur;
    CURLM *multi;           /* woken when a commit is durable */
    uint64_t want, durable;
    int code, quit;         /* code: the first failed commit's, then no more commits */
    char msg[512];          /* its stele_errmsg(), copied on the thread that failed */
};

static void *committer_main(void *arg)
{
    struct committer *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->quit && (c->want <= c->durable || c->code != STELE_OK))
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->quit && (c->want <= c->durable || c->code != STELE_OK))
            break;
        uint64_t target = c->want;
        pthread_mutex_unlock(&c->mu);
        pthread_mutex_lock(&c->cur_mu);
        int code = stele_cursor_commit(c->cur, target);
        const char *msg = code == STELE_OK ? "" : stele_errmsg();
        pthread_mutex_unlock(&c->cur_mu);
        pthread_mutex_lock(&c->mu);
        if (code == STELE_OK) {
            c->durable = target;
        } else {
            c->code = code;
            snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "");
        }
        pthread_cond_broadcast(&c->cv);
        if (c->multi)
            curl_multi_wakeup(c->multi);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static int committer_start(struct deliver *d)
{
    struct committer *c = calloc(1, sizeof *c);
    if (!c)
        return cli_error(d->ctx, CLI_EXIT_FAILURE, "out of memory");
    c->cur = d->cur;
    c->multi = d->multi;
    c->want = c->durable = d->committed;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->cur_mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    int e = pthread_create(&c->thread, NULL, committer_main, c);
    if (e != 0) {
        free(c);
        return cli_error(d->ctx, CLI_EXIT_FAILURE, "starting the cursor's thread: %s", strerror(e));
    }
    d->committer = c;
    return 0;
}

/* Waits until what was asked is durable (or failed), then ends the thread. */
static void committer_stop(struct deliver *d)
{
    struct committer *c = d->committer;
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->quit = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    d->committed = c->durable;
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->cur_mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    d->committer = NULL;
}

/* Asks for lsn to be committed; with wait, returns once it is durable.
 * Updates d->committed. Returns 0 or the exit code of a failed commit. */
static int committer_ask(struct deliver *d, uint64_t lsn, int wait)
{
    struct committer *c = d->committer;
    pthread_mutex_lock(&c->mu);
    if (lsn > c->want) {
        c->want = lsn;
        pthread_cond_broadcast(&c->cv);
    }
    while (wait && c->durable < lsn && c->code == STELE_OK)
        pthread_cond_wait(&c->cv, &c->mu);
    d->committed = c->durable;
    int code = c->code;
    pthread_mutex_unlock(&c->mu);
    if (code == STELE_OK)
        return 0;
    fprintf(stderr, "stele: deliver: committing consumer %s at LSN %" PRIu64 ": %s%s%s\n", d->consumer, lsn,
            stele_strerror(code), c->msg[0] ? ": " : "", c->msg);
    return cli_exit_for(code);
}

/* Commits the low-water mark: everything before the oldest event not done.
 * Done events leave the window only once a durable commit covers them, so
 * that the window holds every event a crash would re-send: at most --window.
 * When half the window is done events waiting for a commit (they hold back
 * the reading of new ones), or when forced, it asks at once; otherwise at
 * most every DELIVER_COMMIT_INTERVAL_MS. force waits for the commit. */
static int window_commit(struct deliver *d, int force)
{
    uint64_t h = d->head;
    while (h < d->tail && slot_at(d, h)->state == SLOT_DONE)
        h++;
    uint64_t low = h < d->tail ? slot_at(d, h)->lsn - 1 : d->seen;
    uint64_t now = cli_mono_ns();
    int due = force || (h - d->head) * 2 >= d->a->window ||
              now - d->last_commit_ns >= DELIVER_COMMIT_INTERVAL_MS * 1000000ull;
    if (d->committer) {
        int rc = committer_ask(d, due && low > d->committed ? low : 0, force);
        if (rc)
            return rc;
        if (due)
            d->last_commit_ns = now;
    }
    while (d->head < h && slot_at(d, d->head)->lsn <= d->committed)
        slot_release(slot_at(d, d->head++));
    return 0;
}

/* -------------------------------------------------------------- requests */

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    struct req *q = ctx;
    size_t bytes = size * n, room = DELIVER_BODY_KEPT_MAX - q->body_size;
    size_t take = bytes < room ? bytes : room;
    memcpy(q->body + q->body_size, p, take);
    q->body_size += take;
    return bytes;
}

/* The options every request of the run shares, set once per handle. */
static int req_init(struct deliver *d, struct req *q)
{
    q->easy = curl_easy_init();
    if (!q->easy)
        return -1;
    CURL *e = q->easy;
    curl_easy_setopt(e, CURLOPT_URL, d->a->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)d->a->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)d->a->timeout_ms);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->error);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(e, CURLOPT_PRIVATE, q);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "stele/" STELE_VERSION_STRING);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    return 0;
}

static struct curl_slist *append_header(struct curl_slist *list, const char *fmt, const char *value)
{
    char line[256];
    snprintf(line, sizeof line, fmt, value);
    struct curl_slist *l = list ? curl_slist_append(list, line) : NULL;
    if (!l)
        curl_slist_free_all(list);
    return l;
}

/* Starts event seq's request on a free handle. Returns 0 or the exit code. */
static int req_start(struct deliver *d, uint64_t seq, int probe)
{
    struct req *q = NULL;
    for (uint64_t i = 0; i < d->a->concurrency && !q; i++)
        q = d->reqs[i].busy ? NULL : &d->reqs[i];
    if (!q)
        return cli_error(d->ctx, CLI_EXIT_FAILURE, "internal: no free request handle");
    struct slot *s = slot_at(d, seq);
    char ts[24], sig[WEBHOOK_SIGNATURE_SIZE];
    uint64_t now_s = cli_now_ns() / 1000000000u;
    snprintf(ts, sizeof ts, "%" PRIu64, now_s);
    if (webhook_sign(d->key, d->key_size, s->id, now_s, s->body, s->body_size, sig) != 0)
        return cli_error(d->ctx, CLI_EXIT_FAILURE, "signing LSN %" PRIu64 ": libsodium could not be initialised",
                         s->lsn);
    /* The request's own headers, then the run's (--header): a copy per request. */
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = append_header(h, "webhook-id: %s", s->id);
    h = append_header(h, "webhook-timestamp: %s", ts);
    h = append_header(h, "webhook-signature: %s", sig);
    h = append_header(h, "%s", "Expect:");
    for (const struct curl_slist *x = d->extra_headers; h && x; x = x->next)
        h = append_header(h, "%s", x->data);
    if (!h)
        return cli_error(d->ctx, CLI_EXIT_FAILURE, "out of memory");
    curl_slist_free_all(q->headers);
    q->headers = h;
    q->seq = seq;
    q->probe = probe;
    q->busy = 1;
    q->body_size = 0;
    q->error[0] = '\0';
    q->started_ns = cli_mono_ns();
    curl_easy_setopt(q->easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(q->easy, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(q->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body_size);
    CURLMcode mc = curl_multi_add_handle(d->multi, q->easy);
    if (mc != CURLM_OK)
        return cli_error(d->ctx, CLI_EXIT_FAILURE, "starting the request for LSN %" PRIu64 ": %s", s->lsn,
                         curl_multi_strerror(mc));
    s->state = SLOT_FLIGHT;
    d->in_flight++;
    d->requests++;
    d->probes += probe;
    return 0;
}

/* --------------------------------------------------------------- outcome */

enum outcome { OUT_OK, OUT_RETRY, OUT_DEAD, OUT_GONE };

/* The retry class of a finished request (SPEC.md §22.3); reason says why. */
static enum outcome classify(CURLcode cc, long status, const char *error, char *reason, size_t reason_capacity)
{
    if (cc != CURLE_OK) {
        snprintf(reason, reason_capacity, "%s%s%s", curl_easy_strerror(cc), error[0] ? ": " : "", error);
        return OUT_RETRY;
    }
    snprintf(reason, reason_capacity, "HTTP %ld", status);
    if (status >= 200 && status <= 299)
        return OUT_OK;
    if (status == 410) {
        snprintf(reason, reason_capacity, "HTTP 410 Gone: endpoint disabled");
        return OUT_GONE;
    }
    if (status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599))
        return OUT_RETRY;
    return OUT_DEAD;
}

static void latency_add(struct deliver *d, uint64_t us)
{
    unsigned b = 0;
    while (b + 1 < DELIVER_LATENCY_BUCKETS && (us >> (b + 1)))
        b++;
    d->latency[b]++;
    if (us > d->latency_us_max)
        d->latency_us_max = us;
}

/* The latency (ms) at quantile q: the upper bound of the log2 bucket it falls in. */
static double latency_quantile_ms(const struct deliver *d, double q)
{
    uint64_t total = 0, seen = 0;
    for (unsigned b = 0; b < DELIVER_LATENCY_BUCKETS; b++)
        total += d->latency[b];
    for (unsigned b = 0; b < DELIVER_LATENCY_BUCKETS && total; b++) {
        seen += d->latency[b];
        if ((double)seen >= q * (double)total) {
            uint64_t hi = (2ull << b) - 1;
            return (double)(hi < d->latency_us_max ? hi : d->latency_us_max) / 1000.0;
        }
    }
    return 0;
}

/* ---------------------------------------------------------- the breaker */

static void breaker_open(struct deliver *d, uint64_t now, uint64_t retry_after_ms, uint64_t lsn, const char *reason)
{
    d->opens++;
    uint64_t cap = backoff_cap_ms(d->a->backoff_base_ms, d->a->backoff_max_ms, d->opens);
    /* Half the interval fixed, half jittered: a probe per interval, never a burst. */
    uint64_t wait = cap / 2 + backoff_rand(&d->rng) % (cap - cap / 2 + 1);
    if (retry_after_ms > wait)
        wait = retry_after_ms;
    d->breaker_until_ns = now + wait * 1000000u;
    if (d->breaker == BREAKER_CLOSED) {
        d->breaker_opens++;
        fprintf(stderr, "stele: deliver: endpoint %s: circuit breaker open after %u consecutive failures (the "
                "last: LSN %" PRIu64 ", %s); next probe in %" PRIu64 " ms\n", d->a->endpoint, d->failures, lsn,
                reason, wait);
    } else {
        fprintf(stderr, "stele: deliver: endpoint %s: probe (LSN %" PRIu64 ") failed (%s); circuit breaker "
                "stays open, next probe in %" PRIu64 " ms\n", d->a->endpoint, lsn, reason, wait);
    }
    d->breaker = BREAKER_OPEN;
}

static void breaker_failure(struct deliver *d, int probe, uint64_t now, uint64_t retry_after_ms, uint64_t lsn,
                            const char *reason)
{
    if (!d->a->breaker)
        return;
    d->failures++;
    if ((d->breaker == BREAKER_HALF_OPEN && probe) ||
        (d->breaker == BREAKER_CLOSED && d->failures >= d->a->breaker))
        breaker_open(d, now, retry_after_ms, lsn, reason);
}

/* The endpoint answered (2xx, or a status that is no retryable failure). */
static void breaker_success(struct deliver *d)
{
    if (d->breaker != BREAKER_CLOSED)
        fprintf(stderr, "stele: deliver: endpoint %s: circuit breaker closed after %" PRIu64 " probe%s\n",
                d->a->endpoint, d->probes, d->probes == 1 ? "" : "s");
    d->breaker = BREAKER_CLOSED;
    d->failures = 0;
    d->opens = 0;
}

/* ---------------------------------------------------------- completions */

/* Records event s as a dead letter (durably) and marks it done. */
static int slot_dead(struct deliver *d, struct slot *s, const char *reason, const struct req *q)
{
    fprintf(stderr, "stele: deliver: endpoint %s: LSN %" PRIu64 ": dead letter after %u attempt%s (%s)\n",
            d->a->endpoint, s->lsn, s->attempts, s->attempts == 1 ? "" : "s", reason);
    stele_dead_letter dl = {.lsn = s->lsn, .attempts = s->attempts, .key = s->key, .key_size = strlen(s->key),
                            .reason = reason, .reason_size = strlen(reason), .last_stderr = q->body,
                            .last_stderr_size = q->body_size};
    pthread_mutex_lock(&d->committer->cur_mu);
    int code = stele_dead_letter_add(d->cur, &dl);
    pthread_mutex_unlock(&d->committer->cur_mu);
    if (code != STELE_OK)
        return cli_fail(d->ctx, code, "recording the dead letter of LSN %" PRIu64, s->lsn);
    d->dead++;
    s->state = SLOT_DONE;
    return 0;
}

/* A retryable failure of event s: wait and try again, or give up. */
static int slot_retry(struct deliver *d, struct slot *s, const struct req *q, const char *reason, uint64_t now,
                      uint64_t retry_after_ms)
{
    if (q->probe) {
        s->state = SLOT_QUEUED; /* not counted: the breaker decides when it goes again */
        return 0;
    }
    if (s->attempts >= d->a->max_attempts)
        return slot_dead(d, s, reason, q);
    uint64_t delay = backoff_delay_ms(d->a->backoff_base_ms, d->a->backoff_max_ms, s->attempts, &d->rng);
    uint64_t honoured = retry_after_ms < d->a->backoff_max_ms ? retry_after_ms : d->a->backoff_max_ms;
    if (honoured > delay)
        delay = honoured;
    fprintf(stderr, "stele: deliver: endpoint %s: LSN %" PRIu64 ": attempt %u of %" PRIu64 " failed (%s); "
            "retrying in %" PRIu64 " ms%s\n", d->a->endpoint, s->lsn, s->attempts, d->a->max_attempts, reason,
            delay, retry_after_ms ? " (Retry-After)" : "");
    d->retries++;
    s->due_ns = now + delay * 1000000u;
    s->state = SLOT_QUEUED;
    return 0;
}

static int on_done(struct deliver *d, CURL *e, CURLcode cc)
{
    struct req *q = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&q);
    curl_multi_remove_handle(d->multi, e);
    q->busy = 0;
    d->in_flight--;
    d->probe_in_flight &= !q->probe;
    struct slot *s = slot_at(d, q->seq);
    uint64_t now = cli_mono_ns();
    latency_add(d, (now - q->started_ns) / 1000u);
    long status = 0;
    curl_off_t retry_after_s = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &retry_after_s) != CURLE_OK || retry_after_s < 0)
        retry_after_s = 0;
    uint64_t retry_after_ms = (uint64_t)retry_after_s * 1000u;
    char reason[STELE_DEAD_REASON_SIZE_MAX];
    enum outcome out = classify(cc, status, q->error, reason, sizeof reason);
    if (!q->probe || out != OUT_RETRY)
        s->attempts++;
    q->body[q->body_size] = '\0';
    switch (out) {
    case OUT_OK:
        d->by_ok++;
        d->delivered++;
        s->state = SLOT_DONE;
        breaker_success(d);
        return 0;
    case OUT_RETRY:
        if (cc != CURLE_OK)
            d->by_transport++;
        else
            d->by_retry_status++;
        breaker_failure(d, q->probe, now, retry_after_ms, s->lsn, reason);
        return slot_retry(d, s, q, reason, now, retry_after_ms);
    case OUT_GONE:
        d->by_gone++;
        d->gone = 1;
        fprintf(stderr, "stele: deliver: endpoint %s: LSN %" PRIu64 " answered 410 Gone: the endpoint is "
                "disabled; this run stops\n", d->a->endpoint, s->lsn);
        return slot_dead(d, s, reason, q);
    case OUT_DEAD:
        break;
    }
    d->by_dead_status++;
    breaker_success(d);
    return slot_dead(d, s, reason, q);
}

/* ------------------------------------------------------------ scheduling */

/* Starts what may start now; *next_ns is when something else may. */
static int schedule(struct deliver *d, uint64_t now, uint64_t *next_ns)
{
    *next_ns = UINT64_MAX;
    if (d->gone || cli_stop_requested())
        return 0;
    if (d->breaker == BREAKER_OPEN) {
        if (now < d->breaker_until_ns) {
            *next_ns = d->breaker_until_ns;
            return 0;
        }
        d->breaker = BREAKER_HALF_OPEN;
        d->probe_in_flight = 0;
    }
    int probe = d->breaker == BREAKER_HALF_OPEN;
    if (probe && d->probe_in_flight)
        return 0;
    for (uint64_t seq = d->head; seq < d->tail && d->in_flight < d->a->concurrency; seq++) {
        struct slot *s = slot_at(d, seq);
        if (s->state != SLOT_QUEUED || (s->blocker && !seq_done(d, s->blocker - 1)))
            continue;
        if (s->due_ns > now) {
            *next_ns = s->due_ns < *next_ns ? s->due_ns : *next_ns;
            continue;
        }
        if (d->a->rate) {
            if (d->rate_count == 0)
                d->rate_start_ns = now; /* the pace counts from the first request */
            uint64_t due = d->rate_start_ns + d->rate_count * 1000000000u / d->a->rate;
            if (due > now) {
                *next_ns = due < *next_ns ? due : *next_ns;
                return 0;
            }
            d->rate_count++;
        }
        int rc = req_start(d, seq, probe);
        if (rc)
            return rc;
        if (probe) {
            d->probe_in_flight = 1;
            return 0;
        }
    }
    return 0;
}

/* ------------------------------------------------------------- the loop */

/* One record read: into the window unless the filters pass over it. */
static int take_record(struct deliver *d, const stele_record *rec)
{
    if (rec->lsn < d->start || rec->lsn <= d->seen)
        return 0; /* a stream read starts at the stream's first record */
    d->seen = rec->lsn;
    if (!field_is(d->a->type, rec->type, rec->type_size))
        return 0;
    return window_add(d, rec) ? cli_error(d->ctx, CLI_EXIT_FAILURE, "out of memory") : 0;
}

/* Reads records into the window while it has room; wait_ms for the first. */
static int window_fill(struct deliver *d, int wait_ms)
{
    while (d->tail - d->head < d->a->window) {
        const stele_record *rec = NULL;
        int code = stele_iter_next(d->iter, wait_ms, &rec);
        if (code != STELE_OK)
            return cli_fail(d->ctx, code, "reading after LSN %" PRIu64, d->seen);
        d->at_end = !rec;
        if (!rec)
            return 0;
        wait_ms = 0;
        int rc = take_record(d, rec);
        if (rc)
            return rc;
    }
    return 0;
}

/* Takes the finished requests; *out_count says how many there were. */
static int collect(struct deliver *d, unsigned *out_count)
{
    CURLMsg *m;
    int left;
    *out_count = 0;
    while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        int rc = on_done(d, m->easy_handle, m->data.result);
        if (rc)
            return rc;
        ++*out_count;
    }
    return 0;
}

/* Runs the requests, collects what finished, commits the low-water mark.
 * It polls (up to timeout_ms) only when nothing finished already: on
 * loopback a request can finish inside curl_multi_perform, and a poll then
 * would sleep with the answer in hand. */
static int pump(struct deliver *d, int timeout_ms)
{
    int running = 0, fds = 0;
    unsigned done = 0;
    CURLMcode mc = curl_multi_perform(d->multi, &running);
    if (mc != CURLM_OK)
        return cli_error(d->ctx, CLI_EXIT_FAILURE, "running the requests: %s", curl_multi_strerror(mc));
    int rc = collect(d, &done);
    if (rc == 0 && done == 0) {
        mc = curl_multi_poll(d->multi, NULL, 0, timeout_ms, &fds);
        if (mc == CURLM_OK)
            mc = curl_multi_perform(d->multi, &running);
        if (mc != CURLM_OK)
            return cli_error(d->ctx, CLI_EXIT_FAILURE, "running the requests: %s", curl_multi_strerror(mc));
        rc = collect(d, &done);
    }
    return rc ? rc : window_commit(d, 0);
}

static int deliver_loop(struct deliver *d)
{
    int rc = 0;
    while (rc == 0) {
        int stopping = cli_stop_requested() || d->gone;
        if (!stopping && (rc = window_fill(d, 0)) != 0)
            break;
        uint64_t now = cli_mono_ns(), next = UINT64_MAX;
        if ((rc = schedule(d, now, &next)) != 0)
            break;
        if (d->in_flight == 0 && (stopping || (d->head == d->tail && d->at_end))) {
            if ((rc = window_commit(d, 1)) != 0 || stopping || !d->a->follow)
                break;
            rc = window_fill(d, DELIVER_WAIT_MS_MAX); /* --follow: wait for the next record */
            continue;
        }
        uint64_t wait_ms = d->a->follow && d->at_end ? DELIVER_WAIT_MS_MAX / 4 : DELIVER_WAIT_MS_MAX;
        if (next != UINT64_MAX) {
            uint64_t until = next > now ? (next - now + 999999u) / 1000000u : 0;
            wait_ms = until < wait_ms ? until : wait_ms;
        }
        rc = pump(d, (int)wait_ms);
    }
    int rc2 = window_commit(d, 1);
    rc = rc ? rc : rc2;
    if (rc == 0 && d->gone)
        rc = cli_error(d->ctx, CLI_EXIT_FAILURE, "endpoint %s is disabled (410 Gone); the cursor stays at %" PRIu64,
                       d->a->endpoint, d->committed);
    return rc;
}

/* --dry-run: what would be sent, nothing sent or committed. */
static int dry_run(struct deliver *d)
{
    int rc = 0;
    while (rc == 0 && !cli_stop_requested()) {
        if ((rc = window_fill(d, d->a->follow ? DELIVER_WAIT_MS_MAX : 0)) != 0)
            break;
        for (; d->head < d->tail; d->head++) {
            struct slot *s = slot_at(d, d->head);
            json_t *o = json_pack("{s:I,s:s,s:s}", "lsn", (json_int_t)s->lsn, "webhook_id", s->id, "url", d->a->url);
            if (!o || json_write_line(stdout, o) != 0)
                rc = cli_error(d->ctx, CLI_EXIT_FAILURE, "writing output: %s", strerror(errno));
            json_decref(o);
            slot_release(s);
        }
        if (d->at_end && !d->a->follow)
            break;
    }
    return rc;
}

static int print_summary(struct deliver *d)
{
    json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I},s:I,s:I,s:{s:f,s:f,s:f}}",
                          "endpoint", d->a->endpoint, "cursor", (json_int_t)d->committed,
                          "delivered", (json_int_t)d->delivered, "dead_letters", (json_int_t)d->dead,
                          "requests", (json_int_t)d->requests, "retries", (json_int_t)d->retries, "by_class",
                          "2xx", (json_int_t)d->by_ok, "retryable_status", (json_int_t)d->by_retry_status,
                          "transport", (json_int_t)d->by_transport, "dead_status", (json_int_t)d->by_dead_status,
                          "gone", (json_int_t)d->by_gone, "breaker_opens", (json_int_t)d->breaker_opens,
                          "probes", (json_int_t)d->probes, "latency_ms", "p50", latency_quantile_ms(d, 0.5),
                          "p99", latency_quantile_ms(d, 0.99), "max", (double)d->latency_us_max / 1000.0);
    int rc = !o || json_write_line(stdout, o) != 0 || fflush(stdout) != 0;
    json_decref(o);
    return rc ? cli_error(d->ctx, CLI_EXIT_FAILURE, "writing output: %s", strerror(errno)) : 0;
}

/* --status: the endpoint's backlog and dead letters, from its files. */
static int print_status(struct deliver *d)
{
    stele_stats st;
    int code = stele_stats_get(d->log, &st);
    if (code != STELE_OK)
        return cli_fail(d->ctx, code, "reading the log's stats");
    stele_dead_letter *items;
    size_t dead = 0;
    if ((code = stele_dead_letter_list(d->cur, 0, &items, &dead)) != STELE_OK)
        return cli_fail(d->ctx, code, "listing the dead letters of consumer %s", d->consumer);
    stele_dead_letter_free(items);
    json_t *age = json_null();
    if (st.last_lsn > d->committed) {
        stele_record *rec;
        if ((code = stele_get(d->log, d->committed + 1, &rec)) != STELE_OK)
            return cli_fail(d->ctx, code, "reading LSN %" PRIu64, d->committed + 1);
        uint64_t now = cli_now_ns();
        age = json_real(now > rec->recorded_at_ns ? (double)(now - rec->recorded_at_ns) / 1e9 : 0.0);
        stele_record_free(rec);
    }
    json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:o,s:I}", "endpoint", d->a->endpoint, "cursor",
                          (json_int_t)d->committed, "last_lsn", (json_int_t)st.last_lsn, "backlog",
                          (json_int_t)(st.last_lsn > d->committed ? st.last_lsn - d->committed : 0),
                          "oldest_undelivered_age_s", age, "dead_letters", (json_int_t)dead);
    int rc = !o || json_write_line(stdout, o) != 0;
    json_decref(o);
    return rc ? cli_error(d->ctx, CLI_EXIT_FAILURE, "out of memory") : 0;
}

/* ------------------------------------------------------------- the command */

static int open_iter(struct deliver *d)
{
    int code;
    if (d->a->stream) {
        code = stele_iter_open_stream(d->log, d->a->stream, strlen(d->a->stream), 1, &d->iter);
        return code == STELE_OK ? 0 : cli_fail(d->ctx, code, "reading stream %s", d->a->stream);
    }
    code = stele_iter_open(d->log, d->start, &d->iter);
    return code == STELE_OK ? 0 : cli_fail(d->ctx, code, "reading from LSN %" PRIu64, d->start);
}

/* The HTTP side: the secret, --header lines, the multi handle and the request slots. */
static int http_open(struct deliver *d)
{
    int rc = read_secret(d);
    if (rc)
        return rc;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(d->multi = curl_multi_init()))
        return cli_error(d->ctx, CLI_EXIT_FAILURE, "initialising libcurl failed");
    for (unsigned i = 0; i < d->a->header_count; i++) {
        struct curl_slist *l = curl_slist_append(d->extra_headers, d->a->headers[i]);
        if (!l)
            return cli_error(d->ctx, CLI_EXIT_FAILURE, "out of memory");
        d->extra_headers = l;
    }
    d->reqs = calloc(d->a->concurrency, sizeof *d->reqs);
    if (!d->reqs)
        return cli_error(d->ctx, CLI_EXIT_FAILURE, "out of memory");
    for (uint64_t i = 0; i < d->a->concurrency; i++)
        if (req_init(d, &d->reqs[i]) != 0)
            return cli_error(d->ctx, CLI_EXIT_FAILURE, "initialising a libcurl handle failed");
    return 0;
}

static void http_close(struct deliver *d)
{
    for (uint64_t i = 0; d->reqs && i < d->a->concurrency; i++) {
        struct req *q = &d->reqs[i];
        if (q->busy)
            curl_multi_remove_handle(d->multi, q->easy);
        curl_easy_cleanup(q->easy);
        curl_slist_free_all(q->headers);
    }
    free(d->reqs);
    curl_slist_free_all(d->extra_headers);
    if (d->multi)
        curl_multi_cleanup(d->multi);
    curl_global_cleanup();
    memset(d->key, 0, sizeof d->key);
}

/* An endpoint is disabled while one of its unresolved dead letters is a 410
 * (SPEC.md §22.3); --enable resolves them. Returns 0 or the exit code. */
static int check_enabled(struct deliver *d)
{
    stele_dead_letter *items;
    size_t n;
    int code = stele_dead_letter_list(d->cur, 0, &items, &n);
    if (code != STELE_OK)
        return cli_fail(d->ctx, code, "listing the dead letters of consumer %s", d->consumer);
    static const char gone[] = "HTTP 410";
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (items[i].reason_size < sizeof gone - 1 || memcmp(items[i].reason, gone, sizeof gone - 1) != 0)
            continue;
        if (!d->a->enable)
            rc = cli_error(d->ctx, CLI_EXIT_FAILURE, "endpoint %s is disabled: LSN %" PRIu64 " was answered 410 "
                           "Gone; --enable delivers again", d->a->endpoint, items[i].lsn);
        else if ((code = stele_dead_letter_resolve(d->cur, items[i].lsn)) != STELE_OK)
            rc = cli_fail(d->ctx, code, "marking the dead letter of LSN %" PRIu64 " resolved", items[i].lsn);
        else
            fprintf(stderr, "stele: deliver: endpoint %s enabled (the 410 of LSN %" PRIu64 " is resolved)\n",
                    d->a->endpoint, items[i].lsn);
    }
    stele_dead_letter_free(items);
    return rc;
}

/* Opens the cursor (exclusively when delivering) and reads where it is. */
static int open_consumer(struct deliver *d)
{
    int code = stele_cursor_open(d->log, d->consumer, &d->cur);
    if (code != STELE_OK)
        return cli_fail(d->ctx, code, "opening consumer %s", d->consumer);
    if (!d->a->status && !d->a->dry_run && (code = stele_cursor_exclusive(d->cur)) != STELE_OK)
        return cli_fail(d->ctx, code, "delivering to endpoint %s", d->a->endpoint);
    if ((code = stele_cursor_position(d->cur, &d->committed)) != STELE_OK)
        return cli_fail(d->ctx, code, "reading consumer %s", d->consumer);
    int rc = d->a->status || d->a->dry_run ? 0 : check_enabled(d);
    if (rc)
        return rc;
    stele_stats st;
    if ((code = stele_stats_get(d->log, &st)) != STELE_OK)
        return cli_fail(d->ctx, code, "reading the log's stats");
    cli_hex(st.log_id, sizeof st.log_id, d->log_id);
    d->start = d->seen = d->committed;
    d->start++;
    return 0;
}

static int run(struct deliver *d, const char *dir)
{
    const struct deliver_args *a = d->a;
    int rc = cli_open_read_only(d->ctx, dir, &d->log);
    if (rc)
        return rc;
    if ((rc = open_consumer(d)) != 0)
        goto done;
    if (a->status) {
        rc = print_status(d);
        goto done;
    }
    d->ring = calloc(a->window, sizeof *d->ring);
    if (!d->ring) {
        rc = cli_error(d->ctx, CLI_EXIT_FAILURE, "out of memory");
        goto done;
    }
    cli_stop_install(1);
    if ((rc = open_iter(d)) != 0)
        goto done;
    if (a->dry_run) {
        rc = dry_run(d);
        goto done;
    }
    if ((rc = http_open(d)) == 0 && (rc = committer_start(d)) == 0) {
        rc = deliver_loop(d);
        committer_stop(d);
        int rc2 = print_summary(d);
        rc = rc ? rc : rc2;
    }
    http_close(d);
done:
    for (uint64_t s = d->head; d->ring && s < d->tail; s++)
        slot_release(slot_at(d, s));
    free(d->ring);
    stele_iter_close(d->iter);
    stele_cursor_close(d->cur);
    return cli_close_log(d->ctx, d->log, dir, rc);
}

int cmd_deliver(struct cli_ctx *ctx, int argc, char **argv)
{
    struct deliver_args a = {.concurrency = 8, .timeout_ms = 10000, .max_attempts = 8, .backoff_base_ms = 500,
                             .backoff_max_ms = 60000, .breaker = 5};
    const char *dir;
    int c, rc;
    ctx->usage = deliver_synopsis;
    while ((c = cli_next_opt(ctx, argc, argv, deliver_options)) != -1) {
        if (c == CLI_OPT_HELP) {
            for (size_t i = 0; i < sizeof deliver_manual / sizeof deliver_manual[0]; i++)
                fputs(deliver_manual[i], stdout);
            return CLI_EXIT_OK;
        }
        if (c == CLI_OPT_INVALID)
            return CLI_EXIT_USAGE;
        if ((rc = deliver_option(ctx, c, &a)) != 0)
            return rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0 || (rc = check_args(ctx, &a)) != 0)
        return rc;
    struct deliver d = {.ctx = ctx, .a = &a};
    snprintf(d.consumer, sizeof d.consumer, "%s%s", DELIVER_ENDPOINT_PREFIX, a.endpoint);
    d.rng = a.has_seed ? a.seed : cli_now_ns() ^ ((uint64_t)getpid() << 32);
    return run(&d, dir);
}
