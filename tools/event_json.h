/*
 * event_json.h - the event object of the command line (PRODUCT.md, "Command
 * line"), in both directions, with jansson:
 *
 *   {"lsn","recorded_at","event_time","kind","outcome","type","stream",
 *    "stream_version","key","fingerprint","ref","actor","backfilled",
 *    "data" | "data_text" | "data_b64"}
 *
 * Output conventions (chosen once, used everywhere): every field is always
 * present; absent values (empty strings, outcome of a non-outcome, ref 0,
 * stream_version of a record without a stream) are null; times are RFC 3339
 * UTC with nine fractional digits; fingerprint is 16 lowercase hex digits;
 * exactly one payload field is present.
 *
 * JSON text is written by our own compact serializer rather than json_dumps
 * because jansson prints reals with 17 significant digits (0.1 becomes
 * 0.10000000000000001); we print the shortest text that reads back as the
 * same double, so payloads survive a round trip looking as they were written.
 */
#ifndef STELE_TOOLS_EVENT_JSON_H
#define STELE_TOOLS_EVENT_JSON_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "stele.h"

/* Room for one error message about one input line. */
#define EVENT_ERR_SIZE 256u

/* An append request parsed from JSON or from options, with the memory its
 * pointers refer to. Release with event_in_release. */
struct event_in {
    stele_event ev;
    json_t *root;        /* the parsed line: owns the strings ev points at */
    void *payload_owned; /* a payload we had to build (JSON text, decoded base64) */
};

/* Parses one input line (an event object) into in, which must be zeroed.
 * Returns 0, or -1 with a message in err (nothing to release then). Fields
 * read: kind, outcome, type, stream, expect_version, key, ref, actor,
 * event_time, data | data_text | data_b64; lsn, recorded_at, stream_version,
 * fingerprint and backfilled are accepted and ignored (so `read` output can be
 * fed back); any other field is an error, so a typo never goes unnoticed.
 * The rules of stele.h between fields are checked here too, so that a bad
 * line fails alone and not the batch it would have joined: "outcome" goes
 * with kind outcome and only with it; an intent and an outcome need a key
 * (an outcome's ref may be left out: the engine fills in the intent's LSN);
 * a compensation needs ref and takes no key; expect_version needs a stream. */
int event_in_parse(const char *line, size_t line_size, struct event_in *in, char err[EVENT_ERR_SIZE]);

/* --data TEXT: JSON content (stored in compact form) when TEXT parses as a
 * JSON value, else text content pointing at TEXT itself. Returns 0 or -1
 * (out of memory). */
int event_in_set_data_arg(struct event_in *in, const char *text);

void event_in_release(struct event_in *in);

/* The event object for rec (see the conventions above); NULL when out of memory. */
json_t *event_json_from_record(const stele_record *rec);

/* A proof as `stele prove` prints it (cmd_prove.c); NULL: out of memory. */
json_t *cli_proof_json(const stele_proof *p);

/* Writes v as one line of compact JSON. Returns 0, or -1 when out of memory. */
int json_write_line(FILE *f, const json_t *v);

/* v as compact JSON text (malloc'd, NUL-terminated, size in *out_size);
 * NULL when out of memory. */
char *json_compact(const json_t *v, size_t *out_size);

/* A JSON string of s[0, n) with every byte sequence that is not UTF-8
 * replaced by U+FFFD (JSON cannot carry it); NULL when out of memory. */
json_t *json_string_lossy(const char *s, size_t n);

/* The human rendering of rec: a header line and an indented payload line. */
void event_write_human(FILE *f, const stele_record *rec);

/* Names of the record enums ("event", "confirmed", ...); "unknown" otherwise. */
const char *event_kind_name(int kind);
const char *event_outcome_name(int outcome);
/* "new", "duplicate" or "conflict". */
const char *event_decision_name(int decision);
/* "event", "pending", "confirmed", "failed", "compensated"; "unknown" otherwise. */
const char *event_state_name(int state);

/* The receipt of one append, the one shape every appending command prints:
 *
 *   {"line":L, "lsn":N, "decision":D, "stream_version":V, "ref":R}
 *
 * "line" only when line > 0 (append --jsonl), "ref" only when ref > 0 (the
 * record referred to: resolve and compensate). code is what the append
 * returned: OK and CONFLICT print the decision (a conflict adds "reason":
 * "different_request"; lsn is the original's); STREAM_VERSION prints lsn
 * null, decision "conflict", the stream's current version as stream_version
 * and "reason":"stream_version"; any other code prints {"error":TEXT,"code":C}
 * instead, TEXT being the code's text and detail. NULL when out of memory. */
json_t *receipt_json(long line, uint64_t ref, const stele_receipt *r, int code, const char *detail);

/* The human rendering of the same receipt, one line. */
void receipt_write_human(FILE *f, long line, uint64_t ref, const stele_receipt *r, int code, const char *detail);

#endif
