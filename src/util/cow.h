/*
 * A table of fixed-size elements in parts of CB_COW_PART elements, shared between the
 * tables derived from one another with copy on write. Sharing a table (cb_cow_share)
 * costs a pointer and a count per part; a write (cb_cow_mut) copies the one part it
 * falls in when another table holds it too. So a table of a million elements derived
 * for one changed element costs ~250 pointers and one part, whatever its size, and
 * the table it came from is never written.
 *
 * Elements may own things: ops->copy makes an element's copy when a part is copied
 * (e.g. takes another reference), ops->clear releases one when its last holder drops
 * a part or an element is cleared. Elements past the table's count are always zero.
 * Counts of holders are atomic (a table built on one thread may be shared on another);
 * what the hooks touch need not be: use one table family from one thread at a time.
 */
#ifndef CB_UTIL_COW_H
#define CB_UTIL_COW_H

#include <certbind/certbind.h>
#include <stddef.h>
#include <stdint.h>

#define CB_COW_SHIFT 12
#define CB_COW_PART ((size_t)1 << CB_COW_SHIFT) /* elements per part */

struct cb_cow_ops {
    size_t elem; /* bytes per element */
    /* *dst (zeroed) becomes a copy of *src; CB_ENOMEM. NULL: a byte copy. */
    int (*copy)(void *dst, const void *src);
    /* Releases what *e owns (a zeroed element owns nothing). NULL: nothing owned. */
    void (*clear)(void *e);
};

struct cb_cow_part;

struct cb_cow {
    const struct cb_cow_ops *ops; /* borrowed: static */
    struct cb_cow_part **part;    /* owned array; each part counted once for this table */
    size_t n_parts;
    size_t n; /* elements */
};

/* t (overwritten) becomes a table of n zeroed elements, held alone. CB_ENOMEM. */
int cb_cow_init(struct cb_cow *t, const struct cb_cow_ops *ops, size_t n) CB_MUST_CHECK;
/* dst (overwritten) holds src's parts too: one more holder on each, src only read.
 * CB_ENOMEM (dst is then empty, as after cb_cow_free). */
int cb_cow_share(struct cb_cow *dst, const struct cb_cow *src) CB_MUST_CHECK;
/* Drops t's parts (each freed, its elements cleared, by its last holder); t is left empty.
 * An empty or zeroed table is a no-op. */
void cb_cow_free(struct cb_cow *t);
/* n elements: the ones past n are cleared (their parts copied first if shared), new ones
 * are zero. CB_ENOMEM (t is then unchanged in count, still valid). */
int cb_cow_resize(struct cb_cow *t, size_t n) CB_MUST_CHECK;
/* Element i < t->n, writable: its part is copied first when another table holds it.
 * NULL when out of memory. */
void *cb_cow_mut(struct cb_cow *t, size_t i);
/* Element i < t->n, read-only (borrowed from t). */
const void *cb_cow_at(const struct cb_cow *t, size_t i);
/* Parts t holds alone (written since it was shared, or never shared): for tests. */
size_t cb_cow_owned_parts(const struct cb_cow *t);

#endif
