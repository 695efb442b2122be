/*
 * etcd.c: the client's endpoints and its requests to the JSON gateway: range (paged), txn,
 * leases. Each request tries the endpoints in turn from the last that answered; an endpoint
 * that cannot be reached, or that answers that the cluster has no leader at the moment, is
 * passed over. The watch stream is in watch.c.
 */
#include "etcd/etcd_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CB_ETCD_PAGE 500

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void on_curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int parse_endpoint(const char *s, size_t n, struct cb_etcd_endpoint *ep, struct cb_err *err)
{
    const char *colon;
    char *end;
    long port;

    if (n == 0 || n >= sizeof(ep->host))
        return cb_err_set(err, CB_EINVAL, "malformed --store URL: an empty or too long endpoint");
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL || close + 1 >= s + n || close[1] != ':')
            return cb_err_set(err, CB_EINVAL,
                              "malformed --store URL: endpoint '%.*s' needs [ADDR]:PORT", (int)n,
                              s);
        colon = close + 1;
    } else {
        colon = memchr(s, ':', n);
        if (colon == NULL || memchr(colon + 1, ':', (size_t)(s + n - colon - 1)) != NULL)
            return cb_err_set(err, CB_EINVAL,
                              "malformed --store URL: endpoint '%.*s' needs HOST:PORT", (int)n, s);
    }
    if (colon == s)
        return cb_err_set(err, CB_EINVAL, "malformed --store URL: endpoint '%.*s' has no host",
                          (int)n, s);
    char digits[8];
    size_t dl = (size_t)(s + n - colon - 1);
    if (dl == 0 || dl >= sizeof(digits) || strspn(colon + 1, "0123456789") < dl)
        return cb_err_set(err, CB_EINVAL, "malformed --store URL: endpoint '%.*s' has a bad port",
                          (int)n, s);
    memcpy(digits, colon + 1, dl);
    digits[dl] = '\0';
    port = strtol(digits, &end, 10);
    if (port < 1 || port > 65535)
        return cb_err_set(err, CB_EINVAL, "malformed --store URL: port %s is out of range", digits);
    snprintf(ep->host, sizeof(ep->host), "%.*s", (int)(colon - s), s);
    ep->port = (int)port;
    return 0;
}

int cb_etcd_open(const char *url, struct cb_etcd **out, struct cb_err *err)
{
    static const char scheme[] = "etcd://";
    const char *p, *slash;
    struct cb_etcd *e;
    int ret;

    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return cb_err_set(err, CB_EINVAL,
                          "malformed --store URL '%s': it must look like "
                          "etcd://HOST:PORT[,HOST:PORT...]/PREFIX",
                          url);
    p = url + sizeof(scheme) - 1;
    slash = strchr(p, '/');
    if (slash == NULL || slash[1] == '\0' || strcmp(slash, "/") == 0)
        return cb_err_set(err, CB_EINVAL,
                          "malformed --store URL '%s': it needs a key prefix, as in "
                          "etcd://127.0.0.1:2379/certbind",
                          url);
    if (strlen(slash + 1) > 200 ||
        strspn(slash + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
                          "rstuvwxyz0123456789-_./") != strlen(slash + 1))
        return cb_err_set(err, CB_EINVAL,
                          "malformed --store URL '%s': the prefix may hold letters, digits and "
                          "- _ . / (at most 200)",
                          url);
    if ((e = calloc(1, sizeof(*e))) == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    while (p < slash) {
        const char *comma = memchr(p, ',', (size_t)(slash - p));
        const char *end = comma ? comma : slash;
        if (e->n_ep == CB_ETCD_MAX_ENDPOINTS) {
            ret = cb_err_set(err, CB_EINVAL, "malformed --store URL: more than %d endpoints",
                             CB_ETCD_MAX_ENDPOINTS);
            goto out_free;
        }
        if ((ret = parse_endpoint(p, (size_t)(end - p), &e->ep[e->n_ep], err)) != 0)
            goto out_free;
        if (comma != NULL && comma + 1 == slash) {
            ret = cb_err_set(err, CB_EINVAL, "malformed --store URL: an empty endpoint after ','");
            goto out_free;
        }
        e->n_ep++;
        p = comma ? comma + 1 : slash;
    }
    if (e->n_ep == 0) {
        ret = cb_err_set(err, CB_EINVAL, "malformed --store URL '%s': no HOST:PORT", url);
        goto out_free;
    }
    /* The prefix without trailing slashes, then one. */
    size_t pl = strlen(slash + 1);
    while (pl > 0 && slash[pl] == '/')
        pl--;
    snprintf(e->prefix, sizeof(e->prefix), "%.*s/", (int)pl, slash + 1);
    for (size_t i = 0; i < e->n_ep; i++) {
        size_t l = strlen(e->endpoints);
        snprintf(e->endpoints + l, sizeof(e->endpoints) - l, "%s%s:%d", i ? "," : "", e->ep[i].host,
                 e->ep[i].port);
    }
    e->timeout_ms = CB_ETCD_TIMEOUT_MS;
    pthread_once(&curl_once, on_curl_init);
    if (curl_init_rc != CURLE_OK || (e->curl = curl_easy_init()) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "cannot start libcurl");
        goto out_free;
    }
    *out = e;
    return 0;
out_free:
    free(e);
    return ret;
}

