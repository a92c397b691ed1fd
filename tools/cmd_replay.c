/*
 * cmd_replay.c - `stele replay DIR --consumer NAME`: deliver the log's events
 * to a consumer at least once, in LSN order, with a durable cursor, retries
 * with backoff and jitter, and dead letters (PRODUCT.md, "Command line" and
 * "A replay handler..."; the cursor API of stele.h, SPEC.md §16).
 *
 * The loop: read records after the cursor (filtered), gather a batch of
 * --batch matching events, deliver it (to --exec's handler on its stdin, or
 * as JSON lines to stdout), and only once the delivery succeeded commit the
 * cursor to the batch's last LSN. A crash or SIGKILL at any point therefore
 * redelivers at most the batch that was in flight. A retryable failure (exit
 * 75 or --timeout) is retried after a backoff (backoff.c) up to
 * --max-attempts; a permanent one, or the last attempt, makes every event of
 * the batch a dead letter, recorded durably before the cursor moves past it
 * (--on-dead-letter skip) or the run stops short of it (stop).
 *
 * The handler runs through posix_spawn (no code runs in a forked copy of a
 * multi-threaded process) in a process group of its own, so that a timeout
 * kills everything it started and a terminal's Ctrl-C reaches only us: on
 * SIGINT or SIGTERM we let the event in hand finish, commit and exit 0.
 *
 * The log is opened read-only in every mode (SPEC.md §16.1: the cursor is
 * the consumer's, guarded by its own lock), so replay runs beside the process
 * that writes the log, and --follow delivers that process's appends once
 * they are durable. Before delivering we make sure this run holds the
 * consumer's lock (stele_cursor_exclusive): a second replay of the consumer
 * stops before delivering anything it could not commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "cli.h"
#include "event_json.h"
#include "stele.h"

extern char **environ;

/* Limits (STYLE.md: a limit on everything). */
#define REPLAY_BATCH_MAX 65536u
#define REPLAY_ATTEMPTS_MAX 1000u
#define REPLAY_MS_MAX (24ull * 3600 * 1000)   /* backoff and timeout bounds: a day */
#define REPLAY_STDOUT_BATCH_DEFAULT 1000u
#define FOLLOW_WAIT_MS 200
#define STDERR_LINE_MAX STELE_DEAD_STDERR_SIZE_MAX
#define EX_TEMPFAIL_CODE 75

enum {
    OPT_CONSUMER = 256, OPT_EXEC, OPT_STDOUT, OPT_BATCH, OPT_FROM, OPT_SINCE, OPT_TYPE, OPT_STREAM,
    OPT_MAX_ATTEMPTS, OPT_BACKOFF_BASE, OPT_BACKOFF_MAX, OPT_TIMEOUT, OPT_RATE, OPT_ON_DEAD, OPT_FOLLOW,
    OPT_DRY_RUN, OPT_SEED, OPT_DEAD_LETTERS, OPT_REDRIVE, OPT_ALL,
};

static const struct option replay_options[] = {
    {"consumer", required_argument, NULL, OPT_CONSUMER},
    {"exec", required_argument, NULL, OPT_EXEC},
    {"stdout", no_argument, NULL, OPT_STDOUT},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"from", required_argument, NULL, OPT_FROM},
    {"since", required_argument, NULL, OPT_SINCE},
    {"type", required_argument, NULL, OPT_TYPE},
    {"stream", required_argument, NULL, OPT_STREAM},
    {"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
    {"backoff-base", required_argument, NULL, OPT_BACKOFF_BASE},
    {"backoff-max", required_argument, NULL, OPT_BACKOFF_MAX},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"rate", required_argument, NULL, OPT_RATE},
    {"on-dead-letter", required_argument, NULL, OPT_ON_DEAD},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"seed", required_argument, NULL, OPT_SEED},
    {"dead-letters", no_argument, NULL, OPT_DEAD_LETTERS},
    {"redrive", no_argument, NULL, OPT_REDRIVE},
    {"all", no_argument, NULL, OPT_ALL},
    CLI_COMMON_OPTIONS,
};

/* The manual --help prints (in pieces: C11 promises string literals of
 * 4095 bytes only): the synopsis, as "usage: ...", then the sections. */
static const char replay_synopsis[] =
    "stele replay DIR --consumer NAME (--exec CMD | --stdout) [--batch N] [--from LSN]\n"
    "                  [--since TIME] [--type T] [--stream S] [--max-attempts N] [--backoff-base MS]\n"
    "                  [--backoff-max MS] [--timeout MS] [--rate N] [--on-dead-letter stop|skip]\n"
    "                  [--seed N] [--follow] [--dry-run]\n"
    "       stele replay DIR --consumer NAME --dead-letters [--all]\n"
    "       stele replay DIR --consumer NAME --redrive (--exec CMD | --stdout) [retry options]";

