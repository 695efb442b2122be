/* main.c: certbind's entry point: parse the words, run the command, report. */
#include "cli/cli.h"
#include "tls/io.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: certbind VERB OBJECT [ARGS] [key=value ...] [--json] [--state DIR]\n"
    "\n"
    "Certificates:\n"
    "  add cert FILE [key=FILE] [password-file=FILE]   import PEM or PKCS#12; prints the "
    "thumbprint\n"
    "  show cert [THUMBPRINT]                          list or show certificates\n"
    "  delete cert THUMBPRINT [force=yes]              remove (refused while bindings use it)\n"
    "Bindings (KEY is ipport=ADDR:PORT, hostnameport=NAME:PORT or ccs=PORT):\n"
    "  add sslcert KEY certhash=THUMBPRINT [options]   add a binding\n"
    "  update sslcert KEY [options]                    change a binding\n"
    "  delete sslcert KEY                              remove a binding\n"
    "  show sslcert [KEY]                              list bindings or show one\n"
    "  options: backend=HOST:PORT proxyprotocol=off|v1|v2 appid={GUID} ccspath=/DIR force=yes\n"
    "           disablehttp2 disabletls12 disabletls13 disablelegacytls clientcertnegotiation\n"
    "           enablesessionticket disableocspstapling reject acme  (each =enable|disable)\n"
    "Resolution and service:\n"
    "  resolve ip=ADDR port=N [sni=NAME]               which binding answers, and by which rule\n"
    "  check [soon=DAYS]                               every certificate trap, before a client\n"
    "                                                  meets it (exit 1 when errors)\n"
    "  deploy FILE [key=FILE] [match=previous|hostname|both] [preview=yes] [prune=yes]\n"
    "                                                  import a renewed certificate and move\n"
    "                                                  every binding it replaces, at once\n"
    "  import netsh FILE [preview=yes] [ccspath=DIR] [backend=HOST:PORT]\n"
    "                                                  the bindings of 'netsh http show sslcert'\n"
    "  import iis applicationHost.config preview=yes   the https site bindings of IIS\n"
    "  set user=NAME                                   the service user serve runs as\n"
    "Automatic certificates (ACME):\n"
    "  set acme directory=URL email=ADDRESS [agreetos=yes] [cafile=FILE]\n"
    "           [eabkid=ID eabhmackey=KEY] [dnshook=PATH] [keytype=ecdsa|rsa]\n"
    "                                                  the store's ACME account; later calls\n"
    "                                                  change only the options given\n"
    "  add sslcert hostnameport=NAME:PORT acme=enable [options]\n"
    "                                                  a managed binding: serve obtains and\n"
    "                                                  renews its certificate\n"
    "  show acme                                       the account and every managed binding\n"
    "  acme renew [KEY] [force=yes] [wait=SECONDS]     ask the running serve to renew now and\n"
    "                                                  wait for the outcome (default 120 s)\n"
    "  serve [--workers N] [--handshake-timeout S] [--idle-timeout S] [--grace S]\n"
    "        [--max-connections N] [--max-connections-per-binding N]\n"
    "        [--admin ADDR:PORT [--admin-public]] [--no-affinity] [--iplisten ADDR]...\n"
    "                                                  terminate TLS on every bound endpoint;\n"
    "                                                  --admin serves /metrics and a status page;\n"
    "                                                  --iplisten: wildcard ports listen there only\n"
    "\n"
    "Global flags: --state DIR (default $CERTBIND_STATE, /var/lib/certbind as root, else\n"
    "$XDG_STATE_HOME/certbind), --json, --help, --version,\n"
    "--store etcd://HOST:PORT[,HOST:PORT...]/PREFIX (default $CERTBIND_STORE: a fleet store on\n"
    "etcd; --state then holds this node's replica), --store-key FILE (default\n"
    "$CERTBIND_STORE_KEY: 32 random bytes, mode 0600, that seal private keys in etcd).\n"
    "Exit status: 0 success, 1 the operation failed, 2 malformed command line or input file.\n";

struct command {
    const char *verb, *object;
    int (*run)(struct cb_cli *cli);
};

static const struct command commands[] = {
    {"add", "cert", cb_cmd_add_cert},
    {"show", "cert", cb_cmd_show_cert},
    {"delete", "cert", cb_cmd_delete_cert},
    {"add", "sslcert", cb_cmd_add_sslcert},
    {"update", "sslcert", cb_cmd_update_sslcert},
    {"delete", "sslcert", cb_cmd_delete_sslcert},
    {"show", "sslcert", cb_cmd_show_sslcert},
    {"resolve", NULL, cb_cmd_resolve},
    {"set", "acme", cb_cmd_set_acme},
    {"set", NULL, cb_cmd_set},
    {"show", "acme", cb_cmd_show_acme},
    {"acme", "*", cb_cmd_acme}, /* acme renew */
    {"serve", NULL, cb_cmd_serve},
    {"check", NULL, cb_cmd_check},
    {"deploy", "*", cb_cmd_deploy}, /* "*": the word after the verb is the file */
    {"import", "*", cb_cmd_import}, /* import netsh FILE, import iis FILE */
};

int main(int argc, char **argv)
{
    static struct cb_cli cli;
    int ret;

    umask(077);
    if ((ret = cb_cli_parse(&cli, argc, argv)) != 0)
        goto out_report;
    if (cli.verb != NULL && strcmp(cli.verb, "--version") == 0) {
        printf("certbind %s (%s)\n", CB_VERSION, cb_tls_library());
        return 0;
    }
    if (cli.help) {
        fputs(usage, stdout);
        return 0;
    }
    if (cli.verb == NULL) {
        ret = cb_err_set(&cli.err, CB_EINVAL,
                         "give a command, such as 'certbind show sslcert'; see 'certbind --help'");
        goto out_report;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const struct command *c = &commands[i];
        if (strcmp(c->verb, cli.verb) != 0)
            continue;
        if (c->object != NULL && strcmp(c->object, "*") != 0 &&
            (cli.object == NULL || strcmp(c->object, cli.object) != 0))
            continue;
        if (c->object == NULL && cli.object != NULL) {
            ret = cb_err_set(&cli.err, CB_EINVAL, "unexpected word '%s' after 'certbind %s'",
                             cli.object, cli.verb);
            goto out_report;
        }
        ret = c->run(&cli);
        fflush(stdout);
        goto out_report;
    }
    if (cli.object != NULL && (strcmp(cli.verb, "add") == 0 || strcmp(cli.verb, "show") == 0 ||
                               strcmp(cli.verb, "delete") == 0 || strcmp(cli.verb, "update") == 0))
        ret =
            cb_err_set(&cli.err, CB_EINVAL,
                       "'certbind %s %s' is not a command; the objects are cert, sslcert and acme",
                       cli.verb, cli.object);
    else
        ret = cb_err_set(&cli.err, CB_EINVAL, "'%s' is not a command; see 'certbind --help'",
                         cli.verb);
out_report:
    if (ret != 0)
        fprintf(stderr, "certbind: error: %s\n", cli.err.msg[0] ? cli.err.msg : cb_strerror(ret));
    return cb_exit_status(ret);
}
