/*
 * _stele.c - stele._stele, the CPython extension under the `stele` package:
 * the public C API (engine/include/stele.h, and nothing else of the engine)
 * as Python types. The package's __init__.py adds the enums, the option
 * names a Python programmer expects (strings, timedeltas, datetimes) and
 * the asyncio glue; every call that reaches the log is made here.
 *
 * The GIL is released around every call that can block (open, close, append,
 * get, status, pending, stats, sync, every iterator step), so Python threads
 * append concurrently and the engine's group commit batches them.
 *
 * A log handle is never freed under a thread that uses it: each call counts
 * itself in `users` before it releases the GIL; close() marks the handle as
 * closing (new calls raise stele.Closed), waits until no call is inside the
 * engine, closes the handle's iterators, then stele_close. A following
 * iterator waits in steps of at most 100 ms, so it notices signals and a
 * closing log.
 *
 * Errors: every stele_code has its exception class (stele.Conflict for
 * STELE_ERR_CONFLICT ...) under stele.Error; the exception's text is
 * stele_errmsg() of the failed call, read on the thread that made it, and
 * its attributes are code, message and, for appends, receipt (and receipts
 * for a batch).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <stele.h>

#define CODE_COUNT 17 /* STELE_OK .. STELE_ERR_CLOSED */
#define FOLLOW_STEP_MS 100 /* a following iterator checks signals and close this often */

/* ------------------------------------------------------------ module state */

static PyObject *Error;                    /* stele.Error */
static PyObject *code_errors[CODE_COUNT];  /* stele.Invalid ... by stele_code */
static PyObject *enum_decision[4], *enum_kind[5], *enum_outcome[3], *enum_content[4], *enum_state[6];
static PyObject *helper_dt_to_ns, *helper_ns_to_dt, *helper_json_dumps, *helper_json_loads;

/* An enum member by value (a new reference), or the plain int when the
 * package has not registered its enums (or the value is unknown). */
static PyObject *enum_get(PyObject **members, int count, int v)
{
    if (v >= 0 && v < count && members[v]) {
        Py_INCREF(members[v]);
        return members[v];
    }
    return PyLong_FromLong(v);
}

/* The exception for code carrying msg (stele_errmsg() of the failed call, or
 * stele_strerror(code) when it is empty), receipt and receipts (may be NULL). */
static PyObject *error_new(int code, const char *msg, PyObject *receipt, PyObject *receipts)
{
    PyObject *cls = code > 0 && code < CODE_COUNT && code_errors[code] ? code_errors[code] : Error;
    if (!msg || !*msg)
        msg = stele_strerror(code);
    PyObject *m = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    if (!m)
        return NULL;
    PyObject *exc = PyObject_CallOneArg(cls, m);
    PyObject *c = exc ? PyLong_FromLong(code) : NULL;
    if (!c || PyObject_SetAttrString(exc, "code", c) < 0 || PyObject_SetAttrString(exc, "message", m) < 0 ||
        PyObject_SetAttrString(exc, "receipt", receipt ? receipt : Py_None) < 0 ||
        PyObject_SetAttrString(exc, "receipts", receipts ? receipts : Py_None) < 0)
        Py_CLEAR(exc);
    Py_XDECREF(c);
    Py_DECREF(m);
    return exc;
}

