/*
 * test_resolver.c: the section 2 resolver over snapshots built with
 * cb_snapshot_builder_*: every rule and its order, ports, address families,
 * IPv4-mapped queries, duplicates, reference counting, cb_snapshot_find and scale.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "binding/snapshot.h"

#define THUMB "0123456789ABCDEF0123456789ABCDEF01234567"
#define MAX_KEYS 8
#define MAX_FILES 4

/* Makes a valid binding for a key word: certhash for most, ccspath for ccs. */
static void make_binding(const char *word, struct cb_binding *b)
{
    struct cb_err err = {0};
    unsigned fields = 0;

    cb_binding_init(b);
    if (cb_key_parse_word(word, &b->key, &err) != 0)
        fail_msg("fixture key '%s' refused: %s", word, err.msg);
    if (b->key.kind == CB_KEY_CCS)
        assert_int_equal(cb_binding_set_option(b, "ccspath", "/srv/ccs", &fields, &err), 0);
    else
        assert_int_equal(cb_binding_set_option(b, "certhash", THUMB, &fields, &err), 0);
}

/* Builds a snapshot of `keys`; `files` belong to the first ccs binding among them. */
static struct cb_snapshot *build(const char *const *keys, const char *const *files)
{
    struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
    struct cb_snapshot *s = NULL;
    struct cb_err err = {0};
    long ccs = -1;

    assert_non_null(sb);
    for (uint32_t i = 0; i < MAX_KEYS && keys[i] != NULL; i++) {
        struct cb_binding b;
        uint32_t index = 99;
        make_binding(keys[i], &b);
        if (cb_snapshot_builder_add(sb, &b, &index, &err) != 0)
            fail_msg("add %s: %s", keys[i], err.msg);
        assert_int_equal(index, i);
        if (b.key.kind == CB_KEY_CCS && ccs < 0)
            ccs = (long)i;
    }
    for (size_t i = 0; i < MAX_FILES && files[i] != NULL; i++) {
        char path[512];
        assert_true(ccs >= 0);
        snprintf(path, sizeof(path), "/srv/ccs/%s.pem", files[i]);
        if (cb_snapshot_builder_add_ccs_file(sb, (uint32_t)ccs, files[i], path, &err) != 0)
            fail_msg("add ccs file %s: %s", files[i], err.msg);
    }
    if (cb_snapshot_builder_finish(sb, 1, &s, &err) != 0)
        fail_msg("finish: %s", err.msg);
    return s;
}

/* Resolves addr:port with sni (NULL: none), parsing and normalising as the server does. */
static void resolve(const struct cb_snapshot *s, const char *addr, uint16_t port, const char *sni,
                    struct cb_resolution *res)
{
    struct cb_resolve_query q = {.port = port};
    char name[CB_NAME_MAX + 1];

    if (cb_addr_parse(addr, &q.family, q.addr) != 0)
        fail_msg("test address '%s' does not parse", addr);
    if (sni != NULL) {
        struct cb_err err;
        if (cb_name_normalize(sni, strlen(sni), 0, name, &err) != 0)
            fail_msg("test SNI '%s' does not normalise: %s", sni, err.msg);
        q.sni = name;
    }
    memset(res, 0x5a, sizeof(*res));
    cb_resolve(s, &q, res);
}

struct resolve_case {
    const char *what;
    const char *keys[MAX_KEYS + 1];
    const char *files[MAX_FILES + 1];
    const char *addr;
    uint16_t port;
    const char *sni;
    enum cb_rule rule;
    const char *want; /* key text of the binding chosen; NULL for CB_RULE_NONE */
    const char *file; /* CB_RULE_CCS: the file name chosen */
};

#define IP_A "ipport=203.0.113.5:443"
#define IP_V6 "ipport=[2001:db8::5]:443"
#define ANY4 "ipport=0.0.0.0:443"
#define ANY6 "ipport=[::]:443"
#define WWW "hostnameport=www.example.com:443"
#define WILD "hostnameport=*.example.com:443"
#define CCS "ccs=443"
#define FILES_EXAMPLE                                                                              \
    {                                                                                              \
        "www.example.com", "*.example.com"                                                         \
    }

