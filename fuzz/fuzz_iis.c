/* fuzz_iis.c: IIS applicationHost.config site bindings (libxml2) into binding keys. */
#include "fuzz_migrate.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct cb_import imp;
    struct cb_err err = {0};

    fuzz_check_import(cb_iis_parse((const char *)data, size, &imp, &err), &imp, &err);
    return 0;
}
