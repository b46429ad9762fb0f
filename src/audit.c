/*
 * audit: HMAC chains over audit rows (docs/audit.md).
 *
 * Canonical form of a row, the HMAC input:
 *   field("hsmvault/audit/v1") || field(chain) || field(seq) || field(at)
 *   || field(workspace_id) || field(actor_id) || field(actor_name)
 *   || field(action) || field(credential_id) || field(outcome)
 *   || field(request_id) || field(remote_addr) || field(detail)
 *   || field(prev_mac)
 * where field(x) = be32(len(x)) || x, and SQL NULL is be32(0xffffffff)
 * with no bytes. chain and seq are decimal text; at is the UTC time as
 * "YYYY-MM-DDTHH:MM:SS.ffffffZ", taken from the database clock under the
 * head lock and read back by verify with the same to_char() format (a
 * timestamptz keeps microseconds exactly); uuids are lowercase canonical
 * text, which is what uuid::text gives back; prev_mac is 32 raw bytes.
 * Length prefixes make field boundaries unambiguous: no content can be
 * moved from one field into another without changing the MAC input.
 *
 * Genesis: the prev_mac of a chain's first row is
 *   HMAC(field("hsmvault/audit/genesis/v1") || be32(chain)).
 *
 * Appending (docs/audit.md, docs/performance.md). Each chain's head (seq,
 * mac, time of its last row) is remembered here after every append. The
 * fast path builds the next row from that remembered head and writes it
 * with one compare-and-swap statement: the head row moves only if it
 * still is what we remembered (seq and mac), and the audit row is
 * inserted only if it moved. When another writer got there first (another
 * instance on the same chain, a rolled-back transaction, a fresh process)
 * nothing is written and the slow path takes over in the same
 * transaction: lock the head (SELECT ... FOR UPDATE), chain onto it,
 * insert. Either way a row is chained onto the head as it is in the
 * database, under that row's lock, so chains never fork; the fast path
 * only saves the head read (one round trip and the lock wait). A row's
 * `at` is this process's clock, never before the chain's previous row
 * (the slow path uses the database clock, same rule), so each chain's
 * times are monotonic.
 */
#include "audit.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "group.h"
#include "log.h"
#include "mem.h"
#include "uuid.h"

#define DOMAIN         "hsmvault/audit/v1"
#define GENESIS_DOMAIN "hsmvault/audit/genesis/v1"
#define TS_FMT         "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"
#define VERIFY_PAGE    "1000"
#define VERIFY_PAGE_N  1000
#define NFIELDS        14 /* parameters of audit_insert, audit_append_cas */
#define AT_LEN         40 /* a row time as text */

/*
 * Group commit (rows of their own, when audit_group_leaders > 0): that
 * many writer threads, each writing groups of at most GROUP_MAX rows (and
 * a lone row written by its caller, see wrote_alone). audit_group_<n> takes
 * chain, first seq, previous head mac and time, then per row the nine
 * fields of struct row and the row's mac.
 */
#define GROUP_MAX        32
#define GROUP_ROW0       4
#define GROUP_PER_ROW    10
#define GROUP_NPARAMS(n) (GROUP_ROW0 + (n)*GROUP_PER_ROW)
#define GROUP_SQL_CAP    (1024 + GROUP_MAX * 256)

/* How a head was moved, for hv_audit_stats(). */
enum path { PATH_FAST, PATH_LOCKED, PATH_GROUP };

/* A chain's head as this process last wrote or read it. */
struct head {
	bool known;
	long long seq;
	uint8_t mac[HV_HMAC_LEN];
	int64_t at_us; /* time of the head row, microseconds */
};

/*
 * A row of its own queued for group commit: either a thread waiting in
 * hv_audit_append_alone() (cv, on its stack) or a row submitted with
 * hv_audit_submit() (done, on the heap, with copies of the event's
 * strings in buf).
 */
struct waiter {
	struct hv_group_item item; /* the queue's link */
	const struct hv_audit_event *ev;
	enum hv_rc rc;
	struct hv_err err;
	bool finished;      /* under gmu */
	pthread_cond_t *cv; /* the waiting thread's, or NULL */
	hv_done_fn done;    /* or the submitter's callback */
	void *arg;
	struct hv_audit_event copy;
	char buf[];
};

struct hv_audit {
	struct hv_hsm *hsm;
	unsigned int chains;
	unsigned int offset;
	pthread_mutex_t mu;
	struct head *heads;            /* [chains], under mu */
	unsigned long fast, locked;    /* appends, under mu */
	unsigned long groups, grouped; /* group commits and their rows */
	/* group commit of rows of their own: a queue and its writers */
	struct hv_group *group; /* NULL: no group commit */
	pthread_mutex_t gmu;    /* store, and the waiters' finished */
	struct hv_store *store; /* the writers', under gmu */
};

static const struct hv_stmt audit_stmts[] = {
    /* the row's time: the database clock, never before the head row */
    {"audit_head_lock",
        "SELECT h.seq, h.head_mac, to_char(greatest(clock_timestamp(), "
        "(SELECT l.at FROM audit_log l WHERE l.chain = h.chain AND "
        "l.seq = h.seq)) AT TIME ZONE 'UTC', " TS_FMT ") FROM "
        "audit_chains h WHERE h.chain = $1 FOR UPDATE",
        1},
    /* the fast path: move the head only from the remembered one */
    {"audit_append_cas",
        "WITH up AS (UPDATE audit_chains SET seq = $2::bigint, "
        "head_mac = $14::bytea WHERE chain = $1::integer AND "
        "seq = $2::bigint - 1 AND head_mac = $13::bytea RETURNING chain) "
        "INSERT INTO audit_log (chain, seq, at, workspace_id, actor_id, "
        "actor_name, action, credential_id, outcome, request_id, "
        "remote_addr, detail, prev_mac, mac) SELECT chain, $2::bigint, "
        "$3::timestamptz, $4::uuid, $5::uuid, $6::text, $7::text, "
        "$8::uuid, $9::text, $10::text, $11::text, $12::text, $13::bytea, "
        "$14::bytea FROM up RETURNING id",
        14},
    {"audit_chain_create",
        "INSERT INTO audit_chains (chain, seq, head_mac) VALUES ($1, 0, $2) "
        "ON CONFLICT (chain) DO NOTHING",
        2},
    {"audit_insert",
        "WITH ins AS (INSERT INTO audit_log (chain, seq, at, workspace_id, "
        "actor_id, actor_name, action, credential_id, outcome, request_id, "
        "remote_addr, detail, prev_mac, mac) VALUES ($1, $2, "
        "$3::timestamptz, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
        "RETURNING id) "
        "UPDATE audit_chains SET seq = $2, head_mac = $14 FROM ins "
        "WHERE chain = $1 RETURNING ins.id",
        14},
    {"audit_v_heads",
        "SELECT chain, seq, head_mac FROM audit_chains ORDER BY chain", 0},
    {"audit_v_rows",
        "SELECT id, seq, to_char(at AT TIME ZONE 'UTC', " TS_FMT "), "
        "workspace_id::text, actor_id::text, actor_name, action, "
        "credential_id::text, outcome, request_id, remote_addr, detail, "
        "prev_mac, mac FROM audit_log WHERE chain = $1 AND seq > $2 "
        "ORDER BY seq LIMIT " VERIFY_PAGE,
        2},
    {"audit_v_orphans",
        "SELECT a.chain, min(a.id), count(*) FROM audit_log a "
        "LEFT JOIN audit_chains c ON c.chain = a.chain "
        "WHERE c.chain IS NULL GROUP BY a.chain ORDER BY 2",
        0},
};