static const struct resolve_case cases[] = {
    /* Rule 1: IP binding */
    {"ip binding beats exact sni",
     {WWW, IP_A},
     {0},
     "203.0.113.5",
     443,
     "www.example.com",
     CB_RULE_IP,
     IP_A,
     NULL},
    {"ip binding beats wildcard sni",
     {WILD, IP_A},
     {0},
     "203.0.113.5",
     443,
     "a.example.com",
     CB_RULE_IP,
     IP_A,
     NULL},
    {"ip binding beats ccs",
     {CCS, IP_A},
     FILES_EXAMPLE,
     "203.0.113.5",
     443,
     "www.example.com",
     CB_RULE_IP,
     IP_A,
     NULL},
    {"ip binding beats wildcard ip",
     {ANY4, IP_A},
     {0},
     "203.0.113.5",
     443,
     NULL,
     CB_RULE_IP,
     IP_A,
     NULL},
    {"ip binding answers without sni",
     {WWW, IP_A},
     {0},
     "203.0.113.5",
     443,
     NULL,
     CB_RULE_IP,
     IP_A,
     NULL},
    {"ip binding on another address does not apply",
     {WWW, IP_A},
     {0},
     "203.0.113.6",
     443,
     "www.example.com",
     CB_RULE_SNI_EXACT,
     WWW,
     NULL},
    {"ipv6 ip binding", {IP_V6, ANY6}, {0}, "2001:db8::5", 443, NULL, CB_RULE_IP, IP_V6, NULL},
    {"ipv6 ip binding, query in long form",
     {IP_V6},
     {0},
     "2001:0db8:0:0::0005",
     443,
     NULL,
     CB_RULE_IP,
     IP_V6,
     NULL},
    {"ipv6 ip binding on another address does not apply",
     {IP_V6},
     {0},
     "2001:db8::6",
     443,
     NULL,
     CB_RULE_NONE,
     NULL,
     NULL},
    {"ipv4 binding does not answer its ipv4-compatible ipv6 form",
     {IP_A},
     {0},
     "::203.0.113.5",
     443,
     NULL,
     CB_RULE_NONE,
     NULL,
     NULL},
    /* IPv4-mapped query addresses are IPv4 */
    {"v4-mapped query matches the ipv4 binding",
     {IP_A, ANY6},
     {0},
     "::ffff:203.0.113.5",
     443,
     NULL,
     CB_RULE_IP,
     IP_A,
     NULL},
    {"v4-mapped binding matches the ipv4 query",
     {"ipport=[::ffff:203.0.113.5]:443"},
     {0},
     "203.0.113.5",
     443,
     NULL,
     CB_RULE_IP,
     IP_A,
     NULL},
    {"v4-mapped query never gets [::]",
     {ANY6},
     {0},
     "::ffff:198.51.100.1",
     443,
     NULL,
     CB_RULE_NONE,
     NULL,
     NULL},
    {"v4-mapped query gets 0.0.0.0",
     {ANY6, ANY4},
     {0},
     "::ffff:198.51.100.1",
     443,
     NULL,
     CB_RULE_WILDCARD_IP,
     ANY4,
     NULL},
    /* Rule 2 and 3: SNI */
    {"exact sni", {WWW}, {0}, "198.51.100.1", 443, "www.example.com", CB_RULE_SNI_EXACT, WWW, NULL},
    {"exact sni is case-insensitive",
     {WWW},
     {0},
     "198.51.100.1",
     443,
     "WWW.Example.COM.",
     CB_RULE_SNI_EXACT,
     WWW,
     NULL},
    {"exact sni beats wildcard sni",
     {WILD, WWW},
     {0},
     "198.51.100.1",
     443,
     "www.example.com",
     CB_RULE_SNI_EXACT,
     WWW,
     NULL},
    {"exact sni over ipv6",
     {WWW, ANY6},
     {0},
     "2001:db8::9",
     443,
     "www.example.com",
     CB_RULE_SNI_EXACT,
     WWW,
     NULL},
    {"wildcard sni matches one extra label",
     {WWW, WILD},
     {0},
     "198.51.100.1",
     443,
     "a.example.com",
     CB_RULE_SNI_WILDCARD,
     WILD,
     NULL},
    {"wildcard sni does not match the parent",
     {WILD},
     {0},
     "198.51.100.1",
     443,
     "example.com",
     CB_RULE_NONE,
     NULL,
     NULL},
    {"wildcard sni does not match two extra labels",
     {WILD},
     {0},
     "198.51.100.1",
     443,
     "a.b.example.com",
     CB_RULE_NONE,
     NULL,
     NULL},
    {"wildcard sni does not match another parent",
     {WILD},
     {0},
     "198.51.100.1",
     443,
     "a.example.org",
     CB_RULE_NONE,
     NULL,
     NULL},
    {"exact sni does not match a subdomain",
     {WWW},
     {0},
     "198.51.100.1",
     443,
     "a.www.example.com",
     CB_RULE_NONE,
     NULL,
     NULL},
    {"wildcard sni for the subdomain level",
     {WILD, "hostnameport=*.b.example.com:443"},
     {0},
     "198.51.100.1",
     443,
     "a.b.example.com",
     CB_RULE_SNI_WILDCARD,
     "hostnameport=*.b.example.com:443",
     NULL},
    {"exact sni beats wildcard ip",
     {ANY4, WWW},
     {0},
     "198.51.100.1",
     443,
     "www.example.com",
     CB_RULE_SNI_EXACT,
     WWW,
     NULL},
    {"single-label sni",
     {"hostnameport=localhost:443"},
     {0},
     "127.0.0.1",
     443,
     "localhost",
     CB_RULE_SNI_EXACT,
     "hostnameport=localhost:443",
     NULL},
    /* Rule 4: central store */
    {"exact sni beats ccs file",
     {CCS, WWW},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     "www.example.com",
     CB_RULE_SNI_EXACT,
     WWW,
     NULL},
    {"wildcard sni beats ccs exact file",
     {CCS, WILD},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     "www.example.com",
     CB_RULE_SNI_WILDCARD,
     WILD,
     NULL},
    {"ccs exact file",
     {CCS, ANY4},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     "www.example.com",
     CB_RULE_CCS,
     CCS,
     "www.example.com"},
    {"ccs exact file is case-insensitive",
     {CCS},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     "WWW.EXAMPLE.COM",
     CB_RULE_CCS,
     CCS,
     "www.example.com"},
    {"ccs wildcard file",
     {CCS, ANY4},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     "shop.example.com",
     CB_RULE_CCS,
     CCS,
     "*.example.com"},
    {"ccs exact file beats ccs wildcard file",
     {CCS},
     {"*.example.com", "www.example.com"},
     "198.51.100.1",
     443,
     "www.example.com",
     CB_RULE_CCS,
     CCS,
     "www.example.com"},
    {"ccs wildcard file does not match the parent",
     {CCS, ANY4},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     "example.com",
     CB_RULE_WILDCARD_IP,
     ANY4,
     NULL},
    {"ccs wildcard file does not match two labels",
     {CCS, ANY4},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     "a.b.example.com",
     CB_RULE_WILDCARD_IP,
     ANY4,
     NULL},
    {"ccs comes before wildcard ip over ipv6",
     {CCS, ANY6, ANY4},
     FILES_EXAMPLE,
     "2001:db8::9",
     443,
     "shop.example.com",
     CB_RULE_CCS,
     CCS,
     "*.example.com"},
    {"ccs without a matching file falls to wildcard ip",
     {CCS, ANY4},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     "www.example.org",
     CB_RULE_WILDCARD_IP,
     ANY4,
     NULL},
    {"ccs without a matching file and no wildcard ip",
     {CCS},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     "www.example.org",
     CB_RULE_NONE,
     NULL,
     NULL},
    {"ccs with an empty folder",
     {CCS, ANY4},
     {0},
     "198.51.100.1",
     443,
     "www.example.com",
     CB_RULE_WILDCARD_IP,
     ANY4,
     NULL},
    {"ccs on another port",
     {"ccs=8443"},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     "www.example.com",
     CB_RULE_NONE,
     NULL,
     NULL},
    {"ccs on its own port",
     {"ccs=8443"},
     FILES_EXAMPLE,
     "198.51.100.1",
     8443,
     "www.example.com",
     CB_RULE_CCS,
     "ccs=8443",
     "www.example.com"},
    /* Rule 5: wildcard IP */
    {"ipv6 connection takes [::] first",
     {ANY4, ANY6},
     {0},
     "2001:db8::9",
     443,
     NULL,
     CB_RULE_WILDCARD_IP,
     ANY6,
     NULL},
    {"ipv6 connection falls back to 0.0.0.0",
     {ANY4},
     {0},
     "2001:db8::9",
     443,
     NULL,
     CB_RULE_WILDCARD_IP,
     ANY4,
     NULL},
    {"ipv4 connection takes 0.0.0.0",
     {ANY6, ANY4},
     {0},
     "198.51.100.1",
     443,
     NULL,
     CB_RULE_WILDCARD_IP,
     ANY4,
     NULL},
    {"ipv4 connection never gets [::]",
     {ANY6},
     {0},
     "198.51.100.1",
     443,
     NULL,
     CB_RULE_NONE,
     NULL,
     NULL},
    {"ipv4 connection never gets [::] with sni",
     {ANY6},
     {0},
     "198.51.100.1",
     443,
     "www.example.com",
     CB_RULE_NONE,
     NULL,
     NULL},
    {"wildcard ip answers an unknown sni",
     {WWW, ANY4},
     {0},
     "198.51.100.1",
     443,
     "other.example.org",
     CB_RULE_WILDCARD_IP,
     ANY4,
     NULL},
    /* A client without SNI only matches rules 1 and 5 */
    {"no sni skips exact, wildcard and ccs",
     {WWW, WILD, CCS},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     NULL,
     CB_RULE_NONE,
     NULL,
     NULL},
    {"no sni reaches wildcard ip",
     {WWW, WILD, CCS, ANY4},
     FILES_EXAMPLE,
     "198.51.100.1",
     443,
     NULL,
     CB_RULE_WILDCARD_IP,
     ANY4,
     NULL},
    {"no sni over ipv6 reaches [::]",
     {WWW, WILD, CCS, ANY4, ANY6},
     FILES_EXAMPLE,
     "2001:db8::9",
     443,
     NULL,
     CB_RULE_WILDCARD_IP,
     ANY6,
     NULL},
    /* Other ports never match */
    {"other port, ipv4, sni",
     {IP_A, WWW, WILD, CCS, ANY4, ANY6},
     FILES_EXAMPLE,
     "203.0.113.5",
     8443,
     "www.example.com",
     CB_RULE_NONE,
     NULL,
     NULL},
    {"other port, ipv6, no sni",
     {IP_V6, WWW, WILD, CCS, ANY4, ANY6},
     FILES_EXAMPLE,
     "2001:db8::5",
     8443,
     NULL,
     CB_RULE_NONE,
     NULL,
     NULL},
    {"same name on two ports",
     {"hostnameport=www.example.com:8443", WWW},
     {0},
     "198.51.100.1",
     8443,
     "www.example.com",
     CB_RULE_SNI_EXACT,
     "hostnameport=www.example.com:8443",
     NULL},
    {"wildcard ip on two ports",
     {"ipport=0.0.0.0:8443", ANY4},
     {0},
     "198.51.100.1",
     443,
     NULL,
     CB_RULE_WILDCARD_IP,
     ANY4,
     NULL},
    /* Rule 6: none */
    {"empty snapshot with sni",
     {0},
     {0},
     "198.51.100.1",
     443,
     "www.example.com",
     CB_RULE_NONE,
     NULL,
     NULL},
    {"empty snapshot without sni", {0}, {0}, "2001:db8::9", 443, NULL, CB_RULE_NONE, NULL, NULL},
};

