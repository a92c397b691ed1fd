/*
 * cmd_serve.c - `stele serve DIR... [--listen HOST:PORT] [--allow-remote]`:
 * the figures of `stele stats` over HTTP, for Prometheus to scrape and for
 * health probes (issue 22), with libmicrohttpd.
 *
 *   GET /metrics     the Prometheus text format of `stele stats --prometheus`
 *                    (stats_report.c), every sample labelled log="DIR", plus
 *                    stele_log_up{log="DIR"} (0 when the log cannot be read)
 *                    and stele_log_fenced{log="DIR"};
 *   GET /healthz     200 "ok" when every log opens, is read and is not
 *   GET /readyz      fenced; otherwise 503 and one line per failing log
 *                    naming it and the error;
 *   GET /api/status  one JSON object: per log its state (healthy, fenced,
 *                    unreadable), the `stele stats` object, the age of the
 *                    oldest pending intent and the STATS_PENDING_LIST_MAX
 *                    oldest (key, stream, age), the consumers, or the error;
 *   GET /            the status page (serve_page.c), which fetches
 *                    /api/status every 2 s and draws it.
 * HEAD is answered like GET without the body; any other method gets 405,
 * a request with a body 413, an unknown path 404.
 *
 * Read-only: every log is opened with options.read_only (no lock, never
 * written; it sees what the writer has made durable) once at start and kept
 * open; each request refreshes it through stele_stats_get. A log that fails
 * to open (other than "no such log", which refuses to start: a mistyped DIR)
 * is opened again at every request, and a handle that got fenced (a failed
 * sync of a read-only handle, SPEC.md §10.2) is closed after the request
 * that reported it, so that the next one reopens it.
 *
 * One thread of libmicrohttpd (its poll loop) answers every request in turn, so the log
 * handles are used by one thread at a time: the main thread opens them
 * before the daemon starts and closes them after it stopped. Limits: at most
 * SERVE_CONNECTIONS_MAX connections, SERVE_REQUEST_SIZE_MAX bytes of
 * request line and headers (libmicrohttpd answers larger ones with 431 or
 * closes the connection), SERVE_TIMEOUT_S idle seconds per connection.
 * Only loopback addresses are accepted unless --allow-remote is given: the
 * figures and key names of a log are not for everyone.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "cli.h"
#include "event_json.h"
#include "serve_page.h"
#include "stats_report.h"
#include "stele.h"

#define SERVE_LOGS_MAX CLI_ARGS_MAX
#define SERVE_CONNECTIONS_MAX 64u
#define SERVE_REQUEST_SIZE_MAX (32u * 1024u)
#define SERVE_TIMEOUT_S 10u
#define SERVE_LISTEN_DEFAULT "127.0.0.1:9464"
_Static_assert(SERVE_REQUEST_SIZE_MAX >= 8192u, "libmicrohttpd needs room for a response's headers too");

enum { OPT_LISTEN = 256, OPT_ALLOW_REMOTE };

static const struct option serve_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"allow-remote", no_argument, NULL, OPT_ALLOW_REMOTE},
    CLI_COMMON_OPTIONS,
};

struct serve_log {
    const char *dir;
    stele_log *log; /* NULL until it opens */
};

struct serve {
    struct serve_log logs[SERVE_LOGS_MAX];
    size_t count;
};

/* One log's state for one request. */
struct log_view {
    struct stats_snapshot snap;
    int up;     /* 1: snap holds its figures; 0: snap.error says why not */
    int fenced; /* not up because the handle is fenced (else: it could not be opened or read) */
};

/* ------------------------------------------------------------- the logs */

static int log_open(struct serve_log *l, char *err, size_t err_size)
{
    stele_options opts;
    stele_options_init(&opts);
    opts.read_only = 1;
    int code = stele_open(l->dir, &opts, &l->log);
    if (code != STELE_OK) {
        const char *msg = stele_errmsg();
        snprintf(err, err_size, "opening log %s: %s%s%s", l->dir, stele_strerror(code), msg && msg[0] ? ": " : "",
                 msg ? msg : "");
        l->log = NULL;
    }
    return code;
}

