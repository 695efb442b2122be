/*
 * test_options.c: per-binding options (cb_binding_set_option), update merging
 * (cb_binding_merge) and whole-binding checks (cb_binding_validate).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "binding/binding.h"

#define THUMB "0123456789ABCDEF0123456789ABCDEF01234567"
#define THUMB2 "89ABCDEF0123456789ABCDEF0123456789ABCDEF"

static const struct {
    const char *name;
    uint32_t bit;
} toggles[] = {
    {"disablehttp2", CB_OPT_DISABLEHTTP2},
    {"disabletls12", CB_OPT_DISABLETLS12},
    {"disabletls13", CB_OPT_DISABLETLS13},
    {"disablelegacytls", CB_OPT_DISABLELEGACYTLS},
    {"clientcertnegotiation", CB_OPT_CLIENTCERTNEGOTIATION},
    {"enablesessionticket", CB_OPT_ENABLESESSIONTICKET},
    {"disableocspstapling", CB_OPT_DISABLEOCSPSTAPLING},
    {"reject", CB_OPT_REJECT},
};
#define N_TOGGLES (sizeof(toggles) / sizeof(toggles[0]))

/* Sets one option and fails the test with the message when it is refused. */
static void set_ok(struct cb_binding *b, const char *name, const char *value, unsigned *fields)
{
    struct cb_err err = {0};
    int rc = cb_binding_set_option(b, name, value, fields, &err);
    if (rc != 0)
        fail_msg("%s=%s refused (%d): %s", name, value, rc, err.msg);
}

/* Sets one option that must be refused with CB_EINVAL and a message containing hint. */
static void set_bad(const char *name, const char *value, const char *hint)
{
    struct cb_binding b;
    struct cb_err err = {0};
    unsigned fields = 0;

    cb_binding_init(&b);
    int rc = cb_binding_set_option(&b, name, value, &fields, &err);
    if (rc != CB_EINVAL)
        fail_msg("%s=%s: returned %d, want CB_EINVAL", name, value, rc);
    if (err.code != CB_EINVAL || err.msg[0] == '\0')
        fail_msg("%s=%s: err not filled (code %d)", name, value, err.code);
    if (hint != NULL && strstr(err.msg, hint) == NULL)
        fail_msg("%s=%s: message '%s' does not mention '%s'", name, value, err.msg, hint);
    if (cb_binding_set_option(&b, name, value, &fields, NULL) != CB_EINVAL)
        fail_msg("%s=%s: accepted with a NULL err", name, value);
}

static void test_init_sets_defaults(void **state)
{
    (void)state;
    struct cb_binding b;

    memset(&b, 0x5a, sizeof(b));
    cb_binding_init(&b);
    assert_int_equal(b.flags, 0);
    assert_int_equal(b.flags_set, 0);
    assert_int_equal(b.proxy, CB_PROXY_OFF);
    assert_string_equal(b.certhash, "");
    assert_string_equal(b.appid, "");
    assert_string_equal(b.backend, "");
    assert_string_equal(b.ccspath, "");
}

static void test_each_toggle_enables_and_disables_its_bit(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TOGGLES; i++) {
        struct cb_binding b;
        unsigned fields = 0;

        cb_binding_init(&b);
        set_ok(&b, toggles[i].name, "enable", &fields);
        if (b.flags != toggles[i].bit || b.flags_set != toggles[i].bit || fields != CB_F_FLAGS)
            fail_msg("%s=enable: flags %#x set %#x fields %#x", toggles[i].name, b.flags,
                     b.flags_set, fields);
        set_ok(&b, toggles[i].name, "disable", &fields);
        if (b.flags != 0 || b.flags_set != toggles[i].bit || fields != CB_F_FLAGS)
            fail_msg("%s=disable: flags %#x set %#x fields %#x", toggles[i].name, b.flags,
                     b.flags_set, fields);
        assert_string_equal(cb_opt_flag_name(toggles[i].bit), toggles[i].name);
    }
    assert_string_equal(cb_opt_flag_name(1u << 20), "?");
    assert_string_equal(cb_opt_flag_name(0), "?");
}

