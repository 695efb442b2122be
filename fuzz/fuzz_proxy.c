/*
 * fuzz_proxy.c: the PROXY protocol header writers (v1 text, v2 binary), round trip.
 *
 * Input: byte 0 holds flags (bits 0-1: the client's family, 2-3: the local one —
 * 0 IPv4, 1 IPv6, 2 neither; bit 4 client certificate presented, bit 5 on this very
 * connection, bit 6 verified), byte 1 sizes the
 * output buffer (0: 64 KiB + 64, else byte * 4), then 16 + 16 address bytes and 2 + 2
 * port bytes, then NUL-separated fields: SNI, ALPN, TLS version, cipher, client CN,
 * and the rest as the client certificate's DER (an empty field is "absent").
 * Each header written is read back by an independent parser (HAProxy's spec):
 *  - v1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" with the same addresses and ports,
 *    or "PROXY UNKNOWN\r\n" when the families differ or are not IP; at most 107 bytes;
 *  - v2: signature, version/command, family, a length that covers exactly the
 *    addresses and TLVs, every TLV inside it, each field equal to what was given
 *    (the certificate may be left out only when it does not fit);
 *  - CB_EINVAL only when the buffer is too small for the header without the
 *    certificate.
 */
#include "fuzz_common.h"
#include "net/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>

struct fields {
    const char *f[5]; /* sni, alpn, version, cipher, cn: NULL when absent */
    const unsigned char *der;
    size_t der_len;
};

static void make_addr(int fam, const uint8_t *a, const uint8_t *p, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (fam == 0) {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        s->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&s->sin_port, p, 2);
    } else if (fam == 1) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        s->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&s->sin6_port, p, 2);
    } else {
        ss->ss_family = AF_UNIX;
    }
}

static void check_v1(const struct cb_proxy_info *pi, const char *buf, int n)
{
    char want[160], s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    int f = pi->src.ss_family == pi->dst.ss_family ? pi->src.ss_family : 0;

    FUZZ_REQUIRE(n > 0 && n <= 107 && (size_t)n == strlen(buf), buf);
    if (f == AF_INET) {
        const struct sockaddr_in *a = (const void *)&pi->src, *b = (const void *)&pi->dst;
        inet_ntop(AF_INET, &a->sin_addr, s, sizeof(s));
        inet_ntop(AF_INET, &b->sin_addr, d, sizeof(d));
        snprintf(want, sizeof(want), "PROXY TCP4 %s %s %u %u\r\n", s, d, ntohs(a->sin_port),
                 ntohs(b->sin_port));
    } else if (f == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&pi->src, *b = (const void *)&pi->dst;
        inet_ntop(AF_INET6, &a->sin6_addr, s, sizeof(s));
        inet_ntop(AF_INET6, &b->sin6_addr, d, sizeof(d));
        snprintf(want, sizeof(want), "PROXY TCP6 %s %s %u %u\r\n", s, d, ntohs(a->sin6_port),
                 ntohs(b->sin6_port));
    } else {
        snprintf(want, sizeof(want), "PROXY UNKNOWN\r\n");
    }
    FUZZ_REQUIRE(strcmp(buf, want) == 0, buf);
}

static unsigned u16(const unsigned char *p)
{
    return (unsigned)(p[0] << 8 | p[1]);
}

static bool field_is(const unsigned char *p, size_t n, const char *want)
{
    return want != NULL && strlen(want) == n && memcmp(p, want, n) == 0;
}

/* Size of the header without the certificate, as the spec lays it out. */
static size_t expected_base(const struct cb_proxy_info *pi, int f)
{
    size_t n = 16 + (f == AF_INET ? 12 : f == AF_INET6 ? 36 : 0);
    if (pi->alpn != NULL && pi->alpn_len > 0)
        n += 3 + pi->alpn_len;
    if (pi->sni != NULL)
        n += 3 + strlen(pi->sni);
    n += 3 + 5;
    if (pi->version != NULL)
        n += 3 + strlen(pi->version);
    if (pi->cipher != NULL)
        n += 3 + strlen(pi->cipher);
    if (pi->client_cn != NULL)
        n += 3 + strlen(pi->client_cn);
    return n;
}

