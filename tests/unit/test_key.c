/*
 * test_key.c: binding keys (cb_key_parse, cb_key_parse_word, cb_key_format), address
 * and port parsing, and thumbprints (cb_thumbprint_normalize).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "binding/binding.h"

struct good_key {
    const char *word;
    enum cb_key_kind kind;
    uint8_t family; /* 0 for the name kinds */
    uint16_t port;
    const char *canonical;
};

static void check_good_key(const struct good_key *c)
{
    struct cb_binding_key k, k2;
    struct cb_err err;
    char text[CB_KEY_TEXT_MAX];

    memset(&err, 0, sizeof(err));
    int rc = cb_key_parse_word(c->word, &k, &err);
    if (rc != 0)
        fail_msg("%s: refused (%d): %s", c->word, rc, err.msg);
    if (k.kind != c->kind || k.port != c->port || k.family != c->family)
        fail_msg("%s: kind %d port %u family %u, want kind %d port %u family %u", c->word, k.kind,
                 k.port, k.family, c->kind, c->port, c->family);
    size_t n = cb_key_format(&k, text, sizeof(text));
    if (n != strlen(text) || strcmp(text, c->canonical) != 0)
        fail_msg("%s: formatted as '%s' (length %zu), want '%s'", c->word, text, n, c->canonical);
    /* The canonical form parses back to the same key and prints the same. */
    if (cb_key_parse_word(text, &k2, &err) != 0)
        fail_msg("%s: canonical '%s' refused: %s", c->word, text, err.msg);
    if (memcmp(&k, &k2, sizeof(k)) != 0)
        fail_msg("%s: canonical '%s' parses to a different key", c->word, text);
    /* cb_key_parse with the name and value split gives the same key. */
    char name[16];
    const char *eq = strchr(c->word, '=');
    assert_non_null(eq);
    snprintf(name, sizeof(name), "%.*s", (int)(eq - c->word), c->word);
    if (cb_key_parse(name, eq + 1, &k2, &err) != 0 || memcmp(&k, &k2, sizeof(k)) != 0)
        fail_msg("%s: cb_key_parse(\"%s\", \"%s\") differs from cb_key_parse_word", c->word, name,
                 eq + 1);
}

