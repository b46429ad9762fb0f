/*
 * store: PostgreSQL through libpq (docs/storage.md).
 *
 * The pool is an array of slots guarded by one mutex and a condition
 * variable; a slot connects on first use and is checked (status and a
 * zero-timeout poll of its socket) every time it is handed out, so a
 * connection the server dropped while idle is reset before a request sees
 * it. Statements are registered once in a process-wide, append-only
 * registry and prepared lazily on each connection; a per-connection bitmap
 * indexed by registry position says what is prepared there.
 *
 * PQexec is used only for constant strings compiled into the binary:
 * COMMIT/ROLLBACK, the session settings, and the text of the embedded
 * migrations (multi-statement files, which the extended protocol cannot
 * run). Everything that carries a value goes through PQexecPrepared with
 * parameters.
 *
 * Round trips (docs/performance.md): hv_store_begin() sends nothing; its
 * BEGIN goes out in one libpq pipeline with the transaction's first
 * statement (and that statement's Prepare, on first use), so a
 * transaction costs one round trip less. A transaction that runs no
 * statement never reaches the server.
 */
#include "store.h"

#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mem.h"

#define MAX_STMTS       1024
#define DEFAULT_POOL    8
#define ACQUIRE_WAIT_MS 5000
/* Advisory lock key of the migration runner: "hvmigr" as a number. */
#define MIGRATE_LOCK_KEY "7531468254417666"

/* Session settings of every pooled connection (constant text). */
static const char session_sql[] =
    "SET statement_timeout = '30s';"
    "SET lock_timeout = '10s';"
    "SET idle_in_transaction_session_timeout = '60s';"
    "SET TIME ZONE 'UTC'";

struct reg_entry {
	const struct hv_stmt *st;
	uint32_t hash;
};

/*
 * The registry is written only by hv_store_register() (before threads, by
 * contract) and read by every exec; the count is published with release
 * semantics after the entry is complete so that a late registration of an
 * already-known table (a second hv_vault_open) is harmless.
 */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct reg_entry reg[MAX_STMTS];
static atomic_size_t reg_n;
static const struct hv_stmt *reg_tables[256];
static size_t reg_ntables;

struct hv_conn {
	struct hv_store *store;
	PGconn *pg;
	unsigned int slot;
	bool busy;
	bool in_tx;
	const char *begin_sql; /* BEGIN not sent yet: goes with the next
				   statement; NULL once sent */
	unsigned char prepared[MAX_STMTS / 8];
};

struct hv_store {
	char *url;
	unsigned int size;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct hv_conn *conns;
	unsigned int in_use;
	unsigned long acquires, waits, resets;
};

static const struct hv_stmt store_stmts[] = {
    {"store_ping", "SELECT 1", 0},
    {"store_migr_lock", "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")",
        0},
    {"store_migr_applied", "SELECT 1 FROM hv_migrations WHERE version = $1", 1},
    {"store_migr_record",
        "INSERT INTO hv_migrations (version, name) VALUES ($1, $2)", 2},
    {"store_migr_max",
        "SELECT coalesce(max(version), 0) FROM "
        "hv_migrations",
        0},
};

static uint32_t
fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s != '\0') {
		h ^= (unsigned char)*s++;
		h *= 16777619u;
	}
	return h;
}

bool
hv_sql_put(char *b, size_t cap, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (*off >= cap)
		return false;
	va_start(ap, fmt);
	w = vsnprintf(b + *off, cap - *off, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= cap - *off)
		return false;
	*off += (size_t)w;
	return true;
}

void
hv_store_register_family(struct hv_stmt_family *f)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	size_t n;

	pthread_mutex_lock(&mu);
	if (f->tbl == NULL) {
		struct hv_stmt *t = calloc(f->max - 1, sizeof(*t));

		if (t == NULL)
			abort(); /* at start-up, before anything is served */
		for (n = 2; n <= f->max; n++) {
			size_t nl = strlen(f->prefix) + 24;
			char *name = malloc(nl), *sql = malloc(f->cap);

			if (name == NULL || sql == NULL)
				abort();
			(void)snprintf(name, nl, "%s%zu", f->prefix, n);
			if (!f->sql_of(n, sql, f->cap))
				abort(); /* cap too small: a build error */
			t[n - 2].name = name;
			t[n - 2].sql = sql;
			t[n - 2].nparams = f->nparams(n);
		}
		f->tbl = t;
	}
	pthread_mutex_unlock(&mu);
	hv_store_register(f->tbl, f->max - 1);
}

