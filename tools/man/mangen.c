/*
 * mangen.c - writes the manual pages of the `stele` command from its own
 * --help text, at build time, so that `man stele-CMD` and `stele CMD --help`
 * can never disagree (tests/install/check_install.sh renders every page with
 * man and compares it with --help).
 *
 *   stele-mangen STELE OUTDIR VERSION
 *
 * runs `STELE --help` (the list of commands: its lines "  stele CMD ...") and
 * `STELE CMD --help` for each, and writes OUTDIR/stele.1 and
 * OUTDIR/stele-CMD.1. A page is the help text unchanged: its first lines (the
 * synopsis, after "usage: ") under SYNOPSIS, each line in capitals
 * (DESCRIPTION, OPTIONS, EXIT STATUS...) a section heading, every other line
 * kept as it is (no filling, roff's special characters escaped). Only the
 * NAME line's summary and the SEE ALSO section come from here: the table
 * below, which must name every command --help lists (a command without a
 * summary fails the build rather than going without a page).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_SIZE_MAX 4096
#define COMMAND_COUNT_MAX 64

static const struct {
    const char *name;
    const char *summary;
} summaries[] = {
    {"init", "create a log"},
    {"append", "append an event, or event objects from stdin, idempotently"},
    {"intent", "record an action whose outcome is not known yet"},
    {"resolve", "record the outcome of an intent"},
    {"status", "the state of a key: event, pending, confirmed, failed or compensated"},
    {"pending", "list the intents still without an outcome, oldest first"},
    {"compensate", "reverse records by appending compensations"},
    {"backfill", "import historic events, each once"},
    {"get", "print one record, by LSN or by key"},
    {"read", "print records in LSN order, filtered"},
    {"replay", "deliver events to a consumer at least once, with a durable cursor"},
    {"verify", "check every byte of a log"},
    {"prove", "print an inclusion or consistency proof from the log's Merkle tree"},
    {"keygen", "make an Ed25519 key pair for signing checkpoints"},
    {"checkpoint", "print a signed checkpoint of the log's Merkle tree, or verify one"},
    {"audit", "check that a log still holds the history a signed checkpoint committed to"},
    {"stats", "print a log's statistics, as JSON or for Prometheus"},
    {"dump", "list a log's segments, batches and records with offsets"},
    {"backup", "make an online, consistent, verified copy of a log"},
    {"dict", "train a zstd dictionary for a log's batches"},
    {"relay", "publish a log's events into a NATS JetStream stream, exactly once"},
    {"inbox", "append a JetStream stream's messages to a log, each once"},
    {"serve", "serve a log's metrics, health and status over HTTP, read-only"},
    {"deliver", "POST a log's events to an HTTP endpoint as signed webhooks, at least once"},
};

static const char *summary_of(const char *name)
{
    for (size_t i = 0; i < sizeof summaries / sizeof summaries[0]; i++)
        if (strcmp(summaries[i].name, name) == 0)
            return summaries[i].summary;
    return NULL;
}

/* The help text of `STELE ARG...` in a malloc'd buffer (NULL on failure, said). */
static char *help_text(const char *stele, const char *cmd)
{
    char shell[LINE_SIZE_MAX];
    int n = snprintf(shell, sizeof shell, "'%s' %s --help", stele, cmd ? cmd : "");
    if (n < 0 || (size_t)n >= sizeof shell || strchr(stele, '\'')) {
        fprintf(stderr, "stele-mangen: %s: path too long or holds a quote\n", stele);
        return NULL;
    }
    FILE *p = popen(shell, "r");
    if (!p) {
        fprintf(stderr, "stele-mangen: running %s: %s\n", shell, strerror(errno));
        return NULL;
    }
    size_t size = 0, capacity = 1 << 16;
    char *text = malloc(capacity);
    size_t got;
    while (text && (got = fread(text + size, 1, capacity - 1 - size, p)) > 0) {
        size += got;
        if (size == capacity - 1) {
            char *bigger = realloc(text, capacity * 2);
            if (!bigger) {
                free(text);
                text = NULL;
            }
            text = bigger;
            capacity *= 2;
        }
    }
    int status = pclose(p);
    if (!text || status != 0) {
        fprintf(stderr, "stele-mangen: %s: %s\n", shell, text ? "exit status not 0" : "out of memory");
        free(text);
        return NULL;
    }
    text[size] = '\0';
    return text;
}

/* A line of help text as roff, in no-fill mode: backslashes escaped, a
 * leading '.' or '\'' (a request) neutralised. */
