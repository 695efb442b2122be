/*
 * codec.c: replicated rows to and from etcd values. A value is JSON: {"v":1,"row":{…}} with
 * the row's columns (integers, strings, {"b64":…} for bytes, {"sealed":…} for a secret
 * sealed under the store key with the etcd key as additional data). Special rows:
 * - certs: {"v":1,"cert":{"thumbprint","acme"},"pem":chain,"key":{"sealed"}}: the files,
 *   not the node's paths; a node writes them into its own state folder (key 0600, both
 *   given to its service user) and reads what it records from the certificate itself;
 * - acme_account: the account key file travels sealed as "account_key", the path stays
 *   the node's; eab_hmac is sealed;
 * - challenges.key_pem and ticket_keys.key are sealed.
 * Settings: every one except the node-local ones (the service user, the store's own
 * counters, this node's ACME order counters).
 */
#include "certstore/certstore.h"
#include "fleet/fleet_int.h"
#include "tls/cert.h"
#include "util/file.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CB_FLEET_VALUE_MAX (1024 * 1024)

struct kind {
    const char *table, *path; /* path: the etcd key's part after PREFIX/ */
    bool single;              /* one row: path is the whole key, the row key "1" */
};
static const struct kind kinds[] = {
    {"bindings", "binding/", false},      {"certs", "cert/", false},
    {"meta", "setting/", false},          {"acme_account", "acme/account", true},
    {"acme_state", "acme/state/", false}, {"challenges", "challenge/", false},
    {"ticket_keys", "ticket/", false},
};
#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))

/* Settings that belong to one node. */
static bool setting_is_local(const char *name)
{
    return strcmp(name, "user") == 0 || strcmp(name, "generation") == 0 ||
           strcmp(name, "changed_at") == 0 || strncmp(name, "acme.orders.", 12) == 0 ||
           strncmp(name, "fleet.", 6) == 0;
}

int cb_fleet__etcd_key(const struct cb_fleet *f, const char *table, const char *row_key, char *out,
                       size_t size)
{
    for (size_t i = 0; i < N_KINDS; i++) {
        if (strcmp(kinds[i].table, table) != 0)
            continue;
        if (strcmp(table, "meta") == 0 && setting_is_local(row_key))
            return CB_ENOENT;
        int n =
            kinds[i].single
                ? snprintf(out, size, "%s%s", cb_etcd_prefix(f->etcd), kinds[i].path)
                : snprintf(out, size, "%s%s%s", cb_etcd_prefix(f->etcd), kinds[i].path, row_key);
        return n > 0 && (size_t)n < size ? 0 : CB_EINVAL;
    }
    return CB_ENOENT;
}

int cb_fleet__row_of(const struct cb_fleet *f, const char *etcd_key, const char **table,
                     char *row_key, size_t size)
{
    const char *prefix = cb_etcd_prefix(f->etcd);
    size_t pl = strlen(prefix);

    if (strncmp(etcd_key, prefix, pl) != 0)
        return CB_ENOENT;
    const char *rest = etcd_key + pl;
    for (size_t i = 0; i < N_KINDS; i++) {
        size_t l = strlen(kinds[i].path);
        if (kinds[i].single ? strcmp(rest, kinds[i].path) != 0
                            : strncmp(rest, kinds[i].path, l) != 0 || rest[l] == '\0')
            continue;
        const char *k = kinds[i].single ? "1" : rest + l;
        if (strlen(k) >= size || (strcmp(kinds[i].table, "meta") == 0 && setting_is_local(k)))
            return CB_ENOENT;
        snprintf(row_key, size, "%s", k);
        *table = kinds[i].table;
        return 0;
    }
    return CB_ENOENT;
}

static bool is_secret(const char *table, const char *col)
{
    return (strcmp(table, "challenges") == 0 && strcmp(col, "key_pem") == 0) ||
           (strcmp(table, "ticket_keys") == 0 && strcmp(col, "key") == 0) ||
           (strcmp(table, "acme_account") == 0 && strcmp(col, "eab_hmac") == 0);
}

static int need_key(const struct cb_fleet *f, const char *ek, struct cb_err *err)
{
    if (f->have_key)
        return 0;
    return cb_err_set(err, CB_EKEY,
                      "%s holds a private key or secret, and no store key was given: pass "
                      "--store-key FILE (or set CERTBIND_STORE_KEY)",
                      ek);
}

static int damaged(const char *ek, const char *why, struct cb_err *err)
{
    return cb_err_set(err, CB_EBADFILE, "the fleet store's value %s is damaged (%s)", ek, why);
}

