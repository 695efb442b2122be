/*
 * ocsp_fetch.c: the manager's OCSP schedule (daemon/ocsp_fetch.h). The loop owns the
 * schedule and every store write; a pool thread only reads the certificate and the
 * cached response, talks to the responder and checks the answer.
 */
#include "daemon/ocsp_fetch.h"
#include "daemon/ocsp_http.h"
#include "store/ocsp.h"
#include "tls/ocsp.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CB_OCSP_BACKOFF_MIN 60   /* seconds before the first retry */
#define CB_OCSP_BACKOFF_MAX 3600 /* and the longest wait between retries */
#define CB_OCSP_REFRESH_MIN 60   /* never ask again sooner than this after an answer */

/* One per certificate that staples: ~100 bytes with its key (10^6 certificates: 100 MB,
 * where fixed-size texts took 650). */
struct entry {
    char thumb[CB_THUMB_LEN + 1];
    char *key;         /* one binding that uses it, for the log; owned (NULL: out of memory) */
    int64_t next_at;   /* when to look at it again */
    int64_t backoff;   /* seconds of the last wait after a failure, 0: none */
    char *last_error;  /* the reason last logged, owned; NULL while it works */
    bool no_responder; /* no http OCSP URL: nothing to fetch while it is bound */
    bool announced;    /* a cached response was logged as in use */
};

enum outcome { OUT_FRESH, OUT_CACHED, OUT_NO_URL, OUT_REVOKED, OUT_FAILED };

struct job {
    char thumb[CB_THUMB_LEN + 1];
    char cert_path[CB_PATH_MAX + 1];
    unsigned char *cached; /* the cached response (owned), or NULL */
    size_t cached_len;
    /* Results. */
    enum outcome outcome;
    unsigned char *der; /* OUT_FRESH, OUT_REVOKED: owned */
    size_t len;
    struct cb_ocsp_result res;
    char url[CB_OCSP_URL_MAX + 1];
    struct cb_err err;
};

struct cb_ocsp_fetcher {
    uv_loop_t *loop;
    struct cb_store *st;
    struct entry *v; /* sorted by thumb */
    size_t n;
    uint64_t generation;
    bool scanned, busy, stopping;
    volatile int abort;
    uint32_t jitter; /* xorshift state for the retries' jitter */
    uv_work_t work;
    struct job job;
};

int cb_ocsp_fetcher_new(uv_loop_t *loop, struct cb_store *st, struct cb_ocsp_fetcher **out,
                        struct cb_err *err)
{
    struct cb_ocsp_fetcher *f = calloc(1, sizeof(*f));

    if (f == NULL || cb_ocsp_http_init() != 0) {
        free(f);
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    }
    f->loop = loop;
    f->st = st;
    f->jitter = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
    f->work.data = f;
    *out = f;
    return 0;
}

static void job_clear(struct job *j)
{
    free(j->cached);
    free(j->der);
    memset(j, 0, sizeof(*j));
}

static void entries_free(struct entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].last_error);
    }
    free(v);
}

/* binding b's key, formatted, in an owned string (NULL: out of memory, logged as "-"). */
static char *key_text(const struct cb_binding *b)
{
    char key[CB_KEY_TEXT_MAX];
    cb_key_format(&b->key, key, sizeof(key));
    return strdup(key);
}

static const char *key_or_dash(const struct entry *e)
{
    return e->key != NULL ? e->key : "-";
}

void cb_ocsp_fetcher_free(struct cb_ocsp_fetcher *f)
{
    if (f == NULL)
        return;
    job_clear(&f->job);
    entries_free(f->v, f->n);
    free(f);
    cb_ocsp_http_cleanup();
}

void cb_ocsp_fetcher_stop(struct cb_ocsp_fetcher *f)
{
    f->stopping = true;
    f->abort = 1;
}

/* ---- which certificates ------------------------------------------------------ */

/* The certificates found by a scan, each once: a binding's thumbprint is looked up in a
 * hash index of those found so far, so a million bindings over a hundred certificates
 * make a hundred entries, not a million to sort. */
struct scan {
    struct entry *v;
    size_t n, cap;
    uint32_t *slot; /* entry index + 1, 0: empty; open addressing */
    size_t mask;
};