/* Fills views[i] for every log: opens it if needed, reads its figures. */
static void views_collect(struct serve *s, struct log_view *views)
{
    for (size_t i = 0; i < s->count; i++) {
        struct serve_log *l = &s->logs[i];
        struct log_view *v = &views[i];
        memset(v, 0, sizeof *v);
        v->snap.label = l->dir;
        if (!l->log && log_open(l, v->snap.error, sizeof v->snap.error) != STELE_OK)
            continue;
        int code = stats_snapshot_collect(l->log, l->dir, l->dir, &v->snap);
        if (code == STELE_OK && v->snap.st.fenced) {
            stats_snapshot_release(&v->snap);
            snprintf(v->snap.error, sizeof v->snap.error, "log %s: the read-only handle is fenced", l->dir);
            code = STELE_ERR_FENCED;
        }
        v->up = code == STELE_OK;
        v->fenced = code == STELE_ERR_FENCED;
        if (code == STELE_ERR_FENCED) {
            /* Nothing new is exposed on a fenced handle: the next request reopens. */
            stele_close(l->log);
            l->log = NULL;
        }
    }
}

static void views_release(struct log_view *views, size_t n)
{
    for (size_t i = 0; i < n; i++)
        stats_snapshot_release(&views[i].snap);
}

/* -------------------------------------------------------------- bodies */

static void body_metrics(FILE *f, const struct serve *s, const struct log_view *views)
{
    static struct stats_snapshot up_snaps[SERVE_LOGS_MAX]; /* 8 KiB each: not on the stack; one thread */
    const char *labels[SERVE_LOGS_MAX];
    int up[SERVE_LOGS_MAX], fenced[SERVE_LOGS_MAX];
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++) {
        labels[i] = s->logs[i].dir;
        up[i] = views[i].up;
        fenced[i] = views[i].fenced;
        if (views[i].up)
            up_snaps[n++] = views[i].snap; /* a shallow copy: released through views */
    }
    stats_prometheus_write(f, up_snaps, n);
    stats_prometheus_up(f, labels, up, fenced, s->count);
}

/* The health answer: 200 and "ok", or 503 and a line per failing log. */
static unsigned body_health(FILE *f, const struct serve *s, const struct log_view *views)
{
    unsigned status = MHD_HTTP_OK;
    for (size_t i = 0; i < s->count; i++) {
        if (!views[i].up) {
            fprintf(f, "%s\n", views[i].snap.error);
            status = MHD_HTTP_SERVICE_UNAVAILABLE;
        }
    }
    if (status == MHD_HTTP_OK)
        fprintf(f, "ok\n");
    return status;
}

