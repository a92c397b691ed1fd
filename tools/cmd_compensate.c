/*
 * cmd_compensate.c - `stele compensate DIR (--lsn N | --key K | --from L | --backfill-run FILE)
 * --reason TEXT`:
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
 * --rules FILE (rules_load) maps a target's type to its compensation: the
 * compensation's type, and its payload after "reason": fields copied from
 * the target's JSON object payload ("copy"), numeric fields copied negated
 * ("negate"), and constants ("set"), in that order. A target the rule cannot
 * be applied to (payload not a JSON object, a field missing, a field to
 * negate not a number) is refused, naming the field.
 *
 * The selection form, --from L [--to L] [--type T] [--stream S], walks the
 * records in [L, to] (to defaults to the last LSN when the run starts) with
 * the given type and stream, and compensates each event and confirmed
 * outcome (with --rules: each one whose type has a rule; the others are
 * skipped and counted). Here --type selects; the compensation's type comes
 * from the rule (or is "compensation"). Each target is appended on its own
 * (stele_append): the engine decides new, duplicate (compensated by this
 * very compensation already: a re-run, counted as already compensated) or
 * conflict (compensated by another one: refused). One line per selected
 * target, {"ref","lsn","decision"[,"reason"]}, then the summary
 *
 *   {"selected","compensated","already_compensated","refused","skipped",
 *    "refusals":{"compensated_differently","rule_does_not_apply",
 *    "engine_refused"},"from","to","dry_run"}
 *
 * With --dry-run the log is opened read-only; whether a target is
 * compensated already is found by reading the compensations after it (the
 * index answers that only for keys), and an existing compensation is
 * compared with the one we would append (kind, type, stream, ref, payload:
 * what the fingerprint covers), as the engine would. Exit status of the
 * selection form, most severe first: 1 the log failed, 2 a rule did not
 * apply or the engine refused a target as invalid, 3 a target compensated
 * differently, else 0.
 *
 * The --backfill-run FILE [--derive-keys] form reverses a backfill of FILE
 * (SPEC.md §17.1): the records it imported are those holding FILE's keys -
 * each line's own key, or with --derive-keys the key backfill derives; the
 * lines are read and keyed by backfill_key.c, as backfill reads them. FILE is
 * read once, every line validated and every key looked up (stele_get_key)
 * before anything is appended: an invalid line is reported as backfill
 * reports it ("FILE line N: reason"), nothing is compensated, exit 2. A key
 * not found is counted ("not_found": the line was never imported, or the
 * idempotency window forgot its key). A key holding a record without
 * STELE_FLAG_BACKFILLED is refused ("not a backfilled record", exit 2), one
 * holding a backfilled event other than the line's (the line was a conflict
 * when imported) is refused as well (exit 3). The records are then taken in
 * LSN order through select_one, exactly as --from takes its range (--type,
 * --stream, --rules, --dry-run, duplicates and refusals alike); the summary
 * has "backfill_run": FILE and "not_found" instead of from and to, and its
 * refusals add "not_backfilled" and "key_holds_another_event".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backfill_key.h"
#include "cli.h"
#include "event_json.h"
#include "line_reader.h"
#include "stele.h"

#define DEFAULT_TYPE "compensation"

/* --backfill-run: invalid lines reported one by one; after this many only the count (as backfill). */
#define INVALID_REPORTED_MAX 100u

enum { OPT_LSN = 256, OPT_KEY, OPT_REASON, OPT_TYPE, OPT_ACTOR, OPT_DATA, OPT_DRY_RUN, OPT_FROM, OPT_TO, OPT_RULES,
       OPT_STREAM, OPT_BACKFILL_RUN, OPT_DERIVE_KEYS };

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
    {"stream", required_argument, NULL, OPT_STREAM},
    {"backfill-run", required_argument, NULL, OPT_BACKFILL_RUN},
    {"derive-keys", no_argument, NULL, OPT_DERIVE_KEYS},
    CLI_COMMON_OPTIONS,
};

struct compensate_args {
    uint64_t lsn;          /* --lsn, 0 = not given */
    const char *key;       /* --key */
    uint64_t from, to;     /* --from, --to; 0 = not given */
    const char *stream;    /* --stream (selection) */
    const char *reason;
    const char *type;      /* single form: the compensation's type; selection: the targets' type */
    const char *actor;
    const char *data;      /* --data, NULL = none */
    const char *rules_path;
    json_t *rules;         /* the loaded --rules object */
    const char *backfill_run; /* --backfill-run FILE */
    int derive_keys;       /* --derive-keys (with --backfill-run) */
    int dry_run;
};

