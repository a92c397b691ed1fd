/*
 * nats_sink.c - the NATS JetStream side of `stele relay` and `stele inbox`
 * (SPEC.md §21), over the C client libnats (Debian's libnats-dev 3.4).
 *
 * A link is one connection with automatic reconnection turned off: when the
 * connection breaks, every publish in flight has an unknown outcome and the
 * relay must find out from the stream what was stored before it publishes
 * anything again (a fresh connection, then nats_scan_relay). A client that
 * reconnected by itself would replay its buffer behind our back, and an
 * old message could land after the scan that said it was missing.
 *
 * Acknowledgements arrive on a libnats thread (the AckHandler); they are
 * queued under a mutex and taken by the command's thread with
 * nats_acks_take. The queue holds at most max_pending + 2 entries: each
 * publish in flight produces at most one, plus the connection's own faults.
 */
#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nats_sink.h"

const char nats_conf_manual[] =
    "  --nats URL[,URL...]  NATS servers (nats://host:port, tls://host:port), tried in turn\n"
    "  --creds FILE        user credentials (JWT and NKey seed), as the nats tool takes them\n"
    "  --user U, --password P, --token T  user and password, or token, authentication\n"
    "  --tlscert FILE, --tlskey FILE  client certificate and key (TLS)\n"
    "  --tlsca FILE        CA certificates that sign the servers' (TLS)\n"
    "  --nats-timeout MS   connect and JetStream API timeout (default 5000)\n";

struct nats_link {
    natsConnection *nc;
    jsCtx *js;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct nats_ack *queue;
    size_t queue_count, queue_cap;
    uint64_t published;  /* publishes handed to the library on this link */
    uint64_t timeout_ms;
};

struct nats_pull {
    natsSubscription *sub;
    struct nats_link *link;
};

int nats_conf_option(struct nats_conf *conf, int c, const char *text, char err[NATS_TEXT_SIZE])
{
    switch (c) {
    case NATS_OPT_URLS: conf->urls = text; break;
    case NATS_OPT_CREDS: conf->creds = text; break;
    case NATS_OPT_USER: conf->user = text; break;
    case NATS_OPT_PASSWORD: conf->password = text; break;
    case NATS_OPT_TOKEN: conf->token = text; break;
    case NATS_OPT_TLSCERT: conf->tlscert = text; break;
    case NATS_OPT_TLSKEY: conf->tlskey = text; break;
    case NATS_OPT_TLSCA: conf->tlsca = text; break;
    case NATS_OPT_TIMEOUT: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        if (errno || end == text || *end || v < 1 || v > 600000) {
            snprintf(err, NATS_TEXT_SIZE, "--nats-timeout: '%s' is not a number of ms in [1, 600000]", text);
            return 1;
        }
        conf->timeout_ms = v;
        break;
    }
    default:
        return -1;
    }
    if (*text == '\0') {
        snprintf(err, NATS_TEXT_SIZE, "an empty value for a NATS connection option");
        return 1;
    }
    return 0;
}

/* The text of status s with the library's last error detail, if any. */
static void status_text(natsStatus s, const char *what, char err[NATS_TEXT_SIZE])
{
    natsStatus last;
    const char *detail = nats_GetLastError(&last);
    if (detail && *detail && last == s)
        snprintf(err, NATS_TEXT_SIZE, "%s: %s (%s)", what, natsStatus_GetText(s), detail);
    else
        snprintf(err, NATS_TEXT_SIZE, "%s: %s", what, natsStatus_GetText(s));
}

/* Which failures heal by themselves (SPEC.md §21.4). */
static enum nats_fault classify(natsStatus s, jsErrCode jerr)
{
    switch (jerr) {
    case JSStreamNotFoundErr:
    case JSStreamMessageExceedsMaximumErr:
    case JSStreamNotMatchErr:
    case JSNotEnabledErr:
        return NATS_FAULT_PERMANENT;
    default:
        break;
    }
    switch (s) {
    case NATS_NOT_PERMITTED:
    case NATS_MAX_PAYLOAD:
    case NATS_INVALID_SUBJECT:
    case NATS_INVALID_ARG:
    case NATS_NO_MEMORY:
        return NATS_FAULT_PERMANENT;
    default:
        return NATS_FAULT_RETRY;
    }
}

