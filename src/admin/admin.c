/* admin.c: the admin model and what /metrics and /status.json render from it. */
#include "admin/admin.h"
#include "binding/hostport.h"
#include "binding/snapshot.h"
#include "check/check.h"
#include "store/acme.h"
#include "store/ocsp.h"
#include "store/tickets.h"
#include "tls/cert.h"
#include "tls/ocsp.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mcert {
    char thumb[CB_THUMB_LEN + 1];
    char *subject;
    char **names;
    size_t n_names;
    int64_t not_after;
    char key_type[32];
    int64_t ocsp_this_update; /* its cached OCSP response's thisUpdate, 0 when none */
};

struct mbinding {
    const struct cb_snap_binding *b;  /* in m->snap */
    const struct cb_acme_state *acme; /* managed bindings: their ACME state, else NULL */
    enum cb_rule rank;                /* the rule that would choose it: resolution order */
    const struct mcert *cert;         /* NULL: not in the store, or a ccs binding */
    enum cb_severity health;          /* 0: no finding */
    char *findings;                   /* owned: "code: message" lines, or NULL */
};

struct cb_admin_model {
    struct cb_snapshot *snap;
    struct mcert *certs; /* sorted by thumbprint */
    size_t n_certs, cap_certs;
    struct mbinding *bindings; /* sorted by port, rank, key */
    size_t n_bindings;
    size_t errors, warnings;
    uint64_t generation;
    int64_t changed_at;         /* seconds since the epoch, 0 when unknown */
    struct cb_acme_state *acme; /* managed bindings, sorted by key */
    size_t n_acme, cap_acme;
    uint64_t acme_valid, acme_failed; /* orders by result, since the store was made */
    uint64_t ocsp_fetch_failures;     /* OCSP fetches that failed, since the store was made */
    /* Session ticket keys: the current one's id (keys made since the store was, 0 none yet)
     * and when it was made (seconds since the epoch). */
    int64_t ticket_generation, ticket_created;
};

static int collect_acme(const struct cb_acme_state *s, void *arg)
{
    struct cb_admin_model *m = arg;
    if (m->n_acme == m->cap_acme) {
        size_t cap = m->cap_acme ? m->cap_acme * 2 : 8;
        struct cb_acme_state *nv = realloc(m->acme, cap * sizeof(*nv));
        if (nv == NULL)
            return CB_ENOMEM;
        m->acme = nv;
        m->cap_acme = cap;
    }
    m->acme[m->n_acme++] = *s;
    return 0;
}

static int cmp_acme(const void *a, const void *b)
{
    return strcmp(((const struct cb_acme_state *)a)->key, ((const struct cb_acme_state *)b)->key);
}

/* The ACME state of every managed binding, and the order counts the manager keeps. */
static int load_acme(struct cb_store *st, struct cb_admin_model *m, struct cb_err *err)
{
    char v[32];
    int ret = cb_store_acme_state_foreach(st, collect_acme, m, err);
    if (ret != 0)
        return ret == CB_ENOMEM ? cb_err_set(err, ret, "out of memory") : ret;
    if (m->n_acme > 1)
        qsort(m->acme, m->n_acme, sizeof(*m->acme), cmp_acme);
    if (cb_store_setting_get(st, "acme.orders.valid", v, sizeof(v), NULL) == 0)
        m->acme_valid = strtoull(v, NULL, 10);
    if (cb_store_setting_get(st, "acme.orders.failed", v, sizeof(v), NULL) == 0)
        m->acme_failed = strtoull(v, NULL, 10);
    return 0;
}

/* ---- building ----------------------------------------------------------- */

/* The section 2 rule that would choose b (cb_rule values are in resolution order). */
static enum cb_rule rank_of(const struct cb_snap_binding *b)
{
    switch (b->kind) {
    case CB_KEY_IP:
        return CB_RULE_IP;
    case CB_KEY_HOST:
        return CB_RULE_SNI_EXACT;
    case CB_KEY_HOST_WILD:
        return CB_RULE_SNI_WILDCARD;
    case CB_KEY_CCS:
        return CB_RULE_CCS;
    default:
        return CB_RULE_WILDCARD_IP;
    }
}

static int cmp_binding(const void *pa, const void *pb)
{
    const struct mbinding *a = pa, *b = pb;
    if (a->b->port != b->b->port)
        return a->b->port < b->b->port ? -1 : 1;
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    /* Rule 5: an IPv6 connection tries [::] before 0.0.0.0 (IPv4 reaches only 0.0.0.0). */
    if (a->rank == CB_RULE_WILDCARD_IP && a->b->family != b->b->family)
        return a->b->family == AF_INET6 ? -1 : 1;
    return strcmp(a->b->key_text, b->b->key_text);
}