/* The selection forms: --from and --backfill-run. */
static int is_selection(const struct compensate_args *a)
{
    return a->from != 0 || a->backfill_run != NULL;
}

static int compensate_option(struct cli_ctx *ctx, int c, struct compensate_args *a)
{
    switch (c) {
    case OPT_LSN:
        if (cli_opt_u64(ctx, "lsn", optarg, &a->lsn) != 0)
            return CLI_EXIT_USAGE;
        return a->lsn == 0 ? cli_usage_error(ctx, "--lsn: LSNs start at 1") : 0;
    case OPT_FROM:
        if (cli_opt_u64(ctx, "from", optarg, &a->from) != 0)
            return CLI_EXIT_USAGE;
        return a->from == 0 ? cli_usage_error(ctx, "--from: LSNs start at 1") : 0;
    case OPT_TO:
        if (cli_opt_u64(ctx, "to", optarg, &a->to) != 0)
            return CLI_EXIT_USAGE;
        return a->to == 0 ? cli_usage_error(ctx, "--to: LSNs start at 1") : 0;
    case OPT_KEY:
        a->key = optarg;
        return cli_opt_key(ctx, "key", optarg);
    case OPT_STREAM:
        a->stream = optarg;
        return cli_opt_key(ctx, "stream", optarg);
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
    case OPT_RULES:
        a->rules_path = optarg;
        return 0;
    case OPT_BACKFILL_RUN:
        a->backfill_run = optarg;
        return 0;
    case OPT_DERIVE_KEYS:
        a->derive_keys = 1;
        return 0;
    case CLI_OPT_HELP:
        return -1;
    default:
        return CLI_EXIT_USAGE;
    }
}

/* ------------------------------------------------------------ --rules */

/* Checks one member list of a rule ("copy" or "negate"): an array of
 * non-empty field names, none of them "reason". NULL or what is wrong. */
static const char *check_field_list(const json_t *v)
{
    size_t i;
    json_t *f;
    if (!json_is_array(v))
        return "must be an array of field names";
    json_array_foreach(v, i, f) {
        if (!json_is_string(f) || json_string_length(f) == 0)
            return "must hold non-empty strings (field names)";
        if (strcmp(json_string_value(f), "reason") == 0)
            return "names \"reason\", which --reason sets";
    }
    return NULL;
}

/* Checks one rule; NULL or what is wrong (member named in *out_member). */
static const char *check_rule(const json_t *rule, const char **out_member)
{
    const char *name;
    json_t *v;
    *out_member = "";
    if (!json_is_object(rule))
        return "is not an object";
    json_t *type = json_object_get(rule, "type");
    if (!json_is_string(type) || json_string_length(type) == 0 || json_string_length(type) > CLI_FIELD_SIZE_MAX ||
        !cli_utf8_valid(json_string_value(type), json_string_length(type))) {
        *out_member = "type";
        return "must be the compensation's type: a string of 1 to 255 bytes";
    }
    json_object_foreach((json_t *)rule, name, v) {
        *out_member = name;
        const char *why = NULL;
        if (strcmp(name, "copy") == 0 || strcmp(name, "negate") == 0)
            why = check_field_list(v);
        else if (strcmp(name, "set") == 0)
            why = !json_is_object(v) ? "must be an object of constants"
                  : json_object_get(v, "reason") ? "sets \"reason\", which --reason sets" : NULL;
        else if (strcmp(name, "type") != 0)
            why = "is not a rule member (type, copy, negate, set)";
        if (why)
            return why;
    }
    return NULL;
}

/* Loads and checks --rules: an object mapping a record type to its rule. */
static int rules_load(const struct cli_ctx *ctx, struct compensate_args *a)
{
    json_error_t jerr;
    const char *type, *member;
    json_t *rule;
    a->rules = json_load_file(a->rules_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!a->rules)
        return cli_usage_error(ctx, "--rules %s: line %d column %d: %s", a->rules_path, jerr.line, jerr.column,
                               jerr.text);
    if (!json_is_object(a->rules) || json_object_size(a->rules) == 0)
        return cli_usage_error(ctx, "--rules %s: not a JSON object mapping record types to rules", a->rules_path);
    json_object_foreach(a->rules, type, rule) {
        const char *why = check_rule(rule, &member);
        if (why)
            return cli_usage_error(ctx, "--rules %s: the rule for \"%s\"%s%s%s %s", a->rules_path, type,
                                   member[0] ? ": \"" : "", member, member[0] ? "\"" : "", why);
    }
    return 0;
}

