/*
 * test_tls_tickets.c: session tickets under the store's keys (tls/ticket.h), with real
 * handshakes in memory (a client and a server joined by a BIO pair), TLS 1.3 and 1.2: a
 * ticket is issued under the newest key and names it; it resumes while its key is one of the
 * set, and one under an older key is replaced by a ticket under the newest; once its key is
 * gone it no longer resumes (a full handshake, not a failure); a set without keys issues no
 * ticket; the reference counts hold (ASan's leak check sees every set freed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/ticket.h"

static EVP_PKEY *pkey;
static X509 *cert;

static int setup_run(void **unused)
{
    (void)unused;
    pkey = EVP_EC_gen("P-256");
    cert = X509_new();
    if (pkey == NULL || cert == NULL)
        return -1;
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                               (const unsigned char *)"tickets.test", -1, -1, 0);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    X509_set_pubkey(cert, pkey);
    return X509_sign(cert, pkey, EVP_sha256()) > 0 ? 0 : -1;
}

static int teardown_run(void **unused)
{
    (void)unused;
    X509_free(cert);
    EVP_PKEY_free(pkey);
    return 0;
}

/* A set of keys named by their fill bytes, newest first (fills[0] is the newest). */
static struct cb_tls_tickets *keyset(const unsigned char *fills, size_t n)
{
    struct cb_ticket_keys k = {.n = n};
    for (size_t i = 0; i < n; i++) {
        memset(k.v[i].key, fills[i], CB_TICKET_KEY_LEN);
        k.v[i].id = 100 - (int64_t)i;
        k.v[i].created = 1700000000;
    }
    struct cb_tls_tickets *t = cb_tls_tickets_new(&k);
    assert_non_null(t);
    return t;
}

static SSL_CTX *server_ctx(int version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, pkey), 1);
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    assert_int_equal(SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"t", 1), 1);
    assert_int_equal(cb_tls_tickets_attach(ctx), 0);
    return ctx;
}

/*
 * One connection: handshake, then one byte from the server (the client reads TLS 1.3's
 * NewSessionTicket with it). Offers `offer` (may be NULL). Returns the client's session
 * (owned) and says whether it resumed.
 */
static SSL_SESSION *connect_once(SSL_CTX *sctx, int version, SSL_SESSION *offer, bool *resumed)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    SSL_CTX_set_min_proto_version(cctx, version);
    SSL_CTX_set_max_proto_version(cctx, version);
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    BIO *cb, *sb;
    assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
    SSL_set_bio(c, cb, cb);
    SSL_set_bio(s, sb, sb);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (offer != NULL)
        assert_int_equal(SSL_set_session(c, offer), 1);
    int rc = 0, rs = 0;
    for (int i = 0; i < 50 && (rc != 1 || rs != 1); i++) {
        if (rc != 1)
            rc = SSL_do_handshake(c);
        if (rs != 1)
            rs = SSL_do_handshake(s);
    }
    assert_int_equal(rc, 1);
    assert_int_equal(rs, 1);
    char byte = 'x';
    assert_int_equal(SSL_write(s, &byte, 1), 1);
    assert_int_equal(SSL_read(c, &byte, 1), 1);
    *resumed = SSL_session_reused(c) == 1;
    SSL_SESSION *sess = SSL_get1_session(c);
    /* A connection freed without a shutdown marks its session not resumable. */
    SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    return sess;
}

/* The first byte of the key name a session's ticket carries, or -1 when it has none. */
static int ticket_key(const SSL_SESSION *sess)
{
    const unsigned char *tick = NULL;
    size_t len = 0;
    SSL_SESSION_get0_ticket(sess, &tick, &len);
    return len >= CB_TICKET_KEY_NAME_LEN ? tick[0] : -1;
}

