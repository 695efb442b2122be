/*
 * check.c: the pre-flight checks. One pass over the snapshot; certificate facts
 * (dates, names, key access, chain, strength) are computed once per certificate,
 * never once per binding, so 10^6 bindings sharing a few thousand certificates
 * check in seconds. The check of one binding is binding.c; the words of the findings
 * the two share are finding.c.
 */
#include "check/dual.h"
#include "check/finding.h"
#include "check/ocsp.h"
#include "store/acme.h"
#include "svcuser/svcuser.h"
#include "tls/cert.h"
#include "tls/ocsp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <time.h>

/* One per certificate of the store, so kept small (~0.5 KB with its strings, where a
 * struct cb_cert_row and a fixed reason and audit took 4 KB: 4 GB at 10^6 certificates):
 * the paths and the texts of what is wrong are allocated, the texts only when something is. */
struct cert {
    struct cb_cert_info info;   /* its strings owned */
    char *cert_path, *key_path; /* owned */
    bool used;
    size_t users;         /* bindings using it */
    uint32_t first, last; /* the first and last of them; next_cert[] links the rest (a
                           * link is a binding's index, plus n for its second certificate) */
    bool usable;
    bool stapled; /* a binding staples it: its OCSP response is judged */
    char *reason; /* owned; set when not usable */
    bool audited, chain_ok, weak;
    char *chain_error, *weak_reason; /* owned; set when the audit found that */
};

/* Certificates whose key access is tested in one child process: bounds the reasons
 * buffer (CB_PRIV_REASON bytes a probe) however many certificates the store holds. */
#define CHECK_PROBE_BATCH 4096

struct ctx {
    struct cb_findings *out;
    struct cert *certs;
    size_t n_certs, cap_certs;
    const struct cb_check_opts *opts;
    struct cb_user user;
    bool have_user;
    const char *user_name; /* the service user's, or "" */
    /* Per binding: the next binding of the same certificate (2n links: [n + b] for b's
     * second certificate), and the next SNI or ccs binding of the same port, so no
     * finding scans every binding. */
    uint32_t *next_cert, *next_sni;
    size_t n_bindings;
};

/* ---- certificates ------------------------------------------------------- */

static int collect_cert(const struct cb_cert_row *row, void *arg)
{
    struct ctx *c = arg;
    if (c->n_certs == c->cap_certs) {
        size_t cap = c->cap_certs ? c->cap_certs * 2 : 64;
        struct cert *nc = realloc(c->certs, cap * sizeof(*nc));
        if (nc == NULL)
            return CB_ENOMEM;
        c->certs = nc;
        c->cap_certs = cap;
    }
    struct cert *x = &c->certs[c->n_certs++];
    memset(x, 0, sizeof(*x));
    x->info = row->info;
    /* Take the row's strings: the walk's copy must not free them. */
    x->info.names = malloc((row->info.n_names ? row->info.n_names : 1) * sizeof(char *));
    x->info.subject = strdup(row->info.subject ? row->info.subject : "");
    x->cert_path = strdup(row->cert_path);
    x->key_path = strdup(row->key_path);
    if (x->info.names == NULL || x->info.subject == NULL || x->cert_path == NULL ||
        x->key_path == NULL) {
        x->info.n_names = 0; /* none copied yet: cert_clear frees only what is there */
        return CB_ENOMEM;
    }
    for (size_t i = 0; i < row->info.n_names; i++)
        if ((x->info.names[i] = strdup(row->info.names[i])) == NULL) {
            x->info.n_names = i;
            return CB_ENOMEM;
        }
    return 0;
}

static void cert_clear(struct cert *ce)
{
    cb_cert_info_clear(&ce->info);
    free(ce->cert_path);
    free(ce->key_path);
    free(ce->reason);
    free(ce->chain_error);
    free(ce->weak_reason);
}

static int cmp_cert(const void *a, const void *b)
{
    return strcmp(((const struct cert *)a)->info.thumbprint,
                  ((const struct cert *)b)->info.thumbprint);
}

static struct cert *find_cert(struct ctx *c, const char *thumb)
{
    struct cert key;
    size_t n = strnlen(thumb, CB_THUMB_LEN + 1);
    if (n > CB_THUMB_LEN)
        return NULL;                           /* no certificate of the store has it */
    memcpy(key.info.thumbprint, thumb, n + 1); /* thumb may be shorter: "" when none */
    if (c->n_certs == 0)
        return NULL; /* c->certs is NULL then, which bsearch must not be given */
    return bsearch(&key, c->certs, c->n_certs, sizeof(*c->certs), cmp_cert);
}

