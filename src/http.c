/*
 * http: libmicrohttpd wiring, the route table, and the generic half of
 * every request (see api.h for the split and docs/http.md for the
 * contract).
 *
 * Life of a request (MHD access handler calls):
 *   1st call  headers are in: create struct req, run every check that
 *             needs only headers (TLS client certificate, header text,
 *             route, Content-Length, authentication, scope, query, path
 *             id, If-Match, Content-Type). A failure with a body coming
 *             is answered now when the client waits for 100 Continue or
 *             announces more than DISCARD_MAX (MHD then closes the
 *             connection instead of reading it); otherwise the body is
 *             read and dropped and the failure answered after it, so
 *             that a client still sending can read the answer (closing
 *             under it makes it see a reset, not the 413). Without a
 *             body it is answered on the next call (answering on the
 *             first call makes MHD close a keep-alive connection;
 *             MEASURED.md).
 *   Nth call  body bytes: appended up to cfg->max_body.
 *   last call body complete: JSON parse, handler, response.
 *   (held)    a reveal whose audit row, a create whose credential, or a
 *             use whose record was queued behind a group being written:
 *             the handler gave its answer back unsent (hv_call.pending);
 *             the connection is suspended, and the writer resumes it
 *             (on_written) once the commit landed or failed, so that no
 *             worker thread waits for the commit.
 *   resumed   the held answer, or the failure instead of it.
 *   completed MHD_OPTION_NOTIFY_COMPLETED: access log, metrics, free.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef HV_HAVE_GNUTLS
#include <gnutls/gnutls.h>
#endif

#include "api.h"
#include "clock.h"
#include "httpreq.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "uuid.h"

/*
 * Headers: one value may be 8 KiB and all of them 16 KiB; we answer more
 * with a JSON 431. MHD's per-connection pool (64 KiB) bounds what reaches
 * us at all; beyond it MHD answers 431 itself (plain text).
 */
#define HDR_VALUE_MAX     8192
#define HDR_TOTAL_MAX     16384
#define HDR_COUNT_MAX     100
#define CONN_MEMORY_LIMIT (64 * 1024)
#define CONN_TIMEOUT_S    30
#define TLS_FILE_MAX      (1024 * 1024)
#define TLS_PRIORITIES    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define LOG_PATH_MAX      256
/* A normalized Authorization value; keys are far shorter. */
#define AUTH_MAX 512
/*
 * Body bytes read and dropped after a refusal, so that the client gets to
 * read the answer: 64 MiB take tens of milliseconds on a LAN and nothing
 * is stored. Beyond it the connection is closed.
 */
#define DISCARD_MAX (64u * 1024 * 1024)

/* ---- the route table ------------------------------------------------ */

static const char *const q_cred_list[] = {
    "q", "scope", "auth_type", "status", "service", "limit", "cursor", NULL};
static const char *const q_cred_audit[] = {
    "action", "since", "limit", "cursor", NULL};
static const char *const q_audit[] = {
    "action", "credential_id", "since", "limit", "cursor", NULL};
static const char *const q_page[] = {"limit", "cursor", NULL};
static const char *const q_keys[] = {"limit", "cursor", "workspace_id", NULL};

/*
 * Body fields are checked by the vault, field by field with precise
 * messages (and unknown fields refused there); http.c only insists on a
 * JSON object, and on {} for the routes that take no body.
 */
static const char *const f_none[] = {NULL};

#define R_CRED_READ  HV_SCOPE_CRED_READ
#define R_CRED_WRITE HV_SCOPE_CRED_WRITE
#define B_NONE       HV_ROUTE_BODY_NONE
#define B_REQ        HV_ROUTE_BODY_REQUIRED
#define B_OPT        HV_ROUTE_BODY_OPTIONAL

