/*
 * line_reader.h - lines from a file descriptor, with a way to ask "is another
 * line available right now?" without blocking.
 *
 * `stele append --jsonl` groups the lines that are already available into one
 * batch and must not wait for more input before acknowledging what it has;
 * stdio cannot say whether its buffer holds a complete line, so we keep our
 * own buffer and poll() the descriptor with a zero timeout.
 */
#ifndef STELE_TOOLS_LINE_READER_H
#define STELE_TOOLS_LINE_READER_H

#include <stddef.h>

/* The longest line accepted: a 16 MiB payload in base64 plus the other fields
 * fits with room to spare. Longer lines are skipped and reported. */
#define LINE_SIZE_MAX (64u * 1024u * 1024u)

enum line_result {
    LINE_OK,         /* *out_line holds a line, without its "\n" (or "\r\n") */
    LINE_WOULD_BLOCK, /* no complete line is available without waiting */
    LINE_END,        /* end of input */
    LINE_TOO_LONG,   /* a line longer than LINE_SIZE_MAX was skipped */
    LINE_ERROR,      /* read failed or out of memory; errno says why */
};

struct line_reader {
    int fd;
    char *buf;
    size_t start, end, cap; /* unread bytes are buf[start, end) */
    size_t scanned;         /* buf[start, start + scanned) holds no '\n' */
    int eof;
    int skipping;           /* discarding the rest of an overlong line */
};

void line_reader_init(struct line_reader *r, int fd);
void line_reader_free(struct line_reader *r);

/* The next line. With wait == 0, returns LINE_WOULD_BLOCK instead of blocking.
 * The line stays valid until the next call. */
enum line_result line_reader_next(struct line_reader *r, int wait, char **out_line, size_t *out_size);

#endif
