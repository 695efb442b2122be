/*
 * What a PROXY protocol header says about one TLS connection: its two addresses and
 * its session (filled by cb_tls_proxy_fields in tls/io.h, written by net/proxy.h). Here,
 * below both, so that tls/ needs nothing of net/.
 */
#ifndef CB_TLS_PROXY_INFO_H
#define CB_TLS_PROXY_INFO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

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

#endif
