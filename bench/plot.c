/*
 * plot.c - --plot FILE.svg: records/s against appender threads, one line per
 * engine (stele and every peer measured), written as an SVG file by the
 * bench itself: no gnuplot or other program is needed, and any browser
 * shows it.
 *
 * Both axes are logarithmic (threads in powers of two, records/s in
 * decades), since the engines differ by orders of magnitude. Each point is
 * the median run; a vertical bar spans the min to max run.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define SVG_WIDTH 960
#define SVG_HEIGHT 560
#define MARGIN_LEFT 80
#define MARGIN_RIGHT 250             /* the legend */
#define MARGIN_TOP 50
#define MARGIN_BOTTOM 60
#define ENGINES_MAX (BENCH_PEERS_MAX + 1)

static const char *const colours[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                      "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39"};

struct axes {
    double x_lo, x_hi;               /* log2 of threads */
    double y_lo, y_hi;               /* log10 of records/s */
};

static double px(const struct axes *a, int threads)
{
    double w = SVG_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    return MARGIN_LEFT + (log2((double)threads) - a->x_lo) / (a->x_hi - a->x_lo) * w;
}

static double py(const struct axes *a, double rps)
{
    double h = SVG_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    double v = rps > 0 ? log10(rps) : a->y_lo;
    return SVG_HEIGHT - MARGIN_BOTTOM - (v - a->y_lo) / (a->y_hi - a->y_lo) * h;
}

/* Text with &, < and > escaped for XML. */
static void put_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else
            fputc(*s, f);
    }
}

/* "500", "20k", "1.5M": a tick label. */
static void format_rate(char *buf, size_t size, double v)
{
    if (v >= 1e6)
        snprintf(buf, size, "%gM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, size, "%gk", v / 1e3);
    else
        snprintf(buf, size, "%g", v);
}

/* The engines in the order first measured; returns their count. */
static int engine_list(const struct result *results, int count, const char **engines)
{
    int n = 0;
    for (int i = 0; i < count; i++) {
        int seen = 0;
        for (int j = 0; j < n && !seen; j++)
            seen = strcmp(engines[j], results[i].engine) == 0;
        if (!seen && n < ENGINES_MAX)
            engines[n++] = results[i].engine;
    }
    return n;
}

static struct axes axes_of(const struct result *results, int count)
{
    int t_lo = BENCH_THREADS_MAX, t_hi = 1;
    double r_lo = 1e18, r_hi = 0;
    for (int i = 0; i < count; i++) {
        t_lo = results[i].threads < t_lo ? results[i].threads : t_lo;
        t_hi = results[i].threads > t_hi ? results[i].threads : t_hi;
        double lo = results[i].records_per_s_min, hi = results[i].records_per_s_max;
        if (lo > 0 && lo < r_lo)
            r_lo = lo;
        if (hi > r_hi)
            r_hi = hi;
    }
    struct axes a = {log2((double)t_lo), log2((double)t_hi), 0, 1};
    if (a.x_hi <= a.x_lo) {
        a.x_lo -= 1;
        a.x_hi += 1;
    }
    if (r_hi > 0 && r_lo <= r_hi) {
        a.y_lo = floor(log10(r_lo));
        a.y_hi = ceil(log10(r_hi));
        if (a.y_hi <= a.y_lo)
            a.y_hi = a.y_lo + 1;
    }
    return a;
}

static void write_grid(FILE *f, const struct axes *a, const struct result *results, int count)
{
    int x0 = MARGIN_LEFT, x1 = SVG_WIDTH - MARGIN_RIGHT, y0 = MARGIN_TOP, y1 = SVG_HEIGHT - MARGIN_BOTTOM;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", x0, y0,
            x1 - x0, y1 - y0);
    /* y: 1, 2 and 5 times each power of ten in range, labelled. */
    for (int e = (int)a->y_lo; e <= (int)a->y_hi; e++)
        for (int m = 1; m <= 5; m += m == 1 ? 1 : 3) {
            double v = m * pow(10, e), y = py(a, v);
            if (log10(v) > a->y_hi + 1e-9)
                continue;
            char label[32];
            format_rate(label, sizeof label, v);
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\"/>\n", x0, y, x1, y,
                    m == 1 ? "#bbb" : "#e4e4e4");
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" dominant-baseline=\"middle\">%s</text>\n",
                    x0 - 6, y, label);
        }
    /* x: every thread count measured. */
    for (int i = 0; i < count; i++) {
        int first = 1;
        for (int j = 0; j < i && first; j++)
            first = results[j].threads != results[i].threads;
        if (!first)
            continue;
        double x = px(a, results[i].threads);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e4e4e4\"/>\n", x, y0, x, y1);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x, y1 + 18, results[i].threads);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">appender threads</text>\n", (x0 + x1) / 2,
            SVG_HEIGHT - 16);
    fprintf(f, "<text transform=\"translate(18,%d) rotate(-90)\" text-anchor=\"middle\">records/s (median run; "
               "bars: min to max)</text>\n", (y0 + y1) / 2);
}

