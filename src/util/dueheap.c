/* dueheap.c: a binary min-heap on the due time (util/dueheap.h). */
#include "util/dueheap.h"

#include <stdlib.h>

void cb_dueheap_init(struct cb_dueheap *h)
{
    h->v = NULL;
    h->n = h->cap = 0;
}

void cb_dueheap_free(struct cb_dueheap *h)
{
    free(h->v);
    cb_dueheap_init(h);
}

void cb_dueheap_clear(struct cb_dueheap *h)
{
    h->n = 0;
}

static void sift_up(struct cb_due *v, size_t i)
{
    struct cb_due x = v[i];
    while (i > 0 && v[(i - 1) / 2].at > x.at) {
        v[i] = v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    v[i] = x;
}

static void sift_down(struct cb_due *v, size_t n, size_t i)
{
    struct cb_due x = v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && v[c + 1].at < v[c].at)
            c++;
        if (v[c].at >= x.at)
            break;
        v[i] = v[c];
        i = c;
    }
    v[i] = x;
}

int cb_dueheap_append(struct cb_dueheap *h, int64_t at, uint32_t id)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        struct cb_due *v = realloc(h->v, cap * sizeof(*v));
        if (v == NULL)
            return CB_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = (struct cb_due){.at = at, .id = id};
    return 0;
}

void cb_dueheap_heapify(struct cb_dueheap *h)
{
    for (size_t i = h->n / 2; i-- > 0;)
        sift_down(h->v, h->n, i);
}

int cb_dueheap_push(struct cb_dueheap *h, int64_t at, uint32_t id)
{
    if (cb_dueheap_append(h, at, id) != 0)
        return CB_ENOMEM;
    sift_up(h->v, h->n - 1);
    return 0;
}

bool cb_dueheap_pop_due(struct cb_dueheap *h, int64_t now, struct cb_due *out)
{
    if (h->n == 0 || h->v[0].at > now)
        return false;
    *out = h->v[0];
    h->v[0] = h->v[--h->n];
    if (h->n > 0)
        sift_down(h->v, h->n, 0);
    return true;
}