static void test_ip_keys_parse_to_canonical_form(void **state)
{
    (void)state;
    static const struct good_key cases[] = {
        {"ipport=203.0.113.5:443", CB_KEY_IP, AF_INET, 443, "ipport=203.0.113.5:443"},
        {"ipport=127.0.0.1:1", CB_KEY_IP, AF_INET, 1, "ipport=127.0.0.1:1"},
        {"ipport=203.0.113.5:65535", CB_KEY_IP, AF_INET, 65535, "ipport=203.0.113.5:65535"},
        {"ipport=203.0.113.5:0443", CB_KEY_IP, AF_INET, 443, "ipport=203.0.113.5:443"},
        {"ipport=[2001:db8::5]:443", CB_KEY_IP, AF_INET6, 443, "ipport=[2001:db8::5]:443"},
        {"ipport=[2001:DB8:0::5]:443", CB_KEY_IP, AF_INET6, 443, "ipport=[2001:db8::5]:443"},
        {"ipport=[2001:0db8:0000:0000:0000:0000:0000:0005]:443", CB_KEY_IP, AF_INET6, 443,
         "ipport=[2001:db8::5]:443"},
        {"ipport=[::1]:8443", CB_KEY_IP, AF_INET6, 8443, "ipport=[::1]:8443"},
        {"ipport=[fe80::1]:443", CB_KEY_IP, AF_INET6, 443, "ipport=[fe80::1]:443"},
        /* IPv4-mapped IPv6 is the IPv4 address. */
        {"ipport=[::ffff:203.0.113.5]:443", CB_KEY_IP, AF_INET, 443, "ipport=203.0.113.5:443"},
        {"ipport=[::FFFF:cb00:7105]:443", CB_KEY_IP, AF_INET, 443, "ipport=203.0.113.5:443"},
        /* Wildcards: 0.0.0.0 (all) and [::] (IPv6 only). */
        {"ipport=0.0.0.0:443", CB_KEY_ANY_IP, AF_INET, 443, "ipport=0.0.0.0:443"},
        {"ipport=[::]:443", CB_KEY_ANY_IP, AF_INET6, 443, "ipport=[::]:443"},
        {"ipport=[0:0:0::0]:443", CB_KEY_ANY_IP, AF_INET6, 443, "ipport=[::]:443"},
        {"ipport=[::ffff:0.0.0.0]:443", CB_KEY_ANY_IP, AF_INET, 443, "ipport=0.0.0.0:443"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_good_key(&cases[i]);
}

static void test_name_and_ccs_keys_parse_to_canonical_form(void **state)
{
    (void)state;
    static const struct good_key cases[] = {
        {"hostnameport=www.example.com:443", CB_KEY_HOST, 0, 443,
         "hostnameport=www.example.com:443"},
        {"hostnameport=WWW.Example.COM:443", CB_KEY_HOST, 0, 443,
         "hostnameport=www.example.com:443"},
        {"hostnameport=www.example.com.:443", CB_KEY_HOST, 0, 443,
         "hostnameport=www.example.com:443"},
        {"hostnameport=localhost:8443", CB_KEY_HOST, 0, 8443, "hostnameport=localhost:8443"},
        {"hostnameport=b\xc3\xbc"
         "cher.example:443",
         CB_KEY_HOST, 0, 443, "hostnameport=xn--bcher-kva.example:443"},
        {"hostnameport=*.example.com:443", CB_KEY_HOST_WILD, 0, 443,
         "hostnameport=*.example.com:443"},
        {"hostnameport=*.EXAMPLE.com.:8443", CB_KEY_HOST_WILD, 0, 8443,
         "hostnameport=*.example.com:8443"},
        {"hostnameport=*.b\xc3\xbc"
         "cher.example:443",
         CB_KEY_HOST_WILD, 0, 443, "hostnameport=*.xn--bcher-kva.example:443"},
        /* All digits but not an IPv4 address: a (strange) host name. */
        {"hostnameport=123:443", CB_KEY_HOST, 0, 443, "hostnameport=123:443"},
        {"ccs=443", CB_KEY_CCS, 0, 443, "ccs=443"},
        {"ccs=1", CB_KEY_CCS, 0, 1, "ccs=1"},
        {"ccs=65535", CB_KEY_CCS, 0, 65535, "ccs=65535"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_good_key(&cases[i]);

    struct cb_binding_key k;
    assert_int_equal(cb_key_parse_word("hostnameport=*.example.com:443", &k, NULL), 0);
    assert_string_equal(k.host, "*.example.com");
    assert_int_equal(cb_key_parse_word("hostnameport=WWW.example.com:443", &k, NULL), 0);
    assert_string_equal(k.host, "www.example.com");
    assert_int_equal(cb_key_parse_word("ccs=443", &k, NULL), 0);
    assert_string_equal(k.host, "");
}

static void test_ip_key_address_bytes(void **state)
{
    (void)state;
    static const uint8_t v4[16] = {203, 0, 113, 5};
    static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 5};
    static const uint8_t zero[16];
    struct cb_binding_key k;

    assert_int_equal(cb_key_parse_word("ipport=203.0.113.5:443", &k, NULL), 0);
    assert_memory_equal(k.addr, v4, 16);
    assert_string_equal(k.host, "");
    assert_int_equal(cb_key_parse_word("ipport=[::ffff:203.0.113.5]:443", &k, NULL), 0);
    assert_memory_equal(k.addr, v4, 16);
    assert_int_equal(cb_key_parse_word("ipport=[2001:db8::5]:443", &k, NULL), 0);
    assert_memory_equal(k.addr, v6, 16);
    assert_int_equal(cb_key_parse_word("ipport=0.0.0.0:443", &k, NULL), 0);
    assert_memory_equal(k.addr, zero, 16);
    assert_int_equal(cb_key_parse_word("ipport=[::]:443", &k, NULL), 0);
    assert_memory_equal(k.addr, zero, 16);
}

static void test_wildcard_v4_and_v6_are_distinct_keys(void **state)
{
    (void)state;
    struct cb_binding_key a, b;
    char ta[CB_KEY_TEXT_MAX], tb[CB_KEY_TEXT_MAX];

    assert_int_equal(cb_key_parse_word("ipport=0.0.0.0:443", &a, NULL), 0);
    assert_int_equal(cb_key_parse_word("ipport=[::]:443", &b, NULL), 0);
    assert_int_equal(a.kind, CB_KEY_ANY_IP);
    assert_int_equal(b.kind, CB_KEY_ANY_IP);
    assert_int_not_equal(a.family, b.family);
    cb_key_format(&a, ta, sizeof(ta));
    cb_key_format(&b, tb, sizeof(tb));
    assert_string_not_equal(ta, tb);
}

static void test_format_truncates_to_the_buffer_and_returns_full_length(void **state)
{
    (void)state;
    struct cb_binding_key k;
    char small[8];

    assert_int_equal(cb_key_parse_word("hostnameport=www.example.com:443", &k, NULL), 0);
    size_t n = cb_key_format(&k, small, sizeof(small));
    assert_int_equal(n, strlen("hostnameport=www.example.com:443"));
    assert_string_equal(small, "hostnam");

    /* A key of unknown kind prints as "invalid". */
    char text[CB_KEY_TEXT_MAX];
    memset(&k, 0, sizeof(k));
    cb_key_format(&k, text, sizeof(text));
    assert_string_equal(text, "invalid");
}

static void test_longest_host_key_fits_key_text_max(void **state)
{
    (void)state;
    char word[CB_KEY_TEXT_MAX + 64], label[64];
    struct cb_binding_key k;
    char text[CB_KEY_TEXT_MAX];

    memset(label, 'a', 63);
    label[63] = '\0';
    snprintf(word, sizeof(word), "hostnameport=*.%s.%s.%s.%.59s:65535", label, label, label, label);
    assert_int_equal(cb_key_parse_word(word, &k, NULL), 0);
    assert_int_equal(strlen(k.host), CB_NAME_MAX);
    size_t n = cb_key_format(&k, text, sizeof(text));
    assert_true(n < sizeof(text));
    assert_string_equal(text, word);
}

struct bad_key {
    const char *word;
    const char *hint; /* a word the message must contain, or NULL */
};

static void test_bad_keys_are_refused_with_a_message(void **state)
{
    (void)state;
    static const struct bad_key cases[] = {
        /* ports */
        {"ipport=203.0.113.5:0", "1 to 65535"},
        {"ipport=203.0.113.5:65536", "1 to 65535"},
        {"ipport=203.0.113.5:99999", "1 to 65535"},
        {"ipport=203.0.113.5:443443", "1 to 65535"},
        {"ipport=203.0.113.5:+443", "1 to 65535"},
        {"ipport=203.0.113.5:-443", "1 to 65535"},
        {"ipport=203.0.113.5: 443", "1 to 65535"},
        {"ipport=203.0.113.5:443 ", "1 to 65535"},
        {"ipport=203.0.113.5:0x1bb", "1 to 65535"},
        {"ipport=203.0.113.5:", "1 to 65535"},
        {"ipport=[2001:db8::5]:", "1 to 65535"},
        {"ipport=[2001:db8::5]:0", "1 to 65535"},
        /* missing port */
        {"ipport=203.0.113.5", "port"},
        {"ipport=[2001:db8::5]", NULL},
        {"ipport=[2001:db8::5]443", NULL},
        {"ipport=", NULL},
        /* brackets */
        {"ipport=2001:db8::5:443", "brackets"},
        {"ipport=::1:443", "brackets"},
        {"ipport=[203.0.113.5]:443", "IPv4"},
        {"ipport=[2001:db8::5:443", NULL},
        {"ipport=[]:443", NULL},
        {"ipport=[[::1]]:443", NULL},
        /* garbage addresses */
        {"ipport=:443", NULL},
        {"ipport=example.com:443", "not an IPv4 or IPv6"},
        {"ipport=203.0.113:443", "not an IPv4 or IPv6"},
        {"ipport=256.0.113.5:443", "not an IPv4 or IPv6"},
        {"ipport=203.0.113.5.:443", "not an IPv4 or IPv6"},
        {"ipport= 203.0.113.5:443", "not an IPv4 or IPv6"},
        {"ipport=0x7f.0.0.1:443", "not an IPv4 or IPv6"},
        {"ipport=[2001:db8::g]:443", "not an IPv4 or IPv6"},
        {"ipport=[fe80::1%eth0]:443", "not an IPv4 or IPv6"},
        {"ipport=[2001:db8:::5]:443", "not an IPv4 or IPv6"},
        /* host names */
        {"hostnameport=www.example.com", "port"},
        {"hostnameport=www.example.com:", "1 to 65535"},
        {"hostnameport=www.example.com:0", "1 to 65535"},
        {"hostnameport=www.example.com:65536", "1 to 65535"},
        {"hostnameport=www.example.com:+443", "1 to 65535"},
        {"hostnameport=:443", "empty"},
        {"hostnameport=203.0.113.5:443", "ipport="},
        {"hostnameport=203.0.113.5.:443", "ipport="},
        {"hostnameport=[2001:db8::5]:443", "':'"},
        {"hostnameport=2001:db8::5:443", "':'"},
        {"hostnameport=www..example.com:443", "empty label"},
        {"hostnameport=-www.example.com:443", "'-'"},
        {"hostnameport=a.*.example.com:443", "'*'"},
        {"hostnameport=*foo.example.com:443", "'*'"},
        {"hostnameport=*:443", NULL},
        {"hostnameport=*.:443", NULL},
        {"hostnameport=www example.com:443", NULL},
        /* ccs */
        {"ccs=", "ccs=443"},
        {"ccs=0", "ccs=443"},
        {"ccs=65536", "ccs=443"},
        {"ccs=abc", "ccs=443"},
        {"ccs=0.0.0.0:443", "ccs=443"},
        {"ccs=:443", "ccs=443"},
        {"ccs= 443", "ccs=443"},
        /* key names */
        {"ipaddr=203.0.113.5:443", "not a binding key"},
        {"hostname=www.example.com:443", "not a binding key"},
        {"IPPORT203.0.113.5:443", "not a binding key"},
        {"=203.0.113.5:443", "not a binding key"},
        {"", "not a binding key"},
        {"certhash=0123456789abcdef0123456789abcdef01234567", "not a binding key"},
        {"averyveryverylongkeyname=1", "not a binding key"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_key *c = &cases[i];
        struct cb_binding_key k;
        struct cb_err err;

        memset(&err, 0, sizeof(err));
        int rc = cb_key_parse_word(c->word, &k, &err);
        if (rc != CB_EINVAL)
            fail_msg("'%s': returned %d, want CB_EINVAL", c->word, rc);
        if (err.code != CB_EINVAL || err.msg[0] == '\0')
            fail_msg("'%s': err not filled (code %d)", c->word, err.code);
        if (c->hint != NULL && strstr(err.msg, c->hint) == NULL)
            fail_msg("'%s': message '%s' does not mention '%s'", c->word, err.msg, c->hint);
        /* The same through cb_key_parse when the word has a name. */
        const char *eq = strchr(c->word, '=');
        if (eq != NULL && eq - c->word < 16) {
            char name[16];
            snprintf(name, sizeof(name), "%.*s", (int)(eq - c->word), c->word);
            memset(&err, 0, sizeof(err));
            rc = cb_key_parse(name, eq + 1, &k, &err);
            if (rc != CB_EINVAL || err.msg[0] == '\0')
                fail_msg("cb_key_parse('%s', '%s'): returned %d, msg '%s'", name, eq + 1, rc,
                         err.msg);
        }
        /* A NULL err is allowed. */
        if (cb_key_parse_word(c->word, &k, NULL) != CB_EINVAL)
            fail_msg("'%s': accepted with a NULL err", c->word);
    }
}

static void test_unknown_key_name_is_refused_by_cb_key_parse(void **state)
{
    (void)state;
    struct cb_binding_key k;
    struct cb_err err = {0};

    assert_int_equal(cb_key_parse("bogus", "203.0.113.5:443", &k, &err), CB_EINVAL);
    assert_non_null(strstr(err.msg, "bogus"));
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_key_parse("", "443", &k, &err), CB_EINVAL);
    assert_true(err.msg[0] != '\0');
}

static void test_addr_parse_normalises_v4_mapped(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int want;
        uint8_t family;
        uint8_t addr[16];
    } cases[] = {
        {"203.0.113.5", 0, AF_INET, {203, 0, 113, 5}},
        {"::ffff:203.0.113.5", 0, AF_INET, {203, 0, 113, 5}},
        {"::FFFF:CB00:7105", 0, AF_INET, {203, 0, 113, 5}},
        {"2001:db8::5", 0, AF_INET6, {0x20, 0x01, 0x0d, 0xb8, [15] = 5}},
        {"::", 0, AF_INET6, {0}},
        {"0.0.0.0", 0, AF_INET, {0}},
        /* v4-compatible (deprecated, ::a.b.c.d) is not v4-mapped: stays IPv6 */
        {"::203.0.113.5", 0, AF_INET6, {[12] = 203, 0, 113, 5}},
        {"", CB_EINVAL, 0, {0}},
        {"203.0.113", CB_EINVAL, 0, {0}},
        {"[::1]", CB_EINVAL, 0, {0}},
        {"example.com", CB_EINVAL, 0, {0}},
        {"1.2.3.4.5", CB_EINVAL, 0, {0}},
        {"::g", CB_EINVAL, 0, {0}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t family = 0, addr[16];
        memset(addr, 0xaa, sizeof(addr));
        int rc = cb_addr_parse(cases[i].text, &family, addr);
        if (rc != cases[i].want)
            fail_msg("cb_addr_parse(\"%s\") = %d, want %d", cases[i].text, rc, cases[i].want);
        if (rc != 0)
            continue;
        if (family != cases[i].family || memcmp(addr, cases[i].addr, 16) != 0)
            fail_msg("cb_addr_parse(\"%s\"): wrong family or bytes", cases[i].text);
    }
}

static void test_port_parse_accepts_1_to_65535(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int want;
        uint16_t port;
    } cases[] = {
        {"1", 0, 1},
        {"443", 0, 443},
        {"65535", 0, 65535},
        {"08080", 0, 8080},
        {"0", CB_EINVAL, 0},
        {"00000", CB_EINVAL, 0},
        {"65536", CB_EINVAL, 0},
        {"99999", CB_EINVAL, 0},
        {"100000", CB_EINVAL, 0},
        {"", CB_EINVAL, 0},
        {"+1", CB_EINVAL, 0},
        {"-1", CB_EINVAL, 0},
        {" 1", CB_EINVAL, 0},
        {"1 ", CB_EINVAL, 0},
        {"1a", CB_EINVAL, 0},
        {"0x10", CB_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint16_t port = 7;
        int rc = cb_port_parse(cases[i].text, strlen(cases[i].text), &port);
        if (rc != cases[i].want)
            fail_msg("cb_port_parse(\"%s\") = %d, want %d", cases[i].text, rc, cases[i].want);
        if (rc == 0 && port != cases[i].port)
            fail_msg("cb_port_parse(\"%s\") gave %u", cases[i].text, port);
        if (rc != 0 && port != 7)
            fail_msg("cb_port_parse(\"%s\") wrote the port on failure", cases[i].text);
    }
    /* len bounds the text: "4431" with len 3 is 443. */
    uint16_t port;
    assert_int_equal(cb_port_parse("4431", 3, &port), 0);
    assert_int_equal(port, 443);
}

static void test_thumbprint_normalises_case_spaces_and_colons(void **state)
{
    (void)state;
    static const char *const want = "0123456789ABCDEF0123456789ABCDEF01234567";
    static const char *const good[] = {
        "0123456789ABCDEF0123456789ABCDEF01234567",
        "0123456789abcdef0123456789abcdef01234567",
        "0123456789AbCdEf0123456789aBcDeF01234567",
        "01 23 45 67 89 ab cd ef 01 23 45 67 89 ab cd ef 01 23 45 67",
        "01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67",
        " 0123456789abcdef0123456789abcdef01234567 ",
        "::0123456789abcdef0123456789abcdef01234567::",
        "01: 23 :45:67:89ab cdef0123456789abcdef01234567",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char out[CB_THUMB_LEN + 1];
        struct cb_err err = {0};
        if (cb_thumbprint_normalize(good[i], out, &err) != 0)
            fail_msg("'%s' refused: %s", good[i], err.msg);
        if (strcmp(out, want) != 0)
            fail_msg("'%s' normalised to '%s'", good[i], out);
    }
}

static void test_thumbprint_refuses_wrong_length_and_non_hex(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *hint;
    } bad[] = {
        {"0123456789ABCDEF0123456789ABCDEF0123456", "39 hex digits"},   /* 39 */
        {"0123456789ABCDEF0123456789ABCDEF012345678", "40 hex digits"}, /* 41 */
        {"0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF", NULL},     /* 48 */
        {"", "0 hex digits"},
        {" : : ", "0 hex digits"},
        {"0123456789ABCDEG0123456789ABCDEF01234567", "40 hex digits"}, /* G */
        {"0123456789ABCDEF0123456789ABCDEF0123456z", "40 hex digits"}, /* z */
        {"0x0123456789ABCDEF0123456789ABCDEF012345", "40 hex digits"}, /* 0x */
        {"01-23-45-67-89-AB-CD-EF-01-23-45-67-89-AB-CD-EF-01-23-45-67", NULL},
        {"0123456789ABCDEF0123456789ABCDEF0123456\t7", NULL},
        {"0123456789ABCDEF0123456789ABCDEF012345\xc3\xa9", NULL},
        /* 64 hex digits: a SHA-256, not a SHA-1 thumbprint */
        {"0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[CB_THUMB_LEN + 1];
        struct cb_err err = {0};
        int rc = cb_thumbprint_normalize(bad[i].in, out, &err);
        if (rc != CB_EINVAL)
            fail_msg("'%s': returned %d, want CB_EINVAL", bad[i].in, rc);
        if (err.code != CB_EINVAL || err.msg[0] == '\0')
            fail_msg("'%s': err not filled", bad[i].in);
        if (bad[i].hint != NULL && strstr(err.msg, bad[i].hint) == NULL)
            fail_msg("'%s': message '%s' does not mention '%s'", bad[i].in, err.msg, bad[i].hint);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_keys_parse_to_canonical_form),
        cmocka_unit_test(test_name_and_ccs_keys_parse_to_canonical_form),
        cmocka_unit_test(test_ip_key_address_bytes),
        cmocka_unit_test(test_wildcard_v4_and_v6_are_distinct_keys),
        cmocka_unit_test(test_format_truncates_to_the_buffer_and_returns_full_length),
        cmocka_unit_test(test_longest_host_key_fits_key_text_max),
        cmocka_unit_test(test_bad_keys_are_refused_with_a_message),
        cmocka_unit_test(test_unknown_key_name_is_refused_by_cb_key_parse),
        cmocka_unit_test(test_addr_parse_normalises_v4_mapped),
        cmocka_unit_test(test_port_parse_accepts_1_to_65535),
        cmocka_unit_test(test_thumbprint_normalises_case_spaces_and_colons),
        cmocka_unit_test(test_thumbprint_refuses_wrong_length_and_non_hex),
    };
    return cmocka_run_group_tests_name("key", tests, NULL, NULL);
}
