/*
 * ocsp_fetch.c: the manager's OCSP schedule (daemon/ocsp_fetch.h). The loop owns the
 * schedule and every store write; a pool thread only reads the certificate and the
 * cached response, talks to the responder and checks the answer.
 */
#include "daemon/ocsp_fetch.h"
#include "daemon/ocsp_http.h"
#include "store/ocsp.h"
#include "tls/ocsp.h"
#include "util/dueheap.h"
#include "util/log.h"
#include "util/strindex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CB_OCSP_BACKOFF_MIN 60   /* seconds before the first retry */
#define CB_OCSP_BACKOFF_MAX 3600 /* and the longest wait between retries */
#define CB_OCSP_REFRESH_MIN 60   /* never ask again sooner than this after an answer */
/* Fetches under way at once. libuv's pool has 4 threads: one stays free for the ACME
 * order (daemon/manager.c), and a responder that hangs holds one fetch, not all. */
#define CB_OCSP_IN_FLIGHT 3
/* Facts learned from files of rows stored before schema 8, kept for the next tick's write;
 * beyond this many the rest are learned again after a restart. */
#define CB_OCSP_FACTS_MAX 65536
/* Fetches started a second at most (each reads and parses a certificate file, and at a
 * restart checks its cached response): at 10^6 certificates, the manager's work then
 * yields most of a core to the workers' start-up even when pinned beside them. */
#define CB_OCSP_STARTS_PER_TICK 500
/* New responses are told to the workers once a second, in commits of at most this many
 * (the change log lists up to CB_CHANGES_MAX keys; beyond that a worker reads everything). */
#define CB_OCSP_MARKS_PER_COMMIT 1024
#define CB_OCSP_MARKS_MAX 65536

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
    bool busy;         /* a fetch is under way */
};

/*
 * The certificates that staple, each once, with two indexes: by thumbprint, and by the
 * binding an entry names (several entries may name one binding: certhash=T1,T2). Entries
 * are only added between scans, so positions are stable; a scan builds a new table.
 * Heap-allocated: the indexes read the entries through its address.
 */
struct table {
    struct entry *v;
    size_t n, cap;
    struct cb_strindex by_thumb, by_key;
};

/* A response written to the cache, to be told to the workers, and then logged (owned). */
struct mark {
    char thumb[CB_THUMB_LEN + 1];
    char *fields; /* the log line's fields after certhash=; NULL: out of memory */
};

enum outcome { OUT_FRESH, OUT_CACHED, OUT_NO_URL, OUT_REVOKED, OUT_FAILED };

struct job {
    struct cb_ocsp_fetcher *f;
    uv_work_t work;
    bool used;
    char thumb[CB_THUMB_LEN + 1];
    char cert_path[CB_PATH_MAX + 1];
    enum cb_ocsp_url stored;  /* what the store's row says of its OCSP URL */
    enum cb_ocsp_url learned; /* what the file said, once read (UNKNOWN: not read) */
    unsigned char *cached;    /* the cached response (owned), or NULL */
    size_t cached_len;
    /* Results. */
    enum outcome outcome;
    unsigned char *der; /* OUT_FRESH, OUT_REVOKED: owned */
    size_t len;
    struct cb_ocsp_result res;
    char url[CB_OCSP_URL_MAX + 1];
    struct cb_err err;
};

/* Every entry is either under way (busy), without a responder, or in `due` once, at its
 * next_at: the next fetch is the heap's top, not a pass over every certificate. */
struct cb_ocsp_fetcher {
    uv_loop_t *loop;
    struct cb_store *st;
    struct table *t; /* owned */
    struct cb_dueheap due;
    uint64_t generation;
    bool scanned, stopping;
    volatile int abort;
    uint32_t jitter; /* xorshift state for the retries' jitter */
    unsigned in_flight;
    struct job jobs[CB_OCSP_IN_FLIGHT];
    struct cb_ocsp_url_fact *facts; /* owned: learned, not yet written to the store */
    size_t n_facts, cap_facts;
    struct mark *marks; /* owned: responses written, not yet told the workers */
    size_t n_marks, cap_marks;
    unsigned long long failures; /* not yet added to the store's counter */
    unsigned starts_left;        /* in this tick: CB_OCSP_STARTS_PER_TICK */
};

