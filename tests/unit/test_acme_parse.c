/*
 * test_acme_parse.c: the parsers of CA answers (acme/parse.h), table-driven: real
 * Pebble and Let's Encrypt shapes accepted, every malformed member refused with
 * CB_EBADFILE and a message, unknown members and challenge types ignored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/parse.h"

#define DIR_OK                                                                                     \
    "\"newNonce\":\"https://ca.test/n\",\"newAccount\":\"https://ca.test/a\","                     \
    "\"newOrder\":\"https://ca.test/o\""

static void test_directory_accepts_pebble_and_letsencrypt(void **state)
{
    (void)state;
    static const char pebble[] =
        "{\"keyChange\":\"https://127.0.0.1:14000/rollover-account-key\",\"meta\":{"
        "\"externalAccountRequired\":false,\"termsOfService\":\"data:text/plain,Do%20what%20thou%"
        "20wilt\"},\"newAccount\":\"https://127.0.0.1:14000/sign-me-up\",\"newNonce\":\"https://"
        "127.0.0.1:14000/nonce-plz\",\"newOrder\":\"https://127.0.0.1:14000/order-plz\","
        "\"revokeCert\":\"https://127.0.0.1:14000/revoke-cert\"}";
    static const char le[] =
        "{\"5Z3Di4SfKhE\":\"https://community.letsencrypt.org/t/x/33417\",\"meta\":{"
        "\"caaIdentities\":[\"letsencrypt.org\"],\"termsOfService\":\"https://letsencrypt.org/"
        "tos.pdf\",\"externalAccountRequired\":true},\"newAccount\":\"https://acme/new-acct\","
        "\"newNonce\":\"https://acme/new-nonce\",\"newOrder\":\"https://acme/new-order\","
        "\"renewalInfo\":\"https://acme/renewalInfo\"}";
    struct cb_acme_directory d;

    assert_int_equal(cb_acme_parse_directory(pebble, strlen(pebble), &d, NULL), 0);
    assert_string_equal(d.new_nonce, "https://127.0.0.1:14000/nonce-plz");
    assert_string_equal(d.terms_of_service, "data:text/plain,Do%20what%20thou%20wilt");
    assert_string_equal(d.renewal_info, "");
    assert_false(d.eab_required);
    assert_int_equal(cb_acme_parse_directory(le, strlen(le), &d, NULL), 0);
    assert_string_equal(d.renewal_info, "https://acme/renewalInfo");
    assert_true(d.eab_required);
}

static void test_directory_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "[]",
        "not json",
        "{}",
        "{\"newNonce\":\"https://ca.test/n\",\"newAccount\":\"https://ca.test/a\"}",
        "{\"newNonce\":\"http://ca.test/n\",\"newAccount\":\"https://ca.test/a\","
        "\"newOrder\":\"https://ca.test/o\"}",
        "{\"newNonce\":\"\",\"newAccount\":\"https://ca.test/a\",\"newOrder\":\"https://x/o\"}",
        "{\"newNonce\":\"https://\",\"newAccount\":\"https://ca.test/a\","
        "\"newOrder\":\"https://x/o\"}",
        "{\"newNonce\":\"https://ca.test/a b\",\"newAccount\":\"https://ca.test/a\","
        "\"newOrder\":\"https://x/o\"}",
        "{" DIR_OK ",\"renewalInfo\":\"ftp://x\"}",
        "{" DIR_OK ",\"meta\":[]}",
        "{" DIR_OK ",\"meta\":{\"externalAccountRequired\":1}}",
        "{" DIR_OK ",\"meta\":{\"termsOfService\":\"a\\u0001b\"}}",
        "{" DIR_OK ",\"newOrder\":\"https://dup/o\"}",
        "{\"newNonce\":\"https://ca.test/\\u0000\",\"newAccount\":\"https://ca.test/a\","
        "\"newOrder\":\"https://x/o\"}",
    };
    struct cb_acme_directory d;
    struct cb_err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.msg[0] = '\0';
        int rc = cb_acme_parse_directory(bad[i], strlen(bad[i]), &d, &err);
        if (rc != CB_EBADFILE)
            print_error("accepted: %s\n", bad[i]);
        assert_int_equal(rc, CB_EBADFILE);
        assert_true(err.msg[0] != '\0');
    }
    /* a URL of 511 bytes fits, 512 does not */
    char big[1200], url[600];
    memset(url, 'a', sizeof(url));
    memcpy(url, "https://", 8);
    url[511] = '\0';
    snprintf(big, sizeof(big), "{" DIR_OK ",\"renewalInfo\":\"%s\"}", url);
    assert_int_equal(cb_acme_parse_directory(big, strlen(big), &d, NULL), 0);
    url[511] = 'a';
    url[512] = '\0';
    snprintf(big, sizeof(big), "{" DIR_OK ",\"renewalInfo\":\"%s\"}", url);
    assert_int_equal(cb_acme_parse_directory(big, strlen(big), &d, NULL), CB_EBADFILE);
}

