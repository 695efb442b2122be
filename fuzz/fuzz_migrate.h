/* fuzz_migrate.h: the invariants shared by the netsh and IIS reader targets. */
#ifndef CB_FUZZ_MIGRATE_H
#define CB_FUZZ_MIGRATE_H

#include "migrate/migrate.h"

#include <stdlib.h>
#include <string.h>

/* A refusal says why; every imported key formats and re-parses to itself. */
static inline void fuzz_check_import(int ret, struct cb_import *imp, const struct cb_err *err)
{
    if (ret != 0) {
        if (err->msg[0] == '\0')
            abort();
        return;
    }
    for (size_t i = 0; i < imp->n; i++) {
        char text[CB_KEY_TEXT_MAX];
        struct cb_binding_key again;
        struct cb_err e;
        cb_key_format(&imp->v[i].b.key, text, sizeof(text));
        if (cb_key_parse_word(text, &again, &e) != 0 ||
            memcmp(&again, &imp->v[i].b.key, sizeof(again)) != 0)
            abort();
    }
    cb_import_clear(imp);
}

#endif
