/*
 * test_affinity.c: what certificate affinity between workers decides from a worker's
 * certificate cache: the owner of a certificate (the same in every worker), when a
 * certificate is hot enough to be parsed by a worker that does not own it, and how many
 * certificates are still unparsed (cb_tls_cache_untried: with none, nothing is peeked).
 * The certificates are made once per run with the openssl command in a mkdtemp folder.
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

#include "tls/ctx.h"

static char dir[64];
static char cert[4][128], key[4][128];

static int setup(void **state)
{
    char cmd[1024];
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cb-affinity-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    for (int i = 0; i < 4; i++) {
        snprintf(cert[i], sizeof(cert[i]), "%s/c%d.pem", dir, i);
        snprintf(key[i], sizeof(key[i]), "%s/c%d.key", dir, i);
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
                 "-subj /CN=s%d.aff.test -keyout %s -out %s >/dev/null 2>&1 && chmod 600 %s",
                 i, key[i], cert[i], key[i]);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* An entry keyed by its certificate's path (as a central-store file is: no thumbprint check). */
static void get(struct cb_tls_cache *c, int i, const char *key_path, struct cb_tls_entry *e)
{
    bool reused;
    cb_tls_cache_get(c, cert[i], cert[i], key_path, NULL, false, e, &reused);
    assert_non_null(e->cert);
}

static void test_untried_counts_what_is_neither_parsed_nor_broken(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    struct cb_tls_entry e[4] = {{0}};
    char missing[160];
    (void)state;
    assert_non_null(c);
    assert_int_equal(cb_tls_cache_untried(c), 0);
    assert_int_equal(cb_tls_cache_untried(NULL), 0);
    for (int i = 0; i < 3; i++)
        get(c, i, key[i], &e[i]);
    assert_int_equal(cb_tls_cache_untried(c), 3);

    /* A missing key is known broken at once: it is not waiting to be parsed. */
    snprintf(missing, sizeof(missing), "%s/none.key", dir);
    get(c, 3, missing, &e[3]);
    assert_non_null(cb_tls_entry_error(&e[3]));
    assert_int_equal(cb_tls_cache_untried(c), 3);

    /* Parsing one (the first handshake for it) leaves two; parsing it again changes nothing. */
    assert_null(cb_tls_entry_load(&e[0], NULL));
    assert_int_equal(cb_tls_cache_untried(c), 2);
    assert_null(cb_tls_entry_load(&e[0], NULL));
    assert_int_equal(cb_tls_cache_untried(c), 2);

    /* A new snapshot without certificate 1: swept out of the cache, out of the count. An
     * entry a connection still holds is parsed later without touching the cache's count. */
    cb_tls_cache_mark(c);
    struct cb_tls_entry again[3] = {{0}};
    get(c, 0, key[0], &again[0]);
    get(c, 2, key[2], &again[2]);
    cb_tls_cache_sweep(c);
    assert_int_equal(cb_tls_cache_untried(c), 1);
    assert_null(cb_tls_entry_load(&e[1], NULL));
    assert_int_equal(cb_tls_cache_untried(c), 1);
    assert_null(cb_tls_entry_load(&again[2], NULL));
    assert_int_equal(cb_tls_cache_untried(c), 0);

    for (int i = 0; i < 4; i++)
        cb_tls_entry_clear(&e[i]);
    cb_tls_entry_clear(&again[0]);
    cb_tls_entry_clear(&again[2]);
    cb_tls_cache_free(c);
}

static void test_owner_is_the_same_in_every_worker(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    struct cb_tls_entry e[3] = {{0}};
    (void)state;
    for (int i = 0; i < 3; i++) {
        get(c, i, key[i], &e[i]);
        int from0 = cb_tls_entry_worker(&e[i], 0, 2, 0);
        int from1 = cb_tls_entry_worker(&e[i], 1, 2, 0);
        /* Owner 0: worker 0 keeps it, worker 1 passes it to 0; owner 1 the other way. */
        assert_true((from0 == 0 && from1 == 0) || (from0 == 1 && from1 == 1));
        /* With 5 workers: asked from each, the same owner, in range (itself included). */
        int owner5 = cb_tls_entry_worker(&e[i], 0, 5, 0);
        assert_true(owner5 >= 0 && owner5 < 5);
        for (int w = 1; w < 5; w++)
            assert_int_equal(cb_tls_entry_worker(&e[i], w, 5, 0), owner5);
        assert_int_equal(cb_tls_entry_worker(&e[i], 0, 1, 0), 0); /* one worker: itself */
    }
    for (int i = 0; i < 3; i++)
        cb_tls_entry_clear(&e[i]);
    cb_tls_cache_free(c);
}

static void test_a_hot_certificate_is_parsed_where_it_is_asked_for(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    struct cb_tls_entry e = {0};
    (void)state;
    get(c, 0, key[0], &e);
    int owner = cb_tls_entry_worker(&e, 0, 2, 0) == 0 ? 0 : 1;
    int other = 1 - owner;
    /* The first pass above counted only if worker 0 is the other one. */
    int passed = other == 0 ? 1 : 0;
    for (; passed < CB_TLS_HOT_HANDOFFS; passed++)
        assert_int_equal(cb_tls_entry_worker(&e, other, 2, 1000), owner);
    /* The 17th within the window: hot, this worker serves (and will parse) it itself. */
    assert_int_equal(cb_tls_entry_worker(&e, other, 2, 2000), other);
    assert_int_equal(cb_tls_entry_worker(&e, other, 2, 2000), other);
    /* A new window after CB_TLS_HOT_WINDOW_MS: passing again. */
    assert_int_equal(cb_tls_entry_worker(&e, other, 2, 2000 + CB_TLS_HOT_WINDOW_MS + 1), owner);
    /* Parsed here: always here, whoever owns it. */
    assert_null(cb_tls_entry_load(&e, NULL));
    assert_int_equal(cb_tls_entry_worker(&e, other, 2, 3000 + CB_TLS_HOT_WINDOW_MS), other);
    cb_tls_entry_clear(&e);
    cb_tls_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_untried_counts_what_is_neither_parsed_nor_broken),
        cmocka_unit_test(test_owner_is_the_same_in_every_worker),
        cmocka_unit_test(test_a_hot_certificate_is_parsed_where_it_is_asked_for),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
