/* fuzz_netsh.c: `netsh http show sslcert` (and `show iplisten`) text into bindings (and the
 * IP listen list, whose addresses are canonical and parse back to themselves). Every accepted entry
 * is a binding whose canonical key parses back to itself; a refusal is one line of UTF-8; unknown
 * field names are kept as UTF-8 without control characters. Text that is UTF-8 reads the same once
 * saved as Windows PowerShell 5.1 saves it (UTF-16LE with a byte-order mark) and as Out-File
 * -Encoding utf8 does (UTF-8 with one). */
#include "fuzz_common.h"
#include "fuzz_migrate.h"
#include "binding/hostport.h"

/* Length of the UTF-8 character at s (n bytes left) and its code point, 0 if none. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len = s[0] < 0x80             ? 1
                 : (s[0] & 0xE0) == 0xC0 ? 2
                 : (s[0] & 0xF0) == 0xE0 ? 3
                 : (s[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    uint32_t c = len == 1 ? s[0] : len == 2 ? s[0] & 0x1Fu : len == 3 ? s[0] & 0x0Fu : s[0] & 0x07u;

    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3Fu);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < least[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

static bool valid_utf8(const char *s)
{
    uint32_t c;

    for (size_t n = strlen(s), i = 0; i < n;) {
        size_t len = utf8_decode((const unsigned char *)s + i, n - i, &c);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

/* data (valid UTF-8) as UTF-16LE after a BOM; NULL when data is not UTF-8. */
static unsigned char *utf16le(const uint8_t *data, size_t size, size_t *out_len)
{
    unsigned char *out = malloc(2 + size * 2 + 2);
    size_t o = 0;
    uint32_t c;

    if (out == NULL)
        return NULL;
    out[o++] = 0xFF;
    out[o++] = 0xFE;
    for (size_t i = 0; i < size;) {
        size_t len = utf8_decode(data + i, size - i, &c);
        if (len == 0) {
            free(out);
            return NULL;
        }
        i += len;
        if (c >= 0x10000) {
            uint32_t v = c - 0x10000, hi = 0xD800 | v >> 10, lo = 0xDC00 | (v & 0x3FF);
            out[o++] = (unsigned char)hi, out[o++] = (unsigned char)(hi >> 8);
            out[o++] = (unsigned char)lo, out[o++] = (unsigned char)(lo >> 8);
        } else {
            out[o++] = (unsigned char)c, out[o++] = (unsigned char)(c >> 8);
        }
    }
    *out_len = o;
    return out;
}

static void check_outcome(int ret, const struct cb_import *imp, const struct cb_err *err)
{
    if (ret != 0) {
        FUZZ_REQUIRE(strpbrk(err->msg, "\r\n") == NULL, err->msg);
        FUZZ_REQUIRE(valid_utf8(err->msg), err->msg);
        return;
    }
    FUZZ_REQUIRE(imp->n_unknown <= CB_IMPORT_UNKNOWN_MAX, NULL);
    for (size_t i = 0; i < imp->n_unknown; i++) {
        const struct cb_import_unknown *u = &imp->unknown[i];
        FUZZ_REQUIRE(u->name[0] != '\0' && u->line >= 1 && u->count >= 1, u->name);
        FUZZ_REQUIRE(valid_utf8(u->name), u->name);
        for (const char *p = u->name; *p; p++)
            FUZZ_REQUIRE((unsigned char)*p >= 0x20 && *p != 0x7F, u->name);
    }
    FUZZ_REQUIRE(imp->n_unknown == CB_IMPORT_UNKNOWN_MAX || imp->unknown_more == 0, NULL);
    /* The IP listen list: canonical addresses, each once, that parse back to themselves. */
    FUZZ_REQUIRE(imp->n_iplisten <= CB_IMPORT_IPLISTEN_MAX, NULL);
    FUZZ_REQUIRE(imp->iplisten_seen || imp->n_iplisten == 0, NULL);
    FUZZ_REQUIRE(imp->n > 0 || imp->iplisten_seen, NULL);
    for (size_t i = 0; i < imp->n_iplisten; i++) {
        const char *a = imp->iplisten[i].addr;
        struct cb_hostport hp;
        struct cb_err e = {0};
        FUZZ_REQUIRE(imp->iplisten[i].line >= 1, a);
        FUZZ_REQUIRE(cb_host_parse(a, 0, &hp, NULL, &e) == 0 && strcmp(hp.host, a) == 0, a);
        for (size_t j = 0; j < i; j++)
            FUZZ_REQUIRE(strcmp(imp->iplisten[j].addr, a) != 0, a);
    }
}

/* The same text in another encoding gives the same bindings, or the same refusal. */
static void check_same(const struct cb_import *a, int ret_a, const struct cb_err *err_a,
                       const unsigned char *data, size_t size)
{
    struct cb_import b;
    struct cb_err err_b = {0};
    int ret_b = cb_netsh_parse((const char *)data, size, &b, &err_b);

    FUZZ_REQUIRE(ret_a == ret_b, err_b.msg);
    if (ret_a != 0) {
        FUZZ_REQUIRE(strcmp(err_a->msg, err_b.msg) == 0, err_b.msg);
        return;
    }
    FUZZ_REQUIRE(a->n == b.n && a->n_unknown == b.n_unknown && a->unknown_more == b.unknown_more,
                 NULL);
    for (size_t i = 0; i < a->n; i++)
        FUZZ_REQUIRE(a->v[i].line == b.v[i].line &&
                         memcmp(&a->v[i].b, &b.v[i].b, sizeof(a->v[i].b)) == 0,
                     NULL);
    FUZZ_REQUIRE(memcmp(a->unknown, b.unknown, sizeof(a->unknown)) == 0, NULL);
    FUZZ_REQUIRE(a->iplisten_seen == b.iplisten_seen && a->n_iplisten == b.n_iplisten, NULL);
    for (size_t i = 0; i < a->n_iplisten; i++)
        FUZZ_REQUIRE(strcmp(a->iplisten[i].addr, b.iplisten[i].addr) == 0 &&
                         a->iplisten[i].line == b.iplisten[i].line,
                     NULL);
    cb_import_clear(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cb_import imp;
    struct cb_err err = {0};
    int ret = cb_netsh_parse((const char *)data, size, &imp, &err);

    check_outcome(ret, &imp, &err);
    /* Text read as UTF-8 as it is: no byte-order mark, no zero byte (which would make it
     * UTF-16 or a refusal), whole UTF-8 characters. */
    bool plain = memchr(data, 0, size) == NULL && !(size >= 2 && data[0] >= 0xFE) &&
                 !(size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0);
    size_t len16 = 0;
    unsigned char *as16 = plain ? utf16le(data, size, &len16) : NULL;
    if (as16 != NULL) {
        check_same(&imp, ret, &err, as16, len16);
        unsigned char *bom8 = malloc(size + 3);
        if (bom8 != NULL) {
            memcpy(bom8, "\xEF\xBB\xBF", 3);
            memcpy(bom8 + 3, data, size);
            check_same(&imp, ret, &err, bom8, size + 3);
            free(bom8);
        }
        free(as16);
    }
    fuzz_check_import(ret, &imp, &err);
    return 0;
}