static const char *const replay_manual[] = {
    "\n"
    "DESCRIPTION\n"
    "  Delivers the events of the log in DIR to a consumer, at least once and in LSN order. The\n"
    "  consumer NAME (1-64 characters of A-Z a-z 0-9 . _ -) has a durable cursor in DIR/consumers/:\n"
    "  the last LSN it finished. A run starts after it, and commits it only after the handler\n"
    "  succeeded, so a run killed at any point and run again redelivers at most the batch that was\n"
    "  in flight: handlers must be idempotent (deduplicate on STELE_LSN or STELE_KEY).\n"
    "\n"
    "  Exit 0 from the handler is success. Exit 75 (EX_TEMPFAIL) or running past --timeout is a\n"
    "  retryable failure: the handler runs again after a wait drawn uniformly from\n"
    "  [0, min(backoff-max, backoff-base * 2^(attempt-1))] ms (exponential backoff, full jitter),\n"
    "  up to --max-attempts attempts. Any other exit is a permanent failure. A permanent failure, or\n"
    "  a failed last attempt, makes the event a dead letter, recorded durably with the reason, the\n"
    "  attempts and the handler's last stderr line. When a batch of several events fails so, its\n"
    "  events are delivered again one at a time and only those that fail become dead letters.\n"
    "  Each retry and dead letter is reported on stderr. Events the filters exclude are passed\n"
    "  over (the cursor moves past them).\n"
    "  Replay opens the log read-only, so it runs beside the process that writes the log and, with\n"
    "  --follow, delivers that process's appends as they become durable (a read-only reader sees\n"
    "  durable records only). Delivering (and --redrive) takes the consumer's lock,\n"
    "  DIR/consumers/NAME.lock: one replay per consumer at a time; a second one exits 1 naming the\n"
    "  pid that holds it. --dead-letters and --dry-run need no lock and run beside a replay.\n",
    "\n"
    "OPTIONS\n"
    "  --consumer NAME     the consumer whose cursor and dead letters are used (required)\n"
    "  --exec CMD          run CMD with /bin/sh -c per batch, the events as JSON lines on its stdin\n"
    "  --stdout            write the events as JSON lines to stdout instead (flushed per batch)\n"
    "  --batch N           events per delivery, 1-65536; the cursor is committed after each batch\n"
    "                      (default 1 with --exec, 1000 with --stdout)\n"
    "  --from LSN          start at LSN or later (the cursor never goes back: a run starts after\n"
    "                      the cursor whatever --from says)\n"
    "  --since TIME        start at the first event recorded at or after TIME (RFC 3339)\n"
    "  --type T, --stream S  deliver only events of that type, of that stream\n"
    "  --max-attempts N    deliveries tried per batch, 1-1000 (default 5)\n"
    "  --backoff-base MS   first retry's wait bound in ms (default 100)\n"
    "  --backoff-max MS    largest wait bound in ms (default 30000)\n"
    "  --timeout MS        kill the handler's process group after MS ms, a retryable failure\n"
    "                      (default 0: no limit)\n"
    "  --rate N            deliver at most N events per second (default: no limit)\n"
    "  --on-dead-letter stop|skip  stop: exit 1 and leave the cursor before the dead letter (the\n"
    "                      next run tries it again); skip: record it and go on (default stop)\n"
    "  --seed N            seed of the jitter, for reproducible waits (default: from the clock)\n"
    "  --follow            when the log's end is reached, wait for new events until SIGINT/SIGTERM\n"
    "  --dry-run           print the events that would be delivered; run nothing, commit nothing\n"
    "  --dead-letters      list the consumer's unresolved dead letters as JSON lines, LSN order:\n"
    "                      {\"consumer\",\"lsn\",\"key\",\"reason\",\"attempts\",\"last_stderr\",\"dead_at\",\n"
    "                      \"resolved_at\"}; --all adds the resolved ones\n"
    "  --redrive           deliver every unresolved dead letter again (retry options apply); each\n"
    "                      one that succeeds is marked resolved; the cursor does not move\n",
    "\n"
    "ENVIRONMENT\n"
    "  The handler gets STELE_LSN (the batch's first LSN), STELE_LSN_LAST, STELE_BATCH_SIZE,\n"
    "  STELE_KEY (the first event's key, empty when it has none), STELE_ATTEMPT (1, 2, ...) and\n"
    "  STELE_CONSUMER. Its stderr passes through to ours; its stdout is ours.\n"
    "\n"
    "SIGNALS\n"
    "  SIGINT and SIGTERM let the handler running finish (it is not signalled), commit the cursor\n"
    "  past what succeeded and exit 0; a batch waiting for a retry is left for the next run.\n"
    "  On a terminal, stderr shows a progress line: delivered, rate, lag, retries, dead letters.\n"
    "\n"
    "EXIT STATUS\n"
    "  0 done (or stopped by a signal); 1 a dead letter with --on-dead-letter stop, a redrive that\n"
    "  left dead letters, another replay of the consumer running (the message names its pid), or\n"
    "  another failure; 2 usage; 4 no log in DIR; 5 a damaged cursor or dead-letter file (never\n"
    "  reset: the message names the file and offset).\n"
    "\n"
    "EXAMPLES\n"
    "  stele replay /var/lib/pay --consumer mailer --exec './send-mail.sh' --max-attempts 8\n"
    "  stele replay /var/lib/pay --consumer audit --stdout --type payment.captured > audit.jsonl\n"
    "  stele replay /var/lib/pay --consumer mailer --dead-letters\n"
    "  stele replay /var/lib/pay --consumer mailer --redrive --exec './send-mail.sh'\n",
};

struct replay_args {
    const char *consumer, *exec, *type, *stream;
    int to_stdout, follow, dry_run, dead_letters, redrive, all, skip_dead;
    uint64_t batch, from, since, max_attempts, backoff_base_ms, backoff_max_ms, timeout_ms, rate, seed;
    int has_seed;
};

/* Per run: the counters of the progress line and the jitter's state. */
struct replay {
    const struct cli_ctx *ctx;
    const struct replay_args *a;
    stele_log *log;
    stele_cursor *cur;
    uint64_t rng;
    uint64_t delivered, retries, dead, committed;
    uint64_t started_ns, progress_ns, rate_start_ns, rate_count;
    int progress;            /* stderr is a terminal */
};

/* A batch being gathered: the events' JSON lines and, per event, its LSN and key. */
struct batch {
    char *text;
    size_t size, cap;
    uint64_t *lsn;
    char **key;
    size_t count, cap_events;
};

