/*
 * test_strindex.c: the small indexes behind serve's schedules and tables: util/strindex.h
 * (strings to element positions: unique and repeated strings, growth, an index never
 * filled) and util/dueheap.h (what is due first, in order, and nothing early). Both
 * without memory: this test is linked with calloc and realloc wrapped (CMakeLists.txt),
 * so that the next call of either can be made to fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/dueheap.h"
#include "util/strindex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -1: allocations succeed; 0: the next one fails (then -1 again); k: k more succeed first. */
static int calloc_fails_in = -1, realloc_fails_in = -1;
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

void *__wrap_calloc(size_t n, size_t size)
{
    if (calloc_fails_in >= 0 && calloc_fails_in-- == 0)
        return NULL;
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    if (realloc_fails_in >= 0 && realloc_fails_in-- == 0)
        return NULL;
    return __real_realloc(p, size);
}

struct names {
    char v[5000][16];
};

static const char *name_of(const void *ctx, uint32_t i)
{
    return ((const struct names *)ctx)->v[i];
}

static void test_every_string_is_found_after_growth(void **state)
{
    struct names *ns = calloc(1, sizeof(*ns));
    struct cb_strindex ix;
    (void)state;
    assert_non_null(ns);
    assert_int_equal(cb_strindex_init(&ix, 0, name_of, ns), 0);
    for (uint32_t i = 0; i < 5000; i++) {
        snprintf(ns->v[i], sizeof(ns->v[i]), "n%u", i);
        assert_int_equal(cb_strindex_add(&ix, i), 0);
    }
    assert_int_equal(ix.used, 5000);
    assert_true(2 * ix.used <= ix.mask + 1); /* at most half full */
    for (uint32_t i = 0; i < 5000; i++)
        assert_int_equal(cb_strindex_find(&ix, ns->v[i]), i);
    assert_int_equal(cb_strindex_find(&ix, "n5000"), UINT32_MAX);
    assert_int_equal(cb_strindex_find(&ix, ""), UINT32_MAX);
    cb_strindex_free(&ix);
    free(ns);
}

static void test_a_repeated_string_gives_each_element_once(void **state)
{
    struct names *ns = calloc(1, sizeof(*ns));
    struct cb_strindex ix;
    (void)state;
    assert_non_null(ns);
    assert_int_equal(cb_strindex_init(&ix, 4, name_of, ns), 0);
    for (uint32_t i = 0; i < 300; i++) {
        if (i % 3 == 0)
            snprintf(ns->v[i], sizeof(ns->v[i]), "same");
        else
            snprintf(ns->v[i], sizeof(ns->v[i]), "o%u", i);
        assert_int_equal(cb_strindex_add(&ix, i), 0);
    }
    bool seen[300] = {false};
    size_t cursor = 0, n = 0;
    for (uint32_t i; (i = cb_strindex_next(&ix, "same", &cursor)) != UINT32_MAX; n++) {
        assert_true(i % 3 == 0);
        assert_false(seen[i]);
        seen[i] = true;
    }
    assert_int_equal(n, 100);
    cursor = 0;
    assert_int_equal(cb_strindex_next(&ix, "absent", &cursor), UINT32_MAX);
    cb_strindex_free(&ix);
    free(ns);
}

static void test_add_unique_keeps_the_first(void **state)
{
    struct names *ns = calloc(1, sizeof(*ns));
    struct cb_strindex ix;
    uint32_t found;
    (void)state;
    assert_non_null(ns);
    assert_int_equal(cb_strindex_init(&ix, 100, name_of, ns), 0);
    snprintf(ns->v[0], 16, "a");
    snprintf(ns->v[1], 16, "b");
    snprintf(ns->v[2], 16, "a");
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(cb_strindex_add_unique(&ix, i, &found), 0);
        assert_int_equal(found, i == 2 ? 0 : i); /* the second "a" is not added */
    }
    assert_int_equal(ix.used, 2);
    assert_int_equal(cb_strindex_find(&ix, "a"), 0);
    assert_int_equal(cb_strindex_add_unique(&ix, UINT32_MAX, &found), CB_ENOMEM);
    cb_strindex_free(&ix);
    /* A freed (or never filled) index finds nothing. */
    assert_int_equal(cb_strindex_find(&ix, "a"), UINT32_MAX);
    free(ns);
}

