/*
 * The binding model (design/bindings.md section 1): binding keys, host names,
 * thumbprints and per-binding options, parsed from the netsh-style `key=value`
 * words and printed back in canonical form. Pure functions: no I/O, no allocation.
 */
#ifndef CB_BINDING_BINDING_H
#define CB_BINDING_BINDING_H

#include <certbind/certbind.h>
#include <stdbool.h>
#include <stdint.h>

#define CB_NAME_MAX 253     /* longest DNS name in text form, without the trailing dot */
#define CB_THUMB_LEN 40     /* SHA-1 thumbprint, hex */
#define CB_BACKEND_MAX 264  /* "[" + name or v6 + "]:" + port */
#define CB_PATH_MAX 1024    /* ccspath and file paths kept in the store */
#define CB_KEY_TEXT_MAX 300 /* "hostnameport=" + name + ":" + port */
#define CB_APPID_LEN 38     /* "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}" */

enum cb_key_kind {
    CB_KEY_IP = 1,    /* ipport=ADDR:PORT, a specific local address */
    CB_KEY_ANY_IP,    /* ipport=0.0.0.0:PORT or [::]:PORT */
    CB_KEY_HOST,      /* hostnameport=NAME:PORT, exact */
    CB_KEY_HOST_WILD, /* hostnameport=*.PARENT:PORT */
    CB_KEY_CCS,       /* ccs=PORT */
};

struct cb_binding_key {
    enum cb_key_kind kind;
    uint16_t port;
    uint8_t family;             /* AF_INET or AF_INET6 for the IP kinds, else 0 */
    uint8_t addr[16];           /* IPv4 in the first 4 bytes; zero for the ANY kinds */
    char host[CB_NAME_MAX + 1]; /* HOST: the name; HOST_WILD: "*.parent"; else "" */
};

/* HTTP.sys toggles, each `enable|disable`; a set bit means "enable". */
#define CB_OPT_FLAG_MAP(XX)                                                                        \
    XX(DISABLEHTTP2, "disablehttp2", 0)                                                            \
    XX(DISABLETLS12, "disabletls12", 1)                                                            \
    XX(DISABLETLS13, "disabletls13", 2)                                                            \
    XX(DISABLELEGACYTLS, "disablelegacytls", 3)                                                    \
    XX(CLIENTCERTNEGOTIATION, "clientcertnegotiation", 4)                                          \
    XX(ENABLESESSIONTICKET, "enablesessionticket", 5)                                              \
    XX(DISABLEOCSPSTAPLING, "disableocspstapling", 6)                                              \
    XX(REJECT, "reject", 7)                                                                        \
    XX(ACME, "acme", 8)

enum cb_opt_flag {
#define CB_XX(id, text, bit) CB_OPT_##id = 1u << (bit),
    CB_OPT_FLAG_MAP(CB_XX)
#undef CB_XX
};

/* Every toggle bit: what a stored flags value may hold. */
#define CB_XX(id, text, bit) | CB_OPT_##id
enum { CB_OPT_ALL = 0 CB_OPT_FLAG_MAP(CB_XX) };
#undef CB_XX

/* Not an option: set by the store on a binding whose row is damaged (its key is readable,
 * the rest is not). Such a binding resolves as usual and fails every handshake, so a
 * client never falls through to another binding's certificate. Never stored. */
#define CB_OPT_DAMAGED (1u << 30)

enum cb_proxy_proto { CB_PROXY_OFF = 0, CB_PROXY_V1 = 1, CB_PROXY_V2 = 2 };

/* Which fields of struct cb_binding a command set (for `update`). */
enum cb_field {
    CB_F_CERTHASH = 1u << 0,
    CB_F_APPID = 1u << 1,
    CB_F_BACKEND = 1u << 2,
    CB_F_PROXY = 1u << 3,
    CB_F_CCSPATH = 1u << 4,
    CB_F_FLAGS = 1u << 5,
    CB_F_CLIENTCA = 1u << 6,
};

/* One binding as parsed and as stored. Fixed buffers: it lives on the stack. */
struct cb_binding {
    struct cb_binding_key key;
    char certhash[CB_THUMB_LEN + 1];  /* upper-case hex, "" for ccs bindings */
    char certhash2[CB_THUMB_LEN + 1]; /* the second certificate of certhash=T1,T2, or "" */
    char appid[CB_APPID_LEN + 1];     /* canonical "{...}", lower case, or "" */
    char backend[CB_BACKEND_MAX + 1]; /* canonical "host:port" / "[v6]:port", or "" */
    char ccspath[CB_PATH_MAX + 1];    /* ccs bindings only */
    char clientca[CB_PATH_MAX + 1];   /* absolute path of the client CA file (PEM), or "" */
    uint32_t flags;                   /* CB_OPT_* bits set to enable */
    uint32_t flags_set;               /* CB_OPT_* bits given on the command line */
    enum cb_proxy_proto proxy;
};

