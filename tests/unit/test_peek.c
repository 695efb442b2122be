/*
 * test_peek.c: the server_name of a ClientHello read from a peek (cb_peek_sni),
 * on ClientHellos that OpenSSL's own client writes, on every prefix of them, and on
 * damaged ones. The reader only picks a worker; what it must never do is read
 * outside the bytes it is given or name a host the client did not send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "net/peek.h"

/* The first flight of an OpenSSL client: its ClientHello record(s). Owned by the caller. */
static unsigned char *client_hello(const char *sni, int max_version, size_t *len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    if (max_version)
        SSL_CTX_set_max_proto_version(ctx, max_version);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    BIO *rd = BIO_new(BIO_s_mem()), *wr = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rd, wr);
    if (sni != NULL)
        assert_int_equal(SSL_set_tlsext_host_name(ssl, sni), 1);
    assert_int_equal(SSL_connect(ssl), -1); /* waits for the server */
    char *data;
    long n = BIO_get_mem_data(wr, &data);
    assert_true(n > 5);
    unsigned char *out = malloc((size_t)n);
    assert_non_null(out);
    memcpy(out, data, (size_t)n);
    *len = (size_t)n;
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return out;
}

/* What the reader says of buf[0..len), on a copy of exactly that size (so ASan sees
 * any read past the end), with the name when there is one. */
static enum cb_peek peek(const unsigned char *buf, size_t len, char name[256])
{
    unsigned char *copy = malloc(len ? len : 1);
    const unsigned char *n = NULL;
    size_t nl = 0;
    assert_non_null(copy);
    memcpy(copy, buf, len);
    enum cb_peek r = cb_peek_sni(copy, len, &n, &nl);
    name[0] = '\0';
    if (r == CB_PEEK_SNI) {
        assert_true(n >= copy && n + nl <= copy + len);
        assert_true(nl >= 1 && nl <= 255);
        memcpy(name, n, nl);
        name[nl] = '\0';
    } else {
        assert_null(n);
    }
    free(copy);
    return r;
}

static void test_reads_the_name_openssl_sends(void **state)
{
    static const char *const names[] = {"www.example.com", "a.b", "xn--bcher-kva.example",
                                        "site00001.bench.test", "x"};
    static const int versions[] = {0, TLS1_2_VERSION};
    char name[256];
    (void)state;
    for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            size_t len;
            unsigned char *ch = client_hello(names[i], versions[v], &len);
            assert_int_equal(peek(ch, len, name), CB_PEEK_SNI);
            assert_string_equal(name, names[i]);
            free(ch);
        }
    }
}

static void test_a_long_name_is_read_whole(void **state)
{
    char want[254], name[256];
    size_t len;
    (void)state;
    /* 63.63.63.61 = 253 characters, the longest host name */
    memset(want, 'a', 253);
    want[63] = want[127] = want[191] = '.';
    want[253] = '\0';
    unsigned char *ch = client_hello(want, 0, &len);
    assert_int_equal(peek(ch, len, name), CB_PEEK_SNI);
    assert_string_equal(name, want);
    free(ch);
}

static void test_no_server_name_is_no_sni(void **state)
{
    char name[256];
    size_t len;
    (void)state;
    unsigned char *ch = client_hello(NULL, 0, &len);
    assert_int_equal(peek(ch, len, name), CB_PEEK_NO_SNI);
    free(ch);
}

static void test_every_prefix_asks_for_more(void **state)
{
    char name[256];
    size_t len;
    (void)state;
    unsigned char *ch = client_hello("www.example.com", 0, &len);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(peek(ch, n, name), CB_PEEK_MORE);
    free(ch);
}

static void test_wanted_is_the_whole_first_record(void **state)
{
    size_t len;
    (void)state;
    unsigned char *ch = client_hello("www.example.com", 0, &len);
    for (size_t n = 0; n < 5; n++)
        assert_int_equal(cb_peek_wanted(ch, n), 5);
    for (size_t n = 5; n <= len; n++)
        assert_int_equal(cb_peek_wanted(ch, n), len); /* one record: all of it */
    free(ch);
}

