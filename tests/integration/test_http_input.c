/*
 * test_http_input: bad input never crashes the server and never changes
 * state. A battery of malformed requests (JSON syntax, wrong types,
 * unknown fields, unknown auth types, oversize bodies, wrong content
 * types, invalid UTF-8, NUL bytes, deep nesting, invalid UUIDs, SQL
 * metacharacters, bad query parameters, bad If-Match, huge and broken
 * headers) each gets a 4xx with the JSON envelope and an X-Request-Id,
 * and the credentials, credential_versions and api_keys tables hold the
 * same rows before and after. The only answers without our envelope are
 * MHD's own for requests it refuses before our code sees them (header
 * block beyond the connection memory limit, an unparsable request line).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "httpc.h"
#include "httpsrv.h"
#include "mem.h"
#include "uuid.h"

static struct hv_test_server S;
static struct hv_httpc C;
static char cred_id[64];
static char auth[256]; /* "Authorization: Bearer <admin>" */

static void
snapshot(long out[3])
{
	out[0] = hv_test_count_rows(&S, "credentials");
	out[1] = hv_test_count_rows(&S, "credential_versions");
	out[2] = hv_test_count_rows(&S, "api_keys");
}

/* A 4xx (want, or any 4xx when want == 0) with our envelope. */
static void
check_4xx(const char *what, const struct hv_httpc_resp *r, long want,
    const char *code)
{
	if (r->status < 400 || r->status > 499 ||
	    (want != 0 && r->status != want))
		fail_msg("%s: want %ld, got %ld %.200s", what, want, r->status,
		    r->body);
	if (!hv_uuid_valid(r->request_id))
		fail_msg("%s: no X-Request-Id", what);
	if (!json_is_string(
	        json_object_get(json_object_get(r->json, "error"), "message")))
		fail_msg("%s: no envelope: %.200s", what, r->body);
	if (code != NULL && strcmp(hv_httpc_error_code(r), code) != 0)
		fail_msg(
		    "%s: code %s, want %s", what, hv_httpc_error_code(r), code);
	assert_string_equal(r->cache_control, "no-store");
}

static void
bad(const char *what, const char *method, const char *path,
    const char *const *hdrs, const char *body, size_t len, long want,
    const char *code)
{
	struct hv_httpc_resp r;

	hv_httpc_do(&C, method, path, S.admin_key, hdrs, body, len, &r);
	check_4xx(what, &r, want, code);
	hv_httpc_resp_free(&r);
}

#define BADJ(what, path, body, want)                                           \
	bad((what), "POST", (path), NULL, (body), sizeof(body) - 1, (want),    \
	    (want) == 400 ? "invalid_request" : NULL)

