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
 */
#include "audit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "uuid.h"

#define DOMAIN "hsmvault/audit/v1"
#define GENESIS_DOMAIN "hsmvault/audit/genesis/v1"
#define TS_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"
#define VERIFY_PAGE "1000"
#define VERIFY_PAGE_N 1000
#define NFIELDS 14

struct hv_audit {
	struct hv_hsm *hsm;
	unsigned int chains;
	unsigned int offset;
};

static const struct hv_stmt audit_stmts[] = {
	{ "audit_head_lock",
	    "SELECT seq, head_mac, to_char(clock_timestamp() AT TIME ZONE "
	    "'UTC', " TS_FMT ") FROM audit_chains WHERE chain = $1 "
	    "FOR UPDATE", 1 },
	{ "audit_chain_create",
	    "INSERT INTO audit_chains (chain, seq, head_mac) VALUES ($1, 0, $2) "
	    "ON CONFLICT (chain) DO NOTHING", 2 },
	{ "audit_insert",
	    "WITH ins AS (INSERT INTO audit_log (chain, seq, at, workspace_id, "
	    "actor_id, actor_name, action, credential_id, outcome, request_id, "
	    "remote_addr, detail, prev_mac, mac) VALUES ($1, $2, "
	    "$3::timestamptz, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
	    "RETURNING id) "
	    "UPDATE audit_chains SET seq = $2, head_mac = $14 FROM ins "
	    "WHERE chain = $1 RETURNING ins.id", 14 },
	{ "audit_v_heads",
	    "SELECT chain, seq, head_mac FROM audit_chains ORDER BY chain", 0 },
	{ "audit_v_rows",
	    "SELECT id, seq, to_char(at AT TIME ZONE 'UTC', " TS_FMT "), "
	    "workspace_id::text, actor_id::text, actor_name, action, "
	    "credential_id::text, outcome, request_id, remote_addr, detail, "
	    "prev_mac, mac FROM audit_log WHERE chain = $1 AND seq > $2 "
	    "ORDER BY seq LIMIT " VERIFY_PAGE, 2 },
	{ "audit_v_orphans",
	    "SELECT a.chain, min(a.id), count(*) FROM audit_log a "
	    "LEFT JOIN audit_chains c ON c.chain = a.chain "
	    "WHERE c.chain IS NULL GROUP BY a.chain ORDER BY 2", 0 },
};

void
hv_audit_register(void)
{
	hv_store_register(audit_stmts,
	    sizeof(audit_stmts) / sizeof(audit_stmts[0]));
}

enum hv_rc
hv_audit_new(struct hv_hsm *hsm, unsigned int chains, struct hv_audit **out,
    struct hv_err *err)
{
	struct hv_audit *a;

	if (chains == 0)
		chains = 1;
	if (chains > 1024)
		return hv_err_set(err, HV_E_CONFIG, "audit_chains too large");
	a = hv_calloc(1, sizeof(*a));
	if (a == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
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
	const char *f[9];	/* workspace_id .. detail, in schema order */
	const uint8_t *prev_mac;
};

static enum hv_rc
row_mac(struct hv_audit *a, const struct row *r, uint8_t out[HV_HMAC_LEN],
    struct hv_err *err)
{
	struct canon c = { 0 };
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
	const int len[2] = { 0, HV_HMAC_LEN };
	const int fmt[2] = { 0, 1 };
	enum hv_rc rc;

