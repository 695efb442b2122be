/*
 * fuzz_resolve.c: the snapshot builder and the section 2 resolver.
 *
 * The input is lines (split on newline or NUL):
 *   KEY                   a binding, e.g. "hostnameport=*.example.com:443" or "ccs=443"
 *   file=NAME             a central store file of the latest binding ("*.example.com"
 *                         stands for _.example.com.pem)
 *   ?ADDR PORT [SNI]      a query: local address, port and server_name (normalised
 *                         with cb_name_normalize flags 0; absent when it is refused)
 * Lines that parse as none of these are skipped. The bindings and files build one
 * snapshot; every query is resolved against it. One input in three is built with every index
 * fingerprint alike (cb_snapshot_set_fp_bits), so probes compare every slot of a run. Invariants,
 * abort() on violation:
 *  - the builder refuses a ccs file for a binding that is not ccs, and finish fails
 *    with CB_EEXIST exactly when two bindings have equal keys;
 *  - every binding is found again by cb_snapshot_find, with its canonical key text;
 *  - each resolution names a valid binding consistent with its rule (ip: that IP
 *    binding on that address and port; sni-exact: that name and port; …) and equals
 *    the answer of a plain linear scan that follows design/bindings.md section 2.
 */
#include "binding/snapshot.h"
#include "fuzz_common.h"

#include <sys/socket.h>

#define MAX_LINES 256
#define MAX_BINDINGS 128
#define MAX_FILES 64

struct ref_file {
    char name[CB_NAME_MAX + 1];
    uint32_t binding;
};

struct model {
    struct cb_binding_key key[MAX_BINDINGS];
    size_t n;
    struct ref_file file[MAX_FILES];
    size_t n_files;
};

static size_t addr_len(uint8_t family)
{
    return family == AF_INET ? 4 : 16;
}

static bool key_equal(const struct cb_binding_key *a, const struct cb_binding_key *b)
{
    if (a->kind != b->kind || a->port != b->port)
        return false;
    switch (a->kind) {
    case CB_KEY_IP:
    case CB_KEY_ANY_IP:
        return a->family == b->family && memcmp(a->addr, b->addr, 16) == 0;
    case CB_KEY_HOST:
    case CB_KEY_HOST_WILD:
        return strcmp(a->host, b->host) == 0;
    default:
        return true;
    }
}

/* Section 2 by linear scan; returns the rule and fills *binding and *file (index or -1). */
static enum cb_rule ref_resolve(const struct model *m, const struct cb_resolve_query *q,
                                long *binding, long *file)
{
    const char *parent = q->sni != NULL ? cb_name_parent(q->sni) : NULL;

    *file = -1;
    for (size_t i = 0; i < m->n; i++) {
        const struct cb_binding_key *k = &m->key[i];
        if (k->kind == CB_KEY_IP && k->port == q->port && k->family == q->family &&
            memcmp(k->addr, q->addr, addr_len(q->family)) == 0) {
            *binding = (long)i;
            return CB_RULE_IP;
        }
    }
    if (q->sni != NULL) {
        for (size_t i = 0; i < m->n; i++) {
            const struct cb_binding_key *k = &m->key[i];
            if (k->kind == CB_KEY_HOST && k->port == q->port && strcmp(k->host, q->sni) == 0) {
                *binding = (long)i;
                return CB_RULE_SNI_EXACT;
            }
        }
        for (size_t i = 0; parent != NULL && i < m->n; i++) {
            const struct cb_binding_key *k = &m->key[i];
            if (k->kind == CB_KEY_HOST_WILD && k->port == q->port &&
                strcmp(k->host + 2, parent) == 0) {
                *binding = (long)i;
                return CB_RULE_SNI_WILDCARD;
            }
        }
        /* Files belong to ccs bindings, and there is at most one ccs binding per port. */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t j = 0; j < m->n_files; j++) {
                const struct ref_file *f = &m->file[j];
                if (m->key[f->binding].port != q->port)
                    continue;
                if ((pass == 0 && strcmp(f->name, q->sni) == 0) ||
                    (pass == 1 && parent != NULL && f->name[0] == '*' &&
                     strcmp(f->name + 2, parent) == 0)) {
                    *binding = f->binding;
                    *file = (long)j;
                    return CB_RULE_CCS;
                }
            }
        }
    }
    for (int pass = q->family == AF_INET6 ? 0 : 1; pass < 2; pass++) {
        uint8_t family = pass == 0 ? AF_INET6 : AF_INET;
        for (size_t i = 0; i < m->n; i++) {
            const struct cb_binding_key *k = &m->key[i];
            if (k->kind == CB_KEY_ANY_IP && k->port == q->port && k->family == family) {
                *binding = (long)i;
                return CB_RULE_WILDCARD_IP;
            }
        }
    }
    *binding = -1;
    return CB_RULE_NONE;
}

