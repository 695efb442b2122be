/*
 * test_name.c: host name normalisation (cb_name_normalize), RFC 6125 matching
 * (cb_name_covers) and cb_name_parent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "binding/binding.h"

#define W CB_NAME_WILDCARD
#define I CB_NAME_IDN

struct norm_case {
    const char *what;
    const char *in;
    size_t len; /* 0: strlen(in) */
    unsigned flags;
    int want;         /* 0 or a CB_E* code */
    const char *out;  /* expected output when want == 0 */
    const char *hint; /* a word the error message must contain, or NULL */
};

/* Builds "aaa…a" labels for the length cases. */
static char label63[64], label64[65];
static char name253[CB_NAME_MAX + 1], name254[CB_NAME_MAX + 2], name253dot[CB_NAME_MAX + 2];

static void make_long_names(void)
{
    memset(label63, 'a', 63);
    label63[63] = '\0';
    memset(label64, 'b', 64);
    label64[64] = '\0';
    /* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 */
    snprintf(name253, sizeof(name253), "%s.%s.%s.%.61s", label63, label63, label63, label63);
    snprintf(name254, sizeof(name254), "%s.%s.%s.%.62s", label63, label63, label63, label63);
    snprintf(name253dot, sizeof(name253dot), "%s.", name253);
}

static void run_norm_cases(const struct norm_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct norm_case *c = &cases[i];
        char out[CB_NAME_MAX + 1];
        struct cb_err err;
        size_t len = c->len ? c->len : strlen(c->in);

        memset(out, 'X', sizeof(out));
        memset(&err, 0, sizeof(err));
        int rc = cb_name_normalize(c->in, len, c->flags, out, &err);
        if (rc != c->want)
            fail_msg("%s: cb_name_normalize returned %d, want %d (%s)", c->what, rc, c->want,
                     err.msg);
        if (c->want == 0) {
            if (strcmp(out, c->out) != 0)
                fail_msg("%s: normalised to '%s', want '%s'", c->what, out, c->out);
            continue;
        }
        if (err.code != c->want || err.msg[0] == '\0')
            fail_msg("%s: err not filled (code %d, msg '%s')", c->what, err.code, err.msg);
        if (c->hint != NULL && strstr(err.msg, c->hint) == NULL)
            fail_msg("%s: message '%s' does not mention '%s'", c->what, err.msg, c->hint);
    }
}

