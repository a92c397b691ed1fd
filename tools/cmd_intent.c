/*
 * cmd_intent.c - `stele intent DIR --key K`: record an action whose outcome
 * is not known yet (PRODUCT.md, guarantee 4, and "Command line"). The intent
 * stays pending until `stele resolve` records its outcome; `stele pending`
 * lists it meanwhile.
 *
 * An intent is appended like an event (kind intent, the key mandatory), so
 * the answer is append's receipt and exit status: new or duplicate exit 0,
 * a key that holds another request (or a stream not at --expect-version)
 * exits 3.
 */
#include "cli.h"
#include "event_json.h"
#include "stele.h"

static const struct option intent_options[] = {
    {"key", required_argument, NULL, CLI_OPT_KEY},
    {"type", required_argument, NULL, CLI_OPT_TYPE},
    {"stream", required_argument, NULL, CLI_OPT_STREAM},
    {"expect-version", required_argument, NULL, CLI_OPT_EXPECT_VERSION},
    {"actor", required_argument, NULL, CLI_OPT_ACTOR},
    {"data", required_argument, NULL, CLI_OPT_DATA},
    CLI_COMMON_OPTIONS,
};

static int append_intent(const struct cli_ctx *ctx, stele_log *log, struct event_in *in)
{
    return cli_append_report(ctx, log, &in->ev, 0, "recording the intent");
}

int cmd_intent(struct cli_ctx *ctx, int argc, char **argv)
{
    struct event_in in = {.ev = {.kind = STELE_KIND_INTENT}};
    const char *dir, *data = NULL;
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, intent_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if ((rc = cli_event_option(ctx, c, optarg, &in.ev, &data)) != 0)
            return rc < 0 ? CLI_EXIT_USAGE : rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if (in.ev.key_size == 0)
        return cli_usage_error(ctx, "--key K is required: an intent is found again by its key");
    if (in.ev.has_expect_version && in.ev.stream_size == 0)
        return cli_usage_error(ctx, "--expect-version needs --stream");
    return cli_append_command(ctx, dir, &in, data, append_intent);
}