/* Key access, and central store folders, as the service user (svcuser/svcuser.h). */
static void test_access(struct ctx *c, const struct cb_svcuser_probe *probes, size_t n, bool *ok,
                        char (*reasons)[CB_PRIV_REASON])
{
    if (cb_svcuser_test(c->have_user ? &c->user : NULL, probes, n, ok, reasons, NULL, NULL) != 0)
        return; /* every probe is then not ok, and its reason says why */
}

static void fmt_date(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, size, "%Y-%m-%d", &tm);
}

/* Whether binding e staples its certificates (OCSP): what names it in an OCSP finding. */
static bool staples(const struct cb_snap_binding *e)
{
    return e->kind != CB_KEY_CCS && !(e->flags & (CB_OPT_DISABLEOCSPSTAPLING | CB_OPT_DAMAGED));
}

/*
 * The OCSP finding of certificate ce, loaded as oc (borrowed), naming the bindings that
 * staple it (the first CB_CHECK_LIST_MAX of them, in binding order).
 */
static int ocsp_finding(struct ctx *c, struct cb_store *st, const struct cb_snapshot *snap,
                        const struct cert *ce, const struct cb_ocsp_cert *oc)
{
    bool added;
    int ret = cb_check_ocsp_cert(c->out, st, oc, ce->info.thumbprint, c->opts->now, &added);

    if (ret != 0 || !added)
        return ret;
    struct cb_finding *x = &c->out->v[c->out->n - 1];
    uint32_t b = ce->first;
    size_t listed = 0;
    for (size_t u = 0; u < ce->users && listed < CB_CHECK_LIST_MAX; u++, b = c->next_cert[b]) {
        const struct cb_snap_binding *e =
            cb_snapshot_binding(snap, b >= c->n_bindings ? b - (uint32_t)c->n_bindings : b);
        if (!staples(e))
            continue;
        if (x->n_bindings == 0)
            x->port = e->port;
        if (cb_check_add_binding(x, e->key_text) != 0)
            return CB_ENOMEM;
        listed++;
    }
    return 0;
}

/* ---- the checks ----------------------------------------------------------- */

struct port_info {
    uint32_t n_sni;     /* SNI and ccs bindings on the port */
    uint32_t first_sni; /* index of the first */
    uint32_t last_sni;  /* and of the last; next_sni[] links them */
    bool any4, any6;
};

static int cert_findings(struct ctx *c, const struct cb_snapshot *snap)
{
    struct cb_findings *f = c->out;
    /* One finding per certificate fact, naming every binding that uses it. */
    for (size_t k = 0; k < c->n_certs; k++) {
        struct cert *ce = &c->certs[k];
        if (!ce->used)
            continue;
        const struct cb_cert_info *in = &ce->info;
        char d[32], names[512];
        struct cb_finding *x[6] = {0};
        int nx = 0;
        cb_check_names_text(in->names, in->n_names, names, sizeof(names));
        if (!ce->usable) {
            struct cb_cert_row row = {.info = ce->info}; /* what the finding's words need */
            snprintf(row.cert_path, sizeof(row.cert_path), "%s", ce->cert_path);
            snprintf(row.key_path, sizeof(row.key_path), "%s", ce->key_path);
            x[nx++] = cb_check_key_unusable(f, &row, c->user_name, ce->reason ? ce->reason : "");
        }
        if (in->not_after < c->opts->now) {
            fmt_date(in->not_after, d, sizeof(d));
            x[nx++] = cb_check_add(
                f, "expired", CB_SEV_ERROR, 0,
                "certificate %s (%s) expired on %s; import the renewed certificate "
                "(certbind add cert FILE) and move its bindings to it (certbind update "
                "sslcert KEY certhash=NEW)",
                in->thumbprint, names, d);
        } else if (in->not_after < c->opts->now + (int64_t)c->opts->soon_days * 86400) {
            fmt_date(in->not_after, d, sizeof(d));
            x[nx++] = cb_check_add(
                f, "expires-soon", CB_SEV_WARNING, 0,
                "certificate %s (%s) expires on %s, in %lld days; renew it and move its "
                "bindings to the new one",
                in->thumbprint, names,
                d, /* whole days left, rounded up: "in 10 days" all day long */
                (long long)((in->not_after - c->opts->now + 86399) / 86400));
        }
        if (in->not_before > c->opts->now) {
            fmt_date(in->not_before, d, sizeof(d));
            x[nx++] =
                cb_check_add(f, "not-yet-valid", CB_SEV_ERROR, 0,
                             "certificate %s (%s) is valid only from %s; clients refuse it until "
                             "then: bind the current certificate until that day",
                             in->thumbprint, names, d);
        }
        if (ce->audited && !ce->chain_ok)
            x[nx++] = cb_check_add(
                f, "chain-incomplete", CB_SEV_ERROR, 0,
                "the chain of certificate %s (%s) does not reach a trusted root (%s); "
                "import it again with its intermediate certificates: certbind add cert "
                "FULLCHAIN.pem key=FILE",
                in->thumbprint, names, ce->chain_error ? ce->chain_error : "");
        if (ce->audited && ce->weak)
            x[nx++] =
                cb_check_add(f, "weak-key", CB_SEV_WARNING, 0,
                             "certificate %s (%s) is weak: %s; replace it with an ECDSA P-256 or "
                             "RSA-2048+ certificate signed with SHA-256",
                             in->thumbprint, names, ce->weak_reason ? ce->weak_reason : "");
        for (int i = 0; i < nx; i++)
            if (x[i] == NULL)
                return CB_ENOMEM;
        if (nx == 0)
            continue;
        /* add() may have moved f->v: this certificate's findings are the last nx. */
        for (int i = 0; i < nx; i++)
            x[i] = &f->v[f->n - (size_t)nx + (size_t)i];
        /* Name the bindings (and the first one's port, for grouping). */
        uint32_t b = ce->first;
        for (size_t u = 0; u < ce->users && u < CB_CHECK_LIST_MAX; u++, b = c->next_cert[b]) {
            const struct cb_snap_binding *e =
                cb_snapshot_binding(snap, b >= c->n_bindings ? b - (uint32_t)c->n_bindings : b);
            for (int i = 0; i < nx; i++) {
                if (x[i]->n_bindings == 0)
                    x[i]->port = e->port;
                if (cb_check_add_binding(x[i], e->key_text) != 0)
                    return CB_ENOMEM;
            }
        }
    }
    return 0;
}