static void test_resolution_follows_section_2(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct resolve_case *c = &cases[i];
        struct cb_snapshot *s = build(c->keys, c->files);
        struct cb_resolution res;

        resolve(s, c->addr, c->port, c->sni, &res);
        if (res.rule != c->rule)
            fail_msg("%s: rule %s, want %s", c->what, cb_rule_name(res.rule),
                     cb_rule_name(c->rule));
        if (c->rule != CB_RULE_NONE) {
            const struct cb_snap_binding *e = cb_snapshot_binding(s, res.binding);
            if (e == NULL || strcmp(e->key_text, c->want) != 0)
                fail_msg("%s: chose %s, want %s", c->what, e ? e->key_text : "(bad index)",
                         c->want);
        }
        if (c->rule == CB_RULE_CCS) {
            if (res.ccs == NULL || strcmp(res.ccs->name, c->file) != 0)
                fail_msg("%s: ccs file %s, want %s", c->what, res.ccs ? res.ccs->name : "NULL",
                         c->file);
            if (res.ccs->binding != res.binding || res.ccs->port != c->port)
                fail_msg("%s: ccs file belongs to binding %u port %u", c->what, res.ccs->binding,
                         res.ccs->port);
            char path[512];
            snprintf(path, sizeof(path), "/srv/ccs/%s.pem", c->file);
            assert_string_equal(res.ccs->path, path);
        } else if (res.ccs != NULL) {
            fail_msg("%s: ccs file set for rule %s", c->what, cb_rule_name(res.rule));
        }
        cb_snapshot_unref(s);
    }
}

