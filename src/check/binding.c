/*
 * binding.c: the check of one binding, for `add|update sslcert`: the findings it brings
 * about, found with a few store lookups (its certificate, the bindings of its port)
 * rather than a pass over every binding, and told in check's own words (finding.h).
 */
#include "check/dual.h"
#include "check/finding.h"
#include "svcuser/svcuser.h"

#include <stdlib.h>
#include <string.h>

/* unknown-cert and key-unusable (unless key_known) for one certificate of b; *row is
 * filled when found (*found), to be cleared by the caller. */
static int one_cert_findings(struct cb_store *st, const struct cb_binding *b, const char *key,
                             const char *thumb, bool key_known, struct cb_findings *f,
                             struct cb_cert_row *row, bool *found, struct cb_err *err)
{
    char reasons[1][CB_PRIV_REASON];
    struct cb_user user;
    struct cb_err gerr;
    struct cb_finding *x;
    bool ok[1];
    int ret;

    *found = false;
    ret = cb_store_cert_get(st, thumb, row, &gerr);
    if (ret == CB_ENOENT) {
        x = cb_check_unknown_cert(f, key, thumb, b->key.port);
        return x == NULL || cb_check_add_binding(x, key) != 0 ? CB_ENOMEM : 0;
    }
    if (ret != 0)
        return cb_err_set(err, ret, "%s", gerr.msg);
    *found = true;
    if (key_known)
        return 0;
    bool have_user = cb_svcuser_get(st, &user, NULL) == 0;
    struct cb_svcuser_probe probe = {.cert = row->cert_path, .key = row->key_path};
    if (cb_svcuser_test(have_user ? &user : NULL, &probe, 1, ok, reasons, NULL, NULL) != 0) {
        /* not ok then, and the reason says why */
    }
    if (!ok[0]) {
        x = cb_check_key_unusable(f, row, have_user ? user.name : "", reasons[0]);
        if (x == NULL || cb_check_add_binding(x, key) != 0)
            return CB_ENOMEM;
        x->port = b->key.port;
    }
    return 0;
}

static int cert_findings(struct cb_store *st, const struct cb_binding *b, const char *key,
                         bool key_known, struct cb_findings *f, struct cb_err *err)
{
    struct cb_cert_row rows[2];
    bool found[2] = {false, false};
    char why[600];
    int ret;

    if (b->key.kind == CB_KEY_CCS || ((b->flags & CB_OPT_ACME) && b->certhash[0] == '\0'))
        return 0; /* a managed binding before its first certificate: acme-pending says so */
    ret = one_cert_findings(st, b, key, b->certhash, key_known, f, &rows[0], &found[0], err);
    if (ret == 0 && cb_binding_is_dual(b))
        ret = one_cert_findings(st, b, key, b->certhash2, key_known, f, &rows[1], &found[1], err);
    if (ret == 0 && found[0] && found[1]) {
        bool refused = cb_dual_pair_refused(&rows[0].info, &rows[1].info, why, sizeof(why));
        struct cb_finding *x = NULL;
        if (refused || !cb_dual_same_names(&rows[0].info, &rows[1].info)) {
            x = cb_check_dual_mismatch(f, key, &rows[0].info, &rows[1].info, refused ? why : NULL,
                                       b->key.port);
            if (x == NULL || cb_check_add_binding(x, key) != 0)
                ret = CB_ENOMEM;
        }
    }
    for (int i = 0; i < 2; i++)
        if (found[i])
            cb_cert_row_clear(&rows[i]);
    return ret;
}

/* The SNI and central store bindings of a port, as check.c lists them (key order). */
struct sni_bindings {
    struct cb_check_sni_list list;
    char (*keys)[CB_KEY_TEXT_MAX]; /* the first CB_CHECK_LIST_MAX, owned */
};

static int collect_sni(const struct cb_binding *o, void *arg)
{
    struct sni_bindings *s = arg;
    char key[CB_KEY_TEXT_MAX];

    cb_key_format(&o->key, key, sizeof(key));
    if (s->list.n < CB_CHECK_LIST_MAX)
        memcpy(s->keys[s->list.n], key, sizeof(key));
    cb_check_sni_list_add(&s->list, o->key.kind == CB_KEY_CCS ? key : o->key.host);
    return 0;
}

