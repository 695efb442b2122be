/*
 * clientca.c: client CA files, parsed into an X509_STORE whose every certificate is a
 * trust anchor (X509_V_FLAG_PARTIAL_CHAIN: an intermediate CA given alone verifies the
 * certificates it issued, as an administrator who names it expects) and the list of their
 * subject names.
 */
#include "tls/clientca.h"
#include "tls/cert.h"
#include "util/file.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct cb_tls_ca {
    X509_STORE *store;           /* the CA certificates, as trust anchors */
    STACK_OF(X509_NAME) * names; /* their subjects, for CertificateRequest */
    size_t n;                    /* CA certificates */
    unsigned char digest[32];    /* SHA-256 of the file */
};

void cb_tls_ca_free(struct cb_tls_ca *ca)
{
    if (ca == NULL)
        return;
    X509_STORE_free(ca->store);
    sk_X509_NAME_pop_free(ca->names, X509_NAME_free);
    free(ca);
}

/* Adds certificate block `nth` (data, borrowed) to ca when it is a CA; *is_ca says so. */
static int add_cert(struct cb_tls_ca *ca, const char *what, size_t nth, const unsigned char *data,
                    long len, bool *is_ca, struct cb_err *err)
{
    const unsigned char *p = data;
    X509 *x = d2i_X509(NULL, &p, len);
    X509_NAME *name = NULL;
    int ret = 0;

    *is_ca = false;
    if (x == NULL || p != data + len) {
        ret = cb_err_set(err, CB_EBADFILE,
                         "%s: certificate %zu is damaged; the file must hold PEM CA "
                         "certificates (-----BEGIN CERTIFICATE-----)",
                         what, nth);
        goto out_free;
    }
    if (X509_check_ca(x) == 0)
        goto out_free; /* not a CA: never a trust anchor */
    *is_ca = true;
    if (X509_STORE_add_cert(ca->store, x) != 1) {
        /* The same CA twice in a file is harmless: OpenSSL 3 accepts it, older ones say so. */
        ERR_clear_error();
    }
    if ((name = X509_NAME_dup(X509_get_subject_name(x))) == NULL ||
        sk_X509_NAME_push(ca->names, name) <= 0) {
        X509_NAME_free(name);
        ret = cb_err_set(err, CB_ENOMEM, "out of memory reading %s", what);
        goto out_free;
    }
    ca->n++;
out_free:
    X509_free(x);
    return ret;
}

int cb_tls_ca_parse(const char *what, const void *pem, size_t len, struct cb_tls_ca **out,
                    size_t *ignored, struct cb_err *err)
{
    struct cb_tls_ca *ca = calloc(1, sizeof(*ca));
    BIO *bio = NULL;
    size_t blocks = 0, certs = 0, others = 0;
    int ret;

    if (ca == NULL || len > INT32_MAX || (ca->store = X509_STORE_new()) == NULL ||
        (ca->names = sk_X509_NAME_new_null()) == NULL ||
        (bio = BIO_new_mem_buf(pem, (int)len)) == NULL ||
        EVP_Digest(pem, len, ca->digest, NULL, EVP_sha256(), NULL) != 1) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory reading %s", what);
        goto out_free;
    }
    X509_STORE_set_flags(ca->store, X509_V_FLAG_PARTIAL_CHAIN);
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;
        if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
            unsigned long e = ERR_peek_last_error();
            bool end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
            ERR_clear_error();
            if (end)
                break;
            ret = cb_err_set(err, CB_EBADFILE,
                             "%s: PEM block %zu is damaged; the file must hold PEM CA "
                             "certificates (-----BEGIN CERTIFICATE-----)",
                             what, blocks + 1);
            goto out_free;
        }
        blocks++;
        bool is_cert = strcmp(name, PEM_STRING_X509) == 0 ||
                       strcmp(name, PEM_STRING_X509_OLD) == 0 ||
                       strcmp(name, PEM_STRING_X509_TRUSTED) == 0;
        bool is_key = strstr(name, "PRIVATE KEY") != NULL;
        bool is_ca = false;
        ret = 0;
        if (is_key)
            ret = cb_err_set(err, CB_EBADFILE,
                             "%s holds a private key; a client CA file holds only the CA "
                             "certificates, which are public: remove the key from it",
                             what);
        else if (is_cert && strcmp(name, PEM_STRING_X509_TRUSTED) == 0)
            ret = cb_err_set(err, CB_EBADFILE,
                             "%s: certificate %zu is a TRUSTED CERTIFICATE; write it as a "
                             "plain PEM certificate (openssl x509 -in FILE -out FILE)",
                             what, certs + 1);
        else if (is_cert)
            ret = add_cert(ca, what, ++certs, data, dlen, &is_ca, err);
        else
            others++; /* e.g. parameters or a CRL: not used here */
        if (is_cert && !is_ca && ret == 0 && ignored != NULL)
            (*ignored)++;
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        if (ret != 0)
            goto out_free;
    }
    if (blocks == 0) {
        ret = cb_err_set(err, CB_EBADFILE,
                         "%s is not PEM; give a file of PEM CA certificates "
                         "(-----BEGIN CERTIFICATE-----), such as the CA's ca.crt",
                         what);
        goto out_free;
    }
    if (ca->n == 0) {
        ret = cb_err_set(err, CB_EBADFILE,
                         certs == 0 ? "%s holds no certificate; give a file of PEM CA "
                                      "certificates (-----BEGIN CERTIFICATE-----)"
                                    : "%s holds no CA certificate (none has basicConstraints "
                                      "CA:TRUE); give the CA that issues the client certificates, "
                                      "not a client certificate",
                         what);
        goto out_free;
    }
    (void)others;
    BIO_free(bio);
    *out = ca;
    return 0;
