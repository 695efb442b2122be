/*
 * ocsp.c: the OCSP response cache in the state folder (store/ocsp.h).
 */
#include "store/ocsp.h"
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool thumb_ok(const char *thumb)
{
    if (thumb == NULL || strlen(thumb) != CB_THUMB_LEN)
        return false;
    for (const char *p = thumb; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F')))
            return false;
    return true;
}

void cb_store_ocsp_path(const struct cb_store *st, const char *thumb, char *out, size_t size)
{
    snprintf(out, size, "%s/ocsp/%s.der", st->dir, thumb);
}

static int io_error(struct cb_err *err, const char *what, const char *path)
{
    int e = errno;
    return cb_err_set(err, e == EACCES || e == EPERM ? CB_EPERM : CB_EIO, "cannot %s %s: %s", what,
                      path, strerror(e));
}

static int cmp_thumb(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

int cb_store_ocsp_list(const struct cb_store *st, char (**out)[CB_THUMB_LEN + 1], size_t *n,
                       struct cb_err *err)
{
    char path[CB_PATH_MAX + 16], name[CB_THUMB_LEN + 1];
    char(*v)[CB_THUMB_LEN + 1] = NULL;
    size_t nv = 0, cap = 0;
    struct dirent *de;
    DIR *d;

    *out = NULL;
    *n = 0;
    snprintf(path, sizeof(path), "%s/ocsp", st->dir);
    if ((d = opendir(path)) == NULL)
        return errno == ENOENT ? 0 : io_error(err, "list", path);
    while ((de = readdir(d)) != NULL) {
        /* THUMB.der, as cb_store_ocsp_path names it; anything else is not a response */
        if (strlen(de->d_name) != CB_THUMB_LEN + 4 ||
            strcmp(de->d_name + CB_THUMB_LEN, ".der") != 0)
            continue;
        memcpy(name, de->d_name, CB_THUMB_LEN);
        name[CB_THUMB_LEN] = '\0';
        if (!thumb_ok(name))
            continue;
        if (nv == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char(*nw)[CB_THUMB_LEN + 1] = realloc(v, nc * sizeof(*v));
            if (nw == NULL) {
                closedir(d);
                free(v);
                return cb_err_set(err, CB_ENOMEM, "out of memory");
            }
            v = nw;
            cap = nc;
        }
        memcpy(v[nv++], name, sizeof(name));
    }
    closedir(d);
    if (nv > 1)
        qsort(v, nv, sizeof(*v), cmp_thumb);
    *out = v;
    *n = nv;
    return 0;
}

/* Writes path through path.tmp, fsync and rename: a reader sees the old file or the new. */
static int write_atomic(const char *path, const unsigned char *der, size_t len, struct cb_err *err)
{
    char tmp[CB_PATH_MAX + 128];
    size_t off = 0;
    int fd, ret = 0;

    /* A name of its own: two writers of one response (threads of one manager, or two
     * processes) never write into each other's file. */
    snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return io_error(err, "create", tmp);
    while (off < len) {
        ssize_t n = write(fd, der + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ret = io_error(err, "write", tmp);
            goto out_close;
        }
        off += (size_t)n;
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) /* 0644 whatever the umask */
        ret = io_error(err, "sync", tmp);
out_close:
    if (close(fd) != 0 && ret == 0)
        ret = io_error(err, "write", tmp);
    if (ret == 0 && rename(tmp, path) != 0)
        ret = io_error(err, "rename into place", tmp);
    if (ret != 0)
        unlink(tmp);
    return ret;
}

int cb_store_ocsp_mark(struct cb_store *st, const char (*thumbs)[CB_THUMB_LEN + 1], size_t n,
                       struct cb_err *err)
{
    char key[sizeof(CB_STORE_CHANGE_OCSP) + CB_THUMB_LEN];
    int ret;

    for (size_t i = 0; i < n; i++)
        if (!thumb_ok(thumbs[i]))
            return cb_err_set(err, CB_EINVAL, "not a thumbprint: %.60s", thumbs[i]);
    if (st->in_tx)
        return cb_err_set(err, CB_EINVAL,
                          "internal: an OCSP response is cached inside another transaction");
    if (n == 0)
        return 0;
    if ((ret = cb_store_begin(st, err)) != 0)
        return ret;
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s%s", CB_STORE_CHANGE_OCSP, thumbs[i]);
        if ((ret = cb_store__record_change(st, key, err)) != 0) {
            cb_store_rollback(st);
            return ret;
        }
    }
    return cb_store_commit(st, err);
}

/* Commits "ocsp=THUMB" in a transaction of its own. */
static int mark(struct cb_store *st, const char *thumb, struct cb_err *err)
{
    char one[1][CB_THUMB_LEN + 1];

    snprintf(one[0], sizeof(one[0]), "%s", thumb);
    return cb_store_ocsp_mark(st, (const char(*)[CB_THUMB_LEN + 1]) one, 1, err);
}

int cb_store_ocsp_write(const struct cb_store *st, const char *thumb, const unsigned char *der,
                        size_t len, struct cb_err *err)
{
    char dir[CB_PATH_MAX + 16], path[CB_PATH_MAX + 64];

    if (!thumb_ok(thumb))
        return cb_err_set(err, CB_EINVAL, "not a thumbprint: %.60s", thumb ? thumb : "(none)");
    if (len == 0 || len > CB_STORE_OCSP_MAX)
        return cb_err_set(err, CB_EINVAL, "an OCSP response of %zu bytes is not cached", len);
    snprintf(dir, sizeof(dir), "%s/ocsp", st->dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return io_error(err, "create", dir);
    cb_store_ocsp_path(st, thumb, path, sizeof(path));
    return write_atomic(path, der, len, err);
}

int cb_store_ocsp_put(struct cb_store *st, const char *thumb, const unsigned char *der, size_t len,
                      struct cb_err *err)
{
    int ret;

    if (st->in_tx)
        return cb_err_set(err, CB_EINVAL,
                          "internal: an OCSP response is cached inside another transaction");
    if ((ret = cb_store_ocsp_write(st, thumb, der, len, err)) != 0)
        return ret;
    return mark(st, thumb, err);
}

int cb_store_ocsp_delete(struct cb_store *st, const char *thumb, struct cb_err *err)
{
    char path[CB_PATH_MAX + 64];

    if (!thumb_ok(thumb))
        return cb_err_set(err, CB_EINVAL, "not a thumbprint: %.60s", thumb ? thumb : "(none)");
    cb_store_ocsp_path(st, thumb, path, sizeof(path));
    if (unlink(path) != 0)
        return errno == ENOENT ? 0 : io_error(err, "remove", path);
    return mark(st, thumb, err);
}

int cb_store_ocsp_read(const struct cb_store *st, const char *thumb, unsigned char **der,
                       size_t *len, struct cb_err *err)
{
    char path[CB_PATH_MAX + 64];
    struct stat sb;
    unsigned char *buf;
    size_t off = 0;
    int fd, ret = 0;

    if (!thumb_ok(thumb))
        return CB_ENOENT;
    cb_store_ocsp_path(st, thumb, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? CB_ENOENT : io_error(err, "open", path);
    if (fstat(fd, &sb) != 0) {
        ret = io_error(err, "read", path);
        goto out_close;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size <= 0 || sb.st_size > CB_STORE_OCSP_MAX) {
        ret = cb_err_set(err, CB_EBADFILE, "%s is not a cached OCSP response", path);
        goto out_close;
    }
    if ((buf = malloc((size_t)sb.st_size)) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_close;
    }
    while (off < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + off, (size_t)sb.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ret = n == 0 ? cb_err_set(err, CB_EIO, "%s was cut short while read", path)
                         : io_error(err, "read", path);
            free(buf);
            goto out_close;
        }
        off += (size_t)n;
    }
    *der = buf;
    *len = off;
out_close:
    close(fd);
    return ret;
}

int cb_store_cert_foreach_ocsp_url(struct cb_store *st, enum cb_ocsp_url which,
                                   int (*fn)(const char *thumb, void *arg), void *arg,
                                   struct cb_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int ret, rc;

    if ((ret = cb_store__prepare(st, "SELECT thumbprint FROM certs WHERE ocsp_url = ?1", &stmt,
                                 err)) != 0)
        return ret;
    sqlite3_bind_int(stmt, 1, (int)which);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(stmt, 0);
        if ((ret = fn(t != NULL ? (const char *)t : "", arg)) != 0)
            goto out_finalize;
    }
    if (rc != SQLITE_DONE)
        ret = cb_store__db_error(st, err, rc, "listing certificates by OCSP URL");
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

int cb_store_cert_learn_ocsp_url(struct cb_store *st, const struct cb_ocsp_url_fact *facts,
                                 size_t n, struct cb_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int ret, rc;

    if (st->in_tx || st->batch)
        return cb_err_set(err, CB_EINVAL, "internal: OCSP facts recorded inside a transaction");
    if (n == 0)
        return 0;
    if ((rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
        return cb_store__db_error(st, err, rc, "recording OCSP facts");
    /* Derived from each node's own copy of the bytes: never a fleet change to push. */
    bool was_applying = st->applying;
    st->applying = true;
    if ((ret = cb_store__prepare(st,
                                 "UPDATE certs SET ocsp_url = ?2 WHERE thumbprint = ?1 AND "
                                 "ocsp_url = 0",
                                 &stmt, err)) != 0)
        goto out_rollback;
    for (size_t i = 0; i < n; i++) {
        if (facts[i].url != CB_OCSP_URL_NONE && facts[i].url != CB_OCSP_URL_HTTP)
            continue;
        sqlite3_reset(stmt);
        sqlite3_bind_text(stmt, 1, facts[i].thumb, -1, SQLITE_STATIC);
        sqlite3_bind_int(stmt, 2, (int)facts[i].url);
        if ((rc = sqlite3_step(stmt)) != SQLITE_DONE) {
            ret = cb_store__db_error(st, err, rc, "recording OCSP facts");
            goto out_rollback;
        }
    }
    sqlite3_finalize(stmt);
    if ((rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL)) == SQLITE_OK) {
        st->applying = was_applying;
        return 0;
    }
    ret = cb_store__db_error(st, err, rc, "recording OCSP facts");
    stmt = NULL;
out_rollback:
    sqlite3_finalize(stmt);
    if (sqlite3_get_autocommit(st->db) == 0)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->applying = was_applying;
    return ret;
}
