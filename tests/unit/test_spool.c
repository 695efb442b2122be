/*
 * test_spool.c: store/spool (records sorted by a byte key in a temporary table): key order
 * by memcmp whatever the order put, a record replaced by its key, prefix walks (keys that
 * end in 0xff bytes included), limits, a walk inside a walk, a callback that stops a walk,
 * and a spool opened in a read transaction (cb_store_read_begin) vanishing when it ends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/spool.h"
#include "store/store.h"

static char base[64]; /* the mkdtemp folder of the whole run, the state folder in it */
static char dir[96];

static int setup(void **state)
{
    struct cb_err err = {0};
    struct cb_store *st = NULL;

    snprintf(base, sizeof(base), "/tmp/cb-test-spool-XXXXXX");
    if (mkdtemp(base) == NULL)
        return -1;
    snprintf(dir, sizeof(dir), "%s/state", base);
    if (cb_store_open(dir, CB_STORE_WRITE, &st, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    *state = st;
    return 0;
}

static int teardown(void **state)
{
    char cmd[160];

    cb_store_close(*state);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

/* What a walk saw: the keys and values, "key=value;" each, and how many. */
struct seen {
    char text[4096];
    int n;
    int stop_after; /* 0: never stop */
};

static int see(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct seen *s = arg;
    size_t at = strlen(s->text);

    snprintf(s->text + at, sizeof(s->text) - at, "%.*s=%.*s;", (int)klen, (const char *)key,
             (int)vlen, (const char *)val);
    s->n++;
    return s->stop_after != 0 && s->n == s->stop_after ? 7 : 0;
}

static void put(struct cb_spool *sp, const char *k, const char *v)
{
    struct cb_err err = {0};
    assert_int_equal(cb_spool_put(sp, k, strlen(k), v, strlen(v), &err), 0);
}

static void test_key_order_and_replace(void **state)
{
    struct cb_store *st = *state;
    struct cb_spool *sp = NULL;
    struct cb_err err = {0};
    struct seen s = {0};

    assert_int_equal(cb_spool_open(st, &sp, &err), 0);
    put(sp, "b", "2");
    put(sp, "ab", "3");
    put(sp, "a", "1");
    put(sp, "", "0");
    put(sp, "b", "two"); /* replaces */
    assert_int_equal(cb_spool_foreach(sp, NULL, 0, 0, see, &s, &err), 0);
    /* memcmp order, a shorter key first. */
    assert_string_equal(s.text, "=0;a=1;ab=3;b=two;");
    memset(&s, 0, sizeof(s));
    assert_int_equal(cb_spool_foreach(sp, NULL, 0, 2, see, &s, &err), 0);
    assert_string_equal(s.text, "=0;a=1;");
    cb_spool_close(sp);
}

static void put_bytes(struct cb_spool *sp, const void *k, size_t klen)
{
    struct cb_err err = {0};
    assert_int_equal(cb_spool_put(sp, k, klen, "v", 1, &err), 0);
}

/* Counts the walk's records, and checks each starts with the prefix in *arg. */
struct prefixed {
    const unsigned char *p;
    size_t n;
    int seen;
};

static int count_prefixed(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct prefixed *w = arg;
    (void)val;
    (void)vlen;
    assert_true(klen >= w->n);
    assert_memory_equal(key, w->p, w->n);
    w->seen++;
    return 0;
}

static int walk_prefix(struct cb_spool *sp, const void *p, size_t n, size_t limit)
{
    struct prefixed w = {.p = p, .n = n};
    struct cb_err err = {0};
    assert_int_equal(cb_spool_foreach(sp, p, n, limit, count_prefixed, &w, &err), 0);
    return w.seen;
}

static void test_prefix(void **state)
{
    struct cb_store *st = *state;
    struct cb_spool *sp = NULL;
    struct cb_err err = {0};
    struct seen s = {0};

    assert_int_equal(cb_spool_open(st, &sp, &err), 0);
    put(sp, "a1", "v");
    put(sp, "a2", "v");
    put(sp, "a", "v");
    put(sp, "b1", "v");
    put(sp, "a\x7f", "v");
    put(sp, "", "v");
    assert_int_equal(cb_spool_foreach(sp, "a", 1, 0, see, &s, &err), 0);
    assert_string_equal(s.text, "a=v;a1=v;a2=v;a\x7f=v;");
    assert_int_equal(walk_prefix(sp, "a", 1, 2), 2);
    assert_int_equal(walk_prefix(sp, "a1", 2, 0), 1);
    assert_int_equal(walk_prefix(sp, "c", 1, 0), 0);
    /* Prefixes that end in 0xff: the key after them is found one byte up, or none is. */
    const unsigned char x_ff[] = {'x', 0xff}, x_ff_1[] = {'x', 0xff, 1},
                        x_ff_ff[] = {'x', 0xff, 0xff}, y[] = {'y'}, ff[] = {0xff},
                        ff_ff_2[] = {0xff, 0xff, 2};
    put_bytes(sp, x_ff, 2);
    put_bytes(sp, x_ff_1, 3);
    put_bytes(sp, x_ff_ff, 3);
    put_bytes(sp, y, 1);
    put_bytes(sp, ff, 1);
    put_bytes(sp, ff_ff_2, 3);
    assert_int_equal(walk_prefix(sp, x_ff, 2, 0), 3);
    assert_int_equal(walk_prefix(sp, x_ff_ff, 3, 0), 1);
    assert_int_equal(walk_prefix(sp, ff, 1, 0), 2);
    assert_int_equal(walk_prefix(sp, ff_ff_2, 3, 0), 1);
    cb_spool_close(sp);
}

/* A walk inside a walk of the same kind, on the same spool, and a callback that stops. */
struct nested {
    struct cb_spool *sp;
    int outer, inner;
};

static int count(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    (void)key;
    (void)klen;
    (void)val;
    (void)vlen;
    ((struct nested *)arg)->inner++;
    return 0;
}

static int outer(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct nested *n = arg;
    struct cb_err err = {0};
    (void)val;
    (void)vlen;
    n->outer++;
    assert_int_equal(cb_spool_foreach(n->sp, NULL, 0, 0, count, n, &err), 0);
    assert_int_equal(cb_spool_foreach(n->sp, key, klen, 0, count, n, &err), 0);
    return 0;
}

static void test_nested_and_stopped(void **state)
{
    struct cb_store *st = *state;
    struct cb_spool *sp = NULL;
    struct cb_err err = {0};
    struct nested n = {0};
    struct seen s = {.stop_after = 2};
    char k[16];

    assert_int_equal(cb_spool_open(st, &sp, &err), 0);
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof(k), "k%02d", i);
        put(sp, k, "v");
    }
    n.sp = sp;
    assert_int_equal(cb_spool_foreach(sp, NULL, 0, 0, outer, &n, &err), 0);
    assert_int_equal(n.outer, 10);
    assert_int_equal(n.inner, 10 * 10 + 10);
    assert_int_equal(cb_spool_foreach(sp, NULL, 0, 0, see, &s, &err), 7);
    assert_string_equal(s.text, "k00=v;k01=v;");
    /* The walk stopped midway leaves nothing busy: the next one sees everything. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(cb_spool_foreach(sp, NULL, 0, 0, see, &s, &err), 0);
    assert_int_equal(s.n, 10);
    cb_spool_close(sp);
}

/* Many records (spilling past the page cache) come back in order; spools are apart. */
struct order {
    char last[9];
    int n;
};

static int in_order(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct order *o = arg;
    char k[9];

    assert_int_equal(klen, 8);
    assert_int_equal(vlen, 199);
    assert_true(((const char *)val)[198] == 'v');
    memcpy(k, key, 8);
    k[8] = '\0';
    assert_true(o->n == 0 || strcmp(o->last, k) < 0);
    memcpy(o->last, k, sizeof(k));
    o->n++;
    return 0;
}

static void test_many_and_apart(void **state)
{
    struct cb_store *st = *state;
    struct cb_spool *a = NULL, *b = NULL;
    struct cb_err err = {0};
    struct seen s = {0};
    struct order o = {"", 0};
    char k[32], v[200];

    assert_int_equal(cb_spool_open(st, &a, &err), 0);
    assert_int_equal(cb_spool_open(st, &b, &err), 0);
    memset(v, 'v', sizeof(v) - 1);
    v[sizeof(v) - 1] = '\0';
    /* 100 000 records of ~210 bytes (more than the 16 MiB cache), in a scrambled order. */
    for (uint32_t i = 0; i < 100000; i++) {
        snprintf(k, sizeof(k), "%08u", (uint32_t)(((uint64_t)i * 2654435761u) % 100000u));
        assert_int_equal(cb_spool_put(a, k, 8, v, sizeof(v) - 1, &err), 0);
    }
    put(b, "only", "b");
    assert_int_equal(cb_spool_foreach(a, NULL, 0, 0, in_order, &o, &err), 0);
    assert_int_equal(o.n, 100000);
    assert_int_equal(cb_spool_foreach(b, NULL, 0, 0, see, &s, &err), 0);
    assert_string_equal(s.text, "only=b;");
    cb_spool_close(a);
    cb_spool_close(b);
}

/* In a read transaction: the spool works on a store opened for reading, a second read cannot
 * begin inside it, and once it ends a write transaction can begin and the store is as it
 * was. (That the table itself is gone with the rollback is SQLite's to keep, not checked.) */
static void test_in_a_read(void **state)
{
    struct cb_store *ro = NULL;
    struct cb_spool *sp = NULL;
    struct cb_err err = {0};
    struct seen s = {0};
    uint64_t gen_before = 0, gen_after = 0;

    (void)state;
    assert_int_equal(cb_store_open(dir, CB_STORE_READ, &ro, &err), 0);
    assert_int_equal(cb_store_generation(ro, &gen_before), 0);
    assert_int_equal(cb_store_read_begin(ro, &err), 0);
    assert_int_not_equal(cb_store_read_begin(ro, &err), 0); /* not twice */
    assert_int_equal(cb_spool_open(ro, &sp, &err), 0);
    put(sp, "k", "v");
    assert_int_equal(cb_spool_foreach(sp, NULL, 0, 0, see, &s, &err), 0);
    assert_string_equal(s.text, "k=v;");
    cb_spool_close(sp);
    cb_store_read_end(ro);
    /* A write transaction can begin now: nothing of the read is left open. */
    assert_int_equal(cb_store_begin(ro, &err), 0);
    cb_store_rollback(ro);
    assert_int_equal(cb_store_generation(ro, &gen_after), 0);
    assert_true(gen_before == gen_after);
    cb_store_close(ro);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_order_and_replace),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_nested_and_stopped),
        cmocka_unit_test(test_many_and_apart),
        cmocka_unit_test(test_in_a_read),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
