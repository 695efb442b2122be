/*
 * test_tickets.c: the session ticket keys in the store (store/tickets.h). A first key,
 * rotation only when due, pruning to the newest three, idempotence (a second rotation in the
 * same period writes nothing), the change log's marker, refusals, a damaged row skipped, and
 * two store handles rotating at once from two threads: one key per period between them.
 * sqlite3.h is used only to damage a row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/tickets.h"

#define PERIOD 3600
#define T0 1700000000

static char base[64];
static char state[128];
static int test_no;

static int setup_run(void **unused)
{
    (void)unused;
    snprintf(base, sizeof(base), "/tmp/cb-test-tickets-XXXXXX");
    return mkdtemp(base) != NULL ? 0 : -1;
}

static int teardown_run(void **unused)
{
    char cmd[128];
    (void)unused;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup_test(void **unused)
{
    (void)unused;
    snprintf(state, sizeof(state), "%s/state%d", base, ++test_no);
    return 0;
}

static struct cb_store *open_store(void)
{
    struct cb_store *st = NULL;
    struct cb_err err = {0};
    if (cb_store_open(state, CB_STORE_WRITE, &st, &err) != 0)
        fail_msg("open %s: %s", state, err.msg);
    return st;
}

static uint64_t generation(struct cb_store *st)
{
    uint64_t g = 0;
    assert_int_equal(cb_store_generation(st, &g), 0);
    return g;
}

/* A key whose every byte is `fill`. */
static void key_of(unsigned char out[CB_TICKET_KEY_LEN], unsigned char fill)
{
    memset(out, fill, CB_TICKET_KEY_LEN);
}

/* One rotation in a transaction of its own, as the manager makes it; returns whether it
 * rotated. */
static bool rotate(struct cb_store *st, int64_t now, unsigned char fill)
{
    unsigned char fresh[CB_TICKET_KEY_LEN];
    struct cb_err err = {0};
    bool rotated = false;
    int64_t gen = -1;

    key_of(fresh, fill);
    if (cb_store_begin(st, &err) != 0)
        fail_msg("begin: %s", err.msg);
    if (cb_store_ticket_keys_rotate(st, now, PERIOD, fresh, &rotated, &gen, &err) != 0)
        fail_msg("rotate: %s", err.msg);
    if (rotated) {
        if (cb_store_commit(st, &err) != 0)
            fail_msg("commit: %s", err.msg);
    } else {
        cb_store_rollback(st);
    }
    assert_true(gen >= 0);
    return rotated;
}

static struct cb_ticket_keys load(struct cb_store *st)
{
    struct cb_ticket_keys k;
    struct cb_err err = {0};
    if (cb_store_ticket_keys_load(st, &k, &err) != 0)
        fail_msg("load: %s", err.msg);
    return k;
}

static bool due(struct cb_store *st, int64_t now)
{
    struct cb_err err = {0};
    bool d = false;
    if (cb_store_ticket_keys_due(st, now, PERIOD, &d, &err) != 0)
        fail_msg("due: %s", err.msg);
    return d;
}

static void test_first_key(void **unused)
{
    struct cb_store *st = open_store();
    (void)unused;

    struct cb_ticket_keys k = load(st);
    assert_int_equal(k.n, 0);
    assert_true(due(st, T0));
    uint64_t g = generation(st);
    assert_true(rotate(st, T0, 0xA1));
    assert_int_equal(generation(st), g + 1);
    k = load(st);
    assert_int_equal(k.n, 1);
    assert_int_equal(k.v[0].id, 1);
    assert_int_equal(k.v[0].created, T0);
    unsigned char want[CB_TICKET_KEY_LEN];
    key_of(want, 0xA1);
    assert_memory_equal(k.v[0].key, want, CB_TICKET_KEY_LEN);
    cb_ticket_keys_clear(&k);
    cb_store_close(st);
}

