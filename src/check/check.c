/*
 * check.c: the pre-flight checks, in memory that stays flat however many bindings,
 * certificates and findings the store holds (10^6 of each). Nothing is held for every
 * binding or certificate: the bindings are read once in key order, one at a time, and the
 * certificates once, CHECK_PROBE_BATCH at a time (their facts: dates, names, key access,
 * chain, strength, computed once per certificate, never once per binding). What a later
 * step needs of every binding (each port's SNI bindings, the IP bindings, who uses each
 * client CA file) and the findings themselves wait in the store's temporary tables
 * (store/spool.h), from which the findings come out sorted. One exception: the central
 * store (ccs) bindings are read as a snapshot of their own, with their folders' file lists,
 * which grow with that configuration, not with the other bindings. The check of one
 * binding is binding.c; the words of the findings the two share are finding.c.
 */
#include "check/dual.h"
#include "check/finding.h"
#include "check/ocsp.h"
#include "store/acme.h"
#include "store/spool.h"
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

/* One per certificate of the batch in hand: the paths and the texts of what is wrong are
 * allocated, the texts only when something is. */
struct cert {
    struct cb_cert_info info;   /* its strings owned */
    char *cert_path, *key_path; /* owned */
    bool used;                  /* a binding uses it */
    bool stapled;               /* a binding staples it: its OCSP response is judged */
    bool usable;
    char *reason; /* owned; set when not usable */
    bool audited, chain_ok, weak;
    char *chain_error, *weak_reason; /* owned; set when the audit found that */
};

/* Certificates read, and their key access tested in one child process, at a time: bounds
 * the memory of the certificates in hand and the reasons buffer (CB_PRIV_REASON bytes a
 * probe) however many certificates the store holds. */
#define CHECK_PROBE_BATCH 4096
/* Client CA files tested in one child process. */
#define CHECK_CA_BATCH 256

/* What the walk over the bindings learns of each port (the first CB_CHECK_LIST_MAX of its
 * SNI and ccs bindings, which its findings list, wait in the sni spool). */
struct port_info {
    uint32_t n_sni; /* SNI and ccs bindings on the port */
    bool any4, any6;
};

/* A walk's callback returns this to stop early without an error (errors are negative). */
#define CHECK_STOP 1

struct ctx {
    struct cb_store *st;
    struct cb_err *err;
    const struct cb_check_opts *opts;
    struct cb_user user;
    bool have_user;
    const char *user_name; /* the service user's, or "" */
    /* The findings being made (out: &stage), spooled by flush() as soon as they are whole:
     * the stage holds the few findings of one binding, certificate or port. */
    struct cb_findings stage, *out;
    uint64_t seq; /* findings spooled: the last part of their sort key, for a stable order */
    size_t errors, warnings;
    /* findings: sort key -> finding. Keyed by what they are about, then the walk's order:
     * sni (port) -> KEY NUL NAME, the first CB_CHECK_LIST_MAX of a port; ips (port) ->
     * family, address, key; cas (path NUL) -> port, key; uses (thumbprint) -> see use_put;
     * noncanon (canonical key) -> nothing: the rows whose key is not stored as certbind
     * writes it (another spelling, a BLOB, a NUL in it). */
    struct cb_spool *findings, *sni, *ips, *cas, *uses, *noncanon;
    uint64_t walked;         /* bindings the walk has met */
    struct port_info *ports; /* 65536 of them */
    struct cert *certs;      /* the batch in hand */
    struct info_slot *infos; /* CHECK_INFO_CACHE of them, for the walk over the bindings */
    size_t n_certs;
};

/* ---- the findings' spool --------------------------------------------------- */

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/*
 * A finding in the spool. Its key sorts as cmp_finding did: port (2 bytes, big-endian),
 * the first binding's key and a NUL (memcmp of that is strcmp's order), 255 - severity
 * (errors first), the code and a NUL, then the order it was found in (8 bytes). Its value:
 * severity, port, the code's address (a static string, and the spool lives only within
 * cb_check_stream), the number of bindings (4 bytes), the message and each binding, each
 * NUL-terminated.
 */
static int spool_finding(struct ctx *c, const struct cb_finding *x)
{
    const char *first = x->n_bindings ? x->bindings[0] : "";
    size_t nf = strlen(first), nc = strlen(x->code), nm = strlen(x->message);
    size_t klen = 2 + nf + 1 + 1 + nc + 1 + 8, vlen = 1 + 2 + sizeof(x->code) + 4 + nm + 1;
    unsigned char *k, *v, *p;
    int ret;

    for (size_t i = 0; i < x->n_bindings; i++)
        vlen += strlen(x->bindings[i]) + 1;
    if ((k = malloc(klen + vlen)) == NULL)
        return CB_ENOMEM;
    v = k + klen;
    p = k;
    put16(p, x->port);
    p += 2;
    memcpy(p, first, nf + 1);
    p += nf + 1;
    *p++ = (unsigned char)(255 - x->severity);
    memcpy(p, x->code, nc + 1);
    p += nc + 1;
    for (int i = 7; i >= 0; i--)
        *p++ = (unsigned char)(c->seq >> (i * 8));
    c->seq++;
    p = v;
    *p++ = (unsigned char)x->severity;
    put16(p, x->port);
    p += 2;
    memcpy(p, &x->code, sizeof(x->code));
    p += sizeof(x->code);
    uint32_t nb = (uint32_t)x->n_bindings;
    memcpy(p, &nb, 4);
    p += 4;
    memcpy(p, x->message, nm + 1);
    p += nm + 1;
    for (size_t i = 0; i < x->n_bindings; i++) {
        size_t n = strlen(x->bindings[i]) + 1;
        memcpy(p, x->bindings[i], n);
        p += n;
    }
    ret = cb_spool_put(c->findings, k, klen, v, vlen, c->err);
    free(k);
    return ret;
}

