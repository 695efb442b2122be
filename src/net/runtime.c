/* runtime.c: the reference count of what a worker serves from (net/runtime.h). */
#include "net/runtime.h"
#include "tls/challenge.h"
#include "tls/staple.h"
#include "tls/ticket.h"

#include <stdlib.h>

struct cb_runtime *cb_runtime_ref(struct cb_runtime *rt)
{
    rt->refs++;
    return rt;
}

void cb_runtime_unref(struct cb_runtime *rt)
{
    if (rt == NULL || --rt->refs > 0)
        return;
    size_t n = rt->snap ? cb_snapshot_count(rt->snap) : 0;
    size_t nf = rt->snap ? cb_snapshot_ccs_count(rt->snap) : 0;
    for (size_t i = 0; i < n; i++) {
        if (rt->bind_tls != NULL)
            cb_tls_entry_clear(&rt->bind_tls[i]);
        if (rt->backends != NULL)
            free(rt->backends[i].error);
    }
    for (size_t i = 0; rt->file_tls != NULL && i < nf; i++)
        cb_tls_entry_clear(&rt->file_tls[i]);
    free(rt->bind_tls);
    free(rt->file_tls);
    free(rt->backends);
    free(rt->active);
    free(rt->stat);
    cb_tls_challenges_unref(rt->challenges);
    cb_tls_staples_unref(rt->staples);
    cb_tls_tickets_unref(rt->tickets);
    cb_snapshot_unref(rt->snap);
    free(rt);
}