static uint32_t thumb_hash(const char *thumb)
{
    uint32_t h = 2166136261u;
    for (; *thumb; thumb++)
        h = (h ^ (unsigned char)*thumb) * 16777619u;
    return h;
}

/* The slot of thumb in s's index: its entry's, or the empty one it would take. */
static uint32_t *scan_slot(const struct scan *s, const char *thumb)
{
    size_t pos = thumb_hash(thumb) & s->mask;
    while (s->slot[pos] != 0 && strcmp(s->v[s->slot[pos] - 1].thumb, thumb) != 0)
        pos = (pos + 1) & s->mask;
    return &s->slot[pos];
}

/* Makes the index twice as large (at most half full). CB_ENOMEM. */
static int scan_grow(struct scan *s)
{
    size_t size = s->slot != NULL ? 2 * (s->mask + 1) : 64;
    uint32_t *old = s->slot;
    if ((s->slot = calloc(size, sizeof(*s->slot))) == NULL) {
        s->slot = old;
        return CB_ENOMEM;
    }
    s->mask = size - 1;
    for (size_t i = 0; i < s->n; i++)
        *scan_slot(s, s->v[i].thumb) = (uint32_t)i + 1;
    free(old);
    return 0;
}

static int add_entry(struct scan *s, const struct cb_binding *b, const char *thumb)
{
    if ((s->slot == NULL || 2 * (s->n + 1) > s->mask + 1) && scan_grow(s) != 0)
        return CB_ENOMEM;
    uint32_t *slot = scan_slot(s, thumb);
    if (*slot != 0) {
        /* One certificate, several bindings: the first in key order names it (the scan
         * meets them in the store's order). */
        struct entry *e = &s->v[*slot - 1];
        char key[CB_KEY_TEXT_MAX];
        cb_key_format(&b->key, key, sizeof(key));
        char *k;
        if (e->key != NULL && strcmp(key, e->key) < 0 && (k = strdup(key)) != NULL) {
            free(e->key);
            e->key = k;
        }
        return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct entry *nv = realloc(s->v, cap * sizeof(*nv));
        if (nv == NULL)
            return CB_ENOMEM;
        s->v = nv;
        s->cap = cap;
    }
    struct entry *e = &s->v[s->n++];
    memset(e, 0, sizeof(*e));
    memcpy(e->thumb, thumb, sizeof(e->thumb));
    e->key = key_text(b);
    *slot = (uint32_t)s->n;
    return 0;
}

static int on_binding(const struct cb_binding *b, void *arg)
{
    struct scan *s = arg;
    int ret;

    if (b->certhash[0] == '\0' || b->key.kind == CB_KEY_CCS ||
        (b->flags & CB_OPT_DISABLEOCSPSTAPLING))
        return 0;
    if ((ret = add_entry(s, b, b->certhash)) != 0)
        return ret;
    /* certhash=T1,T2: each certificate has its own response. */
    return b->certhash2[0] != '\0' ? add_entry(s, b, b->certhash2) : 0;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->thumb, ((const struct entry *)b)->thumb);
}

/* The certificates that staple now, each keeping its schedule from the last scan. */
static void rescan(struct cb_ocsp_fetcher *f, int64_t now)
{
    struct scan s = {0};
    struct cb_err err = {0};
    char q[900];
    size_t out = 0;

    int ret = cb_store_binding_foreach_stored(f->st, on_binding, &s, &err);
    free(s.slot);
    if (ret != 0) {
        cb_log("error", "ocsp_scan_failed", "reason=%s",
               cb_log_quote(err.msg[0] ? err.msg : "out of memory", q, sizeof(q)));
        entries_free(s.v, s.n);
        return;
    }
    if (s.n > 1)
        qsort(s.v, s.n, sizeof(*s.v), cmp_entry);
    /* s.v[0, out) are the results, s.v[out, i) inputs already taken or dropped. */
    for (size_t i = 0; i < s.n; i++) {
        if (out > 0 && strcmp(s.v[out - 1].thumb, s.v[i].thumb) == 0) {
            free(s.v[i].key); /* one certificate, several bindings */
            continue;
        }
        struct entry *old = f->n ? bsearch(&s.v[i], f->v, f->n, sizeof(*f->v), cmp_entry) : NULL;
        if (old != NULL) { /* its schedule and last error, with the binding named now */
            char *key = s.v[i].key;
            s.v[out] = *old;
            free(s.v[out].key);
            s.v[out++].key = key;
            old->key = old->last_error = NULL; /* moved */
        } else {
            s.v[out] = s.v[i];
            s.v[out++].next_at = now;
        }
    }
    entries_free(f->v, f->n);
    f->v = s.v;
    f->n = out;
    f->scanned = true;
}

