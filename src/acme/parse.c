/*
 * parse.c: defensive parsers of the CA's JSON (directory, order, authorization,
 * problem document, renewal information). Nothing here trusts the CA: a member of the
 * wrong type or length refuses the whole document, except where RFC 8555 lets a client
 * ignore what it does not understand (unknown members, unknown challenge types).
 */
#include "acme/parse.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

bool cb_acme_https_url(const char *s)
{
    size_t n;

    if (s == NULL || strncmp(s, "https://", 8) != 0)
        return false;
    n = strlen(s);
    if (n >= CB_ACME_URL_MAX || n == 8 || s[8] == '/' || s[8] == '?' || s[8] == '#')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    return true;
}

bool cb_acme_token_ok(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
        if (n >= 127)
            return false;
    }
    return n >= 22;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int cb_acme_parse_time(const char *s, int64_t *out)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    const char *p;

    if (s == NULL || strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
        s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return CB_EINVAL;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
        sec > 60)
        return CB_EINVAL;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return CB_EINVAL;
    p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return CB_EINVAL;
        for (int i = 0; *p >= '0' && *p <= '9'; i++, p++)
            if (i >= 12)
                return CB_EINVAL;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return CB_EINVAL;
        p += 6;
    } else {
        return CB_EINVAL;
    }
    if (*p != '\0')
        return CB_EINVAL;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (sec == 60 ? 59 : sec);
    t -= sign * (oh * 3600 + om * 60);
    if (t < 0)
        return CB_EINVAL;
    *out = t;
    return 0;
}

