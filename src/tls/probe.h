/*
 * A TLS-ALPN-01 self-check (RFC 8737): before serve tells the CA that a challenge is
 * ready, it asks its own workers for it the way the CA will.
 */
#ifndef CB_TLS_PROBE_H
#define CB_TLS_PROBE_H

#include <certbind/certbind.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Connects to addr:port (a numeric address, e.g. "127.0.0.1"), offers only the ALPN
 * protocol acme-tls/1 with server name `name`, and returns 0 when the server selected
 * acme-tls/1 and answered with the certificate in expect_pem (borrowed PEM; NULL: any);
 * CB_EFAILED otherwise, with why in err. Blocking, bounded by timeout_ms: for the
 * manager's threads only.
 */
int cb_tls_alpn_probe(const char *addr, uint16_t port, const char *name, const char *expect_pem,
                      int timeout_ms, struct cb_err *err) CB_MUST_CHECK;

/*
 * Asks as cb_tls_alpn_probe until CB_TLS_PROBE_OKS answers in a row say that every worker
 * serves the challenge (the workers pick a store change up within a second), as the CA
 * will ask; within window_ms in all (a monotonic deadline), and no longer than until
 * *stop (may be NULL) is set. CB_EFAILED when that does not happen, saying where it asked.
 */
#define CB_TLS_PROBE_OKS 8
int cb_tls_alpn_probe_steady(const char *addr, uint16_t port, const char *name,
                             const char *expect_pem, long window_ms, const _Atomic bool *stop,
                             struct cb_err *err) CB_MUST_CHECK;

#endif
