/*
 * watch.c: the /v3/watch stream. One long POST whose answer is a stream of JSON objects,
 * split as they come (parse.c) with a bounded buffer; driven through a curl multi handle
 * so that *stop is looked at every CB_ETCD_WATCH_TICK_MS however quiet the stream is.
 */
#include "etcd/etcd_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CB_ETCD_WATCH_TICK_MS 200

struct watch_run {
    struct cb_etcd__splitter split;
    cb_etcd_watch_fn fn;
    void *ctx;
    int64_t next_rev; /* the next revision to ask for on a resume */
    bool created;     /* the server confirmed the watch */
    bool answered;    /* at least one byte came back */
    int result;       /* set when the run must end: fn's value or a failure */
    bool done;
    struct cb_err *err;
};

/* Calls fn once per revision of the message's events (a message may hold several). */
static int deliver(struct watch_run *w, const struct cb_etcd__watch_msg *m)
{
    size_t i = 0;
    if (m->n_ev == 0) {
        /* A progress notification (or the creation): the store is at m->revision. */
        if (m->revision >= w->next_rev) {
            int r = w->fn(NULL, 0, m->revision, w->ctx);
            if (r != 0)
                return r;
            w->next_rev = m->revision + 1;
        }
        return 0;
    }
    while (i < m->n_ev) {
        size_t j = i;
        int64_t rev = m->ev[i].kv.mod_rev;
        while (j < m->n_ev && m->ev[j].kv.mod_rev == rev)
            j++;
        if (rev >= w->next_rev) {
            int r = w->fn(&m->ev[i], j - i, rev, w->ctx);
            if (r != 0)
                return r;
            w->next_rev = rev + 1;
        }
        i = j;
    }
    return 0;
}

static int on_msg(struct watch_run *w, const char *text, size_t len)
{
    struct cb_etcd__watch_msg m;
    int ret = cb_etcd__parse_watch_msg(text, len, &m, w->err);

    if (ret != 0)
        return ret;
    if (m.compact_revision > 0) {
        ret = cb_err_set(w->err, CB_ENOENT,
                         "etcd compacted its history past revision %lld (compacted at %lld); "
                         "read everything again",
                         (long long)w->next_rev, (long long)m.compact_revision);
        goto out_clear;
    }
    if (m.canceled) {
        ret = cb_err_set(w->err, CB_EIO, "etcd canceled the watch%s%s",
                         m.cancel_reason[0] ? ": " : "", m.cancel_reason);
        goto out_clear;
    }
    /* The creation's header is the store's revision now, not how far the events have come:
     * events from an older start_rev follow it. */
    if (m.created) {
        w->created = true;
        if (m.n_ev == 0)
            goto out_clear;
    }
    ret = deliver(w, &m);
out_clear:
    cb_etcd__watch_msg_clear(&m);
    return ret;
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *userp)
{
    struct watch_run *w = userp;
    size_t n = size * nmemb;
    const char *obj;
    size_t len;

    if (w->done)
        return 0;
    w->answered = true;
    if ((w->result = cb_etcd__split_feed(&w->split, data, n, w->err)) != 0) {
        w->done = true;
        return 0;
    }
    while (cb_etcd__split_next(&w->split, &obj, &len)) {
        int r = on_msg(w, obj, len);
        if (r != 0) {
            w->result = r;
            w->done = true;
            return 0;
        }
    }
    return n;
}

static int watch_body(const char *prefix, int64_t start_rev, char **out)
{
    json_t *req = json_object(), *cr = json_object(), *key, *end;
    char rev[32];

    if (cb_etcd__watch_range(prefix, &key, &end) != 0) {
        json_decref(req);
        json_decref(cr);
        return CB_ENOMEM;
    }
    snprintf(rev, sizeof(rev), "%lld", (long long)start_rev);
    json_object_set_new(cr, "key", key);
    json_object_set_new(cr, "range_end", end);
    json_object_set_new(cr, "start_revision", json_string(rev));
    json_object_set_new(cr, "progress_notify", json_true());
    json_object_set_new(req, "create_request", cr);
    *out = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return *out ? 0 : CB_ENOMEM;
}

/* One stream on endpoint i until it ends: 0 when *stop, else w->result or CB_EIO. */
static int watch_once(struct cb_etcd *e, size_t i, const char *body, struct watch_run *w,
                      const _Atomic bool *stop, char *why, size_t why_size)
{
    CURL *c = curl_easy_init();
    CURLM *m = curl_multi_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    char url[sizeof(e->ep[0].host) + 64];
    int ret = 0, running = 1;

    if (c == NULL || m == NULL || hdrs == NULL) {
        ret = cb_err_set(w->err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    cb_etcd__url(e, i, "/v3/watch", url, sizeof(url));
    cb_etcd__setup(e, c, url, body, hdrs);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, w);
    curl_multi_add_handle(m, c);
    while (running) {
        if (stop != NULL && atomic_load(stop))
            goto out_remove;
        if (curl_multi_perform(m, &running) != CURLM_OK)
            break;
        if (running && curl_multi_poll(m, NULL, 0, CB_ETCD_WATCH_TICK_MS, NULL) != CURLM_OK)
            break;
    }
    if (w->done) {
        ret = w->result;
        goto out_remove;
    }
    CURLMsg *msg;
    int left;
    snprintf(why, why_size, "%s:%d: the watch stream ended", e->ep[i].host, e->ep[i].port);
    while ((msg = curl_multi_info_read(m, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE && msg->data.result != CURLE_OK)
            snprintf(why, why_size, "%s:%d: %s", e->ep[i].host, e->ep[i].port,
                     curl_easy_strerror(msg->data.result));
    ret = CB_EIO;
out_remove:
    curl_multi_remove_handle(m, c);
out_free:
    curl_slist_free_all(hdrs);
    curl_multi_cleanup(m);
    curl_easy_cleanup(c);
    return ret;
}

int cb_etcd_watch(struct cb_etcd *e, const char *prefix, int64_t start_rev, cb_etcd_watch_fn fn,
                  void *ctx, const _Atomic bool *stop, int64_t *resume_rev, struct cb_err *err)
{
    struct watch_run w = {.fn = fn, .ctx = ctx, .next_rev = start_rev, .err = err};
    char *body = NULL, why[512] = "";
    int ret = CB_EIO;

    if (resume_rev != NULL)
        *resume_rev = start_rev;
    /* Each endpoint once, from the last that answered; a stream that was working and broke
     * is not resumed here: the caller resumes from *resume_rev (after catching up). */
    for (size_t k = 0; k < e->n_ep; k++) {
        size_t i = (e->cur + k) % e->n_ep;
        free(body);
        body = NULL;
        if (watch_body(prefix, w.next_rev, &body) != 0) {
            ret = cb_err_set(err, CB_ENOMEM, "out of memory");
            goto out_free;
        }
        w.answered = w.created = false;
        ret = watch_once(e, i, body, &w, stop, why, sizeof(why));
        cb_etcd__split_free(&w.split);
        if (ret != CB_EIO || w.created) {
            if (w.created)
                e->cur = i;
            break;
        }
    }
    if (ret == CB_EIO && (err == NULL || why[0] != '\0'))
        cb_err_set(err, CB_EIO, "etcd unreachable at %s: %s", e->endpoints, why);
out_free:
    if (resume_rev != NULL)
        *resume_rev = w.next_rev;
    cb_etcd__split_free(&w.split);
    free(body);
    return ret;
}
