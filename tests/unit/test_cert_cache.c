/*
 * test_cert_cache.c: the budget of a worker's certificate cache (`serve --cert-cache-mb`,
 * cb_tls_cache_set_budget): parsed certificates beyond it are dropped least recently
 * served first and parsed again on their next use; an entry always serves its own
 * certificate, before and after being dropped; a connection served a dropped certificate
 * keeps it (ASan would see a use after free); certificates loaded at once (files that
 * change in place) are never dropped; the counts follow. The certificates are made once
 * per run with the openssl command in a mkdtemp folder.
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

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/ctx.h"

#define N_CERTS 4

static char dir[64];
static char cert[N_CERTS][128], key[N_CERTS][128];
static size_t one; /* the estimated size of one parsed certificate */

static int setup(void **state)
{
    char cmd[1024];
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cb-certcache-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    for (int i = 0; i < N_CERTS; i++) {
        snprintf(cert[i], sizeof(cert[i]), "%s/c%d.pem", dir, i);
        snprintf(key[i], sizeof(key[i]), "%s/c%d.key", dir, i);
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
                 "-subj /CN=s%d.cache.test -keyout %s -out %s >/dev/null 2>&1 && chmod 600 %s",
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

static void get(struct cb_tls_cache *c, int i, bool eager, struct cb_tls_entry *e)
{
    bool reused;
    cb_tls_cache_get(c, cert[i], cert[i], key[i], NULL, eager, e, &reused);
    assert_non_null(e->cert);
}

/* The CN of the certificate an SSL object would send. */
static void assert_serves(SSL *ssl, int i)
{
    char want[32], cn[64] = "";
    X509 *x = SSL_get_certificate(ssl);
    assert_non_null(x);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    snprintf(want, sizeof(want), "s%d.cache.test", i);
    assert_string_equal(cn, want);
}

/* Loads e (certificate i) as a handshake does and checks that a connection gets certificate
 * i. Returns whether it had to be parsed. */
static bool serve(SSL_CTX *ctx, const struct cb_tls_entry *e, int i)
{
    static const struct cb_snap_binding b = {.certhash2 = ""};
    bool parsed;
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    assert_null(cb_tls_entry_load(e, &parsed));
    assert_int_equal(cb_tls_apply_binding(ssl, e, &b), 0);
    assert_serves(ssl, i);
    SSL_free(ssl);
    return parsed;
}

static void stats(const struct cb_tls_cache *c, struct cb_tls_cache_stats *s)
{
    cb_tls_cache_get_stats(c, s);
    assert_true(s->limit == 0 || s->parsed <= 1 || s->bytes <= s->limit);
}

static void test_an_unbounded_cache_keeps_every_parsed_certificate(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    SSL_CTX *ctx = cb_tls_default_ctx(NULL);
    struct cb_tls_entry e[N_CERTS] = {{0}};
    struct cb_tls_cache_stats s;
    (void)state;
    for (int i = 0; i < N_CERTS; i++) {
        get(c, i, false, &e[i]);
        assert_true(serve(ctx, &e[i], i));
    }
    stats(c, &s);
    assert_int_equal(s.parsed, N_CERTS);
    assert_int_equal(s.evictions, 0);
    assert_int_equal(s.limit, 0);
    one = s.bytes / N_CERTS;
    /* An ECDSA P-256 leaf and key: a few KB, as measured (tls/cert.h). */
    assert_in_range(one, 4000, 12000);
    for (int i = 0; i < N_CERTS; i++) {
        assert_false(serve(ctx, &e[i], i));
        cb_tls_entry_clear(&e[i]);
    }
    SSL_CTX_free(ctx);
    cb_tls_cache_free(c);
}

static void test_over_budget_the_least_recently_served_is_parsed_again(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    SSL_CTX *ctx = cb_tls_default_ctx(NULL);
    struct cb_tls_entry e[N_CERTS] = {{0}};
    struct cb_tls_cache_stats s;
    (void)state;
    assert_true(one > 0);                          /* measured by the test before */
    cb_tls_cache_set_budget(c, 2 * one + one / 2); /* room for two */
    for (int i = 0; i < 3; i++)
        get(c, i, false, &e[i]);
    assert_true(serve(ctx, &e[0], 0));
    assert_true(serve(ctx, &e[1], 1));
    assert_int_equal(cb_tls_cache_untried(c), 1);
    /* The third: the first goes (unparsed again, waiting for its next use). */
    assert_true(serve(ctx, &e[2], 2));
    stats(c, &s);
    assert_int_equal(s.parsed, 2);
    assert_int_equal(s.evictions, 1);
    assert_true(cb_tls_entry_untried(&e[0]));
    assert_null(cb_tls_entry_error(&e[0]));
    assert_int_equal(cb_tls_cache_untried(c), 1);

    /* Asked for again: parsed anew, and still its own certificate; 1 goes now. */
    assert_true(serve(ctx, &e[0], 0));
    assert_true(cb_tls_entry_untried(&e[1]));
    /* Serving 2 makes it the most recent: 0 goes for 1, not 2. */
    assert_false(serve(ctx, &e[2], 2));
    assert_true(serve(ctx, &e[1], 1));
    assert_true(cb_tls_entry_untried(&e[0]));
    assert_false(cb_tls_entry_untried(&e[2]));
    stats(c, &s);
    assert_int_equal(s.evictions, 3);
    assert_int_equal(s.parsed, 2);

    for (int i = 0; i < 3; i++)
        cb_tls_entry_clear(&e[i]);
    SSL_CTX_free(ctx);
    cb_tls_cache_free(c);
}

static void test_a_connection_keeps_a_dropped_certificate(void **state)
{
    static const struct cb_snap_binding b = {.certhash2 = ""};
    struct cb_tls_cache *c = cb_tls_cache_new();
    SSL_CTX *ctx = cb_tls_default_ctx(NULL);
    struct cb_tls_entry e[N_CERTS] = {{0}};
    SSL *live = SSL_new(ctx);
    (void)state;
    cb_tls_cache_set_budget(c, 1); /* room for the one being served only */
    for (int i = 0; i < N_CERTS; i++)
        get(c, i, false, &e[i]);
    assert_null(cb_tls_entry_load(&e[0], NULL));
    assert_int_equal(cb_tls_apply_binding(live, &e[0], &b), 0);
    /* Every other certificate pushes 0 out; the live connection still holds all of it. */
    for (int i = 1; i < N_CERTS; i++)
        assert_true(serve(ctx, &e[i], i));
    assert_true(cb_tls_entry_untried(&e[0]));
    assert_serves(live, 0);
    assert_non_null(SSL_get_privatekey(live));
    SSL_free(live);
    for (int i = 0; i < N_CERTS; i++)
        cb_tls_entry_clear(&e[i]);
    SSL_CTX_free(ctx);
    cb_tls_cache_free(c);
}

/* A certificate served with a client CA file: the CA is parsed with it, dropped with it
 * and parsed again with it (verification never lapses, nothing leaks or is freed twice). */
static void test_a_client_ca_is_dropped_and_parsed_again_with_its_certificate(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    SSL_CTX *ctx = cb_tls_default_ctx(NULL);
    struct cb_tls_entry e[2] = {{0}};
    static const struct cb_snap_binding b = {.certhash2 = ""};
    bool reused;
    (void)state;
    assert_true(one > 0);
    cb_tls_cache_set_budget(c, one + one / 2); /* room for one */
    for (int i = 0; i < 2; i++)
        cb_tls_cache_get(c, cert[i], cert[i], key[i], cert[3], false, &e[i], &reused);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 2; i++) {
            SSL *ssl = SSL_new(ctx);
            assert_non_null(ssl);
            assert_true(cb_tls_entry_untried(&e[i])); /* the other one pushed it out */
            assert_null(cb_tls_entry_load(&e[i], NULL));
            assert_int_equal(cb_tls_apply_binding(ssl, &e[i], &b), 0);
            assert_serves(ssl, i);
            assert_int_equal(SSL_get_verify_mode(ssl) & SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                             SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
            assert_int_equal(sk_X509_NAME_num(SSL_get_client_CA_list(ssl)), 1);
            SSL_free(ssl);
        }
    }
    for (int i = 0; i < 2; i++)
        cb_tls_entry_clear(&e[i]);
    SSL_CTX_free(ctx);
    cb_tls_cache_free(c);
}

static void test_a_parse_off_the_loop_is_charged_and_evicts_too(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    SSL_CTX *ctx = cb_tls_default_ctx(NULL);
    struct cb_tls_entry e[2] = {{0}};
    struct cb_tls_cache_stats s;
    (void)state;
    cb_tls_cache_set_budget(c, one + one / 2);
    get(c, 0, false, &e[0]);
    get(c, 1, false, &e[1]);
    assert_true(serve(ctx, &e[0], 0));
    struct cb_tls_load *j = cb_tls_load_begin(&e[1]);
    assert_non_null(j);
    assert_true(cb_tls_entry_loading(&e[1]));
    cb_tls_load_run(j);
    cb_tls_load_finish(j);
    assert_false(cb_tls_entry_untried(&e[1]));
    assert_true(cb_tls_entry_untried(&e[0]));
    stats(c, &s);
    assert_int_equal(s.parsed, 1);
    assert_int_equal(s.evictions, 1);
    assert_false(serve(ctx, &e[1], 1));
    cb_tls_entry_clear(&e[0]);
    cb_tls_entry_clear(&e[1]);
    SSL_CTX_free(ctx);
    cb_tls_cache_free(c);
}

static void test_certificates_loaded_at_once_are_never_dropped(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    SSL_CTX *ctx = cb_tls_default_ctx(NULL);
    struct cb_tls_entry e[N_CERTS] = {{0}};
    struct cb_tls_cache_stats s;
    (void)state;
    cb_tls_cache_set_budget(c, 1);
    get(c, 0, true, &e[0]); /* a linked file: parsed now, kept whatever the budget */
    for (int i = 1; i < N_CERTS; i++) {
        get(c, i, false, &e[i]);
        assert_true(serve(ctx, &e[i], i));
    }
    assert_false(cb_tls_entry_untried(&e[0]));
    assert_false(serve(ctx, &e[0], 0));
    stats(c, &s);
    assert_int_equal(s.parsed, 1); /* the last one served; the pinned one is not counted */
    assert_int_equal(s.evictions, N_CERTS - 2);
    for (int i = 0; i < N_CERTS; i++)
        cb_tls_entry_clear(&e[i]);
    SSL_CTX_free(ctx);
    cb_tls_cache_free(c);
}

static void test_an_entry_leaving_the_cache_leaves_the_budget(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    SSL_CTX *ctx = cb_tls_default_ctx(NULL);
    struct cb_tls_entry e[2] = {{0}}, again = {0};
    struct cb_tls_cache_stats s;
    (void)state;
    cb_tls_cache_set_budget(c, 10 * one);
    get(c, 0, false, &e[0]);
    get(c, 1, false, &e[1]);
    assert_true(serve(ctx, &e[0], 0));
    assert_true(serve(ctx, &e[1], 1));
    /* A new snapshot without certificate 1: out of the cache and its budget, but the entry
     * an old snapshot holds still serves it. */
    cb_tls_cache_mark(c);
    get(c, 0, false, &again);
    cb_tls_cache_sweep(c);
    stats(c, &s);
    assert_int_equal(s.parsed, 1);
    assert_false(serve(ctx, &e[1], 1));
    stats(c, &s);
    assert_int_equal(s.parsed, 1); /* served outside the cache: not back in its budget */
    cb_tls_entry_clear(&e[0]);
    cb_tls_entry_clear(&e[1]);
    cb_tls_entry_clear(&again);
    SSL_CTX_free(ctx);
    cb_tls_cache_free(c);
}

/* Copies certificate i's files into folder d as NAME.pem and NAME.key (key mode 0600),
 * each only when asked. */
static void copy_pair(const char *d, int i, const char *name, bool with_cert, bool with_key)
{
    char cmd[1024];
    if (with_cert) {
        snprintf(cmd, sizeof(cmd), "cp %s %s/%s.pem", cert[i], d, name);
        assert_int_equal(system(cmd), 0);
    }
    if (with_key) {
        snprintf(cmd, sizeof(cmd), "cp %s %s/%s.key && chmod 600 %s/%s.key", key[i], d, name, d,
                 name);
        assert_int_equal(system(cmd), 0);
    }
}

static void get_in(struct cb_tls_cache *c, const char *d, const char *name, struct cb_tls_entry *e)
{
    char cp[256], kp[256];
    bool reused;
    snprintf(cp, sizeof(cp), "%s/%s.pem", d, name);
    snprintf(kp, sizeof(kp), "%s/%s.key", d, name);
    cb_tls_cache_get(c, cp, cp, kp, NULL, false, e, &reused); /* a path: no thumbprint test */
    assert_non_null(e->cert);
}

/* A folder listed for a build (the store's certs/ and keys/ in a large store): a file the
 * listing does not name is missing at once, as a lookup finds it; one it names is taken as
 * there, and what a lookup would also have found (a key open to others) is found on first
 * use, where the handshake fails and says why. Outside a build, files are looked up again. */
static void test_a_listed_folder_tells_missing_files_at_once_and_the_rest_on_first_use(void **state)
{
    char d[128], cmd[512];
    struct cb_tls_cache *c = cb_tls_cache_new();
    SSL_CTX *ctx = cb_tls_default_ctx(NULL);
    struct cb_tls_entry good = {0}, no_key = {0}, no_cert = {0}, open_key = {0}, looked = {0};
    const char *why;
    (void)state;

    snprintf(d, sizeof(d), "%s/listed", dir);
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", d);
    assert_int_equal(system(cmd), 0);
    copy_pair(d, 0, "AAAA", true, true);
    copy_pair(d, 1, "BBBB", true, false);
    copy_pair(d, 2, "CCCC", false, true);
    copy_pair(d, 3, "DDDD", true, true);
    snprintf(cmd, sizeof(cmd), "chmod 644 %s/DDDD.key", d);
    assert_int_equal(system(cmd), 0);
    /* Enough other names that the listing's table grows several times. */
    snprintf(cmd, sizeof(cmd), "cd %s && for i in $(seq 1 3000); do : > f$i.pem; done", d);
    assert_int_equal(system(cmd), 0);

    assert_int_not_equal(cb_tls_cache_list_folder(c, "/nonexistent/cb-listed", 0), 0);
    cb_tls_cache_mark(c);
    assert_int_equal(cb_tls_cache_list_folder(c, d, 0), 0);
    get_in(c, d, "AAAA", &good);
    get_in(c, d, "BBBB", &no_key);
    get_in(c, d, "CCCC", &no_cert);
    get_in(c, d, "DDDD", &open_key);
    assert_null(cb_tls_entry_error(&good));
    assert_non_null(why = cb_tls_entry_error(&no_key));
    assert_non_null(strstr(why, "cannot read the key"));
    assert_non_null(strstr(why, "BBBB.key: No such file or directory"));
    assert_non_null(why = cb_tls_entry_error(&no_cert));
    assert_non_null(strstr(why, "CCCC.pem: No such file or directory"));
    assert_null(cb_tls_entry_error(&open_key)); /* not looked at: learnt on first use */
    cb_tls_cache_sweep(c);
    assert_true(serve(ctx, &good, 0)); /* parsed now, and serves its own certificate */
    why = cb_tls_entry_load(&open_key, NULL);
    assert_non_null(why);
    assert_non_null(strstr(why, "chmod"));
    assert_non_null(cb_tls_entry_error(&open_key));

    /* Outside a build, nothing is listed: the key open to others is looked at at once. */
    struct cb_tls_cache *c2 = cb_tls_cache_new();
    get_in(c2, d, "DDDD", &looked);
    assert_non_null(why = cb_tls_entry_error(&looked));
    assert_non_null(strstr(why, "chmod"));

    cb_tls_entry_clear(&good);
    cb_tls_entry_clear(&no_key);
    cb_tls_entry_clear(&no_cert);
    cb_tls_entry_clear(&open_key);
    cb_tls_entry_clear(&looked);
    cb_tls_cache_free(c2);
    SSL_CTX_free(ctx);
    cb_tls_cache_free(c);
}

/* Certificate i's SHA-1 thumbprint (upper-case hex), as the store names its files. */
static void thumb_of(int i, char out[41])
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl x509 -in %s -noout -fingerprint -sha1 | sed 's/.*=//; s/://g'", cert[i]);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(out, 41, p));
    pclose(p);
    assert_int_equal(strlen(out), 40);
}

