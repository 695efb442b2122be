/*
 * The daemon behind `certbind serve`: what the command line asks for, and the one
 * call that runs the service until it is told to stop. The command line (cli/)
 * fills a cb_daemon_config and calls cb_daemon_run; nothing here knows of argv.
 */
#ifndef CB_DAEMON_DAEMON_H
#define CB_DAEMON_DAEMON_H

#include "binding/binding.h"
#include "net/iplisten.h"

#include <stdbool.h>
#include <stdint.h>

struct cb_daemon_config {
    char state_dir[CB_PATH_MAX + 1];
    int workers;                 /* 0: one per online core */
    int handshake_timeout_s;     /* 0: 10 s */
    int idle_timeout_s;          /* 0: 300 s */
    int grace_s;                 /* 0: 30 s; how long SIGTERM lets connections finish */
    int max_conns;               /* whole server, 0: no cap */
    int max_conns_binding;       /* per binding, 0: no cap */
    const char *admin;           /* --admin ADDR:PORT (borrowed), or NULL */
    bool admin_public;           /* allow a non-loopback admin address */
    bool no_affinity;            /* no passing of connections between workers */
    int64_t ticket_rotate_s;     /* session ticket key period, seconds; 0: 12 h */
    int cert_cache_mb;           /* parsed certificates, all workers together; 0: the default */
    const char *store_url;       /* --store etcd://… (borrowed): a fleet node; NULL: local */
    const char *store_key;       /* --store-key FILE (borrowed), or NULL */
    struct cb_iplisten iplisten; /* --iplisten: where wildcard ports listen (n 0: everywhere) */
};

/* --cert-cache-mb's default: ~35 000 parsed ECDSA certificates (7.4 KB each), so a store of
 * 10^6 names serves within 1 GB however many of them clients ask for. */
#define CB_CERT_CACHE_MB_DEFAULT 256

/*
 * Runs `certbind serve`: checks the store and the addresses, drops to the service
 * user, starts the workers, the manager and (with cfg->admin) the admin process,
 * and supervises them until SIGTERM or SIGINT. Returns 0 after a clean stop, or a
 * CB_E* code with err filled when the service could not start or could not go on
 * (every worker failed with "do not retry").
 */
int cb_daemon_run(const struct cb_daemon_config *cfg, struct cb_err *err) CB_MUST_CHECK;

#endif