/*
 * The statement of a group of n rows: the fast path's compare-and-swap,
 * moving the head by n, and the n rows as VALUES, each row's prev_mac the
 * parameter of its predecessor's mac. Parameters only, as everywhere.
 */
static bool
group_sql_of(size_t n, char *b, size_t cap)
{
	size_t off = 0, i;
	bool ok;

	ok = hv_sql_put(b, cap, &off,
	    "WITH up AS (UPDATE audit_chains SET seq = $2::bigint + %zu, "
	    "head_mac = $%zu::bytea WHERE chain = $1::integer AND "
	    "seq = $2::bigint - 1 AND head_mac = $3::bytea RETURNING chain) "
	    "INSERT INTO audit_log (chain, seq, at, workspace_id, actor_id, "
	    "actor_name, action, credential_id, outcome, request_id, "
	    "remote_addr, detail, prev_mac, mac) SELECT up.chain, "
	    "$2::bigint + v.k, $4::timestamptz, v.ws, v.actor, v.an, v.act, "
	    "v.cred, v.outc, v.rid, v.ra, v.det, v.pm, v.m FROM up, (VALUES ",
	    n - 1, (size_t)GROUP_NPARAMS(n));
	for (i = 0; ok && i < n; i++) {
		size_t b0 = GROUP_NPARAMS(i) + 1; /* $ numbers start at 1 */
		size_t pm = i == 0 ? 3 : b0 - 1;

		ok = hv_sql_put(b, cap, &off,
		    "%s(%zu, $%zu::uuid, $%zu::uuid, $%zu::text, $%zu::text, "
		    "$%zu::uuid, $%zu::text, $%zu::text, $%zu::text, "
		    "$%zu::text, $%zu::bytea, $%zu::bytea)",
		    i == 0 ? "" : ", ", i, b0, b0 + 1, b0 + 2, b0 + 3, b0 + 4,
		    b0 + 5, b0 + 6, b0 + 7, b0 + 8, pm, b0 + 9);
	}
	return ok &&
	    hv_sql_put(b, cap, &off,
	        ") AS v(k, ws, actor, an, act, cred, outc, rid, ra, "
	        "det, pm, m) ORDER BY v.k RETURNING id");
}

static int
group_nparams(size_t n)
{
	return (int)GROUP_NPARAMS(n);
}

/* audit_group_<n> for n = 2..GROUP_MAX */
static struct hv_stmt_family group_family = {"audit_group_", GROUP_MAX,
    GROUP_SQL_CAP, group_sql_of, group_nparams, NULL};

void
hv_audit_register(void)
{
	hv_store_register(
	    audit_stmts, sizeof(audit_stmts) / sizeof(audit_stmts[0]));
	hv_store_register_family(&group_family);
}

static void writer_run(void *ctx, struct hv_group_item **items, size_t n);

enum hv_rc
hv_audit_new(struct hv_hsm *hsm, unsigned int chains, unsigned int leaders,
    struct hv_audit **out, struct hv_err *err)
{
	struct hv_audit *a;

	if (chains == 0)
		chains = 1;
	if (chains > 1024)
		return hv_err_set(err, HV_E_CONFIG, "audit_chains too large");
	if (leaders > 64)
		return hv_err_set(
		    err, HV_E_CONFIG, "audit_group_leaders too large (max 64)");
	a = hv_calloc(1, sizeof(*a));
	if (a == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	a->heads = hv_calloc(chains, sizeof(*a->heads));
	if (a->heads == NULL) {
		hv_free(a);
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	}
	if (leaders > 0) {
		enum hv_rc rc = hv_group_new("audit group commit", leaders,
		    GROUP_MAX, writer_run, a, &a->group, err);

		if (rc != HV_OK) {
			hv_free(a->heads);
			hv_free(a);
			return rc;
		}
	}
	pthread_mutex_init(&a->mu, NULL);
	pthread_mutex_init(&a->gmu, NULL);
	a->hsm = hsm;
	a->chains = chains;
	/*
	 * Processes sharing one database start at different chains, so two
	 * quiet servers do not both write chain 0.
	 */
	a->offset = (unsigned int)getpid() % chains;
	*out = a;
	return HV_OK;
}

void
hv_audit_free(struct hv_audit **a)
{
	if (a == NULL || *a == NULL)
		return;
	/* the writers write what is queued, then leave */
	hv_group_free(&(*a)->group);
	pthread_mutex_destroy(&(*a)->mu);
	pthread_mutex_destroy(&(*a)->gmu);
	hv_free((*a)->heads);
	hv_free(*a);
	*a = NULL;
}

/* The canonical message under construction. */
struct canon {
	uint8_t *buf;
	size_t len, cap;
};

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static bool
canon_field(struct canon *c, const void *p, size_t n, bool null)
{
	size_t need = 4 + (null ? 0 : n);

	if (!null && n >= 0xffffffffu)
		return false;
	if (c->len + need > c->cap) {
		size_t cap = c->cap * 2 + need + 256;
		uint8_t *nb = hv_malloc(cap);

		if (nb == NULL)
			return false;
		if (c->len > 0)
			memcpy(nb, c->buf, c->len);
		hv_free(c->buf);
		c->buf = nb;
		c->cap = cap;
	}
	put32(c->buf + c->len, null ? 0xffffffffu : (uint32_t)n);
	c->len += 4;
	if (!null && n > 0) {
		memcpy(c->buf + c->len, p, n);
		c->len += n;
	}
	return true;
}

static bool
canon_str(struct canon *c, const char *s)
{
	return canon_field(c, s, s != NULL ? strlen(s) : 0, s == NULL);
}

/* The row fields in canonical order; NULL pointer = SQL NULL. */
struct row {
	unsigned int chain;
	long long seq;
	const char *at;
	const char *f[9]; /* workspace_id .. detail, in schema order */
	const uint8_t *prev_mac;
};

static enum hv_rc
row_mac(struct hv_audit *a, const struct row *r, uint8_t out[HV_HMAC_LEN],
    struct hv_err *err)
{
	struct canon c = {0};
	char chain[16], seq[24];
	bool ok;
	size_t i;
	enum hv_rc rc;