static const json_t *rule_of(const struct compensate_args *a, const stele_record *t)
{
    return a->rules ? json_object_getn(a->rules, t->type ? t->type : "", t->type_size) : NULL;
}

/* The negation of a JSON number; NULL when v is none (or cannot be negated). */
static json_t *negated(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) == INT64_MIN ? NULL : json_integer(-json_integer_value(v));
    if (json_is_real(v))
        return json_real(-json_real_value(v));
    return NULL;
}

/* Adds rule's fields to o from the target's payload. Returns 0, or 1 with
 * why the rule does not apply to this target in why, or -1 (out of memory). */
static int apply_rule(const json_t *rule, const stele_record *t, json_t *o, char *why, size_t why_size)
{
    const json_t *copy = json_object_get(rule, "copy"), *negate = json_object_get(rule, "negate");
    json_t *data = NULL, *f, *v;
    size_t i;
    int rc = 0;
    if (json_array_size(copy) + json_array_size(negate) > 0) {
        if (t->content == STELE_CONTENT_JSON)
            data = json_loadb(t->payload, t->payload_size, JSON_DECODE_ANY, NULL);
        if (!json_is_object(data)) {
            snprintf(why, why_size, "the rule copies fields, but LSN %" PRIu64 "'s payload is not a JSON object",
                     t->lsn);
            json_decref(data);
            return 1;
        }
    }
    json_array_foreach(copy, i, f) {
        if (!(v = json_object_get(data, json_string_value(f)))) {
            snprintf(why, why_size, "field \"%s\" to copy is missing from LSN %" PRIu64 "'s data",
                     json_string_value(f), t->lsn);
            rc = 1;
            goto out;
        }
        if (json_object_set(o, json_string_value(f), v) != 0)
            goto nomem;
    }
    json_array_foreach(negate, i, f) {
        v = json_object_get(data, json_string_value(f));
        json_t *n = negated(v);
        if (!n) {
            snprintf(why, why_size, "field \"%s\" to negate is %s in LSN %" PRIu64 "'s data",
                     json_string_value(f), !v ? "missing" : json_is_number(v) ? "the smallest integer" : "not a number",
                     t->lsn);
            rc = 1;
            goto out;
        }
        if (json_object_set_new(o, json_string_value(f), n) != 0)
            goto nomem;
    }
    json_t *set = json_object_get(rule, "set");
    if (set && json_object_update(o, set) != 0)
        goto nomem;
out:
    json_decref(data);
    return rc;
nomem:
    json_decref(data);
    return -1;
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

/* make_compensation's answer when a rule does not apply to the target. */
#define REFUSED (-1)

/* Builds the compensation of target t (already checked) into *ev, its
 * payload text malloc'd in *out_text. Returns 0; REFUSED with why (a rule
 * does not apply to t); or an exit code after printing. */
static int make_compensation(const struct cli_ctx *ctx, const struct compensate_args *a, const stele_record *t,
                             stele_event *ev, char **out_text, char *why, size_t why_size)
{
    int rc;
    const json_t *rule = rule_of(a, t);
    json_t *payload = build_payload(ctx, a, &rc);
    if (!payload)
        return rc;
    if (rule && (rc = apply_rule(rule, t, payload, why, why_size)) != 0) {
        json_decref(payload);
        return rc > 0 ? REFUSED : cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    }
    size_t payload_size;
    char *text = json_compact(payload, &payload_size);
    json_decref(payload);
    if (!text)
        return cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    /* The rule's type, else (single form) --type, else the default. The
     * rule's type string lives as long as a->rules. */
    const char *type = rule ? json_string_value(json_object_get(rule, "type"))
                       : a->type && !is_selection(a) ? a->type : DEFAULT_TYPE;
    *ev = (stele_event){.kind = STELE_KIND_COMPENSATION, .content = STELE_CONTENT_JSON, .ref = t->lsn,
                        .type = type, .type_size = strlen(type), .stream = t->stream, .stream_size = t->stream_size,
                        .actor = a->actor, .actor_size = a->actor ? strlen(a->actor) : 0, .payload = text,
                        .payload_size = payload_size};
    *out_text = text;
    return 0;
}

/* Builds the compensation of target (already checked) and appends it, or
 * with --dry-run prints it. */
static int compensate(const struct cli_ctx *ctx, stele_log *log, const struct compensate_args *a,
                      const stele_record *target)
{
    stele_event ev;
    char *text = NULL, why[512];
    if (a->rules && !rule_of(a, target))
        return cli_usage_error(ctx, "LSN %" PRIu64 " has type \"%.*s\", for which %s has no rule", target->lsn,
                               (int)target->type_size, target->type ? target->type : "", a->rules_path);
    int rc = make_compensation(ctx, a, target, &ev, &text, why, sizeof why);
    if (rc == REFUSED)
        return cli_usage_error(ctx, "%s: the rule for \"%.*s\" does not apply: %s", a->rules_path,
                               (int)target->type_size, target->type, why);
    if (rc != 0)
        return rc;
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

/* ------------------------------------------------------------ selections */

/* An existing compensation: ref -> its LSN (dry run). */
struct comp_ref {
    uint64_t ref, lsn;
};

struct selection {
    const struct cli_ctx *ctx;
    stele_log *log;
    const struct compensate_args *a;
    uint64_t from, to;       /* --from: the range; --backfill-run: the first target to the last LSN */
    struct comp_ref *comps;  /* dry run: the compensations of [from, to], sorted by ref */
    size_t comp_count;
    uint64_t selected, compensated, already, skipped;
    uint64_t refused_differently, refused_rule, refused_engine;
    uint64_t refused_not_backfilled, refused_other_event, not_found; /* --backfill-run */
    int failed;
};

static int cmp_comp_ref(const void *x, const void *y)
{
    const struct comp_ref *a = x, *b = y;
    return a->ref < b->ref ? -1 : a->ref > b->ref;
}

/* Dry run: which records of [from, to] are compensated already, from the
 * compensations after from (a compensation always follows its target). */
static int collect_compensations(struct selection *s)
{
    stele_iter *it;
    const stele_record *r;
    size_t cap = 0;
    int code = stele_iter_open(s->log, s->from, &it);
    if (code != STELE_OK)
        return cli_fail(s->ctx, code, "reading from LSN %" PRIu64, s->from);
    while ((code = stele_iter_next(it, 0, &r)) == STELE_OK && r) {
        if (r->kind != STELE_KIND_COMPENSATION || r->ref < s->from || r->ref > s->to)
            continue;
        if (s->comp_count == cap) {
            cap = cap ? 2 * cap : 256;
            struct comp_ref *p = realloc(s->comps, cap * sizeof *p);
            if (!p) {
                stele_iter_close(it);
                return cli_error(s->ctx, CLI_EXIT_FAILURE, "out of memory");
            }
            s->comps = p;
        }
        s->comps[s->comp_count++] = (struct comp_ref){r->ref, r->lsn};
    }
    stele_iter_close(it);
    if (code != STELE_OK)
        return cli_fail(s->ctx, code, "reading the compensations after LSN %" PRIu64, s->from);
    if (s->comp_count > 1)
        qsort(s->comps, s->comp_count, sizeof *s->comps, cmp_comp_ref);
    return 0;
}

/* One target's line: {"ref","lsn","decision"[,"reason"]}. */
static void print_target(struct selection *s, uint64_t ref, uint64_t lsn, const char *decision, const char *why)
{
    if (s->ctx->human) {
        printf("%-13s ref=%" PRIu64, decision, ref);
        if (lsn)
            printf(" lsn=%" PRIu64, lsn);
        printf("%s%s\n", why ? "  " : "", why ? why : "");
        return;
    }
    json_t *o = json_pack("{s:I, s:o, s:s}", "ref", (json_int_t)ref, "lsn",
                          lsn ? json_integer((json_int_t)lsn) : json_null(), "decision", decision);
    if (o && why)
        json_object_set_new(o, "reason", json_string_lossy(why, strlen(why)));
    if (!o || json_write_line(stdout, o) != 0) {
        cli_error(s->ctx, CLI_EXIT_FAILURE, "out of memory");
        s->failed = 1;
    }
    json_decref(o);
}

/* Dry run: what the engine would answer for ev, from the compensation of
 * its target that exists already (if any). Returns 0 or an exit code. */
static int dry_decide(struct selection *s, const stele_event *ev)
{
    struct comp_ref key = {.ref = ev->ref};
    const struct comp_ref *c =
        s->comp_count ? bsearch(&key, s->comps, s->comp_count, sizeof key, cmp_comp_ref) : NULL;
    if (!c) {
        s->compensated++;
        print_target(s, ev->ref, 0, "would_append", NULL);
        return 0;
    }
    stele_record *e;
    int code = stele_get(s->log, c->lsn, &e);
    if (code != STELE_OK)
        return cli_fail(s->ctx, code, "reading the compensation at LSN %" PRIu64, c->lsn);
    int same = e->type_size == ev->type_size && e->stream_size == ev->stream_size &&
               e->payload_size == ev->payload_size && !memcmp(e->type, ev->type, ev->type_size) &&
               (!ev->stream_size || !memcmp(e->stream, ev->stream, ev->stream_size)) &&
               (!ev->payload_size || !memcmp(e->payload, ev->payload, ev->payload_size));
    stele_record_free(e);
    if (same) {
        s->already++;
        print_target(s, ev->ref, c->lsn, "duplicate", NULL);
    } else {
        char why[128];
        snprintf(why, sizeof why, "compensated already by a different compensation at LSN %" PRIu64, c->lsn);
        s->refused_differently++;
        print_target(s, ev->ref, c->lsn, "refused", why);
    }
    return 0;
}

/* Appends ev and counts the engine's answer. Returns 0 or an exit code. */
static int append_decide(struct selection *s, const stele_event *ev)
{
    stele_receipt r = {0};
    char why[600];
    int code = stele_append(s->log, ev, &r);
    if (code == STELE_OK && r.decision == STELE_DECISION_NEW) {
        s->compensated++;
        print_target(s, ev->ref, r.lsn, "new", NULL);
    } else if (code == STELE_OK && r.decision == STELE_DECISION_DUPLICATE) {
        s->already++;
        print_target(s, ev->ref, r.lsn, "duplicate", NULL);
    } else if (code == STELE_ERR_CONFLICT) {
        snprintf(why, sizeof why, "compensated already by a different compensation at LSN %" PRIu64, r.lsn);
        s->refused_differently++;
        print_target(s, ev->ref, r.lsn, "refused", why);
    } else if (code == STELE_ERR_INVALID || code == STELE_ERR_TOO_LARGE || code == STELE_ERR_NOT_FOUND) {
        snprintf(why, sizeof why, "%s: %s", stele_strerror(code), stele_errmsg());
        s->refused_engine++;
        print_target(s, ev->ref, 0, "refused", why);
    } else {
        return cli_fail(s->ctx, code, "compensating LSN %" PRIu64, ev->ref);
    }
    return 0;
}

/* Whether t passes --type and --stream. */
static int matches(const struct compensate_args *a, const stele_record *t)
{
    if (a->type && (t->type_size != strlen(a->type) || memcmp(t->type, a->type, t->type_size) != 0))
        return 0;
    return !a->stream || (t->stream_size == strlen(a->stream) && memcmp(t->stream, a->stream, t->stream_size) == 0);
}

/* One record of the selection: filtered, checked, compensated. */
static int select_one(struct selection *s, const stele_record *t)
{
    const struct compensate_args *a = s->a;
    if (!matches(a, t))
        return 0;
    int reversible = t->kind == STELE_KIND_EVENT ||
                     (t->kind == STELE_KIND_OUTCOME && t->outcome == STELE_OUTCOME_CONFIRMED);
    if (!reversible || (a->rules && !rule_of(a, t))) {
        s->skipped++;
        return 0;
    }
    s->selected++;
    stele_event ev;
    char *text = NULL, why[512];
    int rc = make_compensation(s->ctx, a, t, &ev, &text, why, sizeof why);
    if (rc == REFUSED) {
        s->refused_rule++;
        print_target(s, t->lsn, 0, "refused", why);
        return 0;
    }
    if (rc == 0)
        rc = a->dry_run ? dry_decide(s, &ev) : append_decide(s, &ev);
    free(text);
    return rc;
}

static int print_summary(struct selection *s)
{
    const struct compensate_args *a = s->a;
    uint64_t refused = s->refused_differently + s->refused_rule + s->refused_engine + s->refused_not_backfilled +
                       s->refused_other_event;
    if (s->ctx->human) {
        printf("%s%" PRIu64 " selected ", a->dry_run ? "dry run: " : "", s->selected);
        if (a->backfill_run)
            printf("by %s (%" PRIu64 " not found)", a->backfill_run, s->not_found);
        else
            printf("in LSN %" PRIu64 "-%" PRIu64, s->from, s->to);
        printf(": %" PRIu64 " compensated, %" PRIu64 " already compensated, %" PRIu64 " refused, %" PRIu64
               " skipped\n", s->compensated, s->already, refused, s->skipped);
        return 0;
    }
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}}", "selected", (json_int_t)s->selected,
                          "compensated", (json_int_t)s->compensated, "already_compensated", (json_int_t)s->already,
                          "refused", (json_int_t)refused, "skipped", (json_int_t)s->skipped, "refusals",
                          "compensated_differently", (json_int_t)s->refused_differently, "rule_does_not_apply",
                          (json_int_t)s->refused_rule, "engine_refused", (json_int_t)s->refused_engine);
    int rc = o ? 0 : -1;
    if (rc == 0 && a->backfill_run) {
        json_t *refusals = json_object_get(o, "refusals");
        rc |= json_object_set_new(refusals, "not_backfilled", json_integer((json_int_t)s->refused_not_backfilled));
        rc |= json_object_set_new(refusals, "key_holds_another_event",
                                  json_integer((json_int_t)s->refused_other_event));
        rc |= json_object_set_new(o, "backfill_run", json_string_lossy(a->backfill_run, strlen(a->backfill_run)));
        rc |= json_object_set_new(o, "not_found", json_integer((json_int_t)s->not_found));
    } else if (rc == 0) {
        rc |= json_object_set_new(o, "from", json_integer((json_int_t)s->from));
        rc |= json_object_set_new(o, "to", json_integer((json_int_t)s->to));
    }
    if (rc == 0)
        rc = json_object_set_new(o, "dry_run", json_boolean(a->dry_run));
    if (rc == 0)
        rc = json_write_line(stdout, o);
    json_decref(o);
    return rc;
}