/* One engine: its bars, its line through the medians by thread count, its points and its legend entry. */
static void write_engine(FILE *f, const struct axes *a, const struct result *results, int count, const char *engine,
                         const char *colour, int legend_row)
{
    fprintf(f, "<g stroke=\"%s\" fill=\"%s\">\n<polyline fill=\"none\" stroke-width=\"2\" points=\"", colour, colour);
    for (int threads = 1; threads <= BENCH_THREADS_MAX; threads++)
        for (int i = 0; i < count; i++)
            if (results[i].threads == threads && strcmp(results[i].engine, engine) == 0)
                fprintf(f, "%.1f,%.1f ", px(a, threads), py(a, results[i].median.records_per_s));
    fprintf(f, "\"/>\n");
    for (int i = 0; i < count; i++) {
        if (strcmp(results[i].engine, engine) != 0)
            continue;
        double x = px(a, results[i].threads);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, py(a, results[i].records_per_s_min),
                x, py(a, results[i].records_per_s_max));
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"><title>", x, py(a, results[i].median.records_per_s));
        put_text(f, engine);
        fprintf(f, ", %d threads: %.0f records/s</title></circle>\n", results[i].threads,
                results[i].median.records_per_s);
    }
    int lx = SVG_WIDTH - MARGIN_RIGHT + 16, ly = MARGIN_TOP + 10 + legend_row * 22;
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke-width=\"2\"/>\n", lx, ly, lx + 24, ly);
    fprintf(f, "<text x=\"%d\" y=\"%d\" stroke=\"none\" fill=\"#000\" dominant-baseline=\"middle\">", lx + 32, ly);
    put_text(f, engine);
    fprintf(f, "</text>\n</g>\n");
}

int plot_write(const struct config *cfg, const struct result *results, int result_count)
{
    FILE *f = fopen(cfg->plot_path, "w");
    if (!f) {
        fprintf(stderr, "stele-bench: plot: %s: %s\n", cfg->plot_path, strerror(errno));
        return -1;
    }
    struct axes a = axes_of(results, result_count);
    const char *engines[ENGINES_MAX];
    int engine_count = engine_list(results, result_count, engines);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"13\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            SVG_WIDTH, SVG_HEIGHT, SVG_WIDTH, SVG_HEIGHT);
    fprintf(f, "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"15\">stele-bench: %zu-byte records, "
               "durability %s, %s, %g s x %d run%s</text>\n",
            (MARGIN_LEFT + SVG_WIDTH - MARGIN_RIGHT) / 2, cfg->record_size, durability_name(cfg->durability),
            cfg->keys ? "keyed" : "unkeyed", cfg->duration_s, cfg->runs, cfg->runs == 1 ? "" : "s");
    write_grid(f, &a, results, result_count);
    for (int e = 0; e < engine_count; e++)
        write_engine(f, &a, results, result_count, engines[e], colours[e % (sizeof colours / sizeof colours[0])], e);
    fprintf(f, "</svg>\n");
    if (ferror(f) | (fclose(f) != 0)) {
        fprintf(stderr, "stele-bench: plot: writing %s: %s\n", cfg->plot_path, strerror(errno));
        return -1;
    }
    fprintf(stderr, "stele-bench: plot written to %s\n", cfg->plot_path);
    return 0;
}
