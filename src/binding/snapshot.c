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
#include <endian.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum tag { TAG_IP = 1, TAG_NAME, TAG_WILD, TAG_CCS, TAG_FILE, TAG_FILE_WILD };

/* A binding index slot: one cache line holding everything a lookup compares, so a
 * hit costs one miss (prefetched) and never touches the binding record. */
#define SLOT_KEY 52
#define SLOT_LONG 255 /* key longer than SLOT_KEY: compare with the record */
struct slot {
    uint32_t hash;
    uint32_t idx1; /* index + 1; 0 marks an empty slot */
    uint16_t port;
    uint8_t kind;
    uint8_t len;
    char key[SLOT_KEY];
};

/*
 * A table cut into parts of 2^shift elements (2 MiB at most: one huge page). Parts
 * are shared between a snapshot and the ones derived from it, each part with its own
 * count of holders; a derivation copies only the parts it writes (parts_mut), so one
 * binding changed copies a part or two, whatever the number of bindings.
 */
struct parts {
    char **part;        /* part[k]: elements k << shift onwards */
    atomic_uint **refs; /* refs[k]: how many tables hold part[k] */
    uint32_t n;         /* parts */
    uint32_t elem;      /* bytes per element */
    uint8_t shift;
    uint32_t mask; /* 2^shift - 1: an element's place in its part */
    size_t cap;    /* elements held: part 0 alone may be short of 2^shift */
};

/*
 * A binding index: 64-byte slots, and beside them one fingerprint byte per slot
 * position (0: empty; else slot_fp of the slot's hash), 64 positions to a cache line.
 * A probe walks the fingerprints, not the slots: a key that is absent costs the one
 * line of fingerprints its run lies in, and a slot (key bytes) is read only where the
 * fingerprint matches, about once in 255 positions for another key.
 */
struct index {
    struct parts p;
    struct parts fps; /* uint8_t per position, same positions as p */
    uint32_t cap;     /* 1.25 x entries: positions come from a multiply, not a mask */
};

/* The central-store file index: hash and position only. */
struct fslot {
    uint32_t hash;
    uint32_t idx1;
};

struct findex {
    struct fslot *slots;
    uint32_t mask;
};

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, size;
    char data[];
};

/*
 * The strings of a snapshot. A derived snapshot (cb_snapshot_derive) writes its
 * new strings into an arena of its own whose parent is the old snapshot's arena,
 * so unchanged bindings keep pointing at the old strings without copying them.
 */
struct arena {
    atomic_int refs;
    struct arena_chunk *chunks;
    struct arena *parent; /* owned reference, or NULL */
};

struct cb_snapshot {
    atomic_int refs;
    uint64_t generation;
    struct parts recs; /* struct cb_snap_binding */
    size_t n_bindings;
    size_t n_tag[TAG_CCS + 1]; /* bindings per index table */
    struct cb_ccs_file *files;
    size_t n_files;
    struct index bidx[TAG_CCS + 1]; /* one table per rule: each probe walks a small one */
    struct findex fidx;
    struct arena *arena;
    size_t arena_bytes;
    unsigned depth;   /* derivations since the last full build */
    uint8_t fp_mask;  /* the hash bits a fingerprint keeps: cb_snapshot_set_fp_bits */
    const char **cas; /* client CA paths (strings in the arena); a record's clientca is 1-based */
    uint32_t n_cas, cap_cas;
};

struct cb_snapshot_builder {
    struct cb_snapshot *s;
    size_t cap_files;
    uint32_t *ca_slots; /* interning the client CA paths: 1-based indexes into s->cas */
    uint32_t ca_mask;
};

#define CB_INLINE inline __attribute__((always_inline))

static CB_INLINE uint64_t load64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static CB_INLINE uint32_t load32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* A multiply-mix hash over 8-byte words: a handful of cycles for a host name. */
static inline uint64_t mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static CB_INLINE uint32_t hash_key(enum tag tag, uint16_t port, const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)tag << 56) ^ ((uint64_t)port << 32) ^ n;

    for (; n >= 8; b += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, b, 8);
        h = mix(h ^ v, 0xbf58476d1ce4e5b9ull);
    }
    if (n > 0) {
        /* The last 1-7 bytes in fixed-size loads, not a memcpy of variable length (a call
         * on every lookup): two 4-byte loads that overlap, or three single bytes. With the
         * length in the seed, every byte counts once at least. */
        uint64_t v;
        if (n >= 4) {
            uint32_t lo, hi;
            memcpy(&lo, b, 4);
            memcpy(&hi, b + n - 4, 4);
            v = (uint64_t)lo << 32 | hi;
        } else {
            v = (uint64_t)b[0] << 16 | (uint64_t)b[n >> 1] << 8 | b[n - 1];
        }
        h = mix(h ^ v, 0x94d049bb133111ebull);
    }
    h = mix(h, 0x9e3779b97f4a7c15ull);
    return (uint32_t)(h ^ (h >> 32));
}

#define HUGE_PAGE (2u << 20)

/*
 * Zeroed memory for the big tables. From 2 MiB up it is aligned to huge pages and
 * marked for them: at 10^6 bindings lookups are bound by cache and TLB misses, and
 * huge pages remove most of the latter. Freed with free().
 */
static void *big_calloc(size_t n, size_t size)
{
    size_t bytes = n * size;
    void *p;

    if (size != 0 && bytes / size != n)
        return NULL;
    size_t align = bytes < HUGE_PAGE ? 64 : HUGE_PAGE;
    bytes = (bytes + align - 1) & ~(align - 1);
    if (posix_memalign(&p, align, bytes) != 0)
        return NULL;
    if (align == HUGE_PAGE)
        madvise(p, bytes, MADV_HUGEPAGE);
    memset(p, 0, bytes);
    return p;
}

/* A copy of n elements of size bytes, aligned as big_calloc's (no zeroing first). */
static void *big_copy(const void *src, size_t n, size_t size)
{
    size_t bytes = n * size;
    void *p;

    if (size != 0 && bytes / size != n)
        return NULL;
    size_t align = bytes < HUGE_PAGE ? 64 : HUGE_PAGE;
    size_t alloc = (bytes + align - 1) & ~(align - 1);
    if (posix_memalign(&p, align, alloc ? alloc : align) != 0)
        return NULL;
    if (align == HUGE_PAGE)
        madvise(p, alloc, MADV_HUGEPAGE);
    memcpy(p, src, bytes);
    return p;
}

static size_t part_bytes = HUGE_PAGE;

void cb_snapshot_set_part_bytes(size_t bytes)
{
    part_bytes = bytes >= 256 && bytes <= HUGE_PAGE ? bytes : HUGE_PAGE;
}

static uint8_t fp_mask = 0xff;

