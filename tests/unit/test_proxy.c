/*
 * test_proxy.c: the PROXY protocol v2 header's PP2_TYPE_SSL TLV (net/proxy.c), as the
 * spec and design section 9 say: the client field has PP2_CLIENT_SSL always, and
 * PP2_CLIENT_CERT_CONN / PP2_CLIENT_CERT_SESS only when a certificate was presented;
 * the verify field is 0 only when a certificate was presented and verified, non-zero
 * otherwise (no certificate included). Also the v1 line and a buffer too small.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "net/proxy.h"

static void v4(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
}

static struct cb_proxy_info info(void)
{
    struct cb_proxy_info pi;
    memset(&pi, 0, sizeof(pi));
    v4(&pi.src, "192.0.2.1", 50000);
    v4(&pi.dst, "127.0.0.1", 443);
    pi.sni = "www.example.test";
    pi.version = "TLSv1.3";
    pi.cipher = "TLS_AES_128_GCM_SHA256";
    return pi;
}

static unsigned u16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* The SSL TLV of a v2 header: its client byte and verify field. */
static void ssl_tlv(const unsigned char *b, int n, unsigned *client, uint32_t *verify)
{
    assert_true(n >= 16);
    assert_int_equal(u16(b + 14), n - 16); /* the length covers the rest exactly */
    size_t off = 16 + 12;                  /* IPv4: two addresses, two ports */
    while (off + 3 <= (size_t)n) {
        unsigned type = b[off], len = u16(b + off + 1);
        assert_true(off + 3 + len <= (size_t)n);
        if (type == CB_PP2_TYPE_SSL) {
            assert_true(len >= 5);
            *client = b[off + 3];
            uint32_t v;
            memcpy(&v, b + off + 4, 4);
            *verify = ntohl(v);
            return;
        }
        off += 3 + len;
    }
    fail_msg("no PP2_TYPE_SSL TLV");
}

static const struct {
    const char *what;
    bool cert, conn, verified;
    unsigned client;
    bool verify_zero;
} cases[] = {
    {"no certificate", false, false, false, CB_PP2_CLIENT_SSL, false},
    {"no certificate, verified said by mistake", false, false, true, CB_PP2_CLIENT_SSL, false},
    {"no certificate, on this connection said by mistake", false, true, false, CB_PP2_CLIENT_SSL,
     false},
    {"presented on this connection, not verified", true, true, false,
     CB_PP2_CLIENT_SSL | CB_PP2_CLIENT_CERT_CONN | CB_PP2_CLIENT_CERT_SESS, false},
    {"presented on this connection and verified", true, true, true,
     CB_PP2_CLIENT_SSL | CB_PP2_CLIENT_CERT_CONN | CB_PP2_CLIENT_CERT_SESS, true},
    {"resumed session that had one, verified", true, false, true,
     CB_PP2_CLIENT_SSL | CB_PP2_CLIENT_CERT_SESS, true},
    {"resumed session that had one, not verified", true, false, false,
     CB_PP2_CLIENT_SSL | CB_PP2_CLIENT_CERT_SESS, false},
};

static void test_v2_ssl_tlv_client_and_verify(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cb_proxy_info pi = info();
        unsigned char buf[1024];
        unsigned client = 0xff;
        uint32_t verify = 0xffffffffu;

        pi.client_cert = cases[i].cert;
        pi.client_cert_conn = cases[i].conn;
        pi.client_verified = cases[i].verified;
        int n = cb_proxy_v2(&pi, buf, sizeof(buf));
        ssl_tlv(buf, n, &client, &verify);
        if (client != cases[i].client)
            fail_msg("%s: client 0x%02x, want 0x%02x", cases[i].what, client, cases[i].client);
        if ((verify == 0) != cases[i].verify_zero)
            fail_msg("%s: verify %u", cases[i].what, verify);
    }
}

/* The sub-TLVs of the SSL TLV of a v2 header: type -> (offset, length); 0 length: absent. */
static void ssl_sub(const unsigned char *b, int n, unsigned type, const unsigned char **val,
                    unsigned *len)
{
    size_t off = 16 + 12;
    *val = NULL;
    *len = 0;
    while (off + 3 <= (size_t)n) {
        unsigned t = b[off], l = u16(b + off + 1);
        if (t == CB_PP2_TYPE_SSL) {
            size_t sub = off + 3 + 5, end = off + 3 + l;
            while (sub + 3 <= end) {
                unsigned st = b[sub], sl = u16(b + sub + 1);
                assert_true(sub + 3 + sl <= end);
                if (st == type) {
                    *val = b + sub + 3;
                    *len = sl;
                    return;
                }
                sub += 3 + sl;
            }
            assert_int_equal(sub, end); /* the sub-TLVs fill the SSL TLV exactly */
            return;
        }
        off += 3 + l;
    }
}

static void test_v2_ssl_sub_tlvs_version_and_client_cn(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        bool cert, verified;
        const char *cn;
    } sub_cases[] = {
        {"no certificate", false, false, NULL},
        {"verified certificate with a CN", true, true, "client.example"},
        {"unverified certificate with a CN", true, false, "any client"},
        {"certificate without a CN", true, true, NULL},
    };
    for (size_t i = 0; i < sizeof(sub_cases) / sizeof(sub_cases[0]); i++) {
        struct cb_proxy_info pi = info();
        unsigned char buf[1024];
        const unsigned char *v;
        unsigned len, client = 0;
        uint32_t verify = 0;

        pi.client_cert = pi.client_cert_conn = sub_cases[i].cert;
        pi.client_verified = sub_cases[i].verified;
        pi.client_cn = sub_cases[i].cn;
        int n = cb_proxy_v2(&pi, buf, sizeof(buf));
        ssl_tlv(buf, n, &client, &verify);
        ssl_sub(buf, n, CB_PP2_SUBTYPE_SSL_VERSION, &v, &len);
        if (v == NULL || len != 7 || memcmp(v, "TLSv1.3", 7) != 0)
            fail_msg("%s: SSL_VERSION sub-TLV missing or wrong", sub_cases[i].what);
        ssl_sub(buf, n, CB_PP2_SUBTYPE_SSL_CN, &v, &len);
        if (sub_cases[i].cn == NULL && v != NULL)
            fail_msg("%s: SSL_CN sub-TLV without a CN", sub_cases[i].what);
        if (sub_cases[i].cn != NULL &&
            (v == NULL || len != strlen(sub_cases[i].cn) || memcmp(v, sub_cases[i].cn, len) != 0))
            fail_msg("%s: SSL_CN sub-TLV missing or wrong", sub_cases[i].what);
        if ((verify == 0) != (sub_cases[i].cert && sub_cases[i].verified))
            fail_msg("%s: verify %u", sub_cases[i].what, verify);
    }
}

static void test_v2_too_small_buffer(void **state)
{
    (void)state;
    struct cb_proxy_info pi = info();
    unsigned char buf[40];
    assert_int_equal(cb_proxy_v2(&pi, buf, sizeof(buf)), CB_EINVAL);
}

static void test_v1_line(void **state)
{
    (void)state;
    struct cb_proxy_info pi = info();
    char buf[108];
    int n = cb_proxy_v1(&pi, buf, sizeof(buf));
    assert_string_equal(buf, "PROXY TCP4 192.0.2.1 127.0.0.1 50000 443\r\n");
    assert_int_equal(n, (int)strlen(buf));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2_ssl_tlv_client_and_verify),
        cmocka_unit_test(test_v2_ssl_sub_tlvs_version_and_client_cn),
        cmocka_unit_test(test_v2_too_small_buffer),
        cmocka_unit_test(test_v1_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
