/*
 * test_metrics.c: the counters the workers share with the admin process (net/metrics.c):
 * entries made on first use and found again, sums over the areas of several workers,
 * a restarted worker continuing its area (counters kept, open gauges zeroed), a full
 * area and a key too long to store. A forked writer checks the mapping is shared.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/metrics.h"

static struct cb_metrics *new_stats(int workers, uint32_t capacity)
{
    struct cb_metrics *s = NULL;
    struct cb_err err = {0};
    if (cb_metrics_new(workers, capacity, &s, &err) != 0)
        fail_msg("cb_metrics_new(%d, %u): %s", workers, capacity, err.msg);
    assert_non_null(s);
    return s;
}

static uint64_t load(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void test_new_areas_are_empty(void **state)
{
    (void)state;
    struct cb_metrics *s = new_stats(3, 16);
    assert_int_equal(cb_metrics_workers(s), 3);
    for (int i = 0; i < 3; i++) {
        struct cb_metrics_area *a = cb_metrics_area(s, i);
        assert_non_null(a);
        assert_int_equal(atomic_load(&a->n_entries), 0);
        assert_int_equal(atomic_load(&a->pid), 0);
        assert_int_equal(a->capacity, 16);
        for (int k = 0; k < CB_GMETRIC_COUNT; k++)
            assert_int_equal(load(&a->g[k]), 0);
    }
    assert_null(cb_metrics_area(s, 3));
    assert_null(cb_metrics_area(s, -1));
    struct cb_metrics_totals *t = cb_metrics_collect(s);
    assert_non_null(t);
    assert_null(cb_metrics_totals_find(t, "ipport=0.0.0.0:443"));
    uint64_t g[CB_GMETRIC_COUNT];
    memset(g, 0xff, sizeof(g));
    cb_metrics_totals_global(t, g);
    for (int k = 0; k < CB_GMETRIC_COUNT; k++)
        assert_int_equal(g[k], 0);
    cb_metrics_totals_free(t);
    cb_metrics_free(s);
}

static void test_writer_creates_entries_and_finds_them_again(void **state)
{
    (void)state;
    struct cb_metrics *s = new_stats(1, 64);
    struct cb_metrics_area *a = cb_metrics_area(s, 0);
    struct cb_metrics_writer *w = cb_metrics_writer_new(a);
    assert_non_null(w);
    assert_ptr_equal(cb_metrics_writer_area(w), a);
    assert_int_equal(atomic_load(&a->pid), (int32_t)getpid());

    struct cb_metrics_entry *e1 = cb_metrics_entry_get(w, "hostnameport=www.example.com:443");
    struct cb_metrics_entry *e2 = cb_metrics_entry_get(w, "ipport=0.0.0.0:443");
    assert_non_null(e1);
    assert_non_null(e2);
    assert_ptr_not_equal(e1, e2);
    assert_string_equal(e1->key, "hostnameport=www.example.com:443");
    assert_string_equal(e2->key, "ipport=0.0.0.0:443");
    assert_int_equal(atomic_load(&a->n_entries), 2);
    /* The same key is the same entry, and makes no new one. */
    assert_ptr_equal(cb_metrics_entry_get(w, "hostnameport=www.example.com:443"), e1);
    assert_ptr_equal(cb_metrics_entry_get(w, "ipport=0.0.0.0:443"), e2);
    assert_int_equal(atomic_load(&a->n_entries), 2);
    /* A new entry starts at zero. */
    for (int k = 0; k < CB_METRIC_COUNT; k++)
        assert_int_equal(load(&e1->v[k]), 0);

    cb_metric_add(&e1->v[CB_METRIC_HANDSHAKES], 3);
    cb_metric_add(&e1->v[CB_METRIC_OPEN], 2);
    cb_metric_sub(&e1->v[CB_METRIC_OPEN], 1);
    cb_metric_add(&e1->v[CB_METRIC_BYTES_IN], 1000);
    cb_metric_add(&e2->v[CB_METRIC_FAIL_REJECTED], 1);

    struct cb_metrics_totals *t = cb_metrics_collect(s);
    assert_non_null(t);
    const struct cb_metrics_sum *s1 = cb_metrics_totals_find(t, "hostnameport=www.example.com:443");
    const struct cb_metrics_sum *s2 = cb_metrics_totals_find(t, "ipport=0.0.0.0:443");
    assert_non_null(s1);
    assert_non_null(s2);
    assert_int_equal(s1->v[CB_METRIC_HANDSHAKES], 3);
    assert_int_equal(s1->v[CB_METRIC_OPEN], 1);
    assert_int_equal(s1->v[CB_METRIC_BYTES_IN], 1000);
    assert_int_equal(s1->v[CB_METRIC_FAIL_REJECTED], 0);
    assert_int_equal(s2->v[CB_METRIC_FAIL_REJECTED], 1);
    assert_int_equal(s2->v[CB_METRIC_HANDSHAKES], 0);
    assert_null(cb_metrics_totals_find(t, "hostnameport=other.example.com:443"));
    cb_metrics_totals_free(t);
    cb_metrics_writer_free(w);
    cb_metrics_free(s);
}