static void test_order_parses_and_refuses(void **state)
{
    (void)state;
    static const char ok[] =
        "{\"status\":\"invalid\",\"expires\":\"2026-12-07T17:17:10Z\",\"identifiers\":[{\"type\":"
        "\"dns\",\"value\":\"x.test\"}],\"finalize\":\"https://ca/f/1\",\"authorizations\":["
        "\"https://ca/authz/1\",\"https://ca/authz/2\"],\"error\":{\"type\":\"urn:ietf:params:acme:"
        "error:unauthorized\",\"detail\":\"authorization expired\",\"status\":403},\"x\":{}}";
    static const char *const bad[] = {
        "{\"status\":\"weird\",\"finalize\":\"https://ca/f\",\"authorizations\":[]}",
        "{\"status\":\"ready\",\"authorizations\":[]}",
        "{\"status\":\"ready\",\"finalize\":\"https://ca/f\"}",
        "{\"status\":\"ready\",\"finalize\":\"https://ca/f\",\"authorizations\":[\"http://a\"]}",
        "{\"status\":\"ready\",\"finalize\":\"https://ca/f\",\"authorizations\":[3]}",
        "{\"status\":\"ready\",\"finalize\":\"https://ca/f\",\"authorizations\":[],"
        "\"expires\":\"tomorrow\"}",
        "{\"status\":\"valid\",\"finalize\":\"https://ca/f\",\"authorizations\":[],"
        "\"certificate\":\"http://ca/c\"}",
        "{\"status\":\"ready\",\"finalize\":\"https://ca/f\",\"authorizations\":[],\"error\":1}",
    };
    struct cb_acme_order *o = malloc(sizeof(*o));
    struct cb_err err;

    assert_int_equal(cb_acme_parse_order(ok, strlen(ok), o, NULL), 0);
    assert_string_equal(o->status, "invalid");
    assert_int_equal(o->n_authz, 2);
    assert_string_equal(o->authz[1], "https://ca/authz/2");
    assert_int_equal(o->expires, 1796663830);
    assert_true(o->has_error);
    assert_int_equal(o->error.status, 403);
    assert_string_equal(o->error.detail, "authorization expired");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.msg[0] = '\0';
        assert_int_equal(cb_acme_parse_order(bad[i], strlen(bad[i]), o, &err), CB_EBADFILE);
        assert_true(err.msg[0] != '\0');
    }
    /* more than CB_ACME_MAX_NAMES authorizations */
    size_t cap = 200 * 24 + 200;
    char *many = malloc(cap);
    size_t n = (size_t)snprintf(many, cap,
                                "{\"status\":\"pending\",\"finalize\":\"https://ca/f\","
                                "\"authorizations\":[");
    for (int i = 0; i <= CB_ACME_MAX_NAMES; i++)
        n += (size_t)snprintf(many + n, cap - n, "%s\"https://ca/a/%d\"", i ? "," : "", i);
    snprintf(many + n, cap - n, "]}");
    assert_int_equal(cb_acme_parse_order(many, strlen(many), o, NULL), CB_EBADFILE);
    free(many);
    free(o);
}

