/* hostport.c: HOST:PORT and a host alone, by the rules in hostport.h. */
#include "binding/hostport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static int refuse(enum cb_hostport_fault why, enum cb_hostport_fault *fault, struct cb_err *err,
                  const char *fmt, ...) CB_PRINTF(4, 5);

static int refuse(enum cb_hostport_fault why, enum cb_hostport_fault *fault, struct cb_err *err,
                  const char *fmt, ...)
{
    va_list ap;

    if (fault != NULL)
        *fault = why;
    va_start(ap, fmt);
    cb_err_setv(err, CB_EINVAL, fmt, ap);
    va_end(ap);
    return CB_EINVAL;
}

/* host: len bytes, not NUL-terminated; bracketed: it was written in brackets. */
static int parse_host(const char *host, size_t len, bool bracketed, unsigned flags,
                      struct cb_hostport *out, enum cb_hostport_fault *fault, struct cb_err *err)
{
    char text[CB_NAME_MAX + 2];
    struct cb_err nerr;

    if (len == 0)
        return refuse(bracketed ? CB_HOSTPORT_BRACKETS : CB_HOSTPORT_NO_HOST, fault, err,
                      bracketed ? "the brackets hold no address; write an IPv6 address in "
                                  "them, as in [2001:db8::5]:443"
                                : "empty host name or address before the port");
    if (bracketed && memchr(host, ':', len) == NULL)
        return refuse(CB_HOSTPORT_BRACKETS, fault, err,
                      "only IPv6 addresses go in brackets; write an IPv4 address or a name "
                      "without them");
    if (!bracketed && memchr(host, ':', len) != NULL)
        return refuse(CB_HOSTPORT_UNBRACKETED, fault, err,
                      "put an IPv6 address in brackets, as in [2001:db8::5]:443");
    if (len < sizeof(text) && memchr(host, '\0', len) == NULL) {
        memcpy(text, host, len);
        text[len] = '\0';
        if (cb_addr_parse(text, &out->family, out->addr) == 0) {
            out->kind = out->family == AF_INET ? CB_HOST_IPV4 : CB_HOST_IPV6;
            inet_ntop(out->family, out->addr, out->host, sizeof(out->host));
            return 0;
        }
    }
    if (bracketed || !(flags & CB_HOSTPORT_NAME))
        return refuse(CB_HOSTPORT_NOT_ADDRESS, fault, err, "'%.*s' is not an IPv4 or IPv6 address",
                      (int)(len > 80 ? 80 : len), host);
    unsigned nflags = CB_NAME_IDN | (flags & CB_HOSTPORT_WILDCARD ? CB_NAME_WILDCARD : 0);
    if (cb_name_normalize(host, len, nflags, out->host, &nerr) != 0)
        return refuse(CB_HOSTPORT_BAD_NAME, fault, err, "%s", nerr.msg);
    out->family = 0;
    memset(out->addr, 0, sizeof(out->addr));
    out->kind = CB_HOST_NAME;
    /* "203.0.113.5." is that address: its trailing dot is a name's. */
    if (cb_addr_parse(out->host, &out->family, out->addr) == 0)
        out->kind = CB_HOST_IPV4;
    return 0;
}

int cb_host_parse(const char *text, unsigned flags, struct cb_hostport *out,
                  enum cb_hostport_fault *fault, struct cb_err *err)
{
    struct cb_hostport hp = {0};
    size_t len = strlen(text);
    bool bracketed = len > 0 && text[0] == '[';
    int ret;

    if (bracketed && text[len - 1] != ']')
        return refuse(CB_HOSTPORT_BRACKETS, fault, err,
                      "an address in brackets needs its ']', as in [2001:db8::5]");
    if (bracketed)
        ret = parse_host(text + 1, len - 2, true, flags, &hp, fault, err);
    else if (memchr(text, ':', len) != NULL) /* a host alone: an IPv6 address needs none */
        ret = parse_host(text, len, true, flags, &hp, fault, err);
    else
        ret = parse_host(text, len, false, flags, &hp, fault, err);
    if (ret == 0)
        *out = hp;
    return ret;
}

int cb_hostport_parse(const char *text, unsigned flags, struct cb_hostport *out,
                      enum cb_hostport_fault *fault, struct cb_err *err)
{
    struct cb_hostport hp = {0};
    const char *host = text, *colon;
    size_t hlen;
    bool bracketed = text[0] == '[';

    if (bracketed) {
        const char *close = strchr(text, ']');
        if (close == NULL)
            return refuse(CB_HOSTPORT_BRACKETS, fault, err,
                          "an address in brackets needs its ']' and then ':PORT', as in "
                          "[2001:db8::5]:443");
        if (close[1] == '\0')
            return refuse(CB_HOSTPORT_NO_PORT, fault, err, "missing port; write %s:PORT",
                          flags & CB_HOSTPORT_NAME ? "HOST" : "ADDRESS");
        if (close[1] != ':')
            return refuse(CB_HOSTPORT_BRACKETS, fault, err,
                          "write ':PORT' right after the ']', as in [2001:db8::5]:443");
        host = text + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        if ((colon = strrchr(text, ':')) == NULL)
            return refuse(CB_HOSTPORT_NO_PORT, fault, err, "missing port; write %s:PORT",
                          flags & CB_HOSTPORT_NAME ? "HOST" : "ADDRESS");
        hlen = (size_t)(colon - text);
    }
    if (cb_port_parse(colon + 1, strlen(colon + 1), &hp.port) != 0)
        return refuse(CB_HOSTPORT_BAD_PORT, fault, err, "port must be a number from 1 to 65535");
    int ret = parse_host(host, hlen, bracketed, flags, &hp, fault, err);
    if (ret == 0)
        *out = hp;
    return ret;
}

size_t cb_hostport_format(const struct cb_hostport *hp, char *buf, size_t size)
{
    int n = snprintf(buf, size, hp->kind == CB_HOST_IPV6 ? "[%s]:%u" : "%s:%u", hp->host,
                     (unsigned)hp->port);
    return n < 0 ? 0 : (size_t)n;
}

socklen_t cb_hostport_sockaddr(const struct cb_hostport *hp, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (hp->kind == CB_HOST_IPV4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, hp->addr, 4);
        s4->sin_port = htons(hp->port);
        return sizeof(*s4);
    }
    if (hp->kind == CB_HOST_IPV6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, hp->addr, 16);
        s6->sin6_port = htons(hp->port);
        return sizeof(*s6);
    }
    return 0;
}
