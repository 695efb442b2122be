/* cmd_serve.c: `certbind serve`: the flags become a daemon configuration. */
#include "cli/cli.h"
#include "daemon/daemon.h"

#include <stdio.h>

int cb_cmd_serve(struct cb_cli *cli)
{
    static const char *const allowed[] = {NULL};
    struct cb_daemon_config cfg = {0};
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0)
        return ret;
    if (cli->admin_public && cli->admin == NULL)
        return cb_err_set(&cli->err, CB_EINVAL, "--admin-public needs --admin ADDR:PORT");
    snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%s", cli->state_dir);
    cfg.workers = cli->workers;
    cfg.handshake_timeout_s = cli->handshake_timeout;
    cfg.idle_timeout_s = cli->idle_timeout;
    cfg.grace_s = cli->grace;
    cfg.max_conns = cli->max_conns;
    cfg.max_conns_binding = cli->max_conns_binding;
    cfg.admin = cli->admin;
    cfg.admin_public = cli->admin_public;
    cfg.no_affinity = cli->no_affinity;
    cfg.iplisten = cli->iplisten;
    cfg.store_url = cli->store_url;
    cfg.store_key = cli->store_key;
    cfg.ticket_rotate_s = cli->ticket_rotate_s;
    cfg.cert_cache_mb = cli->cert_cache_mb;
    return cb_daemon_run(&cfg, &cli->err);
}