const char *
hv_stmt_family_name(const struct hv_stmt_family *f, size_t n)
{
	return f->tbl[n - 2].name;
}

void
hv_store_register(const struct hv_stmt *tbl, size_t n)
{
	size_t i, j, cur;

	pthread_mutex_lock(&reg_mu);
	for (i = 0; i < reg_ntables; i++)
		if (reg_tables[i] == tbl)
			goto out; /* already known: idempotent */
	if (reg_ntables == sizeof(reg_tables) / sizeof(reg_tables[0])) {
		hv_log_error("store: too many statement tables");
		goto out;
	}
	reg_tables[reg_ntables++] = tbl;
	cur = atomic_load_explicit(&reg_n, memory_order_relaxed);
	for (i = 0; i < n; i++) {
		uint32_t h = fnv1a(tbl[i].name);
		bool dup = false;

		for (j = 0; j < cur; j++) {
			if (reg[j].hash == h &&
			    strcmp(reg[j].st->name, tbl[i].name) == 0) {
				dup = true;
				break;
			}
		}
		if (dup) {
			hv_log_error("store: statement '%s' registered twice",
			    tbl[i].name);
			continue;
		}
		if (cur == MAX_STMTS) {
			hv_log_error("store: statement registry full");
			break;
		}
		reg[cur].st = &tbl[i];
		reg[cur].hash = h;
		cur++;
		atomic_store_explicit(&reg_n, cur, memory_order_release);
	}
out:
	pthread_mutex_unlock(&reg_mu);
}

static long
find_stmt(const char *name)
{
	size_t n = atomic_load_explicit(&reg_n, memory_order_acquire);
	uint32_t h = fnv1a(name);
	size_t i;

	for (i = 0; i < n; i++)
		if (reg[i].hash == h && strcmp(reg[i].st->name, name) == 0)
			return (long)i;
	return -1;
}

const char *
hv_store_statement_sql(const char *name)
{
	long idx = find_stmt(name);

	return idx < 0 ? NULL : reg[idx].st->sql;
}

/* The first line of a libpq message, without the trailing newline. */
static void
pg_msg(char *buf, size_t cap, const char *m)
{
	size_t n;

	if (m == NULL)
		m = "";
	n = strcspn(m, "\n");
	if (n >= cap)
		n = cap - 1;
	memcpy(buf, m, n);
	buf[n] = '\0';
}

static PGconn *
connect_pg(const char *url)
{
	/*
	 * Our defaults come first and the caller's string (expanded from
	 * dbname) last, so that anything the URL sets wins.
	 */
	const char *const kw[] = {"connect_timeout", "keepalives",
	    "keepalives_idle", "keepalives_interval", "keepalives_count",
	    "tcp_user_timeout", "client_encoding", "fallback_application_name",
	    "dbname", NULL};
	const char *const val[] = {
	    "5", "1", "15", "5", "3", "15000", "UTF8", "hsmvault", url, NULL};

	return PQconnectdbParams(kw, val, 1);
}

/* Server notices (and the FATAL of a killed backend) go to our log. */
static void
notice_cb(void *arg, const char *message)
{
	char m[160];

	(void)arg;
	pg_msg(m, sizeof(m), message);
	hv_log_debug("store: server says: %s", m);
}

static enum hv_rc
session_setup(PGconn *pg, struct hv_err *err)
{
	PGresult *r;
	char m[160];
	enum hv_rc rc = HV_OK;

	PQsetNoticeProcessor(pg, notice_cb, NULL);
	r = PQexec(pg, session_sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		pg_msg(m, sizeof(m), PQerrorMessage(pg));
		rc = hv_err_set(err, HV_E_DATABASE, "session setup: %s", m);
	}
	PQclear(r);
	return rc;
}