static void test_toggles_leave_other_bits_alone(void **state)
{
    (void)state;
    struct cb_binding b;
    unsigned fields = 0;

    cb_binding_init(&b);
    for (size_t i = 0; i < N_TOGGLES; i++)
        set_ok(&b, toggles[i].name, "enable", &fields);
    assert_int_equal(b.flags, 0xff);
    set_ok(&b, "disabletls12", "disable", &fields);
    set_ok(&b, "reject", "disable", &fields);
    assert_int_equal(b.flags, 0xff & ~(CB_OPT_DISABLETLS12 | CB_OPT_REJECT));
    assert_int_equal(b.flags_set, 0xff);
}

static void test_toggles_refuse_values_other_than_enable_or_disable(void **state)
{
    (void)state;
    static const char *const bad[] = {"",        "yes",     "no",   "on",      "off",
                                      "1",       "0",       "true", "enabled", "disabled",
                                      " enable", "enable ", "enab"};
    for (size_t i = 0; i < N_TOGGLES; i++)
        for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++)
            set_bad(toggles[i].name, bad[j], toggles[i].name);
}

static void test_proxyprotocol_takes_off_v1_v2(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        enum cb_proxy_proto want;
    } good[] = {{"v1", CB_PROXY_V1}, {"v2", CB_PROXY_V2}, {"off", CB_PROXY_OFF}};
    struct cb_binding b;
    unsigned fields = 0;

    cb_binding_init(&b);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        set_ok(&b, "proxyprotocol", good[i].value, &fields);
        assert_int_equal(b.proxy, good[i].want);
        assert_int_equal(fields, CB_F_PROXY);
        assert_string_equal(cb_proxy_name(b.proxy), good[i].value);
    }
    static const char *const bad[] = {"", "v3", "v0", "on", "none", "1", "2", "v1 ", "proxy"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        set_bad("proxyprotocol", bad[i], "off, v1 or v2");
}

static void test_appid_accepts_guids_with_or_without_braces(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *want;
    } good[] = {
        {"{00112233-4455-6677-8899-aabbccddeeff}", "{00112233-4455-6677-8899-aabbccddeeff}"},
        {"{00112233-4455-6677-8899-AABBCCDDEEFF}", "{00112233-4455-6677-8899-aabbccddeeff}"},
        {"00112233-4455-6677-8899-aabbccddeeff", "{00112233-4455-6677-8899-aabbccddeeff}"},
        {"4dc3e181-e14b-4a21-b022-59fc669b0914", "{4dc3e181-e14b-4a21-b022-59fc669b0914}"},
        {"{4DC3E181-E14B-4A21-b022-59fc669b0914}", "{4dc3e181-e14b-4a21-b022-59fc669b0914}"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct cb_binding b;
        unsigned fields = 0;
        cb_binding_init(&b);
        set_ok(&b, "appid", good[i].in, &fields);
        assert_string_equal(b.appid, good[i].want);
        assert_int_equal(strlen(b.appid), CB_APPID_LEN);
        assert_int_equal(fields, CB_F_APPID);
    }
}

static void test_appid_refuses_malformed_guids(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "{}",
        "{",
        "}",
        "{00112233-4455-6677-8899-aabbccddeeff",    /* no closing brace */
        "00112233-4455-6677-8899-aabbccddeeff}",    /* no opening brace */
        "{{00112233-4455-6677-8899-aabbccddeeff}}", /* doubled braces */
        "(00112233-4455-6677-8899-aabbccddeeff)",   /* wrong brackets */
        "00112233-4455-6677-8899-aabbccddeef",      /* one digit short */
        "00112233-4455-6677-8899-aabbccddeeff0",    /* one digit long */
        "{00112233-4455-6677-8899-aabbccddeeff}x",  /* trailing text */
        "0011223-34455-6677-8899-aabbccddeeff",     /* dash misplaced */
        "001122334455-6677-8899-aabbccddeeff",      /* dash missing */
        "00112233-4455-6677-8899-aabbccddeefg",     /* not hex */
        "00112233_4455_6677_8899_aabbccddeeff",     /* underscores */
        "00112233445566778899aabbccddeeff",         /* no dashes */
        " 00112233-4455-6677-8899-aabbccddeeff",    /* leading space */
        "myapp",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        set_bad("appid", bad[i], "GUID");
}