/* Loads json[0..len) as a JSON object; refuses NUL in strings and duplicate keys. */
static json_t *load_object(const char *json, size_t len, const char *what, struct cb_err *err)
{
    json_error_t jerr;
    json_t *root;

    if (json == NULL || len == 0 || len > CB_ACME_MAX_INPUT) {
        cb_err_set(err, CB_EBADFILE, "the CA's %s is empty or larger than 1 MiB", what);
        return NULL;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        cb_err_set(err, CB_EBADFILE, "the CA's %s is not JSON (line %d: %.100s)", what, jerr.line,
                   jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        cb_err_set(err, CB_EBADFILE, "the CA's %s is not a JSON object", what);
        return NULL;
    }
    return root;
}

/* Copies string member `key` of obj into out[size]. Absent: "" and 0 unless required.
 * Refuses another type, an over-long value or one with control characters. */
static int get_str(json_t *obj, const char *key, bool required, char *out, size_t size,
                   const char *what, struct cb_err *err)
{
    json_t *v = json_object_get(obj, key);
    const char *s;
    size_t n;

    out[0] = '\0';
    if (v == NULL || json_is_null(v)) {
        if (required)
            return cb_err_set(err, CB_EBADFILE, "the CA's %s has no \"%s\"", what, key);
        return 0;
    }
    if (!json_is_string(v))
        return cb_err_set(err, CB_EBADFILE, "the CA's %s: \"%s\" is not a string", what, key);
    s = json_string_value(v);
    n = json_string_length(v);
    if (n >= size)
        return cb_err_set(err, CB_EBADFILE, "the CA's %s: \"%s\" is longer than %zu bytes", what,
                          key, size - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return cb_err_set(err, CB_EBADFILE, "the CA's %s: \"%s\" holds a control character",
                              what, key);
    memcpy(out, s, n + 1);
    return 0;
}

static int get_url(json_t *obj, const char *key, bool required, char *out, const char *what,
                   struct cb_err *err)
{
    int rc = get_str(obj, key, required, out, CB_ACME_URL_MAX, what, err);
    if (rc != 0)
        return rc;
    if ((required || out[0] != '\0') && !cb_acme_https_url(out)) {
        out[0] = '\0';
        return cb_err_set(err, CB_EBADFILE, "the CA's %s: \"%s\" is not an https URL", what, key);
    }
    return 0;
}

static bool one_of(const char *s, const char *const *set)
{
    for (; *set != NULL; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

/* Appends text to a problem's detail, truncating; control characters become '?'. */
static void detail_append(struct cb_acme_problem *p, const char *text)
{
    size_t n = strlen(p->detail);

    for (; *text != '\0' && n + 1 < sizeof(p->detail); text++) {
        unsigned char c = (unsigned char)*text;
        p->detail[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    p->detail[n] = '\0';
}

/* Copies a string member, replacing control characters and truncating. */
static void get_text(json_t *obj, const char *key, char *out, size_t size)
{
    json_t *v = json_object_get(obj, key);
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    size_t n = 0;

    for (; *s != '\0' && n + 1 < size; s++) {
        unsigned char c = (unsigned char)*s;
        out[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[n] = '\0';
}

/* A problem document object (RFC 7807, RFC 8555 §6.7): type, detail, status and
 * subproblems; lenient on length (truncated), strict on types. */
static int problem_from(json_t *obj, struct cb_acme_problem *out, struct cb_err *err)
{
    json_t *status = json_object_get(obj, "status");
    json_t *subs = json_object_get(obj, "subproblems");
    json_t *v;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(obj))
        return cb_err_set(err, CB_EBADFILE, "the CA's problem document is not a JSON object");
    if ((json_object_get(obj, "type") && !json_is_string(json_object_get(obj, "type"))) ||
        (json_object_get(obj, "detail") && !json_is_string(json_object_get(obj, "detail"))))
        return cb_err_set(err, CB_EBADFILE,
                          "the CA's problem document has a non-string "
                          "type or detail");
    get_text(obj, "type", out->type, sizeof(out->type));
    get_text(obj, "detail", out->detail, sizeof(out->detail));
    if (status != NULL && json_is_integer(status) && json_integer_value(status) >= 100 &&
        json_integer_value(status) <= 599)
        out->status = (int)json_integer_value(status);
    if (subs == NULL || !json_is_array(subs))
        return 0;
    size_t i;
    json_array_foreach(subs, i, v)
    {
        char text[256], ident[256], type[128];
        if (!json_is_object(v) || i >= 10)
            continue;
        json_t *id = json_object_get(v, "identifier");
        get_text(json_is_object(id) ? id : v, "value", ident, sizeof(ident));
        get_text(v, "type", type, sizeof(type));
        get_text(v, "detail", text, sizeof(text));
        const char *t = strncmp(type, "urn:ietf:params:acme:error:", 27) == 0 ? type + 27 : type;
        detail_append(out, out->detail[0] != '\0' ? "; " : "");
        if (ident[0] != '\0') {
            detail_append(out, ident);
            detail_append(out, ": ");
        }
        detail_append(out, text[0] != '\0' ? text : t);
    }
    return 0;
}

int cb_acme_parse_problem(const char *json, size_t len, struct cb_acme_problem *out,
                          struct cb_err *err)
{
    json_t *root = load_object(json, len, "problem document", err);
    int rc;

    if (root == NULL)
        return CB_EBADFILE;
    rc = problem_from(root, out, err);
    json_decref(root);
    return rc;
}

int cb_acme_parse_directory(const char *json, size_t len, struct cb_acme_directory *out,
                            struct cb_err *err)
{
    static const char what[] = "directory";
    json_t *root = load_object(json, len, what, err);
    json_t *meta, *eab;
    int rc;

    if (root == NULL)
        return CB_EBADFILE;
    memset(out, 0, sizeof(*out));
    if ((rc = get_url(root, "newNonce", true, out->new_nonce, what, err)) != 0 ||
        (rc = get_url(root, "newAccount", true, out->new_account, what, err)) != 0 ||
        (rc = get_url(root, "newOrder", true, out->new_order, what, err)) != 0 ||
        (rc = get_url(root, "renewalInfo", false, out->renewal_info, what, err)) != 0)
        goto out_free;
    meta = json_object_get(root, "meta");
    if (meta != NULL && !json_is_null(meta)) {
        if (!json_is_object(meta)) {
            rc = cb_err_set(err, CB_EBADFILE, "the CA's directory: \"meta\" is not an object");
            goto out_free;
        }
        rc = get_str(meta, "termsOfService", false, out->terms_of_service,
                     sizeof(out->terms_of_service), what, err);
        if (rc != 0)
            goto out_free;
        eab = json_object_get(meta, "externalAccountRequired");
        if (eab != NULL && !json_is_null(eab) && !json_is_boolean(eab)) {
            rc = cb_err_set(err, CB_EBADFILE,
                            "the CA's directory: \"externalAccountRequired\" is not a boolean");
            goto out_free;
        }
        out->eab_required = json_is_true(eab);
    }
    rc = 0;
out_free:
    json_decref(root);
    return rc;
}

static int get_time(json_t *obj, const char *key, bool required, int64_t *out, const char *what,
                    struct cb_err *err)
{
    char text[64];
    int rc = get_str(obj, key, required, text, sizeof(text), what, err);

    *out = 0;
    if (rc != 0 || text[0] == '\0')
        return rc;
    if (cb_acme_parse_time(text, out) != 0)
        return cb_err_set(err, CB_EBADFILE, "the CA's %s: \"%s\" is not an RFC 3339 time", what,
                          key);
    return 0;
}

/* Reads member "error" when it is present: a problem document. */
static int get_error(json_t *obj, struct cb_acme_problem *out, bool *has, const char *what,
                     struct cb_err *err)
{
    json_t *e = json_object_get(obj, "error");

    if (e == NULL || json_is_null(e))
        return 0;
    if (!json_is_object(e))
        return cb_err_set(err, CB_EBADFILE, "the CA's %s: \"error\" is not an object", what);
    if (problem_from(e, out, err) != 0)
        return CB_EBADFILE;
    *has = true;
    return 0;
}

int cb_acme_parse_order(const char *json, size_t len, struct cb_acme_order *out, struct cb_err *err)
{
    static const char what[] = "order";
    static const char *const states[] = {"pending", "ready",   "processing",
                                         "valid",   "invalid", NULL};
    json_t *root = load_object(json, len, what, err);
    json_t *authz, *v;
    size_t i;
    int rc;

    if (root == NULL)
        return CB_EBADFILE;
    memset(out, 0, sizeof(*out));
    if ((rc = get_str(root, "status", true, out->status, sizeof(out->status), what, err)) != 0)
        goto out_free;
    if (!one_of(out->status, states)) {
        rc = cb_err_set(err, CB_EBADFILE, "the CA's order has an unknown status");
        goto out_free;
    }
    if ((rc = get_url(root, "finalize", true, out->finalize, what, err)) != 0 ||
        (rc = get_url(root, "certificate", false, out->certificate, what, err)) != 0 ||
        (rc = get_time(root, "expires", false, &out->expires, what, err)) != 0 ||
        (rc = get_error(root, &out->error, &out->has_error, what, err)) != 0)
        goto out_free;
    authz = json_object_get(root, "authorizations");
    if (!json_is_array(authz) || json_array_size(authz) > CB_ACME_MAX_NAMES) {
        rc = cb_err_set(err, CB_EBADFILE,
                        "the CA's order has no list of at most %d "
                        "authorizations",
                        CB_ACME_MAX_NAMES);
        goto out_free;
    }
    json_array_foreach(authz, i, v)
    {
        const char *s = json_string_value(v);
        if (s == NULL || json_string_length(v) != strlen(s) || !cb_acme_https_url(s)) {
            rc = cb_err_set(err, CB_EBADFILE,
                            "the CA's order: authorization %zu is not an "
                            "https URL",
                            i + 1);
            goto out_free;
        }
        memcpy(out->authz[i], s, strlen(s) + 1);
        out->n_authz = i + 1;
    }
    rc = 0;
out_free:
    json_decref(root);
    return rc;
}

/* One challenge object; an unusable one of a type the client never answers is skipped
 * (*keep false) rather than refusing the authorization. */
static int challenge_from(json_t *obj, struct cb_acme_challenge *out, bool *keep,
                          struct cb_acme_authz *az, struct cb_err *err)
{
    static const char what[] = "challenge";
    static const char *const used[] = {"tls-alpn-01", "dns-01", "http-01", NULL};
    struct cb_err local;
    int rc;

    *keep = false;
    memset(out, 0, sizeof(*out));
    if (!json_is_object(obj))
        return cb_err_set(err, CB_EBADFILE,
                          "the CA's authorization lists a challenge that is "
                          "not an object");
    if (get_str(obj, "type", true, out->type, sizeof(out->type), what, &local) != 0)
        return 0; /* unknown to us and unusable: ignore */
    if (out->type[0] == '\0')
        return 0; /* a challenge without a type cannot be answered: ignore */
    bool known = one_of(out->type, used);
    rc = get_url(obj, "url", true, out->url, what, err);
    if (rc == 0)
        rc = get_str(obj, "status", true, out->status, sizeof(out->status), what, err);
    if (rc == 0)
        rc = get_str(obj, "token", false, out->token, sizeof(out->token), what, err);
    if (rc == 0 && out->token[0] != '\0' && !cb_acme_token_ok(out->token))
        rc = cb_err_set(err, CB_EBADFILE,
                        "the CA's %s challenge has a token that is not 22 to "
                        "127 base64url characters",
                        out->type);
    if (rc == 0 && known && out->token[0] == '\0')
        rc = cb_err_set(err, CB_EBADFILE, "the CA's %s challenge has no token", out->type);
    if (rc == 0 && !az->has_error)
        rc = get_error(obj, &az->error, &az->has_error, what, err);
    if (rc != 0)
        return known ? rc : 0;
    *keep = true;
    return 0;
}

int cb_acme_parse_authz(const char *json, size_t len, struct cb_acme_authz *out, struct cb_err *err)
{
    static const char what[] = "authorization";
    static const char *const states[] = {"pending", "valid",   "invalid", "deactivated",
                                         "expired", "revoked", NULL};
    json_t *root = load_object(json, len, what, err);
    json_t *ident, *wild, *chals, *v;
    char type[16];
    size_t i;
    int rc;

    if (root == NULL)
        return CB_EBADFILE;
    memset(out, 0, sizeof(*out));
    if ((rc = get_str(root, "status", true, out->status, sizeof(out->status), what, err)) != 0)
        goto out_free;
    if (!one_of(out->status, states)) {
        rc = cb_err_set(err, CB_EBADFILE, "the CA's authorization has an unknown status");
        goto out_free;
    }
    ident = json_object_get(root, "identifier");
    if (!json_is_object(ident)) {
        rc = cb_err_set(err, CB_EBADFILE, "the CA's authorization has no identifier");
        goto out_free;
    }
    if ((rc = get_str(ident, "type", true, type, sizeof(type), what, err)) != 0 ||
        (rc = get_str(ident, "value", true, out->identifier, sizeof(out->identifier), what, err)) !=
            0)
        goto out_free;
    if (strcmp(type, "dns") != 0 || out->identifier[0] == '\0') {
        rc = cb_err_set(err, CB_EBADFILE, "the CA's authorization is not for a DNS name");
        goto out_free;
    }
    wild = json_object_get(root, "wildcard");
    if (wild != NULL && !json_is_null(wild) && !json_is_boolean(wild)) {
        rc = cb_err_set(err, CB_EBADFILE,
                        "the CA's authorization: \"wildcard\" is not a "
                        "boolean");
        goto out_free;
    }
    out->wildcard = json_is_true(wild);
    chals = json_object_get(root, "challenges");
    if (!json_is_array(chals)) {
        rc = cb_err_set(err, CB_EBADFILE, "the CA's authorization has no list of challenges");
        goto out_free;
    }
    json_array_foreach(chals, i, v)
    {
        bool keep;
        if (out->n_challenges == CB_ACME_MAX_CHALLENGES || i >= 64)
            break;
        rc = challenge_from(v, &out->challenges[out->n_challenges], &keep, out, err);
        if (rc != 0)
            goto out_free;
        if (keep)
            out->n_challenges++;
    }
    rc = 0;
out_free:
    json_decref(root);
    return rc;
}

int cb_acme_parse_renewal_info(const char *json, size_t len, struct cb_acme_renewal *out,
                               struct cb_err *err)
{
    static const char what[] = "renewal information";
    json_t *root = load_object(json, len, what, err);
    json_t *win;
    int rc;

    if (root == NULL)
        return CB_EBADFILE;
    memset(out, 0, sizeof(*out));
    win = json_object_get(root, "suggestedWindow");
    if (!json_is_object(win)) {
        rc = cb_err_set(err, CB_EBADFILE,
                        "the CA's renewal information has no "
                        "suggestedWindow");
        goto out_free;
    }
    if ((rc = get_time(win, "start", true, &out->start, what, err)) != 0 ||
        (rc = get_time(win, "end", true, &out->end, what, err)) != 0)
        goto out_free;
    if (out->end < out->start) {
        rc = cb_err_set(err, CB_EBADFILE, "the CA's renewal window ends before it starts");
        goto out_free;
    }
    rc = 0;
out_free:
    json_decref(root);
    return rc;
}