/* unknown-cert and name-mismatch for one certificate (thumb) of binding e; *out is the
 * certificate when it is in the store. */
static int one_binding_cert(struct ctx *c, const struct cb_snap_binding *e, const char *thumb,
                            struct cert **out)
{
    struct cb_findings *f = c->out;
    struct cert *ce = find_cert(c, thumb);

    *out = ce;
    if (ce == NULL) {
        struct cb_finding *x = cb_check_unknown_cert(f, e->key_text, thumb, e->port);
        return x == NULL || cb_check_add_binding(x, e->key_text) != 0 ? CB_ENOMEM : 0;
    }
    if (e->kind != CB_KEY_HOST && e->kind != CB_KEY_HOST_WILD)
        return 0;
    bool covered = false;
    for (size_t i = 0; i < ce->info.n_names && !covered; i++)
        covered = cb_name_covers(ce->info.names[i], e->host);
    if (covered)
        return 0;
    char names[512];
    cb_check_names_text(ce->info.names, ce->info.n_names, names, sizeof(names));
    struct cb_finding *x = cb_check_add(f, "name-mismatch", CB_SEV_ERROR, e->port,
                                        "certificate %s covers %s, not %s: clients reject it. "
                                        "Bind a certificate for the name: certbind update "
                                        "sslcert %s certhash=…",
                                        thumb, names, e->host, e->key_text);
    return x == NULL || cb_check_add_binding(x, e->key_text) != 0 ? CB_ENOMEM : 0;
}

static int binding_findings(struct ctx *c, const struct cb_snapshot *snap, size_t n,
                            struct port_info *ports)
{
    struct cb_findings *f = c->out;

