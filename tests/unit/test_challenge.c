/*
 * test_challenge.c: TLS-ALPN-01 (RFC 8737). The store's challenges table (put, replace,
 * delete, load, expiry, refusals, the change log's marker), the ALPN rules that tell a
 * validation from an ordinary client and choose the protocol, and the parsed set a worker
 * serves from (a good challenge, and each reason one cannot be served).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/challenge.h"
#include "tls/challenge.h"

static char base[64];
static char state[128];
static int test_no;
static char *good_cert, *good_key, *other_key, *plain_cert, *wrong_name_cert, *wn_key,
    *noncrit_cert, *nc_key;

static void sh(const char *cmd)
{
    char full[2048];
    snprintf(full, sizeof(full), "cd '%s' && ( %s ) >/dev/null 2>&1", base, cmd);
    if (system(full) != 0)
        fail_msg("command failed: %s", cmd);
}

static char *slurp(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", base, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    assert_true(n > 0);
    return buf;
}

#define ACME_EXT "-addext \"1.3.6.1.5.5.7.1.31=critical,DER:0420$(openssl rand -hex 32)\""
#define REQ "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 "

static int setup_run(void **unused)
{
    (void)unused;
    snprintf(base, sizeof(base), "/tmp/cb-test-challenge-XXXXXX");
    if (mkdtemp(base) == NULL)
        return -1;
    sh(REQ "-subj /CN=acme -addext subjectAltName=DNS:a.example.com " ACME_EXT
           " -keyout good.key -out good.crt");
    sh(REQ "-subj /CN=acme -addext subjectAltName=DNS:a.example.com -keyout other.key "
           "-out plain.crt");
    sh(REQ "-subj /CN=acme -addext subjectAltName=DNS:b.example.com " ACME_EXT
           " -keyout wn.key -out wrongname.crt");
    sh(REQ "-subj /CN=acme -addext subjectAltName=DNS:a.example.com "
           "-addext 1.3.6.1.5.5.7.1.31=DER:0420$(openssl rand -hex 32) -keyout nc.key "
           "-out noncrit.crt");
    good_cert = slurp("good.crt");
    good_key = slurp("good.key");
    other_key = slurp("other.key");
    plain_cert = slurp("plain.crt");
    wrong_name_cert = slurp("wrongname.crt");
    noncrit_cert = slurp("noncrit.crt");
    wn_key = slurp("wn.key");
    nc_key = slurp("nc.key");
    return 0;
}

static int teardown_run(void **unused)
{
    char cmd[128];
    (void)unused;
    free(good_cert);
    free(good_key);
    free(other_key);
    free(plain_cert);
    free(wrong_name_cert);
    free(noncrit_cert);
    free(wn_key);
    free(nc_key);
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

static void put(struct cb_store *st, const char *name, const char *cert, const char *key)
{
    struct cb_err err = {0};
    if (cb_store_challenge_put(st, name, cert, key, (int64_t)time(NULL) + 600, &err) != 0)
        fail_msg("put %s: %s", name, err.msg);
}

/* ---- the store ------------------------------------------------------------------- */

static void test_put_load_replace_delete(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_challenge *v = NULL;
    struct cb_err err = {0};
    size_t n = 99;
    (void)unused;

    assert_int_equal(cb_store_challenges_load(st, &v, &n, &err), 0);
    assert_int_equal(n, 0);
    cb_challenges_free(v, n);
    put(st, "A.Example.COM.", good_cert, good_key); /* normalised: a.example.com */
    put(st, "b.example.com", plain_cert, other_key);
    assert_int_equal(cb_store_challenges_load(st, &v, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].name, "a.example.com");
    assert_string_equal(v[0].cert_pem, good_cert);
    assert_string_equal(v[0].key_pem, good_key);
    assert_true(v[0].expires > (int64_t)time(NULL));
    assert_string_equal(v[1].name, "b.example.com");
    cb_challenges_free(v, n);
    /* The same name again replaces it. */
    put(st, "a.example.com", plain_cert, other_key);
    assert_int_equal(cb_store_challenges_load(st, &v, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].cert_pem, plain_cert);
    cb_challenges_free(v, n);
    /* Delete; absent is 0 and commits nothing. */
    assert_int_equal(cb_store_challenge_delete(st, "A.example.com", &err), 0);
    uint64_t g = generation(st);
    assert_int_equal(cb_store_challenge_delete(st, "a.example.com", &err), 0);
    assert_int_equal(generation(st), g);
    assert_int_equal(cb_store_challenges_load(st, &v, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].name, "b.example.com");
    cb_challenges_free(v, n);
    cb_challenges_free(NULL, 0);
    cb_store_close(st);
}