static void test_backend_canonicalises_host_and_port(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *want;
    } good[] = {
        {"127.0.0.1:8080", "127.0.0.1:8080"},
        {"203.0.113.9:1", "203.0.113.9:1"},
        {"10.0.0.1:65535", "10.0.0.1:65535"},
        {"[::1]:8080", "[::1]:8080"},
        {"[2001:DB8:0::9]:80", "[2001:db8::9]:80"},
        {"[::ffff:127.0.0.1]:8080", "127.0.0.1:8080"},
        {"[::FFFF:7f00:1]:8080", "127.0.0.1:8080"},
        {"localhost:8080", "localhost:8080"},
        {"Backend.Example.COM:8080", "backend.example.com:8080"},
        {"backend.example.com.:8080", "backend.example.com:8080"},
        {"app-1.internal:3000", "app-1.internal:3000"},
        {"b\xc3\xbc"
         "cher.example:80",
         "xn--bcher-kva.example:80"},
        {"127.0.0.1:08080", "127.0.0.1:8080"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct cb_binding b;
        unsigned fields = 0;
        cb_binding_init(&b);
        set_ok(&b, "backend", good[i].in, &fields);
        if (strcmp(b.backend, good[i].want) != 0)
            fail_msg("backend=%s became '%s', want '%s'", good[i].in, b.backend, good[i].want);
        assert_int_equal(fields, CB_F_BACKEND);
        /* The canonical form is accepted again unchanged (it is what the store keeps). */
        char again[CB_BACKEND_MAX + 1];
        snprintf(again, sizeof(again), "%s", b.backend);
        set_ok(&b, "backend", again, &fields);
        assert_string_equal(b.backend, again);
    }
}

static void test_backend_empty_or_none_clears_it(void **state)
{
    (void)state;
    struct cb_binding b;
    unsigned fields = 0;

    cb_binding_init(&b);
    set_ok(&b, "backend", "127.0.0.1:8080", &fields);
    set_ok(&b, "backend", "none", &fields);
    assert_string_equal(b.backend, "");
    assert_int_equal(fields, CB_F_BACKEND);
    set_ok(&b, "backend", "127.0.0.1:8080", &fields);
    set_ok(&b, "backend", "", &fields);
    assert_string_equal(b.backend, "");
}

