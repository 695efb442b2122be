/*
 * fuzz_tls_accept.c: arbitrary bytes from a client into the server's TLS accept
 * path: OpenSSL's record and ClientHello parsing, then certbind's choice of
 * certificate (cb_hello_choose, the function the server's ClientHello callback
 * calls) against a real snapshot with real certificates, then the binding's
 * toggles (cb_tls_apply_binding), through memory BIOs.
 *
 * Input: byte 0 picks the local address the client reached (see `locals`); the
 * rest is what the client sends. The snapshot (built once):
 *   ipport=127.0.0.2:443                    certificate A
 *   hostnameport=www.fuzz.test:443          certificate A
 *   hostnameport=*.fuzz.test:443            certificate B
 *   hostnameport=broken.fuzz.test:443       a certificate that cannot be used
 *   hostnameport=reject.fuzz.test:443       certificate A, reject=enable
 *   ipport=0.0.0.0:443                      certificate B
 *   hostnameport=old.fuzz.test:8443         certificate B, disabletls13=enable, disablehttp2=enable
 *   hostnameport=dual.fuzz.test:443         certificates A (ECDSA) and C (RSA): certhash=A,C
 * Invariants, abort() on violation:
 *  - a connection whose choice was refused (no binding, rejected, unusable, bad
 *    server_name) has no certificate: never another binding's;
 *  - a connection that chose has exactly its binding's certificate (for the pair, one of
 *    its two), and the binding is the one cb_resolve names for the same name and address;
 *  - a second ClientHello never changes the choice.
 */
#include "binding/snapshot.h"
#include "fuzz_common.h"
#include "tls/cert.h"
#include "tls/ctx.h"
#include "tls/hello.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define N_BINDINGS 8
#define N_CERTS 3 /* A and B (ECDSA), C (RSA) */

static const char *const binding_keys[N_BINDINGS] = {
    "ipport=127.0.0.2:443",
    "hostnameport=www.fuzz.test:443",
    "hostnameport=*.fuzz.test:443",
    "hostnameport=broken.fuzz.test:443",
    "hostnameport=reject.fuzz.test:443",
    "ipport=0.0.0.0:443",
    "hostnameport=old.fuzz.test:8443",
    "hostnameport=dual.fuzz.test:443",
};
static const int binding_cert[N_BINDINGS] = {0, 0, 1, -1, 0, 1, 1, 0};        /* -1: broken */
static const int binding_cert2[N_BINDINGS] = {-1, -1, -1, -1, -1, -1, -1, 2}; /* -1: none */

static const struct {
    const char *addr;
    uint16_t port;
} locals[] = {
    {"127.0.0.1", 443}, {"127.0.0.2", 443}, {"::1", 443}, {"127.0.0.1", 8443}, {"10.0.0.1", 80},
};

struct world {
    struct cb_snapshot *snap;
    struct cb_tls_cache *cache;
    struct cb_tls_entry bind_tls[N_BINDINGS];
    struct cb_cow
        tls_table; /* bind_tls as cb_hello_choose takes it (the references stay in bind_tls) */
    SSL_CTX *default_ctx;
    X509 *leaf[N_CERTS];
};

/* What the callback chose for the connection being fuzzed. */
struct attempt {
    struct sockaddr_storage local;
    int calls;
    enum cb_hello_outcome first;
    uint32_t binding;
};

static struct world W;
static int attempt_index = -1;

static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    struct attempt *a = SSL_get_ex_data(ssl, attempt_index);
    struct cb_hello_choice ch;
    (void)arg;

    enum cb_hello_outcome o =
        cb_hello_choose(ssl, W.snap, &W.tls_table, NULL, NULL, &a->local, false, &ch);
    if (a->calls++ > 0) {
        /* After a HelloRetryRequest the server keeps its first choice; the same
         * bytes must lead to the same one. */
        FUZZ_REQUIRE(a->first != CB_HELLO_CHOSEN || o != CB_HELLO_CHOSEN ||
                         ch.binding == a->binding,
                     ch.sni);
        if (a->first != CB_HELLO_CHOSEN) {
            *alert = SSL_AD_HANDSHAKE_FAILURE;
            return SSL_CLIENT_HELLO_ERROR;
        }
        return SSL_CLIENT_HELLO_SUCCESS;
    }
    a->first = o;
    if (o != CB_HELLO_CHOSEN) {
        *alert = ch.alert;
        return SSL_CLIENT_HELLO_ERROR;
    }
    a->binding = ch.binding;
    /* The resolver, asked directly, names the same binding. */
    struct cb_resolve_query q = {.sni = ch.sni[0] ? ch.sni : NULL};
    if (a->local.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)&a->local;
        q.family = AF_INET;
        memcpy(q.addr, &s->sin_addr, 4);
        q.port = ntohs(s->sin_port);
    } else {
        const struct sockaddr_in6 *s = (const void *)&a->local;
        q.family = AF_INET6;
        memcpy(q.addr, &s->sin6_addr, 16);
        q.port = ntohs(s->sin6_port);
    }
    struct cb_resolution r;
    cb_resolve(W.snap, &q, &r);
    FUZZ_REQUIRE(r.rule != CB_RULE_NONE && r.binding == ch.binding, ch.sni);
    FUZZ_REQUIRE(cb_tls_apply_binding(ssl, ch.tls, ch.b) == 0, ch.b->key_text);
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* ---- set-up: two self-signed certificates in a private temporary folder ---- */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_tls_accept: set-up failed: %s\n", what);
    abort();
}

