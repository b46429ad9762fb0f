/*
 * test_store: the libpq pool, statements, error mapping, transactions and
 * the migration runner, against a real PostgreSQL (hv_test_db_new).
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
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "testenv.h"

static struct hv_test_db db;

static const struct hv_stmt test_stmts[] = {
    {"t_ws_insert", "INSERT INTO workspaces (id, name) VALUES ($1, $2)", 2},
    {"t_ws_count", "SELECT count(*) FROM workspaces", 0},
    {"t_ws_count_name", "SELECT count(*) FROM workspaces WHERE name = $1", 1},
    {"t_pid", "SELECT pg_backend_pid()", 0},
    {"t_cred_insert",
        "INSERT INTO credentials (id, workspace_id, "
        "service, name, auth_type, scope, injection, created_by) VALUES "
        "($1, $2, 'http', 'n', 'bearer', 'workspace', '{}', 'test')",
        2},
    {"t_bytea", "SELECT $1::bytea", 1},
    {"t_migr_count", "SELECT count(*) FROM hv_migrations", 0},
    {"t_sleep", "SELECT pg_sleep($1::float8)", 1},
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
count_query(struct hv_store *s, const char *stmt, int n, const char *p1)
{
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	PGresult *r = NULL;
	const char *p[1] = {p1};
	long v;

	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	assert_int_equal(hv_store_exec(c, stmt, n, n > 0 ? p : NULL, NULL, NULL,
	                     false, &r, &err),
	    HV_OK);
	v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	hv_store_release(s, &c);
	return v;
}

static struct hv_store *
open_store(unsigned int size)
{
	struct hv_store *s = NULL;
	struct hv_err err = {0};
	enum hv_rc rc = hv_store_open(db.url, size, &s, &err);

	if (rc != HV_OK)
		fail_msg("open: %s", err.msg);
	return s;
}

static int
group_setup(void **state)
{
	struct hv_store *s;
	struct hv_err err = {0};
	json_t *rep = NULL;

	(void)state;
	hv_test_db_new(&db, "store");
	hv_store_register(
	    test_stmts, sizeof(test_stmts) / sizeof(test_stmts[0]));
	s = open_store(4);
	if (hv_store_migrate(s, &rep, &err) != HV_OK) {
		fprintf(stderr, "migrate: %s\n", err.msg);
		return -1;
	}
	json_decref(rep);
	hv_store_close(&s);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	hv_test_db_drop(&db);
	return 0;
}

static void
test_migrate_twice(void **state)
{
	struct hv_store *s = open_store(2);
	struct hv_err err = {0};
	json_t *rep = NULL;

	(void)state;
	/* group setup applied everything: a second run applies nothing */
	assert_int_equal(hv_store_migrate(s, &rep, &err), HV_OK);
	assert_int_equal(json_array_size(json_object_get(rep, "applied")), 0);
	assert_int_equal(
	    json_integer_value(json_object_get(rep, "schema_version")),
	    hv_migrations[hv_migrations_count - 1].version);
	json_decref(rep);
	assert_int_equal(
	    count_query(s, "t_migr_count", 0, NULL), (long)hv_migrations_count);
	hv_store_close(&s);
}

struct migr_arg {
	const char *url;
	enum hv_rc rc;
	long applied;
};

static void *
migr_thread(void *p)
{
	struct migr_arg *a = p;
	struct hv_store *s = NULL;
	struct hv_err err = {0};
	json_t *rep = NULL;

	a->rc = hv_store_open(a->url, 1, &s, &err);
	if (a->rc != HV_OK)
		return NULL;
	a->rc = hv_store_migrate(s, &rep, &err);
	if (a->rc == HV_OK)
		a->applied =
		    (long)json_array_size(json_object_get(rep, "applied"));
	else
		fprintf(stderr, "migrate: %s\n", err.msg);
	json_decref(rep);
	hv_store_close(&s);
	return NULL;
}

/* Two runners racing on an empty database: one applies, one waits. */
static void
test_migrate_concurrent(void **state)
{
	struct hv_test_db d2;
	struct migr_arg a[3];
	pthread_t th[3];
	int i;
	long total = 0;

	(void)state;
	hv_test_db_new(&d2, "migr");
	for (i = 0; i < 3; i++) {
		a[i].url = d2.url;
		a[i].rc = HV_E_INTERNAL;
		a[i].applied = 0;
		pthread_create(&th[i], NULL, migr_thread, &a[i]);
	}
	for (i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].rc, HV_OK);
		total += a[i].applied;
	}
	assert_int_equal(total, (long)hv_migrations_count);
	hv_test_db_drop(&d2);
}