/* The exit status of a selection that ran to its end (see the head comment). */
static int selection_status(const struct selection *s)
{
    if (s->refused_rule || s->refused_engine || s->refused_not_backfilled)
        return CLI_EXIT_USAGE;
    return s->refused_differently || s->refused_other_event ? CLI_EXIT_CONFLICT : CLI_EXIT_OK;
}

/* The selection form (see the head comment). */
static int run_selection(const struct cli_ctx *ctx, stele_log *log, const struct compensate_args *a)
{
    struct selection s = {.ctx = ctx, .log = log, .a = a, .from = a->from};
    stele_stats st;
    stele_iter *it = NULL;
    const stele_record *t;
    int code = stele_stats_get(log, &st), rc = 0;
    if (code != STELE_OK)
        return cli_fail(ctx, code, "reading the log's last LSN");
    /* Records appended from now on, our own compensations among them, are
     * not part of the selection. */
    s.to = a->to && a->to < st.last_lsn ? a->to : st.last_lsn;
    if (a->dry_run && (rc = collect_compensations(&s)) != 0)
        goto out;
    if ((code = stele_iter_open(log, a->from, &it)) != STELE_OK) {
        rc = cli_fail(ctx, code, "reading from LSN %" PRIu64, a->from);
        goto out;
    }
    while (rc == 0 && !s.failed && (code = stele_iter_next(it, 0, &t)) == STELE_OK && t && t->lsn <= s.to)
        rc = select_one(&s, t);
    if (rc == 0 && code != STELE_OK)
        rc = cli_fail(ctx, code, "reading the selection after LSN %" PRIu64, a->from);
    if (rc == 0 && (print_summary(&s) != 0 || s.failed))
        rc = CLI_EXIT_FAILURE;
    if (rc == 0)
        rc = selection_status(&s);
out:
    stele_iter_close(it);
    free(s.comps);
    return rc;
}

