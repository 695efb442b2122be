/*
 * The manager's one outbound OCSP exchange (RFC 6960 appendix A.1): an HTTP POST of
 * the DER request with Content-Type application/ocsp-request. Plain http only (a
 * responder's URL is http; the answer is signed, not the channel), no redirects, bounded
 * in time and size. Blocking: run on libuv's thread pool, never on a loop.
 */
#ifndef CB_DAEMON_OCSP_HTTP_H
#define CB_DAEMON_OCSP_HTTP_H

#include <certbind/certbind.h>

#include <stddef.h>

#define CB_OCSP_CONNECT_TIMEOUT_S 5
#define CB_OCSP_TOTAL_TIMEOUT_S 10

/* Once, on the main thread, before any cb_ocsp_http_post (libcurl's global state). */
int cb_ocsp_http_init(void) CB_MUST_CHECK;
void cb_ocsp_http_cleanup(void);

/*
 * POSTs req (len bytes, borrowed) to url and returns the body of a 200 answer in an owned
 * buffer *body (free()) of *body_len bytes (at most max). Gives up when *abort becomes
 * non-zero (abort may be NULL). Errors: CB_EFAILED with a message naming the URL and
 * what went wrong (refused, timed out, HTTP status, too large); CB_ENOMEM.
 */
int cb_ocsp_http_post(const char *url, const unsigned char *req, size_t len, size_t max,
                      volatile int *abort, unsigned char **body, size_t *body_len,
                      struct cb_err *err) CB_MUST_CHECK;

#endif
