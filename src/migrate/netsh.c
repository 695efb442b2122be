/*
 * netsh.c: `netsh http show sslcert` output. Blocks of "Name : value" lines, one per
 * binding, separated by blank lines; a block starts with "IP:port", "Hostname:port"
 * or "Central Certificate Store". A field is told by its name (the text before the
 * first " : ", trimmed), never by its place: each Windows version prints more of them.
 * Windows Server 2016 ends a block at "Disable HTTP2"; 2019 adds QUIC, TLS 1.3, OCSP
 * stapling, token binding, extended events and legacy TLS; 2022 adds TLS 1.2, session
 * tickets and "Extended Properties:" sub-blocks (HTTP/2 settings, one "PropertyId"
 * each). Names certbind does not know are skipped and listed for the caller to report.
 * `netsh http show iplisten` output may come before or after: its heading, then one
 * address a line (an empty list is a heading alone).
 */
#include "migrate/migrate.h"
#include "binding/hostport.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum kind { F_KEY, F_HASH, F_APPID, F_TOGGLE, F_CTL, F_REVOCATION, F_SKIP };

static const struct field {
    const char *name;
    enum kind kind;
    const char *arg; /* F_KEY: the key word; F_TOGGLE: the certbind option */
} fields[] = {
    {"IP:port", F_KEY, "ipport"},
    {"Hostname:port", F_KEY, "hostnameport"},
    {"Central Certificate Store", F_KEY, "ccs"},
    {"Certificate Hash", F_HASH, NULL},
    {"Application ID", F_APPID, NULL},
    /* The HTTP.sys toggles certbind keeps. */
    {"Negotiate Client Certificate", F_TOGGLE, "clientcertnegotiation"},
    {"Reject Connections", F_TOGGLE, "reject"},
    {"Disable HTTP2", F_TOGGLE, "disablehttp2"},
    {"Disable TLS1.2", F_TOGGLE, "disabletls12"},
    {"Disable TLS1.3", F_TOGGLE, "disabletls13"},
    {"Disable OCSP Stapling", F_TOGGLE, "disableocspstapling"},
    {"Disable Legacy TLS Versions", F_TOGGLE, "disablelegacytls"},
    {"Enable Session Ticket", F_TOGGLE, "enablesessionticket"},
    /* Client certificates: the trust list and the revocation check, kept for the importer
     * to report (struct cb_import_entry). */
    {"Ctl Identifier", F_CTL, NULL},
    {"Verify Client Certificate Revocation", F_REVOCATION, NULL},
    /* Printed by netsh and without meaning here (Windows certificate stores, the finer
     * revocation settings, the DS mapper, QUIC, token binding, event logging, session IDs,
     * and the HTTP/2 settings of "Extended Properties:"): skipped. */
    {"Certificate Store Name", F_SKIP, NULL},
    {"Verify Revocation Using Cached Client Certificate Only", F_SKIP, NULL},
    {"Use Revocation Freshness Time", F_SKIP, NULL},
    {"Usage Check", F_SKIP, NULL},
    {"Revocation Freshness Time", F_SKIP, NULL},
    {"URL Retrieval Timeout", F_SKIP, NULL},
    {"Ctl Store Name", F_SKIP, NULL},
    {"DS Mapper Usage", F_SKIP, NULL},
    {"Disable QUIC", F_SKIP, NULL},
    {"Enable Token Binding", F_SKIP, NULL},
    {"Log Extended Events", F_SKIP, NULL},
    {"Disable Session ID", F_SKIP, NULL},
    {"Enable Caching Client Hello", F_SKIP, NULL},
    {"PropertyId", F_SKIP, NULL},
    {"Receive Window", F_SKIP, NULL},
    {"Max Settings Per Frame", F_SKIP, NULL},
    {"Max Settings Per Minute", F_SKIP, NULL},
};

/* The heading of `netsh http show iplisten`: one address a line follows. */
static const char iplisten_heading[] = "IP addresses present in the IP listen list:";

