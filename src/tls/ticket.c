/*
 * ticket.c: session tickets under the store's keys (tls/ticket.h), through OpenSSL 3's
 * SSL_CTX_set_tlsext_ticket_key_evp_cb: AES-256-CBC with HMAC-SHA256, as OpenSSL's own
 * ticket keys, a key's 80 bytes being its name, its HMAC key and its AES key.
 */
#include "tls/ticket.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <stdlib.h>
#include <string.h>

#define CB_TICKET_HMAC_OFF CB_TICKET_KEY_NAME_LEN
#define CB_TICKET_AES_OFF (CB_TICKET_KEY_NAME_LEN + 32)

struct cb_tls_tickets {
    int refs;
    struct cb_ticket_keys keys; /* newest first */
};

static int tickets_index = -1;

struct cb_tls_tickets *cb_tls_tickets_new(const struct cb_ticket_keys *k)
{
    struct cb_tls_tickets *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->refs = 1;
    t->keys = *k;
    return t;
}

struct cb_tls_tickets *cb_tls_tickets_ref(struct cb_tls_tickets *t)
{
    if (t != NULL)
        t->refs++;
    return t;
}

void cb_tls_tickets_unref(struct cb_tls_tickets *t)
{
    if (t == NULL || --t->refs > 0)
        return;
    cb_ticket_keys_clear(&t->keys);
    free(t);
}

size_t cb_tls_tickets_count(const struct cb_tls_tickets *t)
{
    return t != NULL ? t->keys.n : 0;
}

int64_t cb_tls_tickets_generation(const struct cb_tls_tickets *t)
{
    return t != NULL && t->keys.n > 0 ? t->keys.v[0].id : 0;
}

/* The context's reference goes with the context. */
static void on_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    cb_tls_tickets_unref(ptr);
}

/* Sets the HMAC key of hctx (HMAC-SHA256) from key k. */
static int set_hmac(EVP_MAC_CTX *hctx, const struct cb_ticket_key *k)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)(k->key + CB_TICKET_HMAC_OFF),
                                          32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/*
 * OpenSSL's ticket callback. enc: a new ticket, under the newest key (1; 0 when there is no
 * key: none is issued). Else the ticket names its key: 1 decrypts under the newest, 2 under
 * an older one or with TLS 1.3 (and asks for a new ticket), 0 an unknown name (a full
 * handshake), -1 error.
 */
static int on_ticket_key(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    const struct cb_tls_tickets *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tickets_index);
    const struct cb_ticket_key *k;

    if (t == NULL || t->keys.n == 0)
        return 0;
    if (enc) {
        k = &t->keys.v[0];
        if (RAND_bytes(iv, 16) != 1)
            return -1;
        memcpy(key_name, k->key, CB_TICKET_KEY_NAME_LEN);
        if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->key + CB_TICKET_AES_OFF, iv) !=
                1 ||
            set_hmac(hctx, k) != 0)
            return -1;
        return 1;
    }
    for (size_t i = 0; i < t->keys.n; i++) {
        k = &t->keys.v[i];
        if (memcmp(key_name, k->key, CB_TICKET_KEY_NAME_LEN) != 0)
            continue;
        if (set_hmac(hctx, k) != 0 ||
            EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->key + CB_TICKET_AES_OFF, iv) != 1)
            return -1;
        /* TLS 1.3 clients use a ticket once (RFC 8446 appendix C.4): the server sends a new
         * one after every resumption, which OpenSSL does only when asked (as nginx asks). */
        return i == 0 && SSL_version(ssl) != TLS1_3_VERSION ? 1 : 2;
    }
    return 0;
}

int cb_tls_tickets_attach(SSL_CTX *ctx)
{
    if (tickets_index < 0)
        tickets_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, on_ctx_free);
    if (tickets_index < 0 || SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key) != 1) {
        ERR_clear_error();
        return CB_ETLS;
    }
    return 0;
}

void cb_tls_tickets_use(SSL_CTX *ctx, struct cb_tls_tickets *t)
{
    struct cb_tls_tickets *old = SSL_CTX_get_ex_data(ctx, tickets_index);

    if (old == t)
        return;
    SSL_CTX_set_ex_data(ctx, tickets_index, cb_tls_tickets_ref(t));
    cb_tls_tickets_unref(old);
}

bool cb_tls_tickets_ready(SSL *ssl)
{
    const struct cb_tls_tickets *t =
        tickets_index < 0 ? NULL : SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tickets_index);
    return t != NULL && t->keys.n > 0;
}