	snprintf(chain, sizeof(chain), "%u", r->chain);
	snprintf(seq, sizeof(seq), "%lld", r->seq);
	ok = canon_str(&c, DOMAIN) && canon_str(&c, chain) &&
	    canon_str(&c, seq) && canon_str(&c, r->at);
	for (i = 0; ok && i < 9; i++)
		ok = canon_str(&c, r->f[i]);
	ok = ok && canon_field(&c, r->prev_mac, HV_HMAC_LEN, false);
	if (!ok) {
		hv_free(c.buf);
		return hv_err_set(err, HV_E_NOMEM, "audit: out of memory");
	}
	rc = hv_hsm_hmac(a->hsm, c.buf, c.len, out, err);
	hv_free(c.buf);
	return rc;
}

static enum hv_rc
genesis_mac(struct hv_audit *a, unsigned int chain, uint8_t out[HV_HMAC_LEN],
    struct hv_err *err)
{
	uint8_t msg[4 + sizeof(GENESIS_DOMAIN) - 1 + 4];
	size_t dl = sizeof(GENESIS_DOMAIN) - 1;

	put32(msg, (uint32_t)dl);
	memcpy(msg + 4, GENESIS_DOMAIN, dl);
	put32(msg + 4 + dl, chain);
	return hv_hsm_hmac(a->hsm, msg, sizeof(msg), out, err);
}

static long long
get_i64(const PGresult *r, int row, int col)
{
	const uint8_t *p = (const uint8_t *)PQgetvalue(r, row, col);
	uint64_t v = 0;
	int i;

	if (PQgetlength(r, row, col) != 8)
		return -1;
	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return (long long)v;
}

static long
get_i32(const PGresult *r, int row, int col)
{
	const uint8_t *p = (const uint8_t *)PQgetvalue(r, row, col);
	uint32_t v = 0;
	int i;

	if (PQgetlength(r, row, col) != 4)
		return -1;
	for (i = 0; i < 4; i++)
		v = v << 8 | p[i];
	return (long)(int32_t)v;
}

static enum hv_rc
create_chain(struct hv_audit *a, struct hv_conn *c, unsigned int chain,
    struct hv_err *err)
{
	uint8_t g[HV_HMAC_LEN];
	char ch[16];
	const char *p[2];
	const int len[2] = {0, HV_HMAC_LEN};
	const int fmt[2] = {0, 1};
	enum hv_rc rc;

	rc = genesis_mac(a, chain, g, err);
	if (rc != HV_OK)
		return rc;
	snprintf(ch, sizeof(ch), "%u", chain);
	p[0] = ch;
	p[1] = (const char *)g;
	return hv_store_exec(
	    c, "audit_chain_create", 2, p, len, fmt, false, NULL, err);
}

enum hv_rc
hv_audit_init_chains(struct hv_audit *a, struct hv_conn *c, struct hv_err *err)
{
	unsigned int i;
	enum hv_rc rc;

	for (i = 0; i < a->chains; i++) {
		rc = create_chain(a, c, i, err);
		if (rc != HV_OK)
			return hv_err_prefix(err, "audit chains");
	}
	return HV_OK;
}

/* Normalize an optional uuid field; false when present and invalid. */
static bool
norm_uuid(const char *in, char out[HV_UUID_STR], const char **res)
{
	if (in == NULL) {
		*res = NULL;
		return true;
	}
	if (!hv_uuid_normalize(in, out))
		return false;
	*res = out;
	return true;
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" of us microseconds since the epoch. */
static bool
fmt_at(int64_t us, char *out, size_t cap)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	int n;

	if (gmtime_r(&t, &tm) == NULL)
		return false;
	n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, (int)(us % 1000000));
	return n > 0 && (size_t)n < cap;
}

/* The inverse of fmt_at (the database's to_char of the same format). */
static bool
parse_at(const char *s, int64_t *us)
{
	struct tm tm;
	int y, mo, d, h, mi, sec;
	long frac;
	char z;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%6ld%c", &y, &mo, &d, &h, &mi,
	        &sec, &frac, &z) != 8 ||
	    z != 'Z')
		return false;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*us = (int64_t)timegm(&tm) * 1000000 + frac;
	return true;
}

static void
remember(struct hv_audit *a, unsigned int chain, long long seq,
    const uint8_t mac[HV_HMAC_LEN], int64_t at_us, enum path path, size_t rows)
{
	pthread_mutex_lock(&a->mu);
	switch (path) {
	case PATH_FAST:
		a->fast++;
		break;
	case PATH_LOCKED:
		a->locked++;
		break;
	case PATH_GROUP:
		a->groups++;
		a->grouped += rows;
		break;
	}
	a->heads[chain].known = true;
	a->heads[chain].seq = seq;
	memcpy(a->heads[chain].mac, mac, HV_HMAC_LEN);
	a->heads[chain].at_us = at_us;
	pthread_mutex_unlock(&a->mu);
}

/*
 * The remembered head of chain, and the time of a row to chain onto it:
 * now, never before the head row. h->known false: nothing remembered.
 */
static enum hv_rc
head_now(struct hv_audit *a, unsigned int chain, struct head *h,
    char at[AT_LEN], int64_t *at_us, struct hv_err *err)
{
	pthread_mutex_lock(&a->mu);
	*h = a->heads[chain];
	pthread_mutex_unlock(&a->mu);
	if (!h->known)
		return HV_OK;
	*at_us = hv_real_us();
	if (*at_us < h->at_us)
		*at_us = h->at_us;
	if (!fmt_at(*at_us, at, AT_LEN))
		return hv_err_set(err, HV_E_INTERNAL, "audit: clock");
	return HV_OK;
}

