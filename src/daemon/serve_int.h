/*
 * What the processes of `certbind serve` share: the options every child starts
 * from, and each kind of child's entry point. Private to src/daemon.
 *
 * The master (supervisor.c) forks three kinds of children and supervises them:
 *  - workers (worker.c): serve TLS on the bound endpoints, nothing else;
 *  - the manager (manager.c): background work that waits on the outside world or
 *    writes the store (linked certificate files today); workers never do it;
 *  - the admin process (admin/), with --admin: metrics and the status page.
 * A child tells the master it is ready by writing 'R' on its ready pipe, or that it
 * cannot start by writing 'F' and exiting with CB_EXIT_FATAL. A worker whose first build
 * is long (10^6 bindings, a cold disk) writes 'P' at most every CB_PROGRESS_EVERY_MS while
 * it goes on: the master's start-up deadline counts from the last sign of progress, not
 * from the start, and it extends systemd's start timeout as well.
 */
#ifndef CB_DAEMON_SERVE_INT_H
#define CB_DAEMON_SERVE_INT_H

#include "net/server.h"

#include <stdbool.h>

#define CB_PROGRESS_EVERY_MS 1000

/* A child's exit status for "cannot run, do not start me again". */
#define CB_EXIT_FATAL 3

struct cb_serve_opts {
    char state_dir[CB_PATH_MAX + 1];
    struct cb_server_config cfg; /* each worker sets cfg.worker (and hand-off) in its copy */
    int workers;
    struct cb_metrics *stats; /* shared counters when --admin is given, else NULL */
    /* Certificate affinity: worker i takes passed connections from handoff[i][0]; any
     * worker passes one to i through handoff[i][1]. Held by the master for restarts. */
    int (*handoff)[2];
    int *handoff_tx;
    int admin_fd;            /* the admin port's listening socket, or -1 */
    size_t cert_cache_bytes; /* each worker's share of --cert-cache-mb */
    /* The serve lock (STATE/serve.lock) is ours: `acme renew` sees a serve, and this one's
     * manager obtains certificates (a second serve on the same folder does not). */
    bool acme_owner;
    struct cb_iplisten iplisten; /* --iplisten, node-local */
    /* A fleet node (--store etcd://…): the manager keeps the replica in state_dir up to date
     * from it; "" without. store_key: the --store-key file, "" none. */
    char store_url[1024];
    char store_key[CB_PATH_MAX + 1];
    bool fleet_unreachable;  /* start-up could not reach etcd: serving the replica as it was */
    int64_t ticket_period_s; /* the manager rotates the session ticket keys this often */
};

/* A worker's life, in the forked child: returns its exit status. */
int cb_worker_main(struct cb_serve_opts *opts, int index, int ready_fd);
/* The manager's life, in the forked child: returns its exit status. */
int cb_manager_main(const struct cb_serve_opts *opts, int ready_fd);

/*
 * The master: starts every child, restarts the ones that die (with backoff), takes
 * SIGTERM/SIGINT/SIGHUP, talks to systemd. admin_addr: for the log, or NULL. Returns 0 after a
 * clean stop, or a CB_E* code with err filled when the service could not start or cannot go on.
 */
int cb_supervise(struct cb_serve_opts *opts, const char *admin_addr,
                 struct cb_err *err) CB_MUST_CHECK;

#endif