enum hv_rc
hv_store_connect_raw(struct hv_store *s, PGconn **out, struct hv_err *err)
{
	PGconn *pg = connect_pg(s->url);
	char m[160];

	if (pg == NULL)
		return hv_err_set(err, HV_E_NOMEM, "database: out of memory");
	if (PQstatus(pg) != CONNECTION_OK) {
		pg_msg(m, sizeof(m), PQerrorMessage(pg));
		PQfinish(pg);
		return hv_err_set(err, HV_E_DATABASE, "cannot connect: %s", m);
	}
	if (session_setup(pg, err) != HV_OK) {
		PQfinish(pg);
		return HV_E_DATABASE;
	}
	*out = pg;
	return HV_OK;
}

/* Make a slot's connection usable; called without the pool lock. */
static enum hv_rc
conn_ready(struct hv_conn *c, struct hv_err *err)
{
	struct hv_store *s = c->store;
	char m[160];

	if (c->pg == NULL) {
		PGconn *pg = NULL;
		enum hv_rc rc = hv_store_connect_raw(s, &pg, err);

		if (rc != HV_OK)
			return rc;
		c->pg = pg;
		memset(c->prepared, 0, sizeof(c->prepared));
		return HV_OK;
	}
	if (PQstatus(c->pg) == CONNECTION_OK) {
		struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};

		/*
		 * An idle connection has nothing to read unless the server
		 * is telling us it is going away (or sent a notice).
		 */
		if (poll(&pfd, 1, 0) > 0) {
			PGnotify *nf;

			(void)PQconsumeInput(c->pg);
			while ((nf = PQnotifies(c->pg)) != NULL)
				PQfreemem(nf);
		}
		if (PQstatus(c->pg) == CONNECTION_OK &&
		    PQtransactionStatus(c->pg) == PQTRANS_IDLE)
			return HV_OK;
	}
	pthread_mutex_lock(&s->mu);
	s->resets++;
	pthread_mutex_unlock(&s->mu);
	hv_log_warn("store: resetting database connection %u", c->slot);
	memset(c->prepared, 0, sizeof(c->prepared));
	PQreset(c->pg);
	if (PQstatus(c->pg) != CONNECTION_OK) {
		pg_msg(m, sizeof(m), PQerrorMessage(c->pg));
		return hv_err_set(
		    err, HV_E_DATABASE, "database unavailable: %s", m);
	}
	return session_setup(c->pg, err);
}

/*
 * libpq's parse errors quote the connection string ("invalid
 * percent-encoded token: \"<password>\"", the whole URI for a bad IPv6
 * host): parse a URL or keyword string here once, and on failure say so
 * without libpq's text. A plain database name is not parsed (libpq does
 * not expand it either).
 */
static enum hv_rc
url_check(const char *url, struct hv_err *err)
{
	PQconninfoOption *opts, *o;
	char *em = NULL;

	if (strncmp(url, "postgresql://", 13) != 0 &&
	    strncmp(url, "postgres://", 11) != 0 && strchr(url, '=') == NULL)
		return HV_OK;
	opts = PQconninfoParse(url, &em);
	if (opts == NULL) {
		if (em == NULL)
			return hv_err_set(err, HV_E_NOMEM, "out of memory");
		hv_mem_zero(em, strlen(em));
		PQfreemem(em);
		return hv_err_set(err, HV_E_CONFIG,
		    "database_url is not a valid connection string "
		    "(libpq's message is not shown: it may quote the "
		    "password)");
	}
	for (o = opts; o->keyword != NULL; o++)
		if (o->val != NULL)
			hv_mem_zero(o->val, strlen(o->val));
	PQconninfoFree(opts);
	return HV_OK;
}