/* How one attempt went. */
enum attempt_result { ATTEMPT_OK, ATTEMPT_RETRY, ATTEMPT_PERMANENT };
struct attempt {
    enum attempt_result result;
    char reason[128];
    char last_stderr[STDERR_LINE_MAX + 1];
};

/* --------------------------------------------------------------- options */

static int opt_bounded(struct cli_ctx *ctx, const char *name, const char *text, uint64_t lo, uint64_t hi,
                       uint64_t *out)
{
    int rc = cli_opt_u64(ctx, name, text, out);
    if (rc == 0 && (*out < lo || *out > hi))
        return cli_usage_error(ctx, "--%s: %" PRIu64 " is outside [%" PRIu64 ", %" PRIu64 "]", name, *out, lo, hi);
    return rc;
}

static int replay_option(struct cli_ctx *ctx, int c, struct replay_args *a)
{
    switch (c) {
    case OPT_CONSUMER: a->consumer = optarg; return 0;
    case OPT_EXEC: a->exec = optarg; return *optarg ? 0 : cli_usage_error(ctx, "--exec: empty command");
    case OPT_STDOUT: a->to_stdout = 1; return 0;
    case OPT_BATCH: return opt_bounded(ctx, "batch", optarg, 1, REPLAY_BATCH_MAX, &a->batch);
    case OPT_FROM: return cli_opt_u64(ctx, "from", optarg, &a->from);
    case OPT_SINCE: return cli_opt_time(ctx, "since", optarg, &a->since);
    case OPT_TYPE: a->type = optarg; return cli_opt_field(ctx, "type", optarg);
    case OPT_STREAM: a->stream = optarg; return cli_opt_key(ctx, "stream", optarg);
    case OPT_MAX_ATTEMPTS: return opt_bounded(ctx, "max-attempts", optarg, 1, REPLAY_ATTEMPTS_MAX, &a->max_attempts);
    case OPT_BACKOFF_BASE: return opt_bounded(ctx, "backoff-base", optarg, 0, REPLAY_MS_MAX, &a->backoff_base_ms);
    case OPT_BACKOFF_MAX: return opt_bounded(ctx, "backoff-max", optarg, 0, REPLAY_MS_MAX, &a->backoff_max_ms);
    case OPT_TIMEOUT: return opt_bounded(ctx, "timeout", optarg, 0, REPLAY_MS_MAX, &a->timeout_ms);
    case OPT_RATE: return opt_bounded(ctx, "rate", optarg, 1, UINT32_MAX, &a->rate);
    case OPT_SEED: a->has_seed = 1; return cli_opt_u64(ctx, "seed", optarg, &a->seed);
    case OPT_FOLLOW: a->follow = 1; return 0;
    case OPT_DRY_RUN: a->dry_run = 1; return 0;
    case OPT_DEAD_LETTERS: a->dead_letters = 1; return 0;
    case OPT_REDRIVE: a->redrive = 1; return 0;
    case OPT_ALL: a->all = 1; return 0;
    case OPT_ON_DEAD:
        if (strcmp(optarg, "stop") == 0 || strcmp(optarg, "skip") == 0) {
            a->skip_dead = optarg[1] == 'k';
            return 0;
        }
        return cli_usage_error(ctx, "--on-dead-letter: '%s' is not stop or skip", optarg);
    default:
        return CLI_EXIT_USAGE;
    }
}

/* The combinations that make sense (see the manual's synopsis). */
static int check_args(struct cli_ctx *ctx, struct replay_args *a)
{
    if (!a->consumer)
        return cli_usage_error(ctx, "--consumer NAME is required (see stele replay --help)");
    if (ctx->human)
        return cli_usage_error(ctx, "--human: replay writes JSON lines only (handlers and pipes read them)");
    if (a->dead_letters) {
        if (a->redrive || a->exec || a->to_stdout || a->dry_run || a->follow)
            return cli_usage_error(ctx, "--dead-letters only lists: it takes no delivery options");
        return 0;
    }
    if (a->all)
        return cli_usage_error(ctx, "--all goes with --dead-letters");
    if (!a->exec == !a->to_stdout)
        return cli_usage_error(ctx, "exactly one of --exec CMD and --stdout is required");
    if (a->redrive && (a->follow || a->dry_run || a->from || a->since || a->type || a->stream))
        return cli_usage_error(ctx, "--redrive delivers the dead letters: no filters, --follow or --dry-run");
    if (a->backoff_base_ms > a->backoff_max_ms)
        return cli_usage_error(ctx, "--backoff-base (%" PRIu64 ") is above --backoff-max (%" PRIu64 ")",
                               a->backoff_base_ms, a->backoff_max_ms);
    if (!a->batch)
        a->batch = a->to_stdout ? REPLAY_STDOUT_BATCH_DEFAULT : 1;
    return 0;
}

/* --------------------------------------------------------------- batches */

static void batch_clear(struct batch *b)
{
    for (size_t i = 0; i < b->count; i++)
        free(b->key[i]);
    b->count = 0;
    b->size = 0;
}

static void batch_free(struct batch *b)
{
    batch_clear(b);
    free(b->text);
    free(b->lsn);
    free(b->key);
}