static void check_v2(const struct cb_proxy_info *pi, const unsigned char *b, int n, size_t size)
{
    static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                          0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    int f = pi->src.ss_family == pi->dst.ss_family &&
                    (pi->src.ss_family == AF_INET || pi->src.ss_family == AF_INET6)
                ? pi->src.ss_family
                : 0;
    size_t base = expected_base(pi, f);

    if (n < 0) {
        FUZZ_REQUIRE(n == CB_EINVAL && (base > size || base - 16 > 0xffff), "refused");
        return;
    }
    FUZZ_REQUIRE((size_t)n <= size && (size_t)n >= 16, "length");
    FUZZ_REQUIRE(memcmp(b, sig, 12) == 0 && b[12] == 0x21, "signature");
    FUZZ_REQUIRE(b[13] == (f == AF_INET ? 0x11 : f == AF_INET6 ? 0x21 : 0x00), "family");
    FUZZ_REQUIRE(u16(b + 14) == (size_t)n - 16, "length field");
    size_t off = 16;
    if (f == AF_INET) {
        const struct sockaddr_in *s = (const void *)&pi->src, *d = (const void *)&pi->dst;
        FUZZ_REQUIRE(memcmp(b + 16, &s->sin_addr, 4) == 0 && memcmp(b + 20, &d->sin_addr, 4) == 0 &&
                         memcmp(b + 24, &s->sin_port, 2) == 0 &&
                         memcmp(b + 26, &d->sin_port, 2) == 0,
                     "IPv4 addresses");
        off += 12;
    } else if (f == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)&pi->src, *d = (const void *)&pi->dst;
        FUZZ_REQUIRE(
            memcmp(b + 16, &s->sin6_addr, 16) == 0 && memcmp(b + 32, &d->sin6_addr, 16) == 0 &&
                memcmp(b + 48, &s->sin6_port, 2) == 0 && memcmp(b + 50, &d->sin6_port, 2) == 0,
            "IPv6 addresses");
        off += 36;
    }
    bool seen_alpn = false, seen_sni = false, seen_ssl = false, seen_der = false;
    while (off < (size_t)n) {
        FUZZ_REQUIRE(off + 3 <= (size_t)n, "TLV header past the end");
        unsigned type = b[off], len = u16(b + off + 1);
        const unsigned char *v = b + off + 3;
        FUZZ_REQUIRE(off + 3 + len <= (size_t)n, "TLV past the end");
        if (type == CB_PP2_TYPE_ALPN) {
            FUZZ_REQUIRE(!seen_alpn && len == pi->alpn_len && memcmp(v, pi->alpn, len) == 0,
                         "ALPN");
            seen_alpn = true;
        } else if (type == CB_PP2_TYPE_AUTHORITY) {
            FUZZ_REQUIRE(!seen_sni && field_is(v, len, pi->sni), "AUTHORITY");
            seen_sni = true;
        } else if (type == CB_PP2_TYPE_SSL) {
            FUZZ_REQUIRE(!seen_ssl && len >= 5, "SSL TLV");
            seen_ssl = true;
            unsigned client = CB_PP2_CLIENT_SSL;
            if (pi->client_cert)
                client |=
                    CB_PP2_CLIENT_CERT_SESS | (pi->client_cert_conn ? CB_PP2_CLIENT_CERT_CONN : 0);
            FUZZ_REQUIRE(v[0] == client, "client flags");
            /* verify is 0 only for a certificate presented and verified. */
            bool verify_zero = v[1] == 0 && v[2] == 0 && v[3] == 0 && v[4] == 0;
            FUZZ_REQUIRE(verify_zero == (pi->client_cert && pi->client_verified), "verify");
            bool ver = false, cip = false, cn = false;
            for (size_t o = 5; o < len;) {
                FUZZ_REQUIRE(o + 3 <= len, "sub-TLV header past the end");
                unsigned st = v[o], sl = u16(v + o + 1);
                FUZZ_REQUIRE(o + 3 + sl <= len, "sub-TLV past the end");
                if (st == CB_PP2_SUBTYPE_SSL_VERSION)
                    ver = field_is(v + o + 3, sl, pi->version);
                else if (st == CB_PP2_SUBTYPE_SSL_CIPHER)
                    cip = field_is(v + o + 3, sl, pi->cipher);
                else if (st == CB_PP2_SUBTYPE_SSL_CN)
                    cn = field_is(v + o + 3, sl, pi->client_cn);
                else
                    FUZZ_REQUIRE(false, "unknown sub-TLV");
                o += 3 + sl;
            }
            FUZZ_REQUIRE(ver == (pi->version != NULL) && cip == (pi->cipher != NULL) &&
                             cn == (pi->client_cn != NULL),
                         "SSL sub-TLVs");
        } else if (type == CB_PP2_TYPE_CLIENT_CERT_DER) {
            FUZZ_REQUIRE(!seen_der && len == pi->client_der_len &&
                             memcmp(v, pi->client_der, len) == 0,
                         "certificate");
            seen_der = true;
        } else {
            FUZZ_REQUIRE(false, "unknown TLV");
        }
        off += 3 + len;
    }
    FUZZ_REQUIRE(seen_ssl && seen_alpn == (pi->alpn != NULL && pi->alpn_len > 0) &&
                     seen_sni == (pi->sni != NULL),
                 "TLVs present");
    /* The certificate is left out only when it would not fit. */
    if (pi->client_der != NULL && pi->client_der_len > 0 && !seen_der)
        FUZZ_REQUIRE(base + 3 + pi->client_der_len > size ||
                         base + 3 + pi->client_der_len - 16 > 0xffff,
                     "certificate left out though it fits");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cb_proxy_info pi = {0};
    struct fields fl = {0};
    char *copy;

    if (size < 2 + 32 + 4)
        return 0;
    uint8_t flags = data[0];
    size_t bufsize = data[1] == 0 ? 65536 + 64 : (size_t)data[1] * 4;
    make_addr(flags & 3, data + 2, data + 34, &pi.src);
    make_addr((flags >> 2) & 3, data + 18, data + 36, &pi.dst);
    pi.client_cert = (flags & 16) != 0;
    pi.client_cert_conn = (flags & 32) != 0;
    pi.client_verified = (flags & 64) != 0;

    /* The fields, each its own NUL-terminated heap copy. */
    size_t rest = size - 38;
    if ((copy = malloc(rest + 1)) == NULL)
        return 0;
    memcpy(copy, data + 38, rest);
    copy[rest] = '\0';
    size_t off = 0;
    for (int i = 0; i < 5 && off <= rest; i++) {
        size_t len = strlen(copy + off);
        fl.f[i] = len > 0 ? copy + off : NULL;
        off += len + 1;
    }
    if (off < rest) {
        fl.der = (const unsigned char *)copy + off;
        fl.der_len = rest - off;
    }
    pi.sni = fl.f[0];
    pi.alpn = (const unsigned char *)fl.f[1];
    pi.alpn_len = fl.f[1] ? strlen(fl.f[1]) : 0;
    pi.version = fl.f[2];
    pi.cipher = fl.f[3];
    pi.client_cn = fl.f[4];
    pi.client_der = fl.der;
    pi.client_der_len = fl.der_len;

    char v1[108];
    int n1 = cb_proxy_v1(&pi, v1, sizeof(v1));
    check_v1(&pi, v1, n1);

    unsigned char *v2 = malloc(bufsize);
    if (v2 != NULL) {
        int n2 = cb_proxy_v2(&pi, v2, bufsize);
        check_v2(&pi, v2, n2, bufsize);
        free(v2);
    }
    free(copy);
    return 0;
}
