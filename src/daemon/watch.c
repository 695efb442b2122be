/* watch.c: inotify on linked certificate files, and the move to a renewed pair. */
#include "daemon/watch.h"
#include "tls/cert.h"
#include "util/log.h"

#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define CB_WATCH_SETTLE_MS 300 /* let a writer finish both files before looking */

struct dir_watch {
    uv_fs_event_t ev;
    char path[CB_PATH_MAX + 1];
    bool keep;
    struct dir_watch *next;
};

struct linked {
    char thumb[CB_THUMB_LEN + 1];
    char cert_path[CB_PATH_MAX + 1];
    char key_path[CB_PATH_MAX + 1];
    char last_error[256];
};

struct cb_watch {
    uv_loop_t *loop;
    struct cb_store *st;
    void (*on_change)(void *arg);
    void *arg;
    struct dir_watch *dirs;
    struct linked *linked;
    size_t n_linked;
    uv_timer_t settle;
    int closing;
};

struct collect {
    struct cb_watch *w;
    struct linked *v;
    size_t n;
};

static int collect_linked(const char *thumb, const char *cert_path, const char *key_path, void *arg)
{
    struct collect *c = arg;
    if (cb_store_owns(c->w->st, cert_path))
        return 0; /* a copy in the state folder: never rewritten */
    struct linked *nv = realloc(c->v, (c->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return CB_ENOMEM;
    c->v = nv;
    struct linked *l = &c->v[c->n++];
    memset(l, 0, sizeof(*l));
    snprintf(l->thumb, sizeof(l->thumb), "%s", thumb);
    snprintf(l->cert_path, sizeof(l->cert_path), "%s", cert_path);
    snprintf(l->key_path, sizeof(l->key_path), "%s", key_path);
    return 0;
}

struct move_ctx {
    struct cb_store *st;
    const char *from, *to;
    size_t moved;
    struct cb_err *err;
};

static int move_binding(const struct cb_binding *b, void *arg)
{
    struct move_ctx *m = arg;
    struct cb_binding nb = *b;
    /* the slot that held it: a dual binding keeps its other certificate */
    if (!cb_binding_replace_cert(&nb, m->from, m->to))
        return 0;
    m->moved++;
    return cb_store_binding_update(m->st, &nb, m->err);
}

/* A changed pair that is valid again: the new certificate takes the old one's bindings. */
static int relink(struct cb_watch *w, struct linked *l, const struct cb_cert_info *info,
                  size_t *moved, struct cb_err *err)
{
    struct move_ctx m = {.st = w->st, .from = l->thumb, .to = info->thumbprint, .err = err};
    int ret;

    if ((ret = cb_store_begin(w->st, err)) != 0)
        return ret;
    if ((ret = cb_store_cert_put(w->st, info, l->cert_path, l->key_path, err)) != 0 ||
        (ret = cb_store_binding_foreach(w->st, l->thumb, move_binding, &m, err)) != 0 ||
        (ret = cb_store_cert_delete(w->st, l->thumb, err)) != 0 ||
        (ret = cb_store_commit(w->st, err)) != 0) {
        cb_store_rollback(w->st);
        return ret;
    }
    *moved = m.moved;
    return 0;
}

static void on_settled(uv_timer_t *t)
{
    struct cb_watch *w = t->data;
    bool changed = false;

    for (size_t i = 0; i < w->n_linked; i++) {
        struct linked *l = &w->linked[i];
        struct cb_cert_bundle *b = NULL;
        struct cb_cert_info info;
        struct cb_err err = {0};
        char q[600];

        if (cb_cert_bundle_load(l->cert_path, l->key_path, NULL, &b, &err) != 0 ||
            cb_cert_bundle_info(b, &info, &err) != 0) {
            cb_cert_bundle_free(b);
            if (strncmp(l->last_error, err.msg, sizeof(l->last_error) - 1) != 0) {
                snprintf(l->last_error, sizeof(l->last_error), "%.255s", err.msg);
                cb_log("warn", "link_waiting", "cert=%s certhash=%s reason=%s", l->cert_path,
                       l->thumb, cb_log_quote(err.msg, q, sizeof(q)));
            }
            continue;
        }
        cb_cert_bundle_free(b);
        l->last_error[0] = '\0';
        if (strcmp(info.thumbprint, l->thumb) != 0) {
            size_t moved = 0;
            if (relink(w, l, &info, &moved, &err) == 0) {
                cb_log("info", "link_renewed", "cert=%s from=%s to=%s bindings=%zu", l->cert_path,
                       l->thumb, info.thumbprint, moved);
                memcpy(l->thumb, info.thumbprint, sizeof(l->thumb));
                changed = true;
            } else {
                cb_log("error", "link_failed", "cert=%s reason=%s", l->cert_path,
                       cb_log_quote(err.msg, q, sizeof(q)));
            }
        }
        cb_cert_info_clear(&info);
    }
    if (changed && w->on_change != NULL)
        w->on_change(w->arg);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    struct cb_watch *w = h->data;
    (void)filename;
    (void)events;
    (void)status;
    uv_timer_start(&w->settle, on_settled, CB_WATCH_SETTLE_MS, 0);
}

static void on_dir_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct cb_watch *w = h->data;
    free(w->linked);
    free(w);
}

int cb_watch_new(uv_loop_t *loop, struct cb_store *st, void (*on_change)(void *arg), void *arg,
                 struct cb_watch **out, struct cb_err *err)
{
    struct cb_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    w->loop = loop;
    w->st = st;
    w->on_change = on_change;
    w->arg = arg;
    uv_timer_init(loop, &w->settle);
    w->settle.data = w;
    *out = w;
    cb_watch_refresh(w);
    return 0;
}

void cb_watch_refresh(struct cb_watch *w)
{
    struct collect c = {.w = w};
    struct cb_err err = {0};

    if (cb_store_cert_paths_foreach(w->st, collect_linked, &c, &err) != 0) {
        free(c.v);
        return;
    }
    /* Keep what each linked file last reported, so a waiting pair is not logged twice. */
    for (size_t i = 0; i < c.n; i++)
        for (size_t j = 0; j < w->n_linked; j++)
            if (strcmp(c.v[i].cert_path, w->linked[j].cert_path) == 0)
                memcpy(c.v[i].last_error, w->linked[j].last_error, sizeof(c.v[i].last_error));
    free(w->linked);
    w->linked = c.v;
    w->n_linked = c.n;

    for (struct dir_watch *d = w->dirs; d; d = d->next)
        d->keep = false;
    for (size_t i = 0; i < w->n_linked; i++) {
        /* The folders of both files, and of their targets when they are symlinks: a
         * re-pointed link changes the first, a target rewritten in place the second. */
        for (int k = 0; k < 4; k++) {
            char tmp[PATH_MAX];
            const char *path = k % 2 == 0 ? w->linked[i].cert_path : w->linked[i].key_path;
            if (k < 2)
                snprintf(tmp, sizeof(tmp), "%s", path);
            else if (realpath(path, tmp) == NULL || strlen(tmp) > CB_PATH_MAX)
                continue;
            const char *dir = dirname(tmp);
            struct dir_watch *d;
            for (d = w->dirs; d; d = d->next)
                if (strcmp(d->path, dir) == 0)
                    break;
            if (d != NULL) {
                d->keep = true;
                continue;
            }
            if ((d = calloc(1, sizeof(*d))) == NULL)
                continue;
            snprintf(d->path, sizeof(d->path), "%s", dir);
            uv_fs_event_init(w->loop, &d->ev);
            d->ev.data = w;
            if (uv_fs_event_start(&d->ev, on_fs_event, d->path, 0) != 0) {
                cb_log("warn", "watch_failed", "dir=%s", d->path);
                d->ev.data = d;
                uv_close((uv_handle_t *)&d->ev, on_dir_closed);
                continue;
            }
            d->keep = true;
            d->next = w->dirs;
            w->dirs = d;
        }
    }
    for (struct dir_watch **pp = &w->dirs; *pp;) {
        struct dir_watch *d = *pp;
        if (d->keep) {
            pp = &d->next;
            continue;
        }
        *pp = d->next;
        d->ev.data = d;
        uv_close((uv_handle_t *)&d->ev, on_dir_closed);
    }
    /* A pair may have changed while nobody watched (at start, or a new link). */
    if (w->n_linked > 0)
        uv_timer_start(&w->settle, on_settled, 0, 0);
}

void cb_watch_close(struct cb_watch *w)
{
    if (w == NULL)
        return;
    while (w->dirs != NULL) {
        struct dir_watch *d = w->dirs;
        w->dirs = d->next;
        d->ev.data = d;
        uv_close((uv_handle_t *)&d->ev, on_dir_closed);
    }
    uv_close((uv_handle_t *)&w->settle, on_timer_closed);
}