void cb_snapshot_set_fp_bits(unsigned bits)
{
    fp_mask = bits >= 8 ? 0xff : (uint8_t)((1u << bits) - 1);
}

static void parts_setup(struct parts *a, size_t elem)
{
    memset(a, 0, sizeof(*a));
    a->elem = (uint32_t)elem;
    a->shift = 2;
    while (((size_t)elem << (a->shift + 1)) <= part_bytes)
        a->shift++;
    a->mask = (1u << a->shift) - 1;
}

static inline void *parts_at(const struct parts *a, size_t i)
{
    return a->part[i >> a->shift] + (i & a->mask) * a->elem;
}

static size_t part_len(const struct parts *a, uint32_t k)
{
    size_t start = (size_t)k << a->shift, full = (size_t)1 << a->shift;
    return a->cap - start < full ? a->cap - start : full;
}

static void part_release(char *part, atomic_uint *refs)
{
    if (atomic_fetch_sub_explicit(refs, 1, memory_order_acq_rel) == 1) {
        free(part);
        free(refs);
    }
}

static void parts_free(struct parts *a)
{
    for (uint32_t k = 0; k < a->n; k++)
        part_release(a->part[k], a->refs[k]);
    free(a->part);
    free(a->refs);
    a->part = NULL;
    a->refs = NULL;
    a->n = 0;
    a->cap = 0;
}

/* Appends a zeroed part of len elements, held by a alone (count 1); parts_free drops it. */
static int parts_add(struct parts *a, size_t len)
{
    char **np = realloc(a->part, (a->n + 1) * sizeof(*np));
    if (np == NULL)
        return CB_ENOMEM;
    a->part = np;
    atomic_uint **nr = realloc(a->refs, (a->n + 1) * sizeof(*nr));
    if (nr == NULL)
        return CB_ENOMEM;
    a->refs = nr;
    atomic_uint *r = malloc(sizeof(*r));
    char *part = big_calloc(len, a->elem);
    if (r == NULL || part == NULL) {
        free(r);
        free(part);
        return CB_ENOMEM;
    }
    atomic_init(r, 1);
    a->part[a->n] = part;
    a->refs[a->n] = r;
    a->n++;
    a->cap += len;
    return 0;
}

/* Makes room for `need` elements: part 0 grows by doubling, then whole parts follow. */
static int parts_reserve(struct parts *a, size_t need)
{
    size_t full = (size_t)1 << a->shift;

    while (a->cap < need) {
        if (a->n == 1 && a->cap < full) {
            size_t len = a->cap * 2 > need ? a->cap * 2 : need;
            len = len < full ? len : full;
            atomic_uint *r = malloc(sizeof(*r));
            char *part = big_calloc(len, a->elem);
            if (r == NULL || part == NULL) {
                free(r);
                free(part);
                return CB_ENOMEM;
            }
            atomic_init(r, 1);
            memcpy(part, a->part[0], a->cap * a->elem);
            part_release(a->part[0], a->refs[0]);
            a->part[0] = part;
            a->refs[0] = r;
            a->cap = len;
        } else {
            size_t len = need < 64 ? 64 : need;
            if (parts_add(a, a->n == 0 && len < full ? len : full) != 0)
                return CB_ENOMEM;
        }
    }
    return 0;
}

/* dst holds the parts of src too: owned part arrays, one more holder counted on each part
 * (dst is overwritten, src only read); parts_free(dst) gives them back. */
static int parts_share(struct parts *dst, const struct parts *src)
{
    *dst = *src;
    dst->part = malloc((src->n ? src->n : 1) * sizeof(*dst->part));
    dst->refs = malloc((src->n ? src->n : 1) * sizeof(*dst->refs));
    if (dst->part == NULL || dst->refs == NULL) {
        free(dst->part);
        free(dst->refs);
        memset(dst, 0, sizeof(*dst));
        return CB_ENOMEM;
    }
    for (uint32_t k = 0; k < src->n; k++) {
        dst->part[k] = src->part[k];
        dst->refs[k] = src->refs[k];
        atomic_fetch_add_explicit(src->refs[k], 1, memory_order_relaxed);
    }
    return 0;
}

/* Element i, writable: its part is copied first when another table holds it too.
 * NULL when out of memory. */
static void *parts_mut(struct parts *a, size_t i)
{
    uint32_t k = (uint32_t)(i >> a->shift);

    if (atomic_load_explicit(a->refs[k], memory_order_acquire) > 1) {
        atomic_uint *r = malloc(sizeof(*r));
        char *part = big_copy(a->part[k], part_len(a, k), a->elem);
        if (r == NULL || part == NULL) {
            free(r);
            free(part);
            return NULL;
        }
        atomic_init(r, 1);
        part_release(a->part[k], a->refs[k]);
        a->part[k] = part;
        a->refs[k] = r;
    }
    return parts_at(a, i);
}

static inline struct cb_snap_binding *rec(const struct cb_snapshot *s, size_t i)
{
    return parts_at(&s->recs, i);
}

static inline struct slot *slot_at(const struct index *ix, uint32_t pos)
{
    return (struct slot *)ix->p.part[pos >> ix->p.shift] + (pos & ix->p.mask);
}

static inline const uint8_t *fp_at(const struct index *ix, uint32_t pos)
{
    return (const uint8_t *)ix->fps.part[pos >> ix->fps.shift] + (pos & ix->fps.mask);
}

/* A slot's fingerprint: the hash's low byte (positions come from its high bits) under
 * the snapshot's mask, never 0, which marks an empty position. */
static inline uint8_t slot_fp(const struct cb_snapshot *s, uint32_t h)
{
    uint8_t f = (uint8_t)h & s->fp_mask;
    return f != 0 ? f : 1;
}

