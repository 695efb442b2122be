/*
 * test_replica.c: what the store gives a fleet replica (store/replica.h): the dirty set
 * handed to the commit hook (inserts, updates, deletes, a certificate's names counted as its
 * row, one hook call per commit, none without changes), a failing hook rolling the
 * transaction back, applying mode writing without marking, generic rows read and written
 * by key (unknown columns ignored, a missing key refused, the change log kept), and the
 * replica's bookkeeping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/replica.h"

#define THUMB "0123456789ABCDEF0123456789ABCDEF01234567"

static char dir[64];

struct seen {
    int calls;
    char rows[32][160];
    int n;
    int fail; /* return this from the hook */
};

static int hook(struct cb_store *st, const struct cb_store_dirty *d, size_t n, void *ctx,
                struct cb_err *err)
{
    struct seen *s = ctx;
    (void)st;
    s->calls++;
    for (size_t i = 0; i < n && s->n < 32; i++)
        snprintf(s->rows[s->n++], sizeof(s->rows[0]), "%s:%s", d[i].table, d[i].key);
    return s->fail ? cb_err_set(err, s->fail, "the hook refused") : 0;
}

static bool saw(const struct seen *s, const char *row)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->rows[i], row) == 0)
            return true;
    return false;
}

static struct cb_store *open_store(void)
{
    struct cb_store *st;
    struct cb_err err = {0};
    char cmd[128];
    snprintf(dir, sizeof(dir), "/tmp/cb-replica-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "rmdir '%s'", dir); /* the store makes it, mode 0700 */
    assert_int_equal(system(cmd), 0);
    assert_int_equal(cb_store_open(dir, CB_STORE_WRITE, &st, &err), 0);
    return st;
}

static void close_store(struct cb_store *st)
{
    char cmd[128];
    cb_store_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void binding(struct cb_binding *b, const char *key)
{
    struct cb_err err = {0};
    unsigned fields = 0;
    cb_binding_init(b);
    assert_int_equal(cb_key_parse_word(key, &b->key, &err), 0);
    assert_int_equal(cb_binding_set_option(b, "certhash", THUMB, &fields, &err), 0);
}

static void test_dirty_set(void **state)
{
    (void)state;
    struct cb_store *st = open_store();
    struct seen s = {0};
    struct cb_binding b;
    struct cb_err err = {0};

    cb_store_set_commit_hook(st, hook, &s);
    binding(&b, "hostnameport=a.example.com:443");
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    assert_int_equal(cb_store_setting_set(st, "x", "1", &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    assert_int_equal(s.calls, 1);
    assert_true(saw(&s, "bindings:hostnameport=a.example.com:443"));
    assert_true(saw(&s, "meta:x"));
    /* The commit's own bookkeeping (generation, change log) is not a row change. */
    assert_false(saw(&s, "meta:generation"));

    /* Delete. */
    s.n = 0;
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_binding_delete(st, &b.key, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    assert_int_equal(s.calls, 2);
    assert_true(saw(&s, "bindings:hostnameport=a.example.com:443"));

    /* No change: no call. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    assert_int_equal(s.calls, 2);

    /* A failing hook rolls back and its error is the commit's. */
    s.fail = CB_EBUSY;
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), CB_EBUSY);
    assert_string_equal(err.msg, "the hook refused");
    assert_int_equal(cb_store_binding_get(st, &b.key, &b, &err), CB_ENOENT);

    /* Applying mode: written, not marked, no call. */
    s.fail = 0;
    int calls = s.calls;
    cb_store_set_applying(st, true);
    assert_int_equal(cb_store_begin(st, &err), 0);
    binding(&b, "hostnameport=a.example.com:443");
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    cb_store_set_applying(st, false);
    assert_int_equal(s.calls, calls);
    assert_int_equal(cb_store_binding_get(st, &b.key, &b, &err), 0);

    /* No hook: nothing tracked, commits as before. */
    cb_store_set_commit_hook(st, NULL, NULL);
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_setting_set(st, "y", "2", &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    assert_int_equal(s.calls, calls);
    close_store(st);
}

static void test_rows(void **state)
{
    (void)state;
    struct cb_store *st = open_store();
    struct cb_store_row row = {0}, got;
    struct cb_err err = {0};
    struct cb_store_changes ch;
    uint64_t gen;

    assert_int_equal(cb_store_generation(st, &gen), 0);
    assert_int_equal(
        cb_store_row_add(&row, "key", CB_STORE_COL_TEXT, 0, "hostnameport=r.example.com:443", 30),
        0);
    assert_int_equal(cb_store_row_add(&row, "certhash", CB_STORE_COL_TEXT, 0, THUMB, 40), 0);
    assert_int_equal(cb_store_row_add(&row, "flags", CB_STORE_COL_INT, 0, NULL, 0), 0);
    /* Columns without a default must be given: a row lacking one does not fit. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_row_put(st, "bindings", &row, &err), CB_EINVAL);
    cb_store_rollback(st);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cb_store_row_add(&row, (const char *[]){"appid", "backend", "ccspath"}[i],
                                          CB_STORE_COL_TEXT, 0, "", 0),
                         0);
    assert_int_equal(cb_store_row_add(&row, "proxy", CB_STORE_COL_INT, 0, NULL, 0), 0);
    assert_int_equal(cb_store_row_add(&row, "from_a_newer_node", CB_STORE_COL_INT, 7, NULL, 0), 0);
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_row_put(st, "bindings", &row, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    /* Recorded in the change log as a command's change is. */
    assert_int_equal(cb_store_changes_since(st, gen, &ch, &err), 0);
    assert_int_equal(ch.n_set, 1);
    cb_store_changes_clear(&ch);
    assert_int_equal(cb_store_row_get(st, "bindings", "hostnameport=r.example.com:443", &got, &err),
                     0);
    assert_string_equal((const char *)cb_store_row_col(&got, "certhash")->p, THUMB);
    assert_int_equal(cb_store_row_col(&got, "proxy")->type, CB_STORE_COL_INT);
    assert_null(cb_store_row_col(&got, "from_a_newer_node"));
    cb_store_row_clear(&got);
    /* Update by key. */
    row.c[1].p[0] = 'F';
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_row_put(st, "bindings", &row, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    assert_int_equal(cb_store_row_get(st, "bindings", "hostnameport=r.example.com:443", &got, &err),
                     0);
    assert_int_equal(cb_store_row_col(&got, "certhash")->p[0], 'F');
    cb_store_row_clear(&got);
    /* A row without its key, a table that is not replicated. */
    struct cb_store_row nokey = {0};
    assert_int_equal(cb_store_row_add(&nokey, "certhash", CB_STORE_COL_TEXT, 0, THUMB, 40), 0);
    assert_int_equal(cb_store_row_put(st, "bindings", &nokey, &err), CB_EINVAL);
    assert_int_equal(cb_store_row_put(st, "changes", &row, &err), CB_EINVAL);
    assert_int_equal(cb_store_row_get(st, "sqlite_master", "x", &got, &err), CB_EINVAL);
    cb_store_row_clear(&nokey);
    /* Delete; absent is no error. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_row_delete(st, "bindings", "hostnameport=r.example.com:443", &err),
                     0);
    assert_int_equal(cb_store_row_delete(st, "bindings", "hostnameport=r.example.com:443", &err),
                     0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    assert_int_equal(cb_store_row_get(st, "bindings", "hostnameport=r.example.com:443", &got, &err),
                     CB_ENOENT);
    cb_store_row_clear(&row);
    close_store(st);
}

static int count_key(const char *key, int64_t rev, void *ctx)
{
    (void)key;
    (void)rev;
    (*(int *)ctx)++;
    return 0;
}

static void test_bookkeeping(void **state)
{
    (void)state;
    struct cb_store *st = open_store();
    struct cb_store_replica r;
    struct cb_err err = {0};
    int64_t rev;
    int n = 0;

    assert_int_equal(cb_store_replica_get(st, &r, &err), 0);
    assert_true(r.revision == 0 && r.synced_at == 0 && r.url[0] == '\0');
    r = (struct cb_store_replica){.revision = 42, .synced_at = 1000};
    snprintf(r.url, sizeof(r.url), "etcd://127.0.0.1:2379/x");
    assert_int_equal(cb_store_replica_set(st, &r, &err), 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(cb_store_replica_get(st, &r, &err), 0);
    assert_true(r.revision == 42 && r.synced_at == 1000);
    assert_string_equal(r.url, "etcd://127.0.0.1:2379/x");
    assert_int_equal(cb_store_replica_key_set(st, "x/binding/a", 5, &err), 0);
    assert_int_equal(cb_store_replica_key_set(st, "x/binding/b", -6, &err), 0);
    assert_int_equal(cb_store_replica_key_rev(st, "x/binding/b", &rev, &err), 0);
    assert_int_equal(rev, -6);
    assert_int_equal(cb_store_replica_key_set(st, "x/binding/a", 0, &err), 0);
    assert_int_equal(cb_store_replica_key_rev(st, "x/binding/a", &rev, &err), 0);
    assert_int_equal(rev, 0);
    assert_int_equal(cb_store_replica_keys(st, count_key, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(cb_store_replica_keys_clear(st, &err), 0);
    n = 0;
    assert_int_equal(cb_store_replica_keys(st, count_key, &n, &err), 0);
    assert_int_equal(n, 0);
    close_store(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dirty_set),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_bookkeeping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