static void test_backend_refuses_bad_addresses_and_ports(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *hint;
    } bad[] = {
        /* wildcard addresses cannot be connected to */
        {"0.0.0.0:8080", "wildcard"},
        {"[::]:8080", "wildcard"},
        {"[::ffff:0.0.0.0]:8080", "wildcard"},
        /* ports */
        {"127.0.0.1:0", "1 to 65535"},
        {"127.0.0.1:65536", "1 to 65535"},
        {"127.0.0.1:", "1 to 65535"},
        {"127.0.0.1:+80", "1 to 65535"},
        {"127.0.0.1: 80", "1 to 65535"},
        {"127.0.0.1", "HOST:PORT"},
        {"localhost", "HOST:PORT"},
        {"localhost:http", "1 to 65535"},
        {"[::1]:0", "1 to 65535"},
        {"[::1]", "HOST:PORT"},
        {"[::1]8080", NULL},
        /* addresses */
        {"::1:8080", "brackets"},
        {"[127.0.0.1]:8080", "IPv4"},
        {"[::1:8080", NULL},
        {"[]:8080", NULL},
        {"[::g]:8080", NULL},
        /* malformed IPv4 must not pass as a host name */
        {"203.0.113:8080", NULL},
        {"256.0.0.1:8080", NULL},
        {"1.2.3.4.5:8080", NULL},
        {"0x7f.0.0.1:8080", NULL},
        {"0x7f.1:8080", NULL},
        {"2130706433:8080", NULL},
        /* host names */
        {":8080", NULL},
        {"-backend.example:8080", "'-'"},
        {"back end.example:8080", NULL},
        {"*.example.com:8080", "'*'"},
        {"backend..example:8080", "empty label"},
        {"user@backend:8080", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        set_bad("backend", bad[i].in, bad[i].hint);
}

static void test_certhash_option_normalises_or_refuses(void **state)
{
    (void)state;
    struct cb_binding b;
    unsigned fields = 0;

    cb_binding_init(&b);
    set_ok(&b, "certhash", "01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67", &fields);
    assert_string_equal(b.certhash, THUMB);
    assert_int_equal(fields, CB_F_CERTHASH);
    set_bad("certhash", "0123", "thumbprint");
    set_bad("certhash", "", "thumbprint");
    set_bad("certhash", THUMB "0", "thumbprint");
    set_bad("certhash", "0123456789ABCDEF0123456789ABCDEF0123456X", "thumbprint");
}

static void test_ccspath_takes_absolute_folders(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *want;
    } good[] = {
        {"/srv/ccs", "/srv/ccs"},
        {"/srv/ccs/", "/srv/ccs"},
        {"/srv/ccs///", "/srv/ccs"},
        {"/", "/"},
        {"//", "/"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct cb_binding b;
        unsigned fields = 0;
        cb_binding_init(&b);
        set_ok(&b, "ccspath", good[i].in, &fields);
        assert_string_equal(b.ccspath, good[i].want);
        assert_int_equal(fields, CB_F_CCSPATH);
    }

    char longest[CB_PATH_MAX + 2];
    memset(longest, 'a', sizeof(longest));
    longest[0] = '/';
    longest[CB_PATH_MAX] = '\0';
    struct cb_binding b;
    unsigned fields = 0;
    cb_binding_init(&b);
    set_ok(&b, "ccspath", longest, &fields);
    assert_int_equal(strlen(b.ccspath), CB_PATH_MAX);
    longest[CB_PATH_MAX] = 'a';
    longest[CB_PATH_MAX + 1] = '\0';
    set_bad("ccspath", longest, "absolute");
    set_bad("ccspath", "", "absolute");
    set_bad("ccspath", "srv/ccs", "absolute");
    set_bad("ccspath", "./ccs", "absolute");
    set_bad("ccspath", "~/ccs", "absolute");
}

static void test_clientca_takes_an_absolute_file_or_none(void **state)
{
    (void)state;
    struct cb_binding b;
    unsigned fields = 0;

    cb_binding_init(&b);
    set_ok(&b, "clientca", "/etc/certbind/clients-ca.pem", &fields);
    assert_string_equal(b.clientca, "/etc/certbind/clients-ca.pem");
    assert_int_equal(fields, CB_F_CLIENTCA);
    set_ok(&b, "clientca", "none", &fields);
    assert_string_equal(b.clientca, "");
    set_ok(&b, "clientca", "/ca.pem", &fields);
    set_ok(&b, "clientca", "", &fields);
    assert_string_equal(b.clientca, "");
    assert_int_equal(fields, CB_F_CLIENTCA);

    char longest[CB_PATH_MAX + 2];
    memset(longest, 'a', sizeof(longest));
    longest[0] = '/';
    longest[CB_PATH_MAX] = '\0';
    set_ok(&b, "clientca", longest, &fields);
    assert_int_equal(strlen(b.clientca), CB_PATH_MAX);
    longest[CB_PATH_MAX] = 'a';
    longest[CB_PATH_MAX + 1] = '\0';
    set_bad("clientca", longest, "absolute path");
    set_bad("clientca", "ca.pem", "absolute path");
    set_bad("clientca", "./ca.pem", "absolute path");
    set_bad("clientca", "~/ca.pem", "absolute path");
    set_bad("clientca", "/etc/ca/", "absolute path");
}

static void test_clientca_merges_only_when_given(void **state)
{
    (void)state;
    struct cb_binding dst, src;
    unsigned fields = 0;

    cb_binding_init(&dst);
    set_ok(&dst, "clientca", "/etc/ca.pem", &fields);
    cb_binding_init(&src);
    fields = 0;
    set_ok(&src, "backend", "127.0.0.1:9000", &fields);
    cb_binding_merge(&dst, &src, fields);
    assert_string_equal(dst.clientca, "/etc/ca.pem");
    fields = 0;
    set_ok(&src, "clientca", "/etc/other.pem", &fields);
    cb_binding_merge(&dst, &src, fields);
    assert_string_equal(dst.clientca, "/etc/other.pem");
    fields = 0;
    set_ok(&src, "clientca", "none", &fields);
    cb_binding_merge(&dst, &src, fields);
    assert_string_equal(dst.clientca, "");
}

static void test_unknown_options_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {"",       "bogus",        "disablehttp",     "disablehttp22",
                                      "ipport", "hostnameport", "sslctlstorename", "certstorename",
                                      "proxy",  "cert"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        set_bad(bad[i], "enable", "unknown option");
}

static void test_options_record_their_fields(void **state)
{
    (void)state;
    struct cb_binding b;
    unsigned fields = 0;

    cb_binding_init(&b);
    set_ok(&b, "certhash", THUMB, &fields);
    set_ok(&b, "appid", "00112233-4455-6677-8899-aabbccddeeff", &fields);
    set_ok(&b, "backend", "127.0.0.1:8080", &fields);
    set_ok(&b, "proxyprotocol", "v2", &fields);
    set_ok(&b, "ccspath", "/srv/ccs", &fields);
    set_ok(&b, "reject", "enable", &fields);
    assert_int_equal(fields, CB_F_CERTHASH | CB_F_APPID | CB_F_BACKEND | CB_F_PROXY | CB_F_CCSPATH |
                                 CB_F_FLAGS);

    /* A refused option does not record its field. */
    unsigned f2 = 0;
    struct cb_err err;
    assert_int_equal(cb_binding_set_option(&b, "backend", "0.0.0.0:1", &f2, &err), CB_EINVAL);
    assert_int_equal(cb_binding_set_option(&b, "reject", "maybe", &f2, &err), CB_EINVAL);
    assert_int_equal(f2, 0);
}

/* A stored binding with every option set, as `update` would find it. */
static void make_stored(struct cb_binding *b)
{
    unsigned fields = 0;

    cb_binding_init(b);
    assert_int_equal(cb_key_parse_word("hostnameport=www.example.com:443", &b->key, NULL), 0);
    set_ok(b, "certhash", THUMB, &fields);
    set_ok(b, "appid", "00112233-4455-6677-8899-aabbccddeeff", &fields);
    set_ok(b, "backend", "127.0.0.1:8080", &fields);
    set_ok(b, "proxyprotocol", "v1", &fields);
    set_ok(b, "disablehttp2", "enable", &fields);
    set_ok(b, "reject", "enable", &fields);
    set_ok(b, "disableocspstapling", "disable", &fields);
    b->flags_set = 0; /* as read back from the store */
}

static void test_merge_changes_only_the_given_fields(void **state)
{
    (void)state;
    struct cb_binding dst, orig, src;
    unsigned fields = 0;

    make_stored(&dst);
    orig = dst;
    cb_binding_init(&src);
    set_ok(&src, "certhash", THUMB2, &fields);
    cb_binding_merge(&dst, &src, fields);
    assert_string_equal(dst.certhash, THUMB2);
    assert_string_equal(dst.appid, orig.appid);
    assert_string_equal(dst.backend, orig.backend);
    assert_int_equal(dst.proxy, orig.proxy);
    assert_int_equal(dst.flags, orig.flags);
    assert_memory_equal(&dst.key, &orig.key, sizeof(dst.key));

    /* fields == 0 changes nothing, even when src differs everywhere. */
    make_stored(&dst);
    orig = dst;
    cb_binding_merge(&dst, &src, 0);
    assert_memory_equal(&dst, &orig, sizeof(dst));

    /* Each field alone. */
    static const struct {
        const char *name, *value;
    } one[] = {
        {"appid", "ffeeddcc-bbaa-9988-7766-554433221100"},
        {"backend", "[::1]:9000"},
        {"backend", "none"},
        {"proxyprotocol", "off"},
    };
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        make_stored(&dst);
        orig = dst;
        cb_binding_init(&src);
        fields = 0;
        set_ok(&src, one[i].name, one[i].value, &fields);
        cb_binding_merge(&dst, &src, fields);
        assert_string_equal(dst.certhash, orig.certhash);
        assert_int_equal(dst.flags, orig.flags);
        if (strcmp(one[i].name, "appid") == 0) {
            assert_string_equal(dst.appid, "{ffeeddcc-bbaa-9988-7766-554433221100}");
            assert_string_equal(dst.backend, orig.backend);
        } else if (strcmp(one[i].name, "backend") == 0) {
            assert_string_equal(dst.backend, src.backend);
            assert_string_equal(dst.appid, orig.appid);
            assert_int_equal(dst.proxy, orig.proxy);
        } else {
            assert_int_equal(dst.proxy, CB_PROXY_OFF);
            assert_string_equal(dst.backend, orig.backend);
        }
    }
}