static void queue_push(struct nats_link *link, const struct nats_ack *a)
{
    pthread_mutex_lock(&link->mu);
    if (link->queue_count < link->queue_cap)
        link->queue[link->queue_count++] = *a;
    else if (link->queue_cap && a->fault) /* cannot happen (see the head comment); keep the fault at least */
        link->queue[link->queue_cap - 1] = *a;
    pthread_cond_signal(&link->cv);
    pthread_mutex_unlock(&link->mu);
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    struct nats_link *link = closure;
    struct nats_ack a = {0};
    const char *v = NULL;
    if (natsMsgHeader_Get(msg, "Stele-Lsn", &v) == NATS_OK && v)
        a.tag = strtoull(v, NULL, 10);
    if (pae) {
        a.fault = classify(pae->Err, pae->ErrCode);
        const char *st = natsStatus_GetText(pae->Err), *et = pae->ErrText;
        int same = !et || !*et || strcmp(et, st) == 0;
        snprintf(a.text, sizeof a.text, "publishing LSN %" PRIu64 " to %s: %s%s%s (JetStream code %d)", a.tag,
                 natsMsg_GetSubject(msg), st, same ? "" : ": ", same ? "" : et, (int)pae->ErrCode);
    } else {
        a.duplicate = pa && pa->Duplicate;
    }
    natsMsg_Destroy(msg);
    queue_push(link, &a);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    struct nats_link *link = closure;
    struct nats_ack a = {.fault = NATS_FAULT_RETRY};
    snprintf(a.text, sizeof a.text, "the connection to NATS was closed");
    queue_push(link, &a);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    struct nats_link *link = closure;
    natsStatus last;
    const char *detail = nats_GetLastError(&last);
    struct nats_ack a = {.fault = classify(err, 0)};
    snprintf(a.text, sizeof a.text, "the NATS server reported: %s%s%s", natsStatus_GetText(err),
             detail && *detail ? ": " : "", detail && *detail ? detail : "");
    queue_push(link, &a);
}

/* Splits conf->urls at commas into servers (pointers into buf). */
static int split_urls(const char *urls, char *buf, size_t buf_size, const char **servers, int *count)
{
    if (strlen(urls) >= buf_size)
        return -1;
    strcpy(buf, urls);
    *count = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*count == (int)NATS_URLS_MAX)
            return -1;
        servers[(*count)++] = tok;
    }
    return *count ? 0 : -1;
}

static natsStatus apply_conf(natsOptions *o, const struct nats_conf *conf, struct nats_link *link,
                             const char **servers, int count)
{
    natsStatus s = natsOptions_SetServers(o, servers, count);
    if (s == NATS_OK) s = natsOptions_SetNoRandomize(o, true);
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(o, false);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, (int64_t)conf->timeout_ms);
    if (s == NATS_OK && conf->name) s = natsOptions_SetName(o, conf->name);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(o, on_closed, link);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, on_error, link);
    if (s == NATS_OK && conf->creds) s = natsOptions_SetUserCredentialsFromFiles(o, conf->creds, NULL);
    if (s == NATS_OK && conf->user) s = natsOptions_SetUserInfo(o, conf->user, conf->password);
    if (s == NATS_OK && conf->token) s = natsOptions_SetToken(o, conf->token);
    if (s == NATS_OK && (conf->tlscert || conf->tlskey || conf->tlsca)) s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK && conf->tlsca) s = natsOptions_LoadCATrustedCertificates(o, conf->tlsca);
    if (s == NATS_OK && (conf->tlscert || conf->tlskey))
        s = natsOptions_LoadCertificatesChain(o, conf->tlscert, conf->tlskey);
    return s;
}

