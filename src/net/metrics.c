/* metrics.c: the counters shared between workers and the admin process. */
#include "net/metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *const cb_metric_names[CB_METRIC_COUNT] = {
#define XX(id, name) name,
    CB_METRIC_MAP(XX)
#undef XX
};

const char *const cb_gmetric_names[CB_GMETRIC_COUNT] = {
#define XX(id, name) name,
    CB_GMETRIC_MAP(XX)
#undef XX
};

struct cb_metrics {
    void *map;
    size_t map_len;
    int workers;
    struct cb_metrics_area *areas; /* in map */
};

static size_t round_page(size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (n + pg - 1) / pg * pg;
}

int cb_metrics_new(int workers, uint32_t capacity, struct cb_metrics **out, struct cb_err *err)
{
    struct cb_metrics *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    size_t head = round_page((size_t)workers * sizeof(struct cb_metrics_area));
    size_t per = round_page((size_t)capacity * sizeof(struct cb_metrics_entry));
    s->map_len = head + (size_t)workers * per;
    s->map = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s->map == MAP_FAILED) {
        int e = errno;
        free(s);
        return cb_err_set(err, CB_ENOMEM, "cannot map %zu bytes for counters: %s",
                          (size_t)workers * per, strerror(e));
    }
    s->workers = workers;
    s->areas = s->map;
    for (int i = 0; i < workers; i++) {
        s->areas[i].capacity = capacity;
        s->areas[i].entries = (struct cb_metrics_entry *)((char *)s->map + head + (size_t)i * per);
    }
    *out = s;
    return 0;
}

void cb_metrics_free(struct cb_metrics *s)
{
    if (s == NULL)
        return;
    munmap(s->map, s->map_len);
    free(s);
}

int cb_metrics_workers(const struct cb_metrics *s)
{
    return s->workers;
}

struct cb_metrics_area *cb_metrics_area(struct cb_metrics *s, int worker)
{
    return worker >= 0 && worker < s->workers ? &s->areas[worker] : NULL;
}

/* ---- a string-keyed index: slots hold 1 + an index into a caller's array ---- */

struct index {
    uint32_t *slots;
    size_t mask, used;
};

static uint64_t hash_key(const char *k)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    return h;
}

static int index_init(struct index *ix, size_t want)
{
    size_t n = 64;
    while (n < want * 2)
        n *= 2;
    ix->slots = calloc(n, sizeof(*ix->slots));
    ix->mask = n - 1;
    ix->used = 0;
    return ix->slots ? 0 : -1;
}

/* The slot for key: holding its index, or empty. key_at(i) names element i's key. */
static uint32_t *index_slot(const struct index *ix, const char *key,
                            const char *(*key_at)(const void *, uint32_t), const void *arr)
{
    size_t i = (size_t)hash_key(key) & ix->mask;
    for (;; i = (i + 1) & ix->mask) {
        uint32_t *s = &ix->slots[i];
        if (*s == 0 || strcmp(key_at(arr, *s - 1), key) == 0)
            return s;
    }
}

/* Doubles the table when it is half full: rehashes every element. */
static int index_grow(struct index *ix, const char *(*key_at)(const void *, uint32_t),
                      const void *arr)
{
    if ((ix->used + 1) * 2 <= ix->mask + 1)
        return 0;
    struct index bigger;
    if (index_init(&bigger, ix->mask + 1) != 0)
        return -1;
    for (size_t i = 0; i <= ix->mask; i++)
        if (ix->slots[i] != 0)
            *index_slot(&bigger, key_at(arr, ix->slots[i] - 1), key_at, arr) = ix->slots[i];
    bigger.used = ix->used;
    free(ix->slots);
    *ix = bigger;
    return 0;
}

/* ---- writer ------------------------------------------------------------- */

struct cb_metrics_writer {
    struct cb_metrics_area *area;
    struct index ix;
};

static const char *entry_key(const void *arr, uint32_t i)
{
    return ((const struct cb_metrics_entry *)arr)[i].key;
}

struct cb_metrics_writer *cb_metrics_writer_new(struct cb_metrics_area *area)
{
    struct cb_metrics_writer *w = calloc(1, sizeof(*w));
    uint32_t n = atomic_load_explicit(&area->n_entries, memory_order_acquire);
    if (w == NULL || index_init(&w->ix, n) != 0) {
        free(w);
        return NULL;
    }
    w->area = area;
    for (uint32_t i = 0; i < n; i++) {
        struct cb_metrics_entry *e = &area->entries[i];
        atomic_store_explicit(&e->v[CB_METRIC_OPEN], 0, memory_order_relaxed);
        *index_slot(&w->ix, e->key, entry_key, area->entries) = i + 1;
        w->ix.used++;
    }
    atomic_store_explicit(&area->g[CB_GMETRIC_OPEN], 0, memory_order_relaxed);
    atomic_store_explicit(&area->pid, (int32_t)getpid(), memory_order_relaxed);
    return w;
}