static void test_not_due_writes_nothing(void **unused)
{
    struct cb_store *st = open_store();
    (void)unused;

    assert_true(rotate(st, T0, 1));
    uint64_t g = generation(st);
    /* Within the period: idempotent, nothing written, the key unchanged. */
    assert_false(due(st, T0 + PERIOD - 1));
    assert_false(rotate(st, T0, 2));
    assert_false(rotate(st, T0 + PERIOD - 1, 3));
    assert_int_equal(generation(st), g);
    struct cb_ticket_keys k = load(st);
    assert_int_equal(k.n, 1);
    assert_int_equal(k.v[0].key[0], 1);
    /* At the period: due, and a second key comes first. */
    assert_true(due(st, T0 + PERIOD));
    assert_true(rotate(st, T0 + PERIOD, 4));
    k = load(st);
    assert_int_equal(k.n, 2);
    assert_int_equal(k.v[0].key[0], 4);
    assert_int_equal(k.v[0].id, 2);
    assert_int_equal(k.v[1].key[0], 1);
    assert_int_equal(generation(st), g + 1);
    /* The clock set back by a period or more: due (not frozen until it catches up). */
    assert_false(due(st, T0 + 1));
    assert_true(due(st, T0));
    assert_true(rotate(st, T0, 5));
    assert_int_equal(load(st).v[0].key[0], 5);
    cb_store_close(st);
}

static void test_keeps_newest_three(void **unused)
{
    struct cb_store *st = open_store();
    (void)unused;

    for (int i = 0; i < 7; i++)
        assert_true(rotate(st, T0 + (int64_t)i * PERIOD, (unsigned char)(10 + i)));
    struct cb_ticket_keys k = load(st);
    assert_int_equal(k.n, CB_TICKET_KEYS_KEPT);
    for (size_t i = 0; i < k.n; i++) {
        assert_int_equal(k.v[i].id, 7 - (int64_t)i);
        assert_int_equal(k.v[i].key[0], 16 - (int)i);
        assert_int_equal(k.v[i].created, T0 + (int64_t)(6 - i) * PERIOD);
    }
    /* The older rows are gone from the table, not just left unread. */
    sqlite3 *db;
    sqlite3_stmt *stmt;
    char path[256];
    snprintf(path, sizeof(path), "%s/certbind.db", state);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM ticket_keys", -1, &stmt, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(stmt, 0), CB_TICKET_KEYS_KEPT);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    cb_store_close(st);
}

static void test_change_log_marks_tickets(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_store_changes ch;
    struct cb_err err = {0};
    (void)unused;

    uint64_t g0 = generation(st);
    assert_true(rotate(st, T0, 1));
    assert_int_equal(cb_store_changes_since(st, g0, &ch, &err), 0);
    assert_true(ch.tickets);
    assert_false(ch.challenges);
    assert_true(ch.only_challenges); /* no binding, no certificate: the snapshot stays */
    assert_int_equal(ch.n_set + ch.n_removed, 0);
    cb_store_changes_clear(&ch);
    /* Another kind of commit in the range: the keys, but not only side tables. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_setting_set(st, "user", "nobody", &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    assert_int_equal(cb_store_changes_since(st, g0, &ch, &err), 0);
    assert_true(ch.tickets);
    assert_false(ch.only_challenges);
    cb_store_changes_clear(&ch);
    /* Since the last commit: nothing about the keys. */
    assert_int_equal(cb_store_changes_since(st, g0 + 1, &ch, &err), 0);
    assert_false(ch.tickets);
    cb_store_changes_clear(&ch);
    cb_store_close(st);
}

static void test_refusals_write_nothing(void **unused)
{
    struct cb_store *st = open_store();
    unsigned char fresh[CB_TICKET_KEY_LEN];
    struct cb_err err = {0};
    bool rotated = true, d;
    (void)unused;

    key_of(fresh, 9);
    uint64_t g = generation(st);
    /* Outside a transaction: refused (the caller owns the transaction). */
    assert_int_equal(cb_store_ticket_keys_rotate(st, T0, PERIOD, fresh, &rotated, NULL, &err),
                     CB_EINVAL);
    assert_non_null(strstr(err.msg, "transaction"));
    /* A period that is not positive. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_ticket_keys_rotate(st, T0, 0, fresh, &rotated, NULL, &err),
                     CB_EINVAL);
    assert_int_equal(cb_store_ticket_keys_rotate(st, T0, -5, fresh, &rotated, NULL, &err),
                     CB_EINVAL);
    cb_store_rollback(st);
    assert_int_equal(cb_store_ticket_keys_due(st, T0, 0, &d, &err), CB_EINVAL);
    assert_int_equal(generation(st), g);
    assert_int_equal(load(st).n, 0);
    cb_store_close(st);
}

static void test_damaged_row_skipped(void **unused)
{
    struct cb_store *st = open_store();
    (void)unused;

    assert_true(rotate(st, T0, 1));
    sqlite3 *db;
    char path[256];
    snprintf(path, sizeof(path), "%s/certbind.db", state);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO ticket_keys(id, key, created) VALUES(5, x'0102', "
                                  "1700000001)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    struct cb_ticket_keys k = load(st);
    assert_int_equal(k.n, 1); /* a key of 2 bytes cannot decrypt anything */
    assert_int_equal(k.v[0].id, 1);
    cb_store_close(st);
}