enum hv_rc
hv_store_open(const char *url, unsigned int size, struct hv_store **out,
    struct hv_err *err)
{
	struct hv_store *s = NULL;
	struct hv_conn *c = NULL;
	pthread_condattr_t ca;
	unsigned int i;
	enum hv_rc rc;

	if (url == NULL || *url == '\0')
		return hv_err_set(err, HV_E_CONFIG, "database_url not set");
	rc = url_check(url, err);
	if (rc != HV_OK)
		return rc;
	hv_store_register(
	    store_stmts, sizeof(store_stmts) / sizeof(store_stmts[0]));
	if (size == 0)
		size = DEFAULT_POOL;
	if (size > 256)
		return hv_err_set(err, HV_E_CONFIG, "db_pool too large");
	s = hv_calloc(1, sizeof(*s));
	if (s == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	s->url = hv_strdup(url);
	s->conns = hv_calloc(size, sizeof(*s->conns));
	if (s->url == NULL || s->conns == NULL) {
		hv_free(s->conns);
		if (s->url != NULL)
			hv_free_wipe(s->url, strlen(s->url));
		hv_free(s);
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	}
	s->size = size;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	for (i = 0; i < size; i++) {
		s->conns[i].store = s;
		s->conns[i].slot = i;
	}
	/* One eager connection: a wrong URL fails here, not on a request. */
	rc = hv_store_acquire(s, &c, err);
	if (rc != HV_OK) {
		hv_store_close(&s);
		return rc;
	}
	hv_store_release(s, &c);
	*out = s;
	return HV_OK;
}

void
hv_store_close(struct hv_store **sp)
{
	struct hv_store *s;
	unsigned int i;

	if (sp == NULL || *sp == NULL)
		return;
	s = *sp;
	for (i = 0; i < s->size; i++)
		if (s->conns[i].pg != NULL)
			PQfinish(s->conns[i].pg);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	/* the URL may hold a password */
	hv_free_wipe(s->url, strlen(s->url));
	hv_free(s->conns);
	hv_free(s);
	*sp = NULL;
}

enum hv_rc
hv_store_acquire(struct hv_store *s, struct hv_conn **out, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	struct timespec dl;
	unsigned int i;
	bool waited = false;
	enum hv_rc rc;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += ACQUIRE_WAIT_MS / 1000;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		/* Prefer a slot that is already connected. */
		for (i = 0; i < s->size; i++) {
			if (!s->conns[i].busy && s->conns[i].pg != NULL) {
				c = &s->conns[i];
				break;
			}
		}
		if (c == NULL)
			for (i = 0; i < s->size; i++)
				if (!s->conns[i].busy) {
					c = &s->conns[i];
					break;
				}
		if (c != NULL)
			break;
		if (!waited) {
			s->waits++;
			waited = true;
		}
		if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) {
			pthread_mutex_unlock(&s->mu);
			return hv_err_set(err, HV_E_DATABASE,
			    "database pool exhausted (%u connections busy)",
			    s->size);
		}
	}
	c->busy = true;
	c->in_tx = false;
	c->begin_sql = NULL;
	s->in_use++;
	s->acquires++;
	pthread_mutex_unlock(&s->mu);

	rc = conn_ready(c, err);
	if (rc != HV_OK) {
		pthread_mutex_lock(&s->mu);
		c->busy = false;
		s->in_use--;
		pthread_cond_signal(&s->cv);
		pthread_mutex_unlock(&s->mu);
		return rc;
	}
	*out = c;
	return HV_OK;
}

void
hv_store_release(struct hv_store *s, struct hv_conn **cp)
{
	struct hv_conn *c;

	if (cp == NULL || *cp == NULL)
		return;
	c = *cp;
	if (c->pg != NULL &&
	    (c->in_tx || PQtransactionStatus(c->pg) != PQTRANS_IDLE))
		hv_store_rollback(c);
	pthread_mutex_lock(&s->mu);
	c->busy = false;
	s->in_use--;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	*cp = NULL;
}

PGconn *
hv_conn_pg(struct hv_conn *c)
{
	return c->pg;
}

unsigned int
hv_conn_slot(const struct hv_conn *c)
{
	return c->slot;
}

