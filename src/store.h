/*
 * store: PostgreSQL through libpq. A fixed-size connection pool, named
 * prepared statements, transactions, and the migration runner.
 *
 * Statements: each module declares one `static const struct hv_stmt` table
 * next to the code that uses it and registers it with hv_store_register()
 * before hv_store_open(); every pooled connection prepares a statement by
 * name on first use. There is no other way to send SQL: no string is ever
 * built from input (parameters only; bytea travels binary).
 *
 * Failure: a connection found broken is reset (PQreset) once per acquire;
 * a database that stays away gives HV_E_DATABASE quickly (connect_timeout
 * and a statement_timeout keep a request from hanging on a dead server).
 *
 * Thread-safety: hv_store_register() before any thread; everything else is
 * thread-safe. A struct hv_conn belongs to one thread between acquire and
 * release.
 */
#ifndef HV_STORE_H
#define HV_STORE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* Embedded migrations (generated from sql/ by cmake/embed_sql.cmake). */
struct hv_migration {
	int version;
	const char *name;
	const char *sql;
};
extern const struct hv_migration hv_migrations[];
extern const size_t hv_migrations_count;

struct hv_stmt {
	const char *name; /* unique across the program */
	const char *sql;  /* $1..$n parameters */
	int nparams;
};

struct hv_store;
struct hv_conn;

/* Register a statement table (static storage). Call before threads. */
void hv_store_register(const struct hv_stmt *tbl, size_t n);

/*
 * A family of statements "<prefix><n>" for n = 2..max, one per group
 * size: sql_of(n, b, cap) writes statement n's text (false when cap is too
 * small: a build error, abort()), nparams(n) is its parameter count.
 * hv_store_register_family() makes the table once (it lives as long as
 * the process) and registers it. Call before threads.
 */
struct hv_stmt_family {
	const char *prefix;
	size_t max;
	size_t cap;
	bool (*sql_of)(size_t n, char *b, size_t cap);
	int (*nparams)(size_t n);
	struct hv_stmt *tbl; /* made by hv_store_register_family */
};
void hv_store_register_family(struct hv_stmt_family *f);
/* The name of f's statement for n (2..max), once f is registered. */
const char *hv_stmt_family_name(const struct hv_stmt_family *f, size_t n);

/*
 * Append printf output to b (cap bytes, *off used) when making a
 * statement's text at register time; false when it does not fit.
 */
bool hv_sql_put(char *b, size_t cap, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Open a pool of `size` connections (0 = 8) to the libpq string url.
 * Connects eagerly one connection to fail fast on a wrong URL; the others
 * connect on demand.
 */
enum hv_rc
hv_store_open(const char *url, unsigned int size, struct hv_store **out,
    struct hv_err *err) __attribute__((warn_unused_result));
void hv_store_close(struct hv_store **s);

/* Take a connection (waits for a free one, at most a few seconds). */
enum hv_rc hv_store_acquire(struct hv_store *s, struct hv_conn **c,
    struct hv_err *err) __attribute__((warn_unused_result));
/* Give it back; an open transaction is rolled back. Sets *c NULL. */
void hv_store_release(struct hv_store *s, struct hv_conn **c);

PGconn *hv_conn_pg(struct hv_conn *c);

/* The pool slot (0..size-1) of c: stable for the life of the pool. */
unsigned int hv_conn_slot(const struct hv_conn *c);

/*
 * A standalone connection with the pool's settings (timeouts, keepalives,
 * UTC), outside the pool: for LISTEN. The caller PQfinish()es it.
 */
enum hv_rc hv_store_connect_raw(struct hv_store *s, PGconn **out,
    struct hv_err *err) __attribute__((warn_unused_result));

/*
 * Open a transaction. Nothing is sent yet: BEGIN goes to the server in one
 * round trip with the next hv_store_exec() on c (see store.c).
 */
enum hv_rc hv_store_begin(struct hv_conn *c, struct hv_err *err);
/* A REPEATABLE READ, READ ONLY transaction: one consistent snapshot. */
enum hv_rc hv_store_begin_snapshot(struct hv_conn *c, struct hv_err *err);
enum hv_rc hv_store_commit(struct hv_conn *c, struct hv_err *err);
void hv_store_rollback(struct hv_conn *c);

/*
 * Execute registered statement `name` with n parameters (text unless
 * formats[i] == 1; lengths only for binary). Results in text format unless
 * binary_result. On HV_OK *res (may be NULL to discard) is the result,
 * freed with PQclear. Errors: HV_E_CONFLICT for unique/exclusion
 * violations (SQLSTATE 23505/23P01), HV_E_INVALID for check/foreign key
 * violations and bad input syntax (22P02, 23503, 23514), HV_E_DATABASE for
 * the rest (message from PQerrorMessage, never the parameters).
 */
enum hv_rc hv_store_exec(struct hv_conn *c, const char *name, int n,
    const char *const *values, const int *lengths, const int *formats,
    bool binary_result, PGresult **res, struct hv_err *err)
    __attribute__((warn_unused_result));

/*
 * The SQL text of registered statement `name` (static storage), or NULL.
 * For tools that must run exactly what the server runs (bench/).
 */
const char *hv_store_statement_sql(const char *name);

/*
 * hv_store_exec() without its one retry on a fresh connection: for a
 * statement that writes outside a transaction (autocommit), whose effect
 * may have committed before the connection was lost.
 */
enum hv_rc hv_store_exec_once(struct hv_conn *c, const char *name, int n,
    const char *const *values, const int *lengths, const int *formats,
    bool binary_result, PGresult **res, struct hv_err *err)
    __attribute__((warn_unused_result));

/* Run pending migrations in one transaction each; *report lists them. */
enum hv_rc hv_store_migrate(struct hv_store *s, json_t **report,
    struct hv_err *err) __attribute__((warn_unused_result));

/* Round trip (SELECT 1) for readiness. */
enum hv_rc hv_store_ping(struct hv_store *s, struct hv_err *err);

/* Pool figures for /metrics. */
struct hv_store_stats {
	unsigned int size, in_use;
	unsigned long acquires, waits, resets;
};
void hv_store_stats(struct hv_store *s, struct hv_store_stats *st);

#endif
