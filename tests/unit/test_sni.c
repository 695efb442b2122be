/*
 * test_sni.c: the one reading of a ClientHello's server_name (cb_sni_find,
 * cb_sni_normalize, cb_sni_parse) that the handshake and the worker-choosing peek share:
 * which extension bodies hold a name, and which names are host names in the form the
 * resolver compares.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "binding/sni.h"

/* A server_name body: list length, then entries as given (type, length, bytes). */
static size_t body(unsigned char *out, const unsigned char *entries, size_t n, int delta)
{
    size_t list = n + (size_t)delta;
    out[0] = (unsigned char)(list >> 8);
    out[1] = (unsigned char)list;
    memcpy(out + 2, entries, n);
    return 2 + n;
}

static size_t entry(unsigned char *out, unsigned type, const char *name, size_t len)
{
    out[0] = (unsigned char)type;
    out[1] = (unsigned char)(len >> 8);
    out[2] = (unsigned char)len;
    memcpy(out + 3, name, len);
    return 3 + len;
}

/* ext (len bytes) is malformed, and the outputs are left alone. */
static void refused(const unsigned char *ext, size_t len)
{
    const unsigned char *keep = (const unsigned char *)"x", *name = keep;
    size_t name_len = 99;

    if (cb_sni_find(ext, len, &name, &name_len) != CB_EINVAL)
        fail_msg("a body of %zu bytes was accepted", len);
    assert_ptr_equal(name, keep);
    assert_int_equal(name_len, 99);
}

static void test_extension_bodies(void **state)
{
    unsigned char e[700], ext[800];
    const unsigned char *name;
    size_t n, len, name_len;
    char big[300];
    (void)state;

    /* One host_name entry filling the list: the name, pointing into the body. */
    n = entry(e, 0, "www.example.com", 15);
    len = body(ext, e, n, 0);
    assert_int_equal(cb_sni_find(ext, len, &name, &name_len), 0);
    assert_ptr_equal(name, ext + 5);
    assert_int_equal(name_len, 15);
    /* 255 bytes is the longest name the extension may carry. */
    memset(big, 'a', sizeof(big));
    n = entry(e, 0, big, 255);
    len = body(ext, e, n, 0);
    assert_int_equal(cb_sni_find(ext, len, &name, &name_len), 0);
    assert_int_equal(name_len, 255);

    /* Everything else is malformed. */
    refused(ext, 0);          /* empty */
    refused(ext, 1);          /* half a length */
    len = body(ext, e, 0, 0); /* an empty list */
    refused(ext, len);
    n = entry(e, 0, big, 256); /* a name over 255 bytes */
    refused(ext, body(ext, e, n, 0));
    n = entry(e, 0, "", 0); /* an empty name */
    refused(ext, body(ext, e, n, 0));
    n = entry(e, 1, "a.test", 6); /* not a host_name */
    refused(ext, body(ext, e, n, 0));
    n = entry(e, 7, "z", 1); /* another type first, then a host_name */
    n += entry(e + n, 0, "a.b", 3);
    refused(ext, body(ext, e, n, 0));
    n = entry(e, 0, "a.b", 3); /* two host_names */
    n += entry(e + n, 0, "c.d", 3);
    refused(ext, body(ext, e, n, 0));
    n = entry(e, 0, "a.test", 6);
    refused(ext, body(ext, e, n, 2));  /* a list longer than the body */
    refused(ext, body(ext, e, n, -2)); /* shorter than the body */
    len = body(ext, e, n, 0);
    ext[4] = 7; /* a name longer than the list */
    refused(ext, len);
    ext[4] = 6;
    refused(ext, len - 1); /* the body cut short */
}

static void test_names_are_normalised_as_bindings_are(void **state)
{
    static const struct {
        const char *in;
        size_t len;       /* 0: strlen */
        const char *want; /* NULL: refused */
    } cases[] = {
        {"www.example.com", 0, "www.example.com"},
        {"WWW.Example.COM", 0, "www.example.com"},
        {"www.example.com.", 0, "www.example.com"},
        {"xn--bcher-kva.example", 0, "xn--bcher-kva.example"},
        {"a_b.example", 0, "a_b.example"},
        {"localhost", 0, "localhost"},
        /* not host names */
        {"b\xc3\xbc"
         "cher.example",
         0, NULL}, /* on the wire only A-labels */
        {"*.example.com", 0, NULL},
        {"a..b", 0, NULL},
        {".", 0, NULL},
        {"-a.example", 0, NULL},
        {"a b.example", 0, NULL},
        {"a.test\0", 7, NULL},
        {"www.example.com..", 0, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[CB_NAME_MAX + 1];
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        int ret = cb_sni_normalize((const unsigned char *)cases[i].in, len, out);
        if (cases[i].want == NULL && ret != CB_EINVAL)
            fail_msg("'%s': accepted as '%s'", cases[i].in, out);
        if (cases[i].want != NULL && (ret != 0 || strcmp(out, cases[i].want) != 0))
            fail_msg("'%s': %d '%s', want '%s'", cases[i].in, ret, ret == 0 ? out : "",
                     cases[i].want);
    }
}

static void test_length_limits(void **state)
{
    char name[300], out[CB_NAME_MAX + 1];
    (void)state;

    /* 253 bytes (labels of 63) is the longest name; with its trailing dot, 254 bytes. */
    memset(name, 'a', sizeof(name));
    for (size_t i = 63; i < sizeof(name); i += 64)
        name[i] = '.';
    assert_int_equal(cb_sni_normalize((const unsigned char *)name, 253, out), 0);
    assert_int_equal(strlen(out), 253);
    name[253] = '.';
    assert_int_equal(cb_sni_normalize((const unsigned char *)name, 254, out), 0);
    assert_int_equal(strlen(out), 253);
    name[253] = 'a';
    assert_int_equal(cb_sni_normalize((const unsigned char *)name, 254, out), CB_EINVAL);
    /* A label of 64 bytes. */
    memset(name, 'a', 64);
    memcpy(name + 64, ".test", 5);
    assert_int_equal(cb_sni_normalize((const unsigned char *)name, 69, out), CB_EINVAL);
}

static void test_parse_is_find_then_normalise(void **state)
{
    unsigned char e[300], ext[320];
    char out[CB_NAME_MAX + 1];
    (void)state;

    size_t n = entry(e, 0, "API.Example.com.", 16);
    size_t len = body(ext, e, n, 0);
    assert_int_equal(cb_sni_parse(ext, len, out), 0);
    assert_string_equal(out, "api.example.com");
    n = entry(e, 0, "*.example.com", 13);
    len = body(ext, e, n, 0);
    assert_int_equal(cb_sni_parse(ext, len, out), CB_EINVAL);
    n = entry(e, 1, "api.example.com", 15);
    len = body(ext, e, n, 0);
    assert_int_equal(cb_sni_parse(ext, len, out), CB_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extension_bodies),
        cmocka_unit_test(test_names_are_normalised_as_bindings_are),
        cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_parse_is_find_then_normalise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
