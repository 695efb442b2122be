/*
 * key.c: binding keys (ipport=, hostnameport=, ccs=) and their canonical text.
 */
#include "binding/binding.h"
#include "binding/hostport.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int cb_port_parse(const char *text, size_t len, uint16_t *port)
{
    unsigned v = 0;

    if (len == 0 || len > 5)
        return CB_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return CB_EINVAL;
        v = v * 10 + (unsigned)(text[i] - '0');
    }
    if (v < 1 || v > 65535)
        return CB_EINVAL;
    *port = (uint16_t)v;
    return 0;
}

int cb_addr_parse(const char *text, uint8_t *family, uint8_t addr[16])
{
    uint8_t buf[16];

    if (strchr(text, ':') == NULL) {
        /* inet_pton accepts only the dotted-quad form: no octal, no short forms. */
        if (inet_pton(AF_INET, text, buf) != 1)
            return CB_EINVAL;
        memset(addr, 0, 16);
        memcpy(addr, buf, 4);
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, buf) != 1)
        return CB_EINVAL;
    memset(addr, 0, 16);
    if (memcmp(buf, v4mapped_prefix, 12) == 0) {
        memcpy(addr, buf + 12, 4);
        *family = AF_INET;
    } else {
        memcpy(addr, buf, 16);
        *family = AF_INET6;
    }
    return 0;
}

static bool addr_is_any(uint8_t family, const uint8_t addr[16])
{
    static const uint8_t zero[16];
    return memcmp(addr, zero, family == AF_INET ? 4 : 16) == 0;
}

static int parse_ipport(const char *value, struct cb_binding_key *out, struct cb_err *err)
{
    struct cb_hostport hp;
    enum cb_hostport_fault fault;
    struct cb_err perr;

    if (cb_hostport_parse(value, 0, &hp, &fault, &perr) != 0) {
        if (fault == CB_HOSTPORT_NO_PORT)
            return cb_err_set(err, CB_EINVAL,
                              "ipport=%s: missing port; write ADDRESS:PORT, as in "
                              "ipport=0.0.0.0:443 or ipport=[::]:443",
                              value);
        return cb_err_set(err, CB_EINVAL, "ipport=%s: %s", value, perr.msg);
    }
    out->port = hp.port;
    out->family = hp.family;
    memcpy(out->addr, hp.addr, sizeof(out->addr));
    /* "[::ffff:0.0.0.0]" maps to the IPv4 wildcard; "[::]" stays the IPv6-only one. */
    out->kind = addr_is_any(out->family, out->addr) ? CB_KEY_ANY_IP : CB_KEY_IP;
    return 0;
}

static int parse_hostnameport(const char *value, struct cb_binding_key *out, struct cb_err *err)
{
    struct cb_hostport hp;
    enum cb_hostport_fault fault;
    struct cb_err perr;
    int ret = cb_hostport_parse(value, CB_HOSTPORT_NAME | CB_HOSTPORT_WILDCARD, &hp, &fault, &perr);

    if ((ret != 0 && fault == CB_HOSTPORT_UNBRACKETED) || (ret == 0 && hp.kind == CB_HOST_IPV6))
        return cb_err_set(err, CB_EINVAL,
                          "hostnameport=%s: a host name cannot contain ':'; bind an address "
                          "with ipport= instead",
                          value);
    if (ret != 0 && fault == CB_HOSTPORT_NO_PORT)
        return cb_err_set(err, CB_EINVAL,
                          "hostnameport=%s: missing port; write NAME:PORT, as in "
                          "hostnameport=www.example.com:443",
                          value);
    if (ret != 0)
        return cb_err_set(err, CB_EINVAL, "hostnameport=%s: %s", value, perr.msg);
    if (hp.kind == CB_HOST_IPV4)
        return cb_err_set(err, CB_EINVAL,
                          "hostnameport=%s: this is an IP address; bind it with ipport=%s", value,
                          value);
    out->port = hp.port;
    memcpy(out->host, hp.host, sizeof(out->host));
    out->kind = out->host[0] == '*' ? CB_KEY_HOST_WILD : CB_KEY_HOST;
    return 0;
}