static void test_bytes_after_the_record_do_not_matter(void **state)
{
    char name[256];
    size_t len;
    (void)state;
    unsigned char *ch = client_hello("www.example.com", 0, &len);
    unsigned char *more = malloc(len + 100);
    assert_non_null(more);
    memcpy(more, ch, len);
    memset(more + len, 0xff, 100);
    assert_int_equal(peek(more, len + 100, name), CB_PEEK_SNI);
    assert_string_equal(name, "www.example.com");
    free(more);
    free(ch);
}

static void test_what_is_not_a_client_hello_is_unknown(void **state)
{
    char name[256];
    size_t len;
    (void)state;
    unsigned char *ch = client_hello("www.example.com", 0, &len);
    unsigned char *bad = malloc(len);
    assert_non_null(bad);

    static const char http[] = "GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n";
    assert_int_equal(peek((const unsigned char *)http, sizeof(http) - 1, name), CB_PEEK_UNKNOWN);
    assert_int_equal(peek((const unsigned char *)"G", 1, name), CB_PEEK_UNKNOWN);
    static const unsigned char sslv2[] = {0x80, 0x2e, 0x01, 0x00, 0x02};
    assert_int_equal(peek(sslv2, sizeof(sslv2), name), CB_PEEK_UNKNOWN);

    memcpy(bad, ch, len);
    bad[0] = 23; /* application data, not handshake */
    assert_int_equal(peek(bad, len, name), CB_PEEK_UNKNOWN);
    memcpy(bad, ch, len);
    bad[1] = 2; /* not TLS's major version */
    assert_int_equal(peek(bad, 2, name), CB_PEEK_UNKNOWN);
    memcpy(bad, ch, len);
    bad[5] = 2; /* a server_hello */
    assert_int_equal(peek(bad, len, name), CB_PEEK_UNKNOWN);
    memcpy(bad, ch, len);
    bad[3] = bad[4] = 0; /* an empty record */
    assert_int_equal(peek(bad, len, name), CB_PEEK_UNKNOWN);
    memcpy(bad, ch, len);
    bad[3] = 0x40; /* 16 384 + 1: over the record limit */
    bad[4] = 0x01;
    assert_int_equal(peek(bad, len, name), CB_PEEK_UNKNOWN);
    memcpy(bad, ch, len);
    bad[6] = 0x01; /* the message goes on in a later record: not followed */
    assert_int_equal(peek(bad, len, name), CB_PEEK_UNKNOWN);
    free(bad);
    free(ch);
}

/* A ClientHello record built by hand: header, fixed fields, then the extensions block. */
static size_t build(unsigned char *out, const unsigned char *ext, size_t ext_len, bool with_ext)
{
    unsigned char body[600];
    size_t b = 0;
    body[b++] = 3;
    body[b++] = 3;
    memset(body + b, 0x11, 32); /* random */
    b += 32;
    body[b++] = 0; /* session id */
    body[b++] = 0;
    body[b++] = 2; /* one cipher suite */
    body[b++] = 0x13;
    body[b++] = 0x01;
    body[b++] = 1; /* compression: null */
    body[b++] = 0;
    if (with_ext) {
        body[b++] = (unsigned char)(ext_len >> 8);
        body[b++] = (unsigned char)ext_len;
        memcpy(body + b, ext, ext_len);
        b += ext_len;
    }
    size_t rec = 4 + b;
    out[0] = 22;
    out[1] = 3;
    out[2] = 1;
    out[3] = (unsigned char)(rec >> 8);
    out[4] = (unsigned char)rec;
    out[5] = 1;
    out[6] = 0;
    out[7] = (unsigned char)(b >> 8);
    out[8] = (unsigned char)b;
    memcpy(out + 9, body, b);
    return 9 + b;
}