/* Spools the findings staged, whole now, and empties the stage. */
static int flush(struct ctx *c)
{
    int ret = 0;

    for (size_t i = 0; i < c->stage.n && ret == 0; i++)
        ret = spool_finding(c, &c->stage.v[i]);
    c->errors += c->stage.errors;
    c->warnings += c->stage.warnings;
    cb_findings_clear(&c->stage);
    return ret;
}

struct emit_ctx {
    cb_finding_fn fn;
    void *ctx;
};

static int emit_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct emit_ctx *e = arg;
    const unsigned char *p = val, *end = p + vlen;
    struct cb_finding x = {0};
    uint32_t nb;
    int ret;

    (void)key;
    (void)klen;
    if (vlen < 1 + 2 + sizeof(x.code) + 4 + 1 || end[-1] != '\0')
        return CB_ESTORE; /* not what spool_finding wrote */
    x.severity = (enum cb_severity) * p++;
    x.port = get16(p);
    p += 2;
    memcpy(&x.code, p, sizeof(x.code));
    p += sizeof(x.code);
    memcpy(&nb, p, 4);
    p += 4;
    x.message = (char *)p;
    p += strlen((const char *)p) + 1;
    if ((x.bindings = calloc(nb + 1, sizeof(*x.bindings))) == NULL)
        return CB_ENOMEM;
    for (; x.n_bindings < nb && p < end; x.n_bindings++) {
        x.bindings[x.n_bindings] = (char *)p;
        p += strlen((const char *)p) + 1;
    }
    ret = x.n_bindings == nb ? e->fn(&x, e->ctx) : CB_ESTORE;
    free(x.bindings);
    return ret;
}

/* ---- certificates ------------------------------------------------------- */

