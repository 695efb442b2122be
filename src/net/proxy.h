/*
 * PROXY protocol headers (HAProxy's spec, v1 text and v2 binary) that tell the
 * backend who the client is and what the TLS session was.
 */
#ifndef CB_NET_PROXY_H
#define CB_NET_PROXY_H

#include "tls/proxy_info.h"

#include <certbind/certbind.h>
#include <stddef.h>

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