static const char *thumb_of(const void *ctx, uint32_t i)
{
    return ((const struct table *)ctx)->v[i].thumb;
}

static const char *key_of(const void *ctx, uint32_t i)
{
    return ((const struct table *)ctx)->v[i].key;
}

/* An owned, empty table. NULL: out of memory. */
static struct table *table_new(void)
{
    struct table *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    if (cb_strindex_init(&t->by_thumb, 0, thumb_of, t) != 0 ||
        cb_strindex_init(&t->by_key, 0, key_of, t) != 0) {
        cb_strindex_free(&t->by_thumb);
        free(t);
        return NULL;
    }
    return t;
}

static void table_free(struct table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].key);
        free(t->v[i].last_error);
    }
    free(t->v);
    cb_strindex_free(&t->by_thumb);
    cb_strindex_free(&t->by_key);
    free(t);
}

static struct entry *table_find(const struct table *t, const char *thumb)
{
    uint32_t i = cb_strindex_find(&t->by_thumb, thumb);
    return i != UINT32_MAX ? &t->v[i] : NULL;
}

int cb_ocsp_fetcher_new(uv_loop_t *loop, struct cb_store *st, struct cb_ocsp_fetcher **out,
                        struct cb_err *err)
{
    struct cb_ocsp_fetcher *f = calloc(1, sizeof(*f));

    if (f == NULL || (f->t = table_new()) == NULL)
        goto out_free;
    if (cb_ocsp_http_init() != 0)
        goto out_free;
    f->loop = loop;
    f->st = st;
    cb_dueheap_init(&f->due);
    f->jitter = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
    for (size_t k = 0; k < CB_OCSP_IN_FLIGHT; k++) {
        f->jobs[k].f = f;
        f->jobs[k].work.data = &f->jobs[k];
    }
    *out = f;
    return 0;
out_free:
    if (f != NULL)
        table_free(f->t);
    free(f);
    return cb_err_set(err, CB_ENOMEM, "out of memory");
}

/* Frees what a job holds and makes it free for the next fetch. */
static void job_clear(struct job *j)
{
    struct cb_ocsp_fetcher *f = j->f;

    free(j->cached);
    free(j->der);
    memset(j, 0, sizeof(*j));
    j->f = f;
    j->work.data = j;
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
    for (size_t k = 0; k < CB_OCSP_IN_FLIGHT; k++)
        job_clear(&f->jobs[k]);
    table_free(f->t);
    cb_dueheap_free(&f->due);
    free(f->facts);
    for (size_t i = 0; i < f->n_marks; i++)
        free(f->marks[i].fields);
    free(f->marks);
    free(f);
    cb_ocsp_http_cleanup();
}

void cb_ocsp_fetcher_stop(struct cb_ocsp_fetcher *f)
{
    f->stopping = true;
    f->abort = 1;
}

/* ---- which certificates ------------------------------------------------------ */

/* Adds thumb's entry to t, named after binding b, unless it is there: then, with rename,
 * b names it if its key comes first (a scan meets bindings in the store's order, not the
 * keys'). *added: whether it was added. CB_ENOMEM. */
static int table_add(struct table *t, const struct cb_binding *b, const char *thumb, bool rename,
                     bool *added)
{
    char key[CB_KEY_TEXT_MAX];
    uint32_t at;

    *added = false;
    if (t->n >= UINT32_MAX - 1)
        return CB_ENOMEM;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct entry *nv = realloc(t->v, cap * sizeof(*nv));
        if (nv == NULL)
            return CB_ENOMEM;
        t->v = nv;
        t->cap = cap;
    }
    /* Staged at the end, indexed only if new. */
    struct entry *e = &t->v[t->n];
    memset(e, 0, sizeof(*e));
    snprintf(e->thumb, sizeof(e->thumb), "%s", thumb);
    if (cb_strindex_add_unique(&t->by_thumb, (uint32_t)t->n, &at) != 0)
        return CB_ENOMEM;
    if (at != t->n) {
        /* One certificate, several bindings. Once the keys are indexed (rename false: a
         * change applied), an entry keeps the binding it names: by_key reads it there. */
        struct entry *old = &t->v[at];
        char *k;
        cb_key_format(&b->key, key, sizeof(key));
        if (rename && old->key != NULL && strcmp(key, old->key) < 0 && (k = strdup(key)) != NULL) {
            free(old->key);
            old->key = k;
        }
        return 0;
    }
    e->key = key_text(b);
    t->n++;
    *added = true;
    return 0;
}