/* Adds rec's JSON line (and its LSN and key) to b. Returns 0 or -1 (out of memory). */
static int batch_add(struct batch *b, const stele_record *rec)
{
    if (b->count == b->cap_events) {
        size_t cap = b->cap_events ? b->cap_events * 2 : 16;
        uint64_t *l = realloc(b->lsn, cap * sizeof *l);
        if (l)
            b->lsn = l;
        char **k = l ? realloc(b->key, cap * sizeof *k) : NULL;
        if (!k)
            return -1;
        b->key = k;
        b->cap_events = cap;
    }
    json_t *o = event_json_from_record(rec);
    size_t n = 0;
    char *line = o ? json_compact(o, &n) : NULL;
    json_decref(o);
    char *key = line ? strndup(rec->key ? rec->key : "", rec->key_size) : NULL;
    if (key && b->size + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->size + n + 1)
            cap *= 2;
        char *t = realloc(b->text, cap);
        if (t) {
            b->text = t;
            b->cap = cap;
        } else {
            free(key);
            key = NULL;
        }
    }
    if (!key) {
        free(line);
        return -1;
    }
    memcpy(b->text + b->size, line, n);
    b->text[b->size + n] = '\n';
    b->size += n + 1;
    free(line);
    b->lsn[b->count] = rec->lsn;
    b->key[b->count++] = key;
    return 0;
}

static void describe_lsns(const struct batch *b, char *dst, size_t dst_capacity)
{
    if (b->count == 1)
        snprintf(dst, dst_capacity, "LSN %" PRIu64, b->lsn[0]);
    else
        snprintf(dst, dst_capacity, "LSNs %" PRIu64 "-%" PRIu64 " (%zu events)", b->lsn[0], b->lsn[b->count - 1],
                 b->count);
}

/* --------------------------------------------------------------- handler */

/* The handler's environment: ours without any STELE_* variable we set, plus them. */
static char **handler_env(const struct replay *r, const struct batch *b, unsigned attempt, char vars[6][320])
{
    static const char *const ours[] = {"STELE_LSN=", "STELE_LSN_LAST=", "STELE_BATCH_SIZE=", "STELE_KEY=",
                                       "STELE_ATTEMPT=", "STELE_CONSUMER="};
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = malloc((n + 7) * sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int mine = 0;
        for (size_t j = 0; j < 6; j++)
            mine |= strncmp(environ[i], ours[j], strlen(ours[j])) == 0;
        if (!mine)
            env[k++] = environ[i];
    }
    snprintf(vars[0], 320, "STELE_LSN=%" PRIu64, b->lsn[0]);
    snprintf(vars[1], 320, "STELE_LSN_LAST=%" PRIu64, b->lsn[b->count - 1]);
    snprintf(vars[2], 320, "STELE_BATCH_SIZE=%zu", b->count);
    snprintf(vars[3], 320, "STELE_KEY=%s", b->key[0]);
    snprintf(vars[4], 320, "STELE_ATTEMPT=%u", attempt);
    snprintf(vars[5], 320, "STELE_CONSUMER=%s", r->a->consumer);
    for (size_t j = 0; j < 6; j++)
        env[k++] = vars[j];
    env[k] = NULL;
    return env;
}

/* Starts /bin/sh -c CMD in a process group of its own with stdin and stderr
 * on pipes (*in_fd to write, *err_fd to read). Returns 0 or -errno. */
static int spawn_handler(const char *cmd, char **env, pid_t *out_pid, int *in_fd, int *err_fd)
{
    int in[2], er[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        return -errno;
    if (pipe2(er, O_CLOEXEC) != 0) {
        int e = errno;
        close(in[0]);
        close(in[1]);
        return -e;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, er[1], 2);
    posix_spawnattr_init(&at);
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGTERM);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    int rc = posix_spawn(out_pid, "/bin/sh", &fa, &at, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(in[0]);
    close(er[1]);
    if (rc != 0) {
        close(in[1]);
        close(er[0]);
        return -rc;
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(er[0], F_SETFL, O_NONBLOCK);
    *in_fd = in[1];
    *err_fd = er[0];
    return 0;
}

/* What the handler has written to stderr: passed through, and its last
 * non-empty line kept (at most STDERR_LINE_MAX bytes of it). */
struct stderr_tail {
    char cur[STDERR_LINE_MAX + 1];
    size_t cur_size;
    char last[STDERR_LINE_MAX + 1];
};

static void tail_feed(struct stderr_tail *t, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            if (t->cur_size) {
                memcpy(t->last, t->cur, t->cur_size);
                t->last[t->cur_size] = '\0';
            }
            t->cur_size = 0;
        } else if (t->cur_size < STDERR_LINE_MAX) {
            t->cur[t->cur_size++] = p[i];
        }
    }
}

/* Reads what is there on fd; returns 0 at EOF or error (fd done), 1 otherwise. */
static int drain_stderr(int fd, struct stderr_tail *t)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            ssize_t w = write(2, buf, (size_t)n); /* pass through; a closed stderr is not our handler's failure */
            (void)w;
            tail_feed(t, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && errno == EAGAIN;
    }
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/* Without a pidfd (kernels before 5.3): whether pid has exited, leaving it
 * to be reaped. */