enum nats_fault nats_link_open(const struct nats_conf *conf, int max_pending, struct nats_link **out,
                               char err[NATS_TEXT_SIZE])
{
    char buf[4096];
    const char *servers[NATS_URLS_MAX];
    int count;
    *out = NULL;
    if (split_urls(conf->urls, buf, sizeof buf, servers, &count) != 0) {
        snprintf(err, NATS_TEXT_SIZE, "--nats: expected 1 to %u comma-separated URLs", NATS_URLS_MAX);
        return NATS_FAULT_PERMANENT;
    }
    struct nats_link *link = calloc(1, sizeof *link);
    if (!link) {
        snprintf(err, NATS_TEXT_SIZE, "out of memory");
        return NATS_FAULT_PERMANENT;
    }
    pthread_mutex_init(&link->mu, NULL);
    pthread_cond_init(&link->cv, NULL);
    link->timeout_ms = conf->timeout_ms;
    link->queue_cap = (size_t)max_pending + 2;
    link->queue = calloc(link->queue_cap, sizeof *link->queue);
    natsOptions *o = NULL;
    natsStatus s = link->queue ? natsOptions_Create(&o) : NATS_NO_MEMORY;
    if (s == NATS_OK && (s = apply_conf(o, conf, link, servers, count)) != NATS_OK)
        status_text(s, "setting the NATS connection options", err);
    else if (s == NATS_OK && (s = natsConnection_Connect(&link->nc, o)) != NATS_OK)
        status_text(s, "connecting to NATS", err);
    natsOptions_Destroy(o);
    if (s == NATS_OK) {
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = (int64_t)conf->timeout_ms;
        if (max_pending > 0) {
            jo.PublishAsync.MaxPending = max_pending;
            jo.PublishAsync.AckHandler = on_ack;
            jo.PublishAsync.AckHandlerClosure = link;
        }
        if ((s = natsConnection_JetStream(&link->js, link->nc, &jo)) != NATS_OK)
            status_text(s, "opening a JetStream context", err);
    }
    if (s != NATS_OK) {
        enum nats_fault f = s == NATS_NO_SERVER || s == NATS_TIMEOUT || s == NATS_IO_ERROR ||
                                    s == NATS_CONNECTION_CLOSED || s == NATS_SSL_ERROR
                                ? NATS_FAULT_RETRY : classify(s, 0);
        nats_link_close(link);
        return f;
    }
    *out = link;
    return NATS_FAULT_NONE;
}

/* Links closed so far: freed only by nats_shutdown, because a libnats
 * thread may still be inside a callback that holds one when it is closed. */
static struct nats_link *retired[64];
static size_t retired_count;

void nats_shutdown(void)
{
    nats_CloseAndWait(5000);
    for (size_t i = 0; i < retired_count; i++) {
        pthread_cond_destroy(&retired[i]->cv);
        pthread_mutex_destroy(&retired[i]->mu);
        free(retired[i]);
    }
    retired_count = 0;
}

void nats_link_close(struct nats_link *link)
{
    if (!link)
        return;
    /* From now on the callbacks queue nothing (a closed link reports nothing). */
    pthread_mutex_lock(&link->mu);
    free(link->queue);
    link->queue = NULL;
    link->queue_cap = link->queue_count = 0;
    pthread_mutex_unlock(&link->mu);
    /* The JetStream context first: it owns the messages still unacknowledged
     * and drops them; then the connection (its callbacks still see link). */
    if (link->js && link->published) {
        /* (libnats 3.4.1 crashes here on a context that never published.) */
        natsMsgList pending;
        if (js_PublishAsyncGetPendingList(&pending, link->js) == NATS_OK)
            natsMsgList_Destroy(&pending);
    }
    if (link->js)
        jsCtx_Destroy(link->js);
    if (link->nc) {
        natsConnection_Close(link->nc);
        natsConnection_Destroy(link->nc);
    }
    if (retired_count < sizeof retired / sizeof retired[0]) {
        retired[retired_count++] = link;
        return;
    }
    /* Past 64 reconnections the oldest one's callbacks are long over. */
    pthread_cond_destroy(&retired[0]->cv);
    pthread_mutex_destroy(&retired[0]->mu);
    free(retired[0]);
    memmove(retired, retired + 1, (retired_count - 1) * sizeof *retired);
    retired[retired_count - 1] = link;
}

