/*
 * cmd_resolve.c - `stele resolve DIR --key K --outcome confirmed|failed`:
 * record the outcome of the intent with key K (PRODUCT.md, guarantee 4).
 *
 * The outcome is appended with the intent's key and ref 0: the engine finds
 * the intent and decides (stele.h, "keys, outcomes, streams"). The first
 * outcome is new; the same outcome again is a duplicate (exit 0); the other
 * outcome is a conflict (exit 3, lsn = the outcome already recorded); no
 * intent with that key exits 4; a key that holds an event exits 2.
 *
 * The outcome joins the intent's stream, so that a stream tells the whole
 * story of its entity (intent, outcome, and a compensation after it). We read
 * the intent first for that, and its LSN is the receipt's "ref". That read
 * also lets us say plainly what is wrong when the key holds no intent; it
 * cannot disagree with the engine's decision, since this process holds the
 * log's write lock and appends nothing in between. The engine enforces the
 * same rules for every writer (test_outcomes.sh proves it through --jsonl).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

enum { OPT_OUTCOME = 256 };

static const struct option resolve_options[] = {
    {"key", required_argument, NULL, CLI_OPT_KEY},
    {"outcome", required_argument, NULL, OPT_OUTCOME},
    {"type", required_argument, NULL, CLI_OPT_TYPE},
    {"actor", required_argument, NULL, CLI_OPT_ACTOR},
    {"data", required_argument, NULL, CLI_OPT_DATA},
    CLI_COMMON_OPTIONS,
};

static int resolve_option(struct cli_ctx *ctx, int c, stele_event *ev, const char **data)
{
    if (c != OPT_OUTCOME) {
        int rc = cli_event_option(ctx, c, optarg, ev, data);
        return rc < 0 ? CLI_EXIT_USAGE : rc;
    }
    if (strcmp(optarg, "confirmed") == 0)
        ev->outcome = STELE_OUTCOME_CONFIRMED;
    else if (strcmp(optarg, "failed") == 0)
        ev->outcome = STELE_OUTCOME_FAILED;
    else
        return cli_usage_error(ctx, "--outcome: '%s' is not confirmed or failed", optarg);
    return 0;
}

/* Appends the outcome in in->ev, after taking the intent's stream. */
static int append_outcome(const struct cli_ctx *ctx, stele_log *log, struct event_in *in)
{
    stele_event *ev = &in->ev;
    stele_record *intent = NULL;
    char what[64 + CLI_FIELD_SIZE_MAX];
    snprintf(what, sizeof what, "resolving key %.*s", (int)ev->key_size, ev->key);
    int code = stele_get_key(log, ev->key, ev->key_size, &intent);
    if (code == STELE_ERR_NOT_FOUND)
        return cli_error(ctx, CLI_EXIT_NOT_FOUND, "%s: no intent has this key (never recorded, or forgotten "
                         "after the idempotency window)", what);
    if (code != STELE_OK)
        return cli_fail(ctx, code, "reading the intent with key %.*s", (int)ev->key_size, ev->key);
    int rc;
    if (intent->kind != STELE_KIND_INTENT) {
        rc = cli_usage_error(ctx, "%s: the key holds the %s at LSN %" PRIu64 ", not an intent; only an "
                             "intent has an outcome", what, event_kind_name(intent->kind), intent->lsn);
    } else {
        ev->stream = intent->stream;
        ev->stream_size = intent->stream_size;
        rc = cli_append_report(ctx, log, ev, intent->lsn, what);
    }
    stele_record_free(intent);
    return rc;
}

int cmd_resolve(struct cli_ctx *ctx, int argc, char **argv)
{
    struct event_in in = {.ev = {.kind = STELE_KIND_OUTCOME}};
    const char *dir, *data = NULL;
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, resolve_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if ((rc = resolve_option(ctx, c, &in.ev, &data)) != 0)
            return rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if (in.ev.key_size == 0)
        return cli_usage_error(ctx, "--key K is required: the key of the intent to resolve");
    if (in.ev.outcome == STELE_OUTCOME_NONE)
        return cli_usage_error(ctx, "--outcome confirmed|failed is required");
    return cli_append_command(ctx, dir, &in, data, append_outcome);
}