static int exited_nowait(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* Feeds the input, collects stderr and waits for the handler to exit or the
 * deadline (0 = none) to pass; *timed_out says which. */
static void supervise(pid_t pid, int in_fd, int err_fd, const char *input, size_t size, uint64_t deadline_ns,
                      struct stderr_tail *t, int *timed_out)
{
    int pfd = pidfd_open_(pid);
    size_t sent = 0;
    *timed_out = 0;
    for (;;) {
        struct pollfd p[3];
        int n = 0, ip = -1, ep = -1, xp = -1;
        if (in_fd >= 0)
            p[ip = n++] = (struct pollfd){.fd = in_fd, .events = POLLOUT};
        if (err_fd >= 0)
            p[ep = n++] = (struct pollfd){.fd = err_fd, .events = POLLIN};
        if (pfd >= 0)
            p[xp = n++] = (struct pollfd){.fd = pfd, .events = POLLIN};
        int wait_ms = pfd >= 0 ? 1000 : 5;
        if (deadline_ns) {
            uint64_t now = cli_mono_ns();
            if (now >= deadline_ns) {
                *timed_out = 1;
                kill(-pid, SIGKILL);
                break;
            }
            uint64_t left_ms = (deadline_ns - now + 999999) / 1000000;
            wait_ms = left_ms < (uint64_t)wait_ms ? (int)left_ms : wait_ms;
        }
        if (poll(p, (nfds_t)n, wait_ms) < 0)
            continue; /* EINTR (a stop signal): the handler is let finish */
        if (ip >= 0 && p[ip].revents) {
            ssize_t w = write(in_fd, input + sent, size - sent);
            if (w > 0)
                sent += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || sent == size) {
                close(in_fd); /* EOF for the handler (or it stopped reading: EPIPE) */
                in_fd = -1;
            }
        }
        if (ep >= 0 && p[ep].revents && !drain_stderr(err_fd, t)) {
            close(err_fd);
            err_fd = -1;
        }
        if (xp >= 0 ? p[xp].revents != 0 : exited_nowait(pid))
            break;
    }
    if (err_fd >= 0) {
        drain_stderr(err_fd, t); /* what it wrote before exiting; a child it left may hold the pipe */
        close(err_fd);
    }
    if (in_fd >= 0)
        close(in_fd);
    if (pfd >= 0)
        close(pfd);
}

/* One delivery of b to the handler. Returns 0 (with *out filled) or an
 * exit code after printing why the handler could not be run at all. */
