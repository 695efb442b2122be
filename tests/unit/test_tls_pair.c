/*
 * test_tls_pair.c: a binding's two certificates (certhash=T1,T2) in the certificate cache
 * (cb_tls_cache_get_pair): one entry keyed "T1,T2" that parses both, on the loop or as a
 * load job, serves both (the SSL then holds an ECDSA and an RSA certificate, and OpenSSL
 * picks by the client's signature algorithms), and is unusable as a whole when either
 * certificate is: a missing key, two of one key type, files that hold another certificate.
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

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/ctx.h"

enum { EC1, RSA1, EC2, N_CERTS };
static const char *const newkey[N_CERTS] = {"ec -pkeyopt ec_paramgen_curve:P-256", "rsa:2048",
                                            "ec -pkeyopt ec_paramgen_curve:P-256"};
static char dir[64];
static char cert[N_CERTS][128], key[N_CERTS][128], thumb[N_CERTS][CB_THUMB_LEN + 1];

/* The SHA-1 thumbprint of a PEM certificate, as certbind writes it (upper-case hex). */
static int thumbprint(const char *path, char out[CB_THUMB_LEN + 1])
{
    FILE *f = fopen(path, "r");
    X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    unsigned char md[20];
    unsigned len = 0;

    if (f != NULL)
        fclose(f);
    if (x == NULL || X509_digest(x, EVP_sha1(), md, &len) != 1 || len != 20) {
        X509_free(x);
        return -1;
    }
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02X", md[i]);
    X509_free(x);
    return 0;
}

