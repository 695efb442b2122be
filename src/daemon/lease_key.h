/*
 * An etcd key held under a lease that a thread keeps alive (design section 8). Two uses:
 * - the lock around one fleet ACME order, PREFIX/lock/acme/<binding key>: created only when
 *   absent (exclusive), so one node orders a certificate at a time; a node that dies lets it
 *   expire within its TTL, and release revokes it at once;
 * - a fleet node's presence, PREFIX/node/<id>: put whatever is there, its value updated
 *   while it lives (the revision up to which the node serves every pending challenge); when
 *   the lease has expired (etcd was unreachable longer than the TTL) the keepalive grants a
 *   new one and puts the key again.
 */
#ifndef CB_DAEMON_LEASE_KEY_H
#define CB_DAEMON_LEASE_KEY_H

#include <certbind/certbind.h>

#include <stdbool.h>

struct cb_lease_key;

/*
 * Puts PREFIX/key (key relative to the fleet store url's prefix) = value under a new lease
 * of ttl_s seconds, kept alive by a thread of its own (its own etcd connection); the
 * strings are copied. exclusive:
 * only when the key is absent; *elsewhere true (and *out NULL, return 0) when it is held.
 * Owned *out: cb_lease_key_release. CB_EIO when etcd does not answer.
 */
int cb_lease_key_take(const char *url, const char *key, const char *value, int ttl_s,
                      bool exclusive, struct cb_lease_key **out, bool *elsewhere,
                      struct cb_err *err) CB_MUST_CHECK;
/* Puts a new value (copied) under the key's lease (a new lease when it has expired). Thread-safe
 * with the keepalive. CB_EIO when etcd does not answer (the next call tries again). */
int cb_lease_key_set(struct cb_lease_key *l, const char *value, struct cb_err *err) CB_MUST_CHECK;
/* Stops the keepalive, revokes the lease (the key goes with it), frees l. NULL: nothing. */
void cb_lease_key_release(struct cb_lease_key *l);

#endif