#define TOKEN "Ho6lgrz8KPt2chNLQSDhNxFQwldPEI240393-I3NhkU"

static void test_authz_parses_challenges_and_error(void **state)
{
    (void)state;
    static const char ok[] =
        "{\"status\":\"invalid\",\"identifier\":{\"type\":\"dns\",\"value\":\"x.test\"},"
        "\"wildcard\":true,\"challenges\":["
        "{\"type\":\"new-thing-07\",\"url\":\"nope\"},"
        "{\"type\":\"\",\"url\":\"https://ca/c/0\",\"token\":\"" TOKEN "\","
        "\"status\":\"pending\"},"
        "{\"type\":\"dns-01\",\"url\":\"https://ca/c/1\",\"token\":\"" TOKEN "\","
        "\"status\":\"invalid\",\"error\":{\"type\":\"urn:ietf:params:acme:error:unauthorized\","
        "\"detail\":\"No TXT\\nrecords\",\"status\":403}},"
        "{\"type\":\"tls-alpn-01\",\"url\":\"https://ca/c/2\",\"token\":\"" TOKEN "\","
        "\"status\":\"pending\"}]}";
    struct cb_acme_authz a;

    assert_int_equal(cb_acme_parse_authz(ok, strlen(ok), &a, NULL), 0);
    assert_string_equal(a.identifier, "x.test");
    assert_true(a.wildcard);
    assert_int_equal(a.n_challenges, 2); /* the unknown and the typeless one skipped */
    assert_string_equal(a.challenges[0].type, "dns-01");
    assert_string_equal(a.challenges[0].token, TOKEN);
    assert_true(a.has_error);
    assert_string_equal(a.error.detail, "No TXT?records"); /* control characters replaced */
}

static void test_authz_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"status\":\"pending\",\"challenges\":[]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"ip\",\"value\":\"1.2.3.4\"},"
        "\"challenges\":[]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"x\"}}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"x\"},"
        "\"wildcard\":\"yes\",\"challenges\":[]}",
        /* tokens: too short, not base64url */
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"x\"},"
        "\"challenges\":[{\"type\":\"dns-01\",\"url\":\"https://c\",\"status\":\"pending\","
        "\"token\":\"short\"}]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"x\"},"
        "\"challenges\":[{\"type\":\"tls-alpn-01\",\"url\":\"https://c\",\"status\":\"pending\","
        "\"token\":\"../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaa\"}]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"x\"},"
        "\"challenges\":[{\"type\":\"tls-alpn-01\",\"url\":\"https://c\",\"status\":\"pending\"}]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"x\"},"
        "\"challenges\":[{\"type\":\"dns-01\",\"url\":\"http://c\",\"status\":\"pending\","
        "\"token\":\"" TOKEN "\"}]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"x\"},"
        "\"challenges\":[7]}",
    };
    struct cb_acme_authz a;
    struct cb_err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.msg[0] = '\0';
        int rc = cb_acme_parse_authz(bad[i], strlen(bad[i]), &a, &err);
        if (rc != CB_EBADFILE)
            print_error("accepted: %s\n", bad[i]);
        assert_int_equal(rc, CB_EBADFILE);
        assert_true(err.msg[0] != '\0');
    }
}

static void test_problem_summarises_subproblems(void **state)
{
    (void)state;
    static const char doc[] =
        "{\"type\":\"urn:ietf:params:acme:error:malformed\",\"detail\":\"Some identifiers were "
        "rejected\",\"subproblems\":[{\"type\":\"urn:ietf:params:acme:error:malformed\",\"detail\":"
        "\"Invalid underscore\",\"identifier\":{\"type\":\"dns\",\"value\":\"_example.org\"}},"
        "{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\",\"identifier\":{\"type\":"
        "\"dns\",\"value\":\"example.net\"}}]}";
    struct cb_acme_problem p;

    assert_int_equal(cb_acme_parse_problem(doc, strlen(doc), &p, NULL), 0);
    assert_string_equal(p.type, "urn:ietf:params:acme:error:malformed");
    assert_string_equal(p.detail, "Some identifiers were rejected; _example.org: Invalid "
                                  "underscore; example.net: rejectedIdentifier");
    assert_int_equal(p.status, 0);
    assert_int_equal(cb_acme_parse_problem("{\"type\":5}", 10, &p, NULL), CB_EBADFILE);
    assert_int_equal(cb_acme_parse_problem("\"x\"", 3, &p, NULL), CB_EBADFILE);
}