/*
 * An audit statement the database refused (err from the store): never the
 * caller's fault, whatever the database said (a CHECK violation maps to a
 * 4xx code in store.c), so a 4xx-class code becomes HV_E_INTERNAL.
 */
static enum hv_rc
db_failed(struct hv_err *err)
{
	if (hv_rc_http(err->rc) < 500)
		err->rc = HV_E_INTERNAL;
	return err->rc;
}

/*
 * Every error this module hands out says that it is the audit log's
 * ("audit: ..." once), whichever step failed: the callers pass it on as
 * it is (audit.h).
 */
static enum hv_rc
said(enum hv_rc rc, struct hv_err *err)
{
	if (rc != HV_OK && strncmp(err->msg, "audit: ", 7) != 0)
		hv_err_prefix(err, "audit");
	return rc;
}

static void
forget(struct hv_audit *a, unsigned int chain)
{
	pthread_mutex_lock(&a->mu);
	a->heads[chain].known = false;
	pthread_mutex_unlock(&a->mu);
}

/* An event checked and normalized into row fields. */
struct prepared {
	char ws[HV_UUID_STR], actor[HV_UUID_STR], cred[HV_UUID_STR];
	struct row row;
	unsigned int chain;
};

static enum hv_rc
prepare(struct hv_audit *a, struct hv_conn *c, const struct hv_audit_event *ev,
    struct prepared *pr, struct hv_err *err)
{
	if (ev->action == NULL || ev->outcome == NULL)
		return hv_err_set(err, HV_E_INTERNAL,
		    "audit: action and outcome are required");
	memset(pr, 0, sizeof(*pr));
	if (!norm_uuid(ev->workspace_id, pr->ws, &pr->row.f[0]) ||
	    !norm_uuid(ev->actor_id, pr->actor, &pr->row.f[1]) ||
	    !norm_uuid(ev->credential_id, pr->cred, &pr->row.f[4]))
		return hv_err_set(err, HV_E_INVALID, "audit: invalid id");
	pr->row.f[2] = ev->actor_name;
	pr->row.f[3] = ev->action;
	pr->row.f[5] = ev->outcome;
	pr->row.f[6] = ev->request_id;
	pr->row.f[7] = ev->remote_addr;
	pr->row.f[8] = ev->detail;
	/*
	 * One chain per pool slot: a transaction that appends twice stays
	 * on one chain, so two transactions can never take two heads in
	 * opposite orders; with audit_chains >= db_pool, no two transactions
	 * of this process ever share a head.
	 */
	pr->chain = (hv_conn_slot(c) + a->offset) % a->chains;
	return HV_OK;
}

/* The 14 parameters of audit_insert / audit_append_cas. */
static void
params_of(const struct row *row, const char *chs, const char *seqs,
    const uint8_t *prev, const uint8_t *mac, const char **p, int *len, int *fmt)
{
	int i;

	for (i = 0; i < 14; i++)
		len[i] = fmt[i] = 0;
	p[0] = chs;
	p[1] = seqs;
	p[2] = row->at;
	for (i = 0; i < 9; i++)
		p[3 + i] = row->f[i];
	p[12] = (const char *)prev;
	p[13] = (const char *)mac;
	len[12] = len[13] = HV_HMAC_LEN;
	fmt[12] = fmt[13] = 1;
}

/*
 * The fast path. *done is true when the row was written (and, outside a
 * transaction, committed); false with HV_OK when the remembered head was
 * stale or unknown and nothing was written.
 */
static enum hv_rc
append_fast(struct hv_audit *a, struct hv_conn *c, struct prepared *pr,
    bool autocommit, bool *done, struct hv_err *err)
{
	struct head h;
	char chs[16], seqs[24], at[AT_LEN];
	uint8_t mac[HV_HMAC_LEN];
	const char *p[NFIELDS];
	int len[NFIELDS], fmt[NFIELDS];
	PGresult *r = NULL;
	int64_t at_us;
	enum hv_rc rc;

	*done = false;
	rc = head_now(a, pr->chain, &h, at, &at_us, err);
	if (rc != HV_OK || !h.known)
		return rc;
	pr->row.chain = pr->chain;
	pr->row.seq = h.seq + 1;
	pr->row.at = at;
	pr->row.prev_mac = h.mac;
	rc = row_mac(a, &pr->row, mac, err);
	if (rc != HV_OK)
		return rc;
	snprintf(chs, sizeof(chs), "%u", pr->chain);
	snprintf(seqs, sizeof(seqs), "%lld", pr->row.seq);
	params_of(&pr->row, chs, seqs, h.mac, mac, p, len, fmt);
	/* autocommit: a lost connection must not replay a committed row */
	rc = autocommit ? hv_store_exec_once(c, "audit_append_cas", NFIELDS, p,
	                      len, fmt, false, &r, err)
	                : hv_store_exec(c, "audit_append_cas", NFIELDS, p, len,
	                      fmt, false, &r, err);
	if (rc != HV_OK) {
		forget(a, pr->chain);
		return db_failed(err);
	}
	if (PQntuples(r) == 1) {
		remember(a, pr->chain, pr->row.seq, mac, at_us, PATH_FAST, 1);
		*done = true;
	}
	PQclear(r);
	return HV_OK;
}

/* The slow path: lock the head, chain onto it, insert (in a transaction). */
static enum hv_rc
append_locked(struct hv_audit *a, struct hv_conn *c, struct prepared *pr,
    struct hv_err *err)
{
	char chs[16], seqs[24], at[AT_LEN];
	uint8_t prev[HV_HMAC_LEN], mac[HV_HMAC_LEN];
	const char *p[NFIELDS];
	int len[NFIELDS], fmt[NFIELDS];
	PGresult *r = NULL;
	long long seq;
	int64_t at_us;
	enum hv_rc rc;
	int tries;

