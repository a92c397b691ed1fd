/*
 * stop.c - how the long-running commands (read --follow, replay, relay,
 * inbox, deliver) learn that they should stop, and the monotonic clock
 * they time their waits with.
 *
 * SIGINT and SIGTERM set one flag, the only mutable global of the tool. The
 * handlers are installed without SA_RESTART, so a blocking wait returns
 * early with EINTR and the loop sees the flag.
 */
#include <signal.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static volatile sig_atomic_t stop_flag;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

void cli_stop_install(int ignore_sigpipe)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (ignore_sigpipe)
        signal(SIGPIPE, SIG_IGN);
}

int cli_stop_requested(void)
{
    return stop_flag != 0;
}

uint64_t cli_mono_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int cli_sleep_ms(uint64_t ms)
{
    uint64_t end = cli_mono_ns() + ms * 1000000u;
    while (!cli_stop_requested()) {
        uint64_t now = cli_mono_ns();
        if (now >= end)
            return 0;
        /* In slices of at most 50 ms: with libnats, the signal may be taken
         * by another thread and not interrupt this one's sleep. */
        uint64_t left = end - now < 50000000u ? end - now : 50000000u;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left};
        nanosleep(&ts, NULL);
    }
    return 1;
}
