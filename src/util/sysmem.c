/* sysmem.c: the memory this process may use (sysmem.h). */
#include "util/sysmem.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The line of text[0..len) that starts at *at, without its newline; false past the end. */
static bool next_line(const char *text, size_t len, size_t *at, const char **line, size_t *n)
{
    if (*at >= len)
        return false;
    const char *start = text + *at;
    const char *nl = memchr(start, '\n', len - *at);
    *n = nl ? (size_t)(nl - start) : len - *at;
    *line = start;
    *at += *n + 1;
    return true;
}

/* Whether the comma-separated list p[0..n) holds the word "memory". */
static bool has_memory(const char *p, size_t n)
{
    while (n > 0) {
        const char *comma = memchr(p, ',', n);
        size_t w = comma ? (size_t)(comma - p) : n;
        if (w == 6 && memcmp(p, "memory", 6) == 0)
            return true;
        if (comma == NULL)
            break;
        n -= w + 1;
        p = comma + 1;
    }
    return false;
}

int cb_sysmem_limit_file(const char *text, size_t len, const char *root, char *out, size_t size)
{
    const char *line, *v1 = NULL, *v2 = NULL;
    size_t n, at = 0, n1 = 0, n2 = 0;

    /* Each line: ID:CONTROLLERS:PATH (PATH may hold colons). */
    while (next_line(text, len, &at, &line, &n)) {
        const char *c1 = memchr(line, ':', n);
        const char *c2 = c1 ? memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - line)) : NULL;
        if (c2 == NULL)
            continue;
        const char *path = c2 + 1;
        size_t pn = n - (size_t)(path - line);
        if (pn == 0 || path[0] != '/' || memchr(path, '\0', pn) != NULL)
            continue;
        if (c1 == line + 1 && line[0] == '0' && c2 == c1 + 1) {
            v2 = path;
            n2 = pn;
        } else if (has_memory(c1 + 1, (size_t)(c2 - c1 - 1))) {
            v1 = path;
            n1 = pn;
        }
    }
    int w;
    if (v1 != NULL) /* a v1 memory controller is the one that limits, even beside "0::" */
        w = snprintf(out, size, "%s/memory%.*s/memory.limit_in_bytes", root, (int)n1, v1);
    else if (v2 != NULL)
        w = snprintf(out, size, "%s%.*s/memory.max", root, (int)n2, v2);
    else
        return -1;
    return w > 0 && (size_t)w < size ? 0 : -1;
}

uint64_t cb_sysmem_parse_limit(const char *text, size_t len)
{
    uint64_t v = 0;

    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    if (len == 3 && memcmp(text, "max", 3) == 0)
        return UINT64_MAX;
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] < '0' || text[i] > '9')
            return 0;
    for (size_t i = 0; i < len; i++) {
        uint64_t d = (uint64_t)(text[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return UINT64_MAX; /* past any machine's memory: no limit */
        v = v * 10 + d;
    }
    return v;
}

/* Up to size - 1 bytes of path, NUL-terminated; their count, or -1. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = read(fd, buf, size - 1);
    close(fd);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

int cb_sysmem_parent_file(char *file, size_t base)
{
    char *name = strrchr(file, '/');
    char *end, *dir;

    if (name == NULL)
        return -1;
    /* The parent's folder: before the name, past any empty components ("a//b"). */
    for (end = name; end > file && end[-1] == '/'; end--)
        ;
    for (dir = end; dir > file && dir[-1] != '/'; dir--)
        ;
    if (dir == end || dir == file)
        return -1; /* no component before the name */
    for (dir--; dir > file && dir[-1] == '/'; dir--)
        ;
    if ((size_t)(dir - file) < base)
        return -1; /* the parent is the hierarchy's root */
    memmove(dir, name, strlen(name) + 1);
    return 0;
}

uint64_t cb_sysmem_limit(void)
{
    static const char root[] = "/sys/fs/cgroup", v1_name[] = "/memory.limit_in_bytes";
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t limit = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    char text[4096], file[4096 + 64], value[64];
    ssize_t n = read_small("/proc/self/cgroup", text, sizeof(text));

    if (n <= 0 || cb_sysmem_limit_file(text, (size_t)n, root, file, sizeof(file)) != 0)
        return limit;
    /* The group's limit and every ancestor's up to the hierarchy's root (ROOT, or
     * ROOT/memory for v1): a slice's MemoryMax= limits the services in it. */
    size_t fl = strlen(file), vl = sizeof(v1_name) - 1;
    size_t base = sizeof(root) - 1 + (fl > vl && strcmp(file + fl - vl, v1_name) == 0 ? 7 : 0);
    do {
        ssize_t m = read_small(file, value, sizeof(value));
        uint64_t cg = m > 0 ? cb_sysmem_parse_limit(value, (size_t)m) : 0;
        if (cg > 0 && (limit == 0 || cg < limit))
            limit = cg;
    } while (cb_sysmem_parent_file(file, base) == 0);
    return limit;
}
