/* sni.c: the server_name extension's host name, by the one rule in sni.h. */
#include "binding/sni.h"

#define CB_SNI_HOST_NAME 0 /* NameType host_name */
#define CB_SNI_NAME_MAX 255

int cb_sni_find(const unsigned char *ext, size_t len, const unsigned char **name, size_t *name_len)
{
    /* ServerNameList: uint16 length, then one ServerName: type, uint16 length, the name. */
    if (len < 2 + 3 || ((size_t)ext[0] << 8 | ext[1]) != len - 2)
        return CB_EINVAL;
    if (ext[2] != CB_SNI_HOST_NAME)
        return CB_EINVAL;
    size_t n = (size_t)ext[3] << 8 | ext[4];
    if (n == 0 || n > CB_SNI_NAME_MAX || n != len - 5)
        return CB_EINVAL;
    *name = ext + 5;
    *name_len = n;
    return 0;
}

int cb_sni_normalize(const unsigned char *name, size_t len, char out[CB_NAME_MAX + 1])
{
    return cb_name_normalize((const char *)name, len, 0, out, NULL) == 0 ? 0 : CB_EINVAL;
}

int cb_sni_parse(const unsigned char *ext, size_t len, char out[CB_NAME_MAX + 1])
{
    const unsigned char *name;
    size_t n;

    if (cb_sni_find(ext, len, &name, &n) != 0)
        return CB_EINVAL;
    return cb_sni_normalize(name, n, out);
}
