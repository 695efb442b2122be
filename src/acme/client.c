/*
 * client.c: the RFC 8555 protocol over libcurl: the directory, nonces, signed POSTs
 * with badNonce retries, account registration, the order state machine with polling,
 * and ACME Renewal Information. JSON in through acme/parse.c, JWS out through
 * tls/acme_crypto.c.
 */
#include "acme/client.h"
#include "binding/binding.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define CB_ACME_MAX_BODY (1024 * 1024)
#define CB_ACME_NONCE_TRIES 6 /* the first try and 5 retries on badNonce */
#define CB_ACME_POLL_BUDGET_S 90
#define CB_ACME_ERR_PREFIX "urn:ietf:params:acme:error:"

struct cb_acme_client {
    char *directory_url, *cafile, *email, *eab_kid, *eab_hmac;
    size_t eab_hmac_len;
    bool agree_tos;
    long timeout_s;
    const volatile int *abort;
    const struct cb_acme_key *key;
    char thumbprint[44];
    CURL *curl;
    char curl_err[CURL_ERROR_SIZE];
    struct cb_acme_directory dir;
    bool have_dir;
    char nonce[256];
    char kid[CB_ACME_URL_MAX];
    void (*on_answer)(void *ctx, const char *url, long status, const char *body, size_t len);
    void *trace_ctx;
};

/* One HTTP answer: status, the body (bounded, NUL-terminated) and the headers used. */
struct http_resp {
    long status;
    char *body;
    size_t len, cap;
    bool too_big;
    char nonce[256];
    char location[CB_ACME_URL_MAX];
    char retry_after[64];
    char content_type[128];
};

static void resp_reset(struct http_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void on_curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool aborted(const struct cb_acme_client *c)
{
    return c->abort != NULL && *c->abort != 0;
}

/* ---- HTTP ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_resp *r = userp;
    size_t n = size * nmemb;

    if (r->len + n > CB_ACME_MAX_BODY) {
        r->too_big = true;
        return 0; /* makes curl fail the transfer */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *p = realloc(r->body, cap);
        if (p == NULL)
            return 0;
        r->body = p;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* Copies header value `name` (case-insensitive) from one header line, trimmed. */
static bool header_value(const char *line, size_t n, const char *name, char *out, size_t size)
{
    size_t k = strlen(name);

    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return false;
    line += k + 1;
    n -= k + 1;
    while (n > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        n--;
    }
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
        n--;
    if (n >= size)
        n = 0; /* over-long: treated as absent */
    memcpy(out, line, n);
    out[n] = '\0';
    return true;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_resp *r = userp;
    size_t n = size * nmemb;

    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) { /* a new answer (after a 1xx) */
        r->nonce[0] = r->location[0] = r->retry_after[0] = r->content_type[0] = '\0';
        return n;
    }
    if (!header_value(data, n, "Replay-Nonce", r->nonce, sizeof(r->nonce)) &&
        !header_value(data, n, "Location", r->location, sizeof(r->location)) &&
        !header_value(data, n, "Retry-After", r->retry_after, sizeof(r->retry_after)))
        header_value(data, n, "Content-Type", r->content_type, sizeof(r->content_type));
    return n;
}

static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const struct cb_acme_client *c = userp;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return aborted(c) ? 1 : 0;
}

static bool nonce_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char ch = (unsigned char)s[n];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return n > 0;
}

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_POST };

