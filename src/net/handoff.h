/*
 * Certificate affinity between workers: a connection whose certificate another worker
 * owns is passed to that worker whole (its descriptor, before any byte is read), as
 * one datagram on the owner's inbox (a SOCK_DGRAM socket pair per worker, made and kept
 * by the master, see daemon/serve.c). The message says who accepted the connection, so
 * that it can go back there.
 *
 * The worker side (the peek, sending, adopting) is in handoff.c behind cb_server; this
 * header is for the master, and for tests: the message, one send, one receive, and
 * cb_handoff_return_all() for the inbox of a worker that died.
 */
#ifndef CB_NET_HANDOFF_H
#define CB_NET_HANDOFF_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define CB_HANDOFF_MAGIC 0x63626832u /* "cbh2" */

/* What travels with the descriptor. */
struct cb_handoff_msg {
    uint32_t magic;       /* CB_HANDOFF_MAGIC */
    int32_t from;         /* the worker that accepted it */
    uint32_t back;        /* 1: sent back to `from`, which then serves it itself */
    uint64_t accepted_ms; /* a CLOCK_MONOTONIC time in ms at accept: the handshake timeout
                           * runs from there */
    struct sockaddr_storage local, peer;
};

/* Passes fd (borrowed: the caller still closes its copy) with *m (borrowed) on tx, the
 * receiving worker's end of its inbox. 0 when on its way; -1 when the queue is full (a
 * busy worker, or a dead one not yet restarted) or tx is unusable. Never waits. */
int cb_handoff_send(int tx, int fd, const struct cb_handoff_msg *m);

/* One message from the inbox rx into *m and its descriptor into *fd (returned owned;
 * -1: none, or the kernel dropped it for lack of room: *flags has MSG_CTRUNC). Any
 * more than one descriptor is closed. Never waits. recvmsg's result: -1 when empty. */
ssize_t cb_handoff_recv(int rx, struct cb_handoff_msg *m, int *fd, int *flags);

/* Whether a received message (n bytes, recvmsg flags) is whole, certbind's, carries a
 * descriptor (fd) and names a worker below `workers`. */
bool cb_handoff_valid(const struct cb_handoff_msg *m, ssize_t n, int fd, int flags, int workers);

/*
 * For the master, while worker `dead` is down: empties its inbox rx without waiting,
 * sending each connection back to the worker that accepted it (tx[0..workers): each
 * worker's inbox, borrowed) marked `back`, so that worker serves it itself; a connection
 * that cannot go back (the message is not valid, it was accepted by `dead` itself, or
 * its worker's queue is full) is closed. Returns how many were sent back.
 */
int cb_handoff_return_all(int rx, const int *tx, int workers, int dead);

#endif