static int collect_cert(const struct cb_cert_row *row, struct cert *x)
{
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

/* Whether binding b staples its certificates (OCSP): what names it in an OCSP finding. */
static bool staples(const struct cb_binding *b)
{
    return b->key.kind != CB_KEY_CCS && !(b->flags & (CB_OPT_DISABLEOCSPSTAPLING | CB_OPT_DAMAGED));
}

/*
 * The uses spool: one record for each certificate a binding names (as decoded: the store may
 * hold another spelling), keyed by the thumbprint and the order of the walk over the bindings
 * (8 bytes), so that a certificate's records are its bindings in stored key order, as the
 * old snapshot listed them. Value: whether the binding staples (1 byte), its port (2 bytes),
 * its key.
 */
#define USE_HEAD 3

static int use_put(struct ctx *c, const char *thumb, const struct cb_binding *b, const char *key,
                   uint64_t seq)
{
    unsigned char k[CB_THUMB_LEN + 8], v[USE_HEAD + CB_KEY_TEXT_MAX];
    size_t nk = strlen(key);

    memcpy(k, thumb, CB_THUMB_LEN);
    for (int i = 0; i < 8; i++)
        k[CB_THUMB_LEN + i] = (unsigned char)(seq >> (56 - 8 * i));
    v[0] = staples(b);
    put16(v + 1, b->key.port);
    memcpy(v + USE_HEAD, key, nk);
    return cb_spool_put(c->uses, k, sizeof(k), v, USE_HEAD + nk, c->err);
}

/* Whether a certificate is used, and stapled: stops once both are known. */
static int note_user(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct cert *ce = arg;

    (void)key;
    (void)klen;
    if (vlen < USE_HEAD)
        return CB_ESTORE; /* not what use_put wrote */
    ce->used = true;
    ce->stapled = ce->stapled || ((const unsigned char *)val)[0] != 0;
    return ce->stapled ? CHECK_STOP : 0;
}

/* Names the users of a certificate (the first CB_CHECK_LIST_MAX) in the last nx findings of
 * the stage, the first one's port being theirs. */
struct list_users {
    struct ctx *c;
    int nx;
    bool stapling; /* only the bindings that staple it */
    size_t listed;
};

static int list_user(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct list_users *l = arg;
    struct cb_findings *f = l->c->out;
    const unsigned char *v = val;
    char text[CB_KEY_TEXT_MAX];

    (void)key;
    (void)klen;
    if (vlen < USE_HEAD || vlen - USE_HEAD >= sizeof(text))
        return CB_ESTORE; /* not what use_put wrote */
    if (l->stapling && v[0] == 0)
        return 0;
    if (l->listed == CB_CHECK_LIST_MAX)
        return CHECK_STOP;
    memcpy(text, v + USE_HEAD, vlen - USE_HEAD);
    text[vlen - USE_HEAD] = '\0';
    for (int i = 0; i < l->nx; i++) {
        struct cb_finding *x = &f->v[f->n - (size_t)l->nx + (size_t)i];
        if (x->n_bindings == 0)
            x->port = get16(v + 1);
        if (cb_check_add_binding(x, text) != 0)
            return CB_ENOMEM;
    }
    l->listed++;
    return 0;
}

/* The records of certificate thumb in the uses spool, to fn; a thumbprint of another length
 * than the store's own is no binding's. */
static int uses_walk(struct ctx *c, const char *thumb, size_t limit, cb_spool_fn fn, void *arg)
{
    int ret;

    if (strlen(thumb) != CB_THUMB_LEN)
        return 0;
    ret = cb_spool_foreach(c->uses, thumb, CB_THUMB_LEN, limit, fn, arg, c->err);
    return ret == CHECK_STOP ? 0 : ret;
}

static int list_users(struct ctx *c, const char *thumb, int nx, bool stapling)
{
    struct list_users l = {.c = c, .nx = nx, .stapling = stapling};
    return uses_walk(c, thumb, stapling ? 0 : CB_CHECK_LIST_MAX, list_user, &l);
}

/*
 * The OCSP finding of certificate ce, loaded as oc (borrowed), naming the bindings that
 * staple it (the first CB_CHECK_LIST_MAX of them, in key order).
 */
static int ocsp_finding(struct ctx *c, const struct cert *ce, const struct cb_ocsp_cert *oc)
{
    bool added;
    int ret = cb_check_ocsp_cert(c->out, c->st, oc, ce->info.thumbprint, c->opts->now, &added);

    if (ret != 0 || !added)
        return ret;
    return list_users(c, ce->info.thumbprint, 1, true);
}

/* One finding per certificate fact, naming every binding that uses it. */
static int cert_findings(struct ctx *c, struct cert *ce)
{
    struct cb_findings *f = c->out;
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
        x[nx++] =
            cb_check_add(f, "expired", CB_SEV_ERROR, 0,
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
            in->thumbprint, names, d, /* whole days left, rounded up: "in 10 days" all day long */
            (long long)((in->not_after - c->opts->now + 86399) / 86400));
    }
    if (in->not_before > c->opts->now) {
        fmt_date(in->not_before, d, sizeof(d));
        x[nx++] = cb_check_add(f, "not-yet-valid", CB_SEV_ERROR, 0,
                               "certificate %s (%s) is valid only from %s; clients refuse it until "
                               "then: bind the current certificate until that day",
                               in->thumbprint, names, d);
    }
    if (ce->audited && !ce->chain_ok)
        x[nx++] =
            cb_check_add(f, "chain-incomplete", CB_SEV_ERROR, 0,
                         "the chain of certificate %s (%s) does not reach a trusted root (%s); "
                         "import it again with its intermediate certificates: certbind add cert "
                         "FULLCHAIN.pem key=FILE",
                         in->thumbprint, names, ce->chain_error ? ce->chain_error : "");
    if (ce->audited && ce->weak)
        x[nx++] = cb_check_add(f, "weak-key", CB_SEV_WARNING, 0,
                               "certificate %s (%s) is weak: %s; replace it with an ECDSA P-256 or "
                               "RSA-2048+ certificate signed with SHA-256",
                               in->thumbprint, names, ce->weak_reason ? ce->weak_reason : "");
    for (int i = 0; i < nx; i++)
        if (x[i] == NULL)
            return CB_ENOMEM;
    if (nx == 0)
        return 0;
    return list_users(c, in->thumbprint, nx, false);
}

/* The certificates in hand: who uses them, key access (as the service user, in one child
 * process), then one parse of each file for the chain audit and, when a binding staples
 * it, the OCSP finding; then their findings. */
static int cert_batch(struct ctx *c)
{
    struct cb_svcuser_probe *probes = calloc(c->n_certs + 1, sizeof(*probes));
    bool *ok = calloc(c->n_certs + 1, sizeof(*ok));
    char(*reasons)[CB_PRIV_REASON] = calloc(c->n_certs + 1, sizeof(*reasons));
    size_t nu = 0;
    int ret = 0;

    if (probes == NULL || ok == NULL || reasons == NULL) {
        ret = CB_ENOMEM;
        goto out_free;
    }
    for (size_t k = 0; k < c->n_certs; k++) {
        struct cert *ce = &c->certs[k];
        if ((ret = uses_walk(c, ce->info.thumbprint, 0, note_user, ce)) != 0)
            goto out_free;
        if (ce->used) {
            probes[nu].cert = ce->cert_path;
            probes[nu++].key = ce->key_path;
        }
    }
    test_access(c, probes, nu, ok, reasons);
    nu = 0;
    for (size_t k = 0; k < c->n_certs; k++) {
        struct cert *ce = &c->certs[k];
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
        if (ce->stapled && oc == NULL && (ret = cb_ocsp_cert_load(ce->cert_path, &oc, NULL)) != 0 &&
            ret != CB_ENOMEM)
            ret = 0; /* key-unusable and the chain checks say what is wrong */
        if (ret == 0 && oc != NULL)
            ret = ocsp_finding(c, ce, oc);
        cb_ocsp_cert_free(oc);
        if (ret != 0)
            goto out_free;
        if (ce->audited) {
            ce->chain_ok = audit.chain_ok;
            ce->weak = audit.weak;
            if ((!audit.chain_ok && (ce->chain_error = strdup(audit.chain_error)) == NULL) ||
                (audit.weak && (ce->weak_reason = strdup(audit.weak_reason)) == NULL)) {
                ret = CB_ENOMEM;
                goto out_free;
            }
        }
        if ((ret = cert_findings(c, ce)) != 0 || (ret = flush(c)) != 0)
            goto out_free;
    }
out_free:
    for (size_t k = 0; k < c->n_certs; k++)
        cert_clear(&c->certs[k]);
    c->n_certs = 0;
    free(probes);
    free(ok);
    free(reasons);
    return ret;
}

