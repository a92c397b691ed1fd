/*
 * http_sink.c - the two ends of bench/deliver_bench.sh (SPEC.md §22):
 *
 *   http_sink serve PORT_FILE   an HTTP endpoint on 127.0.0.1 (libmicrohttpd, one
 *                               epoll thread) that answers every POST 200 and, on
 *                               SIGTERM or SIGINT, prints {"requests","distinct",
 *                               "max_lsn"} (distinct: LSNs seen in webhook-id
 *                               evt_LOGID_LSN) and exits
 *   http_sink blast URL N CONCURRENCY SIZE
 *                               the peer: N POSTs of a SIZE-byte JSON body with
 *                               libcurl's multi interface, CONCURRENCY at once, and
 *                               nothing else (no log, cursor or signature); prints
 *                               the seconds from the first request to the last answer
 *
 * A C receiver because Python's http.server answers a few thousand requests a
 * second at best, below what is measured.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LSN_MAX (1u << 24)
#define CONCURRENCY_MAX 1024

static volatile sig_atomic_t stop;
static uint64_t requests, distinct, max_lsn;
static uint8_t *seen; /* a bit per LSN */

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **state)
{
    (void)cls, (void)url, (void)method, (void)version, (void)data;
    if (!*state) { /* headers are in; the body comes next */
        *state = c;
        return MHD_YES;
    }
    if (*data_size) { /* a piece of the body: not needed */
        *data_size = 0;
        return MHD_YES;
    }
    requests++;
    const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
    const char *us = id ? strrchr(id, '_') : NULL;
    if (us) {
        uint64_t lsn = strtoull(us + 1, NULL, 10);
        if (lsn < LSN_MAX && !(seen[lsn / 8] & (1u << (lsn % 8)))) {
            seen[lsn / 8] |= (uint8_t)(1u << (lsn % 8));
            distinct++;
        }
        max_lsn = lsn > max_lsn ? lsn : max_lsn;
    }
    static char ok[] = "ok";
    struct MHD_Response *r = MHD_create_response_from_buffer(2, ok, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static int serve(const char *port_file)
{
    seen = calloc(LSN_MAX / 8, 1);
    if (!seen)
        return 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* One internal epoll thread: callbacks never run at once. */
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
                                            on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                                            MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "http_sink: could not start the server\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%u\n", (unsigned)info->port) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
        fprintf(stderr, "http_sink: writing %s failed\n", port_file);
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    while (!stop)
        pause();
    MHD_stop_daemon(d);
    printf("{\"requests\":%" PRIu64 ",\"distinct\":%" PRIu64 ",\"max_lsn\":%" PRIu64 "}\n", requests, distinct,
           max_lsn);
    return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p, (void)ctx;
    return size * n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int blast(const char *url, long n, long conc, long size)
{
    if (n < 1 || conc < 1 || conc > CONCURRENCY_MAX || size < 2)
        return 2;
    char *body = malloc((size_t)size);
    if (!body)
        return 1;
    memset(body, 'x', (size_t)size);
    body[0] = '"';
    body[size - 1] = '"';
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    CURL *e[CONCURRENCY_MAX];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    for (long i = 0; i < conc; i++) {
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDSIZE, size);
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e[i], CURLOPT_NOSIGNAL, 1L);
    }
    long started = 0, done = 0, failed = 0;
    double t0 = now_s();
    for (long i = 0; i < conc && started < n; i++, started++)
        curl_multi_add_handle(m, e[i]);
    while (done < n) {
        int running, fds;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            long status = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            failed += msg->data.result != CURLE_OK || status != 200;
            done++;
            CURL *x = msg->easy_handle;
            curl_multi_remove_handle(m, x);
            if (started < n) {
                curl_multi_add_handle(m, x);
                started++;
            }
        }
        if (done < n)
            curl_multi_poll(m, NULL, 0, 100, &fds);
    }
    double t = now_s() - t0;
    printf("%.4f\n", t);
    for (long i = 0; i < conc; i++)
        curl_easy_cleanup(e[i]);
    curl_multi_cleanup(m);
    curl_slist_free_all(h);
    free(body);
    if (failed) {
        fprintf(stderr, "http_sink: %ld of %ld requests failed\n", failed, n);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2]);
    if (argc == 6 && strcmp(argv[1], "blast") == 0)
        return blast(argv[2], atol(argv[3]), atol(argv[4]), atol(argv[5]));
    fprintf(stderr, "usage: http_sink serve PORT_FILE | http_sink blast URL N CONCURRENCY SIZE\n");
    return 2;
}
