/*
 * test_audit: the HMAC audit chains against real PostgreSQL and SoftHSM2:
 * append, verify, every kind of tampering (altered, removed, reordered,
 * truncated), concurrent appenders, and fail-closed transactions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "hsm.h"
#include "store.h"
#include "testenv.h"

static struct hv_test_token tok;
static struct hv_hsm *hsm;

/* One database with an audit log in it. */
struct fx {
	struct hv_test_db db;
	struct hv_store *s;
	struct hv_audit *a;
};

static const struct hv_stmt t_stmts[] = {
    {"ta_id_at", "SELECT id FROM audit_log WHERE chain = $1 AND seq = $2", 2},
    {"ta_count", "SELECT count(*) FROM audit_log", 0},
    {"ta_count_detail",
        "SELECT count(*) FROM audit_log WHERE detail = $1 AND actor_name = $2",
        2},
    {"ta_head", "SELECT seq FROM audit_chains WHERE chain = $1", 1},
    {"ta_ws_insert", "INSERT INTO workspaces (id, name) VALUES ($1, $2)", 2},
    {"ta_ws_count", "SELECT count(*) FROM workspaces", 0},
    {"ta_chain_max",
        "SELECT chain, max(seq) FROM audit_log GROUP BY "
        "chain ORDER BY 2 DESC LIMIT 1",
        0},
};

static void
sql(struct fx *f, const char *q)
{
	PGconn *c = PQconnectdb(f->db.url);
	PGresult *r;

	assert_int_equal(PQstatus(c), CONNECTION_OK);
	r = PQexec(c, q);
	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", q, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static long long
q_long(struct fx *f, const char *stmt, int n, const char *p0, const char *p1)
{
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	PGresult *r = NULL;
	const char *p[2] = {p0, p1};
	long long v = -1;

	assert_int_equal(hv_store_acquire(f->s, &c, &err), HV_OK);
	assert_int_equal(hv_store_exec(c, stmt, n, n ? p : NULL, NULL, NULL,
	                     false, &r, &err),
	    HV_OK);
	if (PQntuples(r) > 0)
		v = strtoll(PQgetvalue(r, 0, PQnfields(r) - 1), NULL, 10);
	PQclear(r);
	hv_store_release(f->s, &c);
	return v;
}

static long long
row_id(struct fx *f, unsigned int chain, long long seq)
{
	char ch[16], sq[24];

	snprintf(ch, sizeof(ch), "%u", chain);
	snprintf(sq, sizeof(sq), "%lld", seq);
	return q_long(f, "ta_id_at", 2, ch, sq);
}

static void
ev_fill(struct hv_audit_event *ev, int i, char *buf, size_t cap)
{
	memset(ev, 0, sizeof(*ev));
	snprintf(buf, cap, "req-%d", i);
	ev->workspace_id = "00000000-0000-4000-8000-00000000000A";
	ev->actor_id =
	    (i % 3 == 0) ? NULL : "11111111-1111-4111-8111-111111111111";
	ev->actor_name = (i % 3 == 0) ? "cli" : "ci key";
	ev->action = (i % 2) ? "credential.use" : "credential.create";
	ev->credential_id =
	    (i % 5 == 0) ? NULL : "22222222-2222-4222-8222-222222222222";
	ev->outcome = (i % 7 == 0) ? "denied" : "success";
	ev->request_id = buf;
	ev->remote_addr = "127.0.0.1";
	ev->detail = (i % 4 == 0) ? "x" : NULL;
}

static void
append_n(struct fx *f, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		struct hv_audit_event ev;
		struct hv_err err = {0};
		char rq[32];

		ev_fill(&ev, i, rq, sizeof(rq));
		if (hv_audit_append_alone(f->a, f->s, &ev, &err) != HV_OK)
			fail_msg("append: %s", err.msg);
	}
}

static void
fx_new(struct fx *f, unsigned int chains)
{
	struct hv_err err = {0};
	struct hv_conn *c = NULL;
	json_t *rep = NULL;

	hv_test_db_new(&f->db, "audit");
	assert_int_equal(hv_store_open(f->db.url, 6, &f->s, &err), HV_OK);
	assert_int_equal(hv_store_migrate(f->s, &rep, &err), HV_OK);
	json_decref(rep);
	assert_int_equal(hv_audit_new(hsm, chains, 0, &f->a, &err), HV_OK);
	assert_int_equal(hv_store_acquire(f->s, &c, &err), HV_OK);
	assert_int_equal(hv_audit_init_chains(f->a, c, &err), HV_OK);
	/* idempotent */
	assert_int_equal(hv_audit_init_chains(f->a, c, &err), HV_OK);
	hv_store_release(f->s, &c);
}

static void
fx_free(struct fx *f)
{
	hv_audit_free(&f->a);
	hv_store_close(&f->s);
	hv_test_db_drop(&f->db);
}