/* {"sealed": base64(seal(p))}. */
static int sealed_json(struct cb_fleet *f, const char *ek, const void *p, size_t len, json_t **out,
                       struct cb_err *err)
{
    unsigned char *s;
    size_t sl;
    int ret;

    if ((ret = need_key(f, ek, err)) != 0 || (ret = cb_seal(f->key, ek, p, len, &s, &sl, err)) != 0)
        return ret;
    char *b = cb_etcd_b64_encode(s, sl);
    free(s);
    *out = b ? json_pack("{s:s}", "sealed", b) : NULL;
    free(b);
    return *out ? 0 : cb_err_set(err, CB_ENOMEM, "out of memory");
}

/* Opens {"sealed": …}: owned plain bytes (cleanse them). */
static int unsealed(struct cb_fleet *f, const char *ek, const json_t *v, unsigned char **out,
                    size_t *len, struct cb_err *err)
{
    const char *b = json_string_value(json_object_get(v, "sealed"));
    unsigned char *s;
    size_t sl;
    int ret;

    if (b == NULL)
        return cb_err_set(err, CB_EBADFILE, "%s: a sealed field is malformed", ek);
    if ((ret = need_key(f, ek, err)) != 0)
        return ret;
    if (cb_etcd_b64_decode(b, &s, &sl) != 0)
        return cb_err_set(err, CB_EBADFILE, "%s: a sealed field is not base64", ek);
    ret = cb_unseal(f->key, ek, s, sl, out, len, err);
    free(s);
    /* With the key known to be the fleet's (its check value opened), a value that does not
     * open is damaged, not a sign of the wrong key. */
    if (ret == CB_EKEY && f->key_verified)
        return damaged(ek, "a sealed field does not open", err);
    return ret;
}

