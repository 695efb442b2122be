/* main.c: certbind's entry point: parse the words, run the command, report. */
#include "cli/cli.h"
#include "tls/io.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: certbind VERB OBJECT [ARGS] [key=value ...] [--json] [--state DIR]\n"
    "\n"
    "Certificates:\n"
    "  add cert FILE [key=FILE] [password-file=FILE]   import PEM or PKCS#12; prints the "
    "thumbprint\n"
    "  add cert FILE FILE ...                          several, each file holding its key\n"
    "  show cert [THUMBPRINT]                          list or show certificates\n"
    "  delete cert THUMBPRINT [force=yes]              remove (refused while bindings use it)\n"
    "Bindings (KEY is ipport=ADDR:PORT, hostnameport=NAME:PORT or ccs=PORT):\n"
    "  add sslcert KEY certhash=THUMBPRINT [options]   add a binding\n"
    "  update sslcert KEY [options]                    change a binding\n"
    "  delete sslcert KEY                              remove a binding\n"
    "  show sslcert [KEY]                              list bindings or show one\n"
    "  certhash=T1,T2: one ECDSA and one RSA certificate for the same names; the client's\n"
    "           signature algorithms choose (ECDSA when it accepts it)\n"
    "  options: backend=HOST:PORT proxyprotocol=off|v1|v2 appid={GUID} ccspath=/DIR force=yes\n"
    "           clientca=FILE|none  (PEM CA certificates: a client certificate is required\n"
    "                                and verified against them)\n"
    "           disablehttp2 disabletls12 disabletls13 disablelegacytls clientcertnegotiation\n"
    "           enablesessionticket disableocspstapling reject acme  (each =enable|disable)\n"
    "           clientcertnegotiation=enable: a client certificate is asked for and passed on\n"
    "           unverified; disablelegacytls=enable changes nothing: TLS 1.2 is always the\n"
    "           floor (accepted for netsh compatibility)\n"
    "Resolution and service:\n"
    "  resolve ip=ADDR port=N [sni=NAME]               which binding answers, and by which rule\n"
    "  check [soon=DAYS]                               every certificate trap, before a client\n"
    "                                                  meets it (exit 1 when errors)\n"
    "  deploy FILE [key=FILE] [match=previous|hostname|both] [preview=yes] [prune=yes]\n"
    "                                                  import a renewed certificate and move\n"
    "                                                  every binding it replaces, at once\n"
    "  import netsh FILE [preview=yes] [ccspath=DIR] [backend=HOST:PORT] [clientca=FILE]\n"
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
    "        [--admin ADDR:PORT [--admin-public]] [--no-affinity] [--cert-cache-mb N]\n"
    "        [--ticket-rotate HOURS] [--iplisten ADDR]...\n"
    "                                                  terminate TLS on every bound endpoint;\n"
    "                                                  --admin serves /metrics and a status page;\n"
    "                                                  --cert-cache-mb: parsed certificates held,\n"
    "                                                  all workers together (default 256, least\n"
    "                                                  recently used dropped and parsed again);\n"
    "                                                  --iplisten: wildcard ports listen there "
    "only\n"
    "\n"
    "Bulk changes:\n"
    "  -f FILE                                         run the commands of FILE (- : standard\n"
    "                                                  input) in one transaction: all or none\n"
    "    one command per line without 'certbind', as on the command line ('...', \"...\" and\n"
    "    \\ quote; # starts a comment); it takes add cert, delete cert and add, update and\n"
    "    delete sslcert; add cert takes many files, each holding a certificate and its key\n"
    "    (or PKCS#12 with password-file=); prints one summary line (--json: an object)\n"
    "\n"
    "Global flags: --state DIR (default $CERTBIND_STATE, /var/lib/certbind as root, else\n"
    "$XDG_STATE_HOME/certbind), --json, --help, --version,\n"
    "--store etcd://HOST:PORT[,HOST:PORT...]/PREFIX (default $CERTBIND_STORE: a fleet store on\n"
    "etcd; --state then holds this node's replica), --store-key FILE (default\n"
    "$CERTBIND_STORE_KEY: 32 random bytes, mode 0600, that seal private keys in etcd).\n"
    "Exit status: 0 success, 1 the operation failed, 2 malformed command line or input file.\n";

int main(int argc, char **argv)
{
    static struct cb_cli cli;
    int ret;

    umask(077);
#ifdef M_MMAP_THRESHOLD
    /* glibc raises its mmap threshold each time a large mapped block is freed (up to 32
     * MiB); after that, the snapshot's 2 MiB-aligned parts (binding/snapshot.c) come from
     * the heap with up to 2 MiB of slack each, which small allocations only partly reuse:
     * at 10^6 bindings a worker held 648 MB where a fixed threshold gives 484 MB. Fixed at
     * glibc's default, a large block is always its own mapping, given back when freed. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
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
    if (cli.verb == NULL && cli.batch_file == NULL) {
        ret = cb_err_set(&cli.err, CB_EINVAL,
                         "give a command, such as 'certbind show sslcert'; see 'certbind --help'");
        goto out_report;
    }
    if (cli.batch_file != NULL) {
        ret = cli.verb == NULL
                  ? cb_cli_batch(&cli)
                  : cb_err_set(&cli.err, CB_EINVAL,
                               "-f FILE runs the commands of FILE; give no command beside it "
                               "(got '%s')",
                               cli.verb);
        fflush(stdout);
        goto out_report;
    }
    ret = cb_cli_run(&cli);
    fflush(stdout);
out_report:
    if (ret != 0)
        fprintf(stderr, "certbind: error: %s\n", cli.err.msg[0] ? cli.err.msg : cb_strerror(ret));
    return cb_exit_status(ret);
}