static void *arena_alloc(struct cb_snapshot *s, size_t n)
{
    struct arena_chunk *c = s->arena->chunks;

    n = (n + 7) & ~(size_t)7;
    if (c == NULL || c->size - c->used < n) {
        /* Small chunks while small; huge-page chunks once the table is big. */
        size_t chunk = s->arena_bytes >= 4 * HUGE_PAGE ? HUGE_PAGE - sizeof(*c) : 65536;
        if (s->depth > 0)
            chunk = 1024; /* a derivation: only the strings of the bindings it sets */
        size_t size = n > chunk ? n : chunk;
        c = s->arena_bytes >= 4 * HUGE_PAGE ? big_calloc(1, sizeof(*c) + size)
                                            : malloc(sizeof(*c) + size);
        if (c == NULL)
            return NULL;
        c->next = s->arena->chunks;
        c->used = 0;
        c->size = size;
        s->arena->chunks = c;
        s->arena_bytes += size;
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

static struct arena *arena_new(struct arena *parent)
{
    struct arena *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    atomic_init(&a->refs, 1);
    if (parent != NULL) {
        atomic_fetch_add_explicit(&parent->refs, 1, memory_order_relaxed);
        a->parent = parent;
    }
    return a;
}

static void arena_unref(struct arena *a)
{
    while (a != NULL && atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) {
        struct arena *parent = a->parent;
        struct arena_chunk *c = a->chunks;
        while (c != NULL) {
            struct arena_chunk *next = c->next;
            free(c);
            c = next;
        }
        free(a);
        a = parent;
    }
}

static void snapshot_free(struct cb_snapshot *s)
{
    arena_unref(s->arena);
    parts_free(&s->recs);
    free(s->files);
    for (int t = 0; t <= TAG_CCS; t++) {
        parts_free(&s->bidx[t].p);
        parts_free(&s->bidx[t].fps);
    }
    free(s->fidx.slots);
    free(s->cas);
    free(s);
}

struct cb_snapshot_builder *cb_snapshot_builder_new(void)
{
    struct cb_snapshot_builder *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->s = calloc(1, sizeof(*b->s));
    if (b->s == NULL || (b->s->arena = arena_new(NULL)) == NULL) {
        free(b->s);
        free(b);
        return NULL;
    }
    atomic_init(&b->s->refs, 1);
    b->s->fp_mask = fp_mask;
    parts_setup(&b->s->recs, sizeof(struct cb_snap_binding));
    for (int t = 0; t <= TAG_CCS; t++) {
        parts_setup(&b->s->bidx[t].p, sizeof(struct slot));
        parts_setup(&b->s->bidx[t].fps, 1);
    }
    return b;
}

void cb_snapshot_builder_free(struct cb_snapshot_builder *b)
{
    if (b == NULL)
        return;
    if (b->s != NULL)
        snapshot_free(b->s);
    free(b->ca_slots);
    free(b);
}

static int fill_record(struct cb_snapshot *s, struct cb_snap_binding *e, const struct cb_binding *b,
                       struct cb_err *err);

/* Appends path to s's table of client CA files; its 1-based reference, 0 when out of memory. */
static uint32_t ca_append(struct cb_snapshot *s, const char *path)
{
    if (s->n_cas == s->cap_cas) {
        uint32_t cap = s->cap_cas ? s->cap_cas * 2 : 8;
        const char **nv = realloc(s->cas, cap * sizeof(*nv));
        if (nv == NULL)
            return 0;
        s->cas = nv;
        s->cap_cas = cap;
    }
    if ((s->cas[s->n_cas] = arena_strdup(s, path)) == NULL)
        return 0;
    return ++s->n_cas;
}

static uint32_t str_hash32(const char *str)
{
    return hash_key(TAG_FILE, 0, str, strlen(str));
}

/* The builder's reference for path: the one it already has, or a new one. 0: no memory. */
static uint32_t ca_intern(struct cb_snapshot_builder *sb, const char *path)
{
    struct cb_snapshot *s = sb->s;

    if ((s->n_cas + 1) * 2 > sb->ca_mask) { /* keep the table at most half full */
        uint32_t cap = sb->ca_mask ? (sb->ca_mask + 1) * 2 : 16;
        uint32_t *slots = calloc(cap, sizeof(*slots));
        if (slots == NULL)
            return 0;
        for (uint32_t i = 0; i < s->n_cas; i++) {
            uint32_t pos = str_hash32(s->cas[i]) & (cap - 1);
            while (slots[pos] != 0)
                pos = (pos + 1) & (cap - 1);
            slots[pos] = i + 1;
        }
        free(sb->ca_slots);
        sb->ca_slots = slots;
        sb->ca_mask = cap - 1;
    }
    uint32_t pos = str_hash32(path) & sb->ca_mask;
    for (; sb->ca_slots[pos] != 0; pos = (pos + 1) & sb->ca_mask)
        if (strcmp(s->cas[sb->ca_slots[pos] - 1], path) == 0)
            return sb->ca_slots[pos];
    uint32_t ref = ca_append(s, path);
    if (ref != 0)
        sb->ca_slots[pos] = ref;
    return ref;
}

int cb_snapshot_builder_add(struct cb_snapshot_builder *sb, const struct cb_binding *b,
                            uint32_t *index, struct cb_err *err)
{
    struct cb_snapshot *s = sb->s;

    if (parts_reserve(&s->recs, s->n_bindings + 1) != 0)
        return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
    int ret = fill_record(s, rec(s, s->n_bindings), b, err);
    if (ret != 0)
        return ret;
    if (b->clientca[0] && (rec(s, s->n_bindings)->clientca = ca_intern(sb, b->clientca)) == 0)
        return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
    if (index != NULL)
        *index = (uint32_t)s->n_bindings;
    s->n_bindings++;
    return 0;
}

/* Fills record e from b, its strings copied into s's arena. */
static int fill_record(struct cb_snapshot *s, struct cb_snap_binding *e, const struct cb_binding *b,
                       struct cb_err *err)
{
    char key[CB_KEY_TEXT_MAX];

    memset(e, 0, sizeof(*e));
    cb_key_format(&b->key, key, sizeof(key));
    e->key_text = arena_strdup(s, key);
    if (e->key_text == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
    if ((b->key.kind == CB_KEY_HOST || b->key.kind == CB_KEY_HOST_WILD) &&
        (e->host = arena_strdup(s, b->key.host)) == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
    e->host_len = e->host ? (uint8_t)strlen(e->host) : 0;
    if ((b->backend[0] && (e->backend = arena_strdup(s, b->backend)) == NULL) ||
        (b->ccspath[0] && (e->ccspath = arena_strdup(s, b->ccspath)) == NULL) ||
        (b->appid[0] && (e->appid = arena_strdup(s, b->appid)) == NULL))
        return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
    memcpy(e->certhash, b->certhash, sizeof(e->certhash));
    e->certhash2 = b->certhash2[0] != '\0' ? arena_strdup(s, b->certhash2) : "";
    if (e->certhash2 == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory building the binding table");
    e->kind = (uint8_t)b->key.kind;
    e->family = b->key.family;
    e->proxy = (uint8_t)b->proxy;
    e->port = b->key.port;
    e->flags = b->flags;
    memcpy(e->addr, b->key.addr, sizeof(e->addr));
    e->clientca = 0; /* set by the caller: a builder interns the path, a derivation appends it */
    return 0;
}

int cb_snapshot_builder_add_ccs_file(struct cb_snapshot_builder *sb, uint32_t binding,
                                     const char *name, const char *path, struct cb_err *err)
{
    struct cb_snapshot *s = sb->s;

    if (binding >= s->n_bindings || rec(s, binding)->kind != CB_KEY_CCS)
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
    f->port = rec(s, binding)->port;
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
        *n = e->host_len;
        return TAG_NAME;
    case CB_KEY_HOST_WILD:
        *p = e->host + 2;
        *n = e->host_len - 2u;
        return TAG_WILD;
    default:
        *p = NULL;
        *n = 0;
        return TAG_CCS;
    }
}

/* IP keys also hash the family, so 0.0.0.0 and [::] differ: the hash of the bytes
 * [family, address] (hash_key's, on a little-endian machine), read from the address in
 * place, not copied after the family byte first. */
static CB_INLINE uint32_t hash_ip(uint8_t family, const uint8_t *addr, uint16_t port)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)TAG_IP << 56) ^ ((uint64_t)port << 32);

    if (family == AF_INET) {
        uint32_t a;
        memcpy(&a, addr, 4);
        a = le32toh(a);
        /* 5 bytes: two 4-byte loads that overlap, [family, a0..a2] and [a0..a3]. */
        h = mix(h ^ 5 ^ ((uint64_t)(uint32_t)(family | a << 8) << 32 | a), 0x94d049bb133111ebull);
    } else {
        uint64_t a0, a1;
        memcpy(&a0, addr, 8);
        memcpy(&a1, addr + 8, 8);
        a0 = le64toh(a0);
        a1 = le64toh(a1);
        /* 17 bytes: [family, a0..a6], [a7..a14], then a15 alone. */
        h = mix(h ^ 17 ^ (family | a0 << 8), 0xbf58476d1ce4e5b9ull);
        h = mix(h ^ (a0 >> 56 | a1 << 8), 0xbf58476d1ce4e5b9ull);
        h = mix(h ^ (a1 >> 56) * 0x010101, 0x94d049bb133111ebull);
    }
    h = mix(h, 0x9e3779b97f4a7c15ull);
    return (uint32_t)(h ^ (h >> 32));
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
    /* 80% full: an absent key costs its run's fingerprint line whatever the run's length,
     * so the table can be fuller than for probes over slots (it was 75%); a hit's slot is
     * still its home position six times in ten. */
    size_t cap = n + n / 4 + 8;

    if (cap > UINT32_MAX)
        return CB_ENOMEM;
    if (parts_reserve(&ix->p, cap) != 0 || parts_reserve(&ix->fps, cap) != 0)
        return CB_ENOMEM;
    ix->cap = (uint32_t)cap;
    return 0;
}

static int findex_init(struct findex *ix, size_t n)
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

static inline uint32_t slot_pos(const struct index *ix, uint32_t h)
{
    return (uint32_t)(((uint64_t)h * ix->cap) >> 32);
}

/* The bytes a slot compares: [family, address] for IP keys, the name (or the
 * wildcard's parent) for names, nothing for ccs. */
static size_t index_key(const struct cb_snap_binding *e, const char **name, uint8_t *ipbuf)
{
    const void *p;
    size_t n;
    enum tag t = binding_tag(e, &p, &n);

    if (t == TAG_IP) {
        ipbuf[0] = e->family;
        memcpy(ipbuf + 1, e->addr, n);
        *name = (const char *)ipbuf;
        return n + 1;
    }
    *name = p;
    return n;
}

int cb_snapshot_builder_finish(struct cb_snapshot_builder *sb, uint64_t generation,
                               struct cb_snapshot **out, struct cb_err *err)
{
    struct cb_snapshot *s = sb->s;
    int ret;

    s->generation = generation;
    for (size_t i = 0; i < s->n_bindings; i++) {
        const void *p;
        size_t n;
        s->n_tag[binding_tag(rec(s, i), &p, &n)]++;
    }
    for (int t = TAG_IP; t <= TAG_CCS; t++) {
        if (index_init(&s->bidx[t], s->n_tag[t]) != 0) {
            ret = cb_err_set(err, CB_ENOMEM, "out of memory building the binding index");
            goto out_free;
        }
    }
    if (findex_init(&s->fidx, s->n_files) != 0) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory building the binding index");
        goto out_free;
    }
    for (size_t i = 0; i < s->n_bindings; i++) {
        const void *p;
        size_t n;
        const struct cb_snap_binding *e = rec(s, i);
        struct index *ix = &s->bidx[binding_tag(e, &p, &n)];
        uint32_t h = binding_hash(e);
        for (uint32_t pos = slot_pos(ix, h);; pos = pos + 1 == ix->cap ? 0 : pos + 1) {
            struct slot *sl = slot_at(ix, pos);
            if (sl->idx1 == 0) {
                uint8_t ipbuf[17];
                const char *key;
                size_t len = index_key(e, &key, ipbuf);
                sl->hash = h;
                sl->idx1 = (uint32_t)i + 1;
                sl->port = e->port;
                sl->kind = e->kind;
                sl->len = len <= SLOT_KEY ? (uint8_t)len : SLOT_LONG;
                if (len > 0 && len <= SLOT_KEY)
                    memcpy(sl->key, key, len);
                *(uint8_t *)parts_at(&ix->fps, pos) = slot_fp(s, h);
                break;
            }
            if (sl->hash == h && binding_equal(rec(s, sl->idx1 - 1), e)) {
                ret = cb_err_set(err, CB_EEXIST, "duplicate binding %s in the store", e->key_text);
                goto out_free;
            }
        }
    }
    for (size_t i = 0; i < s->n_files; i++) {
        const struct cb_ccs_file *f = &s->files[i];
        uint32_t h = file_hash(f);
        for (uint32_t pos = h & s->fidx.mask;; pos = (pos + 1) & s->fidx.mask) {
            struct fslot *sl = &s->fidx.slots[pos];
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
    cb_snapshot_builder_free(sb); /* its interning table: the snapshot keeps only the paths */
    *out = s;
    return 0;
out_free:
    cb_snapshot_builder_free(sb);
    return ret;
}

/* ---- deriving a snapshot from the one before: one change, not a rebuild ---- */

/* Then a full build drops the strings of removed bindings (a derivation adds only the
 * strings of the bindings it sets, in an arena chunk of that size). */
#define DERIVE_MAX_DEPTH 1024

static uint32_t next_pos(const struct index *ix, uint32_t pos)
{
    return pos + 1 == ix->cap ? 0 : pos + 1;
}

/* The slot that holds binding i of s (it must be indexed). */
static uint32_t slot_of(const struct cb_snapshot *s, uint32_t i)
{
    const void *p;
    size_t n;
    const struct index *ix = &s->bidx[binding_tag(rec(s, i), &p, &n)];
    uint32_t pos = slot_pos(ix, binding_hash(rec(s, i)));
    while (slot_at(ix, pos)->idx1 != i + 1)
        pos = next_pos(ix, pos);
    return pos;
}

/* Linear probing without tombstones: shift the rest of the run back over the hole. */
static int slot_delete(struct index *ix, uint32_t hole)
{
    for (uint32_t j = next_pos(ix, hole);; j = next_pos(ix, j)) {
        const struct slot *sl = slot_at(ix, j);
        if (sl->idx1 == 0)
            break;
        uint32_t home = slot_pos(ix, sl->hash);
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        struct slot *h = parts_mut(&ix->p, hole);
        uint8_t *f = parts_mut(&ix->fps, hole);
        if (h == NULL || f == NULL)
            return CB_ENOMEM;
        *h = *slot_at(ix, j);
        *f = *fp_at(ix, j);
        hole = j;
    }
    struct slot *h = parts_mut(&ix->p, hole);
    uint8_t *f = parts_mut(&ix->fps, hole);
    if (h == NULL || f == NULL)
        return CB_ENOMEM;
    memset(h, 0, sizeof(*h));
    *f = 0;
    return 0;
}

static int slot_insert(struct cb_snapshot *s, uint32_t i)
{
    const void *p;
    size_t n;
    const struct cb_snap_binding *e = rec(s, i);
    struct index *ix = &s->bidx[binding_tag(e, &p, &n)];
    uint32_t h = binding_hash(e);
    uint32_t pos = slot_pos(ix, h);
    while (slot_at(ix, pos)->idx1 != 0)
        pos = next_pos(ix, pos);
    struct slot *sl = parts_mut(&ix->p, pos);
    uint8_t *f = parts_mut(&ix->fps, pos);
    if (sl == NULL || f == NULL)
        return CB_ENOMEM;
    *f = slot_fp(s, h);
    uint8_t ipbuf[17];
    const char *key;
    size_t len = index_key(e, &key, ipbuf);
    sl->hash = h;
    sl->idx1 = i + 1;
    sl->port = e->port;
    sl->kind = e->kind;
    sl->len = len <= SLOT_KEY ? (uint8_t)len : SLOT_LONG;
    if (len > 0 && len <= SLOT_KEY)
        memcpy(sl->key, key, len);
    return 0;
}

/*
 * Where a derivation's bindings came from, for the indexes it touched only: new index ->
 * old index (or CB_SNAPSHOT_NEW). An index not in it holds what it held in the old
 * snapshot. Open addressing over a power-of-two table sized by the change, not by N.
 */
struct movemap {
    struct cb_snapshot_move *v; /* .at + 1 == 0: empty */
    uint32_t mask;
};

static int movemap_init(struct movemap *m, size_t changes)
{
    size_t cap = 16;
    while (cap < 4 * changes + 4)
        cap *= 2;
    m->mask = (uint32_t)cap - 1;
    m->v = malloc(cap * sizeof(*m->v));
    if (m->v == NULL)
        return CB_ENOMEM;
    memset(m->v, 0xff, cap * sizeof(*m->v)); /* .at = UINT32_MAX: empty */
    return 0;
}

static struct cb_snapshot_move *movemap_slot(const struct movemap *m, uint32_t at)
{
    uint32_t pos = (at * 0x9e3779b1u) & m->mask;
    while (m->v[pos].at != UINT32_MAX && m->v[pos].at != at)
        pos = (pos + 1) & m->mask;
    return &m->v[pos];
}

static uint32_t movemap_get(const struct movemap *m, uint32_t at)
{
    const struct cb_snapshot_move *e = movemap_slot(m, at);
    return e->at == at ? e->from : at;
}

static void movemap_set(struct movemap *m, uint32_t at, uint32_t from)
{
    struct cb_snapshot_move *e = movemap_slot(m, at);
    e->at = at;
    e->from = from;
}

/* Takes binding i out of s: the last record moves into its place, its slot follows it. */
static int derive_remove(struct cb_snapshot *s, struct movemap *src, uint32_t i)
{
    const void *p;
    size_t n;
    uint32_t last = (uint32_t)s->n_bindings - 1;
    enum tag t = binding_tag(rec(s, i), &p, &n);

    if (slot_delete(&s->bidx[t], slot_of(s, i)) != 0)
        return CB_ENOMEM;
    s->n_tag[t]--;
    if (i != last) {
        struct index *lix = &s->bidx[binding_tag(rec(s, last), &p, &n)];
        struct slot *lsl = parts_mut(&lix->p, slot_of(s, last));
        struct cb_snap_binding *e = parts_mut(&s->recs, i);
        if (lsl == NULL || e == NULL)
            return CB_ENOMEM;
        *e = *rec(s, last);
        movemap_set(src, i, movemap_get(src, last));
        lsl->idx1 = i + 1;
    }
    s->n_bindings--;
    return 0;
}

static int cmp_move(const void *a, const void *b)
{
    uint32_t x = ((const struct cb_snapshot_move *)a)->at,
             y = ((const struct cb_snapshot_move *)b)->at;
    return x < y ? -1 : x > y;
}

/* cb_snapshot_derive_moves, with the moves left in the map *src (owned by the caller). */
static int derive(const struct cb_snapshot *old, const struct cb_binding *set, size_t n_set,
                  const struct cb_binding_key *removed, size_t n_removed, uint64_t generation,
                  struct cb_snapshot **out, struct movemap *src, struct cb_err *err)
{
    struct cb_snapshot *s = NULL;
    int ret;

    /* Central-store bindings carry scanned folders: those always get a full build. */
    if (old->n_files > 0 || old->depth >= DERIVE_MAX_DEPTH || old->n_tag[TAG_CCS] > 0)
        return CB_SNAPSHOT_REBUILD;
    for (size_t i = 0; i < n_set; i++)
        if (set[i].key.kind == CB_KEY_CCS)
            return CB_SNAPSHOT_REBUILD;
    for (size_t i = 0; i < n_removed; i++)
        if (removed[i].kind == CB_KEY_CCS)
            return CB_SNAPSHOT_REBUILD;

    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->arena = arena_new(old->arena)) == NULL)
        goto out_nomem;
    atomic_init(&s->refs, 1);
    s->generation = generation;
    s->depth = old->depth + 1;
    s->fp_mask = old->fp_mask;
    /* The arena's first chunk is sized by what this change adds, not 64 KiB. */
    s->arena_bytes = 0;
    s->n_bindings = old->n_bindings;
    memcpy(s->n_tag, old->n_tag, sizeof(s->n_tag));
    if (parts_share(&s->recs, &old->recs) != 0)
        goto out_nomem;
    /* The client CA table: the old paths (strings in the parent arena), then new ones. */
    s->cap_cas = old->n_cas + (uint32_t)n_set;
    if (s->cap_cas > 0 && (s->cas = malloc(s->cap_cas * sizeof(*s->cas))) == NULL)
        goto out_nomem;
    if (old->n_cas > 0)
        memcpy(s->cas, old->cas, old->n_cas * sizeof(*s->cas));
    s->n_cas = old->n_cas;
    for (int t = TAG_IP; t <= TAG_CCS; t++) {
        s->bidx[t].cap = old->bidx[t].cap;
        if (parts_share(&s->bidx[t].p, &old->bidx[t].p) != 0 ||
            parts_share(&s->bidx[t].fps, &old->bidx[t].fps) != 0)
            goto out_nomem;
    }
    if (findex_init(&s->fidx, 0) != 0)
        goto out_nomem;

    /* Removed keys: the last record moves into the hole, its slot follows it. */
    for (size_t r = 0; r < n_removed; r++) {
        long i = cb_snapshot_find(s, &removed[r]);
        if (i >= 0 && derive_remove(s, src, (uint32_t)i) != 0)
            goto out_nomem;
    }
    /* Set keys: changed in place, or appended. */
    for (size_t k = 0; k < n_set; k++) {
        long i = cb_snapshot_find(s, &set[k].key);
        uint32_t ca = 0;
        /* Not interned here: one change adds at most one path, and a full build (at the
         * latest after DERIVE_MAX_DEPTH derivations) shares equal paths again. */
        if (set[k].clientca[0] && (ca = ca_append(s, set[k].clientca)) == 0)
            goto out_nomem;
        if (i >= 0) {
            struct cb_snap_binding *e = parts_mut(&s->recs, (size_t)i);
            if (e == NULL)
                goto out_nomem;
            if ((ret = fill_record(s, e, &set[k], err)) != 0)
                goto out_free;
            e->clientca = ca;
            movemap_set(src, (uint32_t)i, CB_SNAPSHOT_NEW);
            continue;
        }
        uint32_t at = (uint32_t)s->n_bindings;
        struct cb_snap_binding *e;
        if (parts_reserve(&s->recs, (size_t)at + 1) != 0 || (e = parts_mut(&s->recs, at)) == NULL)
            goto out_nomem;
        if ((ret = fill_record(s, e, &set[k], err)) != 0)
            goto out_free;
        e->clientca = ca;
        const void *p;
        size_t n;
        enum tag t = binding_tag(e, &p, &n);
        /* Keep the table at most ~88% full, as built; beyond that, build anew. */
        if ((s->n_tag[t] + 1) * 8 > (size_t)s->bidx[t].cap * 7) {
            ret = CB_SNAPSHOT_REBUILD;
            goto out_free;
        }
        s->n_tag[t]++;
        s->n_bindings++;
        movemap_set(src, at, CB_SNAPSHOT_NEW);
        if (slot_insert(s, at) != 0)
            goto out_nomem;
    }
    *out = s;
    return 0;
out_nomem:
    ret = cb_err_set(err, CB_ENOMEM, "out of memory deriving the binding table");
out_free:
    if (s != NULL && s->arena == NULL)
        free(s);
    else if (s != NULL)
        snapshot_free(s);
    return ret;
}