/* One request; fills *r (reset first). 0 when an answer came (any status). */
static int http(struct cb_acme_client *c, enum http_method method, const char *url,
                const char *body, const char *accept, struct http_resp *r, struct cb_err *err)
{
    struct curl_slist *hdrs = NULL, *h;
    char accept_hdr[128];
    CURLcode cc;
    int rc = 0;

    resp_reset(r);
    if (aborted(c))
        return cb_err_set(err, CB_EFAILED, "stopped: the ACME order was cancelled");
    if (!cb_acme_https_url(url))
        return cb_err_set(err, CB_EFAILED,
                          "the CA sent a URL that is not https; refusing to "
                          "follow it");
    curl_easy_reset(c->curl); /* keeps live connections */
    c->curl_err[0] = '\0';
    snprintf(accept_hdr, sizeof(accept_hdr), "Accept: %s",
             accept != NULL ? accept : "application/json");
    h = curl_slist_append(hdrs, accept_hdr);
    if (h != NULL)
        hdrs = h;
    h = curl_slist_append(hdrs, "Expect:");
    if (h != NULL)
        hdrs = h;
    if (method == HTTP_POST) {
        h = curl_slist_append(hdrs, "Content-Type: application/jose+json");
        if (h != NULL)
            hdrs = h;
    }
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c->curl, CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS);
    curl_easy_setopt(c->curl, CURLOPT_REDIR_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
    curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, c->timeout_s);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, c->timeout_s);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "certbind/" CB_VERSION);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CB_ACME_MAX_BODY);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->cafile != NULL)
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->cafile);
    if (method == HTTP_HEAD)
        curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
    if (method == HTTP_POST) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    cc = curl_easy_perform(c->curl);
    if (cc == CURLE_ABORTED_BY_CALLBACK || aborted(c)) {
        rc = cb_err_set(err, CB_EFAILED, "stopped: the ACME order was cancelled");
    } else if (r->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
        rc = cb_err_set(err, CB_EFAILED, "the CA's answer from %s is larger than 1 MiB", url);
    } else if (cc != CURLE_OK) {
        rc = cb_err_set(err, CB_EFAILED,
                        "cannot reach the ACME server at %s: %s; check the directory URL, the "
                        "network and (for a private CA) cafile=",
                        url, c->curl_err[0] ? c->curl_err : curl_easy_strerror(cc));
    } else {
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
        if (r->nonce[0] != '\0' && nonce_ok(r->nonce))
            memcpy(c->nonce, r->nonce, sizeof(c->nonce));
        if (r->body == NULL) {
            r->body = calloc(1, 1);
            if (r->body == NULL)
                rc = cb_err_set(err, CB_ENOMEM, "out of memory");
        }
        if (rc == 0 && c->on_answer != NULL)
            c->on_answer(c->trace_ctx, url, r->status, r->body, r->len);
    }
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    return rc;
}

/* Seconds since the epoch named by a Retry-After value (delta-seconds or HTTP-date),
 * 0 when absent or malformed; at most 30 days ahead. */
static int64_t retry_after_epoch(const char *v)
{
    int64_t now = (int64_t)time(NULL), t = 0;
    struct tm tm;

    if (v == NULL || v[0] == '\0')
        return 0;
    if (v[0] >= '0' && v[0] <= '9') {
        char *end;
        errno = 0;
        unsigned long long d = strtoull(v, &end, 10);
        if (*end != '\0' || errno != 0)
            return 0;
        t = now + (int64_t)(d > 30ull * 86400 ? 30ull * 86400 : d);
    } else {
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (end == NULL || *end != '\0')
            return 0;
        t = (int64_t)timegm(&tm);
        if (t < now)
            t = now;
        if (t > now + 30 * 86400)
            t = now + 30 * 86400;
    }
    return t;
}

/* ---- problems and failures ---- */

/* The CA's problem in r, when its body is one (type or detail set). */
static bool resp_problem(const struct http_resp *r, struct cb_acme_problem *p)
{
    struct cb_acme_problem tmp;

    if (r->body == NULL || r->len == 0 || cb_acme_parse_problem(r->body, r->len, &tmp, NULL) != 0)
        return false;
    if (tmp.type[0] == '\0' && tmp.detail[0] == '\0')
        return false;
    if (tmp.status == 0)
        tmp.status = (int)r->status;
    *p = tmp;
    return true;
}

static const char *short_type(const char *type)
{
    return strncmp(type, CB_ACME_ERR_PREFIX, strlen(CB_ACME_ERR_PREFIX)) == 0
               ? type + strlen(CB_ACME_ERR_PREFIX)
               : type;
}

/* A failed answer: the problem into res (when any), Retry-After when rate limited or
 * unavailable, and one sentence. Returns CB_EFAILED. */
static int answer_fail(struct cb_acme_result *res, const char *step, const struct http_resp *r,
                       const char *what, struct cb_err *err)
{
    struct cb_acme_problem p;
    bool has = resp_problem(r, &p);

    if (res != NULL) {
        snprintf(res->failed_step, sizeof(res->failed_step), "%s", step);
        if (has) {
            res->problem = p;
            res->has_problem = true;
        }
        if (r->status == 429 || r->status == 503 ||
            (has && strcmp(p.type, CB_ACME_ERR_PREFIX "rateLimited") == 0))
            res->retry_after = retry_after_epoch(r->retry_after);
    }
    if (has)
        return cb_err_set(err, CB_EFAILED, "%s: the CA answered HTTP %ld %s: %s", what, r->status,
                          short_type(p.type), p.detail);
    return cb_err_set(err, CB_EFAILED, "%s: the CA answered HTTP %ld without a problem document",
                      what, r->status);
}

static int step_fail(struct cb_acme_result *res, const char *step, int rc)
{
    if (res != NULL && res->failed_step[0] == '\0')
        snprintf(res->failed_step, sizeof(res->failed_step), "%s", step);
    return rc == CB_EINVAL ? CB_EINVAL : CB_EFAILED;
}

/* ---- directory, nonces, signed requests ---- */