enum nats_fault nats_stream_ensure(struct nats_link *link, const char *stream, int create, const char *subjects,
                                   int replicas, uint64_t dup_window_ns, int *out_replicas,
                                   char err[NATS_TEXT_SIZE])
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, link->js, stream, NULL, &jerr);
    if (s == NATS_OK) {
        *out_replicas = (int)si->Config->Replicas;
        jsStreamInfo_Destroy(si);
        return NATS_FAULT_NONE;
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        char what[300];
        snprintf(what, sizeof what, "reading stream %s", stream);
        status_text(s, what, err);
        return classify(s, jerr);
    }
    if (!create) {
        snprintf(err, NATS_TEXT_SIZE, "stream %s does not exist (--create-stream makes it)", stream);
        return NATS_FAULT_PERMANENT;
    }
    char buf[4096];
    const char *subs[NATS_URLS_MAX];
    int count;
    if (split_urls(subjects, buf, sizeof buf, subs, &count) != 0) {
        snprintf(err, NATS_TEXT_SIZE, "--stream-subjects: expected 1 to %u comma-separated subjects", NATS_URLS_MAX);
        return NATS_FAULT_PERMANENT;
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = stream;
    cfg.Subjects = subs;
    cfg.SubjectsLen = count;
    cfg.Replicas = replicas;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = (int64_t)dup_window_ns;
    s = js_AddStream(&si, link->js, &cfg, NULL, &jerr);
    if (s != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "creating stream %s (subjects %s, %d replicas; JetStream code %d)", stream,
                 subjects, replicas, (int)jerr);
        status_text(s, what, err);
        return jerr == JSStreamNameExistErr ? NATS_FAULT_RETRY : classify(s, jerr);
    }
    *out_replicas = (int)si->Config->Replicas;
    jsStreamInfo_Destroy(si);
    return NATS_FAULT_NONE;
}

enum nats_fault nats_publish_async(struct nats_link *link, const char *stream, const char *subject,
                                   const struct nats_header *headers, size_t header_count, const void *payload,
                                   size_t payload_size, uint64_t tag, char err[NATS_TEXT_SIZE])
{
    natsMsg *msg = NULL;
    natsStatus s = natsMsg_Create(&msg, subject, NULL, payload, (int)payload_size);
    for (size_t i = 0; s == NATS_OK && i < header_count; i++)
        s = natsMsgHeader_Set(msg, headers[i].key, headers[i].value);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.ExpectStream = stream;
    if (s == NATS_OK)
        s = js_PublishMsgAsync(link->js, &msg, &po);
    link->published += s == NATS_OK;
    natsMsg_Destroy(msg); /* NULL once the library took it */
    if (s == NATS_OK)
        return NATS_FAULT_NONE;
    char what[400];
    snprintf(what, sizeof what, "publishing LSN %" PRIu64 " to %s", tag, subject);
    status_text(s, what, err);
    return classify(s, 0);
}

size_t nats_acks_take(struct nats_link *link, int timeout_ms, struct nats_ack *out, size_t cap)
{
    pthread_mutex_lock(&link->mu);
    if (link->queue_count == 0 && timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (link->queue_count == 0)
            if (pthread_cond_timedwait(&link->cv, &link->mu, &ts) != 0)
                break;
    }
    size_t n = link->queue_count < cap ? link->queue_count : cap;
    memcpy(out, link->queue, n * sizeof *out);
    memmove(link->queue, link->queue + n, (link->queue_count - n) * sizeof *out);
    link->queue_count -= n;
    pthread_mutex_unlock(&link->mu);
    return n;
}

