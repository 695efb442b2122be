/* peek.c: the server_name of a ClientHello (RFC 8446 4.1.2, RFC 6066 3), for worker choice. */
#include "net/peek.h"
#include "binding/sni.h"

#include <stdint.h>

/* A bounded reader: every take checks what is left, and a short read poisons it. */
struct rd {
    const unsigned char *p;
    size_t left;
    int bad;
};

static uint32_t take(struct rd *r, size_t n)
{
    uint32_t v = 0;
    if (r->bad || r->left < n) {
        r->bad = 1;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        v = v << 8 | r->p[i];
    r->p += n;
    r->left -= n;
    return v;
}

static void skip(struct rd *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = 1;
        return;
    }
    r->p += n;
    r->left -= n;
}

/* A length-prefixed block: its reader, and the outer reader moved past it. */
static struct rd block(struct rd *r, size_t prefix)
{
    size_t n = take(r, prefix);
    struct rd in = {.p = r->p, .left = n, .bad = r->bad || r->left < n};
    skip(r, n);
    return in;
}

size_t cb_peek_wanted(const unsigned char *buf, size_t len)
{
    return len < 5 ? 5 : 5 + ((size_t)buf[3] << 8 | buf[4]);
}

enum cb_peek cb_peek_sni(const unsigned char *buf, size_t len, const unsigned char **name,
                         size_t *name_len)
{
    if (len >= 1 && buf[0] != 22 /* handshake */)
        return CB_PEEK_UNKNOWN;
    if (len >= 2 && buf[1] != 3)
        return CB_PEEK_UNKNOWN;
    if (len < 5)
        return CB_PEEK_MORE;
    size_t rec = (size_t)buf[3] << 8 | buf[4];
    if (rec == 0 || rec > 16384)
        return CB_PEEK_UNKNOWN;
    if (len < 5 + rec)
        return CB_PEEK_MORE;

    struct rd r = {.p = buf + 5, .left = rec};
    if (take(&r, 1) != 1 /* client_hello */)
        return CB_PEEK_UNKNOWN;
    size_t body = take(&r, 3);
    if (r.bad || body > r.left)
        return CB_PEEK_UNKNOWN; /* continued in a later record: not followed */
    struct rd h = {.p = r.p, .left = body};
    skip(&h, 2 + 32); /* legacy_version, random */
    block(&h, 1);     /* legacy_session_id */
    block(&h, 2);     /* cipher_suites */
    block(&h, 1);     /* legacy_compression_methods */
    if (h.bad)
        return CB_PEEK_UNKNOWN;
    if (h.left == 0)
        return CB_PEEK_NO_SNI; /* no extensions at all */
    struct rd ext = block(&h, 2);
    if (h.bad || ext.bad)
        return CB_PEEK_UNKNOWN;
    while (ext.left > 0) {
        uint32_t type = take(&ext, 2);
        struct rd data = block(&ext, 2);
        if (ext.bad || data.bad)
            return CB_PEEK_UNKNOWN;
        if (type != 0 /* server_name */)
            continue;
        /* Read as the handshake reads it (binding/sni.h): one rule for both. */
        return cb_sni_find(data.p, data.left, name, name_len) == 0 ? CB_PEEK_SNI : CB_PEEK_UNKNOWN;
    }
    return CB_PEEK_NO_SNI;
}