static int on_cert(const struct cb_cert_row *row, void *arg)
{
    struct ctx *c = arg;
    int ret = collect_cert(row, &c->certs[c->n_certs]);

    c->n_certs++; /* cleared by cert_batch, whole or not */
    if (ret == 0 && c->n_certs == CHECK_PROBE_BATCH)
        ret = cert_batch(c);
    return ret;
}

/* ---- each binding ----------------------------------------------------------- */

/* The facts of the certificates the walk over the bindings met last: CHECK_INFO_SETS sets of
 * two (by thumbprint), the older of a set replaced. Most stores bind many names to few
 * certificates: with a few thousand, every binding after the first of each finds it here. */
#define CHECK_INFO_SETS 4096
#define CHECK_INFO_CACHE (2 * CHECK_INFO_SETS)

struct info_slot {
    bool used;
    bool present;             /* in the store; else only info.thumbprint is set */
    bool newer;               /* of the two of its set, the one read last */
    struct cb_cert_info info; /* its strings owned */
};

static size_t info_set_of(const char *thumb)
{
    uint32_t h = 2166136261u;
    for (; *thumb; thumb++)
        h = (h ^ (unsigned char)*thumb) * 16777619u;
    return 2 * (h % CHECK_INFO_SETS);
}

/* The facts of certificate thumb: *in (borrowed: good until the next lookup of a
 * certificate not in the cache) or NULL when the store has no such certificate. */
static int cert_lookup(struct ctx *c, const char *thumb, const struct cb_cert_info **in)
{
    struct info_slot *set = &c->infos[info_set_of(thumb)], *e;
    struct cb_cert_row row;
    int ret;

    for (int way = 0; way < 2; way++) {
        e = &set[way];
        if (e->used && strcmp(e->info.thumbprint, thumb) == 0) {
            *in = e->present ? &e->info : NULL;
            return 0;
        }
    }
    if ((ret = cb_store_cert_get(c->st, thumb, &row, c->err)) != 0 && ret != CB_ENOENT)
        return ret;
    e = set[0].newer ? &set[1] : &set[0];
    set[0].newer = e == &set[0];
    set[1].newer = e == &set[1];
    cb_cert_info_clear(&e->info);
    e->used = strlen(thumb) <= CB_THUMB_LEN; /* longer: no certificate has it, none kept */
    e->present = ret == 0;
    if (e->present)
        e->info = row.info; /* taken: the row is not cleared */
    else
        snprintf(e->info.thumbprint, sizeof(e->info.thumbprint), "%s", thumb);
    *in = e->present ? &e->info : NULL;
    return 0;
}

/* unknown-cert and name-mismatch for one certificate of binding b (key), whose facts are
 * in (NULL: not in the store). */
static int one_binding_cert(struct ctx *c, const struct cb_binding *b, const char *key,
                            const char *thumb, const struct cb_cert_info *in)
{
    struct cb_findings *f = c->out;

    if (in == NULL) {
        struct cb_finding *x = cb_check_unknown_cert(f, key, thumb, b->key.port);
        return x == NULL || cb_check_add_binding(x, key) != 0 ? CB_ENOMEM : 0;
    }
    if (b->key.kind != CB_KEY_HOST && b->key.kind != CB_KEY_HOST_WILD)
        return 0;
    bool covered = false;
    for (size_t i = 0; i < in->n_names && !covered; i++)
        covered = cb_name_covers(in->names[i], b->key.host);
    if (covered)
        return 0;
    char names[512];
    cb_check_names_text(in->names, in->n_names, names, sizeof(names));
    struct cb_finding *x = cb_check_add(f, "name-mismatch", CB_SEV_ERROR, b->key.port,
                                        "certificate %s covers %s, not %s: clients reject it. "
                                        "Bind a certificate for the name: certbind update "
                                        "sslcert %s certhash=…",
                                        thumb, names, b->key.host, key);
    return x == NULL || cb_check_add_binding(x, key) != 0 ? CB_ENOMEM : 0;
}

