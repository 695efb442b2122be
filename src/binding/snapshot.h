/*
 * The resolver (design/bindings.md section 2) over an immutable snapshot of the
 * bindings. A snapshot is built once from the store, then only read: the server
 * resolves every ClientHello against it without locks, and swaps in a new one
 * when the store changes. Lookups are hash probes: at most one per rule.
 */
#ifndef CB_BINDING_SNAPSHOT_H
#define CB_BINDING_SNAPSHOT_H

#include "binding/binding.h"

/* One binding inside a snapshot. Strings live in the snapshot's arena. The fields a
 * lookup compares come first, so a probe touches one cache line of the record. */
struct cb_snap_binding {
    uint8_t kind; /* enum cb_key_kind */
    uint8_t family;
    uint8_t proxy;    /* enum cb_proxy_proto */
    uint8_t host_len; /* strlen(host) */
    uint16_t port;
    uint32_t flags;    /* CB_OPT_* */
    uint32_t clientca; /* its client CA file: cb_snapshot_clientca(); 0 when none */
    const char *host;  /* HOST: the name; HOST_WILD: "*.parent"; else NULL */
    uint8_t addr[16];
    const char *key_text; /* canonical, e.g. "hostnameport=www.example.com:443" */
    const char *backend;  /* canonical HOST:PORT or NULL */
    const char *ccspath;  /* ccs bindings, else NULL */
    const char *appid;    /* or NULL */
    /* certhash=T1,T2: the second (RSA), else "" (never NULL). A pointer, not 41 bytes in
     * every record: few bindings have one (10^6 bindings: 33 MB less in every worker). */
    const char *certhash2;
    char certhash[CB_THUMB_LEN + 1];
};

/* A certificate file found in a ccs binding's folder. */
struct cb_ccs_file {
    const char *name; /* "www.example.com", or "*.example.com" for "_.example.com.pem" */
    const char *path;
    uint32_t binding; /* the ccs binding it belongs to */
    uint16_t port;
};

enum cb_rule {
    CB_RULE_NONE = 0,
    CB_RULE_IP,
    CB_RULE_SNI_EXACT,
    CB_RULE_SNI_WILDCARD,
    CB_RULE_CCS,
    CB_RULE_WILDCARD_IP,
};

struct cb_resolve_query {
    uint8_t family; /* AF_INET or AF_INET6 (v4-mapped already turned into AF_INET) */
    uint8_t addr[16];
    uint16_t port;
    const char *sni; /* normalised with cb_name_normalize(), or NULL when absent */
};

struct cb_resolution {
    enum cb_rule rule;
    uint32_t binding;              /* index into the snapshot; unset for CB_RULE_NONE */
    const struct cb_ccs_file *ccs; /* CB_RULE_CCS: the file chosen */
};

struct cb_snapshot;
struct cb_snapshot_builder;

/* Returns owned builder, freed by _finish or _free; NULL when out of memory. */
struct cb_snapshot_builder *cb_snapshot_builder_new(void);
void cb_snapshot_builder_free(struct cb_snapshot_builder *b);
/* Copies binding b (borrowed) into the builder; *index gets its index (may be NULL). */
int cb_snapshot_builder_add(struct cb_snapshot_builder *sb, const struct cb_binding *b,
                            uint32_t *index, struct cb_err *err) CB_MUST_CHECK;
/* Adds a file of the central store folder of ccs binding `binding` (strings copied). */
int cb_snapshot_builder_add_ccs_file(struct cb_snapshot_builder *sb, uint32_t binding,
                                     const char *name, const char *path,
                                     struct cb_err *err) CB_MUST_CHECK;
/* Takes the builder (always freed) and returns an owned snapshot with refcount 1. */
int cb_snapshot_builder_finish(struct cb_snapshot_builder *sb, uint64_t generation,
                               struct cb_snapshot **out, struct cb_err *err) CB_MUST_CHECK;