/* ---- two handles rotating at once ----------------------------------------------------- */

#define RACE_ROUNDS 40

struct racer {
    pthread_barrier_t *barrier;
    int rotated;
    int busy;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct cb_store *st = NULL;
    struct cb_err err = {0};
    unsigned char fresh[CB_TICKET_KEY_LEN];

    if (cb_store_open(state, CB_STORE_READ, &st, &err) != 0)
        return NULL;
    key_of(fresh, 0x55);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        int64_t now = T0 + (int64_t)i * PERIOD;
        pthread_barrier_wait(r->barrier);
        /* As the manager does: a due look first, then the write transaction, and on a busy
         * store the next tick tries again. */
        for (;;) {
            bool d = false, rotated = false;
            if (cb_store_ticket_keys_due(st, now, PERIOD, &d, &err) != 0) {
                r->busy++;
                continue;
            }
            if (!d)
                break;
            if (cb_store_begin(st, &err) != 0) {
                r->busy++;
                continue;
            }
            if (cb_store_ticket_keys_rotate(st, now, PERIOD, fresh, &rotated, NULL, &err) != 0) {
                cb_store_rollback(st);
                r->busy++;
                continue;
            }
            if (!rotated) {
                cb_store_rollback(st);
                break;
            }
            if (cb_store_commit(st, &err) != 0) {
                r->busy++;
                continue;
            }
            r->rotated++;
            break;
        }
    }
    cb_store_close(st);
    return r;
}

static void test_two_handles_race(void **unused)
{
    struct cb_store *st = open_store(); /* makes the store */
    pthread_barrier_t barrier;
    struct racer a = {.barrier = &barrier}, b = {.barrier = &barrier};
    pthread_t ta, tb;
    void *ra, *rb;
    (void)unused;

    uint64_t g = generation(st);
    assert_int_equal(pthread_barrier_init(&barrier, NULL, 2), 0);
    assert_int_equal(pthread_create(&ta, NULL, race, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, race, &b), 0);
    pthread_join(ta, &ra);
    pthread_join(tb, &rb);
    pthread_barrier_destroy(&barrier);
    assert_non_null(ra);
    assert_non_null(rb);
    /* One key per period between them, whoever made it; one commit per key. */
    assert_int_equal(a.rotated + b.rotated, RACE_ROUNDS);
    assert_int_equal(generation(st), g + RACE_ROUNDS);
    struct cb_ticket_keys k = load(st);
    assert_int_equal(k.n, CB_TICKET_KEYS_KEPT);
    assert_int_equal(k.v[0].id, RACE_ROUNDS);
    assert_int_equal(k.v[0].created, T0 + (int64_t)(RACE_ROUNDS - 1) * PERIOD);
    assert_int_equal(k.v[1].created, T0 + (int64_t)(RACE_ROUNDS - 2) * PERIOD);
    cb_store_close(st);
}

#define T(fn) cmocka_unit_test_setup(fn, setup_test)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_first_key),
        T(test_not_due_writes_nothing),
        T(test_keeps_newest_three),
        T(test_change_log_marks_tickets),
        T(test_refusals_write_nothing),
        T(test_damaged_row_skipped),
        T(test_two_handles_race),
    };
    return cmocka_run_group_tests(tests, setup_run, teardown_run);
}
