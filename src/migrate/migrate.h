/*
 * Moving from Windows: the bindings of `netsh http show sslcert` output (English, as
 * Windows prints it) and of IIS applicationHost.config site bindings, read into
 * certbind bindings. Malformed input is refused with the line number.
 */
#ifndef CB_MIGRATE_MIGRATE_H
#define CB_MIGRATE_MIGRATE_H

#include "binding/binding.h"

#include <stdbool.h>

struct cb_import_entry {
    struct cb_binding b; /* certhash is "" for IIS entries (the hash lives in HTTP.sys) */
    int line;            /* where the entry starts */
    char site[128];      /* IIS site name, or "" */
    /* netsh: the Certificate Trust List that limited the CAs of client certificates ("Ctl
     * Identifier", as shown, cut at 63 bytes; "" for none) and whether Windows checked
     * their revocation. Neither can be carried over as is: netsh names the list, not its
     * CAs (clientca=FILE takes them), and certbind does not check revocation. */
    char ctl[64];
    bool revocation_check;
};

/* A field name the reader does not know: skipped, and reported once per name. */
struct cb_import_unknown {
    char name[64]; /* as in the file (cut at 63 bytes) */
    int line;      /* where it first appears */
    int count;     /* lines it appears on */
};

#define CB_IMPORT_UNKNOWN_MAX 16
#define CB_IMPORT_IPLISTEN_MAX 64

/* One address of `netsh http show iplisten` (HTTP.sys's IP listen list). */
struct cb_import_iplisten {
    char addr[48]; /* canonical: "10.0.0.1", "2001:db8::1" (no brackets) */
    int line;
};

struct cb_import {
    struct cb_import_entry *v;
    size_t n, cap;
    struct cb_import_unknown unknown[CB_IMPORT_UNKNOWN_MAX]; /* netsh: in order of first line */
    size_t n_unknown;
    int unknown_more; /* lines with yet other unknown names, past the table */
    /* netsh: the IP listen list, when the text holds `netsh http show iplisten` output
     * ("IP addresses present in the IP listen list:" and one address a line). It is
     * node-local: `serve --iplisten ADDR` for each, never the store. */
    bool iplisten_seen;
    struct cb_import_iplisten iplisten[CB_IMPORT_IPLISTEN_MAX];
    size_t n_iplisten;
};

/*
 * Parses netsh output as Windows writes it to a file (`netsh http show sslcert`, `netsh http
 * show iplisten`, or both one after the other): UTF-16 (PowerShell 5.1's `>`) or
 * UTF-8, with or without a byte-order mark, CRLF, LF or CR line ends (cb_text_utf8).
 * Fields are told by name; unknown names are skipped and listed in out->unknown. ccs
 * entries get no ccspath (netsh does not print it). Fills *out (owned: cb_import_clear).
 * CB_EBADFILE with "line N: …" on malformed input; out is then empty.
 */
int cb_netsh_parse(const char *text, size_t len, struct cb_import *out,
                   struct cb_err *err) CB_MUST_CHECK;
/*
 * The text of an exported file as UTF-8 without a byte-order mark: UTF-16LE or UTF-16BE
 * (with a BOM, or without one when the first line's bytes alternate with zeros) is
 * converted, a UTF-8 BOM is dropped, other bytes are kept as they are. *out is text
 * itself or, when converted, *owned (free it; NULL otherwise). CB_EBADFILE for UTF-16
 * cut short (odd length) or with an unpaired surrogate, and for UTF-32.
 */
int cb_text_utf8(const char *text, size_t len, const char **out, size_t *out_len, char **owned,
                 struct cb_err *err) CB_MUST_CHECK;
/* Parses the https site bindings of an applicationHost.config document. */
int cb_iis_parse(const char *text, size_t len, struct cb_import *out,
                 struct cb_err *err) CB_MUST_CHECK;
void cb_import_clear(struct cb_import *imp);
/* Appends an entry with default options; NULL when out of memory. */
struct cb_import_entry *cb_import_push(struct cb_import *imp);

#endif
