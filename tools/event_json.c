/*
 * event_json.c - event objects <-> stele records and append requests, and the
 * compact JSON serializer every `stele` output line goes through (see
 * event_json.h for the field conventions and why we serialize ourselves).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "cli.h"
#include "event_json.h"

/* ------------------------------------------------------------ serializer */

struct buf {
    char *p;
    size_t len, cap;
    int failed; /* an allocation failed; everything after is dropped */
};

static void buf_put(struct buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* The escape for a byte JSON does not allow raw inside a string. */
static const char *escape_of(unsigned char c, char tmp[8])
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        snprintf(tmp, 8, "\\u%04x", c);
        return tmp;
    }
}

/* A JSON string: quote, backslash and control characters escaped; UTF-8 is
 * copied as is (jansson validated it when the string was made). */
static void put_string(struct buf *b, const char *s, size_t n)
{
    char tmp[8];
    size_t run = 0;
    buf_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_put(b, s + run, i - run);
        buf_puts(b, escape_of(c, tmp));
        run = i + 1;
    }
    buf_put(b, s + run, n - run);
    buf_puts(b, "\"");
}

/* The shortest %g text that reads back as exactly d, marked as a real. */
static void put_real(struct buf *b, double d)
{
    char text[40];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, d);
        if (strtod(text, NULL) == d)
            break;
    }
    /* Without '.' or an exponent the reader would see an integer. */
    if (!strpbrk(text, ".eE"))
        strcat(text, ".0");
    buf_puts(b, text);
}

static void put_value(struct buf *b, const json_t *v);

static void put_object(struct buf *b, json_t *obj)
{
    const char *key;
    json_t *value;
    int first = 1;
    buf_puts(b, "{");
    json_object_foreach(obj, key, value) {
        if (!first)
            buf_puts(b, ",");
        first = 0;
        put_string(b, key, strlen(key));
        buf_puts(b, ":");
        put_value(b, value);
    }
    buf_puts(b, "}");
}

/* Recursion depth is bounded by jansson's parser depth limit for parsed
 * values, and by our own construction for built ones. */
static void put_value(struct buf *b, const json_t *v)
{
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        put_object(b, (json_t *)v);
        break;
    case JSON_ARRAY:
        buf_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0)
                buf_puts(b, ",");
            put_value(b, json_array_get(v, i));
        }
        buf_puts(b, "]");
        break;
    case JSON_STRING:
        put_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        buf_puts(b, num);
        break;
    case JSON_REAL:
        put_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        buf_puts(b, "true");
        break;
    case JSON_FALSE:
        buf_puts(b, "false");
        break;
    default:
        buf_puts(b, "null");
        break;
    }
}

char *json_compact(const json_t *v, size_t *out_size)
{
    struct buf b = {0};
    put_value(&b, v);
    if (b.failed || !b.p) {
        free(b.p);
        return NULL;
    }
    *out_size = b.len;
    return b.p;
}

int json_write_line(FILE *f, const json_t *v)
{
    size_t n;
    char *text = json_compact(v, &n);
    if (!text)
        return -1;
    text[n] = '\n'; /* overwrites the NUL: the buffer holds n + 1 bytes */
    fwrite(text, 1, n + 1, f);
    free(text);
    return 0;
}

/* --------------------------------------------------------------- output */

const char *event_kind_name(int kind)
{
    static const char *names[] = {"event", "event", "intent", "outcome", "compensation"};
    return kind >= 0 && kind <= STELE_KIND_COMPENSATION ? names[kind] : "unknown";
}

const char *event_outcome_name(int outcome)
{
    return outcome == STELE_OUTCOME_CONFIRMED ? "confirmed" : outcome == STELE_OUTCOME_FAILED ? "failed" : "unknown";
}

const char *event_decision_name(int decision)
{
    switch (decision) {
    case STELE_DECISION_NEW:
        return "new";
    case STELE_DECISION_DUPLICATE:
        return "duplicate";
    case STELE_DECISION_CONFLICT:
        return "conflict";
    default:
        return "none";
    }
}

const char *event_state_name(int state)
{
    static const char *names[] = {"unknown", "event", "pending", "confirmed", "failed", "compensated"};
    return state >= STELE_STATE_EVENT && state <= STELE_STATE_COMPENSATED ? names[state] : "unknown";
}