int cb_snapshot_derive_moves(const struct cb_snapshot *old, const struct cb_binding *set,
                             size_t n_set, const struct cb_binding_key *removed, size_t n_removed,
                             uint64_t generation, struct cb_snapshot **out,
                             struct cb_snapshot_move **moves, size_t *n_moves, struct cb_err *err)
{
    struct movemap m;
    int ret;

    if (movemap_init(&m, n_set + n_removed) != 0)
        return cb_err_set(err, CB_ENOMEM, "out of memory deriving the binding table");
    if ((ret = derive(old, set, n_set, removed, n_removed, generation, out, &m, err)) != 0) {
        free(m.v);
        return ret;
    }
    /* Compacted in place: the touched indexes that are still bindings, in index order. */
    size_t n = 0, n_bindings = (*out)->n_bindings;
    for (size_t k = 0; k <= m.mask; k++)
        if (m.v[k].at < n_bindings && m.v[k].from != m.v[k].at)
            m.v[n++] = m.v[k];
    qsort(m.v, n, sizeof(*m.v), cmp_move);
    *moves = m.v;
    *n_moves = n;
    return 0;
}

int cb_snapshot_derive(const struct cb_snapshot *old, const struct cb_binding *set, size_t n_set,
                       const struct cb_binding_key *removed, size_t n_removed, uint64_t generation,
                       struct cb_snapshot **out, uint32_t **src_out, struct cb_err *err)
{
    struct cb_snapshot_move *moves = NULL;
    size_t n_moves = 0;
    int ret = cb_snapshot_derive_moves(old, set, n_set, removed, n_removed, generation, out, &moves,
                                       &n_moves, err);
    if (ret != 0)
        return ret;
    size_t n = (*out)->n_bindings;
    uint32_t *src = malloc((n ? n : 1) * sizeof(*src));
    if (src == NULL) {
        cb_snapshot_unref(*out);
        *out = NULL;
        free(moves);
        return cb_err_set(err, CB_ENOMEM, "out of memory deriving the binding table");
    }
    for (size_t i = 0; i < n; i++)
        src[i] = (uint32_t)i;
    for (size_t k = 0; k < n_moves; k++)
        src[moves[k].at] = moves[k].from;
    free(moves);
    *src_out = src;
    return 0;
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
    return index < s->n_bindings ? rec(s, index) : NULL;
}