/* Whether binding b staples, and so fetches for its certificates. */
static bool staples(const struct cb_binding *b)
{
    return b->certhash[0] != '\0' && b->key.kind != CB_KEY_CCS &&
           !(b->flags & CB_OPT_DISABLEOCSPSTAPLING);
}

/*
 * The certificates the store knows to name no OCSP responder, held only while a scan
 * runs: they get no entry. At 10^6 such certificates (Let's Encrypt's no longer name one)
 * the set is ~50 MB for the scan's second or two, where their entries took ~160 MB for
 * as long as the manager ran. One bound later gets an entry when its binding changes,
 * and start() finds it has no responder from its row.
 */
struct thumbset {
    char (*v)[CB_THUMB_LEN + 1];
    size_t n, cap;
    struct cb_strindex ix;
};

static const char *set_key(const void *ctx, uint32_t i)
{
    return ((const struct thumbset *)ctx)->v[i];
}

static int set_add(const char *thumb, void *arg)
{
    struct thumbset *s = arg;
    uint32_t at;

    if (strlen(thumb) > CB_THUMB_LEN || s->n >= UINT32_MAX - 1)
        return 0; /* no binding names it: nothing to leave out */
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        char(*nv)[CB_THUMB_LEN + 1] = realloc(s->v, cap * sizeof(*nv));
        if (nv == NULL)
            return CB_ENOMEM;
        s->v = nv;
        s->cap = cap;
    }
    memcpy(s->v[s->n], thumb, strlen(thumb) + 1);
    if (cb_strindex_add_unique(&s->ix, (uint32_t)s->n, &at) != 0)
        return CB_ENOMEM;
    if (at == s->n)
        s->n++;
    return 0;
}

struct scan {
    struct table *t;
    const struct thumbset *none;
};

static int scan_add(struct scan *sc, const struct cb_binding *b, const char *thumb)
{
    bool added;

    if (cb_strindex_find(&sc->none->ix, thumb) != UINT32_MAX)
        return 0;
    return table_add(sc->t, b, thumb, true, &added);
}

static int on_binding(const struct cb_binding *b, void *arg)
{
    struct scan *sc = arg;
    int ret;

    if (!staples(b))
        return 0;
    if ((ret = scan_add(sc, b, b->certhash)) != 0)
        return ret;
    /* certhash=T1,T2: each certificate has its own response. */
    return b->certhash2[0] != '\0' ? scan_add(sc, b, b->certhash2) : 0;
}

/* Whether a fetch of thumb is under way (its entry may have been dropped and made again
 * meanwhile): a new entry then waits for it rather than start a second one. */
static bool job_running(const struct cb_ocsp_fetcher *f, const char *thumb)
{
    for (size_t k = 0; k < CB_OCSP_IN_FLIGHT; k++)
        if (f->jobs[k].used && strcmp(f->jobs[k].thumb, thumb) == 0)
            return true;
    return false;
}

/* Indexes t's entries by the binding each names, once they are all there. CB_ENOMEM. */
static int index_keys(struct table *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].key != NULL && cb_strindex_add(&t->by_key, (uint32_t)i) != 0)
            return CB_ENOMEM;
    return 0;
}