	rc = genesis_mac(a, chain, g, err);
	if (rc != HV_OK)
		return rc;
	snprintf(ch, sizeof(ch), "%u", chain);
	p[0] = ch;
	p[1] = (const char *)g;
	return hv_store_exec(c, "audit_chain_create", 2, p, len, fmt, false,
	    NULL, err);
}

enum hv_rc
hv_audit_init_chains(struct hv_audit *a, struct hv_conn *c,
    struct hv_err *err)
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

enum hv_rc
hv_audit_append(struct hv_audit *a, struct hv_conn *c,
    const struct hv_audit_event *ev, struct hv_err *err)
{
	char ws[HV_UUID_STR], actor[HV_UUID_STR], cred[HV_UUID_STR];
	char chs[16], seqs[24], at[40];
	uint8_t prev[HV_HMAC_LEN], mac[HV_HMAC_LEN];
	const char *p[14];
	int len[14] = { 0 }, fmt[14] = { 0 };
	struct row row;
	PGresult *r = NULL;
	unsigned int chain;
	long long seq;
	enum hv_rc rc;
	int tries;

	if (ev->action == NULL || ev->outcome == NULL)
		return hv_err_set(err, HV_E_INTERNAL,
		    "audit: action and outcome are required");
	memset(&row, 0, sizeof(row));
	if (!norm_uuid(ev->workspace_id, ws, &row.f[0]) ||
	    !norm_uuid(ev->actor_id, actor, &row.f[1]) ||
	    !norm_uuid(ev->credential_id, cred, &row.f[4]))
		return hv_err_set(err, HV_E_INVALID, "audit: invalid id");
	row.f[2] = ev->actor_name;
	row.f[3] = ev->action;
	row.f[5] = ev->outcome;
	row.f[6] = ev->request_id;
	row.f[7] = ev->remote_addr;
	row.f[8] = ev->detail;

	/*
	 * One chain per pool slot: a transaction that appends twice stays
	 * on one head lock, so two transactions can never take two heads in
	 * opposite orders.
	 */
	chain = (hv_conn_slot(c) + a->offset) % a->chains;
	snprintf(chs, sizeof(chs), "%u", chain);
	p[0] = chs;
	for (tries = 0;; tries++) {
		rc = hv_store_exec(c, "audit_head_lock", 1, p, NULL, NULL,
		    true, &r, err);
		if (rc != HV_OK)
			goto out;
		if (PQntuples(r) == 1 || tries == 1)
			break;
		/* A chain added to the configuration since init. */
		PQclear(r);
		r = NULL;
		rc = create_chain(a, c, chain, err);
		if (rc != HV_OK)
			goto out;
	}
	if (PQntuples(r) != 1 || PQgetlength(r, 0, 1) != HV_HMAC_LEN ||
	    PQgetlength(r, 0, 2) <= 0 ||
	    (size_t)PQgetlength(r, 0, 2) >= sizeof(at)) {
		rc = hv_err_set(err, HV_E_DATABASE,
		    "audit: chain %u head is missing or malformed", chain);
		goto out;
	}
	seq = get_i64(r, 0, 0);
	if (seq < 0) {
		rc = hv_err_set(err, HV_E_DATABASE,
		    "audit: chain %u head is malformed", chain);
		goto out;
	}
	seq++;
	memcpy(prev, PQgetvalue(r, 0, 1), HV_HMAC_LEN);
	memcpy(at, PQgetvalue(r, 0, 2), (size_t)PQgetlength(r, 0, 2));
	at[PQgetlength(r, 0, 2)] = '\0';
	PQclear(r);
	r = NULL;

	row.chain = chain;
	row.seq = seq;
	row.at = at;
	row.prev_mac = prev;
	rc = row_mac(a, &row, mac, err);
	if (rc != HV_OK)
		goto out;

	snprintf(seqs, sizeof(seqs), "%lld", seq);
	p[1] = seqs;
	p[2] = at;
	p[3] = row.f[0];
	p[4] = row.f[1];
	p[5] = row.f[2];
	p[6] = row.f[3];
	p[7] = row.f[4];
	p[8] = row.f[5];
	p[9] = row.f[6];
	p[10] = row.f[7];
	p[11] = row.f[8];
	p[12] = (const char *)prev;
	p[13] = (const char *)mac;
	len[12] = len[13] = HV_HMAC_LEN;
	fmt[12] = fmt[13] = 1;
	rc = hv_store_exec(c, "audit_insert", 14, p, len, fmt, false, &r, err);
	if (rc != HV_OK) {
		hv_err_prefix(err, "audit");
		goto out;
	}
	if (PQntuples(r) != 1)
		rc = hv_err_set(err, HV_E_DATABASE,
		    "audit: chain %u head not updated", chain);
out:
	PQclear(r);
	return rc;
}

enum hv_rc
hv_audit_append_alone(struct hv_audit *a, struct hv_store *s,
    const struct hv_audit_event *ev, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	enum hv_rc rc;

	rc = hv_store_acquire(s, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_begin(c, err);
	if (rc == HV_OK)
		rc = hv_audit_append(a, c, ev, err);
	if (rc == HV_OK)
		rc = hv_store_commit(c, err);
	else
		hv_store_rollback(c);
	hv_store_release(s, &c);
	return rc;
}

/* The first problem found, kept when it has the lowest row id so far. */
struct finding {
	bool set;
	long long id;		/* -1: no row to name (missing tail) */
	unsigned int chain;
	long long seq;
	const char *problem;
	char detail[160];
};

static void
note(struct finding *best, unsigned long *nproblems, long long id,
    unsigned int chain, long long seq, const char *problem,
    const char *detail)
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
		const char *p[2] = { chs, afters };

		snprintf(afters, sizeof(afters), "%lld", after);
		rc = hv_store_exec(c, "audit_v_rows", 2, p, NULL, NULL, true,
		    &r, err);
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
				snprintf(d, sizeof(d), "row(s) with seq %lld"
				    "..%lld missing before this row", expected,
				    seq - 1);
				note(best, nproblems, id, chain, seq,
				    "removed", d);
				bad = true;
			} else if (seq < expected || id <= prev_id) {
				note(best, nproblems, id, chain, seq,
				    "reordered", "row is out of order in its "
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
			if (!bad && !hv_ct_equal(rprev, prev_mac,
			    HV_HMAC_LEN)) {
				note(best, nproblems, id, chain, seq,
				    "reordered", "prev_mac does not match the "
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
		snprintf(d, sizeof(d), "chain head says seq %lld but the last "
		    "row has seq %lld", head_seq, expected - 1);
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
hv_audit_verify(struct hv_audit *a, struct hv_store *s, json_t **report,
    struct hv_err *err)
{
	struct hv_conn *c = NULL;
	PGresult *heads = NULL, *orph = NULL;
	struct finding best = { 0 };
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
	rc = hv_store_exec(c, "audit_v_heads", 0, NULL, NULL, NULL, true,
	    &heads, err);
	if (rc != HV_OK)
		goto out;
	nh = PQntuples(heads);
	for (i = 0; i < nh; i++) {
		long ch = get_i32(heads, i, 0);
		long long hs = get_i64(heads, i, 1);

		if (ch < 0 || hs < 0 || PQgetlength(heads, i, 2) !=
		    HV_HMAC_LEN) {
			note(&best, &nproblems, -1, ch < 0 ? 0 :
			    (unsigned int)ch, hs, "head mismatch",
			    "malformed chain head");
			continue;
		}
		rc = verify_chain(a, c, (unsigned int)ch, hs,
		    (const uint8_t *)PQgetvalue(heads, i, 2), &rows,
		    &nproblems, &best, err);
		if (rc != HV_OK)
			goto out;
	}
	rc = hv_store_exec(c, "audit_v_orphans", 0, NULL, NULL, NULL, true,
	    &orph, err);
	if (rc != HV_OK)
		goto out;
	for (i = 0; i < PQntuples(orph); i++) {
		rows += (unsigned long)get_i64(orph, i, 2);
		note(&best, &nproblems, get_i64(orph, i, 1),
		    (unsigned int)get_i32(orph, i, 0), 0, "unknown chain",
		    "row of a chain that has no head");
	}
	rep = json_pack("{s:b,s:I,s:i,s:I}", "ok", !best.set,
	    "rows", (json_int_t)rows, "chains", nh,
	    "problems", (json_int_t)nproblems);
	if (rep == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	if (best.set) {
		json_t *fb = json_pack("{s:o,s:i,s:I,s:s,s:s}",
		    "id", best.id >= 0 ? json_integer(best.id) : json_null(),
		    "chain", (int)best.chain, "seq", (json_int_t)best.seq,
		    "problem", best.problem, "detail", best.detail);

		if (fb == NULL || json_object_set_new(rep, "first_bad", fb)) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
		hv_log_warn("audit: verify failed: %s at chain %u seq %lld "
		    "(id %lld): %s", best.problem, best.chain, best.seq,
		    best.id, best.detail);
	}
	*report = rep;
	rep = NULL;
out:
	json_decref(rep);
	PQclear(heads);
	PQclear(orph);
	hv_store_release(s, &c);	/* ends the read-only transaction */
	return rc;
}