/* unknown-cert, name-mismatch and dual-cert-mismatch of binding b (key). */
static int binding_certs(struct ctx *c, const struct cb_binding *b, const char *key)
{
    const struct cb_cert_info *a = NULL, *d = NULL;
    int ret;

    if ((ret = cert_lookup(c, b->certhash, &a)) != 0 ||
        (ret = one_binding_cert(c, b, key, b->certhash, a)) != 0 || b->certhash2[0] == '\0')
        return ret;
    /* The second's lookup may replace the first in the cache: looked up again after it
     * (two of a set hold both). */
    if ((ret = cert_lookup(c, b->certhash2, &d)) != 0 ||
        (ret = one_binding_cert(c, b, key, b->certhash2, d)) != 0 ||
        (ret = cert_lookup(c, b->certhash, &a)) != 0)
        return ret;
    if (a != NULL && d != NULL) {
        char why[600];
        bool refused = cb_dual_pair_refused(a, d, why, sizeof(why));
        if (refused || !cb_dual_same_names(a, d)) {
            struct cb_finding *x =
                cb_check_dual_mismatch(c->out, key, a, d, refused ? why : NULL, b->key.port);
            if (x == NULL || cb_check_add_binding(x, key) != 0)
                return CB_ENOMEM;
        }
    }
    return 0;
}

/* address-not-local: an IP binding on an address this machine does not have; its
 * handshakes never arrive (serve listens on it all the same, and serves it once the
 * address is added). */
static int address_finding(struct ctx *c, const struct cb_binding *b, const char *key)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;

    if (b->key.family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, b->key.addr, 4);
        len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, b->key.addr, 16);
        len = sizeof(*in6);
    }
    int fd = socket(b->key.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    bool missing = bind(fd, (struct sockaddr *)&ss, len) != 0 && errno == EADDRNOTAVAIL;
    close(fd);
    if (!missing)
        return 0;
    struct cb_finding *x = cb_check_add(
        c->out, "address-not-local", CB_SEV_WARNING, b->key.port,
        "%s: this machine has no such address, so no client reaches this binding here; "
        "add the address to an interface, or bind the certificate to a name or to "
        "0.0.0.0:%u instead",
        key, b->key.port);
    return x == NULL || cb_check_add_binding(x, key) != 0 ? CB_ENOMEM : 0;
}

/* A spool key: head[0..n) then the walk's order (8 bytes, big-endian); its length. */
static size_t seq_key(unsigned char *out, const void *head, size_t n, uint64_t seq)
{
    memcpy(out, head, n);
    for (int i = 0; i < 8; i++)
        out[n + (size_t)i] = (unsigned char)(seq >> (56 - 8 * i));
    return n + 8;
}

/* The walk over every binding, in stored key order: what each binding tells alone, and what
 * the steps after need of it, in spools keyed so that their walks come in this order. */
static int on_binding(const struct cb_binding *b, const char *stored, void *arg)
{
    struct ctx *c = arg;
    struct port_info *pi = &c->ports[b->key.port];
    char key[CB_KEY_TEXT_MAX];
    unsigned char k[CB_PATH_MAX + 16], v[CB_KEY_TEXT_MAX + CB_NAME_MAX + 24], p[2];
    uint64_t seq = c->walked++;
    size_t nk;
    int ret = 0;

    cb_key_format(&b->key, key, sizeof(key));
    nk = strlen(key);
    put16(p, b->key.port);
    /* Another spelling of a key (written by other means): two of them may be one binding,
     * which serve refuses to load; checked once the walk is over. */
    if ((stored == NULL || strcmp(stored, key) != 0) &&
        (ret = cb_spool_put(c->noncanon, k, seq_key(k, key, nk, seq), "", 0, c->err)) != 0)
        return ret;
    switch (b->key.kind) {
    case CB_KEY_HOST:
    case CB_KEY_HOST_WILD:
    case CB_KEY_CCS: {
        /* An IP binding's ip-shadows-sni and the port's no-default-for-non-sni list the first
         * CB_CHECK_LIST_MAX of them (KEY NUL NAME: the host, or the key of a ccs binding). */
        const char *name = b->key.kind == CB_KEY_CCS ? key : b->key.host;
        size_t nn = strlen(name);
        if (pi->n_sni++ >= CB_CHECK_LIST_MAX)
            break;
        memcpy(v, key, nk + 1);
        memcpy(v + nk + 1, name, nn);
        ret = cb_spool_put(c->sni, k, seq_key(k, p, 2, seq), v, nk + 1 + nn, c->err);
        break;
    }
    case CB_KEY_ANY_IP:
        if (b->key.family == AF_INET)
            pi->any4 = true;
        else
            pi->any6 = true;
        break;
    case CB_KEY_IP:
        v[0] = b->key.family;
        memcpy(v + 1, b->key.addr, 16);
        memcpy(v + 17, key, nk);
        if ((ret = cb_spool_put(c->ips, k, seq_key(k, p, 2, seq), v, 17 + nk, c->err)) == 0)
            ret = address_finding(c, b, key);
        break;
    }
    if (ret == 0 && b->clientca[0] != '\0') {
        memcpy(v, p, 2);
        memcpy(v + 2, key, nk);
        ret = cb_spool_put(c->cas, k, seq_key(k, b->clientca, strlen(b->clientca) + 1, seq), v,
                           2 + nk, c->err);
    }
    /* The certificates it names, as their findings list their bindings. */
    for (int slot = 0; slot < 2 && ret == 0; slot++) {
        const char *thumb = slot == 0 ? b->certhash : b->certhash2;
        if (b->key.kind != CB_KEY_CCS && strlen(thumb) == CB_THUMB_LEN)
            ret = use_put(c, thumb, b, key, seq);
    }
    /* A damaged row: store-damaged says it; a managed binding without a certificate yet:
     * acme-pending or acme-failing. */
    if (ret == 0 && b->key.kind != CB_KEY_CCS && !(b->flags & CB_OPT_DAMAGED) &&
        !((b->flags & CB_OPT_ACME) && b->certhash[0] == '\0'))
        ret = binding_certs(c, b, key);
    return ret != 0 ? ret : flush(c);
}

