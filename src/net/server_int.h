/*
 * server_int.h: what the files of one worker's TLS front share, private to src/net
 * (never included outside it): the server, its listeners and its connections, and the
 * calls between them. Who does what:
 *   listen.c   listening sockets and the listen plan
 *   accept.c   the accept loop, the connection caps, the pause when out of descriptors
 *   handoff.c  certificate affinity: the peek, passing a connection to its owner, taking
 *              connections passed here
 *   conn.c     a connection's life: its states, handshake, timers and teardown, and the
 *              ClientHello callback, the one place a certificate is chosen
 *   relay.c    the backend: its connection, the PROXY header, the byte pumps, the 503
 *   server.c   the server itself: new, free, drain, runtime swap
 *
 * Ownership: the server owns its listeners and connections. A connection owns its two
 * sockets, its SSL, its buffers and one reference to the runtime it resolved against
 * (c->rt); it is freed by the close callback of its last handle, after cb_conn_close().
 * The worker is single-threaded: nothing here locks.
 */
#ifndef CB_NET_SERVER_INT_H
#define CB_NET_SERVER_INT_H

#include "net/conn_state.h"
#include "net/server.h"
#include "tls/io.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define CB_BUF_SIZE 16384
#define CB_ACCEPT_BATCH 64 /* connections taken per wake-up, from a listener or the inbox */

/* Bytes one side of a connection could not take yet. */
struct cb_relay_buf {
    char *data; /* owned; allocated only while bytes wait */
    uint32_t off, len;
};

struct cb_conn {
    struct cb_server *srv;
    struct cb_runtime *rt; /* owned reference: what the connection resolved against */
    const struct cb_snap_binding *binding; /* in rt; NULL until the ClientHello chose one */
    uint32_t bidx;                         /* the binding's index in rt */
    SSL *ssl;                              /* owned; NULL while peeking */
    int cfd, bfd;                          /* client, backend (-1: none) */
    uv_poll_t cpoll, bpoll;
    uv_timer_t timer;
    enum cb_conn_state state; /* changed only by cb_conn_enter() and cb_conn_close() */
    int cevents, bevents;     /* what each poll watches now */
    int pending_closes;
    bool client_eof, backend_eof, backend_shut, client_shut, respond_503;
    bool counted;     /* holds one of srv->rt->active[cap_idx] (per-binding cap) */
    bool proxy_sent;  /* the PROXY header is queued already (ahead of the first bytes) */
    uint32_t cap_idx; /* its binding's index in srv->rt, which may be newer than rt */
    bool want_cr, want_cw, want_br, want_bw;
    bool failure_counted;        /* a failed handshake was counted under its reason */
    bool validation;             /* a TLS-ALPN-01 validation served its challenge: closed after the
                                  * handshake, never relayed (c->binding stays NULL) */
    struct cb_metrics_entry *st; /* the binding's counters once the handshake is done (open) */
    uint64_t last_active;
    uint64_t accepted_ms; /* cb_accept_clock_ms() at accept, in whichever worker accepted it */
    size_t lowat;         /* CB_CONN_PEEK: SO_RCVLOWAT set to this many bytes (0: not set) */
    struct sockaddr_storage local, peer;
    char sni[CB_NAME_MAX + 1];
    struct cb_relay_buf c2b, b2c;
    struct cb_conn *prev, *next;
    /* Handshake paused while its certificate is parsed off the loop: the entry it waits
     * for (borrowed from rt), in the server's list of paused connections. */
    const struct cb_tls_entry *paused_on;
    struct cb_conn *pprev, *pnext;
    bool parse_started; /* this connection asked for the parse: it logs and counts it */
    bool waited_parse;  /* its handshake was paused for a parse: not a cache hit */
};

struct cb_listener {
    uv_poll_t poll;
    int fd;
    struct cb_listen_addr addr;
    bool keep;
    struct cb_listener *next;
};

struct cb_server {
    uv_loop_t *loop;
    int closing;            /* handles of the server itself still closing */
    size_t conns_closing;   /* closed connections whose handles are still closing */
    bool freeing;           /* cb_server_free was called: free when nothing is closing */
    size_t parse_jobs;      /* certificate parses still running on the thread pool */
    struct cb_conn *paused; /* connections whose handshake waits for a parse */
    struct cb_server_config cfg;
    SSL_CTX *default_ctx;
    struct cb_runtime *rt; /* owned reference: what new handshakes resolve against */
    struct cb_listener *listeners;
    struct cb_conn *conns;
    size_t n_conns;
    bool draining;
    void (*on_drained)(struct cb_server *srv);
    uv_timer_t accept_pause, grace;
    bool accept_paused;
    uint64_t refused_total, refused_binding; /* over the caps, closed at once */
    uint64_t last_refusal_log;
    uint64_t pauses, last_pause_log; /* accept pauses for lack of descriptors */
    uv_poll_t handoff_poll;          /* connections passed by other workers (handoff_rx) */
    bool handoff_polling;
    /* The certificate cache's evictions as last published (cb_server_publish_cache), and
     * the cache they came from. */
    uint64_t cache_pub_id, cache_pub_evictions;
    char scratch[CB_BUF_SIZE];
};

