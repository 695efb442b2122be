/*
 * Parsers of what an ACME CA sends (RFC 8555 §7.1, RFC 7807 problems, ACME Renewal
 * Information). Pure functions over JSON text: every member's type is checked, every
 * string bounded, unknown members ignored, URLs must be https. The output is plain
 * fixed-size structs the caller owns; on failure the output is left unspecified and
 * err says what was wrong (CB_EBADFILE).
 */
#ifndef CB_ACME_PARSE_H
#define CB_ACME_PARSE_H

#include <certbind/certbind.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CB_ACME_MAX_NAMES 100 /* identifiers (and so authorizations) in one order */
#define CB_ACME_URL_MAX 512   /* URLs, with the NUL */
#define CB_ACME_MAX_CHALLENGES 8
#define CB_ACME_MAX_INPUT (1024 * 1024) /* the parsers refuse longer input */

struct cb_acme_directory {
    char new_nonce[512], new_account[512], new_order[512];
    char renewal_info[512];     /* "" when the CA offers no ARI */
    char terms_of_service[512]; /* meta.termsOfService, "" when none (any scheme) */
    bool eab_required;          /* meta.externalAccountRequired */
};

struct cb_acme_problem {
    char type[128];   /* e.g. "urn:ietf:params:acme:error:rateLimited", "" when none */
    char detail[512]; /* control characters replaced; subproblems summarised here */
    int status;       /* HTTP status in the document, 0 when absent */
};

struct cb_acme_order {
    char status[16]; /* pending, ready, processing, valid, invalid */
    char finalize[512];
    char certificate[512]; /* "" until valid */
    size_t n_authz;
    char authz[CB_ACME_MAX_NAMES][512];
    int64_t expires; /* 0 when absent */
    struct cb_acme_problem error;
    bool has_error;
};

struct cb_acme_challenge {
    char type[32];
    char url[512];
    char token[128]; /* base64url, at least 22 characters; "" when the challenge has none */
    char status[16];
};

struct cb_acme_authz {
    char status[16];      /* pending, valid, invalid, deactivated, expired, revoked */
    char identifier[256]; /* the DNS name, without "*." for a wildcard */
    bool wildcard;
    size_t n_challenges; /* the first CB_ACME_MAX_CHALLENGES are kept */
    struct cb_acme_challenge challenges[CB_ACME_MAX_CHALLENGES];
    struct cb_acme_problem error; /* a challenge's error (the CA's reason for invalid) */
    bool has_error;
};

struct cb_acme_renewal {
    int64_t start, end; /* the suggested window, seconds since the epoch, start <= end */
};

/* Each parses json[0..len) (borrowed; need not be NUL-terminated) into *out. */
int cb_acme_parse_directory(const char *json, size_t len, struct cb_acme_directory *out,
                            struct cb_err *err) CB_MUST_CHECK;
int cb_acme_parse_order(const char *json, size_t len, struct cb_acme_order *out,
                        struct cb_err *err) CB_MUST_CHECK;
int cb_acme_parse_authz(const char *json, size_t len, struct cb_acme_authz *out,
                        struct cb_err *err) CB_MUST_CHECK;
int cb_acme_parse_problem(const char *json, size_t len, struct cb_acme_problem *out,
                          struct cb_err *err) CB_MUST_CHECK;
int cb_acme_parse_renewal_info(const char *json, size_t len, struct cb_acme_renewal *out,
                               struct cb_err *err) CB_MUST_CHECK;

/* True when s is an https URL the client may follow: "https://" then a non-empty host,
 * printable ASCII without spaces, shorter than CB_ACME_URL_MAX. */
bool cb_acme_https_url(const char *s);
/* True when s is 22 to 127 base64url characters (an RFC 8555 §8 token). */
bool cb_acme_token_ok(const char *s);
/* An RFC 3339 date-time ("2026-01-02T03:04:05.123Z", "...+01:00") as seconds since the
 * epoch. CB_EINVAL when malformed or before 1970. */
int cb_acme_parse_time(const char *s, int64_t *out) CB_MUST_CHECK;

#endif
