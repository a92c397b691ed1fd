/*
 * cli.h - what the `stele` subcommands share: exit codes, the per-invocation
 * context, option parsing helpers, error printing, and the parsers for
 * numbers, sizes, durations and RFC 3339 times (PRODUCT.md, "Command line").
 *
 * The tools see the engine only through stele.h; nothing here reaches inside.
 */
#ifndef STELE_TOOLS_CLI_H
#define STELE_TOOLS_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include "stele.h"

/* The documented exit codes (PRODUCT.md, "Command line"). */
enum cli_exit {
    CLI_EXIT_OK = 0,        /* success, including a `duplicate` decision */
    CLI_EXIT_FAILURE = 1,   /* anything not listed below */
    CLI_EXIT_USAGE = 2,     /* usage error or invalid input */
    CLI_EXIT_CONFLICT = 3,  /* key, outcome, compensation or stream version conflict */
    CLI_EXIT_NOT_FOUND = 4, /* no such log, LSN or key */
    CLI_EXIT_CORRUPT = 5,   /* corruption found */
};

/* stele.h documents that type, stream, key and actor hold at most 255 bytes. */
#define CLI_FIELD_SIZE_MAX 255u

/* The longest RFC 3339 text cli_time_format writes, NUL included. */
#define CLI_TIME_TEXT_SIZE 40u

/* Positional arguments kept per invocation; more are counted, not kept. */
#define CLI_ARGS_MAX 16

/* One invocation of one subcommand. */
struct cli_ctx {
    const char *cmd;   /* subcommand name, used in messages */
    const char *usage; /* its synopsis, printed by --help */
    const char *help;  /* the rest of its manual page for --help, or NULL */
    int human;         /* --human: a rendering for people instead of JSON */
    const char *args[CLI_ARGS_MAX]; /* positional arguments, in order */
    int arg_count;
};

typedef int (*cli_cmd_fn)(struct cli_ctx *ctx, int argc, char **argv);

