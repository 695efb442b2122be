/*
 * HOST:PORT, the one parser: binding keys (ipport=, hostnameport=), backend=, serve
 * --admin, the backends a worker connects to, and resolve's ip=. The rules:
 *  - an IPv4 address is a dotted quad (inet_pton: no octal, no short forms);
 *  - an IPv6 address goes in brackets ("[2001:db8::5]:443"), and only an IPv6 address
 *    does; an IPv4-mapped IPv6 address ("[::ffff:203.0.113.5]") is the IPv4 address;
 *  - a host name, where the caller accepts one, is normalised by cb_name_normalize
 *    (lower case, one trailing dot removed, A-labels); a name that is then a dotted quad
 *    is that IPv4 address;
 *  - the port is 1 to 65535 in decimal digits (leading zeros allowed), after the last ':'.
 * Pure: no I/O (names are not resolved here), no allocation.
 */
#ifndef CB_BINDING_HOSTPORT_H
#define CB_BINDING_HOSTPORT_H

#include "binding/binding.h"

#include <sys/socket.h>

enum cb_host_kind { CB_HOST_IPV4 = 1, CB_HOST_IPV6, CB_HOST_NAME };

struct cb_hostport {
    enum cb_host_kind kind;
    uint8_t family;             /* AF_INET or AF_INET6 for the addresses, 0 for a name */
    uint8_t addr[16];           /* IPv4 in the first 4 bytes */
    char host[CB_NAME_MAX + 1]; /* the name, normalised; or the address as inet_ntop writes it */
    uint16_t port;              /* 0 from cb_host_parse */
};

/* Why a text was refused, for callers that word a case their own way. */
enum cb_hostport_fault {
    CB_HOSTPORT_NO_PORT = 1, /* no ":PORT" */
    CB_HOSTPORT_BAD_PORT,    /* a port that is not a number from 1 to 65535 */
    CB_HOSTPORT_NO_HOST,     /* nothing before ":PORT" */
    CB_HOSTPORT_UNBRACKETED, /* ':' in the host: an IPv6 address needs brackets */
    CB_HOSTPORT_BRACKETS,    /* '[' without ']', or brackets around what is not IPv6 */
    CB_HOSTPORT_NOT_ADDRESS, /* not an IPv4 or IPv6 address (and no name is accepted) */
    CB_HOSTPORT_BAD_NAME,    /* a host name against the name rules (the message says which) */
};

#define CB_HOSTPORT_NAME 1u     /* accept host names as well as addresses */
#define CB_HOSTPORT_WILDCARD 2u /* with CB_HOSTPORT_NAME: a leading "*." label too */

/*
 * Parses text (borrowed) as HOST:PORT into *out (written only on success). On failure,
 * CB_EINVAL with *fault (may be NULL) set and err saying what is wrong in a sentence
 * without the text itself, for the caller to put after its own "what=TEXT: ".
 */
int cb_hostport_parse(const char *text, unsigned flags, struct cb_hostport *out,
                      enum cb_hostport_fault *fault, struct cb_err *err) CB_MUST_CHECK;

/* Parses a host alone: "203.0.113.5", "2001:db8::5" or "[2001:db8::5]", or (with
 * CB_HOSTPORT_NAME) a name. out->port is 0. As cb_hostport_parse otherwise. */
int cb_host_parse(const char *text, unsigned flags, struct cb_hostport *out,
                  enum cb_hostport_fault *fault, struct cb_err *err) CB_MUST_CHECK;

/* The canonical text, "203.0.113.5:443", "[2001:db8::5]:443" or "name:443"; returns
 * the length it has (as snprintf). */
size_t cb_hostport_format(const struct cb_hostport *hp, char *buf, size_t size);

/* An address's socket address (sockaddr_in or sockaddr_in6, with the port); returns its
 * length, 0 for a name. */
socklen_t cb_hostport_sockaddr(const struct cb_hostport *hp, struct sockaddr_storage *ss);

#endif
