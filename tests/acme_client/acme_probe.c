/*
 * acme_probe.c: a test-only driver of the ACME client (tests/acme_client). Runs
 * cb_acme_account, cb_acme_obtain or cb_acme_renewal_window against a CA and answers
 * challenges through pebble-challtestsrv's management API (the real certbind answers
 * TLS-ALPN-01 itself). Prints what happened as key=value lines on stdout and exits
 * with certbind's exit status for the result (0, 1, or 2 for malformed input).
 *
 *   cb_acme_probe --directory URL [--cafile F] [--email E] [--agree-tos]
 *                 [--eab-kid K --eab-hmac H] [--account-key F] [--keytype ec|rsa]
 *                 [--challsrv http://127.0.0.1:PORT] [--prefer-dns] [--no-solve]
 *                 [--out CHAIN] [--cert PEM] [--timeout S] [--dump DIR] MODE [NAME...]
 *   MODE: account | obtain | ari
 */
#include "acme/client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct probe {
    const char *challsrv; /* management API base URL, or NULL */
    const char *dump;     /* folder for the CA's answers (--dump), or NULL */
    int n_dumped;
    bool no_solve;
    int presented, cleaned;
};

static size_t discard(char *d, size_t s, size_t n, void *u)
{
    (void)d;
    (void)u;
    return s * n;
}

