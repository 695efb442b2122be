/*
 * parse.c: base64 and the parsers of the etcd JSON gateway's answers. Everything here
 * reads bytes from the network: every field is checked for type and range, sizes are
 * bounded, and nothing is trusted to be present.
 */
#include "etcd/parse.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *cb_etcd_b64_encode(const void *in, size_t len)
{
    const unsigned char *p = in;
    char *out, *o;

    if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    out = malloc((len + 2) / 3 * 4 + 1);
    if (out == NULL)
        return NULL;
    o = out;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        *o++ = b64_chars[(v >> 18) & 63];
        *o++ = b64_chars[(v >> 12) & 63];
        *o++ = i + 1 < len ? b64_chars[(v >> 6) & 63] : '=';
        *o++ = i + 2 < len ? b64_chars[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int cb_etcd_b64_decode(const char *in, unsigned char **out, size_t *out_len)
{
    size_t n = strlen(in), o = 0;
    unsigned acc = 0;
    int bits = 0;
    unsigned char *buf;

    while (n > 0 && in[n - 1] == '=')
        n--;
    if (n % 4 == 1 || strlen(in) - n > 2)
        return CB_EINVAL;
    buf = malloc(n / 4 * 3 + 3 + 1);
    if (buf == NULL)
        return CB_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val(in[i]);
        if (v < 0) {
            free(buf);
            return CB_EINVAL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}

int cb_etcd__int64(const json_t *v, int64_t *out)
{
    *out = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return CB_EINVAL;
    const char *s = json_string_value(v);
    char *end;
    if (s[0] == '\0' || !((s[0] >= '0' && s[0] <= '9') || s[0] == '-'))
        return CB_EINVAL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return CB_EINVAL;
    *out = (int64_t)x;
    return 0;
}

static bool is_compacted(const char *msg)
{
    return msg != NULL && strstr(msg, "compacted") != NULL;
}

int cb_etcd__parse_body(const char *body, size_t len, json_t **out, int *code, struct cb_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    int64_t c = 0;

    *code = 0;
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return cb_err_set(err, CB_EIO, "etcd answered something that is not a JSON object");
    }
    json_t *e = json_object_get(root, "error");
    if (e != NULL) {
        const char *msg = json_string_value(json_object_get(root, "message"));
        if (msg == NULL)
            msg = json_is_string(e) ? json_string_value(e) : "unknown error";
        if (cb_etcd__int64(json_object_get(root, "code"), &c) != 0)
            c = 2;
        *code = c > 0 && c < 100 ? (int)c : 2;
        int ret = is_compacted(msg) ? cb_err_set(err, CB_ENOENT, "etcd: %s (compacted)", msg)
                                    : cb_err_set(err, CB_EIO, "etcd: %s", msg);
        json_decref(root);
        return ret;
    }
    *out = root;
    return 0;
}

int cb_etcd__header_rev(const json_t *resp, int64_t *rev, struct cb_err *err)
{
    json_t *h = json_object_get(resp, "header");
    if (!json_is_object(h) || cb_etcd__int64(json_object_get(h, "revision"), rev) != 0 || *rev < 0)
        return cb_err_set(err, CB_EIO, "etcd answered without a valid header revision");
    return 0;
}

void cb_etcd_kv_clear(struct cb_etcd_kv *kv)
{
    if (kv == NULL)
        return;
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

void cb_etcd_kvs_clear(struct cb_etcd_kvs *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->n; i++)
        cb_etcd_kv_clear(&k->v[i]);
    free(k->v);
    memset(k, 0, sizeof(*k));
}

static int b64_field(const json_t *o, const char *name, unsigned char **out, size_t *len)
{
    json_t *v = json_object_get(o, name);
    if (v == NULL) {
        *out = calloc(1, 1);
        *len = 0;
        return *out ? 0 : CB_ENOMEM;
    }
    if (!json_is_string(v))
        return CB_EINVAL;
    return cb_etcd_b64_decode(json_string_value(v), out, len);
}

int cb_etcd__parse_kv(const json_t *o, struct cb_etcd_kv *kv, struct cb_err *err)
{
    size_t klen;
    int ret;

    memset(kv, 0, sizeof(*kv));
    if (!json_is_object(o))
        return cb_err_set(err, CB_EIO, "etcd answered a key-value that is not an object");
    if ((ret = b64_field(o, "key", (unsigned char **)&kv->key, &klen)) != 0)
        goto out_bad;
    if (klen == 0 || memchr(kv->key, '\0', klen) != NULL) {
        ret = CB_EINVAL;
        goto out_bad;
    }
    if ((ret = b64_field(o, "value", &kv->value, &kv->value_len)) != 0)
        goto out_bad;
    if (cb_etcd__int64(json_object_get(o, "create_revision"), &kv->create_rev) != 0 ||
        cb_etcd__int64(json_object_get(o, "mod_revision"), &kv->mod_rev) != 0 ||
        kv->create_rev < 0 || kv->mod_rev < 0) {
        ret = CB_EINVAL;
        goto out_bad;
    }
    return 0;
out_bad:
    cb_etcd_kv_clear(kv);
    if (ret == CB_ENOMEM)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    return cb_err_set(err, CB_EIO, "etcd answered a malformed key-value");
}

int cb_etcd__parse_range(const json_t *resp, struct cb_etcd_kvs *out, bool *more,
                         struct cb_err *err)
{
    json_t *kvs = json_object_get(resp, "kvs"), *m = json_object_get(resp, "more");
    size_t i;
    json_t *o;

    *more = json_is_true(m);
    if (m != NULL && !json_is_boolean(m))
        return cb_err_set(err, CB_EIO, "etcd answered a malformed range (more)");
    if (kvs == NULL)
        return 0;
    if (!json_is_array(kvs))
        return cb_err_set(err, CB_EIO, "etcd answered a malformed range (kvs)");
    size_t n = json_array_size(kvs);
    if (n == 0)
        return 0;
    struct cb_etcd_kv *nv = realloc(out->v, (out->n + n) * sizeof(*nv));
    if (nv == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    out->v = nv;
    json_array_foreach(kvs, i, o)
    {
        int ret = cb_etcd__parse_kv(o, &out->v[out->n], err);
        if (ret != 0)
            return ret;
        out->n++;
    }
    return 0;
}

void cb_etcd__watch_msg_clear(struct cb_etcd__watch_msg *m)
{
    for (size_t i = 0; i < m->n_ev; i++)
        cb_etcd_kv_clear(&m->ev[i].kv);
    free(m->ev);
    memset(m, 0, sizeof(*m));
}

static int parse_events(const json_t *evs, struct cb_etcd__watch_msg *m, struct cb_err *err)
{
    size_t i, n;
    json_t *o;

    if (evs == NULL)
        return 0;
    if (!json_is_array(evs))
        return cb_err_set(err, CB_EIO, "etcd sent malformed watch events");
    if ((n = json_array_size(evs)) == 0)
        return 0;
    if ((m->ev = calloc(n, sizeof(*m->ev))) == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    json_array_foreach(evs, i, o)
    {
        json_t *t = json_object_get(o, "type");
        struct cb_etcd_event *ev = &m->ev[m->n_ev];
        if (!json_is_object(o))
            return cb_err_set(err, CB_EIO, "etcd sent a malformed watch event");
        if (t == NULL || (json_is_string(t) && strcmp(json_string_value(t), "PUT") == 0) ||
            (json_is_integer(t) && json_integer_value(t) == 0))
            ev->type = CB_ETCD_EV_PUT;
        else if ((json_is_string(t) && strcmp(json_string_value(t), "DELETE") == 0) ||
                 (json_is_integer(t) && json_integer_value(t) == 1))
            ev->type = CB_ETCD_EV_DELETE;
        else
            return cb_err_set(err, CB_EIO, "etcd sent a watch event of unknown type");
        int ret = cb_etcd__parse_kv(json_object_get(o, "kv"), &ev->kv, err);
        if (ret != 0)
            return ret;
        m->n_ev++;
        /* Events come in revision order; a server that breaks it is refused. */
        if (m->n_ev > 1 && ev->kv.mod_rev < m->ev[m->n_ev - 2].kv.mod_rev)
            return cb_err_set(err, CB_EIO, "etcd sent watch events out of revision order");
    }
    return 0;
}

int cb_etcd__parse_watch_msg(const char *text, size_t len, struct cb_etcd__watch_msg *out,
                             struct cb_err *err)
{
    json_error_t jerr;
    json_t *root, *r;
    int ret;

    memset(out, 0, sizeof(*out));
    if (len > CB_ETCD_MAX_RESPONSE)
        return cb_err_set(err, CB_EIO, "etcd sent a watch message too large");
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        ret = cb_err_set(err, CB_EIO, "etcd sent a watch message that is not a JSON object");
        goto out_free;
    }
    if ((r = json_object_get(root, "error")) != NULL) {
        const char *msg = json_string_value(json_object_get(r, "message"));
        ret = cb_err_set(err, CB_EIO, "etcd ended the watch: %s", msg ? msg : "unknown error");
        goto out_free;
    }
    r = json_object_get(root, "result");
    if (!json_is_object(r)) {
        ret = cb_err_set(err, CB_EIO, "etcd sent a watch message without a result");
        goto out_free;
    }
    json_t *c = json_object_get(r, "created"), *x = json_object_get(r, "canceled");
    if ((c != NULL && !json_is_boolean(c)) || (x != NULL && !json_is_boolean(x))) {
        ret = cb_err_set(err, CB_EIO, "etcd sent a malformed watch message");
        goto out_free;
    }
    out->created = json_is_true(c);
    out->canceled = json_is_true(x);
    if ((ret = cb_etcd__header_rev(r, &out->revision, err)) != 0)
        goto out_free;
    if (cb_etcd__int64(json_object_get(r, "compact_revision"), &out->compact_revision) != 0 ||
        out->compact_revision < 0) {
        ret = cb_err_set(err, CB_EIO, "etcd sent a malformed compact_revision");
        goto out_free;
    }
    const char *reason = json_string_value(json_object_get(r, "cancel_reason"));
    snprintf(out->cancel_reason, sizeof(out->cancel_reason), "%s", reason ? reason : "");
    if ((ret = parse_events(json_object_get(r, "events"), out, err)) != 0)
        goto out_free;
    json_decref(root);
    return 0;
out_free:
    json_decref(root);
    cb_etcd__watch_msg_clear(out);
    return ret;
}

/* ---- the stream splitter ---- */

int cb_etcd__split_feed(struct cb_etcd__splitter *s, const char *data, size_t n, struct cb_err *err)
{
    if (n > CB_ETCD_MAX_RESPONSE || s->len + n > CB_ETCD_MAX_RESPONSE)
        return cb_err_set(err, CB_EIO, "etcd sent a watch message larger than %u bytes",
                          CB_ETCD_MAX_RESPONSE);
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (nb == NULL)
            return cb_err_set(err, CB_ENOMEM, "out of memory");
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return 0;
}

/* Drops the bytes before off (a consumed object and the blanks around it). */
static void split_drop(struct cb_etcd__splitter *s, size_t off)
{
    memmove(s->buf, s->buf + off, s->len - off);
    s->len -= off;
    s->scan -= off;
}

int cb_etcd__split_next(struct cb_etcd__splitter *s, const char **obj, size_t *len)
{
    if (s->pending > 0) {
        split_drop(s, s->pending);
        s->pending = 0;
    }
    /* Leading blanks between objects go; any other byte outside an object starts one
     * (a non-object then fails to parse, which the caller reports). */
    if (s->depth == 0) {
        size_t i = 0;
        while (i < s->len &&
               (s->buf[i] == ' ' || s->buf[i] == '\n' || s->buf[i] == '\r' || s->buf[i] == '\t'))
            i++;
        if (s->scan < i)
            s->scan = i;
        split_drop(s, i);
    }
    for (; s->scan < s->len; s->scan++) {
        char c = s->buf[s->scan];
        if (s->in_str) {
            if (s->esc)
                s->esc = false;
            else if (c == '\\')
                s->esc = true;
            else if (c == '"')
                s->in_str = false;
            continue;
        }
        if (c == '"')
            s->in_str = true;
        else if (c == '{' || c == '[')
            s->depth++;
        else if ((c == '}' || c == ']') && s->depth > 0)
            s->depth--;
        if (s->depth == 0) {
            /* A whole value from buf[0] to scan: handed out, dropped at the next call. */
            size_t end = ++s->scan;
            *obj = s->buf;
            *len = end;
            s->pending = end;
            return 1;
        }
    }
    return 0;
}

void cb_etcd__split_free(struct cb_etcd__splitter *s)
{
    free(s->buf);
    memset(s, 0, sizeof(*s));
}