static void test_hand_made_extensions(void **state)
{
    unsigned char rec[700];
    char name[256];
    (void)state;

    /* No extensions block at all (TLS 1.2 allows it). */
    size_t n = build(rec, NULL, 0, false);
    assert_int_equal(peek(rec, n, name), CB_PEEK_NO_SNI);

    /* Another extension first, then a server_name list whose first entry is not a
     * host_name: not followed (the handshake refuses it too: binding/sni.h). */
    static const unsigned char two[] = {
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d, /* supported_groups */
        0x00, 0x00, 0x00, 0x0c, 0x00, 0x0a,             /* server_name, list 10 */
        0x07, 0x00, 0x01, 'z',                          /* type 7: skipped */
        0x00, 0x00, 0x03, 'a',  '.',  'b',              /* host_name "a.b" */
    };
    n = build(rec, two, sizeof(two), true);
    assert_int_equal(peek(rec, n, name), CB_PEEK_UNKNOWN);
    /* The same without the other entry: the name. */
    static const unsigned char one[] = {
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d, /* supported_groups */
        0x00, 0x00, 0x00, 0x08, 0x00, 0x06,             /* server_name, list 6 */
        0x00, 0x00, 0x03, 'a',  '.',  'b',              /* host_name "a.b" */
    };
    n = build(rec, one, sizeof(one), true);
    assert_int_equal(peek(rec, n, name), CB_PEEK_SNI);
    assert_string_equal(name, "a.b");

    /* An empty host name, an extension longer than its block, a list longer than its
     * extension, trailing bytes inside server_name: all unknown, none read past. */
    static const unsigned char empty[] = {0x00, 0x00, 0x00, 0x05, 0x00, 0x03, 0x00, 0x00, 0x00};
    n = build(rec, empty, sizeof(empty), true);
    assert_int_equal(peek(rec, n, name), CB_PEEK_UNKNOWN);
    static const unsigned char over[] = {0x00, 0x00, 0x00, 0x40, 0x00, 0x03, 0x00, 0x00, 0x01};
    n = build(rec, over, sizeof(over), true);
    assert_int_equal(peek(rec, n, name), CB_PEEK_UNKNOWN);
    static const unsigned char list_over[] = {0x00, 0x00, 0x00, 0x06, 0x00,
                                              0x09, 0x00, 0x00, 0x01, 'a'};
    n = build(rec, list_over, sizeof(list_over), true);
    assert_int_equal(peek(rec, n, name), CB_PEEK_UNKNOWN);
    static const unsigned char trailing[] = {0x00, 0x00, 0x00, 0x08, 0x00, 0x04,
                                             0x00, 0x00, 0x01, 'a',  0x00, 0x00};
    n = build(rec, trailing, sizeof(trailing), true);
    assert_int_equal(peek(rec, n, name), CB_PEEK_UNKNOWN);

    /* A server_name list with no host_name entry: not followed either. */
    static const unsigned char other_only[] = {0x00, 0x00, 0x00, 0x06, 0x00,
                                               0x04, 0x05, 0x00, 0x01, 'q'};
    n = build(rec, other_only, sizeof(other_only), true);
    assert_int_equal(peek(rec, n, name), CB_PEEK_UNKNOWN);

    /* Extensions without a server_name. */
    static const unsigned char none[] = {0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d};
    n = build(rec, none, sizeof(none), true);
    assert_int_equal(peek(rec, n, name), CB_PEEK_NO_SNI);

    /* A truncated fixed part: the session id claims more than there is. */
    n = build(rec, none, sizeof(none), true);
    rec[9 + 34] = 0xff;
    assert_int_equal(peek(rec, n, name), CB_PEEK_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_the_name_openssl_sends),
        cmocka_unit_test(test_a_long_name_is_read_whole),
        cmocka_unit_test(test_no_server_name_is_no_sni),
        cmocka_unit_test(test_every_prefix_asks_for_more),
        cmocka_unit_test(test_wanted_is_the_whole_first_record),
        cmocka_unit_test(test_bytes_after_the_record_do_not_matter),
        cmocka_unit_test(test_what_is_not_a_client_hello_is_unknown),
        cmocka_unit_test(test_hand_made_extensions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