static int ensure_directory(struct cb_acme_client *c, struct cb_err *err)
{
    struct http_resp r = {0};
    int rc;

    if (c->have_dir)
        return 0;
    rc = http(c, HTTP_GET, c->directory_url, NULL, NULL, &r, err);
    if (rc == 0 && r.status != 200)
        rc = cb_err_set(err, CB_EFAILED,
                        "the ACME directory %s answered HTTP %ld; check the directory URL",
                        c->directory_url, r.status);
    if (rc == 0) {
        struct cb_err perr = {0};
        rc = cb_acme_parse_directory(r.body, r.len, &c->dir, &perr);
        if (rc != 0)
            rc = cb_err_set(err, CB_EFAILED, "%s is not an ACME directory: %s", c->directory_url,
                            perr.msg);
    }
    c->have_dir = rc == 0;
    resp_reset(&r);
    return rc;
}

static int ensure_nonce(struct cb_acme_client *c, struct cb_err *err)
{
    struct http_resp r = {0};
    int rc;

    if (c->nonce[0] != '\0')
        return 0;
    rc = http(c, HTTP_HEAD, c->dir.new_nonce, NULL, NULL, &r, err);
    if (rc == 0 && c->nonce[0] == '\0')
        rc = cb_err_set(err, CB_EFAILED,
                        "the CA's newNonce (%s) answered HTTP %ld without a "
                        "Replay-Nonce",
                        c->dir.new_nonce, r.status);
    resp_reset(&r);
    return rc;
}

/* A signed POST of payload (NULL: POST-as-GET) to url, with the account's kid or, when
 * use_jwk, the public key; retried with a fresh nonce on badNonce. */
static int post(struct cb_acme_client *c, const char *url, const char *payload, bool use_jwk,
                const char *accept, struct http_resp *r, struct cb_err *err)
{
    int rc = 0;

    for (int attempt = 0; attempt < CB_ACME_NONCE_TRIES; attempt++) {
        char *jws = NULL;
        char nonce[sizeof(c->nonce)];
        struct cb_acme_problem p;

        rc = ensure_nonce(c, err);
        if (rc != 0)
            return rc;
        memcpy(nonce, c->nonce, sizeof(nonce));
        c->nonce[0] = '\0'; /* a nonce is used once */
        rc = cb_acme_jws(c->key, use_jwk ? NULL : c->kid, nonce, url, payload, &jws, err);
        if (rc != 0)
            return rc;
        rc = http(c, HTTP_POST, url, jws, accept, r, err);
        free(jws);
        if (rc != 0)
            return rc;
        if (r->status != 400 || !resp_problem(r, &p) ||
            strcmp(p.type, CB_ACME_ERR_PREFIX "badNonce") != 0)
            return 0;
    }
    return 0; /* the last badNonce answer, for the caller to report */
}

