/*
 * test_http_api: the HTTP API end to end against a real PostgreSQL and a
 * real SoftHSM2 token: health, readiness and metrics; routing (404, 405
 * with Allow); the whole credential lifecycle (create, get, list and
 * search, edit with If-Match, rotate, reveal, revoke, test/use refusing a
 * revoked credential, unrevoke, duplicate, audit, delete); API keys;
 * workspaces and the admin endpoints; the response headers every answer
 * carries.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "clock.h"
#include "httpc.h"
#include "httpsrv.h"
#include "uuid.h"

static struct hv_test_server S;
static struct hv_httpc C;

/* Every answer: a UUID X-Request-Id, no-store, and an envelope on errors. */
static void
check_common(const struct hv_httpc_resp *r)
{
	assert_int_equal(r->curl_rc, 0);
	if (!hv_uuid_valid(r->request_id))
		fail_msg("bad X-Request-Id '%s'", r->request_id);
	assert_string_equal(r->cache_control, "no-store");
	if (r->status >= 400) {
		const json_t *e = json_object_get(r->json, "error");

		if (!json_is_string(json_object_get(e, "code")) ||
		    !json_is_string(json_object_get(e, "message")))
			fail_msg("status %ld without envelope: %s", r->status,
			    r->body);
		assert_string_equal(r->content_type, "application/json");
	}
}

static long
req(const char *method, const char *path, const char *key,
    const char *const *hdrs, const char *body, struct hv_httpc_resp *r)
{
	hv_httpc_do(&C, method, path, key, hdrs, body,
	    body != NULL ? strlen(body) : 0, r);
	check_common(r);
	return r->status;
}

/* Expect status (and error code when not NULL); frees the response. */
static void
expect(const char *method, const char *path, const char *key, const char *body,
    long status, const char *code)
{
	struct hv_httpc_resp r;

	if (req(method, path, key, NULL, body, &r) != status)
		fail_msg("%s %s: want %ld, got %ld %s", method, path, status,
		    r.status, r.body);
	if (code != NULL)
		assert_string_equal(hv_httpc_error_code(&r), code);
	hv_httpc_resp_free(&r);
}

static const char *
jstr(const json_t *j, const char *k)
{
	const char *s = json_string_value(json_object_get(j, k));

	return s != NULL ? s : "";
}

/* fast + locked audit appends in a /metrics body (-1 when absent) */
static long
audit_appends(const char *body)
{
	static const char *const keys[] = {
	    "\nhsmvault_audit_appends_total{path=\"fast\"} ",
	    "\nhsmvault_audit_appends_total{path=\"locked\"} "};
	long sum = 0;
	size_t i;

	for (i = 0; i < 2; i++) {
		const char *p = strstr(body, keys[i]);

		if (p == NULL)
			return -1;
		sum += strtol(p + strlen(keys[i]), NULL, 10);
	}
	return sum;
}

