/*
 * plot.c - --plot FILE.svg: records/s against appender threads, one line per
 * engine, drawn by gnuplot from plot.gp (compiled in, see CMakeLists.txt, so
 * the binary works wherever it is copied).
 *
 * gnuplot is a run-time helper, not a build dependency: when it is missing
 * the bench says so and skips the plot; the numbers are printed anyway.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "plot_gp.h"

#define GNUPLOT "gnuplot"

int plot_available(void)
{
    const char *path = getenv("PATH");
    char candidate[4096];
    while (path && *path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && snprintf(candidate, sizeof candidate, "%.*s/" GNUPLOT, (int)n, path) < (int)sizeof candidate &&
            access(candidate, X_OK) == 0)
            return 1;
        path += n + (path[n] == ':');
    }
    return 0;
}

/* Writes s as a single-quoted gnuplot string (a quote inside is doubled). */
static void put_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

/* One block per engine, in the order engines were first measured, rows by thread count. */
static void write_data(FILE *f, const struct result *results, int count)
{
    int blocks = 0;
    for (int i = 0; i < count; i++) {
        int first = 1;
        for (int j = 0; j < i && first; j++)
            first = strcmp(results[j].engine, results[i].engine) != 0;
        if (!first)
            continue;
        /* Two blank lines separate blocks; none after the last, which gnuplot would count as a block. */
        fprintf(f, "%s\"%s\"\n", blocks++ ? "\n\n" : "", results[i].engine);
        for (int threads = 1; threads <= BENCH_THREADS_MAX; threads++)
            for (int j = i; j < count; j++)
                if (results[j].threads == threads && strcmp(results[j].engine, results[i].engine) == 0)
                    fprintf(f, "%d %.0f %.0f %.0f\n", threads, results[j].median.records_per_s,
                            results[j].records_per_s_min, results[j].records_per_s_max);
    }
}

static int run_gnuplot(const struct config *cfg, const char *data_path)
{
    FILE *gp = popen(GNUPLOT, "w");
    if (!gp) {
        fprintf(stderr, "stele-bench: plot: cannot run %s: %s\n", GNUPLOT, strerror(errno));
        return -1;
    }
    char title[256];
    snprintf(title, sizeof title, "stele-bench: %zu-byte records, durability %s, %g s x %d run%s", cfg->record_size,
             durability_name(cfg->durability), cfg->duration_s, cfg->runs, cfg->runs == 1 ? "" : "s");
    fputs("datafile = ", gp);
    put_quoted(gp, data_path);
    fputs("\noutfile = ", gp);
    put_quoted(gp, cfg->plot_path);
    fputs("\nplottitle = ", gp);
    put_quoted(gp, title);
    fprintf(gp, "\n%s", PLOT_GP);
    int status = pclose(gp);
    if (status != 0) {
        fprintf(stderr, "stele-bench: plot: %s failed (status %d)\n", GNUPLOT,
                WIFEXITED(status) ? WEXITSTATUS(status) : status);
        return -1;
    }
    return 0;
}

int plot_write(const struct config *cfg, const struct result *results, int result_count)
{
    if (!plot_available())
        return 0; /* main() said so before the runs */
    const char *tmp = getenv("TMPDIR");
    char data_path[4096];
    snprintf(data_path, sizeof data_path, "%s/stele-bench-plot.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(data_path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        fprintf(stderr, "stele-bench: plot: %s: %s\n", data_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    write_data(f, results, result_count);
    int rc = fclose(f) == 0 ? run_gnuplot(cfg, data_path) : -1;
    unlink(data_path);
    if (rc == 0)
        fprintf(stderr, "stele-bench: plot written to %s\n", cfg->plot_path);
    return rc;
}