static int cmp_cert(const void *a, const void *b)
{
    return strcmp(((const struct mcert *)a)->thumb, ((const struct mcert *)b)->thumb);
}

/* The cached OCSP responses' ages (a few KB per certificate, from the state folder) and the
 * manager's count of failed fetches. A response that cannot be read counts as none. */
static void load_ocsp(struct cb_store *st, struct cb_admin_model *m)
{
    char v[32];

    for (size_t i = 0; i < m->n_certs; i++) {
        unsigned char *der = NULL;
        size_t len = 0;
        int64_t next;
        if (cb_store_ocsp_read(st, m->certs[i].thumb, &der, &len, NULL) != 0)
            continue;
        if (!cb_ocsp_response_times(der, len, &m->certs[i].ocsp_this_update, &next))
            m->certs[i].ocsp_this_update = 0;
        free(der);
    }
    if (cb_store_setting_get(st, "ocsp.fetch.failures", v, sizeof(v), NULL) == 0)
        m->ocsp_fetch_failures = strtoull(v, NULL, 10);
}

static int collect_cert(const struct cb_cert_row *row, void *arg)
{
    struct cb_admin_model *m = arg;
    if (m->n_certs == m->cap_certs) {
        size_t cap = m->cap_certs ? m->cap_certs * 2 : 64;
        struct mcert *nv = realloc(m->certs, cap * sizeof(*nv));
        if (nv == NULL)
            return CB_ENOMEM;
        m->certs = nv;
        m->cap_certs = cap;
    }
    struct mcert *c = &m->certs[m->n_certs];
    memset(c, 0, sizeof(*c));
    memcpy(c->thumb, row->info.thumbprint, sizeof(c->thumb));
    memcpy(c->key_type, row->info.key_type, sizeof(c->key_type));
    c->not_after = row->info.not_after;
    c->subject = strdup(row->info.subject ? row->info.subject : "");
    c->names = calloc(row->info.n_names ? row->info.n_names : 1, sizeof(*c->names));
    m->n_certs++; /* counted now, so that cb_admin_model_free releases what was copied */
    if (c->subject == NULL || c->names == NULL)
        return CB_ENOMEM;
    for (size_t i = 0; i < row->info.n_names; i++) {
        if ((c->names[i] = strdup(row->info.names[i])) == NULL)
            return CB_ENOMEM;
        c->n_names++;
    }
    return 0;
}

static int cmp_by_key(const void *a, const void *b)
{
    const struct mbinding *x = *(const struct mbinding *const *)a;
    const struct mbinding *y = *(const struct mbinding *const *)b;
    return strcmp(x->b->key_text, y->b->key_text);
}

/* Attaches each finding to the binding at fault (the first one it names). */
static int attach_findings(struct cb_admin_model *m, const struct cb_findings *f)
{
    struct mbinding **by_key = calloc(m->n_bindings ? m->n_bindings : 1, sizeof(*by_key));
    int ret = 0;

    if (by_key == NULL)
        return CB_ENOMEM;
    for (size_t i = 0; i < m->n_bindings; i++)
        by_key[i] = &m->bindings[i];
    if (m->n_bindings > 0)
        qsort(by_key, m->n_bindings, sizeof(*by_key), cmp_by_key);
    m->errors = f->errors;
    m->warnings = f->warnings;
    for (size_t i = 0; i < f->n && m->n_bindings > 0; i++) {
        const struct cb_finding *x = &f->v[i];
        if (x->n_bindings == 0)
            continue;
        struct cb_snap_binding kb = {.key_text = x->bindings[0], .certhash2 = ""};
        struct mbinding km = {.b = &kb}, *kp = &km;
        struct mbinding **hit = bsearch(&kp, by_key, m->n_bindings, sizeof(*by_key), cmp_by_key);
        if (hit == NULL)
            continue;
        struct mbinding *mb = *hit;
        if (x->severity > mb->health)
            mb->health = x->severity;
        size_t old = mb->findings ? strlen(mb->findings) : 0;
        size_t add = strlen(x->code) + 2 + strlen(x->message) + 2;
        char *nv = realloc(mb->findings, old + add);
        if (nv == NULL) {
            ret = CB_ENOMEM;
            break;
        }
        snprintf(nv + old, add, "%s%s: %s", old ? "\n" : "", x->code, x->message);
        mb->findings = nv;
    }
    free(by_key);
    return ret;
}