static int run_handler(struct replay *r, const struct batch *b, unsigned attempt, struct attempt *out)
{
    char vars[6][320];
    char **env = handler_env(r, b, attempt, vars);
    if (!env)
        return cli_error(r->ctx, CLI_EXIT_FAILURE, "out of memory");
    fflush(stdout); /* the handler shares our stdout: keep the order */
    pid_t pid = 0;
    int in_fd = -1, err_fd = -1;
    int e = spawn_handler(r->a->exec, env, &pid, &in_fd, &err_fd);
    free(env);
    if (e < 0)
        return cli_error(r->ctx, CLI_EXIT_FAILURE, "running /bin/sh -c '%s': %s", r->a->exec, strerror(-e));
    struct stderr_tail t = {0};
    int timed_out;
    uint64_t deadline = r->a->timeout_ms ? cli_mono_ns() + r->a->timeout_ms * 1000000u : 0;
    supervise(pid, in_fd, err_fd, b->text, b->size, deadline, &t, &timed_out);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (t.cur_size) {
        memcpy(t.last, t.cur, t.cur_size);
        t.last[t.cur_size] = '\0';
    }
    snprintf(out->last_stderr, sizeof out->last_stderr, "%s", t.last);
    if (timed_out) {
        out->result = ATTEMPT_RETRY;
        snprintf(out->reason, sizeof out->reason, "timeout after %" PRIu64 " ms", r->a->timeout_ms);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        out->result = ATTEMPT_OK;
    } else if (WIFEXITED(status)) {
        out->result = WEXITSTATUS(status) == EX_TEMPFAIL_CODE ? ATTEMPT_RETRY : ATTEMPT_PERMANENT;
        snprintf(out->reason, sizeof out->reason, "exit %d%s", WEXITSTATUS(status),
                 WEXITSTATUS(status) == EX_TEMPFAIL_CODE ? " (EX_TEMPFAIL)" : "");
    } else {
        out->result = ATTEMPT_PERMANENT;
        snprintf(out->reason, sizeof out->reason, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    }
    return 0;
}

/* One delivery to stdout: never fails but for output errors. */
static int write_stdout(const struct replay *r, const struct batch *b)
{
    if (fwrite(b->text, 1, b->size, stdout) != b->size || fflush(stdout) != 0)
        return cli_error(r->ctx, CLI_EXIT_FAILURE, "writing output: %s", strerror(errno));
    return 0;
}

/* ------------------------------------------------------------- delivery */

enum delivery { DELIVERED, DEAD, STOPPED };

/* Records every event of b as a dead letter. Returns 0 or the exit code. */
static int record_dead(struct replay *r, const struct batch *b, const struct attempt *at, unsigned attempts)
{
    char what[96];
    describe_lsns(b, what, sizeof what);
    fprintf(stderr, "stele: replay: %s: dead letter after %u attempt%s (%s)%s%s\n", what, attempts,
            attempts == 1 ? "" : "s", at->reason, at->last_stderr[0] ? ": " : "", at->last_stderr);
    for (size_t i = 0; i < b->count; i++) {
        stele_dead_letter dl = {.lsn = b->lsn[i], .attempts = attempts, .key = b->key[i],
                                .key_size = strlen(b->key[i]), .reason = at->reason,
                                .reason_size = strlen(at->reason), .last_stderr = at->last_stderr,
                                .last_stderr_size = strlen(at->last_stderr)};
        int code = stele_dead_letter_add(r->cur, &dl);
        if (code != STELE_OK)
            return cli_fail(r->ctx, code, "recording the dead letter of LSN %" PRIu64, b->lsn[i]);
        r->dead++;
    }
    return 0;
}

/* Runs the handler on b with the retry policy until it succeeds, fails for
 * good (*out DEAD, *at and *attempts say how) or a stop signal comes during
 * a backoff (*out STOPPED). Returns 0 or the exit code of a failure that
 * ends the run. */
static int attempt_all(struct replay *r, const struct batch *b, enum delivery *out, struct attempt *at,
                       unsigned *attempts)
{
    for (unsigned attempt = 1;; attempt++) {
        int rc = run_handler(r, b, attempt, at);
        if (rc)
            return rc;
        *attempts = attempt;
        if (at->result == ATTEMPT_OK) {
            *out = DELIVERED;
            return 0;
        }
        if (at->result == ATTEMPT_PERMANENT || attempt >= r->a->max_attempts) {
            *out = DEAD;
            return 0;
        }
        uint64_t delay = backoff_delay_ms(r->a->backoff_base_ms, r->a->backoff_max_ms, attempt, &r->rng);
        char what[96];
        describe_lsns(b, what, sizeof what);
        fprintf(stderr, "stele: replay: %s: attempt %u of %" PRIu64 " failed (%s); retrying in %" PRIu64 " ms\n",
                what, attempt, r->a->max_attempts, at->reason, delay);
        r->retries++;
        if (cli_stop_requested() || cli_sleep_ms(delay)) {
            *out = STOPPED;
            return 0;
        }
    }
}

/* Event i of b as a batch of its own (pointing into b). */
static struct batch batch_single(const struct batch *b, size_t i, const char **line)
{
    /* Compact JSON has no raw newline: one line per event. The text is not
     * NUL-terminated, so the search is bounded by its size. */
    const char *end = memchr(*line, '\n', (size_t)(b->text + b->size - *line));
    struct batch one = {.text = (char *)*line, .size = (size_t)(end - *line) + 1, .lsn = &b->lsn[i],
                        .key = &b->key[i], .count = 1};
    *line = end + 1;
    return one;
}

/* A batch of several events failed for good: which of them fail? Each is
 * delivered on its own with the same policy (at least once allows the
 * redelivery), so that only the events that fail become dead letters. */
static int deliver_singly(struct replay *r, const struct batch *b, enum delivery *out, uint64_t *first_dead,
                          const struct attempt *batch_at)
{
    char what[96];
    describe_lsns(b, what, sizeof what);
    fprintf(stderr, "stele: replay: %s: the batch failed (%s); delivering its events one at a time\n", what,
            batch_at->reason);
    const char *line = b->text;
    *out = DELIVERED;
    for (size_t i = 0; i < b->count; i++) {
        struct batch one = batch_single(b, i, &line);
        struct attempt at = {0};
        unsigned attempts = 0;
        enum delivery d;
        int rc = attempt_all(r, &one, &d, &at, &attempts);
        if (rc == 0 && d == DEAD)
            rc = record_dead(r, &one, &at, attempts);
        if (rc || d == STOPPED) {
            *out = rc ? *out : STOPPED;
            return rc;
        }
        if (d == DEAD && *out == DELIVERED) {
            *out = DEAD;
            *first_dead = b->lsn[i];
        }
        if (d == DEAD && !r->a->skip_dead)
            return 0; /* stop: nothing after the dead letter */
        r->delivered += d == DELIVERED;
    }
    return 0;
}

/* Delivers b with the retry policy; *out says how it ended and, when DEAD,
 * *first_dead the lowest LSN that became a dead letter. Returns 0 or the
 * exit code of a failure that ends the run. */
static int deliver(struct replay *r, const struct batch *b, enum delivery *out, uint64_t *first_dead)
{
    *out = DELIVERED;
    if (r->a->to_stdout || r->a->dry_run) {
        int rc = write_stdout(r, b);
        r->delivered += rc ? 0 : b->count;
        return rc;
    }
    struct attempt at = {0};
    unsigned attempts = 0;
    int rc = attempt_all(r, b, out, &at, &attempts);
    if (rc || *out == STOPPED)
        return rc;
    if (*out == DELIVERED) {
        r->delivered += b->count;
        return 0;
    }
    if (b->count > 1)
        return deliver_singly(r, b, out, first_dead, &at);
    *first_dead = b->lsn[0];
    return record_dead(r, b, &at, attempts);
}

/* ------------------------------------------------------------- the loop */

static void progress(struct replay *r, int final)
{
    if (!r->progress)
        return;
    uint64_t now = cli_mono_ns();
    if (!final && now - r->progress_ns < 1000000000u)
        return;
    r->progress_ns = now;
    stele_stats st;
    uint64_t lag = stele_stats_get(r->log, &st) == STELE_OK && st.last_lsn > r->committed
                       ? st.last_lsn - r->committed : 0;
    double secs = (double)(now - r->started_ns) / 1e9;
    fprintf(stderr, "\rstele: replay: delivered %" PRIu64 " (%.0f/s), lag %" PRIu64 ", retries %" PRIu64
            ", dead letters %" PRIu64 "   %s", r->delivered, secs > 0 ? (double)r->delivered / secs : 0.0, lag,
            r->retries, r->dead, final ? "\n" : "");
}

/* Commits lsn (when it moves the cursor; never in a dry run). */
static int commit(struct replay *r, uint64_t lsn)
{
    if (r->a->dry_run || lsn <= r->committed)
        return 0;
    int code = stele_cursor_commit(r->cur, lsn);
    if (code != STELE_OK)
        return cli_fail(r->ctx, code, "committing consumer %s at LSN %" PRIu64, r->a->consumer, lsn);
    r->committed = lsn;
    return 0;
}

/* --rate: waits until delivering count more events keeps within the rate.
 * Returns 1 when a stop signal came meanwhile. */
static int pace(struct replay *r, size_t count)
{
    if (!r->a->rate)
        return 0;
    uint64_t due = r->rate_start_ns + (r->rate_count * 1000000000u) / r->a->rate;
    r->rate_count += count;
    uint64_t now = cli_mono_ns();
    return due > now ? cli_sleep_ms((due - now + 999999) / 1000000) : 0;
}

/* Delivers the gathered batch and moves the cursor. *stop is set when the run
 * must end (a stop signal, or a dead letter with --on-dead-letter stop). */
static int flush_batch(struct replay *r, struct batch *b, int *stop)
{
    if (b->count == 0)
        return 0;
    uint64_t before = b->lsn[0] - 1, last = b->lsn[b->count - 1];
    if (pace(r, b->count)) {
        *stop = 1;
        batch_clear(b);
        return commit(r, before);
    }
    enum delivery d = DELIVERED;
    uint64_t first_dead = 0;
    int rc = deliver(r, b, &d, &first_dead);
    if (rc)
        return rc;
    if (d == STOPPED) {
        *stop = 1;
        rc = commit(r, before);
    } else if (d == DEAD && !r->a->skip_dead) {
        *stop = 1;
        rc = commit(r, first_dead - 1);
        if (rc == 0)
            rc = cli_error(r->ctx, CLI_EXIT_FAILURE, "stopped at the dead letter of LSN %" PRIu64
                           " (--on-dead-letter stop); the cursor stays at %" PRIu64, first_dead, r->committed);
    } else {
        rc = commit(r, last);
    }
    batch_clear(b);
    progress(r, 0);
    return rc;
}

static int field_is(const char *want, const char *s, size_t n)
{
    return !want || (strlen(want) == n && memcmp(want, s, n) == 0);
}

/* The first LSN >= lo recorded at or after since (last + 1 if none): a binary
 * search, valid because recorded times never decrease along the log. */
static int seek_since(struct replay *r, uint64_t lo, uint64_t *out_lsn)
{
    stele_stats st;
    int code = stele_stats_get(r->log, &st);
    if (code != STELE_OK)
        return cli_fail(r->ctx, code, "reading the log's stats");
    uint64_t hi = st.last_lsn + 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        stele_record *rec;
        if ((code = stele_get(r->log, mid, &rec)) != STELE_OK)
            return cli_fail(r->ctx, code, "reading LSN %" PRIu64, mid);
        if (rec->recorded_at_ns < r->a->since)
            lo = mid + 1;
        else
            hi = mid;
        stele_record_free(rec);
    }
    *out_lsn = lo;
    return 0;
}