static const struct hv_route routes[] = {
    {{"GET", "/healthz"}, 0, HV_ROUTE_PUBLIC | B_NONE, NULL, NULL,
        hv_api_healthz},
    {{"GET", "/readyz"}, 0, HV_ROUTE_PUBLIC | B_NONE, NULL, NULL,
        hv_api_readyz},
    {{"GET", "/metrics"}, HV_SCOPE_ADMIN, HV_ROUTE_METRICS | B_NONE, NULL, NULL,
        hv_api_metrics},
    {{"GET", "/v1/services"}, 0, B_NONE, NULL, NULL, hv_api_services},
    {{"POST", "/v1/credentials"}, R_CRED_WRITE, B_REQ | HV_ROUTE_ETAG, NULL,
        NULL, hv_api_cred_create},
    {{"GET", "/v1/credentials"}, R_CRED_READ, B_NONE, q_cred_list, NULL,
        hv_api_cred_list},
    {{"GET", "/v1/credentials/{id}"}, R_CRED_READ, B_NONE | HV_ROUTE_ETAG, NULL,
        NULL, hv_api_cred_get},
    {{"PATCH", "/v1/credentials/{id}"}, R_CRED_WRITE,
        B_REQ | HV_ROUTE_IF_MATCH | HV_ROUTE_ETAG, NULL, NULL,
        hv_api_cred_update},
    {{"DELETE", "/v1/credentials/{id}"}, R_CRED_WRITE, B_NONE, NULL, NULL,
        hv_api_cred_delete},
    {{"POST", "/v1/credentials/{id}/rotate"}, R_CRED_WRITE,
        B_REQ | HV_ROUTE_IF_MATCH | HV_ROUTE_ETAG, NULL, NULL,
        hv_api_cred_rotate},
    {{"POST", "/v1/credentials/{id}/revoke"}, R_CRED_WRITE,
        B_NONE | HV_ROUTE_ETAG, NULL, NULL, hv_api_cred_revoke},
    {{"POST", "/v1/credentials/{id}/unrevoke"}, R_CRED_WRITE,
        B_NONE | HV_ROUTE_ETAG, NULL, NULL, hv_api_cred_unrevoke},
    {{"POST", "/v1/credentials/{id}/duplicate"}, R_CRED_WRITE,
        B_OPT | HV_ROUTE_ETAG, NULL, NULL, hv_api_cred_duplicate},
    {{"POST", "/v1/credentials/{id}/test"}, HV_SCOPE_CRED_USE, B_NONE, NULL,
        NULL, hv_api_cred_test},
    {{"POST", "/v1/credentials/{id}/use"}, HV_SCOPE_CRED_USE, B_REQ, NULL, NULL,
        hv_api_cred_use},
    {{"GET", "/v1/credentials/{id}/secret"}, HV_SCOPE_CRED_REVEAL, B_NONE, NULL,
        NULL, hv_api_cred_reveal},
    {{"GET", "/v1/credentials/{id}/audit"}, R_CRED_READ, B_NONE, q_cred_audit,
        NULL, hv_api_cred_audit},
    {{"GET", "/v1/audit"}, HV_SCOPE_AUDIT_READ, B_NONE, q_audit, NULL,
        hv_api_audit_list},
    {{"POST", "/v1/api-keys"}, HV_SCOPE_KEYS_WRITE, B_REQ, NULL, NULL,
        hv_api_apikey_create},
    {{"GET", "/v1/api-keys"}, HV_SCOPE_KEYS_READ, B_NONE, q_keys, NULL,
        hv_api_apikey_list},
    {{"DELETE", "/v1/api-keys/{id}"}, HV_SCOPE_KEYS_WRITE, B_NONE, NULL, NULL,
        hv_api_apikey_revoke},
    {{"POST", "/v1/workspaces"}, HV_SCOPE_ADMIN, B_REQ, NULL, NULL,
        hv_api_workspace_create},
    {{"GET", "/v1/workspaces"}, HV_SCOPE_ADMIN, B_NONE, q_page, NULL,
        hv_api_workspace_list},
    {{"POST", "/v1/admin/kek/rotate"}, HV_SCOPE_ADMIN, B_NONE, NULL, NULL,
        hv_api_kek_rotate},
    {{"POST", "/v1/admin/rewrap"}, HV_SCOPE_ADMIN, B_NONE, NULL, NULL,
        hv_api_rewrap},
    {{"GET", "/v1/admin/status"}, HV_SCOPE_ADMIN, B_NONE, NULL, NULL,
        hv_api_admin_status},
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

const struct hv_route *
hv_http_routes(size_t *n)
{
	*n = N_ROUTES;
	return routes;
}

/* ---- server and request state ---------------------------------------- */

struct hv_http;

/* The closure of one daemon: the API listener or the metrics listener. */
struct listener {
	struct hv_http *h;
	bool metrics_only;
};

struct hv_http {
	const struct hv_cfg *cfg;
	struct hv_vault *vault;
	struct MHD_Daemon *d;  /* API */
	struct MHD_Daemon *md; /* open /metrics, optional */
	struct listener api, met;
	struct hv_metrics *metrics;
	atomic_long inflight;
	atomic_long suspended; /* held answers (requests suspended) */
	unsigned short port, mport;
	size_t max_body;
	size_t metrics_route; /* index of GET /metrics */
	bool client_cert;     /* require a verified client cert */
	char *tls_cert;       /* PEM, kept while the daemon runs */
	struct hv_secret *tls_key;
	char *tls_ca;
};

/* An error decided before the handler: answered as an envelope. */
struct early {
	unsigned int status; /* 0 = none */
	const char *code;
	char msg[HV_ERR_MSG_MAX];
	const char *allow; /* 405 */
	bool close;        /* answer at once, drop the connection */
};

struct req {
	const struct listener *l;
	uint64_t t0_us; /* hv_mono_us() at the first callback */
	size_t route;   /* index, N_ROUTES = unmatched */
	char request_id[HV_UUID_STR];
	char remote[INET6_ADDRSTRLEN];
	char method[16];         /* sanitized, for the log */
	char path[LOG_PATH_MAX]; /* sanitized, for the log */
	char id[HV_UUID_STR];    /* normalized {id} */
	bool has_id;
	struct early early;
	char allow[64];
	bool authed;
	struct hv_principal principal;
	struct hv_list_query query;
	long expected_version;
	char *body;
	size_t len, cap;
	size_t discarded;    /* body bytes read after a refusal */
	unsigned int status; /* answered status, for log/metrics */
	bool answered;
	bool counted; /* took part in inflight */
	/* a held answer (see the top of the file) */
	struct MHD_Connection *conn;
	json_t *held;             /* the answer, until its commit lands */
	unsigned int held_status; /* its status; 0: 200 */
	bool suspended;           /* counted in h->suspended */
	atomic_int hstate;        /* enum hold, between on_written and finish */
	enum hv_rc held_rc;       /* the writer's outcome, set before H_DONE */
	struct hv_err held_err;
};

/* Who resumes a held answer: the one that comes second. */
enum hold { H_RUNNING, H_SUSPENDED, H_DONE };

/* A response body we own: wiped when MHD is done with it. */
struct rbody {
	size_t len;
	char data[];
};

static void
rbody_free(void *cls)
{
	struct rbody *b = cls;

	if (b != NULL)
		hv_free_wipe(b, sizeof(*b) + b->len);
}

static void
set_early(
    struct req *rq, unsigned int status, const char *code, const char *msg)
{
	if (rq->early.status != 0)
		return; /* the first failure wins */
	rq->early.status = status;
	rq->early.code = code;
	(void)snprintf(rq->early.msg, sizeof(rq->early.msg), "%s", msg);
}

static void
set_early_rc(struct req *rq, enum hv_rc rc, const struct hv_err *err)
{
	set_early(rq, hv_rc_http(rc), hv_rc_code(rc),
	    err->msg[0] != '\0' ? err->msg : hv_strerror(rc));
}

/* ---- responses ------------------------------------------------------- */

static bool
add_hdr(struct MHD_Response *r, const char *k, const char *v)
{
	return MHD_add_response_header(r, k, v) == MHD_YES;
}

/*
 * Queue a response: body (may be NULL) is taken over. Every response gets
 * X-Request-Id, Content-Type and Cache-Control: no-store.
 */
static enum MHD_Result
send_body(struct MHD_Connection *conn, struct req *rq, unsigned int status,
    const char *ctype, struct rbody *body, const char *etag)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (body != NULL && body->len > 0)
		r = MHD_create_response_from_buffer_with_free_callback_cls(
		    body->len, body->data, rbody_free, body);
	else {
		rbody_free(body);
		body = NULL;
		r = MHD_create_response_from_buffer(
		    0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	if (r == NULL) {
		rbody_free(body);
		return MHD_NO;
	}
	if (!add_hdr(r, "X-Request-Id", rq->request_id) ||
	    !add_hdr(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) ||
	    !add_hdr(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") ||
	    !add_hdr(r, "X-Content-Type-Options", "nosniff") ||
	    (etag != NULL && !add_hdr(r, MHD_HTTP_HEADER_ETAG, etag)) ||
	    (rq->early.allow != NULL && status == 405 &&
	        !add_hdr(r, MHD_HTTP_HEADER_ALLOW, rq->early.allow)) ||
	    (status == 401 &&
	        !add_hdr(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
	            "Bearer realm=\"hsmvault\""))) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	if (ret == MHD_YES) {
		rq->status = status;
		rq->answered = true;
	}
	return ret;
}

/* json_dump_callback's sink: appends to a growing rbody. */
struct dump_sink {
	struct rbody *b;
	size_t cap; /* bytes of b->data */
};

#define DUMP_CAP0 4096

static int
dump_piece(const char *buf, size_t n, void *arg)
{
	struct dump_sink *d = arg;

	if (n + 1 > d->cap - d->b->len) {
		size_t ncap = d->cap;
		struct rbody *nb;

		while (n + 1 > ncap - d->b->len) {
			if (ncap > SIZE_MAX / 2 - sizeof(*nb))
				return -1;
			ncap *= 2;
		}
		nb = hv_malloc(sizeof(*nb) + ncap);
		if (nb == NULL)
			return -1;
		memcpy(nb->data, d->b->data, d->b->len);
		nb->len = d->b->len;
		/* an answer may hold a secret: the old buffer is wiped */
		hv_free_wipe(d->b, sizeof(*d->b) + d->cap);
		d->b = nb;
		d->cap = ncap;
	}
	memcpy(d->b->data + d->b->len, buf, n);
	d->b->len += n;
	return 0;
}

/*
 * Serialize j (borrowed) into a new rbody, newline-terminated, in one
 * pass (json_dumpb would need a second one to learn the size); NULL on
 * failure.
 */
static struct rbody *
dump_json(const json_t *j)
{
	struct dump_sink d;

	d.cap = DUMP_CAP0;
	d.b = hv_malloc(sizeof(*d.b) + d.cap);
	if (d.b == NULL)
		return NULL;
	d.b->len = 0;
	if (json_dump_callback(j, dump_piece, &d, JSON_COMPACT) != 0 ||
	    d.b->len == 0) {
		hv_free_wipe(d.b, sizeof(*d.b) + d.cap);
		return NULL;
	}
	d.b->data[d.b->len++] = '\n'; /* dump_piece kept room for it */
	return d.b;
}

static const char ctype_json[] = "application/json";

static enum MHD_Result
send_error(struct MHD_Connection *conn, struct req *rq, unsigned int status,
    const char *code, const char *msg)
{
	json_t *j;
	struct rbody *b = NULL;

	j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
	if (j == NULL) /* msg not valid UTF-8: never echo it */
		j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message",
		    "request rejected");
	if (j != NULL) {
		b = dump_json(j);
		json_decref(j);
	}
	return send_body(conn, rq, status, ctype_json, b, NULL);
}

static enum MHD_Result
send_early(struct MHD_Connection *conn, struct req *rq)
{
	return send_error(
	    conn, rq, rq->early.status, rq->early.code, rq->early.msg);
}

/*
 * The envelope of a failed handler. Client faults carry the vault's
 * message; for our own faults and unavailable back ends the detail goes
 * to the log only (it may name hosts or library internals).
 */
static enum MHD_Result
send_rc(struct MHD_Connection *conn, struct req *rq, enum hv_rc rc,
    const struct hv_err *err)
{
	unsigned int status = hv_rc_http(rc);

	if (status >= 500) {
		hv_log(status == 503 || status == 502 || status == 501
		        ? HV_LOG_WARN
		        : HV_LOG_ERROR,
		    "request %s: %s (%s)", rq->request_id, hv_strerror(rc),
		    err->msg);
		if (status != 501 && status != 502)
			return send_error(
			    conn, rq, status, hv_rc_code(rc), hv_strerror(rc));
	}
	return send_error(conn, rq, status, hv_rc_code(rc),
	    err->msg[0] != '\0' ? err->msg : hv_strerror(rc));
}

/* ---- request checks -------------------------------------------------- */

struct hdr_scan {
	size_t total, count;
	bool too_big;
	char bad[48]; /* name of a header with bad text */
	/* framing (RFC 9112 section 6) */
	size_t n_cl, n_te; /* Content-Length, Transfer-Encoding lines */
	const char *cl;    /* the first Content-Length value */
	size_t cl_len;
	bool cl_differ; /* Content-Length lines disagree */
	bool te_other;  /* a transfer coding other than chunked */
};

static bool
name_is(const char *key, size_t key_size, const char *name)
{
	return key_size == strlen(name) &&
	    strncasecmp(key, name, key_size) == 0;
}

/*
 * value (n bytes) is lit, in any case. Exactly: MHD 0.9.75 reads
 * "chunked " (trailing space) as no transfer coding it knows.
 */
static bool
value_is(const char *v, size_t n, const char *lit)
{
	return n == strlen(lit) && strncasecmp(v, lit, n) == 0;
}

static enum MHD_Result
scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
    size_t key_size, const char *value, size_t value_size)
{
	struct hdr_scan *s = cls;

	(void)kind;
	s->count++;
	s->total += key_size + value_size;
	if (value_size > HDR_VALUE_MAX || s->total > HDR_TOTAL_MAX ||
	    s->count > HDR_COUNT_MAX) {
		s->too_big = true;
		return MHD_NO;
	}
	if (s->bad[0] == '\0' &&
	    (!hv_httpreq_text_ok(key, key_size) ||
	        (value != NULL && !hv_httpreq_text_ok(value, value_size))))
		hv_httpreq_sanitize(s->bad, sizeof(s->bad), key, key_size);
	if (value == NULL)
		value_size = 0;
	if (name_is(key, key_size, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
		if (s->n_cl++ == 0) {
			s->cl = value;
			s->cl_len = value_size;
		} else if (value_size != s->cl_len ||
		    (value_size > 0 && memcmp(value, s->cl, value_size) != 0)) {
			s->cl_differ = true;
		}
	} else if (name_is(key, key_size, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
		s->n_te++;
		if (value == NULL || !value_is(value, value_size, "chunked"))
			s->te_other = true;
	}
	return MHD_YES;
}

struct q_collect {
	struct hv_httpreq_kv kv[16];
	size_t n;
	bool overflow;
};

static enum MHD_Result
collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
    size_t key_size, const char *value, size_t value_size)
{
	struct q_collect *q = cls;

	(void)kind;
	if (q->n >= sizeof(q->kv) / sizeof(q->kv[0])) {
		q->overflow = true;
		return MHD_NO;
	}
	q->kv[q->n].key = key;
	q->kv[q->n].key_len = key_size;
	q->kv[q->n].val = value;
	q->kv[q->n].val_len = value_size;
	q->n++;
	return MHD_YES;
}

static const char *
header(struct MHD_Connection *conn, const char *name)
{
	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

static bool
ows(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * The Authorization value as RFC 9110 reads a field: without leading or
 * trailing whitespace, and with one space between the scheme and the
 * credentials however many were sent. buf (cap bytes) receives the copy,
 * which holds the key: the caller wipes it. A value that does not fit or
 * has no credentials is returned as sent, for the vault to refuse.
 */
static const char *
auth_value(struct MHD_Connection *conn, char *buf, size_t cap)
{
	const char *v = header(conn, MHD_HTTP_HEADER_AUTHORIZATION);
	size_t n, s = 0, i;

	if (v == NULL)
		return NULL;
	while (ows(*v))
		v++;
	n = strlen(v);
	while (n > 0 && ows(v[n - 1]))
		n--;
	while (s < n && !ows(v[s]))
		s++;
	i = s;
	while (i < n && ows(v[i]))
		i++;
	if (s == 0 || i == n || s + 1 + (n - i) >= cap)
		return v;
	memcpy(buf, v, s);
	buf[s] = ' ';
	memcpy(buf + s + 1, v + i, n - i);
	buf[s + 1 + (n - i)] = '\0';
	return buf;
}

/* True when the request announces a body (length > 0 or chunked). */
static bool
body_coming(struct MHD_Connection *conn, unsigned long long *clen)
{
	const char *cl = header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = header(conn, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	char *end = NULL;

	*clen = 0;
	if (cl != NULL) {
		errno = 0;
		*clen = strtoull(cl, &end, 10);
		if (errno != 0 || end == cl)
			*clen = ULLONG_MAX;
	}
	return *clen > 0 || te != NULL;
}

/* The client sent Expect: 100-continue and waits before sending a body. */
static bool
expects_continue(struct MHD_Connection *conn)
{
	const char *e = header(conn, MHD_HTTP_HEADER_EXPECT);

	return e != NULL && strcasecmp(e, "100-continue") == 0;
}

#ifdef HV_HAVE_GNUTLS
static bool
client_cert_ok(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci;
	gnutls_session_t s;
	unsigned int status = 0, n = 0;

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ci == NULL || ci->tls_session == NULL)
		return false;
	s = (gnutls_session_t)ci->tls_session;
	if (gnutls_certificate_type_get(s) != GNUTLS_CRT_X509)
		return false;
	if (gnutls_certificate_get_peers(s, &n) == NULL || n == 0)
		return false;
	if (gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS)
		return false;
	return status == 0;
}
#else
static bool
client_cert_ok(struct MHD_Connection *conn)
{
	(void)conn;
	return false; /* hv_http_start refuses the configuration */
}
#endif

static void
remote_addr(struct MHD_Connection *conn, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;

	out[0] = '\0';
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || ci->client_addr == NULL)
		return;
	sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		(void)inet_ntop(AF_INET,
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		    out, (socklen_t)cap);
	else if (sa->sa_family == AF_INET6)
		(void)inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		    out, (socklen_t)cap);
}

static struct hv_reqctx
reqctx(const struct req *rq)
{
	struct hv_reqctx c;

	c.request_id = rq->request_id;
	c.remote_addr = rq->remote[0] != '\0' ? rq->remote : NULL;
	return c;
}

/*
 * Everything that needs only the request line and headers. Records the
 * first failure in rq->early.
 */
static void
check_headers(struct req *rq, struct MHD_Connection *conn, const char *url,
    const char *method)
{
	struct hv_http *h = rq->l->h;
	const struct hv_route *r;
	struct hv_httpreq_seg caps[HV_HTTPREQ_MAX_CAPS];
	struct hdr_scan hs;
	struct q_collect qc;
	struct hv_reqctx ctx = reqctx(rq);
	struct hv_err err = {HV_OK, ""};
	unsigned long long clen;
	const char *ct;
	size_t idx = 0, ncaps = 0;
	enum hv_httpreq_found f;
	enum hv_rc rc;

	if (h->client_cert && !rq->l->metrics_only && !client_cert_ok(conn)) {
		set_early(rq, 401, "unauthorized",
		    "a verified client "
		    "certificate is required");
		return;
	}

	/*
	 * The route first, so that the log and metrics name it in any case.
	 * HEAD is GET without the body (MHD leaves the body out).
	 */
	f = hv_httpreq_route_find(routes, N_ROUTES, sizeof(routes[0]),
	    strcmp(method, "HEAD") == 0 ? "GET" : method, url, &idx, caps,
	    &ncaps, rq->allow, sizeof(rq->allow));
	if (f == HV_HTTPREQ_FOUND && rq->l->metrics_only &&
	    idx != h->metrics_route)
		f = HV_HTTPREQ_NO_PATH;
	if (f == HV_HTTPREQ_BAD_METHOD && rq->l->metrics_only &&
	    !hv_httpreq_match("/metrics", url, NULL, 0, NULL))
		f = HV_HTTPREQ_NO_PATH;
	if (f == HV_HTTPREQ_FOUND)
		rq->route = idx;

	memset(&hs, 0, sizeof(hs));
	(void)MHD_get_connection_values_n(
	    conn, MHD_HEADER_KIND, scan_header, &hs);
	if (hs.too_big) {
		set_early(rq, 431, "invalid_request",
		    "request headers too "
		    "large");
		return;
	}
	if (hs.bad[0] != '\0') {
		char msg[96];

		(void)snprintf(msg, sizeof(msg),
		    "header '%s' is not valid "
		    "utf-8 text",
		    hs.bad);
		set_early(rq, 400, "invalid_request", msg);
		return;
	}
	/*
	 * Framing a proxy in front might read differently (request
	 * smuggling): MHD 0.9.75 would take the first of two Content-Length
	 * values, wait forever for a body of an unknown transfer coding,
	 * and keep the connection after Transfer-Encoding with
	 * Content-Length. Refused; answered at once, the connection closes.
	 */
	if (hs.cl_differ || hs.te_other || hs.n_te > 1 ||
	    (hs.n_te > 0 && hs.n_cl > 0)) {
		set_early(rq, 400, "invalid_request",
		    hs.cl_differ ? "conflicting Content-Length headers"
		        : hs.n_cl == 0
		        ? "unsupported Transfer-Encoding (only chunked)"
		        : "Transfer-Encoding and Content-Length together");
		rq->early.close = true; /* where the body ends is unclear */
		return;
	}

	if (f == HV_HTTPREQ_NO_PATH) {
		set_early(rq, 404, "not_found", "no such endpoint");
		return;
	}
	if (f == HV_HTTPREQ_BAD_METHOD) {
		char msg[96];
		size_t al = strlen(rq->allow);

		/* where GET is served, so is HEAD */
		if (strstr(rq->allow, "GET") != NULL &&
		    al + sizeof(", HEAD") <= sizeof(rq->allow))
			memcpy(rq->allow + al, ", HEAD", sizeof(", HEAD"));

		(void)snprintf(msg, sizeof(msg),
		    "method not allowed; allowed: "
		    "%s",
		    rq->allow);
		set_early(rq, 405, "method_not_allowed", msg);
		rq->early.allow = rq->allow;
		return;
	}
	r = &routes[idx];

	if (body_coming(conn, &clen) && clen > h->max_body) {
		char msg[96];

		(void)snprintf(msg, sizeof(msg),
		    "request body larger than "
		    "%zu bytes",
		    h->max_body);
		set_early(rq, 413, "payload_too_large", msg);
		return;
	}

	/* Authentication and scope. */
	if (!(r->flags & HV_ROUTE_PUBLIC) &&
	    !((r->flags & HV_ROUTE_METRICS) && rq->l->metrics_only)) {
		char abuf[AUTH_MAX];

		rc = hv_vault_authenticate(h->vault,
		    auth_value(conn, abuf, sizeof(abuf)), &ctx, &rq->principal,
		    &err);
		hv_mem_zero(abuf, sizeof(abuf));
		if (rc != HV_OK) {
			if (rc == HV_E_UNAUTHORIZED)
				set_early(rq, 401, "unauthorized",
				    err.msg[0] != '\0'
				        ? err.msg
				        : "missing or invalid api key");
			else
				set_early(rq, hv_rc_http(rc), hv_rc_code(rc),
				    hv_strerror(rc));
			if (rc != HV_E_UNAUTHORIZED)
				hv_log_warn("request %s: authenticate: %s",
				    rq->request_id, err.msg);
			return;
		}
		rq->authed = true;
		if (r->scope != 0) {
			rc = hv_vault_require(
			    h->vault, &rq->principal, r->scope, &ctx, &err);
			if (rc != HV_OK) {
				set_early_rc(rq, rc, &err);
				return;
			}
		}
	}

	/* Query parameters. */
	memset(&qc, 0, sizeof(qc));
	(void)MHD_get_connection_values_n(
	    conn, MHD_GET_ARGUMENT_KIND, collect_arg, &qc);
	if (qc.overflow) {
		set_early(rq, 400, "invalid_request",
		    "too many query "
		    "parameters");
		return;
	}
	rc = hv_httpreq_query(qc.kv, qc.n, r->query, &rq->query, &err);
	if (rc != HV_OK) {
		set_early_rc(rq, rc, &err);
		return;
	}

	/* The path id: anything that is not a UUID cannot exist. */
	if (ncaps > 0) {
		char tmp[HV_UUID_STR];

		if (caps[0].len != HV_UUID_STR - 1) {
			set_early(rq, 404, "not_found", "not found");
			return;
		}
		memcpy(tmp, caps[0].p, HV_UUID_STR - 1);
		tmp[HV_UUID_STR - 1] = '\0';
		if (!hv_uuid_normalize(tmp, rq->id)) {
			set_early(rq, 404, "not_found", "not found");
			return;
		}
		rq->has_id = true;
	}

	rq->expected_version = -1;
	if (r->flags & HV_ROUTE_IF_MATCH) {
		rc = hv_httpreq_if_match(header(conn, MHD_HTTP_HEADER_IF_MATCH),
		    &rq->expected_version, &err);
		if (rc != HV_OK) {
			set_early_rc(rq, rc, &err);
			return;
		}
	}

	ct = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (clen > 0 && !hv_httpreq_content_type_json(ct))
		set_early(rq, 415, "unsupported_media_type",
		    "request body "
		    "must be application/json");
}

/* ---- the last call: body, handler, answer --------------------------- */

/* A handler's JSON answer (out taken over; status 0 = 200). */
static enum MHD_Result
answer_json(struct MHD_Connection *conn, struct req *rq, unsigned int status,
    json_t *out)
{
	const struct hv_route *r = &routes[rq->route];
	struct rbody *b;
	char etag[24];
	const char *etag_p = NULL;

	if (status == 204) {
		json_decref(out);
		return send_body(conn, rq, 204, ctype_json, NULL, NULL);
	}
	if (out == NULL)
		return send_error(
		    conn, rq, 500, "internal_error", "handler gave no answer");
	if ((r->flags & HV_ROUTE_ETAG) &&
	    json_is_integer(json_object_get(out, "version"))) {
		(void)snprintf(etag, sizeof(etag), "\"%lld\"",
		    (long long)json_integer_value(
		        json_object_get(out, "version")));
		etag_p = etag;
	}
	b = dump_json(out);
	json_decref(out);
	if (b == NULL)
		return send_error(conn, rq, 500, "internal_error",
		    "cannot serialize the answer");
	return send_body(
	    conn, rq, status != 0 ? status : 200, ctype_json, b, etag_p);
}

static void on_written(void *arg, enum hv_rc rc, const struct hv_err *err);

/* rq's answer is held (or no longer): counted for the stop and /metrics. */
static void
held_count(struct req *rq, bool held)
{
	rq->suspended = held;
	atomic_fetch_add(&rq->l->h->suspended, held ? 1 : -1);
	hv_metrics_held(rq->l->h->metrics, held ? 1 : -1);
}

static enum MHD_Result
finish(struct req *rq, struct MHD_Connection *conn)
{
	struct hv_http *h = rq->l->h;
	const struct hv_route *r = &routes[rq->route];
	struct hv_reqctx ctx = reqctx(rq);
	struct hv_err err = {HV_OK, ""};
	struct hv_call c;
	json_t *body = NULL;
	struct rbody *b = NULL;
	enum hv_rc rc;

	if (rq->early.status != 0)
		return send_early(conn, rq);

	if (rq->len > 0) {
		if (!hv_httpreq_content_type_json(
		        header(conn, MHD_HTTP_HEADER_CONTENT_TYPE)))
			return send_error(conn, rq, 415,
			    "unsupported_media_type",
			    "request body must be application/json");
		rc = hv_httpreq_json(rq->body, rq->len,
		    (r->flags & B_NONE) ? f_none : r->fields, &body, &err);
		hv_mem_zero(rq->body, rq->len);
		if (rc != HV_OK)
			return send_rc(conn, rq, rc, &err);
	} else if (r->flags & B_REQ) {
		return send_error(conn, rq, 400, "invalid_request",
		    "request body required (a json object)");
	}
	if (body == NULL) {
		body = json_object();
		if (body == NULL)
			return send_error(
			    conn, rq, 500, "internal_error", "out of memory");
	}

	memset(&c, 0, sizeof(c));
	c.vault = h->vault;
	c.cfg = h->cfg;
	c.metrics = h->metrics;
	c.principal = rq->authed ? &rq->principal : NULL;
	c.ctx = &ctx;
	c.id = rq->has_id ? rq->id : NULL;
	c.body = body;
	c.query = &rq->query;
	c.expected_version = rq->expected_version;
	if (!rq->l->metrics_only) {
		c.done = on_written;
		c.done_arg = rq;
	}

	rc = r->fn(&c, &err);
	json_decref(body);
	if (rc != HV_OK) {
		json_decref(c.out);
		if (c.text != NULL)
			hv_free_wipe(c.text, c.text_len);
		return send_rc(conn, rq, rc, &err);
	}

	if (c.text != NULL) {
		b = hv_malloc(sizeof(*b) + c.text_len);
		if (b != NULL) {
			memcpy(b->data, c.text, c.text_len);
			b->len = c.text_len;
		}
		hv_free_wipe(c.text, c.text_len);
		json_decref(c.out);
		if (b == NULL)
			return send_error(
			    conn, rq, 500, "internal_error", "out of memory");
		return send_body(conn, rq, c.status != 0 ? c.status : 200,
		    c.content_type != NULL ? c.content_type : "text/plain", b,
		    NULL);
	}
	if (c.pending) {
		/* a writer thread calls on_written; see the top of the file */
		rq->held = c.out;
		rq->held_status = c.status;
		rq->conn = conn;
		held_count(rq, true);
		MHD_suspend_connection(conn);
		if (atomic_exchange(&rq->hstate, H_SUSPENDED) == H_DONE)
			MHD_resume_connection(conn);
		return MHD_YES;
	}
	return answer_json(conn, rq, c.status, c.out);
}

/*
 * The writer's word on a held answer (hv_done_fn): record it and
 * resume the connection if finish() already suspended it; otherwise
 * finish() sees H_DONE and resumes it itself. rq is not touched after
 * the exchange unless the connection is suspended (then it cannot go).
 */
static void
on_written(void *arg, enum hv_rc rc, const struct hv_err *err)
{
	struct req *rq = arg;

	rq->held_rc = rc;
	if (rc != HV_OK && err != NULL)
		rq->held_err = *err;
	if (atomic_exchange(&rq->hstate, H_DONE) == H_SUSPENDED)
		MHD_resume_connection(rq->conn);
}

/*
 * The call after the resume: the held answer, or the writer's error (an
 * audit row's says so: audit.h).
 */
static enum MHD_Result
answer_held(struct req *rq, struct MHD_Connection *conn)
{
	json_t *out = rq->held;

	rq->held = NULL;
	held_count(rq, false);
	if (rq->held_rc != HV_OK) {
		json_decref(out);
		rq->held_err.rc = rq->held_rc;
		return send_rc(conn, rq, rq->held_rc, &rq->held_err);
	}
	return answer_json(conn, rq, rq->held_status, out);
}

/* ---- MHD callbacks --------------------------------------------------- */

static struct req *
req_new(const struct listener *l, struct MHD_Connection *conn, const char *url,
    const char *method)
{
	struct req *rq;

	rq = hv_calloc(1, sizeof(*rq));
	if (rq == NULL)
		return NULL;
	rq->l = l;
	rq->t0_us = hv_mono_us();
	rq->route = N_ROUTES;
	rq->expected_version = -1;
	if (hv_uuid_new(rq->request_id) != HV_OK) {
		hv_free(rq);
		return NULL;
	}
	remote_addr(conn, rq->remote, sizeof(rq->remote));
	hv_httpreq_sanitize(
	    rq->method, sizeof(rq->method), method, strlen(method));
	hv_httpreq_sanitize(rq->path, sizeof(rq->path), url, strlen(url));
	return rq;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_size, void **con_cls)
{
	struct listener *l = cls;
	struct hv_http *h = l->h;
	struct req *rq = *con_cls;
	unsigned long long clen;

	(void)version;
	if (rq == NULL) {
		rq = req_new(l, conn, url, method);
		if (rq == NULL)
			return MHD_NO;
		*con_cls = rq;
		rq->counted = true;
		atomic_fetch_add(&h->inflight, 1);
		hv_metrics_inflight(h->metrics, 1);
		check_headers(rq, conn, url, method);
		/*
		 * A rejected request with a body: answer now when the body
		 * will not come (100-continue) or is too big to drop, else
		 * drop it and answer after it (see the top of the file).
		 */
		if (rq->early.status != 0 &&
		    (rq->early.close ||
		        (body_coming(conn, &clen) &&
		            (expects_continue(conn) || clen > DISCARD_MAX))))
			return send_early(conn, rq);
		return MHD_YES;
	}
	if (*upload_size > 0) {
		size_t n = *upload_size;

		*upload_size = 0;
		if (rq->early.status != 0) {
			/*
			 * Refused while the body streams in (chunked, over the
			 * limit): MHD 0.9.75 cannot answer before the body is
			 * read, so discard it, up to a bound; past the bound
			 * close the connection without an answer.
			 */
			rq->discarded += n;
			return rq->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
		}
		if (n > h->max_body - rq->len) {
			char msg[96];

			(void)snprintf(msg, sizeof(msg),
			    "request body larger "
			    "than %zu bytes",
			    h->max_body);
			set_early(rq, 413, "payload_too_large", msg);
			if (rq->body != NULL)
				hv_mem_zero(rq->body, rq->len);
			rq->discarded = n;
			return MHD_YES;
		}
		if (rq->len + n > rq->cap) {
			size_t ncap = rq->cap == 0 ? 4096 : rq->cap;
			char *nb;

			while (ncap < rq->len + n)
				ncap *= 2;
			if (ncap > h->max_body)
				ncap = h->max_body;
			nb = hv_malloc(ncap);
			if (nb == NULL)
				return MHD_NO;
			if (rq->body != NULL) {
				memcpy(nb, rq->body, rq->len);
				hv_free_wipe(rq->body, rq->cap);
			}
			rq->body = nb;
			rq->cap = ncap;
		}
		memcpy(rq->body + rq->len, upload, n);
		rq->len += n;
		return MHD_YES;
	}
	if (rq->answered)
		return MHD_YES;
	if (rq->suspended)
		return answer_held(rq, conn);
	return finish(rq, conn);
}

static const char *
toe_name(enum MHD_RequestTerminationCode toe)
{
	switch (toe) {
	case MHD_REQUEST_TERMINATED_COMPLETED_OK:
		return NULL;
	case MHD_REQUEST_TERMINATED_WITH_ERROR:
		return "error";
	case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
		return "timeout";
	case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
		return "shutdown";
	case MHD_REQUEST_TERMINATED_READ_ERROR:
		return "read_error";
	case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
		return "client_abort";
	}
	return "other";
}

static void
access_log(const struct req *rq, uint64_t us, const char *term)
{
	struct hv_access_rec r = {
	    .request_id = rq->request_id,
	    .method = rq->method,
	    .route = rq->route < N_ROUTES ? routes[rq->route].key.pattern
	                                  : "unmatched",
	    .path = rq->path,
	    .status = rq->status,
	    .duration_us = us,
	    .remote_addr = rq->remote[0] != '\0' ? rq->remote : NULL,
	    .key_id = rq->authed ? rq->principal.key_id : NULL,
	    .termination = term,
	};

	hv_log_access(&r);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct listener *l = cls;
	struct req *rq = *con_cls;
	uint64_t us;

	(void)conn;
	if (rq == NULL)
		return;
	*con_cls = NULL;
	us = hv_mono_us() - rq->t0_us;
	access_log(rq, us, toe_name(toe));
	hv_metrics_observe(l->h->metrics, rq->route, rq->status, us);
	if (rq->authed)
		hv_principal_release(&rq->principal);
	if (rq->body != NULL)
		hv_free_wipe(rq->body, rq->cap);
	if (rq->suspended) {
		/* resumed, but the client was gone before the answer */
		json_decref(rq->held);
		held_count(rq, false);
	}
	if (rq->counted) {
		hv_metrics_inflight(l->h->metrics, -1);
		atomic_fetch_sub(&l->h->inflight, 1);
	}
	hv_free(rq);
}

static size_t
on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	return hv_httpreq_unescape(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	(void)vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	hv_log_warn("mhd: %s", buf);
}

/* ---- start and stop -------------------------------------------------- */

/* Parse "host:port", "[v6]:port", ":port" into a socket address. */
static enum hv_rc
parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *sl,
    struct hv_err *err)
{
	char host[256], port[8];
	const char *colon;
	struct addrinfo hints, *res = NULL;
	size_t hl;
	int e;

	if (s == NULL || *s == '\0')
		return hv_err_set(err, HV_E_CONFIG, "listen address not set");
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return hv_err_set(err, HV_E_CONFIG,
			    "bad listen "
			    "address '%.64s' (want [v6]:port)",
			    s);
		hl = (size_t)(rb - s - 1);
		if (hl >= sizeof(host))
			return hv_err_set(err, HV_E_CONFIG,
			    "listen host too "
			    "long");
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return hv_err_set(err, HV_E_CONFIG,
			    "bad listen "
			    "address '%.64s' (want host:port)",
			    s);
		hl = (size_t)(colon - s);
		if (hl >= sizeof(host))
			return hv_err_set(err, HV_E_CONFIG,
			    "listen host too "
			    "long");
		memcpy(host, s, hl);
		host[hl] = '\0';
	}
	if (strlen(colon + 1) == 0 || strlen(colon + 1) > 5 ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    strtoul(colon + 1, NULL, 10) > 65535)
		return hv_err_set(err, HV_E_CONFIG,
		    "bad listen port in "
		    "'%.64s'",
		    s);
	(void)snprintf(port, sizeof(port), "%s", colon + 1);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	e = getaddrinfo(host[0] != '\0' ? host : "0.0.0.0", port, &hints, &res);
	if (e != 0 || res == NULL)
		return hv_err_set(err, HV_E_CONFIG,
		    "cannot resolve listen "
		    "address '%.64s': %s",
		    s, gai_strerror(e));
	if (res->ai_addrlen > sizeof(*ss)) {
		freeaddrinfo(res);
		return hv_err_set(err, HV_E_CONFIG, "odd listen address");
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sl = res->ai_addrlen;
	freeaddrinfo(res);
	return HV_OK;
}

/* Read a whole (small) file into a NUL-terminated buffer. */
static enum hv_rc
read_file(const char *path, char **out, size_t *len, bool secret,
    struct hv_secret **sec, struct hv_err *err)
{
	struct stat st;
	char *buf = NULL;
	struct hv_secret *s = NULL;
	size_t got = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hv_err_set(err, HV_E_CONFIG, "cannot open '%.128s': %s",
		    path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size > TLS_FILE_MAX) {
		close(fd);
		return hv_err_set(err, HV_E_CONFIG,
		    "'%.128s' is not a PEM "
		    "file of sane size",
		    path);
	}
	if (secret) {
		s = hv_secret_new((size_t)st.st_size + 1);
		if (s == NULL) {
			close(fd);
			return hv_err_set(err, HV_E_NOMEM, "out of memory");
		}
		buf = (char *)s->buf;
	} else {
		buf = hv_malloc((size_t)st.st_size + 1);
		if (buf == NULL) {
			close(fd);
			return hv_err_set(err, HV_E_NOMEM, "out of memory");
		}
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got != (size_t)st.st_size) {
		if (secret)
			hv_secret_free(&s);
		else
			hv_free(buf);
		return hv_err_set(
		    err, HV_E_CONFIG, "cannot read '%.128s'", path);
	}
	buf[got] = '\0';
	if (secret)
		*sec = s;
	else
		*out = buf;
	if (len != NULL)
		*len = got;
	return HV_OK;
}

static void
http_free(struct hv_http *h)
{
	if (h == NULL)
		return;
	hv_metrics_free(&h->metrics);
	hv_free(h->tls_cert);
	hv_free(h->tls_ca);
	hv_secret_free(&h->tls_key);
	hv_free(h);
}

/*
 * Worker threads: cfg->threads, else twice the cores. Handlers block on
 * PostgreSQL and the key store, so a thread per core leaves cores idle:
 * measured on 2 cores (wrk, 16 connections, GET /v1/credentials), 2
 * threads served 5,400 requests/s, 4 threads 7,500, 8 threads 6,300.
 */
static unsigned int
pool_size(const struct hv_cfg *cfg)
{
	long n;

	if (cfg->threads > 0)
		return cfg->threads;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	n *= 2;
	if (n > 64)
		n = 64;
	return (unsigned int)n;
}

static struct MHD_Daemon *
start_daemon(struct hv_http *h, struct listener *l, const char *listen,
    bool tls, unsigned int threads, struct hv_err *err)
{
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	struct MHD_OptionItem ops[24];
	unsigned int flags, n = 0;
	struct MHD_Daemon *d;

	if (parse_listen(listen, &ss, &sl, err) != HV_OK)
		return NULL;
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
	    MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
		flags |= MHD_USE_EPOLL;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (tls)
		flags |= MHD_USE_TLS;

	ops[n++] = (struct MHD_OptionItem){
	    MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
	ops[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
	ops[n++] = (struct MHD_OptionItem){
	    MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, l};
	ops[n++] = (struct MHD_OptionItem){
	    MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)on_unescape, NULL};
	ops[n++] = (struct MHD_OptionItem){
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEMORY_LIMIT, NULL};
	ops[n++] = (struct MHD_OptionItem){
	    MHD_OPTION_CONNECTION_TIMEOUT, CONN_TIMEOUT_S, NULL};
	if (threads > 1)
		ops[n++] = (struct MHD_OptionItem){
		    MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
	if (tls) {
		ops[n++] = (struct MHD_OptionItem){
		    MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key->buf};
		ops[n++] = (struct MHD_OptionItem){
		    MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert};
		ops[n++] = (struct MHD_OptionItem){
		    MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TLS_PRIORITIES};
		if (h->tls_ca != NULL)
			ops[n++] = (struct MHD_OptionItem){
			    MHD_OPTION_HTTPS_MEM_TRUST, 0, h->tls_ca};
	}
	ops[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

	d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, l,
	    MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
	if (d == NULL)
		(void)hv_err_set(err, HV_E_IO,
		    "cannot serve on '%.64s' (port "
		    "in use, no permission, or bad tls material)",
		    listen);
	return d;
}

static unsigned short
bound_port(struct MHD_Daemon *d)
{
	const union MHD_DaemonInfo *di;

	if (d == NULL)
		return 0;
	di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	return di != NULL ? di->port : 0;
}

enum hv_rc
hv_http_start(const struct hv_cfg *cfg, struct hv_vault *v,
    struct hv_http **out, struct hv_err *err)
{
	struct hv_http *h;
	bool tls = false;
	size_t i;
	enum hv_rc rc;

	h = hv_calloc(1, sizeof(*h));
	if (h == NULL)
		return hv_err_set(err, HV_E_NOMEM, "http: out of memory");
	h->cfg = cfg;
	h->vault = v;
	h->api.h = h;
	h->met.h = h;
	h->met.metrics_only = true;
	atomic_init(&h->inflight, 0);
	h->max_body = cfg->max_body > 0 ? cfg->max_body : 1024 * 1024;
	for (i = 0; i < N_ROUTES; i++)
		if (routes[i].flags & HV_ROUTE_METRICS)
			h->metrics_route = i;
	rc = hv_metrics_new(routes, N_ROUTES, &h->metrics, err);
	if (rc != HV_OK)
		goto fail;

	if ((cfg->tls_cert != NULL) != (cfg->tls_key != NULL)) {
		rc = hv_err_set(err, HV_E_CONFIG,
		    "tls_cert and tls_key go "
		    "together");
		goto fail;
	}
	if (cfg->tls_cert != NULL) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			rc = hv_err_set(err, HV_E_CONFIG,
			    "libmicrohttpd was "
			    "built without tls");
			goto fail;
		}
		rc = read_file(
		    cfg->tls_cert, &h->tls_cert, NULL, false, NULL, err);
		if (rc == HV_OK)
			rc = read_file(
			    cfg->tls_key, NULL, NULL, true, &h->tls_key, err);
		if (rc == HV_OK && cfg->tls_client_ca != NULL)
			rc = read_file(cfg->tls_client_ca, &h->tls_ca, NULL,
			    false, NULL, err);
		if (rc != HV_OK)
			goto fail;
		tls = true;
		h->client_cert = cfg->tls_client_ca != NULL;
#ifndef HV_HAVE_GNUTLS
		if (h->client_cert) {
			rc = hv_err_set(err, HV_E_CONFIG,
			    "tls_client_ca needs "
			    "a build with gnutls");
			goto fail;
		}
#endif
	} else if (cfg->tls_client_ca != NULL) {
		rc = hv_err_set(err, HV_E_CONFIG,
		    "tls_client_ca needs "
		    "tls_cert and tls_key");
		goto fail;
	}

	h->d = start_daemon(h, &h->api, cfg->listen, tls, pool_size(cfg), err);
	if (h->d == NULL) {
		rc = err != NULL ? err->rc : HV_E_IO;
		goto fail;
	}
	h->port = bound_port(h->d);
	if (cfg->metrics_listen != NULL && cfg->metrics_listen[0] != '\0') {
		h->md = start_daemon(
		    h, &h->met, cfg->metrics_listen, false, 1, err);
		if (h->md == NULL) {
			rc = err != NULL ? err->rc : HV_E_IO;
			MHD_stop_daemon(h->d);
			goto fail;
		}
		h->mport = bound_port(h->md);
	}
	hv_log_info("http: serving on %s (port %u)%s%s", cfg->listen, h->port,
	    tls ? " with tls" : "",
	    h->client_cert ? " requiring client certificates" : "");
	*out = h;
	return HV_OK;
fail:
	http_free(h);
	return rc;
}

unsigned short
hv_http_port(const struct hv_http *h)
{
	return h != NULL ? h->port : 0;
}

unsigned short
hv_http_metrics_port(const struct hv_http *h)
{
	return h != NULL ? h->mport : 0;
}

void
hv_http_stop(struct hv_http **hp)
{
	struct hv_http *h;
	MHD_socket ls = MHD_INVALID_SOCKET, mls = MHD_INVALID_SOCKET;
	uint64_t t0;

	if (hp == NULL || *hp == NULL)
		return;
	h = *hp;
	*hp = NULL;
	/*
	 * Stop accepting at once, so that new clients are refused instead of
	 * waiting in the backlog; connections already open keep being served.
	 * A quiesced daemon's threads take the listen socket out of their
	 * epoll sets on their own, after MHD_quiesce_daemon returns, and
	 * libmicrohttpd aborts the process ("Failed to remove listen FD from
	 * epoll set") when the socket is already closed by then. So it is shut
	 * down here (Linux refuses new connections to a shut-down listening
	 * socket and resets those in its backlog) and closed only once the
	 * daemons have stopped.
	 */
	if (h->d != NULL)
		ls = MHD_quiesce_daemon(h->d);
	if (h->md != NULL)
		mls = MHD_quiesce_daemon(h->md);
	if (ls != MHD_INVALID_SOCKET)
		(void)shutdown(ls, SHUT_RDWR);
	if (mls != MHD_INVALID_SOCKET)
		(void)shutdown(mls, SHUT_RDWR);
	t0 = hv_mono_ms();
	while (atomic_load(&h->inflight) > 0 &&
	    hv_mono_ms() - t0 < (uint64_t)HV_HTTP_DRAIN_MS)
		hv_sleep_ms(10);
	if (atomic_load(&h->inflight) > 0)
		hv_log_warn("http: stopping with %ld request(s) in flight",
		    atomic_load(&h->inflight));
	/*
	 * MHD must not stop with a connection suspended: a held answer is
	 * resumed by its writer, which always answers (its commit, or an
	 * error), so this waits at most for a group's database round trips.
	 */
	while (atomic_load(&h->suspended) > 0)
		hv_sleep_ms(10);
	if (h->md != NULL)
		MHD_stop_daemon(h->md);
	if (h->d != NULL)
		MHD_stop_daemon(h->d);
	if (ls != MHD_INVALID_SOCKET)
		close(ls);
	if (mls != MHD_INVALID_SOCKET)
		close(mls);
	hv_log_info("http: stopped");
	http_free(h);
}