/* The heap again: every entry that waits on a time, at its time. CB_ENOMEM. */
static int schedule_all(struct cb_ocsp_fetcher *f)
{
    cb_dueheap_clear(&f->due);
    for (size_t i = 0; i < f->t->n; i++) {
        const struct entry *e = &f->t->v[i];
        if (!e->busy && !e->no_responder && cb_dueheap_append(&f->due, e->next_at, (uint32_t)i)) {
            cb_dueheap_heapify(&f->due); /* what is there is a heap; the next scan does all */
            return CB_ENOMEM;
        }
    }
    cb_dueheap_heapify(&f->due);
    return 0;
}

/* e (not under way) waits for its next_at. On failure to, the next tick scans again,
 * which rebuilds the heap. */
static void schedule(struct cb_ocsp_fetcher *f, const struct entry *e)
{
    if (!e->no_responder && cb_dueheap_push(&f->due, e->next_at, (uint32_t)(e - f->t->v)) != 0)
        f->scanned = false;
}

/* The certificates that staple now, each keeping its schedule from the last scan. Those
 * the store knows to name no responder get no entry (one query, where reading their files
 * would be one each: at 10^6 certificates without OCSP, minutes of CPU). */
static void rescan(struct cb_ocsp_fetcher *f, int64_t now)
{
    struct cb_err err = {0};
    struct thumbset none = {0};
    struct scan sc = {.t = table_new(), .none = &none};
    char q[900];
    int ret = sc.t != NULL ? cb_strindex_init(&none.ix, 0, set_key, &none) : CB_ENOMEM;

    if (ret == 0)
        ret = cb_store_cert_foreach_ocsp_url(f->st, CB_OCSP_URL_NONE, set_add, &none, &err);
    if (ret == 0)
        ret = cb_store_binding_foreach_stored(f->st, on_binding, &sc, &err);
    cb_strindex_free(&none.ix);
    free(none.v);
    struct table *t = sc.t;
    if (ret == 0) {
        for (size_t i = 0; i < t->n; i++) {
            struct entry *e = &t->v[i], *old = table_find(f->t, e->thumb);
            if (old == NULL) {
                e->next_at = now;
                e->busy = f->in_flight > 0 && job_running(f, e->thumb);
                continue;
            }
            /* Its schedule and last error, with the binding named now. */
            char *key = e->key;
            *e = *old;
            e->key = key;
            old->last_error = NULL; /* moved */
        }
        ret = index_keys(t);
    }
    if (ret != 0) {
        cb_log("error", "ocsp_scan_failed", "reason=%s",
               cb_log_quote(err.msg[0] ? err.msg : "out of memory", q, sizeof(q)));
        table_free(t);
        f->scanned = false; /* the changes seen are not in the table: scan again next tick */
        return;
    }
    table_free(f->t);
    f->t = t;
    f->scanned = schedule_all(f) == 0;
    /* What the schedule holds: the certificates that staple and may name a responder. */
    cb_log("info", "ocsp_scanned", "certificates=%zu", t->n);
}

/* Adds thumb's entry, due now and named after b, when it is new. CB_ENOMEM. */
static int entry_add(struct cb_ocsp_fetcher *f, const struct cb_binding *b, const char *thumb,
                     int64_t now)
{
    struct table *t = f->t;
    bool added;
    int ret = table_add(t, b, thumb, false, &added);

    if (ret != 0 || !added)
        return ret;
    struct entry *e = &t->v[t->n - 1];
    e->next_at = now;
    if (e->key != NULL && cb_strindex_add(&t->by_key, (uint32_t)(t->n - 1)) != 0)
        return CB_ENOMEM;
    if ((e->busy = job_running(f, thumb)))
        return 0; /* its fetch, from before it was unbound, schedules it when it ends */
    return cb_dueheap_push(&f->due, e->next_at, (uint32_t)(t->n - 1));
}

/* Whether an entry other than thumb1's and thumb2's names binding key as its user. */
static bool key_in_use(const struct table *t, const char *key, const char *thumb1,
                       const char *thumb2)
{
    size_t cursor = 0;
    for (uint32_t i; (i = cb_strindex_next(&t->by_key, key, &cursor)) != UINT32_MAX;)
        if (strcmp(t->v[i].thumb, thumb1) != 0 && strcmp(t->v[i].thumb, thumb2) != 0)
            return true;
    return false;
}