static void test_expired_skipped(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_challenge *v = NULL;
    struct cb_err err = {0};
    size_t n = 0;
    (void)unused;

    /* Expiring in a second: loaded now, skipped once it has passed. */
    int64_t soon = (int64_t)time(NULL) + 1;
    assert_int_equal(cb_store_challenge_put(st, "a.example.com", good_cert, good_key, soon, &err),
                     0);
    assert_int_equal(cb_store_challenges_load(st, &v, &n, &err), 0);
    assert_int_equal(n, 1);
    cb_challenges_free(v, n);
    while ((int64_t)time(NULL) < soon + 1) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL); /* the clock is what this waits for */
    }
    assert_int_equal(cb_store_challenges_load(st, &v, &n, &err), 0);
    assert_int_equal(n, 0);
    cb_challenges_free(v, n);
    cb_store_close(st);
}

static void test_refusals(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_err err = {0};
    int64_t later = (int64_t)time(NULL) + 600;
    (void)unused;

    uint64_t g = generation(st);
    static const char *const bad_names[] = {"*.example.com", "bad name", "", "-x.example.com"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        assert_int_equal(cb_store_challenge_put(st, bad_names[i], good_cert, good_key, later, &err),
                         CB_EINVAL);
    assert_int_equal(cb_store_challenge_put(st, NULL, good_cert, good_key, later, &err), CB_EINVAL);
    assert_int_equal(cb_store_challenge_put(st, "a.example.com", "", good_key, later, &err),
                     CB_EINVAL);
    assert_int_equal(cb_store_challenge_put(st, "a.example.com", good_cert, "not pem", later, &err),
                     CB_EINVAL);
    assert_int_equal(cb_store_challenge_put(st, "a.example.com", good_cert, NULL, later, &err),
                     CB_EINVAL);
    assert_int_equal(cb_store_challenge_put(st, "a.example.com", good_cert, good_key,
                                            (int64_t)time(NULL) - 1, &err),
                     CB_EINVAL);
    assert_non_null(strstr(err.msg, "expired"));
    /* Its own transaction: not inside another one. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_challenge_put(st, "a.example.com", good_cert, good_key, later, &err),
                     CB_EINVAL);
    assert_int_equal(cb_store_challenge_delete(st, "a.example.com", &err), CB_EINVAL);
    cb_store_rollback(st);
    assert_int_equal(generation(st), g); /* nothing was written */
    cb_store_close(st);
}

static void test_change_log_marks_challenges(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_store_changes ch;
    struct cb_err err = {0};
    (void)unused;

    uint64_t g0 = generation(st);
    put(st, "a.example.com", good_cert, good_key);
    assert_int_equal(generation(st), g0 + 1);
    assert_int_equal(cb_store_changes_since(st, g0, &ch, &err), 0);
    assert_int_equal(ch.generation, g0 + 1);
    assert_true(ch.challenges);
    assert_true(ch.only_challenges);
    assert_int_equal(ch.n_set + ch.n_removed, 0);
    cb_store_changes_clear(&ch);
    /* A delete is a change too. */
    assert_int_equal(cb_store_challenge_delete(st, "a.example.com", &err), 0);
    assert_int_equal(cb_store_changes_since(st, g0 + 1, &ch, &err), 0);
    assert_true(ch.challenges && ch.only_challenges);
    cb_store_changes_clear(&ch);
    /* A commit that is not a challenge's in the range: challenges, but not only them. */
    put(st, "a.example.com", good_cert, good_key);
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_setting_set(st, "user", "nobody", &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    assert_int_equal(cb_store_changes_since(st, g0 + 2, &ch, &err), 0);
    assert_true(ch.challenges);
    assert_false(ch.only_challenges);
    cb_store_changes_clear(&ch);
    /* With a binding changed as well, the binding is reported as usual. */
    struct cb_binding b;
    unsigned fields = 0;
    cb_binding_init(&b);
    assert_int_equal(cb_key_parse_word("hostnameport=a.example.com:443", &b.key, &err), 0);
    assert_int_equal(cb_binding_set_option(
                         &b, "certhash", "0123456789ABCDEF0123456789ABCDEF01234567", &fields, &err),
                     0);
    uint64_t g1 = generation(st);
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    put(st, "b.example.com", good_cert, good_key);
    assert_int_equal(cb_store_changes_since(st, g1, &ch, &err), 0);
    assert_true(ch.challenges);
    assert_false(ch.only_challenges);
    assert_int_equal(ch.n_set, 1);
    assert_string_equal(ch.set[0].key.host, "a.example.com");
    cb_store_changes_clear(&ch);
    /* Nothing since: neither flag. */
    assert_int_equal(cb_store_changes_since(st, generation(st), &ch, &err), 0);
    assert_false(ch.challenges);
    cb_store_changes_clear(&ch);
    cb_store_close(st);
}

/* ---- the ALPN rules --------------------------------------------------------------- */

static void test_acme_offer_table(void **unused)
{
    static const struct {
        const char *ext; /* the extension body as sent, with its 2-byte length */
        size_t len;
        enum cb_acme_offer want;
    } cases[] = {
        {"\x00\x0b\x0a"
         "acme-tls/1",
         13, CB_ACME_OFFER_ONLY},
        {"\x00\x0e\x02h2\x0a"
         "acme-tls/1",
         16, CB_ACME_OFFER_MIXED},
        {"\x00\x14\x0a"
         "acme-tls/1\x08http/1.1",
         22, CB_ACME_OFFER_MIXED},
        {"\x00\x16\x0a"
         "acme-tls/1\x0a"
         "acme-tls/1",
         24, CB_ACME_OFFER_MIXED}, /* twice is not "exactly one" */
        {"\x00\x0c\x02h2\x08http/1.1", 14, CB_ACME_OFFER_NONE},
        {"\x00\x0b\x0a"
         "acme-tls/2",
         13, CB_ACME_OFFER_NONE},
        {"\x00\x0a\x09"
         "acme-tls/",
         12, CB_ACME_OFFER_NONE},
        {"\x00\x0c\x0a"
         "acme-tls/1",
         13, CB_ACME_OFFER_NONE}, /* list length past the end */
        {"\x00\x0b\x0b"
         "acme-tls/1",
         13, CB_ACME_OFFER_NONE}, /* name length past the end */
        {"\x00\x0c\x00\x0a"
         "acme-tls/1",
         14, CB_ACME_OFFER_NONE}, /* an empty name: malformed */
        {"\x00", 1, CB_ACME_OFFER_NONE},
        {"\x00\x00", 2, CB_ACME_OFFER_NONE},
    };
    (void)unused;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum cb_acme_offer got =
            cb_tls_acme_offer((const unsigned char *)cases[i].ext, cases[i].len);
        if (got != cases[i].want)
            fail_msg("case %zu: got %d, want %d", i, got, cases[i].want);
    }
    assert_int_equal(cb_tls_acme_offer(NULL, 0), CB_ACME_OFFER_NONE);
}

static void test_alpn_choose_table(void **unused)
{
    static const struct {
        bool challenge, h2;
        const char *in; /* the client's list, without its 2-byte length; NULL: no ALPN */
        size_t len;
        enum cb_alpn_result want;
        const char *proto; /* when SELECTED */
    } cases[] = {
        /* A validation: acme-tls/1 when offered alone, else refused. */
        {true, true,
         "\x0a"
         "acme-tls/1",
         11, CB_ALPN_SELECTED, "acme-tls/1"},
        {true, false,
         "\x0a"
         "acme-tls/1",
         11, CB_ALPN_SELECTED, "acme-tls/1"},
        {true, true,
         "\x02h2\x0a"
         "acme-tls/1",
         14, CB_ALPN_FATAL, NULL},
        {true, true, "\x02h2", 3, CB_ALPN_FATAL, NULL},
        {true, true, NULL, 0, CB_ALPN_FATAL, NULL},
        /* Everyone else: h2 (when the binding may), then http/1.1; never acme-tls/1. */
        {false, true,
         "\x0a"
         "acme-tls/1",
         11, CB_ALPN_NONE, NULL},
        {false, false,
         "\x0a"
         "acme-tls/1",
         11, CB_ALPN_NONE, NULL},
        {false, true,
         "\x0a"
         "acme-tls/1\x02h2",
         14, CB_ALPN_SELECTED, "h2"},
        {false, true, "\x08http/1.1\x02h2", 12, CB_ALPN_SELECTED, "h2"}, /* server's order */
        {false, false, "\x02h2\x08http/1.1", 12, CB_ALPN_SELECTED, "http/1.1"},
        {false, false,
         "\x0a"
         "acme-tls/1\x08http/1.1",
         20, CB_ALPN_SELECTED, "http/1.1"},
        {false, false, "\x02h2", 3, CB_ALPN_NONE, NULL},
        {false, true, NULL, 0, CB_ALPN_NONE, NULL},
        {false, true, "\x05", 1, CB_ALPN_NONE, NULL}, /* malformed */
    };
    (void)unused;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const unsigned char *out = NULL;
        unsigned char out_len = 0;
        enum cb_alpn_result got =
            cb_tls_alpn_choose(cases[i].challenge, cases[i].h2, (const unsigned char *)cases[i].in,
                               cases[i].len, &out, &out_len);
        if (got != cases[i].want)
            fail_msg("case %zu: got %d, want %d", i, got, cases[i].want);
        if (got == CB_ALPN_SELECTED) {
            /* Points into the client's list, as OpenSSL requires. */
            assert_true(out > (const unsigned char *)cases[i].in &&
                        out + out_len <= (const unsigned char *)cases[i].in + cases[i].len);
            assert_int_equal(out_len, strlen(cases[i].proto));
            assert_memory_equal(out, cases[i].proto, out_len);
        }
    }
}