static void
test_health(void **state)
{
	struct hv_httpc_resp r;
	char path[80];
	long before, hits;
	int n;

	(void)state;
	assert_int_equal(req("GET", "/healthz", NULL, NULL, NULL, &r), 200);
	assert_string_equal(jstr(r.json, "status"), "ok");
	assert_string_equal(r.content_type, "application/json");
	hv_httpc_resp_free(&r);
	assert_int_equal(req("GET", "/readyz", NULL, NULL, NULL, &r), 200);
	assert_string_equal(jstr(r.json, "status"), "ready");
	hv_httpc_resp_free(&r);

	expect("GET", "/metrics", NULL, NULL, 401, "unauthorized");
	assert_int_equal(
	    req("GET", "/metrics", S.admin_key, NULL, NULL, &r), 200);
	assert_non_null(strstr(r.content_type, "text/plain; version=0.0.4"));
	assert_non_null(strstr(r.body,
	    "hsmvault_http_requests_total{method="
	    "\"GET\",route=\"/healthz\",status=\"200\"}"));
	assert_non_null(strstr(r.body,
	    "hsmvault_http_request_duration_"
	    "seconds_bucket{method=\"GET\",route=\"/readyz\",le=\"+Inf\"}"));
	assert_non_null(strstr(r.body, "hsmvault_db_pool_connections"));
	assert_non_null(strstr(r.body, "hsmvault_http_requests_in_flight 1"));
	/*
	 * Rows one at a time so far (group commit is on by default, but a
	 * row alone is written alone): no group of two or more yet.
	 */
	assert_non_null(
	    strstr(r.body, "\nhsmvault_audit_group_commits_total 0\n"));
	assert_non_null(
	    strstr(r.body, "\nhsmvault_audit_grouped_rows_total 0\n"));
	before = audit_appends(r.body);
	hv_httpc_resp_free(&r);
	/* a create appends one audit row through this server's appender */
	assert_int_equal(
	    req("POST", "/v1/credentials", S.admin_key, NULL,
	        "{\"service\":\"stripe\",\"name\":\"metrics probe\","
	        "\"auth_type\":\"api_key\",\"scope\":\"workspace\","
	        "\"secret\":{\"key\":\"sk_test_metrics\"}}",
	        &r),
	    201);
	snprintf(path, sizeof(path), "/v1/credentials/%s", jstr(r.json, "id"));
	hv_httpc_resp_free(&r);
	assert_int_equal(
	    req("GET", "/metrics", S.admin_key, NULL, NULL, &r), 200);
	assert_true(audit_appends(r.body) >= before + 1);
	hits = hv_test_metric(
	    &S, "hsmvault_cache_hits_total{cache=\"credential\"}");
	assert_true(hits >= 0);
	hv_httpc_resp_free(&r);

	/*
	 * the caches: metadata reads, the second and later from the cache once
	 * the server's listener is up (the cache is unused until then)
	 */
	for (n = 0; n < 100 &&
	     hv_test_metric(&S,
	         "hsmvault_cache_hits_total{cache=\"credential\"}") < hits + 1;
	     n++) {
		expect("GET", path, S.admin_key, NULL, 200, NULL);
		hv_sleep_ms(20);
	}
	assert_int_equal(
	    req("GET", "/metrics", S.admin_key, NULL, NULL, &r), 200);
	assert_true(
	    hv_test_metric(&S,
	        "hsmvault_cache_hits_total{cache=\"credential\"}") >= hits + 1);
	assert_true(
	    hv_test_metric(
	        &S, "hsmvault_cache_misses_total{cache=\"credential\"}") >= 1);
	assert_true(hv_test_metric(&S,
	                "hsmvault_cache_entries{cache=\"credential\"}") >= 1);
	assert_int_equal(
	    hv_test_metric(&S, "hsmvault_cache_capacity{cache=\"credential\"}"),
	    16384);
	assert_true(hv_test_metric(&S,
	                "hsmvault_cache_hits_total{cache=\"apikey\"}") >= 1);
	assert_true(hv_test_metric(
	                &S, "hsmvault_cache_entries{cache=\"apikey\"}") >= 1);
	assert_int_equal(
	    hv_test_metric(&S, "hsmvault_cache_capacity{cache=\"apikey\"}"),
	    1024);
	assert_int_equal(
	    hv_test_metric(&S, "hsmvault_cache_capacity{cache=\"dek\"}"), 1024);
	assert_true(hv_test_metric(
	                &S, "hsmvault_cache_misses_total{cache=\"dek\"}") >= 0);
	assert_non_null(
	    strstr(r.body, "# TYPE hsmvault_cache_hits_total counter\n"));
	assert_non_null(
	    strstr(r.body, "# TYPE hsmvault_cache_entries gauge\n"));
	hv_httpc_resp_free(&r);
}

static void
test_routing(void **state)
{
	struct hv_httpc_resp r;

	(void)state;
	expect("GET", "/nope", NULL, NULL, 404, "not_found");
	expect("GET", "/v1/credentials/", S.admin_key, NULL, 404, "not_found");
	expect("GET", "/v1//credentials", S.admin_key, NULL, 404, "not_found");
	expect("GET", "/V1/credentials", S.admin_key, NULL, 404, "not_found");
	assert_int_equal(
	    req("PUT", "/v1/credentials", S.admin_key, NULL, NULL, &r), 405);
	assert_string_equal(hv_httpc_error_code(&r), "method_not_allowed");
	assert_string_equal(r.allow, "POST, GET, HEAD");
	hv_httpc_resp_free(&r);
	assert_int_equal(req("POST", "/healthz", NULL, NULL, NULL, &r), 405);
	assert_string_equal(r.allow, "GET, HEAD");
	hv_httpc_resp_free(&r);
	assert_int_equal(req("PUT",
	                     "/v1/credentials/0b6f3a2e-8f9c-4a51-9d1e-"
	                     "2c3b4a5d6e7f",
	                     NULL, NULL, NULL, &r),
	    405);
	assert_string_equal(r.allow, "GET, PATCH, DELETE, HEAD");
	hv_httpc_resp_free(&r);
	/* a path id that is not a UUID cannot exist */
	expect("GET", "/v1/credentials/not-a-uuid", S.admin_key, NULL, 404,
	    "not_found");
	expect("GET", "/v1/credentials/0b6f3a2e-8f9c-4a51-9d1e-2c3b4a5d6e7f",
	    S.admin_key, NULL, 404, "not_found");
	expect(
	    "DELETE", "/v1/api-keys/123", S.admin_key, NULL, 404, "not_found");
}

static void
test_request_id(void **state)
{
	const char *const hdrs[] = {"X-Request-Id: client-chosen-id", NULL};
	struct hv_httpc_resp a, b;

	(void)state;
	req("GET", "/healthz", NULL, hdrs, NULL, &a);
	req("GET", "/healthz", NULL, NULL, NULL, &b);
	assert_string_not_equal(a.request_id, "client-chosen-id");
	assert_string_not_equal(a.request_id, b.request_id);
	hv_httpc_resp_free(&a);
	hv_httpc_resp_free(&b);
}

