/* fuzz_netsh.c: `netsh http show sslcert` text into bindings. Every accepted entry is a
 * binding whose canonical key parses back to itself. */
#include "migrate/migrate.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct cb_import imp;
    struct cb_err err;

    if (cb_netsh_parse((const char *)data, size, &imp, &err) != 0) {
        if (err.msg[0] == '\0')
            abort(); /* every refusal says why */
        return 0;
    }
    for (size_t i = 0; i < imp.n; i++) {
        char text[CB_KEY_TEXT_MAX];
        struct cb_binding_key again;
        cb_key_format(&imp.v[i].b.key, text, sizeof(text));
        if (cb_key_parse_word(text, &again, &err) != 0 ||
            memcmp(&again, &imp.v[i].b.key, sizeof(again)) != 0)
            abort();
    }
    cb_import_clear(&imp);
    return 0;
}
