/*
 * nats_sink.h - the NATS JetStream side of `stele relay` and `stele inbox`
 * (SPEC.md §21, RELAY), kept apart from the commands so that a later
 * delivery core can take it as one sink among others: connect with the
 * options the NATS tools spell (--creds, --user, --password, --token,
 * --tlscert, --tlskey, --tlsca), make sure a stream exists, publish
 * asynchronously and collect the acknowledgements, and find what a relay
 * already stored in the stream.
 *
 * Only these files include <nats/nats.h>; the commands see this header.
 */
#ifndef STELE_TOOLS_NATS_SINK_H
#define STELE_TOOLS_NATS_SINK_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

/* Limits (STYLE.md: a limit on everything; SPEC.md §21.5). */
#define NATS_URLS_MAX 16u            /* servers in --nats */
#define NATS_TEXT_SIZE 512u          /* one error message */
#define NATS_RELAY_WINDOW_MAX 256u   /* --window: the LSN span a relay may have unacknowledged */
#define NATS_SCAN_MSGS_MAX 10000000u /* messages a resume scan reads before it gives up */

/* Connection options, as the NATS command line tools spell them. */
struct nats_conf {
    const char *urls;      /* --nats URL[,URL...] (required) */
    const char *creds;     /* --creds FILE: a user JWT and NKey seed (.creds) */
    const char *user, *password; /* --user, --password */
    const char *token;     /* --token */
    const char *tlscert, *tlskey, *tlsca; /* --tlscert, --tlskey, --tlsca (any of them turns TLS on) */
    const char *name;      /* the connection's name the server shows */
    uint64_t timeout_ms;   /* connect and API request timeout (--nats-timeout, default 5000) */
};

/* Option values of the connection options (a command's own are below 0x700). */
enum {
    NATS_OPT_URLS = 0x700, NATS_OPT_CREDS, NATS_OPT_USER, NATS_OPT_PASSWORD, NATS_OPT_TOKEN,
    NATS_OPT_TLSCERT, NATS_OPT_TLSKEY, NATS_OPT_TLSCA, NATS_OPT_TIMEOUT,
};

#define NATS_CONF_OPTIONS                                                                          \
    {"nats", required_argument, NULL, NATS_OPT_URLS}, {"creds", required_argument, NULL, NATS_OPT_CREDS}, \
    {"user", required_argument, NULL, NATS_OPT_USER},                                              \
    {"password", required_argument, NULL, NATS_OPT_PASSWORD},                                      \
    {"token", required_argument, NULL, NATS_OPT_TOKEN},                                            \
    {"tlscert", required_argument, NULL, NATS_OPT_TLSCERT},                                        \
    {"tlskey", required_argument, NULL, NATS_OPT_TLSKEY},                                          \
    {"tlsca", required_argument, NULL, NATS_OPT_TLSCA},                                            \
    {"nats-timeout", required_argument, NULL, NATS_OPT_TIMEOUT}

/* The connection options' lines of a manual page. */
extern const char nats_conf_manual[];

/* Applies option c with value text to conf: 0, -1 when c is not a
 * connection option, or 1 when text is not valid (err says why). */
int nats_conf_option(struct nats_conf *conf, int c, const char *text, char err[NATS_TEXT_SIZE]);

/* How a failure is to be handled. */
enum nats_fault {
    NATS_FAULT_NONE = 0,
    NATS_FAULT_RETRY,     /* broker unavailable, no responders, timeout, leader change: retry */
    NATS_FAULT_PERMANENT, /* stream missing, message too large, permission denied...: stop */
};

/* One connection with its JetStream context. */
struct nats_link;

/* Connects to conf's servers (trying each in turn, no automatic reconnect:
 * the caller decides when to reconnect). max_pending bounds the
 * asynchronous publishes in flight (0 for a link that does not publish).
 * Returns 0, or the fault with a message in err. */
enum nats_fault nats_link_open(const struct nats_conf *conf, int max_pending, struct nats_link **out,
                               char err[NATS_TEXT_SIZE]);

/* Closes the connection, dropping unacknowledged publishes (their
 * acknowledgements, should they come, are never reported). NULL is fine. */