/* Sleeps ms milliseconds in short steps, returning early when aborted. */
static void pause_ms(const struct cb_acme_client *c, long ms)
{
    while (ms > 0 && !aborted(c)) {
        long step = ms > 100 ? 100 : ms;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The wait before the next poll: Retry-After (1 to 10 s) or a growing default. */
static long poll_delay_ms(const struct http_resp *r, int round)
{
    int64_t t = retry_after_epoch(r->retry_after);
    long ms = round < 3 ? 250L << round : 2000;

    if (t > 0) {
        int64_t d = t - (int64_t)time(NULL);
        ms = d < 1 ? 1000 : d > 10 ? 10000 : (long)d * 1000;
    }
    return ms;
}

/* ---- the client ---- */

static bool email_ok(const char *s)
{
    const char *at = strchr(s, '@');
    size_t n = strlen(s);

    if (n == 0 || n > 254 || at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@'))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || strchr(",<>\"\\;:()[]", ch) != NULL)
            return false;
    }
    return true;
}

void cb_acme_client_free(struct cb_acme_client *c)
{
    if (c == NULL)
        return;
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    free(c->directory_url);
    free(c->cafile);
    free(c->email);
    free(c->eab_kid);
    cb_acme_secret_free(c->eab_hmac, c->eab_hmac_len);
    free(c);
}

static int dup_opt(const char *in, char **out)
{
    *out = NULL;
    if (in == NULL || in[0] == '\0')
        return 0;
    *out = strdup(in);
    return *out != NULL ? 0 : CB_ENOMEM;
}

int cb_acme_client_new(const struct cb_acme_client_config *cfg,
                       const struct cb_acme_key *account_key, struct cb_acme_client **out,
                       struct cb_err *err)
{
    struct cb_acme_client *c;
    int rc;

    if (cfg == NULL || account_key == NULL)
        return cb_err_set(err, CB_EINVAL,
                          "an ACME client needs a configuration and an "
                          "account key");
    if (!cb_acme_https_url(cfg->directory_url))
        return cb_err_set(err, CB_EINVAL,
                          "the ACME directory must be an https URL (directory="
                          "https://...), not '%s'",
                          cfg->directory_url != NULL ? cfg->directory_url : "");
    if (cfg->cafile != NULL && cfg->cafile[0] != '\0' && access(cfg->cafile, R_OK) != 0)
        return cb_err_set(err, CB_EINVAL, "cannot read cafile=%s: %s", cfg->cafile,
                          strerror(errno));
    if (cfg->email != NULL && cfg->email[0] != '\0' && !email_ok(cfg->email))
        return cb_err_set(err, CB_EINVAL, "email=%s is not an e-mail address", cfg->email);
    if ((cfg->eab_kid == NULL || cfg->eab_kid[0] == '\0') !=
        (cfg->eab_hmac_b64url == NULL || cfg->eab_hmac_b64url[0] == '\0'))
        return cb_err_set(err, CB_EINVAL,
                          "External Account Binding needs both eabkid= and "
                          "eabhmackey=");
    pthread_once(&curl_once, on_curl_init);
    if (curl_init_rc != CURLE_OK)
        return cb_err_set(err, CB_EFAILED, "libcurl failed to start: %s",
                          curl_easy_strerror(curl_init_rc));
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    c->key = account_key;
    c->agree_tos = cfg->agree_tos;
    c->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 30;
    c->abort = cfg->abort;
    if (dup_opt(cfg->directory_url, &c->directory_url) != 0 ||
        dup_opt(cfg->cafile, &c->cafile) != 0 || dup_opt(cfg->email, &c->email) != 0 ||
        dup_opt(cfg->eab_kid, &c->eab_kid) != 0 ||
        dup_opt(cfg->eab_hmac_b64url, &c->eab_hmac) != 0) {
        rc = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free_client;
    }
    c->eab_hmac_len = c->eab_hmac != NULL ? strlen(c->eab_hmac) : 0;
    rc = cb_acme_jwk_thumbprint(account_key, c->thumbprint, err);
    if (rc != 0)
        goto out_free_client;
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        rc = cb_err_set(err, CB_ENOMEM, "libcurl could not make a handle");
        goto out_free_client;
    }
    *out = c;
    return 0;

out_free_client:
    cb_acme_client_free(c);
    return rc;
}

void cb_acme_client_trace(struct cb_acme_client *c,
                          void (*on_answer)(void *ctx, const char *url, long status,
                                            const char *body, size_t len),
                          void *ctx)
{
    c->on_answer = on_answer;
    c->trace_ctx = ctx;
}

int cb_acme_client_directory(struct cb_acme_client *c, struct cb_acme_directory *out,
                             struct cb_err *err)
{
    int rc = ensure_directory(c, err);
    if (rc == 0)
        *out = c->dir;
    return rc;
}

/* The newAccount payload: contact, termsOfServiceAgreed, externalAccountBinding. */
static int account_payload(struct cb_acme_client *c, char **out, struct cb_err *err)
{
    json_t *root = json_object();
    char *eab = NULL, contact[300];
    int rc = CB_ENOMEM;

    if (root == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    if (c->agree_tos && json_object_set_new(root, "termsOfServiceAgreed", json_true()) != 0)
        goto out_free;
    if (c->email != NULL) {
        snprintf(contact, sizeof(contact), "mailto:%s", c->email);
        json_t *arr = json_array();
        if (arr == NULL || json_array_append_new(arr, json_string(contact)) != 0 ||
            json_object_set_new(root, "contact", arr) != 0)
            goto out_free;
    }
    if (c->eab_kid != NULL) {
        json_error_t jerr;
        rc = cb_acme_eab(c->key, c->eab_kid, c->eab_hmac, c->dir.new_account, &eab, err);
        if (rc != 0)
            goto out_free;
        json_t *obj = json_loads(eab, 0, &jerr);
        rc = CB_ENOMEM;
        if (obj == NULL || json_object_set_new(root, "externalAccountBinding", obj) != 0)
            goto out_free;
    }
    *out = json_dumps(root, JSON_COMPACT);
    rc = *out != NULL ? 0 : CB_ENOMEM;
out_free:
    if (rc == CB_ENOMEM)
        cb_err_set(err, rc, "out of memory");
    free(eab);
    json_decref(root);
    return rc;
}

int cb_acme_account(struct cb_acme_client *c, char *account_url, size_t size,
                    struct cb_acme_problem *prob, struct cb_err *err)
{
    struct cb_acme_result res = {0};
    struct http_resp r = {0};
    char *payload = NULL;
    int rc;

    if (prob != NULL)
        memset(prob, 0, sizeof(*prob));
    rc = ensure_directory(c, err);
    if (rc != 0)
        return rc;
    if (c->dir.terms_of_service[0] != '\0' && !c->agree_tos)
        return cb_err_set(err, CB_EINVAL,
                          "the CA at %s has terms of service (%s): read them, then agree with "
                          "agreetos=yes",
                          c->directory_url, c->dir.terms_of_service);
    if (c->dir.eab_required && c->eab_kid == NULL)
        return cb_err_set(err, CB_EINVAL,
                          "the CA at %s requires External Account Binding: set eabkid= and "
                          "eabhmackey= from your account at the CA",
                          c->directory_url);
    rc = account_payload(c, &payload, err);
    if (rc != 0)
        return rc;
    rc = post(c, c->dir.new_account, payload, true, NULL, &r, err);
    free(payload);
    if (rc != 0)
        goto out_free;
    if (r.status != 200 && r.status != 201) {
        rc = answer_fail(&res, "account", &r, "the CA refused the account", err);
        if (prob != NULL && res.has_problem)
            *prob = res.problem;
        goto out_free;
    }
    if (!cb_acme_https_url(r.location)) {
        rc = cb_err_set(err, CB_EFAILED,
                        "the CA accepted the account but sent no https "
                        "account URL (Location)");
        goto out_free;
    }
    if (strlen(r.location) >= size) {
        rc = cb_err_set(err, CB_EINVAL, "no room for the account URL");
        goto out_free;
    }
    memcpy(c->kid, r.location, strlen(r.location) + 1);
    memcpy(account_url, r.location, strlen(r.location) + 1);
out_free:
    resp_reset(&r);
    return rc;
}

void cb_acme_result_clear(struct cb_acme_result *r)
{
    if (r == NULL)
        return;
    free(r->chain_pem);
    memset(r, 0, sizeof(*r));
}

/* POST-as-GET url and parse its answer with parse into out; `step` and `what` name it for
 * res->failed_step and the message ("order", "fetching the order failed"). */
static int fetch_parsed(struct cb_acme_client *c, const char *url,
                        int (*parse)(const char *, size_t, void *, struct cb_err *), void *out,
                        const char *step, const char *what, struct http_resp *r,
                        struct cb_acme_result *res, struct cb_err *err)
{
    struct cb_err perr = {0};
    int rc = post(c, url, NULL, false, NULL, r, err);

    if (rc != 0)
        return rc;
    if (r->status != 200)
        return answer_fail(res, step, r, what, err);
    if (parse(r->body, r->len, out, &perr) != 0)
        return cb_err_set(err, CB_EFAILED, "%s", perr.msg);
    return 0;
}

static int parse_order(const char *json, size_t len, void *out, struct cb_err *err)
{
    return cb_acme_parse_order(json, len, out, err);
}

static int parse_authz(const char *json, size_t len, void *out, struct cb_err *err)
{
    return cb_acme_parse_authz(json, len, out, err);
}

static int fetch_order(struct cb_acme_client *c, const char *url, struct cb_acme_order *o,
                       struct http_resp *r, struct cb_acme_result *res, struct cb_err *err)
{
    return fetch_parsed(c, url, parse_order, o, "order", "fetching the order failed", r, res, err);
}

static int fetch_authz(struct cb_acme_client *c, const char *url, struct cb_acme_authz *a,
                       struct http_resp *r, struct cb_acme_result *res, struct cb_err *err)
{
    return fetch_parsed(c, url, parse_authz, a, "authorization", "fetching an authorization failed",
                        r, res, err);
}

struct presented {
    char type[32];
    char identifier[256];
    char token[128];
    char key_auth[192];
};

/* Answers one authorization: picks the challenge, presents it, triggers it and polls
 * until valid or invalid. *p is filled (and *presented set) once present() succeeded. */
static int solve_authz(struct cb_acme_client *c, const char *url, bool prefer_dns,
                       const struct cb_acme_solver *solver, struct presented *p, bool *presented,
                       struct cb_acme_result *res, struct cb_err *err)
{
    struct cb_acme_authz a;
    struct http_resp r = {0};
    const struct cb_acme_challenge *ch = NULL, *alpn = NULL, *dns = NULL;
    int64_t deadline;
    int rc;

    *presented = false;
    rc = fetch_authz(c, url, &a, &r, res, err);
    if (rc != 0)
        goto out_free;
    if (strcmp(a.status, "valid") == 0)
        goto out_free;
    if (strcmp(a.status, "pending") != 0) {
        if (a.has_error) {
            res->problem = a.error;
            res->has_problem = true;
        }
        rc = cb_err_set(err, CB_EFAILED, "the CA's authorization for %s is %s%s%s", a.identifier,
                        a.status, a.has_error ? ": " : "", a.has_error ? a.error.detail : "");
        goto out_free;
    }
    for (size_t i = 0; i < a.n_challenges; i++) {
        if (strcmp(a.challenges[i].type, "tls-alpn-01") == 0 && alpn == NULL)
            alpn = &a.challenges[i];
        if (strcmp(a.challenges[i].type, "dns-01") == 0 && dns == NULL)
            dns = &a.challenges[i];
    }
    ch = alpn != NULL && !a.wildcard && !prefer_dns ? alpn : dns;
    if (ch == NULL) {
        rc = cb_err_set(err, CB_EFAILED,
                        "the CA offers neither TLS-ALPN-01 nor DNS-01 for %s%s; certbind "
                        "answers only those",
                        a.wildcard ? "*." : "", a.identifier);
        goto out_free;
    }
    snprintf(p->type, sizeof(p->type), "%s", ch->type);
    snprintf(p->identifier, sizeof(p->identifier), "%s", a.identifier);
    snprintf(p->token, sizeof(p->token), "%s", ch->token);
    snprintf(p->key_auth, sizeof(p->key_auth), "%s.%s", ch->token, c->thumbprint);
    if (solver != NULL && solver->present != NULL) {
        struct cb_err serr = {0};
        rc = solver->present(solver->ctx, p->type, p->identifier, p->token, p->key_auth, &serr);
        if (rc != 0) {
            rc =
                cb_err_set(err, CB_EFAILED, "could not answer the %s challenge for %s: %s", p->type,
                           p->identifier, serr.msg[0] ? serr.msg : "the challenge solver failed");
            goto out_free;
        }
        *presented = true;
    }
    if (strcmp(ch->status, "pending") == 0) {
        rc = post(c, ch->url, "{}", false, NULL, &r, err);
        if (rc != 0)
            goto out_free;
        if (r.status != 200) {
            rc = answer_fail(res, "challenge", &r, "the CA refused to start the challenge", err);
            goto out_free;
        }
    }
    deadline = mono_ms() + CB_ACME_POLL_BUDGET_S * 1000;
    for (int round = 0;; round++) {
        pause_ms(c, poll_delay_ms(&r, round));
        rc = fetch_authz(c, url, &a, &r, res, err);
        if (rc != 0)
            goto out_free;
        if (strcmp(a.status, "pending") != 0)
            break;
        if (mono_ms() > deadline) {
            rc = cb_err_set(err, CB_EFAILED,
                            "the CA did not validate %s by %s within %d seconds; try again later",
                            p->identifier, p->type, CB_ACME_POLL_BUDGET_S);
            goto out_free;
        }
    }
    if (strcmp(a.status, "valid") != 0) {
        if (a.has_error) {
            res->problem = a.error;
            res->has_problem = true;
        }
        if (a.has_error)
            rc = cb_err_set(err, CB_EFAILED, "the CA could not validate %s by %s: %s: %s",
                            p->identifier, p->type, short_type(a.error.type), a.error.detail);
        else
            rc = cb_err_set(err, CB_EFAILED, "the CA could not validate %s by %s (%s)",
                            p->identifier, p->type, a.status);
        goto out_free;
    }
out_free:
    resp_reset(&r);
    return rc;
}

/* Polls the order at url until its status is none of `waiting` (NULL-terminated). */
static int poll_order(struct cb_acme_client *c, const char *url, const char *const *waiting,
                      struct cb_acme_order *o, struct cb_acme_result *res, struct cb_err *err)
{
    struct http_resp r = {0};
    int64_t deadline = mono_ms() + CB_ACME_POLL_BUDGET_S * 1000;
    int rc = 0;

    for (int round = 0;; round++) {
        bool wait = false;
        for (const char *const *w = waiting; *w != NULL; w++)
            wait = wait || strcmp(o->status, *w) == 0;
        if (!wait)
            break;
        if (mono_ms() > deadline) {
            rc = cb_err_set(err, CB_EFAILED,
                            "the CA left the order %s for %d seconds; try again later", o->status,
                            CB_ACME_POLL_BUDGET_S);
            break;
        }
        pause_ms(c, poll_delay_ms(&r, round));
        rc = fetch_order(c, url, o, &r, res, err);
        if (rc != 0)
            break;
    }
    resp_reset(&r);
    return rc;
}

static char *new_order_payload(char (*names)[CB_NAME_MAX + 1], size_t n)
{
    json_t *root = json_object(), *ids = json_array();
    char *out = NULL;

    if (root == NULL || ids == NULL) {
        json_decref(root);
        json_decref(ids);
        return NULL;
    }
    if (json_object_set_new(root, "identifiers", ids) != 0) {
        json_decref(root);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *id = json_pack("{s:s, s:s}", "type", "dns", "value", names[i]);
        if (id == NULL || json_array_append_new(ids, id) != 0)
            goto out_free;
    }
    out = json_dumps(root, JSON_COMPACT);
out_free:
    json_decref(root);
    return out;
}

int cb_acme_obtain(struct cb_acme_client *c, const char *const *names, size_t n,
                   const struct cb_acme_key *cert_key, bool prefer_dns,
                   const struct cb_acme_solver *solver, struct cb_acme_result *res,
                   struct cb_err *err)
{
    static const char *const before_ready[] = {"pending", NULL};
    static const char *const before_valid[] = {"pending", "ready", "processing", NULL};
    char(*norm)[CB_NAME_MAX + 1] = NULL;
    struct presented *shown = NULL;
    struct cb_acme_order *o = NULL;
    struct http_resp r = {0};
    char *payload = NULL, *csr = NULL, kid[CB_ACME_URL_MAX];
    size_t n_shown = 0;
    int rc;

    res->chain_pem = NULL;
    res->chain_len = 0;
    res->retry_after = 0;
    res->has_problem = false;
    memset(&res->problem, 0, sizeof(res->problem));
    res->order_url[0] = res->failed_step[0] = '\0';
    if (names == NULL || n == 0 || n > CB_ACME_MAX_NAMES || cert_key == NULL)
        return cb_err_set(err, CB_EINVAL, "an ACME order needs 1 to %d names and a key",
                          CB_ACME_MAX_NAMES);
    norm = calloc(n, sizeof(*norm));
    shown = calloc(n, sizeof(*shown));
    o = malloc(sizeof(*o));
    if (norm == NULL || shown == NULL || o == NULL) {
        rc = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL ||
            cb_name_normalize(names[i], strlen(names[i]), CB_NAME_IDN | CB_NAME_WILDCARD, norm[i],
                              NULL) != 0) {
            rc = cb_err_set(err, CB_EINVAL,
                            "cannot order a certificate for '%s': not a DNS "
                            "name",
                            names[i] != NULL ? names[i] : "");
            goto out_free;
        }
    }
    if (c->kid[0] == '\0') {
        rc = cb_acme_account(c, kid, sizeof(kid), &res->problem, err);
        res->has_problem = res->problem.type[0] != '\0' || res->problem.detail[0] != '\0';
        if (rc != 0) {
            rc = step_fail(res, "account", rc);
            goto out_free;
        }
    }

    /* newOrder */
    payload = new_order_payload(norm, n);
    if (payload == NULL) {
        rc = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    rc = post(c, c->dir.new_order, payload, false, NULL, &r, err);
    if (rc != 0) {
        rc = step_fail(res, "newOrder", rc);
        goto out_free;
    }
    if (r.status != 201 && r.status != 200) {
        rc = answer_fail(res, "newOrder", &r, "the CA refused the order", err);
        goto out_free;
    }
    {
        struct cb_err perr = {0};
        if (!cb_acme_https_url(r.location) || cb_acme_parse_order(r.body, r.len, o, &perr) != 0 ||
            o->n_authz == 0) {
            rc = cb_err_set(err, CB_EFAILED, "the CA's new order is unusable: %s",
                            perr.msg[0] ? perr.msg : "no https order URL or no authorizations");
            rc = step_fail(res, "newOrder", rc);
            goto out_free;
        }
    }
    snprintf(res->order_url, sizeof(res->order_url), "%s", r.location);

    /* authorizations */
    for (size_t i = 0; i < o->n_authz && o->n_authz <= n; i++) {
        bool presented = false;
        rc = solve_authz(c, o->authz[i], prefer_dns, solver, &shown[n_shown], &presented, res, err);
        if (presented)
            n_shown++;
        if (rc != 0) {
            rc = step_fail(res, "authorization", rc);
            goto out_cleanup;
        }
    }
    if (o->n_authz > n) {
        rc = cb_err_set(err, CB_EFAILED, "the CA's order holds %zu authorizations for %zu names",
                        o->n_authz, n);
        rc = step_fail(res, "newOrder", rc);
        goto out_cleanup;
    }
    rc = poll_order(c, res->order_url, before_ready, o, res, err);
    if (rc == 0 && strcmp(o->status, "ready") != 0 && strcmp(o->status, "valid") != 0) {
        if (o->has_error) {
            res->problem = o->error;
            res->has_problem = true;
        }
        rc = cb_err_set(err, CB_EFAILED, "the CA's order is %s after validation%s%s", o->status,
                        o->has_error ? ": " : "", o->has_error ? o->error.detail : "");
    }
    if (rc != 0) {
        rc = step_fail(res, "authorization", rc);
        goto out_cleanup;
    }

    /* finalize */
    if (strcmp(o->status, "ready") == 0) {
        char *body = NULL;
        const char **ptrs = calloc(n, sizeof(*ptrs));
        if (ptrs == NULL) {
            rc = cb_err_set(err, CB_ENOMEM, "out of memory");
            goto out_cleanup;
        }
        for (size_t i = 0; i < n; i++)
            ptrs[i] = norm[i];
        rc = cb_acme_csr(cert_key, ptrs, n, &csr, err);
        free(ptrs);
        if (rc != 0) {
            rc = step_fail(res, "finalize", rc);
            goto out_cleanup;
        }
        json_t *obj = json_pack("{s:s}", "csr", csr);
        body = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
        json_decref(obj);
        if (body == NULL) {
            rc = cb_err_set(err, CB_ENOMEM, "out of memory");
            goto out_cleanup;
        }
        rc = post(c, o->finalize, body, false, NULL, &r, err);
        free(body);
        if (rc != 0) {
            rc = step_fail(res, "finalize", rc);
            goto out_cleanup;
        }
        if (r.status != 200) {
            rc = answer_fail(res, "finalize", &r, "the CA refused to finalize the order", err);
            goto out_cleanup;
        }
        struct cb_err perr = {0};
        if (cb_acme_parse_order(r.body, r.len, o, &perr) != 0) {
            rc = cb_err_set(err, CB_EFAILED, "%s", perr.msg);
            rc = step_fail(res, "finalize", rc);
            goto out_cleanup;
        }
    }
    rc = poll_order(c, res->order_url, before_valid, o, res, err);
    if (rc == 0 && (strcmp(o->status, "valid") != 0 || o->certificate[0] == '\0')) {
        if (o->has_error) {
            res->problem = o->error;
            res->has_problem = true;
        }
        rc = cb_err_set(err, CB_EFAILED, "the CA's order is %s after finalize%s%s", o->status,
                        o->has_error ? ": " : "", o->has_error ? o->error.detail : "");
    }
    if (rc != 0) {
        rc = step_fail(res, "finalize", rc);
        goto out_cleanup;
    }

    /* the certificate */
    rc = post(c, o->certificate, NULL, false, "application/pem-certificate-chain", &r, err);
    if (rc != 0) {
        rc = step_fail(res, "certificate", rc);
        goto out_cleanup;
    }
    if (r.status != 200) {
        rc = answer_fail(res, "certificate", &r, "downloading the certificate failed", err);
        goto out_cleanup;
    }
    {
        struct cb_err cerr = {0};
        rc = cb_acme_chain_check(r.body, r.len, cert_key, &res->not_before, &res->not_after, NULL,
                                 &cerr);
        if (rc != 0) {
            rc = cb_err_set(err, CB_EFAILED, "the CA's certificate is unusable: %s", cerr.msg);
            rc = step_fail(res, "certificate", rc);
            goto out_cleanup;
        }
    }
    res->chain_pem = r.body; /* taken: NUL-terminated */
    res->chain_len = r.len;
    r.body = NULL;
    rc = 0;

out_cleanup:
    while (n_shown > 0) {
        struct presented *p = &shown[--n_shown];
        if (solver != NULL && solver->cleanup != NULL)
            solver->cleanup(solver->ctx, p->type, p->identifier, p->token, p->key_auth);
    }
out_free:
    resp_reset(&r);
    free(csr);
    free(payload);
    free(o);
    free(shown);
    free(norm);
    return rc;
}

int cb_acme_renewal_window(struct cb_acme_client *c, const char *pem, struct cb_acme_renewal *out,
                           struct cb_err *err)
{
    char id[400], url[CB_ACME_URL_MAX + 400];
    struct http_resp r = {0};
    struct cb_err perr = {0};
    int rc;

    rc = ensure_directory(c, err);
    if (rc != 0)
        return rc;
    if (c->dir.renewal_info[0] == '\0')
        return cb_err_set(err, CB_ENOENT, "the CA offers no renewal information (ARI)");
    rc = cb_acme_ari_cert_id(pem, id, sizeof(id), err);
    if (rc != 0)
        return rc;
    size_t k = strlen(c->dir.renewal_info);
    snprintf(url, sizeof(url), "%s%s%s", c->dir.renewal_info,
             c->dir.renewal_info[k - 1] == '/' ? "" : "/", id);
    if (!cb_acme_https_url(url))
        return cb_err_set(err, CB_EFAILED, "the renewal information URL is too long");
    rc = http(c, HTTP_GET, url, NULL, NULL, &r, err);
    if (rc == 0 && r.status != 200)
        rc = answer_fail(NULL, "renewalInfo", &r, "asking for renewal information failed", err);
    if (rc == 0 && cb_acme_parse_renewal_info(r.body, r.len, out, &perr) != 0)
        rc = cb_err_set(err, CB_EFAILED, "%s", perr.msg);
    resp_reset(&r);
    return rc;
}
