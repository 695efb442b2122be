/*
 * The store on etcd, with the local SQLite store in --state as its replica.
 *
 * Every command and `serve` keep using the local store exactly as without a fleet. A fleet
 * adds:
 * - Push: a commit hook in the store writes the rows each transaction changed to etcd in
 *   one txn, whose compares are each touched key's mod_revision as the replica last saw it
 *   (create_revision 0 for new keys). A failed compare or an unreachable etcd rolls the
 *   SQLite transaction back: the command fails with exit 1 and nothing changes.
 * - Pull: rows coming from etcd are applied to the replica in one SQLite transaction per
 *   etcd revision, recorded in the change log exactly as a local command would (workers
 *   pick them up by the existing path), without being pushed back.
 * Node-local (never in etcd): the setting `user`.
 * Keys: PREFIX/binding/<key>, PREFIX/cert/<THUMBPRINT>, PREFIX/setting/<name>,
 * PREFIX/acme/account, PREFIX/acme/state/<binding key>, PREFIX/challenge/<name>,
 * PREFIX/ticket/<id>; lease-held and not replicated: PREFIX/lock/acme/<binding key> and
 * PREFIX/node/<id> (a node's presence, daemon/fleet_node.h).
 */
#ifndef CB_FLEET_FLEET_H
#define CB_FLEET_FLEET_H

#include <certbind/certbind.h>

#include <stdbool.h>
#include <stdint.h>

struct cb_store;
struct cb_etcd;
struct cb_fleet;

/* Opens the fleet described by url with the store key file key_path (NULL: commands that
 * need a private key fail with exit 1 and say `--store-key` is needed), bound to the local
 * replica st (borrowed, must outlive it; opened for writing). Installs the commit hook.
 * No I/O with etcd yet. Owned *out: cb_fleet_close. */
int cb_fleet_open(const char *url, const char *key_path, struct cb_store *st, struct cb_fleet **out,
                  struct cb_err *err) CB_MUST_CHECK;
void cb_fleet_close(struct cb_fleet *f); /* removes the hook */
/* Brings the replica up to etcd's current revision: from the replica's revision when etcd
 * still has it, else a full resync (rows not in etcd are removed). */
int cb_fleet_sync(struct cb_fleet *f, struct cb_err *err) CB_MUST_CHECK;
/* Blocks applying etcd changes to the replica as they come (cb_etcd_watch), until *stop;
 * on_applied (may be NULL) is called after each applied revision. Returns CB_EIO when etcd
 * cannot be reached (the caller backs off and calls cb_fleet_sync + cb_fleet_follow again). */
int cb_fleet_follow(struct cb_fleet *f, const _Atomic bool *stop,
                    void (*on_applied)(int64_t rev, void *ctx), void *ctx,
                    struct cb_err *err) CB_MUST_CHECK;
int64_t cb_fleet_revision(const struct cb_fleet *f);        /* last applied */
int64_t cb_fleet_pushed_revision(const struct cb_fleet *f); /* of this handle's last push, 0 none */
int64_t cb_fleet_synced_at(const struct cb_fleet *f);       /* epoch s of last contact, 0 never */
struct cb_etcd *cb_fleet_etcd(struct cb_fleet *f);          /* borrowed, for leases */

#endif
