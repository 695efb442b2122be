/* lru.c: a doubly linked list in use order, with the bytes its items are charged. */
#include "util/lru.h"

void cb_lru_init(struct cb_lru *l, size_t limit)
{
    l->head.prev = l->head.next = &l->head;
    l->head.cost = 0;
    l->bytes = 0;
    l->count = 0;
    l->limit = limit;
}

bool cb_lru_linked(const struct cb_lru_node *n)
{
    return n->next != NULL;
}

static void link_first(struct cb_lru *l, struct cb_lru_node *n)
{
    n->prev = &l->head;
    n->next = l->head.next;
    l->head.next->prev = n;
    l->head.next = n;
}

static void unlink_node(struct cb_lru_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

void cb_lru_insert(struct cb_lru *l, struct cb_lru_node *n, size_t cost)
{
    n->cost = cost;
    link_first(l, n);
    l->bytes += cost;
    l->count++;
}

void cb_lru_touch(struct cb_lru *l, struct cb_lru_node *n)
{
    if (l->head.next == n)
        return;
    unlink_node(n);
    link_first(l, n);
}

void cb_lru_remove(struct cb_lru *l, struct cb_lru_node *n)
{
    if (!cb_lru_linked(n))
        return;
    unlink_node(n);
    l->bytes -= n->cost;
    l->count--;
}

struct cb_lru_node *cb_lru_victim(const struct cb_lru *l, const struct cb_lru_node *keep)
{
    if (l->limit == 0 || l->bytes <= l->limit)
        return NULL;
    for (struct cb_lru_node *n = l->head.prev; n != &l->head; n = n->prev)
        if (n != keep)
            return n;
    return NULL;
}