/* The oldest pending intents: [{"key","lsn","stream","age_seconds"}]. */
static json_t *pending_json(const struct stats_snapshot *snap)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < snap->pending_count; i++) {
        const struct stats_pending *p = &snap->pending[i];
        uint64_t age_ns = snap->collected_at_ns > p->recorded_at_ns ? snap->collected_at_ns - p->recorded_at_ns : 0;
        json_t *o = json_pack("{s:o, s:I, s:o, s:f}", "key", json_string_lossy(p->key, p->key_size), "lsn",
                              (json_int_t)p->lsn, "stream", json_string_lossy(p->stream, p->stream_size),
                              "age_seconds", (double)age_ns / 1e9);
        if (!o || json_array_append_new(a, o) != 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

static json_t *log_json(const struct serve_log *l, const struct log_view *v)
{
    if (!v->up)
        return json_pack("{s:s, s:b, s:s, s:o}", "log", l->dir, "up", 0, "state", v->fenced ? "fenced" : "unreadable",
                         "error", json_string_lossy(v->snap.error, strlen(v->snap.error)));
    json_t *cons = json_array();
    for (size_t j = 0; cons && j < v->snap.consumer_count; j++) {
        const stele_consumer_info *c = &v->snap.consumers[j];
        uint64_t last = v->snap.st.last_lsn;
        json_array_append_new(cons, json_pack("{s:s, s:I, s:I, s:I}", "name", c->name, "position",
                                              (json_int_t)c->position, "lag_records",
                                              (json_int_t)(last > c->position ? last - c->position : 0),
                                              "dead_letters", (json_int_t)c->dead_letters));
    }
    json_t *stats = stats_json(&v->snap.st);
    json_t *pending = pending_json(&v->snap);
    if (!cons || !stats || !pending) {
        json_decref(cons);
        json_decref(stats);
        json_decref(pending);
        return NULL;
    }
    return json_pack("{s:s, s:b, s:s, s:o, s:f, s:o, s:o}", "log", l->dir, "up", 1, "state", "healthy", "stats",
                     stats, "pending_oldest_age_seconds", (double)v->snap.pending_oldest_ns / 1e9, "pending_oldest",
                     pending, "consumers", cons);
}

/* Returns 200, or 500 when out of memory. */
static unsigned body_status(FILE *f, const struct serve *s, const struct log_view *views)
{
    json_t *logs = json_array();
    int all_up = 1;
    for (size_t i = 0; logs && i < s->count; i++) {
        json_t *o = log_json(&s->logs[i], &views[i]);
        all_up &= views[i].up;
        if (!o || json_array_append_new(logs, o) != 0) {
            json_decref(logs);
            logs = NULL;
        }
    }
    /* The page computes append rates from successive answers' times. */
    double now_s = (double)cli_now_ns() / 1e9;
    json_t *top = logs ? json_pack("{s:b, s:f, s:o}", "healthy", all_up, "time", now_s, "logs", logs) : NULL;
    if (!top || json_write_line(f, top) != 0) {
        json_decref(top);
        fprintf(f, "out of memory\n");
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    json_decref(top);
    return MHD_HTTP_OK;
}

/* ------------------------------------------------------------ requests */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *type, char *body,
                               size_t size, int must_free)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(size, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (must_free)
            free(body);
        return MHD_NO; /* libmicrohttpd closes the connection */
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return respond(c, status, "text/plain; charset=utf-8", (char *)text, strlen(text), 0);
}

enum route { ROUTE_NONE, ROUTE_PAGE, ROUTE_METRICS, ROUTE_HEALTH, ROUTE_STATUS };

static enum route route_of(const char *url)
{
    if (strcmp(url, "/") == 0)
        return ROUTE_PAGE;
    if (strcmp(url, "/metrics") == 0)
        return ROUTE_METRICS;
    if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0)
        return ROUTE_HEALTH;
    if (strcmp(url, "/api/status") == 0)
        return ROUTE_STATUS;
    return ROUTE_NONE;
}

/* The request carries a body (which none of the endpoints takes). */
static int has_body(struct MHD_Connection *c)
{
    const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return te != NULL || (len != NULL && strcmp(len, "0") != 0);
}

static enum MHD_Result answer(struct serve *s, struct MHD_Connection *c, enum route route)
{
    static struct log_view views[SERVE_LOGS_MAX]; /* only the daemon's one thread uses it */
    char *body = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&body, &size);
    if (!f)
        return respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    views_collect(s, views);
    unsigned status = MHD_HTTP_OK;
    const char *type = "text/plain; charset=utf-8";
    if (route == ROUTE_METRICS) {
        body_metrics(f, s, views);
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (route == ROUTE_HEALTH) {
        status = body_health(f, s, views);
    } else {
        status = body_status(f, s, views);
        type = status == MHD_HTTP_OK ? "application/json" : type;
    }
    views_release(views, s->count);
    if (fclose(f) != 0) {
        free(body);
        return respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    return respond(c, status, type, body, size, 1);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    static int seen; /* its address marks a request whose headers were checked */
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    if (!*con_cls) {
        /* The first call, after the headers: refusals are answered at once,
         * before any body is read (none is taken; libmicrohttpd then closes
         * the connection). A good request is answered on the next call,
         * once the request is complete, so that the connection can be kept
         * alive for the next scrape. */
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
            return respond_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        if (has_body(c))
            return respond_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "a request body is not accepted\n");
        *con_cls = &seen;
        return MHD_YES;
    }
    enum route route = route_of(url);
    if (route == ROUTE_NONE)
        return respond_text(c, MHD_HTTP_NOT_FOUND, "not found: /, /metrics, /healthz, /readyz, /api/status\n");
    if (route == ROUTE_PAGE) /* the page reads no log: its script asks /api/status */
        return respond(c, MHD_HTTP_OK, "text/html; charset=utf-8", (char *)serve_page_html,
                       strlen(serve_page_html), 0);
    return answer(cls, c, route);
}

/* ------------------------------------------------------------- listening */

/* HOST:PORT (IPv4) or [HOST]:PORT (IPv6), numeric, into *ss; 0 or -1. */
static int parse_listen(const char *text, struct sockaddr_storage *ss, socklen_t *len, int *out_loopback)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    uint64_t port;
    if (!colon || cli_parse_u64(colon + 1, &port) != 0 || port > 65535)
        return -1;
    size_t n = (size_t)(colon - text);
    int v6 = n >= 2 && text[0] == '[' && text[n - 1] == ']';
    if (v6)
        text++, n -= 2;
    if (n == 0 || n >= sizeof host)
        return -1;
    memcpy(host, text, n);
    host[n] = '\0';
    memset(ss, 0, sizeof *ss);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -1;
        *out_loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
        *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -1;
        *out_loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
        *len = sizeof *a;
    }
    return 0;
}

