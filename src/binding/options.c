/*
 * options.c: per-binding options (certhash=, appid=, backend=, proxyprotocol=,
 * ccspath=, clientca= and the HTTP.sys enable|disable toggles) and their validation.
 */
#include "binding/binding.h"
#include "binding/hostport.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static const struct {
    const char *name;
    uint32_t bit;
} flag_names[] = {
#define CB_XX(id, text, bit) {text, CB_OPT_##id},
    CB_OPT_FLAG_MAP(CB_XX)
#undef CB_XX
};

#define N_FLAGS (sizeof(flag_names) / sizeof(flag_names[0]))

const char *cb_opt_flag_name(uint32_t bit)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (flag_names[i].bit == bit)
            return flag_names[i].name;
    return "?";
}

const char *cb_proxy_name(enum cb_proxy_proto p)
{
    return p == CB_PROXY_V1 ? "v1" : p == CB_PROXY_V2 ? "v2" : "off";
}

void cb_binding_init(struct cb_binding *b)
{
    memset(b, 0, sizeof(*b));
    b->proxy = CB_PROXY_OFF;
}

static int parse_appid(const char *v, char out[CB_APPID_LEN + 1], struct cb_err *err)
{
    static const int groups[5] = {8, 4, 4, 4, 12};
    const char *p = v;
    size_t n = 0;
    bool braced = *p == '{';

    if (braced)
        p++;
    out[n++] = '{';
    for (int g = 0; g < 5; g++) {
        for (int i = 0; i < groups[g]; i++, p++) {
            char c = *p;
            if (c >= 'A' && c <= 'F')
                c = (char)(c + 32);
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                goto bad;
            out[n++] = c;
        }
        if (g < 4) {
            if (*p++ != '-')
                goto bad;
            out[n++] = '-';
        }
    }
    if (braced && *p++ != '}')
        goto bad;
    if (*p != '\0')
        goto bad;
    out[n++] = '}';
    out[n] = '\0';
    return 0;
bad:
    return cb_err_set(err, CB_EINVAL,
                      "appid=%s is not a GUID; write it as "
                      "{00112233-4455-6677-8899-aabbccddeeff}",
                      v);
}

static int parse_backend(const char *v, char out[CB_BACKEND_MAX + 1], struct cb_err *err)
{
    static const uint8_t zero[16];
    struct cb_hostport hp;
    enum cb_hostport_fault fault;
    struct cb_err perr;

    if (cb_hostport_parse(v, CB_HOSTPORT_NAME, &hp, &fault, &perr) != 0) {
        if (fault == CB_HOSTPORT_NO_PORT || fault == CB_HOSTPORT_BAD_PORT)
            return cb_err_set(err, CB_EINVAL,
                              "backend=%s: write HOST:PORT with a port from 1 to 65535, as in "
                              "backend=127.0.0.1:8080 or backend=[::1]:8080",
                              v);
        return cb_err_set(err, CB_EINVAL, "backend=%s: %s", v, perr.msg);
    }
    if (hp.kind != CB_HOST_NAME && memcmp(hp.addr, zero, hp.family == AF_INET ? 4 : 16) == 0)
        return cb_err_set(err, CB_EINVAL,
                          "backend=%s: a wildcard address cannot be connected to; give the "
                          "backend's address, such as 127.0.0.1",
                          v);
    /* Names that the resolver reads as numbers ("10.0.1", "0x7f.1", an all-digit last
     * label) are mistyped IPv4 addresses, not host names: refuse them. */
    const char *last = strrchr(hp.host, '.');
    struct in_addr a4;
    last = last != NULL ? last + 1 : hp.host;
    if (hp.kind == CB_HOST_NAME &&
        (strspn(last, "0123456789") == strlen(last) || inet_aton(hp.host, &a4) != 0))
        return cb_err_set(err, CB_EINVAL,
                          "backend=%s: '%s' is not a valid IPv4 address; write four numbers "
                          "from 0 to 255, as in backend=127.0.0.1:8080",
                          v, hp.host);
    cb_hostport_format(&hp, out, CB_BACKEND_MAX + 1);
    return 0;
}

/* certhash=T1 or certhash=T1,T2 (one comma; spaces and colons inside a thumbprint are
 * ignored, as for one). */