static void
test_json_battery(void **state)
{
	long before[3], after[3];
	char path[160];

	(void)state;
	snapshot(before);
	BADJ("truncated", "/v1/credentials", "{\"service\":", 400);
	BADJ("bare word", "/v1/credentials", "{invalid}", 400);
	BADJ("array", "/v1/credentials", "[]", 400);
	BADJ("string", "/v1/credentials", "\"x\"", 400);
	BADJ("two objects", "/v1/credentials", "{}{}", 400);
	BADJ("trailing garbage", "/v1/credentials", "{} garbage", 400);
	BADJ("trailing comma", "/v1/credentials", "{\"a\":1,}", 400);
	BADJ("single quotes", "/v1/credentials", "{'service':'stripe'}", 400);
	BADJ("duplicate key", "/v1/credentials",
	    "{\"service\":\"stripe\","
	    "\"service\":\"http\"}",
	    400);
	BADJ("whitespace only", "/v1/credentials", "   ", 400);
	BADJ("NaN", "/v1/credentials", "{\"name\":NaN}", 400);
	BADJ("escaped NUL", "/v1/credentials",
	    "{\"service\":\"stripe\","
	    "\"name\":\"a\\u0000b\",\"auth_type\":\"api_key\",\"secret\":"
	    "{\"key\":\"k\"}}",
	    400);
	BADJ("raw NUL", "/v1/credentials",
	    "{\"service\":\"stripe\",\"name\":"
	    "\"a\0b\",\"auth_type\":\"api_key\",\"secret\":{\"key\":\"k\"}}",
	    400);
	BADJ("invalid utf-8", "/v1/credentials",
	    "{\"service\":\"stripe\","
	    "\"name\":\"\xc3\x28\",\"auth_type\":\"api_key\",\"secret\":"
	    "{\"key\":\"k\"}}",
	    400);
	BADJ("surrogate", "/v1/credentials",
	    "{\"service\":\"stripe\","
	    "\"name\":\"\xed\xa0\x80\",\"auth_type\":\"api_key\",\"secret\":"
	    "{\"key\":\"k\"}}",
	    400);
	BADJ("lone surrogate escape", "/v1/credentials",
	    "{\"service\":"
	    "\"stripe\",\"name\":\"\\ud800\",\"auth_type\":\"api_key\","
	    "\"secret\":{\"key\":\"k\"}}",
	    400);
	BADJ("wrong type name", "/v1/credentials",
	    "{\"service\":\"stripe\","
	    "\"name\":[1],\"auth_type\":\"api_key\",\"secret\":{\"key\":"
	    "\"k\"}}",
	    400);
	BADJ("wrong type secret", "/v1/credentials",
	    "{\"service\":\"stripe\","
	    "\"name\":\"n\",\"auth_type\":\"api_key\",\"secret\":\"k\"}",
	    400);
	BADJ("wrong secret field", "/v1/credentials",
	    "{\"service\":"
	    "\"stripe\",\"name\":\"n\",\"auth_type\":\"api_key\",\"secret\":"
	    "{\"token\":\"k\"}}",
	    400);
	BADJ("unknown field", "/v1/credentials",
	    "{\"service\":\"stripe\","
	    "\"name\":\"n\",\"auth_type\":\"api_key\",\"secret\":{\"key\":"
	    "\"k\"},\"owner\":\"mallory\"}",
	    400);
	BADJ("unknown auth type", "/v1/credentials",
	    "{\"service\":\"stripe\","
	    "\"name\":\"n\",\"auth_type\":\"kerberos\",\"secret\":{\"key\":"
	    "\"k\"}}",
	    400);
	BADJ("unknown scope", "/v1/credentials",
	    "{\"service\":\"stripe\","
	    "\"name\":\"n\",\"auth_type\":\"api_key\",\"scope\":\"world\","
	    "\"secret\":{\"key\":\"k\"}}",
	    400);
	BADJ("missing required", "/v1/credentials", "{\"name\":\"n\"}", 400);
	BADJ("api key: scopes a string", "/v1/api-keys",
	    "{\"name\":\"k\","
	    "\"scopes\":\"admin\"}",
	    400);
	BADJ("api key: unknown field", "/v1/api-keys",
	    "{\"name\":\"k\","
	    "\"scopes\":[\"audit:read\"],\"root\":true}",
	    400);
	BADJ("api key: bad allow-list id", "/v1/api-keys",
	    "{\"name\":\"k\","
	    "\"scopes\":[\"audit:read\"],\"credentials\":[\"nope\"]}",
	    400);
	BADJ("api key: bad workspace id", "/v1/api-keys",
	    "{\"name\":\"k\","
	    "\"scopes\":[\"audit:read\"],\"workspace_id\":\"1; DROP\"}",
	    400);
	BADJ("workspace: empty name", "/v1/workspaces", "{\"name\":\"\"}", 400);
	(void)snprintf(
	    path, sizeof(path), "/v1/credentials/%s/revoke", cred_id);
	BADJ("revoke with a body", path, "{\"reason\":\"x\"}", 400);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", cred_id);
	BADJ("use: no path", path, "{\"method\":\"GET\"}", 400);
	BADJ("use: absolute url", path, "{\"path\":\"https://evil/\"}", 400);
	bad("empty body where required", "POST", "/v1/credentials", NULL, NULL,
	    0, 400, "invalid_request");
	bad("body on GET", "GET", "/v1/credentials", NULL, "{\"a\":1}", 7, 400,
	    "invalid_request");
	{
		/* 10000 levels: refused before the parser recurses */
		size_t n = 20002, i;
		char *deep = malloc(n);

		assert_non_null(deep);
		for (i = 0; i < 10000; i++) {
			deep[i] = '[';
			deep[n - 2 - i] = ']';
		}
		deep[10000] = '1';
		deep[0] = '{';
		deep[n - 2] = '}';
		deep[n - 1] = '\0';
		bad("deep nesting", "POST", "/v1/credentials", NULL, deep,
		    n - 1, 400, "invalid_request");
		free(deep);
	}
	{
		char depth33[200];
		size_t k = 0, d;

		k += (size_t)snprintf(depth33, sizeof(depth33), "{\"secret\":");
		for (d = 0; d < 32; d++)
			depth33[k++] = '[';
		for (d = 0; d < 32; d++)
			depth33[k++] = ']';
		depth33[k++] = '}';
		depth33[k] = '\0';
		bad("depth 33", "POST", "/v1/credentials", NULL, depth33, k,
		    400, "invalid_request");
	}
	snapshot(after);
	assert_memory_equal(before, after, sizeof(before));
}