/*
 * Host names. Normalises `in` (len bytes, need not be NUL-terminated) into out:
 * lower case, one trailing dot removed, LDH labels (underscore allowed) of 1-63
 * bytes, at most 253 bytes. With CB_NAME_IDN, non-ASCII UTF-8 input is converted to
 * A-labels (IDNA 2008); without it non-ASCII is refused. With CB_NAME_WILDCARD a
 * leading "*." label is accepted (and nowhere else).
 */
#define CB_NAME_IDN 1u
#define CB_NAME_WILDCARD 2u
int cb_name_normalize(const char *in, size_t len, unsigned flags, char out[CB_NAME_MAX + 1],
                      struct cb_err *err) CB_MUST_CHECK;
/* RFC 6125 match of a normalised DNS name against a certificate name (one-label
 * wildcards in the left-most label only, case-insensitive). */
bool cb_name_covers(const char *cert_name, const char *host);
/* Parent of a name after its first label ("a.b.c" -> "b.c"), or NULL if none. */
const char *cb_name_parent(const char *name);

/* Binding keys: `name` is "ipport", "hostnameport" or "ccs"; value its text. */
int cb_key_parse(const char *name, const char *value, struct cb_binding_key *out,
                 struct cb_err *err) CB_MUST_CHECK;
/* Parses "ipport=…" / "hostnameport=…" / "ccs=…" in one word. */
int cb_key_parse_word(const char *word, struct cb_binding_key *out,
                      struct cb_err *err) CB_MUST_CHECK;
/* Canonical text, e.g. "hostnameport=www.example.com:443"; returns its length. */
size_t cb_key_format(const struct cb_binding_key *key, char *buf, size_t size);
/* Parses "ADDR" (v4, v6, v4-mapped v6 -> v4) into family/addr. */
int cb_addr_parse(const char *text, uint8_t *family, uint8_t addr[16]) CB_MUST_CHECK;
/* Parses a decimal port 1-65535. */
int cb_port_parse(const char *text, size_t len, uint16_t *port) CB_MUST_CHECK;

/* "AB:cd 12 …" -> 40 upper-case hex digits. */
int cb_thumbprint_normalize(const char *in, char out[CB_THUMB_LEN + 1],
                            struct cb_err *err) CB_MUST_CHECK;

/* Initialises a binding with the defaults (all toggles disabled, proxy off). */
void cb_binding_init(struct cb_binding *b);
/*
 * Applies one option word `name=value` to b and records it in *fields. Returns
 * CB_EINVAL with a message naming the option and its allowed values when the option
 * is unknown or its value is malformed; b is then unspecified.
 */
int cb_binding_set_option(struct cb_binding *b, const char *name, const char *value,
                          unsigned *fields, struct cb_err *err) CB_MUST_CHECK;
/*
 * certhash=T1,T2: a binding with two certificates (design section 9), one ECDSA and one
 * RSA. The parse only checks the words: two thumbprints at most, separated by one comma,
 * not the same one twice; the key types are the store's to know (check/dual.h puts the
 * ECDSA one first). Writes "T1" or "T1,T2" (canonical, upper case) into buf; returns its
 * length.
 */
#define CB_CERTHASH_TEXT_MAX (2 * CB_THUMB_LEN + 2)
size_t cb_binding_certhash_text(const struct cb_binding *b, char *buf, size_t size);
/* Whether b serves two certificates (certhash2 is set). */
bool cb_binding_is_dual(const struct cb_binding *b);
/* Moves b from certificate `from` to `to` in whichever slot holds from; false when
 * neither does (b unchanged). */
bool cb_binding_replace_cert(struct cb_binding *b, const char *from, const char *to);
/* Copies the fields named in `fields` (and flag bits in src->flags_set) from src. */
void cb_binding_merge(struct cb_binding *dst, const struct cb_binding *src, unsigned fields);
/*
 * Checks a complete binding: certhash for non-ccs keys (a managed binding, acme=enable,
 * may have none until serve obtains its certificate), ccspath only for ccs, acme only
 * for hostnameport= keys (an ACME certificate needs a name).
 */
int cb_binding_validate(const struct cb_binding *b, struct cb_err *err) CB_MUST_CHECK;
/* CB_EINVAL unless key may have a managed certificate (acme=enable): a hostnameport= key,
 * exact or wildcard. The message says that an ACME certificate needs a name. */
int cb_binding_acme_key_ok(const struct cb_binding_key *key, struct cb_err *err) CB_MUST_CHECK;
/* Name of a toggle bit, e.g. "disablehttp2". */
const char *cb_opt_flag_name(uint32_t bit);
const char *cb_proxy_name(enum cb_proxy_proto p);

#endif