/* The current session ticket key's generation and age: never the key. */
static int load_tickets(struct cb_store *st, struct cb_admin_model *m, struct cb_err *err)
{
    struct cb_ticket_keys k;
    int ret = cb_store_ticket_keys_load(st, &k, err);

    if (ret != 0)
        return ret;
    if (k.n > 0) {
        m->ticket_generation = k.v[0].id;
        m->ticket_created = k.v[0].created;
    }
    cb_ticket_keys_clear(&k);
    return 0;
}

int cb_admin_model_build(struct cb_store *st, int64_t now, struct cb_admin_model **out,
                         struct cb_err *err)
{
    struct cb_admin_model *m = calloc(1, sizeof(*m));
    struct cb_findings f = {0};
    struct cb_check_opts copts = {.soon_days = 14, .now = now};
    char changed[32];
    int ret;

    if (m == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    if ((ret = cb_store_load_snapshot(st, &m->snap, err)) != 0)
        goto out_free;
    m->generation = cb_snapshot_generation(m->snap);
    if (cb_store_setting_get(st, "changed_at", changed, sizeof(changed), NULL) == 0)
        m->changed_at = strtoll(changed, NULL, 10);
    if ((ret = cb_store_cert_foreach(st, collect_cert, m, err)) != 0) {
        if (ret == CB_ENOMEM)
            cb_err_set(err, ret, "out of memory");
        goto out_free;
    }
    if (m->n_certs > 0)
        qsort(m->certs, m->n_certs, sizeof(*m->certs), cmp_cert);
    load_ocsp(st, m);
    if ((ret = load_acme(st, m, err)) != 0 || (ret = load_tickets(st, m, err)) != 0)
        goto out_free;
    m->n_bindings = cb_snapshot_count(m->snap);
    m->bindings = calloc(m->n_bindings ? m->n_bindings : 1, sizeof(*m->bindings));
    if (m->bindings == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    for (size_t i = 0; i < m->n_bindings; i++) {
        struct mbinding *mb = &m->bindings[i];
        mb->b = cb_snapshot_binding(m->snap, (uint32_t)i);
        mb->rank = rank_of(mb->b);
        if (mb->b->kind != CB_KEY_CCS && m->n_certs > 0) {
            struct mcert key;
            memcpy(key.thumb, mb->b->certhash, sizeof(key.thumb));
            mb->cert = bsearch(&key, m->certs, m->n_certs, sizeof(key), cmp_cert);
        }
        if (m->n_acme > 0) {
            struct cb_acme_state k;
            snprintf(k.key, sizeof(k.key), "%s", mb->b->key_text);
            mb->acme = bsearch(&k, m->acme, m->n_acme, sizeof(k), cmp_acme);
        }
    }
    if (m->n_bindings > 0)
        qsort(m->bindings, m->n_bindings, sizeof(*m->bindings), cmp_binding);
    if ((ret = cb_check_run(st, &copts, &f, err)) != 0)
        goto out_free;
    if (attach_findings(m, &f) != 0) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    cb_findings_clear(&f);
    *out = m;
    return 0;
out_free:
    cb_findings_clear(&f);
    cb_admin_model_free(m);
    return ret;
}

void cb_admin_model_free(struct cb_admin_model *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_certs; i++) {
        free(m->certs[i].subject);
        for (size_t k = 0; k < m->certs[i].n_names; k++)
            free(m->certs[i].names[k]);
        free(m->certs[i].names);
    }
    for (size_t i = 0; m->bindings != NULL && i < m->n_bindings; i++)
        free(m->bindings[i].findings);
    free(m->certs);
    free(m->bindings);
    free(m->acme);
    cb_snapshot_unref(m->snap);
    free(m);
}

uint64_t cb_admin_model_generation(const struct cb_admin_model *m)
{
    return m->generation;
}

/* ---- /metrics ----------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void sb_printf(struct sbuf *sb, const char *fmt, ...) CB_PRINTF(2, 3);

static void sb_printf(struct sbuf *sb, const char *fmt, ...)
{
    if (sb->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->p + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->failed = true;
            return;
        }
        if ((size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        }
        size_t cap = sb->cap * 2 > sb->len + (size_t)n + 1 ? sb->cap * 2 : sb->len + (size_t)n + 1;
        char *np = realloc(sb->p, cap);
        if (np == NULL) {
            sb->failed = true;
            return;
        }
        sb->p = np;
        sb->cap = cap;
    }
}

/* A label value in the exposition format: backslash, quote and newline escaped. */
static const char *label_escape(const char *s, char *buf, size_t size)
{
    size_t o = 0;
    for (; *s && o + 3 < size; s++) {
        if (*s == '\\' || *s == '"') {
            buf[o++] = '\\';
            buf[o++] = *s;
        } else if (*s == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *s;
        }
    }
    buf[o] = '\0';
    return buf;
}

static const struct cb_metrics_sum zero_sum;

static const struct cb_metrics_sum *sum_for(const struct cb_metrics_totals *t, const char *key)
{
    const struct cb_metrics_sum *s = t ? cb_metrics_totals_find(t, key) : NULL;
    return s ? s : &zero_sum;
}

/*
 * Whether binding b gets its own series. Up to CB_METRICS_ALL_MAX bindings, every
 * one does (zeros included, so rate() and absent() work from the start); beyond,
 * only those that have seen a connection: 10^5 idle bindings would make a million
 * series of zeros per scrape.
 */
#define CB_METRICS_ALL_MAX 10000

static bool has_series(const struct cb_admin_model *m, const struct cb_metrics_totals *t,
                       const struct cb_snap_binding *b)
{
    return m->n_bindings <= CB_METRICS_ALL_MAX ||
           (t != NULL && cb_metrics_totals_find(t, b->key_text));
}

/* One per-binding series for each binding that has them: k picks the number. */
static void binding_series(struct sbuf *sb, const struct cb_admin_model *m,
                           const struct cb_metrics_totals *t, const char *name, enum cb_metric k)
{
    for (size_t i = 0; i < m->n_bindings; i++) {
        const struct cb_snap_binding *b = m->bindings[i].b;
        if (!has_series(m, t, b))
            continue;
        sb_printf(sb, "%s{binding=\"%s\",port=\"%u\"} %llu\n", name, b->key_text, b->port,
                  (unsigned long long)sum_for(t, b->key_text)->v[k]);
    }
}

int cb_admin_render_metrics(const struct cb_admin_model *m, struct cb_metrics *stats,
                            int workers_alive, struct cb_admin_body *out)
{
    struct sbuf sb = {.cap = 4096};
    struct cb_metrics_totals *t = NULL;
    uint64_t g[CB_GMETRIC_COUNT] = {0};
    char esc[1024];

    if ((sb.p = malloc(sb.cap)) == NULL)
        return CB_ENOMEM;
    if (stats != NULL) {
        if ((t = cb_metrics_collect(stats)) == NULL) {
            free(sb.p);
            return CB_ENOMEM;
        }
        cb_metrics_totals_global(t, g);
    }

    sb_printf(&sb, "# HELP certbind_handshakes_total TLS handshakes completed, per binding.\n"
                   "# TYPE certbind_handshakes_total counter\n");
    binding_series(&sb, m, t, "certbind_handshakes_total", CB_METRIC_HANDSHAKES);

    sb_printf(&sb, "# HELP certbind_handshake_failures_total Handshakes that failed, per binding "
                   "and reason; binding=\"\" when none was chosen.\n"
                   "# TYPE certbind_handshake_failures_total counter\n");
    static const struct {
        enum cb_metric k;
        const char *reason;
    } reasons[] = {{CB_METRIC_FAIL_KEY, "key_unusable"},
                   {CB_METRIC_FAIL_REJECTED, "rejected"},
                   {CB_METRIC_FAIL_PROTOCOL, "protocol"},
                   {CB_METRIC_FAIL_CAPACITY, "capacity"},
                   {CB_METRIC_FAIL_TIMEOUT, "timeout"}};
    for (size_t i = 0; i < m->n_bindings; i++) {
        const struct cb_snap_binding *b = m->bindings[i].b;
        const struct cb_metrics_sum *s = sum_for(t, b->key_text);
        if (!has_series(m, t, b))
            continue;
        for (size_t r = 0; r < sizeof(reasons) / sizeof(reasons[0]); r++)
            sb_printf(&sb,
                      "certbind_handshake_failures_total{binding=\"%s\",port=\"%u\",reason=\"%s\"} "
                      "%llu\n",
                      b->key_text, b->port, reasons[r].reason,
                      (unsigned long long)s->v[reasons[r].k]);
    }
    sb_printf(
        &sb,
        "certbind_handshake_failures_total{binding=\"\",port=\"\",reason=\"no_binding\"} %llu\n"
        "certbind_handshake_failures_total{binding=\"\",port=\"\",reason=\"protocol\"} %llu\n"
        "certbind_handshake_failures_total{binding=\"\",port=\"\",reason=\"timeout\"} %llu\n",
        (unsigned long long)g[CB_GMETRIC_NO_BINDING], (unsigned long long)g[CB_GMETRIC_PROTOCOL],
        (unsigned long long)g[CB_GMETRIC_TIMEOUT]);

    sb_printf(&sb, "# HELP certbind_open_connections Connections open after their handshake, per "
                   "binding.\n# TYPE certbind_open_connections gauge\n");
    binding_series(&sb, m, t, "certbind_open_connections", CB_METRIC_OPEN);
    sb_printf(&sb,
              "# HELP certbind_received_bytes_total Plaintext bytes from clients, forwarded to "
              "the backend.\n# TYPE certbind_received_bytes_total counter\n");
    binding_series(&sb, m, t, "certbind_received_bytes_total", CB_METRIC_BYTES_IN);
    sb_printf(&sb, "# HELP certbind_sent_bytes_total Plaintext bytes from the backend, sent to "
                   "clients.\n# TYPE certbind_sent_bytes_total counter\n");
    binding_series(&sb, m, t, "certbind_sent_bytes_total", CB_METRIC_BYTES_OUT);

    sb_printf(&sb, "# HELP certbind_certificate_not_after_seconds When each stored certificate "
                   "expires (seconds since the epoch).\n"
                   "# TYPE certbind_certificate_not_after_seconds gauge\n");
    for (size_t i = 0; i < m->n_certs; i++)
        sb_printf(&sb,
                  "certbind_certificate_not_after_seconds{thumbprint=\"%s\",subject=\"%s\"} %lld\n",
                  m->certs[i].thumb, label_escape(m->certs[i].subject, esc, sizeof(esc)),
                  (long long)m->certs[i].not_after);

    sb_printf(&sb,
              "# HELP certbind_connections_accepted_total TCP connections accepted.\n"
              "# TYPE certbind_connections_accepted_total counter\n"
              "certbind_connections_accepted_total %llu\n"
              "# HELP certbind_connections_open Connections open now, in any state.\n"
              "# TYPE certbind_connections_open gauge\n"
              "certbind_connections_open %llu\n"
              "# HELP certbind_connections_refused_total Connections closed at once: over "
              "--max-connections.\n"
              "# TYPE certbind_connections_refused_total counter\n"
              "certbind_connections_refused_total %llu\n"
              "# HELP certbind_connections_handed_off_total Connections passed, before their "
              "handshake, to the worker that holds their certificate.\n"
              "# TYPE certbind_connections_handed_off_total counter\n"
              "certbind_connections_handed_off_total %llu\n"
              "# HELP certbind_certificates_loaded_total Certificates parsed on first use, "
              "over all workers (each parsed by one worker unless it is in demand in several).\n"
              "# TYPE certbind_certificates_loaded_total counter\n"
              "certbind_certificates_loaded_total %llu\n"
              "# HELP certbind_bindings Bindings in the current snapshot.\n"
              "# TYPE certbind_bindings gauge\n"
              "certbind_bindings %zu\n"
              "# HELP certbind_check_findings What `certbind check` finds now, by severity.\n"
              "# TYPE certbind_check_findings gauge\n"
              "certbind_check_findings{severity=\"error\"} %zu\n"
              "certbind_check_findings{severity=\"warning\"} %zu\n"
              "# HELP certbind_snapshot_generation The store generation being served.\n"
              "# TYPE certbind_snapshot_generation gauge\n"
              "certbind_snapshot_generation %llu\n"
              "# HELP certbind_snapshot_changed_timestamp_seconds When the store last changed "
              "(seconds since the epoch).\n"
              "# TYPE certbind_snapshot_changed_timestamp_seconds gauge\n"
              "certbind_snapshot_changed_timestamp_seconds %lld\n"
              "# HELP certbind_workers Worker processes running.\n"
              "# TYPE certbind_workers gauge\n"
              "certbind_workers %d\n",
              (unsigned long long)g[CB_GMETRIC_ACCEPTED], (unsigned long long)g[CB_GMETRIC_OPEN],
              (unsigned long long)g[CB_GMETRIC_CAPACITY],
              (unsigned long long)g[CB_GMETRIC_HANDED_OFF],
              (unsigned long long)g[CB_GMETRIC_CERTS_LOADED], m->n_bindings, m->errors, m->warnings,
              (unsigned long long)m->generation, (long long)m->changed_at, workers_alive);
    sb_printf(
        &sb,
        "# HELP certbind_cert_cache_hits_total Handshakes served a certificate the worker "
        "had parsed already.\n"
        "# TYPE certbind_cert_cache_hits_total counter\n"
        "certbind_cert_cache_hits_total %llu\n"
        "# HELP certbind_cert_cache_evictions_total Parsed certificates dropped, least "
        "recently used first, to stay within --cert-cache-mb (parsed again when asked for).\n"
        "# TYPE certbind_cert_cache_evictions_total counter\n"
        "certbind_cert_cache_evictions_total %llu\n"
        "# HELP certbind_cert_cache_certificates Parsed certificates held, over all workers.\n"
        "# TYPE certbind_cert_cache_certificates gauge\n"
        "certbind_cert_cache_certificates %llu\n"
        "# HELP certbind_cert_cache_bytes Their estimated memory (leaf, chain and key).\n"
        "# TYPE certbind_cert_cache_bytes gauge\n"
        "certbind_cert_cache_bytes %llu\n"
        "# HELP certbind_cert_cache_limit_bytes The budget, --cert-cache-mb.\n"
        "# TYPE certbind_cert_cache_limit_bytes gauge\n"
        "certbind_cert_cache_limit_bytes %llu\n",
        (unsigned long long)g[CB_GMETRIC_CERT_CACHE_HITS],
        (unsigned long long)g[CB_GMETRIC_CERT_CACHE_EVICTIONS],
        (unsigned long long)g[CB_GMETRIC_CERT_CACHE_CERTS],
        (unsigned long long)g[CB_GMETRIC_CERT_CACHE_BYTES],
        (unsigned long long)g[CB_GMETRIC_CERT_CACHE_LIMIT]);
    sb_printf(&sb,
              "# HELP certbind_acme_challenges_answered_total TLS-ALPN-01 validations answered "
              "with a challenge certificate.\n"
              "# TYPE certbind_acme_challenges_answered_total counter\n"
              "certbind_acme_challenges_answered_total %llu\n",
              (unsigned long long)g[CB_GMETRIC_ACME_ANSWERED]);
    sb_printf(&sb,
              "# HELP certbind_ocsp_staples_served_total Handshakes that stapled an OCSP "
              "response.\n"
              "# TYPE certbind_ocsp_staples_served_total counter\n"
              "certbind_ocsp_staples_served_total %llu\n"
              "# HELP certbind_ocsp_fetch_failures_total OCSP fetches that failed (responder "
              "down, slow, or an answer refused), since the store was made.\n"
              "# TYPE certbind_ocsp_fetch_failures_total counter\n"
              "certbind_ocsp_fetch_failures_total %llu\n"
              "# HELP certbind_ocsp_response_age_seconds Age (now - thisUpdate) of each "
              "certificate's cached OCSP response.\n"
              "# TYPE certbind_ocsp_response_age_seconds gauge\n",
              (unsigned long long)g[CB_GMETRIC_OCSP_STAPLED],
              (unsigned long long)m->ocsp_fetch_failures);
    for (size_t i = 0; i < m->n_certs; i++)
        if (m->certs[i].ocsp_this_update > 0)
            sb_printf(&sb, "certbind_ocsp_response_age_seconds{thumbprint=\"%s\"} %lld\n",
                      m->certs[i].thumb, (long long)(time(NULL) - m->certs[i].ocsp_this_update));
    sb_printf(&sb,
              "# HELP certbind_resumed_handshakes_total Handshakes that resumed a session from a "
              "ticket.\n"
              "# TYPE certbind_resumed_handshakes_total counter\n"
              "certbind_resumed_handshakes_total %llu\n",
              (unsigned long long)g[CB_GMETRIC_RESUMED]);
    if (m->ticket_generation > 0) {
        int64_t age = (int64_t)time(NULL) - m->ticket_created;
        sb_printf(&sb,
                  "# HELP certbind_ticket_key_age_seconds How old the session ticket key that "
                  "encrypts new tickets is.\n"
                  "# TYPE certbind_ticket_key_age_seconds gauge\n"
                  "certbind_ticket_key_age_seconds %lld\n"
                  "# HELP certbind_ticket_key_rotations_total Session ticket keys made since the "
                  "store was.\n"
                  "# TYPE certbind_ticket_key_rotations_total counter\n"
                  "certbind_ticket_key_rotations_total %lld\n",
                  (long long)(age > 0 ? age : 0), (long long)m->ticket_generation);
    }
    sb_printf(&sb,
              "# HELP certbind_acme_orders_total ACME orders by result, since the store was made.\n"
              "# TYPE certbind_acme_orders_total counter\n"
              "certbind_acme_orders_total{result=\"valid\"} %llu\n"
              "certbind_acme_orders_total{result=\"failed\"} %llu\n",
              (unsigned long long)m->acme_valid, (unsigned long long)m->acme_failed);
    if (m->n_acme > 0)
        sb_printf(&sb, "# HELP certbind_acme_renewal_timestamp_seconds When serve renews (or "
                       "next tries) a managed binding.\n"
                       "# TYPE certbind_acme_renewal_timestamp_seconds gauge\n"
                       "# HELP certbind_acme_failing 1 when the last attempt of a managed binding "
                       "failed.\n"
                       "# TYPE certbind_acme_failing gauge\n");
    for (size_t i = 0; i < m->n_acme; i++) {
        const struct cb_acme_state *a = &m->acme[i];
        const char *k = label_escape(a->key, esc, sizeof(esc));
        int64_t next = a->status == CB_ACME_FAILED || a->certhash[0] == '\0' ? a->next_attempt
                                                                             : a->renew_after;
        /* Its certificate's expiry is certbind_certificate_not_after_seconds, as for any. */
        sb_printf(&sb,
                  "certbind_acme_renewal_timestamp_seconds{binding=\"%s\"} %lld\n"
                  "certbind_acme_failing{binding=\"%s\"} %d\n",
                  k, (long long)next, k, a->status == CB_ACME_FAILED);
    }
    cb_metrics_totals_free(t);
    if (sb.failed) {
        free(sb.p);
        return CB_ENOMEM;
    }
    out->data = sb.p;
    out->len = sb.len;
    return 0;
}

/* ---- /status.json ------------------------------------------------------- */

static json_t *binding_json(const struct mbinding *mb, const struct cb_metrics_totals *t,
                            int64_t now)
{
    const struct cb_snap_binding *b = mb->b;
    const struct cb_metrics_sum *s = sum_for(t, b->key_text);
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "key", json_string(b->key_text));
    json_object_set_new(o, "rule", json_string(cb_rule_name(mb->rank)));
    json_object_set_new(o, "order", json_integer((json_int_t)mb->rank));
    if (b->kind == CB_KEY_CCS)
        json_object_set_new(o, "ccspath", json_string(b->ccspath ? b->ccspath : ""));
    else
        json_object_set_new(o, "certhash", json_string(b->certhash));
    if (b->backend != NULL)
        json_object_set_new(o, "backend", json_string(b->backend));
    if (mb->cert != NULL) {
        json_t *names = json_array();
        for (size_t i = 0; names && i < mb->cert->n_names; i++)
            json_array_append_new(names, json_string(mb->cert->names[i]));
        json_object_set_new(o, "subject", json_string(mb->cert->subject));
        json_object_set_new(o, "names", names ? names : json_array());
        json_object_set_new(o, "key_type", json_string(mb->cert->key_type));
        json_object_set_new(o, "not_after", json_integer(mb->cert->not_after));
        int64_t left = mb->cert->not_after - now;
        json_object_set_new(o, "days_left",
                            json_integer(left >= 0 ? left / 86400 : -((-left + 86399) / 86400)));
    }
    if (mb->acme != NULL) {
        const struct cb_acme_state *a = mb->acme;
        json_t *j = json_object();
        if (j != NULL) {
            json_object_set_new(j, "status", json_string(cb_acme_status_name(a->status)));
            json_object_set_new(j, "renew_after", json_integer(a->renew_after));
            json_object_set_new(j, "next_attempt", json_integer(a->next_attempt));
            json_object_set_new(j, "last_attempt", json_integer(a->last_attempt));
            json_object_set_new(j, "last_error", json_string(a->last_error));
            json_object_set_new(o, "acme", j);
        }
    }
    json_object_set_new(o, "health",
                        json_string(mb->health == CB_SEV_ERROR     ? "error"
                                    : mb->health == CB_SEV_WARNING ? "warning"
                                                                   : "ok"));
    json_object_set_new(o, "findings", json_string(mb->findings ? mb->findings : ""));
    json_object_set_new(o, "handshakes", json_integer((json_int_t)s->v[CB_METRIC_HANDSHAKES]));
    json_object_set_new(
        o, "failures",
        json_integer((json_int_t)(s->v[CB_METRIC_FAIL_KEY] + s->v[CB_METRIC_FAIL_REJECTED] +
                                  s->v[CB_METRIC_FAIL_PROTOCOL] + s->v[CB_METRIC_FAIL_CAPACITY] +
                                  s->v[CB_METRIC_FAIL_TIMEOUT])));
    json_object_set_new(o, "open", json_integer((json_int_t)s->v[CB_METRIC_OPEN]));
    json_object_set_new(o, "bytes_in", json_integer((json_int_t)s->v[CB_METRIC_BYTES_IN]));
    json_object_set_new(o, "bytes_out", json_integer((json_int_t)s->v[CB_METRIC_BYTES_OUT]));
    return o;
}