/* A listening socket on ss; the fd, or -1 after printing why. *out_port is
 * the port bound (the one the kernel chose for port 0). */
static int listen_on(const struct cli_ctx *ctx, const char *text, const struct sockaddr_storage *ss, socklen_t len,
                     unsigned *out_port)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) {
        cli_error(ctx, CLI_EXIT_FAILURE, "socket for %s: %s", text, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* a restart need not wait for TIME_WAIT */
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    struct sockaddr_storage got;
    socklen_t got_len = sizeof got;
    if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, (int)SERVE_CONNECTIONS_MAX) != 0 ||
        getsockname(fd, (struct sockaddr *)&got, &got_len) != 0) {
        cli_error(ctx, CLI_EXIT_FAILURE, "listening on %s: %s", text, strerror(errno));
        close(fd);
        return -1;
    }
    *out_port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                : ((struct sockaddr_in *)&got)->sin_port);
    return fd;
}

/* ------------------------------------------------------------ the command */

static int parse_args(struct cli_ctx *ctx, int argc, char **argv, struct serve *s, const char **listen,
                      int *allow_remote)
{
    int c;
    while ((c = cli_next_opt(ctx, argc, argv, serve_options)) != -1) {
        if (c == OPT_LISTEN)
            *listen = optarg;
        else if (c == OPT_ALLOW_REMOTE)
            *allow_remote = 1;
        else
            return c == CLI_OPT_HELP ? -1 - CLI_EXIT_OK : -1 - CLI_EXIT_USAGE;
    }
    if (ctx->arg_count == 0)
        return -1 - cli_usage_error(ctx, "expected one or more DIR arguments (see stele serve --help)");
    if (ctx->arg_count > CLI_ARGS_MAX)
        return -1 - cli_usage_error(ctx, "at most %d DIR arguments, got %d", CLI_ARGS_MAX, ctx->arg_count);
    for (int i = 0; i < ctx->arg_count; i++) {
        if (ctx->args[i][0] == '\0')
            return -1 - cli_usage_error(ctx, "DIR is empty");
        for (int j = 0; j < i; j++)
            if (strcmp(ctx->args[i], ctx->args[j]) == 0) /* its samples would be duplicates */
                return -1 - cli_usage_error(ctx, "DIR %s is given twice", ctx->args[i]);
        s->logs[s->count++].dir = ctx->args[i];
    }
    return 0;
}