/* How a connection came to this worker. */
struct cb_arrival {
    const struct sockaddr_storage *local; /* NULL: asked of the socket */
    bool adopted;                         /* passed by another worker: handshake at once */
    uint64_t accepted_ms;                 /* cb_accept_clock_ms() when it was accepted */
};

/* ---- server.c ----------------------------------------------------------- */

/* Adds 1 to this worker's counter k (nothing when nothing is counted). */
void cb_server_count(struct cb_server *srv, enum cb_gmetric k);
/* A closed connection of srv was freed: frees srv when cb_server_free is waiting for it,
 * or reports the end of a drain. */
void cb_server_conn_freed(struct cb_server *srv);
/* Copies the current runtime's certificate cache counters into this worker's metrics: the
 * evictions since the last call are added, the sizes set. */
void cb_server_publish_cache(struct cb_server *srv);
/* A certificate parse the server started on the thread pool has finished (its callback ran). */
void cb_server_parse_done(struct cb_server *srv);

/* ---- listen.c ----------------------------------------------------------- */

/* Stops, and starts again, watching every listener (the accept pause). */
void cb_listen_stop_all(struct cb_server *srv);
void cb_listen_start_all(struct cb_server *srv);

/* ---- accept.c ----------------------------------------------------------- */

/* A listener is readable: accepts a batch. */
void cb_accept_on_listener(uv_poll_t *h, int status, int events);
/* Over --max-connections: fd (taken) is closed at once and counted; true. Else false. */
bool cb_accept_over_cap(struct cb_server *srv, int fd);
/* A connection closed at once for lack of room (fd taken, or -1 when the kernel dropped
 * it): counted under capacity; logged (event, what) at most once a second. */
void cb_accept_refuse(struct cb_server *srv, int fd, const char *level, const char *event,
                      const char *what);
/* Milliseconds on a clock every worker shares (uv_now is each loop's own). */
uint64_t cb_accept_clock_ms(void);

/* ---- handoff.c ---------------------------------------------------------- */

/* Whether certificate affinity is on for a new connection resolving against rt
 * (borrowed: a runtime the caller holds a reference to, never a bare srv->rt read
 * later; rt->cache lives as long as rt). */
bool cb_handoff_affinity_on(const struct cb_server *srv, const struct cb_runtime *rt);
/* CB_CONN_PEEK, the client readable: passes c to its certificate's owner, or begins the
 * handshake here. */
void cb_handoff_on_peek(struct cb_conn *c);
/* The inbox (cfg.handoff_rx) is readable: adopts the connections other workers passed. */
void cb_handoff_on_inbox(uv_poll_t *h, int status, int events);

/* ---- conn.c ------------------------------------------------------------- */

/* A new connection on fd (taken) from peer, arrived as `how` says. Failures are logged
 * and the descriptor closed. */
void cb_conn_start(struct cb_server *srv, int fd, const struct sockaddr_storage *peer,
                   const struct cb_arrival *how);
/* Moves c to state `to` if the transition table allows it: true. An illegal move is a bug:
 * logged, asserted in debug builds, and the connection closed: false. */
bool cb_conn_enter(struct cb_conn *c, enum cb_conn_state to);
/* CB_CONN_PEEK -> CB_CONN_HANDSHAKE here, in this worker. */
void cb_conn_start_handshake(struct cb_conn *c);
/* Closes c's sockets and handles (c is freed when they have closed); a no-op once closed. */
void cb_conn_close(struct cb_conn *c);
/* Logs why (event, reason), then closes. */
void cb_conn_fail(struct cb_conn *c, const char *event, const char *reason);
/* One log line about c: event, binding, client, and a reason. */
void cb_conn_log(struct cb_conn *c, const char *level, const char *event, const char *reason);
/* "1.2.3.4:5" or "[::1]:5" into buf. */
void cb_conn_addr_text(const struct sockaddr_storage *ss, char *buf, size_t size);
/* Makes both polls watch what c->want_* say. */
void cb_conn_update_polls(struct cb_conn *c);
/* (Re)starts c's one timer: what it means depends on the state when it fires. */
void cb_conn_arm_timer(struct cb_conn *c, uint64_t ms);
/* The ClientHello callback (cb_tls_default_ctx). */
int cb_conn_on_client_hello(SSL *ssl, int *alert, void *arg);

/* ---- relay.c ------------------------------------------------------------ */

/* Whether the backend can wait for the client's first bytes (HTTP negotiated). */
bool cb_relay_client_speaks_first(struct cb_conn *c);
/* CB_CONN_WAIT, the client readable: its first bytes (and the PROXY header) are queued
 * and the backend connected. */
void cb_relay_on_first_bytes(struct cb_conn *c);
/* Connects the binding's backend (CB_CONN_CONNECTING), or without one starts the relay
 * that answers 503. */
void cb_relay_connect_backend(struct cb_conn *c);
/* CB_CONN_CONNECTING, the backend writable: connected (the relay starts) or failed. */
void cb_relay_on_connected(struct cb_conn *c);
/* CB_CONN_RELAY: moves what can be moved both ways, then sets the polls. */
void cb_relay_pump(struct cb_conn *c);

#endif
