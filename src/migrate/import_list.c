/* import_list.c: the list of bindings read from a Windows export (netsh or IIS). */
#include "migrate/migrate.h"

#include <stdlib.h>
#include <string.h>

void cb_import_clear(struct cb_import *imp)
{
    free(imp->v);
    memset(imp, 0, sizeof(*imp));
}

struct cb_import_entry *cb_import_push(struct cb_import *imp)
{
    if (imp->n == imp->cap) {
        size_t cap = imp->cap ? imp->cap * 2 : 16;
        struct cb_import_entry *nv = realloc(imp->v, cap * sizeof(*nv));
        if (nv == NULL)
            return NULL;
        imp->v = nv;
        imp->cap = cap;
    }
    struct cb_import_entry *e = &imp->v[imp->n++];
    memset(e, 0, sizeof(*e));
    cb_binding_init(&e->b);
    return e;
}
