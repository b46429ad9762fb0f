/* metrics: per-route counters and histograms, Prometheus text output. */
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "group.h"
#include "mem.h"
#include "vault.h"

/* Statuses we count by value; anything else is "other". */
static const unsigned int status_codes[] = {200, 201, 204, 400, 401, 403, 404,
    405, 409, 413, 415, 431, 500, 501, 502, 503};
#define N_STATUS (sizeof(status_codes) / sizeof(status_codes[0]) + 1)

/* Histogram upper bounds in microseconds (and as text for `le`). */
static const uint64_t bucket_us[] = {1000, 2500, 5000, 10000, 25000, 50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
static const char *const bucket_le[] = {"0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"};
#define N_BUCKET (sizeof(bucket_us) / sizeof(bucket_us[0]))

struct route_stats {
	atomic_ulong by_status[N_STATUS];
	atomic_ulong bucket[N_BUCKET]; /* non-cumulative; summed at render */
	atomic_ulong count;
	atomic_ullong sum_us;
};

struct hv_metrics {
	const struct hv_route *tbl;
	size_t n; /* routes; stats has n + 1 slots */
	struct route_stats *stats;
	atomic_long inflight;
	atomic_long held;
	time_t started;
};

enum hv_rc
hv_metrics_new(const struct hv_route *tbl, size_t n, struct hv_metrics **out,
    struct hv_err *err)
{
	struct hv_metrics *m;
	size_t i, k;

	m = hv_calloc(1, sizeof(*m));
	if (m == NULL)
		return hv_err_set(err, HV_E_NOMEM, "metrics: out of memory");
	m->stats = hv_calloc(n + 1, sizeof(*m->stats));
	if (m->stats == NULL) {
		hv_free(m);
		return hv_err_set(err, HV_E_NOMEM, "metrics: out of memory");
	}
	for (i = 0; i <= n; i++) {
		for (k = 0; k < N_STATUS; k++)
			atomic_init(&m->stats[i].by_status[k], 0);
		for (k = 0; k < N_BUCKET; k++)
			atomic_init(&m->stats[i].bucket[k], 0);
		atomic_init(&m->stats[i].count, 0);
		atomic_init(&m->stats[i].sum_us, 0);
	}
	atomic_init(&m->inflight, 0);
	atomic_init(&m->held, 0);
	m->tbl = tbl;
	m->n = n;
	m->started = time(NULL);
	*out = m;
	return HV_OK;
}

void
hv_metrics_free(struct hv_metrics **m)
{
	if (m == NULL || *m == NULL)
		return;
	hv_free((*m)->stats);
	hv_free(*m);
	*m = NULL;
}

void
hv_metrics_observe(
    struct hv_metrics *m, size_t route, unsigned int status, uint64_t usec)
{
	struct route_stats *s;
	size_t k;

	if (m == NULL)
		return;
	if (route > m->n)
		route = m->n;
	s = &m->stats[route];
	for (k = 0; k + 1 < N_STATUS; k++)
		if (status_codes[k] == status)
			break;
	atomic_fetch_add_explicit(&s->by_status[k], 1, memory_order_relaxed);
	for (k = 0; k < N_BUCKET; k++)
		if (usec <= bucket_us[k])
			break;
	if (k < N_BUCKET)
		atomic_fetch_add_explicit(
		    &s->bucket[k], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->sum_us, usec, memory_order_relaxed);
}

void
hv_metrics_inflight(struct hv_metrics *m, int delta)
{
	if (m != NULL)
		atomic_fetch_add_explicit(
		    &m->inflight, delta, memory_order_relaxed);
}

void
hv_metrics_held(struct hv_metrics *m, int delta)
{
	if (m != NULL)
		(void)atomic_fetch_add_explicit(
		    &m->held, delta, memory_order_relaxed);
}

/* A growable text buffer; a failed append latches `oom`. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		size_t avail = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, avail, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < avail) {
			b->len += (size_t)n;
			return;
		}
		{
			size_t ncap = b->cap * 2 + (size_t)n;
			char *np = hv_malloc(ncap);

			if (np == NULL) {
				b->oom = true;
				return;
			}
			memcpy(np, b->p, b->len + 1);
			hv_free(b->p);
			b->p = np;
			b->cap = ncap;
		}
	}
}

static void
labels(const struct hv_metrics *m, size_t r, const char **method,
    const char **route)
{
	if (r < m->n) {
		*method = m->tbl[r].key.method;
		*route = m->tbl[r].key.pattern;
	} else {
		*method = "other";
		*route = "unmatched";
	}
}

/* The three caches' figures: one family per figure, one sample per cache. */
static void
render_caches(struct sbuf *b, const struct hv_vault_caches *c)
{
	static const struct {
		const char *name, *type, *help;
	} fam[4] = {
	    {"hits_total", "counter", "Cache lookups that found their entry."},
	    {"misses_total", "counter",
	        "Cache lookups that did not (the key store or the database "
	        "answered instead)."},
	    {"entries", "gauge", "Entries held."},
	    {"capacity", "gauge", "Most entries the cache holds (0: off)."},
	};
	const char *const label[3] = {"apikey", "dek", "credential"};
	const struct hv_vault_cache_figures *f[3] = {
	    &c->apikey, &c->dek, &c->cred};
	size_t i, k;

	for (i = 0; i < 4; i++) {
		sb_printf(b,
		    "# HELP hsmvault_cache_%s %s\n# TYPE hsmvault_cache_%s "
		    "%s\n",
		    fam[i].name, fam[i].help, fam[i].name, fam[i].type);
		for (k = 0; k < 3; k++) {
			const unsigned long v[4] = {f[k]->hits, f[k]->misses,
			    f[k]->entries, f[k]->capacity};

			sb_printf(b, "hsmvault_cache_%s{cache=\"%s\"} %lu\n",
			    fam[i].name, label[k], v[i]);
		}
	}
}

/*
 * A group commit's two counters (group.h), named after kind: its groups
 * and the items they wrote. Nothing when g is NULL (off).
 */
static void
render_group(struct sbuf *b, struct hv_group *g, const char *kind,
    const char *items_of, const char *items_cap, const char *one,
    const char *option)
{
	unsigned long groups, items;

	if (g == NULL)
		return;
	hv_group_stats(g, &groups, &items);
	sb_printf(b,
	    "# HELP hsmvault_%s_group_commits_total Groups of %s written by "
	    "a writer thread in one transaction (%s).\n"
	    "# TYPE hsmvault_%s_group_commits_total counter\n"
	    "hsmvault_%s_group_commits_total %lu\n"
	    "# HELP hsmvault_%s_grouped_total %s written by those groups (a "
	    "lone %s is written by its own request and not counted).\n"
	    "# TYPE hsmvault_%s_grouped_total counter\n"
	    "hsmvault_%s_grouped_total %lu\n",
	    kind, items_of, option, kind, kind, groups, kind, items_cap, one,
	    kind, kind, items);
}

enum hv_rc
hv_metrics_render(struct hv_metrics *m, const struct hv_metrics_sources *src,
    char **out, size_t *len, struct hv_err *err)
{
	struct hv_store *store = src->store;
	struct hv_audit *audit = src->audit;
	struct sbuf b = {NULL, 0, 4096, false};
	const char *meth, *route;
	size_t r, k;

	b.p = hv_malloc(b.cap);
	if (b.p == NULL)
		return hv_err_set(err, HV_E_NOMEM, "metrics: out of memory");
	b.p[0] = '\0';

	sb_printf(&b,
	    "# HELP hsmvault_http_requests_total HTTP requests "
	    "served, by route template, method and status.\n"
	    "# TYPE hsmvault_http_requests_total counter\n");
	for (r = 0; r <= m->n; r++) {
		labels(m, r, &meth, &route);
		for (k = 0; k < N_STATUS; k++) {
			unsigned long v = atomic_load_explicit(
			    &m->stats[r].by_status[k], memory_order_relaxed);
			char st[8];

			if (v == 0)
				continue;
			if (k + 1 < N_STATUS)
				(void)snprintf(
				    st, sizeof(st), "%u", status_codes[k]);
			else
				(void)snprintf(st, sizeof(st), "other");
			sb_printf(&b,
			    "hsmvault_http_requests_total{method=\"%s"
			    "\",route=\"%s\",status=\"%s\"} %lu\n",
			    meth, route, st, v);
		}
	}

	sb_printf(&b,
	    "# HELP hsmvault_http_request_duration_seconds Time from "
	    "the request's headers to its completion, by route template.\n"
	    "# TYPE hsmvault_http_request_duration_seconds histogram\n");
	for (r = 0; r <= m->n; r++) {
		unsigned long cnt = atomic_load_explicit(
		    &m->stats[r].count, memory_order_relaxed);
		unsigned long long sum = atomic_load_explicit(
		    &m->stats[r].sum_us, memory_order_relaxed);
		unsigned long cum = 0;

		if (cnt == 0)
			continue;
		labels(m, r, &meth, &route);
		for (k = 0; k < N_BUCKET; k++) {
			cum += atomic_load_explicit(
			    &m->stats[r].bucket[k], memory_order_relaxed);
			sb_printf(&b,
			    "hsmvault_http_request_duration_seconds_"
			    "bucket{method=\"%s\",route=\"%s\",le=\"%s\"} "
			    "%lu\n",
			    meth, route, bucket_le[k], cum);
		}
		/* Concurrent observers may have moved on: keep +Inf >= cum. */
		if (cnt < cum)
			cnt = cum;
		sb_printf(&b,
		    "hsmvault_http_request_duration_seconds_bucket{"
		    "method=\"%s\",route=\"%s\",le=\"+Inf\"} %lu\n",
		    meth, route, cnt);
		sb_printf(&b,
		    "hsmvault_http_request_duration_seconds_sum{"
		    "method=\"%s\",route=\"%s\"} %llu.%06llu\n",
		    meth, route, sum / 1000000ull, sum % 1000000ull);
		sb_printf(&b,
		    "hsmvault_http_request_duration_seconds_count{"
		    "method=\"%s\",route=\"%s\"} %lu\n",
		    meth, route, cnt);
	}

	sb_printf(&b,
	    "# HELP hsmvault_http_requests_in_flight Requests being "
	    "served.\n# TYPE hsmvault_http_requests_in_flight gauge\n"
	    "hsmvault_http_requests_in_flight %ld\n",
	    atomic_load_explicit(&m->inflight, memory_order_relaxed));
	sb_printf(&b,
	    "# HELP hsmvault_http_held_answers Answers waiting, with "
	    "their connection suspended, for the group commit that holds "
	    "their audit row or their credential.\n"
	    "# TYPE hsmvault_http_held_answers gauge\n"
	    "hsmvault_http_held_answers %ld\n",
	    atomic_load_explicit(&m->held, memory_order_relaxed));
	sb_printf(&b,
	    "# HELP hsmvault_start_time_seconds Start time of the "
	    "HTTP server, seconds since the epoch.\n"
	    "# TYPE hsmvault_start_time_seconds gauge\n"
	    "hsmvault_start_time_seconds %lld\n",
	    (long long)m->started);

	if (store != NULL) {
		struct hv_store_stats st;

		memset(&st, 0, sizeof(st));
		hv_store_stats(store, &st);
		sb_printf(&b,
		    "# HELP hsmvault_db_pool_connections Size of the "
		    "PostgreSQL connection pool.\n"
		    "# TYPE hsmvault_db_pool_connections gauge\n"
		    "hsmvault_db_pool_connections %u\n"
		    "# HELP hsmvault_db_pool_in_use Pool connections lent "
		    "out.\n# TYPE hsmvault_db_pool_in_use gauge\n"
		    "hsmvault_db_pool_in_use %u\n"
		    "# HELP hsmvault_db_pool_acquires_total Connections taken "
		    "from the pool.\n"
		    "# TYPE hsmvault_db_pool_acquires_total counter\n"
		    "hsmvault_db_pool_acquires_total %lu\n"
		    "# HELP hsmvault_db_pool_waits_total Acquires that had to "
		    "wait for a free connection.\n"
		    "# TYPE hsmvault_db_pool_waits_total counter\n"
		    "hsmvault_db_pool_waits_total %lu\n"
		    "# HELP hsmvault_db_pool_resets_total Broken connections "
		    "reset.\n# TYPE hsmvault_db_pool_resets_total counter\n"
		    "hsmvault_db_pool_resets_total %lu\n",
		    st.size, st.in_use, st.acquires, st.waits, st.resets);
	}

	if (audit != NULL) {
		struct hv_audit_stats st;

		hv_audit_stats(audit, &st);
		sb_printf(&b,
		    "# HELP hsmvault_audit_appends_total Audit rows appended "
		    "one at a time, by path: fast (compare-and-swap on the "
		    "remembered head) or locked (head read FOR UPDATE).\n"
		    "# TYPE hsmvault_audit_appends_total counter\n"
		    "hsmvault_audit_appends_total{path=\"fast\"} %lu\n"
		    "hsmvault_audit_appends_total{path=\"locked\"} %lu\n"
		    "# HELP hsmvault_audit_group_commits_total Statements "
		    "that appended several audit rows at once (audit group "
		    "commits, and groups of creates).\n"
		    "# TYPE hsmvault_audit_group_commits_total counter\n"
		    "hsmvault_audit_group_commits_total %lu\n"
		    "# HELP hsmvault_audit_grouped_rows_total Audit rows "
		    "appended by those statements.\n"
		    "# TYPE hsmvault_audit_grouped_rows_total counter\n"
		    "hsmvault_audit_grouped_rows_total %lu\n",
		    st.fast, st.locked, st.groups, st.rows);
	}

	render_group(&b, src->creates, "create", "creates", "Creates", "create",
	    "create_group_writers");
	render_group(&b, src->uses, "use",
	    "use records (audit row, last_used_at, status)", "Use records",
	    "record", "use_group_writers");

	if (src->caches != NULL)
		render_caches(&b, src->caches);

	if (b.oom) {
		hv_free(b.p);
		return hv_err_set(err, HV_E_NOMEM, "metrics: out of memory");
	}
	*out = b.p;
	*len = b.len;
	return HV_OK;
}