/* --backfill-run: what a line's key holds. */
enum bf_what {
    BF_TARGET,          /* a backfilled record, the line's event: compensated */
    BF_NOT_BACKFILLED,  /* a record backfill did not import: refused */
    BF_OTHER_EVENT,     /* a backfilled record, but another event (the line was a conflict): refused */
};

struct bf_item {
    uint64_t lsn;
    long line;
    enum bf_what what;
};

struct bf_run {
    const struct cli_ctx *ctx;
    stele_log *log;
    const struct compensate_args *a;
    uint64_t payload_size_max;
    struct bf_item *items;
    size_t count, cap;
    uint64_t invalid, not_found;
};

static void bf_report_invalid(struct bf_run *r, long line, const char *why)
{
    r->invalid++;
    if (r->invalid <= INVALID_REPORTED_MAX)
        fprintf(stderr, "stele: compensate: %s line %ld: %s\n", r->a->backfill_run, line, why);
    else if (r->invalid == INVALID_REPORTED_MAX + 1)
        fprintf(stderr, "stele: compensate: %s: more invalid lines; only the first %u are listed\n",
                r->a->backfill_run, INVALID_REPORTED_MAX);
}

/* One line: parsed as backfill parses it, its key looked up. Returns 0 or
 * an exit code after printing. */