/*
 * The schedule after the store's changes since the last look, from its change log rather
 * than a pass over every binding: a new certificate that staples is added. Each entry's
 * key is a binding that uses its certificate; while no change touches such a binding,
 * every entry is still bound, so nothing is dropped. False when that cannot be told
 * (the log is gone, or a change removed or rebound an entry's binding): rescan then.
 * Each change costs a probe of the indexes, not a pass over the entries.
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
        ok = !key_in_use(f->t, key, "", "");
    }
    for (size_t k = 0; ok && k < ch.n_set; k++) {
        const struct cb_binding *b = &ch.set[k];
        bool on = staples(b);
        cb_key_format(&b->key, key, sizeof(key));
        if (key_in_use(f->t, key, on ? b->certhash : "", on ? b->certhash2 : "")) {
            ok = false;
            break;
        }
        if (on && (entry_add(f, b, b->certhash, now) != 0 ||
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

/* The fresh answer into the cache file. On failure, j->err says why. */
static int write_answer(struct cb_ocsp_fetcher *f, struct job *j)
{
    return cb_store_ocsp_write(f->st, j->thumb, j->der, j->len, &j->err);
}

static void on_work(uv_work_t *req)
{
    struct job *j = req->data;
    struct cb_ocsp_fetcher *f = j->f;
    struct cb_ocsp_cert *c = NULL;
    unsigned char *rq = NULL;
    size_t rq_len = 0;
    int64_t now = (int64_t)time(NULL);

    j->outcome = OUT_FAILED;
    if (cb_ocsp_cert_load(j->cert_path, &c, &j->err) != 0)
        return;
    snprintf(j->url, sizeof(j->url), "%s", cb_ocsp_cert_url(c));
    j->learned = j->url[0] != '\0' ? CB_OCSP_URL_HTTP : CB_OCSP_URL_NONE;
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
    if (j->res.status == CB_OCSP_GOOD) {
        /* Written here, off the loop (a sync each); told to the workers by the tick. */
        if (write_answer(f, j) == 0)
            j->outcome = OUT_FRESH;
    } else if (j->res.status == CB_OCSP_REVOKED)
        j->outcome = OUT_REVOKED;
    else
        cb_err_set(&j->err, CB_EFAILED,
                   "%.300s answers that it does not know the certificate (status unknown)", j->url);
out_free:
    free(rq);
    cb_ocsp_cert_free(c);
}

/* ---- the answer, back on the loop --------------------------------------------- */

/* Adds the failures of the last second to the store's counter (for metrics), in one
 * write rather than one each. */
static void count_failures(struct cb_ocsp_fetcher *f)
{
    char v[32];
    unsigned long long n = 0;

    if (f->failures == 0)
        return;
    if (cb_store_setting_get(f->st, "ocsp.fetch.failures", v, sizeof(v), NULL) == 0)
        n = strtoull(v, NULL, 10);
    snprintf(v, sizeof(v), "%llu", n + f->failures);
    if (cb_store_setting_set(f->st, "ocsp.fetch.failures", v, NULL) == 0)
        f->failures = 0; /* else added next time: the schedule does not depend on it */
}

/* Tells the workers of the responses written since the last time, then logs each as
 * fetched (in service from then on). A busy store keeps them for the next tick; they are
 * never dropped (the files are in place already). */