/* Map a failed result to an hv_rc; never copies parameter values. */
static enum hv_rc
result_error(
    struct hv_conn *c, const char *what, const PGresult *r, struct hv_err *err)
{
	const char *state =
	    r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *cons =
	    r != NULL ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
	const char *prim =
	    r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char m[160];

	if (state == NULL || PQstatus(c->pg) != CONNECTION_OK) {
		pg_msg(m, sizeof(m), PQerrorMessage(c->pg));
		return hv_err_set(err, HV_E_DATABASE, "%s: %s", what, m);
	}
	if (strcmp(state, "23505") == 0 || strcmp(state, "23P01") == 0)
		return hv_err_set(err, HV_E_CONFLICT, "%s: conflict on %s",
		    what, cons != NULL ? cons : "a unique key");
	if (strcmp(state, "23503") == 0 || strcmp(state, "23514") == 0 ||
	    strcmp(state, "23502") == 0)
		return hv_err_set(err, HV_E_INVALID, "%s: violates %s (%s)",
		    what, cons != NULL ? cons : "a constraint", state);
	if (strncmp(state, "22", 2) == 0)
		/*
		 * Data exceptions quote the offending value ("invalid input
		 * syntax for type uuid: ..."): keep the code only.
		 */
		return hv_err_set(err, HV_E_INVALID,
		    "%s: invalid value "
		    "(sqlstate %s)",
		    what, state);
	if (strcmp(state, "42P01") == 0)
		return hv_err_set(err, HV_E_DATABASE,
		    "%s: the schema is "
		    "missing (run hsmvault init or hsmvault migrate)",
		    what);
	pg_msg(m, sizeof(m), prim);
	return hv_err_set(
	    err, HV_E_DATABASE, "%s: %s (sqlstate %s)", what, m, state);
}

static bool
conn_lost(struct hv_conn *c)
{
	return PQstatus(c->pg) != CONNECTION_OK;
}

static enum hv_rc
reset_conn(struct hv_conn *c, struct hv_err *err)
{
	return conn_ready(c, err);
}

/*
 * The pending BEGIN, the Prepare of statement idx when this connection has
 * not prepared it yet, and the statement itself, in one pipeline: one
 * round trip. Every result is read up to the pipeline's sync point, so the
 * connection leaves pipeline mode whatever failed. Not retried: the
 * caller's transaction is lost with a lost connection, as it would be
 * after a separate BEGIN.
 */
static enum hv_rc
exec_with_begin(struct hv_conn *c, long idx, int n, const char *const *values,
    const int *lengths, const int *formats, bool binary_result, PGresult **res,
    struct hv_err *err)
{
	const struct hv_stmt *st = reg[idx].st;
	unsigned char bit = (unsigned char)(1u << (idx % 8));
	bool prep = (c->prepared[idx / 8] & bit) == 0;
	PGresult *r, *stmt_res = NULL;
	enum hv_rc rc = HV_OK;
	int step = 0, nsteps = prep ? 3 : 2, guard;
	char m[160];

