/* staples_build.c: a runtime's OCSP responses (daemon/staples_build.h). */
#include "daemon/staples_build.h"
#include "store/ocsp.h"
#include "tls/staple.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct want {
    const char *thumb; /* borrowed from the snapshot */
};

static int cmp_want(const void *a, const void *b)
{
    return strcmp(((const struct want *)a)->thumb, ((const struct want *)b)->thumb);
}

static int cmp_thumb(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

int cb_staples_build(struct cb_store *st, struct cb_runtime *rt)
{
    size_t n = cb_snapshot_count(rt->snap), nw = 0;
    struct want *w = calloc(n ? 2 * n : 1, sizeof(*w)); /* a pair: two certificates */
    struct cb_tls_staples *s = cb_tls_staples_new();
    int64_t now = (int64_t)time(NULL);
    char(*cached)[CB_THUMB_LEN + 1] = NULL;
    size_t n_cached = 0;
    bool listed = true;
    int ret = CB_ENOMEM;

    if (w == NULL || s == NULL)
        goto out_free;
    /* Only what the cache holds is read; when the folder cannot be listed, every one is
     * tried (and an unreadable one served without a staple, as before). */
    if (cb_store_ocsp_list(st, &cached, &n_cached, NULL) != 0)
        listed = false;
    for (uint32_t i = 0; i < n && (!listed || n_cached > 0); i++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(rt->snap, i);
        if (b->kind == CB_KEY_CCS || b->certhash[0] == '\0' ||
            (b->flags & (CB_OPT_DISABLEOCSPSTAPLING | CB_OPT_DAMAGED)))
            continue;
        const char *thumbs[2] = {b->certhash, b->certhash2};
        for (int k = 0; k < 2 && thumbs[k][0] != '\0'; k++) /* certhash=T1,T2: both */
            if (!listed || bsearch(thumbs[k], cached, n_cached, sizeof(*cached), cmp_thumb) != NULL)
                w[nw++].thumb = thumbs[k];
    }
    /* Sorted, so that a certificate of several bindings is read once: only those with a
     * cached response (at 10^6 bindings and no response yet, nothing to sort). */
    if (nw > 1)
        qsort(w, nw, sizeof(*w), cmp_want);
    for (size_t i = 0; i < nw; i++) {
        while (i + 1 < nw && strcmp(w[i].thumb, w[i + 1].thumb) == 0)
            i++; /* one certificate, several bindings: once */
        unsigned char *der = NULL;
        size_t len = 0;
        if (cb_store_ocsp_read(st, w[i].thumb, &der, &len, NULL) != 0)
            continue; /* none cached (yet), or unreadable: no staple */
        int r = cb_tls_staples_add(s, w[i].thumb, der, len, now);
        free(der);
        if (r == CB_ENOMEM)
            goto out_free;
    }
    cb_tls_staples_finish(s);
    cb_tls_staples_unref(rt->staples);
    rt->staples = s;
    s = NULL;
    ret = 0;
out_free:
    cb_tls_staples_unref(s);
    free(cached);
    free(w);
    return ret;
}

/* Whether binding b staples (its certificates' responses are wanted). */
static bool staples(const struct cb_snap_binding *b)
{
    return b->kind != CB_KEY_CCS && b->certhash[0] != '\0' &&
           !(b->flags & (CB_OPT_DISABLEOCSPSTAPLING | CB_OPT_DAMAGED));
}

int cb_staples_derive(struct cb_store *st, struct cb_runtime *rt, const struct cb_runtime *old,
                      const struct cb_snapshot_move *moves, size_t n_moves,
                      const char (*changed)[CB_THUMB_LEN + 1], size_t n_changed)
{
    /* What to read: the changed responses, and the new bindings' certificates old has no
     * response for (read, most of the time, to find there is none cached). */
    size_t cap = n_changed + 2 * n_moves, n_read = 0, n_found = 0;
    char(*read)[CB_THUMB_LEN + 1] = malloc((cap ? cap : 1) * sizeof(*read));
    struct response {
        unsigned char *der;
        size_t len;
    } *found = calloc(cap ? cap : 1, sizeof(*found));
    struct cb_tls_staples *s = NULL;
    int64_t now = (int64_t)time(NULL);
    int ret = CB_ENOMEM;

    if (read == NULL || found == NULL)
        goto out_free;
    for (size_t k = 0; k < n_changed; k++)
        memcpy(read[n_read++], changed[k], sizeof(*read));
    for (size_t k = 0; k < n_moves; k++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(rt->snap, moves[k].at);
        if (moves[k].from != CB_SNAPSHOT_NEW || !staples(b))
            continue;
        const char *thumbs[2] = {b->certhash, b->certhash2};
        for (int t = 0; t < 2 && thumbs[t][0] != '\0'; t++)
            if (cb_tls_staples_find(old->staples, thumbs[t]) == NULL)
                snprintf(read[n_read++], sizeof(*read), "%s", thumbs[t]);
    }
    if (n_read > 1)
        qsort(read, n_read, sizeof(*read), cmp_thumb);
    for (size_t i = 0; i < n_read; i++) {
        if (i > 0 && strcmp(read[i - 1], read[i]) == 0)
            continue;
        memmove(read[n_found], read[i], sizeof(*read));
        if (cb_store_ocsp_read(st, read[n_found], &found[n_found].der, &found[n_found].len, NULL) !=
            0)
            found[n_found].der = NULL; /* none cached (yet), or unreadable: no staple */
        n_found++;
    }
    bool any = n_changed > 0;
    for (size_t i = 0; i < n_found && !any; i++)
        any = found[i].der != NULL;
    if (!any) {
        /* Nothing to add or replace: old's set as it is. */
        cb_tls_staples_unref(rt->staples);
        rt->staples = cb_tls_staples_ref(old->staples);
        ret = 0;
        goto out_free;
    }
    /* Old's responses but those read again, then what was read. */
    if ((s = cb_tls_staples_new()) == NULL ||
        cb_tls_staples_add_all_from(s, old->staples, (const char(*)[CB_THUMB_LEN + 1]) read,
                                    n_found) != 0)
        goto out_free;
    for (size_t i = 0; i < n_found; i++) {
        if (found[i].der == NULL)
            continue;
        if (cb_tls_staples_add(s, read[i], found[i].der, found[i].len, now) == CB_ENOMEM)
            goto out_free;
    }
    cb_tls_staples_finish(s);
    cb_tls_staples_unref(rt->staples);
    rt->staples = s;
    s = NULL;
    ret = 0;
out_free:
    for (size_t i = 0; found != NULL && i < n_found; i++)
        free(found[i].der);
    cb_tls_staples_unref(s);
    free(found);
    free(read);
    return ret;
}