static void test_rule_names(void **state)
{
    (void)state;
    assert_string_equal(cb_rule_name(CB_RULE_NONE), "none");
    assert_string_equal(cb_rule_name(CB_RULE_IP), "ip");
    assert_string_equal(cb_rule_name(CB_RULE_SNI_EXACT), "sni-exact");
    assert_string_equal(cb_rule_name(CB_RULE_SNI_WILDCARD), "sni-wildcard");
    assert_string_equal(cb_rule_name(CB_RULE_CCS), "ccs");
    assert_string_equal(cb_rule_name(CB_RULE_WILDCARD_IP), "wildcard-ip");
    assert_string_equal(cb_rule_name((enum cb_rule)42), "none");
}

/* Adds key words one by one; returns finish's result and err. */
static int build_result(const char *const *keys, size_t n, struct cb_err *err)
{
    struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
    struct cb_snapshot *s = NULL;

    assert_non_null(sb);
    for (size_t i = 0; i < n; i++) {
        struct cb_binding b;
        make_binding(keys[i], &b);
        assert_int_equal(cb_snapshot_builder_add(sb, &b, NULL, err), 0);
    }
    int rc = cb_snapshot_builder_finish(sb, 7, &s, err);
    if (rc == 0) {
        assert_non_null(s);
        assert_int_equal(cb_snapshot_count(s), n);
        cb_snapshot_unref(s);
    }
    return rc;
}