static void test_many_keys_each_keep_their_entry(void **state)
{
    (void)state;
    enum { N = 1000 };
    char key[64];
    struct cb_metrics *s = new_stats(1, N);
    struct cb_metrics_writer *w = cb_metrics_writer_new(cb_metrics_area(s, 0));
    struct cb_metrics_entry **seen = calloc(N, sizeof(*seen));
    assert_non_null(w);
    assert_non_null(seen);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "hostnameport=h%d.example.com:%d", i, 1000 + i % 7);
        seen[i] = cb_metrics_entry_get(w, key);
        assert_non_null(seen[i]);
        cb_metric_add(&seen[i]->v[CB_METRIC_HANDSHAKES], (uint64_t)i + 1);
    }
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "hostnameport=h%d.example.com:%d", i, 1000 + i % 7);
        assert_ptr_equal(cb_metrics_entry_get(w, key), seen[i]);
    }
    struct cb_metrics_totals *t = cb_metrics_collect(s);
    assert_non_null(t);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "hostnameport=h%d.example.com:%d", i, 1000 + i % 7);
        const struct cb_metrics_sum *sum = cb_metrics_totals_find(t, key);
        assert_non_null(sum);
        assert_int_equal(sum->v[CB_METRIC_HANDSHAKES], (uint64_t)i + 1);
    }
    cb_metrics_totals_free(t);
    free(seen);
    cb_metrics_writer_free(w);
    cb_metrics_free(s);
}