static void test_merge_copies_only_the_toggles_that_were_given(void **state)
{
    (void)state;
    struct cb_binding dst, src;
    unsigned fields = 0;

    make_stored(&dst);
    assert_int_equal(dst.flags, CB_OPT_DISABLEHTTP2 | CB_OPT_REJECT);
    cb_binding_init(&src);
    set_ok(&src, "disablehttp2", "disable", &fields);
    set_ok(&src, "enablesessionticket", "enable", &fields);
    cb_binding_merge(&dst, &src, fields);
    /* disablehttp2 turned off, enablesessionticket turned on, reject untouched. */
    assert_int_equal(dst.flags, CB_OPT_REJECT | CB_OPT_ENABLESESSIONTICKET);

    /* A toggle set to its current value changes nothing. */
    make_stored(&dst);
    cb_binding_init(&src);
    fields = 0;
    set_ok(&src, "reject", "enable", &fields);
    cb_binding_merge(&dst, &src, fields);
    assert_int_equal(dst.flags, CB_OPT_DISABLEHTTP2 | CB_OPT_REJECT);

    /* Without CB_F_FLAGS in fields, the toggles are not copied. */
    make_stored(&dst);
    cb_binding_merge(&dst, &src, CB_F_CERTHASH);
    assert_int_equal(dst.flags, CB_OPT_DISABLEHTTP2 | CB_OPT_REJECT);
}

