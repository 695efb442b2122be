/*
 * fuzz_store_row.c: decoding a stored binding row, as read back from a damaged or
 * hand-edited store.
 *
 * The input is the row's columns, one per line (split on newline or NUL): key,
 * certhash, appid, backend, ccspath, flags, proxy, clientca, certhash2 (the later columns
 * last, so older seeds still read the same); missing columns are "" or 0, and
 * the two integers are read with strtoll (base 0, so "-1" and "0x100" work).
 * Invariants, abort() on violation:
 *  - a refusal is CB_ESTORE with a message;
 *  - an accepted row passes cb_binding_validate;
 *  - it round-trips: the columns the store writes for it (canonical key text and
 *    the stored fields) decode to the same binding.
 */
#include "binding/binding.h"
#include "fuzz_common.h"
#include "store/store.h"

enum {
    COL_KEY,
    COL_CERTHASH,
    COL_APPID,
    COL_BACKEND,
    COL_CCSPATH,
    COL_FLAGS,
    COL_PROXY,
    COL_CLIENTCA,
    COL_CERTHASH2,
    N_COLS
};

static bool binding_equal(const struct cb_binding *a, const struct cb_binding *b)
{
    return a->key.kind == b->key.kind && a->key.port == b->key.port &&
           a->key.family == b->key.family && memcmp(a->key.addr, b->key.addr, 16) == 0 &&
           strcmp(a->key.host, b->key.host) == 0 && strcmp(a->certhash, b->certhash) == 0 &&
           strcmp(a->certhash2, b->certhash2) == 0 && strcmp(a->appid, b->appid) == 0 &&
           strcmp(a->backend, b->backend) == 0 && strcmp(a->ccspath, b->ccspath) == 0 &&
           strcmp(a->clientca, b->clientca) == 0 && a->flags == b->flags && a->proxy == b->proxy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_words cols;
    const char *col[N_COLS];
    struct cb_binding b, again;
    struct cb_err err;
    char key[CB_KEY_TEXT_MAX];

    if (!fuzz_words_split(data, size, N_COLS, &cols))
        return 0;
    for (size_t i = 0; i < N_COLS; i++)
        col[i] = i < cols.n ? cols.word[i] : "";
    int64_t flags = strtoll(col[COL_FLAGS], NULL, 0);
    int64_t proxy = strtoll(col[COL_PROXY], NULL, 0);

    err.msg[0] = '\0';
    int rc = cb_store_decode_binding(col[COL_KEY], col[COL_CERTHASH], col[COL_CERTHASH2],
                                     col[COL_APPID], col[COL_BACKEND], col[COL_CCSPATH],
                                     col[COL_CLIENTCA], flags, proxy, &b, &err);
    if (rc != 0) {
        FUZZ_REQUIRE(rc == CB_ESTORE && err.code == CB_ESTORE && err.msg[0] != '\0', col[0]);
        goto out_free_cols;
    }
    FUZZ_REQUIRE(cb_binding_validate(&b, &err) == 0, err.msg);
    /* two certificates: two different ones, the first always set */
    FUZZ_REQUIRE(b.certhash2[0] == '\0' ||
                     (b.certhash[0] != '\0' && strcmp(b.certhash, b.certhash2) != 0),
                 col[0]);
    FUZZ_REQUIRE((b.flags & ~(uint32_t)CB_OPT_ALL) == 0 && b.proxy >= CB_PROXY_OFF &&
                     b.proxy <= CB_PROXY_V2,
                 col[0]);

    cb_key_format(&b.key, key, sizeof(key));
    rc = cb_store_decode_binding(key, b.certhash, b.certhash2, b.appid, b.backend, b.ccspath,
                                 b.clientca, b.flags, b.proxy, &again, &err);
    FUZZ_REQUIRE(rc == 0, err.msg);
    FUZZ_REQUIRE(binding_equal(&b, &again), key);
out_free_cols:
    fuzz_words_free(&cols);
    return 0;
}