static json_t *
verify(struct fx *f)
{
	struct hv_err err = {0};
	json_t *rep = NULL;

	if (hv_audit_verify(f->a, f->s, &rep, &err) != HV_OK)
		fail_msg("verify: %s", err.msg);
	return rep;
}

static bool
rep_ok(json_t *rep)
{
	return json_is_true(json_object_get(rep, "ok"));
}

static long long
bad_id(json_t *rep)
{
	json_t *fb = json_object_get(rep, "first_bad");

	assert_non_null(fb);
	if (json_is_null(json_object_get(fb, "id")))
		return -1;
	return json_integer_value(json_object_get(fb, "id"));
}

static const char *
bad_problem(json_t *rep)
{
	return json_string_value(
	    json_object_get(json_object_get(rep, "first_bad"), "problem"));
}

/* The chain a single-connection appender writes to. */
static unsigned int
busy_chain(struct fx *f)
{
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	PGresult *r = NULL;
	unsigned int ch;

	assert_int_equal(hv_store_acquire(f->s, &c, &err), HV_OK);
	assert_int_equal(hv_store_exec(c, "ta_chain_max", 0, NULL, NULL, NULL,
	                     false, &r, &err),
	    HV_OK);
	ch = (unsigned int)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	hv_store_release(f->s, &c);
	return ch;
}