/* Two rows of the store that are one binding (its key spelt two ways): serve refuses to load
 * such a store, and so does check, in the same words. The noncanon spool holds each row whose
 * key is not spelt as certbind writes it, by its canonical key: such a row collides with the
 * row spelt canonically, or with another spelling, next to it in the spool. */
struct dup_walk {
    struct ctx *c;
    char last[CB_KEY_TEXT_MAX];
};

static int on_noncanon(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct dup_walk *w = arg;
    char text[CB_KEY_TEXT_MAX];
    struct cb_binding_key bk;
    struct cb_binding b;
    int ret;

    (void)val;
    (void)vlen;
    if (klen < 8 || klen - 8 >= sizeof(text))
        return CB_ESTORE; /* not what on_binding wrote */
    memcpy(text, key, klen - 8);
    text[klen - 8] = '\0';
    if (strcmp(text, w->last) == 0)
        goto duplicate;
    snprintf(w->last, sizeof(w->last), "%s", text);
    if (cb_key_parse_word(text, &bk, NULL) != 0)
        return CB_ESTORE;
    ret = cb_store_binding_get(w->c->st, &bk, &b, NULL);
    if (ret == CB_ENOENT)
        return 0;
    if (ret != 0 && ret != CB_ESTORE) /* a damaged row is a row all the same */
        return cb_err_set(w->c->err, ret, "reading binding %s: %s", text, cb_strerror(ret));
duplicate:
    return cb_err_set(w->c->err, CB_EEXIST, "duplicate binding %s in the store", text);
}

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
    return x == NULL || cb_check_add_binding(x, key_text) != 0 ? CB_ENOMEM : flush(c);
}

/* ---- each port ------------------------------------------------------------- */

/* The SNI bindings of a port, as its findings list them: names into a list, or keys into
 * a finding. */
struct sni_walk {
    struct cb_check_sni_list *list;
    struct cb_finding *x;
};

static int sni_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct sni_walk *w = arg;
    char text[CB_KEY_TEXT_MAX + CB_NAME_MAX + 2];
    const char *nul;

    (void)key;
    (void)klen;
    if (vlen >= sizeof(text) || (nul = memchr(val, '\0', vlen)) == NULL)
        return CB_ESTORE; /* not what on_binding wrote */
    memcpy(text, val, vlen);
    text[vlen] = '\0';
    if (w->list != NULL) {
        cb_check_sni_list_add(w->list, text + (nul - (const char *)val) + 1);
        return 0;
    }
    return cb_check_add_binding(w->x, text) != 0 ? CB_ENOMEM : 0;
}

static int sni_walk(struct ctx *c, uint16_t port, struct cb_check_sni_list *list,
                    struct cb_finding *x)
{
    struct sni_walk w = {.list = list, .x = x};
    unsigned char p[2];

    put16(p, port);
    return cb_spool_foreach(c->sni, p, 2, CB_CHECK_LIST_MAX, sni_one, &w, c->err);
}

/* ip-shadows-sni: an IP binding answers every client of its address first. */
static int on_ip(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct ctx *c = arg;
    char text[CB_KEY_TEXT_MAX];
    const unsigned char *v = val;
    uint8_t addr[16];
    int ret;

    if (klen != 10 || vlen < 17 || vlen - 17 >= sizeof(text))
        return CB_ESTORE; /* not what on_binding wrote */
    uint16_t port = get16(key);
    if (c->ports[port].n_sni == 0)
        return 0;
    memcpy(text, v + 17, vlen - 17);
    text[vlen - 17] = '\0';
    memcpy(addr, v + 1, 16);
    struct cb_check_sni_list list = {0};
    if ((ret = sni_walk(c, port, &list, NULL)) != 0)
        return ret;
    list.n = c->ports[port].n_sni; /* the rest are counted, not listed */
    struct cb_finding *x = cb_check_ip_shadows_sni(c->out, text, v[0], addr, port, &list);
    if (x == NULL || cb_check_add_binding(x, text) != 0)
        return CB_ENOMEM;
    if ((ret = sni_walk(c, port, NULL, x)) != 0)
        return ret;
    return flush(c);
}

/* no-default-for-non-sni: a port with SNI bindings and an address where a client without
 * SNI matches nothing. */
static int port_findings(struct ctx *c)
{
    int ret;

    for (uint32_t p = 1; p < 65536; p++) {
        struct port_info *pi = &c->ports[p];
        if (pi->n_sni == 0 || pi->any4)
            continue;
        const char *where = pi->any6 ? "its IPv4 addresses" : "every address without an IP binding";
        struct cb_finding *x = cb_check_add(
            c->out, "no-default-for-non-sni", CB_SEV_WARNING, (uint16_t)p,
            "port %u has SNI bindings but no default: a client that sends no server name "
            "to %s gets no certificate (handshake_failure). Add one: certbind add sslcert "
            "%s:%u certhash=…",
            p, where, "ipport=0.0.0.0", p);
        if (x == NULL)
            return CB_ENOMEM;
        if ((ret = sni_walk(c, (uint16_t)p, NULL, x)) != 0 || (ret = flush(c)) != 0)
            return ret;
    }
    return 0;
}

