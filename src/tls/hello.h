/*
 * The one place a certificate is chosen: from a ClientHello (inside OpenSSL's
 * client hello callback) and the local address the client reached, through the
 * resolver, to the binding and its TLS context. Never another binding's
 * certificate: a binding that cannot serve fails the handshake.
 */
#ifndef CB_TLS_HELLO_H
#define CB_TLS_HELLO_H

#include "tls/challenge.h"
#include "tls/ctx.h"
#include "util/cow.h"

#include <sys/socket.h>

enum cb_hello_outcome {
    CB_HELLO_CHOSEN,       /* out->tls is loaded: serve it with cb_tls_apply_binding */
    CB_HELLO_BAD_SNI,      /* a server_name extension that is malformed or not a host name */
    CB_HELLO_NO_BINDING,   /* no rule matches */
    CB_HELLO_REJECTED,     /* the binding is set reject=enable */
    CB_HELLO_UNUSABLE,     /* the binding's certificate or key cannot be used (out->error) */
    CB_HELLO_UNPARSED,     /* defer_load: out->tls must be parsed first (cb_tls_load_begin) */
    CB_HELLO_CHALLENGE,    /* a TLS-ALPN-01 validation with a pending challenge: serve
                            * out->challenge with cb_tls_apply_challenge; no binding chosen */
    CB_HELLO_NO_CHALLENGE, /* a TLS-ALPN-01 validation that cannot be answered: no
                            * server_name, no pending challenge for it, or an unusable one
                            * (out->error); no binding chosen */
};

struct cb_hello_choice {
    char sni[CB_NAME_MAX + 1]; /* normalised server name, "" when none was sent */
    uint32_t binding;          /* index into the snapshot (unless BAD_SNI / NO_BINDING) */
    const struct cb_snap_binding *b;
    const struct cb_tls_entry *tls; /* the binding's (or ccs file's) entry */
    int alert;                      /* the TLS alert to send when not CHOSEN */
    const char *error; /* UNUSABLE, NO_CHALLENGE: why (borrowed from the entry, or static) */
    const struct cb_tls_challenge *challenge; /* CHALLENGE: borrowed from the set */
    bool loaded_now; /* this ClientHello loaded the certificate (first use) */
};

/*
 * Chooses for ssl's ClientHello: bind_tls (struct cb_tls_entry, util/cow.h) is indexed by binding,
 * file_tls by ccs file (both borrowed, as snap). local is the address the connection reached, with
 * v4-mapped IPv6 already turned into AF_INET. The first ClientHello for a
 * certificate loads it (cb_tls_entry_load), unless defer_load: then the outcome is
 * CB_HELLO_UNPARSED and the caller parses it off the loop and asks again. After
 * that, nothing is allocated.
 * A ClientHello that offers ALPN acme-tls/1 alone (tls/challenge.h) is a TLS-ALPN-01
 * validation: it is answered from challenges (borrowed; NULL: none pending, parsed
 * already) and never resolved to a binding: CHALLENGE or NO_CHALLENGE, whether or not a
 * binding exists.
 */
enum cb_hello_outcome
cb_hello_choose(SSL *ssl, const struct cb_snapshot *snap, const struct cb_cow *bind_tls,
                const struct cb_tls_entry *file_tls, const struct cb_tls_challenges *challenges,
                const struct sockaddr_storage *local, bool defer_load, struct cb_hello_choice *out);

/*
 * The certificate entry a ClientHello with server_name sni (normalised, or NULL
 * for none) reaching local would be served from, without loading it; NULL when no
 * binding matches or the binding rejects. Used to pick the worker for a connection
 * before its handshake; the handshake itself still goes through cb_hello_choose.
 */
const struct cb_tls_entry *cb_hello_entry_for(const struct cb_snapshot *snap,
                                              const struct cb_cow *bind_tls,
                                              const struct cb_tls_entry *file_tls,
                                              const struct sockaddr_storage *local,
                                              const char *sni);

#endif
