/*
 * Logs: one line per event on stderr, in a stable key=value form:
 *   ts=2026-11-25T04:50:11.123Z level=info pid=123 event=listen addr=[::]:443
 * Free text values go through cb_log_quote() so a line always parses.
 */
#ifndef CB_UTIL_LOG_H
#define CB_UTIL_LOG_H

#include <certbind/certbind.h>
#include <stddef.h>

/* level: "info", "warn" or "error"; fmt continues the line with more key=value pairs. */
void cb_log(const char *level, const char *event, const char *fmt, ...) CB_PRINTF(3, 4);
/* Writes s as a double-quoted value (escaping quotes, backslashes and control bytes)
 * into buf; returns buf. */
const char *cb_log_quote(const char *s, char *buf, size_t size);
/* When set (systemd's journal), lines carry no timestamp: the journal adds one. */
void cb_log_set_journal(int on);

#endif
