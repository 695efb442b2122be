/*
 * test_conn_fsm.c: the table of a connection's states (net/conn_state.h): every move
 * the server makes is allowed, every other pair of states is refused (CLOSED goes
 * nowhere, nothing goes back to NEW or skips the handshake), and values outside the
 * enum are refused and named "?". No sockets: the table alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "net/conn_state.h"

#define N CB_CONN_STATE_COUNT

/* The connection's life as the design describes it, written out independently of the
 * table in conn_state.c. */
static const struct {
    enum cb_conn_state from, to;
} legal[] = {
    {CB_CONN_NEW, CB_CONN_PEEK},         {CB_CONN_NEW, CB_CONN_HANDSHAKE},
    {CB_CONN_PEEK, CB_CONN_HANDSHAKE},   {CB_CONN_PEEK, CB_CONN_CLOSED},
    {CB_CONN_HANDSHAKE, CB_CONN_WAIT},   {CB_CONN_HANDSHAKE, CB_CONN_CONNECTING},
    {CB_CONN_HANDSHAKE, CB_CONN_RELAY},  {CB_CONN_HANDSHAKE, CB_CONN_CLOSED},
    {CB_CONN_WAIT, CB_CONN_CONNECTING},  {CB_CONN_WAIT, CB_CONN_CLOSED},
    {CB_CONN_CONNECTING, CB_CONN_RELAY}, {CB_CONN_CONNECTING, CB_CONN_CLOSED},
    {CB_CONN_RELAY, CB_CONN_CLOSED},
};

static bool is_legal(int from, int to)
{
    for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++)
        if ((int)legal[i].from == from && (int)legal[i].to == to)
            return true;
    return false;
}

static void test_every_legal_transition_is_accepted(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++)
        if (!cb_conn_transition_ok(legal[i].from, legal[i].to))
            fail_msg("%s -> %s refused", cb_conn_state_name(legal[i].from),
                     cb_conn_state_name(legal[i].to));
}

static void test_every_other_pair_is_refused(void **state)
{
    (void)state;
    int refused = 0;
    for (int from = 0; from < N; from++)
        for (int to = 0; to < N; to++) {
            if (is_legal(from, to))
                continue;
            if (cb_conn_transition_ok((enum cb_conn_state)from, (enum cb_conn_state)to))
                fail_msg("%s -> %s allowed", cb_conn_state_name((enum cb_conn_state)from),
                         cb_conn_state_name((enum cb_conn_state)to));
            refused++;
        }
    assert_int_equal(refused, N * N - (int)(sizeof(legal) / sizeof(legal[0])));
}

static void test_closed_is_final_and_new_is_never_reentered(void **state)
{
    (void)state;
    for (int s = 0; s < N; s++) {
        assert_false(cb_conn_transition_ok(CB_CONN_CLOSED, (enum cb_conn_state)s));
        assert_false(cb_conn_transition_ok((enum cb_conn_state)s, CB_CONN_NEW));
        assert_false(cb_conn_transition_ok((enum cb_conn_state)s, (enum cb_conn_state)s));
    }
    /* Every state a connection is watched in can be closed. */
    for (int s = CB_CONN_PEEK; s < CB_CONN_CLOSED; s++)
        assert_true(cb_conn_transition_ok((enum cb_conn_state)s, CB_CONN_CLOSED));
}

static void test_nothing_skips_the_handshake(void **state)
{
    (void)state;
    const enum cb_conn_state after[] = {CB_CONN_WAIT, CB_CONN_CONNECTING, CB_CONN_RELAY};
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
        assert_false(cb_conn_transition_ok(CB_CONN_NEW, after[i]));
        assert_false(cb_conn_transition_ok(CB_CONN_PEEK, after[i]));
    }
    /* A connection waiting for its first request has a backend: no 503 relay from WAIT. */
    assert_false(cb_conn_transition_ok(CB_CONN_WAIT, CB_CONN_RELAY));
}

static void test_values_outside_the_enum(void **state)
{
    (void)state;
    assert_false(cb_conn_transition_ok((enum cb_conn_state) - 1, CB_CONN_CLOSED));
    assert_false(cb_conn_transition_ok(CB_CONN_RELAY, (enum cb_conn_state)N));
    assert_false(cb_conn_transition_ok((enum cb_conn_state)N, (enum cb_conn_state)(N + 1)));
    assert_string_equal(cb_conn_state_name((enum cb_conn_state)N), "?");
    assert_string_equal(cb_conn_state_name((enum cb_conn_state) - 1), "?");
}

static void test_every_state_has_a_name(void **state)
{
    (void)state;
    for (int s = 0; s < N; s++) {
        const char *name = cb_conn_state_name((enum cb_conn_state)s);
        assert_non_null(name);
        assert_string_not_equal(name, "?");
        for (int t = 0; t < s; t++)
            assert_string_not_equal(name, cb_conn_state_name((enum cb_conn_state)t));
    }
    assert_string_equal(cb_conn_state_name(CB_CONN_HANDSHAKE), "handshake");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_legal_transition_is_accepted),
        cmocka_unit_test(test_every_other_pair_is_refused),
        cmocka_unit_test(test_closed_is_final_and_new_is_never_reentered),
        cmocka_unit_test(test_nothing_skips_the_handshake),
        cmocka_unit_test(test_values_outside_the_enum),
        cmocka_unit_test(test_every_state_has_a_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
