/*
 * parse.c - the value syntaxes of the `stele` command line: decimal numbers,
 * sizes with binary suffixes, durations, and RFC 3339 times (PRODUCT.md,
 * "Command line": times are RFC 3339 UTC with nanoseconds).
 *
 * Every parser is strict: the whole text must match, overflow is an error,
 * and nothing is guessed (a bare non-zero duration has no unit, so it is
 * rejected rather than read as seconds or nanoseconds).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"

#define NS_PER_SEC ((uint64_t)1000000000)

/* Reads a run of decimal digits into *out; returns how many characters were
 * consumed (0 = none, or overflow). */
static size_t read_digits(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; isdigit((unsigned char)s[i]); i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return i;
}

int cli_parse_u64(const char *text, uint64_t *out)
{
    uint64_t v;
    size_t n = read_digits(text, &v);
    if (n == 0 || text[n] != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Sizes are in bytes with an optional binary multiplier: 65536, 64K, 64KiB, 1M, 4G. */
int cli_parse_size(const char *text, uint64_t *out_bytes)
{
    static const struct { const char *suffix; uint64_t mult; } units[] = {
        {"", 1}, {"b", 1},
        {"k", 1ull << 10}, {"kb", 1ull << 10}, {"kib", 1ull << 10},
        {"m", 1ull << 20}, {"mb", 1ull << 20}, {"mib", 1ull << 20},
        {"g", 1ull << 30}, {"gb", 1ull << 30}, {"gib", 1ull << 30},
        {"t", 1ull << 40}, {"tb", 1ull << 40}, {"tib", 1ull << 40},
    };
    uint64_t v;
    size_t n = read_digits(text, &v);
    if (n == 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(text + n, units[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / units[i].mult)
            return -1;
        *out_bytes = v * units[i].mult;
        return 0;
    }
    return -1;
}

/* The unit at s (longest match first so "ms" is not read as "m"); 0 if none. */
static uint64_t duration_unit(const char *s, size_t *out_len)
{
    static const struct { const char *name; uint64_t ns; } units[] = {
        {"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", NS_PER_SEC},
        {"m", 60 * NS_PER_SEC}, {"h", 3600 * NS_PER_SEC}, {"d", 86400 * NS_PER_SEC},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        size_t len = strlen(units[i].name);
        if (strncmp(s, units[i].name, len) == 0) {
            *out_len = len;
            return units[i].ns;
        }
    }
    return 0;
}

/* Durations are one or more <integer><unit> terms (ns us ms s m h d), e.g.
 * "24h", "1h30m", "500ms"; "0" alone needs no unit. */
int cli_parse_duration(const char *text, uint64_t *out_ns)
{
    if (strcmp(text, "0") == 0) {
        *out_ns = 0;
        return 0;
    }
    uint64_t total = 0;
    const char *s = text;
    do {
        uint64_t v, unit;
        size_t n = read_digits(s, &v), len = 0;
        if (n == 0)
            return -1;
        s += n;
        unit = duration_unit(s, &len);
        if (unit == 0 || v > UINT64_MAX / unit || total > UINT64_MAX - v * unit)
            return -1;
        total += v * unit;
        s += len;
    } while (*s != '\0');
    *out_ns = total;
    return 0;
}

/* Reads exactly width digits into *out; -1 if they are not all digits. */
static int fixed_digits(const char *s, int width, int *out)
{
    int v = 0;
    for (int i = 0; i < width; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* "YYYY-MM-DDTHH:MM:SS" into tm (validated field by field); -1 if malformed. */
static int parse_date_time(const char *s, struct tm *tm)
{
    int y, mo, d, h, mi, sec;
    if (fixed_digits(s, 4, &y) || s[4] != '-' || fixed_digits(s + 5, 2, &mo) || s[7] != '-' ||
        fixed_digits(s + 8, 2, &d) || !strchr("Tt ", s[10]) || s[10] == '\0' ||
        fixed_digits(s + 11, 2, &h) || s[13] != ':' || fixed_digits(s + 14, 2, &mi) ||
        s[16] != ':' || fixed_digits(s + 17, 2, &sec))
        return -1;
    /* RFC 3339 allows second 60 (a leap second); timegm folds it into the next minute. */
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
        return -1;
    memset(tm, 0, sizeof *tm);
    tm->tm_year = y - 1900;
    tm->tm_mon = mo - 1;
    tm->tm_mday = d;
    tm->tm_hour = h;
    tm->tm_min = mi;
    tm->tm_sec = sec;
    return 0;
}

/* ".fraction" (optional): digits beyond the ninth are dropped (truncation, so
 * a time never moves past the instant written). Returns characters consumed. */
static int parse_fraction(const char *s, uint64_t *out_ns)
{
    *out_ns = 0;
    if (s[0] != '.')
        return 0;
    int i = 1;
    uint64_t scale = NS_PER_SEC / 10;
    for (; isdigit((unsigned char)s[i]); i++, scale /= 10)
        *out_ns += (uint64_t)(s[i] - '0') * scale;
    return i == 1 ? -1 : i;
}

/* "Z" or "±hh:mm" (the whole rest of the text) into seconds east of UTC. */
static int parse_offset(const char *s, int64_t *out_sec)
{
    int h, m;
    if ((s[0] == 'Z' || s[0] == 'z') && s[1] == '\0') {
        *out_sec = 0;
        return 0;
    }
    if ((s[0] != '+' && s[0] != '-') || fixed_digits(s + 1, 2, &h) || s[3] != ':' ||
        fixed_digits(s + 4, 2, &m) || s[6] != '\0' || h > 23 || m > 59)
        return -1;
    *out_sec = (s[0] == '-' ? -1 : 1) * (int64_t)(h * 3600 + m * 60);
    return 0;
}

/* RFC 3339: 2026-11-28T17:19:23Z, 2026-11-28T17:19:23.123456789Z,
 * 2026-11-28T18:19:23.5+01:00. Times before 1970 or past what u64 ns holds
 * (2554) are rejected. */
int cli_parse_time(const char *text, uint64_t *out_ns)
{
    struct tm tm;
    uint64_t frac_ns;
    int64_t offset_sec;
    if (strlen(text) < 20 || parse_date_time(text, &tm) != 0)
        return -1;
    int n = parse_fraction(text + 19, &frac_ns);
    if (n < 0 || parse_offset(text + 19 + n, &offset_sec) != 0)
        return -1;
    time_t local = timegm(&tm);
    if (local == (time_t)-1)
        return -1;
    int64_t utc = (int64_t)local - offset_sec;
    if (utc < 0 || (uint64_t)utc > (UINT64_MAX - frac_ns) / NS_PER_SEC)
        return -1;
    *out_ns = (uint64_t)utc * NS_PER_SEC + frac_ns;
    return 0;
}

uint64_t cli_now_ns(void)
{
    struct timespec ts;
    /* CLOCK_REALTIME cannot fail with a valid pointer; a zero time would only
     * make every age look large, never hide a record. */
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

void cli_time_format(uint64_t ns, char *dst, size_t dst_capacity)
{
    time_t sec = (time_t)(ns / NS_PER_SEC);
    struct tm tm;
    char date[32];
    if (!gmtime_r(&sec, &tm) || strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(dst, dst_capacity, "?");
        return;
    }
    snprintf(dst, dst_capacity, "%s.%09" PRIu64 "Z", date, ns % NS_PER_SEC);
}

/* Hours are the largest unit so that the default window reads "24h". */
void cli_duration_format(uint64_t ns, char *dst, size_t dst_capacity)
{
    static const struct { const char *name; uint64_t ns; } units[] = {
        {"h", 3600 * NS_PER_SEC}, {"m", 60 * NS_PER_SEC}, {"s", NS_PER_SEC}, {"ms", 1000000}, {"us", 1000}, {"ns", 1},
    };
    if (ns == 0) {
        snprintf(dst, dst_capacity, "0");
        return;
    }
    size_t i = 0;
    while (ns % units[i].ns != 0)
        i++;
    snprintf(dst, dst_capacity, "%" PRIu64 "%s", ns / units[i].ns, units[i].name);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
size_t cli_utf8_sequence(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    if (s[0] < 0x80)
        return 1;
    size_t len = 0;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* Overlong forms, surrogates and code points past U+10FFFF. */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return len;
}

int cli_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0, len; i < n; i += len)
        if ((len = cli_utf8_sequence(s + i, n - i)) == 0)
            return 0;
    return 1;
}

/* See cli.h. */
void cli_hex(const uint8_t *src, size_t n, char *dst)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = digits[src[i] >> 4];
        dst[2 * i + 1] = digits[src[i] & 15];
    }
    dst[2 * n] = '\0';
}
