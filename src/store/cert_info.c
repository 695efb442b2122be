/* cert_info.c: the certificate record's owned strings. */
#include "store/cert_info.h"

#include <stdlib.h>

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
