/*
 * Internal to src/etcd: the client handle and the request helpers that etcd.c and watch.c
 * share.
 */
#ifndef CB_ETCD_ETCD_INT_H
#define CB_ETCD_ETCD_INT_H

#include "etcd/parse.h"

#include <curl/curl.h>

#define CB_ETCD_MAX_ENDPOINTS 16
#define CB_ETCD_CONNECT_MS 1000 /* one endpoint's connect */
#define CB_ETCD_TIMEOUT_MS 5000 /* one request to one endpoint */
#define CB_ETCD_TOTAL_MS 10000  /* one call over every endpoint, rounds included */

struct cb_etcd_endpoint {
    char host[256];
    int port;
};

struct cb_etcd {
    struct cb_etcd_endpoint ep[CB_ETCD_MAX_ENDPOINTS];
    size_t n_ep, cur; /* cur: the endpoint that answered last */
    char prefix[256];
    char endpoints[CB_ETCD_MAX_ENDPOINTS * 264];
    long timeout_ms;
    CURL *curl; /* owned, for the plain requests */
    char curl_err[CURL_ERROR_SIZE];
};

/* "http://H:P" + path of endpoint i. */
void cb_etcd__url(const struct cb_etcd *e, size_t i, const char *path, char *out, size_t size);
/* Sets a handle up for a POST of json (borrowed until it is done) to url. */
void cb_etcd__setup(struct cb_etcd *e, CURL *c, const char *url, const char *json,
                    struct curl_slist *hdrs);
/* POSTs req to path on the endpoints in turn; owned *out is the parsed answer. idempotent:
 * a request that may have reached a server is sent again to the next one. */
int cb_etcd__call(struct cb_etcd *e, const char *path, json_t *req, bool idempotent, json_t **out,
                  struct cb_err *err) CB_MUST_CHECK;
/* A JSON string of base64(p[0..len)); NULL when out of memory. */
json_t *cb_etcd__b64_json(const void *p, size_t len);
/* key and range_end (base64 JSON strings, owned) covering every key under prefix. */
int cb_etcd__watch_range(const char *prefix, json_t **key, json_t **end) CB_MUST_CHECK;

#endif