static void test_two_workers_are_summed(void **state)
{
    (void)state;
    struct cb_metrics *s = new_stats(2, 8);
    struct cb_metrics_writer *w0 = cb_metrics_writer_new(cb_metrics_area(s, 0));
    struct cb_metrics_writer *w1 = cb_metrics_writer_new(cb_metrics_area(s, 1));
    assert_non_null(w0);
    assert_non_null(w1);
    /* The same key in both areas (made in another order), and one key in each only. */
    struct cb_metrics_entry *a0 = cb_metrics_entry_get(w0, "ipport=0.0.0.0:443");
    struct cb_metrics_entry *only0 = cb_metrics_entry_get(w0, "hostnameport=a.test:443");
    struct cb_metrics_entry *only1 = cb_metrics_entry_get(w1, "hostnameport=b.test:443");
    struct cb_metrics_entry *a1 = cb_metrics_entry_get(w1, "ipport=0.0.0.0:443");
    assert_true(a0 && a1 && only0 && only1);
    assert_ptr_not_equal(a0, a1);
    cb_metric_add(&a0->v[CB_METRIC_HANDSHAKES], 5);
    cb_metric_add(&a1->v[CB_METRIC_HANDSHAKES], 7);
    cb_metric_add(&a0->v[CB_METRIC_BYTES_OUT], 100);
    cb_metric_add(&a1->v[CB_METRIC_BYTES_OUT], 23);
    cb_metric_add(&a0->v[CB_METRIC_OPEN], 1);
    cb_metric_add(&a1->v[CB_METRIC_OPEN], 2);
    cb_metric_add(&only0->v[CB_METRIC_FAIL_KEY], 4);
    cb_metric_add(&only1->v[CB_METRIC_FAIL_TIMEOUT], 6);
    struct cb_metrics_area *g0 = cb_metrics_writer_area(w0), *g1 = cb_metrics_writer_area(w1);
    cb_metric_add(&g0->g[CB_GMETRIC_ACCEPTED], 10);
    cb_metric_add(&g1->g[CB_GMETRIC_ACCEPTED], 32);
    cb_metric_add(&g0->g[CB_GMETRIC_NO_BINDING], 1);
    cb_metric_add(&g1->g[CB_GMETRIC_NO_BINDING], 2);
    cb_metric_add(&g1->g[CB_GMETRIC_OPEN], 3);

    struct cb_metrics_totals *t = cb_metrics_collect(s);
    assert_non_null(t);
    const struct cb_metrics_sum *sa = cb_metrics_totals_find(t, "ipport=0.0.0.0:443");
    assert_non_null(sa);
    assert_int_equal(sa->v[CB_METRIC_HANDSHAKES], 12);
    assert_int_equal(sa->v[CB_METRIC_BYTES_OUT], 123);
    assert_int_equal(sa->v[CB_METRIC_OPEN], 3);
    const struct cb_metrics_sum *s0 = cb_metrics_totals_find(t, "hostnameport=a.test:443");
    const struct cb_metrics_sum *s1 = cb_metrics_totals_find(t, "hostnameport=b.test:443");
    assert_non_null(s0);
    assert_non_null(s1);
    assert_int_equal(s0->v[CB_METRIC_FAIL_KEY], 4);
    assert_int_equal(s0->v[CB_METRIC_FAIL_TIMEOUT], 0);
    assert_int_equal(s1->v[CB_METRIC_FAIL_TIMEOUT], 6);
    assert_int_equal(s1->v[CB_METRIC_FAIL_KEY], 0);
    uint64_t g[CB_GMETRIC_COUNT];
    cb_metrics_totals_global(t, g);
    assert_int_equal(g[CB_GMETRIC_ACCEPTED], 42);
    assert_int_equal(g[CB_GMETRIC_NO_BINDING], 3);
    assert_int_equal(g[CB_GMETRIC_OPEN], 3);
    assert_int_equal(g[CB_GMETRIC_STATS_FULL], 0);
    cb_metrics_totals_free(t);
    cb_metrics_writer_free(w0);
    cb_metrics_writer_free(w1);
    cb_metrics_free(s);
}

static void test_forked_writer_is_seen_by_the_parent(void **state)
{
    (void)state;
    struct cb_metrics *s = new_stats(2, 8);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct cb_metrics_writer *w = cb_metrics_writer_new(cb_metrics_area(s, 1));
        struct cb_metrics_entry *e = w ? cb_metrics_entry_get(w, "ccs=443") : NULL;
        if (e == NULL)
            _exit(1);
        cb_metric_add(&e->v[CB_METRIC_HANDSHAKES], 9);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(atomic_load(&cb_metrics_area(s, 1)->pid), (int32_t)pid);
    struct cb_metrics_totals *t = cb_metrics_collect(s);
    assert_non_null(t);
    const struct cb_metrics_sum *sum = cb_metrics_totals_find(t, "ccs=443");
    assert_non_null(sum);
    assert_int_equal(sum->v[CB_METRIC_HANDSHAKES], 9);
    cb_metrics_totals_free(t);
    cb_metrics_free(s);
}