/* Lines that head a list rather than carry a value. */
static const char *const headings[] = {"SSL Certificate bindings:", "Extended Properties:"};

static const struct field *field_named(const char *name)
{
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (strcasecmp(name, fields[i].name) == 0)
            return &fields[i];
    return NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Length of the UTF-8 character at s (at most n bytes), 0 when it is not one. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80                    ? 1
                 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2
                 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                                : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
        return 0; /* overlong, surrogate, or past U+10FFFF */
    return len;
}

/* Text of the file as it may be shown: whole UTF-8 characters of s that fit in size
 * bytes, anything else (an 8-bit code page, a stray byte, a control character) as '?'. */
static void shown(const char *s, char *out, size_t size)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0;

    for (size_t i = 0; i < n;) {
        size_t c = utf8_char(p + i, n - i);
        if (o + (c ? c : 1) >= size)
            break;
        if (c == 1 && (p[i] < 0x20 || p[i] == 0x7F))
            c = 0;
        if (c == 0) {
            out[o++] = '?';
            i++;
        } else {
            memcpy(out + o, p + i, c);
            o += c, i += c;
        }
    }
    out[o] = '\0';
}

/* A refusal of the binding code for this line; it may quote the file's bytes. */
static int refused(struct cb_err *err, int line, const struct cb_err *why)
{
    char msg[sizeof(why->msg) - 32]; /* room for "line N: " in err */

    shown(why->msg, msg, sizeof(msg));
    return cb_err_set(err, CB_EBADFILE, "line %d: %s", line, msg);
}

/* Counts a line with a name certbind does not know: once per name (case-insensitive,
 * as shown, cut to fit), in order of first appearance. */
static void note_unknown(struct cb_import *out, const char *name, int line)
{
    char cut[sizeof(out->unknown[0].name)];

    shown(name, cut, sizeof(cut));
    size_t n = strlen(cut);
    for (size_t i = 0; i < out->n_unknown; i++) {
        if (strcasecmp(out->unknown[i].name, cut) == 0) {
            out->unknown[i].count++;
            return;
        }
    }
    if (out->n_unknown == CB_IMPORT_UNKNOWN_MAX) {
        out->unknown_more++;
        return;
    }
    struct cb_import_unknown *u = &out->unknown[out->n_unknown++];
    memcpy(u->name, cut, n + 1);
    u->line = line;
    u->count = 1;
}

static int entry_done(struct cb_import *imp, struct cb_import_entry *e, struct cb_err *err)
{
    struct cb_err verr;
    char key[CB_KEY_TEXT_MAX];

    if (e == NULL)
        return 0;
    /* netsh prints no ccspath; it is given on the import command. */
    if (e->b.key.kind == CB_KEY_CCS)
        return 0;
    if (cb_binding_validate(&e->b, &verr) != 0)
        return refused(err, e->line, &verr);
    cb_key_format(&e->b.key, key, sizeof(key));
    for (size_t i = 0; i + 1 < imp->n; i++)
        if (memcmp(&imp->v[i].b.key, &e->b.key, sizeof(e->b.key)) == 0)
            return cb_err_set(err, CB_EBADFILE, "line %d: %s appears twice (first on line %d)",
                              e->line, key, imp->v[i].line);
    return 0;
}

