/*
 * The TLS front of one worker process: listening sockets, the ClientHello choice
 * of certificate, and plaintext forwarding to backends, on a libuv loop. One
 * worker per core; workers share nothing but the listening ports (SO_REUSEPORT).
 */
#ifndef CB_NET_SERVER_H
#define CB_NET_SERVER_H

#include "net/runtime.h"
#include "net/iplisten.h"
#include "net/metrics.h"

#include <stdbool.h>
#include <uv.h>

struct cb_server_config {
    uint64_t handshake_timeout_ms;   /* accept to handshake done (10 s) */
    uint64_t connect_timeout_ms;     /* backend connect (10 s) */
    uint64_t idle_timeout_ms;        /* no byte either way (300 s) */
    uint64_t grace_ms;               /* SIGTERM: how long open connections may finish */
    uint32_t max_conns;              /* this worker's share of --max-connections (0: none) */
    uint32_t max_conns_binding;      /* its share of --max-connections-per-binding (0: none) */
    int worker;                      /* index, for logs */
    struct cb_metrics_writer *stats; /* borrowed; NULL: nothing is counted */
    /* Certificate affinity (cb_tls_entry_worker): with workers > 1, a connection whose
     * certificate another worker owns is passed to it whole (the descriptor, over
     * handoff_tx[owner], before any byte is read); this worker takes such connections
     * from handoff_rx. Descriptors borrowed; handoff_rx -1 and workers 1: no affinity. */
    int workers;
    int handoff_rx;
    const int *handoff_tx;
};

/* A listening address: "[::]:443" (dual-stack), "0.0.0.0:443", "127.0.0.2:443". */
struct cb_listen_addr {
    struct sockaddr_storage addr;
    socklen_t len;
    bool dual_stack;
    char text[64];
};

struct cb_server;

/* Returns an owned server on loop (borrowed). */
int cb_server_new(uv_loop_t *loop, const struct cb_server_config *cfg, struct cb_server **out,
                  struct cb_err *err) CB_MUST_CHECK;
/* Stops and frees everything; the loop must then run until its handles close. */
void cb_server_free(struct cb_server *srv);

/* The runtime new handshakes resolve against now (borrowed), or NULL before the first. */
struct cb_runtime *cb_server_runtime(const struct cb_server *srv);
/* Installs rt (the server takes a reference); new handshakes resolve against it. */
void cb_server_swap_runtime(struct cb_server *srv, struct cb_runtime *rt);

/*
 * Makes the listening set equal to addrs[0..n): keeps sockets already open, opens
 * the missing ones (SO_REUSEPORT), closes the others. Every address is tried: one
 * that cannot be bound breaks only the bindings on it, and the call then fails naming
 * it (the others listen all the same). An address this machine does not have is
 * bound with IP_FREEBIND (logged as local=no): it serves once the address appears.
 */
int cb_server_listen(struct cb_server *srv, const struct cb_listen_addr *addrs, size_t n,
                     struct cb_err *err) CB_MUST_CHECK;
/* Opens and closes a socket on each address: the start-up check that they can be bound. */
int cb_listen_probe(const struct cb_listen_addr *addrs, size_t n, struct cb_err *err) CB_MUST_CHECK;
/* The addresses a snapshot needs (design section 2), with the IP listen list ipl (NULL or
 * empty: wildcard ports listen on every local address): owned array in *out. */
int cb_listen_plan(const struct cb_snapshot *snap, const struct cb_iplisten *ipl,
                   struct cb_listen_addr **out, size_t *n, struct cb_err *err) CB_MUST_CHECK;

/* Stops accepting; calls on_drained when the last connection closes (or at grace). */
void cb_server_drain(struct cb_server *srv, void (*on_drained)(struct cb_server *srv));
size_t cb_server_connections(const struct cb_server *srv);

#endif