#define CRED_BODY                                                              \
	"{\"service\":\"stripe\",\"name\":\"Stripe live\","                    \
	"\"auth_type\":\"api_key\",\"scope\":\"workspace\","                   \
	"\"notes\":\"billing\",\"secret\":{\"key\":\"sk_live_first\"}}"

static void
test_credential_lifecycle(void **state)
{
	struct hv_httpc_resp r;
	char id[64], copy[64], path[160], p2[200];
	long denied;
	const char *const im1[] = {"If-Match: \"1\"", NULL};
	const char *const im9[] = {"If-Match: \"9\"", NULL};
	const char *const imbad[] = {"If-Match: W/\"1\"", NULL};
	const json_t *items;

	(void)state;
	/* create: 201, no secret in the answer, ETag of version 1 */
	assert_int_equal(
	    req("POST", "/v1/credentials", S.admin_key, NULL, CRED_BODY, &r),
	    201);
	(void)snprintf(id, sizeof(id), "%s", jstr(r.json, "id"));
	assert_true(hv_uuid_valid(id));
	assert_null(strstr(r.body, "sk_live_first"));
	assert_null(json_object_get(r.json, "secret"));
	assert_string_equal(r.etag, "\"1\"");
	assert_string_equal(jstr(r.json, "status"), "active");
	hv_httpc_resp_free(&r);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", id);

	/* get (also with an upper-case id), list, search, filters */
	assert_int_equal(req("GET", path, S.admin_key, NULL, NULL, &r), 200);
	assert_string_equal(jstr(r.json, "name"), "Stripe live");
	assert_string_equal(r.etag, "\"1\"");
	hv_httpc_resp_free(&r);
	{
		char up[160];
		size_t i;

		(void)snprintf(up, sizeof(up), "%s", path);
		for (i = strlen("/v1/credentials/"); up[i] != '\0'; i++)
			if (up[i] >= 'a' && up[i] <= 'f')
				up[i] = (char)(up[i] - 'a' + 'A');
		assert_int_equal(
		    req("GET", up, S.admin_key, NULL, NULL, &r), 200);
		assert_string_equal(jstr(r.json, "id"), id);
		hv_httpc_resp_free(&r);
	}
	assert_int_equal(req("GET", "/v1/credentials?q=billing&limit=10",
	                     S.admin_key, NULL, NULL, &r),
	    200);
	items = json_object_get(r.json, "items");
	assert_int_equal(json_array_size(items), 1);
	assert_true(json_object_get(r.json, "next_cursor") != NULL);
	hv_httpc_resp_free(&r);
	assert_int_equal(req("GET", "/v1/credentials?auth_type=bearer",
	                     S.admin_key, NULL, NULL, &r),
	    200);
	assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
	hv_httpc_resp_free(&r);
	expect("GET", "/v1/credentials?limit=0", S.admin_key, NULL, 400,
	    "invalid_request");
	expect("GET", "/v1/credentials?color=red", S.admin_key, NULL, 400,
	    "invalid_request");

	/* edit with If-Match: stale is 409, malformed 400, right 200 */
	assert_int_equal(
	    req("PATCH", path, S.admin_key, im9, "{\"name\":\"x\"}", &r), 409);
	assert_string_equal(hv_httpc_error_code(&r), "conflict");
	hv_httpc_resp_free(&r);
	assert_int_equal(
	    req("PATCH", path, S.admin_key, imbad, "{\"name\":\"x\"}", &r),
	    400);
	hv_httpc_resp_free(&r);
	assert_int_equal(
	    req("PATCH", path, S.admin_key, im1,
	        "{\"name\":\"Stripe prod\",\"notes\":\"billing team\"}", &r),
	    200);
	assert_string_equal(jstr(r.json, "name"), "Stripe prod");
	hv_httpc_resp_free(&r);
	expect("PATCH", path, S.admin_key, "{\"secret\":{\"key\":\"x\"}}", 400,
	    "invalid_request");
	expect("PATCH", path, S.admin_key, NULL, 400, "invalid_request");

	/* rotate: version 2; a stale If-Match is refused */
	(void)snprintf(p2, sizeof(p2), "%s/rotate", path);
	assert_int_equal(req("POST", p2, S.admin_key, im1,
	                     "{\"secret\":{\"key\":\"sk_live_second\"}}", &r),
	    200);
	assert_int_equal(
	    json_integer_value(json_object_get(r.json, "version")), 2);
	assert_string_equal(r.etag, "\"2\"");
	assert_null(strstr(r.body, "sk_live_second"));
	hv_httpc_resp_free(&r);
	assert_int_equal(req("POST", p2, S.admin_key, im1,
	                     "{\"secret\":{\"key\":\"sk_live_third\"}}", &r),
	    409);
	hv_httpc_resp_free(&r);
	expect("POST", p2, S.admin_key, NULL, 400, "invalid_request");

	/* reveal */
	(void)snprintf(p2, sizeof(p2), "%s/secret", path);
	assert_int_equal(req("GET", p2, S.admin_key, NULL, NULL, &r), 200);
	assert_string_equal(
	    jstr(json_object_get(r.json, "secret"), "key"), "sk_live_second");
	hv_httpc_resp_free(&r);

	/* revoke: test and use refuse with credential_revoked, audited */
	denied = hv_test_count_rows(&S, "auth_denied");
	(void)snprintf(p2, sizeof(p2), "%s/revoke", path);
	assert_int_equal(req("POST", p2, S.admin_key, NULL, NULL, &r), 200);
	assert_string_equal(jstr(r.json, "status"), "revoked");
	hv_httpc_resp_free(&r);
	(void)snprintf(p2, sizeof(p2), "%s/test", path);
	expect("POST", p2, S.admin_key, NULL, 409, "credential_revoked");
	expect("POST", p2, S.admin_key, "{}", 409, "credential_revoked");
	(void)snprintf(p2, sizeof(p2), "%s/use", path);
	expect("POST", p2, S.admin_key, "{\"path\":\"/v1/balance\"}", 409,
	    "credential_revoked");
	/* a relative path without its slash and a lower-case method */
	expect("POST", p2, S.admin_key,
	    "{\"method\":\"get\",\"path\":\"v1/balance\"}", 409,
	    "credential_revoked");
	assert_int_equal(hv_test_count_rows(&S, "auth_denied") - denied, 4);
	expect("POST", p2, S.admin_key, "{\"path\":\"//x\"}", 400,
	    "invalid_request");
	expect("POST", p2, S.admin_key, "{\"path\":\"https://evil.example/\"}",
	    400, "invalid_request");
	(void)snprintf(p2, sizeof(p2), "%s/unrevoke", path);
	assert_int_equal(req("POST", p2, S.admin_key, NULL, "{}", &r), 200);
	assert_string_equal(jstr(r.json, "status"), "active");
	hv_httpc_resp_free(&r);
	expect("POST", p2, S.admin_key, "{\"force\":true}", 400,
	    "invalid_request");
	/*
	 * Unrevoked: use gets past the revoked check and is refused later,
	 * before any network traffic, for overriding the injected header.
	 */
	(void)snprintf(p2, sizeof(p2), "%s/use", path);
	expect("POST", p2, S.admin_key,
	    "{\"path\":\"/v1/balance\","
	    "\"headers\":{\"Authorization\":\"Bearer x\"}}",
	    400, "invalid_request");

	/* duplicate: a new id; body optional */
	(void)snprintf(p2, sizeof(p2), "%s/duplicate", path);
	assert_int_equal(req("POST", p2, S.admin_key, NULL,
	                     "{\"name\":\"Stripe copy\"}", &r),
	    201);
	(void)snprintf(copy, sizeof(copy), "%s", jstr(r.json, "id"));
	assert_string_not_equal(copy, id);
	hv_httpc_resp_free(&r);
	expect("POST", p2, S.admin_key, NULL, 201, NULL);

	/* audit of the credential and of the workspace */
	(void)snprintf(p2, sizeof(p2), "%s/audit", path);
	assert_int_equal(req("GET", p2, S.admin_key, NULL, NULL, &r), 200);
	assert_true(json_array_size(json_object_get(r.json, "items")) >= 5);
	assert_non_null(strstr(r.body, "credential.rotate"));
	assert_non_null(strstr(r.body, "credential.reveal"));
	hv_httpc_resp_free(&r);
	assert_int_equal(req("GET", "/v1/audit?action=credential.revoke",
	                     S.admin_key, NULL, NULL, &r),
	    200);
	assert_true(json_array_size(json_object_get(r.json, "items")) >= 1);
	hv_httpc_resp_free(&r);

	/* delete: 204 without a body; then everything is 404 */
	assert_int_equal(req("DELETE", path, S.admin_key, NULL, NULL, &r), 204);
	assert_int_equal(r.len, 0);
	hv_httpc_resp_free(&r);
	expect("GET", path, S.admin_key, NULL, 404, "not_found");
	expect("DELETE", path, S.admin_key, NULL, 404, "not_found");
	(void)snprintf(p2, sizeof(p2), "%s/secret", path);
	expect("GET", p2, S.admin_key, NULL, 404, "not_found");
}