static void
test_exec_and_errors(void **state)
{
	struct hv_store *s = open_store(2);
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	PGresult *r = NULL;
	const char *p[2];
	const char bin[4] = {0, 1, 2, (char)0xff};
	const int len[1] = {4};
	const int fmt[1] = {1};
	const char *bp[1] = {bin};

	(void)state;
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	p[0] = "00000000-0000-4000-8000-000000000001";
	p[1] = "exec-ws";
	assert_int_equal(hv_store_exec(c, "t_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_OK);
	/* unique violation -> conflict, naming the constraint not the value */
	p[0] = "00000000-0000-4000-8000-000000000002";
	assert_int_equal(hv_store_exec(c, "t_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_E_CONFLICT);
	assert_non_null(strstr(err.msg, "workspaces_name_key"));
	assert_null(strstr(err.msg, "exec-ws"));
	/* check violation -> invalid */
	p[1] = "";
	assert_int_equal(hv_store_exec(c, "t_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_E_INVALID);
	/* bad uuid syntax -> invalid, without echoing the value */
	p[0] = "not-a-uuid-secretish";
	p[1] = "x";
	assert_int_equal(hv_store_exec(c, "t_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_E_INVALID);
	assert_null(strstr(err.msg, "secretish"));
	/* foreign key violation -> invalid */
	p[0] = "00000000-0000-4000-8000-0000000000aa";
	p[1] = "00000000-0000-4000-8000-0000000000bb";
	assert_int_equal(hv_store_exec(c, "t_cred_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_E_INVALID);
	/* SQL metacharacters are data, never SQL */
	p[0] = "00000000-0000-4000-8000-000000000003";
	p[1] = "x'); DROP TABLE workspaces; --";
	assert_int_equal(hv_store_exec(c, "t_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_OK);
	/* unknown statement and wrong arity are our bugs */
	assert_int_equal(
	    hv_store_exec(c, "t_nope", 0, NULL, NULL, NULL, false, NULL, &err),
	    HV_E_INTERNAL);
	assert_int_equal(
	    hv_store_exec(c, "t_ws_count", 1, p, NULL, NULL, false, NULL, &err),
	    HV_E_INTERNAL);
	/* binary parameters and results round-trip */
	assert_int_equal(
	    hv_store_exec(c, "t_bytea", 1, bp, len, fmt, true, &r, &err),
	    HV_OK);
	assert_int_equal(PQgetlength(r, 0, 0), 4);
	assert_memory_equal(PQgetvalue(r, 0, 0), bin, 4);
	PQclear(r);
	hv_store_release(s, &c);
	assert_null(c);
	assert_int_equal(count_query(s, "t_ws_count_name", 1, "exec-ws"), 1);
	hv_store_close(&s);
}

static void
test_transactions(void **state)
{
	struct hv_store *s = open_store(2);
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	const char *p[2];

	(void)state;
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	/* rollback discards */
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	assert_int_equal(hv_store_begin(c, &err), HV_E_INTERNAL);
	p[0] = "00000000-0000-4000-8000-000000000010";
	p[1] = "tx-rolled-back";
	assert_int_equal(hv_store_exec(c, "t_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_OK);
	hv_store_rollback(c);
	/* a failed statement aborts the transaction; commit reports it */
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	p[1] = "tx-aborted";
	assert_int_equal(hv_store_exec(c, "t_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_OK);
	p[1] = "";
	assert_int_equal(hv_store_exec(c, "t_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_E_INVALID);
	assert_int_not_equal(hv_store_commit(c, &err), HV_OK);
	/* release with an open transaction rolls it back */
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	p[1] = "tx-released";
	assert_int_equal(hv_store_exec(c, "t_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_OK);
	hv_store_release(s, &c);
	/* commit keeps */
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	p[1] = "tx-committed";
	assert_int_equal(hv_store_exec(c, "t_ws_insert", 2, p, NULL, NULL,
	                     false, NULL, &err),
	    HV_OK);
	assert_int_equal(hv_store_commit(c, &err), HV_OK);
	assert_int_equal(hv_store_commit(c, &err), HV_E_INTERNAL);
	hv_store_release(s, &c);
	assert_int_equal(
	    count_query(s, "t_ws_count_name", 1, "tx-rolled-back"), 0);
	assert_int_equal(count_query(s, "t_ws_count_name", 1, "tx-aborted"), 0);
	assert_int_equal(
	    count_query(s, "t_ws_count_name", 1, "tx-released"), 0);
	assert_int_equal(
	    count_query(s, "t_ws_count_name", 1, "tx-committed"), 1);
	hv_store_close(&s);
}

struct pool_arg {
	struct hv_store *s;
	int id;
	int ok;
};

static void *
pool_thread(void *p)
{
	struct pool_arg *a = p;
	int i;

	for (i = 0; i < 100; i++) {
		struct hv_conn *c = NULL;
		struct hv_err err = {0};
		char id[40], name[40];
		const char *pp[2] = {id, name};

		if (hv_store_acquire(a->s, &c, &err) != HV_OK) {
			fprintf(stderr, "acquire: %s\n", err.msg);
			continue;
		}
		snprintf(
		    id, sizeof(id), "00000000-0000-4000-9%03d-%012d", a->id, i);
		snprintf(name, sizeof(name), "pool-%d-%d", a->id, i);
		if (hv_store_begin(c, &err) == HV_OK &&
		    hv_store_exec(c, "t_ws_insert", 2, pp, NULL, NULL, false,
		        NULL, &err) == HV_OK &&
		    hv_store_commit(c, &err) == HV_OK)
			a->ok++;
		else
			fprintf(stderr, "pool thread %d: %s\n", a->id, err.msg);
		hv_store_release(a->s, &c);
	}
	return NULL;
}

/* 8 threads on a pool of 3: every operation succeeds, some waited. */
static void
test_pool_threads(void **state)
{
	struct hv_store *s = open_store(3);
	struct pool_arg a[8];
	pthread_t th[8];
	struct hv_store_stats st;
	long before = count_query(s, "t_ws_count", 0, NULL);
	int i;

	struct hv_conn *held[3] = {NULL, NULL, NULL};
	struct hv_err err = {0};

	(void)state;
	/* hold every slot while the threads start: they must wait */
	for (i = 0; i < 3; i++)
		assert_int_equal(hv_store_acquire(s, &held[i], &err), HV_OK);
	for (i = 0; i < 8; i++) {
		a[i].s = s;
		a[i].id = i;
		a[i].ok = 0;
		pthread_create(&th[i], NULL, pool_thread, &a[i]);
	}
	usleep(100 * 1000);
	for (i = 0; i < 3; i++)
		hv_store_release(s, &held[i]);
	for (i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].ok, 100);
	}
	assert_int_equal(count_query(s, "t_ws_count", 0, NULL), before + 800);
	hv_store_stats(s, &st);
	assert_int_equal(st.size, 3);
	assert_int_equal(st.in_use, 0);
	assert_true(st.acquires >= 800);
	assert_true(st.waits > 0);
	hv_store_close(&s);
}

static long
backend_pid(struct hv_conn *c)
{
	struct hv_err err = {0};
	PGresult *r = NULL;
	long pid;

	assert_int_equal(
	    hv_store_exec(c, "t_pid", 0, NULL, NULL, NULL, false, &r, &err),
	    HV_OK);
	pid = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return pid;
}

static void
admin_sql(const char *sql)
{
	PGconn *a = PQconnectdb(getenv("HV_TEST_PG_URL"));
	PGresult *r;

	assert_int_equal(PQstatus(a), CONNECTION_OK);
	r = PQexec(a, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK &&
	    PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(a));
	PQclear(r);
	PQfinish(a);
}

static void
terminate(long pid)
{
	char sql[128];

	snprintf(
	    sql, sizeof(sql), "SELECT pg_terminate_backend(%ld, 5000)", pid);
	admin_sql(sql);
}

/* A connection the server killed while idle is reset on next acquire. */
static void
test_killed_connection(void **state)
{
	struct hv_store *s = open_store(1);
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	struct hv_store_stats st;
	long pid, pid2;

	(void)state;
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	pid = backend_pid(c);
	hv_store_release(s, &c);
	terminate(pid);
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	pid2 = backend_pid(c);
	assert_int_not_equal(pid, pid2);
	hv_store_release(s, &c);
	hv_store_stats(s, &st);
	assert_true(st.resets >= 1);

	/* killed while held, outside a transaction: the statement retries */
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	terminate(pid2);
	assert_int_not_equal(backend_pid(c), pid2);
	/* killed inside a transaction: that transaction fails, next works */
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	terminate(backend_pid(c));
	assert_int_equal(
	    hv_store_exec(c, "t_pid", 0, NULL, NULL, NULL, false, NULL, &err),
	    HV_E_DATABASE);
	hv_store_release(s, &c);
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	(void)backend_pid(c);
	hv_store_release(s, &c);
	assert_int_equal(hv_store_ping(s, &err), HV_OK);
	hv_store_close(&s);
}

/* libpq's parse errors quote the string: ours must not show the password. */
static void
test_url_not_quoted(void **state)
{
	static const char *const bad[] = {
	    "postgresql://u:s3cr%zzet@localhost/db",
	    "postgresql://u:s3cret@[::1/db",
	    "host=localhost password=s3cr et dbname=db",
	};
	struct hv_store *s = NULL;
	struct hv_err err = {0};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    hv_store_open(bad[i], 2, &s, &err), HV_E_CONFIG);
		assert_null(s);
		assert_null(strstr(err.msg, "s3cr"));
		assert_non_null(strstr(err.msg, "database_url"));
	}
}

/* A server that is not there: HV_E_DATABASE at once, not a hang. */
static void
test_database_down(void **state)
{
	struct hv_test_db d2;
	struct hv_store *s = NULL;
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	char sql[256];
	double t0;

	(void)state;
	t0 = now_s();
	assert_int_equal(hv_store_open("host=/nonexistent-hv-socket-dir "
	                               "dbname=x",
	                     2, &s, &err),
	    HV_E_DATABASE);
	assert_null(s);
	assert_true(now_s() - t0 < 2.0);
	assert_int_equal(hv_store_open("", 2, &s, &err), HV_E_CONFIG);

	/* the database goes away under an open pool */
	hv_test_db_new(&d2, "down");
	assert_int_equal(hv_store_open(d2.url, 2, &s, &err), HV_OK);
	assert_int_equal(hv_store_ping(s, &err), HV_OK);
	/* not migrated yet: the message says what to do */
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	assert_int_equal(hv_store_exec(c, "t_ws_count", 0, NULL, NULL, NULL,
	                     false, NULL, &err),
	    HV_E_DATABASE);
	assert_non_null(strstr(err.msg, "hsmvault init"));
	hv_store_release(s, &c);
	snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS false",
	    d2.name);
	admin_sql(sql);
	snprintf(sql, sizeof(sql),
	    "SELECT pg_terminate_backend(pid, 5000) "
	    "FROM pg_stat_activity WHERE datname = '%s'",
	    d2.name);
	admin_sql(sql);
	t0 = now_s();
	assert_int_equal(hv_store_ping(s, &err), HV_E_DATABASE);
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_E_DATABASE);
	assert_true(now_s() - t0 < 2.0);
	/* and comes back */
	snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS true",
	    d2.name);
	admin_sql(sql);
	assert_int_equal(hv_store_ping(s, &err), HV_OK);
	hv_store_close(&s);
	hv_test_db_drop(&d2);
}

struct hold_arg {
	struct hv_store *s;
	enum hv_rc rc;
	double waited;
};

static void *
wait_thread(void *p)
{
	struct hold_arg *a = p;
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	double t0 = now_s();

	a->rc = hv_store_acquire(a->s, &c, &err);
	a->waited = now_s() - t0;
	if (a->rc == HV_OK)
		hv_store_release(a->s, &c);
	return NULL;
}

/* A waiter gets the connection as soon as it is given back. */
static void
test_pool_wait(void **state)
{
	struct hv_store *s = open_store(1);
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	struct hold_arg a = {.s = s, .rc = HV_E_INTERNAL};
	pthread_t th;

	(void)state;
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	pthread_create(&th, NULL, wait_thread, &a);
	usleep(300 * 1000);
	hv_store_release(s, &c);
	pthread_join(th, NULL);
	assert_int_equal(a.rc, HV_OK);
	assert_true(a.waited >= 0.2 && a.waited < 2.0);
	hv_store_close(&s);
}

/* statement_timeout is set on pooled connections. */
static void
test_statement_timeout(void **state)
{
	struct hv_store *s = open_store(1);
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	PGresult *r;

	(void)state;
	assert_int_equal(hv_store_acquire(s, &c, &err), HV_OK);
	r = PQexec(hv_conn_pg(c), "SHOW statement_timeout");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(r, 0, 0), "30s");
	PQclear(r);
	r = PQexec(hv_conn_pg(c), "SHOW TimeZone");
	assert_string_equal(PQgetvalue(r, 0, 0), "UTC");
	PQclear(r);
	hv_store_release(s, &c);
	hv_store_close(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_migrate_twice),
	    cmocka_unit_test(test_migrate_concurrent),
	    cmocka_unit_test(test_exec_and_errors),
	    cmocka_unit_test(test_transactions),
	    cmocka_unit_test(test_pool_threads),
	    cmocka_unit_test(test_killed_connection),
	    cmocka_unit_test(test_database_down),
	    cmocka_unit_test(test_url_not_quoted),
	    cmocka_unit_test(test_pool_wait),
	    cmocka_unit_test(test_statement_timeout),
	};

	if (getenv("HV_TEST_PG_URL") == NULL)
		hv_test_missing("HV_TEST_PG_URL (PostgreSQL) not set");
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