static int dump(json_t *root, char **out, size_t *out_len, struct cb_err *err)
{
    *out = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (*out == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    *out_len = strlen(*out);
    return 0;
}

static int read_secret_file(const char *path, char **out, size_t *len, struct cb_err *err)
{
    return cb_read_file(path, CB_FLEET_VALUE_MAX, out, len, err);
}

static void free_secret(char *p, size_t len)
{
    if (p != NULL)
        explicit_bzero(p, len);
    free(p);
}

static int encode_cert(struct cb_fleet *f, const char *thumb, const char *ek, char **out,
                       size_t *out_len, struct cb_err *err)
{
    struct cb_cert_row row;
    char *pem = NULL, *key = NULL;
    size_t pem_len, key_len = 0;
    json_t *sealed = NULL;
    int ret;

    if ((ret = cb_store_cert_get(f->st, thumb, &row, err)) != 0)
        return ret;
    if ((ret = need_key(f, ek, err)) != 0 ||
        (ret = cb_read_file(row.cert_path, CB_FLEET_VALUE_MAX, &pem, &pem_len, err)) != 0 ||
        (ret = read_secret_file(row.key_path, &key, &key_len, err)) != 0 ||
        (ret = sealed_json(f, ek, key, key_len, &sealed, err)) != 0)
        goto out_free;
    json_t *root = json_pack("{s:i,s:{s:s,s:b},s:s%,s:o}", "v", 1, "cert", "thumbprint", thumb,
                             "acme", row.acme_issued, "pem", pem, pem_len, "key", sealed);
    sealed = NULL;
    ret = root ? dump(root, out, out_len, err) : cb_err_set(err, CB_ENOMEM, "out of memory");
out_free:
    json_decref(sealed);
    free(pem);
    free_secret(key, key_len);
    cb_cert_row_clear(&row);
    return ret;
}

int cb_fleet__key_check(struct cb_fleet *f, const struct cb_etcd_kv *kv, struct cb_err *err)
{
    unsigned char *plain;
    size_t len;

    f->key_verified = false;
    if (!f->have_key)
        return 0;
    if (cb_unseal(f->key, kv->key, kv->value, kv->value_len, &plain, &len, NULL) != 0)
        return cb_err_set(err, CB_EKEY,
                          "the store key given (--store-key) is not this fleet's: the fleet's "
                          "secrets were sealed with another store key; pass the fleet's key file");
    free(plain);
    f->key_verified = true;
    return 0;
}

int cb_fleet__key_check_value(struct cb_fleet *f, const char *ek, unsigned char **out,
                              size_t *out_len, struct cb_err *err)
{
    static const char text[] = "certbind fleet store key";
    if (!f->have_key)
        return cb_err_set(err, CB_EKEY, "no store key");
    return cb_seal(f->key, ek, text, sizeof(text) - 1, out, out_len, err);
}

int cb_fleet__encode(struct cb_fleet *f, const char *table, const char *row_key, const char *ek,
                     char **out, size_t *out_len, struct cb_err *err)
{
    struct cb_store_row row;
    json_t *cols = NULL;
    int ret;

    if (strcmp(table, "certs") == 0)
        return encode_cert(f, row_key, ek, out, out_len, err);
    if ((ret = cb_store_row_get(f->st, table, row_key, &row, err)) != 0)
        return ret;
    if ((cols = json_object()) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_clear;
    }
    for (size_t i = 0; i < row.n && ret == 0; i++) {
        const struct cb_store_col *c = &row.c[i];
        json_t *v = NULL;
        if (strcmp(table, "acme_account") == 0 && strcmp(c->name, "account_key_path") == 0) {
            /* The node's own path stays; the key travels sealed. */
            char *key = NULL;
            size_t kl = 0;
            if (c->len == 0 || access((const char *)c->p, F_OK) != 0)
                continue;
            if ((ret = read_secret_file((const char *)c->p, &key, &kl, err)) == 0 &&
                (ret = sealed_json(f, ek, key, kl, &v, err)) == 0)
                json_object_set_new(cols, "account_key", v);
            free_secret(key, kl);
            continue;
        }
        if (is_secret(table, c->name) && c->len > 0) {
            if ((ret = sealed_json(f, ek, c->p, c->len, &v, err)) == 0)
                json_object_set_new(cols, c->name, v);
            continue;
        }
        switch (c->type) {
        case CB_STORE_COL_INT:
            v = json_integer(c->i);
            break;
        case CB_STORE_COL_TEXT:
            v = json_stringn((const char *)c->p, c->len);
            break;
        case CB_STORE_COL_BLOB: {
            char *b = cb_etcd_b64_encode(c->p, c->len);
            v = b ? json_pack("{s:s}", "b64", b) : NULL;
            free(b);
            break;
        }
        case CB_STORE_COL_NULL:
            v = json_null();
            break;
        }
        if (v == NULL || json_object_set_new(cols, c->name, v) != 0)
            ret = cb_err_set(err, CB_ENOMEM, "out of memory (or a column that is not UTF-8)");
    }
    if (ret == 0) {
        json_t *root = json_pack("{s:i,s:o}", "v", 1, "row", cols);
        cols = NULL;
        ret = root ? dump(root, out, out_len, err) : cb_err_set(err, CB_ENOMEM, "out of memory");
    }
out_clear:
    json_decref(cols);
    cb_store_row_clear(&row);
    return ret;
}

/* ---- applying values from etcd ---- */

/* Gives a file written into the state folder to the service user, as `add cert` does; one
 * that cannot be given is logged (serve then says it cannot read it). */
static void give_file(struct cb_fleet *f, const char *path)
{
    struct cb_user u;
    struct cb_err e;
    char q[sizeof(e.msg) + 8];

    if (cb_svcuser_get(f->st, &u, NULL) != 0)
        return;
    if (cb_svcuser_give_file(f->st, &u, path, &e) != 0)
        cb_log("warn", "fleet_file_owner", "reason=%s", cb_log_quote(e.msg, q, sizeof(q)));
}

static int apply_cert(struct cb_fleet *f, const char *thumb, const char *ek, const json_t *root,
                      bool *partial, struct cb_err *err)
{
    const char *pem = json_string_value(json_object_get(root, "pem"));
    json_t *cert = json_object_get(root, "cert");
    struct cb_cert_bundle *bundle = NULL;
    struct cb_cert_info info = {0};
    unsigned char *key = NULL;
    size_t key_len = 0;
    char got[CB_THUMB_LEN + 1];
    bool existed;
    int ret;

    if (pem == NULL || !json_is_object(cert))
        return damaged(ek, "no certificate", err);
    if (!f->have_key) {
        *partial = true; /* applied again once a store key is given */
        return 0;
    }
    if ((ret = unsealed(f, ek, json_object_get(root, "key"), &key, &key_len, err)) != 0)
        return ret;
    if ((ret = cb_cert_bundle_from_pem(ek, pem, strlen(pem), (const char *)key, key_len, &bundle,
                                       err)) != 0)
        goto out_free;
    if ((ret = cb_cert_bundle_thumbprint(bundle, got)) != 0 || strcmp(got, thumb) != 0) {
        ret = damaged(ek, "the certificate is not the one its key names", err);
        goto out_free;
    }
    if ((ret = cb_cert_bundle_info(bundle, &info, err)) != 0 ||
        (ret = cb_certstore_import(f->st, bundle, &info, NULL, NULL, &existed, NULL, NULL, err)) !=
            0)
        goto out_free;
    if (json_is_true(json_object_get(cert, "acme")))
        ret = cb_store_cert_mark_acme(f->st, thumb, err);
out_free:
    cb_cert_info_clear(&info);
    cb_cert_bundle_free(bundle);
    if (key != NULL)
        explicit_bzero(key, key_len);
    free(key);
    return ret;
}

/* The account key, written as serve would make it: keys/acme-account.key, 0600. */
static int write_account_key(struct cb_fleet *f, const unsigned char *key, size_t len, char *path,
                             size_t size, struct cb_err *err)
{
    char tmp[CB_PATH_MAX + 16];
    snprintf(path, size, "%s/keys/acme-account.key", cb_store_dir(f->st));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *fp = NULL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (fp = fdopen(fd, "wb")) == NULL) {
        if (fd >= 0)
            close(fd);
        return cb_err_set(err, CB_EIO, "cannot write %s: %s", tmp, strerror(errno));
    }
    bool ok = fwrite(key, 1, len, fp) == len && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    ok = fclose(fp) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return cb_err_set(err, CB_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    give_file(f, path);
    return 0;
}

static int col_from_json(struct cb_fleet *f, const char *table, const char *ek, const char *name,
                         const json_t *v, struct cb_store_row *row, struct cb_err *err)
{
    int ret = 0;

    if (json_is_integer(v))
        ret = cb_store_row_add(row, name, CB_STORE_COL_INT, json_integer_value(v), NULL, 0);
    else if (json_is_string(v))
        ret = cb_store_row_add(row, name, CB_STORE_COL_TEXT, 0, json_string_value(v),
                               json_string_length(v));
    else if (json_is_null(v))
        ret = cb_store_row_add(row, name, CB_STORE_COL_NULL, 0, NULL, 0);
    else if (json_is_object(v) && json_object_get(v, "b64") != NULL) {
        const char *b = json_string_value(json_object_get(v, "b64"));
        unsigned char *p;
        size_t len;
        if (b == NULL || cb_etcd_b64_decode(b, &p, &len) != 0)
            return damaged(ek, "bad base64", err);
        ret = cb_store_row_add(row, name, CB_STORE_COL_BLOB, 0, p, len);
        free(p);
    } else if (json_is_object(v) && json_object_get(v, "sealed") != NULL) {
        unsigned char *p;
        size_t len;
        if ((ret = unsealed(f, ek, v, &p, &len, err)) != 0)
            return ret;
        /* Ticket keys are bytes; every other secret is text. */
        ret = cb_store_row_add(
            row, name, strcmp(table, "ticket_keys") == 0 ? CB_STORE_COL_BLOB : CB_STORE_COL_TEXT, 0,
            p, len);
        explicit_bzero(p, len);
        free(p);
    } else {
        return damaged(ek, "a column of an unknown type", err);
    }
    return ret == 0 ? 0 : cb_err_set(err, CB_ENOMEM, "out of memory");
}

/* A binding whose value cannot be read is kept as a damaged row (flags out of range), so
 * that it fails its handshakes and `check` reports it, as a damaged SQLite row would. */
static int put_damaged_binding(struct cb_fleet *f, const char *row_key, struct cb_err *err)
{
    struct cb_store_row row = {0};
    static const char *const empty[] = {"certhash", "appid", "backend", "ccspath"};
    int ret = cb_store_row_add(&row, "key", CB_STORE_COL_TEXT, 0, row_key, strlen(row_key));
    for (size_t i = 0; i < 4 && ret == 0; i++)
        ret = cb_store_row_add(&row, empty[i], CB_STORE_COL_TEXT, 0, "", 0);
    if (ret == 0)
        ret = cb_store_row_add(&row, "flags", CB_STORE_COL_INT, -1, NULL, 0);
    if (ret == 0)
        ret = cb_store_row_add(&row, "proxy", CB_STORE_COL_INT, 0, NULL, 0);
    ret = ret == 0 ? cb_store_row_put(f->st, "bindings", &row, err)
                   : cb_err_set(err, CB_ENOMEM, "out of memory");
    cb_store_row_clear(&row);
    return ret;
}

static int apply_row(struct cb_fleet *f, const char *table, const char *row_key, const char *ek,
                     const json_t *root, bool *partial, struct cb_err *err)
{
    json_t *cols = json_object_get(root, "row"), *v;
    struct cb_store_row row = {0};
    const char *name;
    int ret = 0;

    if (!json_is_object(cols))
        return damaged(ek, "no row", err);
    json_object_foreach(cols, name, v)
    {
        if (strcmp(table, "acme_account") == 0 && strcmp(name, "account_key") == 0) {
            unsigned char *key;
            size_t kl;
            char path[CB_PATH_MAX + 1];
            if (!f->have_key) {
                *partial = true;
                continue;
            }
            if ((ret = unsealed(f, ek, v, &key, &kl, err)) != 0)
                goto out_clear;
            ret = write_account_key(f, key, kl, path, sizeof(path), err);
            explicit_bzero(key, kl);
            free(key);
            if (ret == 0 && cb_store_row_add(&row, "account_key_path", CB_STORE_COL_TEXT, 0, path,
                                             strlen(path)) != 0)
                ret = cb_err_set(err, CB_ENOMEM, "out of memory");
            if (ret != 0)
                goto out_clear;
            continue;
        }
        if (strcmp(name, "account_key_path") == 0)
            continue; /* a node's own path never comes from elsewhere */
        if (json_is_object(v) && json_object_get(v, "sealed") != NULL && !f->have_key) {
            *partial = true;
            goto out_clear;
        }
        if ((ret = col_from_json(f, table, ek, name, v, &row, err)) != 0)
            goto out_clear;
    }
    /* The row's key is the etcd key's, whatever the value says. */
    const struct cb_store_col *k =
        cb_store_row_col(&row, strcmp(table, "bindings") == 0     ? "key"
                               : strcmp(table, "certs") == 0      ? "thumbprint"
                               : strcmp(table, "meta") == 0       ? "name"
                               : strcmp(table, "challenges") == 0 ? "name"
                               : strcmp(table, "acme_state") == 0 ? "key"
                                                                  : "id");
    char text[64];
    const char *have = k == NULL ? NULL
                       : k->type == CB_STORE_COL_INT
                           ? (snprintf(text, sizeof(text), "%lld", (long long)k->i), text)
                           : (const char *)k->p;
    if (have == NULL || strcmp(have, row_key) != 0) {
        ret = damaged(ek, "its row names another key", err);
        goto out_clear;
    }
    /* An account without a key yet (serve makes it): no key file on this node either. */
    if (strcmp(table, "acme_account") == 0 && cb_store_row_col(&row, "account_key_path") == NULL &&
        cb_store_row_add(&row, "account_key_path", CB_STORE_COL_TEXT, 0, "", 0) != 0) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_clear;
    }
    ret = cb_store_row_put(f->st, table, &row, err);
    if (ret == CB_EINVAL) {
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err ? err->msg : "");
        ret = damaged(ek, why, err);
    }
