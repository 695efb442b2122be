/*
 * test_handoff.c: the hand-off messages between workers (net/handoff.h) with real
 * socket pairs and real descriptors, and cb_handoff_return_all(), which the master
 * runs on the inbox of a dead worker: each queued connection goes back to the worker
 * that accepted it, marked `back`; one that cannot (from the dead worker itself, a
 * broken message, a full queue) is closed, which its client sees as an end of stream.
 *
 * Each "client connection" is one end of a stream socket pair: the end passed around,
 * and the end the test keeps to see whether the other is still open somewhere.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/handoff.h"

#define WORKERS 3

struct inboxes {
    int pair[WORKERS][2]; /* [0]: the worker's inbox (rx), [1]: where others send (tx) */
    int tx[WORKERS];
};

static int setup(void **state)
{
    static struct inboxes ib;
    for (int i = 0; i < WORKERS; i++) {
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, ib.pair[i]) != 0)
            return -1;
        ib.tx[i] = ib.pair[i][1];
    }
    *state = &ib;
    return 0;
}

static int teardown(void **state)
{
    struct inboxes *ib = *state;
    for (int i = 0; i < WORKERS; i++) {
        close(ib->pair[i][0]);
        close(ib->pair[i][1]);
    }
    return 0;
}

/* A client connection: *keep is the test's end, the returned end is to be passed. */
static int client(int *keep)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    *keep = sv[0];
    return sv[1];
}

/* Queues `fd` (then closed here: only the queue holds it) on inbox `to`, as passed by
 * worker `from`. */
static void pass(struct inboxes *ib, int to, int from, uint32_t back, int fd)
{
    struct cb_handoff_msg m;
    memset(&m, 0, sizeof(m));
    m.magic = CB_HANDOFF_MAGIC;
    m.from = from;
    m.back = back;
    m.accepted_ms = 1234;
    m.peer.ss_family = AF_INET;
    assert_int_equal(cb_handoff_send(ib->tx[to], fd, &m), 0);
    close(fd);
}

/* Whether the other end of keep is closed everywhere (reads an end of stream). */
static bool peer_closed(int keep)
{
    char c;
    return recv(keep, &c, 1, MSG_DONTWAIT) == 0;
}

