/*
 * A min-heap of (due time, id) pairs: what is due first, in O(log n), for schedules of
 * up to millions of items where a pass over all of them per step would not do. The heap
 * holds copies; the caller keeps each id's state and keeps an id in the heap at most
 * once. Not thread-safe: one owner.
 */
#ifndef CB_UTIL_DUEHEAP_H
#define CB_UTIL_DUEHEAP_H

#include <certbind/certbind.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cb_due {
    int64_t at;
    uint32_t id;
};

struct cb_dueheap {
    struct cb_due *v; /* owned: cb_dueheap_free */
    size_t n, cap;
};

/* An empty heap (allocates nothing until the first push). */
void cb_dueheap_init(struct cb_dueheap *h);
void cb_dueheap_free(struct cb_dueheap *h);
/* Empties h, keeping its memory. */
void cb_dueheap_clear(struct cb_dueheap *h);
/* Adds (at, id). CB_ENOMEM (unchanged). */
int cb_dueheap_push(struct cb_dueheap *h, int64_t at, uint32_t id) CB_MUST_CHECK;
/* Takes out the earliest pair into *out when it is due (at <= now): true; else false. */
bool cb_dueheap_pop_due(struct cb_dueheap *h, int64_t now, struct cb_due *out);
/* Many at once: cb_dueheap_append adds (at, id) without keeping the order, and
 * cb_dueheap_heapify restores it in O(n) after the last one, before any push or pop.
 * CB_ENOMEM (unchanged). */
int cb_dueheap_append(struct cb_dueheap *h, int64_t at, uint32_t id) CB_MUST_CHECK;
void cb_dueheap_heapify(struct cb_dueheap *h);

#endif