static int bf_line(struct bf_run *r, long line, const char *text, size_t size)
{
    struct event_in in = {0};
    char key[BACKFILL_KEY_SIZE], err[EVENT_ERR_SIZE];
    if (backfill_parse_line(text, size, r->a->derive_keys, r->payload_size_max, &in, key, err) != 0) {
        bf_report_invalid(r, line, err);
        return 0;
    }
    if (r->invalid) { /* nothing will be compensated: the lookups are of no use */
        event_in_release(&in);
        return 0;
    }
    const stele_event *ev = &in.ev;
    stele_record *rec = NULL;
    int rc = 0, code = stele_get_key(r->log, ev->key, ev->key_size, &rec);
    if (code == STELE_ERR_NOT_FOUND) {
        r->not_found++;
    } else if (code != STELE_OK) {
        rc = cli_fail(r->ctx, code, "%s line %ld: looking up key %.*s", r->a->backfill_run, line,
                      (int)ev->key_size, ev->key);
    } else {
        if (r->count == r->cap) {
            size_t cap = r->cap ? 2 * r->cap : 256;
            struct bf_item *p = realloc(r->items, cap * sizeof *p);
            if (!p) {
                rc = cli_error(r->ctx, CLI_EXIT_FAILURE, "out of memory");
            } else {
                r->items = p;
                r->cap = cap;
            }
        }
        if (rc == 0)
            r->items[r->count++] = (struct bf_item){
                .lsn = rec->lsn, .line = line,
                .what = !(rec->flags & STELE_FLAG_BACKFILLED) ? BF_NOT_BACKFILLED
                        : backfill_same_request(rec, ev)      ? BF_TARGET
                                                              : BF_OTHER_EVENT};
        stele_record_free(rec);
    }
    event_in_release(&in);
    return rc;
}