static int
setup(void **state)
{
	struct hv_hsm_config hc = {0};
	struct hv_err err = {0};

	(void)state;
	if (getenv("HV_TEST_PG_URL") == NULL)
		hv_test_missing("HV_TEST_PG_URL (PostgreSQL) not set");
	hv_audit_register();
	hv_store_register(t_stmts, sizeof(t_stmts) / sizeof(t_stmts[0]));
	hv_test_token_new(&tok, "hvaudit");
	hc.keystore = "pkcs11";
	hc.p11_module = HV_TEST_SOFTHSM_MODULE;
	hc.p11_token = tok.uri;
	hc.p11_pin = HV_TEST_PIN;
	if (hv_hsm_open(&hc, &hsm, &err) != HV_OK ||
	    hv_hsm_ensure_keys(hsm, true, &err) != HV_OK) {
		fprintf(stderr, "hsm: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	hv_hsm_close(&hsm);
	hv_test_token_destroy(&tok);
	return 0;
}

static void
test_chain_verifies(void **state)
{
	struct fx f;
	json_t *rep;

	(void)state;
	fx_new(&f, 2);
	rep = verify(&f); /* empty chains verify */
	assert_true(rep_ok(rep));
	assert_int_equal(json_integer_value(json_object_get(rep, "rows")), 0);
	json_decref(rep);
	append_n(&f, 1200); /* more than one verify page */
	rep = verify(&f);
	assert_true(rep_ok(rep));
	assert_int_equal(
	    json_integer_value(json_object_get(rep, "rows")), 1200);
	assert_int_equal(json_integer_value(json_object_get(rep, "chains")), 2);
	assert_null(json_object_get(rep, "first_bad"));
	json_decref(rep);
	fx_free(&f);
}

static void
test_altered_row(void **state)
{
	struct fx f;
	json_t *rep;
	char q[256];
	unsigned int ch;
	long long id;

	(void)state;
	fx_new(&f, 1);
	append_n(&f, 20);
	ch = busy_chain(&f);
	id = row_id(&f, ch, 7);
	snprintf(q, sizeof(q),
	    "UPDATE audit_log SET outcome = 'failure' "
	    "WHERE id = %lld",
	    id);
	sql(&f, q);
	rep = verify(&f);
	assert_false(rep_ok(rep));
	assert_int_equal(bad_id(rep), id);
	assert_string_equal(bad_problem(rep), "altered");
	json_decref(rep);

	/* restore: verifies again; then shift a field boundary */
	snprintf(q, sizeof(q),
	    "UPDATE audit_log SET outcome = 'success' "
	    "WHERE id = %lld",
	    id);
	sql(&f, q);
	rep = verify(&f);
	assert_true(rep_ok(rep));
	json_decref(rep);
	id = row_id(&f, ch, 12);
	/* "ci key" | "credential.use" -> "ci ke" | "ycredential.use" */
	snprintf(q, sizeof(q),
	    "UPDATE audit_log SET actor_name = 'ci ke', "
	    "action = 'y' || action WHERE id = %lld",
	    id);
	sql(&f, q);
	rep = verify(&f);
	assert_false(rep_ok(rep));
	assert_int_equal(bad_id(rep), id);
	assert_string_equal(bad_problem(rep), "altered");
	json_decref(rep);

	/* the timestamp is covered too */
	fx_free(&f);
	fx_new(&f, 1);
	append_n(&f, 5);
	ch = busy_chain(&f);
	id = row_id(&f, ch, 3);
	snprintf(q, sizeof(q),
	    "UPDATE audit_log SET at = at + interval "
	    "'1 microsecond' WHERE id = %lld",
	    id);
	sql(&f, q);
	rep = verify(&f);
	assert_int_equal(bad_id(rep), id);
	json_decref(rep);
	fx_free(&f);
}

static void
test_removed_row(void **state)
{
	struct fx f;
	json_t *rep;
	char q[256];
	unsigned int ch;
	long long id, next;

	(void)state;
	fx_new(&f, 1);
	append_n(&f, 20);
	ch = busy_chain(&f);
	id = row_id(&f, ch, 9);
	next = row_id(&f, ch, 10);
	snprintf(q, sizeof(q), "DELETE FROM audit_log WHERE id = %lld", id);
	sql(&f, q);
	rep = verify(&f);
	assert_false(rep_ok(rep));
	assert_int_equal(bad_id(rep), next);
	assert_string_equal(bad_problem(rep), "removed");
	json_decref(rep);
	fx_free(&f);

	/* the first row of a chain */
	fx_new(&f, 1);
	append_n(&f, 5);
	ch = busy_chain(&f);
	next = row_id(&f, ch, 2);
	snprintf(q, sizeof(q),
	    "DELETE FROM audit_log WHERE chain = %u AND "
	    "seq = 1",
	    ch);
	sql(&f, q);
	rep = verify(&f);
	assert_int_equal(bad_id(rep), next);
	assert_string_equal(bad_problem(rep), "removed");
	json_decref(rep);
	fx_free(&f);
}

/* Deleting the newest row: only the head still knows it existed. */
static void
test_truncated_tail(void **state)
{
	struct fx f;
	json_t *rep, *fb;
	char q[256];
	unsigned int ch;

	(void)state;
	fx_new(&f, 1);
	append_n(&f, 10);
	ch = busy_chain(&f);
	snprintf(q, sizeof(q),
	    "DELETE FROM audit_log WHERE chain = %u AND "
	    "seq = 10",
	    ch);
	sql(&f, q);
	rep = verify(&f);
	assert_false(rep_ok(rep));
	fb = json_object_get(rep, "first_bad");
	assert_true(json_is_null(json_object_get(fb, "id")));
	assert_int_equal(json_integer_value(json_object_get(fb, "seq")), 10);
	assert_string_equal(bad_problem(rep), "removed");
	json_decref(rep);

	/* rewinding the head too does not help: its mac is the old one */
	snprintf(q, sizeof(q),
	    "UPDATE audit_chains SET seq = 9 WHERE chain = "
	    "%u",
	    ch);
	sql(&f, q);
	rep = verify(&f);
	assert_false(rep_ok(rep));
	assert_string_equal(bad_problem(rep), "head mismatch");
	json_decref(rep);
	fx_free(&f);
}

static void
test_reordered_rows(void **state)
{
	struct fx f;
	json_t *rep;
	char q[1024];
	unsigned int ch;
	long long a, b;

	(void)state;
	/* swap the whole contents (everything but id) of two rows */
	fx_new(&f, 1);
	append_n(&f, 20);
	ch = busy_chain(&f);
	a = row_id(&f, ch, 5);
	b = row_id(&f, ch, 6);
	snprintf(q, sizeof(q),
	    "BEGIN;"
	    "CREATE TEMP TABLE sw AS SELECT * FROM audit_log WHERE id IN "
	    "(%lld, %lld);"
	    "DELETE FROM audit_log WHERE id IN (%lld, %lld);"
	    "INSERT INTO audit_log SELECT CASE id WHEN %lld THEN %lld ELSE "
	    "%lld END, chain, seq, at, workspace_id, actor_id, actor_name, "
	    "action, credential_id, outcome, request_id, remote_addr, detail, "
	    "prev_mac, mac FROM sw;"
	    "COMMIT",
	    a, b, a, b, a, b, a);
	sql(&f, q);
	rep = verify(&f);
	assert_false(rep_ok(rep));
	assert_int_equal(bad_id(rep), a);
	assert_string_equal(bad_problem(rep), "reordered");
	json_decref(rep);
	fx_free(&f);

	/* swap only the seq of two rows */
	fx_new(&f, 1);
	append_n(&f, 20);
	ch = busy_chain(&f);
	a = row_id(&f, ch, 5);
	b = row_id(&f, ch, 6);
	snprintf(q, sizeof(q),
	    "UPDATE audit_log SET seq = 1000000 WHERE id = %lld;"
	    "UPDATE audit_log SET seq = 5 WHERE id = %lld;"
	    "UPDATE audit_log SET seq = 6 WHERE id = %lld",
	    a, b, a);
	sql(&f, q);
	rep = verify(&f);
	assert_false(rep_ok(rep));
	assert_int_equal(bad_id(rep), a);
	json_decref(rep);
	fx_free(&f);
}

struct th_arg {
	struct hv_store *s;
	struct hv_audit *a;
	int ok;
};

static void *
appender(void *p)
{
	struct th_arg *t = p;
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	int i;

	/* each thread keeps its own connection for the whole run */
	if (hv_store_acquire(t->s, &c, &err) != HV_OK)
		return NULL;
	for (i = 0; i < 150; i++) {
		struct hv_audit_event ev;
		char rq[32];

		ev_fill(&ev, i, rq, sizeof(rq));
		if (hv_store_begin(c, &err) != HV_OK)
			continue;
		if (hv_audit_append(t->a, c, &ev, &err) == HV_OK &&
		    hv_store_commit(c, &err) == HV_OK)
			t->ok++;
		else
			hv_store_rollback(c);
	}
	hv_store_release(t->s, &c);
	return NULL;
}

/*
 * 4 threads, 2 chains, plus a second pool on the same database (another
 * server): every append lands, no chain forks.
 */
static void
test_concurrent_appenders(void **state)
{
	struct fx f;
	struct hv_store *s2 = NULL;
	struct hv_audit *a2 = NULL;
	struct hv_err err = {0};
	struct th_arg t[5];
	pthread_t th[5];
	json_t *rep;
	int i;

	(void)state;
	fx_new(&f, 2);
	assert_int_equal(hv_store_open(f.db.url, 2, &s2, &err), HV_OK);
	assert_int_equal(hv_audit_new(hsm, 2, 0, &a2, &err), HV_OK);
	for (i = 0; i < 5; i++) {
		t[i].s = i < 4 ? f.s : s2;
		t[i].a = i < 4 ? f.a : a2;
		t[i].ok = 0;
		pthread_create(&th[i], NULL, appender, &t[i]);
	}
	for (i = 0; i < 5; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].ok, 150);
	}
	rep = verify(&f);
	assert_true(rep_ok(rep));
	assert_int_equal(json_integer_value(json_object_get(rep, "rows")), 750);
	json_decref(rep);
	/* both chains were used */
	assert_int_equal(q_long(&f, "ta_head", 1, "0", NULL) +
	        q_long(&f, "ta_head", 1, "1", NULL),
	    750);
	assert_true(q_long(&f, "ta_head", 1, "0", NULL) > 0);
	assert_true(q_long(&f, "ta_head", 1, "1", NULL) > 0);
	hv_audit_free(&a2);
	hv_store_close(&s2);
	fx_free(&f);
}