static void test_times_and_renewal_windows(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t want; /* -1: refused */
    } vec[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2030-01-02T03:04:05Z", 1893553445},
        {"2030-01-02T03:04:05.123456Z", 1893553445},
        {"2030-01-02T04:04:05+01:00", 1893553445},
        {"2030-01-02t03:04:05z", 1893553445},
        {"2024-02-29T00:00:00Z", 1709164800},
        {"2023-02-29T00:00:00Z", -1},
        {"2030-13-02T03:04:05Z", -1},
        {"2030-01-02 03:04:05Z", -1},
        {"2030-01-02T03:04:05", -1},
        {"2030-01-02T03:04:05.Z", -1},
        {"1969-12-31T23:59:59Z", -1},
        {"2030-01-02T03:04:05Zjunk", -1},
    };
    struct cb_acme_renewal w;
    int64_t t;

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        int rc = cb_acme_parse_time(vec[i].in, &t);
        if (vec[i].want < 0) {
            assert_int_equal(rc, CB_EINVAL);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(t, vec[i].want);
        }
    }
    static const char ok[] = "{\"suggestedWindow\":{\"start\":\"2030-01-02T03:04:05Z\",\"end\":"
                             "\"2030-01-03T03:04:05Z\"},\"explanationURL\":\"https://x\"}";
    static const char backwards[] = "{\"suggestedWindow\":{\"start\":\"2030-01-03T03:04:05Z\","
                                    "\"end\":\"2030-01-02T03:04:05Z\"}}";
    assert_int_equal(cb_acme_parse_renewal_info(ok, strlen(ok), &w, NULL), 0);
    assert_int_equal(w.end - w.start, 86400);
    assert_int_equal(cb_acme_parse_renewal_info(backwards, strlen(backwards), &w, NULL),
                     CB_EBADFILE);
    assert_int_equal(cb_acme_parse_renewal_info("{}", 2, &w, NULL), CB_EBADFILE);
}

static void test_url_and_token_rules(void **state)
{
    (void)state;
    assert_true(cb_acme_https_url("https://ca.test/x"));
    assert_false(cb_acme_https_url("http://ca.test/x"));
    assert_false(cb_acme_https_url("HTTPS://ca.test/x"));
    assert_false(cb_acme_https_url("https:///x"));
    assert_false(cb_acme_https_url("https://"));
    assert_false(cb_acme_https_url("https://ca.test/\x7f"));
    assert_false(cb_acme_https_url(NULL));
    assert_true(cb_acme_token_ok("abcdefghijklmnopqrstuv"));
    assert_false(cb_acme_token_ok("abcdefghijklmnopqrstu"));
    assert_false(cb_acme_token_ok("abcdefghijklmnopqrstu="));
    assert_false(cb_acme_token_ok("abcdefghijklmnopqrst/u"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directory_accepts_pebble_and_letsencrypt),
        cmocka_unit_test(test_directory_refusals),
        cmocka_unit_test(test_order_parses_and_refuses),
        cmocka_unit_test(test_authz_parses_challenges_and_error),
        cmocka_unit_test(test_authz_refusals),
        cmocka_unit_test(test_problem_summarises_subproblems),
        cmocka_unit_test(test_times_and_renewal_windows),
        cmocka_unit_test(test_url_and_token_rules),
    };
    return cmocka_run_group_tests_name("acme_parse", tests, NULL, NULL);
}
