/*
 * audit: the tamper-evident audit log (SPEC section 5; docs/audit.md).
 *
 * Rows form `chains` independent HMAC chains (cfg audit_chains). A row's
 * mac = HMAC_keystore("hsmvault/audit/v1" || canonical(row fields, chain,
 * seq) || prev_mac); the chain head (audit_chains row) is locked FOR
 * UPDATE by the appender, so concurrent writers never fork a chain, and
 * writers on different chains never wait for each other.
 *
 * hv_audit_append() runs inside the caller's transaction on the caller's
 * connection: the row commits or rolls back with the change it records
 * (fail closed: if it fails, the caller must roll back and fail).
 *
 * Thread-safety: thread-safe; struct hv_audit is shared.
 */
#ifndef HV_AUDIT_H
#define HV_AUDIT_H

#include <jansson.h>
#include <stdbool.h>

#include "err.h"
#include "hsm.h"
#include "store.h"

struct hv_audit;

/* One event; borrowed strings, NULL = SQL NULL. */
struct hv_audit_event {
	const char *workspace_id;
	const char *actor_id; /* API key id; NULL for the CLI */
	const char *actor_name;
	const char *action; /* "credential.create", "auth.denied", ... */
	const char *credential_id;
	const char *outcome; /* "success", "denied", "failure", ... */
	const char *request_id;
	const char *remote_addr;
	const char *detail; /* short, never a secret */
};

/* Register statements (before hv_store_open). */
void hv_audit_register(void);

/*
 * chains: parallel chains (audit_chains). leaders: group commit of rows of
 * their own by that many writer threads (started on first use, joined by
 * hv_audit_free), so at most that many groups are written at once besides
 * a lone row, which its caller writes when nothing is queued and no group
 * is being written; 0 = every such row in a statement of its own, written
 * by its caller
 * (audit_group_leaders, docs/audit.md). hv_audit_free() writes what is
 * still queued before it returns.
 */
enum hv_rc hv_audit_new(struct hv_hsm *hsm, unsigned int chains,
    unsigned int leaders, struct hv_audit **out, struct hv_err *err);
void hv_audit_free(struct hv_audit **a);

/*
 * Make sure chains 0..chains-1 exist (genesis head mac = HMAC of the chain
 * number). Idempotent; run by init/migrate.
 */
enum hv_rc
hv_audit_init_chains(struct hv_audit *a, struct hv_conn *c, struct hv_err *err);

/*
 * Errors: every one this module returns, or hands to a done callback,
 * has a message that begins with "audit: ", and a statement the database
 * refused is a 5xx-class code (never the caller's fault): pass them on.
 */

/* Append ev in the open transaction of c. */
enum hv_rc hv_audit_append(struct hv_audit *a, struct hv_conn *c,
    const struct hv_audit_event *ev, struct hv_err *err)
    __attribute__((warn_unused_result));

/*
 * Append evs[0..n-1] (1 <= n <= 32) in the open transaction of c, in that
 * order on one chain: with the chain's head remembered and current, one
 * statement for all of them (the group compare-and-swap), else row by row
 * as hv_audit_append() does. Any error fails the lot (roll back).
 */
enum hv_rc hv_audit_append_many(struct hv_audit *a, struct hv_conn *c,
    const struct hv_audit_event *const *evs, size_t n, struct hv_err *err)
    __attribute__((warn_unused_result));

/*
 * Append ev in a transaction of its own (denied requests, reads that change
 * nothing else). With group commit, concurrent callers' rows are written
 * by a writer thread with one statement (one round trip, one commit); each
 * returns after the commit that holds its row.
 */
enum hv_rc hv_audit_append_alone(struct hv_audit *a, struct hv_store *s,
    const struct hv_audit_event *ev, struct hv_err *err)
    __attribute__((warn_unused_result));

/* True when group commit is on, so that hv_audit_submit() may be used. */
bool hv_audit_async(const struct hv_audit *a);

/*
 * Group commit only. When rows are queued or a group is being written,
 * queue ev (its strings are copied), set *queued and return at once;
 * done(arg, rc, err) then runs exactly once, on a writer thread, after
 * the commit that holds the row (HV_OK) or with the error that lost it,
 * and must not block for long (the next group waits for it). Otherwise
 * the row is written at once on the caller's thread, as
 * hv_audit_append_alone() would (a lone row pays no hand-off): *queued
 * false, the outcome is the return value, and done never runs. Refused
 * (nothing written, done never runs) without group commit or while
 * shutting down.
 */
enum hv_rc hv_audit_submit(struct hv_audit *a, struct hv_store *s,
    const struct hv_audit_event *ev, hv_done_fn done, void *arg, bool *queued,
    struct hv_err *err) __attribute__((warn_unused_result));

/*
 * Appends since hv_audit_new(), one snapshot: rows appended one at a time
 * through a remembered chain head (fast: one statement) or through the
 * head lock (locked: fallback), and group commits with their rows.
 */
struct hv_audit_stats {
	unsigned long fast, locked, groups, rows;
};
void hv_audit_stats(struct hv_audit *a, struct hv_audit_stats *st);

/*
 * Verify every chain. *report: {"ok": bool, "rows": n, "chains": k} and,
 * when not ok, "first_bad": {"id", "chain", "seq", "problem"} naming the
 * first row (lowest id) that was altered, removed or reordered.
 */
enum hv_rc hv_audit_verify(struct hv_audit *a, struct hv_store *s,
    json_t **report, struct hv_err *err);

#endif