static int parse_certhash(const char *value, struct cb_binding *b, struct cb_err *err)
{
    char first[CB_THUMB_LEN * 3 + 1];
    const char *comma = strchr(value, ',');

    b->certhash2[0] = '\0';
    if (comma == NULL)
        return cb_thumbprint_normalize(value, b->certhash, err);
    if (strchr(comma + 1, ',') != NULL)
        return cb_err_set(err, CB_EINVAL,
                          "certhash=%.200s: give one thumbprint, or two (one ECDSA and one RSA "
                          "certificate) separated by a comma, not more",
                          value);
    size_t n = (size_t)(comma - value);
    if (n >= sizeof(first))
        return cb_err_set(err, CB_EINVAL,
                          "certhash=%.60s…: the first thumbprint is too long; give 40 hex "
                          "digits as printed by 'certbind show cert'",
                          value);
    memcpy(first, value, n);
    first[n] = '\0';
    if (first[strspn(first, " :")] == '\0' || comma[1 + strspn(comma + 1, " :")] == '\0')
        return cb_err_set(err, CB_EINVAL,
                          "certhash=%.200s: a thumbprint is missing around the comma; write "
                          "certhash=T1,T2 with the thumbprints of an ECDSA and an RSA "
                          "certificate",
                          value);
    if (cb_thumbprint_normalize(first, b->certhash, err) != 0 ||
        cb_thumbprint_normalize(comma + 1, b->certhash2, err) != 0)
        return CB_EINVAL;
    if (strcmp(b->certhash, b->certhash2) == 0)
        return cb_err_set(err, CB_EINVAL,
                          "certhash=%.200s names certificate %s twice; give it once, or add "
                          "the other key type's certificate as the second",
                          value, b->certhash);
    return 0;
}

size_t cb_binding_certhash_text(const struct cb_binding *b, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s%s%s", b->certhash, b->certhash2[0] ? "," : "", b->certhash2);
    return n < 0 ? 0 : (size_t)n;
}

bool cb_binding_is_dual(const struct cb_binding *b)
{
    return b->certhash2[0] != '\0';
}

bool cb_binding_replace_cert(struct cb_binding *b, const char *from, const char *to)
{
    char *slot = strcmp(b->certhash, from) == 0    ? b->certhash
                 : strcmp(b->certhash2, from) == 0 ? b->certhash2
                                                   : NULL;
    if (slot == NULL || from[0] == '\0')
        return false;
    snprintf(slot, CB_THUMB_LEN + 1, "%s", to);
    return true;
}

int cb_binding_set_option(struct cb_binding *b, const char *name, const char *value,
                          unsigned *fields, struct cb_err *err)
{
    if (strcmp(name, "certhash") == 0) {
        if (parse_certhash(value, b, err) != 0)
            return CB_EINVAL;
        *fields |= CB_F_CERTHASH;
        return 0;
    }
    if (strcmp(name, "appid") == 0) {
        if (parse_appid(value, b->appid, err) != 0)
            return CB_EINVAL;
        *fields |= CB_F_APPID;
        return 0;
    }
    if (strcmp(name, "backend") == 0) {
        if (value[0] == '\0' || strcmp(value, "none") == 0)
            b->backend[0] = '\0';
        else if (parse_backend(value, b->backend, err) != 0)
            return CB_EINVAL;
        *fields |= CB_F_BACKEND;
        return 0;
    }
    if (strcmp(name, "proxyprotocol") == 0) {
        if (strcasecmp(value, "off") == 0)
            b->proxy = CB_PROXY_OFF;
        else if (strcasecmp(value, "v1") == 0)
            b->proxy = CB_PROXY_V1;
        else if (strcasecmp(value, "v2") == 0)
            b->proxy = CB_PROXY_V2;
        else
            return cb_err_set(err, CB_EINVAL, "proxyprotocol=%s: use off, v1 or v2", value);
        *fields |= CB_F_PROXY;
        return 0;
    }
    if (strcmp(name, "ccspath") == 0) {
        size_t n = strlen(value);
        if (value[0] != '/' || n > CB_PATH_MAX)
            return cb_err_set(err, CB_EINVAL,
                              "ccspath=%.200s: give an absolute folder path (at most %d bytes)",
                              value, CB_PATH_MAX);
        memcpy(b->ccspath, value, n + 1);
        while (n > 1 && b->ccspath[n - 1] == '/')
            b->ccspath[--n] = '\0';
        *fields |= CB_F_CCSPATH;
        return 0;
    }
    if (strcmp(name, "clientca") == 0) {
        /* Only the form here: that the file holds CA certificates is checked where files
         * are read (the command line, check, serve). */
        size_t n = strlen(value);
        if (n == 0 || strcmp(value, "none") == 0) {
            b->clientca[0] = '\0';
        } else if (value[0] != '/' || n > CB_PATH_MAX || value[n - 1] == '/') {
            return cb_err_set(err, CB_EINVAL,
                              "clientca=%.200s: give the absolute path of a PEM file of CA "
                              "certificates (at most %d bytes), or clientca=none",
                              value, CB_PATH_MAX);
        } else {
            memcpy(b->clientca, value, n + 1);
        }
        *fields |= CB_F_CLIENTCA;
        return 0;
    }
    for (size_t i = 0; i < N_FLAGS; i++) {
        if (strcmp(name, flag_names[i].name) != 0)
            continue;
        if (strcasecmp(value, "enable") == 0)
            b->flags |= flag_names[i].bit;
        else if (strcasecmp(value, "disable") == 0)
            b->flags &= ~flag_names[i].bit;
        else
            return cb_err_set(err, CB_EINVAL, "%s=%s: use %s=enable or %s=disable", name, value,
                              name, name);
        b->flags_set |= flag_names[i].bit;
        *fields |= CB_F_FLAGS;
        return 0;
    }
    return cb_err_set(err, CB_EINVAL,
                      "unknown option '%s'; binding options are certhash, appid, backend, "
                      "proxyprotocol, ccspath, clientca, disablehttp2, disabletls12, disabletls13, "
                      "disablelegacytls, clientcertnegotiation, enablesessionticket, "
                      "disableocspstapling, reject, acme",
                      name);
}