/*
 * A new snapshot from old after a change: the bindings in set (added, or changed
 * in place) and the keys in removed (absent ones ignored). Unchanged bindings are
 * copied as they are, with their strings shared with old: far cheaper than a build.
 * Indexes may move: (*src)[i] is the index in old of the new snapshot's binding i,
 * or CB_SNAPSHOT_NEW for an added or changed one (owned array, free()). Returns
 * CB_SNAPSHOT_REBUILD when a full build is needed instead (central-store bindings,
 * tables too full, or too many derivations in a row); *out is then untouched.
 */
#define CB_SNAPSHOT_REBUILD 1
#define CB_SNAPSHOT_NEW UINT32_MAX
int cb_snapshot_derive(const struct cb_snapshot *old, const struct cb_binding *set, size_t n_set,
                       const struct cb_binding_key *removed, size_t n_removed, uint64_t generation,
                       struct cb_snapshot **out, uint32_t **src, struct cb_err *err) CB_MUST_CHECK;

/*
 * cb_snapshot_derive, with where the bindings came from given only for the indexes the
 * change touched (whatever N, nothing per binding): (*moves)[k] says that new binding
 * .at came from old's index .from, or is CB_SNAPSHOT_NEW (added or changed); an index
 * not listed holds the very binding it held in old. Sorted by .at; owned array, free().
 */
struct cb_snapshot_move {
    uint32_t at, from;
};
int cb_snapshot_derive_moves(const struct cb_snapshot *old, const struct cb_binding *set,
                             size_t n_set, const struct cb_binding_key *removed, size_t n_removed,
                             uint64_t generation, struct cb_snapshot **out,
                             struct cb_snapshot_move **moves, size_t *n_moves,
                             struct cb_err *err) CB_MUST_CHECK;

/* Snapshots keep their tables in parts of at most `bytes` (default and most 2 MiB, a
 * huge page), shared with derived snapshots. Tests make them small so derivations
 * cross parts; set before building. */
void cb_snapshot_set_part_bytes(size_t bytes);

/* A probe reads a key's slot only where the key's fingerprint (8 bits of its hash, kept
 * per index position) matches. Tests keep fewer bits (0: every key has the same one) so
 * that fingerprints collide; set before building, derived snapshots keep their own. */
void cb_snapshot_set_fp_bits(unsigned bits);

struct cb_snapshot *cb_snapshot_ref(struct cb_snapshot *s);
/* Drops one reference; frees at zero. NULL is a no-op. Thread-safe. */
void cb_snapshot_unref(struct cb_snapshot *s);

size_t cb_snapshot_count(const struct cb_snapshot *s);
uint64_t cb_snapshot_generation(const struct cb_snapshot *s);
const struct cb_snap_binding *cb_snapshot_binding(const struct cb_snapshot *s, uint32_t index);
size_t cb_snapshot_ccs_count(const struct cb_snapshot *s);
const struct cb_ccs_file *cb_snapshot_ccs_file(const struct cb_snapshot *s, size_t index);
/*
 * Client CA files (clientca=FILE). Few files serve many bindings, so a record holds a
 * 32-bit reference into the snapshot's table of distinct paths (in what was padding: a
 * record is no larger for it). The path of e's file (borrowed, as s), or NULL for none.
 */
const char *cb_snapshot_clientca(const struct cb_snapshot *s, const struct cb_snap_binding *e);
/* The table itself: paths 1..count (a reference's value), for whoever loads each file once. */
size_t cb_snapshot_clientca_count(const struct cb_snapshot *s);
const char *cb_snapshot_clientca_at(const struct cb_snapshot *s, uint32_t ref);

/* Finds a binding by its key; returns its index or -1. */
long cb_snapshot_find(const struct cb_snapshot *s, const struct cb_binding_key *key);

/* Section 2: the first rule that matches wins. Pure, allocation-free, lock-free. */
void cb_resolve(const struct cb_snapshot *s, const struct cb_resolve_query *q,
                struct cb_resolution *out);
/* "ip", "sni-exact", "sni-wildcard", "ccs", "wildcard-ip", "none". */
const char *cb_rule_name(enum cb_rule rule);

#endif
