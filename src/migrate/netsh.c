/*
 * netsh.c: `netsh http show sslcert` output. Blocks of "Name : value" lines, one per
 * binding, separated by blank lines; a block starts with "IP:port", "Hostname:port"
 * or "Central Certificate Store".
 */
#include "migrate/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The netsh toggles certbind keeps; the others (revocation, DS mapper…) have no
 * meaning on Linux and are read and ignored. */
static const struct {
    const char *label;
    const char *option;
} toggles[] = {
    {"Negotiate Client Certificate", "clientcertnegotiation"},
    {"Reject Connections", "reject"},
    {"Disable HTTP2", "disablehttp2"},
    {"Disable TLS1.2", "disabletls12"},
    {"Disable TLS1.3", "disabletls13"},
    {"Disable OCSP Stapling", "disableocspstapling"},
    {"Disable Legacy TLS Versions", "disablelegacytls"},
    {"Enable Session Ticket", "enablesessionticket"},
};

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
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
        return cb_err_set(err, CB_EBADFILE, "line %d: %s", e->line, verr.msg);
    cb_key_format(&e->b.key, key, sizeof(key));
    for (size_t i = 0; i + 1 < imp->n; i++)
        if (memcmp(&imp->v[i].b.key, &e->b.key, sizeof(e->b.key)) == 0)
            return cb_err_set(err, CB_EBADFILE, "line %d: %s appears twice (first on line %d)",
                              e->line, key, imp->v[i].line);
    return 0;
}

int cb_netsh_parse(const char *text, size_t len, struct cb_import *out, struct cb_err *err)
{
    struct cb_import_entry *e = NULL;
    char line[1024];
    size_t pos = 0;
    int lineno = 0, ret = 0;

    memset(out, 0, sizeof(*out));
    while (pos < len && ret == 0) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
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
        pos = end + 1;
        if (memchr(line, '\0', n) != NULL) {
            ret = cb_err_set(err, CB_EBADFILE, "line %d: contains a NUL byte", lineno);
            break;
        }
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        char *t = trim(line);
        if (*t == '\0') {
            ret = entry_done(out, e, err);
            e = NULL;
            continue;
        }
        if (e == NULL &&
            (strcmp(t, "SSL Certificate bindings:") == 0 || strspn(t, "-") == strlen(t)))
            continue;
        char *sep = strstr(t, " : ");
        size_t tl = strlen(t);
        char *value;
        if (sep != NULL) {
            *sep = '\0';
            value = trim(sep + 3);
        } else if (tl >= 2 && t[tl - 1] == ':' && t[tl - 2] == ' ') {
            t[tl - 1] = '\0'; /* "Name :" with an empty value */
            value = t + tl - 1;
        } else {
            ret = cb_err_set(err, CB_EBADFILE,
                             "line %d: expected 'Name : value' as netsh prints it, found '%.60s'",
                             lineno, t);
            break;
        }
        char *name = trim(t);
        struct cb_err verr;
        unsigned fields = 0;
        const char *keyname = strcasecmp(name, "IP:port") == 0                     ? "ipport"
                              : strcasecmp(name, "Hostname:port") == 0             ? "hostnameport"
                              : strcasecmp(name, "Central Certificate Store") == 0 ? "ccs"
                                                                                   : NULL;
        if (keyname != NULL) {
            if ((ret = entry_done(out, e, err)) != 0)
                break;
            if ((e = cb_import_push(out)) == NULL) {
                ret = cb_err_set(err, CB_ENOMEM, "out of memory");
                break;
            }
            e->line = lineno;
            if (cb_key_parse(keyname, value, &e->b.key, &verr) != 0) {
                ret = cb_err_set(err, CB_EBADFILE, "line %d: %s", lineno, verr.msg);
                break;
            }
            continue;
        }
        if (e == NULL) {
            ret = cb_err_set(err, CB_EBADFILE,
                             "line %d: '%s' before any 'IP:port', 'Hostname:port' or 'Central "
                             "Certificate Store' line",
                             lineno, name);
            break;
        }
        if (strcasecmp(name, "Certificate Hash") == 0) {
            if (cb_binding_set_option(&e->b, "certhash", value, &fields, &verr) != 0)
                ret = cb_err_set(err, CB_EBADFILE, "line %d: %s", lineno, verr.msg);
            continue;
        }
        if (strcasecmp(name, "Application ID") == 0) {
            if (strcmp(value, "(null)") != 0 &&
                cb_binding_set_option(&e->b, "appid", value, &fields, &verr) != 0)
                ret = cb_err_set(err, CB_EBADFILE, "line %d: %s", lineno, verr.msg);
            continue;
        }
        for (size_t i = 0; i < sizeof(toggles) / sizeof(toggles[0]); i++) {
            if (strcasecmp(name, toggles[i].label) != 0)
                continue;
            const char *v =
                strcasecmp(value, "Enabled") == 0 || strcasecmp(value, "Set") == 0 ? "enable"
                : strcasecmp(value, "Disabled") == 0 || strcasecmp(value, "Not Set") == 0
                    ? "disable"
                    : NULL;
            if (v == NULL)
                ret = cb_err_set(err, CB_EBADFILE,
                                 "line %d: %s is '%.40s'; netsh prints Enabled, Disabled, Set or "
                                 "Not Set",
                                 lineno, name, value);
            else if (cb_binding_set_option(&e->b, toggles[i].option, v, &fields, &verr) != 0)
                ret = cb_err_set(err, CB_EBADFILE, "line %d: %s", lineno, verr.msg);
            break;
        }
    }
    if (ret == 0)
        ret = entry_done(out, e, err);
    if (ret == 0 && out->n == 0)
        ret = cb_err_set(err, CB_EBADFILE,
                         "no bindings found; give the output of 'netsh http show sslcert' "
                         "(in English)");
    if (ret != 0)
        cb_import_clear(out);
    return ret;
}