	if (PQenterPipelineMode(c->pg) != 1 ||
	    PQsendQueryParams(
	        c->pg, c->begin_sql, 0, NULL, NULL, NULL, NULL, 0) != 1 ||
	    (prep &&
	        PQsendPrepare(c->pg, st->name, st->sql, st->nparams, NULL) !=
	            1) ||
	    PQsendQueryPrepared(c->pg, st->name, n, values, lengths, formats,
	        binary_result ? 1 : 0) != 1 ||
	    PQpipelineSync(c->pg) != 1) {
		pg_msg(m, sizeof(m), PQerrorMessage(c->pg));
		rc = hv_err_set(err, HV_E_DATABASE, "%s: %s", st->name, m);
		goto drain;
	}
	c->begin_sql = NULL;
	/* one result (then NULL) per command, then the sync point */
	while (step < nsteps) {
		ExecStatusType es;

		r = PQgetResult(c->pg);
		if (r == NULL) {
			if (PQstatus(c->pg) != CONNECTION_OK)
				break;
			continue; /* end of one command's results */
		}
		es = PQresultStatus(r);
		if (rc == HV_OK && es != PGRES_COMMAND_OK &&
		    es != PGRES_TUPLES_OK)
			rc = result_error(c, step == 0 ? "begin" : st->name,
			    es == PGRES_PIPELINE_ABORTED ? NULL : r, err);
		if (step == nsteps - 1 && rc == HV_OK)
			stmt_res = r;
		else
			PQclear(r);
		if (prep && step == 1 && es == PGRES_COMMAND_OK)
			c->prepared[idx / 8] |= bit;
		step++;
	}
drain:
	/* up to the sync point, then out of pipeline mode */
	for (guard = 0; guard < 64 && PQstatus(c->pg) == CONNECTION_OK &&
	     PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF;
	     guard++) {
		r = PQgetResult(c->pg);
		if (r != NULL) {
			bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;

			PQclear(r);
			if (sync && PQexitPipelineMode(c->pg) != 1)
				break;
			continue;
		}
		if (PQexitPipelineMode(c->pg) == 1)
			break;
	}
	if (PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF) {
		/* unusable: the next acquire resets it */
		if (rc == HV_OK)
			rc = hv_err_set(err, HV_E_DATABASE,
			    "%s: pipeline "
			    "did not complete",
			    st->name);
		PQfinish(c->pg);
		c->pg = NULL;
	} else if (rc == HV_OK && step < nsteps) {
		rc = hv_err_set(
		    err, HV_E_DATABASE, "%s: connection lost", st->name);
	}
	if (rc != HV_OK) {
		PQclear(stmt_res);
		return rc;
	}
	if (res != NULL)
		*res = stmt_res;
	else
		PQclear(stmt_res);
	return HV_OK;
}

static enum hv_rc
exec_once(struct hv_conn *c, long idx, int n, const char *const *values,
    const int *lengths, const int *formats, bool binary_result, PGresult **res,
    struct hv_err *err)
{
	const struct hv_stmt *st = reg[idx].st;
	PGresult *r;
	ExecStatusType es;
	unsigned char bit = (unsigned char)(1u << (idx % 8));

	if (c->pg == NULL)
		return hv_err_set(
		    err, HV_E_DATABASE, "%s: connection lost", st->name);
	if (c->begin_sql != NULL)
		return exec_with_begin(c, idx, n, values, lengths, formats,
		    binary_result, res, err);
	if ((c->prepared[idx / 8] & bit) == 0) {
		r = PQprepare(c->pg, st->name, st->sql, st->nparams, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			enum hv_rc rc = result_error(c, st->name, r, err);

			PQclear(r);
			return rc;
		}
		PQclear(r);
		c->prepared[idx / 8] |= bit;
	}
	r = PQexecPrepared(c->pg, st->name, n, values, lengths, formats,
	    binary_result ? 1 : 0);
	es = PQresultStatus(r);
	if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
		enum hv_rc rc = result_error(c, st->name, r, err);

		PQclear(r);
		return rc;
	}
	if (res != NULL)
		*res = r;
	else
		PQclear(r);
	return HV_OK;
}

static enum hv_rc
exec_named(struct hv_conn *c, const char *name, int n,
    const char *const *values, const int *lengths, const int *formats,
    bool binary_result, bool may_retry, PGresult **res, struct hv_err *err)
{
	long idx = find_stmt(name);
	enum hv_rc rc;

	if (idx < 0)
		return hv_err_set(err, HV_E_INTERNAL,
		    "statement '%.64s' not registered", name);
	if (n != reg[idx].st->nparams)
		return hv_err_set(err, HV_E_INTERNAL,
		    "statement '%.64s' takes %d parameters, got %d", name,
		    reg[idx].st->nparams, n);
	rc = exec_once(
	    c, idx, n, values, lengths, formats, binary_result, res, err);
	/*
	 * Outside a transaction a statement that met a dead connection is
	 * retried once on a fresh one: our statements outside transactions
	 * are reads or idempotent updates. Inside one, the transaction is
	 * lost and the caller fails.
	 */
	if (rc == HV_E_DATABASE && may_retry && !c->in_tx && c->pg != NULL &&
	    conn_lost(c)) {
		if (reset_conn(c, err) != HV_OK)
			return HV_E_DATABASE;
		rc = exec_once(c, idx, n, values, lengths, formats,
		    binary_result, res, err);
	}
	return rc;
}