static int sni_bindings_of(struct cb_store *st, uint16_t port, struct sni_bindings *s,
                           struct cb_err *err)
{
    struct cb_binding_key ck = {.kind = CB_KEY_CCS, .port = port};
    struct cb_binding ccs;
    struct cb_err gerr;

    if ((s->keys = calloc(CB_CHECK_LIST_MAX, sizeof(*s->keys))) == NULL)
        return CB_ENOMEM;
    /* "ccs=" sorts before "hostnameport=": the order of check's snapshot. */
    int ret = cb_store_binding_get(st, &ck, &ccs, &gerr);
    if (ret == 0)
        collect_sni(&ccs, s);
    else if (ret != CB_ENOENT)
        return cb_err_set(err, ret, "%s", gerr.msg);
    return cb_store_binding_foreach_port_prefix(st, port, "hostnameport=", 0, collect_sni, s, err);
}

/* One ip-shadows-sni finding: the IP binding ip over the SNI bindings s. */
static int shadow_finding(struct cb_findings *f, const struct cb_binding_key *ip,
                          const struct sni_bindings *s)
{
    char key[CB_KEY_TEXT_MAX];

    cb_key_format(ip, key, sizeof(key));
    struct cb_finding *x =
        cb_check_ip_shadows_sni(f, key, ip->family, ip->addr, ip->port, &s->list);
    if (x == NULL || cb_check_add_binding(x, key) != 0)
        return CB_ENOMEM;
    for (size_t i = 0; i < s->list.n && i < CB_CHECK_LIST_MAX; i++)
        if (cb_check_add_binding(x, s->keys[i]) != 0)
            return CB_ENOMEM;
    return 0;
}

struct ip_bindings {
    struct cb_binding_key *v; /* owned */
    size_t n;
};

static int collect_ip(const struct cb_binding *o, void *arg)
{
    struct ip_bindings *ips = arg;

    if (o->key.kind != CB_KEY_IP)
        return 0; /* a wildcard IP binding is the default, which shadows nothing */
    void *nv = realloc(ips->v, (ips->n + 1) * sizeof(*ips->v));
    if (nv == NULL)
        return CB_ENOMEM;
    ips->v = nv;
    ips->v[ips->n++] = o->key;
    return 0;
}

static int shadow_findings(struct cb_store *st, const struct cb_binding *b, struct cb_findings *f,
                           struct cb_err *err)
{
    struct sni_bindings s = {0};
    struct ip_bindings ips = {0};
    enum cb_key_kind kind = b->key.kind;
    int ret = 0;

    if (kind == CB_KEY_IP) {
        if ((ret = sni_bindings_of(st, b->key.port, &s, err)) == 0 && s.list.n > 0)
            ret = shadow_finding(f, &b->key, &s);
    } else if (kind == CB_KEY_HOST || kind == CB_KEY_HOST_WILD || kind == CB_KEY_CCS) {
        ret = cb_store_binding_foreach_port_prefix(st, b->key.port, "ipport=", 0, collect_ip, &ips,
                                                   err);
        if (ret == 0 && ips.n > 0)
            ret = sni_bindings_of(st, b->key.port, &s, err);
        for (size_t i = 0; ret == 0 && i < ips.n; i++)
            ret = shadow_finding(f, &ips.v[i], &s);
    }
    free(s.keys);
    free(ips.v);
    return ret;
}

int cb_check_binding(struct cb_store *st, const struct cb_binding *b, unsigned what,
                     struct cb_findings *out, struct cb_err *err)
{
    char key[CB_KEY_TEXT_MAX];
    int ret = 0;

    memset(out, 0, sizeof(*out));
    cb_key_format(&b->key, key, sizeof(key));
    if (what & CB_CHECK_CERT)
        ret = cert_findings(st, b, key, (what & CB_CHECK_KEY_KNOWN) != 0, out, err);
    if (ret == 0 && (what & CB_CHECK_SHADOW))
        ret = shadow_findings(st, b, out, err);
    if (ret == CB_ENOMEM)
        cb_err_set(err, ret, "out of memory");
    if (ret != 0)
        cb_findings_clear(out);
    return ret;
}