static void
test_size_and_type(void **state)
{
	const char *const text[] = {"Content-Type: text/plain", NULL};
	const char *const form[] = {"Content-Type: application/x-www-form-"
	                            "urlencoded",
	    NULL};
	const char *const none[] = {"Content-Type:", NULL};
	const char *const latin[] = {"Content-Type: application/json; "
	                             "charset=iso-8859-1",
	    NULL};
	const char *const utf8[] = {"Content-Type: application/json; "
	                            "charset=UTF-8",
	    NULL};
	long before[3], after[3];
	size_t big = S.cfg.max_body + 1;
	char *body;
	char raw[2048], out[4096];
	long st;
	struct hv_httpc_resp r;

	(void)state;
	snapshot(before);
	body = malloc(big + 1);
	assert_non_null(body);
	memset(body, ' ', big);
	body[0] = '{';
	body[big - 1] = '}';
	body[big] = '\0';
	bad("oversize body", "POST", "/v1/credentials", NULL, body, big, 413,
	    "payload_too_large");
	bad("oversize body, wrong type too", "POST", "/v1/credentials", text,
	    body, big, 413, "payload_too_large");
	free(body);

	bad("text/plain", "POST", "/v1/credentials", text, "{}", 2, 415,
	    "unsupported_media_type");
	bad("form", "POST", "/v1/credentials", form, "{}", 2, 415,
	    "unsupported_media_type");
	bad("no content type", "POST", "/v1/credentials", none, "{}", 2, 415,
	    "unsupported_media_type");
	bad("latin1", "POST", "/v1/credentials", latin, "{}", 2, 415,
	    "unsupported_media_type");
	/* charset=utf-8 is fine (then 400 for the empty object) */
	hv_httpc_do(
	    &C, "POST", "/v1/credentials", S.admin_key, utf8, "{}", 2, &r);
	assert_int_equal(r.status, 400);
	hv_httpc_resp_free(&r);

	/* Content-Length says too much: refused without reading the body */
	(void)snprintf(raw, sizeof(raw),
	    "POST /v1/credentials HTTP/1.1\r\n"
	    "Host: x\r\n%s\r\nContent-Type: application/json\r\n"
	    "Content-Length: 999999999\r\n\r\n{",
	    auth);
	assert_true(hv_httpc_raw(S.port, raw, strlen(raw), out, sizeof(out),
	                &st, 5000) > 0);
	assert_int_equal(st, 413);
	assert_non_null(strstr(out, "payload_too_large"));
	assert_non_null(strstr(out, "X-Request-Id: "));

	/* chunked past the limit: 413 after the body */
	{
		size_t chunk = 64 * 1024, total = 0, used = 0, cap;
		char *req;

		cap = S.cfg.max_body * 2 + 4096;
		req = malloc(cap);
		assert_non_null(req);
		used = (size_t)snprintf(req, cap,
		    "POST /v1/credentials "
		    "HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Type: application/"
		    "json\r\nTransfer-Encoding: chunked\r\nConnection: close"
		    "\r\n\r\n",
		    auth);
		while (total <= S.cfg.max_body + chunk) {
			used += (size_t)snprintf(
			    req + used, cap - used, "%zx\r\n", chunk);
			memset(req + used, ' ', chunk);
			used += chunk;
			memcpy(req + used, "\r\n", 2);
			used += 2;
			total += chunk;
		}
		used += (size_t)snprintf(req + used, cap - used, "0\r\n\r\n");
		assert_true(hv_httpc_raw(S.port, req, used, out, sizeof(out),
		                &st, 10000) > 0);
		assert_int_equal(st, 413);
		assert_non_null(strstr(out, "payload_too_large"));
		free(req);
	}
	snapshot(after);
	assert_memory_equal(before, after, sizeof(before));
}