static void test_due_pairs_come_out_in_time_order_and_never_early(void **state)
{
    struct cb_dueheap h;
    struct cb_due d;
    unsigned seed = 7;
    (void)state;
    cb_dueheap_init(&h);
    assert_false(cb_dueheap_pop_due(&h, INT64_MAX, &d));
    for (uint32_t i = 0; i < 1000; i++)
        assert_int_equal(cb_dueheap_push(&h, (int64_t)(rand_r(&seed) % 500), i), 0);
    /* Nothing due before the earliest time; everything up to now, in order. */
    assert_false(cb_dueheap_pop_due(&h, -1, &d));
    int64_t last = -1;
    size_t n = 0;
    while (cb_dueheap_pop_due(&h, 249, &d)) {
        assert_true(d.at >= last && d.at <= 249);
        last = d.at;
        n++;
    }
    assert_true(n > 0 && n < 1000);
    assert_true(h.n == 1000 - n && h.v[0].at >= 250);
    /* Bulk: appended without order, then made a heap at once. */
    cb_dueheap_clear(&h);
    for (uint32_t i = 0; i < 777; i++)
        assert_int_equal(cb_dueheap_append(&h, 1000 - (int64_t)(i * 37 % 777), i), 0);
    cb_dueheap_heapify(&h);
    assert_int_equal(cb_dueheap_push(&h, 0, 9999), 0);
    assert_true(cb_dueheap_pop_due(&h, 0, &d));
    assert_int_equal(d.id, 9999);
    for (last = INT64_MIN, n = 0; cb_dueheap_pop_due(&h, INT64_MAX, &d); n++) {
        assert_true(d.at >= last);
        last = d.at;
    }
    assert_int_equal(n, 777);
    cb_dueheap_free(&h);
}

static void test_an_index_without_memory_is_unchanged(void **state)
{
    struct names *ns = calloc(1, sizeof(*ns));
    struct cb_strindex ix;
    uint32_t found;
    size_t refused = 0;
    (void)state;
    assert_non_null(ns);
    for (uint32_t i = 0; i < 5000; i++)
        snprintf(ns->v[i], sizeof(ns->v[i]), "m%u", i);
    calloc_fails_in = 0;
    assert_int_equal(cb_strindex_init(&ix, 0, name_of, ns), CB_ENOMEM);
    cb_strindex_free(&ix); /* harmless after a failed init */
    assert_int_equal(cb_strindex_init(&ix, 0, name_of, ns), 0);
    /* Every add that must grow the index is refused once: it stays as it was, every string
     * added before is still found, the refused one is not; the same add then succeeds. */
    for (uint32_t i = 0; i < 5000; i++) {
        size_t slots = ix.mask + 1;
        calloc_fails_in = 0;
        int ret = i % 2 ? cb_strindex_add(&ix, i) : cb_strindex_add_unique(&ix, i, &found);
        bool grew = calloc_fails_in == -1;
        calloc_fails_in = -1;
        if (!grew) {
            assert_int_equal(ret, 0);
            continue;
        }
        assert_int_equal(ret, CB_ENOMEM);
        assert_int_equal(ix.mask + 1, slots);
        assert_int_equal(ix.used, i);
        assert_int_equal(cb_strindex_find(&ix, ns->v[i]), UINT32_MAX);
        for (uint32_t k = 0; k < i; k++)
            assert_int_equal(cb_strindex_find(&ix, ns->v[k]), k);
        assert_int_equal(cb_strindex_add(&ix, i), 0);
        refused++;
    }
    assert_true(refused >= 8); /* every doubling from the first size to 5000 entries */
    for (uint32_t i = 0; i < 5000; i++)
        assert_int_equal(cb_strindex_find(&ix, ns->v[i]), i);
    cb_strindex_free(&ix);
    free(ns);
}

static void test_a_heap_without_memory_is_unchanged(void **state)
{
    struct cb_dueheap h;
    struct cb_due d;
    size_t refused = 0;
    (void)state;
    cb_dueheap_init(&h);
    for (uint32_t i = 0; i < 1000; i++) {
        realloc_fails_in = 0;
        int ret = i % 2 ? cb_dueheap_push(&h, 1000 - (int64_t)i, i)
                        : cb_dueheap_append(&h, 1000 - (int64_t)i, i);
        bool grew = realloc_fails_in == -1;
        realloc_fails_in = -1;
        if (!grew) {
            assert_int_equal(ret, 0);
        } else {
            assert_int_equal(ret, CB_ENOMEM);
            assert_int_equal(h.n, i);
            assert_int_equal(cb_dueheap_push(&h, 1000 - (int64_t)i, i), 0);
            refused++;
        }
        cb_dueheap_heapify(&h); /* after the appends: a heap again before the next push */
    }
    assert_true(refused >= 5); /* the first block (64), then each doubling to 1024 */
    int64_t last = INT64_MIN;
    size_t n = 0;
    for (; cb_dueheap_pop_due(&h, INT64_MAX, &d); n++) {
        assert_true(d.at >= last);
        assert_int_equal(d.id, 1000 - d.at);
        last = d.at;
    }
    assert_int_equal(n, 1000);
    cb_dueheap_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_string_is_found_after_growth),
        cmocka_unit_test(test_a_repeated_string_gives_each_element_once),
        cmocka_unit_test(test_add_unique_keeps_the_first),
        cmocka_unit_test(test_due_pairs_come_out_in_time_order_and_never_early),
        cmocka_unit_test(test_an_index_without_memory_is_unchanged),
        cmocka_unit_test(test_a_heap_without_memory_is_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