static void
test_api_keys(void **state)
{
	struct hv_httpc_resp r;
	char key[160], id[64], path[120];

	(void)state;
	hv_test_mint_key(&S, NULL,
	    "{\"name\":\"reader\",\"scopes\":"
	    "[\"credentials:read\",\"apikeys:read\"]}",
	    key, sizeof(key), id, sizeof(id));
	expect("GET", "/v1/credentials", key, NULL, 200, NULL);
	assert_int_equal(
	    req("GET", "/v1/api-keys?limit=200", key, NULL, NULL, &r), 200);
	assert_null(strstr(r.body, key)); /* never the key material */
	assert_null(strstr(r.body, "\"key\""));
	assert_non_null(strstr(r.body, "last_used_at"));
	assert_non_null(strstr(r.body, id));
	hv_httpc_resp_free(&r);
	(void)snprintf(path, sizeof(path), "/v1/api-keys/%s", id);
	assert_int_equal(req("DELETE", path, S.admin_key, NULL, NULL, &r), 204);
	assert_int_equal(r.len, 0);
	hv_httpc_resp_free(&r);
	assert_int_equal(
	    req("GET", "/v1/credentials", key, NULL, NULL, &r), 401);
	assert_string_equal(hv_httpc_error_code(&r), "unauthorized");
	assert_non_null(strstr(r.www_auth, "Bearer"));
	hv_httpc_resp_free(&r);
	expect("DELETE", "/v1/api-keys/0b6f3a2e-8f9c-4a51-9d1e-2c3b4a5d6e7f",
	    S.admin_key, NULL, 404, "not_found");
	expect("POST", "/v1/api-keys", S.admin_key,
	    "{\"name\":\"x\","
	    "\"scopes\":[\"root\"]}",
	    400, "invalid_request");
}

