/*
 * test_etcd_parse.c: the etcd gateway's answers as src/etcd reads them, without a server:
 * base64 both ways (and its refusals), int64 fields as strings, error bodies (a compaction
 * told apart), range pages, watch messages (creation, events in order, DELETE, compaction,
 * cancel, errors, malformed ones) and the stream splitter (objects across pieces, strings
 * holding braces and escaped quotes, blanks between objects, the size bound).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/parse.h"

static void test_b64(void **state)
{
    (void)state;
    const unsigned char bin[] = {0, 1, 2, 0xfe, 0xff};
    unsigned char *out;
    size_t len;

    for (size_t n = 0; n <= sizeof(bin); n++) {
        char *s = cb_etcd_b64_encode(bin, n);
        assert_non_null(s);
        assert_int_equal(strlen(s), (n + 2) / 3 * 4);
        assert_int_equal(cb_etcd_b64_decode(s, &out, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(out, bin, n);
        assert_int_equal(out[len], 0);
        free(out);
        free(s);
    }
    assert_int_equal(cb_etcd_b64_decode("Y2I", &out, &len), 0); /* padding optional */
    assert_int_equal(len, 2);
    free(out);
    assert_int_equal(cb_etcd_b64_decode("Y", &out, &len), CB_EINVAL);
    assert_int_equal(cb_etcd_b64_decode("Y2I*", &out, &len), CB_EINVAL);
    assert_int_equal(cb_etcd_b64_decode("Y===", &out, &len), CB_EINVAL);
}

static json_t *body(const char *text)
{
    json_t *j = NULL;
    int code;
    struct cb_err err = {0};
    assert_int_equal(cb_etcd__parse_body(text, strlen(text), &j, &code, &err), 0);
    return j;
}

static void test_bodies(void **state)
{
    (void)state;
    struct cb_err err = {0};
    json_t *j;
    int code;
    int64_t rev;

    const char *compacted = "{\"error\":\"etcdserver: mvcc: required revision has been "
                            "compacted\",\"code\":11}";
    assert_int_equal(cb_etcd__parse_body(compacted, strlen(compacted), &j, &code, &err), CB_ENOENT);
    assert_non_null(strstr(err.msg, "compacted"));
    assert_int_equal(code, 11);
    const char *noleader = "{\"error\":\"etcdserver: no leader\",\"code\":14,\"message\":\"x\"}";
    assert_int_equal(cb_etcd__parse_body(noleader, strlen(noleader), &j, &code, &err), CB_EIO);
    assert_int_equal(code, 14);
    assert_int_equal(cb_etcd__parse_body("[1]", 3, &j, &code, &err), CB_EIO);
    assert_int_equal(cb_etcd__parse_body("<html>", 6, &j, &code, &err), CB_EIO);

    j = body("{\"header\":{\"revision\":\"12\"},\"kvs\":[{\"key\":\"YQ==\",\"value\":\"MQ==\","
             "\"create_revision\":\"3\",\"mod_revision\":\"12\"},{\"key\":\"Yg==\"}],"
             "\"more\":true}");
    struct cb_etcd_kvs kvs = {0};
    bool more;
    assert_int_equal(cb_etcd__header_rev(j, &rev, &err), 0);
    assert_int_equal(rev, 12);
    assert_int_equal(cb_etcd__parse_range(j, &kvs, &more, &err), 0);
    assert_true(more);
    assert_int_equal(kvs.n, 2);
    assert_string_equal(kvs.v[0].key, "a");
    assert_int_equal(kvs.v[0].value_len, 1);
    assert_int_equal(kvs.v[0].mod_rev, 12);
    assert_int_equal(kvs.v[1].value_len, 0); /* an empty value is left out of the JSON */
    cb_etcd_kvs_clear(&kvs);
    json_decref(j);

    static const char *const bad[] = {
        "{\"kvs\":{}}",
        "{\"kvs\":[{\"key\":\"!!\"}]}",
        "{\"kvs\":[{}]}", /* no key */
        "{\"kvs\":[{\"key\":\"YQ==\",\"mod_revision\":\"x\"}]}",
        "{\"kvs\":[{\"key\":\"YQ==\",\"mod_revision\":\"-4\"}]}",
        "{\"kvs\":[{\"key\":\"AGE=\"}]}", /* a NUL in the key */
        "{\"more\":\"yes\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = body(bad[i]);
        assert_int_equal(cb_etcd__parse_range(j, &kvs, &more, &err), CB_EIO);
        cb_etcd_kvs_clear(&kvs);
        json_decref(j);
    }
    j = body("{}");
    assert_int_equal(cb_etcd__header_rev(j, &rev, &err), CB_EIO);
    json_decref(j);
}

