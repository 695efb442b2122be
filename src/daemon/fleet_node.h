/*
 * A fleet node's side of `serve` (design section 8): the replica in --state kept up to date
 * from etcd by a follow thread in the manager, and what start-up does when etcd is down.
 * Workers see nothing of this: a change from etcd reaches them through the replica's
 * change log, as a local command's does.
 */
#ifndef CB_DAEMON_FLEET_NODE_H
#define CB_DAEMON_FLEET_NODE_H

#include <certbind/certbind.h>

#include <stdbool.h>

#define CB_FLEET_BACKOFF_MIN_MS 500
#define CB_FLEET_BACKOFF_MAX_MS 30000

/*
 * Start-up, in the master as the service user: one sync of the replica in state_dir with
 * the fleet store url (key_path: the store key file). Logs fleet_synced; when etcd does not
 * answer and the node has a replica, logs fleet_unreachable (serving=replica, its age) and
 * returns 0 with *unreachable set; with no replica at all, fails (CB_EIO) saying so:
 * nothing could be served.
 */
int cb_fleet_node_startup(const char *state_dir, const char *url, const char *key_path,
                          bool *unreachable, struct cb_err *err) CB_MUST_CHECK;

struct cb_fleet_node;

/*
 * Starts the follow thread (the manager's): its own connection to the replica, then
 * sync + follow until stopped. etcd unreachable: logs fleet_unreachable once, retries with
 * jittered exponential backoff (CB_FLEET_BACKOFF_MIN_MS doubling to _MAX_MS), and logs
 * fleet_reconnected with the revision once caught up (also when start-up found etcd
 * unreachable: `unreachable`). Owned *out: cb_fleet_node_stop.
 */
int cb_fleet_node_start(const char *state_dir, const char *url, const char *key_path,
                        bool unreachable, struct cb_fleet_node **out,
                        struct cb_err *err) CB_MUST_CHECK;
/* Stops the thread (within the watch's 500 ms stop check or a backoff wait), frees n. */
void cb_fleet_node_stop(struct cb_fleet_node *n);

#endif