/* Entry for thumb in f's sorted list, added (due now, key: b's) when absent. CB_ENOMEM. */
static int entry_add(struct cb_ocsp_fetcher *f, const struct cb_binding *b, const char *thumb,
                     int64_t now)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->v[mid].thumb, thumb);
        if (c == 0)
            return 0;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    struct entry *nv = realloc(f->v, (f->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return CB_ENOMEM;
    f->v = nv;
    memmove(&f->v[lo + 1], &f->v[lo], (f->n - lo) * sizeof(*f->v));
    struct entry *e = &f->v[lo];
    memset(e, 0, sizeof(*e));
    memcpy(e->thumb, thumb, sizeof(e->thumb));
    e->key = key_text(b);
    e->next_at = now;
    f->n++;
    return 0;
}

/* Whether an entry names binding key as the one that uses it. */
static bool key_in_use(const struct cb_ocsp_fetcher *f, const char *key, const char *thumb1,
                       const char *thumb2)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->v[i].key != NULL && strcmp(f->v[i].key, key) == 0 &&
            strcmp(f->v[i].thumb, thumb1) != 0 && strcmp(f->v[i].thumb, thumb2) != 0)
            return true;
    return false;
}

/*
 * The schedule after the store's changes since the last look, from its change log rather
 * than a pass over every binding: a new certificate that staples is added. Each entry's
 * key is a binding that uses its certificate; while no change touches such a binding,
 * every entry is still bound, so nothing is dropped. False when that cannot be told
 * (the log is gone, or a change removed or rebound an entry's binding): rescan then.
 */
static bool apply_changes(struct cb_ocsp_fetcher *f, uint64_t from, int64_t now)
{
    struct cb_store_changes ch;
    struct cb_err err = {0};
    char key[CB_KEY_TEXT_MAX];
    bool ok = true;

    if (cb_store_changes_since(f->st, from, &ch, &err) != 0)
        return false;
    for (size_t k = 0; ok && k < ch.n_removed; k++) {
        cb_key_format(&ch.removed[k], key, sizeof(key));
        ok = !key_in_use(f, key, "", "");
    }
    for (size_t k = 0; ok && k < ch.n_set; k++) {
        const struct cb_binding *b = &ch.set[k];
        bool staples = b->certhash[0] != '\0' && b->key.kind != CB_KEY_CCS &&
                       !(b->flags & CB_OPT_DISABLEOCSPSTAPLING);
        cb_key_format(&b->key, key, sizeof(key));
        if (key_in_use(f, key, staples ? b->certhash : "", staples ? b->certhash2 : "")) {
            ok = false;
            break;
        }
        if (staples && (entry_add(f, b, b->certhash, now) != 0 ||
                        (b->certhash2[0] != '\0' && entry_add(f, b, b->certhash2, now) != 0)))
            ok = false;
    }
    cb_store_changes_clear(&ch);
    return ok;
}

/* ---- one fetch, on a pool thread ---------------------------------------------- */

/* When to ask again after an answer valid from this_update to next_update: at half its
 * validity, and not sooner than CB_OCSP_REFRESH_MIN from now. */
static int64_t refresh_at(const struct cb_ocsp_result *r, int64_t now)
{
    int64_t at = r->this_update + (r->next_update - r->this_update) / 2;
    return at < now + CB_OCSP_REFRESH_MIN ? now + CB_OCSP_REFRESH_MIN : at;
}