static void test_watch_msgs(void **state)
{
    (void)state;
    struct cb_etcd__watch_msg m;
    struct cb_err err = {0};
    const char *t;

    t = "{\"result\":{\"header\":{\"revision\":\"9\"},\"created\":true}}";
    assert_int_equal(cb_etcd__parse_watch_msg(t, strlen(t), &m, &err), 0);
    assert_true(m.created && m.n_ev == 0 && m.revision == 9);
    cb_etcd__watch_msg_clear(&m);
    t = "{\"result\":{\"header\":{\"revision\":\"10\"},\"events\":[{\"kv\":{\"key\":\"YQ==\","
        "\"mod_revision\":\"10\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"Yg==\","
        "\"mod_revision\":\"10\"}}]}}";
    assert_int_equal(cb_etcd__parse_watch_msg(t, strlen(t), &m, &err), 0);
    assert_int_equal(m.n_ev, 2);
    assert_int_equal(m.ev[0].type, CB_ETCD_EV_PUT);
    assert_int_equal(m.ev[1].type, CB_ETCD_EV_DELETE);
    assert_string_equal(m.ev[1].kv.key, "b");
    cb_etcd__watch_msg_clear(&m);
    t = "{\"result\":{\"header\":{\"revision\":\"12\"},\"canceled\":true,"
        "\"compact_revision\":\"11\"}}";
    assert_int_equal(cb_etcd__parse_watch_msg(t, strlen(t), &m, &err), 0);
    assert_true(m.canceled && m.compact_revision == 11);
    cb_etcd__watch_msg_clear(&m);

    static const char *const bad[] = {
        "{\"error\":{\"grpc_code\":14,\"message\":\"no leader\"}}",
        "{\"result\":{}}", /* no header */
        "{\"result\":{\"header\":{\"revision\":\"1\"},\"created\":\"yes\"}}",
        "{\"result\":{\"header\":{\"revision\":\"1\"},\"events\":[{\"type\":\"MOVE\","
        "\"kv\":{\"key\":\"YQ==\"}}]}}",
        "{\"result\":{\"header\":{\"revision\":\"3\"},\"events\":[{\"kv\":{\"key\":\"YQ==\","
        "\"mod_revision\":\"3\"}},{\"kv\":{\"key\":\"YQ==\",\"mod_revision\":\"2\"}}]}}",
        "nope",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cb_etcd__parse_watch_msg(bad[i], strlen(bad[i]), &m, &err), CB_EIO);
        assert_int_equal(m.n_ev, 0);
    }
}

static void test_splitter(void **state)
{
    (void)state;
    const char *stream = "{\"a\":\"}{\\\"\"}\n\r\n {\"b\":[{},{}]}{\"c\":1}";
    const char *want[] = {"{\"a\":\"}{\\\"\"}", "{\"b\":[{},{}]}", "{\"c\":1}"};
    struct cb_err err = {0};

    /* Fed one byte at a time, and all at once: the same three objects. */
    for (int mode = 0; mode < 2; mode++) {
        struct cb_etcd__splitter s = {0};
        size_t got = 0, n = strlen(stream);
        for (size_t off = 0; off < n;) {
            size_t k = mode == 0 ? 1 : n;
            assert_int_equal(cb_etcd__split_feed(&s, stream + off, k, &err), 0);
            off += k;
            const char *obj;
            size_t len;
            while (cb_etcd__split_next(&s, &obj, &len)) {
                assert_true(got < 3);
                assert_int_equal(len, strlen(want[got]));
                assert_memory_equal(obj, want[got], len);
                got++;
            }
        }
        assert_int_equal(got, 3);
        cb_etcd__split_free(&s);
    }
    /* The bound on one unfinished object. */
    struct cb_etcd__splitter s = {0};
    char *big = malloc(1024 * 1024);
    assert_non_null(big);
    memset(big, ' ', 1024 * 1024);
    big[0] = '{';
    int ret = 0;
    for (int i = 0; i < 40 && ret == 0; i++)
        ret = cb_etcd__split_feed(&s, big, 1024 * 1024, &err);
    assert_int_equal(ret, CB_EIO);
    assert_non_null(strstr(err.msg, "larger than"));
    free(big);
    cb_etcd__split_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_watch_msgs),
        cmocka_unit_test(test_splitter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