static void test_duplicate_keys_fail_finish_with_eexist(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;
        const char *dup; /* canonical text named in the message */
    } dups[] = {
        {IP_A, IP_A, IP_A},
        {IP_A, "ipport=[::ffff:203.0.113.5]:443", IP_A},
        {IP_V6, "ipport=[2001:DB8:0::5]:443", IP_V6},
        {ANY4, ANY4, ANY4},
        {ANY6, "ipport=[0::0]:443", ANY6},
        {WWW, "hostnameport=WWW.Example.com.:443", WWW},
        {WILD, "hostnameport=*.EXAMPLE.com:443", WILD},
        {CCS, CCS, CCS},
    };
    for (size_t i = 0; i < sizeof(dups) / sizeof(dups[0]); i++) {
        const char *keys[] = {"hostnameport=filler.example:80", dups[i].a, "ipport=10.0.0.1:80",
                              dups[i].b};
        struct cb_err err = {0};
        int rc = build_result(keys, 4, &err);
        if (rc != CB_EEXIST)
            fail_msg("%s + %s: finish returned %d, want CB_EEXIST", dups[i].a, dups[i].b, rc);
        if (err.code != CB_EEXIST || strstr(err.msg, dups[i].dup) == NULL)
            fail_msg("%s + %s: message '%s' does not name %s", dups[i].a, dups[i].b, err.msg,
                     dups[i].dup);
    }

    /* Keys that look alike but differ are not duplicates. */
    static const char *const distinct[] = {
        ANY4,
        ANY6,
        IP_A,
        "ipport=203.0.113.5:8443",
        "ipport=[::203.0.113.5]:443",
        IP_V6,
        WWW,
        "hostnameport=www.example.com:8443",
        WILD,
        "hostnameport=example.com:443",
        "hostnameport=*.www.example.com:443",
        CCS,
        "ccs=8443",
    };
    struct cb_err err = {0};
    if (build_result(distinct, sizeof(distinct) / sizeof(distinct[0]), &err) != 0)
        fail_msg("distinct keys refused: %s", err.msg);
}

static void test_ccs_files_need_a_ccs_binding(void **state)
{
    (void)state;
    struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
    struct cb_binding b;
    struct cb_err err = {0};
    uint32_t www, ccs;

    assert_non_null(sb);
    make_binding(WWW, &b);
    assert_int_equal(cb_snapshot_builder_add(sb, &b, &www, &err), 0);
    make_binding(CCS, &b);
    assert_int_equal(cb_snapshot_builder_add(sb, &b, &ccs, &err), 0);
    assert_int_equal(cb_snapshot_builder_add_ccs_file(sb, www, "a.example.com", "/x", &err),
                     CB_EINVAL);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(cb_snapshot_builder_add_ccs_file(sb, 99, "a.example.com", "/x", &err),
                     CB_EINVAL);
    assert_int_equal(cb_snapshot_builder_add_ccs_file(sb, ccs, "a.example.com", "/x", &err), 0);
    cb_snapshot_builder_free(sb);
    cb_snapshot_builder_free(NULL);
}

static void test_first_ccs_file_of_a_name_wins(void **state)
{
    (void)state;
    struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
    struct cb_snapshot *s = NULL;
    struct cb_binding b;
    struct cb_err err = {0};
    struct cb_resolution res;
    uint32_t ccs;

    assert_non_null(sb);
    make_binding(CCS, &b);
    assert_int_equal(cb_snapshot_builder_add(sb, &b, &ccs, &err), 0);
    assert_int_equal(cb_snapshot_builder_add_ccs_file(sb, ccs, "www.example.com",
                                                      "/srv/ccs/www.example.com.pem", &err),
                     0);
    assert_int_equal(cb_snapshot_builder_add_ccs_file(sb, ccs, "www.example.com",
                                                      "/srv/ccs/www.example.com.pfx", &err),
                     0);
    assert_int_equal(cb_snapshot_builder_finish(sb, 1, &s, &err), 0);
    assert_int_equal(cb_snapshot_ccs_count(s), 2);
    resolve(s, "198.51.100.1", 443, "www.example.com", &res);
    assert_int_equal(res.rule, CB_RULE_CCS);
    assert_string_equal(res.ccs->path, "/srv/ccs/www.example.com.pem");
    cb_snapshot_unref(s);
}

