/* dual.c: the rule of certhash=T1,T2 (check/dual.h). */
#include "check/dual.h"

#include <stdio.h>
#include <string.h>

bool cb_dual_pair_refused(const struct cb_cert_info *a, const struct cb_cert_info *b, char *why,
                          size_t size)
{
    enum cb_key_family fa = cb_cert_key_family(a), fb = cb_cert_key_family(b);

    if ((fa == CB_KEYS_ECDSA && fb == CB_KEYS_RSA) || (fa == CB_KEYS_RSA && fb == CB_KEYS_ECDSA))
        return false;
    if (fa == fb && fa != CB_KEYS_OTHER)
        snprintf(why, size,
                 "certificates %s and %s both have %s keys (%s, %s); certhash=T1,T2 pairs one "
                 "ECDSA and one RSA certificate: replace one with a certificate of the other "
                 "key type, or bind one certificate",
                 a->thumbprint, b->thumbprint, cb_key_family_name(fa), a->key_type, b->key_type);
    else
        snprintf(why, size,
                 "certificate %s has a %s key; certhash=T1,T2 pairs one ECDSA and one RSA "
                 "certificate: bind it alone",
                 fa == CB_KEYS_OTHER ? a->thumbprint : b->thumbprint,
                 fa == CB_KEYS_OTHER ? a->key_type : b->key_type);
    return true;
}

static bool names_within(const struct cb_cert_info *a, const struct cb_cert_info *b)
{
    for (size_t i = 0; i < a->n_names; i++) {
        bool found = false;
        for (size_t j = 0; j < b->n_names && !found; j++)
            found = strcmp(a->names[i], b->names[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

bool cb_dual_same_names(const struct cb_cert_info *a, const struct cb_cert_info *b)
{
    return names_within(a, b) && names_within(b, a);
}

int cb_dual_order(struct cb_store *st, struct cb_binding *b, struct cb_err *err)
{
    struct cb_cert_row first, second;
    char key[CB_KEY_TEXT_MAX], why[600];
    int ret = 0;

    if (!cb_binding_is_dual(b))
        return 0;
    if (cb_store_cert_get(st, b->certhash, &first, NULL) != 0)
        return 0;
    if (cb_store_cert_get(st, b->certhash2, &second, NULL) != 0)
        goto out_clear_first;
    if (cb_dual_pair_refused(&first.info, &second.info, why, sizeof(why))) {
        cb_key_format(&b->key, key, sizeof(key));
        ret = cb_err_set(err, CB_EFAILED, "%s: %s", key, why);
    } else if (cb_cert_key_family(&first.info) == CB_KEYS_RSA) {
        memcpy(b->certhash, second.info.thumbprint, sizeof(b->certhash));
        memcpy(b->certhash2, first.info.thumbprint, sizeof(b->certhash2));
    }
    cb_cert_row_clear(&second);
out_clear_first:
    cb_cert_row_clear(&first);
    return ret;
}
