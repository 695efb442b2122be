/*
 * fuzz_key_options.c: binding keys, options and thumbprints from a command-line-like
 * word list (the input split on NUL or newline), as `add sslcert KEY opt=value …`
 * would see them.
 *
 * Each word is tried as a key (cb_key_parse_word), as an option `name=value`
 * (cb_binding_set_option) and as a thumbprint; the first accepted key and every
 * accepted option build one binding, checked at the end with cb_binding_validate.
 * Invariants, abort() on violation:
 *  - an accepted key formats to text that re-parses to an equal key, and that text
 *    is a fixed point: it formats to itself;
 *  - an accepted thumbprint is 40 upper-case hex digits and normalises to itself;
 *  - certhash=T1,T2: two different thumbprints, the second set only with a first; the
 *    canonical text (cb_binding_certhash_text) given again stores the same pair;
 *  - an accepted backend= or appid= value is stored in canonical form: giving the
 *    stored text again is accepted and stores the same text;
 *  - an accepted clientca= value is "" or an absolute path (no trailing slash) that is
 *    stored as given, so the stored text is accepted again unchanged;
 *  - cb_binding_validate accepts only what its contract allows;
 *  - every refusal fills struct cb_err with a message.
 */
#include "admin/admin.h"
#include "binding/binding.h"
#include "fuzz_common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define MAX_WORDS 64

static bool key_equal(const struct cb_binding_key *a, const struct cb_binding_key *b)
{
    return a->kind == b->kind && a->port == b->port && a->family == b->family &&
           memcmp(a->addr, b->addr, sizeof(a->addr)) == 0 && strcmp(a->host, b->host) == 0;
}

static void check_refusal(int rc, const struct cb_err *err, const char *word)
{
    FUZZ_REQUIRE(rc < 0, word);
    FUZZ_REQUIRE(err->msg[0] != '\0', word);
}

static void check_key(const struct cb_binding_key *k, const char *word)
{
    char text[CB_KEY_TEXT_MAX], again[CB_KEY_TEXT_MAX], small[8];
    struct cb_binding_key k2;
    struct cb_err err;

    size_t n = cb_key_format(k, text, sizeof(text));
    FUZZ_REQUIRE(n > 0 && n < sizeof(text), word);
    FUZZ_REQUIRE(strlen(text) == n, word);
    /* Truncated output still reports the full length, as snprintf does. */
    FUZZ_REQUIRE(cb_key_format(k, small, sizeof(small)) == n, word);
    FUZZ_REQUIRE(k->port != 0, word);
    switch (k->kind) {
    case CB_KEY_IP:
    case CB_KEY_ANY_IP:
        FUZZ_REQUIRE(k->family == AF_INET || k->family == AF_INET6, word);
        FUZZ_REQUIRE(k->host[0] == '\0', word);
        break;
    case CB_KEY_HOST:
        FUZZ_REQUIRE(k->family == 0 && k->host[0] != '\0' && strchr(k->host, '*') == NULL, word);
        break;
    case CB_KEY_HOST_WILD:
        FUZZ_REQUIRE(k->family == 0 && k->host[0] == '*' && k->host[1] == '.', word);
        break;
    case CB_KEY_CCS:
        FUZZ_REQUIRE(k->family == 0 && k->host[0] == '\0', word);
        break;
    default:
        FUZZ_REQUIRE(!"known key kind", word);
    }

    int rc = cb_key_parse_word(text, &k2, &err);
    FUZZ_REQUIRE(rc == 0, text);
    FUZZ_REQUIRE(key_equal(k, &k2), text);
    cb_key_format(&k2, again, sizeof(again));
    FUZZ_REQUIRE(strcmp(text, again) == 0, text);
}

static void check_thumbprint(const char *thumb, const char *word)
{
    char again[CB_THUMB_LEN + 1];
    struct cb_err err;

    FUZZ_REQUIRE(strlen(thumb) == CB_THUMB_LEN, word);
    for (size_t i = 0; i < CB_THUMB_LEN; i++)
        FUZZ_REQUIRE((thumb[i] >= '0' && thumb[i] <= '9') || (thumb[i] >= 'A' && thumb[i] <= 'F'),
                     word);
    FUZZ_REQUIRE(cb_thumbprint_normalize(thumb, again, &err) == 0, thumb);
    FUZZ_REQUIRE(strcmp(thumb, again) == 0, thumb);
}

/* The stored form of backend= and appid= is canonical: setting it again keeps it. */
static void check_canonical_option(const char *name, const char *stored, const char *word)
{
    struct cb_binding b;
    struct cb_err err;
    unsigned fields = 0;

    if (stored[0] == '\0')
        return;
    cb_binding_init(&b);
    FUZZ_REQUIRE(cb_binding_set_option(&b, name, stored, &fields, &err) == 0, stored);
    FUZZ_REQUIRE(strcmp(stored, strcmp(name, "backend") == 0 ? b.backend : b.appid) == 0, word);
}

/* certhash=T1 or certhash=T1,T2: canonical thumbprints, never the same twice, and the text
 * show prints gives the same pair back. */
