/*
 * PROXY protocol headers (HAProxy's spec, v1 text and v2 binary) that tell the
 * backend who the client is and what the TLS session was.
 */
#ifndef CB_NET_PROXY_H
#define CB_NET_PROXY_H

#include <certbind/certbind.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* v2 TLV types (PP2_TYPE_*) and the SSL sub-types used. */
#define CB_PP2_TYPE_ALPN 0x01
#define CB_PP2_TYPE_AUTHORITY 0x02
#define CB_PP2_TYPE_SSL 0x20
#define CB_PP2_SUBTYPE_SSL_VERSION 0x21
#define CB_PP2_SUBTYPE_SSL_CN 0x22
#define CB_PP2_SUBTYPE_SSL_CIPHER 0x23
#define CB_PP2_CLIENT_SSL 0x01
#define CB_PP2_CLIENT_CERT_CONN 0x02
#define CB_PP2_CLIENT_CERT_SESS 0x04
/* certbind's own TLV (custom range 0xE0-0xEF): the client certificate, DER. */
#define CB_PP2_TYPE_CLIENT_CERT_DER 0xE0

struct cb_proxy_info {
    struct sockaddr_storage src; /* the client */
    struct sockaddr_storage dst; /* the local address it connected to */
    const char *sni;             /* or NULL */
    const unsigned char *alpn;   /* or NULL */
    size_t alpn_len;
    const char *version;   /* "TLSv1.3" */
    const char *cipher;    /* "TLS_AES_128_GCM_SHA256" */
    bool client_cert;      /* a client certificate was presented: on this connection, or
                            * on the TLS session it resumes (PP2_CLIENT_CERT_SESS) */
    bool client_cert_conn; /* ... on this connection itself (PP2_CLIENT_CERT_CONN) */
    bool client_verified;  /* ... and verified: the SSL TLV's verify field is 0 only then */
    const char *client_cn; /* its subject CN, or NULL */
    const unsigned char *client_der;
    size_t client_der_len;
};

/* Writes a v1 line ("PROXY TCP4 … \r\n", at most 107 bytes) into buf. Returns its
 * length, or CB_EINVAL when size is too small. */
int cb_proxy_v1(const struct cb_proxy_info *pi, char *buf, size_t size) CB_MUST_CHECK;
/* Writes a v2 header with ALPN, AUTHORITY (SNI) and SSL TLVs (version, cipher, client
 * CN; the client certificate when it fits). The SSL TLV's client field has
 * PP2_CLIENT_SSL, and PP2_CLIENT_CERT_SESS / _CONN only for a certificate presented;
 * its verify field is 0 only for a certificate presented and verified, else 1.
 * Returns its length, or CB_EINVAL. */
int cb_proxy_v2(const struct cb_proxy_info *pi, unsigned char *buf, size_t size) CB_MUST_CHECK;

#endif