static void test_new_writer_keeps_counters_and_zeroes_open_gauges(void **state)
{
    (void)state;
    struct cb_metrics *s = new_stats(1, 8);
    struct cb_metrics_area *a = cb_metrics_area(s, 0);
    struct cb_metrics_writer *w = cb_metrics_writer_new(a);
    assert_non_null(w);
    struct cb_metrics_entry *e = cb_metrics_entry_get(w, "hostnameport=a.test:443");
    struct cb_metrics_entry *f = cb_metrics_entry_get(w, "hostnameport=b.test:443");
    assert_true(e && f);
    cb_metric_add(&e->v[CB_METRIC_HANDSHAKES], 11);
    cb_metric_add(&e->v[CB_METRIC_OPEN], 4);
    cb_metric_add(&e->v[CB_METRIC_BYTES_IN], 77);
    cb_metric_add(&f->v[CB_METRIC_FAIL_PROTOCOL], 2);
    cb_metric_add(&f->v[CB_METRIC_OPEN], 1);
    cb_metric_add(&a->g[CB_GMETRIC_ACCEPTED], 20);
    cb_metric_add(&a->g[CB_GMETRIC_OPEN], 5);
    cb_metric_add(&a->g[CB_GMETRIC_TIMEOUT], 3);
    /* The worker dies without closing anything; its successor takes the area over. */
    cb_metrics_writer_free(w);
    atomic_store(&a->pid, 12345);

    w = cb_metrics_writer_new(a);
    assert_non_null(w);
    assert_int_equal(atomic_load(&a->pid), (int32_t)getpid());
    assert_int_equal(atomic_load(&a->n_entries), 2);
    assert_int_equal(load(&e->v[CB_METRIC_OPEN]), 0);
    assert_int_equal(load(&f->v[CB_METRIC_OPEN]), 0);
    assert_int_equal(load(&a->g[CB_GMETRIC_OPEN]), 0);
    assert_int_equal(load(&e->v[CB_METRIC_HANDSHAKES]), 11);
    assert_int_equal(load(&e->v[CB_METRIC_BYTES_IN]), 77);
    assert_int_equal(load(&f->v[CB_METRIC_FAIL_PROTOCOL]), 2);
    assert_int_equal(load(&a->g[CB_GMETRIC_ACCEPTED]), 20);
    assert_int_equal(load(&a->g[CB_GMETRIC_TIMEOUT]), 3);
    /* It finds the old entries (no duplicates), and adds new ones after them. */
    assert_ptr_equal(cb_metrics_entry_get(w, "hostnameport=a.test:443"), e);
    assert_ptr_equal(cb_metrics_entry_get(w, "hostnameport=b.test:443"), f);
    assert_int_equal(atomic_load(&a->n_entries), 2);
    struct cb_metrics_entry *g = cb_metrics_entry_get(w, "hostnameport=c.test:443");
    assert_non_null(g);
    assert_ptr_equal(g, &a->entries[2]);
    assert_int_equal(atomic_load(&a->n_entries), 3);
    cb_metric_add(&e->v[CB_METRIC_HANDSHAKES], 1);

    struct cb_metrics_totals *t = cb_metrics_collect(s);
    assert_non_null(t);
    assert_int_equal(cb_metrics_totals_find(t, "hostnameport=a.test:443")->v[CB_METRIC_HANDSHAKES],
                     12);
    assert_int_equal(cb_metrics_totals_find(t, "hostnameport=a.test:443")->v[CB_METRIC_OPEN], 0);
    cb_metrics_totals_free(t);
    cb_metrics_writer_free(w);
    cb_metrics_free(s);
}

