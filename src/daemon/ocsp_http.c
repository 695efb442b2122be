/* ocsp_http.c: the OCSP POST through libcurl (daemon/ocsp_http.h). */
#include "daemon/ocsp_http.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct body {
    unsigned char *p;
    size_t len, max;
    bool too_large;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;

    if (n > b->max - b->len) {
        b->too_large = true;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    unsigned char *np = realloc(b->p, b->len + n + 1);
    if (np == NULL)
        return 0;
    memcpy(np + b->len, data, n);
    b->p = np;
    b->len += n;
    return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    volatile int *abort = arg;
    (void)dt, (void)dn, (void)ut, (void)un;
    return abort != NULL && *abort != 0;
}

int cb_ocsp_http_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : CB_ENOMEM;
}

void cb_ocsp_http_cleanup(void)
{
    curl_global_cleanup();
}

int cb_ocsp_http_post(const char *url, const unsigned char *req, size_t len, size_t max,
                      volatile int *abort, unsigned char **body, size_t *body_len,
                      struct cb_err *err)
{
    struct body b = {.max = max};
    struct curl_slist *hdrs = NULL, *h;
    char cerr[CURL_ERROR_SIZE] = "";
    long code = 0;
    int ret = 0;
    CURL *curl = curl_easy_init();

    if (curl == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    if ((h = curl_slist_append(NULL, "Content-Type: application/ocsp-request")) == NULL ||
        (hdrs = h, h = curl_slist_append(hdrs, "Accept: application/ocsp-response")) == NULL ||
        (hdrs = h, h = curl_slist_append(hdrs, "Expect:")) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    hdrs = h;
    curl_easy_setopt(curl, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http");
#else
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTP);
#endif
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)CB_OCSP_CONNECT_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)CB_OCSP_TOTAL_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "certbind/" CB_VERSION);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, (const char *)req);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, (void *)abort);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        ret = cb_err_set(err, CB_EFAILED, "OCSP responder %.300s: %s", url,
                         b.too_large ? "the answer is larger than an OCSP response can be"
                         : cerr[0]   ? cerr
                                     : curl_easy_strerror(rc));
        goto out_free;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        ret = cb_err_set(err, CB_EFAILED, "OCSP responder %.300s answered HTTP %ld", url, code);
        goto out_free;
    }
    if (b.len == 0) {
        ret = cb_err_set(err, CB_EFAILED, "OCSP responder %.300s answered an empty body", url);
        goto out_free;
    }
    *body = b.p;
    *body_len = b.len;
    b.p = NULL;
out_free:
    free(b.p);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    return ret;
}