/* Raises the exception of code; returns NULL. */
static PyObject *raise_code(int code, const char *msg, PyObject *receipt, PyObject *receipts)
{
    PyObject *exc = error_new(code, msg, receipt, receipts);
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* Raises the exception of the calling thread's last failed stele call. */
static PyObject *raise_last(int code)
{
    return raise_code(code, stele_errmsg(), NULL, NULL);
}

static PyObject *raise_closed(void)
{
    return raise_code(STELE_ERR_CLOSED, "the log is closed", NULL, NULL);
}

/* ---------------------------------------------------------- result types */

static PyTypeObject ReceiptType, StatusType, PendingType, StatsType;

static PyStructSequence_Field receipt_fields[] = {
    {"lsn", "the record's LSN, or the original's for a duplicate or a conflict"},
    {"decision", "stele.Decision: NEW, DUPLICATE, CONFLICT, or NONE when the append failed"},
    {"stream_version", "the record's stream version (0 without a stream); on StreamVersion the stream's current one"},
    {"code", "0, or the stele error code this append failed with"},
    {NULL, NULL}};
static PyStructSequence_Desc receipt_desc = {"stele.Receipt", "What happened to one append.", receipt_fields, 4};

static PyStructSequence_Field status_fields[] = {
    {"state", "stele.State: EVENT, PENDING, CONFIRMED, FAILED or COMPENSATED"},
    {"lsn", "the key's record: the event or the intent"},
    {"recorded_at_ns", "when that record was recorded (ns since the epoch)"},
    {"stream_version", "that record's stream version (0 without a stream)"},
    {"outcome_lsn", "the outcome record, 0 if none"},
    {"compensation_lsn", "the compensation, 0 if none"},
    {NULL, NULL}};
static PyStructSequence_Desc status_desc = {"stele.Status", "What a key holds (Log.status).", status_fields, 6};

static PyStructSequence_Field pending_fields[] = {
    {"lsn", "the intent's LSN"},
    {"recorded_at_ns", "when it was recorded (ns since the epoch)"},
    {"key", "its key"},
    {NULL, NULL}};
static PyStructSequence_Desc pending_desc = {"stele.PendingIntent", "An intent with no outcome yet (Log.pending).",
                                             pending_fields, 3};

enum { ST_U64, ST_U32, ST_INT, ST_BOOL, ST_STR, ST_ID };
#define SF(f, t) {#f, offsetof(stele_stats, f), t}
static const struct stat_field {
    const char *name;
    size_t offset;
    int type;
} stat_table[] = {
    SF(log_id, ST_ID), SF(created_at_ns, ST_U64), SF(first_lsn, ST_U64), SF(last_lsn, ST_U64),
    SF(durable_lsn, ST_U64), SF(segment_count, ST_U64), SF(sealed_segment_count, ST_U64), SF(disk_size, ST_U64),
    SF(data_size, ST_U64), SF(segment_size, ST_U64), SF(idem_window_ns, ST_U64), SF(payload_size_max, ST_U32),
    SF(compression, ST_INT), SF(durability, ST_INT), SF(read_only, ST_BOOL), SF(fenced, ST_BOOL),
    SF(appends_new, ST_U64), SF(appends_duplicate, ST_U64), SF(appends_conflict, ST_U64),
    SF(appends_failed, ST_U64), SF(batches_written, ST_U64), SF(syncs, ST_U64), SF(bytes_written, ST_U64),
    SF(direct_io, ST_BOOL), SF(direct_io_fallbacks, ST_U64), SF(io_note, ST_STR),
    SF(segment_spare_failures, ST_U64), SF(spare_note, ST_STR), SF(index_keys, ST_U64),
    SF(index_pending, ST_U64), SF(index_streams, ST_U64), SF(index_memory, ST_U64),
    SF(index_checkpoint_lsn, ST_U64), SF(index_checkpoints, ST_U64), SF(index_checkpoint_failures, ST_U64),
    SF(index_expired, ST_U64), SF(index_scanned, ST_U64), SF(index_rebuilt, ST_BOOL), SF(index_note, ST_STR),
    SF(recovery_torn_bytes, ST_U64), SF(recovery_torn_batches, ST_U64), SF(recovery_stray_files, ST_U64),
    SF(read_batches, ST_U64), SF(read_bytes, ST_U64), SF(read_index_loaded, ST_U64),
    SF(read_index_rebuilt, ST_U64), SF(read_index_written, ST_U64), SF(read_index_write_failures, ST_U64),
    SF(read_index_note, ST_STR), SF(compression_level, ST_INT), SF(dict_in_use, ST_U32),
    SF(dict_newest, ST_U32), SF(dict_count, ST_U32), SF(dict_auto_train_code, ST_INT), SF(dict_note, ST_STR),
};
#define STAT_COUNT (sizeof stat_table / sizeof stat_table[0])
static PyStructSequence_Field stats_fields[STAT_COUNT + 1];
static PyStructSequence_Desc stats_desc = {"stele.Stats", "The log's stele_stats (Log.stats); field comments are in stele.h.",
                                           stats_fields, (int)STAT_COUNT};

/* A structseq's items from a list of new references (stolen; NULL = failed). */
static PyObject *structseq_fill(PyTypeObject *type, PyObject **items, int count)
{
    int ok = 1;
    for (int i = 0; i < count; i++)
        ok &= items[i] != NULL;
    PyObject *o = ok ? PyStructSequence_New(type) : NULL;
    for (int i = 0; i < count; i++) {
        if (o)
            PyStructSequence_SET_ITEM(o, i, items[i]);
        else
            Py_XDECREF(items[i]);
    }
    return o;
}

static PyObject *receipt_new(const stele_receipt *r)
{
    PyObject *items[4] = {PyLong_FromUnsignedLongLong(r->lsn), enum_get(enum_decision, 4, (int)r->decision),
                          PyLong_FromUnsignedLongLong(r->stream_version), PyLong_FromLong((long)r->code)};
    return structseq_fill(&ReceiptType, items, 4);
}

/* Bytes from the log (keys, streams) as str; surrogateescape keeps any byte. */
static PyObject *text_new(const char *p, size_t n)
{
    return PyUnicode_DecodeUTF8(n ? p : "", (Py_ssize_t)n, "surrogateescape");
}

static PyObject *stats_new(const stele_stats *st)
{
    PyObject *items[STAT_COUNT];
    for (size_t i = 0; i < STAT_COUNT; i++) {
        const char *p = (const char *)st + stat_table[i].offset;
        uint64_t u64;
        uint32_t u32;
        int v;
        switch (stat_table[i].type) {
        case ST_U64:
            memcpy(&u64, p, sizeof u64);
            items[i] = PyLong_FromUnsignedLongLong(u64);
            break;
        case ST_U32:
            memcpy(&u32, p, sizeof u32);
            items[i] = PyLong_FromUnsignedLong(u32);
            break;
        case ST_INT:
            memcpy(&v, p, sizeof v);
            items[i] = PyLong_FromLong(v);
            break;
        case ST_BOOL:
            memcpy(&v, p, sizeof v);
            items[i] = PyBool_FromLong(v);
            break;
        case ST_STR:
            items[i] = PyUnicode_DecodeUTF8(p, (Py_ssize_t)strnlen(p, 160), "replace");
            break;
        default: {
            char hex[33];
            for (int b = 0; b < 16; b++)
                snprintf(hex + 2 * b, 3, "%02x", (unsigned char)p[b]);
            items[i] = PyUnicode_FromStringAndSize(hex, 32);
        }
        }
    }
    return structseq_fill(&StatsType, items, (int)STAT_COUNT);
}

/* ------------------------------------------------------------------ Record */

typedef struct {
    PyObject_HEAD
    stele_record *rec;
    int engine_owned; /* 1: from stele_get (stele_record_free), 0: our copy (free) */
} RecordObject;

static PyTypeObject RecordType;

/* Wraps rec (owned from now on); on failure rec is freed. */
static PyObject *record_wrap(stele_record *rec, int engine_owned)
{
    RecordObject *o = PyObject_New(RecordObject, &RecordType);
    if (!o) {
        if (engine_owned)
            stele_record_free(rec);
        else
            free(rec);
        return NULL;
    }
    o->rec = rec;
    o->engine_owned = engine_owned;
    return (PyObject *)o;
}

/* One allocation holding a copy of r, its strings and payload (an iterator's
 * record is valid only until its next step). Called without the GIL. */
static stele_record *record_copy(const stele_record *r)
{
    size_t n = sizeof *r + r->type_size + r->stream_size + r->key_size + r->actor_size + r->payload_size;
    stele_record *c = malloc(n);
    if (!c)
        return NULL;
    *c = *r;
    char *p = (char *)(c + 1);
#define COPY_FIELD(f)                                                                                          \
    do {                                                                                                       \
        if (r->f##_size)                                                                                       \
            memcpy(p, r->f, r->f##_size);                                                                      \
        c->f = (void *)p;                                                                                      \
        p += r->f##_size;                                                                                      \
    } while (0)
    COPY_FIELD(type);
    COPY_FIELD(stream);
    COPY_FIELD(key);
    COPY_FIELD(actor);
    COPY_FIELD(payload);
#undef COPY_FIELD
    return c;
}

static void record_dealloc(RecordObject *self)
{
    if (self->engine_owned)
        stele_record_free(self->rec);
    else
        free(self->rec);
    PyObject_Free(self);
}

/* The payload as a read-only buffer: memoryview(record) and record.data
 * share the record's memory, no copy. */
static int record_getbuffer(RecordObject *self, Py_buffer *view, int flags)
{
    static char empty[1];
    void *p = self->rec->payload_size ? (void *)self->rec->payload : empty;
    return PyBuffer_FillInfo(view, (PyObject *)self, p, (Py_ssize_t)self->rec->payload_size, 1, flags);
}

static PyBufferProcs record_as_buffer = {.bf_getbuffer = (getbufferproc)record_getbuffer};

enum { R_LSN, R_RECORDED, R_EVENT_TIME, R_VERSION, R_FINGERPRINT, R_REF, R_FLAGS };

static PyObject *record_get_u64(RecordObject *self, void *which)
{
    const stele_record *r = self->rec;
    switch ((int)(intptr_t)which) {
    case R_LSN: return PyLong_FromUnsignedLongLong(r->lsn);
    case R_RECORDED: return PyLong_FromUnsignedLongLong(r->recorded_at_ns);
    case R_EVENT_TIME: return PyLong_FromUnsignedLongLong(r->event_time_ns);
    case R_VERSION: return PyLong_FromUnsignedLongLong(r->stream_version);
    case R_FINGERPRINT: return PyLong_FromUnsignedLongLong(r->fingerprint);
    case R_REF: return PyLong_FromUnsignedLongLong(r->ref);
    default: return PyLong_FromUnsignedLong(r->flags);
    }
}

enum { S_TYPE, S_STREAM, S_KEY, S_ACTOR };

/* type is always a str ("" when none); stream, key and actor are None when empty. */
static PyObject *record_get_str(RecordObject *self, void *which)
{
    const stele_record *r = self->rec;
    const char *p = r->type;
    size_t n = r->type_size;
    switch ((int)(intptr_t)which) {
    case S_STREAM: p = r->stream; n = r->stream_size; break;
    case S_KEY: p = r->key; n = r->key_size; break;
    case S_ACTOR: p = r->actor; n = r->actor_size; break;
    default: return text_new(p, n);
    }
    if (n == 0)
        Py_RETURN_NONE;
    return text_new(p, n);
}

static PyObject *record_get_kind(RecordObject *self, void *unused)
{
    (void)unused;
    return enum_get(enum_kind, 5, (int)self->rec->kind);
}

static PyObject *record_get_outcome(RecordObject *self, void *unused)
{
    (void)unused;
    return enum_get(enum_outcome, 3, (int)self->rec->outcome);
}

static PyObject *record_get_content(RecordObject *self, void *unused)
{
    (void)unused;
    return enum_get(enum_content, 4, (int)self->rec->content);
}

static PyObject *record_get_data(RecordObject *self, void *unused)
{
    (void)unused;
    return PyMemoryView_FromObject((PyObject *)self);
}

static PyObject *record_get_time(RecordObject *self, void *which)
{
    uint64_t ns = (int)(intptr_t)which == R_RECORDED ? self->rec->recorded_at_ns : self->rec->event_time_ns;
    PyObject *v = PyLong_FromUnsignedLongLong(ns);
    PyObject *dt = v && helper_ns_to_dt ? PyObject_CallOneArg(helper_ns_to_dt, v) : NULL;
    if (v && !helper_ns_to_dt)
        PyErr_SetString(PyExc_RuntimeError, "stele._stele: the package did not register its helpers");
    Py_XDECREF(v);
    return dt;
}

static PyObject *record_get_backfilled(RecordObject *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong((self->rec->flags & STELE_FLAG_BACKFILLED) != 0);
}

static PyObject *record_value(RecordObject *self, PyObject *unused)
{
    (void)unused;
    const stele_record *r = self->rec;
    const char *p = r->payload_size ? r->payload : "";
    if (r->content == STELE_CONTENT_TEXT)
        return PyUnicode_DecodeUTF8(p, (Py_ssize_t)r->payload_size, "strict");
    PyObject *b = PyBytes_FromStringAndSize(p, (Py_ssize_t)r->payload_size);
    if (!b || r->content != STELE_CONTENT_JSON)
        return b;
    PyObject *v = PyObject_CallOneArg(helper_json_loads, b);
    Py_DECREF(b);
    return v;
}

static PyObject *record_repr(RecordObject *self)
{
    const stele_record *r = self->rec;
    PyObject *type = text_new(r->type, r->type_size);
    PyObject *key = r->key_size ? text_new(r->key, r->key_size) : (Py_INCREF(Py_None), Py_None);
    PyObject *res = type && key ? PyUnicode_FromFormat("<stele.Record lsn=%llu kind=%d type=%R key=%R size=%zu>",
                                                       (unsigned long long)r->lsn, (int)r->kind, type, key,
                                                       r->payload_size)
                                : NULL;
    Py_XDECREF(type);
    Py_XDECREF(key);
    return res;
}

#define RGET(name, fn, which, doc) {name, (getter)fn, NULL, doc, (void *)(intptr_t)(which)}
static PyGetSetDef record_getset[] = {
    RGET("lsn", record_get_u64, R_LSN, "the record's LSN"),
    RGET("recorded_at_ns", record_get_u64, R_RECORDED, "when the log recorded it, ns since the epoch"),
    RGET("event_time_ns", record_get_u64, R_EVENT_TIME, "when it happened (the append's event_time), ns"),
    RGET("stream_version", record_get_u64, R_VERSION, "its version in its stream, 0 without a stream"),
    RGET("fingerprint", record_get_u64, R_FINGERPRINT, "the request's fingerprint (what a duplicate must match)"),
    RGET("ref", record_get_u64, R_REF, "the LSN an outcome or compensation refers to, 0 = none"),
    RGET("flags", record_get_u64, R_FLAGS, "stele_record.flags (1 = backfilled)"),
    RGET("type", record_get_str, S_TYPE, "the event type (str, '' when none)"),
    RGET("stream", record_get_str, S_STREAM, "the stream (str) or None"),
    RGET("key", record_get_str, S_KEY, "the idempotency key (str, surrogateescape for non-UTF-8 bytes) or None"),
    RGET("actor", record_get_str, S_ACTOR, "the actor or None"),
    RGET("kind", record_get_kind, 0, "stele.Kind: EVENT, INTENT, OUTCOME or COMPENSATION"),
    RGET("outcome", record_get_outcome, 0, "stele.Outcome of an outcome record (NONE otherwise)"),
    RGET("content", record_get_content, 0, "stele.Content: JSON, TEXT or BINARY"),
    RGET("data", record_get_data, 0, "the payload as a read-only memoryview of the record's memory (no copy)"),
    RGET("recorded_at", record_get_time, R_RECORDED, "recorded_at_ns as an aware UTC datetime (microseconds)"),
    RGET("event_time", record_get_time, R_EVENT_TIME, "event_time_ns as an aware UTC datetime (microseconds)"),
    RGET("backfilled", record_get_backfilled, 0, "True when the record was imported by a backfill"),
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef record_methods[] = {
    {"value", (PyCFunction)record_value, METH_NOARGS,
     "value() -> object\n\nThe payload decoded by its content: JSON -> the parsed object, TEXT -> str, "
     "BINARY -> bytes (a copy)."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stele.Record",
    .tp_basicsize = sizeof(RecordObject),
    .tp_dealloc = (destructor)record_dealloc,
    .tp_repr = (reprfunc)record_repr,
    .tp_as_buffer = &record_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A record read back (Log.get, Log.get_key, Log.read).\n\n"
              "Its payload is .data, a read-only memoryview of memory the record owns (Log.get hands over the\n"
              "engine's allocation without a copy); the record also supports the buffer protocol itself.",
    .tp_methods = record_methods,
    .tp_getset = record_getset,
};

/* ------------------------------------------------------------------- Log */

struct async_req;

typedef struct IterObject IterObject;
typedef struct CursorObject CursorObject;

typedef struct {
    PyObject_HEAD
    stele_log *log;
    int closing;                 /* set with the GIL held: no new call may start */
    atomic_int users;            /* calls inside the engine (GIL released) */
    pthread_mutex_t users_lock;
    pthread_cond_t users_zero;
    IterObject *iters;           /* open iterators (changed with the GIL held) */
    CursorObject *cursors;       /* open consumer cursors (likewise) */
    int efd;                     /* eventfd of async completions, -1 until first needed */
    pthread_mutex_t done_lock;
    struct async_req *done_head, *done_tail; /* completed async appends, oldest first */
    Py_ssize_t async_pending;    /* queued, not yet drained */
    PyObject *weakrefs;
} LogObject;

static PyTypeObject LogType;

/* Counts a call in; raises Closed when the log is closed or closing. */
static int use_begin(LogObject *self)
{
    if (!self->log || self->closing) {
        raise_closed();
        return -1;
    }
    atomic_fetch_add(&self->users, 1);
    return 0;
}

static void use_end(LogObject *self)
{
    if (atomic_fetch_sub(&self->users, 1) == 1 && self->closing) {
        pthread_mutex_lock(&self->users_lock);
        pthread_cond_broadcast(&self->users_zero);
        pthread_mutex_unlock(&self->users_lock);
    }
}

static PyObject *log_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    LogObject *self = (LogObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->log = NULL;
    atomic_init(&self->users, 0);
    pthread_mutex_init(&self->users_lock, NULL);
    pthread_cond_init(&self->users_zero, NULL);
    pthread_mutex_init(&self->done_lock, NULL);
    self->efd = -1;
    return (PyObject *)self;
}

/* Option fields by name, as in stele_options. */
enum { O_INT, O_U32, O_U64 };
#define OF(f, t) {#f, offsetof(stele_options, f), t}
static const struct opt_field {
    const char *name;
    size_t offset;
    int type;
} opt_table[] = {
    OF(create, O_INT), OF(read_only, O_INT), OF(durability, O_INT), OF(sync_interval_ms, O_U32),
    OF(io_backend, O_INT), OF(queue_records_max, O_U32), OF(checkpoint_records, O_U64), OF(direct_io, O_INT),
    OF(dict_train_records, O_U64), OF(compression_level_override, O_INT), OF(segment_size, O_U64),
    OF(idem_window_ns, O_U64), OF(payload_size_max, O_U32), OF(compression, O_INT),
    OF(compression_level, O_INT), OF(default_durability, O_INT),
};

/* Fills opts from keyword arguments named as stele_options' fields (ints;
 * None = the default). Values out of a field's C range are ValueError here;
 * the engine checks each field's bounds (Invalid, naming the field). */
static int options_parse(PyObject *kwds, stele_options *opts)
{
    stele_options_init(opts);
    PyObject *name, *value;
    Py_ssize_t pos = 0;
    while (kwds && PyDict_Next(kwds, &pos, &name, &value)) {
        const char *n = PyUnicode_AsUTF8(name);
        if (!n)
            return -1;
        size_t i = 0;
        while (i < sizeof opt_table / sizeof opt_table[0] && strcmp(opt_table[i].name, n) != 0)
            i++;
        if (i == sizeof opt_table / sizeof opt_table[0]) {
            PyErr_Format(PyExc_TypeError, "open: unknown option '%s'", n);
            return -1;
        }
        if (value == Py_None)
            continue;
        char *field = (char *)opts + opt_table[i].offset;
        if (opt_table[i].type == O_INT) {
            long v = PyLong_AsLong(value);
            if (v == -1 && PyErr_Occurred())
                return -1;
            if (v < INT32_MIN || v > INT32_MAX) {
                PyErr_Format(PyExc_ValueError, "open: option %s = %ld is out of range", n, v);
                return -1;
            }
            int iv = (int)v;
            memcpy(field, &iv, sizeof iv);
            continue;
        }
        unsigned long long v = PyLong_AsUnsignedLongLong(value);
        if (v == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        if (opt_table[i].type == O_U32) {
            if (v > UINT32_MAX) {
                PyErr_Format(PyExc_ValueError, "open: option %s = %llu is out of range", n, v);
                return -1;
            }
            uint32_t u = (uint32_t)v;
            memcpy(field, &u, sizeof u);
        } else {
            uint64_t u = v;
            memcpy(field, &u, sizeof u);
        }
    }
    return 0;
}

static int log_init(LogObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *path = NULL;
    if (self->log) {
        PyErr_SetString(PyExc_RuntimeError, "Log.__init__: the log is already open");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "O&:Log", PyUnicode_FSConverter, &path))
        return -1;
    stele_options opts;
    if (options_parse(kwds, &opts) < 0) {
        Py_DECREF(path);
        return -1;
    }
    stele_log *log = NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_open(PyBytes_AS_STRING(path), &opts, &log);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (code != STELE_OK) {
        raise_last(code);
        return -1;
    }
    self->log = log;
    self->closing = 0;
    return 0;
}

/* ----------------------------------------------------------- event input */

/* Every field an append can take; each method lists the ones it accepts. */
enum { F_TYPE, F_DATA, F_KEY, F_STREAM, F_EXPECT, F_TIME, F_ACTOR, F_CONTENT, F_KIND, F_OUTCOME, F_REF, F_FUTURE,
       F_COUNT };
static const char *const field_names[F_COUNT] = {"type", "data", "key", "stream", "expect_version", "event_time",
                                                 "actor", "content", "kind", "outcome", "ref", "future"};
static PyObject *field_str[F_COUNT]; /* interned */

/* A vectorcall argument parser that costs little per append: args fill the
 * first npos fields of sig (a list of F_ indexes ending in -1), keywords
 * any of them. vals[F_*] is NULL where nothing (or None) was given. */
static int parse_fields(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                        const signed char *sig, int npos, PyObject **vals)
{
    int nsig = 0;
    while (sig[nsig] >= 0)
        nsig++;
    for (int i = 0; i < F_COUNT; i++)
        vals[i] = NULL;
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional arguments (%zd given)", fname, npos, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        vals[sig[i]] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int slot = -1;
        for (int j = 0; j < nsig && slot < 0; j++)
            if (field_str[sig[j]] == name)
                slot = sig[j];
        for (int j = 0; j < nsig && slot < 0; j++)
            if (PyUnicode_Compare(field_str[sig[j]], name) == 0)
                slot = sig[j];
        if (slot < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, name);
            return -1;
        }
        if (vals[slot]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, field_names[slot]);
            return -1;
        }
        vals[slot] = args[nargs + k];
    }
    for (int i = 0; i < F_COUNT; i++)
        if (vals[i] == Py_None)
            vals[i] = NULL;
    return 0;
}

/* What an event borrows until its append returns. */
typedef struct {
    Py_buffer view;
    int has_view;
    PyObject *tmp; /* the JSON encoding of a dict or list payload */
} hold_t;

static void hold_release(hold_t *h)
{
    if (h->has_view)
        PyBuffer_Release(&h->view);
    h->has_view = 0;
    Py_CLEAR(h->tmp);
}

static int get_text(PyObject *o, const char *what, const char **p, size_t *n)
{
    *p = NULL;
    *n = 0;
    if (!o)
        return 0;
    if (PyUnicode_Check(o)) {
        Py_ssize_t sz;
        const char *s = PyUnicode_AsUTF8AndSize(o, &sz);
        if (!s)
            return -1;
        *p = s;
        *n = (size_t)sz;
        return 0;
    }
    if (PyBytes_Check(o)) {
        *p = PyBytes_AS_STRING(o);
        *n = (size_t)PyBytes_GET_SIZE(o);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be str or bytes, not %.100s", what, Py_TYPE(o)->tp_name);
    return -1;
}

static int get_u64(PyObject *o, const char *what, uint64_t *out)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError, "%s must be an int from 0 to 2**64-1", what);
        return -1;
    }
    *out = v;
    return 0;
}

