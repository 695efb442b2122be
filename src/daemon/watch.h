/*
 * Watched certificates (`add cert FILE key=FILE link=yes`): the folders of linked
 * files are watched with inotify (through libuv); when a pair changes and is a valid
 * pair again, the store moves every binding of the old certificate to the new one
 * in one transaction. A half-written or mismatched pair is ignored, with a log line,
 * until it becomes valid.
 */
#ifndef CB_DAEMON_WATCH_H
#define CB_DAEMON_WATCH_H

#include "store/store.h"
#include <uv.h>

struct cb_watch;

/* Returns an owned watcher on loop; on_change runs after the store was changed. */
int cb_watch_new(uv_loop_t *loop, struct cb_store *st, void (*on_change)(void *arg), void *arg,
                 struct cb_watch **out, struct cb_err *err) CB_MUST_CHECK;
/* Re-reads which files are linked and watches their folders. */
void cb_watch_refresh(struct cb_watch *w);
/* Closes every handle; the watcher frees itself once they are closed. */
void cb_watch_close(struct cb_watch *w);

#endif