static void mark_written(struct cb_ocsp_fetcher *f)
{
    static char thumbs[CB_OCSP_MARKS_PER_COMMIT][CB_THUMB_LEN + 1]; /* the loop's only */
    struct cb_err err = {0};
    char q[900];
    size_t done = 0;

    if (f->n_marks == 0)
        return;

    while (done < f->n_marks) {
        size_t n = f->n_marks - done;
        if (n > CB_OCSP_MARKS_PER_COMMIT)
            n = CB_OCSP_MARKS_PER_COMMIT;
        for (size_t i = 0; i < n; i++)
            memcpy(thumbs[i], f->marks[done + i].thumb, sizeof(thumbs[i]));
        int ret = cb_store_ocsp_mark(f->st, (const char(*)[CB_THUMB_LEN + 1]) thumbs, n, &err);
        if (ret == CB_EBUSY)
            break;
        if (ret != 0) /* dropped: the files are in place, for the workers' next full read */
            cb_log("error", "ocsp_cache_failed", "responses=%zu reason=%s", n,
                   cb_log_quote(err.msg, q, sizeof(q)));
        for (size_t i = done; i < done + n; i++) {
            if (ret == 0)
                cb_log("info", "ocsp_fetched", "certhash=%s %s", f->marks[i].thumb,
                       f->marks[i].fields != NULL ? f->marks[i].fields : "");
            free(f->marks[i].fields);
        }
        done += n;
    }
    if (done > 0) {
        memmove(f->marks, f->marks + done, (f->n_marks - done) * sizeof(*f->marks));
        f->n_marks -= done;
    }
}

/* Keeps thumb's response (written) to be told to the workers, with its log line's fields
 * (owned by the mark from now on). False: out of memory, or too many waiting. */