/* ---- the parsed set --------------------------------------------------------------- */

static void test_set_parse_and_find(void **unused)
{
    int64_t now = (int64_t)time(NULL);
    struct cb_challenge v[] = {
        {.name = "f.example.com",
         .cert_pem = "junk -----BEGIN x",
         .key_pem = "junk",
         .expires = now + 60},
        {.name = "a.example.com", .cert_pem = good_cert, .key_pem = good_key, .expires = now + 60},
        {.name = "c.example.com", .cert_pem = good_cert, .key_pem = other_key, .expires = now + 60},
        {.name = "d.example.com",
         .cert_pem = plain_cert,
         .key_pem = other_key,
         .expires = now + 60},
        {.name = "e.example.com",
         .cert_pem = wrong_name_cert,
         .key_pem = wn_key,
         .expires = now + 60},
        {.name = "g.example.com", .cert_pem = good_cert, .key_pem = good_key, .expires = now - 1},
        {.name = "h.example.com", .cert_pem = noncrit_cert, .key_pem = nc_key, .expires = now + 60},
    };
    struct cb_tls_challenges *s = NULL;
    struct cb_err err = {0};
    (void)unused;

    assert_int_equal(cb_tls_challenges_new(v, sizeof(v) / sizeof(v[0]), &s, &err), 0);
    assert_int_equal(cb_tls_challenges_count(s), sizeof(v) / sizeof(v[0]));
    /* Sorted by name, whatever the order given. */
    for (size_t i = 1; i < cb_tls_challenges_count(s); i++)
        assert_true(strcmp(cb_tls_challenge_name(cb_tls_challenges_at(s, i - 1)),
                           cb_tls_challenge_name(cb_tls_challenges_at(s, i))) < 0);
    const struct cb_tls_challenge *a = cb_tls_challenges_find(s, "a.example.com", now);
    assert_non_null(a);
    assert_null(cb_tls_challenge_error(a));
    assert_null(cb_tls_challenges_find(s, "b.example.com", now));      /* none */
    assert_null(cb_tls_challenges_find(s, "a.example.com", now + 60)); /* expired by then */
    assert_null(cb_tls_challenges_find(s, "g.example.com", now));      /* expired already */
    assert_null(cb_tls_challenges_find(s, NULL, now));
    static const struct {
        const char *name, *why;
    } broken[] = {
        {"f.example.com", "not a PEM certificate"}, {"c.example.com", "does not match"},
        {"d.example.com", "acmeIdentifier"},        {"e.example.com", "does not name"},
        {"h.example.com", "acmeIdentifier"}, /* present but not critical */
    };
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        const struct cb_tls_challenge *c = cb_tls_challenges_find(s, broken[i].name, now);
        assert_non_null(c);
        const char *why = cb_tls_challenge_error(c);
        if (why == NULL || strstr(why, broken[i].why) == NULL)
            fail_msg("%s: %s, want %s", broken[i].name, why ? why : "(served)", broken[i].why);
    }
    /* References: the set lives until its last one is dropped. */
    assert_ptr_equal(cb_tls_challenges_ref(s), s);
    cb_tls_challenges_unref(s);
    assert_non_null(cb_tls_challenges_find(s, "a.example.com", now));
    cb_tls_challenges_unref(s);
    cb_tls_challenges_unref(NULL);
    assert_null(cb_tls_challenges_find(NULL, "a.example.com", now));
    assert_int_equal(cb_tls_challenges_count(NULL), 0);
}

static void test_empty_set(void **unused)
{
    struct cb_tls_challenges *s = NULL;
    struct cb_err err = {0};
    (void)unused;
    assert_int_equal(cb_tls_challenges_new(NULL, 0, &s, &err), 0);
    assert_int_equal(cb_tls_challenges_count(s), 0);
    assert_null(cb_tls_challenges_find(s, "a.example.com", (int64_t)time(NULL)));
    cb_tls_challenges_unref(s);
}

#define T(fn) cmocka_unit_test_setup(fn, setup_test)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_put_load_replace_delete),     T(test_expired_skipped),  T(test_refusals),
        T(test_change_log_marks_challenges), T(test_acme_offer_table), T(test_alpn_choose_table),
        T(test_set_parse_and_find),          T(test_empty_set),
    };
    return cmocka_run_group_tests(tests, setup_run, teardown_run);
}
