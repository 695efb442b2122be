/*
 * test_cow.c: tables in parts shared with copy on write (util/cow.h). A write copies
 * only the part it falls in, and only while another table holds it; the table shared
 * from is never written; owned elements are copied and cleared exactly once each (the
 * counts below, and LeakSanitizer, check it); shrinking clears what falls off.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "util/cow.h"

/* An element that owns a heap block: copies and clears are counted. */
struct owned {
    int *p;
};

static int copies, clears;

static int owned_copy(void *dst, const void *src)
{
    const struct owned *s = src;
    struct owned *d = dst;
    if (s->p == NULL)
        return 0;
    if ((d->p = malloc(sizeof(*d->p))) == NULL)
        return CB_ENOMEM;
    *d->p = *s->p;
    copies++;
    return 0;
}

static void owned_clear(void *e)
{
    struct owned *o = e;
    if (o->p != NULL)
        clears++;
    free(o->p);
    o->p = NULL;
}

static const struct cb_cow_ops owned_ops = {sizeof(struct owned), owned_copy, owned_clear};
static const struct cb_cow_ops u32_ops = {sizeof(uint32_t), NULL, NULL};

static void set_owned(struct cb_cow *t, size_t i, int v)
{
    struct owned *o = cb_cow_mut(t, i);
    assert_non_null(o);
    owned_clear(o);
    assert_non_null(o->p = malloc(sizeof(*o->p)));
    *o->p = v;
}

static int get_owned(const struct cb_cow *t, size_t i)
{
    const struct owned *o = cb_cow_at(t, i);
    return o->p != NULL ? *o->p : -1;
}

static void test_share_copies_one_part(void **unused)
{
    struct cb_cow a, b;
    size_t n = 3 * CB_COW_PART + 10;
    (void)unused;

    assert_int_equal(cb_cow_init(&a, &u32_ops, n), 0);
    for (size_t i = 0; i < n; i++)
        *(uint32_t *)cb_cow_mut(&a, i) = (uint32_t)i;
    assert_int_equal(cb_cow_owned_parts(&a), 4);
    assert_int_equal(cb_cow_share(&b, &a), 0);
    assert_int_equal(cb_cow_owned_parts(&a), 0);
    *(uint32_t *)cb_cow_mut(&b, CB_COW_PART + 5) = 7;
    *(uint32_t *)cb_cow_mut(&b, CB_COW_PART + 6) = 8; /* the same part: no second copy */
    assert_int_equal(cb_cow_owned_parts(&b), 1);
    assert_int_equal(*(const uint32_t *)cb_cow_at(&a, CB_COW_PART + 5), CB_COW_PART + 5);
    assert_int_equal(*(const uint32_t *)cb_cow_at(&b, CB_COW_PART + 5), 7);
    for (size_t i = 0; i < n; i++)
        if (i != CB_COW_PART + 5 && i != CB_COW_PART + 6)
            assert_int_equal(*(const uint32_t *)cb_cow_at(&b, i), i);
    cb_cow_free(&a);
    /* b alone holds every part now: writes copy nothing. */
    assert_int_equal(cb_cow_owned_parts(&b), 4);
    cb_cow_free(&b);
    cb_cow_free(&b); /* freeing an empty table is a no-op */
}

static void test_owned_elements_copied_and_cleared_once(void **unused)
{
    struct cb_cow a, b, c;
    size_t n = 2 * CB_COW_PART;
    (void)unused;

    copies = clears = 0;
    assert_int_equal(cb_cow_init(&a, &owned_ops, n), 0);
    for (size_t i = 0; i < n; i++)
        set_owned(&a, i, (int)i);
    assert_int_equal(cb_cow_share(&b, &a), 0);
    assert_int_equal(cb_cow_share(&c, &b), 0);
    set_owned(&b, 3, -5); /* copies part 0 (CB_COW_PART elements), replaces one */
    assert_int_equal(copies, CB_COW_PART);
    assert_int_equal(get_owned(&a, 3), 3);
    assert_int_equal(get_owned(&c, 3), 3);
    assert_int_equal(get_owned(&b, 3), -5);
    cb_cow_free(&a);
    assert_int_equal(get_owned(&c, CB_COW_PART + 1), CB_COW_PART + 1);
    cb_cow_free(&c);
    cb_cow_free(&b);
    /* Each cleared once: n originals, the copies (the one replaced included), the -5. */
    assert_int_equal(clears, (int)n + copies + 1);
}

static void test_resize(void **unused)
{
    struct cb_cow a, b;
    (void)unused;

    copies = clears = 0;
    assert_int_equal(cb_cow_init(&a, &owned_ops, CB_COW_PART + 3), 0);
    for (size_t i = 0; i < a.n; i++)
        set_owned(&a, i, 1);
    assert_int_equal(cb_cow_share(&b, &a), 0);
    /* Shrinking b out of its second part drops it there; a keeps it whole. */
    assert_int_equal(cb_cow_resize(&b, CB_COW_PART - 2), 0);
    assert_int_equal(b.n_parts, 1);
    assert_int_equal(get_owned(&a, CB_COW_PART + 2), 1);
    assert_int_equal(get_owned(&a, CB_COW_PART - 1), 1);
    /* The elements past n are zero: growing again shows them empty. */
    assert_int_equal(cb_cow_resize(&b, CB_COW_PART + 1), 0);
    assert_int_equal(get_owned(&b, CB_COW_PART - 1), -1);
    assert_int_equal(get_owned(&b, CB_COW_PART), -1);
    assert_int_equal(get_owned(&b, 0), 1);
    assert_int_equal(get_owned(&a, CB_COW_PART - 1), 1); /* a untouched */
    cb_cow_free(&a);
    cb_cow_free(&b);
    assert_int_equal(clears, (int)(CB_COW_PART + 3) + copies);
    /* An empty table, grown from nothing. */
    assert_int_equal(cb_cow_init(&a, &u32_ops, 0), 0);
    assert_int_equal(a.n_parts, 0);
    assert_int_equal(cb_cow_resize(&a, 1), 0);
    assert_int_equal(*(const uint32_t *)cb_cow_at(&a, 0), 0);
    cb_cow_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_share_copies_one_part),
        cmocka_unit_test(test_owned_elements_copied_and_cleared_once),
        cmocka_unit_test(test_resize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