static bool mark_add(struct cb_ocsp_fetcher *f, const char *thumb, char *fields)
{
    if (f->n_marks == f->cap_marks) {
        size_t cap = f->cap_marks ? 2 * f->cap_marks : 64;
        struct mark *m = cap <= CB_OCSP_MARKS_MAX ? realloc(f->marks, cap * sizeof(*m)) : NULL;
        if (m == NULL) {
            free(fields);
            return false;
        }
        f->marks = m;
        f->cap_marks = cap;
    }
    struct mark *m = &f->marks[f->n_marks++];
    memcpy(m->thumb, thumb, sizeof(m->thumb));
    m->fields = fields;
    return true;
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
    f->failures++;
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

static void fill(struct cb_ocsp_fetcher *f, int64_t now);

/* Keeps what j read of a row stored before schema 8, for the next tick to record. */
static void learn(struct cb_ocsp_fetcher *f, const struct job *j)
{
    if (f->n_facts == f->cap_facts) {
        size_t cap = f->cap_facts ? 2 * f->cap_facts : 64;
        struct cb_ocsp_url_fact *v =
            cap <= CB_OCSP_FACTS_MAX ? realloc(f->facts, cap * sizeof(*v)) : NULL;
        if (v == NULL)
            return; /* learned again after a restart */
        f->facts = v;
        f->cap_facts = cap;
    }
    struct cb_ocsp_url_fact *fact = &f->facts[f->n_facts++];
    memcpy(fact->thumb, j->thumb, sizeof(fact->thumb));
    fact->url = j->learned;
}

/* Writes the facts learned since the last tick, in one transaction. A busy store keeps
 * them for the next tick; another failure drops them (read again after a restart). */
static void record_facts(struct cb_ocsp_fetcher *f)
{
    struct cb_err err = {0};
    char q[900];

    if (f->n_facts == 0)
        return;
    int ret = cb_store_cert_learn_ocsp_url(f->st, f->facts, f->n_facts, &err);
    if (ret == CB_EBUSY)
        return;
    if (ret != 0)
        cb_log("warn", "ocsp_facts_failed", "certificates=%zu reason=%s", f->n_facts,
               cb_log_quote(err.msg, q, sizeof(q)));
    f->n_facts = 0;
}

static void on_done(uv_work_t *req, int status)
{
    struct job *j = req->data;
    struct cb_ocsp_fetcher *f = j->f;
    struct cb_err err = {0};
    int64_t now = (int64_t)time(NULL);
    struct entry *e;
    char q[900];

    f->in_flight--;
    if (j->stored == CB_OCSP_URL_UNKNOWN && j->learned != CB_OCSP_URL_UNKNOWN)
        learn(f, j);
    if ((e = table_find(f->t, j->thumb)) == NULL || f->stopping)
        goto out_clear; /* no longer bound, or stopping */
    e->busy = false;
    if (status != 0) { /* cancelled: tried again later */
        e->next_at = now + CB_OCSP_BACKOFF_MIN;
        schedule(f, e);
        goto out_clear;
    }
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
    case OUT_FRESH: {
        char line[CB_KEY_TEXT_MAX + sizeof(q) + 128];
        snprintf(line, sizeof(line),
                 "binding=%s url=%s this_update=%lld next_update=%lld refresh_in_s=%lld",
                 key_or_dash(e), cb_log_quote(j->url, q, sizeof(q)), (long long)j->res.this_update,
                 (long long)j->res.next_update, (long long)(refresh_at(&j->res, now) - now));
        if (!mark_add(f, j->thumb, strdup(line))) {
            /* The file is there, for a worker's next full read; asked again later. */
            failed(f, e,
                   f->n_marks >= CB_OCSP_MARKS_MAX ? "too many responses wait for a busy store"
                                                   : "out of memory",
                   now);
            break;
        }
        e->backoff = 0;
        free(e->last_error);
        e->last_error = NULL;
        e->announced = true;
        e->next_at = refresh_at(&j->res, now);
        break;
    }
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
    schedule(f, e);
out_clear:
    job_clear(j);
    /* The next one due starts now, not at the next tick: a store of 10^5 certificates
     * is a few minutes of fetches, not a day of one a second. */
    if (!f->stopping)
        fill(f, now);
    /* Nothing under way: the batch is whole, told now rather than at the next tick. */
    if (f->in_flight == 0)
        mark_written(f);
}

/* Starts e's fetch on the thread pool, in job j (free). */
static void start(struct cb_ocsp_fetcher *f, struct job *j, struct entry *e, int64_t now)
{
    struct cb_cert_row row;
    struct cb_err err = {0};

    int ret = cb_store_cert_get(f->st, e->thumb, &row, &err);
    if (ret == CB_ENOENT) {
        e->no_responder = true; /* not in the store: `check` says so (unknown-cert) */
        return;
    }
    if (ret != 0) { /* a busy store: tried again later */
        e->next_at = now + CB_OCSP_BACKOFF_MIN;
        schedule(f, e);
        return;
    }
    if (row.info.ocsp_url == CB_OCSP_URL_NONE) {
        e->no_responder = true; /* known at import: no file to read */
        cb_cert_row_clear(&row);
        return;
    }
    memcpy(j->thumb, e->thumb, sizeof(j->thumb));
    snprintf(j->cert_path, sizeof(j->cert_path), "%s", row.cert_path);
    j->stored = row.info.ocsp_url;
    cb_cert_row_clear(&row);
    if (cb_store_ocsp_read(f->st, e->thumb, &j->cached, &j->cached_len, NULL) != 0)
        j->cached = NULL;
    if (uv_queue_work(f->loop, &j->work, on_work, on_done) != 0) {
        job_clear(j);
        e->next_at = now + CB_OCSP_TOTAL_TIMEOUT_S; /* try again then */
        schedule(f, e);
        return;
    }
    j->used = true;
    e->busy = true;
    f->in_flight++;
}

/* Starts what is due while fewer than CB_OCSP_IN_FLIGHT fetches are under way. */
static void fill(struct cb_ocsp_fetcher *f, int64_t now)
{
    struct cb_due d;

    while (f->in_flight < CB_OCSP_IN_FLIGHT && f->starts_left > 0 &&
           cb_dueheap_pop_due(&f->due, now, &d)) {
        struct entry *e = &f->t->v[d.id];
        if (e->busy || e->no_responder || e->next_at != d.at)
            continue; /* not waiting on this time any more */
        struct job *j = NULL;
        for (size_t k = 0; j == NULL && k < CB_OCSP_IN_FLIGHT; k++)
            if (!f->jobs[k].used)
                j = &f->jobs[k];
        f->starts_left--;
        start(f, j, e, now);
    }
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
    record_facts(f);
    mark_written(f);
    count_failures(f);
    f->starts_left = CB_OCSP_STARTS_PER_TICK;
    fill(f, now);
}