const char *cb_snapshot_clientca(const struct cb_snapshot *s, const struct cb_snap_binding *e)
{
    return cb_snapshot_clientca_at(s, e->clientca);
}

size_t cb_snapshot_clientca_count(const struct cb_snapshot *s)
{
    return s->n_cas;
}

const char *cb_snapshot_clientca_at(const struct cb_snapshot *s, uint32_t ref)
{
    return ref >= 1 && ref <= s->n_cas ? s->cas[ref - 1] : NULL;
}

size_t cb_snapshot_ccs_count(const struct cb_snapshot *s)
{
    return s->n_files;
}

const struct cb_ccs_file *cb_snapshot_ccs_file(const struct cb_snapshot *s, size_t index)
{
    return index < s->n_files ? &s->files[index] : NULL;
}

/* Whether a[0..n) and b[0..n) are equal, in fixed-size loads that never read outside
 * either (no memcmp call: a lookup compares a key or two of ~20 bytes). */
static CB_INLINE bool bytes_equal(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;

    if (n >= 8) {
        for (; n > 8; x += 8, y += 8, n -= 8)
            if (load64(x) != load64(y))
                return false;
        return load64(x + n - 8) == load64(y + n - 8); /* the last 1-8 bytes, overlapping */
    }
    if (n >= 4)
        return (load32(x) ^ load32(y)) == 0 && load32(x + n - 4) == load32(y + n - 4);
    return n == 0 || (x[0] == y[0] && x[n >> 1] == y[n >> 1] && x[n - 1] == y[n - 1]);
}