/* An enum argument: an int (or IntEnum member) or one of names (index = value). */
static int get_choice(PyObject *o, const char *what, const char *const *names, int count, int *out)
{
    if (PyUnicode_Check(o)) {
        const char *s = PyUnicode_AsUTF8(o);
        if (!s)
            return -1;
        for (int i = 0; i < count; i++)
            if (names[i] && strcmp(names[i], s) == 0) {
                *out = i;
                return 0;
            }
        PyErr_Format(PyExc_ValueError, "%s: unknown value '%s'", what, s);
        return -1;
    }
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v >= count || !names[v]) {
        PyErr_Format(PyExc_ValueError, "%s: %ld is not a valid value", what, v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static const char *const kind_names[] = {NULL, "event", "intent", "outcome", "compensation"};
static const char *const outcome_names[] = {NULL, "confirmed", "failed"};
static const char *const content_names[] = {NULL, "json", "text", "binary"};

/* Fills ev from vals; what it borrows is in h (release it after the append).
 * data: bytes or any buffer -> binary, str -> text (UTF-8), dict or list ->
 * JSON (json.dumps, compact); content overrides the inference. */
static int event_build(stele_event *ev, hold_t *h, PyObject **vals, stele_kind kind)
{
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    if (get_text(vals[F_TYPE], "type", &ev->type, &ev->type_size) < 0 ||
        get_text(vals[F_KEY], "key", &ev->key, &ev->key_size) < 0 ||
        get_text(vals[F_STREAM], "stream", &ev->stream, &ev->stream_size) < 0 ||
        get_text(vals[F_ACTOR], "actor", &ev->actor, &ev->actor_size) < 0)
        return -1;
    PyObject *d = vals[F_DATA];
    ev->content = STELE_CONTENT_BINARY;
    if (!d) {
        /* no payload */
    } else if (PyBytes_Check(d)) {
        ev->payload = PyBytes_AS_STRING(d);
        ev->payload_size = (size_t)PyBytes_GET_SIZE(d);
    } else if (PyUnicode_Check(d)) {
        Py_ssize_t sz;
        ev->payload = PyUnicode_AsUTF8AndSize(d, &sz);
        if (!ev->payload)
            return -1;
        ev->payload_size = (size_t)sz;
        ev->content = STELE_CONTENT_TEXT;
    } else if (PyDict_Check(d) || PyList_Check(d)) {
        h->tmp = PyObject_CallOneArg(helper_json_dumps, d);
        if (!h->tmp)
            return -1;
        if (!PyBytes_Check(h->tmp)) {
            PyErr_SetString(PyExc_TypeError, "data: the JSON encoder did not return bytes");
            return -1;
        }
        ev->payload = PyBytes_AS_STRING(h->tmp);
        ev->payload_size = (size_t)PyBytes_GET_SIZE(h->tmp);
        ev->content = STELE_CONTENT_JSON;
    } else if (PyObject_CheckBuffer(d)) {
        if (PyObject_GetBuffer(d, &h->view, PyBUF_SIMPLE) < 0)
            return -1;
        h->has_view = 1;
        ev->payload = h->view.buf;
        ev->payload_size = (size_t)h->view.len;
    } else {
        PyErr_Format(PyExc_TypeError, "data must be bytes, a buffer, str, dict or list, not %.100s",
                     Py_TYPE(d)->tp_name);
        return -1;
    }
    int v;
    if (vals[F_CONTENT]) {
        if (get_choice(vals[F_CONTENT], "content", content_names, 4, &v) < 0)
            return -1;
        ev->content = (stele_content)v;
    }
    if (vals[F_KIND]) {
        if (get_choice(vals[F_KIND], "kind", kind_names, 5, &v) < 0)
            return -1;
        ev->kind = (stele_kind)v;
    }
    if (vals[F_OUTCOME]) {
        if (get_choice(vals[F_OUTCOME], "outcome", outcome_names, 3, &v) < 0)
            return -1;
        ev->outcome = (stele_outcome)v;
    }
    if (vals[F_REF] && get_u64(vals[F_REF], "ref", &ev->ref) < 0)
        return -1;
    if (vals[F_EXPECT]) {
        if (get_u64(vals[F_EXPECT], "expect_version", &ev->expect_version) < 0)
            return -1;
        ev->has_expect_version = 1;
    }
    PyObject *t = vals[F_TIME];
    if (t) {
        PyObject *ns = PyLong_Check(t) ? (Py_INCREF(t), t) : PyObject_CallOneArg(helper_dt_to_ns, t);
        int rc = ns ? get_u64(ns, "event_time", &ev->event_time_ns) : -1;
        Py_XDECREF(ns);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* One append of the fields in vals; raises the code's exception (with the receipt) on failure. */
static PyObject *append_one(LogObject *self, PyObject **vals, stele_kind kind)
{
    stele_event ev;
    hold_t h = {.has_view = 0, .tmp = NULL};
    if (event_build(&ev, &h, vals, kind) < 0 || use_begin(self) < 0) {
        hold_release(&h);
        return NULL;
    }
    stele_receipt rc;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_append(self->log, &ev, &rc);
    Py_END_ALLOW_THREADS
    PyObject *receipt = receipt_new(&rc);
    if (code != STELE_OK && receipt) {
        raise_code(code, stele_errmsg(), receipt, NULL);
        Py_CLEAR(receipt);
    }
    use_end(self);
    hold_release(&h);
    return receipt;
}

static const signed char sig_append[] = {F_TYPE, F_DATA, F_KEY, F_STREAM, F_EXPECT, F_TIME, F_ACTOR, F_CONTENT, -1};
static const signed char sig_intent[] = {F_KEY, F_TYPE, F_DATA, F_STREAM, F_EXPECT, F_TIME, F_ACTOR, F_CONTENT, -1};
static const signed char sig_resolve[] = {F_KEY,    F_OUTCOME, F_TYPE,  F_DATA,    F_STREAM,
                                          F_EXPECT, F_TIME,    F_ACTOR, F_CONTENT, -1};
static const signed char sig_compensate[] = {F_REF,  F_TYPE,  F_DATA,    F_STREAM, F_EXPECT,
                                             F_TIME, F_ACTOR, F_CONTENT, -1};
static const signed char sig_async[] = {F_FUTURE, F_TYPE, F_DATA,  F_KEY,     F_STREAM,
                                        F_EXPECT, F_TIME, F_ACTOR, F_CONTENT, -1};

static PyObject *log_append(LogObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *vals[F_COUNT];
    if (parse_fields("append", args, nargs, kwnames, sig_append, 2, vals) < 0)
        return NULL;
    return append_one(self, vals, STELE_KIND_EVENT);
}

static PyObject *log_intent(LogObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *vals[F_COUNT];
    if (parse_fields("intent", args, nargs, kwnames, sig_intent, 3, vals) < 0)
        return NULL;
    if (!vals[F_KEY]) {
        PyErr_SetString(PyExc_TypeError, "intent() needs a key");
        return NULL;
    }
    return append_one(self, vals, STELE_KIND_INTENT);
}

static PyObject *log_resolve(LogObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *vals[F_COUNT];
    if (parse_fields("resolve", args, nargs, kwnames, sig_resolve, 4, vals) < 0)
        return NULL;
    if (!vals[F_KEY] || !vals[F_OUTCOME]) {
        PyErr_SetString(PyExc_TypeError, "resolve() needs a key and an outcome ('confirmed' or 'failed')");
        return NULL;
    }
    return append_one(self, vals, STELE_KIND_OUTCOME);
}

static PyObject *log_compensate(LogObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *vals[F_COUNT];
    if (parse_fields("compensate", args, nargs, kwnames, sig_compensate, 3, vals) < 0)
        return NULL;
    if (!vals[F_REF]) {
        PyErr_SetString(PyExc_TypeError, "compensate() needs ref, the LSN it reverses");
        return NULL;
    }
    return append_one(self, vals, STELE_KIND_COMPENSATION);
}

/* The fields of one batch entry, a dict with the keys of field_names (not "future"). */
static int batch_fields(PyObject *item, Py_ssize_t index, PyObject **vals)
{
    if (!PyDict_Check(item)) {
        PyErr_Format(PyExc_TypeError, "append_batch: event %zd must be a dict, not %.100s", index,
                     Py_TYPE(item)->tp_name);
        return -1;
    }
    for (int i = 0; i < F_COUNT; i++)
        vals[i] = NULL;
    PyObject *name, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(item, &pos, &name, &value)) {
        int slot = -1;
        for (int j = 0; j < F_FUTURE && slot < 0; j++)
            if (field_str[j] == name)
                slot = j;
        for (int j = 0; j < F_FUTURE && slot < 0 && PyUnicode_Check(name); j++)
            if (PyUnicode_Compare(field_str[j], name) == 0)
                slot = j;
        if (slot < 0) {
            PyErr_Format(PyExc_TypeError, "append_batch: event %zd: unknown field %R", index, name);
            return -1;
        }
        vals[slot] = value == Py_None ? NULL : value;
    }
    return 0;
}

static PyObject *log_append_batch(LogObject *self, PyObject *events)
{
    PyObject *seq = PySequence_Fast(events, "append_batch: events must be a sequence of dicts");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *res = NULL;
    stele_event *evs = PyMem_Calloc((size_t)n + 1, sizeof *evs);
    hold_t *holds = PyMem_Calloc((size_t)n + 1, sizeof *holds);
    stele_receipt *rcs = PyMem_Calloc((size_t)n + 1, sizeof *rcs);
    Py_ssize_t built = 0;
    if (!evs || !holds || !rcs) {
        PyErr_NoMemory();
        goto done;
    }
    for (; built < n; built++) {
        PyObject *vals[F_COUNT];
        if (batch_fields(PySequence_Fast_GET_ITEM(seq, built), built, vals) < 0 ||
            event_build(&evs[built], &holds[built], vals, STELE_KIND_EVENT) < 0) {
            built++; /* its hold may hold something too */
            goto done;
        }
    }
    if (use_begin(self) < 0)
        goto done;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_append_batch(self->log, evs, (size_t)n, rcs);
    Py_END_ALLOW_THREADS
    const char *msg = code != STELE_OK ? stele_errmsg() : NULL;
    /* Keep the message: building the receipts calls no stele function, but copy it anyway. */
    char msg_copy[512];
    if (msg)
        snprintf(msg_copy, sizeof msg_copy, "%s", msg);
    use_end(self);
    res = PyList_New(n);
    PyObject *first = NULL;
    for (Py_ssize_t i = 0; res && i < n; i++) {
        PyObject *r = receipt_new(&rcs[i]);
        if (!r) {
            Py_CLEAR(res);
            break;
        }
        if (!first && code != STELE_OK && (int)rcs[i].code == code)
            first = r;
        PyList_SET_ITEM(res, i, r);
    }
    if (res && code != STELE_OK) {
        raise_code(code, msg_copy, first, res);
        Py_CLEAR(res);
    }
done:
    for (Py_ssize_t i = 0; holds && i < built; i++)
        hold_release(&holds[i]);
    PyMem_Free(evs);
    PyMem_Free(holds);
    PyMem_Free(rcs);
    Py_DECREF(seq);
    return res;
}

/* -------------------------------------------------------- async appends */

/* One asynchronous append: the event and a copy of every byte it points to
 * (the engine reads them until the callback), the future it resolves. */
struct async_req {
    struct async_req *next;
    LogObject *log;   /* outlives the request: stele_close waits for every callback */
    PyObject *future; /* owned; touched only with the GIL */
    int code;
    stele_receipt receipt;
    stele_event ev;
    char bytes[];
};

/* Runs on an engine thread, without the GIL: queue the completion and wake
 * the event loop through the eventfd. Quick and never waits (stele.h). */
static void async_done(void *ctx, int code, const stele_receipt *receipts, size_t count)
{
    struct async_req *r = ctx;
    LogObject *log = r->log;
    r->code = code;
    if (count > 0)
        r->receipt = receipts[0];
    r->next = NULL;
    pthread_mutex_lock(&log->done_lock);
    if (log->done_tail)
        log->done_tail->next = r;
    else
        log->done_head = r;
    log->done_tail = r;
    pthread_mutex_unlock(&log->done_lock);
    /* An eventfd write fails only when the counter would pass 2^64 - 2 (EAGAIN),
     * which completions counted one by one cannot reach between two reads. */
    uint64_t one = 1;
    ssize_t w = write(log->efd, &one, sizeof one);
    (void)w;
}

static PyObject *log_async_fd(LogObject *self, PyObject *unused)
{
    (void)unused;
    if (self->efd < 0) {
        self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (self->efd < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(self->efd);
}

static PyObject *log_append_async(LogObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *vals[F_COUNT];
    if (parse_fields("_append_async", args, nargs, kwnames, sig_async, 3, vals) < 0)
        return NULL;
    if (!vals[F_FUTURE] || self->efd < 0) {
        PyErr_SetString(PyExc_RuntimeError, "_append_async: needs a future and the eventfd (_async_fd) first");
        return NULL;
    }
    stele_event ev;
    hold_t h = {.has_view = 0, .tmp = NULL};
    if (event_build(&ev, &h, vals, STELE_KIND_EVENT) < 0) {
        hold_release(&h);
        return NULL;
    }
    size_t n = ev.type_size + ev.stream_size + ev.key_size + ev.actor_size + ev.payload_size;
    struct async_req *r = malloc(sizeof *r + n);
    if (!r) {
        hold_release(&h);
        return PyErr_NoMemory();
    }
    r->ev = ev;
    char *p = r->bytes;
#define COPY_EV(f)                                                                                             \
    do {                                                                                                       \
        if (ev.f##_size)                                                                                       \
            memcpy(p, ev.f, ev.f##_size);                                                                      \
        r->ev.f = ev.f##_size ? (void *)p : NULL;                                                              \
        p += ev.f##_size;                                                                                      \
    } while (0)
    COPY_EV(type);
    COPY_EV(stream);
    COPY_EV(key);
    COPY_EV(actor);
    COPY_EV(payload);
#undef COPY_EV
    hold_release(&h);
    r->log = self;
    r->future = vals[F_FUTURE];
    Py_INCREF(r->future);
    if (use_begin(self) < 0) {
        Py_DECREF(r->future);
        free(r);
        return NULL;
    }
    self->async_pending++;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_append_async(self->log, &r->ev, 1, async_done, r);
    Py_END_ALLOW_THREADS
    if (code != STELE_OK) {
        /* Not queued: the callback will not run. */
        raise_last(code);
        self->async_pending--;
        Py_DECREF(r->future);
        free(r);
        use_end(self);
        return NULL;
    }
    use_end(self);
    Py_RETURN_NONE;
}

/* The completed async appends as a list of (future, receipt, exception):
 * exception is None on success, else the code's exception with the receipt. */
static PyObject *log_async_drain(LogObject *self, PyObject *unused)
{
    (void)unused;
    if (self->efd >= 0) {
        uint64_t v;
        ssize_t rd = read(self->efd, &v, sizeof v); /* EAGAIN: nothing new, the list tells */
        (void)rd;
    }
    pthread_mutex_lock(&self->done_lock);
    struct async_req *r = self->done_head;
    self->done_head = self->done_tail = NULL;
    pthread_mutex_unlock(&self->done_lock);
    PyObject *list = PyList_New(0);
    while (r) {
        struct async_req *next = r->next;
        PyObject *receipt = receipt_new(&r->receipt);
        PyObject *exc = NULL;
        if (receipt && r->code != STELE_OK) {
            char msg[256];
            snprintf(msg, sizeof msg, "append_async: %s (LSN %llu, stream version %llu)", stele_strerror(r->code),
                     (unsigned long long)r->receipt.lsn, (unsigned long long)r->receipt.stream_version);
            exc = error_new(r->code, msg, receipt, NULL);
        }
        PyObject *t = receipt && (r->code == STELE_OK || exc)
                          ? PyTuple_Pack(3, r->future, receipt, exc ? exc : Py_None)
                          : NULL;
        if (list && (!t || PyList_Append(list, t) < 0))
            Py_CLEAR(list);
        Py_XDECREF(t);
        Py_XDECREF(exc);
        Py_XDECREF(receipt);
        Py_DECREF(r->future);
        self->async_pending--;
        free(r);
        r = next;
    }
    return list;
}

/* ------------------------------------------------------------ iterators */

struct IterObject {
    PyObject_HEAD
    LogObject *log;          /* owned */
    stele_iter *iter;        /* NULL once closed */
    IterObject *prev, *next; /* in log->iters */
    int follow;
    int timeout_ms;          /* follow: how long to wait for the next record, -1 = forever */
    int busy;
    int log_closed;          /* closed by the log's close */
    char *type;              /* the type filter, NULL = none */
    size_t type_size;
};

static PyTypeObject IterType;

static void iter_unlink(IterObject *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else if (it->log->iters == it)
        it->log->iters = it->next;
    if (it->next)
        it->next->prev = it->prev;
    it->prev = it->next = NULL;
}

static void iter_close_engine(IterObject *it)
{
    if (it->iter) {
        stele_iter_close(it->iter);
        it->iter = NULL;
        iter_unlink(it);
    }
}

static void iter_dealloc(IterObject *it)
{
    iter_close_engine(it);
    Py_XDECREF(it->log);
    PyMem_Free(it->type);
    PyObject_Free(it);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One step without the GIL: the next record matching the type filter (a
 * copy), or NULL at the end after waiting up to wait_ms. */
static int iter_step(IterObject *it, int wait_ms, stele_record **out)
{
    *out = NULL;
    for (;;) {
        const stele_record *rec = NULL;
        int code = stele_iter_next(it->iter, wait_ms, &rec);
        if (code != STELE_OK || !rec)
            return code;
        if (it->type && (rec->type_size != it->type_size || memcmp(rec->type, it->type, it->type_size) != 0))
            continue;
        *out = record_copy(rec);
        return *out ? STELE_OK : -1;
    }
}

static PyObject *iter_next(IterObject *it)
{
    if (!it->iter)
        return it->log_closed ? raise_closed() : NULL;
    if (it->busy) {
        PyErr_SetString(PyExc_RuntimeError, "stele iterator: already in use by another thread");
        return NULL;
    }
    LogObject *log = it->log;
    if (use_begin(log) < 0)
        return NULL;
    it->busy = 1;
    long long deadline = it->follow && it->timeout_ms >= 0 ? now_ms() + it->timeout_ms : -1;
    PyObject *res = NULL;
    for (;;) {
        int wait = 0;
        if (it->follow) {
            long long left = deadline < 0 ? FOLLOW_STEP_MS : deadline - now_ms();
            wait = (int)(left < 0 ? 0 : left > FOLLOW_STEP_MS ? FOLLOW_STEP_MS : left);
        }
        stele_record *rec = NULL;
        int code;
        Py_BEGIN_ALLOW_THREADS
        code = iter_step(it, wait, &rec);
        Py_END_ALLOW_THREADS
        if (code < 0) {
            raise_code(STELE_ERR_NOMEM, "read: out of memory copying a record", NULL, NULL);
            break;
        }
        if (code != STELE_OK) {
            raise_last(code);
            break;
        }
        if (rec) {
            res = record_wrap(rec, 0);
            break;
        }
        if (!it->follow || PyErr_CheckSignals() < 0)
            break;
        if (log->closing) {
            raise_closed();
            break;
        }
        if (deadline >= 0 && now_ms() >= deadline)
            break;
    }
    it->busy = 0;
    use_end(log);
    return res;
}

static PyObject *iter_close_method(IterObject *it, PyObject *unused)
{
    (void)unused;
    if (it->busy) {
        PyErr_SetString(PyExc_RuntimeError, "stele iterator: close() while another thread reads from it");
        return NULL;
    }
    iter_close_engine(it);
    Py_RETURN_NONE;
}

static PyObject *iter_enter(IterObject *it, PyObject *unused)
{
    (void)unused;
    Py_INCREF(it);
    return (PyObject *)it;
}

static PyObject *iter_exit(IterObject *it, PyObject *args)
{
    (void)args;
    return iter_close_method(it, NULL);
}

static PyMethodDef iter_methods[] = {
    {"close", (PyCFunction)iter_close_method, METH_NOARGS, "close()\n\nReleases the engine's iterator."},
    {"__enter__", (PyCFunction)iter_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)iter_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject IterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stele.Reader",
    .tp_basicsize = sizeof(IterObject),
    .tp_dealloc = (destructor)iter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An iterator over records in LSN order (or one stream's, in version order): Log.read().\n"
              "Each step copies the record once (the engine's record is valid only until the next step).",
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)iter_next,
    .tp_methods = iter_methods,
};

static PyObject *log_read(LogObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"from_lsn", "type", "stream", "from_version", "follow", "timeout", NULL};
    uint64_t from_lsn = 0, from_version = 0;
    PyObject *lsn_obj = NULL, *version_obj = NULL, *type = Py_None, *stream = Py_None, *timeout = Py_None;
    int follow = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO$OOpO:read", kwlist, &lsn_obj, &type, &stream, &version_obj,
                                     &follow, &timeout))
        return NULL;
    if ((lsn_obj && get_u64(lsn_obj, "from_lsn", &from_lsn) < 0) ||
        (version_obj && get_u64(version_obj, "from_version", &from_version) < 0))
        return NULL;
    if (stream == Py_None ? version_obj != NULL : lsn_obj != NULL) {
        PyErr_SetString(PyExc_TypeError, stream == Py_None ? "read: from_version needs a stream"
                                                           : "read: a stream is read from_version, not from_lsn");
        return NULL;
    }
    int timeout_ms = -1;
    if (timeout != Py_None) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        if (!(t >= 0) || t > 86400.0 * 24) {
            PyErr_SetString(PyExc_ValueError, "read: timeout must be seconds from 0 to 24 days, or None");
            return NULL;
        }
        timeout_ms = (int)(t * 1000.0 + 0.5);
    }
    const char *tp = NULL, *sp = NULL;
    size_t tn = 0, sn = 0;
    if (get_text(type == Py_None ? NULL : type, "type", &tp, &tn) < 0 ||
        get_text(stream == Py_None ? NULL : stream, "stream", &sp, &sn) < 0)
        return NULL;
    IterObject *it = PyObject_New(IterObject, &IterType);
    if (!it)
        return NULL;
    it->log = self;
    Py_INCREF(self);
    it->iter = NULL;
    it->prev = it->next = NULL;
    it->follow = follow;
    it->timeout_ms = timeout_ms;
    it->busy = 0;
    it->log_closed = 0;
    it->type = NULL;
    it->type_size = tn;
    if (tp) {
        it->type = PyMem_Malloc(tn + 1);
        if (!it->type) {
            Py_DECREF(it);
            return PyErr_NoMemory();
        }
        memcpy(it->type, tp, tn);
    }
    if (use_begin(self) < 0) {
        Py_DECREF(it);
        return NULL;
    }
    stele_iter *si = NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = sp ? stele_iter_open_stream(self->log, sp, sn, from_version, &si) : stele_iter_open(self->log, from_lsn, &si);
    Py_END_ALLOW_THREADS
    if (code != STELE_OK) {
        raise_last(code);
        use_end(self);
        Py_DECREF(it);
        return NULL;
    }
    use_end(self);
    it->iter = si;
    it->next = self->iters;
    if (self->iters)
        self->iters->prev = it;
    self->iters = it;
    return (PyObject *)it;
}

/* -------------------------------------------------------------- cursors */

struct CursorObject {
    PyObject_HEAD
    LogObject *log;              /* owned */
    stele_cursor *cur;           /* NULL once closed */
    CursorObject *prev, *next;   /* in log->cursors */
    int busy;                    /* a cursor belongs to one thread at a time (stele.h) */
    int log_closed;
    PyObject *name;
};

static PyTypeObject CursorType;

static PyStructSequence_Field dead_fields[] = {
    {"lsn", "the record given up on"},
    {"dead_at_ns", "when it was given up on (the latest time)"},
    {"resolved_at_ns", "when it was marked resolved, 0 = still dead"},
    {"attempts", "deliveries tried"},
    {"key", "the record's key (may be empty)"},
    {"reason", "why"},
    {"last_stderr", "the handler's last stderr line"},
    {NULL, NULL}};
static PyStructSequence_Desc dead_desc = {"stele.DeadLetter", "A record a consumer gave up on (Cursor.dead_letters).",
                                          dead_fields, 7};
static PyTypeObject DeadType;

static PyStructSequence_Field consumer_fields[] = {
    {"name", "the consumer's name"},
    {"position", "its committed position, 0 = none"},
    {"dead_letters", "dead letters not resolved"},
    {NULL, NULL}};
static PyStructSequence_Desc consumer_desc = {"stele.ConsumerInfo", "A consumer as its files say (Log.consumers).",
                                              consumer_fields, 3};
static PyTypeObject ConsumerType;

static void cursor_unlink(CursorObject *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (c->log->cursors == c)
        c->log->cursors = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void cursor_close_engine(CursorObject *c)
{
    if (c->cur) {
        stele_cursor_close(c->cur);
        c->cur = NULL;
        cursor_unlink(c);
    }
}

static void cursor_dealloc(CursorObject *c)
{
    cursor_close_engine(c);
    Py_XDECREF(c->log);
    Py_XDECREF(c->name);
    PyObject_Free(c);
}

/* Takes the cursor for one call: the log open, the cursor open, no other thread in it. */
static int cursor_begin(CursorObject *c)
{
    if (!c->cur) {
        raise_code(STELE_ERR_CLOSED, c->log_closed ? "the cursor's log is closed" : "the cursor is closed", NULL,
                   NULL);
        return -1;
    }
    if (c->busy) {
        PyErr_SetString(PyExc_RuntimeError, "stele cursor: in use by another thread");
        return -1;
    }
    if (use_begin(c->log) < 0)
        return -1;
    c->busy = 1;
    return 0;
}

static void cursor_end(CursorObject *c)
{
    c->busy = 0;
    use_end(c->log);
}

static PyObject *cursor_position(CursorObject *c, void *unused)
{
    (void)unused;
    if (cursor_begin(c) < 0)
        return NULL;
    uint64_t lsn = 0;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_cursor_position(c->cur, &lsn);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? PyLong_FromUnsignedLongLong(lsn) : raise_last(code);
    cursor_end(c);
    return res;
}

static PyObject *cursor_commit(CursorObject *c, PyObject *arg)
{
    uint64_t lsn;
    if (get_u64(arg, "lsn", &lsn) < 0 || cursor_begin(c) < 0)
        return NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_cursor_commit(c->cur, lsn);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? (Py_INCREF(Py_None), Py_None) : raise_last(code);
    cursor_end(c);
    return res;
}

/* True when this handle holds the consumer's lock, False when another does or no lock file
 * can be made (check_exclusive() raises Locked or ReadOnly with the reason instead). */
static PyObject *cursor_exclusive_impl(CursorObject *c, int raise)
{
    if (cursor_begin(c) < 0)
        return NULL;
    int code = stele_cursor_exclusive(c->cur);
    PyObject *res;
    if (code == STELE_OK)
        res = (Py_INCREF(Py_True), Py_True);
    else if (!raise && (code == STELE_ERR_LOCKED || code == STELE_ERR_READ_ONLY))
        res = (Py_INCREF(Py_False), Py_False);
    else
        res = raise_last(code);
    cursor_end(c);
    return res;
}

static PyObject *cursor_get_exclusive(CursorObject *c, void *unused)
{
    (void)unused;
    return cursor_exclusive_impl(c, 0);
}

static PyObject *cursor_check_exclusive(CursorObject *c, PyObject *unused)
{
    (void)unused;
    PyObject *r = cursor_exclusive_impl(c, 1);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *cursor_dead_letter(CursorObject *c, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"lsn", "reason", "key", "attempts", "last_stderr", NULL};
    PyObject *lsn_obj, *reason = NULL, *key = NULL, *err = NULL;
    unsigned int attempts = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$OIO:dead_letter", kwlist, &lsn_obj, &reason, &key,
                                     &attempts, &err))
        return NULL;
    stele_dead_letter dl;
    memset(&dl, 0, sizeof dl);
    dl.attempts = attempts;
    if (get_u64(lsn_obj, "lsn", &dl.lsn) < 0 || get_text(reason, "reason", &dl.reason, &dl.reason_size) < 0 ||
        get_text(key == Py_None ? NULL : key, "key", &dl.key, &dl.key_size) < 0 ||
        get_text(err == Py_None ? NULL : err, "last_stderr", &dl.last_stderr, &dl.last_stderr_size) < 0 ||
        cursor_begin(c) < 0)
        return NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_dead_letter_add(c->cur, &dl);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? (Py_INCREF(Py_None), Py_None) : raise_last(code);
    cursor_end(c);
    return res;
}

static PyObject *cursor_resolve_dead_letter(CursorObject *c, PyObject *arg)
{
    uint64_t lsn;
    if (get_u64(arg, "lsn", &lsn) < 0 || cursor_begin(c) < 0)
        return NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_dead_letter_resolve(c->cur, lsn);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? (Py_INCREF(Py_None), Py_None) : raise_last(code);
    cursor_end(c);
    return res;
}

static PyObject *cursor_dead_letters(CursorObject *c, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"include_resolved", NULL};
    int include = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:dead_letters", kwlist, &include) || cursor_begin(c) < 0)
        return NULL;
    stele_dead_letter *items = NULL;
    size_t count = 0;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_dead_letter_list(c->cur, include, &items, &count);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? PyList_New((Py_ssize_t)count) : raise_last(code);
    for (size_t i = 0; res && i < count; i++) {
        const stele_dead_letter *d = &items[i];
        PyObject *f[7] = {PyLong_FromUnsignedLongLong(d->lsn), PyLong_FromUnsignedLongLong(d->dead_at_ns),
                          PyLong_FromUnsignedLongLong(d->resolved_at_ns), PyLong_FromUnsignedLong(d->attempts),
                          text_new(d->key, d->key_size), text_new(d->reason, d->reason_size),
                          text_new(d->last_stderr, d->last_stderr_size)};
        PyObject *o = structseq_fill(&DeadType, f, 7);
        if (!o)
            Py_CLEAR(res);
        else
            PyList_SET_ITEM(res, (Py_ssize_t)i, o);
    }
    stele_dead_letter_free(items);
    cursor_end(c);
    return res;
}

static PyObject *cursor_close_method(CursorObject *c, PyObject *unused)
{
    (void)unused;
    if (c->busy) {
        PyErr_SetString(PyExc_RuntimeError, "stele cursor: close() while another thread uses it");
        return NULL;
    }
    cursor_close_engine(c);
    Py_RETURN_NONE;
}

static PyObject *cursor_enter(CursorObject *c, PyObject *unused)
{
    (void)unused;
    Py_INCREF(c);
    return (PyObject *)c;
}

static PyObject *cursor_exit(CursorObject *c, PyObject *args)
{
    (void)args;
    PyObject *r = cursor_close_method(c, NULL);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *cursor_get_name(CursorObject *c, void *unused)
{
    (void)unused;
    Py_INCREF(c->name);
    return c->name;
}

static PyMethodDef cursor_methods[] = {
    {"commit", (PyCFunction)cursor_commit, METH_O,
     "commit(lsn)\n\nMakes lsn the committed position, durably (positions never go back: Invalid). Locked "
     "when another handle holds the consumer's lock."},
    {"check_exclusive", (PyCFunction)cursor_check_exclusive, METH_NOARGS,
     "check_exclusive()\n\nRaises Locked (naming the holder's pid) or ReadOnly unless this handle may change "
     "the consumer; call it before delivering anything."},
    {"dead_letter", (PyCFunction)(void (*)(void))cursor_dead_letter, METH_VARARGS | METH_KEYWORDS,
     "dead_letter(lsn, reason, *, key=None, attempts=1, last_stderr=None)\n\nRecords that the consumer gave "
     "up on lsn, durably (recording it again replaces what the list says)."},
    {"resolve_dead_letter", (PyCFunction)cursor_resolve_dead_letter, METH_O,
     "resolve_dead_letter(lsn)\n\nMarks the dead letter of lsn resolved (redriven), durably; NotFound if none."},
    {"dead_letters", (PyCFunction)(void (*)(void))cursor_dead_letters, METH_VARARGS | METH_KEYWORDS,
     "dead_letters(include_resolved=False) -> list[DeadLetter]\n\nThe dead letters in LSN order."},
    {"close", (PyCFunction)cursor_close_method, METH_NOARGS, "close()\n\nReleases the consumer's lock."},
    {"__enter__", (PyCFunction)cursor_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)cursor_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef cursor_getset[] = {
    {"position", (getter)cursor_position, NULL, "the committed position: the last LSN finished, 0 = none", NULL},
    {"exclusive", (getter)cursor_get_exclusive, NULL,
     "True when this handle holds the consumer's lock (may commit), False otherwise", NULL},
    {"name", (getter)cursor_get_name, NULL, "the consumer's name", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject CursorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stele.Cursor",
    .tp_basicsize = sizeof(CursorObject),
    .tp_dealloc = (destructor)cursor_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A consumer's durable cursor and dead letters (Log.cursor(name)); a context manager.\n"
              "One handle changes a consumer at a time (a lock file); a cursor belongs to one thread at a time.",
    .tp_methods = cursor_methods,
    .tp_getset = cursor_getset,
};

static PyObject *log_cursor(LogObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "cursor: the name must be a str");
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name || use_begin(self) < 0)
        return NULL;
    stele_cursor *cur = NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_cursor_open(self->log, name, &cur);
    Py_END_ALLOW_THREADS
    if (code != STELE_OK) {
        raise_last(code);
        use_end(self);
        return NULL;
    }
    use_end(self);
    CursorObject *c = PyObject_New(CursorObject, &CursorType);
    if (!c) {
        stele_cursor_close(cur);
        return NULL;
    }
    c->log = self;
    Py_INCREF(self);
    c->name = arg;
    Py_INCREF(arg);
    c->cur = cur;
    c->busy = 0;
    c->log_closed = 0;
    c->prev = NULL;
    c->next = self->cursors;
    if (self->cursors)
        self->cursors->prev = c;
    self->cursors = c;
    return (PyObject *)c;
}

static PyObject *log_consumers(LogObject *self, PyObject *unused)
{
    (void)unused;
    if (use_begin(self) < 0)
        return NULL;
    stele_consumer_info *items = NULL;
    size_t count = 0;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_consumers(self->log, &items, &count);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? PyList_New((Py_ssize_t)count) : raise_last(code);
    for (size_t i = 0; res && i < count; i++) {
        PyObject *f[3] = {PyUnicode_DecodeUTF8(items[i].name, (Py_ssize_t)strnlen(items[i].name, sizeof items[i].name),
                                               "replace"),
                          PyLong_FromUnsignedLongLong(items[i].position),
                          PyLong_FromUnsignedLongLong(items[i].dead_letters)};
        PyObject *o = structseq_fill(&ConsumerType, f, 3);
        if (!o)
            Py_CLEAR(res);
        else
            PyList_SET_ITEM(res, (Py_ssize_t)i, o);
    }
    stele_consumers_free(items);
    use_end(self);
    return res;
}

/* --------------------------------------------------------------- verify */

typedef struct {
    PyObject *problems; /* list, or NULL after a failure */
} verify_ctx;

/* Called by stele_verify without the GIL: takes it only for a problem (progress is ignored). */
static int verify_cb(void *ctx, const stele_verify_problem *p, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    verify_ctx *v = ctx;
    if (!p)
        return 0;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = 0;
    if (v->problems) {
        PyObject *t = Py_BuildValue("{s:s,s:K,s:K,s:s}", "path", p->path ? p->path : "", "offset",
                                    (unsigned long long)p->offset, "lsn", (unsigned long long)p->lsn, "what",
                                    p->what ? p->what : "");
        if (!t || PyList_Append(v->problems, t) < 0) {
            Py_CLEAR(v->problems);
            stop = 1;
        }
        Py_XDECREF(t);
    }
    PyGILState_Release(g);
    return stop;
}

static PyObject *mod_verify(PyObject *mod, PyObject *arg)
{
    (void)mod;
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    verify_ctx v = {PyList_New(0)};
    if (!v.problems) {
        Py_DECREF(path);
        return NULL;
    }
    stele_verify_report rep;
    memset(&rep, 0, sizeof rep);
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_verify(PyBytes_AS_STRING(path), verify_cb, &v, &rep);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (!v.problems)
        return NULL; /* the callback's error (memory) is set */
    if (code != STELE_OK && code != STELE_ERR_CORRUPT) {
        Py_DECREF(v.problems);
        return raise_last(code);
    }
    PyObject *res = Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:O}", "segments", (unsigned long long)rep.segments,
                                  "batches", (unsigned long long)rep.batches, "records",
                                  (unsigned long long)rep.records, "bytes", (unsigned long long)rep.bytes,
                                  "last_lsn", (unsigned long long)rep.last_lsn, "problem_count",
                                  (unsigned long long)rep.problems, "torn_bytes", (unsigned long long)rep.torn_bytes,
                                  "problems", v.problems);
    Py_DECREF(v.problems);
    return res;
}

/* segment_inspect(path, batches=False): the walk of one segment file. */
typedef struct {
    PyObject *batches; /* list, or NULL when not asked (or after a failure: the error is set) */
    int failed;
} inspect_ctx;

static int inspect_cb(void *ctx, const stele_batch_info *b, const stele_record *rec, uint64_t rec_offset,
                      uint64_t rec_size)
{
    (void)rec_offset;
    (void)rec_size;
    inspect_ctx *c = ctx;
    if (rec || !c->batches)
        return 0;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *d = Py_BuildValue("{s:K,s:K,s:K,s:I,s:I,s:I,s:i,s:K,s:I,s:K}", "offset", (unsigned long long)b->offset,
                                "frame_size", (unsigned long long)b->frame_size, "first_lsn",
                                (unsigned long long)b->first_lsn, "record_count", (unsigned)b->record_count,
                                "stored_size", (unsigned)b->stored_size, "raw_size", (unsigned)b->raw_size,
                                "compression", (int)b->compression, "durable_lsn", (unsigned long long)b->durable_lsn,
                                "dict_id", (unsigned)b->dict_id, "chain", (unsigned long long)b->chain);
    int stop = !d || PyList_Append(c->batches, d) < 0;
    Py_XDECREF(d);
    if (stop)
        c->failed = 1;
    PyGILState_Release(g);
    return stop;
}

static PyObject *mod_segment_inspect(PyObject *mod, PyObject *args, PyObject *kwds)
{
    (void)mod;
    static char *kwlist[] = {"path", "batches", NULL};
    PyObject *path = NULL;
    int want = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&|p:segment_inspect", kwlist, PyUnicode_FSConverter, &path, &want))
        return NULL;
    inspect_ctx c = {want ? PyList_New(0) : NULL, 0};
    if (want && !c.batches) {
        Py_DECREF(path);
        return NULL;
    }
    stele_segment_info info;
    memset(&info, 0, sizeof info);
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_segment_inspect(PyBytes_AS_STRING(path), want ? inspect_cb : NULL, &c, &info);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (c.failed || code != STELE_OK) {
        Py_XDECREF(c.batches);
        return c.failed ? NULL : raise_last(code);
    }
    PyObject *res = Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:K,s:O,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:s}", "seq", (unsigned long long)info.seq,
        "first_lsn", (unsigned long long)info.first_lsn, "segment_size", (unsigned long long)info.segment_size,
        "created_at_ns", (unsigned long long)info.created_at_ns, "prev_chain", (unsigned long long)info.prev_chain,
        "file_size", (unsigned long long)info.file_size, "sealed", info.sealed ? Py_True : Py_False, "sealed_at_ns",
        (unsigned long long)info.sealed_at_ns, "data_end", (unsigned long long)info.data_end, "batch_count",
        (unsigned long long)info.batch_count, "record_count", (unsigned long long)info.record_count, "last_lsn",
        (unsigned long long)info.last_lsn, "durable_lsn", (unsigned long long)info.durable_lsn, "durable_end",
        (unsigned long long)info.durable_end, "stop_note", info.stop_note);
    if (res && c.batches && PyDict_SetItemString(res, "batches", c.batches) < 0)
        Py_CLEAR(res);
    Py_XDECREF(c.batches);
    return res;
}

