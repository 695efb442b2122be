/*
 * A least-recently-used list with a byte budget, intrusive (the caller embeds a
 * cb_lru_node in each item and owns the items; the list allocates nothing).
 *
 * The list only orders and counts: it never frees an item. The caller asks for a
 * victim while the list is over its budget, drops what the item holds, and removes
 * it. Not thread-safe: one owner (a worker's event loop).
 */
#ifndef CB_UTIL_LRU_H
#define CB_UTIL_LRU_H

#include <stdbool.h>
#include <stddef.h>

struct cb_lru_node {
    struct cb_lru_node *prev, *next; /* NULL, NULL while not in a list */
    size_t cost;                     /* bytes charged to the list while in it */
};

struct cb_lru {
    struct cb_lru_node head; /* head.next: most recently used; head.prev: least */
    size_t bytes;            /* sum of the costs of the items in the list */
    size_t count;
    size_t limit; /* budget in bytes; 0: none (never over budget) */
};

/* An empty list with budget limit (0: unbounded). */
void cb_lru_init(struct cb_lru *l, size_t limit);
/* Whether n is in a list. */
bool cb_lru_linked(const struct cb_lru_node *n);
/* Adds n (not in a list) as the most recently used, charged cost bytes. */
void cb_lru_insert(struct cb_lru *l, struct cb_lru_node *n, size_t cost);
/* n (in l) becomes the most recently used. */
void cb_lru_touch(struct cb_lru *l, struct cb_lru_node *n);
/* Takes n out of l (a no-op when n is in no list). */
void cb_lru_remove(struct cb_lru *l, struct cb_lru_node *n);
/*
 * While l is over its budget, its least recently used node other than keep (borrowed,
 * may be NULL); else NULL. The caller frees what it holds and removes it, then asks
 * again: one item alone over the budget is kept (it is the one being used).
 */
struct cb_lru_node *cb_lru_victim(const struct cb_lru *l, const struct cb_lru_node *keep);

#endif
