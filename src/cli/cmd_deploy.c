/*
 * cmd_deploy.c: `certbind deploy FILE` — import a renewed certificate and move every
 * binding it replaces to it in one transaction (design section 6).
 */
#include "certstore/certstore.h"
#include "cli/cli.h"
#include "svcuser/svcuser.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

struct move {
    struct cb_binding b; /* with the new certhash */
    char old[CB_THUMB_LEN + 1];
};

struct plan {
    struct cb_store *st;
    const struct cb_cert_info *info;
    bool by_previous, by_hostname;
    char (*previous)[CB_THUMB_LEN + 1]; /* older certificates with the same names */
    size_t n_previous;
    struct move *moves;
    size_t n, cap;
};

static bool same_names(const struct cb_cert_info *a, const struct cb_cert_info *b)
{
    if (a->n_names != b->n_names || a->n_names == 0)
        return false;
    for (size_t i = 0; i < a->n_names; i++) {
        bool found = false;
        for (size_t j = 0; j < b->n_names && !found; j++)
            found = strcasecmp(a->names[i], b->names[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

static int find_previous(const struct cb_cert_row *row, void *arg)
{
    struct plan *p = arg;
    if (strcmp(row->info.thumbprint, p->info->thumbprint) == 0 ||
        row->info.not_before > p->info->not_before || !same_names(&row->info, p->info))
        return 0;
    void *np = realloc(p->previous, (p->n_previous + 1) * sizeof(*p->previous));
    if (np == NULL)
        return CB_ENOMEM;
    p->previous = np;
    memcpy(p->previous[p->n_previous++], row->info.thumbprint, CB_THUMB_LEN + 1);
    return 0;
}

static bool covered(const struct cb_cert_info *info, const char *host)
{
    for (size_t i = 0; i < info->n_names; i++)
        if (cb_name_covers(info->names[i], host))
            return true;
    return false;
}

/*
 * The certificate of b that the new one would replace: b's only one, or of a binding with
 * two (certhash=T1,T2) the one with the new certificate's key type, so that an RSA renewal
 * replaces the RSA certificate only. NULL when there is none (a pair, and a new
 * certificate that is neither ECDSA nor RSA).
 */
static const char *slot_for(const struct plan *p, const struct cb_binding *b)
{
    enum cb_key_family want = cb_cert_key_family(p->info);
    struct cb_cert_row row;

    if (!cb_binding_is_dual(b))
        return b->certhash;
    if (want == CB_KEYS_OTHER)
        return NULL;
    for (int i = 0; i < 2; i++) {
        const char *thumb = i == 0 ? b->certhash : b->certhash2;
        if (cb_store_cert_get(p->st, thumb, &row, NULL) != 0)
            continue;
        bool same = cb_cert_key_family(&row.info) == want;
        cb_cert_row_clear(&row);
        if (same)
            return thumb;
    }
    return NULL;
}

static int consider(const struct cb_binding *b, void *arg)
{
    struct plan *p = arg;
    bool take = false;
    const char *slot;

    /* A managed binding's certificate is serve's to renew (acme=enable), never deploy's. */
    if (b->key.kind == CB_KEY_CCS || (b->flags & CB_OPT_ACME) ||
        strcmp(b->certhash, p->info->thumbprint) == 0 ||
        strcmp(b->certhash2, p->info->thumbprint) == 0 || (slot = slot_for(p, b)) == NULL)
        return 0;
    for (size_t i = 0; p->by_previous && i < p->n_previous && !take; i++)
        take = strcmp(slot, p->previous[i]) == 0;
    if (!take && p->by_hostname && (b->key.kind == CB_KEY_HOST || b->key.kind == CB_KEY_HOST_WILD))
        take = covered(p->info, b->key.host);
    if (!take)
        return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct move *nm = realloc(p->moves, cap * sizeof(*nm));
        if (nm == NULL)
            return CB_ENOMEM;
        p->moves = nm;
        p->cap = cap;
    }
    struct move *m = &p->moves[p->n++];
    m->b = *b;
    memcpy(m->old, slot, sizeof(m->old));
    cb_binding_replace_cert(&m->b, m->old, p->info->thumbprint); /* slot is one of b's */
    return 0;
}

static int count_binding(const struct cb_binding *b, void *arg)
{
    (void)b;
    (*(size_t *)arg)++;
    return 0;
}

/* Old certificates that no binding will use once the plan is applied. */
static int find_unused(struct cb_cli *cli, struct cb_store *st, const struct plan *p,
                       char (**out)[CB_THUMB_LEN + 1], size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    for (size_t i = 0; i < p->n; i++) {
        const char *old = p->moves[i].old;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(p->moves[j].old, old) == 0;
        if (seen)
            continue;
        size_t total = 0, planned = 0;
        struct cb_cert_row row;
        if (cb_store_cert_get(st, old, &row, NULL) != 0)
            continue; /* not in the store: nothing to prune */
        cb_cert_row_clear(&row);
        int ret = cb_store_binding_foreach(st, old, count_binding, &total, &cli->err);
        if (ret != 0)
            return ret;
        for (size_t j = 0; j < p->n; j++)
            planned += strcmp(p->moves[j].old, old) == 0;
        if (planned < total)
            continue;
        void *nt = realloc(*out, (*n_out + 1) * sizeof(**out));
        if (nt == NULL)
            return cb_err_set(&cli->err, CB_ENOMEM, "out of memory");
        *out = nt;
        memcpy((*out)[(*n_out)++], old, CB_THUMB_LEN + 1);
    }
    return 0;
}

static void report(struct cb_cli *cli, const struct plan *p, bool preview,
                   char (*unused)[CB_THUMB_LEN + 1], size_t n_unused, bool pruned)
{
    if (cli->json) {
        json_t *moves = json_array(), *un = json_array();
        for (size_t i = 0; i < p->n; i++) {
            char key[CB_KEY_TEXT_MAX];
            cb_key_format(&p->moves[i].b.key, key, sizeof(key));
            json_array_append_new(moves, json_pack("{s:s, s:s, s:s}", "binding", key, "from",
                                                   p->moves[i].old, "to", p->info->thumbprint));
        }
        for (size_t i = 0; i < n_unused; i++)
            json_array_append_new(un, json_string(unused[i]));
        cb_cli_print_json(json_pack("{s:s, s:b, s:o, s:o, s:b}", "certificate", p->info->thumbprint,
                                    "preview", preview, "moves", moves, "unused", un, "pruned",
                                    pruned));
        return;
    }
    printf("%s %zu binding%s to certificate %s:\n", preview ? "Would move" : "Moved", p->n,
           p->n == 1 ? "" : "s", p->info->thumbprint);
    for (size_t i = 0; i < p->n; i++) {
        char key[CB_KEY_TEXT_MAX];
        cb_key_format(&p->moves[i].b.key, key, sizeof(key));
        printf("  %-40s %s -> %s\n", key, p->moves[i].old, p->info->thumbprint);
    }
    if (n_unused > 0) {
        printf("%s:", pruned    ? "Deleted certificates no binding uses any more"
                      : preview ? "No binding would use these certificates any more"
                                : "No binding uses these certificates any more");
        for (size_t i = 0; i < n_unused; i++)
            printf(" %s", unused[i]);
        printf("%s\n", pruned ? "" : " (prune=yes deletes them)");
    }
    if (preview)
        printf("Preview only: nothing changed.\n");
}

int cb_cmd_deploy(struct cb_cli *cli)
{
    static const char *const allowed[] = {"key",     "password-file", "match",
                                          "preview", "prune",         NULL};
    const char *file = cli->object, *match = cb_cli_opt(cli, "match");
    struct cb_cert_bundle *bundle = NULL;
    struct cb_cert_info info;
    struct cb_store *st = NULL;
    struct plan plan = {.info = &info};
    char(*unused)[CB_THUMB_LEN + 1] = NULL;
    size_t n_unused = 0;
    struct cb_cert_row *pruned = NULL;
    size_t n_pruned = 0;
    bool preview, prune, existed = false;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0 ||
        (ret = cb_cli_yesno(cli, "preview", &preview)) != 0 ||
        (ret = cb_cli_yesno(cli, "prune", &prune)) != 0)
        return ret;
    if (file == NULL)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "give the renewed certificate: certbind deploy FILE [key=FILE] "
                          "[match=previous|hostname|both] [preview=yes] [prune=yes]");
    if (match == NULL || strcmp(match, "both") == 0)
        plan.by_previous = plan.by_hostname = true;
    else if (strcmp(match, "previous") == 0)
        plan.by_previous = true;
    else if (strcmp(match, "hostname") == 0)
        plan.by_hostname = true;
    else
        return cb_err_set(&cli->err, CB_EINVAL, "match=%s: use previous, hostname or both", match);
    if ((ret = cb_cli_load_cert(cli, file, &bundle, &info)) != 0)
        return ret;
    if ((ret = cb_cli_open_store(cli, CB_STORE_READ, &st)) != 0)
        goto out_clear_info;
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    plan.st = st;
    if ((ret = cb_store_cert_foreach(st, find_previous, &plan, &cli->err)) != 0 ||
        (ret = cb_store_binding_foreach(st, NULL, consider, &plan, &cli->err)) != 0) {
        if (ret == CB_ENOMEM)
            cb_err_set(&cli->err, ret, "out of memory");
        goto out_rollback;
    }
    if (plan.n == 0) {
        ret = cb_err_set(&cli->err, CB_ENOENT,
                         "nothing matched certificate %s: no binding uses an older certificate "
                         "with the same names%s, and no SNI binding has a name it covers%s; "
                         "nothing changed. Bind it with 'certbind add sslcert'",
                         info.thumbprint, plan.by_previous ? "" : " (match=hostname)",
                         plan.by_hostname ? "" : " (match=previous)");
        goto out_rollback;
    }
    if ((ret = find_unused(cli, st, &plan, &unused, &n_unused)) != 0)
        goto out_rollback;
    if (preview) {
        report(cli, &plan, true, unused, n_unused, false);
        goto out_rollback;
    }
    if ((ret = cb_certstore_import(st, bundle, &info, NULL, NULL, &existed, cb_cli_warn, NULL,
                                   &cli->err)) != 0)
        goto out_rollback;
    char reason[512];
    if (cb_svcuser_key_usable(st, info.thumbprint, reason, sizeof(reason)) != 0) {
        ret = cb_err_set(&cli->err, CB_EKEY,
                         "the key of %s is unusable (%s); nothing changed: fix the key and "
                         "deploy again",
                         info.thumbprint, reason);
        goto out_rollback;
    }
    for (size_t i = 0; i < plan.n; i++)
        if ((ret = cb_store_binding_update(st, &plan.moves[i].b, &cli->err)) != 0)
            goto out_rollback;
    if (prune && n_unused > 0) {
        if ((pruned = calloc(n_unused, sizeof(*pruned))) == NULL) {
            ret = cb_err_set(&cli->err, CB_ENOMEM, "out of memory");
            goto out_rollback;
        }
        for (; n_pruned < n_unused; n_pruned++)
            if ((ret = cb_store_cert_get(st, unused[n_pruned], &pruned[n_pruned], &cli->err)) !=
                    0 ||
                (ret = cb_store_cert_delete(st, unused[n_pruned], &cli->err)) != 0)
                goto out_rollback;
    }
    /* The new certificate's files go with a rollback (certstore.h). */
    if ((ret = cb_store_commit(st, &cli->err)) != 0)
        goto out_rollback;
    /* Files of pruned certificates go only after the commit, and only our own copies. */
    for (size_t i = 0; i < n_pruned; i++) {
        if (cb_store_owns(st, pruned[i].cert_path))
            unlink(pruned[i].cert_path);
        if (cb_store_owns(st, pruned[i].key_path))
            unlink(pruned[i].key_path);
    }
    report(cli, &plan, false, unused, n_unused, prune);
    goto out_close;
out_rollback:
    cb_store_rollback(st);
out_close:
    cb_cli_close_store(cli, st);
out_clear_info:
    cb_cert_info_clear(&info);
    cb_cert_bundle_free(bundle);
    for (size_t i = 0; pruned != NULL && i < n_unused; i++)
        cb_cert_row_clear(&pruned[i]);
    free(pruned);
    free(plan.previous);
    free(plan.moves);
    free(unused);
    return ret;
}