static void check_query(const struct cb_snapshot *s, const struct model *m,
                        const struct cb_resolve_query *q, const char *line)
{
    struct cb_resolution r;
    long want_binding, want_file;
    enum cb_rule want = ref_resolve(m, q, &want_binding, &want_file);

    memset(&r, 0xa5, sizeof(r));
    cb_resolve(s, q, &r);
    FUZZ_REQUIRE(r.rule == want, line);
    if (r.rule == CB_RULE_NONE) {
        FUZZ_REQUIRE(r.ccs == NULL, line);
        return;
    }
    FUZZ_REQUIRE(r.binding < cb_snapshot_count(s) && (long)r.binding == want_binding, line);
    const struct cb_snap_binding *e = cb_snapshot_binding(s, r.binding);
    FUZZ_REQUIRE(e != NULL && e->port == q->port, line);
    switch (r.rule) {
    case CB_RULE_IP:
        FUZZ_REQUIRE(e->kind == CB_KEY_IP && e->family == q->family, line);
        FUZZ_REQUIRE(memcmp(e->addr, q->addr, addr_len(q->family)) == 0, line);
        break;
    case CB_RULE_SNI_EXACT:
        FUZZ_REQUIRE(q->sni != NULL && e->kind == CB_KEY_HOST && strcmp(e->host, q->sni) == 0,
                     line);
        break;
    case CB_RULE_SNI_WILDCARD:
        FUZZ_REQUIRE(q->sni != NULL && e->kind == CB_KEY_HOST_WILD, line);
        FUZZ_REQUIRE(cb_name_parent(q->sni) != NULL &&
                         strcmp(e->host + 2, cb_name_parent(q->sni)) == 0,
                     line);
        FUZZ_REQUIRE(cb_name_covers(e->host, q->sni), line);
        break;
    case CB_RULE_CCS:
        FUZZ_REQUIRE(q->sni != NULL && e->kind == CB_KEY_CCS && r.ccs != NULL, line);
        FUZZ_REQUIRE(r.ccs == cb_snapshot_ccs_file(s, (size_t)want_file), line);
        FUZZ_REQUIRE(r.ccs->binding == r.binding && r.ccs->port == q->port, line);
        FUZZ_REQUIRE(cb_name_covers(r.ccs->name, q->sni), line);
        break;
    case CB_RULE_WILDCARD_IP:
        FUZZ_REQUIRE(e->kind == CB_KEY_ANY_IP, line);
        FUZZ_REQUIRE(e->family == AF_INET || q->family == AF_INET6, line);
        break;
    case CB_RULE_NONE:
        break;
    }
    if (r.rule != CB_RULE_CCS)
        FUZZ_REQUIRE(r.ccs == NULL, line);
}

/* "?ADDR PORT [SNI]" -> *q (sni points into sni_buf). Returns false when malformed. */
static bool parse_query(const char *line, struct cb_resolve_query *q, char *sni_buf)
{
    char addr[64];
    const char *sp = strchr(line + 1, ' ');

    memset(q, 0, sizeof(*q));
    if (sp == NULL || (size_t)(sp - line - 1) >= sizeof(addr))
        return false;
    memcpy(addr, line + 1, (size_t)(sp - line - 1));
    addr[sp - line - 1] = '\0';
    if (cb_addr_parse(addr, &q->family, q->addr) != 0)
        return false;
    const char *port = sp + 1;
    const char *sp2 = strchr(port, ' ');
    size_t plen = sp2 != NULL ? (size_t)(sp2 - port) : strlen(port);
    if (cb_port_parse(port, plen, &q->port) != 0)
        return false;
    if (sp2 != NULL && cb_name_normalize(sp2 + 1, strlen(sp2 + 1), 0, sni_buf, NULL) == 0)
        q->sni = sni_buf;
    return true;
}