/* ---- client CA files ---------------------------------------------------------- */

/* clientca-unusable: a client CA file that serve could not use (missing, unreadable by the
 * service user, not PEM, no CA certificate). Every handshake on its bindings would fail:
 * an error, one finding per file, naming its bindings (the first CB_CHECK_LIST_MAX, in key
 * order). The files come from the cas spool, CHECK_CA_BATCH tested at a time. */
struct ca_walk {
    struct ctx *c;
    char *paths[CHECK_CA_BATCH]; /* owned */
    size_t n;
    struct cb_finding *x; /* the finding whose bindings ca_user names */
};

static int ca_user(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct ca_walk *w = arg;
    char text[CB_KEY_TEXT_MAX];

    (void)key;
    (void)klen;
    if (vlen < 2 || vlen - 2 >= sizeof(text))
        return CB_ESTORE; /* not what on_binding wrote */
    memcpy(text, (const char *)val + 2, vlen - 2);
    text[vlen - 2] = '\0';
    if (w->x->n_bindings == 0)
        w->x->port = get16(val);
    return cb_check_add_binding(w->x, text) != 0 ? CB_ENOMEM : 0;
}

static int ca_batch(struct ca_walk *w)
{
    struct ctx *c = w->c;
    struct cb_svcuser_probe probes[CHECK_CA_BATCH];
    bool ok[CHECK_CA_BATCH];
    char(*reasons)[CB_PRIV_REASON] = calloc(CHECK_CA_BATCH, sizeof(*reasons));
    int ret = 0;

    if (reasons == NULL) {
        ret = CB_ENOMEM;
        goto out_free;
    }
    for (size_t i = 0; i < w->n; i++)
        probes[i] = (struct cb_svcuser_probe){.cert = w->paths[i], .clientca = true};
    test_access(c, probes, w->n, ok, reasons);
    for (size_t i = 0; i < w->n && ret == 0; i++) {
        if (ok[i])
            continue;
        w->x = cb_check_add(c->out, "clientca-unusable", CB_SEV_ERROR, 0,
                            "the client CA file %s cannot be used%s%s: %s; every handshake "
                            "on its bindings fails until it is a readable PEM file of CA "
                            "certificates",
                            w->paths[i], c->user_name[0] ? " by " : "", c->user_name, reasons[i]);
        if (w->x == NULL) {
            ret = CB_ENOMEM;
            break;
        }
        ret = cb_spool_foreach(c->cas, w->paths[i], strlen(w->paths[i]) + 1, CB_CHECK_LIST_MAX,
                               ca_user, w, c->err);
        if (ret == 0)
            ret = flush(c);
    }
out_free:
    for (size_t i = 0; i < w->n; i++)
        free(w->paths[i]);
    w->n = 0;
    free(reasons);
    return ret;
}

/* Each file once: the spool holds it once a binding, in a row. */
static int on_ca(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct ca_walk *w = arg;
    const char *nul = memchr(key, '\0', klen);

    (void)val;
    (void)vlen;
    if (nul == NULL)
        return CB_ESTORE; /* not what on_binding wrote */
    if (w->n > 0 && strcmp(w->paths[w->n - 1], key) == 0)
        return 0;
    if (w->n == CHECK_CA_BATCH) {
        /* Keep the last one: the next rows may be its own. */
        char *last = w->paths[--w->n];
        int ret = ca_batch(w);
        w->paths[w->n++] = last;
        if (ret != 0)
            return ret;
    }
    if ((w->paths[w->n] = strdup(key)) == NULL)
        return CB_ENOMEM;
    w->n++;
    return 0;
}

static int clientca_findings(struct ctx *c)
{
    struct ca_walk w = {.c = c};
    int ret = cb_spool_foreach(c->cas, NULL, 0, 0, on_ca, &w, c->err);

    if (ret == 0)
        return ca_batch(&w);
    for (size_t i = 0; i < w.n; i++)
        free(w.paths[i]);
    return ret;
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
    return x == NULL || cb_check_add_binding(x, s->key) != 0 ? CB_ENOMEM : flush(ac->c);
}

static int acme_findings(struct ctx *c, struct cb_store *st, struct cb_err *err)
{
    struct acme_ctx ac = {.c = c};
    struct cb_acme_settings a;

    ac.have_account = cb_store_acme_settings_get(st, &a, NULL) == 0;
    explicit_bzero(&a, sizeof(a));
    return cb_store_acme_state_foreach(st, on_acme_state, &ac, err);
}

/* ---- central store folders ------------------------------------------------ */