void cb_etcd_close(struct cb_etcd *e)
{
    if (e == NULL)
        return;
    curl_easy_cleanup(e->curl);
    free(e);
}

const char *cb_etcd_prefix(const struct cb_etcd *e)
{
    return e->prefix;
}

const char *cb_etcd_endpoints(const struct cb_etcd *e)
{
    return e->endpoints;
}

void cb_etcd__url(const struct cb_etcd *e, size_t i, const char *path, char *out, size_t size)
{
    snprintf(out, size, "http://%s:%d%s", e->ep[i].host, e->ep[i].port, path);
}

struct body {
    char *p;
    size_t len, cap;
    bool too_big;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct body *b = userp;
    size_t n = size * nmemb;
    if (b->len + n > CB_ETCD_MAX_RESPONSE) {
        b->too_big = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL)
            return 0;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

void cb_etcd__setup(struct cb_etcd *e, CURL *c, const char *url, const char *json,
                    struct curl_slist *hdrs)
{
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTP);
#endif
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)CB_ETCD_CONNECT_MS);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 2L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "certbind/" CB_VERSION);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, e->curl_err);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json));
}

/* gRPC codes after which another endpoint (or the same one a moment later) may do better:
 * Unavailable (no leader, stopping), DeadlineExceeded, Unknown (leader changed), Canceled
 * (a member shutting down: "the client connection is closing"). */
