/*
 * TLS-ALPN-01 (RFC 8737) on the serving side: the pending challenges of a worker's
 * runtime, parsed from the store's PEM into certificate and key, the rule that tells an
 * ACME validation's ClientHello from any other, and the ALPN choice that goes with it.
 *
 * The rule: a ClientHello whose ALPN extension offers exactly one protocol, acme-tls/1,
 * is a validation. It gets the challenge certificate of its server_name, and the server
 * selects acme-tls/1; without a pending challenge for that name it fails (alert
 * no_application_protocol), never served another certificate. Every other ClientHello
 * (no ALPN, h2, http/1.1, or acme-tls/1 among others) is an ordinary client: it never
 * sees a challenge certificate, and acme-tls/1 is never selected for it.
 */
#ifndef CB_TLS_CHALLENGE_H
#define CB_TLS_CHALLENGE_H

#include "store/challenge.h"
#include "tls/ctx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CB_ACME_TLS_ALPN "acme-tls/1"

/* What a ClientHello's ALPN extension offers, as far as TLS-ALPN-01 goes. */
enum cb_acme_offer {
    CB_ACME_OFFER_NONE,  /* no ALPN, or no acme-tls/1 in it (or malformed: OpenSSL refuses) */
    CB_ACME_OFFER_ONLY,  /* exactly one protocol, acme-tls/1: a validation */
    CB_ACME_OFFER_MIXED, /* acme-tls/1 among others: an ordinary client */
};

/* ext: the extension's body as sent (a 2-byte length, then length-prefixed names),
 * borrowed; NULL when the ClientHello has none. Pure. */
enum cb_acme_offer cb_tls_acme_offer(const unsigned char *ext, size_t len);

/* The ALPN choice for one connection (the select callback's rule, kept pure for tests). */
enum cb_alpn_result {
    CB_ALPN_SELECTED, /* *out, *out_len: a name inside `in` */
    CB_ALPN_NONE,     /* nothing in common: the handshake goes on without ALPN */
    CB_ALPN_FATAL,    /* a challenge connection not offering acme-tls/1 alone: refuse */
};
/*
 * in/in_len: the client's protocol list (length-prefixed names, without the list's own
 * 2-byte length), borrowed. challenge: the connection is being served a challenge
 * certificate: acme-tls/1 is selected if it is the one protocol offered, else FATAL.
 * Otherwise the first of the server's preferences (h2 when `h2`, then http/1.1) that the
 * client offers; never acme-tls/1.
 */
enum cb_alpn_result cb_tls_alpn_choose(bool challenge, bool h2, const unsigned char *in,
                                       size_t in_len, const unsigned char **out,
                                       unsigned char *out_len);

/* One challenge of a set: its name, certificate and key, or why it cannot be served. */
struct cb_tls_challenge;
/*
 * A runtime's pending challenges: immutable once made, reference-counted (one worker,
 * one thread: a plain count), shared by the runtimes derived from one another until the
 * store's challenges change.
 */
struct cb_tls_challenges;

/*
 * Parses v[0..n) (borrowed; the PEM is not kept) into an owned set with refcount 1 in
 * *out. A challenge that does not parse, whose key does not match, that lacks the
 * acmeIdentifier extension or does not name its server name stays in the set with the
 * reason (cb_tls_challenge_error): its validations fail, and say why. Only running out of
 * memory fails the whole (CB_ENOMEM; *out untouched).
 */
int cb_tls_challenges_new(const struct cb_challenge *v, size_t n, struct cb_tls_challenges **out,
                          struct cb_err *err) CB_MUST_CHECK;
struct cb_tls_challenges *cb_tls_challenges_ref(struct cb_tls_challenges *s);
/* Drops one reference; frees at zero (OpenSSL cleanses the keys). NULL is a no-op. */
void cb_tls_challenges_unref(struct cb_tls_challenges *s);
size_t cb_tls_challenges_count(const struct cb_tls_challenges *s); /* NULL: 0 */
/* The i-th challenge (0 <= i < count), in name order; borrowed from s. */
const struct cb_tls_challenge *cb_tls_challenges_at(const struct cb_tls_challenges *s, size_t i);
/* The challenge for `name` (normalised) not expired at `now`; NULL when none (s may be
 * NULL). Borrowed from s. One binary search; nothing allocated. */
const struct cb_tls_challenge *cb_tls_challenges_find(const struct cb_tls_challenges *s,
                                                      const char *name, int64_t now);
const char *cb_tls_challenge_name(const struct cb_tls_challenge *c);
/* Why c cannot be served (borrowed), or NULL when it can. */
const char *cb_tls_challenge_error(const struct cb_tls_challenge *c);

/*
 * Serves c (cb_tls_challenge_error NULL) on ssl, inside the ClientHello callback: its
 * certificate and key, and a mark that makes the ALPN callback select acme-tls/1.
 * CB_ETLS when the TLS library refuses them.
 */
int cb_tls_apply_challenge(SSL *ssl, const struct cb_tls_challenge *c) CB_MUST_CHECK;
/* Whether ssl is being served a challenge certificate (cb_tls_apply_challenge). */
bool cb_tls_is_challenge(SSL *ssl);
/* The alert that refuses a validation without a pending challenge: no_application_protocol. */
int cb_tls_alert_no_application_protocol(void);

#endif
