/*
 * fuzz_peek.c: the ClientHello peek (cb_peek_sni) that picks a worker before the
 * handshake, against OpenSSL's own reading of the same bytes.
 *
 * Input: what a client sends first. Invariants, abort() on violation:
 *  - the reader stays inside the input (ASan), and a name it returns lies inside it
 *    and is 1..255 bytes long;
 *  - a prefix of an input it called whole is CB_PEEK_MORE or the same answer is never
 *    contradicted: every shorter prefix is MORE (it never decides on bytes it has not
 *    seen);
 *  - where OpenSSL's server reaches its ClientHello callback and the server_name
 *    extension it was sent is well formed with a host_name first (what the server's
 *    own callback accepts), the peek names the same host, or did not follow the
 *    ClientHello at all (UNKNOWN or MORE) — never another name, never "no name".
 */
#include "fuzz_common.h"
#include "net/peek.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/tls1.h>

static SSL_CTX *ctx;

struct seen {
    int called;   /* the ClientHello callback ran */
    int has_host; /* its server_name was well formed, host_name first */
    unsigned char host[256];
    size_t host_len;
};

static int on_hello(SSL *ssl, int *alert, void *arg)
{
    struct seen *s = SSL_get_app_data(ssl);
    const unsigned char *p;
    size_t len;
    (void)alert;
    (void)arg;
    s->called = 1;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1)
        return 0;
    /* The strict reading of tls/hello.c: list length exact, host_name first. */
    if (len < 5 || (size_t)(p[0] << 8 | p[1]) != len - 2 || p[2] != 0)
        return 0;
    size_t n = (size_t)(p[3] << 8 | p[4]);
    if (n == 0 || n > 255 || n > len - 5)
        return 0;
    s->has_host = 1;
    memcpy(s->host, p + 5, n);
    s->host_len = n;
    return 0; /* stop here: the callback is all this target needs */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *name = NULL;
    size_t name_len = 0;

    enum cb_peek r = cb_peek_sni(data, size, &name, &name_len);
    if (r == CB_PEEK_SNI)
        FUZZ_REQUIRE(name >= data && name_len >= 1 && name_len <= 255 &&
                         name + name_len <= data + size,
                     "name outside the input");
    else
        FUZZ_REQUIRE(name == NULL, "a name written without CB_PEEK_SNI");
    if (r == CB_PEEK_SNI || r == CB_PEEK_NO_SNI) {
        /* Decided: the record ends at 5 + its length; any shorter prefix is MORE. */
        size_t whole = 5 + ((size_t)data[3] << 8 | data[4]);
        FUZZ_REQUIRE(whole <= size, "decided on bytes it did not have");
        const unsigned char *n2;
        size_t l2;
        FUZZ_REQUIRE(cb_peek_sni(data, whole - 1, &n2, &l2) == CB_PEEK_MORE,
                     "a prefix of a whole ClientHello is not MORE");
        enum cb_peek again = cb_peek_sni(data, whole, &n2, &l2);
        FUZZ_REQUIRE(again == r, "the answer depends on bytes after the record");
    }

    if (ctx == NULL) {
        ctx = SSL_CTX_new(TLS_server_method());
        if (ctx == NULL)
            abort();
        SSL_CTX_set_client_hello_cb(ctx, on_hello, NULL);
    }
    struct seen s = {0};
    SSL *ssl = SSL_new(ctx);
    BIO *rd = BIO_new_mem_buf(data, (int)size), *wr = BIO_new(BIO_s_mem());
    if (ssl == NULL || rd == NULL || wr == NULL)
        abort();
    BIO_set_mem_eof_return(rd, 0);
    SSL_set_bio(ssl, rd, wr);
    SSL_set_app_data(ssl, &s);
    SSL_accept(ssl);
    SSL_free(ssl);
    ERR_clear_error();

    if (s.called && s.has_host) {
        FUZZ_REQUIRE(r != CB_PEEK_NO_SNI, "OpenSSL saw a host name, the peek none");
        if (r == CB_PEEK_SNI)
            FUZZ_REQUIRE(name_len == s.host_len && memcmp(name, s.host, name_len) == 0,
                         "the peek names another host than OpenSSL");
    }
    return 0;
}