int cmd_init(struct cli_ctx *ctx, int argc, char **argv);
int cmd_append(struct cli_ctx *ctx, int argc, char **argv);
int cmd_get(struct cli_ctx *ctx, int argc, char **argv);
int cmd_read(struct cli_ctx *ctx, int argc, char **argv);
int cmd_verify(struct cli_ctx *ctx, int argc, char **argv);
int cmd_stats(struct cli_ctx *ctx, int argc, char **argv);
int cmd_intent(struct cli_ctx *ctx, int argc, char **argv);
int cmd_resolve(struct cli_ctx *ctx, int argc, char **argv);
int cmd_status(struct cli_ctx *ctx, int argc, char **argv);
int cmd_pending(struct cli_ctx *ctx, int argc, char **argv);
int cmd_compensate(struct cli_ctx *ctx, int argc, char **argv);
int cmd_replay(struct cli_ctx *ctx, int argc, char **argv);
int cmd_backfill(struct cli_ctx *ctx, int argc, char **argv);
int cmd_dump(struct cli_ctx *ctx, int argc, char **argv);
int cmd_backup(struct cli_ctx *ctx, int argc, char **argv);
int cmd_dict(struct cli_ctx *ctx, int argc, char **argv);
int cmd_prove(struct cli_ctx *ctx, int argc, char **argv);
int cmd_keygen(struct cli_ctx *ctx, int argc, char **argv);
int cmd_checkpoint(struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit(struct cli_ctx *ctx, int argc, char **argv);
int cmd_relay(struct cli_ctx *ctx, int argc, char **argv); /* with libnats only */
int cmd_inbox(struct cli_ctx *ctx, int argc, char **argv); /* with libnats only */
int cmd_deliver(struct cli_ctx *ctx, int argc, char **argv); /* with libcurl and libsodium only */
int cmd_serve(struct cli_ctx *ctx, int argc, char **argv);   /* with libmicrohttpd only */

/* The manual pages --help prints after the synopsis (tools/help.c). */
extern const char cli_help_backfill[], cli_help_compensate[], cli_help_dump[], cli_help_backup[],
    cli_help_stats[], cli_help_serve[], cli_help_prove[], cli_help_keygen[], cli_help_checkpoint[],
    cli_help_audit[];

/* A signed checkpoint (cmd_checkpoint.c, SPEC.md §20.7): reads the note at
 * note_path and the public key at pub_path, checks the signature (and the
 * origin, when origin is not NULL) and parses the checkpoint into *out.
 * Returns 0, or the exit code after printing the error: 4 a file is missing,
 * 2 a file is not a key or a checkpoint, 5 the note is not signed by the key
 * (no line by it, or its signature fails) or is of another origin. */
struct note_checkpoint;
int cli_checkpoint_load(const struct cli_ctx *ctx, const char *note_path, const char *pub_path, const char *origin,
                        struct note_checkpoint *out);

/* Option values cli_next_opt returns besides a command's own (which are
 * printable characters or small integers below CLI_OPT_BASE). */
enum {
    CLI_OPT_BASE = 0x1000,
    CLI_OPT_HUMAN,   /* handled inside cli_next_opt, never returned */
    CLI_OPT_HELP,    /* usage was printed to stdout: exit 0 */
    CLI_OPT_INVALID, /* an error was printed to stderr: exit 2 */
};

/* The fields of a record as options, shared by the commands that append one
 * (append, intent, resolve): a command lists the ones it takes in its option
 * table with these values and hands them to cli_event_option. */
enum {
    CLI_OPT_KEY = 0x800, /* --key K */
    CLI_OPT_TYPE,        /* --type T */
    CLI_OPT_STREAM,      /* --stream S */
    CLI_OPT_EXPECT_VERSION, /* --expect-version N */
    CLI_OPT_ACTOR,       /* --actor A */
    CLI_OPT_EVENT_TIME,  /* --event-time TIME */
    CLI_OPT_DATA,        /* --data TEXT, kept in *data: event_in_set_data_arg applies it */
};

/* Applies option c (one of CLI_OPT_KEY ... CLI_OPT_DATA) with value text to
 * ev. Returns 0, CLI_EXIT_USAGE after printing, or -1 when c is none of them. */
int cli_event_option(const struct cli_ctx *ctx, int c, const char *text, stele_event *ev, const char **data);

/* Every subcommand accepts these; put the macro last in its option table. */
#define CLI_COMMON_OPTIONS                                                                         \
    {"human", no_argument, NULL, CLI_OPT_HUMAN}, {"help", no_argument, NULL, CLI_OPT_HELP},        \
    {NULL, 0, NULL, 0}

/* getopt_long over argv (argv[0] is the subcommand name) with long options
 * only. Positional arguments are collected into ctx->args. Returns the next
 * option's value, -1 at the end, CLI_OPT_HELP or CLI_OPT_INVALID (after
 * printing what was wrong). */
int cli_next_opt(struct cli_ctx *ctx, int argc, char **argv, const struct option *longopts);

/* After cli_next_opt returned -1: the single positional argument DIR. Prints
 * the error and returns CLI_EXIT_USAGE when there is not exactly one. */
int cli_take_dir(struct cli_ctx *ctx, const char **out_dir);

/* Prints "stele: <cmd>: <what>: <strerror(code)>[: <errmsg>]" (what is
 * printf-style) and returns the exit code that code maps to. Call it right
 * after the failing stele call so that stele_errmsg() still describes it. */
int cli_fail(const struct cli_ctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* stele_open with the error printed ("opening log DIR: ..."); returns 0 or
 * the exit code. */
int cli_open_log(const struct cli_ctx *ctx, const char *dir, const stele_options *opts, stele_log **out_log);

/* cli_open_log with default options and read_only set: for commands that
 * only read (no lock taken, so they run beside a writer). */
int cli_open_read_only(const struct cli_ctx *ctx, const char *dir, stele_log **out_log);

/* Closes a log opened for writing. Returns rc, or when rc is 0 and the
 * final sync failed, the exit code of that failure (after printing it). */
int cli_close_log(const struct cli_ctx *ctx, stele_log *log, const char *dir, int rc);

/* The rest of a command that appends one record built from options (intent,
 * resolve): opens the log in dir for writing, applies --data (NULL = none)
 * to in, calls fn to append and report, releases in and closes the log.
 * Returns the exit code. */
struct event_in;
int cli_append_command(const struct cli_ctx *ctx, const char *dir, struct event_in *in, const char *data,
                       int (*fn)(const struct cli_ctx *ctx, stele_log *log, struct event_in *in));

/* Appends one record and prints its receipt (event_json.h, receipt_json;
 * ref > 0 adds "ref"). Returns the exit code: 0 for new and duplicate; for a
 * conflict or a stream version mismatch the receipt is printed and one line
 * on stderr says what happened (3); any other failure prints only the error.
 * what names the operation in messages ("appending", "resolving key K"). */
int cli_append_report(const struct cli_ctx *ctx, stele_log *log, const stele_event *ev, uint64_t ref,
                      const char *what);

/* Prints "stele: <cmd>: <message>" (printf-style) and returns CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "stele: <cmd>: <message>" and returns exit_code. */
int cli_error(const struct cli_ctx *ctx, int exit_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The exit code for a stele_code. */
int cli_exit_for(int code);

/* Option value parsers: 0 on success, -1 when text is not valid (nothing is
 * printed; the caller names the option). cli_opt_* wrap them and print. */
int cli_parse_u64(const char *text, uint64_t *out);
int cli_parse_size(const char *text, uint64_t *out_bytes);
int cli_parse_duration(const char *text, uint64_t *out_ns);
int cli_parse_time(const char *text, uint64_t *out_ns);

/* Parse optarg for option name (without dashes); print and return
 * CLI_EXIT_USAGE on failure, 0 on success. */
int cli_opt_u64(const struct cli_ctx *ctx, const char *name, const char *text, uint64_t *out);

/* Lowercase hex of n bytes into dst (capacity 2n + 1, NUL-terminated): log
 * ids, hashes, key ids. */
void cli_hex(const uint8_t *src, size_t n, char *dst);
int cli_opt_size(const struct cli_ctx *ctx, const char *name, const char *text, uint64_t *out);
int cli_opt_duration(const struct cli_ctx *ctx, const char *name, const char *text, uint64_t *out);
int cli_opt_time(const struct cli_ctx *ctx, const char *name, const char *text, uint64_t *out);
/* A string option: UTF-8 (what JSON can carry), at most CLI_FIELD_SIZE_MAX bytes. */
int cli_opt_field(const struct cli_ctx *ctx, const char *name, const char *text);
/* A string option that must not be empty either (a key that names something). */
int cli_opt_key(const struct cli_ctx *ctx, const char *name, const char *text);
/* --durability sync|interval|none; returns a stele_durability or -1 after printing. */
int cli_opt_durability(const struct cli_ctx *ctx, const char *text);

/* Length of the valid UTF-8 sequence at s (at most n > 0 bytes), 0 if invalid. */
size_t cli_utf8_sequence(const char *s, size_t n);
/* 1 when s[0, n) is valid UTF-8. */
int cli_utf8_valid(const char *s, size_t n);

/* The wall clock (CLOCK_REALTIME) in ns since the Unix epoch: the clock the
 * engine stamps recorded times with. */
uint64_t cli_now_ns(void);

/* The monotonic clock (CLOCK_MONOTONIC) in ns, for timing waits (stop.c). */
uint64_t cli_mono_ns(void);

/* SIGINT and SIGTERM ask a long-running command to stop: they set a flag
 * cli_stop_requested reports, and interrupt blocking waits (no SA_RESTART).
 * ignore_sigpipe: a closed pipe becomes EPIPE instead of killing us. */
void cli_stop_install(int ignore_sigpipe);
int cli_stop_requested(void);
/* Sleeps ms milliseconds unless a stop is requested; returns 1 when stopped. */
int cli_sleep_ms(uint64_t ms);

/* Writes ns as RFC 3339 UTC with nine fractional digits, e.g.
 * 2026-11-28T17:19:23.123456789Z, into dst (capacity >= CLI_TIME_TEXT_SIZE). */
void cli_time_format(uint64_t ns, char *dst, size_t dst_capacity);

/* Renders a duration in ns the way cli_parse_duration reads it, e.g. "24h" or "0". */
void cli_duration_format(uint64_t ns, char *dst, size_t dst_capacity);

/* Prints rec to stdout as an event object, or rendered for people with
 * --human; returns 0 or the exit code (after printing the error). */
int cli_print_record(const struct cli_ctx *ctx, const stele_record *rec);

/* Proofs (cmd_prove.c, SPEC.md §20). cli_prove proves record lsn (or, with
 * lsn 0, the consistency from the tree of from records) against the tree of
 * size records (0: the current tree) and checks the proof before it is
 * used; it reports what failed (exit 5 for a proof that does not verify).
 * cli_proof_print_human prints it as `stele prove --human` does; its JSON
 * is cli_proof_json (event_json.h). */
int cli_prove(struct cli_ctx *ctx, stele_log *log, const char *dir, uint64_t lsn, uint64_t from, uint64_t size,
              stele_proof *p);
void cli_proof_print_human(const stele_proof *p);

const char *cli_durability_name(int durability);
const char *cli_compression_name(int compression);

#endif
