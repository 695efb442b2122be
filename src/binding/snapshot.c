/*
 * snapshot.c: the immutable binding table and the section 2 resolver.
 *
 * Bindings sit in one array; two open-addressing hash indexes map keys to array
 * positions: one for bindings (tagged by rule: IP address, exact name, wildcard
 * parent, ccs port) and one for central-store files. A lookup is one probe
 * sequence per rule; nothing on the resolve path allocates, locks or scans.
 */
#include "binding/snapshot.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum tag { TAG_IP = 1, TAG_NAME, TAG_WILD, TAG_CCS, TAG_FILE, TAG_FILE_WILD };

struct slot {
    uint32_t hash;
    uint32_t idx1; /* index + 1; 0 marks an empty slot */
};

struct index {
    struct slot *slots;
    uint32_t mask;
};

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, size;
    char data[];
};

struct cb_snapshot {
    atomic_int refs;
    uint64_t generation;
    struct cb_snap_binding *bindings;
    size_t n_bindings;
    struct cb_ccs_file *files;
    size_t n_files;
    struct index bidx;
    struct index fidx;
    struct arena_chunk *arena;
};

struct cb_snapshot_builder {
    struct cb_snapshot *s;
    size_t cap_bindings, cap_files;
};

/* FNV-1a over a tag, a port and bytes, with a final avalanche. */
static uint32_t hash_key(enum tag tag, uint16_t port, const void *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *b = p;

    h = (h ^ (uint64_t)tag) * 0x100000001b3ull;
    h = (h ^ (port & 0xff)) * 0x100000001b3ull;
    h = (h ^ (port >> 8)) * 0x100000001b3ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (uint32_t)h;
}