/* Reads FILE once: every line validated, every valid line's key looked up. */
static int bf_read(struct bf_run *r)
{
    const char *path = r->a->backfill_run;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_error(r->ctx, errno == ENOENT ? CLI_EXIT_NOT_FOUND : CLI_EXIT_FAILURE, "opening %s: %s", path,
                         strerror(errno));
    struct line_reader rd;
    line_reader_init(&rd, fd);
    long line = 0;
    int rc = 0;
    while (rc == 0) {
        char *text;
        size_t size;
        enum line_result res = line_reader_next(&rd, 1, &text, &size);
        if (res == LINE_END)
            break;
        if (res == LINE_ERROR) {
            rc = cli_error(r->ctx, CLI_EXIT_FAILURE, "reading %s after line %ld: %s", path, line, strerror(errno));
            break;
        }
        line++;
        if (res == LINE_TOO_LONG)
            bf_report_invalid(r, line, BACKFILL_LINE_TOO_LONG);
        else
            rc = bf_line(r, line, text, size);
    }
    line_reader_free(&rd);
    close(fd);
    if (rc == 0 && r->invalid)
        rc = cli_usage_error(r->ctx, "%s: %" PRIu64 " invalid line%s: nothing compensated (backfill imports no "
                             "line of such a file either)", path, r->invalid, r->invalid == 1 ? "" : "s");
    return rc;
}

static int cmp_bf_item(const void *x, const void *y)
{
    const struct bf_item *a = x, *b = y;
    if (a->lsn != b->lsn)
        return a->lsn < b->lsn ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line;
}

/* A key of FILE that holds a record we refuse to compensate (if it passes
 * --type and --stream). */
static void bf_refuse(struct selection *s, const struct bf_item *it, const stele_record *t)
{
    char why[600];
    if (!matches(s->a, t))
        return;
    s->selected++;
    if (it->what == BF_NOT_BACKFILLED) {
        s->refused_not_backfilled++;
        snprintf(why, sizeof why, "not a backfilled record: key %.*s (%s line %ld) holds LSN %" PRIu64
                 ", which backfill did not import", (int)t->key_size, t->key ? t->key : "", s->a->backfill_run,
                 it->line, t->lsn);
    } else {
        s->refused_other_event++;
        snprintf(why, sizeof why, "key %.*s (%s line %ld) holds LSN %" PRIu64 ", a backfilled event other than "
                 "the line's: the line was a conflict and was not imported", (int)t->key_size,
                 t->key ? t->key : "", s->a->backfill_run, it->line, t->lsn);
    }
    print_target(s, t->lsn, 0, "refused", why);
}