struct alone_arg {
	struct hv_store *s;
	struct hv_audit *a;
	int base, ok, invalid;
};

/*
 * Rows of their own; every 10th event has a malformed id (refused), and
 * every 3rd carries quotes, a backslash, a comma, parentheses and a
 * newline in its free-text fields (they travel as parameters and must come
 * back byte for byte, or verify fails).
 */
static void *
alone_appender(void *p)
{
	struct alone_arg *t = p;
	int i;

	for (i = 0; i < 200; i++) {
		struct hv_audit_event ev;
		struct hv_err err = {0};
		char rq[32];
		enum hv_rc rc;

		ev_fill(&ev, t->base + i, rq, sizeof(rq));
		if (i % 10 == 9)
			ev.credential_id = "not-a-uuid";
		if (i % 3 == 1) {
			ev.actor_name = "o'brien \"ci\" (x, y)";
			ev.detail = "a\\b\nc'),('d";
		}
		rc = hv_audit_append_alone(t->a, t->s, &ev, &err);
		if (rc == HV_OK)
			t->ok++;
		else if (rc == HV_E_INVALID && i % 10 == 9)
			t->invalid++;
	}
	return NULL;
}

/*
 * Rows of their own from 8 threads of one instance (group commit with
 * `leaders` groups at most; 0 = off) plus a second instance on the same
 * chains with group commit (so that groups meet a moved head and fall
 * back). Every valid row lands exactly once, the malformed ones are
 * refused without failing their group, the chains verify, and groups of
 * more than one row happen exactly when group commit is on.
 */