static bool retryable(int code)
{
    return code == 14 || code == 4 || code == 2 || code == 1;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int cb_etcd__call(struct cb_etcd *e, const char *path, json_t *req, bool idempotent, json_t **out,
                  struct cb_err *err)
{
    char *json = json_dumps(req, JSON_COMPACT);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    char last[640] = "";
    int ret = CB_EIO;
    struct timespec t0, now;

    if (json == NULL || hdrs == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* Rounds over every endpoint until one answers, within CB_ETCD_TOTAL_MS: a cluster
     * electing a leader answers "no leader" for a moment. */
    for (int round = 0;; round++) {
        for (size_t k = 0; k < e->n_ep; k++) {
            size_t i = (e->cur + k) % e->n_ep;
            char url[sizeof(e->ep[0].host) + 64];
            struct body b = {0};
            long status = 0;
            int code;

            cb_etcd__url(e, i, path, url, sizeof(url));
            e->curl_err[0] = '\0';
            cb_etcd__setup(e, e->curl, url, json, hdrs);
            curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
            curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &b);
            CURLcode rc = curl_easy_perform(e->curl);
            curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &status);
            if (rc != CURLE_OK) {
                bool sent = rc != CURLE_COULDNT_CONNECT && rc != CURLE_COULDNT_RESOLVE_HOST;
                snprintf(last, sizeof(last), "%s:%d: %s", e->ep[i].host, e->ep[i].port,
                         b.too_big ? "answer too large"
                                   : (e->curl_err[0] ? e->curl_err : curl_easy_strerror(rc)));
                free(b.p);
                if (b.too_big) {
                    ret = cb_err_set(err, CB_EIO, "etcd at %s", last);
                    goto out_free;
                }
                /* A change that may have reached the server is not sent twice. */
                if (sent && !idempotent) {
                    ret = cb_err_set(err, CB_EIO,
                                     "etcd at %s did not answer in time (%s); the change may or "
                                     "may not have been made: run the command again",
                                     e->endpoints, last);
                    goto out_free;
                }
                continue;
            }
            ret = cb_etcd__parse_body(b.p ? b.p : "", b.len, out, &code, err);
            free(b.p);
            if (ret == 0 && status != 200) {
                json_decref(*out);
                ret = cb_err_set(err, CB_EIO, "etcd at %s:%d answered HTTP %ld", e->ep[i].host,
                                 e->ep[i].port, status);
                code = 14;
            }
            if (ret != 0 && retryable(code)) {
                snprintf(last, sizeof(last), "%s:%d: %.300s", e->ep[i].host, e->ep[i].port,
                         err ? err->msg : "unavailable");
                continue;
            }
            e->cur = i;
            goto out_free;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (long)(now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (elapsed + 200 > CB_ETCD_TOTAL_MS || round >= 20)
            break;
        pause_ms(200);
    }
    ret = cb_err_set(err, CB_EIO, "etcd unreachable at %s: %s", e->endpoints, last);
out_free:
    curl_slist_free_all(hdrs);
    free(json);
    return ret;
}

/* The smallest key after every key that starts with prefix (etcd's range_end). */
static char *prefix_end(const char *prefix)
{
    char *end = strdup(prefix);
    if (end == NULL)
        return NULL;
    for (size_t n = strlen(end); n > 0; n--) {
        if ((unsigned char)end[n - 1] < 0xff) {
            end[n - 1]++;
            end[n] = '\0';
            return end;
        }
    }
    end[0] = '\0';
    return end;
}

json_t *cb_etcd__b64_json(const void *p, size_t len)
{
    char *s = cb_etcd_b64_encode(p, len);
    json_t *j = s ? json_string(s) : NULL;
    free(s);
    return j;
}

int cb_etcd__watch_range(const char *prefix, json_t **key, json_t **end)
{
    char *pe = prefix_end(prefix);
    *key = cb_etcd__b64_json(prefix, strlen(prefix));
    *end = pe ? cb_etcd__b64_json(pe, strlen(pe)) : NULL;
    free(pe);
    if (*key == NULL || *end == NULL) {
        json_decref(*key);
        json_decref(*end);
        return CB_ENOMEM;
    }
    return 0;
}

static json_t *int_str(int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    return json_string(buf);
}

int cb_etcd_range_prefix(struct cb_etcd *e, const char *prefix, int64_t rev,
                         struct cb_etcd_kvs *out, struct cb_err *err)
{
    char *pe = prefix_end(prefix), *from = strdup(prefix);
    int ret = 0;
    bool more = true;

    memset(out, 0, sizeof(*out));
    if (pe == NULL || from == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    while (more) {
        json_t *req = json_object(), *resp = NULL;
        json_object_set_new(req, "key", cb_etcd__b64_json(from, strlen(from)));
        json_object_set_new(req, "range_end", cb_etcd__b64_json(pe, strlen(pe)));
        json_object_set_new(req, "limit", int_str(CB_ETCD_PAGE));
        if (rev > 0)
            json_object_set_new(req, "revision", int_str(rev));
        ret = cb_etcd__call(e, "/v3/kv/range", req, true, &resp, err);
        json_decref(req);
        if (ret != 0)
            goto out_clear;
        int64_t hrev;
        size_t before = out->n;
        if ((ret = cb_etcd__header_rev(resp, &hrev, err)) == 0)
            ret = cb_etcd__parse_range(resp, out, &more, err);
        json_decref(resp);
        if (ret != 0)
            goto out_clear;
        if (rev == 0)
            rev = hrev; /* every further page at the first one's revision */
        out->revision = rev;
        if (more && out->n == before) {
            ret = cb_err_set(err, CB_EIO, "etcd answered an empty page that says more follow");
            goto out_clear;
        }
        if (more) {
            /* The next page starts just after the last key read. */
            const char *last = out->v[out->n - 1].key;
            size_t l = strlen(last);
            char *nf = realloc(from, l + 2);
            if (nf == NULL) {
                ret = cb_err_set(err, CB_ENOMEM, "out of memory");
                goto out_clear;
            }
            from = nf;
            memcpy(from, last, l);
            from[l] = '\x01'; /* keys hold no NUL: the smallest key after `last` */
            from[l + 1] = '\0';
        }
    }
    goto out_free;
out_clear:
    cb_etcd_kvs_clear(out);
out_free:
    free(pe);
    free(from);
    return ret;
}

int cb_etcd_get(struct cb_etcd *e, const char *key, struct cb_etcd_kv *out, int64_t *revision,
                struct cb_err *err)
{
    json_t *req = json_object(), *resp = NULL;
    struct cb_etcd_kvs kvs = {0};
    int64_t rev;
    bool more;
    int ret;

    memset(out, 0, sizeof(*out));
    json_object_set_new(req, "key", cb_etcd__b64_json(key, strlen(key)));
    ret = cb_etcd__call(e, "/v3/kv/range", req, true, &resp, err);
    json_decref(req);
    if (ret != 0)
        return ret;
    if ((ret = cb_etcd__header_rev(resp, &rev, err)) == 0)
        ret = cb_etcd__parse_range(resp, &kvs, &more, err);
    json_decref(resp);
    if (ret != 0)
        goto out_clear;
    if (revision != NULL)
        *revision = rev;
    if (kvs.n == 0) {
        ret = cb_err_set(err, CB_ENOENT, "%s is not in etcd", key);
        goto out_clear;
    }
    *out = kvs.v[0];
    memset(&kvs.v[0], 0, sizeof(kvs.v[0]));
out_clear:
    cb_etcd_kvs_clear(&kvs);
    return ret;
}

int cb_etcd_txn(struct cb_etcd *e, const struct cb_etcd_cmp *cmp, size_t n_cmp,
                const struct cb_etcd_op *ops, size_t n_ops, bool *ok, int64_t *revision,
                struct cb_err *err)
{
    json_t *req = json_object(), *jc = json_array(), *js = json_array(), *resp = NULL;
    int ret;

    *ok = false;
    for (size_t i = 0; i < n_cmp; i++) {
        json_t *c = json_object();
        bool mod = cmp[i].target == CB_ETCD_MOD_REV;
        json_object_set_new(c, "key", cb_etcd__b64_json(cmp[i].key, strlen(cmp[i].key)));
        json_object_set_new(c, "result", json_string("EQUAL"));
        json_object_set_new(c, "target", json_string(mod ? "MOD" : "CREATE"));
        json_object_set_new(c, mod ? "mod_revision" : "create_revision", int_str(cmp[i].rev));
        json_array_append_new(jc, c);
    }
    for (size_t i = 0; i < n_ops; i++) {
        json_t *o = json_object(), *r = json_object();
        json_object_set_new(r, "key", cb_etcd__b64_json(ops[i].key, strlen(ops[i].key)));
        if (ops[i].kind == CB_ETCD_PUT) {
            json_object_set_new(r, "value", cb_etcd__b64_json(ops[i].value, ops[i].value_len));
            if (ops[i].lease != 0)
                json_object_set_new(r, "lease", int_str(ops[i].lease));
            json_object_set_new(o, "request_put", r);
        } else {
            json_object_set_new(o, "request_delete_range", r);
        }
        json_array_append_new(js, o);
    }
    json_object_set_new(req, "compare", jc);
    json_object_set_new(req, "success", js);
    ret = cb_etcd__call(e, "/v3/kv/txn", req, false, &resp, err);
    json_decref(req);
    if (ret != 0)
        return ret;
    int64_t rev;
    json_t *s = json_object_get(resp, "succeeded");
    if ((ret = cb_etcd__header_rev(resp, &rev, err)) == 0) {
        if (s != NULL && !json_is_boolean(s))
            ret = cb_err_set(err, CB_EIO, "etcd answered a malformed txn");
        *ok = json_is_true(s);
        if (revision != NULL)
            *revision = rev;
    }
    json_decref(resp);
    return ret;
}

int cb_etcd_lease_grant(struct cb_etcd *e, int ttl_s, int64_t *id, struct cb_err *err)
{
    json_t *req = json_object(), *resp = NULL;
    int ret;

    json_object_set_new(req, "TTL", int_str(ttl_s));
    ret = cb_etcd__call(e, "/v3/lease/grant", req, false, &resp, err);
    json_decref(req);
    if (ret != 0)
        return ret;
    if (cb_etcd__int64(json_object_get(resp, "ID"), id) != 0 || *id == 0)
        ret = cb_err_set(err, CB_EIO, "etcd answered a lease grant without an ID");
    json_decref(resp);
    return ret;
}

int cb_etcd_lease_keepalive(struct cb_etcd *e, int64_t id, struct cb_err *err)
{
    json_t *req = json_object(), *resp = NULL, *r;
    int64_t ttl = 0;
    int ret;

    json_object_set_new(req, "ID", int_str(id));
    ret = cb_etcd__call(e, "/v3/lease/keepalive", req, true, &resp, err);
    json_decref(req);
    if (ret != 0)
        return ret;
    /* A stream of one message here: {"result":{"ID","TTL"}}; TTL absent or 0: expired. */
    r = json_object_get(resp, "result");
    if (!json_is_object(r) || cb_etcd__int64(json_object_get(r, "TTL"), &ttl) != 0)
        ret = cb_err_set(err, CB_EIO, "etcd answered a malformed lease keepalive");
    else if (ttl <= 0)
        ret = cb_err_set(err, CB_ENOENT, "the etcd lease %llx has expired", (long long)id);
    json_decref(resp);
    return ret;
}

int cb_etcd_lease_revoke(struct cb_etcd *e, int64_t id, struct cb_err *err)
{
    json_t *req = json_object(), *resp = NULL;
    int ret;

    json_object_set_new(req, "ID", int_str(id));
    ret = cb_etcd__call(e, "/v3/lease/revoke", req, true, &resp, err);
    json_decref(req);
    if (ret == CB_EIO && err != NULL && strstr(err->msg, "lease not found") != NULL)
        return cb_err_set(err, CB_ENOENT, "the etcd lease %llx has expired", (long long)id);
    json_decref(resp);
    return ret;
}