/* ccs-missing, and the files of each folder (snap: the ccs bindings alone). */
static int ccs_findings(struct ctx *c, const struct cb_snapshot *snap)
{
    size_t n = cb_snapshot_count(snap);
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
    return ret != 0 ? ret : flush(c);
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

/* ---- the whole check ---------------------------------------------------------- */

static int run(struct ctx *c)
{
    struct cb_snapshot *ccs = NULL;
    int ret;

    /* Every binding once, then every certificate once: a batch of them at a time. */
    if ((c->infos = calloc(CHECK_INFO_CACHE, sizeof(*c->infos))) == NULL)
        return CB_ENOMEM;
    if ((ret = cb_store_binding_foreach_serving(c->st, on_binding, on_damaged, c, c->err)) != 0)
        return ret;
    struct dup_walk dw = {.c = c};
    if ((ret = cb_spool_foreach(c->noncanon, NULL, 0, 0, on_noncanon, &dw, c->err)) != 0)
        return ret;
    if ((c->certs = calloc(CHECK_PROBE_BATCH, sizeof(*c->certs))) == NULL)
        return CB_ENOMEM;
    if ((ret = cb_store_cert_foreach(c->st, on_cert, c, c->err)) != 0 || (ret = cert_batch(c)) != 0)
        return ret;
    if ((ret = cb_spool_foreach(c->ips, NULL, 0, 0, on_ip, c, c->err)) != 0 ||
        (ret = port_findings(c)) != 0 || (ret = clientca_findings(c)) != 0)
        return ret;
    if ((ret = cb_store_load_ccs_snapshot(c->st, &ccs, c->err)) != 0)
        return ret;
    ret = ccs_findings(c, ccs);
    cb_snapshot_unref(ccs);
    if (ret != 0 || (ret = acme_findings(c, c->st, c->err)) != 0 || (ret = fleet_findings(c)) != 0)
        return ret;
    return flush(c);
}

int cb_check_stream(struct cb_store *st, const struct cb_check_opts *opts, cb_finding_fn fn,
                    void *fn_ctx, size_t *errors, size_t *warnings, struct cb_err *err)
{
    struct ctx c = {.st = st, .opts = opts, .err = err};
    struct emit_ctx e = {.fn = fn, .ctx = fn_ctx};
    bool reading = false;
    int ret;

    c.out = &c.stage;
    *errors = *warnings = 0;
    c.have_user = cb_svcuser_get(st, &c.user, NULL) == 0;
    c.user_name = c.have_user ? c.user.name : "";
    if ((c.ports = calloc(65536, sizeof(*c.ports))) == NULL) {
        ret = CB_ENOMEM;
        goto out_free;
    }
    /* One read transaction: every step sees the same commit (and the spools' rows are
     * written in one go). */
    if ((ret = cb_store_read_begin(st, err)) != 0)
        goto out_free;
    reading = true;
    if ((ret = cb_spool_open(st, &c.findings, err)) != 0 ||
        (ret = cb_spool_open(st, &c.sni, err)) != 0 ||
        (ret = cb_spool_open(st, &c.uses, err)) != 0 ||
        (ret = cb_spool_open(st, &c.noncanon, err)) != 0 ||
        (ret = cb_spool_open(st, &c.ips, err)) != 0 ||
        (ret = cb_spool_open(st, &c.cas, err)) != 0 || (ret = run(&c)) != 0)
        goto out_free;
    *errors = c.errors;
    *warnings = c.warnings;
    ret = cb_spool_foreach(c.findings, NULL, 0, 0, emit_one, &e, err);
out_free:
    if (ret == CB_ENOMEM)
        cb_err_set(err, ret, "out of memory");
    else if (ret == CB_ESTORE && err != NULL && err->msg[0] == '\0')
        cb_err_set(err, ret,
                   "internal: a temporary table of the check holds what it did not write");
    for (size_t k = 0; k < c.n_certs; k++)
        cert_clear(&c.certs[k]);
    free(c.certs);
    for (size_t k = 0; c.infos != NULL && k < CHECK_INFO_CACHE; k++)
        cb_cert_info_clear(&c.infos[k].info);
    free(c.infos);
    cb_findings_clear(&c.stage);
    cb_spool_close(c.findings);
    cb_spool_close(c.ips);
    cb_spool_close(c.sni);
    cb_spool_close(c.uses);
    cb_spool_close(c.noncanon);
    cb_spool_close(c.cas);
    if (reading)
        cb_store_read_end(st);
    free(c.ports);
    return ret;
}

/* cb_check_run's collector: a copy of each finding. */
static int collect(const struct cb_finding *x, void *arg)
{
    struct cb_findings *f = arg;
    struct cb_finding *y = cb_check_add(f, x->code, x->severity, x->port, "%s", x->message);

    if (y == NULL)
        return CB_ENOMEM;
    for (size_t i = 0; i < x->n_bindings; i++)
        if (cb_check_add_binding(y, x->bindings[i]) != 0)
            return CB_ENOMEM;
    return 0;
}

int cb_check_run(struct cb_store *st, const struct cb_check_opts *opts, struct cb_findings *out,
                 struct cb_err *err)
{
    size_t errors, warnings;
    int ret;

    memset(out, 0, sizeof(*out));
    if ((ret = cb_check_stream(st, opts, collect, out, &errors, &warnings, err)) != 0) {
        if (ret == CB_ENOMEM)
            cb_err_set(err, ret, "out of memory");
        cb_findings_clear(out);
    }
    return ret;
}