    for (uint32_t b = 0; b < n; b++) {
        const struct cb_snap_binding *e = cb_snapshot_binding(snap, b);
        if (e->kind == CB_KEY_CCS || (e->flags & CB_OPT_DAMAGED)) /* store-damaged says it */
            continue;
        if ((e->flags & CB_OPT_ACME) && e->certhash[0] == '\0')
            continue; /* no certificate yet: acme-pending or acme-failing says it */
        const char *thumbs[2] = {e->certhash, e->certhash2};
        struct cert *ces[2] = {NULL, NULL};
        for (int slot = 0; slot < 2 && thumbs[slot][0] != '\0'; slot++) {
            int ret = one_binding_cert(c, e, thumbs[slot], &ces[slot]);
            if (ret != 0)
                return ret;
        }
        if (ces[0] != NULL && ces[1] != NULL) {
            const struct cb_cert_info *a = &ces[0]->info, *d = &ces[1]->info;
            char why[600];
            bool refused = cb_dual_pair_refused(a, d, why, sizeof(why));
            if (refused || !cb_dual_same_names(a, d)) {
                struct cb_finding *x =
                    cb_check_dual_mismatch(f, e->key_text, a, d, refused ? why : NULL, e->port);
                if (x == NULL || cb_check_add_binding(x, e->key_text) != 0)
                    return CB_ENOMEM;
            }
        }
    }
    /* ip-shadows-sni: an IP binding answers every client of its address first. */
    for (uint32_t b = 0; b < n; b++) {
        const struct cb_snap_binding *e = cb_snapshot_binding(snap, b);
        if (e->kind != CB_KEY_IP || ports[e->port].n_sni == 0)
            continue;
        struct cb_check_sni_list list = {0};
        uint32_t s = ports[e->port].first_sni;
        for (size_t k = 0; k < ports[e->port].n_sni && k < CB_CHECK_LIST_MAX; k++) {
            const struct cb_snap_binding *o = cb_snapshot_binding(snap, s);
            cb_check_sni_list_add(&list, o->host ? o->host : o->key_text);
            s = c->next_sni[s];
        }
        list.n = ports[e->port].n_sni; /* the rest are counted, not listed */
        struct cb_finding *x =
            cb_check_ip_shadows_sni(f, e->key_text, e->family, e->addr, e->port, &list);
        if (x == NULL || cb_check_add_binding(x, e->key_text) != 0)
            return CB_ENOMEM;
        s = ports[e->port].first_sni;
        for (size_t k = 0; k < ports[e->port].n_sni && k < CB_CHECK_LIST_MAX; k++) {
            if (cb_check_add_binding(x, cb_snapshot_binding(snap, s)->key_text) != 0)
                return CB_ENOMEM;
            s = c->next_sni[s];
        }
    }
    /* no-default-for-non-sni: a port with SNI bindings and an address where a client
     * without SNI matches nothing. */
    for (uint32_t p = 1; p < 65536; p++) {
        struct port_info *pi = &ports[p];
        if (pi->n_sni == 0 || pi->any4)
            continue;
        const char *where = pi->any6 ? "its IPv4 addresses" : "every address without an IP binding";
        const char *fix = pi->any6 ? "ipport=0.0.0.0" : "ipport=0.0.0.0";
        struct cb_finding *x = cb_check_add(
            f, "no-default-for-non-sni", CB_SEV_WARNING, (uint16_t)p,
            "port %u has SNI bindings but no default: a client that sends no server name "
            "to %s gets no certificate (handshake_failure). Add one: certbind add sslcert "
            "%s:%u certhash=…",
            p, where, fix, p);
        if (x == NULL)
            return CB_ENOMEM;
        uint32_t s = pi->first_sni;
        for (size_t listed = 0; listed < pi->n_sni && listed < CB_CHECK_LIST_MAX; listed++) {
            if (cb_check_add_binding(x, cb_snapshot_binding(snap, s)->key_text) != 0)
                return CB_ENOMEM;
            s = c->next_sni[s];
        }
    }
    return 0;
}

/* ---- managed bindings (ACME) -------------------------------------------- */

