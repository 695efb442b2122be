/*
 * Session tickets under the store's shared keys (store/tickets.h, design sections 8-9):
 * an immutable, reference-counted set of keys (newest first) that a TLS context encrypts
 * new tickets with (the newest) and decrypts offered ones with (any of them, found by the
 * key name the ticket carries). A ticket under an older key resumes and the client is sent
 * a fresh one under the newest, so a client that comes back now and then never falls off
 * the end of the rotation. A worker is single-threaded: the count is a plain integer.
 */
#ifndef CB_TLS_TICKET_H
#define CB_TLS_TICKET_H

#include "store/tickets.h"
#include "tls/ctx.h"

struct cb_tls_tickets;

/* A set of the keys in k (borrowed; copied). Owned, refcount 1; NULL when out of memory. */
struct cb_tls_tickets *cb_tls_tickets_new(const struct cb_ticket_keys *k);
/* Takes one more reference; returns t. NULL is passed through. */
struct cb_tls_tickets *cb_tls_tickets_ref(struct cb_tls_tickets *t);
/* Drops one reference; at zero the keys are cleansed and freed. NULL is a no-op. */
void cb_tls_tickets_unref(struct cb_tls_tickets *t);
/* How many keys; the newest key's id (its generation), 0 when there is none. */
size_t cb_tls_tickets_count(const struct cb_tls_tickets *t);
int64_t cb_tls_tickets_generation(const struct cb_tls_tickets *t);

/* Makes ctx encrypt and decrypt its session tickets with the set given by cb_tls_tickets_use
 * (none yet: no ticket is issued nor accepted). Once per context. CB_ETLS on failure. */
int cb_tls_tickets_attach(SSL_CTX *ctx) CB_MUST_CHECK;
/* From now on ctx uses t (a reference is taken; the previous set's is dropped). t NULL: none. */
void cb_tls_tickets_use(SSL_CTX *ctx, struct cb_tls_tickets *t);
/* Whether the context of ssl has a key to issue tickets with. */
bool cb_tls_tickets_ready(SSL *ssl);

#endif
