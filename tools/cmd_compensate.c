/*
 * cmd_compensate.c - `stele compensate DIR (--lsn N | --key K) --reason TEXT`:
 * reverse a record by appending a compensation that points at it (PRODUCT.md,
 * guarantee 5). Nothing is edited or deleted.
 *
 * The target is the record at --lsn, or the record key K's status names: an
 * event key's event, a confirmed intent's outcome. A pending intent (its
 * outcome is not known yet) and a failed one (nothing happened) are refused
 * with exit 2; so is a target that is an intent, a failed outcome or itself a
 * compensation. We check the kind first to say clearly what is wrong (and so
 * that --dry-run reports it), but the engine enforces the same rules and
 * decides the rest: a target compensated already answers duplicate (the same
 * compensation, exit 0) or conflict (another one, exit 3), both with the
 * existing compensation's LSN.
 *
 * The compensation: kind compensation, ref = the target, no key (the engine
 * refuses keys on compensations: the target identifies it), type --type
 * (default "compensation"), the target's stream (so the reversal takes the
 * stream's next version), JSON payload {"reason":TEXT} - with --data that
 * parses as a JSON object, that object's members follow "reason"; other
 * --data becomes "data" (a JSON value, or the text as a string). The receipt
 * is append's, with "ref": the target.
 *
 * --dry-run appends nothing: it prints the event object that would be
 * appended (engine-assigned fields null, stream_version the stream's next
 * version), which `stele append --jsonl` accepts as it is.
 *
 * The range form (--from/--to) and --rules are not implemented yet: exit 2.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

#define DEFAULT_TYPE "compensation"

enum { OPT_LSN = 256, OPT_KEY, OPT_REASON, OPT_TYPE, OPT_ACTOR, OPT_DATA, OPT_DRY_RUN, OPT_FROM, OPT_TO, OPT_RULES };

static const struct option compensate_options[] = {
    {"lsn", required_argument, NULL, OPT_LSN},
    {"key", required_argument, NULL, OPT_KEY},
    {"reason", required_argument, NULL, OPT_REASON},
    {"type", required_argument, NULL, OPT_TYPE},
    {"actor", required_argument, NULL, OPT_ACTOR},
    {"data", required_argument, NULL, OPT_DATA},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"rules", required_argument, NULL, OPT_RULES},
    CLI_COMMON_OPTIONS,
};

struct compensate_args {
    uint64_t lsn;          /* --lsn, 0 = not given */
    const char *key;       /* --key */
    const char *reason;
    const char *type;
    const char *actor;
    const char *data;      /* --data, NULL = none */
    int dry_run;
};

static int compensate_option(struct cli_ctx *ctx, int c, struct compensate_args *a)
{
    switch (c) {
    case OPT_LSN:
        if (cli_opt_u64(ctx, "lsn", optarg, &a->lsn) != 0)
            return CLI_EXIT_USAGE;
        return a->lsn == 0 ? cli_usage_error(ctx, "--lsn: LSNs start at 1") : 0;
    case OPT_KEY:
        a->key = optarg;
        return cli_opt_key(ctx, "key", optarg);
    case OPT_REASON:
        a->reason = optarg;
        if (optarg[0] == '\0')
            return cli_usage_error(ctx, "--reason: empty (say why the record is reversed)");
        return cli_utf8_valid(optarg, strlen(optarg)) ? 0 : cli_usage_error(ctx, "--reason: not valid UTF-8");
    case OPT_TYPE:
        a->type = optarg;
        return cli_opt_field(ctx, "type", optarg);
    case OPT_ACTOR:
        a->actor = optarg;
        return cli_opt_field(ctx, "actor", optarg);
    case OPT_DATA:
        a->data = optarg;
        return 0;
    case OPT_DRY_RUN:
        a->dry_run = 1;
        return 0;
    case OPT_FROM:
    case OPT_TO:
    case OPT_RULES:
        return cli_usage_error(ctx, "--from, --to and --rules are not supported yet: compensate one record "
                                    "with --lsn N or --key K");
    case CLI_OPT_HELP:
        return -1;
    default:
        return CLI_EXIT_USAGE;
    }
}

/* The LSN key's status names as the record to reverse, or an exit code
 * (after printing) when the key holds nothing that can be compensated. */