static void fmt_time(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

struct acme_ctx {
    struct ctx *c;
    bool have_account;
};

/* acme-failing: the last attempt failed; acme-pending: no certificate yet. */
static int on_acme_state(const struct cb_acme_state *s, void *arg)
{
    struct acme_ctx *ac = arg;
    struct cb_binding_key key;
    struct cb_finding *x = NULL;
    char last[32], next[32];
    uint16_t port = cb_key_parse_word(s->key, &key, NULL) == 0 ? key.port : 0;

    if (s->status == CB_ACME_FAILED) {
        fmt_time(s->last_attempt, last, sizeof(last));
        fmt_time(s->next_attempt, next, sizeof(next));
        x = cb_check_add(ac->c->out, "acme-failing", CB_SEV_ERROR, port,
                         "%s: obtaining its certificate failed at %s (%u time%s in a row): %s; "
                         "serve tries again %s%s. Fix the cause (DNS, port %u reachable from the "
                         "CA, the account) and retry now with 'certbind acme renew %s'",
                         s->key, s->last_attempt ? last : "an unknown time", s->failures,
                         s->failures == 1 ? "" : "s",
                         s->last_error[0] ? s->last_error : "no message from the CA",
                         s->next_attempt ? "at " : "soon", s->next_attempt ? next : "", port,
                         s->key);
    } else if (s->certhash[0] == '\0' && ac->have_account) {
        x = cb_check_add(ac->c->out, "acme-pending", CB_SEV_WARNING, port,
                         "%s has no certificate yet (%s): its handshakes fail until serve obtains "
                         "one; make sure 'certbind serve' runs and port %u is reachable from the "
                         "internet, and follow it with 'certbind show acme'",
                         s->key, cb_acme_status_name(s->status), port);
    } else if (s->certhash[0] == '\0') {
        x = cb_check_add(ac->c->out, "acme-pending", CB_SEV_WARNING, port,
                         "%s has no certificate yet (%s) and no ACME account is set, so serve "
                         "cannot obtain one: certbind set acme directory=URL email=ADDRESS "
                         "agreetos=yes",
                         s->key, cb_acme_status_name(s->status));
    } else {
        return 0;
    }
    return x == NULL || cb_check_add_binding(x, s->key) != 0 ? CB_ENOMEM : 0;
}

static int acme_findings(struct ctx *c, struct cb_store *st, struct cb_err *err)
{
    struct acme_ctx ac = {.c = c};
    struct cb_acme_settings a;

    ac.have_account = cb_store_acme_settings_get(st, &a, NULL) == 0;
    explicit_bzero(&a, sizeof(a));
    return cb_store_acme_state_foreach(st, on_acme_state, &ac, err);
}

/* ---- the store and the machine ------------------------------------------ */

static int on_damaged(const char *key_text, const char *reason, bool key_readable, void *arg)
{
    struct ctx *c = arg;
    struct cb_binding_key key;
    uint16_t port = key_readable && cb_key_parse_word(key_text, &key, NULL) == 0 ? key.port : 0;
    struct cb_finding *x = cb_check_add(
        c->out, "store-damaged", CB_SEV_ERROR, port,
        key_readable ? "%s: its row in the store is damaged (%s); it fails every handshake "
                       "until you delete it (certbind delete sslcert %s) and add it again"
                     : "%s: its row in the store is damaged (%s); no client can reach it; "
                       "restore the store from a backup%.0s",
        key_text, reason, key_text);
    return x == NULL || cb_check_add_binding(x, key_text) != 0 ? CB_ENOMEM : 0;
}

/* An IP binding on an address this machine does not have: its handshakes never arrive
 * (serve listens on it all the same, and serves it once the address is added). */
static int address_findings(struct ctx *c, const struct cb_snapshot *snap, size_t n)
{
    for (uint32_t b = 0; b < n; b++) {
        const struct cb_snap_binding *e = cb_snapshot_binding(snap, b);
        if (e->kind != CB_KEY_IP)
            continue;
        struct sockaddr_storage ss = {0};
        socklen_t len;
        if (e->family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            in->sin_family = AF_INET;
            memcpy(&in->sin_addr, e->addr, 4);
            len = sizeof(*in);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            in6->sin6_family = AF_INET6;
            memcpy(&in6->sin6_addr, e->addr, 16);
            len = sizeof(*in6);
        }
        int fd = socket(e->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        bool missing = bind(fd, (struct sockaddr *)&ss, len) != 0 && errno == EADDRNOTAVAIL;
        close(fd);
        if (!missing)
            continue;
        struct cb_finding *x = cb_check_add(
            c->out, "address-not-local", CB_SEV_WARNING, e->port,
            "%s: this machine has no such address, so no client reaches this binding here; "
            "add the address to an interface, or bind the certificate to a name or to "
            "0.0.0.0:%u instead",
            e->key_text, e->port);
        if (x == NULL || cb_check_add_binding(x, e->key_text) != 0)
            return CB_ENOMEM;
    }
    return 0;
}

/* clientca-unusable: a client CA file that serve could not use (missing, unreadable by the
 * service user, not PEM, no CA certificate). Every handshake on its bindings would fail:
 * an error, one finding per file, naming every binding that uses it. */
static int clientca_findings(struct ctx *c, const struct cb_snapshot *snap, size_t n)
{
    size_t nca = cb_snapshot_clientca_count(snap);
    struct cb_svcuser_probe *probes = calloc(nca + 1, sizeof(*probes));
    bool *ok = calloc(nca + 1, sizeof(*ok));
    char(*reasons)[CB_PRIV_REASON] = calloc(nca + 1, sizeof(*reasons));
    int ret = 0;

    if (probes == NULL || ok == NULL || reasons == NULL) {
        ret = CB_ENOMEM;
        goto out_free;
    }
    for (uint32_t i = 0; i < nca; i++)
        probes[i] = (struct cb_svcuser_probe){.cert = cb_snapshot_clientca_at(snap, i + 1),
                                              .clientca = true};
    test_access(c, probes, nca, ok, reasons);
    for (uint32_t i = 0; i < nca; i++) {
        if (ok[i])
            continue;
        struct cb_finding *x = NULL;
        for (uint32_t b = 0; b < n; b++) {
            const struct cb_snap_binding *e = cb_snapshot_binding(snap, b);
            if (e->clientca != i + 1)
                continue;
            if (x == NULL &&
                (x = cb_check_add(c->out, "clientca-unusable", CB_SEV_ERROR, e->port,
                                  "the client CA file %s cannot be used%s%s: %s; every handshake "
                                  "on its bindings fails until it is a readable PEM file of CA "
                                  "certificates",
                                  probes[i].cert, c->user_name[0] ? " by " : "", c->user_name,
                                  reasons[i])) == NULL) {
                ret = CB_ENOMEM;
                goto out_free;
            }
            if (cb_check_add_binding(x, e->key_text) != 0) {
                ret = CB_ENOMEM;
                goto out_free;
            }
        }
    }
out_free:
    free(probes);
    free(ok);
    free(reasons);
    return ret;
}

static int ccs_findings(struct ctx *c, const struct cb_snapshot *snap, size_t n)
{
    struct cb_findings *f = c->out;
    size_t nf = cb_snapshot_ccs_count(snap), np = 0;
    struct cb_svcuser_probe *probes = calloc(n + nf + 1, sizeof(*probes));
    bool *ok = calloc(n + nf + 1, sizeof(*ok));
    char(*reasons)[CB_PRIV_REASON] = calloc(n + nf + 1, sizeof(*reasons));
    int ret = 0;

    if (probes == NULL || ok == NULL || reasons == NULL) {
        ret = CB_ENOMEM;
        goto out_free;
    }
    /* Folders and files, tested as the service user. */
    for (uint32_t b = 0; b < n; b++) {
        const struct cb_snap_binding *e = cb_snapshot_binding(snap, b);
        if (e->kind == CB_KEY_CCS)
            probes[np++] = (struct cb_svcuser_probe){.cert = e->ccspath, .folder = true};
    }
    size_t nfolders = np;
    for (size_t i = 0; i < nf; i++)
        probes[np++].cert = cb_snapshot_ccs_file(snap, i)->path;
    test_access(c, probes, np, ok, reasons);
    np = 0;
    for (uint32_t b = 0; b < n; b++) {
        const struct cb_snap_binding *e = cb_snapshot_binding(snap, b);
        if (e->kind != CB_KEY_CCS)
            continue;
        if (!ok[np]) {
            struct cb_finding *x = cb_check_add(
                f, "ccs-missing", CB_SEV_ERROR, e->port,
                "the central store folder %s of %s is missing or unreadable%s%s; create it, "
                "or give the service user read access (chmod o+rx or chgrp)",
                e->ccspath, e->key_text, c->user_name[0] ? " by " : "", c->user_name);
            if (x == NULL || cb_check_add_binding(x, e->key_text) != 0) {
                ret = CB_ENOMEM;
                goto out_free;
            }
        }
        np++;
    }
    for (size_t i = 0; i < nf; i++) {
        const struct cb_ccs_file *cf = cb_snapshot_ccs_file(snap, i);
        const struct cb_snap_binding *e = cb_snapshot_binding(snap, cf->binding);
        struct cb_cert_bundle *bundle = NULL;
        struct cb_cert_info info;
        struct cb_err err = {0};
        struct cb_finding *x = NULL;
        if (!ok[nfolders + i]) {
            x = cb_check_add(f, "key-unusable", CB_SEV_ERROR, e->port,
                             "central store file %s (for %s) is unusable%s%s: %s; it must hold the "
                             "certificate and its unencrypted key, readable by the service user",
                             cf->path, cf->name, c->user_name[0] ? " by " : "", c->user_name,
                             reasons[nfolders + i]);
        } else if (cb_cert_bundle_load(cf->path, NULL, NULL, &bundle, &err) == 0 &&
                   cb_cert_bundle_info(bundle, &info, &err) == 0) {
            bool covered = false;
            for (size_t k = 0; k < info.n_names && !covered; k++)
                covered = cb_name_covers(info.names[k], cf->name);
            if (!covered) {
                char names[512];
                cb_check_names_text(info.names, info.n_names, names, sizeof(names));
                x = cb_check_add(
                    f, "name-mismatch", CB_SEV_ERROR, e->port,
                    "central store file %s is served for %s, but its certificate covers %s; "
                    "rename the file or replace the certificate",
                    cf->path, cf->name, names);
                if (x == NULL || cb_check_add_binding(x, e->key_text) != 0) {
                    cb_cert_info_clear(&info);
                    cb_cert_bundle_free(bundle);
                    ret = CB_ENOMEM;
                    goto out_free;
                }
                x = NULL; /* named now: the add() below may move it */
            }
            if (info.not_after < c->opts->now) {
                char d[32];
                fmt_date(info.not_after, d, sizeof(d));
                struct cb_finding *y =
                    cb_check_add(f, "expired", CB_SEV_ERROR, e->port,
                                 "central store file %s expired on %s; replace it "
                                 "with the renewed certificate",
                                 cf->path, d);
                if (y == NULL || cb_check_add_binding(y, e->key_text) != 0)
                    ret = CB_ENOMEM;
            }
            cb_cert_info_clear(&info);
        }
        cb_cert_bundle_free(bundle);
        if (ret != 0 || (x != NULL && cb_check_add_binding(x, e->key_text) != 0)) {
            ret = CB_ENOMEM;
            goto out_free;
        }
    }
out_free:
    free(probes);
    free(ok);
    free(reasons);
    return ret;
}

static int cmp_finding(const void *a, const void *b)
{
    const struct cb_finding *x = a, *y = b;
    if (x->port != y->port)
        return x->port < y->port ? -1 : 1;
    const char *kx = x->n_bindings ? x->bindings[0] : "";
    const char *ky = y->n_bindings ? y->bindings[0] : "";
    int c = strcmp(kx, ky);
    if (c != 0)
        return c;
    if (x->severity != y->severity)
        return x->severity > y->severity ? -1 : 1;
    return strcmp(x->code, y->code);
}

/* A fleet node whose replica has not heard from etcd for a while serves what it had then:
 * changes made elsewhere meanwhile are not served here. */
static int fleet_findings(struct ctx *c)
{
    const struct cb_check_opts *o = c->opts;

    if (!o->fleet)
        return 0;
    if (o->fleet_synced_at <= 0) {
        if (cb_check_add(c->out, "fleet-replica-stale", CB_SEV_WARNING, 0,
                         "this node's replica of the fleet store has never heard from etcd: it "
                         "serves nothing of the fleet; check that etcd answers and start serve "
                         "with the same --store") == NULL)
            return CB_ENOMEM;
        return 0;
    }
    int64_t age = o->now - o->fleet_synced_at;
    if (age <= o->fleet_stale_s)
        return 0;
    if (cb_check_add(c->out, "fleet-replica-stale", CB_SEV_WARNING, 0,
                     "this node's replica of the fleet store last heard from etcd %lld s ago: "
                     "changes made on other nodes since then are not served here; check that "
                     "etcd answers from this node and that serve runs with the same --store",
                     (long long)age) == NULL)
        return CB_ENOMEM;
    return 0;
}

int cb_check_run(struct cb_store *st, const struct cb_check_opts *opts, struct cb_findings *out,
                 struct cb_err *err)
{
    struct ctx c = {.out = out, .opts = opts};
    struct cb_snapshot *snap = NULL;
    struct port_info *ports = NULL;
    struct cb_svcuser_probe *probes = NULL;
    bool *ok = NULL;
    char(*reasons)[CB_PRIV_REASON] = NULL;
    int ret;

    memset(out, 0, sizeof(*out));
    c.have_user = cb_svcuser_get(st, &c.user, NULL) == 0;
    c.user_name = c.have_user ? c.user.name : "";
    /* One read of the bindings: the damaged rows are reported as the snapshot meets them. */
    if ((ret = cb_store_load_snapshot_reporting(st, &snap, on_damaged, &c, true, err)) != 0)
        goto out_free;
    if ((ret = cb_store_cert_foreach(st, collect_cert, &c, err)) != 0)
        goto out_free;
    if (c.n_certs > 1)
        qsort(c.certs, c.n_certs, sizeof(*c.certs), cmp_cert);
    size_t n = cb_snapshot_count(snap);
    ports = calloc(65536, sizeof(*ports));
    c.n_bindings = n;
    c.next_cert = calloc(2 * n + 1, sizeof(*c.next_cert));
    c.next_sni = calloc(n + 1, sizeof(*c.next_sni));
    if (ports == NULL || c.next_cert == NULL || c.next_sni == NULL) {
        ret = CB_ENOMEM;
        goto out_free;
    }
    for (uint32_t b = 0; b < n; b++) {
        const struct cb_snap_binding *e = cb_snapshot_binding(snap, b);
        struct port_info *pi = &ports[e->port];
        if (e->kind == CB_KEY_HOST || e->kind == CB_KEY_HOST_WILD || e->kind == CB_KEY_CCS) {
            if (pi->n_sni++ == 0)
                pi->first_sni = b;
            else
                c.next_sni[pi->last_sni] = b;
            pi->last_sni = b;
        } else if (e->kind == CB_KEY_ANY_IP) {
            if (e->family == AF_INET)
                pi->any4 = true;
            else
                pi->any6 = true;
        }
        for (uint32_t slot = 0; slot < 2 && e->kind != CB_KEY_CCS; slot++) {
            struct cert *ce = find_cert(&c, slot == 0 ? e->certhash : e->certhash2);
            uint32_t link = slot == 0 ? b : (uint32_t)n + b;
            if (ce == NULL)
                continue;
            if (ce->users++ == 0)
                ce->first = link;
            else
                c.next_cert[ce->last] = link;
            ce->last = link;
            ce->used = true;
            ce->stapled = ce->stapled || staples(e);
        }
    }
    /* Per certificate in use: key access (as the service user, CHECK_PROBE_BATCH at a
     * time), then one parse of its file for the chain audit and, when a binding staples
     * it, the OCSP finding. */
    probes = calloc(CHECK_PROBE_BATCH, sizeof(*probes));
    ok = calloc(CHECK_PROBE_BATCH, sizeof(*ok));
    reasons = calloc(CHECK_PROBE_BATCH, sizeof(*reasons));
    if (probes == NULL || ok == NULL || reasons == NULL) {
        ret = CB_ENOMEM;
        goto out_free;
    }
    for (size_t from = 0; from < c.n_certs;) {
        size_t nu = 0, to = from;
        for (; to < c.n_certs && nu < CHECK_PROBE_BATCH; to++)
            if (c.certs[to].used) {
                probes[nu].cert = c.certs[to].cert_path;
                probes[nu++].key = c.certs[to].key_path;
            }
        test_access(&c, probes, nu, ok, reasons);
        nu = 0;
        for (; from < to; from++) {
            struct cert *ce = &c.certs[from];
            if (!ce->used)
                continue;
            ce->usable = ok[nu];
            if (!ce->usable && (ce->reason = strdup(reasons[nu])) == NULL) {
                ret = CB_ENOMEM;
                goto out_free;
            }
            nu++;
            struct cb_err aerr;
            struct cb_cert_audit audit;
            struct cb_ocsp_cert *oc = NULL;
            ce->audited =
                cb_cert_audit_file(ce->cert_path, &audit, ce->stapled ? &oc : NULL, &aerr) == 0;
            /* A file the audit could not read, or not PEM: as the OCSP reader sees it. */
            if (ce->stapled && oc == NULL &&
                (ret = cb_ocsp_cert_load(ce->cert_path, &oc, NULL)) != 0 && ret != CB_ENOMEM)
                ret = 0; /* key-unusable and the chain checks say what is wrong */
            if (ret == 0 && oc != NULL)
                ret = ocsp_finding(&c, st, snap, ce, oc);
            cb_ocsp_cert_free(oc);
            if (ret != 0)
                goto out_free;
            if (!ce->audited)
                continue;
            ce->chain_ok = audit.chain_ok;
            ce->weak = audit.weak;
            if ((!audit.chain_ok && (ce->chain_error = strdup(audit.chain_error)) == NULL) ||
                (audit.weak && (ce->weak_reason = strdup(audit.weak_reason)) == NULL)) {
                ret = CB_ENOMEM;
                goto out_free;
            }
        }
    }
    if ((ret = cert_findings(&c, snap)) != 0 || (ret = binding_findings(&c, snap, n, ports)) != 0 ||
        (ret = ccs_findings(&c, snap, n)) != 0 || (ret = address_findings(&c, snap, n)) != 0 ||
        (ret = clientca_findings(&c, snap, n)) != 0 || (ret = acme_findings(&c, st, err)) != 0 ||
        (ret = fleet_findings(&c)) != 0)
        goto out_free;
    if (out->n > 1) /* out->v is NULL without findings, which qsort must not be given */
        qsort(out->v, out->n, sizeof(*out->v), cmp_finding);
out_free:
    if (ret == CB_ENOMEM)
        cb_err_set(err, ret, "out of memory");
    for (size_t k = 0; k < c.n_certs; k++)
        cert_clear(&c.certs[k]);
    free(c.certs);
    free(c.next_cert);
    free(c.next_sni);
    free(ports);
    free(probes);
    free(ok);
    free(reasons);
    cb_snapshot_unref(snap);
    if (ret != 0)
        cb_findings_clear(out);
    return ret;
}
