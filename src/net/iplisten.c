/* iplisten.c: the IP listen list's entries (serve --iplisten). */
#include "net/iplisten.h"
#include "binding/hostport.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

int cb_iplisten_add(struct cb_iplisten *l, const char *text, struct cb_err *err)
{
    struct cb_hostport hp;
    struct cb_err why = {0};

    if (cb_host_parse(text, 0, &hp, NULL, &why) != 0)
        return cb_err_set(err, CB_EINVAL,
                          "--iplisten %.100s: %s; give an IPv4 or IPv6 address such as 10.0.0.1 "
                          "or 2001:db8::1",
                          text, why.msg);
    for (size_t i = 0; i < l->n; i++)
        if (l->a[i].family == hp.family && memcmp(l->a[i].addr, hp.addr, 16) == 0)
            return 0;
    if (l->n == CB_IPLISTEN_MAX)
        return cb_err_set(err, CB_EINVAL, "--iplisten %.100s: at most %d addresses", text,
                          CB_IPLISTEN_MAX);
    l->a[l->n].family = hp.family;
    memcpy(l->a[l->n].addr, hp.addr, 16);
    l->n++;
    return 0;
}

size_t cb_iplisten_format(const struct cb_iplisten *l, char *buf, size_t size)
{
    size_t len = 0;

    if (size > 0)
        buf[0] = '\0';
    if (l->n == 0)
        return (size_t)snprintf(buf, size, "all");
    for (size_t i = 0; i < l->n; i++) {
        char text[INET6_ADDRSTRLEN];
        inet_ntop(l->a[i].family, l->a[i].addr, text, sizeof(text));
        len += (size_t)snprintf(len < size ? buf + len : NULL, len < size ? size - len : 0, "%s%s",
                                i ? "," : "", text);
    }
    return len;
}