/* ---------------------------------------------------------- the resume scan */

static int header_is(natsMsg *m, const char *key, const char *want)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK && v && strcmp(v, want) == 0;
}

static int lsn_push(struct nats_scan *scan, size_t *cap, uint64_t lsn)
{
    if (scan->lsn_count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        uint64_t *p = realloc(scan->lsns, ncap * sizeof *p);
        if (!p)
            return -1;
        scan->lsns = p;
        *cap = ncap;
    }
    scan->lsns[scan->lsn_count++] = lsn;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Reads message seq; *ours is set when it is this relay's, with its LSN. */
static enum nats_fault scan_one(struct nats_link *link, const struct nats_scan *scan, uint64_t seq, int *ours,
                                uint64_t *lsn, char err[NATS_TEXT_SIZE])
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    *ours = 0;
    natsStatus s = js_GetMsg(&m, link->js, scan->stream, seq, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
        return NATS_FAULT_NONE; /* deleted */
    if (s != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "reading message %" PRIu64 " of stream %s to resume", seq, scan->stream);
        status_text(s, what, err);
        return classify(s, jerr);
    }
    const char *v = NULL;
    if (header_is(m, "Stele-Log", scan->log_id) && header_is(m, "Stele-Relay", scan->relay) &&
        natsMsgHeader_Get(m, "Stele-Lsn", &v) == NATS_OK && v) {
        *ours = 1;
        *lsn = strtoull(v, NULL, 10);
    }
    natsMsg_Destroy(m);
    return NATS_FAULT_NONE;
}

enum nats_fault nats_scan_relay(struct nats_link *link, struct nats_scan *scan, char err[NATS_TEXT_SIZE])
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    scan->lsns = NULL;
    scan->lsn_count = 0;
    scan->msgs_read = 0;
    natsStatus s = js_GetStreamInfo(&si, link->js, scan->stream, NULL, &jerr);
    if (s != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "reading stream %s to resume", scan->stream);
        status_text(s, what, err);
        return classify(s, jerr);
    }
    uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    size_t cap = 0;
    enum nats_fault f = NATS_FAULT_NONE;
    for (uint64_t seq = last; seq >= first && seq > 0; seq--) {
        if (++scan->msgs_read > NATS_SCAN_MSGS_MAX) {
            snprintf(err, NATS_TEXT_SIZE, "resuming: read %u messages of stream %s without finding where relay "
                     "%s stands", NATS_SCAN_MSGS_MAX, scan->stream, scan->relay);
            f = NATS_FAULT_PERMANENT;
            break;
        }
        int ours;
        uint64_t lsn = 0;
        if ((f = scan_one(link, scan, seq, &ours, &lsn, err)) != NATS_FAULT_NONE)
            break;
        if (!ours)
            continue;
        if (lsn > scan->cursor && lsn_push(scan, &cap, lsn) != 0) {
            snprintf(err, NATS_TEXT_SIZE, "out of memory");
            f = NATS_FAULT_PERMANENT;
            break;
        }
        if (lsn + NATS_RELAY_WINDOW_MAX <= scan->cursor + 1)
            break;
    }
    if (f != NATS_FAULT_NONE) {
        free(scan->lsns);
        scan->lsns = NULL;
        scan->lsn_count = 0;
        return f;
    }
    if (scan->lsn_count > 1)
        qsort(scan->lsns, scan->lsn_count, sizeof *scan->lsns, cmp_u64);
    return NATS_FAULT_NONE;
}

/* ------------------------------------------------------ the pull consumer */