static int open_iter(struct replay *r, uint64_t *start, stele_iter **out_iter)
{
    const struct replay_args *a = r->a;
    int rc, code;
    if (a->from > *start)
        *start = a->from;
    if (a->since && (rc = seek_since(r, *start, start)) != 0)
        return rc;
    if (a->stream) {
        code = stele_iter_open_stream(r->log, a->stream, strlen(a->stream), 1, out_iter);
        return code == STELE_OK ? 0 : cli_fail(r->ctx, code, "reading stream %s", a->stream);
    }
    code = stele_iter_open(r->log, *start, out_iter);
    return code == STELE_OK ? 0 : cli_fail(r->ctx, code, "reading from LSN %" PRIu64, *start);
}

/* Reads, filters, batches and delivers until the end (or, with --follow, a
 * stop signal). Records the filters pass over still move the cursor. */
static int replay_loop(struct replay *r, stele_iter *iter, uint64_t start)
{
    struct batch b = {0};
    uint64_t seen = r->committed; /* every LSN up to here is handled or in b */
    int rc = 0, stop = 0;
    while (rc == 0 && !stop && !cli_stop_requested()) {
        const stele_record *rec = NULL;
        int wait = b.count || !r->a->follow ? 0 : FOLLOW_WAIT_MS;
        int code = stele_iter_next(iter, wait, &rec);
        if (code != STELE_OK) {
            rc = cli_fail(r->ctx, code, "reading after LSN %" PRIu64, seen);
            break;
        }
        if (!rec) {
            if ((rc = flush_batch(r, &b, &stop)) == 0 && !stop)
                rc = commit(r, seen);
            if (!r->a->follow)
                break;
            progress(r, 0);
            continue;
        }
        if (rec->lsn < start)
            continue; /* a stream read starts at the stream's first record */
        seen = rec->lsn;
        if (!field_is(r->a->type, rec->type, rec->type_size))
            continue;
        if (batch_add(&b, rec) != 0) {
            rc = cli_error(r->ctx, CLI_EXIT_FAILURE, "out of memory");
            break;
        }
        if (b.count >= r->a->batch)
            rc = flush_batch(r, &b, &stop);
    }
    /* A stop signal: what was gathered was not delivered; commit what was. */
    if (rc == 0 && !stop) {
        uint64_t upto = b.count ? b.lsn[0] - 1 : seen;
        rc = commit(r, upto);
    }
    batch_free(&b);
    return rc;
}

/* ----------------------------------------------------- dead-letter modes */

static json_t *json_text_or_null(const char *s, size_t n)
{
    return n ? json_string_lossy(s, n) : json_null();
}

static json_t *time_json(uint64_t ns)
{
    char t[CLI_TIME_TEXT_SIZE];
    if (!ns)
        return json_null();
    cli_time_format(ns, t, sizeof t);
    return json_string(t);
}

static int list_dead_letters(struct replay *r)
{
    stele_dead_letter *items;
    size_t n;
    int code = stele_dead_letter_list(r->cur, r->a->all, &items, &n);
    if (code != STELE_OK)
        return cli_fail(r->ctx, code, "listing the dead letters of consumer %s", r->a->consumer);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const stele_dead_letter *d = &items[i];
        json_t *o = json_object();
        if (!o) {
            rc = cli_error(r->ctx, CLI_EXIT_FAILURE, "out of memory");
            break;
        }
        json_object_set_new(o, "consumer", json_string(r->a->consumer));
        json_object_set_new(o, "lsn", json_integer((json_int_t)d->lsn));
        json_object_set_new(o, "key", json_text_or_null(d->key, d->key_size));
        json_object_set_new(o, "reason", json_string_lossy(d->reason, d->reason_size));
        json_object_set_new(o, "attempts", json_integer(d->attempts));
        json_object_set_new(o, "last_stderr", json_text_or_null(d->last_stderr, d->last_stderr_size));
        json_object_set_new(o, "dead_at", time_json(d->dead_at_ns));
        json_object_set_new(o, "resolved_at", time_json(d->resolved_at_ns));
        if (json_write_line(stdout, o) != 0)
            rc = cli_error(r->ctx, CLI_EXIT_FAILURE, "out of memory");
        json_decref(o);
    }
    stele_dead_letter_free(items);
    return rc;
}