/* ----------------------------------------------------------- log queries */

static PyObject *log_get(LogObject *self, PyObject *arg)
{
    uint64_t lsn;
    if (get_u64(arg, "lsn", &lsn) < 0 || use_begin(self) < 0)
        return NULL;
    stele_record *rec = NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_get(self->log, lsn, &rec);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? record_wrap(rec, 1) : raise_last(code);
    use_end(self);
    return res;
}

static PyObject *log_get_key(LogObject *self, PyObject *arg)
{
    const char *k;
    size_t kn;
    if (get_text(arg, "key", &k, &kn) < 0 || use_begin(self) < 0)
        return NULL;
    stele_record *rec = NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_get_key(self->log, k, kn, &rec);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? record_wrap(rec, 1) : raise_last(code);
    use_end(self);
    return res;
}

static PyObject *log_status(LogObject *self, PyObject *arg)
{
    const char *k;
    size_t kn;
    if (get_text(arg, "key", &k, &kn) < 0 || use_begin(self) < 0)
        return NULL;
    stele_status st;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_status_get(self->log, k, kn, &st);
    Py_END_ALLOW_THREADS
    PyObject *res;
    if (code != STELE_OK) {
        res = raise_last(code);
    } else {
        PyObject *items[6] = {enum_get(enum_state, 6, (int)st.state), PyLong_FromUnsignedLongLong(st.lsn),
                              PyLong_FromUnsignedLongLong(st.recorded_at_ns),
                              PyLong_FromUnsignedLongLong(st.stream_version),
                              PyLong_FromUnsignedLongLong(st.outcome_lsn),
                              PyLong_FromUnsignedLongLong(st.compensation_lsn)};
        res = structseq_fill(&StatusType, items, 6);
    }
    use_end(self);
    return res;
}