/* A string field as JSON: null when empty; bytes that are not UTF-8 (the
 * engine does not promise UTF-8 for streams and keys) become U+FFFD, because
 * JSON cannot carry them. */
static json_t *string_or_null(const char *s, size_t n)
{
    return n == 0 ? json_null() : json_string_lossy(s, n);
}

/* See event_json.h. */
json_t *json_string_lossy(const char *s, size_t n)
{
    json_t *v = json_stringn(n ? s : "", n);
    if (v)
        return v;
    struct buf b = {0};
    for (size_t i = 0; i < n;) {
        size_t len = cli_utf8_sequence(s + i, n - i);
        buf_put(&b, len ? s + i : "\xef\xbf\xbd", len ? len : 3);
        i += len ? len : 1;
    }
    v = b.failed ? NULL : json_stringn(b.p, b.len);
    free(b.p);
    return v;
}

static json_t *time_json(uint64_t ns)
{
    char text[CLI_TIME_TEXT_SIZE];
    cli_time_format(ns, text, sizeof text);
    return json_string(text);
}

static json_t *u64_or_null(uint64_t v)
{
    return v == 0 ? json_null() : json_integer((json_int_t)v);
}

/* Sets the one payload field. JSON content that does not parse and text that
 * is not UTF-8 (only the C API can store those) fall back to a faithful form
 * (text, then base64) rather than failing the read. */