void cb_binding_merge(struct cb_binding *dst, const struct cb_binding *src, unsigned fields)
{
    if (fields & CB_F_CERTHASH) {
        memcpy(dst->certhash, src->certhash, sizeof(dst->certhash));
        memcpy(dst->certhash2, src->certhash2, sizeof(dst->certhash2));
    }
    if (fields & CB_F_APPID)
        memcpy(dst->appid, src->appid, sizeof(dst->appid));
    if (fields & CB_F_BACKEND)
        memcpy(dst->backend, src->backend, sizeof(dst->backend));
    if (fields & CB_F_PROXY)
        dst->proxy = src->proxy;
    if (fields & CB_F_CCSPATH)
        memcpy(dst->ccspath, src->ccspath, sizeof(dst->ccspath));
    if (fields & CB_F_CLIENTCA)
        memcpy(dst->clientca, src->clientca, sizeof(dst->clientca));
    if (fields & CB_F_FLAGS)
        dst->flags = (dst->flags & ~src->flags_set) | (src->flags & src->flags_set);
}

int cb_binding_acme_key_ok(const struct cb_binding_key *key, struct cb_err *err)
{
    char text[CB_KEY_TEXT_MAX];

    if (key->kind == CB_KEY_HOST || key->kind == CB_KEY_HOST_WILD)
        return 0;
    cb_key_format(key, text, sizeof(text));
    return cb_err_set(err, CB_EINVAL,
                      "%s: an ACME certificate needs a name; acme=enable is only for "
                      "hostnameport=NAME:PORT bindings",
                      text);
}

int cb_binding_validate(const struct cb_binding *b, struct cb_err *err)
{
    char key[CB_KEY_TEXT_MAX];

    cb_key_format(&b->key, key, sizeof(key));
    if ((b->flags & CB_OPT_DISABLETLS12) && (b->flags & CB_OPT_DISABLETLS13))
        return cb_err_set(err, CB_EINVAL,
                          "%s: disabletls12 and disabletls13 together leave no protocol; enable "
                          "one of them",
                          key);
    if ((b->flags & CB_OPT_ACME) && cb_binding_acme_key_ok(&b->key, err) != 0)
        return CB_EINVAL;
    if (b->certhash2[0] != '\0' && b->certhash[0] == '\0')
        return cb_err_set(err, CB_EINVAL, "%s has a second certificate without a first", key);
    /* serve obtains one certificate, of one key type, for a managed binding */
    if ((b->flags & CB_OPT_ACME) && b->certhash2[0] != '\0')
        return cb_err_set(err, CB_EINVAL,
                          "%s: acme=enable obtains one certificate; certhash=T1,T2 (two "
                          "certificates) is only for certificates you manage",
                          key);
    if (b->key.kind == CB_KEY_CCS) {
        if (b->ccspath[0] == '\0')
            return cb_err_set(err, CB_EINVAL,
                              "%s needs ccspath=/folder, the folder that holds NAME.pem files",
                              key);
        if (b->certhash[0] != '\0')
            return cb_err_set(err, CB_EINVAL,
                              "%s takes its certificates from ccspath; drop certhash=", key);
        return 0;
    }
    if (b->ccspath[0] != '\0')
        return cb_err_set(err, CB_EINVAL, "ccspath= is only for ccs= bindings; drop it from %s",
                          key);
    if (b->flags & CB_OPT_ACME)
        return 0; /* serve obtains its certificate; until then it may have none */
    if (b->certhash[0] == '\0')
        return cb_err_set(err, CB_EINVAL,
                          "%s needs certhash=THUMBPRINT; list certificates with 'certbind show "
                          "cert'",
                          key);
    return 0;
}