/* POSTs a JSON body to the challenge test server's management API. */
static int challsrv_post(const struct probe *p, const char *path, const char *body)
{
    char url[512];
    long status = 0;
    CURL *h = curl_easy_init();
    CURLcode cc;

    if (h == NULL)
        return -1;
    snprintf(url, sizeof(url), "%s%s", p->challsrv, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    cc = curl_easy_perform(h);
    if (cc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return cc == CURLE_OK && status == 200 ? 0 : -1;
}

static int on_present(void *ctx, const char *type, const char *identifier, const char *token,
                      const char *key_auth, struct cb_err *err)
{
    struct probe *p = ctx;
    char body[1024], value[44];
    int rc = 0;

    (void)token;
    printf("presented=%s:%s\n", type, identifier);
    p->presented++;
    if (p->no_solve || p->challsrv == NULL)
        return 0;
    if (strcmp(type, "dns-01") == 0) {
        if (cb_acme_dns01_value(key_auth, value) != 0)
            return cb_err_set(err, CB_EFAILED, "no DNS-01 value");
        snprintf(body, sizeof(body), "{\"host\":\"_acme-challenge.%s.\",\"value\":\"%s\"}",
                 identifier, value);
        rc = challsrv_post(p, "/set-txt", body);
    } else if (strcmp(type, "tls-alpn-01") == 0) {
        snprintf(body, sizeof(body), "{\"host\":\"%s\",\"content\":\"%s\"}", identifier, key_auth);
        rc = challsrv_post(p, "/add-tlsalpn01", body);
    } else {
        return cb_err_set(err, CB_EFAILED, "the probe cannot answer %s", type);
    }
    return rc == 0 ? 0 : cb_err_set(err, CB_EFAILED, "the challenge test server refused it");
}

static void on_cleanup(void *ctx, const char *type, const char *identifier, const char *token,
                       const char *key_auth)
{
    struct probe *p = ctx;
    char body[512];

    (void)token;
    (void)key_auth;
    printf("cleanup=%s:%s\n", type, identifier);
    p->cleaned++;
    if (p->no_solve || p->challsrv == NULL)
        return;
    if (strcmp(type, "dns-01") == 0) {
        snprintf(body, sizeof(body), "{\"host\":\"_acme-challenge.%s.\"}", identifier);
        (void)challsrv_post(p, "/clear-txt", body);
    } else {
        snprintf(body, sizeof(body), "{\"host\":\"%s\"}", identifier);
        (void)challsrv_post(p, "/del-tlsalpn01", body);
    }
}

/* --dump: each answer of the CA into DIR/NN-STATUS.txt, with its URL first line. */
static void on_answer(void *ctx, const char *url, long status, const char *body, size_t len)
{
    struct probe *p = ctx;
    char path[1024];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%02d-%ld.txt", p->dump, p->n_dumped++, status);
    f = fopen(path, "w");
    if (f == NULL)
        return;
    fprintf(f, "%s\n", url);
    fwrite(body, 1, len, f);
    fclose(f);
}

static void print_problem(const struct cb_acme_problem *pr)
{
    printf("problem_type=%s\nproblem_detail=%s\nproblem_status=%d\n", pr->type, pr->detail,
           pr->status);
}

/* The account key: loaded from path when it exists, else made (and saved there). */
static int account_key(const char *path, struct cb_acme_key **k, struct cb_err *err)
{
    if (path != NULL && access(path, F_OK) == 0)
        return cb_acme_key_load(path, k, err);
    int rc = cb_acme_key_generate(CB_ACME_KEY_EC256, k, err);
    if (rc == 0 && path != NULL) {
        rc = cb_acme_key_save(*k, path, err);
        if (rc != 0) {
            cb_acme_key_free(*k);
            *k = NULL;
        }
    }
    return rc;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = n >= 0 ? calloc(1, (size_t)n + 1) : NULL;
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    struct cb_acme_client_config cfg = {0};
    struct probe p = {0};
    const char *key_path = NULL, *out_path = NULL, *cert_path = NULL, *mode = NULL;
    const char *keytype = "ec";
    bool prefer_dns = false;
    struct cb_acme_key *akey = NULL, *ckey = NULL;
    struct cb_acme_client *c = NULL;
    struct cb_err err = {0};
    int i, rc;

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--agree-tos") == 0) {
            cfg.agree_tos = true;
        } else if (strcmp(o, "--prefer-dns") == 0) {
            prefer_dns = true;
        } else if (strcmp(o, "--no-solve") == 0) {
            p.no_solve = true;
        } else if (v == NULL) {
            fprintf(stderr, "cb_acme_probe: %s needs a value\n", o);
            return 2;
        } else {
            i++;
            if (strcmp(o, "--directory") == 0)
                cfg.directory_url = v;
            else if (strcmp(o, "--cafile") == 0)
                cfg.cafile = v;
            else if (strcmp(o, "--email") == 0)
                cfg.email = v;
            else if (strcmp(o, "--eab-kid") == 0)
                cfg.eab_kid = v;
            else if (strcmp(o, "--eab-hmac") == 0)
                cfg.eab_hmac_b64url = v;
            else if (strcmp(o, "--account-key") == 0)
                key_path = v;
            else if (strcmp(o, "--keytype") == 0)
                keytype = v;
            else if (strcmp(o, "--challsrv") == 0)
                p.challsrv = v;
            else if (strcmp(o, "--out") == 0)
                out_path = v;
            else if (strcmp(o, "--dump") == 0)
                p.dump = v;
            else if (strcmp(o, "--cert") == 0)
                cert_path = v;
            else if (strcmp(o, "--timeout") == 0)
                cfg.timeout_s = atol(v);
            else {
                fprintf(stderr, "cb_acme_probe: unknown option %s\n", o);
                return 2;
            }
        }
    }
    if (i >= argc) {
        fprintf(stderr, "cb_acme_probe: no mode (account, obtain, ari)\n");
        return 2;
    }
    mode = argv[i++];

    rc = account_key(key_path, &akey, &err);
    if (rc == 0)
        rc = cb_acme_client_new(&cfg, akey, &c, &err);
    if (rc != 0)
        goto out;
    if (p.dump != NULL)
        cb_acme_client_trace(c, on_answer, &p);

    if (strcmp(mode, "account") == 0) {
        char url[512];
        struct cb_acme_problem prob;
        rc = cb_acme_account(c, url, sizeof(url), &prob, &err);
        if (rc == 0)
            printf("account=%s\n", url);
        else if (prob.type[0] != '\0')
            print_problem(&prob);
    } else if (strcmp(mode, "obtain") == 0) {
        struct cb_acme_solver solver = {on_present, on_cleanup, &p};
        struct cb_acme_result res = {0};
        rc = cb_acme_key_generate(
            strcmp(keytype, "rsa") == 0 ? CB_ACME_KEY_RSA2048 : CB_ACME_KEY_EC256, &ckey, &err);
        if (rc == 0)
            rc = cb_acme_obtain(c, (const char *const *)(argv + i), (size_t)(argc - i), ckey,
                                prefer_dns, &solver, &res, &err);
        printf("presented_count=%d\ncleanup_count=%d\n", p.presented, p.cleaned);
        if (res.order_url[0])
            printf("order=%s\n", res.order_url);
        if (rc == 0) {
            size_t n_certs = 0;
            if (cb_acme_chain_check(res.chain_pem, res.chain_len, ckey, NULL, NULL, &n_certs,
                                    &err) == 0)
                printf("chain_certs=%zu\nnot_after=%lld\n", n_certs, (long long)res.not_after);
            if (out_path != NULL) {
                FILE *f = fopen(out_path, "w");
                if (f != NULL) {
                    fwrite(res.chain_pem, 1, res.chain_len, f);
                    fclose(f);
                }
            }
        } else {
            printf("failed_step=%s\nretry_after=%lld\n", res.failed_step,
                   (long long)res.retry_after);
            if (res.has_problem)
                print_problem(&res.problem);
        }
        cb_acme_result_clear(&res);
    } else if (strcmp(mode, "ari") == 0) {
        struct cb_acme_renewal win;
        char *pem = cert_path != NULL ? read_all(cert_path) : NULL;
        rc = cb_acme_renewal_window(c, pem != NULL ? pem : "", &win, &err);
        if (rc == 0)
            printf("window_start=%lld\nwindow_end=%lld\n", (long long)win.start,
                   (long long)win.end);
        free(pem);
    } else {
        fprintf(stderr, "cb_acme_probe: unknown mode %s\n", mode);
        rc = CB_EINVAL;
    }
out:
    if (rc != 0) {
        printf("rc=%d\n", rc);
        fprintf(stderr, "cb_acme_probe: error: %s\n", err.msg);
    }
    cb_acme_client_free(c);
    cb_acme_key_free(ckey);
    cb_acme_key_free(akey);
    return cb_exit_status(rc);
}
