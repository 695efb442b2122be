/* fuzz_netsh.c: `netsh http show sslcert` text into bindings. Every accepted entry is a
 * binding whose canonical key parses back to itself. */
#include "fuzz_migrate.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct cb_import imp;
    struct cb_err err = {0};

    fuzz_check_import(cb_netsh_parse((const char *)data, size, &imp, &err), &imp, &err);
    return 0;
}