static void make_valid(struct cb_binding *b, const char *key)
{
    unsigned fields = 0;

    cb_binding_init(b);
    assert_int_equal(cb_key_parse_word(key, &b->key, NULL), 0);
    if (b->key.kind == CB_KEY_CCS)
        set_ok(b, "ccspath", "/srv/ccs", &fields);
    else
        set_ok(b, "certhash", THUMB, &fields);
}

static void validate_bad(const struct cb_binding *b, const char *hint)
{
    struct cb_err err = {0};
    int rc = cb_binding_validate(b, &err);
    if (rc != CB_EINVAL)
        fail_msg("validate returned %d, want CB_EINVAL", rc);
    if (err.code != CB_EINVAL || err.msg[0] == '\0' || strstr(err.msg, hint) == NULL)
        fail_msg("validate message '%s' does not mention '%s'", err.msg, hint);
}

static void test_validate_requires_certhash_except_for_ccs(void **state)
{
    (void)state;
    static const char *const keys[] = {"ipport=203.0.113.5:443", "ipport=0.0.0.0:443",
                                       "ipport=[::]:443", "hostnameport=www.example.com:443",
                                       "hostnameport=*.example.com:443"};
    struct cb_binding b;
    struct cb_err err;

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        make_valid(&b, keys[i]);
        if (cb_binding_validate(&b, &err) != 0)
            fail_msg("%s: refused: %s", keys[i], err.msg);
        b.certhash[0] = '\0';
        validate_bad(&b, "certhash");
        /* the message names the binding in canonical form */
        validate_bad(&b, keys[i]);
    }
    make_valid(&b, "ccs=443");
    assert_int_equal(cb_binding_validate(&b, &err), 0);
    assert_int_equal(cb_binding_validate(&b, NULL), 0);
}