/* One "Name : value" line of the entry e (NULL before the first key line). */
static int field_line(struct cb_import *out, struct cb_import_entry **ep, const char *name,
                      const char *value, int lineno, struct cb_err *err)
{
    const struct field *f = field_named(name);
    struct cb_import_entry *e = *ep;
    struct cb_err verr;
    unsigned given = 0;
    int ret;

    if (f == NULL) {
        note_unknown(out, name, lineno);
        return 0;
    }
    if (f->kind == F_KEY) {
        if ((ret = entry_done(out, e, err)) != 0)
            return ret;
        if ((e = *ep = cb_import_push(out)) == NULL)
            return cb_err_set(err, CB_ENOMEM, "out of memory");
        e->line = lineno;
        if (cb_key_parse(f->arg, value, &e->b.key, &verr) != 0)
            return refused(err, lineno, &verr);
        return 0;
    }
    if (e == NULL)
        return cb_err_set(err, CB_EBADFILE,
                          "line %d: '%s' before any 'IP:port', 'Hostname:port' or 'Central "
                          "Certificate Store' line",
                          lineno, f->name);
    switch (f->kind) {
    case F_HASH:
        /* A central store binding has no certificate of its own. */
        if (e->b.key.kind == CB_KEY_CCS && (*value == '\0' || strcmp(value, "(null)") == 0))
            return 0;
        if (cb_binding_set_option(&e->b, "certhash", value, &given, &verr) != 0)
            return refused(err, lineno, &verr);
        return 0;
    case F_APPID:
        if (*value == '\0' || strcmp(value, "(null)") == 0)
            return 0;
        if (cb_binding_set_option(&e->b, "appid", value, &given, &verr) != 0)
            return refused(err, lineno, &verr);
        return 0;
    case F_TOGGLE: {
        const char *v =
            strcasecmp(value, "Enabled") == 0 || strcasecmp(value, "Set") == 0        ? "enable"
            : strcasecmp(value, "Disabled") == 0 || strcasecmp(value, "Not Set") == 0 ? "disable"
                                                                                      : NULL;
        if (v == NULL) {
            char text[41];
            shown(value, text, sizeof(text));
            return cb_err_set(err, CB_EBADFILE,
                              "line %d: %s is '%s'; netsh prints Enabled, Disabled, Set or "
                              "Not Set",
                              lineno, f->name, text);
        }
        if (cb_binding_set_option(&e->b, f->arg, v, &given, &verr) != 0)
            return refused(err, lineno, &verr);
        return 0;
    }
    case F_CTL:
        if (*value != '\0' && strcmp(value, "(null)") != 0)
            shown(value, e->ctl, sizeof(e->ctl));
        return 0;
    case F_REVOCATION:
        e->revocation_check = strcasecmp(value, "Enabled") == 0;
        return 0;
    default:
        return 0;
    }
}

/* A line of the IP listen list: an address (kept once), or CB_EBADFILE. */
static int iplisten_line(struct cb_import *out, const char *t, int lineno, struct cb_err *err)
{
    struct cb_hostport hp;
    struct cb_err why = {0};
    char text[61];

    if (cb_host_parse(t, 0, &hp, NULL, &why) != 0) {
        shown(t, text, sizeof(text));
        return cb_err_set(err, CB_EBADFILE,
                          "line %d: '%s' in the IP listen list is not an IPv4 or IPv6 address",
                          lineno, text);
    }
    char addr[sizeof(out->iplisten[0].addr)];
    inet_ntop(hp.family, hp.addr, addr, sizeof(addr));
    for (size_t i = 0; i < out->n_iplisten; i++)
        if (strcmp(out->iplisten[i].addr, addr) == 0)
            return 0;
    if (out->n_iplisten == CB_IMPORT_IPLISTEN_MAX)
        return cb_err_set(err, CB_EBADFILE, "line %d: more than %d addresses in the IP listen list",
                          lineno, CB_IMPORT_IPLISTEN_MAX);
    memcpy(out->iplisten[out->n_iplisten].addr, addr, sizeof(addr));
    out->iplisten[out->n_iplisten++].line = lineno;
    return 0;
}

/* One line, without its line end; NUL-terminated in line[]. *in_list: inside the IP listen
 * list (after its heading, until a line that is not an address). */
