/*
 * error.c - stable error texts and the per-thread error detail.
 *
 * Codes are the contract; the detail message (what failed, the path, the
 * offset, the errno text) is kept per thread, like errno, so concurrent
 * callers on one handle never read each other's message.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_message[1024];

const char *stele_strerror(int code)
{
    switch (code) {
    case STELE_OK: return "ok";
    case STELE_ERR_INVALID: return "invalid argument or input";
    case STELE_ERR_IO: return "I/O error";
    case STELE_ERR_NOSPACE: return "no space left on device";
    case STELE_ERR_CORRUPT: return "corruption detected";
    case STELE_ERR_LOCKED: return "locked by another process (the log's writer, or a consumer's holder)";
    case STELE_ERR_NOT_FOUND: return "not found";
    case STELE_ERR_FENCED: return "log is fenced after a failed write or sync; reopen it";
    case STELE_ERR_TOO_LARGE: return "too large";
    case STELE_ERR_CONFLICT: return "conflict: a different request already holds the key, the outcome or the compensation";
    case STELE_ERR_STREAM_VERSION: return "stream is not at the expected version";
    case STELE_ERR_NOMEM: return "out of memory";
    case STELE_ERR_FORMAT: return "unsupported format version";
    case STELE_ERR_EXISTS: return "a log already exists there";
    case STELE_ERR_READ_ONLY: return "log is open read-only";
    case STELE_ERR_OUTCOME_UNKNOWN:
        return "outcome unknown: the write or sync failed; reopen, then retry with the same key";
    case STELE_ERR_CLOSED: return "log is closing";
    }
    return "unknown error code";
}

const char *stele_errmsg(void)
{
    return last_message;
}

const char *stele_version(void)
{
    return STELE_VERSION_STRING;
}

void err_clear(void)
{
    last_message[0] = '\0';
}

int err_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return code;
}

int err_code_from_errno(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT: return STELE_ERR_NOSPACE;
    case ENOMEM: return STELE_ERR_NOMEM;
    case ENOENT: return STELE_ERR_NOT_FOUND;
    default: return STELE_ERR_IO;
    }
}

int err_sys(int e, const char *op, const char *path)
{
    return err_set(err_code_from_errno(e), "%s %s: %s", op, path, strerror(e));
}
