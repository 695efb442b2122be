/*
 * test_fleet_presence.c: a fleet node's presence key (daemon/fleet_node.h). Its value comes
 * from etcd, so from any writer: only a plain decimal revision that fits int64_t is read as
 * one; anything else counts as a node that has not served the challenge. The node id is
 * stable for one state folder, distinct for two, and a safe etcd key part.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "daemon/fleet_node.h"

static int parse(const char *text, int64_t *rev)
{
    return cb_fleet_node_parse_acked(text, strlen(text), rev);
}

static void test_a_revision_is_read(void **unused)
{
    (void)unused;
    int64_t rev = -1;
    assert_int_equal(parse("0", &rev), 0);
    assert_int_equal(rev, 0);
    assert_int_equal(parse("12345", &rev), 0);
    assert_int_equal(rev, 12345);
    assert_int_equal(parse("9223372036854775807", &rev), 0);
    assert_int_equal(rev, INT64_MAX);
}

static void test_anything_else_is_refused(void **unused)
{
    (void)unused;
    static const char *const bad[] = {"",
                                      "-1",
                                      "+1",
                                      " 1",
                                      "1 ",
                                      "1\n",
                                      "0x10",
                                      "1e3",
                                      "12a",
                                      "abc",
                                      "9223372036854775808",
                                      "99999999999999999999",
                                      "00000000000000000001"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t rev = 77;
        assert_int_equal(parse(bad[i], &rev), CB_EINVAL);
        assert_int_equal(rev, 77); /* untouched */
    }
    int64_t rev = 77;
    assert_int_equal(cb_fleet_node_parse_acked("1\0002", 3, &rev), CB_EINVAL);
    assert_int_equal(rev, 77);
}

static void test_the_id_is_stable_per_state_folder(void **unused)
{
    (void)unused;
    char a[CB_FLEET_NODE_ID_MAX], b[CB_FLEET_NODE_ID_MAX], c[CB_FLEET_NODE_ID_MAX];
    cb_fleet_node_id("/srv/node1", a);
    cb_fleet_node_id("/srv/node1", b);
    cb_fleet_node_id("/srv/node2", c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_true(strlen(a) > 9 && strlen(a) < CB_FLEET_NODE_ID_MAX);
    for (const char *p = a; *p; p++)
        assert_non_null(
            strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._", *p));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_revision_is_read),
        cmocka_unit_test(test_anything_else_is_refused),
        cmocka_unit_test(test_the_id_is_stable_per_state_folder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
