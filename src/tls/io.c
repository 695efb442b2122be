/* io.c: the TLS connection calls net/server.c makes, with OpenSSL behind them. */
#include "tls/io.h"
#include "tls/clientca.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static int owner_index = -1; /* SSL ex_data slot for the owner */

int cb_tls_alert_handshake_failure(void)
{
    return SSL_AD_HANDSHAKE_FAILURE;
}

int cb_tls_alert_internal_error(void)
{
    return SSL_AD_INTERNAL_ERROR;
}

SSL *cb_tls_conn_new(SSL_CTX *ctx, int fd, void *owner)
{
    if (owner_index < 0 && (owner_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL)) < 0)
        return NULL;
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1 || SSL_set_ex_data(ssl, owner_index, owner) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

void cb_tls_conn_free(SSL *ssl)
{
    SSL_free(ssl);
}

void *cb_tls_conn_owner(SSL *ssl)
{
    return SSL_get_ex_data(ssl, owner_index);
}

/* The outcome of a failed call: would block, or failed. */
static enum cb_tls_io outcome(SSL *ssl, int rc)
{
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return CB_TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return CB_TLS_IO_WANT_WRITE;
    case SSL_ERROR_WANT_CLIENT_HELLO_CB:
        return CB_TLS_IO_PAUSED;
    default:
        return CB_TLS_IO_ERROR;
    }
}

enum cb_tls_io cb_tls_handshake(SSL *ssl)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(ssl);
    if (rc == 1)
        return CB_TLS_IO_OK;
    enum cb_tls_io o = outcome(ssl, rc);
    if (o == CB_TLS_IO_ERROR && ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_CALLBACK_FAILED) {
        ERR_clear_error();
        return CB_TLS_IO_REFUSED;
    }
    return o;
}

enum cb_tls_io cb_tls_read(SSL *ssl, void *buf, size_t size, size_t *n)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read(ssl, buf, size > INT32_MAX ? INT32_MAX : (int)size);
    if (rc > 0) {
        *n = (size_t)rc;
        return CB_TLS_IO_OK;
    }
    *n = 0;
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return CB_TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return CB_TLS_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return CB_TLS_IO_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (errno == 0) /* EOF without close_notify: a half-close */
            return CB_TLS_IO_CLOSED;
        return CB_TLS_IO_ERROR;
    default:
        return CB_TLS_IO_ERROR;
    }
}

enum cb_tls_io cb_tls_write(SSL *ssl, const void *buf, size_t len, size_t *n)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (rc > 0) {
        *n = (size_t)rc;
        return CB_TLS_IO_OK;
    }
    *n = 0;
    return outcome(ssl, rc);
}

void cb_tls_shutdown(SSL *ssl)
{
    SSL_shutdown(ssl);
    ERR_clear_error();
}

const char *cb_tls_io_reason(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0) {
        snprintf(buf, size, "%s", errno ? strerror(errno) : "connection closed by client");
    } else {
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, size, "%s", r ? r : "TLS error");
    }
    ERR_clear_error();
    return buf;
}

const char *cb_tls_handshake_reason(SSL *ssl, char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    long verify = SSL_get_verify_result(ssl);

    if (!(SSL_get_verify_mode(ssl) & SSL_VERIFY_FAIL_IF_NO_PEER_CERT))
        return cb_tls_io_reason(buf, size);
    if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
        (ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE ||
         ERR_GET_REASON(e) == SSL_R_NO_CERTIFICATES_RETURNED)) {
        ERR_clear_error();
        snprintf(buf, size, "client certificate required (clientca): the client sent none");
        return buf;
    }
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
        verify != X509_V_OK) {
        char cn[256];
        cb_tls_ca_rejected_cn(ssl, cn, sizeof(cn));
        ERR_clear_error();
        snprintf(buf, size, "client certificate%s%s%s rejected (clientca): %s",
                 cn[0] ? " CN=\"" : "", cn, cn[0] ? "\"" : "",
                 X509_verify_cert_error_string(verify));
        return buf;
    }
    return cb_tls_io_reason(buf, size);
}

bool cb_tls_alpn_is_http(SSL *ssl)
{
    const unsigned char *alpn = NULL;
    unsigned len = 0;

    SSL_get0_alpn_selected(ssl, &alpn, &len);
    return (len == 2 && memcmp(alpn, "h2", 2) == 0) ||
           (len == 8 && memcmp(alpn, "http/1.1", 8) == 0);
}

void cb_tls_proxy_fields(SSL *ssl, struct cb_proxy_info *pi, char *cn, size_t cn_size,
                         unsigned char **der)
{
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    X509 *peer = SSL_get0_peer_certificate(ssl);

    *der = NULL;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    pi->alpn = alpn;
    pi->alpn_len = alpn_len;
    pi->version = SSL_get_version(ssl);
    pi->cipher = SSL_get_cipher_name(ssl);
    if (peer == NULL)
        return;
    pi->client_cert = true;
    pi->client_cert_conn = !SSL_session_reused(ssl); /* resumed: it was sent on an earlier one */
    /* Verified only where a client CA required it (clientca=FILE: the handshake fails
     * otherwise) and the chain passed; a binding that just asks for a certificate accepts
     * any, verified against nothing: the backend judges. */
    pi->client_verified = (SSL_get_verify_mode(ssl) & SSL_VERIFY_FAIL_IF_NO_PEER_CERT) &&
                          SSL_get_verify_result(ssl) == X509_V_OK;
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, (int)cn_size) >
        0)
        pi->client_cn = cn;
    int dl = i2d_X509(peer, der);
    if (dl > 0) {
        pi->client_der = *der;
        pi->client_der_len = (size_t)dl;
    }
}

bool cb_tls_resumed(SSL *ssl)
{
    return SSL_session_reused(ssl) == 1;
}

void cb_tls_free_der(unsigned char *der)
{
    OPENSSL_free(der);
}

void cb_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

int cb_tls_random(void *buf, size_t n)
{
    return n <= INT32_MAX && RAND_bytes(buf, (int)n) == 1 ? 0 : CB_ETLS;
}

const char *cb_tls_library(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}
