/*
 * Moving from Windows: the bindings of `netsh http show sslcert` output (English, as
 * Windows prints it) and of IIS applicationHost.config site bindings, read into
 * certbind bindings. Malformed input is refused with the line number.
 */
#ifndef CB_MIGRATE_MIGRATE_H
#define CB_MIGRATE_MIGRATE_H

#include "binding/binding.h"

struct cb_import_entry {
    struct cb_binding b; /* certhash is "" for IIS entries (the hash lives in HTTP.sys) */
    int line;            /* where the entry starts */
    char site[128];      /* IIS site name, or "" */
};

struct cb_import {
    struct cb_import_entry *v;
    size_t n, cap;
};

/* Parses netsh output (text, len bytes; CRLF or LF). ccs entries get no ccspath (netsh
 * does not print it). Fills *out (owned: cb_import_clear). CB_EBADFILE with
 * "line N: …" on malformed input; out is then empty. */
int cb_netsh_parse(const char *text, size_t len, struct cb_import *out,
                   struct cb_err *err) CB_MUST_CHECK;
/* Parses the https site bindings of an applicationHost.config document. */
int cb_iis_parse(const char *text, size_t len, struct cb_import *out,
                 struct cb_err *err) CB_MUST_CHECK;
void cb_import_clear(struct cb_import *imp);
/* Appends an entry with default options; NULL when out of memory. */
struct cb_import_entry *cb_import_push(struct cb_import *imp);

#endif
