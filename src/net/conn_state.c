/*
 * conn_state.c: the table of a connection's states and the moves between them
 * (net/conn_state.h). cb_conn_enter() in conn.c checks every move against it.
 */
#include "net/conn_state.h"

#include <stddef.h>

/* Every move a connection may make; any other is a bug. CLOSED is entered from every
 * state but NEW (a connection is first watched in PEEK or HANDSHAKE). */
static const struct {
    enum cb_conn_state from, to;
} transitions[] = {
    {CB_CONN_NEW, CB_CONN_PEEK},             /* accepted, certificate affinity on */
    {CB_CONN_NEW, CB_CONN_HANDSHAKE},        /* accepted here, or passed here by another worker */
    {CB_CONN_PEEK, CB_CONN_HANDSHAKE},       /* its certificate is served here */
    {CB_CONN_PEEK, CB_CONN_CLOSED},          /* passed to its owner; or timed out, failed */
    {CB_CONN_HANDSHAKE, CB_CONN_WAIT},       /* HTTP: the backend waits for a request */
    {CB_CONN_HANDSHAKE, CB_CONN_CONNECTING}, /* another protocol: the backend at once */
    {CB_CONN_HANDSHAKE, CB_CONN_RELAY},      /* no backend: the relay answers 503 */
    {CB_CONN_HANDSHAKE, CB_CONN_CLOSED},     /* refused, failed, timed out; a TLS-ALPN-01
                                              * validation answered (nothing follows) */
    {CB_CONN_WAIT, CB_CONN_CONNECTING},      /* the first request came */
    {CB_CONN_WAIT, CB_CONN_CLOSED},          /* left or idle before asking; drained */
    {CB_CONN_CONNECTING, CB_CONN_RELAY},     /* the backend answered */
    {CB_CONN_CONNECTING, CB_CONN_CLOSED},    /* it refused, or did not answer in time */
    {CB_CONN_RELAY, CB_CONN_CLOSED},         /* both sides ended, idle, or an error */
};

static const char *const state_names[CB_CONN_STATE_COUNT] = {
    [CB_CONN_NEW] = "new",
    [CB_CONN_PEEK] = "peek",
    [CB_CONN_HANDSHAKE] = "handshake",
    [CB_CONN_WAIT] = "wait",
    [CB_CONN_CONNECTING] = "connecting",
    [CB_CONN_RELAY] = "relay",
    [CB_CONN_CLOSED] = "closed",
};

bool cb_conn_transition_ok(enum cb_conn_state from, enum cb_conn_state to)
{
    for (size_t i = 0; i < sizeof(transitions) / sizeof(transitions[0]); i++)
        if (transitions[i].from == from && transitions[i].to == to)
            return true;
    return false;
}

const char *cb_conn_state_name(enum cb_conn_state s)
{
    return (unsigned)s < CB_CONN_STATE_COUNT ? state_names[s] : "?";
}
