/* cmd_resolve.c: `resolve`: which binding answers a ClientHello, and why. */
#include "binding/hostport.h"
#include "cli/cli.h"
#include "svcuser/svcuser.h"

#include <string.h>

#include <jansson.h>

static const char *rule_story(enum cb_rule r)
{
    switch (r) {
    case CB_RULE_IP:
        return "rule 1: an IP binding on exactly this address and port (it wins over any SNI "
               "binding)";
    case CB_RULE_SNI_EXACT:
        return "rule 2: an SNI binding with exactly this name on this port";
    case CB_RULE_SNI_WILDCARD:
        return "rule 3: an SNI wildcard binding (*.parent) on this port";
    case CB_RULE_CCS:
        return "rule 4: a central store binding on this port, by file name";
    case CB_RULE_WILDCARD_IP:
        return "rule 5: a wildcard IP binding on this port";
    case CB_RULE_NONE:
        break;
    }
    return "rule 6: nothing matches";
}

/* The certificate of a ccs file: its thumbprint, and whether its key is usable. */
static int ccs_cert(const char *path, char *thumb, char *reason, size_t size)
{
    struct cb_cert_bundle *b = NULL;
    struct cb_cert_info info;
    struct cb_err err = {0};
    int ret = cb_cert_bundle_load(path, NULL, NULL, &b, &err);

    if (ret == 0 && (ret = cb_cert_bundle_info(b, &info, &err)) == 0) {
        snprintf(thumb, CB_THUMB_LEN + 1, "%s", info.thumbprint);
        ret = cb_key_file_safe(path, &err); /* serve refuses it the same way */
        cb_cert_info_clear(&info);
    }
    cb_cert_bundle_free(b);
    snprintf(reason, size, "%s", ret == 0 ? "ok" : err.msg);
    return ret;
}

/* A binding's two certificates: usable when both are (first_ok: the first one's result,
 * whose reason is in reason); else reason names the certificate at fault. */
static bool pair_usable(struct cb_store *st, const struct cb_snap_binding *b, bool first_ok,
                        char *reason, size_t size)
{
    char why[1024];

    if (!first_ok) {
        snprintf(why, sizeof(why), "%s", reason);
        snprintf(reason, size, "certificate %s: %.900s", b->certhash, why);
        return false;
    }
    if (cb_svcuser_key_usable(st, b->certhash2, why, sizeof(why)) == 0)
        return true;
    snprintf(reason, size, "certificate %s: %.900s", b->certhash2, why);
    return false;
}