static void on_work(uv_work_t *req)
{
    struct cb_ocsp_fetcher *f = req->data;
    struct job *j = &f->job;
    struct cb_ocsp_cert *c = NULL;
    unsigned char *rq = NULL;
    size_t rq_len = 0;
    int64_t now = (int64_t)time(NULL);

    j->outcome = OUT_FAILED;
    if (cb_ocsp_cert_load(j->cert_path, &c, &j->err) != 0)
        return;
    snprintf(j->url, sizeof(j->url), "%s", cb_ocsp_cert_url(c));
    if (j->url[0] == '\0') {
        j->outcome = OUT_NO_URL;
        goto out_free;
    }
    /* A cached answer that is good and not half spent yet: nothing to ask (a restart). */
    if (j->cached != NULL &&
        cb_ocsp_response_verify(c, j->cached, j->cached_len, now, &j->res, NULL) == 0 &&
        j->res.status == CB_OCSP_GOOD && refresh_at(&j->res, now) > now + CB_OCSP_REFRESH_MIN) {
        j->outcome = OUT_CACHED;
        goto out_free;
    }
    if (cb_ocsp_request_der(c, &rq, &rq_len, &j->err) != 0 ||
        cb_ocsp_http_post(j->url, rq, rq_len, CB_OCSP_RESPONSE_MAX, &f->abort, &j->der, &j->len,
                          &j->err) != 0)
        goto out_free;
    if (cb_ocsp_response_verify(c, j->der, j->len, now, &j->res, &j->err) != 0) {
        char why[sizeof(j->err.msg)];
        snprintf(why, sizeof(why), "%s", j->err.msg);
        cb_err_set(&j->err, CB_EFAILED, "the answer of %.300s is refused: %s", j->url, why);
        goto out_free;
    }
    if (j->res.status == CB_OCSP_GOOD)
        j->outcome = OUT_FRESH;
    else if (j->res.status == CB_OCSP_REVOKED)
        j->outcome = OUT_REVOKED;
    else
        cb_err_set(&j->err, CB_EFAILED,
                   "%.300s answers that it does not know the certificate (status unknown)", j->url);
out_free:
    free(rq);
    cb_ocsp_cert_free(c);
}

/* ---- the answer, back on the loop --------------------------------------------- */

static void count_failure(struct cb_ocsp_fetcher *f)
{
    char v[32];
    unsigned long long n = 0;

    if (cb_store_setting_get(f->st, "ocsp.fetch.failures", v, sizeof(v), NULL) == 0)
        n = strtoull(v, NULL, 10);
    snprintf(v, sizeof(v), "%llu", n + 1);
    if (cb_store_setting_set(f->st, "ocsp.fetch.failures", v, NULL) != 0)
        return; /* a counter for metrics: the schedule does not depend on it */
}

static void failed(struct cb_ocsp_fetcher *f, struct entry *e, const char *why, int64_t now)
{
    char q[900];

    e->backoff = e->backoff ? e->backoff * 2 : CB_OCSP_BACKOFF_MIN;
    if (e->backoff > CB_OCSP_BACKOFF_MAX)
        e->backoff = CB_OCSP_BACKOFF_MAX;
    /* Up to a tenth earlier, so that certificates of one responder spread out. */
    f->jitter ^= f->jitter << 13;
    f->jitter ^= f->jitter >> 17;
    f->jitter ^= f->jitter << 5;
    e->next_at = now + e->backoff - (int64_t)(f->jitter % (uint32_t)(e->backoff / 10 + 1));
    count_failure(f);
    if (e->last_error != NULL && strcmp(e->last_error, why) == 0)
        return; /* said already: logged when the reason changes, not at every try */
    free(e->last_error);
    e->last_error = strdup(why); /* NULL: out of memory, and logged again next time */
    cb_log("warn", "ocsp_fetch_failed",
           "certhash=%s binding=%s reason=%s retry_in_s=%lld action=\"serving without a new "
           "staple; the cached one while it is valid\"",
           e->thumb, key_or_dash(e), cb_log_quote(why, q, sizeof(q)),
           (long long)(e->next_at - now));
}