/* Opens every log. "No such log" refuses to start (exit 4); any other
 * failure is said on stderr and served: /healthz reports it. */
static int open_logs(const struct cli_ctx *ctx, struct serve *s)
{
    char err[STATS_ERROR_SIZE];
    for (size_t i = 0; i < s->count; i++) {
        int code = log_open(&s->logs[i], err, sizeof err);
        if (code == STELE_ERR_NOT_FOUND)
            return cli_error(ctx, CLI_EXIT_NOT_FOUND, "%s", err);
        if (code != STELE_OK)
            fprintf(stderr, "stele: %s: %s (serving it anyway: /healthz reports it)\n", ctx->cmd, err);
    }
    return 0;
}

static void close_logs(struct serve *s)
{
    for (size_t i = 0; i < s->count; i++) {
        stele_close(s->logs[i].log);
        s->logs[i].log = NULL;
    }
}

static struct MHD_Daemon *daemon_start(int fd, struct serve *s)
{
    /* The daemon's thread inherits a mask blocking SIGINT and SIGTERM, so
     * that they interrupt the main thread's wait. */
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    /* poll(2), not epoll: libmicrohttpd 0.9.75's epoll loop keeps a
     * connection whose client closed mid-request until the idle timeout
     * (so 64 such clients would lock everyone out for SERVE_TIMEOUT_S); its
     * poll loop closes it at once. 64 connections are no load for poll. */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, SERVE_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)SERVE_REQUEST_SIZE_MAX, MHD_OPTION_CONNECTION_TIMEOUT, SERVE_TIMEOUT_S, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return d;
}

int cmd_serve(struct cli_ctx *ctx, int argc, char **argv)
{
    static struct serve s; /* the handler's, by pointer, for the daemon's lifetime */
    const char *listen_text = SERVE_LISTEN_DEFAULT;
    int allow_remote = 0, loopback = 0, rc;
    if ((rc = parse_args(ctx, argc, argv, &s, &listen_text, &allow_remote)) < 0)
        return -1 - rc;
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_listen(listen_text, &ss, &len, &loopback) != 0)
        return cli_usage_error(ctx, "--listen: '%s' is not HOST:PORT with a numeric IPv4 HOST or [IPv6]:PORT",
                               listen_text);
    if (!loopback && !allow_remote)
        return cli_usage_error(ctx, "--listen: %s is not a loopback address; give --allow-remote to serve "
                               "the logs' figures to other hosts", listen_text);
    if ((rc = open_logs(ctx, &s)) != 0) {
        close_logs(&s);
        return rc;
    }
    cli_stop_install(1);
    unsigned port;
    int fd = listen_on(ctx, listen_text, &ss, len, &port);
    struct MHD_Daemon *d = fd >= 0 ? daemon_start(fd, &s) : NULL;
    if (fd >= 0 && !d) {
        close(fd);
        rc = cli_error(ctx, CLI_EXIT_FAILURE, "starting the HTTP daemon on %s failed", listen_text);
    } else if (d) {
        /* The address actually bound, for whoever started us with port 0. */
        char host[64];
        snprintf(host, sizeof host, "%.*s", (int)(strrchr(listen_text, ':') - listen_text), listen_text);
        printf("{\"listen\":\"%s:%u\",\"logs\":%zu}\n", host, port, s.count);
        fflush(stdout);
        while (!cli_sleep_ms(1000)) {
        }
        MHD_stop_daemon(d);
    } else {
        rc = CLI_EXIT_FAILURE;
    }
    close_logs(&s);
    return rc;
}