static void
test_admin(void **state)
{
	struct hv_httpc_resp r;
	char body[96];

	(void)state;
	(void)snprintf(
	    body, sizeof(body), "{\"name\":\"team-%d\"}", (int)getpid());
	assert_int_equal(
	    req("POST", "/v1/workspaces", S.admin_key, NULL, body, &r), 201);
	assert_true(hv_uuid_valid(jstr(r.json, "id")));
	hv_httpc_resp_free(&r);
	expect("POST", "/v1/workspaces", S.admin_key, body, 409, "conflict");
	assert_int_equal(
	    req("GET", "/v1/workspaces", S.admin_key, NULL, NULL, &r), 200);
	assert_true(json_array_size(json_object_get(r.json, "items")) >= 2);
	hv_httpc_resp_free(&r);

	assert_int_equal(
	    req("POST", "/v1/admin/kek/rotate", S.admin_key, NULL, NULL, &r),
	    200);
	hv_httpc_resp_free(&r);
	assert_int_equal(
	    req("POST", "/v1/admin/rewrap", S.admin_key, NULL, "{}", &r), 200);
	assert_true(json_is_integer(json_object_get(r.json, "rewrapped")));
	assert_int_equal(
	    json_integer_value(json_object_get(r.json, "remaining")), 0);
	assert_int_equal(
	    json_integer_value(json_object_get(r.json, "kek_version")), 2);
	hv_httpc_resp_free(&r);
	expect("POST", "/v1/admin/rewrap", S.admin_key, "{\"batch\":5}", 400,
	    "invalid_request");
	assert_int_equal(
	    req("GET", "/v1/admin/status", S.admin_key, NULL, NULL, &r), 200);
	assert_true(json_is_object(r.json));
	hv_httpc_resp_free(&r);
}

static void
test_services(void **state)
{
	struct hv_httpc_resp r;
	char key[160];

	(void)state;
	/* any valid key, whatever its scopes */
	hv_test_mint_key(&S, NULL,
	    "{\"name\":\"auditor\",\"scopes\":"
	    "[\"audit:read\"]}",
	    key, sizeof(key), NULL, 0);
	assert_int_equal(req("GET", "/v1/services", key, NULL, NULL, &r), 200);
	assert_true(json_array_size(json_object_get(r.json, "items")) > 5);
	assert_non_null(strstr(r.body, "stripe"));
	/* bigger than the serializer's first buffers (http.c dump_json) */
	assert_true(r.len > 8192);
	assert_int_equal(r.body[r.len - 1], '\n');
	hv_httpc_resp_free(&r);
	expect("GET", "/v1/services", NULL, NULL, 401, "unauthorized");
}

static int
setup(void **state)
{
	(void)state;
	hv_test_server_start(&S, "httpapi", NULL);
	hv_httpc_init(&C, S.base);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	hv_httpc_release(&C);
	hv_test_server_stop(&S);
	return 0;
}

struct revealer {
	const char *path;
	int ok, bad;
	long status; /* one_reveal: the answer's status */
	bool leaked; /* one_reveal: the secret was in it */
};

/* One reveal on a connection of its own (a thread of the test). */
static void *
one_reveal(void *arg)
{
	struct revealer *t = arg;
	struct hv_httpc c;
	struct hv_httpc_resp r;

	hv_httpc_init(&c, S.base);
	hv_httpc_do(&c, "GET", t->path, S.admin_key, NULL, NULL, 0, &r);
	t->status = r.status;
	t->leaked = r.body != NULL && strstr(r.body, "sk_held_reveal") != NULL;
	hv_httpc_resp_free(&r);
	hv_httpc_release(&c);
	return NULL;
}

/* Lock requests waiting in the server's database. */