/* Whether an inbox is empty. */
static bool empty(int rx)
{
    char c;
    return recv(rx, &c, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN;
}

/* Takes one message from rx: checks it came back to `from` marked back, and that its
 * descriptor is the other end of keep (a byte written there arrives at keep). */
static void expect_back(int rx, int from, int keep)
{
    struct cb_handoff_msg m;
    int fd = -1, flags = 0;
    ssize_t n = cb_handoff_recv(rx, &m, &fd, &flags);
    assert_int_equal(n, sizeof(m));
    assert_true(cb_handoff_valid(&m, n, fd, flags, WORKERS));
    assert_int_equal(m.from, from);
    assert_int_equal(m.back, 1);
    assert_int_equal(m.accepted_ms, 1234); /* the handshake deadline still runs from accept */
    assert_int_equal(m.peer.ss_family, AF_INET);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(write(fd, "x", 1), 1);
    char c = 0;
    assert_int_equal(recv(keep, &c, 1, MSG_DONTWAIT), 1);
    assert_int_equal(c, 'x');
    close(fd);
    assert_true(peer_closed(keep)); /* and nobody else holds a copy */
}

static void test_send_and_receive_one(void **state)
{
    struct inboxes *ib = *state;
    int keep, fd = client(&keep);
    struct cb_handoff_msg m;
    int got, flags;

    pass(ib, 1, 0, 1, fd);
    assert_int_equal(cb_handoff_recv(ib->pair[1][0], &m, &got, &flags), sizeof(m));
    assert_true(cb_handoff_valid(&m, sizeof(m), got, flags, WORKERS));
    assert_false(cb_handoff_valid(&m, sizeof(m), got, flags, 0)); /* no such worker */
    assert_false(cb_handoff_valid(&m, sizeof(m) - 1, got, flags, WORKERS));
    assert_false(cb_handoff_valid(&m, sizeof(m), -1, flags, WORKERS));
    assert_false(cb_handoff_valid(&m, sizeof(m), got, MSG_CTRUNC, WORKERS));
    close(got);
    assert_true(peer_closed(keep));
    close(keep);
    assert_true(cb_handoff_recv(ib->pair[1][0], &m, &got, &flags) < 0);
    assert_int_equal(got, -1);
}

static void test_return_all_sends_each_back_to_its_acceptor(void **state)
{
    struct inboxes *ib = *state;
    int keep0, keep2a, keep2b;
    const int dead = 1;

    pass(ib, dead, 0, 0, client(&keep0));
    pass(ib, dead, 2, 0, client(&keep2a));
    pass(ib, dead, 2, 0, client(&keep2b));
    assert_int_equal(cb_handoff_return_all(ib->pair[dead][0], ib->tx, WORKERS, dead), 3);
    assert_true(empty(ib->pair[dead][0]));
    expect_back(ib->pair[0][0], 0, keep0);
    expect_back(ib->pair[2][0], 2, keep2a);
    expect_back(ib->pair[2][0], 2, keep2b);
    assert_true(empty(ib->pair[0][0]) && empty(ib->pair[2][0]));
    close(keep0);
    close(keep2a);
    close(keep2b);
}

static void test_return_all_closes_what_cannot_go_back(void **state)
{
    struct inboxes *ib = *state;
    int keep_own, keep_bad, keep_ok;
    const int dead = 2;

    /* Accepted by the dead worker itself, sent back to it by a full owner. */
    pass(ib, dead, dead, 1, client(&keep_own));
    /* Not a message of ours. */
    struct cb_handoff_msg junk;
    memset(&junk, 0, sizeof(junk));
    junk.magic = 0xdeadbeef;
    int fd = client(&keep_bad);
    assert_int_equal(cb_handoff_send(ib->tx[dead], fd, &junk), 0);
    close(fd);
    /* A datagram with no descriptor at all. */
    assert_int_equal(send(ib->tx[dead], "?", 1, 0), 1);
    /* And one that can go back. */
    pass(ib, dead, 0, 0, client(&keep_ok));

    assert_int_equal(cb_handoff_return_all(ib->pair[dead][0], ib->tx, WORKERS, dead), 1);
    assert_true(empty(ib->pair[dead][0]));
    assert_true(peer_closed(keep_own));
    assert_true(peer_closed(keep_bad));
    expect_back(ib->pair[0][0], 0, keep_ok);
    assert_true(empty(ib->pair[1][0]));
    close(keep_own);
    close(keep_bad);
    close(keep_ok);
}

static void test_return_all_closes_when_the_acceptor_queue_is_full(void **state)
{
    struct inboxes *ib = *state;
    const int dead = 0, acceptor = 1;
    int keep_first, keep_late, spare;

    /* Fill worker 1's inbox until a send would block. */
    int filler = client(&spare);
    struct cb_handoff_msg m;
    memset(&m, 0, sizeof(m));
    m.magic = CB_HANDOFF_MAGIC;
    m.from = 2;
    int queued = 0;
    while (cb_handoff_send(ib->tx[acceptor], filler, &m) == 0)
        queued++;
    assert_true(queued > 0);

    pass(ib, dead, acceptor, 0, client(&keep_first));
    pass(ib, dead, acceptor, 0, client(&keep_late));
    assert_int_equal(cb_handoff_return_all(ib->pair[dead][0], ib->tx, WORKERS, dead), 0);
    assert_true(empty(ib->pair[dead][0]));
    assert_true(peer_closed(keep_first));
    assert_true(peer_closed(keep_late));

    /* Empty worker 1's inbox again. */
    int got, flags;
    while (cb_handoff_recv(ib->pair[acceptor][0], &m, &got, &flags) >= 0)
        if (got >= 0)
            close(got);
    close(filler);
    close(spare);
    close(keep_first);
    close(keep_late);
}

static void test_return_all_on_an_empty_inbox_does_not_wait(void **state)
{
    struct inboxes *ib = *state;
    /* A blocking socket: a function that waited would hang the test here. */
    assert_int_equal(fcntl(ib->pair[1][0], F_GETFL) & O_NONBLOCK, 0);
    assert_int_equal(cb_handoff_return_all(ib->pair[1][0], ib->tx, WORKERS, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_send_and_receive_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_return_all_sends_each_back_to_its_acceptor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_return_all_closes_what_cannot_go_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_return_all_closes_when_the_acceptor_queue_is_full,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_return_all_on_an_empty_inbox_does_not_wait, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
