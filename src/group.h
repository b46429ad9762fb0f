/*
 * group: group commit of whole requests (docs/performance.md).
 *
 * Items are queued, and writer threads each take what is queued (up to
 * max items, in queue order) and hand it to run(), which writes the lot in
 * one transaction and tells each item's owner its outcome. Items that
 * arrive while a group is being written form the next one, so under load
 * one commit carries many items and at rest each item goes alone.
 *
 * A lone item should not pay the hand-off to a writer (two thread
 * wake-ups): hv_group_alone() says when nothing is queued and no group is
 * being written; the caller then does its own work on its own thread and
 * calls hv_group_alone_end(). Items pushed meanwhile are taken by a writer
 * in parallel.
 *
 * Thread-safety: every function but hv_group_new/free may be called from
 * any thread. run() is called on a writer thread, one group per call, and
 * owns the items it is given.
 */
#ifndef HV_GROUP_H
#define HV_GROUP_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* The link of a queued item: embed it in the item. */
struct hv_group_item {
	struct hv_group_item *next;
};

typedef void (*hv_group_fn)(void *ctx, struct hv_group_item **items, size_t n);

struct hv_group;

/*
 * writers: threads (started on the first push, at most 64); max: items
 * per group (1..64). The name is for the log.
 */
enum hv_rc hv_group_new(const char *name, unsigned int writers, size_t max,
    hv_group_fn run, void *ctx, struct hv_group **out, struct hv_err *err);

/* Run what is still queued, then join the writers. NULL-safe. */
void hv_group_free(struct hv_group **g);

/*
 * True when nothing is queued and no group is being written (and not
 * shutting down): the caller does its item's work itself and must then
 * call hv_group_alone_end(). False: push the item.
 */
bool hv_group_alone(struct hv_group *g);
void hv_group_alone_end(struct hv_group *g);

/*
 * Queue it; run() will own it. Refused (it stays the caller's) while
 * shutting down or when no writer thread can start.
 */
enum hv_rc
hv_group_push(struct hv_group *g, struct hv_group_item *it, struct hv_err *err);

/* Groups run and the items in them, since hv_group_new(). */
void
hv_group_stats(struct hv_group *g, unsigned long *groups, unsigned long *items);

#endif