static void test_snapshot_keeps_every_binding_field(void **state)
{
    (void)state;
    struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
    struct cb_snapshot *s = NULL;
    struct cb_binding b;
    struct cb_err err = {0};
    unsigned fields = 0;
    uint32_t i_full, i_ccs, i_bare;

    assert_non_null(sb);
    make_binding("hostnameport=WWW.example.com:443", &b);
    assert_int_equal(cb_binding_set_option(&b, "backend", "[::1]:8080", &fields, &err), 0);
    assert_int_equal(
        cb_binding_set_option(&b, "appid", "00112233-4455-6677-8899-aabbccddeeff", &fields, &err),
        0);
    assert_int_equal(cb_binding_set_option(&b, "proxyprotocol", "v2", &fields, &err), 0);
    assert_int_equal(cb_binding_set_option(&b, "reject", "enable", &fields, &err), 0);
    assert_int_equal(cb_binding_set_option(&b, "disablehttp2", "enable", &fields, &err), 0);
    assert_int_equal(cb_snapshot_builder_add(sb, &b, &i_full, &err), 0);
    make_binding("ccs=8443", &b);
    assert_int_equal(cb_snapshot_builder_add(sb, &b, &i_ccs, &err), 0);
    make_binding(IP_V6, &b);
    assert_int_equal(cb_snapshot_builder_add(sb, &b, &i_bare, &err), 0);
    assert_int_equal(cb_snapshot_builder_add_ccs_file(sb, i_ccs, "*.example.com",
                                                      "/srv/ccs/_.example.com.pem", &err),
                     0);
    assert_int_equal(cb_snapshot_builder_finish(sb, 42, &s, &err), 0);

    assert_int_equal(cb_snapshot_count(s), 3);
    assert_int_equal(cb_snapshot_generation(s), 42);
    const struct cb_snap_binding *e = cb_snapshot_binding(s, i_full);
    assert_non_null(e);
    assert_string_equal(e->key_text, WWW);
    assert_string_equal(e->host, "www.example.com");
    assert_string_equal(e->backend, "[::1]:8080");
    assert_string_equal(e->appid, "{00112233-4455-6677-8899-aabbccddeeff}");
    assert_null(e->ccspath);
    assert_string_equal(e->certhash, THUMB);
    assert_int_equal(e->kind, CB_KEY_HOST);
    assert_int_equal(e->proxy, CB_PROXY_V2);
    assert_int_equal(e->port, 443);
    assert_int_equal(e->flags, CB_OPT_REJECT | CB_OPT_DISABLEHTTP2);

    e = cb_snapshot_binding(s, i_ccs);
    assert_string_equal(e->key_text, "ccs=8443");
    assert_string_equal(e->ccspath, "/srv/ccs");
    assert_string_equal(e->certhash, "");
    assert_null(e->host);
    assert_null(e->backend);
    assert_null(e->appid);
    assert_int_equal(e->kind, CB_KEY_CCS);

    e = cb_snapshot_binding(s, i_bare);
    assert_string_equal(e->key_text, IP_V6);
    assert_int_equal(e->kind, CB_KEY_IP);
    assert_int_equal(e->family, AF_INET6);
    assert_null(e->host);
    assert_int_equal(e->proxy, CB_PROXY_OFF);
    assert_int_equal(e->flags, 0);

    assert_null(cb_snapshot_binding(s, 3));
    assert_int_equal(cb_snapshot_ccs_count(s), 1);
    const struct cb_ccs_file *f = cb_snapshot_ccs_file(s, 0);
    assert_non_null(f);
    assert_string_equal(f->name, "*.example.com");
    assert_string_equal(f->path, "/srv/ccs/_.example.com.pem");
    assert_int_equal(f->binding, i_ccs);
    assert_int_equal(f->port, 8443);
    assert_null(cb_snapshot_ccs_file(s, 1));
    cb_snapshot_unref(s);
}

static void test_refcount_keeps_snapshot_until_last_unref(void **state)
{
    (void)state;
    static const char *const keys[] = {WWW, ANY4, NULL};
    static const char *const files[] = {NULL};
    struct cb_snapshot *s = build(keys, files);
    struct cb_resolution res;

    assert_ptr_equal(cb_snapshot_ref(s), s);
    assert_ptr_equal(cb_snapshot_ref(s), s);
    cb_snapshot_unref(s);
    cb_snapshot_unref(s);
    /* One reference left: still readable (ASan would flag a use after free). */
    assert_int_equal(cb_snapshot_count(s), 2);
    resolve(s, "198.51.100.1", 443, "www.example.com", &res);
    assert_int_equal(res.rule, CB_RULE_SNI_EXACT);
    cb_snapshot_unref(s); /* freed here; LeakSanitizer checks nothing is left */
    cb_snapshot_unref(NULL);
}

static void test_empty_builder_finishes_to_empty_snapshot(void **state)
{
    (void)state;
    struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
    struct cb_snapshot *s = NULL;
    struct cb_binding_key k;

    assert_non_null(sb);
    assert_int_equal(cb_snapshot_builder_finish(sb, 0, &s, NULL), 0);
    assert_int_equal(cb_snapshot_count(s), 0);
    assert_int_equal(cb_snapshot_ccs_count(s), 0);
    assert_null(cb_snapshot_binding(s, 0));
    assert_int_equal(cb_key_parse_word(CCS, &k, NULL), 0);
    assert_int_equal(cb_snapshot_find(s, &k), -1);
    cb_snapshot_unref(s);
}

