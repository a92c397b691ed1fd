/*
 * example.c - embedding stele: open (and create) a log, append events with
 * idempotency keys, read one back by LSN, iterate over the log, close.
 *
 *   cc example.c $(pkg-config --cflags --libs stele) -o example
 *   ./example /tmp/orders      # run it twice: the second run is all duplicates
 */
#include <stdio.h>
#include <string.h>

#include <stele.h>

static int report(const char *what, int code)
{
    fprintf(stderr, "example: %s: %s: %s\n", what, stele_strerror(code), stele_errmsg());
    return code;
}

static int append_orders(stele_log *log)
{
    static const char *keys[] = {"order-1", "order-2", "order-3"};
    static const char *payloads[] = {"{\"amount\":100}", "{\"amount\":250}", "{\"amount\":75}"};
    for (int i = 0; i < 3; i++) {
        stele_event ev = {0}; /* a binary `event` with no type, key or payload */
        ev.content = STELE_CONTENT_JSON;
        ev.type = "order.placed";
        ev.type_size = strlen(ev.type);
        ev.key = keys[i]; /* the idempotency key: appending it again is a duplicate */
        ev.key_size = strlen(keys[i]);
        ev.payload = payloads[i];
        ev.payload_size = strlen(payloads[i]);
        stele_receipt receipt;
        int rc = stele_append(log, &ev, &receipt); /* returns once durable (sync mode) */
        if (rc != STELE_OK)
            return report("append", rc);
        printf("append %s: lsn %llu, %s\n", keys[i], (unsigned long long)receipt.lsn,
               receipt.decision == STELE_DECISION_NEW ? "new" : "duplicate");
    }
    return STELE_OK;
}

static void print_record(const char *how, const stele_record *rec)
{
    printf("%s: lsn %llu, type %.*s, key %.*s, payload %.*s\n", how, (unsigned long long)rec->lsn,
           (int)rec->type_size, rec->type, (int)rec->key_size, rec->key, (int)rec->payload_size,
           (const char *)rec->payload);
}

static int read_back(stele_log *log)
{
    stele_record *rec = NULL;
    int rc = stele_get(log, 2, &rec);
    if (rc != STELE_OK)
        return report("get lsn 2", rc);
    print_record("get", rec);
    stele_record_free(rec);

    stele_iter *it = NULL;
    rc = stele_iter_open(log, 1, &it);
    if (rc != STELE_OK)
        return report("iter_open", rc);
    for (;;) {
        const stele_record *next = NULL;
        rc = stele_iter_next(it, 0, &next); /* 0: do not wait for new records */
        if (rc != STELE_OK) {
            report("iter_next", rc);
            break;
        }
        if (next == NULL)
            break; /* the end of the log */
        print_record("iter", next);
    }
    stele_iter_close(it);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "orders.stele";
    stele_options opts;
    stele_options_init(&opts);
    opts.create = 1; /* create the log if dir holds none */

    stele_log *log = NULL;
    int rc = stele_open(dir, &opts, &log);
    if (rc != STELE_OK) {
        report("open", rc);
        return 1;
    }
    rc = append_orders(log);
    if (rc == STELE_OK)
        rc = read_back(log);
    int close_rc = stele_close(log); /* syncs, releases the lock, frees log */
    if (close_rc != STELE_OK)
        report("close", close_rc);
    return rc == STELE_OK && close_rc == STELE_OK ? 0 : 1;
}
