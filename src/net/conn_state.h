/*
 * The life of one client connection as a state machine: its states, and which moves
 * between them are allowed (the table is in conn_state.c; cb_conn_enter() in conn.c, the
 * one function that changes a connection's state, checks every move against it). No
 * sockets here: a unit test checks the table.
 *
 *   NEW -> PEEK -> HANDSHAKE -> WAIT -> CONNECTING -> RELAY, with shortcuts
 *   NEW -> HANDSHAKE (no affinity, or passed here by another worker),
 *   HANDSHAKE -> CONNECTING (not HTTP: the backend at once) and
 *   HANDSHAKE -> RELAY (no backend: the 503);
 *   every state but NEW and CLOSED may end in CLOSED, and CLOSED goes nowhere.
 */
#ifndef CB_NET_CONN_STATE_H
#define CB_NET_CONN_STATE_H

#include <stdbool.h>

enum cb_conn_state {
    CB_CONN_NEW,        /* allocated and set up, not yet watched (a zeroed connection) */
    CB_CONN_PEEK,       /* accepted, its ClientHello not yet looked at: certificate affinity
                         * may still pass it to the worker that owns its certificate */
    CB_CONN_HANDSHAKE,  /* OpenSSL reads the ClientHello; on_client_hello chooses the cert */
    CB_CONN_WAIT,       /* handshake done, HTTP negotiated, no request yet: the backend is
                         * connected when the first bytes come */
    CB_CONN_CONNECTING, /* the backend's connect() is under way */
    CB_CONN_RELAY,      /* bytes both ways (or, without a backend, the 503) */
    CB_CONN_CLOSED,     /* its handles are closing; freed by the last close callback */
    CB_CONN_STATE_COUNT
};

/* Whether a connection may go from `from` to `to`; false for values outside the enum. */
bool cb_conn_transition_ok(enum cb_conn_state from, enum cb_conn_state to);
/* "handshake", for logs; "?" for values outside the enum. */
const char *cb_conn_state_name(enum cb_conn_state s);

#endif