out_free:
    ERR_clear_error();
    BIO_free(bio);
    cb_tls_ca_free(ca);
    return ret;
}

int cb_tls_ca_load(const char *path, struct cb_tls_ca **out, size_t *ignored, struct cb_err *err)
{
    char what[CB_PATH_MAX + 16];
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int ret;

    snprintf(what, sizeof(what), "clientca=%s", path);
    if (stat(path, &st) != 0 && errno == ENOENT)
        return cb_err_set(err, CB_EINVAL,
                          "%s: no such file; give the path of a PEM file of the CA certificates "
                          "that issue client certificates",
                          what);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return cb_err_set(err, CB_EBADFILE,
                          "%s is a folder; give the PEM file of CA certificates itself", what);
    if ((ret = cb_read_file(path, CB_TLS_CA_FILE_MAX, &buf, &len, NULL)) != 0)
        return cb_err_set(err, ret,
                          ret == CB_EBADFILE
                              ? "%s is not a regular file of at most 4 MiB; give a PEM file of CA "
                                "certificates"
                              : "%s cannot be read (%s); make it readable by the service user "
                                "(chmod o+r, or chgrp)",
                          what, strerror(errno ? errno : EIO));
    ret = cb_tls_ca_parse(what, buf, len, out, ignored, err);
    free(buf);
    return ret;
}

size_t cb_tls_ca_count(const struct cb_tls_ca *ca)
{
    return ca->n;
}

const unsigned char *cb_tls_ca_digest(const struct cb_tls_ca *ca)
{
    return ca->digest;
}

/* SSL ex_data slot: the client certificate a verification refused (owned, up-ref'd), kept
 * for the log line: OpenSSL drops the peer's certificates when it refuses them. */
static int rejected_index = -1;

static void free_rejected(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    X509_free(ptr);
}

static int on_verify(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    X509 *leaf = X509_STORE_CTX_get0_cert(store);

    if (!ok && ssl != NULL && leaf != NULL && SSL_get_ex_data(ssl, rejected_index) == NULL &&
        X509_up_ref(leaf) == 1 && SSL_set_ex_data(ssl, rejected_index, leaf) != 1)
        X509_free(leaf);
    return ok;
}

void cb_tls_ca_rejected_cn(SSL *ssl, char *buf, size_t size)
{
    X509 *leaf = rejected_index >= 0 ? SSL_get_ex_data(ssl, rejected_index) : NULL;

    buf[0] = '\0';
    if (leaf == NULL || X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, buf,
                                                  size > INT32_MAX ? INT32_MAX : (int)size) < 0)
        buf[0] = '\0';
}

int cb_tls_ca_apply(SSL *ssl, const struct cb_tls_ca *ca)
{
    STACK_OF(X509_NAME) * names;

    if (rejected_index < 0 &&
        (rejected_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_rejected)) < 0)
        return CB_ETLS;
    names = SSL_dup_CA_list(ca->names);
    if (names == NULL || SSL_set1_verify_cert_store(ssl, ca->store) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        ERR_clear_error();
        return CB_ETLS;
    }
    SSL_set_client_CA_list(ssl, names); /* takes names */
    SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE,
                   on_verify);
    return 0;
}