/* A key looked up: the bytes a slot compares (for IP keys: family, then the address in
 * addr), its hash, and its home position in its table, with that position's fingerprint
 * and slot (found once, for the prefetch and the probe). */
struct probe_key {
    const void *p;
    size_t n;
    const uint8_t *fp;
    const struct slot *sl;
    uint32_t h, pos;
    uint16_t port;
    uint8_t kind;   /* the binding kind wanted: tells IP from ANY_IP */
    uint8_t family; /* IP keys */
};

/* Whether the slot at pos holds the key: hash, port and kind, then the key bytes (in the
 * slot, or in the record for names longer than SLOT_KEY). Its binding index, or -1. */
static CB_INLINE long slot_match(const struct cb_snapshot *s, enum tag tag, const struct slot *sl,
                                 const struct probe_key *k)
{
    if (sl->hash != k->h || sl->port != k->port || sl->kind != k->kind)
        return -1;
    if (tag == TAG_IP) {
        /* [family, address]: IP keys are never SLOT_LONG. */
        if (sl->len != k->n + 1 || (uint8_t)sl->key[0] != k->family)
            return -1;
        if (k->n == 4)
            return load32(sl->key + 1) == load32(k->p) ? (long)sl->idx1 - 1 : -1;
        return bytes_equal(sl->key + 1, k->p, 16) ? (long)sl->idx1 - 1 : -1;
    }
    if (sl->len != SLOT_LONG)
        return sl->len == k->n && bytes_equal(sl->key, k->p, k->n) ? (long)sl->idx1 - 1 : -1;
    const struct cb_snap_binding *e = rec(s, sl->idx1 - 1);
    size_t off = tag == TAG_WILD ? 2 : 0;
    if (e->host != NULL && e->host_len - off == k->n && memcmp(e->host + off, k->p, k->n) == 0)
        return (long)sl->idx1 - 1;
    return -1;
}

