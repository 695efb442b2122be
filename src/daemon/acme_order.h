/*
 * One ACME order for one managed binding, from start to a bound certificate or a
 * recorded failure: run by the manager on a thread of its own (it blocks on the CA, on
 * the DNS hook and on the self-check), never on a serving loop. Everything it learns
 * goes into the store, where the workers, the admin page and `show acme` see it.
 */
#ifndef CB_DAEMON_ACME_ORDER_H
#define CB_DAEMON_ACME_ORDER_H

#include "binding/binding.h"
#include "daemon/fleet_node.h"

#include <stdbool.h>
#include <stdint.h>

#define CB_ACME_HOOK_TIMEOUT_S 120 /* a DNS hook that has not exited by then is killed */

struct cb_acme_job {
    /* In: */
    char state_dir[CB_PATH_MAX + 1];
    char key[CB_KEY_TEXT_MAX]; /* the managed binding */
    const volatile int *abort; /* set on SIGTERM: stop at the next step */
    /* A fleet node: the fleet store (its writes go to etcd) and its key, else NULL. The
     * order runs only under the binding's lock, and only if, after catching up with etcd,
     * it is still due. */
    const char *store_url, *store_key;
    char probe_host[64];                /* where the self-check asks this serve ("" : 127.0.0.1) */
    char node_id[CB_FLEET_NODE_ID_MAX]; /* a fleet node's presence id (fleet_node.h) */
    /* Out, for the manager's log line: */
    bool ok;
    bool skipped; /* a fleet node found the lock held elsewhere, or nothing due any more */
    char thumb[CB_THUMB_LEN + 1]; /* the certificate now bound */
    int64_t not_after, renew_after, next_attempt;
    char error[1024]; /* why it failed, with the CA's problem document */
};

/* Runs the order described by o (borrowed) and fills its results. Thread-safe: it opens
 * its own store connection. */
void cb_acme_job_run(struct cb_acme_job *o);

#endif