static void
group_commit_run(unsigned int leaders)
{
	struct fx f;
	struct hv_store *s2 = NULL;
	struct hv_audit *a1 = NULL, *a2 = NULL;
	struct hv_err err = {0};
	struct alone_arg t[10];
	pthread_t th[10];
	struct hv_audit_stats st, st2;
	json_t *rep;
	int i, ok = 0;

	fx_new(&f, 2);
	assert_int_equal(hv_audit_new(hsm, 2, leaders, &a1, &err), HV_OK);
	assert_int_equal(hv_store_open(f.db.url, 2, &s2, &err), HV_OK);
	assert_int_equal(hv_audit_new(hsm, 2, 1, &a2, &err), HV_OK);
	for (i = 0; i < 10; i++) {
		t[i].s = i < 8 ? f.s : s2;
		t[i].a = i < 8 ? a1 : a2;
		t[i].base = i * 1000;
		t[i].ok = t[i].invalid = 0;
		pthread_create(&th[i], NULL, alone_appender, &t[i]);
	}
	for (i = 0; i < 10; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].ok, 180);
		assert_int_equal(t[i].invalid, 20);
		ok += t[i].ok;
	}
	rep = verify(&f);
	assert_true(rep_ok(rep));
	assert_int_equal(json_integer_value(json_object_get(rep, "rows")), ok);
	json_decref(rep);
	/* the awkward text came back as it went in */
	assert_int_equal(q_long(&f, "ta_count_detail", 2, "a\\b\nc'),('d",
	                     "o'brien \"ci\" (x, y)"),
	    10 * 67 - 10 * 7);
	hv_audit_stats(a1, &st);
	hv_audit_stats(a2, &st2);
	fprintf(stderr,
	    "group commit (%u leaders): %lu groups, %lu rows; "
	    "other instance %lu groups, %lu rows\n",
	    leaders, st.groups, st.rows, st2.groups, st2.rows);
	/* every row of the 8 threads is counted once: one at a time or grouped */
	assert_int_equal(st.fast + st.locked + st.rows, 8 * 180);
	if (leaders == 0) {
		assert_int_equal(st.groups, 0);
		assert_int_equal(st.rows, 0);
	} else {
		assert_true(st.groups > 0);
		assert_true(st.rows > st.groups);
	}
	hv_audit_free(&a2);
	hv_audit_free(&a1);
	hv_store_close(&s2);
	fx_free(&f);
}

static void
test_group_commit(void **state)
{
	(void)state;
	group_commit_run(2);
	group_commit_run(1);
}

static void
test_group_commit_off(void **state)
{
	struct hv_audit *a = NULL;
	struct hv_err err = {0};

	(void)state;
	group_commit_run(0);
	/* audit_group_leaders beyond 64 is a configuration error */
	assert_int_equal(hv_audit_new(hsm, 2, 65, &a, &err), HV_E_CONFIG);
	assert_null(a);
	assert_non_null(strstr(err.msg, "audit_group_leaders"));
	assert_int_equal(hv_audit_new(hsm, 2, 64, &a, &err), HV_OK);
	hv_audit_free(&a);
}

/* Outcomes of submitted rows, counted by their callbacks. */
struct submit_count {
	pthread_mutex_t mu;
	int ok, invalid, other, calls;
};

static void
on_submitted(void *arg, enum hv_rc rc, const struct hv_err *err)
{
	struct submit_count *n = arg;

	pthread_mutex_lock(&n->mu);
	n->calls++;
	if (rc == HV_OK)
		n->ok++;
	else if (rc == HV_E_INVALID && err != NULL && err->rc == rc)
		n->invalid++;
	else
		n->other++;
	pthread_mutex_unlock(&n->mu);
}

struct submit_arg {
	struct hv_audit *a;
	struct hv_store *s;
	struct submit_count *n;
	int base, refused;
	int now_ok, now_invalid; /* written at once: no callback */
};

/*
 * 100 rows each; every 10th malformed (its callback hears HV_E_INVALID).
 * The event's strings live in buffers that are overwritten as soon as
 * submit returns: the queued row must hold copies.
 */
static void *
submitter(void *p)
{
	struct submit_arg *t = p;
	int i;

	for (i = 0; i < 100; i++) {
		struct hv_audit_event ev;
		struct hv_err err = {0};
		char rq[32], name[32], detail[32];

		ev_fill(&ev, t->base + i, rq, sizeof(rq));
		snprintf(name, sizeof(name), "submitter");
		snprintf(detail, sizeof(detail), "queued copy");
		ev.actor_name = name;
		ev.detail = detail;
		if (i % 10 == 9)
			ev.credential_id = "not-a-uuid";
		bool queued = false;
		enum hv_rc rc = hv_audit_submit(
		    t->a, t->s, &ev, on_submitted, t->n, &queued, &err);

		if (queued)
			assert_int_equal(rc, HV_OK);
		else if (rc == HV_OK)
			t->now_ok++;
		else if (rc == HV_E_INVALID && i % 10 == 9)
			t->now_invalid++;
		else
			t->refused++;
		memset(rq, 'x', sizeof(rq) - 1);
		memset(name, 'y', sizeof(name) - 1);
		memset(detail, 'z', sizeof(detail) - 1);
	}
	return NULL;
}

/* Lock requests waiting in the test database (pg_locks). */
static long
waiting(struct fx *f)
{
	PGconn *c = PQconnectdb(f->db.url);
	PGresult *r;
	long n = -1;

	r = PQexec(c,
	    "SELECT count(*) FROM pg_locks l JOIN pg_database d "
	    "ON d.oid = l.database WHERE NOT l.granted AND "
	    "d.datname = current_database()");
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return n;
}