static void check_certhash(const struct cb_binding *t, const char *word)
{
    char text[CB_CERTHASH_TEXT_MAX + 1];
    struct cb_binding again;
    struct cb_err err;
    unsigned fields = 0;

    check_thumbprint(t->certhash, word);
    if (t->certhash2[0] != '\0') {
        check_thumbprint(t->certhash2, word);
        FUZZ_REQUIRE(strcmp(t->certhash, t->certhash2) != 0, word);
        FUZZ_REQUIRE(cb_binding_is_dual(t), word);
    }
    size_t n = cb_binding_certhash_text(t, text, sizeof(text));
    FUZZ_REQUIRE(n == strlen(text) && n == (t->certhash2[0] ? 2 * CB_THUMB_LEN + 1 : CB_THUMB_LEN),
                 word);
    cb_binding_init(&again);
    FUZZ_REQUIRE(cb_binding_set_option(&again, "certhash", text, &fields, &err) == 0, text);
    FUZZ_REQUIRE(strcmp(again.certhash, t->certhash) == 0, text);
    FUZZ_REQUIRE(strcmp(again.certhash2, t->certhash2) == 0, text);
}

static void try_option(struct cb_binding *b, unsigned *fields, const char *word)
{
    const char *eq = strchr(word, '=');
    struct cb_binding t = *b;
    struct cb_err err;

    if (eq == NULL)
        return;
    char *name = strndup(word, (size_t)(eq - word));
    if (name == NULL)
        return;
    /* On refusal the binding is unspecified: work on a copy, keep it on success. */
    int rc = cb_binding_set_option(&t, name, eq + 1, fields, &err);
    if (rc != 0) {
        check_refusal(rc, &err, word);
        goto out_free_name;
    }
    FUZZ_REQUIRE(strlen(t.certhash) == 0 || strlen(t.certhash) == CB_THUMB_LEN, word);
    FUZZ_REQUIRE(strlen(t.certhash2) == 0 || strlen(t.certhash2) == CB_THUMB_LEN, word);
    FUZZ_REQUIRE(strlen(t.appid) == 0 || strlen(t.appid) == CB_APPID_LEN, word);
    FUZZ_REQUIRE(strlen(t.backend) <= CB_BACKEND_MAX && strlen(t.ccspath) <= CB_PATH_MAX, word);
    FUZZ_REQUIRE(strlen(t.clientca) <= CB_PATH_MAX, word);
    if (strcmp(name, "clientca") == 0 && t.clientca[0] != '\0') {
        size_t n = strlen(t.clientca);
        FUZZ_REQUIRE(t.clientca[0] == '/' && t.clientca[n - 1] != '/', word);
        FUZZ_REQUIRE(strcmp(t.clientca, eq + 1) == 0, word);
    }
    if (strcmp(name, "certhash") == 0)
        check_certhash(&t, word);
    else if (strcmp(name, "backend") == 0 || strcmp(name, "appid") == 0)
        check_canonical_option(name, strcmp(name, "backend") == 0 ? t.backend : t.appid, word);
    *b = t;
out_free_name:
    free(name);
}

static void check_validate(const struct cb_binding *b)
{
    struct cb_err err;
    int rc = cb_binding_validate(b, &err);

    if (rc != 0) {
        check_refusal(rc, &err, "validate");
        return;
    }
    FUZZ_REQUIRE(b->certhash2[0] == '\0' || (b->certhash[0] != '\0' && !(b->flags & CB_OPT_ACME)),
                 "validate pair");
    if (b->key.kind == CB_KEY_CCS) {
        FUZZ_REQUIRE(b->ccspath[0] == '/' && b->certhash[0] == '\0', "validate ccs");
    } else {
        FUZZ_REQUIRE(b->ccspath[0] == '\0' && strlen(b->certhash) == CB_THUMB_LEN, "validate");
        FUZZ_REQUIRE((b->flags & (CB_OPT_DISABLETLS12 | CB_OPT_DISABLETLS13)) !=
                         (CB_OPT_DISABLETLS12 | CB_OPT_DISABLETLS13),
                     "validate tls");
    }
}

/* serve --admin ADDR:PORT: an accepted address has a port, and is loopback unless public. */
static void try_admin(const char *word)
{
    for (int pub = 0; pub < 2; pub++) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        struct cb_err err = {0};
        int rc = cb_admin_parse_addr(word, pub, &ss, &len, &err);
        if (rc != 0) {
            check_refusal(rc, &err, word);
            FUZZ_REQUIRE(rc == CB_EINVAL, word);
            continue;
        }
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *s4 = (const void *)&ss;
            FUZZ_REQUIRE(len == sizeof(*s4) && s4->sin_port != 0, word);
            FUZZ_REQUIRE(pub || (ntohl(s4->sin_addr.s_addr) >> 24) == 127, word);
        } else {
            const struct sockaddr_in6 *s6 = (const void *)&ss;
            FUZZ_REQUIRE(ss.ss_family == AF_INET6 && len == sizeof(*s6) && s6->sin6_port != 0,
                         word);
            FUZZ_REQUIRE(pub || IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr), word);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_words words;
    struct cb_binding b;
    unsigned fields = 0;
    bool have_key = false;

    if (!fuzz_words_split(data, size, MAX_WORDS, &words))
        return 0;
    cb_binding_init(&b);
    for (size_t i = 0; i < words.n; i++) {
        const char *word = words.word[i];
        struct cb_binding_key k;
        char thumb[CB_THUMB_LEN + 1];
        struct cb_err err;
        int rc;

        if ((rc = cb_key_parse_word(word, &k, &err)) == 0) {
            check_key(&k, word);
            if (!have_key) {
                b.key = k;
                have_key = true;
            }
        } else {
            check_refusal(rc, &err, word);
        }
        try_option(&b, &fields, word);
        try_admin(word);
        if ((rc = cb_thumbprint_normalize(word, thumb, &err)) == 0)
            check_thumbprint(thumb, word);
        else
            check_refusal(rc, &err, word);
    }
    if (have_key)
        check_validate(&b);
    fuzz_words_free(&words);
    return 0;
}