enum nats_fault nats_pull_open(struct nats_link *link, const char *stream, const char *durable, const char *filter,
                               uint64_t ack_wait_ms, struct nats_pull **out, char err[NATS_TEXT_SIZE])
{
    struct nats_pull *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, NATS_TEXT_SIZE, "out of memory");
        return NATS_FAULT_PERMANENT;
    }
    p->link = link;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    jsErrCode jerr = 0;
    jsConsumerInfo *ci = NULL;
    natsStatus s = js_GetConsumerInfo(&ci, link->js, stream, durable, NULL, &jerr);
    if (s == NATS_OK) {
        /* It exists: bind to it as it is (its filter and ack wait were set when it was made). */
        so.Consumer = durable;
        jsConsumerInfo_Destroy(ci);
    } else if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
        so.Config.Durable = durable;
        so.Config.AckPolicy = js_AckExplicit;
        so.Config.DeliverPolicy = js_DeliverAll;
        so.Config.AckWait = (int64_t)ack_wait_ms * 1000000;
        so.Config.FilterSubject = filter;
    } else {
        char what[300];
        snprintf(what, sizeof what, "reading consumer %s of stream %s (JetStream code %d)", durable, stream, (int)jerr);
        status_text(s, what, err);
        free(p);
        return classify(s, jerr);
    }
    s = js_PullSubscribe(&p->sub, link->js, filter ? filter : ">", durable, NULL, &so, &jerr);
    if (s != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "binding pull consumer %s of stream %s (JetStream code %d)", durable, stream,
                 (int)jerr);
        status_text(s, what, err);
        free(p);
        return classify(s, jerr);
    }
    *out = p;
    return NATS_FAULT_NONE;
}

void nats_pull_close(struct nats_pull *pull)
{
    if (!pull)
        return;
    /* Destroy, not Unsubscribe: since libnats 3.4 that leaves the durable
     * consumer (and its position) on the server. */
    natsSubscription_Destroy(pull->sub);
    free(pull);
}

enum nats_fault nats_pull_fetch(struct nats_pull *pull, int cap, int timeout_ms, struct nats_in *out,
                                size_t *out_count, char err[NATS_TEXT_SIZE])
{
    natsMsgList list = {0};
    jsErrCode jerr = 0;
    *out_count = 0;
    natsStatus s = natsSubscription_Fetch(&list, pull->sub, cap, timeout_ms, &jerr);
    if (s == NATS_TIMEOUT)
        return NATS_FAULT_NONE;
    if (s != NATS_OK) {
        status_text(s, "fetching from the pull consumer", err);
        return classify(s, jerr);
    }
    for (int i = 0; i < list.Count; i++) {
        natsMsg *m = list.Msgs[i];
        list.Msgs[i] = NULL;
        struct nats_in *in = &out[(*out_count)++];
        memset(in, 0, sizeof *in);
        in->msg = m;
        in->subject = natsMsg_GetSubject(m);
        in->data = natsMsg_GetData(m);
        in->data_size = (size_t)natsMsg_GetDataLength(m);
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            in->stream_seq = meta->Sequence.Stream;
            in->delivered = meta->NumDelivered;
            jsMsgMetaData_Destroy(meta);
        }
    }
    natsMsgList_Destroy(&list);
    return NATS_FAULT_NONE;
}

const char *nats_in_header(const struct nats_in *m, const char *key)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m->msg, key, &v) == NATS_OK ? v : NULL;
}

enum nats_fault nats_in_ack(struct nats_in *m, int term, char err[NATS_TEXT_SIZE])
{
    natsStatus s = term ? natsMsg_Term(m->msg, NULL) : natsMsg_Ack(m->msg, NULL);
    if (s == NATS_OK)
        return NATS_FAULT_NONE;
    char what[200];
    snprintf(what, sizeof what, "%s message %" PRIu64, term ? "terminating" : "acknowledging", m->stream_seq);
    status_text(s, what, err);
    return classify(s, 0);
}

void nats_in_release(struct nats_in *msgs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        natsMsg_Destroy(msgs[i].msg);
        msgs[i].msg = NULL;
    }
}