static PyObject *log_pending(LogObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"older_than_ns", "limit", NULL};
    uint64_t older = 0;
    PyObject *older_obj = NULL;
    Py_ssize_t limit = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|On:pending", kwlist, &older_obj, &limit))
        return NULL;
    if (older_obj && get_u64(older_obj, "older_than_ns", &older) < 0)
        return NULL;
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "pending: limit must be >= 0 (0 = no limit)");
        return NULL;
    }
    if (use_begin(self) < 0)
        return NULL;
    stele_pending_item *items = NULL;
    size_t count = 0;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_pending(self->log, older, (size_t)limit, &items, &count);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? PyList_New((Py_ssize_t)count) : raise_last(code);
    for (size_t i = 0; res && i < count; i++) {
        PyObject *f[3] = {PyLong_FromUnsignedLongLong(items[i].lsn),
                          PyLong_FromUnsignedLongLong(items[i].recorded_at_ns),
                          text_new(items[i].key, items[i].key_size)};
        PyObject *p = structseq_fill(&PendingType, f, 3);
        if (!p)
            Py_CLEAR(res);
        else
            PyList_SET_ITEM(res, (Py_ssize_t)i, p);
    }
    stele_pending_free(items);
    use_end(self);
    return res;
}

static PyObject *log_stream_version(LogObject *self, PyObject *arg)
{
    const char *s;
    size_t sn;
    if (get_text(arg, "stream", &s, &sn) < 0 || use_begin(self) < 0)
        return NULL;
    uint64_t version = 0, lsn = 0;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_stream_version(self->log, s, sn, &version, &lsn);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? Py_BuildValue("(KK)", (unsigned long long)version, (unsigned long long)lsn)
                                     : raise_last(code);
    use_end(self);
    return res;
}