static void on_done(uv_work_t *req, int status)
{
    struct cb_ocsp_fetcher *f = req->data;
    struct job *j = &f->job;
    struct cb_err err = {0};
    int64_t now = (int64_t)time(NULL);
    struct entry key, *e;
    char q[900];

    f->busy = false;
    memcpy(key.thumb, j->thumb, sizeof(key.thumb));
    e = f->n ? bsearch(&key, f->v, f->n, sizeof(*f->v), cmp_entry) : NULL;
    if (status != 0 || f->stopping || e == NULL)
        goto out_clear; /* cancelled, or no longer bound */
    switch (j->outcome) {
    case OUT_NO_URL:
        e->no_responder = true;
        break;
    case OUT_CACHED:
        e->backoff = 0;
        free(e->last_error);
        e->last_error = NULL;
        e->next_at = refresh_at(&j->res, now);
        if (!e->announced)
            cb_log("info", "ocsp_cached", "certhash=%s next_update=%lld refresh_in_s=%lld",
                   e->thumb, (long long)j->res.next_update, (long long)(e->next_at - now));
        e->announced = true;
        break;
    case OUT_FRESH:
        if (cb_store_ocsp_put(f->st, j->thumb, j->der, j->len, &err) != 0) {
            failed(f, e, err.msg, now);
            break;
        }
        e->backoff = 0;
        free(e->last_error);
        e->last_error = NULL;
        e->announced = true;
        e->next_at = refresh_at(&j->res, now);
        cb_log("info", "ocsp_fetched",
               "certhash=%s binding=%s url=%s this_update=%lld next_update=%lld "
               "refresh_in_s=%lld",
               e->thumb, key_or_dash(e), cb_log_quote(j->url, q, sizeof(q)),
               (long long)j->res.this_update, (long long)j->res.next_update,
               (long long)(e->next_at - now));
        break;
    case OUT_REVOKED:
        /* A valid answer: nothing to retry sooner, but no "good" staple may stay. */
        e->backoff = 0;
        e->next_at = refresh_at(&j->res, now);
        if (cb_store_ocsp_delete(f->st, j->thumb, &err) != 0)
            cb_log("error", "ocsp_cache_failed", "certhash=%s reason=%s", e->thumb,
                   cb_log_quote(err.msg, q, sizeof(q)));
        if (e->last_error == NULL || strcmp(e->last_error, "revoked") != 0)
            cb_log("error", "ocsp_revoked",
                   "certhash=%s binding=%s url=%s action=\"not stapled; replace the "
                   "certificate\"",
                   e->thumb, key_or_dash(e), cb_log_quote(j->url, q, sizeof(q)));
        free(e->last_error);
        e->last_error = strdup("revoked");
        break;
    case OUT_FAILED:
        failed(f, e, j->err.msg[0] ? j->err.msg : "the OCSP fetch failed", now);
        break;
    }
out_clear:
    job_clear(j);
}

/* Starts e's fetch on the thread pool. */
static void start(struct cb_ocsp_fetcher *f, struct entry *e, int64_t now)
{
    struct cb_cert_row row;
    struct cb_err err = {0};
    struct job *j = &f->job;

    job_clear(j);
    if (cb_store_cert_get(f->st, e->thumb, &row, &err) != 0) {
        e->no_responder = true; /* not in the store: `check` says so (unknown-cert) */
        return;
    }
    memcpy(j->thumb, e->thumb, sizeof(j->thumb));
    snprintf(j->cert_path, sizeof(j->cert_path), "%s", row.cert_path);
    cb_cert_row_clear(&row);
    if (cb_store_ocsp_read(f->st, e->thumb, &j->cached, &j->cached_len, NULL) != 0)
        j->cached = NULL;
    e->next_at = now + CB_OCSP_TOTAL_TIMEOUT_S; /* until the answer reschedules it */
    if (uv_queue_work(f->loop, &f->work, on_work, on_done) == 0)
        f->busy = true;
    else
        job_clear(j);
}

void cb_ocsp_fetcher_tick(struct cb_ocsp_fetcher *f)
{
    int64_t now = (int64_t)time(NULL);
    uint64_t gen = 0;

    if (f->stopping)
        return;
    if (cb_store_generation(f->st, &gen) == 0 && (!f->scanned || gen != f->generation)) {
        uint64_t from = f->generation;
        f->generation = gen;
        if (!f->scanned || !apply_changes(f, from, now))
            rescan(f, now);
    }
    if (f->busy)
        return;
    struct entry *due = NULL;
    for (size_t i = 0; i < f->n; i++)
        if (!f->v[i].no_responder && f->v[i].next_at <= now &&
            (due == NULL || f->v[i].next_at < due->next_at))
            due = &f->v[i];
    if (due != NULL)
        start(f, due, now);
}