static int target_of_key(const struct cli_ctx *ctx, stele_log *log, const char *key, uint64_t *out_lsn)
{
    stele_status st;
    int code = stele_status_get(log, key, strlen(key), &st);
    if (code != STELE_OK)
        return cli_fail(ctx, code, "key %s", key);
    switch (st.state) {
    case STELE_STATE_EVENT:
        *out_lsn = st.lsn;
        return 0;
    case STELE_STATE_CONFIRMED:
        *out_lsn = st.outcome_lsn;
        return 0;
    case STELE_STATE_COMPENSATED:
        /* Send the same request again: the engine answers duplicate or conflict. */
        *out_lsn = st.outcome_lsn ? st.outcome_lsn : st.lsn;
        return 0;
    case STELE_STATE_PENDING:
        return cli_usage_error(ctx, "key %s is a pending intent (LSN %" PRIu64 "): its outcome is not known, so "
                               "there is nothing to compensate yet (record it with stele resolve first)",
                               key, st.lsn);
    case STELE_STATE_FAILED:
        return cli_usage_error(ctx, "key %s is an intent that failed (outcome at LSN %" PRIu64 "): nothing "
                               "happened, so there is nothing to compensate", key, st.outcome_lsn);
    default:
        return cli_error(ctx, CLI_EXIT_FAILURE, "key %s: unknown state %d", key, (int)st.state);
    }
}

/* Only an event or a confirmed outcome can be reversed (stele.h). */
static int check_target(const struct cli_ctx *ctx, const stele_record *t)
{
    if (t->kind == STELE_KIND_EVENT || (t->kind == STELE_KIND_OUTCOME && t->outcome == STELE_OUTCOME_CONFIRMED))
        return 0;
    const char *what = t->kind == STELE_KIND_INTENT ? "an intent: compensate its confirmed outcome instead"
                       : t->kind == STELE_KIND_OUTCOME ? "a failed outcome: nothing happened, so there is "
                                                         "nothing to compensate"
                       : t->kind == STELE_KIND_COMPENSATION ? "itself a compensation, which cannot be reversed"
                                                            : "of an unknown kind";
    return cli_usage_error(ctx, "LSN %" PRIu64 " is %s (only an event or a confirmed outcome can be compensated)",
                           t->lsn, what);
}

/* The payload object: "reason" first, then --data (see the head comment).
 * NULL after printing the error; *out_rc says which. */
static json_t *build_payload(const struct cli_ctx *ctx, const struct compensate_args *a, int *out_rc)
{
    json_t *o = json_pack("{s:s}", "reason", a->reason);
    json_t *data = NULL;
    *out_rc = CLI_EXIT_FAILURE;
    if (!o)
        goto fail;
    if (a->data) {
        data = json_loads(a->data, JSON_DECODE_ANY, NULL);
        if (!data && !cli_utf8_valid(a->data, strlen(a->data))) {
            *out_rc = cli_usage_error(ctx, "--data: neither JSON nor valid UTF-8 text");
            json_decref(o);
            return NULL;
        }
        if (!data && !(data = json_string(a->data)))
            goto fail;
        if (json_is_object(data) && json_object_get(data, "reason")) {
            *out_rc = cli_usage_error(ctx, "--data: the object has its own \"reason\"; give it with --reason");
            json_decref(data);
            json_decref(o);
            return NULL;
        }
        if (json_is_object(data) ? json_object_update(o, data) != 0 : json_object_set(o, "data", data) != 0)
            goto fail;
        json_decref(data);
    }
    return o;
fail:
    json_decref(data);
    json_decref(o);
    cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    return NULL;
}

/* The event object --dry-run prints: what the record would hold, with the
 * fields the engine assigns at append null and stream_version the next one. */
