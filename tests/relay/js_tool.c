/*
 * js_tool.c - the independent side of the relay tests (tests/relay): reads a
 * JetStream stream back through the JetStream API with libnats, never through
 * stele, and publishes test messages for the inbox.
 *
 *   js_tool dump URLS STREAM     one line per message in stream order:
 *                                "SEQ SUBJECT LSN MSGID" (LSN and MSGID "-" when absent)
 *   js_tool leader URLS STREAM   the name of the stream's leader
 *   js_tool create URLS STREAM SUBJECT REPLICAS DUPE_WINDOW_MS   creates a file stream
 *   js_tool pub URLS SUBJECT N ID_PREFIX   publishes N messages synchronously, each with
 *                                Nats-Msg-Id ID_PREFIX-i and payload {"i":i} (i = 1..N), or
 *                                {"i":i,"salt":S} when $JS_TOOL_SALT is S
 *
 *   js_tool bench URLS SUBJECT N WINDOW SIZE   the peer of bench/relay_bench.sh: publishes N
 *                                messages of SIZE bytes asynchronously, at most WINDOW in flight,
 *                                with the headers stele relay sets, and prints the seconds until
 *                                the last PubAck came
 *
 * Every API call has retries of its own (a cluster just started, or with a
 * node down, may answer "no responders" for a while); exit 1 with the reason
 * when it does not work out within about 20 s.
 */
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static jsCtx *js;
static natsConnection *nc;
static int64_t max_pending; /* js_tool bench: the window */

static void die(const char *what, natsStatus s, jsErrCode jerr)
{
    fprintf(stderr, "js_tool: %s: %s (JetStream code %d)\n", what, natsStatus_GetText(s), (int)jerr);
    exit(1);
}

static void connect_to(const char *urls)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    char *copy = strdup(urls);
    const char *servers[16];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && n < 16; t = strtok_r(NULL, ",", &save))
        servers[n++] = t;
    if (s == NATS_OK) s = natsOptions_SetServers(o, servers, n);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, 100);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 100);
    for (int i = 0; i < 100 && s == NATS_OK; i++) {
        if ((s = natsConnection_Connect(&nc, o)) == NATS_OK)
            break;
        if (i < 99) {
            s = NATS_OK;
            usleep(200000);
        }
    }
    if (s != NATS_OK)
        die("connecting", s, 0);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    if (max_pending)
        jo.PublishAsync.MaxPending = max_pending;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK)
        die("JetStream context", s, 0);
    natsOptions_Destroy(o);
    free(copy);
}

static jsStreamInfo *stream_info(const char *stream)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = NATS_OK;
    for (int i = 0; i < 100; i++) {
        if ((s = js_GetStreamInfo(&si, js, stream, NULL, &jerr)) == NATS_OK)
            return si;
        usleep(200000);
    }
    die("stream info", s, jerr);
    return NULL;
}

static void dump(const char *stream)
{
    jsStreamInfo *si = stream_info(stream);
    uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    for (uint64_t seq = first; seq && seq <= last; seq++) {
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        natsStatus s = NATS_OK;
        for (int i = 0; i < 100; i++) {
            s = js_GetMsg(&m, js, stream, seq, NULL, &jerr);
            if (s == NATS_OK || jerr == JSNoMessageFoundErr)
                break;
            usleep(200000);
        }
        if (jerr == JSNoMessageFoundErr)
            continue;
        if (s != NATS_OK)
            die("get message", s, jerr);
        const char *lsn = NULL, *id = NULL;
        natsMsgHeader_Get(m, "Stele-Lsn", &lsn);
        natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
        printf("%" PRIu64 " %s %s %s\n", seq, natsMsg_GetSubject(m), lsn ? lsn : "-", id ? id : "-");
        natsMsg_Destroy(m);
    }
}

static void leader(const char *stream)
{
    for (int i = 0; i < 100; i++) {
        jsStreamInfo *si = stream_info(stream);
        if (si->Cluster && si->Cluster->Leader && *si->Cluster->Leader) {
            printf("%s\n", si->Cluster->Leader);
            jsStreamInfo_Destroy(si);
            return;
        }
        jsStreamInfo_Destroy(si);
        usleep(200000);
    }
    die("stream leader", NATS_NOT_FOUND, 0);
}