static void test_find_looks_up_exact_keys(void **state)
{
    (void)state;
    static const char *const keys[] = {IP_A, IP_V6, ANY4, ANY6, WWW, WILD, CCS, NULL};
    static const char *const files[] = {NULL};
    struct cb_snapshot *s = build(keys, files);

    static const struct {
        const char *word;
        long want;
    } finds[] = {
        {IP_A, 0},
        {"ipport=[::ffff:203.0.113.5]:443", 0},
        {IP_V6, 1},
        {"ipport=[2001:DB8::0:5]:443", 1},
        {ANY4, 2},
        {ANY6, 3},
        {WWW, 4},
        {"hostnameport=WWW.EXAMPLE.COM.:443", 4},
        {WILD, 5},
        {CCS, 6},
        /* absent */
        {"ipport=203.0.113.5:8443", -1},
        {"ipport=203.0.113.6:443", -1},
        {"ipport=[::203.0.113.5]:443", -1},
        {"ipport=0.0.0.0:8443", -1},
        {"ipport=[::]:8443", -1},
        {"hostnameport=example.com:443", -1},
        {"hostnameport=a.example.com:443", -1},
        {"hostnameport=*.www.example.com:443", -1},
        {"hostnameport=www.example.com:8443", -1},
        {"ccs=8443", -1},
    };
    for (size_t i = 0; i < sizeof(finds) / sizeof(finds[0]); i++) {
        struct cb_binding_key k;
        assert_int_equal(cb_key_parse_word(finds[i].word, &k, NULL), 0);
        long got = cb_snapshot_find(s, &k);
        if (got != finds[i].want)
            fail_msg("find %s = %ld, want %ld", finds[i].word, got, finds[i].want);
    }
    /* A key of no known kind is never found. */
    struct cb_binding_key none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(cb_snapshot_find(s, &none), -1);
    cb_snapshot_unref(s);
}

#define SCALE_N 200000

static void scale_name(uint32_t i, char *out, size_t size)
{
    snprintf(out, size, "h%u.zone%u.example", i, i % 97);
}

static void test_200000_sni_bindings_each_resolve_to_themselves(void **state)
{
    (void)state;
    struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
    struct cb_snapshot *s = NULL;
    struct cb_err err = {0};
    char word[CB_KEY_TEXT_MAX], name[CB_NAME_MAX + 1];

    assert_non_null(sb);
    for (uint32_t i = 0; i < SCALE_N; i++) {
        struct cb_binding b;
        uint32_t index;
        char host[64];
        scale_name(i, host, sizeof(host));
        snprintf(word, sizeof(word), "hostnameport=%s:443", host);
        make_binding(word, &b);
        if (cb_snapshot_builder_add(sb, &b, &index, &err) != 0)
            fail_msg("add %u: %s", i, err.msg);
        if (index != i)
            fail_msg("add %u: index %u", i, index);
    }
    assert_int_equal(cb_snapshot_builder_finish(sb, 1, &s, &err), 0);
    assert_int_equal(cb_snapshot_count(s), SCALE_N);

    for (uint32_t i = 0; i < SCALE_N; i++) {
        struct cb_resolve_query q = {.family = AF_INET, .addr = {198, 51, 100, 1}, .port = 443};
        struct cb_resolution res;
        scale_name(i, name, sizeof(name));
        q.sni = name;
        cb_resolve(s, &q, &res);
        if (res.rule != CB_RULE_SNI_EXACT || res.binding != i)
            fail_msg("%s resolved to %s #%u, want sni-exact #%u", name, cb_rule_name(res.rule),
                     res.binding, i);
    }
    /* Names near the bound ones are not bound. */
    static const char *const misses[] = {"h200000.zone79.example", "h1.zone2.example",
                                         "zone1.example", "x.h1.zone1.example"};
    for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
        struct cb_resolve_query q = {.family = AF_INET, .addr = {198, 51, 100, 1}, .port = 443};
        struct cb_resolution res;
        q.sni = misses[i];
        cb_resolve(s, &q, &res);
        if (res.rule != CB_RULE_NONE)
            fail_msg("%s resolved to %s", misses[i], cb_rule_name(res.rule));
    }
    /* The same names on another port are not bound either. */
    struct cb_resolve_query q = {.family = AF_INET, .addr = {198, 51, 100, 1}, .port = 444};
    struct cb_resolution res;
    scale_name(12345, name, sizeof(name));
    q.sni = name;
    cb_resolve(s, &q, &res);
    assert_int_equal(res.rule, CB_RULE_NONE);
    cb_snapshot_unref(s);
}

