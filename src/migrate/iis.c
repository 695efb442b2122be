/*
 * iis.c: https site bindings of IIS applicationHost.config (libxml2). A binding is
 * bindingInformation="IP:PORT:HOST" with sslFlags (1 = SNI, 2 = central store); the
 * certificate hashes live in HTTP.sys, not in this file.
 */
#include "migrate/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

static bool is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static int one_binding(struct cb_import *out, const xmlNode *bn, const char *site,
                       struct cb_err *err)
{
    int line = (int)xmlGetLineNo(bn);
    xmlChar *proto = xmlGetProp(bn, (const xmlChar *)"protocol");
    xmlChar *info = xmlGetProp(bn, (const xmlChar *)"bindingInformation");
    xmlChar *flags = xmlGetProp(bn, (const xmlChar *)"sslFlags");
    char word[CB_KEY_TEXT_MAX + 64];
    struct cb_err kerr;
    int ret = 0;

    if (proto == NULL || strcmp((const char *)proto, "https") != 0)
        goto out_free;
    if (info == NULL) {
        ret =
            cb_err_set(err, CB_EBADFILE, "line %d: https binding without bindingInformation", line);
        goto out_free;
    }
    char *end;
    long sf = flags ? strtol((const char *)flags, &end, 10) : 0;
    if (flags != NULL && (*end != '\0' || sf < 0 || sf > 255)) {
        ret = cb_err_set(err, CB_EBADFILE, "line %d: sslFlags=\"%s\" is not a number", line,
                         (const char *)flags);
        goto out_free;
    }
    /* "IP:PORT:HOST": the host is after the last colon, the port before it. */
    const char *s = (const char *)info;
    const char *last = strrchr(s, ':');
    if (last == NULL || last == s) {
        ret = cb_err_set(err, CB_EBADFILE,
                         "line %d: bindingInformation=\"%.80s\" is not IP:PORT:HOST", line, s);
        goto out_free;
    }
    const char *host = last + 1;
    const char *pcolon = last - 1;
    while (pcolon > s && *pcolon != ':')
        pcolon--;
    if (*pcolon != ':') {
        ret = cb_err_set(err, CB_EBADFILE,
                         "line %d: bindingInformation=\"%.80s\" is not IP:PORT:HOST", line, s);
        goto out_free;
    }
    int iplen = (int)(pcolon - s), portlen = (int)(last - pcolon - 1);
    if (sf & 2)
        snprintf(word, sizeof(word), "ccs=%.*s", portlen, pcolon + 1);
    else if (sf & 1) {
        if (*host == '\0') {
            ret = cb_err_set(err, CB_EBADFILE,
                             "line %d: SNI binding (sslFlags=%ld) without a host name", line, sf);
            goto out_free;
        }
        snprintf(word, sizeof(word), "hostnameport=%s:%.*s", host, portlen, pcolon + 1);
    } else if (iplen == 1 && s[0] == '*')
        snprintf(word, sizeof(word), "ipport=0.0.0.0:%.*s", portlen, pcolon + 1);
    else
        snprintf(word, sizeof(word), "ipport=%.*s:%.*s", iplen, s, portlen, pcolon + 1);
    struct cb_import_entry *e = cb_import_push(out);
    if (e == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    e->line = line;
    snprintf(e->site, sizeof(e->site), "%s", site ? site : "");
    if (cb_key_parse_word(word, &e->b.key, &kerr) != 0) {
        out->n--;
        ret = cb_err_set(err, CB_EBADFILE, "line %d: %s", line, kerr.msg);
        goto out_free;
    }
    /* IIS lists a shared https binding once per site: keep the first. */
    for (size_t i = 0; i + 1 < out->n; i++)
        if (memcmp(&out->v[i].b.key, &e->b.key, sizeof(e->b.key)) == 0) {
            out->n--;
            break;
        }
out_free:
    xmlFree(proto);
    xmlFree(info);
    xmlFree(flags);
    return ret;
}

static int walk(struct cb_import *out, const xmlNode *n, struct cb_err *err)
{
    for (; n != NULL; n = n->next) {
        if (is(n, "site")) {
            xmlChar *name = xmlGetProp(n, (const xmlChar *)"name");
            for (const xmlNode *c = n->children; c != NULL; c = c->next) {
                if (!is(c, "bindings"))
                    continue;
                for (const xmlNode *b = c->children; b != NULL; b = b->next) {
                    if (!is(b, "binding"))
                        continue;
                    int ret = one_binding(out, b, (const char *)name, err);
                    if (ret != 0) {
                        xmlFree(name);
                        return ret;
                    }
                }
            }
            xmlFree(name);
            continue;
        }
        int ret = walk(out, n->children, err);
        if (ret != 0)
            return ret;
    }
    return 0;
}

/* libxml2 reports some problems (encoding errors) through its generic handler even with
 * XML_PARSE_NOERROR: keep them off stderr, the parse result says what went wrong. */
static void on_xml_error(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

int cb_iis_parse(const char *text, size_t len, struct cb_import *out, struct cb_err *err)
{
    xmlDoc *doc;
    int ret;

    xmlSetGenericErrorFunc(NULL, on_xml_error);

    memset(out, 0, sizeof(*out));
    if (len > 64 * 1024 * 1024)
        return cb_err_set(err, CB_EBADFILE, "applicationHost.config larger than 64 MiB");
    doc = xmlReadMemory(text, (int)len, "applicationHost.config", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (doc == NULL) {
        const xmlError *e = xmlGetLastError();
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", e && e->message ? e->message : "parse error");
        msg[strcspn(msg, "\r\n")] = '\0'; /* libxml2 ends its messages with a newline */
        return cb_err_set(err, CB_EBADFILE, "line %d: not well-formed XML: %s", e ? e->line : 0,
                          msg);
    }
    ret = walk(out, xmlDocGetRootElement(doc), err);
    xmlFreeDoc(doc);
    if (ret == 0 && out->n == 0)
        ret = cb_err_set(err, CB_EBADFILE,
                         "no https site bindings found; give IIS's applicationHost.config");
    if (ret != 0)
        cb_import_clear(out);
    return ret;
}