static void test_validate_allows_ccspath_only_for_ccs(void **state)
{
    (void)state;
    struct cb_binding b;
    unsigned fields = 0;

    make_valid(&b, "ccs=443");
    b.ccspath[0] = '\0';
    validate_bad(&b, "ccspath");
    make_valid(&b, "ccs=443");
    set_ok(&b, "certhash", THUMB, &fields);
    validate_bad(&b, "certhash");
    make_valid(&b, "hostnameport=www.example.com:443");
    set_ok(&b, "ccspath", "/srv/ccs", &fields);
    validate_bad(&b, "ccspath");
    make_valid(&b, "ipport=0.0.0.0:443");
    set_ok(&b, "ccspath", "/srv/ccs", &fields);
    validate_bad(&b, "ccspath");
}

static void test_validate_refuses_disabling_both_tls_versions(void **state)
{
    (void)state;
    static const char *const keys[] = {"ipport=203.0.113.5:443", "hostnameport=www.example.com:443",
                                       "ccs=443"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        struct cb_binding b;
        struct cb_err err;
        unsigned fields = 0;

        make_valid(&b, keys[i]);
        set_ok(&b, "disabletls12", "enable", &fields);
        if (cb_binding_validate(&b, &err) != 0)
            fail_msg("%s disabletls12 alone refused: %s", keys[i], err.msg);
        set_ok(&b, "disabletls13", "enable", &fields);
        validate_bad(&b, "disabletls13");
        set_ok(&b, "disabletls12", "disable", &fields);
        if (cb_binding_validate(&b, &err) != 0)
            fail_msg("%s disabletls13 alone refused: %s", keys[i], err.msg);
    }
}

static void test_certhash_takes_two_thumbprints(void **state)
{
    (void)state;
    struct cb_binding b;
    unsigned fields = 0;
    char text[CB_CERTHASH_TEXT_MAX + 1];

    cb_binding_init(&b);
    set_ok(&b, "certhash", THUMB "," THUMB2, &fields);
    assert_string_equal(b.certhash, THUMB);
    assert_string_equal(b.certhash2, THUMB2);
    assert_true(cb_binding_is_dual(&b));
    assert_int_equal(cb_binding_certhash_text(&b, text, sizeof(text)), 81);
    assert_string_equal(text, THUMB "," THUMB2);
    /* lower case, colons and spaces around the comma: as for one thumbprint */
    set_ok(&b, "certhash",
           "01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67 , "
           "89abcdef0123456789abcdef0123456789abcdef",
           &fields);
    assert_string_equal(b.certhash, THUMB);
    assert_string_equal(b.certhash2, THUMB2);
    /* one thumbprint again: the second is gone */
    set_ok(&b, "certhash", THUMB2, &fields);
    assert_string_equal(b.certhash, THUMB2);
    assert_string_equal(b.certhash2, "");
    assert_false(cb_binding_is_dual(&b));
    assert_int_equal(cb_binding_certhash_text(&b, text, sizeof(text)), 40);
    assert_string_equal(text, THUMB2);
}

static void test_certhash_refuses_malformed_pairs(void **state)
{
    (void)state;
    set_bad("certhash", THUMB ",", "missing");
    set_bad("certhash", THUMB ", ", "missing");
    set_bad("certhash", "," THUMB2, "missing");
    set_bad("certhash", ",", "missing");
    set_bad("certhash", THUMB "," THUMB2 "," THUMB, "not more");
    set_bad("certhash", THUMB ",," THUMB2, "not more");
    set_bad("certhash", THUMB "," THUMB, "twice");
    set_bad("certhash", THUMB ",0123456789abcdef0123456789abcdef01234567", "twice");
    set_bad("certhash", THUMB " " THUMB2, "thumbprint");
    set_bad("certhash", THUMB ";" THUMB2, "thumbprint");
    set_bad("certhash", THUMB ",0123", "thumbprint");
    set_bad("certhash", "0123," THUMB2, "thumbprint");
    /* a first part too long for the buffer is refused, never cut to 40 digits */
    char longv[400];
    memset(longv, ' ', 200);
    snprintf(longv + 200, sizeof(longv) - 200, "%s0," THUMB2, THUMB);
    set_bad("certhash", longv, "too long");
}

