/*
 * A TLS-ALPN-01 self-check (RFC 8737): before serve tells the CA that a challenge is
 * ready, it asks its own workers for it the way the CA will.
 */
#ifndef CB_TLS_PROBE_H
#define CB_TLS_PROBE_H

#include <certbind/certbind.h>
#include <stdint.h>

/*
 * Connects to addr:port (a numeric address, e.g. "127.0.0.1"), offers only the ALPN
 * protocol acme-tls/1 with server name `name`, and returns 0 when the server selected
 * acme-tls/1 (it answered with the challenge certificate); CB_EFAILED otherwise, with
 * why in err. Blocking, bounded by timeout_ms: for the manager's threads only.
 */
int cb_tls_alpn_probe(const char *addr, uint16_t port, const char *name, int timeout_ms,
                      struct cb_err *err) CB_MUST_CHECK;

#endif
