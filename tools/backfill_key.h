/*
 * backfill_key.h - how `stele backfill` reads a line of FILE.jsonl and which
 * key it gives it (SPEC.md §17.1), shared by `stele backfill` and
 * `stele compensate --backfill-run` so that both find the same keys.
 */
#ifndef STELE_TOOLS_BACKFILL_KEY_H
#define STELE_TOOLS_BACKFILL_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "event_json.h"
#include "stele.h"

/* "bf-" + 32 hex digits + NUL. */
#define BACKFILL_KEY_SIZE 36u

/* The reason reported for a line longer than LINE_SIZE_MAX. */
#define BACKFILL_LINE_TOO_LONG "the line is longer than 64 MiB"

/* Parses one line into in (zeroed by the caller) with backfill's rules: an
 * event with event_time, no ref or expect_version, a key (with derive_keys
 * the derived key, written to key, when the line has none), a payload of at
 * most payload_size_max bytes. On success in->ev is the event backfill
 * appends (kind event, STELE_FLAG_BACKFILLED) and 0 is returned; release in
 * with event_in_release. Returns -1 with the reason in err (in released). */
int backfill_parse_line(const char *text, size_t size, int derive_keys, uint64_t payload_size_max,
                        struct event_in *in, char key[BACKFILL_KEY_SIZE], char err[EVENT_ERR_SIZE]);

/* Whether r, the record holding ev's key, is the same request as ev: the
 * engine's fingerprint covers kind, outcome, type, stream, ref and payload
 * (SPEC.md §5.2); a backfilled event has no outcome and no ref. */
int backfill_same_request(const stele_record *r, const stele_event *ev);

#endif
