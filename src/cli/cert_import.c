/* cert_import.c: reading a certificate for `add cert` and `deploy` (certstore/ puts it in
 * the store). */
#include "cli/cli.h"

#include <string.h>

void cb_cli_warn(const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "certbind: warning: %s\n", msg);
}

int cb_cli_load_cert(struct cb_cli *cli, const char *file, struct cb_cert_bundle **bundle,
                     struct cb_cert_info *info)
{
    const char *pwfile = cb_cli_opt(cli, "password-file");
    char password[1024];
    int ret;

    if (pwfile && (ret = cb_cli_read_password(cli, pwfile, password, sizeof(password))) != 0)
        return ret;
    ret =
        cb_cert_bundle_load_cached(file, cb_cli_opt(cli, "key"), pwfile ? password : NULL,
                                   cli->batch != NULL ? cli->batch->keys : NULL, bundle, &cli->err);
    explicit_bzero(password, sizeof(password));
    if (ret != 0)
        return ret;
    if ((ret = cb_cert_bundle_info(*bundle, info, &cli->err)) != 0) {
        cb_cert_bundle_free(*bundle);
        *bundle = NULL;
    }
    return ret;
}
