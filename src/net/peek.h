/*
 * The server_name of a ClientHello, read from the bytes a client has sent so far
 * without taking them from the socket (recv with MSG_PEEK), so that a worker can
 * pass the connection whole to the worker that holds its certificate.
 *
 * Only a hint for choosing a worker: the handshake itself is OpenSSL's, which
 * parses the same ClientHello again and alone decides which certificate is served.
 * Anything this reader does not follow (a ClientHello over several records, SSLv2,
 * junk) is CB_PEEK_UNKNOWN, and the connection stays where it is.
 */
#ifndef CB_NET_PEEK_H
#define CB_NET_PEEK_H

#include <stddef.h>

enum cb_peek {
    CB_PEEK_MORE,    /* a TLS record has begun and is not whole yet */
    CB_PEEK_SNI,     /* a whole ClientHello with a host_name: *name, *name_len */
    CB_PEEK_NO_SNI,  /* a whole ClientHello without one */
    CB_PEEK_UNKNOWN, /* not a ClientHello this reader follows */
};

/* The largest prefix the reader can need: a record header and 2^14 bytes. */
#define CB_PEEK_MAX (5 + 16384)

/* How many bytes the first record needs in all, from the len bytes there are: 5 (a
 * record header) while fewer than 5 are there. What to wait for after CB_PEEK_MORE. */
size_t cb_peek_wanted(const unsigned char *buf, size_t len);

/*
 * Reads buf[0..len) (borrowed). On CB_PEEK_SNI, *name points into buf (not
 * NUL-terminated, not yet normalised) and *name_len is 1..255; otherwise neither is
 * written. Reads nothing outside buf.
 */
enum cb_peek cb_peek_sni(const unsigned char *buf, size_t len, const unsigned char **name,
                         size_t *name_len);

#endif
