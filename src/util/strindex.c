/* strindex.c: strings to element positions, open addressing (util/strindex.h). */
#include "util/strindex.h"

#include <stdlib.h>
#include <string.h>

#define CB_STRINDEX_MIN 64

uint64_t cb_strindex_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* Slots for n strings at most half full: a power of two. */
static size_t slots_for(size_t n)
{
    size_t size = CB_STRINDEX_MIN;
    while (size / 2 < n)
        size *= 2;
    return size;
}

int cb_strindex_init(struct cb_strindex *ix, size_t n, cb_strindex_key_fn key, const void *ctx)
{
    size_t size = slots_for(n);

    memset(ix, 0, sizeof(*ix));
    ix->key = key;
    ix->ctx = ctx;
    if ((ix->slot = calloc(size, sizeof(*ix->slot))) == NULL)
        return CB_ENOMEM;
    ix->mask = size - 1;
    return 0;
}

void cb_strindex_free(struct cb_strindex *ix)
{
    free(ix->slot);
    ix->slot = NULL;
    ix->mask = ix->used = 0;
}

/* Puts i in the first empty slot of its run (slots holds no i yet). */
static void place(uint32_t *slot, size_t mask, uint64_t h, uint32_t i)
{
    size_t pos = h & mask;
    while (slot[pos] != 0)
        pos = (pos + 1) & mask;
    slot[pos] = i + 1;
}

/* Room for one more string, at most half full. CB_ENOMEM (unchanged). */
static int reserve_one(struct cb_strindex *ix)
{
    if (2 * (ix->used + 1) > ix->mask + 1) {
        size_t size = 2 * (ix->mask + 1);
        uint32_t *slot = calloc(size, sizeof(*slot));
        if (slot == NULL)
            return CB_ENOMEM;
        for (size_t k = 0; k <= ix->mask; k++)
            if (ix->slot[k] != 0)
                place(slot, size - 1, cb_strindex_hash(ix->key(ix->ctx, ix->slot[k] - 1)),
                      ix->slot[k] - 1);
        free(ix->slot);
        ix->slot = slot;
        ix->mask = size - 1;
    }
    return 0;
}

int cb_strindex_add(struct cb_strindex *ix, uint32_t i)
{
    if (i == UINT32_MAX)
        return CB_ENOMEM; /* UINT32_MAX + 1 is the empty slot */
    if (reserve_one(ix) != 0)
        return CB_ENOMEM;
    place(ix->slot, ix->mask, cb_strindex_hash(ix->key(ix->ctx, i)), i);
    ix->used++;
    return 0;
}

int cb_strindex_add_unique(struct cb_strindex *ix, uint32_t i, uint32_t *found)
{
    if (i == UINT32_MAX || reserve_one(ix) != 0)
        return CB_ENOMEM;
    const char *s = ix->key(ix->ctx, i);
    size_t pos = cb_strindex_hash(s) & ix->mask;
    for (; ix->slot[pos] != 0; pos = (pos + 1) & ix->mask)
        if (strcmp(ix->key(ix->ctx, ix->slot[pos] - 1), s) == 0) {
            *found = ix->slot[pos] - 1;
            return 0;
        }
    ix->slot[pos] = i + 1;
    ix->used++;
    *found = i;
    return 0;
}

uint32_t cb_strindex_next(const struct cb_strindex *ix, const char *s, size_t *cursor)
{
    if (ix->slot == NULL)
        return UINT32_MAX;
    /* *cursor: how many slots of s's run were looked at already. */
    size_t pos = (cb_strindex_hash(s) + *cursor) & ix->mask;
    for (; ix->slot[pos] != 0; pos = (pos + 1) & ix->mask) {
        uint32_t i = ix->slot[pos] - 1;
        ++*cursor;
        if (strcmp(ix->key(ix->ctx, i), s) == 0)
            return i;
    }
    return UINT32_MAX;
}

uint32_t cb_strindex_find(const struct cb_strindex *ix, const char *s)
{
    size_t cursor = 0;
    return cb_strindex_next(ix, s, &cursor);
}
