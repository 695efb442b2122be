/*
 * fuzz_etcd_json.c: what an etcd JSON gateway answers, as src/etcd parses it: a body
 * (cb_etcd__parse_body) read as a range page (cb_etcd__parse_range), a watch message
 * (cb_etcd__parse_watch_msg), and the input as a watch stream fed in pieces of every size
 * to the splitter (cb_etcd__split_feed/next), each object parsed as a watch message.
 *
 * Invariants, abort() on violation:
 *  - a failure has a message; an accepted answer's revisions are >= 0;
 *  - every parsed key is non-empty and NUL-terminated at its length, every value is
 *    followed by a NUL;
 *  - watch events come in mod_revision order;
 *  - the splitter hands out objects whose bytes are the input's, in order, and never more
 *    than the input.
 */
#include "etcd/parse.h"
#include "fuzz_common.h"

static void check_kv(const struct cb_etcd_kv *kv)
{
    FUZZ_REQUIRE(kv->key != NULL && kv->key[0] != '\0', "empty key");
    FUZZ_REQUIRE(kv->value != NULL && kv->value[kv->value_len] == '\0', kv->key);
    FUZZ_REQUIRE(kv->mod_rev >= 0 && kv->create_rev >= 0, kv->key);
}

static void parse_msg(const char *text, size_t len)
{
    struct cb_etcd__watch_msg m;
    struct cb_err err = {0};
    if (cb_etcd__parse_watch_msg(text, len, &m, &err) != 0) {
        FUZZ_REQUIRE(err.msg[0] != '\0', "failure without a message");
        return;
    }
    FUZZ_REQUIRE(m.revision >= 0 && m.compact_revision >= 0, "negative revision");
    for (size_t i = 0; i < m.n_ev; i++) {
        check_kv(&m.ev[i].kv);
        FUZZ_REQUIRE(i == 0 || m.ev[i].kv.mod_rev >= m.ev[i - 1].kv.mod_rev, "event order");
    }
    cb_etcd__watch_msg_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct cb_err err = {0};
    json_t *resp = NULL;
    int code;

    if (cb_etcd__parse_body(text, size, &resp, &code, &err) == 0) {
        struct cb_etcd_kvs kvs = {0};
        bool more;
        int64_t rev;
        if (cb_etcd__header_rev(resp, &rev, &err) == 0)
            FUZZ_REQUIRE(rev >= 0, "negative header revision");
        if (cb_etcd__parse_range(resp, &kvs, &more, &err) == 0)
            for (size_t i = 0; i < kvs.n; i++)
                check_kv(&kvs.v[i]);
        cb_etcd_kvs_clear(&kvs);
        json_decref(resp);
    } else {
        FUZZ_REQUIRE(err.msg[0] != '\0', "failure without a message");
    }
    parse_msg(text, size);

    /* The stream in pieces of 1..7 bytes (the first byte chooses). */
    struct cb_etcd__splitter s = {0};
    size_t piece = size > 0 ? (size_t)(data[0] % 7) + 1 : 1, off = 0, out = 0;
    while (off < size) {
        size_t n = size - off < piece ? size - off : piece;
        if (cb_etcd__split_feed(&s, text + off, n, &err) != 0)
            break;
        off += n;
        const char *obj;
        size_t len;
        while (cb_etcd__split_next(&s, &obj, &len)) {
            FUZZ_REQUIRE(len > 0 && out + len <= size, "object beyond the input");
            /* Blanks between objects are dropped, nothing else: the object is in the input
             * at or after where the previous one ended. */
            FUZZ_REQUIRE(memmem(text + out, size - out, obj, len) != NULL, "object not input");
            out += len;
            parse_msg(obj, len);
        }
    }
    cb_etcd__split_free(&s);
    return 0;
}