static int setup(void **state)
{
    char cmd[1024];
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cb-pair-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    for (int i = 0; i < N_CERTS; i++) {
        snprintf(cert[i], sizeof(cert[i]), "%s/c%d.pem", dir, i);
        snprintf(key[i], sizeof(key[i]), "%s/c%d.key", dir, i);
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey %s -nodes -days 30 -subj /CN=pair.test -keyout %s "
                 "-out %s >/dev/null 2>&1 && chmod 600 %s",
                 newkey[i], key[i], cert[i], key[i]);
        if (system(cmd) != 0 || thumbprint(cert[i], thumb[i]) != 0)
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

/* The pair (a, b) as runtime_build makes it: key "Ta,Tb", the files of each. */
static void get_pair(struct cb_tls_cache *c, int a, int b, const char *key_b,
                     struct cb_tls_entry *e, bool *reused)
{
    char k[2 * CB_THUMB_LEN + 2];
    snprintf(k, sizeof(k), "%s,%s", thumb[a], thumb[b]);
    cb_tls_cache_get_pair(c, k, cert[a], key[a], cert[b], key_b ? key_b : key[b], NULL, false, e,
                          reused);
    assert_non_null(e->cert);
}

/* The key types of the certificates ssl holds: bit 0 ECDSA, bit 1 RSA; *n how many. */
static unsigned held_key_types(SSL *ssl, int *n)
{
    unsigned types = 0;
    *n = 0;
    for (int rc = SSL_set_current_cert(ssl, SSL_CERT_SET_FIRST); rc == 1;
         rc = SSL_set_current_cert(ssl, SSL_CERT_SET_NEXT)) {
        X509 *x = SSL_get_certificate(ssl);
        if (x == NULL)
            continue;
        EVP_PKEY *pk = X509_get0_pubkey(x);
        (*n)++;
        types |= EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC    ? 1u
                 : EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA ? 2u
                                                            : 4u;
    }
    return types;
}

static int on_hello(SSL *ssl, int *alert, void *arg)
{
    (void)ssl;
    (void)alert;
    (void)arg;
    return 1;
}

/* Serves e on a fresh server SSL; returns the key types it then holds. */
static unsigned serve_types(const struct cb_tls_entry *e, int *n)
{
    struct cb_snap_binding b;
    SSL_CTX *ctx = cb_tls_default_ctx(on_hello);
    SSL *ssl;
    unsigned types;

    memset(&b, 0, sizeof(b));
    b.certhash2 = "";
    assert_non_null(ctx);
    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    assert_int_equal(cb_tls_apply_binding(ssl, e, &b), 0);
    types = held_key_types(ssl, n);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return types;
}

static void test_a_pair_serves_both_certificates(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    struct cb_tls_entry e = {0}, again = {0}, single = {0};
    bool reused, loaded;
    int n;
    (void)state;

    assert_non_null(c);
    get_pair(c, EC1, RSA1, NULL, &e, &reused);
    assert_false(reused);
    assert_true(cb_tls_entry_untried(&e)); /* parsed on first use, as one certificate is */
    assert_null(cb_tls_entry_load(&e, &loaded));
    assert_true(loaded);
    assert_int_equal(serve_types(&e, &n), 3u);
    assert_int_equal(n, 2);
    /* the next snapshot finds it in the cache */
    get_pair(c, EC1, RSA1, NULL, &again, &reused);
    assert_true(reused);
    assert_ptr_equal(again.cert, e.cert);
    /* one certificate alone is another entry, and serves one */
    cb_tls_cache_get(c, thumb[EC1], cert[EC1], key[EC1], NULL, false, &single, &reused);
    assert_false(reused);
    assert_ptr_not_equal(single.cert, e.cert);
    assert_null(cb_tls_entry_load(&single, NULL));
    assert_int_equal(serve_types(&single, &n), 1u);
    assert_int_equal(n, 1);
    cb_tls_entry_clear(&e);
    cb_tls_entry_clear(&again);
    cb_tls_entry_clear(&single);
    cb_tls_cache_free(c);
}

static void test_a_pair_parsed_by_a_load_job(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    struct cb_tls_entry e = {0};
    bool reused;
    int n;
    (void)state;

    /* RSA given first: served all the same */
    get_pair(c, RSA1, EC1, NULL, &e, &reused);
    struct cb_tls_load *j = cb_tls_load_begin(&e);
    assert_non_null(j);
    assert_true(cb_tls_entry_loading(&e));
    cb_tls_load_run(j);
    cb_tls_load_finish(j);
    assert_false(cb_tls_entry_untried(&e));
    assert_null(cb_tls_entry_error(&e));
    assert_int_equal(serve_types(&e, &n), 3u);
    assert_int_equal(n, 2);
    cb_tls_entry_clear(&e);
    cb_tls_cache_free(c);
}

static void test_either_certificate_broken_breaks_the_pair(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    struct cb_tls_entry e = {0};
    char missing[160];
    bool reused;
    const char *why;
    (void)state;

    /* the second key missing: known at once, before any parse */
    snprintf(missing, sizeof(missing), "%s/none.key", dir);
    get_pair(c, EC1, RSA1, missing, &e, &reused);
    why = cb_tls_entry_error(&e);
    assert_non_null(why);
    assert_non_null(strstr(why, "none.key"));
    assert_non_null(cb_tls_entry_load(&e, NULL));
    cb_tls_entry_clear(&e);

    /* the second key is another certificate's */
    get_pair(c, EC2, RSA1, key[EC1], &e, &reused);
    assert_null(cb_tls_entry_error(&e));
    assert_non_null(cb_tls_entry_load(&e, NULL));
    cb_tls_entry_clear(&e);

    /* two ECDSA certificates */
    get_pair(c, EC1, EC2, NULL, &e, &reused);
    why = cb_tls_entry_load(&e, NULL);
    assert_non_null(why);
    assert_non_null(strstr(why, "one ECDSA and one RSA"));
    struct cb_tls_load *j = cb_tls_load_begin(&e);
    assert_null(j); /* tried already: nothing more to parse */
    cb_tls_entry_clear(&e);
    cb_tls_cache_free(c);
}

static void test_files_that_hold_another_certificate_break_the_pair(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    struct cb_tls_entry e = {0};
    char k[2 * CB_THUMB_LEN + 2];
    bool reused;
    (void)state;

    /* the key names RSA1 second, the files hold EC2's certificate there */
    snprintf(k, sizeof(k), "%s,%s", thumb[EC1], thumb[RSA1]);
    cb_tls_cache_get_pair(c, k, cert[EC1], key[EC1], cert[EC2], key[EC2], NULL, false, &e, &reused);
    const char *why = cb_tls_entry_load(&e, NULL);
    assert_non_null(why);
    assert_non_null(strstr(why, thumb[RSA1]));
    cb_tls_entry_clear(&e);
    cb_tls_cache_free(c);
}

/* Under a budget (serve --cert-cache-mb) a pair is charged for both certificates and
 * evicted as one: both parsed again on its next use, and served both again. */
static void test_a_pair_is_evicted_and_parsed_again_as_one(void **state)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    struct cb_tls_cache_stats pair_only, both;
    struct cb_tls_entry pair = {0}, single = {0};
    bool reused;
    int n;
    (void)state;

    /* no budget: the pair is charged for both its certificates, more than one alone */
    get_pair(c, EC1, RSA1, NULL, &pair, &reused);
    assert_null(cb_tls_entry_load(&pair, NULL));
    cb_tls_cache_get_stats(c, &pair_only);
    cb_tls_cache_get(c, thumb[EC2], cert[EC2], key[EC2], NULL, false, &single, &reused);
    assert_null(cb_tls_entry_load(&single, NULL));
    cb_tls_cache_get_stats(c, &both);
    assert_true(pair_only.bytes > both.bytes - pair_only.bytes);
    cb_tls_entry_clear(&pair);
    cb_tls_entry_clear(&single);
    cb_tls_cache_free(c);

    /* room for the pair alone: parsing another drops the pair, both its bundles */
    c = cb_tls_cache_new();
    cb_tls_cache_set_budget(c, pair_only.bytes + 1);
    get_pair(c, EC1, RSA1, NULL, &pair, &reused);
    assert_null(cb_tls_entry_load(&pair, NULL));
    cb_tls_cache_get(c, thumb[EC2], cert[EC2], key[EC2], NULL, false, &single, &reused);
    assert_null(cb_tls_entry_load(&single, NULL));
    cb_tls_cache_get_stats(c, &both);
    assert_int_equal(both.evictions, 1);
    assert_true(cb_tls_entry_untried(&pair));
    /* and it is parsed again, whole, on its next use */
    assert_null(cb_tls_entry_load(&pair, NULL));
    assert_int_equal(serve_types(&pair, &n), 3u);
    assert_int_equal(n, 2);
    cb_tls_entry_clear(&pair);
    cb_tls_entry_clear(&single);
    cb_tls_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_pair_serves_both_certificates),
        cmocka_unit_test(test_a_pair_parsed_by_a_load_job),
        cmocka_unit_test(test_either_certificate_broken_breaks_the_pair),
        cmocka_unit_test(test_files_that_hold_another_certificate_break_the_pair),
        cmocka_unit_test(test_a_pair_is_evicted_and_parsed_again_as_one),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
