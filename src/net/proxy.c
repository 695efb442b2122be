/* proxy.c: PROXY protocol v1 and v2 header writers. */
#include "net/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Address family of both ends, or 0 when they differ or are not IP. */
static int family_of(const struct cb_proxy_info *pi)
{
    int f = pi->src.ss_family;
    return f == pi->dst.ss_family && (f == AF_INET || f == AF_INET6) ? f : 0;
}

int cb_proxy_v1(const struct cb_proxy_info *pi, char *buf, size_t size)
{
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    int f = family_of(pi);
    int n;

    if (f == AF_INET) {
        const struct sockaddr_in *a = (const void *)&pi->src, *b = (const void *)&pi->dst;
        inet_ntop(AF_INET, &a->sin_addr, s, sizeof(s));
        inet_ntop(AF_INET, &b->sin_addr, d, sizeof(d));
        n = snprintf(buf, size, "PROXY TCP4 %s %s %u %u\r\n", s, d, ntohs(a->sin_port),
                     ntohs(b->sin_port));
    } else if (f == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&pi->src, *b = (const void *)&pi->dst;
        inet_ntop(AF_INET6, &a->sin6_addr, s, sizeof(s));
        inet_ntop(AF_INET6, &b->sin6_addr, d, sizeof(d));
        n = snprintf(buf, size, "PROXY TCP6 %s %s %u %u\r\n", s, d, ntohs(a->sin6_port),
                     ntohs(b->sin6_port));
    } else {
        n = snprintf(buf, size, "PROXY UNKNOWN\r\n");
    }
    return n < 0 || (size_t)n >= size ? CB_EINVAL : n;
}

struct writer {
    unsigned char *buf;
    size_t size, len;
    bool overflow;
};

static void put(struct writer *w, const void *p, size_t n)
{
    if (w->len + n > w->size) {
        w->overflow = true;
        return;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void put_u8(struct writer *w, unsigned v)
{
    unsigned char b = (unsigned char)v;
    put(w, &b, 1);
}

static void put_u16(struct writer *w, size_t v)
{
    unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    put(w, b, 2);
}

static void put_tlv(struct writer *w, unsigned type, const void *p, size_t n)
{
    put_u8(w, type);
    put_u16(w, n);
    put(w, p, n);
}

int cb_proxy_v2(const struct cb_proxy_info *pi, unsigned char *buf, size_t size)
{
    struct writer w = {.buf = buf, .size = size};
    int f = family_of(pi);

    put(&w, v2_sig, sizeof(v2_sig));
    put_u8(&w, 0x21); /* version 2, PROXY command */
    put_u8(&w, f == AF_INET ? 0x11 : f == AF_INET6 ? 0x21 : 0x00);
    size_t len_at = w.len;
    put_u16(&w, 0); /* length, filled in below */
    if (f == AF_INET) {
        const struct sockaddr_in *a = (const void *)&pi->src, *b = (const void *)&pi->dst;
        put(&w, &a->sin_addr, 4);
        put(&w, &b->sin_addr, 4);
        put(&w, &a->sin_port, 2);
        put(&w, &b->sin_port, 2);
    } else if (f == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&pi->src, *b = (const void *)&pi->dst;
        put(&w, &a->sin6_addr, 16);
        put(&w, &b->sin6_addr, 16);
        put(&w, &a->sin6_port, 2);
        put(&w, &b->sin6_port, 2);
    }
    if (pi->alpn != NULL && pi->alpn_len > 0)
        put_tlv(&w, CB_PP2_TYPE_ALPN, pi->alpn, pi->alpn_len);
    if (pi->sni != NULL)
        put_tlv(&w, CB_PP2_TYPE_AUTHORITY, pi->sni, strlen(pi->sni));

    /* PP2_TYPE_SSL: client flags, verify result, then sub-TLVs. */
    size_t ssl_at = w.len;
    put_u8(&w, CB_PP2_TYPE_SSL);
    put_u16(&w, 0);
    unsigned client = CB_PP2_CLIENT_SSL;
    if (pi->client_cert)
        client |= CB_PP2_CLIENT_CERT_SESS | (pi->client_cert_conn ? CB_PP2_CLIENT_CERT_CONN : 0);
    put_u8(&w, client);
    /* verify: 0 says "a certificate was presented and verified" (the spec, and design
     * section 9): anything else, no certificate included, is not 0. */
    uint32_t verify = htonl(pi->client_cert && pi->client_verified ? 0u : 1u);
    put(&w, &verify, 4);
    if (pi->version != NULL)
        put_tlv(&w, CB_PP2_SUBTYPE_SSL_VERSION, pi->version, strlen(pi->version));
    if (pi->cipher != NULL)
        put_tlv(&w, CB_PP2_SUBTYPE_SSL_CIPHER, pi->cipher, strlen(pi->cipher));
    if (pi->client_cn != NULL)
        put_tlv(&w, CB_PP2_SUBTYPE_SSL_CN, pi->client_cn, strlen(pi->client_cn));
    if (w.overflow)
        return CB_EINVAL;
    size_t ssl_len = w.len - ssl_at - 3;
    buf[ssl_at + 1] = (unsigned char)(ssl_len >> 8);
    buf[ssl_at + 2] = (unsigned char)ssl_len;
    /* The certificate itself only when it fits: the rest of the header must not suffer. */
    if (pi->client_der != NULL && pi->client_der_len > 0 &&
        w.len + 3 + pi->client_der_len <= size && w.len + 3 + pi->client_der_len - 16 <= 0xffff)
        put_tlv(&w, CB_PP2_TYPE_CLIENT_CERT_DER, pi->client_der, pi->client_der_len);
    if (w.overflow || w.len - 16 > 0xffff)
        return CB_EINVAL;
    buf[len_at] = (unsigned char)((w.len - 16) >> 8);
    buf[len_at + 1] = (unsigned char)(w.len - 16);
    return (int)w.len;
}