int cb_admin_render_status(const struct cb_admin_model *m, struct cb_metrics *stats, int64_t now,
                           size_t max_per_port, struct cb_admin_body *out)
{
    struct cb_metrics_totals *t = NULL;
    uint64_t g[CB_GMETRIC_COUNT] = {0};
    json_t *root = json_object(), *ports = json_array(), *workers = json_array();
    int ret = CB_ENOMEM;

    if (root == NULL || ports == NULL || workers == NULL)
        goto out_free;
    if (stats != NULL) {
        if ((t = cb_metrics_collect(stats)) == NULL)
            goto out_free;
        cb_metrics_totals_global(t, g);
        for (int i = 0; i < cb_metrics_workers(stats); i++) {
            struct cb_metrics_area *a = cb_metrics_area(stats, i);
            json_array_append_new(
                workers,
                json_pack("{s:i,s:i,s:I}", "index", i, "pid",
                          (int)atomic_load_explicit(&a->pid, memory_order_relaxed), "resumed",
                          (json_int_t)atomic_load_explicit(&a->g[CB_GMETRIC_RESUMED],
                                                           memory_order_relaxed)));
        }
    }
    json_object_set_new(root, "now", json_integer(now));
    json_object_set_new(root, "generation", json_integer((json_int_t)m->generation));
    json_object_set_new(root, "changed_at", json_integer(m->changed_at));
    json_object_set_new(root, "bindings", json_integer((json_int_t)m->n_bindings));
    json_object_set_new(root, "errors", json_integer((json_int_t)m->errors));
    json_object_set_new(root, "warnings", json_integer((json_int_t)m->warnings));
    json_t *totals = json_object();
    for (int k = 0; totals && k < CB_GMETRIC_COUNT; k++)
        json_object_set_new(totals, cb_gmetric_names[k], json_integer((json_int_t)g[k]));
    json_object_set_new(root, "totals", totals ? totals : json_object());
    json_object_set_new(root, "workers", workers);
    workers = NULL;

    for (size_t i = 0; i < m->n_bindings;) {
        uint16_t port = m->bindings[i].b->port;
        json_t *p = json_object(), *list = json_array();
        size_t shown = 0, total = 0;
        if (p == NULL || list == NULL) {
            json_decref(p);
            json_decref(list);
            goto out_free;
        }
        for (; i < m->n_bindings && m->bindings[i].b->port == port; i++, total++) {
            if (shown >= max_per_port && m->bindings[i].health == 0)
                continue; /* beyond the limit only bindings with a finding are listed */
            json_t *b = binding_json(&m->bindings[i], t, now);
            if (b == NULL || json_array_append_new(list, b) != 0) {
                json_decref(p);
                json_decref(list);
                goto out_free;
            }
            shown++;
        }
        json_object_set_new(p, "port", json_integer(port));
        json_object_set_new(p, "total", json_integer((json_int_t)total));
        json_object_set_new(p, "bindings", list);
        json_array_append_new(ports, p);
    }
    json_object_set_new(root, "ports", ports);
    ports = NULL;
    out->data = json_dumps(root, JSON_COMPACT);
    if (out->data == NULL)
        goto out_free;
    out->len = strlen(out->data);
    ret = 0;
out_free:
    json_decref(root);
    json_decref(ports);
    json_decref(workers);
    cb_metrics_totals_free(t);
    return ret;
}

/* ---- --admin ------------------------------------------------------------ */

int cb_admin_parse_addr(const char *text, bool allow_public, struct sockaddr_storage *addr,
                        socklen_t *len, struct cb_err *err)
{
    static const uint8_t loop6[16] = {[15] = 1};
    struct cb_hostport hp;
    struct cb_err perr;

    if (cb_hostport_parse(text, 0, &hp, NULL, &perr) != 0)
        return cb_err_set(err, CB_EINVAL,
                          "--admin %s: %s; give ADDRESS:PORT, such as 127.0.0.1:9110 or "
                          "[::1]:9110",
                          text, perr.msg);
    bool loopback = hp.kind == CB_HOST_IPV4 ? hp.addr[0] == 127 : memcmp(hp.addr, loop6, 16) == 0;
    if (!loopback && !allow_public)
        return cb_err_set(err, CB_EINVAL,
                          "--admin %s is not a loopback address: the metrics and status page "
                          "show every binding and certificate; add --admin-public to serve them "
                          "beyond this machine",
                          text);
    *len = cb_hostport_sockaddr(&hp, addr);
    return 0;
}
