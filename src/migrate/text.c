/*
 * text.c: the encodings Windows writes text files in, read as UTF-8. `netsh http show
 * sslcert > FILE` gives UTF-16LE with a byte-order mark in Windows PowerShell 5.1 (the
 * default shell of Windows Server 2016 to 2022), UTF-8 without one in PowerShell 7 and
 * the OEM code page (ASCII for English netsh) in cmd.exe; Out-File -Encoding utf8 writes
 * UTF-8 with a BOM. The UTF-16 decoder is written out here rather than taken from
 * iconv(3): it is twenty lines, names the line of a bad code unit, behaves the same on
 * every libc, and is instrumented when fuzzed.
 */
#include "migrate/migrate.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RESAVE                                                                                     \
    "export it again as UTF-8 (in PowerShell: netsh http show sslcert | Out-File -Encoding "       \
    "utf8 bindings.txt)"

/* 1 for UTF-16LE, 2 for UTF-16BE, 0 for neither: the first line (up to 128 code units,
 * at least 2) alternates zero and non-zero bytes. Text in any 8-bit encoding holds no
 * zero byte, so this only decides how to read a file that would be refused otherwise. */
static int bomless_utf16(const unsigned char *p, size_t len)
{
    bool le = true, be = true;
    size_t units = 0;

    for (size_t i = 0; i + 1 < len && units < 128 && (le || be); i += 2) {
        le = le && p[i] != 0 && p[i + 1] == 0;
        be = be && p[i] == 0 && p[i + 1] != 0;
        units++;
        if ((le && p[i] == '\n') || (be && p[i + 1] == '\n'))
            break;
    }
    if (units < 2)
        return 0;
    return le ? 1 : be ? 2 : 0;
}

static size_t put_utf8(char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12);
        o[1] = (char)(0x80 | (c >> 6 & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18);
    o[1] = (char)(0x80 | (c >> 12 & 0x3F));
    o[2] = (char)(0x80 | (c >> 6 & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

static int utf16_to_utf8(const unsigned char *p, size_t len, bool be, char **out, size_t *out_len,
                         struct cb_err *err)
{
    if (len % 2 != 0)
        return cb_err_set(err, CB_EBADFILE,
                          "UTF-16 text that ends in the middle of a character (an odd number of "
                          "bytes): the file was cut short; %s",
                          RESAVE);
    /* A code unit gives at most 3 bytes of UTF-8, a surrogate pair (two units) 4. */
    char *buf = malloc(len / 2 * 3 + 1);
    size_t n = 0;
    int line = 1;

    if (buf == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    for (size_t i = 0; i < len; i += 2) {
        uint32_t c = be ? (uint32_t)p[i] << 8 | p[i + 1] : (uint32_t)p[i + 1] << 8 | p[i];
        if (c >= 0xD800 && c <= 0xDFFF) {
            uint32_t lo = 0;
            if (c <= 0xDBFF && i + 3 < len)
                lo = be ? (uint32_t)p[i + 2] << 8 | p[i + 3] : (uint32_t)p[i + 3] << 8 | p[i + 2];
            if (lo < 0xDC00 || lo > 0xDFFF) {
                free(buf);
                return cb_err_set(err, CB_EBADFILE,
                                  "line %d: not valid UTF-16 (a lone surrogate, 0x%04X): the "
                                  "file is damaged; %s",
                                  line, (unsigned)c, RESAVE);
            }
            c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
            i += 2;
        }
        if (c == '\n')
            line++;
        n += put_utf8(buf + n, c);
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

int cb_text_utf8(const char *text, size_t len, const char **out, size_t *out_len, char **owned,
                 struct cb_err *err)
{
    const unsigned char *p = (const unsigned char *)text;
    int kind = 0;

    *owned = NULL;
    if (len >= 4 && memcmp(p, "\xFF\xFE\0\0", 4) == 0)
        return cb_err_set(err, CB_EBADFILE, "UTF-32 text is not read; %s", RESAVE);
    if (len >= 2 && p[0] == 0xFF && p[1] == 0xFE) {
        p += 2, len -= 2, kind = 1;
    } else if (len >= 2 && p[0] == 0xFE && p[1] == 0xFF) {
        p += 2, len -= 2, kind = 2;
    } else if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
        *out = text + 3;
        *out_len = len - 3;
        return 0;
    } else {
        kind = bomless_utf16(p, len);
    }
    if (kind == 0) {
        *out = text;
        *out_len = len;
        return 0;
    }
    int ret = utf16_to_utf8(p, len, kind == 2, owned, out_len, err);
    *out = *owned;
    return ret;
}
