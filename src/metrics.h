/*
 * metrics: request counters and latency histograms per route, rendered as
 * Prometheus text (exposition format 0.0.4) for GET /metrics.
 *
 * Counters are lock-free atomics indexed by route (the route table's
 * order; index n_routes is "unmatched": 404s for unknown paths, whose
 * method and path are never used as labels, so a client cannot blow up
 * the label cardinality) and by a fixed set of status codes.
 *
 * Key store operation counts and latency are not measured here: the key
 * store sits behind the vault, which does not expose timings yet. The
 * seam is hv_metrics_render(): it already reads pool figures from the
 * store and would read key store figures the same way.
 *
 * Ownership: struct hv_metrics borrows the route table (static storage).
 * Thread-safety: hv_metrics_observe(), hv_metrics_inflight(),
 * hv_metrics_held() and
 * hv_metrics_render() may run on any number of threads.
 */
#ifndef HV_METRICS_H
#define HV_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "err.h"
#include "store.h"

struct hv_metrics;
struct hv_audit;
struct hv_group;
struct hv_vault_caches;

/* New metrics for the n routes of tbl. Free with hv_metrics_free(). */
enum hv_rc
hv_metrics_new(const struct hv_route *tbl, size_t n, struct hv_metrics **out,
    struct hv_err *err) __attribute__((warn_unused_result));
void hv_metrics_free(struct hv_metrics **m);

/*
 * Count one finished request: route index (n = unmatched), HTTP status and
 * duration in microseconds.
 */
void hv_metrics_observe(
    struct hv_metrics *m, size_t route, unsigned int status, uint64_t usec);

/* Requests being served: +1 when one starts, -1 when it completes. */
void hv_metrics_inflight(struct hv_metrics *m, int delta);
/* Held answers (docs/http.md): +1 when one is held, -1 when it goes. */
void hv_metrics_held(struct hv_metrics *m, int delta);

/* What hv_metrics_render() reads besides its own counters. */
struct hv_metrics_sources {
	struct hv_store *store;   /* NULL: no pool figures */
	struct hv_audit *audit;   /* NULL: no audit append figures */
	struct hv_group *creates; /* NULL: no create group figures */
	struct hv_group *uses;    /* NULL: no use group figures */
	const struct hv_vault_caches *caches; /* NULL: no cache figures */
};

/*
 * Render every metric. On HV_OK *out is a new NUL-terminated buffer of
 * *len bytes the caller frees with hv_free().
 */
enum hv_rc hv_metrics_render(struct hv_metrics *m,
    const struct hv_metrics_sources *src, char **out, size_t *len,
    struct hv_err *err) __attribute__((warn_unused_result));

#endif