	snprintf(chs, sizeof(chs), "%u", pr->chain);
	p[0] = chs;
	for (tries = 0;; tries++) {
		rc = hv_store_exec(
		    c, "audit_head_lock", 1, p, NULL, NULL, true, &r, err);
		if (rc != HV_OK)
			goto out;
		if (PQntuples(r) == 1 || tries == 1)
			break;
		/* A chain added to the configuration since init. */
		PQclear(r);
		r = NULL;
		rc = create_chain(a, c, pr->chain, err);
		if (rc != HV_OK)
			goto out;
	}
	if (PQntuples(r) != 1 || PQgetlength(r, 0, 1) != HV_HMAC_LEN ||
	    PQgetlength(r, 0, 2) <= 0 ||
	    (size_t)PQgetlength(r, 0, 2) >= sizeof(at)) {
		rc = hv_err_set(err, HV_E_DATABASE,
		    "audit: chain %u head is missing or malformed", pr->chain);
		goto out;
	}
	seq = get_i64(r, 0, 0);
	if (seq < 0) {
		rc = hv_err_set(err, HV_E_DATABASE,
		    "audit: chain %u head is malformed", pr->chain);
		goto out;
	}
	seq++;
	memcpy(prev, PQgetvalue(r, 0, 1), HV_HMAC_LEN);
	memcpy(at, PQgetvalue(r, 0, 2), (size_t)PQgetlength(r, 0, 2));
	at[PQgetlength(r, 0, 2)] = '\0';
	PQclear(r);
	r = NULL;
	if (!parse_at(at, &at_us)) {
		rc = hv_err_set(err, HV_E_DATABASE,
		    "audit: unexpected time format from the database");
		goto out;
	}

	pr->row.chain = pr->chain;
	pr->row.seq = seq;
	pr->row.at = at;
	pr->row.prev_mac = prev;
	rc = row_mac(a, &pr->row, mac, err);
	if (rc != HV_OK)
		goto out;
	snprintf(seqs, sizeof(seqs), "%lld", seq);
	params_of(&pr->row, chs, seqs, prev, mac, p, len, fmt);
	rc = hv_store_exec(
	    c, "audit_insert", NFIELDS, p, len, fmt, false, &r, err);
	if (rc != HV_OK) {
		rc = db_failed(err);
		goto out;
	}
	if (PQntuples(r) != 1) {
		rc = hv_err_set(err, HV_E_DATABASE,
		    "audit: chain %u head not updated", pr->chain);
		goto out;
	}
	remember(a, pr->chain, seq, mac, at_us, PATH_LOCKED, 1);
out:
	if (rc != HV_OK)
		forget(a, pr->chain);
	PQclear(r);
	return rc;
}

/* Append pr in the open transaction of c: the fast path, else the lock. */
static enum hv_rc
append_in_tx(struct hv_audit *a, struct hv_conn *c, struct prepared *pr,
    struct hv_err *err)
{
	bool done = false;
	enum hv_rc rc;

	rc = append_fast(a, c, pr, false, &done, err);
	if (rc == HV_OK && !done)
		rc = append_locked(a, c, pr, err);
	return rc;
}

enum hv_rc
hv_audit_append(struct hv_audit *a, struct hv_conn *c,
    const struct hv_audit_event *ev, struct hv_err *err)
{
	struct prepared pr;
	enum hv_rc rc;

	rc = prepare(a, c, ev, &pr, err);
	if (rc == HV_OK)
		rc = append_in_tx(a, c, &pr, err);
	return said(rc, err);
}

/* One row of its own on c, the way it was done before group commit. */
static enum hv_rc
append_single(struct hv_audit *a, struct hv_conn *c, struct prepared *pr,
    struct hv_err *err)
{
	bool done = false;
	enum hv_rc rc;

	/* one statement, its own transaction: one round trip */
	rc = append_fast(a, c, pr, true, &done, err);
	if (rc == HV_OK && !done) {
		rc = hv_store_begin(c, err);
		if (rc == HV_OK)
			rc = append_locked(a, c, pr, err);
		if (rc == HV_OK)
			rc = hv_store_commit(c, err);
		else
			hv_store_rollback(c);
	}
	return rc;
}

/*
 * Write the rows of a group (n > 1, in queue order) on c's chain with one
 * statement of its own (one round trip, one commit): the rows are chained
 * in memory onto the remembered head, and audit_group_<n> moves the head
 * from it to the last row and inserts the n rows only if it moved (the
 * compare-and-swap of the fast path, for n rows at once). So the group
 * commits whole or not at all. *done false with HV_OK: nothing written
 * (head unknown or moved), the caller falls back to single rows.
 */
static enum hv_rc
append_group(struct hv_audit *a, struct hv_conn *c, struct prepared *pr,
    size_t n, bool autocommit, bool *done, struct hv_err *err)
{
	struct head h;
	char chs[16], seqs[24], at[AT_LEN];
	const char *name;
	uint8_t macs[GROUP_MAX][HV_HMAC_LEN];
	const char *p[GROUP_NPARAMS(GROUP_MAX)];
	int len[GROUP_NPARAMS(GROUP_MAX)], fmt[GROUP_NPARAMS(GROUP_MAX)];
	PGresult *r = NULL;
	int64_t at_us;
	enum hv_rc rc;
	size_t i, j, np = GROUP_NPARAMS(n);

	*done = false;
	if (n < 2 || n > GROUP_MAX)
		return hv_err_set(err, HV_E_INTERNAL, "audit: group of %zu", n);
	rc = head_now(a, pr[0].chain, &h, at, &at_us, err);
	if (rc != HV_OK || !h.known)
		return rc;
	memset(len, 0, sizeof(len[0]) * np);
	memset(fmt, 0, sizeof(fmt[0]) * np);
	snprintf(chs, sizeof(chs), "%u", pr[0].chain);
	snprintf(seqs, sizeof(seqs), "%lld", h.seq + 1);
	p[0] = chs;
	p[1] = seqs;
	p[2] = (const char *)h.mac;
	len[2] = HV_HMAC_LEN;
	fmt[2] = 1;
	p[3] = at;
	for (i = 0; i < n; i++) {
		const char **q = p + GROUP_ROW0 + i * GROUP_PER_ROW;

		pr[i].row.chain = pr[0].chain;
		pr[i].row.seq = h.seq + 1 + (long long)i;
		pr[i].row.at = at;
		pr[i].row.prev_mac = i == 0 ? h.mac : macs[i - 1];
		rc = row_mac(a, &pr[i].row, macs[i], err);
		if (rc != HV_OK)
			return rc;
		for (j = 0; j < 9; j++)
			q[j] = pr[i].row.f[j];
		q[9] = (const char *)macs[i];
		len[q + 9 - p] = HV_HMAC_LEN;
		fmt[q + 9 - p] = 1;
	}
	/* autocommit: a lost statement is not replayed */
	name = hv_stmt_family_name(&group_family, n);
	rc = autocommit
	    ? hv_store_exec_once(c, name, (int)np, p, len, fmt, false, &r, err)
	    : hv_store_exec(c, name, (int)np, p, len, fmt, false, &r, err);
	if (rc != HV_OK) {
		forget(a, pr[0].chain);
		return db_failed(err);
	}
	if ((size_t)PQntuples(r) == n) {
		remember(a, pr[0].chain, pr[n - 1].row.seq, macs[n - 1], at_us,
		    PATH_GROUP, n);
		*done = true;
	} else if (PQntuples(r) == 0) {
		forget(a, pr[0].chain); /* another head: single rows */
	} else {
		/* cannot happen: one statement; never report rows as written */
		forget(a, pr[0].chain);
		rc = hv_err_set(err, HV_E_DATABASE,
		    "audit: chain %u moved inside a group", pr[0].chain);
	}
	PQclear(r);
	return rc;
}