static PyObject *log_lsn_at_time(LogObject *self, PyObject *arg)
{
    uint64_t ns;
    if (get_u64(arg, "time_ns", &ns) < 0 || use_begin(self) < 0)
        return NULL;
    uint64_t lsn = 0;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_lsn_at_time(self->log, ns, &lsn);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? PyLong_FromUnsignedLongLong(lsn) : raise_last(code);
    use_end(self);
    return res;
}

static PyObject *log_stats(LogObject *self, PyObject *unused)
{
    (void)unused;
    if (use_begin(self) < 0)
        return NULL;
    stele_stats st;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_stats_get(self->log, &st);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? stats_new(&st) : raise_last(code);
    use_end(self);
    return res;
}

static PyObject *log_compression(LogObject *self, PyObject *unused)
{
    (void)unused;
    if (use_begin(self) < 0)
        return NULL;
    stele_compression_report rep;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_compression_get(self->log, &rep);
    Py_END_ALLOW_THREADS
    PyObject *res = code != STELE_OK
                        ? raise_last(code)
                        : Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:I}", "batches", (unsigned long long)rep.batches,
                                        "batches_zstd", (unsigned long long)rep.batches_zstd, "batches_dict",
                                        (unsigned long long)rep.batches_dict, "raw_size",
                                        (unsigned long long)rep.raw_size, "stored_size",
                                        (unsigned long long)rep.stored_size, "frame_size",
                                        (unsigned long long)rep.frame_size, "dict_id_max", (unsigned)rep.dict_id_max);
    use_end(self);
    return res;
}