/* The --backfill-run form (see the head comment): FILE is read and every
 * key looked up first, so an invalid line compensates nothing; then the
 * records are taken in LSN order through select_one, as --from takes them. */
static int run_backfill_run(const struct cli_ctx *ctx, stele_log *log, const struct compensate_args *a)
{
    struct bf_run r = {.ctx = ctx, .log = log, .a = a};
    struct selection s = {.ctx = ctx, .log = log, .a = a};
    stele_stats st;
    int code = stele_stats_get(log, &st), rc;
    if (code != STELE_OK)
        return cli_fail(ctx, code, "reading the log's last LSN and limits");
    r.payload_size_max = st.payload_size_max;
    if ((rc = bf_read(&r)) != 0)
        goto out;
    s.not_found = r.not_found;
    if (r.count > 1)
        qsort(r.items, r.count, sizeof *r.items, cmp_bf_item);
    /* Records appended from now on, our own compensations among them, are
     * not part of the selection. */
    s.from = r.count ? r.items[0].lsn : 1;
    s.to = st.last_lsn;
    if (a->dry_run && r.count && (rc = collect_compensations(&s)) != 0)
        goto out;
    for (size_t i = 0; i < r.count && rc == 0 && !s.failed; i++) {
        if (i > 0 && r.items[i].lsn == r.items[i - 1].lsn)
            continue; /* the same line twice in FILE: one record */
        stele_record *t;
        if ((code = stele_get(log, r.items[i].lsn, &t)) != STELE_OK) {
            rc = cli_fail(ctx, code, "reading LSN %" PRIu64 " (key of %s line %ld)", r.items[i].lsn,
                          a->backfill_run, r.items[i].line);
            break;
        }
        if (r.items[i].what == BF_TARGET)
            rc = select_one(&s, t);
        else
            bf_refuse(&s, &r.items[i], t);
        stele_record_free(t);
    }
    if (rc == 0 && (print_summary(&s) != 0 || s.failed))
        rc = CLI_EXIT_FAILURE;
    if (rc == 0)
        rc = selection_status(&s);
out:
    free(r.items);
    free(s.comps);
    return rc;
}

/* The combinations of options that make sense (see stele compensate --help). */
static int check_args(const struct cli_ctx *ctx, struct compensate_args *a)
{
    int forms = (a->lsn != 0) + (a->key != NULL) + (a->from != 0) + (a->backfill_run != NULL);
    if (forms != 1)
        return cli_usage_error(ctx, "give exactly one of --lsn N, --key K, --from L [--to L] and --backfill-run "
                               "FILE%s", a->to && !a->from ? " (--to needs --from)" : "");
    if (!a->reason)
        return cli_usage_error(ctx, "--reason TEXT is required: a compensation says why");
    if (!a->from && a->to)
        return cli_usage_error(ctx, "--to ends a range: it goes with --from");
    if (!is_selection(a) && a->stream)
        return cli_usage_error(ctx, "--stream narrows a selection: it goes with --from or --backfill-run");
    if (a->derive_keys && !a->backfill_run)
        return cli_usage_error(ctx, "--derive-keys says how FILE's keys were made: it goes with --backfill-run");
    if (a->from && a->to && a->to < a->from)
        return cli_usage_error(ctx, "--to %" PRIu64 " is before --from %" PRIu64, a->to, a->from);
    if (a->rules_path && a->data)
        return cli_usage_error(ctx, "--data and --rules both give the payload: use one");
    if (a->rules_path && a->type && !is_selection(a))
        return cli_usage_error(ctx, "--type and --rules both give the compensation's type: use one");
    return a->rules_path ? rules_load(ctx, a) : 0;
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
    if ((rc = cli_take_dir(ctx, &dir)) != 0 || (rc = check_args(ctx, &a)) != 0) {
        json_decref(a.rules);
        return rc;
    }
    /* A dry run only reads, so it takes no lock and runs beside a writer. */
    rc = a.dry_run ? cli_open_read_only(ctx, dir, &log) : cli_open_log(ctx, dir, NULL, &log);
    if (rc == 0) {
        rc = a.backfill_run ? run_backfill_run(ctx, log, &a)
             : a.from       ? run_selection(ctx, log, &a)
                            : run(ctx, log, &a);
        if (a.dry_run)
            stele_close(log); /* read-only: nothing to flush, nothing to report */
        else
            rc = cli_close_log(ctx, log, dir, rc);
    }
    json_decref(a.rules);
    return rc;
}