static int print_dry_run(const struct cli_ctx *ctx, stele_log *log, const stele_event *ev)
{
    uint64_t version = 0;
    if (ev->stream_size) {
        int code = stele_stream_version(log, ev->stream, ev->stream_size, &version, NULL);
        if (code != STELE_OK)
            return cli_fail(ctx, code, "reading the version of stream %.*s", (int)ev->stream_size, ev->stream);
    }
    stele_record rec = {.kind = ev->kind, .content = ev->content, .ref = ev->ref, .stream_version = version + 1,
                        .type = ev->type, .type_size = ev->type_size, .stream = ev->stream,
                        .stream_size = ev->stream_size, .actor = ev->actor, .actor_size = ev->actor_size,
                        .payload = ev->payload, .payload_size = ev->payload_size};
    if (ctx->human) {
        /* event_write_human's header, less the LSN and time the record does not have yet. */
        printf("would append: compensation  type=%.*s", (int)rec.type_size, rec.type);
        if (rec.stream_size)
            printf("  stream=%.*s@%" PRIu64, (int)rec.stream_size, rec.stream, rec.stream_version);
        if (rec.actor_size)
            printf("  actor=%.*s", (int)rec.actor_size, rec.actor);
        printf("  ref=%" PRIu64 "\n    %.*s\n", rec.ref, (int)rec.payload_size, (const char *)rec.payload);
        return CLI_EXIT_OK;
    }
    json_t *o = event_json_from_record(&rec);
    static const char *const assigned[] = {"lsn", "recorded_at", "event_time", "fingerprint"};
    for (size_t i = 0; o && i < sizeof assigned / sizeof assigned[0]; i++)
        json_object_set_new(o, assigned[i], json_null());
    int rc = o ? json_write_line(stdout, o) : -1;
    json_decref(o);
    return rc == 0 ? CLI_EXIT_OK : cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
}

/* Builds the compensation of target (already checked) and appends it, or
 * with --dry-run prints it. */
static int compensate(const struct cli_ctx *ctx, stele_log *log, const struct compensate_args *a,
                      const stele_record *target)
{
    int rc;
    json_t *payload = build_payload(ctx, a, &rc);
    if (!payload)
        return rc;
    size_t payload_size;
    char *text = json_compact(payload, &payload_size);
    json_decref(payload);
    if (!text)
        return cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    const char *type = a->type ? a->type : DEFAULT_TYPE;
    stele_event ev = {.kind = STELE_KIND_COMPENSATION, .content = STELE_CONTENT_JSON, .ref = target->lsn,
                      .type = type, .type_size = strlen(type), .stream = target->stream,
                      .stream_size = target->stream_size, .actor = a->actor,
                      .actor_size = a->actor ? strlen(a->actor) : 0, .payload = text,
                      .payload_size = payload_size};
    char what[64];
    snprintf(what, sizeof what, "compensating LSN %" PRIu64, target->lsn);
    rc = a->dry_run ? print_dry_run(ctx, log, &ev) : cli_append_report(ctx, log, &ev, target->lsn, what);
    free(text);
    return rc;
}

/* Finds and checks the target, then compensates it. */
static int run(const struct cli_ctx *ctx, stele_log *log, const struct compensate_args *a)
{
    uint64_t lsn = a->lsn;
    stele_record *target = NULL;
    int rc;
    if (a->key && (rc = target_of_key(ctx, log, a->key, &lsn)) != 0)
        return rc;
    int code = stele_get(log, lsn, &target);
    if (code != STELE_OK)
        return cli_fail(ctx, code, "reading the record to compensate, LSN %" PRIu64, lsn);
    rc = check_target(ctx, target);
    if (rc == 0)
        rc = compensate(ctx, log, a, target);
    stele_record_free(target);
    return rc;
}

int cmd_compensate(struct cli_ctx *ctx, int argc, char **argv)
{
    struct compensate_args a = {0};
    const char *dir;
    stele_log *log;
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, compensate_options)) != -1) {
        if ((rc = compensate_option(ctx, c, &a)) != 0)
            return rc < 0 ? CLI_EXIT_OK : rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if ((a.lsn != 0) == (a.key != NULL))
        return cli_usage_error(ctx, "give the record to compensate with exactly one of --lsn N and --key K");
    if (!a.reason)
        return cli_usage_error(ctx, "--reason TEXT is required: a compensation says why");
    /* A dry run only reads, so it takes no lock and runs beside a writer. */
    rc = a.dry_run ? cli_open_read_only(ctx, dir, &log) : cli_open_log(ctx, dir, NULL, &log);
    if (rc != 0)
        return rc;
    rc = run(ctx, log, &a);
    if (a.dry_run) {
        stele_close(log); /* read-only: nothing to flush, nothing to report */
        return rc;
    }
    return cli_close_log(ctx, log, dir, rc);
}
