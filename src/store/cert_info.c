/* cert_info.c: the certificate record's owned strings. */
#include "store/cert_info.h"

#include <stdlib.h>
#include <string.h>

enum cb_key_family cb_cert_key_family(const struct cb_cert_info *info)
{
    if (strncmp(info->key_type, "EC-", 3) == 0)
        return CB_KEYS_ECDSA;
    if (strncmp(info->key_type, "RSA-", 4) == 0)
        return CB_KEYS_RSA;
    return CB_KEYS_OTHER;
}

const char *cb_key_family_name(enum cb_key_family f)
{
    return f == CB_KEYS_ECDSA ? "ECDSA" : f == CB_KEYS_RSA ? "RSA" : "other";
}

void cb_cert_info_clear(struct cb_cert_info *info)
{
    for (size_t i = 0; i < info->n_names; i++)
        free(info->names[i]);
    free(info->names);
    free(info->subject);
    info->names = NULL;
    info->subject = NULL;
    info->n_names = 0;
}