static void write_pair(const char *dir, const char *stem, const char *cn, bool rsa, char *cert_path,
                       char *key_path)
{
    EVP_PKEY *key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (key == NULL || x == NULL)
        die("key generation");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 90L * 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "DNS:www.fuzz.test,DNS:*.fuzz.test");
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1 || X509_sign(x, key, EVP_sha256()) <= 0)
        die("certificate");
    X509_EXTENSION_free(ext);
    snprintf(cert_path, 512, "%s/%s.pem", dir, stem);
    snprintf(key_path, 512, "%s/%s.key", dir, stem);
    FILE *f = fopen(cert_path, "w");
    if (f == NULL || PEM_write_X509(f, x) != 1 || fclose(f) != 0)
        die(cert_path);
    f = fopen(key_path, "w");
    if (f == NULL || fchmod(fileno(f), 0600) != 0 ||
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1 || fclose(f) != 0)
        die(key_path);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void thumbprint_of(const char *cert_path, const char *key_path, char *thumb, X509 **leaf)
{
    struct cb_cert_bundle *b = NULL;
    struct cb_err err = {0};
    if (cb_cert_bundle_load(cert_path, key_path, NULL, &b, &err) != 0 ||
        cb_cert_bundle_thumbprint(b, thumb) != 0)
        die(err.msg);
    cb_cert_bundle_free(b);
    FILE *f = fopen(cert_path, "r");
    if (f == NULL || (*leaf = PEM_read_X509(f, NULL, NULL, NULL)) == NULL)
        die("reading the certificate back");
    fclose(f);
}