enum hv_rc
hv_audit_append_many(struct hv_audit *a, struct hv_conn *c,
    const struct hv_audit_event *const *evs, size_t n, struct hv_err *err)
{
	struct prepared pr[GROUP_MAX];
	bool done = false;
	enum hv_rc rc;
	size_t i;

	if (n == 0 || n > GROUP_MAX)
		return hv_err_set(err, HV_E_INTERNAL,
		    "audit: %zu rows at once (1 to %d)", n, GROUP_MAX);
	for (i = 0; i < n; i++) {
		rc = prepare(a, c, evs[i], &pr[i], err);
		if (rc != HV_OK)
			return said(rc, err);
	}
	if (n > 1) {
		rc = append_group(a, c, pr, n, false, &done, err);
		if (rc != HV_OK)
			return said(rc, err);
	}
	/* head unknown or moved (or one row): each through the fast path or
	 * the head lock, still on one chain and in order */
	for (i = 0; i < n && !done; i++) {
		rc = append_in_tx(a, c, &pr[i], err);
		if (rc != HV_OK)
			return said(rc, err);
	}
	return HV_OK;
}

/* A group's work: the rows of waiters w[0..n-1], each gets its rc. */
static void
run_group(struct hv_audit *a, struct hv_store *s, struct waiter **w, size_t n)
{
	struct hv_conn *c = NULL;
	struct prepared pr[GROUP_MAX];
	struct waiter *ok[GROUP_MAX];
	struct hv_err err = {0};
	size_t i, m = 0;
	bool done = false;
	enum hv_rc rc;

	rc = hv_store_acquire(s, &c, &err);
	if (rc != HV_OK) {
		for (i = 0; i < n; i++) {
			w[i]->rc = rc;
			w[i]->err = err;
		}
		goto out;
	}
	for (i = 0; i < n; i++) {
		w[i]->rc = prepare(a, c, w[i]->ev, &pr[m], &w[i]->err);
		if (w[i]->rc == HV_OK)
			ok[m++] = w[i];
	}
	if (m > 1) {
		rc = append_group(a, c, pr, m, true, &done, &err);
		if (rc != HV_OK) {
			/* a lost statement's outcome is unknown: no replay */
			for (i = 0; i < m; i++) {
				ok[i]->rc = rc;
				ok[i]->err = err;
			}
			goto out;
		}
	}
	if (!done)
		for (i = 0; i < m; i++)
			ok[i]->rc = append_single(a, c, &pr[i], &ok[i]->err);
out:
	if (c != NULL)
		hv_store_release(s, &c);
	for (i = 0; i < n; i++)
		(void)said(w[i]->rc, &w[i]->err);
}

/*
 * Group commit (audit_group_leaders > 0): rows of their own go to a queue
 * (group.c), and that many writer threads each take what is queued (up
 * to GROUP_MAX rows) and write it with one statement on one connection. Rows
 * that arrive while a group is being written form the next one, so under
 * load one commit carries many rows; a lone row is written by its caller
 * (wrote_alone). Every row is still chained, and each row's
 * caller hears of it (wakes up, or its callback runs) only after the
 * commit that holds it, or with its error.
 */
static void
writer_run(void *ctx, struct hv_group_item **items, size_t n)
{
	struct hv_audit *a = ctx;
	struct waiter *batch[GROUP_MAX];
	struct hv_store *s;
	size_t i;

	for (i = 0; i < n; i++)
		batch[i] = (struct waiter *)(void *)items[i];
	pthread_mutex_lock(&a->gmu);
	s = a->store;
	pthread_mutex_unlock(&a->gmu);
	run_group(a, s, batch, n);
	/* a submitted row: its callback, then it is ours to free */
	for (i = 0; i < n; i++) {
		struct waiter *w = batch[i];

		if (w->done == NULL)
			continue;
		w->done(w->arg, w->rc, &w->err);
		hv_free(w);
		batch[i] = NULL;
	}
	/* a waiting thread may return (and its frame vanish) now */
	pthread_mutex_lock(&a->gmu);
	for (i = 0; i < n; i++) {
		if (batch[i] == NULL)
			continue;
		batch[i]->finished = true;
		pthread_cond_signal(batch[i]->cv);
	}
	pthread_mutex_unlock(&a->gmu);
}

/*
 * Queue w for the writers (group.c starts them on first use); s must be
 * the store of every row. Refused once hv_audit_free() began, or when no
 * writer can start.
 */
static enum hv_rc
enqueue(struct hv_audit *a, struct hv_store *s, struct waiter *w,
    struct hv_err *err)
{
	bool same;

	pthread_mutex_lock(&a->gmu);
	if (a->store == NULL)
		a->store = s;
	same = s == a->store;
	pthread_mutex_unlock(&a->gmu);
	if (!same)
		return hv_err_set(
		    err, HV_E_INTERNAL, "audit: one store per audit log");
	return hv_group_push(a->group, &w->item, err);
}

/*
 * A row that finds nothing queued and no group being written
 * (hv_group_alone) is written at once by its caller, as without group
 * commit: a lone row pays no hand-off to a writer thread (two thread
 * wake-ups, which measured about a tenth of a lone reveal's time). Rows
 * arriving meanwhile are queued and a writer takes them in parallel. Says
 * whether it wrote ev (borrowed), with its outcome in *rc (and err).
 */
