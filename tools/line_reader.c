/*
 * line_reader.c - buffered lines from a descriptor with a non-blocking "is a
 * line ready?" question (see line_reader.h for why stdio will not do).
 */
#include "line_reader.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The first buffer; it doubles while a line does not fit. */
#define LINE_BUFFER_SIZE_MIN (64u * 1024u)

void line_reader_init(struct line_reader *r, int fd)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
}

void line_reader_free(struct line_reader *r)
{
    free(r->buf);
    r->buf = NULL;
}

/* Would a read return at once? Errors count as yes, so read() reports them. */
static int readable_now(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    do
        n = poll(&p, 1, 0);
    while (n < 0 && errno == EINTR);
    return n != 0;
}

/* Moves the unread bytes to the front and grows the buffer when it is full. */
static int make_room(struct line_reader *r)
{
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end < r->cap)
        return 0;
    size_t cap = r->cap ? r->cap * 2 : LINE_BUFFER_SIZE_MIN;
    char *p = realloc(r->buf, cap);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    r->buf = p;
    r->cap = cap;
    return 0;
}

/* One read(2) into the buffer; EINTR is retried, 0 bytes means end of input. */
static int fill(struct line_reader *r)
{
    if (make_room(r) != 0)
        return -1;
    ssize_t n;
    do
        n = read(r->fd, r->buf + r->end, r->cap - r->end);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0)
        r->eof = 1;
    r->end += (size_t)n;
    return 0;
}

/* Hands out buf[start, line_end) and consumes through next (one past the '\n'). */
static enum line_result take(struct line_reader *r, char *line_end, size_t next, char **out_line,
                             size_t *out_size)
{
    char *line = r->buf + r->start;
    size_t size = (size_t)(line_end - line);
    int skipped = r->skipping;
    r->start = next;
    r->scanned = 0;
    r->skipping = 0;
    if (skipped || size > LINE_SIZE_MAX)
        return LINE_TOO_LONG;
    if (size > 0 && line[size - 1] == '\r')
        size--;
    *out_line = line;
    *out_size = size;
    return LINE_OK;
}

enum line_result line_reader_next(struct line_reader *r, int wait, char **out_line, size_t *out_size)
{
    for (;;) {
        size_t unscanned = r->end - r->start - r->scanned;
        char *nl = unscanned ? memchr(r->buf + r->start + r->scanned, '\n', unscanned) : NULL;
        if (nl)
            return take(r, nl, (size_t)(nl - r->buf) + 1, out_line, out_size);
        r->scanned = r->end - r->start;
        if (r->scanned > LINE_SIZE_MAX) {
            /* Drop what we hold of an overlong line; report it when it ends. */
            r->skipping = 1;
            r->start = r->end = r->scanned = 0;
        }
        if (r->eof) {
            if (r->end > r->start || r->skipping)
                return take(r, r->buf + r->end, r->end, out_line, out_size);
            return LINE_END;
        }
        if (!wait && !readable_now(r->fd))
            return LINE_WOULD_BLOCK;
        if (fill(r) != 0)
            return LINE_ERROR;
    }
}