/* A host name of exactly len bytes (1..CB_NAME_MAX) starting with `first`: labels of at
 * most 61 bytes, the rest of each label 'k'. Names of one length and different first
 * letters share their parent. */
static void name_of_length(size_t len, char first, char *out)
{
    for (size_t i = 0; i < len; i++)
        out[i] = i % 61 == 60 && i + 1 < len ? '.' : 'k';
    out[0] = first;
    out[len] = '\0';
}

static void expect(const struct cb_snapshot *s, const char *sni, enum cb_rule rule, long binding)
{
    struct cb_resolve_query q = {.family = AF_INET, .addr = {198, 51, 100, 1}, .port = 443};
    struct cb_resolution res;

    q.sni = sni;
    cb_resolve(s, &q, &res);
    if (res.rule != rule || (rule != CB_RULE_NONE && (long)res.binding != binding))
        fail_msg("%zu-byte %.12s... resolved to %s #%u, want %s #%ld", strlen(sni), sni,
                 cb_rule_name(res.rule), res.rule != CB_RULE_NONE ? res.binding : 0,
                 cb_rule_name(rule), binding);
}

/* Every name length, exact and wildcard, bound and not, with the probe's fingerprints as
 * built (8 bits), all alike (0 bits: every probe compares every slot of its run), and all
 * alike over parts of 256 bytes (runs cross parts). Names up to 52 bytes are compared in
 * the index slot, longer ones against the binding record. */
static void test_names_of_every_length_with_colliding_fingerprints(void **state)
{
    (void)state;
    static const struct {
        unsigned fp_bits;
        size_t part_bytes;
    } modes[] = {{8, 0}, {0, 0}, {0, 256}, {2, 256}};

    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        cb_snapshot_set_fp_bits(modes[m].fp_bits);
        cb_snapshot_set_part_bytes(modes[m].part_bytes);
        struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
        struct cb_snapshot *s = NULL;
        struct cb_err err = {0};
        uint32_t exact[CB_NAME_MAX + 1], wild[CB_NAME_MAX + 1];
        char name[CB_NAME_MAX + 1], word[CB_KEY_TEXT_MAX + 8];

        assert_non_null(sb);
        for (size_t len = 1; len <= CB_NAME_MAX; len++) {
            struct cb_binding b;
            name_of_length(len, 'a', name);
            snprintf(word, sizeof(word), "hostnameport=%s:443", name);
            make_binding(word, &b);
            assert_int_equal(cb_snapshot_builder_add(sb, &b, &exact[len], &err), 0);
            if (len + 2 > CB_NAME_MAX)
                continue;
            name_of_length(len, 'c', name);
            snprintf(word, sizeof(word), "hostnameport=*.%s:443", name);
            make_binding(word, &b);
            assert_int_equal(cb_snapshot_builder_add(sb, &b, &wild[len], &err), 0);
        }
        assert_int_equal(cb_snapshot_builder_finish(sb, 1, &s, &err), 0);

        for (size_t len = 1; len <= CB_NAME_MAX; len++) {
            char query[CB_NAME_MAX + 8];
            name_of_length(len, 'a', name);
            expect(s, name, CB_RULE_SNI_EXACT, exact[len]);
            name_of_length(len, 'b', name); /* same length and parent, not bound */
            expect(s, name, CB_RULE_NONE, -1);
            if (len + 2 > CB_NAME_MAX)
                continue;
            name_of_length(len, 'c', name);
            expect(s, name, CB_RULE_NONE, -1); /* a wildcard needs one more label */
            snprintf(query, sizeof(query), "x.%s", name);
            expect(s, query, CB_RULE_SNI_WILDCARD, wild[len]);
            if (len + 4 <= CB_NAME_MAX) {
                snprintf(query, sizeof(query), "x.y.%s", name);
                expect(s, query, CB_RULE_NONE, -1);
            }
        }
        cb_snapshot_unref(s);
    }
    cb_snapshot_set_fp_bits(8);
    cb_snapshot_set_part_bytes(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolution_follows_section_2),
        cmocka_unit_test(test_rule_names),
        cmocka_unit_test(test_duplicate_keys_fail_finish_with_eexist),
        cmocka_unit_test(test_ccs_files_need_a_ccs_binding),
        cmocka_unit_test(test_first_ccs_file_of_a_name_wins),
        cmocka_unit_test(test_snapshot_keeps_every_binding_field),
        cmocka_unit_test(test_refcount_keeps_snapshot_until_last_unref),
        cmocka_unit_test(test_empty_builder_finishes_to_empty_snapshot),
        cmocka_unit_test(test_find_looks_up_exact_keys),
        cmocka_unit_test(test_200000_sni_bindings_each_resolve_to_themselves),
        cmocka_unit_test(test_names_of_every_length_with_colliding_fingerprints),
    };
    return cmocka_run_group_tests_name("resolver", tests, NULL, NULL);
}
