/* probe.c: a TLS-ALPN-01 handshake against serve itself (see probe.h). */
#include "tls/probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* A connected, blocking socket whose reads and writes time out after timeout_ms; or a
 * negative CB_E* code with err filled. */
static int connect_to(const char *addr, uint16_t port, int timeout_ms, struct cb_err *err)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;

    if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        len = sizeof(*in);
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        len = sizeof(*in6);
    } else {
        return cb_err_set(err, CB_EINVAL, "not a numeric address: %s", addr);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cb_err_set(err, CB_EIO, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS)
        goto out_errno;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (poll(&p, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 ||
        soerr != 0) {
        errno = soerr ? soerr : ETIMEDOUT;
        goto out_errno;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
        goto out_errno;
    return fd;
out_errno:;
    int e = errno;
    close(fd);
    return cb_err_set(err, CB_EIO, "cannot connect to %s:%u: %s", addr, port, strerror(e));
}

/* Whether the peer's certificate is the one in expect_pem. */
static bool served_is(SSL *ssl, const char *expect_pem)
{
    BIO *bio = BIO_new_mem_buf(expect_pem, -1);
    X509 *want = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    X509 *got = SSL_get1_peer_certificate(ssl);
    bool same = want != NULL && got != NULL && X509_cmp(want, got) == 0;

    X509_free(got);
    X509_free(want);
    BIO_free(bio);
    return same;
}

int cb_tls_alpn_probe(const char *addr, uint16_t port, const char *name, const char *expect_pem,
                      int timeout_ms, struct cb_err *err)
{
    static const unsigned char acme_tls[] = "\x0a"
                                            "acme-tls/1";
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int ret, fd;

    if ((fd = connect_to(addr, port, timeout_ms, err)) < 0)
        return fd;
    if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL || (ssl = SSL_new(ctx)) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    /* Nothing is verified: the challenge certificate is self-signed, and all this asks is
     * whether our own workers answer acme-tls/1 for the name. */
    SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    if (SSL_set_tlsext_host_name(ssl, name) != 1 ||
        SSL_set_alpn_protos(ssl, acme_tls, sizeof(acme_tls) - 1) != 0 || SSL_set_fd(ssl, fd) != 1) {
        ret = cb_err_set(err, CB_ETLS, "cannot set up the self-check for %s", name);
        goto out_free;
    }
    if (SSL_connect(ssl) != 1) {
        ret = cb_err_set(err, CB_EFAILED,
                         "the self-check of the TLS-ALPN-01 answer for %s "
                         "failed: the handshake was refused",
                         name);
        goto out_free;
    }
    SSL_get0_alpn_selected(ssl, &sel, &sel_len);
    if (sel_len != sizeof(acme_tls) - 2 || memcmp(sel, acme_tls + 1, sel_len) != 0) {
        ret = cb_err_set(err, CB_EFAILED,
                         "the self-check of the TLS-ALPN-01 answer for %s failed: acme-tls/1 was "
                         "not selected",
                         name);
        goto out_free;
    }
    if (expect_pem != NULL && !served_is(ssl, expect_pem)) {
        ret = cb_err_set(err, CB_EFAILED,
                         "the self-check of the TLS-ALPN-01 answer for %s failed: another "
                         "challenge certificate was served (an older challenge for the name)",
                         name);
        goto out_free;
    }
    ret = 0;
out_free:
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return ret;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int cb_tls_alpn_probe_steady(const char *addr, uint16_t port, const char *name,
                             const char *expect_pem, long window_ms, const _Atomic bool *stop,
                             struct cb_err *err)
{
    const int64_t deadline = now_ms() + window_ms;
    char why[sizeof(err->msg)] = "no answer";
    int oks = 0;

    for (int64_t left; (left = deadline - now_ms()) > 0;) {
        if (stop != NULL && atomic_load(stop))
            return cb_err_set(err, CB_EFAILED, "stopped while asking %s:%u for %s", addr, port,
                              name);
        struct cb_err one = {0};
        if (cb_tls_alpn_probe(addr, port, name, expect_pem, left < 2000 ? (int)left : 2000, &one) ==
            0) {
            if (++oks >= CB_TLS_PROBE_OKS)
                return 0;
            continue;
        }
        oks = 0;
        snprintf(why, sizeof(why), "%s", one.msg);
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000L}; /* a worker reloads */
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return cb_err_set(err, CB_EFAILED,
                      "serve at %s:%u did not answer TLS-ALPN-01 for %s within %ld ms (%.500s)",
                      addr, port, name, window_ms, why);
}