/* Files in a state folder's own layout (D/certs/THUMB.pem, D/keys/THUMB.key) are named by
 * the folder, not kept as two paths in each entry: what a handshake loads, what a parse
 * off the loop loads and what an error names are the same files all the same, in two
 * state folders at once; a file elsewhere or named otherwise keeps its own path. */
static void test_store_layout_files_are_found_from_the_state_folder(void **state)
{
    char d[2][128], cp[256], kp[256], cmd[1024], t[N_CERTS][41];
    struct cb_tls_cache *c = cb_tls_cache_new();
    SSL_CTX *ctx = cb_tls_default_ctx(NULL);
    struct cb_tls_entry e[4] = {{0}};
    bool reused;
    const char *why;
    (void)state;

    for (int i = 0; i < 3; i++)
        thumb_of(i, t[i]);
    for (int k = 0; k < 2; k++) {
        snprintf(d[k], sizeof(d[k]), "%s/state%d", dir, k);
        snprintf(cmd, sizeof(cmd), "mkdir -p %s/certs %s/keys", d[k], d[k]);
        assert_int_equal(system(cmd), 0);
    }
    /* State 0 holds certificates 0 and 1 (1 without its key), state 1 holds 2. */
    for (int i = 0; i < 3; i++) {
        int k = i == 2;
        snprintf(cmd, sizeof(cmd), "cp %s %s/certs/%s.pem", cert[i], d[k], t[i]);
        assert_int_equal(system(cmd), 0);
        if (i != 1) {
            snprintf(cmd, sizeof(cmd), "cp %s %s/keys/%s.key && chmod 600 %s/keys/%s.key", key[i],
                     d[k], t[i], d[k], t[i]);
            assert_int_equal(system(cmd), 0);
        }
    }
    for (int i = 0; i < 3; i++) {
        int k = i == 2;
        snprintf(cp, sizeof(cp), "%s/certs/%s.pem", d[k], t[i]);
        snprintf(kp, sizeof(kp), "%s/keys/%s.key", d[k], t[i]);
        cb_tls_cache_get(c, t[i], cp, kp, NULL, false, &e[i], &reused);
        assert_non_null(e[i].cert);
    }
    /* Certificate 0 in its own layout but under another name for its key: its paths. */
    snprintf(cmd, sizeof(cmd), "cp %s/keys/%s.key %s/keys/other.key", d[0], t[0], d[0]);
    assert_int_equal(system(cmd), 0);
    snprintf(cp, sizeof(cp), "%s/certs/%s.pem", d[0], t[0]);
    snprintf(kp, sizeof(kp), "%s/keys/other.key", d[0]);
    struct cb_tls_cache *c2 = cb_tls_cache_new();
    cb_tls_cache_get(c2, t[0], cp, kp, NULL, false, &e[3], &reused);
    assert_true(serve(ctx, &e[3], 0));

    assert_true(serve(ctx, &e[0], 0));
    snprintf(cmd, sizeof(cmd), "%s/keys/%s.key: No such file or directory", d[0], t[1]);
    assert_non_null(why = cb_tls_entry_error(&e[1]));
    assert_non_null(strstr(why, cmd));
    /* Parsed off the loop, as a worker's first handshake for it does. */
    struct cb_tls_load *j = cb_tls_load_begin(&e[2]);
    assert_non_null(j);
    cb_tls_load_run(j);
    cb_tls_load_finish(j);
    assert_false(serve(ctx, &e[2], 2));

    for (int i = 0; i < 4; i++)
        cb_tls_entry_clear(&e[i]);
    cb_tls_cache_free(c2);
    SSL_CTX_free(ctx);
    cb_tls_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_unbounded_cache_keeps_every_parsed_certificate),
        cmocka_unit_test(test_over_budget_the_least_recently_served_is_parsed_again),
        cmocka_unit_test(test_a_connection_keeps_a_dropped_certificate),
        cmocka_unit_test(test_a_parse_off_the_loop_is_charged_and_evicts_too),
        cmocka_unit_test(test_a_client_ca_is_dropped_and_parsed_again_with_its_certificate),
        cmocka_unit_test(test_certificates_loaded_at_once_are_never_dropped),
        cmocka_unit_test(test_an_entry_leaving_the_cache_leaves_the_budget),
        cmocka_unit_test(
            test_a_listed_folder_tells_missing_files_at_once_and_the_rest_on_first_use),
        cmocka_unit_test(test_store_layout_files_are_found_from_the_state_folder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