static bool
wrote_alone(struct hv_audit *a, struct hv_store *s,
    const struct hv_audit_event *ev, enum hv_rc *rc, struct hv_err *err)
{
	struct waiter w, *one = &w;

	if (!hv_group_alone(a->group))
		return false;
	memset(&w, 0, sizeof(w));
	w.ev = ev;
	run_group(a, s, &one, 1);
	hv_group_alone_end(a->group);
	*rc = w.rc;
	if (w.rc != HV_OK)
		*err = w.err;
	return true;
}

enum hv_rc
hv_audit_append_alone(struct hv_audit *a, struct hv_store *s,
    const struct hv_audit_event *ev, struct hv_err *err)
{
	struct waiter w, *one = &w;
	pthread_cond_t cv;
	enum hv_rc rc;

	memset(&w, 0, sizeof(w));
	w.ev = ev;
	if (a->group == NULL) {
		/* no group commit: a group of one, written by its caller */
		run_group(a, s, &one, 1);
		goto out;
	}
	if (wrote_alone(a, s, ev, &rc, err))
		return rc;
	pthread_cond_init(&cv, NULL);
	w.cv = &cv;
	rc = enqueue(a, s, &w, &w.err);
	if (rc != HV_OK) {
		w.rc = said(rc, &w.err);
	} else {
		pthread_mutex_lock(&a->gmu);
		while (!w.finished)
			pthread_cond_wait(&cv, &a->gmu);
		pthread_mutex_unlock(&a->gmu);
	}
	pthread_cond_destroy(&cv);
out:
	if (w.rc != HV_OK)
		*err = w.err;
	return w.rc;
}

bool
hv_audit_async(const struct hv_audit *a)
{
	return a->group != NULL;
}

enum hv_rc
hv_audit_submit(struct hv_audit *a, struct hv_store *s,
    const struct hv_audit_event *ev, hv_done_fn done, void *arg, bool *queued,
    struct hv_err *err)
{
	const char *f[9] = {ev->workspace_id, ev->actor_id, ev->actor_name,
	    ev->action, ev->credential_id, ev->outcome, ev->request_id,
	    ev->remote_addr, ev->detail};
	struct waiter *w;
	size_t need = 0, off = 0, i;
	enum hv_rc rc;

	*queued = false;
	if (a->group == NULL || done == NULL)
		return hv_err_set(err, HV_E_INTERNAL,
		    "audit: submit needs group commit and a callback");
	if (wrote_alone(a, s, ev, &rc, err))
		return rc;
	for (i = 0; i < 9; i++)
		if (f[i] != NULL)
			need += strlen(f[i]) + 1;
	w = hv_calloc(1, sizeof(*w) + need);
	if (w == NULL)
		return hv_err_set(err, HV_E_NOMEM, "audit: out of memory");
	w->copy.workspace_id = hv_strput(w->buf, &off, f[0]);
	w->copy.actor_id = hv_strput(w->buf, &off, f[1]);
	w->copy.actor_name = hv_strput(w->buf, &off, f[2]);
	w->copy.action = hv_strput(w->buf, &off, f[3]);
	w->copy.credential_id = hv_strput(w->buf, &off, f[4]);
	w->copy.outcome = hv_strput(w->buf, &off, f[5]);
	w->copy.request_id = hv_strput(w->buf, &off, f[6]);
	w->copy.remote_addr = hv_strput(w->buf, &off, f[7]);
	w->copy.detail = hv_strput(w->buf, &off, f[8]);
	w->ev = &w->copy;
	w->done = done;
	w->arg = arg;
	rc = enqueue(a, s, w, err);
	if (rc != HV_OK)
		hv_free(w);
	else
		*queued = true;
	return said(rc, err);
}

void
hv_audit_stats(struct hv_audit *a, struct hv_audit_stats *st)
{
	pthread_mutex_lock(&a->mu);
	st->fast = a->fast;
	st->locked = a->locked;
	st->groups = a->groups;
	st->rows = a->grouped;
	pthread_mutex_unlock(&a->mu);
}

/* The first problem found, kept when it has the lowest row id so far. */
struct finding {
	bool set;
	long long id; /* -1: no row to name (missing tail) */
	unsigned int chain;
	long long seq;
	const char *problem;
	char detail[160];
};

static void
note(struct finding *best, unsigned long *nproblems, long long id,
    unsigned int chain, long long seq, const char *problem, const char *detail)
{
	bool better;

	(*nproblems)++;
	if (!best->set)
		better = true;
	else if (best->id < 0)
		better = id >= 0;
	else
		better = id >= 0 && id < best->id;
	if (!better)
		return;
	best->set = true;
	best->id = id;
	best->chain = chain;
	best->seq = seq;
	best->problem = problem;
	snprintf(best->detail, sizeof(best->detail), "%s", detail);
}

static const char *
col_str(const PGresult *r, int row, int col, char *buf, size_t cap)
{
	int n;

	if (PQgetisnull(r, row, col))
		return NULL;
	n = PQgetlength(r, row, col);
	if ((size_t)n >= cap)
		n = (int)cap - 1;
	memcpy(buf, PQgetvalue(r, row, col), (size_t)n);
	buf[n] = '\0';
	return buf;
}

/*
 * Walk one chain by seq. Every row is checked against its predecessor as
 * found in the table, so one break does not hide a later, lower-id one.
 */
static enum hv_rc
verify_chain(struct hv_audit *a, struct hv_conn *c, unsigned int chain,
    long long head_seq, const uint8_t head_mac[HV_HMAC_LEN],
    unsigned long *rows, unsigned long *nproblems, struct finding *best,
    struct hv_err *err)
{
	uint8_t prev_mac[HV_HMAC_LEN], mac[HV_HMAC_LEN];
	long long expected = 1, prev_id = 0, after = INT64_MIN;
	char chs[16], afters[24], d[160];
	/* text fields can hold up to a few kB in a tampered table */
	static const size_t fcap = 4096;
	char *fb = NULL;
	PGresult *r = NULL;
	enum hv_rc rc;
	int i, n;