enum hv_rc
hv_store_exec(struct hv_conn *c, const char *name, int n,
    const char *const *values, const int *lengths, const int *formats,
    bool binary_result, PGresult **res, struct hv_err *err)
{
	return exec_named(c, name, n, values, lengths, formats, binary_result,
	    true, res, err);
}

enum hv_rc
hv_store_exec_once(struct hv_conn *c, const char *name, int n,
    const char *const *values, const int *lengths, const int *formats,
    bool binary_result, PGresult **res, struct hv_err *err)
{
	return exec_named(c, name, n, values, lengths, formats, binary_result,
	    false, res, err);
}

static enum hv_rc
exec_simple(struct hv_conn *c, const char *sql, struct hv_err *err)
{
	PGresult *r = PQexec(c->pg, sql);
	enum hv_rc rc = HV_OK;

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = result_error(c, sql, r, err);
	PQclear(r);
	return rc;
}

/* Open a transaction; BEGIN travels with the next statement. */
static enum hv_rc
begin_with(struct hv_conn *c, const char *sql, struct hv_err *err)
{
	if (c->in_tx)
		return hv_err_set(
		    err, HV_E_INTERNAL, "transaction already open");
	c->in_tx = true;
	c->begin_sql = sql;
	return HV_OK;
}

enum hv_rc
hv_store_begin(struct hv_conn *c, struct hv_err *err)
{
	return begin_with(c, "BEGIN", err);
}

enum hv_rc
hv_store_begin_snapshot(struct hv_conn *c, struct hv_err *err)
{
	return begin_with(
	    c, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", err);
}

enum hv_rc
hv_store_commit(struct hv_conn *c, struct hv_err *err)
{
	PGresult *r;
	enum hv_rc rc = HV_OK;

	if (!c->in_tx)
		return hv_err_set(err, HV_E_INTERNAL, "no transaction open");
	if (c->begin_sql != NULL) {
		/* no statement ran: nothing reached the server */
		c->begin_sql = NULL;
		c->in_tx = false;
		return HV_OK;
	}
	if (c->pg == NULL) {
		c->in_tx = false;
		return hv_err_set(err, HV_E_DATABASE,
		    "commit: connection "
		    "lost");
	}
	r = PQexec(c->pg, "COMMIT");
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = result_error(c, "commit", r, err);
	else if (strcmp(PQcmdStatus(r), "ROLLBACK") == 0)
		/* COMMIT of an aborted transaction answers ROLLBACK. */
		rc = hv_err_set(
		    err, HV_E_DATABASE, "commit: transaction was aborted");
	PQclear(r);
	c->in_tx = false;
	return rc;
}

void
hv_store_rollback(struct hv_conn *c)
{
	PGresult *r;

	c->in_tx = false;
	c->begin_sql = NULL;
	if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK)
		return;
	if (PQtransactionStatus(c->pg) == PQTRANS_IDLE)
		return;
	r = PQexec(c->pg, "ROLLBACK");
	PQclear(r);
}