static void put_line(FILE *out, const char *line, size_t len)
{
    if (len > 0 && (line[0] == '.' || line[0] == '\''))
        fputs("\\&", out);
    for (size_t i = 0; i < len; i++) {
        if (line[i] == '\\')
            fputs("\\e", out);
        else
            fputc(line[i], out);
    }
    fputc('\n', out);
}

/* A section heading: a line of capitals, spaces and parentheses. */
static int is_heading(const char *line, size_t len)
{
    if (len == 0 || line[0] < 'A' || line[0] > 'Z')
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((line[i] >= 'A' && line[i] <= 'Z') || line[i] == ' ' || line[i] == '(' || line[i] == ')'))
            return 0;
    return 1;
}

/* The body of a page: the help text, "usage: " taken off its first line. */
static void put_body(FILE *out, const char *text)
{
    if (strncmp(text, "usage: ", 7) == 0)
        text += 7;
    fputs(".SH SYNOPSIS\n.nf\n", out);
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *next = end ? end + 1 : line + len;
        /* A blank line before a heading is the heading's own space. */
        const char *after = strchr(next, '\n');
        if (len == 0 && *next && is_heading(next, after ? (size_t)(after - next) : strlen(next))) {
            line = next;
            continue;
        }
        if (is_heading(line, len)) {
            fputs(".fi\n.SH ", out);
            put_line(out, line, len);
            fputs(".nf\n", out);
        } else {
            put_line(out, line, len);
        }
        line = next;
    }
    fputs(".fi\n", out);
}

static int write_page(const char *dir, const char *version, const char *cmd, const char *summary,
                      const char *text, char names[][32], size_t name_count)
{
    char path[LINE_SIZE_MAX];
    int n = cmd ? snprintf(path, sizeof path, "%s/stele-%s.1", dir, cmd) : snprintf(path, sizeof path, "%s/stele.1", dir);
    if (n < 0 || (size_t)n >= sizeof path) {
        fprintf(stderr, "stele-mangen: %s: path too long\n", dir);
        return -1;
    }
    FILE *out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "stele-mangen: create %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(out, ".\\\" Generated by tools/man/mangen.c from `stele%s%s --help`: edit the help text, not this.\n",
            cmd ? " " : "", cmd ? cmd : "");
    /* The title is the page's name in capitals: STELE-REPLAY. */
    fputs(".TH STELE", out);
    if (cmd) {
        fputc('-', out);
        for (const char *c = cmd; *c; c++)
            fputc(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c, out);
    }
    fprintf(out, " 1 \"\" \"stele %s\" \"stele manual\"\n.SH NAME\n", version);
    fprintf(out, "stele%s%s \\- %s\n", cmd ? "-" : "", cmd ? cmd : "", summary);
    put_body(out, text);
    fputs(".SH SEE ALSO\n", out);
    if (cmd) {
        fputs(".BR stele (1)\n", out);
    } else {
        for (size_t i = 0; i < name_count; i++)
            fprintf(out, ".BR stele-%s (1)%s\n", names[i], i + 1 < name_count ? "," : "");
    }
    if (fclose(out) != 0) {
        fprintf(stderr, "stele-mangen: write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The commands `stele --help` lists, in its order, each once. */
static size_t list_commands(const char *text, char names[][32])
{
    size_t count = 0;
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, "  stele ", 8) != 0)
            continue;
        size_t len = strcspn(line + 8, " \n");
        if (len == 0 || len >= 32 || count == COMMAND_COUNT_MAX)
            continue;
        int seen = 0;
        for (size_t i = 0; i < count; i++)
            seen |= strncmp(names[i], line + 8, len) == 0 && names[i][len] == '\0';
        if (!seen) {
            memcpy(names[count], line + 8, len);
            names[count++][len] = '\0';
        }
    }
    return count;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: stele-mangen STELE OUTDIR VERSION\n");
        return 2;
    }
    const char *stele = argv[1], *dir = argv[2], *version = argv[3];
    char names[COMMAND_COUNT_MAX][32];
    char *text = help_text(stele, NULL);
    if (!text)
        return 1;
    size_t count = list_commands(text, names);
    int rc = count == 0 ? -1 : 0;
    if (count == 0)
        fprintf(stderr, "stele-mangen: `%s --help` lists no command\n", stele);
    if (rc == 0)
        rc = write_page(dir, version, NULL, "an embeddable, immutable event log: the command line", text, names, count);
    free(text);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        const char *summary = summary_of(names[i]);
        if (!summary) {
            fprintf(stderr, "stele-mangen: command '%s' has no summary in tools/man/mangen.c\n", names[i]);
            return 1;
        }
        text = help_text(stele, names[i]);
        if (!text)
            return 1;
        rc = write_page(dir, version, names[i], summary, text, names, count);
        free(text);
    }
    return rc == 0 ? 0 : 1;
}