static void add_file(struct cb_snapshot_builder *sb, struct model *m, const char *line)
{
    char name[CB_NAME_MAX + 1];
    struct cb_err err;
    uint32_t last = m->n > 0 ? (uint32_t)(m->n - 1) : 0;

    if (m->n_files == MAX_FILES ||
        cb_name_normalize(line + 5, strlen(line + 5), CB_NAME_WILDCARD, name, NULL) != 0)
        return;
    int rc = cb_snapshot_builder_add_ccs_file(sb, last, name, "/srv/ccs/cert.pem", &err);
    if (m->n == 0 || m->key[last].kind != CB_KEY_CCS) {
        FUZZ_REQUIRE(rc == CB_EINVAL, line);
        return;
    }
    FUZZ_REQUIRE(rc == 0, line);
    struct ref_file *f = &m->file[m->n_files++];
    memcpy(f->name, name, sizeof(f->name));
    f->binding = last;
}

static void add_binding(struct cb_snapshot_builder *sb, struct model *m, const char *line,
                        bool *dup)
{
    struct cb_binding b;
    struct cb_err err;
    uint32_t index;

    if (m->n == MAX_BINDINGS)
        return;
    cb_binding_init(&b);
    if (cb_key_parse_word(line, &b.key, &err) != 0)
        return;
    if (b.key.kind == CB_KEY_CCS)
        memcpy(b.ccspath, "/srv/ccs", sizeof("/srv/ccs"));
    else
        memset(b.certhash, 'A', CB_THUMB_LEN);
    FUZZ_REQUIRE(cb_snapshot_builder_add(sb, &b, &index, &err) == 0, line);
    FUZZ_REQUIRE(index == m->n, line);
    for (size_t i = 0; i < m->n; i++)
        if (key_equal(&m->key[i], &b.key))
            *dup = true;
    m->key[m->n++] = b.key;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct model m;
    struct fuzz_words lines;
    struct cb_snapshot_builder *sb;
    struct cb_snapshot *s = NULL;
    struct cb_err err;
    bool dup = false;

    if (!fuzz_words_split(data, size, MAX_LINES, &lines))
        return 0;
    /* One input in three with every index fingerprint alike: each probe then compares
     * every slot of its run, where the others compare about one. */
    cb_snapshot_set_fp_bits(size % 3 == 0 ? 0 : 8);
    if ((sb = cb_snapshot_builder_new()) == NULL)
        goto out_free_lines;
    m.n = m.n_files = 0;
    for (size_t i = 0; i < lines.n; i++) {
        const char *line = lines.word[i];
        if (line[0] == '?')
            continue;
        if (strncmp(line, "file=", 5) == 0)
            add_file(sb, &m, line);
        else
            add_binding(sb, &m, line, &dup);
    }
    int rc = cb_snapshot_builder_finish(sb, 7, &s, &err);
    if (dup) {
        FUZZ_REQUIRE(rc == CB_EEXIST, "duplicate keys accepted");
        goto out_free_lines;
    }
    FUZZ_REQUIRE(rc == 0, err.msg);
    FUZZ_REQUIRE(cb_snapshot_count(s) == m.n && cb_snapshot_ccs_count(s) == m.n_files,
                 "snapshot size");
    FUZZ_REQUIRE(cb_snapshot_generation(s) == 7, "generation");

    for (size_t i = 0; i < m.n; i++) {
        char text[CB_KEY_TEXT_MAX];
        cb_key_format(&m.key[i], text, sizeof(text));
        FUZZ_REQUIRE(cb_snapshot_find(s, &m.key[i]) == (long)i, text);
        FUZZ_REQUIRE(strcmp(cb_snapshot_binding(s, (uint32_t)i)->key_text, text) == 0, text);
    }
    FUZZ_REQUIRE(cb_snapshot_binding(s, (uint32_t)m.n) == NULL, "binding past the end");

    /* Readers take references while a newer snapshot replaces this one. */
    struct cb_snapshot *r = cb_snapshot_ref(s);
    cb_snapshot_unref(s);
    s = r;
    for (size_t i = 0; i < lines.n; i++) {
        const char *line = lines.word[i];
        struct cb_resolve_query q;
        char sni[CB_NAME_MAX + 1];
        if (line[0] == '?' && parse_query(line, &q, sni))
            check_query(s, &m, &q, line);
    }
    cb_snapshot_unref(s);
out_free_lines:
    fuzz_words_free(&lines);
    return 0;
}