void cb_metrics_writer_free(struct cb_metrics_writer *w)
{
    if (w == NULL)
        return;
    free(w->ix.slots);
    free(w);
}

struct cb_metrics_area *cb_metrics_writer_area(struct cb_metrics_writer *w)
{
    return w->area;
}

struct cb_metrics_entry *cb_metrics_entry_get(struct cb_metrics_writer *w, const char *key)
{
    struct cb_metrics_area *a = w->area;
    uint32_t *slot = index_slot(&w->ix, key, entry_key, a->entries);
    if (*slot != 0)
        return &a->entries[*slot - 1];
    uint32_t n = atomic_load_explicit(&a->n_entries, memory_order_relaxed);
    size_t len = strlen(key);
    if (n >= a->capacity || len >= sizeof(a->entries[0].key) ||
        index_grow(&w->ix, entry_key, a->entries) != 0) {
        cb_metric_add(&a->g[CB_GMETRIC_STATS_FULL], 1);
        return NULL;
    }
    struct cb_metrics_entry *e = &a->entries[n];
    memcpy(e->key, key, len + 1);
    *index_slot(&w->ix, key, entry_key, a->entries) = n + 1;
    w->ix.used++;
    atomic_store_explicit(&a->n_entries, n + 1, memory_order_release);
    return e;
}

/* ---- reader ------------------------------------------------------------- */

struct total {
    const char *key; /* borrowed from the mapping: entries are never rewritten */
    struct cb_metrics_sum sum;
};

struct cb_metrics_totals {
    struct total *v;
    size_t n, cap;
    struct index ix;
    uint64_t g[CB_GMETRIC_COUNT];
};

static const char *total_key(const void *arr, uint32_t i)
{
    return ((const struct total *)arr)[i].key;
}

struct cb_metrics_totals *cb_metrics_collect(struct cb_metrics *s)
{
    struct cb_metrics_totals *t = calloc(1, sizeof(*t));
    if (t == NULL || index_init(&t->ix, 64) != 0)
        goto out_fail;
    for (int w = 0; w < s->workers; w++) {
        struct cb_metrics_area *a = &s->areas[w];
        for (int k = 0; k < CB_GMETRIC_COUNT; k++)
            t->g[k] += atomic_load_explicit(&a->g[k], memory_order_relaxed);
        uint32_t n = atomic_load_explicit(&a->n_entries, memory_order_acquire);
        for (uint32_t i = 0; i < n; i++) {
            const struct cb_metrics_entry *e = &a->entries[i];
            if (index_grow(&t->ix, total_key, t->v) != 0)
                goto out_fail;
            uint32_t *slot = index_slot(&t->ix, e->key, total_key, t->v);
            if (*slot == 0) {
                if (t->n == t->cap) {
                    size_t cap = t->cap ? t->cap * 2 : 64;
                    struct total *nv = realloc(t->v, cap * sizeof(*nv));
                    if (nv == NULL)
                        goto out_fail;
                    t->v = nv;
                    t->cap = cap;
                }
                memset(&t->v[t->n], 0, sizeof(t->v[t->n]));
                t->v[t->n].key = e->key;
                *slot = (uint32_t)++t->n;
                t->ix.used++;
            }
            struct cb_metrics_sum *sum = &t->v[*slot - 1].sum;
            for (int k = 0; k < CB_METRIC_COUNT; k++)
                sum->v[k] += atomic_load_explicit(&e->v[k], memory_order_relaxed);
        }
    }
    return t;
out_fail:
    cb_metrics_totals_free(t);
    return NULL;
}

void cb_metrics_totals_free(struct cb_metrics_totals *t)
{
    if (t == NULL)
        return;
    free(t->v);
    free(t->ix.slots);
    free(t);
}

const struct cb_metrics_sum *cb_metrics_totals_find(const struct cb_metrics_totals *t,
                                                    const char *key)
{
    if (t->n == 0)
        return NULL;
    uint32_t *slot = index_slot(&t->ix, key, total_key, t->v);
    return *slot ? &t->v[*slot - 1].sum : NULL;
}

void cb_metrics_totals_global(const struct cb_metrics_totals *t, uint64_t out[CB_GMETRIC_COUNT])
{
    memcpy(out, t->g, sizeof(t->g));
}
