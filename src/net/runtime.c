/* runtime.c: the reference count of what a worker serves from (net/runtime.h). */
#include "net/runtime.h"
#include "tls/challenge.h"
#include "tls/staple.h"
#include "tls/ticket.h"

#include <stdlib.h>
#include <string.h>

static int tls_copy(void *dst, const void *src)
{
    cb_tls_entry_copy(dst, src);
    return 0;
}

static void tls_clear(void *e)
{
    cb_tls_entry_clear(e);
}

static int backend_copy(void *dst, const void *src)
{
    struct cb_backend *d = dst;
    const struct cb_backend *s = src;
    *d = *s;
    if (s->error != NULL && (d->error = strdup(s->error)) == NULL)
        return CB_ENOMEM;
    return 0;
}

static void backend_clear(void *e)
{
    struct cb_backend *b = e;
    free(b->error);
    b->error = NULL;
}

const struct cb_cow_ops cb_runtime_tls_ops = {sizeof(struct cb_tls_entry), tls_copy, tls_clear};
const struct cb_cow_ops cb_runtime_backend_ops = {sizeof(struct cb_backend), backend_copy,
                                                  backend_clear};
const struct cb_cow_ops cb_runtime_active_ops = {sizeof(uint32_t), NULL, NULL};
const struct cb_cow_ops cb_runtime_stat_ops = {sizeof(struct cb_metrics_entry *), NULL, NULL};

struct cb_runtime *cb_runtime_ref(struct cb_runtime *rt)
{
    rt->refs++;
    return rt;
}

void cb_runtime_unref(struct cb_runtime *rt)
{
    if (rt == NULL || --rt->refs > 0)
        return;
    size_t nf = rt->snap ? cb_snapshot_ccs_count(rt->snap) : 0;
    cb_cow_free(&rt->bind_tls);
    cb_cow_free(&rt->backends);
    cb_cow_free(&rt->active);
    cb_cow_free(&rt->stat);
    cb_cow_free(&rt->port_bindings);
    for (size_t i = 0; rt->file_tls != NULL && i < nf; i++)
        cb_tls_entry_clear(&rt->file_tls[i]);
    free(rt->file_tls);
    free(rt->broken);
    cb_tls_challenges_unref(rt->challenges);
    cb_tls_staples_unref(rt->staples);
    cb_tls_tickets_unref(rt->tickets);
    cb_snapshot_unref(rt->snap);
    free(rt);
}
