/* cow.c: tables in parts, shared with copy on write (util/cow.h). */
#include "util/cow.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct cb_cow_part {
    atomic_uint refs; /* tables holding the part */
    _Alignas(16) unsigned char data[];
};

static struct cb_cow_part *part_new(const struct cb_cow_ops *ops)
{
    struct cb_cow_part *p = calloc(1, sizeof(*p) + CB_COW_PART * ops->elem);
    if (p != NULL)
        atomic_init(&p->refs, 1);
    return p;
}

static void part_release(const struct cb_cow_ops *ops, struct cb_cow_part *p)
{
    if (p == NULL || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; ops->clear != NULL && i < CB_COW_PART; i++)
        ops->clear(p->data + i * ops->elem);
    free(p);
}

/* A copy of part p held alone (returned owned), its elements copied by ops->copy. */
static struct cb_cow_part *part_copy(const struct cb_cow_ops *ops, const struct cb_cow_part *p)
{
    struct cb_cow_part *c = part_new(ops);
    if (c == NULL)
        return NULL;
    if (ops->copy == NULL) {
        memcpy(c->data, p->data, CB_COW_PART * ops->elem);
        return c;
    }
    for (size_t i = 0; i < CB_COW_PART; i++) {
        if (ops->copy(c->data + i * ops->elem, p->data + i * ops->elem) != 0) {
            part_release(ops, c); /* clears the copies made so far; the rest are zero */
            return NULL;
        }
    }
    return c;
}

int cb_cow_init(struct cb_cow *t, const struct cb_cow_ops *ops, size_t n)
{
    memset(t, 0, sizeof(*t));
    t->ops = ops;
    if (cb_cow_resize(t, n) != 0) {
        cb_cow_free(t);
        return CB_ENOMEM;
    }
    return 0;
}

int cb_cow_share(struct cb_cow *dst, const struct cb_cow *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->ops = src->ops;
    if (src->n_parts > 0 && (dst->part = malloc(src->n_parts * sizeof(*dst->part))) == NULL)
        return CB_ENOMEM;
    for (size_t k = 0; k < src->n_parts; k++) {
        dst->part[k] = src->part[k];
        atomic_fetch_add_explicit(&src->part[k]->refs, 1, memory_order_relaxed);
    }
    dst->n_parts = src->n_parts;
    dst->n = src->n;
    return 0;
}

void cb_cow_free(struct cb_cow *t)
{
    for (size_t k = 0; k < t->n_parts; k++)
        part_release(t->ops, t->part[k]);
    free(t->part);
    t->part = NULL;
    t->n_parts = 0;
    t->n = 0;
}

void *cb_cow_mut(struct cb_cow *t, size_t i)
{
    size_t k = i >> CB_COW_SHIFT;
    struct cb_cow_part *p = t->part[k];

    if (atomic_load_explicit(&p->refs, memory_order_acquire) > 1) {
        struct cb_cow_part *c = part_copy(t->ops, p);
        if (c == NULL)
            return NULL;
        part_release(t->ops, p);
        t->part[k] = p = c;
    }
    return p->data + (i & (CB_COW_PART - 1)) * t->ops->elem;
}

const void *cb_cow_at(const struct cb_cow *t, size_t i)
{
    return t->part[i >> CB_COW_SHIFT]->data + (i & (CB_COW_PART - 1)) * t->ops->elem;
}

int cb_cow_resize(struct cb_cow *t, size_t n)
{
    size_t need = (n + CB_COW_PART - 1) >> CB_COW_SHIFT;

    /* Shrinking: the elements past n are cleared, so that they are zero as promised. */
    for (size_t i = n; i < t->n && (i >> CB_COW_SHIFT) < need; i++) {
        void *e = cb_cow_mut(t, i);
        if (e == NULL)
            return CB_ENOMEM;
        if (t->ops->clear != NULL)
            t->ops->clear(e);
        memset(e, 0, t->ops->elem);
    }
    while (t->n_parts > need)
        part_release(t->ops, t->part[--t->n_parts]);
    if (need > t->n_parts) {
        struct cb_cow_part **np = realloc(t->part, need * sizeof(*np));
        if (np == NULL)
            return CB_ENOMEM;
        t->part = np;
        while (t->n_parts < need) {
            if ((t->part[t->n_parts] = part_new(t->ops)) == NULL)
                return CB_ENOMEM;
            t->n_parts++;
        }
    }
    t->n = n;
    return 0;
}

size_t cb_cow_owned_parts(const struct cb_cow *t)
{
    size_t owned = 0;
    for (size_t k = 0; k < t->n_parts; k++)
        owned += atomic_load_explicit(&t->part[k]->refs, memory_order_relaxed) == 1;
    return owned;
}