out_clear:
    cb_store_row_clear(&row);
    return ret;
}

int cb_fleet__apply_put(struct cb_fleet *f, const char *table, const char *row_key, const char *ek,
                        const unsigned char *value, size_t len, bool *partial, struct cb_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)value, len, JSON_REJECT_DUPLICATES, &jerr);
    int ret;

    *partial = false;
    if (!json_is_object(root) || json_integer_value(json_object_get(root, "v")) != 1)
        ret = damaged(ek, "not a certbind row", err);
    else if (strcmp(table, "certs") == 0)
        ret = apply_cert(f, row_key, ek, root, partial, err);
    else
        ret = apply_row(f, table, row_key, ek, root, partial, err);
    json_decref(root);
    if (ret == CB_EBADFILE && strcmp(table, "bindings") == 0) {
        struct cb_err e2;
        int r2 = put_damaged_binding(f, row_key, &e2);
        if (r2 != 0 && r2 != CB_EINVAL)
            return cb_err_set(err, r2, "%s", e2.msg);
    }
    return ret;
}

int cb_fleet__apply_delete(struct cb_fleet *f, const char *table, const char *row_key,
                           struct cb_err *err)
{
    struct cb_cert_row row;
    int ret;

    if (strcmp(table, "certs") != 0)
        return cb_store_row_delete(f->st, table, row_key, err);
    if (cb_store_cert_get(f->st, row_key, &row, NULL) != 0)
        return 0;
    ret = cb_store_cert_delete(f->st, row_key, err);
    if (ret == 0)
        ret = cb_store_unlink_after_commit(f->st, row.cert_path, err);
    if (ret == 0)
        ret = cb_store_unlink_after_commit(f->st, row.key_path, err);
    cb_cert_row_clear(&row);
    return ret;
}