/* dict_train(*, sample_records=None, sample_size_max=None, dict_size_max=None) */
static PyObject *log_dict_train(LogObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"sample_records", "sample_size_max", "dict_size_max", NULL};
    PyObject *o[3] = {Py_None, Py_None, Py_None};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OOO:dict_train", kwlist, &o[0], &o[1], &o[2]))
        return NULL;
    stele_dict_options opts;
    stele_dict_options_init(&opts);
    uint64_t v[3] = {opts.sample_records, opts.sample_size_max, opts.dict_size_max};
    for (int i = 0; i < 3; i++)
        if (o[i] != Py_None && get_u64(o[i], kwlist[i], &v[i]) < 0)
            return NULL;
    if (v[2] > UINT32_MAX)
        return raise_code(STELE_ERR_INVALID, "dict_train: dict_size_max is out of bounds", NULL, NULL);
    opts.sample_records = v[0];
    opts.sample_size_max = v[1];
    opts.dict_size_max = (uint32_t)v[2];
    if (use_begin(self) < 0)
        return NULL;
    stele_dict_info info;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_dict_train(self->log, &opts, &info);
    Py_END_ALLOW_THREADS
    PyObject *res = code != STELE_OK
                        ? raise_last(code)
                        : Py_BuildValue("{s:I,s:I,s:K,s:K,s:K,s:K}", "dict_id", (unsigned)info.dict_id, "dict_size",
                                        (unsigned)info.dict_size, "created_at_ns",
                                        (unsigned long long)info.created_at_ns, "trained_through_lsn",
                                        (unsigned long long)info.trained_through_lsn, "sample_records",
                                        (unsigned long long)info.sample_records, "sample_size",
                                        (unsigned long long)info.sample_size);
    use_end(self);
    return res;
}

static PyObject *log_sync(LogObject *self, PyObject *unused)
{
    (void)unused;
    if (use_begin(self) < 0)
        return NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_sync(self->log);
    Py_END_ALLOW_THREADS
    PyObject *res = code == STELE_OK ? (Py_INCREF(Py_None), Py_None) : raise_last(code);
    use_end(self);
    return res;
}

/* Closes the engine's handle: no new call starts, the calls inside the engine
 * finish, iterators are closed, then stele_close (which waits for every
 * pending append, async ones included). Returns the stele code. */
static int log_close_handle(LogObject *self)
{
    if (!self->log)
        return STELE_OK;
    self->closing = 1;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->users_lock);
    while (atomic_load(&self->users) > 0)
        pthread_cond_wait(&self->users_zero, &self->users_lock);
    pthread_mutex_unlock(&self->users_lock);
    Py_END_ALLOW_THREADS
    if (!self->log)
        return STELE_OK; /* another thread's close() got here first */
    while (self->iters) {
        self->iters->log_closed = 1;
        iter_close_engine(self->iters);
    }
    /* stele.h: close cursors before their log. */
    while (self->cursors) {
        self->cursors->log_closed = 1;
        cursor_close_engine(self->cursors);
    }
    stele_log *log = self->log;
    self->log = NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_close(log);
    Py_END_ALLOW_THREADS
    return code;
}

static PyObject *log_close(LogObject *self, PyObject *unused)
{
    (void)unused;
    int code = log_close_handle(self);
    if (code != STELE_OK)
        return raise_last(code);
    Py_RETURN_NONE;
}

static PyObject *log_enter(LogObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->log)
        return raise_closed();
    Py_INCREF(self);
    return (PyObject *)self;
}

/* Calls self.close(), so that a subclass's close (the package's, which also
 * settles async futures) runs. */
