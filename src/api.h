/*
 * api: what src/http.c and the endpoint handlers (src/api_*.c) share: the
 * route table entry, the call a handler receives, and every handler.
 *
 * http.c does everything generic before a handler runs (routing, the
 * request id, authentication, the scope check, query, path id, If-Match,
 * Content-Type and JSON body validation) and after it (status, envelope,
 * headers, access log, metrics). A handler maps one call onto one vault
 * function and fills c->out (or c->text).
 *
 * Ownership: everything in struct hv_call is borrowed by the handler
 * except the outputs, which http.c takes over and frees.
 *
 * Thread-safety: handlers run on MHD worker threads, one call at a time
 * per struct hv_call; the vault and metrics they use are thread-safe.
 */
#ifndef HV_API_H
#define HV_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"
#include "err.h"
#include "httpreq.h"
#include "vault.h"

struct hv_metrics;
struct hv_call;

typedef enum hv_rc (*hv_api_fn)(struct hv_call *c, struct hv_err *err);

/* Route flags. */
#define HV_ROUTE_PUBLIC        (1u << 0) /* no API key (healthz, readyz) */
#define HV_ROUTE_METRICS       (1u << 1) /* admin key, or the open listener */
#define HV_ROUTE_BODY_NONE     (1u << 2) /* empty body or {} only */
#define HV_ROUTE_BODY_REQUIRED (1u << 3) /* a JSON object is required */
#define HV_ROUTE_BODY_OPTIONAL (1u << 4) /* a JSON object, or nothing */
#define HV_ROUTE_IF_MATCH      (1u << 5) /* honours If-Match */
#define HV_ROUTE_ETAG          (1u << 6) /* answers a credential: ETag */

struct hv_route {
	struct hv_httpreq_route key; /* method, pattern: must be first */
	unsigned int scope;          /* enum hv_scope_bit; 0 = any key */
	unsigned int flags;          /* HV_ROUTE_* */
	const char *const *query;    /* allowed query parameters */
	const char *const *fields;   /* allowed top-level body fields */
	hv_api_fn fn;
};

/* The route table (static storage), for tests and docs checks. */
const struct hv_route *hv_http_routes(size_t *n);

struct hv_call {
	/* inputs, borrowed */
	struct hv_vault *vault;
	const struct hv_cfg *cfg;
	struct hv_metrics *metrics;
	const struct hv_principal *principal; /* NULL on public routes */
	const struct hv_reqctx *ctx;
	const char *id;     /* lowercase UUID of {id}, or NULL */
	const json_t *body; /* never NULL: {} when none was sent */
	const struct hv_list_query *query;
	long expected_version; /* -1: no If-Match */
	/*
	 * The answer may wait for a group commit without holding this
	 * thread: a handler that passes done/done_arg on (reveal, create,
	 * use) and gets *pending back sets c->pending; http.c then holds
	 * c->out and answers once done has run. NULL where a thread must
	 * wait.
	 */
	hv_done_fn done;
	void *done_arg;

	/* outputs, taken over by http.c */
	unsigned int status; /* 0 = 200 */
	json_t *out;         /* JSON answer, or NULL */
	char *text;          /* or a raw answer (hv_malloc) */
	size_t text_len;
	const char *content_type; /* with text; static string */
	bool pending;             /* c->out waits for done (above) */
};

/* api_misc.c */
enum hv_rc hv_api_healthz(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_readyz(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_metrics(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_services(struct hv_call *c, struct hv_err *err);

/* api_credentials.c */
enum hv_rc hv_api_cred_create(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_list(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_get(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_update(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_delete(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_rotate(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_revoke(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_unrevoke(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_duplicate(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_reveal(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_audit(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_audit_list(struct hv_call *c, struct hv_err *err);

/* api_use.c */
enum hv_rc hv_api_cred_test(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_cred_use(struct hv_call *c, struct hv_err *err);

/* api_apikeys.c */
enum hv_rc hv_api_apikey_create(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_apikey_list(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_apikey_revoke(struct hv_call *c, struct hv_err *err);

/* api_admin.c */
enum hv_rc hv_api_workspace_create(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_workspace_list(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_kek_rotate(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_rewrap(struct hv_call *c, struct hv_err *err);
enum hv_rc hv_api_admin_status(struct hv_call *c, struct hv_err *err);

#endif