static void test_full_area_returns_null_and_counts_stats_full(void **state)
{
    (void)state;
    struct cb_metrics *s = new_stats(1, 3);
    struct cb_metrics_area *a = cb_metrics_area(s, 0);
    struct cb_metrics_writer *w = cb_metrics_writer_new(a);
    assert_non_null(w);
    assert_non_null(cb_metrics_entry_get(w, "ccs=1"));
    assert_non_null(cb_metrics_entry_get(w, "ccs=2"));
    struct cb_metrics_entry *third = cb_metrics_entry_get(w, "ccs=3");
    assert_non_null(third);
    assert_int_equal(load(&a->g[CB_GMETRIC_STATS_FULL]), 0);
    assert_null(cb_metrics_entry_get(w, "ccs=4"));
    assert_int_equal(load(&a->g[CB_GMETRIC_STATS_FULL]), 1);
    assert_null(cb_metrics_entry_get(w, "ccs=5"));
    assert_int_equal(load(&a->g[CB_GMETRIC_STATS_FULL]), 2);
    assert_int_equal(atomic_load(&a->n_entries), 3);
    /* Existing keys are still found when full. */
    assert_ptr_equal(cb_metrics_entry_get(w, "ccs=3"), third);
    assert_int_equal(load(&a->g[CB_GMETRIC_STATS_FULL]), 2);
    struct cb_metrics_totals *t = cb_metrics_collect(s);
    uint64_t g[CB_GMETRIC_COUNT];
    assert_non_null(t);
    cb_metrics_totals_global(t, g);
    assert_int_equal(g[CB_GMETRIC_STATS_FULL], 2);
    assert_null(cb_metrics_totals_find(t, "ccs=4"));
    cb_metrics_totals_free(t);
    cb_metrics_writer_free(w);
    cb_metrics_free(s);
}

static void test_key_longer_than_the_entry_is_refused(void **state)
{
    (void)state;
    struct cb_metrics *s = new_stats(1, 8);
    struct cb_metrics_area *a = cb_metrics_area(s, 0);
    struct cb_metrics_writer *w = cb_metrics_writer_new(a);
    size_t room = sizeof(a->entries[0].key); /* with its NUL */
    char *key = malloc(room + 1);
    assert_non_null(w);
    assert_non_null(key);

    /* room - 1 characters fit exactly. */
    memset(key, 'k', room - 1);
    key[room - 1] = '\0';
    struct cb_metrics_entry *e = cb_metrics_entry_get(w, key);
    assert_non_null(e);
    assert_int_equal(strlen(e->key), room - 1);
    assert_string_equal(e->key, key);
    /* One more does not, and nothing is stored truncated. */
    memset(key, 'z', room);
    key[room] = '\0';
    assert_null(cb_metrics_entry_get(w, key));
    assert_int_equal(load(&a->g[CB_GMETRIC_STATS_FULL]), 1);
    assert_int_equal(atomic_load(&a->n_entries), 1);
    key[room - 1] = '\0';
    assert_non_null(cb_metrics_entry_get(w, key));
    assert_int_equal(atomic_load(&a->n_entries), 2);
    free(key);
    cb_metrics_writer_free(w);
    cb_metrics_free(s);
}

static void test_names_match_the_maps(void **state)
{
    (void)state;
    assert_string_equal(cb_metric_names[CB_METRIC_HANDSHAKES], "handshakes");
    assert_string_equal(cb_metric_names[CB_METRIC_FAIL_KEY], "key_unusable");
    assert_string_equal(cb_metric_names[CB_METRIC_BYTES_OUT], "bytes_out");
    assert_string_equal(cb_gmetric_names[CB_GMETRIC_NO_BINDING], "no_binding");
    assert_string_equal(cb_gmetric_names[CB_GMETRIC_STATS_FULL], "stats_full");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_areas_are_empty),
        cmocka_unit_test(test_writer_creates_entries_and_finds_them_again),
        cmocka_unit_test(test_many_keys_each_keep_their_entry),
        cmocka_unit_test(test_two_workers_are_summed),
        cmocka_unit_test(test_forked_writer_is_seen_by_the_parent),
        cmocka_unit_test(test_new_writer_keeps_counters_and_zeroes_open_gauges),
        cmocka_unit_test(test_full_area_returns_null_and_counts_stats_full),
        cmocka_unit_test(test_key_longer_than_the_entry_is_refused),
        cmocka_unit_test(test_names_match_the_maps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
