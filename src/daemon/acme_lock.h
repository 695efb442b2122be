/*
 * ACME in a fleet (design section 8): one node orders a given certificate at a time. The
 * lock is the etcd key PREFIX/lock/acme/<binding key>, created only when absent, under a
 * lease that a thread keeps alive while the order runs; a node that dies lets it expire
 * (CB_ACME_LOCK_TTL_S), and release revokes it at once.
 */
#ifndef CB_DAEMON_ACME_LOCK_H
#define CB_DAEMON_ACME_LOCK_H

#include <certbind/certbind.h>

#include <stdbool.h>

#define CB_ACME_LOCK_TTL_S 30

struct cb_acme_lock;

/*
 * Takes the lock of binding `key` in the fleet store url, naming holder (this node) as
 * its value. *elsewhere true (and *out NULL, return 0) when another node holds it.
 * Owned *out: cb_acme_lock_release. CB_EIO when etcd does not answer.
 */
int cb_acme_lock_take(const char *url, const char *key, const char *holder,
                      struct cb_acme_lock **out, bool *elsewhere, struct cb_err *err) CB_MUST_CHECK;
/* Stops the keepalive, revokes the lease (the key goes with it), frees l. NULL: nothing. */
void cb_acme_lock_release(struct cb_acme_lock *l);

#endif