static void
test_path_and_query(void **state)
{
	const char *const im_bad[] = {"If-Match: W/\"1\"", NULL};
	const char *const im_list[] = {"If-Match: \"1\", \"2\"", NULL};
	const char *const im_text[] = {"If-Match: latest", NULL};
	long before[3], after[3];
	char path[200];
	struct hv_httpc_resp r;

	(void)state;
	snapshot(before);
	bad("not a uuid", "GET", "/v1/credentials/abc", NULL, NULL, 0, 404,
	    "not_found");
	bad("uuid in braces", "GET",
	    "/v1/credentials/{0b6f3a2e-8f9c-4a51-"
	    "9d1e-2c3b4a5d6e7f}",
	    NULL, NULL, 0, 404, "not_found");
	bad("uuid too long", "GET",
	    "/v1/credentials/0b6f3a2e-8f9c-4a51-9d1e-"
	    "2c3b4a5d6e7f0",
	    NULL, NULL, 0, 404, "not_found");
	bad("sql in path", "GET", "/v1/credentials/1'%20OR%20'1'='1", NULL,
	    NULL, 0, 404, "not_found");
	bad("sql in path, delete", "DELETE",
	    "/v1/credentials/x';DELETE%20"
	    "FROM%20credentials;--",
	    NULL, NULL, 0, 404, "not_found");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s%%00", cred_id);
	bad("NUL after a real id", "GET", path, NULL, NULL, 0, 404,
	    "not_found");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s%%00/x", cred_id);
	bad("NUL after a real id, delete", "DELETE", path, NULL, NULL, 0, 404,
	    "not_found");
	bad("encoded slash", "GET", "/v1/credentials/..%2F..%2Fadmin", NULL,
	    NULL, 0, 404, "not_found");
	bad("unknown parameter", "GET", "/v1/credentials?owner=x", NULL, NULL,
	    0, 400, "invalid_request");
	bad("repeated parameter", "GET", "/v1/credentials?limit=1&limit=2",
	    NULL, NULL, 0, 400, "invalid_request");
	bad("limit 0", "GET", "/v1/credentials?limit=0", NULL, NULL, 0, 400,
	    "invalid_request");
	bad("limit 201", "GET", "/v1/credentials?limit=201", NULL, NULL, 0, 400,
	    "invalid_request");
	bad("limit text", "GET", "/v1/credentials?limit=ten", NULL, NULL, 0,
	    400, "invalid_request");
	bad("limit huge", "GET", "/v1/credentials?limit=18446744073709551617",
	    NULL, NULL, 0, 400, "invalid_request");
	bad("valueless", "GET", "/v1/credentials?q", NULL, NULL, 0, 400,
	    "invalid_request");
	bad("NUL in query", "GET", "/v1/credentials?q=a%00b", NULL, NULL, 0,
	    400, "invalid_request");
	bad("invalid utf-8 in query", "GET", "/v1/credentials?q=%ff%fe", NULL,
	    NULL, 0, 400, "invalid_request");
	bad("control char in query", "GET", "/v1/credentials?q=a%0Ab", NULL,
	    NULL, 0, 400, "invalid_request");
	bad("sql in enum filter", "GET",
	    "/v1/credentials?scope=x'%20OR%20"
	    "'1'='1",
	    NULL, NULL, 0, 400, "invalid_request");
	bad("bad credential_id filter", "GET", "/v1/audit?credential_id=1",
	    NULL, NULL, 0, 400, "invalid_request");
	bad("bad since", "GET", "/v1/audit?since=yesterday", NULL, NULL, 0, 400,
	    "invalid_request");
	bad("bad cursor", "GET", "/v1/credentials?cursor=zzz", NULL, NULL, 0,
	    400, "invalid_request");
	bad("query on a route without any", "GET", "/v1/services?limit=1", NULL,
	    NULL, 0, 400, "invalid_request");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", cred_id);
	bad("weak If-Match", "PATCH", path, im_bad, "{\"name\":\"x\"}", 12, 400,
	    "invalid_request");
	bad("If-Match list", "PATCH", path, im_list, "{\"name\":\"x\"}", 12,
	    400, "invalid_request");
	bad("If-Match text", "PATCH", path, im_text, "{\"name\":\"x\"}", 12,
	    400, "invalid_request");

	/* SQL metacharacters in a search are data, not SQL */
	hv_httpc_do(&C, "GET", "/v1/credentials?q=%27%20OR%20%271%27%3D%271",
	    S.admin_key, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
	hv_httpc_resp_free(&r);
	snapshot(after);
	assert_memory_equal(before, after, sizeof(before));
}

static void
test_sql_in_values(void **state)
{
	const char *name = "Robert'); DROP TABLE credentials;--";
	char body[400], id[64], path[120];
	struct hv_httpc_resp r;
	long n0;

	(void)state;
	n0 = hv_test_count_rows(&S, "credentials");
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"stripe\",\"name\":"
	    "\"%s\",\"auth_type\":\"api_key\",\"notes\":\"\\\\'; SELECT "
	    "pg_sleep(10);--\",\"secret\":{\"key\":\"'||'\"}}",
	    name);
	hv_test_make_cred(&S, S.admin_key, body, id, sizeof(id));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", id);
	hv_httpc_do(&C, "GET", path, S.admin_key, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(
	    json_string_value(json_object_get(r.json, "name")), name);
	hv_httpc_resp_free(&r);
	assert_int_equal(hv_test_count_rows(&S, "credentials"), n0 + 1);
}

static void
test_headers(void **state)
{
	char *huge, raw[1024], out[8192], hdr[64];
	const char *one[2] = {NULL, NULL};
	const char *many[210];
	static char names[200][32];
	long before[3], after[3], st;
	struct hv_httpc_resp r;
	size_t i;

	(void)state;
	snapshot(before);
	/* one 10 KB header: ours, with the envelope */
	huge = malloc(200 * 1024);
	assert_non_null(huge);
	memcpy(huge, "X-Big: ", 7);
	memset(huge + 7, 'a', 10 * 1024);
	huge[7 + 10 * 1024] = '\0';
	one[0] = huge;
	bad("10 KB header", "GET", "/v1/credentials", one, NULL, 0, 431,
	    "invalid_request");
	bad("10 KB header with a body", "POST", "/v1/credentials", one, "{}", 2,
	    431, "invalid_request");
	/* 200 headers */
	for (i = 0; i < 200; i++) {
		(void)snprintf(names[i], sizeof(names[i]), "X-H%zu: v", i);
		many[i] = names[i];
	}
	many[200] = NULL;
	bad("200 headers", "GET", "/v1/credentials", many, NULL, 0, 431,
	    "invalid_request");
	/* 150 KB: beyond MHD's connection memory, MHD answers (4xx) */
	memset(huge + 7, 'a', 150 * 1024);
	huge[7 + 150 * 1024] = '\0';
	hv_httpc_do(
	    &C, "GET", "/v1/credentials", S.admin_key, one, NULL, 0, &r);
	assert_true(r.status >= 400 && r.status < 500);
	hv_httpc_resp_free(&r);
	free(huge);
	/* a 100 KB URL */
	{
		char *url = malloc(100 * 1024 + 32);

		assert_non_null(url);
		memcpy(url, "/v1/credentials/", 16);
		memset(url + 16, 'a', 100 * 1024);
		url[16 + 100 * 1024] = '\0';
		hv_httpc_do(&C, "GET", url, S.admin_key, NULL, NULL, 0, &r);
		assert_true(r.status >= 400 && r.status < 500);
		hv_httpc_resp_free(&r);
		free(url);
	}
	/* header values: invalid UTF-8 and control characters */
	(void)snprintf(hdr, sizeof(hdr), "X-Name: caf\xe9");
	one[0] = hdr;
	bad("latin-1 header value", "GET", "/v1/credentials", one, NULL, 0, 400,
	    "invalid_request");
	(void)snprintf(raw, sizeof(raw),
	    "GET /v1/credentials HTTP/1.1\r\n"
	    "Host: x\r\n%s\r\nX-A: a\x01b\r\nConnection: close\r\n\r\n",
	    auth);
	hv_httpc_raw(S.port, raw, strlen(raw), out, sizeof(out), &st, 5000);
	assert_int_equal(st, 400);
	assert_non_null(strstr(out, "invalid_request"));
	/* a NUL inside a header line: refused one way or another */
	{
		static const char nul[] =
		    "GET /v1/credentials HTTP/1.1\r\n"
		    "Host: x\r\nX-A: a\0b\r\nConnection: close\r\n\r\n";

		hv_httpc_raw(
		    S.port, nul, sizeof(nul) - 1, out, sizeof(out), &st, 5000);
		assert_true(st >= 400 && st < 500);
	}
	/* garbage request line: MHD's own 400 */
	(void)snprintf(raw, sizeof(raw), "GARBAGE\r\n\r\n");
	hv_httpc_raw(S.port, raw, strlen(raw), out, sizeof(out), &st, 5000);
	assert_true(st == 0 || (st >= 400 && st < 500));
	/* Content-Length larger than what is sent, then hang up: no harm */
	(void)snprintf(raw, sizeof(raw),
	    "POST /v1/credentials HTTP/1.1\r\n"
	    "Host: x\r\n%s\r\nContent-Type: application/json\r\n"
	    "Content-Length: 100\r\n\r\n{\"ser",
	    auth);
	hv_httpc_raw(S.port, raw, strlen(raw), out, sizeof(out), &st, 300);
	/* the server still answers */
	hv_httpc_do(&C, "GET", "/healthz", NULL, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	hv_httpc_resp_free(&r);
	snapshot(after);
	assert_memory_equal(before, after, sizeof(before));
}

/*
 * Allocation failures one at a time (the hv_mem hook) while requests run:
 * every answer is a well-formed HTTP answer (5xx is fine), the server
 * never crashes, and it serves normally once allocations succeed again.
 */
static void
test_alloc_failures(void **state)
{
	char path[160], body[256];
	struct hv_httpc_resp r;
	long before[3], after[3];
	long n;

	(void)state;
	snapshot(before);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", cred_id);
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"stripe\",\"name\":"
	    "\"oom\",\"auth_type\":\"api_key\",\"secret\":{\"key\":\"k\"}}");
	for (n = 1; n <= 60; n++) {
		hv_mem_fail_after(n);
		hv_httpc_do(&C, "GET", path, S.admin_key, NULL, NULL, 0, &r);
		hv_mem_fail_after(0);
		if (!(r.status == 0 || r.status == 200 || r.status >= 500))
			fail_msg("GET, allocation %ld fails: %ld %s", n,
			    r.status, r.body);
		hv_httpc_resp_free(&r);
		hv_mem_fail_after(n);
		hv_httpc_do(&C, "PATCH", path, S.admin_key, NULL,
		    "{\"notes\":\"x\"}", 13, &r);
		hv_mem_fail_after(0);
		if (!(r.status == 0 || r.status == 200 || r.status >= 500))
			fail_msg("PATCH, allocation %ld fails: %ld %s", n,
			    r.status, r.body);
		hv_httpc_resp_free(&r);
	}
	hv_httpc_do(&C, "GET", path, S.admin_key, NULL, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	hv_httpc_resp_free(&r);
	snapshot(after);
	assert_memory_equal(before, after, sizeof(before));
}

static int
setup(void **state)
{
	(void)state;
	hv_test_server_start(&S, "httpinput", NULL);
	hv_httpc_init(&C, S.base);
	(void)snprintf(
	    auth, sizeof(auth), "Authorization: Bearer %s", S.admin_key);
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"main\",\"auth_type\":\"api_key\",\"scope\":\"workspace\","
	    "\"secret\":{\"key\":\"sk_main\"}}",
	    cred_id, sizeof(cred_id));
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_battery),
	    cmocka_unit_test(test_size_and_type),
	    cmocka_unit_test(test_path_and_query),
	    cmocka_unit_test(test_sql_in_values),
	    cmocka_unit_test(test_headers),
	    cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