static int one_line(struct cb_import *out, struct cb_import_entry **ep, bool *in_list, char *line,
                    size_t n, int lineno, struct cb_err *err)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\0')
            return cb_err_set(err, CB_EBADFILE,
                              "line %d: contains a NUL byte; if the file is UTF-16 without a "
                              "byte-order mark, export it again as UTF-8 (in PowerShell: netsh "
                              "http show sslcert | Out-File -Encoding utf8 bindings.txt)",
                              lineno);
        if ((c < 0x20 && c != '\t') || c == 0x7F)
            return cb_err_set(err, CB_EBADFILE,
                              "line %d: contains the control character 0x%02X, which netsh "
                              "does not print",
                              lineno, c);
    }
    char *t = trim(line);
    size_t tl = strlen(t);
    if (tl == 0) {
        int ret = entry_done(out, *ep, err);
        *ep = NULL;
        return ret;
    }
    if (*ep == NULL && strspn(t, "-") == tl)
        return 0; /* the underline of the heading */
    if (strcasecmp(t, iplisten_heading) == 0) {
        int ret = entry_done(out, *ep, err);
        *ep = NULL;
        *in_list = true;
        out->iplisten_seen = true;
        return ret;
    }
    /* In the list, a line of one word is an address; headings and fields have spaces. */
    if (*in_list) {
        if (strpbrk(t, " \t") == NULL)
            return iplisten_line(out, t, lineno, err);
        *in_list = false;
    }
    char *sep = strstr(t, " : ");
    const char *value;
    if (sep != NULL) {
        *sep = '\0';
        value = trim(sep + 3);
    } else if (tl >= 2 && t[tl - 1] == ':' && t[tl - 2] == ' ') {
        t[tl - 2] = '\0'; /* "Name :" with an empty value */
        value = "";
    } else if (tl >= 2 && t[tl - 1] == ':') {
        /* "Extended Properties:": what follows belongs to the same binding. */
        for (size_t i = 0; i < sizeof(headings) / sizeof(headings[0]); i++)
            if (strcasecmp(t, headings[i]) == 0)
                return 0;
        note_unknown(out, t, lineno);
        return 0;
    } else {
        char text[61];
        shown(t, text, sizeof(text));
        return cb_err_set(err, CB_EBADFILE,
                          "line %d: expected 'Name : value' as netsh prints it, found '%s'", lineno,
                          text);
    }
    return field_line(out, ep, trim(t), value, lineno, err);
}

int cb_netsh_parse(const char *raw, size_t raw_len, struct cb_import *out, struct cb_err *err)
{
    struct cb_import_entry *e = NULL;
    const char *text;
    char line[1024], *owned;
    size_t len, pos = 0;
    int lineno = 0, ret;
    bool in_list = false;

    memset(out, 0, sizeof(*out));
    if ((ret = cb_text_utf8(raw, raw_len, &text, &len, &owned, err)) != 0)
        return ret;
    while (pos < len && ret == 0) {
        size_t end = pos;
        while (end < len && text[end] != '\n' && text[end] != '\r')
            end++;
        size_t n = end - pos;
        lineno++;
        if (n >= sizeof(line)) {
            ret = cb_err_set(err, CB_EBADFILE, "line %d: longer than %zu bytes", lineno,
                             sizeof(line) - 1);
            break;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        ret = one_line(out, &e, &in_list, line, n, lineno, err);
        /* A line ends at LF, CR LF, or a lone CR; CR CR LF (a CRLF file whose line ends
         * were converted once more) is one line end too. */
        size_t crs = 0;
        while (end + crs < len && text[end + crs] == '\r')
            crs++;
        pos = end + crs < len && text[end + crs] == '\n' ? end + crs + 1 : end + 1;
    }
    if (ret == 0)
        ret = entry_done(out, e, err);
    if (ret == 0 && out->n == 0 && !out->iplisten_seen) {
        if (out->n_unknown > 0)
            ret = cb_err_set(err, CB_EBADFILE,
                             "no bindings found, and fields certbind does not know such as "
                             "'%s' (line %d); give the output of 'netsh http show sslcert' "
                             "run in English",
                             out->unknown[0].name, out->unknown[0].line);
        else
            ret = cb_err_set(err, CB_EBADFILE,
                             "no bindings found; give the output of 'netsh http show sslcert' "
                             "(in English)");
    }
    if (ret != 0)
        cb_import_clear(out);
    free(owned);
    return ret;
}
