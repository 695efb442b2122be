/*
 * The IP listen list (`serve --iplisten ADDR`, HTTP.sys's `netsh http add iplisten`): when
 * it is not empty, the ports of wildcard, SNI and central store bindings listen on these
 * addresses only, instead of every local address; IP bindings on other addresses still
 * listen on their own. "0.0.0.0" stands for every IPv4 address and "::" for every IPv6
 * address. It changes where sockets are opened, never which binding answers a connection
 * (design section 2). Node-local: a serve flag, never in the store.
 */
#ifndef CB_NET_IPLISTEN_H
#define CB_NET_IPLISTEN_H

#include <certbind/certbind.h>

#include <stddef.h>
#include <stdint.h>

#define CB_IPLISTEN_MAX 64

struct cb_iplisten {
    size_t n;
    struct {
        uint8_t family; /* AF_INET or AF_INET6 (a v4-mapped address is AF_INET) */
        uint8_t addr[16];
    } a[CB_IPLISTEN_MAX];
};

/* Adds the address literal text ("10.0.0.1", "2001:db8::1", "[2001:db8::1]") to l; the
 * same address twice is kept once. CB_EINVAL (a sentence naming text) when it is not an
 * IPv4 or IPv6 address, or when the list is full. */
int cb_iplisten_add(struct cb_iplisten *l, const char *text, struct cb_err *err) CB_MUST_CHECK;

/* "10.0.0.1,2001:db8::1", or "all" for an empty list, in buf (truncated to size); returns
 * the length it needs (as snprintf). */
size_t cb_iplisten_format(const struct cb_iplisten *l, char *buf, size_t size);

#endif
