/* keycheck.c: "can the service user use this key?", tested by being that user. */
#include "cli/cli.h"
#include "util/priv.h"

#include <string.h>
#include <unistd.h>

struct pair {
    const char *cert, *key;
};

static int check_pair(size_t i, void *arg, struct cb_err *err)
{
    const struct pair *p = (const struct pair *)arg + i;
    return cb_cert_check_pair(p->cert, p->key, err);
}

int cb_cli_key_usable(struct cb_store *st, const char *thumb, char *reason, size_t size)
{
    struct cb_cert_row row;
    struct cb_user user;
    struct cb_err err = {0};
    char name[64];
    char reasons[1][CB_PRIV_REASON];
    bool ok[1];
    int ret;

    if (cb_store_cert_get(st, thumb, &row, &err) != 0) {
        snprintf(reason, size, "certificate %s is not in the store", thumb);
        return CB_ENOENT;
    }
    struct pair p = {row.cert_path, row.key_path};
    if (cb_store_setting_get(st, "user", name, sizeof(name), NULL) == 0 &&
        cb_user_lookup(name, &user, NULL) == 0 && geteuid() == 0 && user.uid != 0) {
        ret = cb_priv_test_as(&user, 1, check_pair, &p, ok, reasons, &err);
        if (ret == 0 && !ok[0])
            snprintf(reason, size, "as service user %s: %s", name, reasons[0]);
        else if (ret != 0)
            snprintf(reason, size, "%s", err.msg);
        ret = ret == 0 && ok[0] ? 0 : CB_EKEY;
    } else {
        ret = cb_cert_check_pair(row.cert_path, row.key_path, &err) == 0 ? 0 : CB_EKEY;
        if (ret != 0)
            snprintf(reason, size, "%s", err.msg);
    }
    if (ret == 0)
        snprintf(reason, size, "ok");
    cb_cert_row_clear(&row);
    return ret;
}