static void *arena_alloc(struct cb_snapshot *s, size_t n)
{
    struct arena_chunk *c = s->arena;

    n = (n + 7) & ~(size_t)7;
    if (c == NULL || c->size - c->used < n) {
        size_t size = n > 65536 ? n : 65536;
        c = malloc(sizeof(*c) + size);
        if (c == NULL)
            return NULL;
        c->next = s->arena;
        c->used = 0;
        c->size = size;
        s->arena = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static const char *arena_strdup(struct cb_snapshot *s, const char *str)
{
    size_t n = strlen(str) + 1;
    char *p = arena_alloc(s, n);
    if (p != NULL)
        memcpy(p, str, n);
    return p;
}

static void snapshot_free(struct cb_snapshot *s)
{
    struct arena_chunk *c = s->arena;

    while (c != NULL) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(s->bindings);
    free(s->files);
    free(s->bidx.slots);
    free(s->fidx.slots);
    free(s);
}

struct cb_snapshot_builder *cb_snapshot_builder_new(void)
{
    struct cb_snapshot_builder *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->s = calloc(1, sizeof(*b->s));
    if (b->s == NULL) {
        free(b);
        return NULL;
    }
    atomic_init(&b->s->refs, 1);
    return b;
}

void cb_snapshot_builder_free(struct cb_snapshot_builder *b)
{
    if (b == NULL)
        return;
    if (b->s != NULL)
        snapshot_free(b->s);
    free(b);
}

int cb_snapshot_builder_add(struct cb_snapshot_builder *sb, const struct cb_binding *b,
                            uint32_t *index, struct cb_err *err)
{
    struct cb_snapshot *s = sb->s;
    char key[CB_KEY_TEXT_MAX];

    if (s->n_bindings == sb->cap_bindings) {
        size_t cap = sb->cap_bindings ? sb->cap_bindings * 2 : 64;
        struct cb_snap_binding *nb = realloc(s->bindings, cap * sizeof(*nb));
        if (nb == NULL)
            return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
        s->bindings = nb;
        sb->cap_bindings = cap;
    }
    struct cb_snap_binding *e = &s->bindings[s->n_bindings];
    memset(e, 0, sizeof(*e));
    cb_key_format(&b->key, key, sizeof(key));
    e->key_text = arena_strdup(s, key);
    if (e->key_text == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
    if ((b->key.kind == CB_KEY_HOST || b->key.kind == CB_KEY_HOST_WILD) &&
        (e->host = arena_strdup(s, b->key.host)) == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
    if ((b->backend[0] && (e->backend = arena_strdup(s, b->backend)) == NULL) ||
        (b->ccspath[0] && (e->ccspath = arena_strdup(s, b->ccspath)) == NULL) ||
        (b->appid[0] && (e->appid = arena_strdup(s, b->appid)) == NULL))
        return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
    memcpy(e->certhash, b->certhash, sizeof(e->certhash));
    e->kind = (uint8_t)b->key.kind;
    e->family = b->key.family;
    e->proxy = (uint8_t)b->proxy;
    e->port = b->key.port;
    e->flags = b->flags;
    memcpy(e->addr, b->key.addr, sizeof(e->addr));
    if (index != NULL)
        *index = (uint32_t)s->n_bindings;
    s->n_bindings++;
    return 0;
}

int cb_snapshot_builder_add_ccs_file(struct cb_snapshot_builder *sb, uint32_t binding,
                                     const char *name, const char *path, struct cb_err *err)
{
    struct cb_snapshot *s = sb->s;

    if (binding >= s->n_bindings || s->bindings[binding].kind != CB_KEY_CCS)
        return cb_err_set(err, CB_EINVAL, "internal: ccs file for a binding that is not ccs");
    if (s->n_files == sb->cap_files) {
        size_t cap = sb->cap_files ? sb->cap_files * 2 : 16;
        struct cb_ccs_file *nf = realloc(s->files, cap * sizeof(*nf));
        if (nf == NULL)
            return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
        s->files = nf;
        sb->cap_files = cap;
    }
    struct cb_ccs_file *f = &s->files[s->n_files];
    f->name = arena_strdup(s, name);
    f->path = arena_strdup(s, path);
    if (f->name == NULL || f->path == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
    f->binding = binding;
    f->port = s->bindings[binding].port;
    s->n_files++;
    return 0;
}

/* The index key of binding e: its tag and the bytes hashed with the port. */
static enum tag binding_tag(const struct cb_snap_binding *e, const void **p, size_t *n)
{
    switch (e->kind) {
    case CB_KEY_IP:
    case CB_KEY_ANY_IP:
        *p = e->addr;
        *n = e->family == AF_INET ? 4 : 16;
        return TAG_IP;
    case CB_KEY_HOST:
        *p = e->host;
        *n = strlen(e->host);
        return TAG_NAME;
    case CB_KEY_HOST_WILD:
        *p = e->host + 2;
        *n = strlen(e->host + 2);
        return TAG_WILD;
    default:
        *p = NULL;
        *n = 0;
        return TAG_CCS;
    }
}

/* IP keys also hash the family, so 0.0.0.0 and [::] differ. */
static uint32_t hash_ip(uint8_t family, const uint8_t *addr, uint16_t port)
{
    uint8_t buf[17];
    size_t n = family == AF_INET ? 4 : 16;

    buf[0] = family;
    memcpy(buf + 1, addr, n);
    return hash_key(TAG_IP, port, buf, n + 1);
}

static uint32_t binding_hash(const struct cb_snap_binding *e)
{
    const void *p;
    size_t n;
    enum tag t = binding_tag(e, &p, &n);

    if (t == TAG_IP)
        return hash_ip(e->family, e->addr, e->port);
    return hash_key(t, e->port, p, n);
}

static bool binding_equal(const struct cb_snap_binding *a, const struct cb_snap_binding *b)
{
    const void *pa, *pb;
    size_t na, nb;

    if (binding_tag(a, &pa, &na) != binding_tag(b, &pb, &nb) || a->port != b->port)
        return false;
    if (a->kind == CB_KEY_IP || a->kind == CB_KEY_ANY_IP)
        return a->family == b->family && memcmp(a->addr, b->addr, 16) == 0;
    /* ccs keys hash no bytes (pa and pb are NULL): memcmp must not see them. */
    return na == nb && (na == 0 || memcmp(pa, pb, na) == 0);
}

static uint32_t file_hash(const struct cb_ccs_file *f)
{
    if (f->name[0] == '*')
        return hash_key(TAG_FILE_WILD, f->port, f->name + 2, strlen(f->name + 2));
    return hash_key(TAG_FILE, f->port, f->name, strlen(f->name));
}

static int index_init(struct index *ix, size_t n)
{
    size_t cap = 16;

    while (cap < n * 2)
        cap <<= 1;
    ix->slots = calloc(cap, sizeof(*ix->slots));
    if (ix->slots == NULL)
        return CB_ENOMEM;
    ix->mask = (uint32_t)(cap - 1);
    return 0;
}

int cb_snapshot_builder_finish(struct cb_snapshot_builder *sb, uint64_t generation,
                               struct cb_snapshot **out, struct cb_err *err)
{
    struct cb_snapshot *s = sb->s;
    int ret;

    s->generation = generation;
    if (index_init(&s->bidx, s->n_bindings) != 0 || index_init(&s->fidx, s->n_files) != 0) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory building the binding index");
        goto out_free;
    }
    for (size_t i = 0; i < s->n_bindings; i++) {
        uint32_t h = binding_hash(&s->bindings[i]);
        for (uint32_t pos = h & s->bidx.mask;; pos = (pos + 1) & s->bidx.mask) {
            struct slot *sl = &s->bidx.slots[pos];
            if (sl->idx1 == 0) {
                sl->hash = h;
                sl->idx1 = (uint32_t)i + 1;
                break;
            }
            if (sl->hash == h && binding_equal(&s->bindings[sl->idx1 - 1], &s->bindings[i])) {
                ret = cb_err_set(err, CB_EEXIST, "duplicate binding %s in the store",
                                 s->bindings[i].key_text);
                goto out_free;
            }
        }
    }
    for (size_t i = 0; i < s->n_files; i++) {
        const struct cb_ccs_file *f = &s->files[i];
        uint32_t h = file_hash(f);
        for (uint32_t pos = h & s->fidx.mask;; pos = (pos + 1) & s->fidx.mask) {
            struct slot *sl = &s->fidx.slots[pos];
            if (sl->idx1 == 0) {
                sl->hash = h;
                sl->idx1 = (uint32_t)i + 1;
                break;
            }
            const struct cb_ccs_file *o = &s->files[sl->idx1 - 1];
            if (sl->hash == h && o->port == f->port && strcmp(o->name, f->name) == 0)
                break; /* first file wins (NAME.pem before NAME.pfx) */
        }
    }
    sb->s = NULL;
    free(sb);
    *out = s;
    return 0;
out_free:
    cb_snapshot_builder_free(sb);
    return ret;
}

struct cb_snapshot *cb_snapshot_ref(struct cb_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void cb_snapshot_unref(struct cb_snapshot *s)
{
    if (s == NULL)
        return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
}

size_t cb_snapshot_count(const struct cb_snapshot *s)
{
    return s->n_bindings;
}

uint64_t cb_snapshot_generation(const struct cb_snapshot *s)
{
    return s->generation;
}

const struct cb_snap_binding *cb_snapshot_binding(const struct cb_snapshot *s, uint32_t index)
{
    return index < s->n_bindings ? &s->bindings[index] : NULL;
}

size_t cb_snapshot_ccs_count(const struct cb_snapshot *s)
{
    return s->n_files;
}

const struct cb_ccs_file *cb_snapshot_ccs_file(const struct cb_snapshot *s, size_t index)
{
    return index < s->n_files ? &s->files[index] : NULL;
}

/* Probe for a binding with this tag, port and bytes; kind_ok filters IP vs ANY_IP. */
static long probe(const struct cb_snapshot *s, enum tag tag, uint16_t port, uint8_t family,
                  const void *p, size_t n, uint8_t want_kind)
{
    uint32_t h = tag == TAG_IP ? hash_ip(family, p, port) : hash_key(tag, port, p, n);

    for (uint32_t pos = h & s->bidx.mask;; pos = (pos + 1) & s->bidx.mask) {
        const struct slot *sl = &s->bidx.slots[pos];
        if (sl->idx1 == 0)
            return -1;
        if (sl->hash != h)
            continue;
        const struct cb_snap_binding *e = &s->bindings[sl->idx1 - 1];
        if (e->port != port || e->kind != want_kind)
            continue;
        if (tag == TAG_IP) {
            if (e->family == family && memcmp(e->addr, p, family == AF_INET ? 4 : 16) == 0)
                return (long)sl->idx1 - 1;
        } else if (tag == TAG_CCS) {
            return (long)sl->idx1 - 1;
        } else {
            const char *name = tag == TAG_WILD ? e->host + 2 : e->host;
            if (strlen(name) == n && memcmp(name, p, n) == 0)
                return (long)sl->idx1 - 1;
        }
    }
}

static const struct cb_ccs_file *probe_file(const struct cb_snapshot *s, enum tag tag,
                                            uint16_t port, const char *name, size_t n)
{
    uint32_t h = hash_key(tag, port, name, n);

    for (uint32_t pos = h & s->fidx.mask;; pos = (pos + 1) & s->fidx.mask) {
        const struct slot *sl = &s->fidx.slots[pos];
        if (sl->idx1 == 0)
            return NULL;
        const struct cb_ccs_file *f = &s->files[sl->idx1 - 1];
        if (sl->hash != h || f->port != port)
            continue;
        const char *fn = tag == TAG_FILE_WILD ? f->name + 2 : f->name;
        if ((tag == TAG_FILE_WILD) == (f->name[0] == '*') && strlen(fn) == n &&
            memcmp(fn, name, n) == 0)
            return f;
    }
}

long cb_snapshot_find(const struct cb_snapshot *s, const struct cb_binding_key *key)
{
    switch (key->kind) {
    case CB_KEY_IP:
    case CB_KEY_ANY_IP:
        return probe(s, TAG_IP, key->port, key->family, key->addr, 0, (uint8_t)key->kind);
    case CB_KEY_HOST:
        return probe(s, TAG_NAME, key->port, 0, key->host, strlen(key->host), CB_KEY_HOST);
    case CB_KEY_HOST_WILD:
        return probe(s, TAG_WILD, key->port, 0, key->host + 2, strlen(key->host + 2),
                     CB_KEY_HOST_WILD);
    case CB_KEY_CCS:
        return probe(s, TAG_CCS, key->port, 0, NULL, 0, CB_KEY_CCS);
    }
    return -1;
}

void cb_resolve(const struct cb_snapshot *s, const struct cb_resolve_query *q,
                struct cb_resolution *out)
{
    static const uint8_t any[16];
    long i;

    out->ccs = NULL;
    /* 1. IP binding on exactly the local address and port. */
    if ((i = probe(s, TAG_IP, q->port, q->family, q->addr, 0, CB_KEY_IP)) >= 0) {
        out->rule = CB_RULE_IP;
        goto found;
    }
    if (q->sni != NULL) {
        size_t n = strlen(q->sni);
        const char *parent = cb_name_parent(q->sni);
        /* 2. exact name; 3. wildcard: one extra label over the parent. */
        if ((i = probe(s, TAG_NAME, q->port, 0, q->sni, n, CB_KEY_HOST)) >= 0) {
            out->rule = CB_RULE_SNI_EXACT;
            goto found;
        }
        if (parent != NULL &&
            (i = probe(s, TAG_WILD, q->port, 0, parent, strlen(parent), CB_KEY_HOST_WILD)) >= 0) {
            out->rule = CB_RULE_SNI_WILDCARD;
            goto found;
        }
        /* 4. central store: NAME, then _.PARENT. */
        if (s->n_files > 0 && probe(s, TAG_CCS, q->port, 0, NULL, 0, CB_KEY_CCS) >= 0) {
            const struct cb_ccs_file *f = probe_file(s, TAG_FILE, q->port, q->sni, n);
            if (f == NULL && parent != NULL)
                f = probe_file(s, TAG_FILE_WILD, q->port, parent, strlen(parent));
            if (f != NULL) {
                out->rule = CB_RULE_CCS;
                out->ccs = f;
                out->binding = f->binding;
                return;
            }
        }
    }
    /* 5. wildcard IP: [::] then 0.0.0.0 for IPv6 connections, 0.0.0.0 for IPv4. */
    if (q->family == AF_INET6 &&
        (i = probe(s, TAG_IP, q->port, AF_INET6, any, 0, CB_KEY_ANY_IP)) >= 0) {
        out->rule = CB_RULE_WILDCARD_IP;
        goto found;
    }
    if ((i = probe(s, TAG_IP, q->port, AF_INET, any, 0, CB_KEY_ANY_IP)) >= 0) {
        out->rule = CB_RULE_WILDCARD_IP;
        goto found;
    }
    out->rule = CB_RULE_NONE;
    return;
found:
    out->binding = (uint32_t)i;
}

const char *cb_rule_name(enum cb_rule rule)
{
    switch (rule) {
    case CB_RULE_IP:
        return "ip";
    case CB_RULE_SNI_EXACT:
        return "sni-exact";
    case CB_RULE_SNI_WILDCARD:
        return "sni-wildcard";
    case CB_RULE_CCS:
        return "ccs";
    case CB_RULE_WILDCARD_IP:
        return "wildcard-ip";
    case CB_RULE_NONE:
        break;
    }
    return "none";
}
