/*
 * test_lru.c: the byte-budgeted least-recently-used list (util/lru.h) behind
 * `serve --cert-cache-mb`: use order, the bytes charged, which node is the victim while
 * over budget (never the one being used), and removal of nodes in any position.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/lru.h"

/* Evicts (removes) victims until within budget; returns how many went. */
static int evict_all(struct cb_lru *l, const struct cb_lru_node *keep)
{
    struct cb_lru_node *v;
    int n = 0;
    while ((v = cb_lru_victim(l, keep)) != NULL) {
        cb_lru_remove(l, v);
        n++;
    }
    return n;
}

static void test_an_unbounded_list_never_has_a_victim(void **state)
{
    struct cb_lru l;
    struct cb_lru_node n[3] = {{0}};
    (void)state;
    cb_lru_init(&l, 0);
    for (int i = 0; i < 3; i++)
        cb_lru_insert(&l, &n[i], 1000000);
    assert_int_equal(l.count, 3);
    assert_int_equal(l.bytes, 3000000);
    assert_null(cb_lru_victim(&l, NULL));
}

static void test_the_least_recently_used_goes_first(void **state)
{
    struct cb_lru l;
    struct cb_lru_node n[4] = {{0}};
    (void)state;
    cb_lru_init(&l, 300);
    cb_lru_insert(&l, &n[0], 100);
    cb_lru_insert(&l, &n[1], 100);
    cb_lru_insert(&l, &n[2], 100);
    assert_null(cb_lru_victim(&l, NULL)); /* exactly at the budget: within it */

    cb_lru_touch(&l, &n[0]); /* order now, most recent first: 0 2 1 */
    cb_lru_insert(&l, &n[3], 100);
    assert_ptr_equal(cb_lru_victim(&l, &n[3]), &n[1]);
    cb_lru_remove(&l, &n[1]);
    assert_false(cb_lru_linked(&n[1]));
    assert_null(cb_lru_victim(&l, &n[3]));
    assert_int_equal(l.bytes, 300);
    assert_int_equal(l.count, 3);

    /* Touching the most recent changes nothing; the next victim is 2, then 0. */
    cb_lru_touch(&l, &n[3]);
    l.limit = 100;
    assert_ptr_equal(cb_lru_victim(&l, &n[3]), &n[2]);
    assert_int_equal(evict_all(&l, &n[3]), 2);
    assert_true(cb_lru_linked(&n[3]));
    assert_false(cb_lru_linked(&n[0]));
    assert_int_equal(l.bytes, 100);
}

static void test_the_node_in_use_is_kept_even_alone_over_budget(void **state)
{
    struct cb_lru l;
    struct cb_lru_node big = {0}, small = {0};
    (void)state;
    cb_lru_init(&l, 50);
    cb_lru_insert(&l, &small, 10);
    cb_lru_insert(&l, &big, 500);
    /* The small one goes; the big one is what is being served: kept, alone over budget. */
    assert_int_equal(evict_all(&l, &big), 1);
    assert_true(cb_lru_linked(&big));
    assert_int_equal(l.bytes, 500);
    assert_null(cb_lru_victim(&l, &big));
    /* Without a node to keep, it is the victim itself. */
    assert_ptr_equal(cb_lru_victim(&l, NULL), &big);
    /* When the node to keep is the oldest, the next oldest is the victim. */
    l.limit = 400;
    cb_lru_insert(&l, &small, 10);
    assert_ptr_equal(cb_lru_victim(&l, &big), &small);
}

static void test_remove_from_any_position_and_twice(void **state)
{
    struct cb_lru l;
    struct cb_lru_node n[3] = {{0}};
    (void)state;
    cb_lru_init(&l, 1000);
    for (int i = 0; i < 3; i++)
        cb_lru_insert(&l, &n[i], (size_t)(i + 1));
    cb_lru_remove(&l, &n[1]); /* middle */
    cb_lru_remove(&l, &n[1]); /* not in the list any more: nothing */
    assert_int_equal(l.bytes, 4);
    cb_lru_remove(&l, &n[2]); /* head */
    cb_lru_remove(&l, &n[0]); /* last */
    assert_int_equal(l.count, 0);
    assert_int_equal(l.bytes, 0);
    assert_ptr_equal(l.head.next, &l.head);
    assert_ptr_equal(l.head.prev, &l.head);
    /* Reinserted after removal: charged its new cost. */
    cb_lru_insert(&l, &n[1], 7);
    assert_int_equal(l.bytes, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_unbounded_list_never_has_a_victim),
        cmocka_unit_test(test_the_least_recently_used_goes_first),
        cmocka_unit_test(test_the_node_in_use_is_kept_even_alone_over_budget),
        cmocka_unit_test(test_remove_from_any_position_and_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
