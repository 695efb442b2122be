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

#include <stddef.h>
#include <stdint.h>

#define CB_FLEET_BACKOFF_MIN_MS 500
#define CB_FLEET_BACKOFF_MAX_MS 30000

/*
 * Presence: every node holds PREFIX/node/<id> under a lease of CB_FLEET_NODE_TTL_S (gone
 * within that of a node's death), valued with the etcd revision (decimal) up to which it
 * serves every pending TLS-ALPN-01 challenge: after applying a change to the challenges, the
 * node asks its own serve for each (as the ordering node does) and then updates the value.
 * The ordering node waits for every other node to reach the revision of its challenge
 * before it tells the CA, since the CA may validate against any of them.
 */
#define CB_FLEET_NODE_KEY "node/"
#define CB_FLEET_NODE_TTL_S 30
#define CB_FLEET_NODE_ID_MAX 96
#define CB_FLEET_NODE_PROBE_MS 5000 /* for this serve to answer a challenge */

/* This node's id: its host name and a hash of its state folder and machine id, so that a
 * restarted node takes its own key back ("web1-3f2a9c01b7e4"). */
void cb_fleet_node_id(const char *state_dir, char out[CB_FLEET_NODE_ID_MAX]);
/* A presence value (outside bytes): 1 to 19 decimal digits, no sign, within int64_t. 0 and
 * *rev; CB_EINVAL for anything else. */
int cb_fleet_node_parse_acked(const void *value, size_t len, int64_t *rev) CB_MUST_CHECK;

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
 * sync + follow until stopped, holding the node's presence key (probe_host: where this
 * serve answers its own challenge probes; the strings are copied). etcd unreachable: logs
 * fleet_unreachable once, retries with jittered exponential backoff (CB_FLEET_BACKOFF_MIN_MS
 * doubling to _MAX_MS), and logs fleet_reconnected with the revision once caught up (also when
 * start-up found etcd unreachable: `unreachable`). Owned *out: cb_fleet_node_stop.
 */
int cb_fleet_node_start(const char *state_dir, const char *url, const char *key_path,
                        bool unreachable, const char *probe_host, struct cb_fleet_node **out,
                        struct cb_err *err) CB_MUST_CHECK;
/* Stops the thread (within the watch's 500 ms stop check, a backoff wait, or a challenge
 * probe's 2 s), revokes the presence key (unless etcd was away at its last keepalive),
 * frees n. */
void cb_fleet_node_stop(struct cb_fleet_node *n);

#endif