int cb_cmd_resolve(struct cb_cli *cli)
{
    static const char *const allowed[] = {"ip", "port", "sni", NULL};
    const char *ip = cb_cli_opt(cli, "ip"), *port = cb_cli_opt(cli, "port");
    const char *sni = cb_cli_opt(cli, "sni");
    struct cb_resolve_query q = {0};
    struct cb_resolution r;
    struct cb_snapshot *snap = NULL;
    struct cb_store *st = NULL;
    char name[CB_NAME_MAX + 1], thumb[CB_THUMB_LEN + 1] = "", reason[1024] = "";
    const struct cb_snap_binding *b = NULL;
    bool usable = false;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0)
        return ret;
    if (ip == NULL || port == NULL)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "give the local address and port: certbind resolve ip=ADDR port=N "
                          "[sni=NAME]");
    struct cb_hostport addr;
    struct cb_err perr;
    if (cb_host_parse(ip, 0, &addr, NULL, &perr) != 0)
        return cb_err_set(&cli->err, CB_EINVAL, "ip=%s: %s", ip, perr.msg);
    q.family = addr.family;
    memcpy(q.addr, addr.addr, sizeof(q.addr));
    if (cb_port_parse(port, strlen(port), &q.port) != 0)
        return cb_err_set(&cli->err, CB_EINVAL, "port=%s: give a number from 1 to 65535", port);
    if (sni != NULL) {
        struct cb_err nerr;
        if (cb_name_normalize(sni, strlen(sni), CB_NAME_IDN, name, &nerr) != 0)
            return cb_err_set(&cli->err, CB_EINVAL, "sni=%s: %s", sni, nerr.msg);
        q.sni = name;
    }
    if ((ret = cb_cli_open_store(cli, CB_STORE_READ, &st)) != 0 && ret != CB_ENOENT)
        return ret;
    if (st != NULL && (ret = cb_store_load_snapshot(st, &snap, &cli->err)) != 0)
        goto out_close;
    if (snap != NULL)
        cb_resolve(snap, &q, &r);
    else
        r.rule = CB_RULE_NONE;
    if (r.rule != CB_RULE_NONE) {
        b = cb_snapshot_binding(snap, r.binding);
        if (r.rule == CB_RULE_CCS) {
            usable = ccs_cert(r.ccs->path, thumb, reason, sizeof(reason)) == 0;
        } else if ((b->flags & CB_OPT_ACME) && b->certhash[0] == '\0') {
            usable = false;
            snprintf(reason, sizeof(reason),
                     "a managed binding (acme=enable) without a certificate yet: serve has not "
                     "obtained one (see 'certbind show acme')");
        } else {
            snprintf(thumb, sizeof(thumb), "%s", b->certhash);
            usable = cb_svcuser_key_usable(st, b->certhash, reason, sizeof(reason)) == 0;
            /* certhash=T1,T2: serve uses both or neither, so each must be usable */
            if (b->certhash2[0] != '\0')
                usable = pair_usable(st, b, usable, reason, sizeof(reason));
        }
        const char *ca = cb_snapshot_clientca(snap, b);
        if (usable && ca != NULL && !(b->flags & CB_OPT_REJECT))
            usable = cb_svcuser_clientca_usable(st, ca, reason, sizeof(reason)) == 0;
        if (usable && (b->flags & CB_OPT_REJECT)) {
            usable = false;
            snprintf(reason, sizeof(reason),
                     "the binding is set reject=enable: the handshake is refused with alert "
                     "handshake_failure");
        } else if (!usable) {
            size_t n = strlen(reason);
            snprintf(reason + n, sizeof(reason) - n,
                     "; the handshake fails with alert internal_error (no fall-back)");
        }
    } else {
        snprintf(reason, sizeof(reason),
                 "no binding matches; the handshake is refused with alert %s",
                 q.sni ? "unrecognized_name" : "handshake_failure");
    }
    if (cli->json) {
        json_t *o = json_object();
        json_object_set_new(o, "binding", b ? json_string(b->key_text) : json_null());
        /* certhash: what a default client gets (the ECDSA one of a pair); a binding with
         * two certificates adds certhashes, both (the contract's shape is kept otherwise) */
        json_object_set_new(o, "certhash", thumb[0] ? json_string(thumb) : json_null());
        if (thumb[0] && b != NULL && r.rule != CB_RULE_CCS && b->certhash2[0])
            json_object_set_new(o, "certhashes", json_pack("[s,s]", thumb, b->certhash2));
        json_object_set_new(o, "rule", json_string(cb_rule_name(r.rule)));
        json_object_set_new(o, "usable", json_boolean(usable));
        json_object_set_new(o, "reason", json_string(reason));
        /* Only for a binding that has one: the contract's five fields stay as they are. */
        const char *ca = b ? cb_snapshot_clientca(snap, b) : NULL;
        if (ca != NULL)
            json_object_set_new(o, "clientca", json_string(ca));
        cb_cli_print_json(o);
    } else {
        printf("Binding     : %s\n", b ? b->key_text : "(none)");
        printf("Rule        : %s (%s)\n", cb_rule_name(r.rule), rule_story(r.rule));
        if (r.rule == CB_RULE_CCS)
            printf("File        : %s\n", r.ccs->path);
        printf("Certificate : %s\n", thumb[0] ? thumb : "(none)");
        if (thumb[0] && b != NULL && r.rule != CB_RULE_CCS && b->certhash2[0])
            printf("              %s (for clients that accept only RSA)\n", b->certhash2);
        if (b != NULL && cb_snapshot_clientca(snap, b) != NULL)
            printf("Client CA   : %s (a client certificate verified against it is required)\n",
                   cb_snapshot_clientca(snap, b));
        printf("Usable      : %s\n", usable ? "yes" : "no");
        printf("Reason      : %s\n", reason);
        if (b != NULL && !q.sni)
            printf("Note        : the client sent no server name, so only rules 1 and 5 apply\n");
    }
    ret = 0;
    cb_snapshot_unref(snap);
out_close:
    cb_cli_close_store(cli, st);
    return ret;
}