enum hv_rc
hv_store_migrate(struct hv_store *s, json_t **report, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	json_t *rep = NULL, *applied = NULL;
	PGresult *r = NULL;
	size_t i;
	long dbmax = 0;
	enum hv_rc rc;

	rep = json_object();
	applied = json_array();
	if (rep == NULL || applied == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	rc = hv_store_acquire(s, &c, err);
	if (rc != HV_OK)
		goto out;

	/*
	 * The lock serializes concurrent runners (two `hsmvault migrate`,
	 * or several servers starting): CREATE TABLE IF NOT EXISTS alone
	 * races on the catalog.
	 */
	rc = hv_store_begin(c, err);
	if (rc == HV_OK)
		rc = hv_store_exec(c, "store_migr_lock", 0, NULL, NULL, NULL,
		    false, NULL, err);
	if (rc == HV_OK)
		rc = exec_simple(c,
		    "CREATE TABLE IF NOT EXISTS hv_migrations ("
		    " version integer PRIMARY KEY,"
		    " name text NOT NULL,"
		    " applied_at timestamptz NOT NULL DEFAULT now())",
		    err);
	if (rc == HV_OK)
		rc = hv_store_commit(c, err);
	if (rc != HV_OK)
		goto out;

	for (i = 0; i < hv_migrations_count; i++) {
		const struct hv_migration *m = &hv_migrations[i];
		char ver[16];
		const char *p[2];
		PGresult *mr;

		snprintf(ver, sizeof(ver), "%d", m->version);
		p[0] = ver;
		p[1] = m->name;
		rc = hv_store_begin(c, err);
		if (rc == HV_OK)
			rc = hv_store_exec(c, "store_migr_lock", 0, NULL, NULL,
			    NULL, false, NULL, err);
		if (rc == HV_OK)
			rc = hv_store_exec(c, "store_migr_applied", 1, p, NULL,
			    NULL, false, &r, err);
		if (rc != HV_OK)
			goto out;
		if (PQntuples(r) > 0) {
			PQclear(r);
			r = NULL;
			hv_store_rollback(c);
			continue;
		}
		PQclear(r);
		r = NULL;
		/* Multi-statement text from the binary, never from input. */
		mr = PQexec(hv_conn_pg(c), m->sql);
		if (PQresultStatus(mr) != PGRES_COMMAND_OK &&
		    PQresultStatus(mr) != PGRES_TUPLES_OK) {
			char msg[160];

			pg_msg(msg, sizeof(msg),
			    PQresultErrorField(mr, PG_DIAG_MESSAGE_PRIMARY));
			rc = hv_err_set(err, HV_E_DATABASE, "migration %s: %s",
			    m->name, msg);
			PQclear(mr);
			goto out;
		}
		PQclear(mr);
		rc = hv_store_exec(
		    c, "store_migr_record", 2, p, NULL, NULL, false, NULL, err);
		if (rc == HV_OK)
			rc = hv_store_commit(c, err);
		if (rc != HV_OK)
			goto out;
		hv_log_info("store: applied migration %s", m->name);
		if (json_array_append_new(applied,
		        json_pack("{s:i,s:s}", "version", m->version, "name",
		            m->name)) != 0) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
	}
	rc = hv_store_exec(
	    c, "store_migr_max", 0, NULL, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	dbmax = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	if (hv_migrations_count > 0 &&
	    dbmax > hv_migrations[hv_migrations_count - 1].version)
		hv_log_warn("store: database schema %ld is newer than this "
		            "binary knows",
		    dbmax);
	json_object_set_new(rep, "applied", applied);
	applied = NULL;
	json_object_set_new(rep, "schema_version", json_integer(dbmax));
	json_object_set_new(rep, "known_migrations",
	    json_integer((json_int_t)hv_migrations_count));
	if (report != NULL) {
		*report = rep;
		rep = NULL;
	}
out:
	PQclear(r);
	if (c != NULL)
		hv_store_release(s, &c);
	json_decref(applied);
	json_decref(rep);
	return rc;
}

enum hv_rc
hv_store_ping(struct hv_store *s, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	enum hv_rc rc;

	rc = hv_store_acquire(s, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_exec(
	    c, "store_ping", 0, NULL, NULL, NULL, false, NULL, err);
	hv_store_release(s, &c);
	return rc;
}

void
hv_store_stats(struct hv_store *s, struct hv_store_stats *st)
{
	pthread_mutex_lock(&s->mu);
	st->size = s->size;
	st->in_use = s->in_use;
	st->acquires = s->acquires;
	st->waits = s->waits;
	st->resets = s->resets;
	pthread_mutex_unlock(&s->mu);
}
