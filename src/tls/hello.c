/* hello.c: from a ClientHello to a binding (design/bindings.md section 2). */
#include "tls/hello.h"
#include "binding/sni.h"

#include <netinet/in.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/tls1.h>

/* The query's local address and port, from the address the connection reached. */
static void set_local(struct cb_resolve_query *q, const struct sockaddr_storage *local)
{
    if (local->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)local;
        q->family = AF_INET;
        memcpy(q->addr, &s->sin_addr, 4);
        q->port = ntohs(s->sin_port);
    } else {
        const struct sockaddr_in6 *s = (const void *)local;
        q->family = AF_INET6;
        memcpy(q->addr, &s->sin6_addr, 16);
        q->port = ntohs(s->sin6_port);
    }
}

/* The certificate entry a resolution serves from: its central-store file's, or its binding's. */
static const struct cb_tls_entry *entry_of(const struct cb_snapshot *snap,
                                           const struct cb_resolution *r,
                                           const struct cb_cow *bind_tls,
                                           const struct cb_tls_entry *file_tls)
{
    return r->rule == CB_RULE_CCS ? &file_tls[r->ccs - cb_snapshot_ccs_file(snap, 0)]
                                  : (const struct cb_tls_entry *)cb_cow_at(bind_tls, r->binding);
}

const struct cb_tls_entry *cb_hello_entry_for(const struct cb_snapshot *snap,
                                              const struct cb_cow *bind_tls,
                                              const struct cb_tls_entry *file_tls,
                                              const struct sockaddr_storage *local, const char *sni)
{
    struct cb_resolve_query q = {.sni = sni};
    struct cb_resolution r;

    set_local(&q, local);
    cb_resolve(snap, &q, &r);
    if (r.rule == CB_RULE_NONE || (cb_snapshot_binding(snap, r.binding)->flags & CB_OPT_REJECT))
        return NULL;
    return entry_of(snap, &r, bind_tls, file_tls);
}

/* A TLS-ALPN-01 validation for out->sni ("" when none was sent): its challenge, or why
 * there is none. Never a binding's certificate. */
static enum cb_hello_outcome choose_challenge(const struct cb_tls_challenges *challenges,
                                              struct cb_hello_choice *out)
{
    const struct cb_tls_challenge *c =
        out->sni[0] ? cb_tls_challenges_find(challenges, out->sni, (int64_t)time(NULL)) : NULL;

    out->alert = SSL_AD_NO_APPLICATION_PROTOCOL;
    if (out->sni[0] == '\0') {
        out->error = "acme-tls/1 offered without a server_name";
        return CB_HELLO_NO_CHALLENGE;
    }
    if (c == NULL) {
        out->error = "acme-tls/1 offered for a name with no pending challenge";
        return CB_HELLO_NO_CHALLENGE;
    }
    if ((out->error = cb_tls_challenge_error(c)) != NULL)
        return CB_HELLO_NO_CHALLENGE;
    out->challenge = c;
    return CB_HELLO_CHALLENGE;
}

enum cb_hello_outcome
cb_hello_choose(SSL *ssl, const struct cb_snapshot *snap, const struct cb_cow *bind_tls,
                const struct cb_tls_entry *file_tls, const struct cb_tls_challenges *challenges,
                const struct sockaddr_storage *local, bool defer_load, struct cb_hello_choice *out)
{
    const unsigned char *ext;
    size_t ext_len;
    struct cb_resolve_query q = {0};
    struct cb_resolution r;

    out->sni[0] = '\0';
    out->b = NULL;
    out->tls = NULL;
    out->error = NULL;
    out->challenge = NULL;
    out->loaded_now = false;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) == 1) {
        if (cb_sni_parse(ext, ext_len, out->sni) != 0) {
            out->sni[0] = '\0';
            out->alert = SSL_AD_UNRECOGNIZED_NAME;
            return CB_HELLO_BAD_SNI;
        }
        q.sni = out->sni;
    }
    /* An ACME validation (RFC 8737 section 3) is answered before, and apart from, the
     * bindings: a managed binding waiting for its first certificate has nothing to serve. */
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                  &ext_len) == 1 &&
        cb_tls_acme_offer(ext, ext_len) == CB_ACME_OFFER_ONLY)
        return choose_challenge(challenges, out);
    set_local(&q, local);
    cb_resolve(snap, &q, &r);
    if (r.rule == CB_RULE_NONE) {
        out->alert = q.sni ? SSL_AD_UNRECOGNIZED_NAME : SSL_AD_HANDSHAKE_FAILURE;
        return CB_HELLO_NO_BINDING;
    }
    out->binding = r.binding;
    out->b = cb_snapshot_binding(snap, r.binding);
    out->tls = entry_of(snap, &r, bind_tls, file_tls);
    if (out->b->flags & CB_OPT_REJECT) {
        out->alert = SSL_AD_HANDSHAKE_FAILURE;
        return CB_HELLO_REJECTED;
    }
    if (defer_load && cb_tls_entry_untried(out->tls))
        return CB_HELLO_UNPARSED;
    if ((out->error = cb_tls_entry_load(out->tls, &out->loaded_now)) != NULL) {
        out->alert = SSL_AD_INTERNAL_ERROR;
        return CB_HELLO_UNUSABLE;
    }
    return CB_HELLO_CHOSEN;
}
