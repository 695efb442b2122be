/*
 * The ACME client (RFC 8555): account registration and the whole order for a
 * certificate, over HTTPS with libcurl. Blocking: run it in the process that owns
 * outbound I/O (the daemon's manager), never on a serving loop. One client is used by
 * one thread at a time.
 *
 * Nonces come from every answer's Replay-Nonce (a HEAD to newNonce when there is none)
 * and a badNonce refusal is retried with the fresh one, up to 5 times. Every answer is
 * bounded to 1 MiB; only https is spoken and redirects are not followed. Private keys
 * and the EAB HMAC key never appear in a message.
 */
#ifndef CB_ACME_CLIENT_H
#define CB_ACME_CLIENT_H

#include "acme/parse.h"
#include "tls/acme_crypto.h"

struct cb_acme_client_config {
    const char *directory_url; /* https */
    const char *cafile;        /* PEM trust for the CA's API, or NULL: system roots */
    const char *email;         /* contact, or NULL */
    bool agree_tos;
    const char *eab_kid, *eab_hmac_b64url; /* or NULL */
    long timeout_s;                        /* per HTTP request (0: 30) */
    const volatile int *abort; /* non-NULL and set: stop at the next step with CB_EFAILED */
};

struct cb_acme_client;

/* A client for cfg (copied: the strings need not outlive the call; abort must) that
 * signs with account_key (borrowed, outlives the client). Nothing is sent yet. Returns
 * owned *out, freed with cb_acme_client_free(). CB_EINVAL for a directory URL that is
 * not https or a cafile that cannot be read. */
int cb_acme_client_new(const struct cb_acme_client_config *cfg,
                       const struct cb_acme_key *account_key, struct cb_acme_client **out,
                       struct cb_err *err) CB_MUST_CHECK;
void cb_acme_client_free(struct cb_acme_client *c);

/*
 * Fetches the directory, then newAccount (with contact, termsOfServiceAgreed, and EAB
 * when configured); an existing account for the key is found the same way. A directory
 * with terms of service and !agree_tos: CB_EINVAL naming the terms URL and agreetos=yes;
 * a CA that requires EAB without it configured: CB_EINVAL. The CA's refusal: CB_EFAILED
 * with its problem in *prob (may be NULL; prob->type "" when there was none). Copies the
 * account URL (the JWS kid) into account_url[size].
 */
int cb_acme_account(struct cb_acme_client *c, char *account_url, size_t size,
                    struct cb_acme_problem *prob, struct cb_err *err) CB_MUST_CHECK;

struct cb_acme_solver {
    /* Make the challenge answerable (TLS-ALPN-01: publish the challenge certificate;
     * DNS-01: run the hook's add); return 0 when done. identifier is the DNS name
     * without "*."; all strings are borrowed for the call. */
    int (*present)(void *ctx, const char *type, const char *identifier, const char *token,
                   const char *key_auth, struct cb_err *err);
    /* Undo present(); called once for every challenge present() accepted, whatever
     * happens after. */
    void (*cleanup)(void *ctx, const char *type, const char *identifier, const char *token,
                    const char *key_auth);
    void *ctx;
};

struct cb_acme_result {
    char *chain_pem; /* owned: the issued certificate and its chain */
    size_t chain_len;
    int64_t retry_after;            /* seconds since the epoch from Retry-After on a rateLimited/503
                                       answer, else 0 */
    struct cb_acme_problem problem; /* the CA's problem document on failure */
    bool has_problem;
    /* Additions: */
    char order_url[512];           /* the order's URL once created ("" before) */
    char failed_step[32];          /* "directory", "account", "newOrder", "authorization",
                                      "challenge", "finalize", "certificate"; "" on success */
    int64_t not_before, not_after; /* of the issued leaf */
};

/* Frees the chain and zeroes *r; an all-zero result is fine. */
void cb_acme_result_clear(struct cb_acme_result *r);

/*
 * The whole order for names[0..n) (borrowed, 1 to CB_ACME_MAX_NAMES DNS names, "*."
 * allowed) with a certificate for cert_key (borrowed): registers the account first
 * when cb_acme_account() was not called. newOrder, then each authorization: a pending
 * one is answered by "tls-alpn-01" unless the name is a wildcard, prefer_dns is set or
 * TLS-ALPN-01 is not offered, then by "dns-01": solver->present(), POST {} to the
 * challenge, the authorization polled (Retry-After honoured, 90 s at most) until valid
 * or invalid. solver->cleanup() runs for every presented challenge whatever happens.
 * Then finalize with a CSR of cert_key, the order polled until valid, and the chain
 * downloaded (application/pem-certificate-chain) and checked against cert_key.
 * *res must be zeroed (or cleared) before; on success it owns the chain. Any failure:
 * CB_EFAILED (CB_EINVAL for bad arguments) with the step in res->failed_step, the CA's
 * problem in res->problem and a sentence in err.
 */
int cb_acme_obtain(struct cb_acme_client *c, const char *const *names, size_t n,
                   const struct cb_acme_key *cert_key, bool prefer_dns,
                   const struct cb_acme_solver *solver, struct cb_acme_result *res,
                   struct cb_err *err) CB_MUST_CHECK;

/* ACME Renewal Information: when the directory offers renewalInfo, the CA's suggested
 * window for the first certificate in pem (borrowed). CB_ENOENT when not offered;
 * CB_EBADFILE for a certificate without an AKI; CB_EFAILED when the CA fails. */
int cb_acme_renewal_window(struct cb_acme_client *c, const char *pem, struct cb_acme_renewal *out,
                           struct cb_err *err) CB_MUST_CHECK;

/* Additions: the directory as fetched (fetching it first when needed). */
int cb_acme_client_directory(struct cb_acme_client *c, struct cb_acme_directory *out,
                             struct cb_err *err) CB_MUST_CHECK;

/* Additions: calls on_answer(ctx, url, status, body, len) after each answer the CA
 * sends (bodies only: they carry no secret), for tests and debugging; NULL turns it
 * off. body is borrowed for the call. */
void cb_acme_client_trace(struct cb_acme_client *c,
                          void (*on_answer)(void *ctx, const char *url, long status,
                                            const char *body, size_t len),
                          void *ctx);

#endif