void nats_link_close(struct nats_link *link);

/* At exit: waits for libnats's threads and frees the closed links. */
void nats_shutdown(void);

/* Makes sure stream exists: when it does not and create is set, creates it
 * with the subjects (comma separated), replicas and duplicate window (ns,
 * 0 = the server's default); an existing stream is taken as it is. *out_replicas
 * gets the stream's replica count. */
enum nats_fault nats_stream_ensure(struct nats_link *link, const char *stream, int create, const char *subjects,
                                   int replicas, uint64_t dup_window_ns, int *out_replicas,
                                   char err[NATS_TEXT_SIZE]);

/* One header of a message being published (value NUL-terminated). */
struct nats_header {
    const char *key, *value;
};

/* Publishes payload to subject with headers, asynchronously, expecting the
 * acknowledgement from stream. tag (an LSN) comes back with its ack. */
enum nats_fault nats_publish_async(struct nats_link *link, const char *stream, const char *subject,
                                   const struct nats_header *headers, size_t header_count, const void *payload,
                                   size_t payload_size, uint64_t tag, char err[NATS_TEXT_SIZE]);

/* One acknowledgement (or failure) of an asynchronous publish. */
struct nats_ack {
    uint64_t tag;
    enum nats_fault fault;       /* NONE: stored (or a duplicate the stream already held) */
    int duplicate;
    char text[NATS_TEXT_SIZE];   /* with a fault: what went wrong */
};

/* Waits up to timeout_ms for acknowledgements and takes up to cap of them.
 * A connection that was closed, or an error the server sent on it (a
 * permission violation), comes back as one ack with tag 0 and the fault. */
size_t nats_acks_take(struct nats_link *link, int timeout_ms, struct nats_ack *out, size_t cap);

/* What a resume scan looks for: the messages of one relay of one log. */
struct nats_scan {
    const char *stream;
    const char *log_id;        /* the Stele-Log header */
    const char *relay;         /* the Stele-Relay header */
    uint64_t cursor;           /* the relay's durable cursor: every selected LSN <= it is stored */
    uint64_t *lsns;            /* out: the relay's LSNs > cursor found, ascending (malloc'd) */
    size_t lsn_count;
    uint64_t msgs_read;        /* out: messages the scan read */
};

/* Walks the stream back from its last message and collects every LSN >
 * cursor this relay published, stopping at the first of its messages with
 * LSN + NATS_RELAY_WINDOW_MAX <= cursor + 1 (nothing stored before it can
 * be above the cursor: SPEC.md §21.3) or at the stream's first message. */
enum nats_fault nats_scan_relay(struct nats_link *link, struct nats_scan *scan, char err[NATS_TEXT_SIZE]);

/* The pull consumer of `stele inbox`. */
struct nats_pull;

/* Binds to (creating when missing) the durable pull consumer durable of
 * stream, with filter (NULL = every subject), explicit acks, ack wait. */
enum nats_fault nats_pull_open(struct nats_link *link, const char *stream, const char *durable, const char *filter,
                               uint64_t ack_wait_ms, struct nats_pull **out, char err[NATS_TEXT_SIZE]);
void nats_pull_close(struct nats_pull *pull);

/* One message fetched. */
struct nats_in {
    void *msg;                 /* the natsMsg, for nats_in_ack */
    const char *subject;
    const void *data;
    size_t data_size;
    uint64_t stream_seq;
    uint64_t delivered;        /* deliveries so far, 1 the first time */
};

/* Fetches up to cap messages waiting up to timeout_ms; *out_count 0 on a
 * timeout with none. Release them with nats_in_release. */
enum nats_fault nats_pull_fetch(struct nats_pull *pull, int cap, int timeout_ms, struct nats_in *out,
                                size_t *out_count, char err[NATS_TEXT_SIZE]);

/* The value of header key of m, or NULL. */
const char *nats_in_header(const struct nats_in *m, const char *key);

/* Acknowledges (term = 0) or terminates (term = 1: never redelivered) m. */
enum nats_fault nats_in_ack(struct nats_in *m, int term, char err[NATS_TEXT_SIZE]);
void nats_in_release(struct nats_in *msgs, size_t count);

#endif
