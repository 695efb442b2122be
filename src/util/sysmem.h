/*
 * How much memory this process may use: the machine's, or its control group's limit when
 * lower (a container, a systemd unit with MemoryMax=). For sizing caches, not for accounting.
 */
#ifndef CB_UTIL_SYSMEM_H
#define CB_UTIL_SYSMEM_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of memory this process may use; 0 when not even the machine's is known. */
uint64_t cb_sysmem_limit(void);

/*
 * The parts, for tests. From the text of /proc/self/cgroup (len bytes, not NUL-terminated),
 * the memory limit file to read, under root (normally /sys/fs/cgroup): cgroup v2's
 * ROOT/PATH/memory.max, else cgroup v1's ROOT/memory/PATH/memory.limit_in_bytes. 0 with out
 * filled, -1 when the text names neither or out is too small (size bytes).
 */
int cb_sysmem_limit_file(const char *text, size_t len, const char *root, char *out, size_t size);

/* DIR/PARENT/NAME becomes DIR/NAME in place, while DIR is at least base bytes long (the
 * hierarchy's root); 0, or -1 when PARENT is the root or file has no such parts. */
int cb_sysmem_parent_file(char *file, size_t base);

/* A limit file's text (len bytes): the limit in bytes, UINT64_MAX for none ("max", or a
 * value past the machine's), 0 when it is not a number. */
uint64_t cb_sysmem_parse_limit(const char *text, size_t len);

#endif