static int set_payload(json_t *obj, const stele_record *rec)
{
    if (rec->content == STELE_CONTENT_JSON && rec->payload_size > 0) {
        json_t *v = json_loadb(rec->payload, rec->payload_size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (v)
            return json_object_set_new(obj, "data", v);
    }
    if (rec->content == STELE_CONTENT_JSON || rec->content == STELE_CONTENT_TEXT) {
        json_t *v = json_stringn(rec->payload_size ? rec->payload : "", rec->payload_size);
        if (v)
            return json_object_set_new(obj, "data_text", v);
    }
    char *text = malloc(BASE64_ENCODED_SIZE(rec->payload_size) + 1);
    if (!text)
        return -1;
    base64_encode(rec->payload, rec->payload_size, text);
    int rc = json_object_set_new(obj, "data_b64", json_string(text));
    free(text);
    return rc;
}

json_t *event_json_from_record(const stele_record *r)
{
    char fp[17];
    snprintf(fp, sizeof fp, "%016" PRIx64, r->fingerprint);
    /* Values are made first and inserted in this order: the output's field order. */
    const struct { const char *name; json_t *value; } fields[] = {
        {"lsn", json_integer((json_int_t)r->lsn)},
        {"recorded_at", time_json(r->recorded_at_ns)},
        {"event_time", time_json(r->event_time_ns)},
        {"kind", json_string(event_kind_name(r->kind))},
        {"outcome", r->kind == STELE_KIND_OUTCOME ? json_string(event_outcome_name(r->outcome)) : json_null()},
        {"type", string_or_null(r->type, r->type_size)},
        {"stream", string_or_null(r->stream, r->stream_size)},
        {"stream_version", r->stream_size ? u64_or_null(r->stream_version) : json_null()},
        {"key", string_or_null(r->key, r->key_size)},
        {"fingerprint", json_string(fp)},
        {"ref", u64_or_null(r->ref)},
        {"actor", string_or_null(r->actor, r->actor_size)},
        {"backfilled", json_boolean(r->flags & STELE_FLAG_BACKFILLED)},
    };
    json_t *o = json_object();
    int rc = o ? 0 : -1;
    /* json_object_set_new takes each value even when it fails, so none leaks. */
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!o || json_object_set_new(o, fields[i].name, fields[i].value) != 0)
            rc = -1;
    if (rc == 0)
        rc = set_payload(o, r);
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* One optional "name=value" part of the human header line. */
static void human_field(FILE *f, const char *name, const char *s, size_t n)
{
    if (n > 0)
        fprintf(f, "  %s=%.*s", name, (int)n, s);
}

void event_write_human(FILE *f, const stele_record *r)
{
    char recorded[CLI_TIME_TEXT_SIZE], event_time[CLI_TIME_TEXT_SIZE];
    cli_time_format(r->recorded_at_ns, recorded, sizeof recorded);
    cli_time_format(r->event_time_ns, event_time, sizeof event_time);
    fprintf(f, "#%" PRIu64 "  %s  %s", r->lsn, recorded, event_kind_name(r->kind));
    if (r->kind == STELE_KIND_OUTCOME)
        fprintf(f, "/%s", event_outcome_name(r->outcome));
    human_field(f, "type", r->type, r->type_size);
    human_field(f, "stream", r->stream, r->stream_size);
    if (r->stream_size > 0)
        fprintf(f, "@%" PRIu64, r->stream_version);
    human_field(f, "key", r->key, r->key_size);
    human_field(f, "actor", r->actor, r->actor_size);
    if (r->ref)
        fprintf(f, "  ref=%" PRIu64, r->ref);
    if (r->event_time_ns != r->recorded_at_ns)
        fprintf(f, "  event_time=%s", event_time);
    if (r->flags & STELE_FLAG_BACKFILLED)
        fprintf(f, "  backfilled");
    if (r->content == STELE_CONTENT_JSON || r->content == STELE_CONTENT_TEXT)
        fprintf(f, "\n    %.*s\n", (int)r->payload_size, r->payload_size ? (const char *)r->payload : "");
    else
        fprintf(f, "\n    (%zu bytes of binary)\n", r->payload_size);
}

/* See cli.h. */
int cli_print_record(const struct cli_ctx *ctx, const stele_record *rec)
{
    if (ctx->human) {
        event_write_human(stdout, rec);
        return 0;
    }
    json_t *o = event_json_from_record(rec);
    int rc = o ? json_write_line(stdout, o) : -1;
    json_decref(o);
    return rc == 0 ? 0 : cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
}

/* -------------------------------------------------------------- receipts */

/* See event_json.h. */
json_t *receipt_json(long line, uint64_t ref, const stele_receipt *r, int code, const char *detail)
{
    json_t *o = line > 0 ? json_pack("{s:I}", "line", (json_int_t)line) : json_object();
    if (!o)
        return NULL;
    if (code == STELE_OK || code == STELE_ERR_CONFLICT) {
        json_object_set_new(o, "lsn", json_integer((json_int_t)r->lsn));
        json_object_set_new(o, "decision", json_string(event_decision_name(r->decision)));
        /* Always a number, 0 for a record without a stream (README.md shows it so). */
        json_object_set_new(o, "stream_version", json_integer((json_int_t)r->stream_version));
        if (ref)
            json_object_set_new(o, "ref", json_integer((json_int_t)ref));
        if (code == STELE_ERR_CONFLICT)
            json_object_set_new(o, "reason", json_string("different_request"));
    } else if (code == STELE_ERR_STREAM_VERSION) {
        /* Nothing was appended; stream_version is where the stream stands. */
        json_object_set_new(o, "lsn", json_null());
        json_object_set_new(o, "decision", json_string("conflict"));
        json_object_set_new(o, "stream_version", json_integer((json_int_t)r->stream_version));
        if (ref)
            json_object_set_new(o, "ref", json_integer((json_int_t)ref));
        json_object_set_new(o, "reason", json_string("stream_version"));
    } else {
        char text[EVENT_ERR_SIZE + 128];
        snprintf(text, sizeof text, "%s%s%s", stele_strerror(code), detail && *detail ? ": " : "",
                 detail ? detail : "");
        json_object_set_new(o, "error", json_string_lossy(text, strlen(text)));
        json_object_set_new(o, "code", json_integer(code));
    }
    return o;
}

/* See event_json.h. */
void receipt_write_human(FILE *f, long line, uint64_t ref, const stele_receipt *r, int code, const char *detail)
{
    if (line > 0)
        fprintf(f, "line %ld: ", line);
    if (code == STELE_OK || code == STELE_ERR_CONFLICT) {
        fprintf(f, "%s lsn=%" PRIu64, event_decision_name(r->decision), r->lsn);
        if (r->stream_version) /* versions start at 1: 0 means no stream */
            fprintf(f, " stream_version=%" PRIu64, r->stream_version);
        if (ref)
            fprintf(f, " ref=%" PRIu64, ref);
        fprintf(f, "%s\n", code == STELE_ERR_CONFLICT ? " (a different request is recorded there)" : "");
    } else if (code == STELE_ERR_STREAM_VERSION) {
        fprintf(f, "conflict: the stream is at version %" PRIu64 "\n", r->stream_version);
    } else {
        fprintf(f, "error: %s%s%s\n", stele_strerror(code), detail && *detail ? ": " : "", detail ? detail : "");
    }
}

/* ---------------------------------------------------------------- input */

__attribute__((format(printf, 2, 3))) static int fail(char err[EVENT_ERR_SIZE], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, EVENT_ERR_SIZE, fmt, ap);
    va_end(ap);
    return -1;
}