static PyObject *log_exit(LogObject *self, PyObject *args)
{
    (void)args;
    PyObject *r = PyObject_CallMethod((PyObject *)self, "close", NULL);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *log_get_closed(LogObject *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong(self->log == NULL);
}

static void log_dealloc(LogObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (self->log) {
        /* Iterators hold a reference: none is left. A failed final sync must not pass unseen. */
        int code = log_close_handle(self);
        if (code != STELE_OK) {
            raise_last(code);
            PyErr_WriteUnraisable((PyObject *)self);
        }
    }
    PyObject *rest = log_async_drain(self, NULL); /* futures nobody can await any more */
    if (!rest)
        PyErr_Clear();
    Py_XDECREF(rest);
    if (self->efd >= 0)
        close(self->efd);
    pthread_mutex_destroy(&self->users_lock);
    pthread_cond_destroy(&self->users_zero);
    pthread_mutex_destroy(&self->done_lock);
    /* A subclass's instance: subtype_dealloc drops the reference to its type. */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int log_traverse(LogObject *self, visitproc visit, void *arg)
{
    (void)self;
    (void)visit;
    (void)arg;
    return 0;
}

#define FASTKW(fn) (PyCFunction)(void (*)(void))(fn)

static PyMethodDef log_methods[] = {
    {"append", FASTKW(log_append), METH_FASTCALL | METH_KEYWORDS,
     "append(type=None, data=None, *, key=None, stream=None, expect_version=None, event_time=None,\n"
     "       actor=None, content=None) -> Receipt\n\n"
     "Appends one event and waits until it is acknowledged per the log's durability (the GIL is\n"
     "released meanwhile). data: bytes or any buffer (binary), str (text, UTF-8), dict or list (JSON).\n"
     "key: the idempotency key; the same request again is Decision.DUPLICATE with the original LSN, a\n"
     "different one raises Conflict (its .receipt has the original's LSN). expect_version: the stream\n"
     "must be at that version (0 = must not exist), else StreamVersion (.receipt.stream_version is the\n"
     "current one). event_time: a datetime or ns since the epoch. Raises the code's exception."},
    {"append_batch", (PyCFunction)log_append_batch, METH_O,
     "append_batch(events) -> list[Receipt]\n\n"
     "Appends a sequence of dicts (keys as append's arguments, plus kind, outcome and ref) atomically:\n"
     "every new record lands in one batch. When any record fails, raises the first failure's exception\n"
     "with .receipts holding every record's receipt (the others may have been appended)."},
    {"intent", FASTKW(log_intent), METH_FASTCALL | METH_KEYWORDS,
     "intent(key, type=None, data=None, *, stream=None, expect_version=None, event_time=None, actor=None,\n"
     "       content=None) -> Receipt\n\nRecords an action whose outcome is not known yet (state PENDING)."},
    {"resolve", FASTKW(log_resolve), METH_FASTCALL | METH_KEYWORDS,
     "resolve(key, outcome, type=None, data=None, *, ...) -> Receipt\n\n"
     "Records the outcome ('confirmed' or 'failed', or an Outcome) of the intent with that key. The same\n"
     "outcome again is a duplicate; another one raises Conflict; an unknown key raises NotFound."},
    {"compensate", FASTKW(log_compensate), METH_FASTCALL | METH_KEYWORDS,
     "compensate(ref, type=None, data=None, *, ...) -> Receipt\n\n"
     "Appends a compensation reversing the event or confirmed outcome at LSN ref (history is never edited)."},
    {"_append_async", FASTKW(log_append_async), METH_FASTCALL | METH_KEYWORDS,
     "_append_async(future, type=None, data=None, *, ...)\n\nQueues one append (stele_append_async); its "
     "completion is listed by _async_drain once the eventfd (_async_fd) is readable. Use append_async."},
    {"_async_fd", (PyCFunction)log_async_fd, METH_NOARGS, "The eventfd that signals async completions."},
    {"_async_drain", (PyCFunction)log_async_drain, METH_NOARGS,
     "The completed async appends: a list of (future, receipt, exception or None)."},
    {"get", (PyCFunction)log_get, METH_O, "get(lsn) -> Record\n\nThe record at lsn; NotFound beyond the log."},
    {"get_key", (PyCFunction)log_get_key, METH_O,
     "get_key(key) -> Record\n\nThe record key holds (the event or the intent); NotFound when unknown or forgotten."},
    {"status", (PyCFunction)log_status, METH_O,
     "status(key) -> Status\n\nWhat key holds: state, its record's LSN, outcome and compensation LSNs."},
    {"_pending", (PyCFunction)(void (*)(void))log_pending, METH_VARARGS | METH_KEYWORDS,
     "_pending(older_than_ns=0, limit=0) -> list[PendingIntent]"},
    {"stream_version", (PyCFunction)log_stream_version, METH_O,
     "stream_version(stream) -> (version, last_lsn)\n\nThe stream's current version (0 = no such stream) and "
     "the LSN of its last record."},
    {"_lsn_at_time", (PyCFunction)log_lsn_at_time, METH_O, "_lsn_at_time(time_ns) -> int"},
    {"read", (PyCFunction)(void (*)(void))log_read, METH_VARARGS | METH_KEYWORDS,
     "read(from_lsn=0, type=None, *, stream=None, from_version=0, follow=False, timeout=None) -> Reader\n\n"
     "Iterates over records from from_lsn (0 or 1 = the start), only those of type when given; with\n"
     "stream, that stream's records in version order from from_version. Without follow the iteration\n"
     "ends at the end of the log; with follow it waits for new records, at most timeout seconds for\n"
     "each (None = forever; Ctrl-C and close() interrupt it)."},
    {"cursor", (PyCFunction)log_cursor, METH_O,
     "cursor(name) -> Cursor\n\nOpens the consumer cursor name (1-64 bytes of [A-Za-z0-9._-]): its durable "
     "position and dead letters. Without the consumer's lock (another handle has it) the cursor reads only: "
     "see Cursor.exclusive."},
    {"consumers", (PyCFunction)log_consumers, METH_NOARGS,
     "consumers() -> list[ConsumerInfo]\n\nEvery consumer of the log, by name, read without taking their locks."},
    {"stats", (PyCFunction)log_stats, METH_NOARGS, "stats() -> Stats\n\nThe log's counters and state (stele_stats)."},
    {"compression", (PyCFunction)log_compression, METH_NOARGS,
     "compression() -> dict\n\nSums every batch header (stele_compression_get; no body is read): batches, "
     "batches_zstd, batches_dict, raw_size, stored_size, frame_size, dict_id_max. The compression ratio is "
     "raw_size / stored_size."},
    {"dict_train", (PyCFunction)(void (*)(void))log_dict_train, METH_VARARGS | METH_KEYWORDS,
     "dict_train(*, sample_records=None, sample_size_max=None, dict_size_max=None) -> dict\n\n"
     "Trains a zstd dictionary on the newest records (stele_dict_train; None = the default), stores it "
     "durably and makes the writer use it: returns dict_id, dict_size, created_at_ns, trained_through_lsn, "
     "sample_records, sample_size. Raises Invalid when the sample is too small or too uniform."},
    {"sync", (PyCFunction)log_sync, METH_NOARGS, "sync()\n\nMakes every record acknowledged so far durable."},
    {"close", (PyCFunction)log_close, METH_NOARGS,
     "close()\n\nWaits for every pending append, makes everything durable and releases the log.\n"
     "Raises the final sync's error, if any (the handle is released either way)."},
    {"__enter__", (PyCFunction)log_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)log_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef log_getset[] = {
    {"closed", (getter)log_get_closed, NULL, "True once close() has run", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject LogType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stele._stele.Log",
    .tp_basicsize = sizeof(LogObject),
    .tp_dealloc = (destructor)log_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "An open stele log (the C handle). Use stele.open().",
    .tp_traverse = (traverseproc)log_traverse,
    .tp_weaklistoffset = offsetof(LogObject, weakrefs),
    .tp_methods = log_methods,
    .tp_getset = log_getset,
    .tp_init = (initproc)log_init,
    .tp_new = log_new,
};

/* ------------------------------------------------------------- functions */

static PyObject *mod_create(PyObject *mod, PyObject *args, PyObject *kwds)
{
    (void)mod;
    PyObject *path = NULL;
    if (!PyArg_ParseTuple(args, "O&:create", PyUnicode_FSConverter, &path))
        return NULL;
    stele_options opts;
    if (options_parse(kwds, &opts) < 0) {
        Py_DECREF(path);
        return NULL;
    }
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = stele_create(PyBytes_AS_STRING(path), &opts);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (code != STELE_OK)
        return raise_last(code);
    Py_RETURN_NONE;
}

static PyObject *mod_strerror(PyObject *mod, PyObject *arg)
{
    (void)mod;
    long code = PyLong_AsLong(arg);
    if (code == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(stele_strerror((int)code));
}

static PyObject *mod_error_class(PyObject *mod, PyObject *arg)
{
    (void)mod;
    long code = PyLong_AsLong(arg);
    if (code == -1 && PyErr_Occurred())
        return NULL;
    PyObject *cls = code > 0 && code < CODE_COUNT && code_errors[code] ? code_errors[code] : Error;
    Py_INCREF(cls);
    return cls;
}

/* _set_enums(Decision, Kind, Outcome, Content, State): members by value for the results. */
static PyObject *mod_set_enums(PyObject *mod, PyObject *args)
{
    (void)mod;
    PyObject *cls[5];
    if (!PyArg_ParseTuple(args, "OOOOO:_set_enums", &cls[0], &cls[1], &cls[2], &cls[3], &cls[4]))
        return NULL;
    struct {
        PyObject **members;
        int count, first;
    } t[5] = {{enum_decision, 4, 0}, {enum_kind, 5, 1}, {enum_outcome, 3, 0}, {enum_content, 4, 1}, {enum_state, 6, 1}};
    for (int e = 0; e < 5; e++)
        for (int v = t[e].first; v < t[e].count; v++) {
            PyObject *m = PyObject_CallFunction(cls[e], "i", v);
            if (!m)
                return NULL;
            Py_XSETREF(t[e].members[v], m);
        }
    Py_RETURN_NONE;
}

/* _set_helpers(dt_to_ns, ns_to_dt, json_dumps, json_loads) */
static PyObject *mod_set_helpers(PyObject *mod, PyObject *args)
{
    (void)mod;
    PyObject *h[4];
    if (!PyArg_ParseTuple(args, "OOOO:_set_helpers", &h[0], &h[1], &h[2], &h[3]))
        return NULL;
    PyObject **slots[4] = {&helper_dt_to_ns, &helper_ns_to_dt, &helper_json_dumps, &helper_json_loads};
    for (int i = 0; i < 4; i++) {
        Py_INCREF(h[i]);
        Py_XSETREF(*slots[i], h[i]);
    }
    Py_RETURN_NONE;
}

static PyMethodDef mod_methods[] = {
    {"_create", (PyCFunction)(void (*)(void))mod_create, METH_VARARGS | METH_KEYWORDS,
     "_create(path, **options): stele_create"},
    {"verify", (PyCFunction)mod_verify, METH_O,
     "verify(path) -> dict\n\nChecks every byte of the log in path without writing anything (stele_verify): "
     "returns segments, batches, records, bytes, last_lsn, torn_bytes, problem_count and problems (a list of "
     "{path, offset, lsn, what}); a damaged log is a report with problems, not an exception."},
    {"segment_inspect", (PyCFunction)(void (*)(void))mod_segment_inspect, METH_VARARGS | METH_KEYWORDS,
     "segment_inspect(path, batches=False) -> dict\n\nWalks one segment file read-only, beside a writer "
     "(stele_segment_inspect): seq, first_lsn, segment_size, created_at_ns, prev_chain, file_size, sealed, "
     "sealed_at_ns, data_end, batch_count, record_count, last_lsn, durable_lsn, durable_end and stop_note (why "
     "the walk stopped); with batches, also a list of each valid batch's header (offset, frame_size, first_lsn, "
     "record_count, stored_size, raw_size, compression, durable_lsn, dict_id, chain). Raises Corrupt for an "
     "invalid header or a damaged sealed segment, NotFound, IOFailure."},
    {"strerror", (PyCFunction)mod_strerror, METH_O, "strerror(code) -> str\n\nThe static description of a stele code."},
    {"error_class", (PyCFunction)mod_error_class, METH_O,
     "error_class(code) -> type\n\nThe exception class a stele code is raised as (Error for unknown codes)."},
    {"_set_enums", (PyCFunction)mod_set_enums, METH_VARARGS, NULL},
    {"_set_helpers", (PyCFunction)mod_set_helpers, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef stele_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "stele._stele",
    .m_doc = "The C extension under the stele package (engine/include/stele.h as Python types).",
    .m_size = -1,
    .m_methods = mod_methods,
};

/* The exception classes, one per stele_code, with a second base where Python has one that fits. */
static const struct {
    int code;
    const char *name;
    PyObject **also;
    const char *doc;
} error_table[] = {
    {STELE_ERR_INVALID, "stele.Invalid", &PyExc_ValueError, "A bad argument, option or input; nothing was changed."},
    {STELE_ERR_IO, "stele.IOFailure", NULL, "A system call failed; the message names it, the path and errno."},
    {STELE_ERR_NOSPACE, "stele.NoSpace", NULL, "ENOSPC or EDQUOT."},
    {STELE_ERR_CORRUPT, "stele.Corrupt", NULL, "Bytes on disk fail a check; the message names file, offset, LSN."},
    {STELE_ERR_LOCKED, "stele.Locked", NULL, "Another process holds the log's write lock (the message names its pid)."},
    {STELE_ERR_NOT_FOUND, "stele.NotFound", &PyExc_LookupError, "No such log, LSN or key."},
    {STELE_ERR_FENCED, "stele.Fenced", NULL, "An earlier write or sync failed: no more writes until reopen."},
    {STELE_ERR_TOO_LARGE, "stele.TooLarge", &PyExc_ValueError, "A field, record or batch exceeds its limit."},
    {STELE_ERR_CONFLICT, "stele.Conflict", NULL,
     "A different request holds the key, the intent's outcome or the compensation (.receipt.lsn: the original)."},
    {STELE_ERR_STREAM_VERSION, "stele.StreamVersion", NULL,
     "The stream is not at the expected version (.receipt.stream_version: the current one)."},
    {STELE_ERR_NOMEM, "stele.NoMemory", &PyExc_MemoryError, "Memory allocation failed."},
    {STELE_ERR_FORMAT, "stele.Format", NULL, "A format version this library does not read."},
    {STELE_ERR_EXISTS, "stele.Exists", NULL, "Creating a log where one already exists."},
    {STELE_ERR_READ_ONLY, "stele.ReadOnly", NULL, "A write on a handle opened read-only."},
    {STELE_ERR_OUTCOME_UNKNOWN, "stele.OutcomeUnknown", NULL,
     "The write or sync carrying this append failed: it may or may not be on disk. Reopen, then retry "
     "with the same key."},
    {STELE_ERR_CLOSED, "stele.Closed", NULL, "The log is closed or closing."},
};

static int add_errors(PyObject *m)
{
    Error = PyErr_NewExceptionWithDoc("stele.Error",
                                      "Base class of stele's errors: .code (the stele code), .message (what failed "
                                      "and why), .receipt and .receipts (appends).",
                                      NULL, NULL);
    if (!Error || PyModule_AddObjectRef(m, "Error", Error) < 0)
        return -1;
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++) {
        PyObject *bases = error_table[i].also ? PyTuple_Pack(2, Error, *error_table[i].also) : PyTuple_Pack(1, Error);
        if (!bases)
            return -1;
        PyObject *cls = PyErr_NewExceptionWithDoc(error_table[i].name, error_table[i].doc, bases, NULL);
        Py_DECREF(bases);
        if (!cls || PyModule_AddObjectRef(m, error_table[i].name + 6, cls) < 0) {
            Py_XDECREF(cls);
            return -1;
        }
        code_errors[error_table[i].code] = cls;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__stele(void)
{
    for (int i = 0; i < F_COUNT; i++)
        if (!field_str[i] && !(field_str[i] = PyUnicode_InternFromString(field_names[i])))
            return NULL;
    for (size_t i = 0; i < STAT_COUNT; i++)
        stats_fields[i] = (PyStructSequence_Field){stat_table[i].name, NULL};
    stats_fields[STAT_COUNT] = (PyStructSequence_Field){NULL, NULL};
    if (PyType_Ready(&RecordType) < 0 || PyType_Ready(&LogType) < 0 || PyType_Ready(&IterType) < 0 ||
        PyType_Ready(&CursorType) < 0)
        return NULL;
    if ((!ReceiptType.tp_name && PyStructSequence_InitType2(&ReceiptType, &receipt_desc) < 0) ||
        (!StatusType.tp_name && PyStructSequence_InitType2(&StatusType, &status_desc) < 0) ||
        (!PendingType.tp_name && PyStructSequence_InitType2(&PendingType, &pending_desc) < 0) ||
        (!StatsType.tp_name && PyStructSequence_InitType2(&StatsType, &stats_desc) < 0) ||
        (!DeadType.tp_name && PyStructSequence_InitType2(&DeadType, &dead_desc) < 0) ||
        (!ConsumerType.tp_name && PyStructSequence_InitType2(&ConsumerType, &consumer_desc) < 0))
        return NULL;
    PyObject *m = PyModule_Create(&stele_module);
    if (!m)
        return NULL;
    if (add_errors(m) < 0 || PyModule_AddObjectRef(m, "Log", (PyObject *)&LogType) < 0 ||
        PyModule_AddObjectRef(m, "Record", (PyObject *)&RecordType) < 0 ||
        PyModule_AddObjectRef(m, "Reader", (PyObject *)&IterType) < 0 ||
        PyModule_AddObjectRef(m, "Receipt", (PyObject *)&ReceiptType) < 0 ||
        PyModule_AddObjectRef(m, "Status", (PyObject *)&StatusType) < 0 ||
        PyModule_AddObjectRef(m, "PendingIntent", (PyObject *)&PendingType) < 0 ||
        PyModule_AddObjectRef(m, "Stats", (PyObject *)&StatsType) < 0 ||
        PyModule_AddObjectRef(m, "Cursor", (PyObject *)&CursorType) < 0 ||
        PyModule_AddObjectRef(m, "DeadLetter", (PyObject *)&DeadType) < 0 ||
        PyModule_AddObjectRef(m, "ConsumerInfo", (PyObject *)&ConsumerType) < 0 ||
        PyModule_AddStringConstant(m, "library_version", stele_version()) < 0 ||
        PyModule_AddStringConstant(m, "header_version", STELE_VERSION_STRING) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
