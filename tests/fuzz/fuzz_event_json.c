/*
 * fuzz_event_json.c - the JSON event input of the `stele` command
 * (tools/event_json.h: event_in_parse, event_json_from_record, json_compact)
 * and its RFC 3339 time parser (cli_parse_time, cli_time_format).
 *
 * The input is one line given to `stele append --jsonl`. What must hold,
 * besides no crash, leak or sanitizer report: a line that parses is a valid
 * request by the rules event_in_parse promises (outcome exactly with kind
 * outcome, ref for outcomes and compensations, expect_version with a stream,
 * fields within 255 bytes, event_time not 0); and it survives the trip that
 * `stele read | stele append` makes: the record it would become, written as
 * an event object and parsed again, is the same request (kind, outcome,
 * type, stream, key, actor, ref, event time, content and payload bytes).
 * A time text that parses formats back to one that parses to the same time.
 *
 * cli_error is the one function event_json.c takes from tools/stele.c (the
 * command's main); a stub stands in for it here.
 */
#include "fuzz.h"

#include <stdarg.h>

#include "cli.h"
#include "event_json.h"

/* The event time a record gets when the request leaves it to the recorded time. */
#define RECORDED_AT_NS UINT64_C(1764350363123456789)

int cli_error(const struct cli_ctx *ctx, int exit_code, const char *fmt, ...)
{
    (void)ctx;
    (void)fmt;
    return exit_code;
}

static int same(const void *a, size_t an, const void *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static void check_valid(const stele_event *ev)
{
    FUZZ_CHECK((int)ev->kind >= 0 && (int)ev->kind <= STELE_KIND_COMPENSATION, "kind %d", (int)ev->kind);
    FUZZ_CHECK((ev->kind == STELE_KIND_OUTCOME) == (ev->outcome != STELE_OUTCOME_NONE) &&
                   ev->outcome <= STELE_OUTCOME_FAILED,
               "outcome %d with kind %d", (int)ev->outcome, (int)ev->kind);
    /* SPEC.md §15.3: an intent needs a key, an outcome its intent's key (ref
     * optional), a compensation a ref and no key. */
    FUZZ_CHECK(!(ev->kind == STELE_KIND_INTENT || ev->kind == STELE_KIND_OUTCOME) || ev->key_size > 0,
               "intent or outcome without key");
    FUZZ_CHECK(ev->kind != STELE_KIND_COMPENSATION || (ev->ref != 0 && ev->key_size == 0),
               "compensation without ref or with a key");
    FUZZ_CHECK(!ev->has_expect_version || ev->stream_size > 0, "expect_version without stream");
    FUZZ_CHECK(ev->type_size <= 255 && ev->stream_size <= 255 && ev->key_size <= 255 && ev->actor_size <= 255,
               "a field longer than 255 bytes");
    FUZZ_CHECK((int)ev->content >= 0 && (int)ev->content <= STELE_CONTENT_BINARY, "content %d", (int)ev->content);
    FUZZ_CHECK(ev->payload_size == 0 || ev->payload != NULL, "payload size without payload");
}

/* The record a log would store for ev (fields the log assigns are made up). */
static stele_record record_of(const stele_event *ev)
{
    stele_record r;
    memset(&r, 0, sizeof r);
    r.lsn = 7;
    r.recorded_at_ns = RECORDED_AT_NS;
    r.event_time_ns = ev->event_time_ns ? ev->event_time_ns : RECORDED_AT_NS;
    r.stream_version = ev->stream_size ? 3 : 0;
    r.fingerprint = UINT64_C(0x0123456789abcdef);
    r.ref = ev->ref;
    r.kind = ev->kind ? ev->kind : STELE_KIND_EVENT;
    r.outcome = ev->outcome;
    r.content = ev->content ? ev->content : STELE_CONTENT_BINARY;
    r.flags = ev->flags;
    r.type = ev->type;
    r.type_size = ev->type_size;
    r.stream = ev->stream;
    r.stream_size = ev->stream_size;
    r.key = ev->key;
    r.key_size = ev->key_size;
    r.actor = ev->actor;
    r.actor_size = ev->actor_size;
    r.payload = ev->payload;
    r.payload_size = ev->payload_size;
    return r;
}

static void round_trip(const stele_event *ev)
{
    stele_record rec = record_of(ev);
    json_t *obj = event_json_from_record(&rec);
    if (!obj)
        return; /* out of memory */
    size_t text_size;
    char *text = json_compact(obj, &text_size);
    json_decref(obj);
    if (!text)
        return;
    struct event_in again;
    memset(&again, 0, sizeof again);
    char err[EVENT_ERR_SIZE];
    FUZZ_CHECK(event_in_parse(text, text_size, &again, err) == 0, "the event object of a record does not parse: %s: %s",
               err, text);
    const stele_event *b = &again.ev;
    FUZZ_CHECK((b->kind ? b->kind : STELE_KIND_EVENT) == rec.kind && b->outcome == rec.outcome && b->ref == rec.ref,
               "kind, outcome or ref changed: %s", text);
    FUZZ_CHECK(b->event_time_ns == rec.event_time_ns, "event time %llu became %llu: %s",
               (unsigned long long)rec.event_time_ns, (unsigned long long)b->event_time_ns, text);
    FUZZ_CHECK(same(b->type, b->type_size, rec.type, rec.type_size) &&
                   same(b->stream, b->stream_size, rec.stream, rec.stream_size) &&
                   same(b->key, b->key_size, rec.key, rec.key_size) &&
                   same(b->actor, b->actor_size, rec.actor, rec.actor_size),
               "type, stream, key or actor changed: %s", text);
    FUZZ_CHECK((b->content ? b->content : STELE_CONTENT_BINARY) == rec.content, "content %d became %d: %s",
               (int)rec.content, (int)b->content, text);
    FUZZ_CHECK(same(b->payload, b->payload_size, rec.payload, rec.payload_size), "payload changed: %s", text);
    event_in_release(&again);
    free(text);
}

static void time_text(const uint8_t *data, size_t size)
{
    char text[64];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    uint64_t ns, again;
    if (cli_parse_time(text, &ns) != 0)
        return;
    char formatted[CLI_TIME_TEXT_SIZE];
    cli_time_format(ns, formatted, sizeof formatted);
    FUZZ_CHECK(cli_parse_time(formatted, &again) == 0 && again == ns, "\"%s\" is %llu ns, formatted \"%s\"", text,
               (unsigned long long)ns, formatted);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    time_text(data, size);
    struct event_in in;
    memset(&in, 0, sizeof in);
    char err[EVENT_ERR_SIZE];
    if (event_in_parse((const char *)data, size, &in, err) != 0) {
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0', "a failed parse without a message");
        return 0;
    }
    check_valid(&in.ev);
    round_trip(&in.ev);
    event_in_release(&in);
    return 0;
}