/* A string field: string or null; empty means absent; at most 255 bytes. */
static int in_string(json_t *v, const char *name, const char **out, size_t *out_size, char err[EVENT_ERR_SIZE])
{
    if (json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(err, "\"%s\" must be a string or null", name);
    if (json_string_length(v) > CLI_FIELD_SIZE_MAX)
        return fail(err, "\"%s\" is longer than 255 bytes", name);
    *out = json_string_value(v);
    *out_size = json_string_length(v);
    return 0;
}

/* A non-negative integer field, or null (has stays 0). */
static int in_u64(json_t *v, const char *name, uint64_t *out, int *has, char err[EVENT_ERR_SIZE])
{
    if (json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return fail(err, "\"%s\" must be a non-negative integer or null", name);
    *out = (uint64_t)json_integer_value(v);
    *has = 1;
    return 0;
}

static int in_enum(json_t *v, const char *name, const char *const *names, int count, int *out,
                   char err[EVENT_ERR_SIZE])
{
    if (json_is_null(v))
        return 0;
    for (int i = 0; json_is_string(v) && i < count; i++) {
        if (strcmp(json_string_value(v), names[i]) == 0) {
            *out = i + 1;
            return 0;
        }
    }
    return fail(err, "\"%s\" has a value that is not allowed here", name);
}

/* An RFC 3339 string or integer nanoseconds; null = the recorded time. */
static int in_event_time(json_t *v, uint64_t *out, char err[EVENT_ERR_SIZE])
{
    int has = 0;
    if (json_is_string(v)) {
        if (cli_parse_time(json_string_value(v), out) != 0)
            return fail(err, "\"event_time\" is not an RFC 3339 time");
        has = 1;
    } else if (in_u64(v, "event_time", out, &has, err) != 0) {
        return -1;
    }
    /* stele.h reads event time 0 as "the recorded time": refuse rather than substitute. */
    if (has && *out == 0)
        return fail(err, "\"event_time\" is the epoch itself (time 0), which cannot be stored");
    return 0;
}

/* data (any JSON value), data_text (string), data_b64 (base64 string). */
static int in_payload(struct event_in *in, const char *name, json_t *v, char err[EVENT_ERR_SIZE])
{
    if (in->ev.payload || in->ev.content)
        return fail(err, "more than one of data, data_text, data_b64 (\"%s\")", name);
    if (strcmp(name, "data") == 0) {
        in->payload_owned = json_compact(v, &in->ev.payload_size);
        if (!in->payload_owned)
            return fail(err, "out of memory");
        in->ev.payload = in->payload_owned;
        in->ev.content = STELE_CONTENT_JSON;
        return 0;
    }
    if (json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(err, "\"%s\" must be a string", name);
    if (strcmp(name, "data_text") == 0) {
        in->ev.payload = json_string_value(v);
        in->ev.payload_size = json_string_length(v);
        in->ev.content = STELE_CONTENT_TEXT;
        return 0;
    }
    size_t n = json_string_length(v);
    in->payload_owned = malloc(n / 4 * 3 + 1);
    if (!in->payload_owned)
        return fail(err, "out of memory");
    if (base64_decode(json_string_value(v), n, in->payload_owned, &in->ev.payload_size) != 0)
        return fail(err, "\"%s\" is not valid base64 (RFC 4648, padded)", name);
    in->ev.payload = in->payload_owned;
    in->ev.content = STELE_CONTENT_BINARY;
    return 0;
}

/* Applies one member of the input object to in. */
static int in_field(struct event_in *in, const char *name, json_t *v, char err[EVENT_ERR_SIZE])
{
    static const char *const kinds[] = {"event", "intent", "outcome", "compensation"};
    static const char *const outcomes[] = {"confirmed", "failed"};
    static const char *const ignored[] = {"lsn", "recorded_at", "stream_version", "fingerprint", "backfilled"};
    stele_event *ev = &in->ev;
    int kind = 0, outcome = 0, has_ref = 0, rc;
    if (strcmp(name, "kind") == 0) {
        rc = in_enum(v, name, kinds, 4, &kind, err);
        ev->kind = (stele_kind)kind;
        return rc;
    }
    if (strcmp(name, "outcome") == 0) {
        rc = in_enum(v, name, outcomes, 2, &outcome, err);
        ev->outcome = (stele_outcome)outcome;
        return rc;
    }
    if (strcmp(name, "type") == 0)
        return in_string(v, name, &ev->type, &ev->type_size, err);
    if (strcmp(name, "stream") == 0)
        return in_string(v, name, &ev->stream, &ev->stream_size, err);
    if (strcmp(name, "key") == 0)
        return in_string(v, name, &ev->key, &ev->key_size, err);
    if (strcmp(name, "actor") == 0)
        return in_string(v, name, &ev->actor, &ev->actor_size, err);
    if (strcmp(name, "expect_version") == 0)
        return in_u64(v, name, &ev->expect_version, &ev->has_expect_version, err);
    if (strcmp(name, "ref") == 0)
        return in_u64(v, name, &ev->ref, &has_ref, err);
    if (strcmp(name, "event_time") == 0)
        return in_event_time(v, &ev->event_time_ns, err);
    if (strcmp(name, "data") == 0 || strcmp(name, "data_text") == 0 || strcmp(name, "data_b64") == 0)
        return in_payload(in, name, v, err);
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        if (strcmp(name, ignored[i]) == 0)
            return 0;
    return fail(err, "unknown field \"%.200s\"", name);
}

/* Rules between fields that stele.h states, checked here so that a bad line
 * is reported as its own and cannot fail the batch it would have joined. */
static const char *check_event(const stele_event *ev)
{
    if ((ev->kind == STELE_KIND_OUTCOME) != (ev->outcome != STELE_OUTCOME_NONE))
        return "\"outcome\" (confirmed or failed) goes with kind \"outcome\" and only with it";
    if ((ev->kind == STELE_KIND_INTENT || ev->kind == STELE_KIND_OUTCOME) && ev->key_size == 0)
        return "an intent or an outcome needs \"key\" (the intent's idempotency key)";
    if (ev->kind == STELE_KIND_COMPENSATION && ev->ref == 0)
        return "a compensation needs \"ref\" (the LSN it reverses)";
    if (ev->kind == STELE_KIND_COMPENSATION && ev->key_size > 0)
        return "a compensation takes no \"key\" (it is identified by the record it reverses)";
    if (ev->has_expect_version && ev->stream_size == 0)
        return "\"expect_version\" needs a \"stream\"";
    return NULL;
}

int event_in_parse(const char *line, size_t line_size, struct event_in *in, char err[EVENT_ERR_SIZE])
{
    json_error_t jerr;
    const char *name;
    json_t *v;
    in->root = json_loadb(line, line_size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!in->root) {
        snprintf(err, EVENT_ERR_SIZE, "invalid JSON at column %d: %s", jerr.column, jerr.text);
        return -1;
    }
    if (!json_is_object(in->root)) {
        event_in_release(in);
        return fail(err, "not a JSON object");
    }
    json_object_foreach(in->root, name, v) {
        if (in_field(in, name, v, err) != 0) {
            event_in_release(in);
            return -1;
        }
    }
    /* stele.h: outcome is set exactly when kind is outcome. Checked here so a
     * bad line is reported as its own and cannot fail a whole batch. */
    const char *why = check_event(&in->ev);
    if (why) {
        event_in_release(in);
        return fail(err, "%s", why);
    }
    return 0;
}

int event_in_set_data_arg(struct event_in *in, const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!v) {
        in->ev.payload = text;
        in->ev.payload_size = strlen(text);
        in->ev.content = STELE_CONTENT_TEXT;
        return 0;
    }
    in->payload_owned = json_compact(v, &in->ev.payload_size);
    json_decref(v);
    if (!in->payload_owned)
        return -1;
    in->ev.payload = in->payload_owned;
    in->ev.content = STELE_CONTENT_JSON;
    return 0;
}

void event_in_release(struct event_in *in)
{
    json_decref(in->root);
    free(in->payload_owned);
    memset(in, 0, sizeof *in);
}
