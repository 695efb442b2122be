/*
 * name.c: host name normalisation and RFC 6125 matching.
 *
 * The same normaliser serves the command line (with IDN conversion) and the
 * handshake path (ASCII only, no allocation), so a name is compared in exactly one
 * form everywhere: lower case, no trailing dot, A-labels.
 */
#include "binding/binding.h"

#include <idn2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static inline bool is_label_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Lower-cases and checks an ASCII name in place; out already holds len bytes. */
static int check_ascii(char *out, size_t len, bool wildcard_ok, struct cb_err *err)
{
    size_t label = 0;
    size_t i = 0;

    if (len == 0)
        return cb_err_set(err, CB_EINVAL, "empty host name; give a name such as www.example.com");
    if (wildcard_ok && len >= 2 && out[0] == '*' && out[1] == '.')
        i = 2;
    if (i == len)
        return cb_err_set(err, CB_EINVAL, "wildcard '*.' needs a parent name, as in *.example.com");
    for (size_t start = i; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)out[i] : '.';
        if (c >= 'A' && c <= 'Z') {
            out[i] = (char)(c + 32);
            c = (unsigned char)out[i];
        }
        if (c == '.') {
            label = i - start;
            if (label == 0)
                return cb_err_set(err, CB_EINVAL,
                                  "host name has an empty label (two dots in a row, "
                                  "or a leading dot)");
            if (label > 63)
                return cb_err_set(err, CB_EINVAL, "host name label longer than 63 characters");
            if (out[start] == '-' || out[i - 1] == '-')
                return cb_err_set(err, CB_EINVAL,
                                  "host name label starts or ends with '-'; fix the name");
            start = i + 1;
            continue;
        }
        if (c == '*')
            return cb_err_set(err, CB_EINVAL,
                              "'*' is allowed only as the whole first label "
                              "(*.example.com)");
        if (!is_label_char(c))
            return cb_err_set(err, CB_EINVAL,
                              "host name has a character that is not a letter, digit, '-' or "
                              "'_' (byte 0x%02x)",
                              c);
    }
    return 0;
}

int cb_name_normalize(const char *in, size_t len, unsigned flags, char out[CB_NAME_MAX + 1],
                      struct cb_err *err)
{
    bool non_ascii = false;

    if (len > 0 && in[len - 1] == '.')
        len--;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\0')
            return cb_err_set(err, CB_EINVAL, "host name contains a NUL byte");
        if ((unsigned char)in[i] >= 0x80)
            non_ascii = true;
    }
    if (!non_ascii) {
        if (len > CB_NAME_MAX)
            return cb_err_set(err, CB_EINVAL, "host name longer than %d characters", CB_NAME_MAX);
        memcpy(out, in, len);
        out[len] = '\0';
        return check_ascii(out, len, flags & CB_NAME_WILDCARD, err);
    }
    if (!(flags & CB_NAME_IDN))
        return cb_err_set(err, CB_EINVAL, "host name is not ASCII");

    /* Internationalised name: convert everything after an optional "*." to A-labels. */
    size_t skip = (flags & CB_NAME_WILDCARD) && len >= 2 && in[0] == '*' && in[1] == '.' ? 2 : 0;
    char *utf8 = malloc(len - skip + 1);
    char *ascii = NULL;
    int ret;

    if (utf8 == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    memcpy(utf8, in + skip, len - skip);
    utf8[len - skip] = '\0';
    int rc = idn2_to_ascii_8z(utf8, &ascii, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
    if (rc != IDN2_OK) {
        ret = cb_err_set(err, CB_EINVAL, "host name is not a valid internationalised name: %s",
                         idn2_strerror(rc));
        goto out_free_utf8;
    }
    size_t alen = strlen(ascii);
    if (alen + skip > CB_NAME_MAX) {
        ret = cb_err_set(err, CB_EINVAL, "host name longer than %d characters in A-label form",
                         CB_NAME_MAX);
        goto out_free_ascii;
    }
    memcpy(out, in, skip);
    memcpy(out + skip, ascii, alen + 1);
    ret = check_ascii(out, alen + skip, flags & CB_NAME_WILDCARD, err);
out_free_ascii:
    idn2_free(ascii);
out_free_utf8:
    free(utf8);
    return ret;
}

const char *cb_name_parent(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot != NULL && dot[1] != '\0' ? dot + 1 : NULL;
}

/* Length of a name without its one trailing dot. */
static size_t len_without_dot(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && name[n - 1] == '.' ? n - 1 : n;
}

/* Case-insensitive equality, ignoring one trailing dot on either side. */
static bool equal_without_dot(const char *a, const char *b)
{
    size_t n = len_without_dot(a);
    return n == len_without_dot(b) && strncasecmp(a, b, n) == 0;
}

bool cb_name_covers(const char *cert_name, const char *host)
{
    if (cert_name[0] == '*' && cert_name[1] == '.') {
        /* One whole left-most label; the host's own first label must be non-empty. */
        const char *parent = cb_name_parent(host);
        if (parent == NULL || host[0] == '.')
            return false;
        if (strchr(cert_name + 2, '*') != NULL)
            return false;
        return equal_without_dot(parent, cert_name + 2);
    }
    if (strchr(cert_name, '*') != NULL)
        return false; /* partial-label wildcards are not honoured (RFC 6125 6.4.3) */
    return equal_without_dot(cert_name, host);
}