static void rotation_at(int version)
{
    static const unsigned char one[] = {1}, two[] = {2, 1}, four[] = {4, 3, 2};
    SSL_CTX *ctx = server_ctx(version);
    struct cb_tls_tickets *t1 = keyset(one, 1), *t2 = keyset(two, 2), *t4 = keyset(four, 3);
    bool resumed;

    cb_tls_tickets_use(ctx, t1);
    SSL_SESSION *s1 = connect_once(ctx, version, NULL, &resumed);
    assert_false(resumed);
    assert_int_equal(ticket_key(s1), 1); /* issued under the newest (only) key */

    /* Same keys: resumes. With TLS 1.3 the client is sent a fresh ticket (it uses each
     * once); with TLS 1.2 it keeps the one it has (test_tls12_newest_not_renewed). */
    SSL_SESSION *again = connect_once(ctx, version, s1, &resumed);
    assert_true(resumed);
    if (version == TLS1_3_VERSION) {
        const unsigned char *a, *b;
        size_t alen, blen;
        SSL_SESSION_get0_ticket(s1, &a, &alen);
        SSL_SESSION_get0_ticket(again, &b, &blen);
        assert_int_equal(ticket_key(again), 1);
        assert_true(alen != blen || memcmp(a, b, alen) != 0);
    }
    SSL_SESSION_free(again);

    /* One rotation: the ticket's key is the previous one; it resumes and the client is given
     * a ticket under the new key. */
    cb_tls_tickets_use(ctx, t2);
    SSL_SESSION *renewed = connect_once(ctx, version, s1, &resumed);
    assert_true(resumed);
    assert_int_equal(ticket_key(renewed), 2);
    SSL_SESSION_free(renewed);

    /* Three rotations: key 1 is gone: a full handshake (and a fresh ticket under key 4). */
    cb_tls_tickets_use(ctx, t4);
    SSL_SESSION *full = connect_once(ctx, version, s1, &resumed);
    assert_false(resumed);
    assert_int_equal(ticket_key(full), 4);
    SSL_SESSION_free(full);

    /* The context holds its own reference: the caller's may go first. */
    cb_tls_tickets_unref(t1);
    cb_tls_tickets_unref(t2);
    cb_tls_tickets_unref(t4);
    SSL_SESSION *last = connect_once(ctx, version, s1, &resumed);
    assert_false(resumed);
    SSL_SESSION_free(last);
    SSL_SESSION_free(s1);
    SSL_CTX_free(ctx); /* drops the context's reference to t4 */
}

static void test_rotation_tls13(void **unused)
{
    (void)unused;
    rotation_at(TLS1_3_VERSION);
}

static void test_rotation_tls12(void **unused)
{
    (void)unused;
    rotation_at(TLS1_2_VERSION);
}

/* TLS 1.2: a ticket under the newest key resumes without a new ticket (nothing to renew). */
static void test_tls12_newest_not_renewed(void **unused)
{
    static const unsigned char one[] = {7};
    SSL_CTX *ctx = server_ctx(TLS1_2_VERSION);
    struct cb_tls_tickets *t = keyset(one, 1);
    bool resumed;
    (void)unused;

    cb_tls_tickets_use(ctx, t);
    cb_tls_tickets_unref(t);
    SSL_SESSION *s1 = connect_once(ctx, TLS1_2_VERSION, NULL, &resumed);
    const unsigned char *a, *b;
    size_t alen, blen;
    SSL_SESSION_get0_ticket(s1, &a, &alen);
    SSL_SESSION *s2 = connect_once(ctx, TLS1_2_VERSION, s1, &resumed);
    assert_true(resumed);
    SSL_SESSION_get0_ticket(s2, &b, &blen);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen); /* the same ticket, kept */
    SSL_SESSION_free(s1);
    SSL_SESSION_free(s2);
    SSL_CTX_free(ctx);
}

static void test_no_keys_no_ticket(void **unused)
{
    (void)unused;
    for (int v = 0; v < 2; v++) {
        int version = v ? TLS1_3_VERSION : TLS1_2_VERSION;
        SSL_CTX *ctx = server_ctx(version);
        struct cb_ticket_keys none = {.n = 0};
        struct cb_tls_tickets *t = cb_tls_tickets_new(&none);
        bool resumed;
        assert_non_null(t);
        assert_int_equal(cb_tls_tickets_count(t), 0);
        assert_int_equal(cb_tls_tickets_generation(t), 0);
        cb_tls_tickets_use(ctx, t);
        cb_tls_tickets_unref(t);
        SSL *probe = SSL_new(ctx);
        assert_false(cb_tls_tickets_ready(probe)); /* what keeps a binding from asking */
        SSL_free(probe);
        SSL_SESSION *s = connect_once(ctx, version, NULL, &resumed);
        assert_int_equal(ticket_key(s), -1);
        SSL_SESSION_free(s);
        SSL_CTX_free(ctx);
    }
}

static void test_counts_and_generation(void **unused)
{
    static const unsigned char three[] = {9, 8, 7};
    struct cb_tls_tickets *t = keyset(three, 3);
    (void)unused;

    assert_int_equal(cb_tls_tickets_count(t), 3);
    assert_int_equal(cb_tls_tickets_generation(t), 100);
    assert_ptr_equal(cb_tls_tickets_ref(t), t);
    cb_tls_tickets_unref(t);
    cb_tls_tickets_unref(t);
    cb_tls_tickets_unref(NULL);
    assert_null(cb_tls_tickets_ref(NULL));
    assert_int_equal(cb_tls_tickets_count(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation_tls13),           cmocka_unit_test(test_rotation_tls12),
        cmocka_unit_test(test_tls12_newest_not_renewed), cmocka_unit_test(test_no_keys_no_ticket),
        cmocka_unit_test(test_counts_and_generation),
    };
    return cmocka_run_group_tests(tests, setup_run, teardown_run);
}
