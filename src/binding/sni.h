/*
 * The server_name a client sends in its ClientHello (RFC 6066 section 3), read by one
 * rule wherever it is read: by the handshake (tls/hello.c, in OpenSSL's ClientHello
 * callback) and by the peek that picks a worker before it (net/peek.c).
 *
 * The extension is a list that holds exactly one entry, of type host_name, filling the
 * list, of 1 to 255 bytes: what OpenSSL itself accepts (RFC 6066 allows one name per
 * type, and host_name is the only type); anything else is malformed. The name is then a
 * host name as bindings.md section 1 has it: compared in lower case, one trailing dot
 * removed, at most 253 bytes, and A-labels: on the wire a name is ASCII, so a byte
 * above 0x7f is refused rather than converted (cb_name_normalize without CB_NAME_IDN),
 * as is a wildcard.
 */
#ifndef CB_BINDING_SNI_H
#define CB_BINDING_SNI_H

#include "binding/binding.h"

#include <stddef.h>

/* The host_name in the body of a server_name extension (ext, len bytes, borrowed): on
 * success *name points into ext and *name_len is 1..255 (not NUL-terminated, not yet
 * normalised). CB_EINVAL when the body is malformed; *name and *name_len are then
 * untouched. Reads nothing outside ext. */
int cb_sni_find(const unsigned char *ext, size_t len, const unsigned char **name,
                size_t *name_len) CB_MUST_CHECK;

/* A host_name's bytes (name, len) as the resolver compares it, into out. CB_EINVAL when
 * it is not a host name. No allocation. */
int cb_sni_normalize(const unsigned char *name, size_t len,
                     char out[CB_NAME_MAX + 1]) CB_MUST_CHECK;

/* cb_sni_find, then cb_sni_normalize. */
int cb_sni_parse(const unsigned char *ext, size_t len, char out[CB_NAME_MAX + 1]) CB_MUST_CHECK;

#endif