int cb_key_parse(const char *name, const char *value, struct cb_binding_key *out,
                 struct cb_err *err)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(name, "ipport") == 0)
        return parse_ipport(value, out, err);
    if (strcmp(name, "hostnameport") == 0)
        return parse_hostnameport(value, out, err);
    if (strcmp(name, "ccs") == 0) {
        if (cb_port_parse(value, strlen(value), &out->port) != 0)
            return cb_err_set(err, CB_EINVAL, "ccs=%s: give the port alone, as in ccs=443", value);
        out->kind = CB_KEY_CCS;
        return 0;
    }
    return cb_err_set(err, CB_EINVAL,
                      "'%s' is not a binding key; use ipport=ADDR:PORT, hostnameport=NAME:PORT "
                      "or ccs=PORT",
                      name);
}

int cb_key_parse_word(const char *word, struct cb_binding_key *out, struct cb_err *err)
{
    char name[16];
    const char *eq = strchr(word, '=');

    if (eq == NULL || (size_t)(eq - word) >= sizeof(name))
        return cb_err_set(err, CB_EINVAL,
                          "'%s' is not a binding key; use ipport=ADDR:PORT, "
                          "hostnameport=NAME:PORT or ccs=PORT",
                          word);
    memcpy(name, word, (size_t)(eq - word));
    name[eq - word] = '\0';
    return cb_key_parse(name, eq + 1, out, err);
}

size_t cb_key_format(const struct cb_binding_key *key, char *buf, size_t size)
{
    char addr[INET6_ADDRSTRLEN];
    int n;

    switch (key->kind) {
    case CB_KEY_IP:
    case CB_KEY_ANY_IP:
        inet_ntop(key->family, key->addr, addr, sizeof(addr));
        if (key->family == AF_INET6)
            n = snprintf(buf, size, "ipport=[%s]:%u", addr, key->port);
        else
            n = snprintf(buf, size, "ipport=%s:%u", addr, key->port);
        break;
    case CB_KEY_HOST:
    case CB_KEY_HOST_WILD: {
        /* Built by hand: snapshots format every key, and snprintf was a seventh of that. */
        char tmp[sizeof("hostnameport=") + CB_NAME_MAX + sizeof(":65535")];
        size_t hl = strnlen(key->host, CB_NAME_MAX);
        char *p = tmp;
        memcpy(p, "hostnameport=", 13);
        p += 13;
        memcpy(p, key->host, hl);
        p += hl;
        *p++ = ':';
        char digits[5];
        int nd = 0;
        unsigned port = key->port;
        do {
            digits[nd++] = (char)('0' + port % 10);
            port /= 10;
        } while (port != 0);
        while (nd > 0)
            *p++ = digits[--nd];
        n = (int)(p - tmp);
        if (size > 0) {
            size_t copy = (size_t)n < size - 1 ? (size_t)n : size - 1;
            memcpy(buf, tmp, copy);
            buf[copy] = '\0';
        }
        break;
    }
    case CB_KEY_CCS:
        n = snprintf(buf, size, "ccs=%u", key->port);
        break;
    default:
        n = snprintf(buf, size, "invalid");
        break;
    }
    return n < 0 ? 0 : (size_t)n;
}

int cb_thumbprint_normalize(const char *in, char out[CB_THUMB_LEN + 1], struct cb_err *err)
{
    size_t n = 0;

    for (const char *p = in; *p != '\0'; p++) {
        char c = *p;
        if (c == ' ' || c == ':')
            continue;
        if (c >= 'a' && c <= 'f')
            c = (char)(c - 32);
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')) || n == CB_THUMB_LEN)
            return cb_err_set(err, CB_EINVAL,
                              "'%s' is not a SHA-1 thumbprint; give 40 hex digits as printed by "
                              "'certbind show cert'",
                              in);
        out[n++] = c;
    }
    if (n != CB_THUMB_LEN)
        return cb_err_set(err, CB_EINVAL,
                          "'%s' is not a SHA-1 thumbprint (%zu hex digits, need 40); copy it "
                          "from 'certbind show cert'",
                          in, n);
    out[n] = '\0';
    return 0;
}
