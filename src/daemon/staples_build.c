/* staples_build.c: a runtime's OCSP responses (daemon/staples_build.h). */
#include "daemon/staples_build.h"
#include "store/ocsp.h"
#include "tls/staple.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct want {
    const char *thumb; /* borrowed from the snapshot */
    bool read;         /* read from the cache (else shared with the old runtime) */
};

static int cmp_want(const void *a, const void *b)
{
    return strcmp(((const struct want *)a)->thumb, ((const struct want *)b)->thumb);
}

static int cmp_thumb(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

int cb_staples_build(struct cb_store *st, struct cb_runtime *rt, const struct cb_runtime *old,
                     const uint32_t *src, const char (*changed)[CB_THUMB_LEN + 1], size_t n_changed)
{
    size_t n = cb_snapshot_count(rt->snap), nw = 0;
    struct want *w = calloc(n ? 2 * n : 1, sizeof(*w)); /* a pair: two certificates */
    struct cb_tls_staples *s = cb_tls_staples_new();
    char(*sorted)[CB_THUMB_LEN + 1] = NULL;
    int64_t now = (int64_t)time(NULL);
    int ret = CB_ENOMEM;

    if (w == NULL || s == NULL)
        goto out_free;
    if (n_changed > 0) {
        if ((sorted = malloc(n_changed * sizeof(*sorted))) == NULL)
            goto out_free;
        memcpy(sorted, changed, n_changed * sizeof(*sorted));
        qsort(sorted, n_changed, sizeof(*sorted), cmp_thumb);
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(rt->snap, i);
        if (b->kind == CB_KEY_CCS || b->certhash[0] == '\0' ||
            (b->flags & (CB_OPT_DISABLEOCSPSTAPLING | CB_OPT_DAMAGED)))
            continue;
        uint32_t from = src != NULL ? src[i] : i;
        const char *thumbs[2] = {b->certhash, b->certhash2};
        for (int k = 0; k < 2 && thumbs[k][0] != '\0'; k++) { /* certhash=T1,T2: both */
            w[nw].thumb = thumbs[k];
            w[nw].read = old == NULL || from == CB_SNAPSHOT_NEW ||
                         (sorted != NULL && bsearch(thumbs[k], sorted, n_changed, sizeof(*sorted),
                                                    cmp_thumb) != NULL);
            nw++;
        }
    }
    if (nw > 1)
        qsort(w, nw, sizeof(*w), cmp_want);
    for (size_t i = 0; i < nw; i++) {
        bool read = w[i].read;
        while (i + 1 < nw && strcmp(w[i].thumb, w[i + 1].thumb) == 0)
            read |= w[++i].read; /* one certificate, several bindings: once */
        if (!read) {
            if (cb_tls_staples_add_from(s, old->staples, w[i].thumb) != 0)
                goto out_free;
            continue;
        }
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
    free(sorted);
    free(w);
    return ret;
}
