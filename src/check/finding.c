/* finding.c: the list of findings, and the sentence of each finding found per binding. */
#include "check/finding.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

const char *cb_severity_name(enum cb_severity s)
{
    return s == CB_SEV_ERROR ? "error" : "warning";
}

void cb_findings_clear(struct cb_findings *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].message);
        for (size_t j = 0; j < f->v[i].n_bindings; j++)
            free(f->v[i].bindings[j]);
        free(f->v[i].bindings);
    }
    free(f->v);
    memset(f, 0, sizeof(*f));
}

struct cb_finding *cb_check_add(struct cb_findings *f, const char *code, enum cb_severity sev,
                                uint16_t port, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        struct cb_finding *nv = realloc(f->v, cap * sizeof(*nv));
        if (nv == NULL)
            return NULL;
        f->v = nv;
        f->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct cb_finding *x = &f->v[f->n];
    memset(x, 0, sizeof(*x));
    x->code = code;
    x->severity = sev;
    x->port = port;
    if ((x->message = strdup(msg)) == NULL)
        return NULL;
    f->n++;
    if (sev == CB_SEV_ERROR)
        f->errors++;
    else
        f->warnings++;
    return x;
}

int cb_check_add_binding(struct cb_finding *x, const char *key)
{
    char **nb = realloc(x->bindings, (x->n_bindings + 1) * sizeof(*nb));
    if (nb == NULL)
        return CB_ENOMEM;
    x->bindings = nb;
    if ((nb[x->n_bindings] = strdup(key)) == NULL)
        return CB_ENOMEM;
    x->n_bindings++;
    return 0;
}

void cb_check_names_text(char **names, size_t n, char *buf, size_t size)
{
    buf[0] = '\0';
    for (size_t i = 0; i < n && i < 8; i++) {
        strncat(buf, i ? ", " : "", size - strlen(buf) - 1);
        strncat(buf, names[i], size - strlen(buf) - 1);
    }
    if (n > 8) {
        size_t l = strlen(buf);
        snprintf(buf + l, size - l, " (+%zu more)", n - 8);
    }
    if (n == 0)
        snprintf(buf, size, "no DNS names");
}

void cb_check_sni_list_add(struct cb_check_sni_list *l, const char *name)
{
    if (l->n++ >= CB_CHECK_LIST_MAX)
        return;
    strncat(l->text, l->n > 1 ? ", " : "", sizeof(l->text) - strlen(l->text) - 1);
    strncat(l->text, name, sizeof(l->text) - strlen(l->text) - 1);
}

struct cb_finding *cb_check_unknown_cert(struct cb_findings *f, const char *key_text,
                                         const char *certhash, uint16_t port)
{
    return cb_check_add(f, "unknown-cert", CB_SEV_ERROR, port,
                        "%s refers to certificate %s, which is not in the store; import it "
                        "(certbind add cert FILE) or bind another (certbind update sslcert %s "
                        "certhash=…)",
                        key_text, certhash, key_text);
}

struct cb_finding *cb_check_dual_mismatch(struct cb_findings *f, const char *key_text,
                                          const struct cb_cert_info *a,
                                          const struct cb_cert_info *b, const char *why,
                                          uint16_t port)
{
    char na[512], nb[512];

    if (why != NULL)
        return cb_check_add(f, "dual-cert-mismatch", CB_SEV_ERROR, port, "%s: %s", key_text, why);
    cb_check_names_text(a->names, a->n_names, na, sizeof(na));
    cb_check_names_text(b->names, b->n_names, nb, sizeof(nb));
    return cb_check_add(f, "dual-cert-mismatch", CB_SEV_ERROR, port,
                        "%s serves certificate %s (%s) to ECDSA clients and %s (%s) to RSA "
                        "clients, which cover different names: clients get a different answer "
                        "by key type. Bind two certificates issued for the same names",
                        key_text, a->thumbprint, na, b->thumbprint, nb);
}

struct cb_finding *cb_check_key_unusable(struct cb_findings *f, const struct cb_cert_row *row,
                                         const char *user, const char *reason)
{
    char names[512];

    cb_check_names_text(row->info.names, row->info.n_names, names, sizeof(names));
    return cb_check_add(f, "key-unusable", CB_SEV_ERROR, 0,
                        "the key of certificate %s (%s) is unusable%s%s: %s; its bindings fail "
                        "every handshake with internal_error. Fix the key file %s (owner, mode "
                        "0600) or import the certificate again: certbind add cert FILE key=FILE",
                        row->info.thumbprint, names, user[0] ? " by service user " : "", user,
                        reason, row->key_path);
}

struct cb_finding *cb_check_ip_shadows_sni(struct cb_findings *f, const char *ip_key,
                                           uint8_t family, const uint8_t addr[16], uint16_t port,
                                           const struct cb_check_sni_list *sni)
{
    char a[64], list[sizeof(sni->text) + 32];

    inet_ntop(family, addr, a, sizeof(a));
    snprintf(list, sizeof(list), "%s", sni->text);
    if (sni->n > CB_CHECK_LIST_MAX) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, " (+%zu more)", sni->n - CB_CHECK_LIST_MAX);
    }
    return cb_check_add(
        f, "ip-shadows-sni", CB_SEV_ERROR, port,
        "%s answers every client that connects to %s%s%s port %u, so those clients never reach "
        "the SNI bindings of port %u: %s. Delete it (certbind delete sslcert %s) or make it the "
        "default for all addresses (ipport=0.0.0.0:%u)",
        ip_key, family == AF_INET6 ? "[" : "", a, family == AF_INET6 ? "]" : "", port, port, list,
        ip_key, port);
}