static void create(const char *stream, const char *subject, int replicas, long dupe_ms)
{
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subs[1] = {subject};
    cfg.Name = stream;
    cfg.Subjects = subs;
    cfg.SubjectsLen = 1;
    cfg.Replicas = replicas;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = (int64_t)dupe_ms * 1000000;
    natsStatus s = NATS_OK;
    jsErrCode jerr = 0;
    for (int i = 0; i < 100; i++) {
        jsStreamInfo *si = NULL;
        if ((s = js_AddStream(&si, js, &cfg, NULL, &jerr)) == NATS_OK) {
            jsStreamInfo_Destroy(si);
            return;
        }
        usleep(200000);
    }
    die("create stream", s, jerr);
}

static void pub(const char *subject, long count, const char *prefix)
{
    for (long i = 1; i <= count; i++) {
        char id[256], data[64];
        snprintf(id, sizeof id, "%s-%ld", prefix, i);
        const char *salt = getenv("JS_TOOL_SALT");
        int n = salt ? snprintf(data, sizeof data, "{\"i\":%ld,\"salt\":\"%.20s\"}", i, salt)
                     : snprintf(data, sizeof data, "{\"i\":%ld}", i);
        natsStatus s = NATS_OK;
        jsErrCode jerr = 0;
        for (int k = 0; k < 100; k++) {
            natsMsg *m = NULL;
            jsPubAck *pa = NULL;
            s = natsMsg_Create(&m, subject, NULL, data, n);
            if (s == NATS_OK) s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
            if (s == NATS_OK) s = js_PublishMsg(&pa, js, m, NULL, &jerr);
            natsMsg_Destroy(m);
            jsPubAck_Destroy(pa);
            if (s == NATS_OK)
                break;
            usleep(200000);
        }
        if (s != NATS_OK)
            die("publish", s, jerr);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The same headers as stele relay (SPEC.md §21.1), values of the same sizes. */
static void bench(const char *subject, long count, long size)
{
    char *payload = malloc((size_t)size + 1);
    memset(payload, 'x', (size_t)size);
    double t0 = now_s();
    for (long i = 1; i <= count; i++) {
        char id[64], lsn[24];
        snprintf(id, sizeof id, "0123456789abcdef0123456789abcdef:%ld", i);
        snprintf(lsn, sizeof lsn, "%ld", i);
        natsMsg *m = NULL;
        natsStatus s = natsMsg_Create(&m, subject, NULL, payload, (int)size);
        const char *h[][2] = {{"Nats-Msg-Id", id}, {"Stele-Lsn", lsn}, {"Stele-Type", "order.t1"},
                              {"Stele-Kind", "event"}, {"Stele-Event-Time", "2026-12-06T19:00:00.000000000Z"},
                              {"Stele-Content", "json"}, {"Stele-Log", "0123456789abcdef0123456789abcdef"},
                              {"Stele-Relay", "bench"}};
        for (size_t k = 0; s == NATS_OK && k < sizeof h / sizeof h[0]; k++)
            s = natsMsgHeader_Set(m, h[k][0], h[k][1]);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        if (s == NATS_OK)
            s = js_PublishMsgAsync(js, &m, &po);
        natsMsg_Destroy(m);
        if (s != NATS_OK)
            die("publish", s, 0);
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    natsStatus s = js_PublishAsyncComplete(js, &po);
    if (s != NATS_OK)
        die("waiting for the acks", s, 0);
    printf("%.4f\n", now_s() - t0);
    free(payload);
}

int main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "bench") == 0)
        max_pending = atol(argv[5]);
    if (argc < 4) {
        fprintf(stderr, "usage: js_tool dump|leader URLS STREAM | js_tool pub URLS SUBJECT N ID_PREFIX\n");
        return 2;
    }
    connect_to(argv[2]);
    if (strcmp(argv[1], "dump") == 0)
        dump(argv[3]);
    else if (strcmp(argv[1], "leader") == 0)
        leader(argv[3]);
    else if (strcmp(argv[1], "bench") == 0 && argc == 7)
        bench(argv[3], atol(argv[4]), atol(argv[6]));
    else if (strcmp(argv[1], "create") == 0 && argc == 7)
        create(argv[3], argv[4], atoi(argv[5]), atol(argv[6]));
    else if (strcmp(argv[1], "pub") == 0 && argc == 6)
        pub(argv[3], atol(argv[4]), argv[5]);
    else {
        fprintf(stderr, "js_tool: unknown command %s\n", argv[1]);
        return 2;
    }
    fflush(stdout);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_CloseAndWait(2000);
    return 0;
}