	fb = hv_malloc(fcap * 10);
	if (fb == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	rc = genesis_mac(a, chain, prev_mac, err);
	if (rc != HV_OK)
		goto out;
	snprintf(chs, sizeof(chs), "%u", chain);
	for (;;) {
		const char *p[2] = {chs, afters};

		snprintf(afters, sizeof(afters), "%lld", after);
		rc = hv_store_exec(
		    c, "audit_v_rows", 2, p, NULL, NULL, true, &r, err);
		if (rc != HV_OK)
			goto out;
		n = PQntuples(r);
		if (n == 0)
			break;
		for (i = 0; i < n; i++) {
			struct row row;
			long long id = get_i64(r, i, 0);
			long long seq = get_i64(r, i, 1);
			const uint8_t *rprev, *rmac;
			bool bad = false;
			int k;

			(*rows)++;
			memset(&row, 0, sizeof(row));
			row.chain = chain;
			row.seq = seq;
			row.at = col_str(r, i, 2, fb, fcap);
			for (k = 0; k < 9; k++)
				row.f[k] = col_str(r, i, 3 + k,
				    fb + fcap * (size_t)(k + 1), fcap);
			rprev = (const uint8_t *)PQgetvalue(r, i, 12);
			rmac = (const uint8_t *)PQgetvalue(r, i, 13);
			if (PQgetlength(r, i, 12) != HV_HMAC_LEN ||
			    PQgetlength(r, i, 13) != HV_HMAC_LEN) {
				note(best, nproblems, id, chain, seq, "altered",
				    "mac or prev_mac has the wrong length");
				bad = true;
				goto next;
			}
			if (seq > expected) {
				snprintf(d, sizeof(d),
				    "row(s) with seq %lld"
				    "..%lld missing before this row",
				    expected, seq - 1);
				note(best, nproblems, id, chain, seq, "removed",
				    d);
				bad = true;
			} else if (seq < expected || id <= prev_id) {
				note(best, nproblems, id, chain, seq,
				    "reordered",
				    "row is out of order in its "
				    "chain");
				bad = true;
			}
			row.prev_mac = rprev;
			rc = row_mac(a, &row, mac, err);
			if (rc != HV_OK)
				goto out;
			if (!bad && !hv_ct_equal(mac, rmac, HV_HMAC_LEN)) {
				note(best, nproblems, id, chain, seq, "altered",
				    "mac does not match the row");
				bad = true;
			}
			if (!bad &&
			    !hv_ct_equal(rprev, prev_mac, HV_HMAC_LEN)) {
				note(best, nproblems, id, chain, seq,
				    "reordered",
				    "prev_mac does not match the "
				    "previous row");
				bad = true;
			}
		next:
			/* resynchronize on this row */
			if (PQgetlength(r, i, 13) == HV_HMAC_LEN)
				memcpy(prev_mac, rmac, HV_HMAC_LEN);
			else
				memset(prev_mac, 0, sizeof(prev_mac));
			prev_id = id;
			expected = seq + 1;
			after = seq;
		}
		PQclear(r);
		r = NULL;
		if (n < VERIFY_PAGE_N)
			break;
	}
	if (expected - 1 < head_seq) {
		snprintf(d, sizeof(d),
		    "chain head says seq %lld but the last "
		    "row has seq %lld",
		    head_seq, expected - 1);
		note(best, nproblems, -1, chain, expected, "removed", d);
	} else if (expected - 1 > head_seq) {
		snprintf(d, sizeof(d), "rows after the chain head (seq %lld)",
		    head_seq);
		note(best, nproblems, -1, chain, head_seq + 1, "head mismatch",
		    d);
	} else if (!hv_ct_equal(prev_mac, head_mac, HV_HMAC_LEN)) {
		note(best, nproblems, -1, chain, head_seq, "head mismatch",
		    "chain head mac does not match the last row");
	}
out:
	PQclear(r);
	hv_free_wipe(fb, fcap * 10);
	return rc;
}

enum hv_rc
hv_audit_verify(
    struct hv_audit *a, struct hv_store *s, json_t **report, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	PGresult *heads = NULL, *orph = NULL;
	struct finding best = {0};
	unsigned long rows = 0, nproblems = 0;
	json_t *rep = NULL;
	enum hv_rc rc;
	int i, nh;

	rc = hv_store_acquire(s, &c, err);
	if (rc != HV_OK)
		return rc;
	/* One snapshot: heads and rows agree even while others append. */
	rc = hv_store_begin_snapshot(c, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_store_exec(
	    c, "audit_v_heads", 0, NULL, NULL, NULL, true, &heads, err);
	if (rc != HV_OK)
		goto out;
	nh = PQntuples(heads);
	for (i = 0; i < nh; i++) {
		long ch = get_i32(heads, i, 0);
		long long hs = get_i64(heads, i, 1);

		if (ch < 0 || hs < 0 ||
		    PQgetlength(heads, i, 2) != HV_HMAC_LEN) {
			note(&best, &nproblems, -1,
			    ch < 0 ? 0 : (unsigned int)ch, hs, "head mismatch",
			    "malformed chain head");
			continue;
		}
		rc = verify_chain(a, c, (unsigned int)ch, hs,
		    (const uint8_t *)PQgetvalue(heads, i, 2), &rows, &nproblems,
		    &best, err);
		if (rc != HV_OK)
			goto out;
	}
	rc = hv_store_exec(
	    c, "audit_v_orphans", 0, NULL, NULL, NULL, true, &orph, err);
	if (rc != HV_OK)
		goto out;
	for (i = 0; i < PQntuples(orph); i++) {
		rows += (unsigned long)get_i64(orph, i, 2);
		note(&best, &nproblems, get_i64(orph, i, 1),
		    (unsigned int)get_i32(orph, i, 0), 0, "unknown chain",
		    "row of a chain that has no head");
	}
	rep = json_pack("{s:b,s:I,s:i,s:I}", "ok", !best.set, "rows",
	    (json_int_t)rows, "chains", nh, "problems", (json_int_t)nproblems);
	if (rep == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	if (best.set) {
		json_t *fb = json_pack("{s:o,s:i,s:I,s:s,s:s}", "id",
		    best.id >= 0 ? json_integer(best.id) : json_null(), "chain",
		    (int)best.chain, "seq", (json_int_t)best.seq, "problem",
		    best.problem, "detail", best.detail);

		if (fb == NULL || json_object_set_new(rep, "first_bad", fb)) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
		hv_log_warn("audit: verify failed: %s at chain %u seq %lld "
		            "(id %lld): %s",
		    best.problem, best.chain, best.seq, best.id, best.detail);
	}
	*report = rep;
	rep = NULL;
out:
	json_decref(rep);
	PQclear(heads);
	PQclear(orph);
	hv_store_release(s, &c); /* ends the read-only transaction */
	return rc;
}