/* A lone row, held up by the test's lock on the chain heads. */
static void *
blocked_append(void *p)
{
	struct submit_arg *t = p;
	struct hv_audit_event ev;
	struct hv_err err = {0};
	char rq[32];

	ev_fill(&ev, 7, rq, sizeof(rq));
	if (hv_audit_append_alone(t->a, t->s, &ev, &err) == HV_OK)
		t->now_ok++;
	return NULL;
}

/*
 * hv_audit_submit: rows from 4 threads are each either written at once
 * (nothing queued, no group being written) or queued for the writer
 * thread, whose callback then runs once with the row's outcome;
 * hv_audit_free() writes what is still queued before it returns; the rows
 * hold the submitted text. While a group is being written (here: a lone
 * row held up by a lock on the chain heads), submitted rows are queued,
 * every one. Without group commit, submit is refused and its callback
 * never runs.
 */
static void
test_group_commit_submit(void **state)
{
	struct fx f;
	struct hv_audit *a = NULL, *off = NULL;
	struct hv_err err = {0};
	struct submit_count n;
	struct submit_arg t[4];
	struct hv_audit_event ev;
	struct hv_audit_stats st;
	pthread_t th[4];
	char rq[32];
	json_t *rep;
	PGconn *lk;
	PGresult *r;
	bool queued_off = true;
	int i, now_ok = 0, now_invalid = 0, calls;

	(void)state;
	fx_new(&f, 2);
	memset(&n, 0, sizeof(n));
	pthread_mutex_init(&n.mu, NULL);
	assert_int_equal(hv_audit_new(hsm, 2, 1, &a, &err), HV_OK);
	assert_true(hv_audit_async(a));
	for (i = 0; i < 4; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].a = a;
		t[i].s = f.s;
		t[i].n = &n;
		t[i].base = i * 1000;
		pthread_create(&th[i], NULL, submitter, &t[i]);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].refused, 0);
		now_ok += t[i].now_ok;
		now_invalid += t[i].now_invalid;
	}
	hv_audit_stats(a, &st);

	/* a group being written: every submitted row is queued */
	lk = PQconnectdb(f.db.url);
	assert_int_equal(PQstatus(lk), CONNECTION_OK);
	r = PQexec(lk, "BEGIN; LOCK TABLE audit_chains IN EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	memset(&t[0], 0, sizeof(t[0]));
	t[0].a = a;
	t[0].s = f.s;
	pthread_create(&th[0], NULL, blocked_append, &t[0]);
	for (i = 0; i < 1000 && waiting(&f) == 0; i++)
		usleep(10000);
	assert_true(waiting(&f) > 0);
	for (i = 0; i < 5; i++) {
		char rqb[32];
		bool queued = false;

		ev_fill(&ev, 5000 + i, rqb, sizeof(rqb));
		ev.actor_name = "submitter";
		ev.detail = "queued copy";
		assert_int_equal(hv_audit_submit(a, f.s, &ev, on_submitted, &n,
		                     &queued, &err),
		    HV_OK);
		assert_true(queued);
		memset(rqb, 'x', sizeof(rqb) - 1);
	}
	r = PQexec(lk, "COMMIT");
	PQclear(r);
	PQfinish(lk);
	pthread_join(th[0], NULL);
	assert_int_equal(t[0].now_ok, 1);

	/* no waiting for the callbacks: free drains the queue */
	hv_audit_free(&a);
	assert_int_equal(n.calls + now_ok + now_invalid, 405);
	assert_true(n.calls >= 5);
	assert_int_equal(n.ok + now_ok, 365);
	assert_int_equal(n.invalid + now_invalid, 40);
	assert_int_equal(n.other, 0);
	rep = verify(&f);
	assert_true(rep_ok(rep));
	assert_int_equal(json_integer_value(json_object_get(rep, "rows")), 366);
	json_decref(rep);
	assert_int_equal(
	    q_long(&f, "ta_count_detail", 2, "queued copy", "submitter"), 365);

	/* group commit off: refused, nothing written, no callback */
	assert_int_equal(hv_audit_new(hsm, 2, 0, &off, &err), HV_OK);
	assert_false(hv_audit_async(off));
	ev_fill(&ev, 1, rq, sizeof(rq));
	calls = n.calls;
	assert_int_not_equal(
	    hv_audit_submit(off, f.s, &ev, on_submitted, &n, &queued_off, &err),
	    HV_OK);
	assert_false(queued_off);
	hv_audit_free(&off);
	assert_int_equal(n.calls, calls);
	assert_int_equal(q_long(&f, "ta_count", 0, NULL, NULL), 366);
	pthread_mutex_destroy(&n.mu);
	fx_free(&f);
}