/* The table's last positions, in no whole word (fewer than 8), one at a time from pos:
 * the key's index, -1 when absent, -2 when the end was reached (go on from position 0).
 * Rare: not inlined. */
static long probe_tail(const struct cb_snapshot *s, enum tag tag, const struct probe_key *k,
                       uint32_t pos, uint8_t fp)
{
    const struct index *ix = &s->bidx[tag];
    long i;

    for (; pos < ix->cap; pos++) {
        uint8_t f = *fp_at(ix, pos);
        if (f == 0)
            return -1;
        if (f == fp && (i = slot_match(s, tag, slot_at(ix, pos), k)) >= 0)
            return i;
    }
    return -2;
}

/*
 * A group of fingerprints, read at once from an aligned address: 16 with SSE2, else 8
 * from a word (SWAR). fp_group sets, for each position of the group, one bit of *empty
 * where it is empty and one of *cand where it holds fp: position j's bit is j * FP_STRIDE.
 * A fingerprint part holds 2^8 positions at least and starts 64-aligned, so a group
 * never crosses a part.
 */
#ifdef __SSE2__
#define FP_GROUP 16u
#define FP_STRIDE 1u
static CB_INLINE void fp_group(const uint8_t *g, uint8_t fp, uint64_t *empty, uint64_t *cand)
{
    __m128i v = _mm_load_si128((const __m128i *)(const void *)g);
    *empty = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128()));
    *cand = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8((char)fp)));
}
#else
#define FP_GROUP 8u
#define FP_STRIDE 8u
/* 0x80 in each byte of v that is zero, 0 in the others (exact: no borrow between bytes). */
static inline uint64_t zero_bytes(uint64_t v)
{
    const uint64_t low7 = 0x7f7f7f7f7f7f7f7full;
    return ~(((v & low7) + low7) | v | low7);
}

static CB_INLINE void fp_group(const uint8_t *g, uint8_t fp, uint64_t *empty, uint64_t *cand)
{
    uint64_t w = le64toh(load64(g));
    *empty = zero_bytes(w);
    *cand = zero_bytes(w ^ (0x0101010101010101ull * fp));
}
#endif

/*
 * Probes the table of `tag` for key k from its home position. The fingerprints are read
 * a group at a time (fp_group); only the table's last (cap mod FP_GROUP) positions are
 * read one at a time (probe_tail). The positions whose fingerprint matches, before the
 * first empty one, are the only slots read. An absent key whose home lies in a long run
 * reads the whole run: at 10^6 in the bench, the IP probe of 127.0.0.1 (every lookup
 * that has no IP binding) reads dozens of positions.
 */
static CB_INLINE long probe(const struct cb_snapshot *s, enum tag tag, const struct probe_key *k)
{
    const struct index *ix = &s->bidx[tag];
    const uint8_t fp = slot_fp(s, k->h);
    uint32_t pos = k->pos, grp = pos & ~(FP_GROUP - 1);
    const uint8_t *fg = k->fp - (pos - grp);            /* the home position's group */
    uint64_t keep = ~0ull << ((pos - grp) * FP_STRIDE); /* positions before pos: not ours */
    long i;

    /* Six hits in ten lie at their home position (fetched with its fingerprint by
     * prefetch_slot): its fingerprint byte first, so that an absent key (the IP probe of
     * most lookups) never waits for its home slot, a miss in memory. */
    uint8_t f = *k->fp;
    if (f == 0)
        return -1;
    if (f == fp && (i = slot_match(s, tag, k->sl, k)) >= 0)
        return i;
    for (;;) {
        if (__builtin_expect(grp + FP_GROUP > ix->cap, 0)) {
            uint32_t from = grp + (uint32_t)(__builtin_ctzll(keep) / FP_STRIDE);
            if ((i = probe_tail(s, tag, k, from, fp)) != -2)
                return i;
            grp = 0;
            fg = fp_at(ix, 0);
            keep = ~0ull;
            continue;
        }
        uint64_t empty, cand;
        fp_group(fg, fp, &empty, &cand);
        empty &= keep;
        cand &= keep;
        if (empty != 0)
            cand &= (empty & (0 - empty)) - 1; /* only those before the first empty */
        for (; cand != 0; cand &= cand - 1) {
            uint32_t at = grp + (uint32_t)(__builtin_ctzll(cand) / FP_STRIDE);
            if ((i = slot_match(s, tag, slot_at(ix, at), k)) >= 0)
                return i;
        }
        if (empty != 0)
            return -1;
        grp = grp + FP_GROUP == ix->cap ? 0 : grp + FP_GROUP;
        fg = fp_at(ix, grp);
        keep = ~0ull;
    }
}