static void setup(void)
{
    char dir[] = "/tmp/fuzz_tls_accept.XXXXXX";
    char cert[N_CERTS][512], key[N_CERTS][512], thumb[N_CERTS][CB_THUMB_LEN + 1];
    struct cb_err err = {0};

    if (mkdtemp(dir) == NULL)
        die("mkdtemp");
    write_pair(dir, "a", "a.fuzz.test", false, cert[0], key[0]);
    write_pair(dir, "b", "b.fuzz.test", false, cert[1], key[1]);
    write_pair(dir, "c", "c.fuzz.test", true, cert[2], key[2]);
    for (int i = 0; i < N_CERTS; i++)
        thumbprint_of(cert[i], key[i], thumb[i], &W.leaf[i]);

    struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
    if (sb == NULL)
        die("builder");
    for (int i = 0; i < N_BINDINGS; i++) {
        struct cb_binding b;
        cb_binding_init(&b);
        if (cb_key_parse_word(binding_keys[i], &b.key, &err) != 0)
            die(err.msg);
        memcpy(b.certhash, thumb[binding_cert[i] < 0 ? 0 : binding_cert[i]], sizeof(b.certhash));
        if (binding_cert2[i] >= 0)
            memcpy(b.certhash2, thumb[binding_cert2[i]], sizeof(b.certhash2));
        if (strstr(binding_keys[i], "reject.") != NULL)
            b.flags |= CB_OPT_REJECT;
        if (strstr(binding_keys[i], "old.") != NULL)
            b.flags |= CB_OPT_DISABLETLS13 | CB_OPT_DISABLEHTTP2;
        if (cb_snapshot_builder_add(sb, &b, NULL, &err) != 0)
            die(err.msg);
    }
    if (cb_snapshot_builder_finish(sb, 1, &W.snap, &err) != 0)
        die(err.msg);

    if ((W.cache = cb_tls_cache_new()) == NULL)
        die("cache");
    for (uint32_t i = 0; i < N_BINDINGS; i++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(W.snap, i);
        int which = -1, second = -1;
        for (int k = 0; k < N_BINDINGS; k++)
            if (strcmp(binding_keys[k], b->key_text) == 0)
                which = binding_cert[k], second = binding_cert2[k];
        if (which < 0) {
            cb_tls_entry_set_error(&W.bind_tls[i], "the key cannot be read");
            continue;
        }
        bool reused;
        if (second >= 0) {
            char pair[2 * CB_THUMB_LEN + 2];
            snprintf(pair, sizeof(pair), "%s,%s", thumb[which], thumb[second]);
            cb_tls_cache_get_pair(W.cache, pair, cert[which], key[which], cert[second], key[second],
                                  NULL, true, &W.bind_tls[i], &reused);
        } else {
            cb_tls_cache_get(W.cache, thumb[which], cert[which], key[which], NULL, true,
                             &W.bind_tls[i], &reused);
        }
        const char *why = cb_tls_entry_load(&W.bind_tls[i], NULL);
        if (why != NULL)
            die(why);
    }
    static const struct cb_cow_ops entry_ops = {sizeof(struct cb_tls_entry), NULL, NULL};
    if (cb_cow_init(&W.tls_table, &entry_ops, N_BINDINGS) != 0)
        die("out of memory");
    for (uint32_t i = 0; i < N_BINDINGS; i++)
        memcpy(cb_cow_mut(&W.tls_table, i), &W.bind_tls[i], sizeof(W.bind_tls[i]));
    if ((W.default_ctx = cb_tls_default_ctx(on_client_hello)) == NULL)
        die("default context");
    attempt_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    for (int i = 0; i < N_CERTS; i++) {
        unlink(cert[i]);
        unlink(key[i]);
    }
    rmdir(dir);
}

static void local_addr(uint8_t pick, struct sockaddr_storage *ss)
{
    size_t i = pick % (sizeof(locals) / sizeof(locals[0]));
    memset(ss, 0, sizeof(*ss));
    if (strchr(locals[i].addr, ':') != NULL) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(locals[i].port);
        inet_pton(AF_INET6, locals[i].addr, &s->sin6_addr);
    } else {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        s->sin_family = AF_INET;
        s->sin_port = htons(locals[i].port);
        inet_pton(AF_INET, locals[i].addr, &s->sin_addr);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    struct attempt a = {0};

    if (!ready) {
        setup();
        ready = true;
    }
    if (size < 1)
        return 0;
    local_addr(data[0], &a.local);

    SSL *ssl = SSL_new(W.default_ctx);
    BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
    if (ssl == NULL || in == NULL || out == NULL)
        die("out of memory");
    BIO_set_mem_eof_return(in, -1); /* empty: "would block", as a socket with nothing yet */
    SSL_set_bio(ssl, in, out);
    SSL_set_accept_state(ssl);
    SSL_set_ex_data(ssl, attempt_index, &a);
    BIO_write(in, data + 1, (int)(size - 1));
    for (int round = 0; round < 4; round++) {
        int rc = SSL_do_handshake(ssl);
        if (rc == 1 || SSL_get_error(ssl, rc) != SSL_ERROR_WANT_READ)
            break;
        (void)BIO_reset(out); /* what the server sent goes nowhere */
        if (BIO_ctrl_pending(in) == 0)
            break;
    }

    /* Never a wrong certificate. */
    X509 *served = SSL_get_certificate(ssl);
    if (a.calls == 0 || a.first != CB_HELLO_CHOSEN) {
        FUZZ_REQUIRE(served == NULL, "a certificate without a chosen binding");
    } else {
        const struct cb_snap_binding *b = cb_snapshot_binding(W.snap, a.binding);
        int which = -1, second = -1;
        for (int k = 0; k < N_BINDINGS; k++)
            if (strcmp(binding_keys[k], b->key_text) == 0)
                which = binding_cert[k], second = binding_cert2[k];
        /* the pair: whichever of its two the client's algorithms chose */
        FUZZ_REQUIRE(which >= 0 && served != NULL &&
                         (X509_cmp(served, W.leaf[which]) == 0 ||
                          (second >= 0 && X509_cmp(served, W.leaf[second]) == 0)),
                     b->key_text);
    }
    SSL_free(ssl);
    ERR_clear_error();
    return 0;
}