/* An append in a transaction that rolls back leaves nothing behind. */
static void
test_rollback(void **state)
{
	struct fx f;
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	struct hv_audit_event ev;
	char rq[32];
	long long h0, h1;
	json_t *rep;

	(void)state;
	fx_new(&f, 1);
	append_n(&f, 3);
	h0 = q_long(&f, "ta_head", 1, "0", NULL);
	assert_int_equal(hv_store_acquire(f.s, &c, &err), HV_OK);
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	ev_fill(&ev, 1, rq, sizeof(rq));
	assert_int_equal(hv_audit_append(f.a, c, &ev, &err), HV_OK);
	hv_store_rollback(c);
	hv_store_release(f.s, &c);
	h1 = q_long(&f, "ta_head", 1, "0", NULL);
	assert_int_equal(h0, h1);
	assert_int_equal(q_long(&f, "ta_count", 0, NULL, NULL), 3);
	append_n(&f, 2); /* the chain continues where it was */
	rep = verify(&f);
	assert_true(rep_ok(rep));
	json_decref(rep);
	fx_free(&f);
}

/*
 * Fail closed: when the audit row cannot be written, the caller's change
 * cannot commit either.
 */
static void
test_fail_closed(void **state)
{
	struct fx f;
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	struct hv_audit_event ev;
	char rq[32], big[2100];
	const char *p[2] = {"33333333-3333-4333-8333-333333333333", "ws"};
	json_t *rep;

	(void)state;
	fx_new(&f, 1);
	memset(big, 'd', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(hv_store_acquire(f.s, &c, &err), HV_OK);

	/* a field the table refuses (too long) */
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	assert_int_equal(hv_store_exec(c, "ta_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_OK);
	ev_fill(&ev, 1, rq, sizeof(rq));
	ev.detail = big;
	assert_int_not_equal(hv_audit_append(f.a, c, &ev, &err), HV_OK);
	/* even a caller that tries to commit anyway cannot */
	assert_int_not_equal(hv_store_commit(c, &err), HV_OK);
	assert_int_equal(q_long(&f, "ta_ws_count", 0, NULL, NULL), 0);

	/* an id that is not a uuid: refused before the database */
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	assert_int_equal(hv_store_exec(c, "ta_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_OK);
	ev_fill(&ev, 1, rq, sizeof(rq));
	ev.credential_id = "nope";
	assert_int_equal(hv_audit_append(f.a, c, &ev, &err), HV_E_INVALID);
	hv_store_rollback(c);
	assert_int_equal(q_long(&f, "ta_ws_count", 0, NULL, NULL), 0);

	/* the table refuses inserts (privilege revoked, disk policy...) */
	sql(&f,
	    "CREATE FUNCTION hv_refuse() RETURNS trigger LANGUAGE plpgsql "
	    "AS $$BEGIN RAISE EXCEPTION 'audit refused'; END$$;"
	    "CREATE TRIGGER refuse BEFORE INSERT ON audit_log FOR EACH ROW "
	    "EXECUTE FUNCTION hv_refuse()");
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	assert_int_equal(hv_store_exec(c, "ta_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_OK);
	ev_fill(&ev, 1, rq, sizeof(rq));
	assert_int_equal(hv_audit_append(f.a, c, &ev, &err), HV_E_DATABASE);
	assert_int_not_equal(hv_store_commit(c, &err), HV_OK);
	assert_int_equal(q_long(&f, "ta_ws_count", 0, NULL, NULL), 0);
	assert_int_equal(
	    hv_audit_append_alone(f.a, f.s, &ev, &err), HV_E_DATABASE);
	hv_store_release(f.s, &c);
	sql(&f, "DROP TRIGGER refuse ON audit_log");
	rep = verify(&f);
	assert_true(rep_ok(rep));
	assert_int_equal(json_integer_value(json_object_get(rep, "rows")), 0);
	json_decref(rep);
	fx_free(&f);
}

/* Append evs[0..n-1] with hv_audit_append_many in a transaction of c. */
static enum hv_rc
many_tx(struct fx *f, struct hv_audit *a, int first, size_t n, bool commit,
    struct hv_err *err)
{
	struct hv_audit_event ev[40];
	const struct hv_audit_event *evp[40];
	struct hv_conn *c = NULL;
	char rq[40][32];
	enum hv_rc rc;
	size_t i;

	assert_true(n <= 40);
	for (i = 0; i < n; i++) {
		ev_fill(&ev[i], first + (int)i, rq[i], sizeof(rq[i]));
		evp[i] = &ev[i];
	}
	assert_int_equal(hv_store_acquire(f->s, &c, err), HV_OK);
	assert_int_equal(hv_store_begin(c, err), HV_OK);
	rc = hv_audit_append_many(a, c, evp, n, err);
	if (rc == HV_OK && commit)
		rc = hv_store_commit(c, err);
	hv_store_release(f->s, &c); /* rolls back what is still open */
	return rc;
}

/*
 * hv_audit_append_many (a group of creates' audit rows, in the caller's
 * transaction): one statement for the lot when the remembered head is
 * current, row by row through the head lock when another instance moved
 * it; a rollback leaves nothing and the chain continues; sizes outside
 * 1..32 and a malformed event are refused. verify is ok throughout.
 */
static void
test_append_many(void **state)
{
	struct fx f;
	struct hv_audit *a2 = NULL;
	struct hv_audit_stats st0, st1;
	struct hv_audit_event ev, bad[2];
	const struct hv_audit_event *evp[2];
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	char rq[3][32];
	json_t *rep;

	(void)state;
	fx_new(&f, 1);
	append_n(&f, 2); /* the head is remembered */
	hv_audit_stats(f.a, &st0);
	assert_int_equal(many_tx(&f, f.a, 10, 5, true, &err), HV_OK);
	hv_audit_stats(f.a, &st1);
	assert_int_equal(st1.groups, st0.groups + 1); /* one statement */
	assert_int_equal(st1.rows, st0.rows + 5);
	assert_int_equal(q_long(&f, "ta_count", 0, NULL, NULL), 7);
	assert_int_equal(q_long(&f, "ta_head", 1, "0", NULL), 7);

	/* another instance moves the head: the rows go one by one */
	assert_int_equal(hv_audit_new(hsm, 1, 0, &a2, &err), HV_OK);
	ev_fill(&ev, 20, rq[0], sizeof(rq[0]));
	assert_int_equal(hv_audit_append_alone(a2, f.s, &ev, &err), HV_OK);
	hv_audit_stats(f.a, &st0);
	assert_int_equal(many_tx(&f, f.a, 30, 4, true, &err), HV_OK);
	hv_audit_stats(f.a, &st1);
	assert_int_equal(st1.groups, st0.groups);
	assert_true(st1.locked >= st0.locked + 1);
	assert_int_equal(q_long(&f, "ta_count", 0, NULL, NULL), 12);
	assert_int_equal(q_long(&f, "ta_head", 1, "0", NULL), 12);
	hv_audit_free(&a2);

	/* rolled back: nothing stays, and the chain goes on */
	assert_int_equal(many_tx(&f, f.a, 40, 3, false, &err), HV_OK);
	assert_int_equal(q_long(&f, "ta_count", 0, NULL, NULL), 12);
	assert_int_equal(many_tx(&f, f.a, 50, 2, true, &err), HV_OK);
	assert_int_equal(q_long(&f, "ta_count", 0, NULL, NULL), 14);

	/* refused: no rows, 33 rows, a malformed event */
	assert_int_equal(many_tx(&f, f.a, 60, 0, true, &err), HV_E_INTERNAL);
	assert_int_equal(many_tx(&f, f.a, 60, 33, true, &err), HV_E_INTERNAL);
	ev_fill(&bad[0], 70, rq[1], sizeof(rq[1]));
	ev_fill(&bad[1], 71, rq[2], sizeof(rq[2]));
	bad[1].credential_id = "nope";
	evp[0] = &bad[0];
	evp[1] = &bad[1];
	assert_int_equal(hv_store_acquire(f.s, &c, &err), HV_OK);
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	assert_int_equal(
	    hv_audit_append_many(f.a, c, evp, 2, &err), HV_E_INVALID);
	hv_store_release(f.s, &c);
	assert_int_equal(q_long(&f, "ta_count", 0, NULL, NULL), 14);

	rep = verify(&f);
	assert_true(rep_ok(rep));
	assert_int_equal(json_integer_value(json_object_get(rep, "rows")), 14);
	json_decref(rep);
	fx_free(&f);
}

/* A chain added to the configuration later is created on first use. */
static void
test_new_chain_on_demand(void **state)
{
	struct fx f;
	struct hv_audit *a8 = NULL;
	struct hv_err err = {0};
	struct hv_audit_event ev;
	char rq[32];
	json_t *rep;
	int i;

	(void)state;
	fx_new(&f, 1);
	assert_int_equal(hv_audit_new(hsm, 8, 0, &a8, &err), HV_OK);
	for (i = 0; i < 3; i++) {
		ev_fill(&ev, i, rq, sizeof(rq));
		assert_int_equal(
		    hv_audit_append_alone(a8, f.s, &ev, &err), HV_OK);
	}
	rep = verify(&f);
	assert_true(rep_ok(rep));
	assert_int_equal(json_integer_value(json_object_get(rep, "rows")), 3);
	json_decref(rep);
	hv_audit_free(&a8);
	fx_free(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_chain_verifies),
	    cmocka_unit_test(test_altered_row),
	    cmocka_unit_test(test_removed_row),
	    cmocka_unit_test(test_truncated_tail),
	    cmocka_unit_test(test_reordered_rows),
	    cmocka_unit_test(test_concurrent_appenders),
	    cmocka_unit_test(test_group_commit),
	    cmocka_unit_test(test_group_commit_off),
	    cmocka_unit_test(test_group_commit_submit),
	    cmocka_unit_test(test_rollback),
	    cmocka_unit_test(test_fail_closed),
	    cmocka_unit_test(test_new_chain_on_demand),
	    cmocka_unit_test(test_append_many),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