/* 25 reveals on a connection of its own; counts right answers. */
static void *
revealer_main(void *arg)
{
	struct revealer *t = arg;
	struct hv_httpc c;
	int i;

	hv_httpc_init(&c, S.base);
	for (i = 0; i < 25; i++) {
		struct hv_httpc_resp r;

		hv_httpc_do(&c, "GET", t->path, S.admin_key, NULL, NULL, 0, &r);
		if (r.status == 200 &&
		    strcmp(jstr(json_object_get(r.json, "secret"), "key"),
		        "sk_held_reveal") == 0)
			t->ok++;
		else
			t->bad++;
		hv_httpc_resp_free(&r);
	}
	hv_httpc_release(&c);
	return NULL;
}

/*
 * Reveals with group commit (the default): a reveal that finds a group
 * being written queues its audit row and its answer is held, its
 * connection suspended, until the row commits; a lone one writes its row
 * at once. 8 clients at once all get their secret and leave one audit
 * row each. When the audit row cannot be written, the answer is dropped
 * for a 500 envelope that does not carry the secret, and nothing is
 * audited: for a lone reveal, and for held ones (made deterministic by
 * holding the chain heads with a lock while the first reveal writes its
 * row, so that those behind it queue).
 */
static void
test_reveal_held(void **state)
{
	struct revealer t[8];
	pthread_t th[8];
	struct hv_httpc_resp r;
	char id[40], path[128];
	PGconn *lk;
	PGresult *res;
	long rows;
	int i, n;

	(void)state;
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":\"held reveal\","
	    "\"auth_type\":\"api_key\",\"scope\":\"workspace\","
	    "\"secret\":{\"key\":\"sk_held_reveal\"}}",
	    id, sizeof(id));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/secret", id);
	rows = hv_test_count_rows(&S, "audit_log");
	for (i = 0; i < 8; i++) {
		t[i].path = path;
		t[i].ok = t[i].bad = 0;
		assert_int_equal(
		    pthread_create(&th[i], NULL, revealer_main, &t[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(t[i].ok, 25);
		assert_int_equal(t[i].bad, 0);
	}
	assert_int_equal(hv_test_count_rows(&S, "audit_log"), rows + 200);

	/* the audit row cannot be written: no secret, nothing audited */
	hv_test_sql(&S,
	    "ALTER TABLE audit_log ADD CONSTRAINT test_no_reveal CHECK "
	    "(action <> 'credential.reveal') NOT VALID");
	rows = hv_test_count_rows(&S, "audit_log");
	if (req("GET", path, S.admin_key, NULL, NULL, &r) != 500)
		fail_msg("audit failure: got %ld %s", r.status, r.body);
	assert_null(strstr(r.body, "sk_held_reveal"));
	assert_null(json_object_get(r.json, "secret"));
	hv_httpc_resp_free(&r);
	/* held answers: the first reveal waits on the lock, 3 queue behind */
	lk = PQconnectdb(S.db.url);
	assert_int_equal(PQstatus(lk), CONNECTION_OK);
	res = PQexec(lk, "BEGIN; LOCK TABLE audit_chains IN EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	for (i = 0; i < 4; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].path = path;
		assert_int_equal(
		    pthread_create(&th[i], NULL, one_reveal, &t[i]), 0);
		for (n = 0; i == 0 && n < 1000 && hv_test_lock_waits(lk) == 0;
		     n++)
			usleep(10000);
	}
	/*
	 * The writer thread waits on the lock too only once it took queued
	 * rows: two waiting lock requests prove answers are held.
	 */
	for (n = 0; n < 1000 && hv_test_lock_waits(lk) < 2; n++)
		usleep(10000);
	assert_true(hv_test_lock_waits(lk) >= 2);
	/* the three behind the first are held answers (/metrics) */
	for (n = 0;
	     n < 1000 && hv_test_metric(&S, "hsmvault_http_held_answers") < 3;
	     n++)
		usleep(10000);
	assert_int_equal(hv_test_metric(&S, "hsmvault_http_held_answers"), 3);
	res = PQexec(lk, "COMMIT");
	PQclear(res);
	PQfinish(lk);
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(t[i].status, 500);
		assert_false(t[i].leaked);
	}
	assert_int_equal(hv_test_count_rows(&S, "audit_log"), rows);
	assert_int_equal(hv_test_metric(&S, "hsmvault_http_held_answers"), 0);
	hv_test_sql(&S, "ALTER TABLE audit_log DROP CONSTRAINT test_no_reveal");
	assert_int_equal(req("GET", path, S.admin_key, NULL, NULL, &r), 200);
	assert_string_equal(
	    jstr(json_object_get(r.json, "secret"), "key"), "sk_held_reveal");
	hv_httpc_resp_free(&r);
	assert_int_equal(hv_test_count_rows(&S, "audit_log"), rows + 1);
}

/*
 * A /metrics figure ("\nNAME VALUE"), -1 when absent. On a connection of
 * its own: the test's shared one may belong to a worker thread that a
 * test holds up on a lock (each libmicrohttpd thread serves the
 * connections it accepted).
 */

struct creator {
	const char *name; /* one_create: the credential's name */
	int who;          /* creator_main: the names' prefix */
	int ok, bad;
	long status;
	char code[64];
};

/* A create's body (names here need no escaping); free() it. */
static char *
create_body(const char *name)
{
	char *b = malloc(512);

	assert_non_null(b);
	(void)snprintf(b, 512,
	    "{\"service\":\"stripe\",\"name\":\"%s\","
	    "\"auth_type\":\"api_key\",\"scope\":\"workspace\","
	    "\"secret\":{\"key\":\"sk_group_create\"}}",
	    name);
	return b;
}

/* One create on a connection of its own (a thread of the test). */
static void *
one_create(void *arg)
{
	struct creator *t = arg;
	struct hv_httpc c;
	struct hv_httpc_resp r;
	char *b = create_body(t->name);

	hv_httpc_init(&c, S.base);
	hv_httpc_do(
	    &c, "POST", "/v1/credentials", S.admin_key, NULL, b, strlen(b), &r);
	t->status = r.status;
	/* a held answer keeps its headers: ETag of version 1, request id */
	if (r.status == 201 && strcmp(jstr(r.json, "name"), t->name) == 0 &&
	    hv_uuid_valid(jstr(r.json, "id")) && strcmp(r.etag, "\"1\"") == 0 &&
	    r.request_id[0] != '\0' &&
	    json_object_get(r.json, "secret") == NULL)
		t->ok++;
	(void)snprintf(t->code, sizeof(t->code), "%s",
	    jstr(json_object_get(r.json, "error"), "code"));
	hv_httpc_resp_free(&r);
	hv_httpc_release(&c);
	free(b);
	return NULL;
}

/* 25 creates on a connection of its own; counts right answers. */
static void *
creator_main(void *arg)
{
	struct creator *t = arg;
	struct hv_httpc c;
	char name[64];
	int i;

	hv_httpc_init(&c, S.base);
	for (i = 0; i < 25; i++) {
		struct hv_httpc_resp r;
		char *b;

		(void)snprintf(name, sizeof(name), "group %d-%d", t->who, i);
		b = create_body(name);
		hv_httpc_do(&c, "POST", "/v1/credentials", S.admin_key, NULL, b,
		    strlen(b), &r);
		if (r.status == 201 &&
		    strcmp(jstr(r.json, "name"), name) == 0 &&
		    json_integer_value(json_object_get(r.json, "version")) ==
		        1 &&
		    strcmp(r.etag, "\"1\"") == 0 &&
		    hv_uuid_valid(jstr(r.json, "id")))
			t->ok++;
		else
			t->bad++;
		hv_httpc_resp_free(&r);
		free(b);
	}
	hv_httpc_release(&c);
	return NULL;
}

/*
 * Hold the credentials table with a lock, start creates named names[0..n-1]
 * one after the other, and release the lock once they are all in the
 * server: names[0] waits on the lock on its worker thread (a lone
 * create), names[1] goes to the writer thread, which waits on the lock
 * too (two waiting lock requests), and names[2..] queue behind it and form
 * one group: the lock goes once all but the first are held answers
 * (/metrics). Each gets its status in t[i].
 */
static void
held_creates(const char *const *names, int n, struct creator *t)
{
	pthread_t th[8];
	PGconn *lk;
	PGresult *res;
	long held;
	int i, k;

	assert_true(n >= 3 && n <= 8);
	lk = PQconnectdb(S.db.url);
	assert_int_equal(PQstatus(lk), CONNECTION_OK);
	res = PQexec(lk, "BEGIN; LOCK TABLE credentials IN EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	held = hv_test_metric(&S, "hsmvault_http_held_answers");
	assert_true(held >= 0);
	for (i = 0; i < n; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].name = names[i];
		assert_int_equal(
		    pthread_create(&th[i], NULL, one_create, &t[i]), 0);
		for (k = 0; i < 2 && k < 1000 && hv_test_lock_waits(lk) < i + 1;
		     k++)
			usleep(10000);
		assert_true(i >= 2 || hv_test_lock_waits(lk) >= i + 1);
	}
	/* every create but the first (waiting on its worker thread) is held */
	for (k = 0; k < 1000 &&
	     hv_test_metric(&S, "hsmvault_http_held_answers") < held + n - 1;
	     k++)
		usleep(10000);
	assert_int_equal(
	    hv_test_metric(&S, "hsmvault_http_held_answers"), held + n - 1);
	res = PQexec(lk, "COMMIT");
	PQclear(res);
	PQfinish(lk);
	for (i = 0; i < n; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
}

/* The first value of a test-only query on the server's database. */
static long
db_long(const char *sql)
{
	PGconn *c = PQconnectdb(S.db.url);
	long n;

	assert_int_equal(PQstatus(c), CONNECTION_OK);
	n = hv_test_db_long(c, sql);
	PQfinish(c);
	return n;
}

/* Rows of audit_log for credential.create with this name's credential. */
static long
create_rows(const char *name)
{
	char sql[256];

	(void)snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM audit_log a JOIN credentials c ON "
	    "c.id = a.credential_id WHERE a.action = 'credential.create' "
	    "AND c.name = '%s'",
	    name);
	return db_long(sql);
}

/*
 * Creates with group commit (the default): a create that finds others
 * queued or being written is queued, and its answer held until the group
 * that holds it commits. 8 clients at once each get 201 with their own
 * row, and leave one credential and one audit row each. A group that
 * fails (a CHECK refuses one of its credentials) is written again one
 * create at a time: the others still get 201, the refused one the same
 * answer it gets alone, and it leaves neither credential nor audit row.
 */
static void
test_create_group(void **state)
{
	static const char *const good[] = {
	    "held a", "held b", "held c", "held d", "held e"};
	static const char *const mixed[] = {
	    "mixed a", "mixed b", "mixed c", "group-bad", "mixed e"};
	struct creator t[8];
	pthread_t th[8];
	struct hv_httpc_resp r;
	long creds, rows, groups, grouped, agroups;
	char *b;
	int i;

	(void)state;
	creds = hv_test_count_rows(&S, "credentials");
	rows = hv_test_count_rows(&S, "audit_log");
	for (i = 0; i < 8; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].who = i;
		assert_int_equal(
		    pthread_create(&th[i], NULL, creator_main, &t[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(t[i].ok, 25);
		assert_int_equal(t[i].bad, 0);
	}
	assert_int_equal(hv_test_count_rows(&S, "credentials"), creds + 200);
	assert_int_equal(hv_test_count_rows(&S, "audit_log"), rows + 200);
	assert_int_equal(
	    db_long("SELECT count(*) FROM credentials c WHERE "
	            "c.name LIKE 'group %' AND NOT EXISTS (SELECT 1 "
	            "FROM credential_versions v WHERE "
	            "v.credential_id = c.id AND v.version = 1)"),
	    0);

	/* a group of three, made deterministic with a lock */
	groups = hv_test_metric(&S, "hsmvault_create_group_commits_total");
	grouped = hv_test_metric(&S, "hsmvault_create_grouped_total");
	agroups = hv_test_metric(&S, "hsmvault_audit_group_commits_total");
	assert_true(groups >= 0 && grouped >= 0 && agroups >= 0);
	held_creates(good, 5, t);
	for (i = 0; i < 5; i++) {
		assert_int_equal(t[i].status, 201);
		assert_int_equal(t[i].ok, 1);
		assert_int_equal(create_rows(good[i]), 1);
	}
	assert_int_equal(
	    hv_test_metric(&S, "hsmvault_create_group_commits_total"),
	    groups + 2);
	assert_int_equal(
	    hv_test_metric(&S, "hsmvault_create_grouped_total"), grouped + 4);
	/* the group of three appended its audit rows with one statement */
	assert_true(hv_test_metric(&S, "hsmvault_audit_group_commits_total") >=
	    agroups + 1);

	/* a group that fails is written again one create at a time */
	hv_test_sql(&S,
	    "ALTER TABLE credentials ADD CONSTRAINT test_no_bad CHECK "
	    "(name <> 'group-bad') NOT VALID");
	b = create_body("group-bad");
	memset(&t[7], 0, sizeof(t[7]));
	t[7].status = req("POST", "/v1/credentials", S.admin_key, NULL, b, &r);
	(void)snprintf(t[7].code, sizeof(t[7].code), "%s",
	    jstr(json_object_get(r.json, "error"), "code"));
	hv_httpc_resp_free(&r);
	free(b);
	assert_true(t[7].status >= 400 && t[7].status < 600);
	rows = hv_test_count_rows(&S, "audit_log");
	held_creates(mixed, 5, t);
	for (i = 0; i < 5; i++) {
		if (i == 3) {
			assert_int_equal(t[i].status, t[7].status);
			assert_string_equal(t[i].code, t[7].code);
			continue;
		}
		assert_int_equal(t[i].status, 201);
		assert_int_equal(t[i].ok, 1);
		assert_int_equal(create_rows(mixed[i]), 1);
	}
	assert_int_equal(db_long("SELECT count(*) FROM credentials WHERE "
	                         "name = 'group-bad'"),
	    0);
	assert_int_equal(hv_test_count_rows(&S, "audit_log"), rows + 4);
	assert_int_equal(hv_test_metric(&S, "hsmvault_http_held_answers"), 0);
	hv_test_sql(&S, "ALTER TABLE credentials DROP CONSTRAINT test_no_bad");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_health),
	    cmocka_unit_test(test_routing),
	    cmocka_unit_test(test_request_id),
	    cmocka_unit_test(test_credential_lifecycle),
	    cmocka_unit_test(test_api_keys),
	    cmocka_unit_test(test_admin),
	    cmocka_unit_test(test_services),
	    cmocka_unit_test(test_reveal_held),
	    cmocka_unit_test(test_create_group),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