/* The fingerprints of a key's run and its home slot, where a hit most often lies, are
 * fetched together: a hit costs one memory latency, not two in a row. The slot after it
 * too, where most of the other hits lie: at 10^6, 1.04-1.22x the lookups per second side
 * by side (bench/resolve), for a line of bandwidth. At a part's last slot that is one
 * past the part's end: a valid pointer, and a prefetch never faults. */
static CB_INLINE void prefetch_slot(const struct probe_key *k)
{
    __builtin_prefetch(k->fp);
    __builtin_prefetch(k->sl);
    __builtin_prefetch(k->sl + 1);
}

/* The key at h in the table of tag: bytes p[0..n) (for IP keys, the address after the
 * family), borrowed. */
static CB_INLINE struct probe_key key_at(const struct cb_snapshot *s, enum tag tag, uint32_t h,
                                         const void *p, size_t n, uint16_t port, uint8_t kind,
                                         uint8_t family)
{
    const struct index *ix = &s->bidx[tag];
    uint32_t pos = slot_pos(ix, h);

    return (struct probe_key){.p = p,
                              .n = n,
                              .fp = fp_at(ix, pos),
                              .sl = slot_at(ix, pos),
                              .h = h,
                              .pos = pos,
                              .port = port,
                              .kind = kind,
                              .family = family};
}

/* The key of an IP binding (kind IP or ANY_IP) on family, addr (borrowed) and port. */
static CB_INLINE struct probe_key ip_key(const struct cb_snapshot *s, uint8_t family,
                                         const uint8_t *addr, uint16_t port, uint8_t kind)
{
    return key_at(s, TAG_IP, hash_ip(family, addr, port), addr, family == AF_INET ? 4 : 16, port,
                  kind, family);
}

/* The key of a name, wildcard or ccs binding in the table of tag: bytes p[0..n), borrowed. */
static CB_INLINE struct probe_key name_key(const struct cb_snapshot *s, enum tag tag, const void *p,
                                           size_t n, uint16_t port, uint8_t kind)
{
    return key_at(s, tag, hash_key(tag, port, p, n), p, n, port, kind, 0);
}

static const struct cb_ccs_file *probe_file(const struct cb_snapshot *s, enum tag tag,
                                            uint16_t port, const char *name, size_t n)
{
    uint32_t h = hash_key(tag, port, name, n);

    for (uint32_t pos = h & s->fidx.mask;; pos = (pos + 1) & s->fidx.mask) {
        const struct fslot *sl = &s->fidx.slots[pos];
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
    struct probe_key k;

    switch (key->kind) {
    case CB_KEY_IP:
    case CB_KEY_ANY_IP:
        k = ip_key(s, key->family, key->addr, key->port, (uint8_t)key->kind);
        return probe(s, TAG_IP, &k);
    case CB_KEY_HOST:
        k = name_key(s, TAG_NAME, key->host, strlen(key->host), key->port, CB_KEY_HOST);
        return probe(s, TAG_NAME, &k);
    case CB_KEY_HOST_WILD:
        k = name_key(s, TAG_WILD, key->host + 2, strlen(key->host + 2), key->port,
                     CB_KEY_HOST_WILD);
        return probe(s, TAG_WILD, &k);
    case CB_KEY_CCS:
        k = name_key(s, TAG_CCS, NULL, 0, key->port, CB_KEY_CCS);
        return probe(s, TAG_CCS, &k);
    }
    return -1;
}

void cb_resolve(const struct cb_snapshot *s, const struct cb_resolve_query *q,
                struct cb_resolution *out)
{
    static const uint8_t any[16];
    const char *parent = NULL;
    struct probe_key ip, name, wild, k;
    long i;

    /* Hash every candidate first and prefetch their slots, so the cache misses of
     * rules 1-3 overlap instead of following one another. */
    ip = ip_key(s, q->family, q->addr, q->port, CB_KEY_IP);
    /* Only the IP key's fingerprints: most connections have no IP binding (the bench: 7
     * in 8), and their home slot, two lines from memory, would be read for nothing. An
     * IP hit then waits for its fingerprint line (cached: the IP table's are 1/64 of its
     * slots) before its slot. */
    __builtin_prefetch(ip.fp);
    if (q->sni != NULL) {
        size_t n = strlen(q->sni);
        parent = cb_name_parent(q->sni);
        name = name_key(s, TAG_NAME, q->sni, n, q->port, CB_KEY_HOST);
        prefetch_slot(&name);
        if (parent != NULL) {
            wild = name_key(s, TAG_WILD, parent, n - (size_t)(parent - q->sni), q->port,
                            CB_KEY_HOST_WILD);
            prefetch_slot(&wild);
        }
    }
    out->ccs = NULL;
    /* 1. IP binding on exactly the local address and port. */
    if ((i = probe(s, TAG_IP, &ip)) >= 0) {
        out->rule = CB_RULE_IP;
        goto found;
    }
    if (q->sni != NULL) {
        /* 2. exact name; 3. wildcard: one extra label over the parent. */
        if ((i = probe(s, TAG_NAME, &name)) >= 0) {
            out->rule = CB_RULE_SNI_EXACT;
            goto found;
        }
        if (parent != NULL && (i = probe(s, TAG_WILD, &wild)) >= 0) {
            out->rule = CB_RULE_SNI_WILDCARD;
            goto found;
        }
        /* 4. central store: NAME, then _.PARENT. */
        if (s->n_files > 0) {
            k = name_key(s, TAG_CCS, NULL, 0, q->port, CB_KEY_CCS);
            const struct cb_ccs_file *f = NULL;
            if (probe(s, TAG_CCS, &k) >= 0) {
                f = probe_file(s, TAG_FILE, q->port, q->sni, name.n);
                if (f == NULL && parent != NULL)
                    f = probe_file(s, TAG_FILE_WILD, q->port, parent, wild.n);
            }
            if (f != NULL) {
                out->rule = CB_RULE_CCS;
                out->ccs = f;
                out->binding = f->binding;
                return;
            }
        }
    }
    /* 5. wildcard IP: [::] then 0.0.0.0 for IPv6 connections, 0.0.0.0 for IPv4. These
     * keys are the same for every connection to a port, so their lines stay cached and
     * are hashed only when the rules above found nothing. */
    if (q->family == AF_INET6) {
        k = ip_key(s, AF_INET6, any, q->port, CB_KEY_ANY_IP);
        if ((i = probe(s, TAG_IP, &k)) >= 0) {
            out->rule = CB_RULE_WILDCARD_IP;
            goto found;
        }
    }
    k = ip_key(s, AF_INET, any, q->port, CB_KEY_ANY_IP);
    if ((i = probe(s, TAG_IP, &k)) >= 0) {
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