/* Delivers one dead letter again; marks it resolved when that works. */
static int redrive_one(struct replay *r, uint64_t lsn, int *left)
{
    stele_record *rec;
    int code = stele_get(r->log, lsn, &rec);
    if (code != STELE_OK)
        return cli_fail(r->ctx, code, "reading LSN %" PRIu64 " to redrive it", lsn);
    struct batch b = {0};
    int rc = batch_add(&b, rec) ? cli_error(r->ctx, CLI_EXIT_FAILURE, "out of memory") : 0;
    stele_record_free(rec);
    enum delivery d = DELIVERED;
    uint64_t first_dead = 0;
    if (rc == 0)
        rc = deliver(r, &b, &d, &first_dead);
    if (rc == 0 && d == DELIVERED) {
        if ((code = stele_dead_letter_resolve(r->cur, lsn)) != STELE_OK)
            rc = cli_fail(r->ctx, code, "marking the dead letter of LSN %" PRIu64 " resolved", lsn);
    } else if (rc == 0) {
        (*left)++;
    }
    batch_free(&b);
    return rc;
}

static int redrive(struct replay *r)
{
    stele_dead_letter *items;
    size_t n;
    int code = stele_dead_letter_list(r->cur, 0, &items, &n);
    if (code != STELE_OK)
        return cli_fail(r->ctx, code, "listing the dead letters of consumer %s", r->a->consumer);
    int rc = 0, left = 0;
    size_t i = 0;
    for (; i < n && rc == 0 && !cli_stop_requested(); i++)
        rc = redrive_one(r, items[i].lsn, &left);
    left += (int)(n - i);
    stele_dead_letter_free(items);
    if (rc == 0 && left && !cli_stop_requested())
        rc = cli_error(r->ctx, CLI_EXIT_FAILURE, "%d dead letter%s of consumer %s could not be delivered", left,
                       left == 1 ? "" : "s", r->a->consumer);
    return rc;
}

/* ------------------------------------------------------------- the command */

static int run(struct replay *r, const char *dir)
{
    const struct replay_args *a = r->a;
    /* Read-only in every mode: the cursor and dead letters are the
     * consumer's (its own lock), not the log writer's, so replay runs beside
     * the process that writes the log and --follow sees its appends. */
    int rc = cli_open_read_only(r->ctx, dir, &r->log);
    if (rc)
        return rc;
    stele_iter *iter = NULL;
    int code = stele_cursor_open(r->log, a->consumer, &r->cur);
    if (code != STELE_OK) {
        rc = cli_fail(r->ctx, code, "opening consumer %s", a->consumer);
        goto done;
    }
    /* Delivering needs the consumer to itself: a commit that could not be
     * made would redeliver, so find out before delivering anything. */
    if (!a->dead_letters && !a->dry_run && (code = stele_cursor_exclusive(r->cur)) != STELE_OK) {
        rc = cli_fail(r->ctx, code, "replaying consumer %s", a->consumer);
        goto done;
    }
    if ((code = stele_cursor_position(r->cur, &r->committed)) != STELE_OK) {
        rc = cli_fail(r->ctx, code, "reading consumer %s", a->consumer);
        goto done;
    }
    /* SIGPIPE ignored: a handler that does not read its stdin is an EPIPE, not our death. */
    cli_stop_install(1);
    r->started_ns = r->rate_start_ns = cli_mono_ns();
    r->progress = !a->dead_letters && isatty(2);
    if (a->dead_letters) {
        rc = list_dead_letters(r);
    } else if (a->redrive) {
        rc = redrive(r);
    } else {
        uint64_t start = r->committed + 1;
        if ((rc = open_iter(r, &start, &iter)) == 0)
            rc = replay_loop(r, iter, start);
    }
    progress(r, 1);
done:
    stele_iter_close(iter);
    stele_cursor_close(r->cur);
    return cli_close_log(r->ctx, r->log, dir, rc);
}

int cmd_replay(struct cli_ctx *ctx, int argc, char **argv)
{
    struct replay_args a = {.max_attempts = 5, .backoff_base_ms = 100, .backoff_max_ms = 30000};
    const char *dir;
    int c, rc;
    ctx->usage = replay_synopsis;
    while ((c = cli_next_opt(ctx, argc, argv, replay_options)) != -1) {
        if (c == CLI_OPT_HELP) {
            for (size_t i = 0; i < sizeof replay_manual / sizeof replay_manual[0]; i++)
                fputs(replay_manual[i], stdout);
            return CLI_EXIT_OK;
        }
        if (c == CLI_OPT_INVALID)
            return CLI_EXIT_USAGE;
        if ((rc = replay_option(ctx, c, &a)) != 0)
            return rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0 || (rc = check_args(ctx, &a)) != 0)
        return rc;
    struct replay r = {.ctx = ctx, .a = &a};
    uint64_t now = cli_now_ns();
    r.rng = a.has_seed ? a.seed : now ^ ((uint64_t)getpid() << 32);
    return run(&r, dir);
}