static void test_normalize_folds_case_and_strips_one_trailing_dot(void **state)
{
    (void)state;
    static const struct norm_case cases[] = {
        {"lower case kept", "www.example.com", 0, 0, 0, "www.example.com", NULL},
        {"upper case folded", "WWW.Example.COM", 0, 0, 0, "www.example.com", NULL},
        {"one trailing dot removed", "www.example.com.", 0, 0, 0, "www.example.com", NULL},
        {"trailing dot and case", "Example.ORG.", 0, 0, 0, "example.org", NULL},
        {"single label", "localhost", 0, 0, 0, "localhost", NULL},
        {"digits and hyphen inside", "a-1.b2.example", 0, 0, 0, "a-1.b2.example", NULL},
        {"underscore allowed", "_acme-challenge.Example.com", 0, 0, 0,
         "_acme-challenge.example.com", NULL},
        {"len limits the input", "www.example.com.trailing", 15, 0, 0, "www.example.com", NULL},
        {"xn-- A-label input kept", "XN--BCHER-KVA.example", 0, 0, 0, "xn--bcher-kva.example",
         NULL},
    };
    run_norm_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_normalize_refuses_empty_names_and_labels(void **state)
{
    (void)state;
    static const struct norm_case cases[] = {
        {"empty", "", 0, 0, CB_EINVAL, NULL, "empty"},
        {"dot alone", ".", 0, 0, CB_EINVAL, NULL, "empty"},
        {"two trailing dots", "www.example.com..", 0, 0, CB_EINVAL, NULL, "empty label"},
        {"two dots in a row", "www..example.com", 0, 0, CB_EINVAL, NULL, "empty label"},
        {"leading dot", ".example.com", 0, 0, CB_EINVAL, NULL, "empty label"},
        {"empty with flags", "", 0, I | W, CB_EINVAL, NULL, "empty"},
    };
    /* An explicit empty length is the empty name, whatever the buffer holds. */
    char out[CB_NAME_MAX + 1];
    struct cb_err err = {0};
    assert_int_equal(cb_name_normalize("abc", 0, 0, out, &err), CB_EINVAL);
    assert_int_equal(err.code, CB_EINVAL);
    run_norm_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_normalize_enforces_label_and_name_lengths(void **state)
{
    (void)state;
    char l63[80], l64[80], nm253[300], nm254[300], nm253dot[300];

    make_long_names();
    snprintf(l63, sizeof(l63), "%s.example", label63);
    snprintf(l64, sizeof(l64), "%s.example", label64);
    snprintf(nm253, sizeof(nm253), "%s", name253);
    snprintf(nm254, sizeof(nm254), "%s", name254);
    snprintf(nm253dot, sizeof(nm253dot), "%s", name253dot);
    assert_int_equal(strlen(nm253), 253);
    assert_int_equal(strlen(nm254), 254);

    const struct norm_case cases[] = {
        {"63-byte label", l63, 0, 0, 0, l63, NULL},
        {"64-byte label", l64, 0, 0, CB_EINVAL, NULL, "63"},
        {"64-byte last label",
         "example.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 0, 0,
         CB_EINVAL, NULL, "63"},
        {"253 bytes", nm253, 0, 0, 0, nm253, NULL},
        {"253 bytes and a trailing dot", nm253dot, 0, 0, 0, nm253, NULL},
        {"254 bytes", nm254, 0, 0, CB_EINVAL, NULL, "253"},
        {"254 bytes with IDN flag", nm254, 0, I | W, CB_EINVAL, NULL, "253"},
    };
    run_norm_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_normalize_refuses_bad_characters_and_hyphens(void **state)
{
    (void)state;
    static const struct norm_case cases[] = {
        {"leading hyphen", "-www.example.com", 0, 0, CB_EINVAL, NULL, "'-'"},
        {"trailing hyphen", "www-.example.com", 0, 0, CB_EINVAL, NULL, "'-'"},
        {"hyphen in last label end", "www.example.com-", 0, 0, CB_EINVAL, NULL, "'-'"},
        {"hyphen alone", "-", 0, 0, CB_EINVAL, NULL, "'-'"},
        {"NUL byte inside", "www\0evil.com", 12, 0, CB_EINVAL, NULL, "NUL"},
        {"NUL byte at the end", "www.example.com\0", 16, 0, CB_EINVAL, NULL, "NUL"},
        {"NUL byte with IDN",
         "b\xc3\xbc"
         "cher\0.example",
         12, I, CB_EINVAL, NULL, "NUL"},
        {"space", "www example.com", 0, 0, CB_EINVAL, NULL, "0x20"},
        {"at sign", "user@example.com", 0, 0, CB_EINVAL, NULL, "0x40"},
        {"colon", "example.com:443", 0, 0, CB_EINVAL, NULL, NULL},
        {"slash", "example.com/x", 0, 0, CB_EINVAL, NULL, NULL},
        {"control character", "exa\tmple.com", 0, 0, CB_EINVAL, NULL, NULL},
    };
    run_norm_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_normalize_converts_non_ascii_only_with_idn(void **state)
{
    (void)state;
    static const struct norm_case cases[] = {
        {"non-ASCII refused without IDN",
         "b\xc3\xbc"
         "cher.example",
         0, 0, CB_EINVAL, NULL, "ASCII"},
        {"non-ASCII refused with only WILDCARD",
         "b\xc3\xbc"
         "cher.example",
         0, W, CB_EINVAL, NULL, "ASCII"},
        {"U-label to A-label",
         "b\xc3\xbc"
         "cher.example",
         0, I, 0, "xn--bcher-kva.example", NULL},
        {"U-label with trailing dot",
         "b\xc3\xbc"
         "cher.example.",
         0, I, 0, "xn--bcher-kva.example", NULL},
        {"upper-case U-label folded",
         "B\xc3\x9c"
         "CHER.Example",
         0, I, 0, "xn--bcher-kva.example", NULL},
        {"ASCII unchanged with IDN", "WWW.example.com", 0, I, 0, "www.example.com", NULL},
        {"IDN wildcard",
         "*.b\xc3\xbc"
         "cher.example",
         0, I | W, 0, "*.xn--bcher-kva.example", NULL},
        {"IDN wildcard refused without WILDCARD",
         "*.b\xc3\xbc"
         "cher.example",
         0, I, CB_EINVAL, NULL, NULL},
        {"invalid UTF-8", "\xff\xfe.example", 0, I, CB_EINVAL, NULL, NULL},
        {"IDN with empty label",
         "b\xc3\xbc"
         "cher..example",
         0, I, CB_EINVAL, NULL, NULL},
    };
    run_norm_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_normalize_idn_result_longer_than_253_is_refused(void **state)
{
    (void)state;
    /* Five labels of "u-umlaut" and 45 letters: each A-label fits in 63 bytes, the
     * whole name does not fit in 253; it is refused, never truncated. */
    char in[1024];
    size_t n = 0;
    for (int l = 0; l < 5; l++) {
        in[n++] = (char)0xc3;
        in[n++] = (char)0xbc;
        memset(in + n, 'a', 45);
        n += 45;
        in[n++] = '.';
    }
    memcpy(in + n, "example", 8);
    char out[CB_NAME_MAX + 1];
    struct cb_err err = {0};
    assert_int_equal(cb_name_normalize(in, strlen(in), I, out, &err), CB_EINVAL);
    assert_true(err.msg[0] != '\0');
}

static void test_normalize_accepts_wildcard_only_as_whole_first_label(void **state)
{
    (void)state;
    static const struct norm_case cases[] = {
        {"wildcard with flag", "*.Example.COM", 0, W, 0, "*.example.com", NULL},
        {"wildcard with trailing dot", "*.example.com.", 0, W, 0, "*.example.com", NULL},
        {"wildcard with both flags", "*.example.com", 0, W | I, 0, "*.example.com", NULL},
        {"wildcard refused without flag", "*.example.com", 0, 0, CB_EINVAL, NULL, "'*'"},
        {"wildcard refused with only IDN", "*.example.com", 0, I, CB_EINVAL, NULL, "'*'"},
        {"star alone", "*", 0, W, CB_EINVAL, NULL, NULL},
        {"star dot", "*.", 0, W, CB_EINVAL, NULL, NULL},
        {"star in the middle", "a.*.b", 0, W, CB_EINVAL, NULL, "'*'"},
        {"partial-label wildcard", "*foo.example.com", 0, W, CB_EINVAL, NULL, "'*'"},
        {"partial-label wildcard suffix", "foo*.example.com", 0, W, CB_EINVAL, NULL, "'*'"},
        {"two wildcards", "*.*.example.com", 0, W, CB_EINVAL, NULL, "'*'"},
        {"double star", "**.example.com", 0, W, CB_EINVAL, NULL, "'*'"},
        {"wildcard last", "example.*", 0, W, CB_EINVAL, NULL, "'*'"},
        {"wildcard and empty label", "*..example.com", 0, W, CB_EINVAL, NULL, "empty label"},
    };
    run_norm_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_normalize_allows_null_err(void **state)
{
    (void)state;
    char out[CB_NAME_MAX + 1];
    assert_int_equal(cb_name_normalize("bad..name", 9, 0, out, NULL), CB_EINVAL);
    assert_int_equal(cb_name_normalize("good.name", 9, 0, out, NULL), 0);
    assert_string_equal(out, "good.name");
}

struct covers_case {
    const char *cert;
    const char *host;
    bool want;
};

static void test_covers_follows_rfc6125(void **state)
{
    (void)state;
    static const struct covers_case cases[] = {
        /* exact names */
        {"www.example.com", "www.example.com", true},
        {"www.example.com", "WWW.Example.COM", true},
        {"WWW.EXAMPLE.COM", "www.example.com", true},
        {"www.example.com", "example.com", false},
        {"example.com", "www.example.com", false},
        {"www.example.com", "www.example.org", false},
        {"www.example.com", "www.example.co", false},
        {"www.example.co", "www.example.com", false},
        /* trailing dots on either side */
        {"www.example.com.", "www.example.com", true},
        {"www.example.com", "www.example.com.", true},
        {"*.example.com.", "a.example.com", true},
        {"*.example.com", "a.example.com.", true},
        {"*.example.com.", "a.example.com.", true},
        /* one-label wildcards */
        {"*.example.com", "a.example.com", true},
        {"*.example.com", "WWW.EXAMPLE.COM", true},
        {"*.EXAMPLE.com", "shop.example.com", true},
        {"*.example.com", "example.com", false},
        {"*.example.com", "a.b.example.com", false},
        {"*.example.com", ".example.com", false},
        {"*.example.com", "a.example.org", false},
        {"*.example.com", "aexample.com", false},
        {"*.example.com", "com", false},
        {"*.example.com", "", false},
        /* a wildcard binding name is covered by the same wildcard certificate name */
        {"*.example.com", "*.example.com", true},
        {"www.example.com", "*.example.com", false},
        /* no partial-label or misplaced wildcards */
        {"w*.example.com", "www.example.com", false},
        {"*w.example.com", "www.example.com", false},
        {"*ww.example.com", "www.example.com", false},
        {"www.*.com", "www.example.com", false},
        {"*.*.example.com", "a.b.example.com", false},
        {"*", "com", false},
        {"*", "www", false},
        {"*.", "a.", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct covers_case *c = &cases[i];
        if (cb_name_covers(c->cert, c->host) != c->want)
            fail_msg("cb_name_covers(\"%s\", \"%s\") should be %s", c->cert, c->host,
                     c->want ? "true" : "false");
    }
}

static void test_parent_drops_the_first_label(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *parent; /* NULL: none */
    } cases[] = {
        {"a.b.c", "b.c"},
        {"www.example.com", "example.com"},
        {"*.example.com", "example.com"},
        {"example.com", "com"},
        {"com", NULL},
        {"com.", NULL},
        {"", NULL},
        {".com", "com"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *p = cb_name_parent(cases[i].name);
        if (cases[i].parent == NULL && p != NULL)
            fail_msg("cb_name_parent(\"%s\") = \"%s\", want NULL", cases[i].name, p);
        if (cases[i].parent != NULL && (p == NULL || strcmp(p, cases[i].parent) != 0))
            fail_msg("cb_name_parent(\"%s\") = \"%s\", want \"%s\"", cases[i].name,
                     p ? p : "(null)", cases[i].parent);
    }
    /* The parent points into the name: no copy. */
    const char *name = "x.y";
    assert_ptr_equal(cb_name_parent(name), name + 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_folds_case_and_strips_one_trailing_dot),
        cmocka_unit_test(test_normalize_refuses_empty_names_and_labels),
        cmocka_unit_test(test_normalize_enforces_label_and_name_lengths),
        cmocka_unit_test(test_normalize_refuses_bad_characters_and_hyphens),
        cmocka_unit_test(test_normalize_converts_non_ascii_only_with_idn),
        cmocka_unit_test(test_normalize_idn_result_longer_than_253_is_refused),
        cmocka_unit_test(test_normalize_accepts_wildcard_only_as_whole_first_label),
        cmocka_unit_test(test_normalize_allows_null_err),
        cmocka_unit_test(test_covers_follows_rfc6125),
        cmocka_unit_test(test_parent_drops_the_first_label),
    };
    return cmocka_run_group_tests_name("name", tests, NULL, NULL);
}