static void test_replace_cert_moves_the_slot_that_holds_it(void **state)
{
    (void)state;
    struct cb_binding b;
    unsigned fields = 0;
    static const char other[] = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF";

    cb_binding_init(&b);
    set_ok(&b, "certhash", THUMB "," THUMB2, &fields);
    assert_true(cb_binding_replace_cert(&b, THUMB2, other));
    assert_string_equal(b.certhash, THUMB);
    assert_string_equal(b.certhash2, other);
    assert_true(cb_binding_replace_cert(&b, THUMB, THUMB2));
    assert_string_equal(b.certhash, THUMB2);
    assert_false(cb_binding_replace_cert(&b, THUMB, other));
    assert_false(cb_binding_replace_cert(&b, "", other));
    cb_binding_init(&b);
    assert_false(cb_binding_replace_cert(&b, "", other)); /* "" never matches an empty slot */
}

static void test_validate_refuses_dual_with_acme(void **state)
{
    (void)state;
    struct cb_binding b;
    unsigned fields = 0;
    struct cb_err err;

    make_valid(&b, "hostnameport=www.example.com:443");
    set_ok(&b, "certhash", THUMB "," THUMB2, &fields);
    assert_int_equal(cb_binding_validate(&b, &err), 0);
    set_ok(&b, "acme", "enable", &fields);
    validate_bad(&b, "acme=enable obtains one certificate");
    make_valid(&b, "ccs=443");
    set_ok(&b, "certhash", THUMB "," THUMB2, &fields);
    validate_bad(&b, "drop certhash");
    make_valid(&b, "ipport=0.0.0.0:443");
    b.certhash[0] = '\0';
    memcpy(b.certhash2, THUMB2, sizeof(b.certhash2));
    validate_bad(&b, "without a first");
}

static void test_merge_copies_both_certificates(void **state)
{
    (void)state;
    struct cb_binding dst, src;
    unsigned fields = 0;

    make_stored(&dst);
    cb_binding_init(&src);
    set_ok(&src, "certhash", THUMB2 "," THUMB, &fields);
    cb_binding_merge(&dst, &src, fields);
    assert_string_equal(dst.certhash, THUMB2);
    assert_string_equal(dst.certhash2, THUMB);
    /* then one certificate: a dual binding becomes single */
    fields = 0;
    set_ok(&src, "certhash", THUMB, &fields);
    cb_binding_merge(&dst, &src, fields);
    assert_string_equal(dst.certhash, THUMB);
    assert_string_equal(dst.certhash2, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_sets_defaults),
        cmocka_unit_test(test_each_toggle_enables_and_disables_its_bit),
        cmocka_unit_test(test_toggles_leave_other_bits_alone),
        cmocka_unit_test(test_toggles_refuse_values_other_than_enable_or_disable),
        cmocka_unit_test(test_proxyprotocol_takes_off_v1_v2),
        cmocka_unit_test(test_appid_accepts_guids_with_or_without_braces),
        cmocka_unit_test(test_appid_refuses_malformed_guids),
        cmocka_unit_test(test_backend_canonicalises_host_and_port),
        cmocka_unit_test(test_backend_empty_or_none_clears_it),
        cmocka_unit_test(test_backend_refuses_bad_addresses_and_ports),
        cmocka_unit_test(test_certhash_option_normalises_or_refuses),
        cmocka_unit_test(test_certhash_takes_two_thumbprints),
        cmocka_unit_test(test_certhash_refuses_malformed_pairs),
        cmocka_unit_test(test_replace_cert_moves_the_slot_that_holds_it),
        cmocka_unit_test(test_validate_refuses_dual_with_acme),
        cmocka_unit_test(test_merge_copies_both_certificates),
        cmocka_unit_test(test_ccspath_takes_absolute_folders),
        cmocka_unit_test(test_clientca_takes_an_absolute_file_or_none),
        cmocka_unit_test(test_clientca_merges_only_when_given),
        cmocka_unit_test(test_unknown_options_are_refused),
        cmocka_unit_test(test_options_record_their_fields),
        cmocka_unit_test(test_merge_changes_only_the_given_fields),
        cmocka_unit_test(test_merge_copies_only_the_toggles_that_were_given),
        cmocka_unit_test(test_validate_requires_certhash_except_for_ccs),
        cmocka_unit_test(test_validate_allows_ccspath_only_for_ccs),
        cmocka_unit_test(test_validate_refuses_disabling_both_tls_versions),
    };
    return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
