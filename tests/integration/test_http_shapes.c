/*
 * test_http_shapes: regressions from a black-box review of the HTTP API
 * against SPEC section 5:
 *   - GET /v1/workspaces is a list like every other: limit and cursor,
 *     {"items", "next_cursor"};
 *   - the API key create answer carries every field of a list item
 *     (status, last_used_at, revoked_at, created_by) plus the key;
 *   - an admin key lists the API keys of every workspace ("admin implies
 *     all, across workspaces"), ?workspace_id narrows the list; another
 *     workspace's id is 403 for a key that is not admin;
 *   - HEAD is served wherever GET is, and 405 names it in Allow;
 *   - Authorization is read as RFC 9110 reads a field: surrounding
 *     whitespace and extra spaces after the scheme do not matter;
 *   - framing a proxy could read differently (two Content-Length values,
 *     a transfer coding other than chunked, Transfer-Encoding with
 *     Content-Length) is 400 at once, nothing changes, and the
 *     connection closes (no request smuggled behind it);
 *   - a refused request whose body is still coming (8 MiB, no
 *     Expect: 100-continue) gets its answer after the body is read and
 *     dropped, instead of a reset in the middle of sending: the client can
 *     read the 413 (python's http.client saw a broken pipe before).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "httpc.h"
#include "httpsrv.h"

static struct hv_test_server S;
static struct hv_httpc C;
static char ws_b[64]; /* a second workspace */

static long
req(const char *method, const char *path, const char *key, const char *body,
    struct hv_httpc_resp *r)
{
	return hv_httpc_do(&C, method, path, key, NULL, body,
	    body != NULL ? strlen(body) : 0, r);
}

static const char *
str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void
test_workspace_list_pages(void **state)
{
	struct hv_httpc_resp r;
	char path[256], cursor[128], seen[8][64];
	size_t n = 0, i, j;
	int pages = 0;

	(void)state;
	for (i = 0; i < 3; i++) {
		char body[64];

		(void)snprintf(
		    body, sizeof(body), "{\"name\":\"page-%zu\"}", i);
		assert_int_equal(
		    req("POST", "/v1/workspaces", S.admin_key, body, &r), 201);
		hv_httpc_resp_free(&r);
	}
	/* default, ws_b and page-0..2: five, two at a time */
	cursor[0] = '\0';
	for (;;) {
		const json_t *it;
		size_t k;

		(void)snprintf(path, sizeof(path), "/v1/workspaces?limit=2%s%s",
		    cursor[0] != '\0' ? "&cursor=" : "", cursor);
		assert_int_equal(req("GET", path, S.admin_key, NULL, &r), 200);
		assert_true(r.request_id[0] != '\0');
		assert_true(json_is_array(json_object_get(r.json, "items")));
		assert_non_null(json_object_get(r.json, "next_cursor"));
		assert_true(
		    json_array_size(json_object_get(r.json, "items")) <= 2);
		json_array_foreach(json_object_get(r.json, "items"), k, it)
		{
			assert_true(n < 8);
			(void)snprintf(
			    seen[n++], sizeof(seen[0]), "%s", str(it, "id"));
		}
		pages++;
		if (json_is_null(json_object_get(r.json, "next_cursor"))) {
			hv_httpc_resp_free(&r);
			break;
		}
		(void)snprintf(
		    cursor, sizeof(cursor), "%s", str(r.json, "next_cursor"));
		hv_httpc_resp_free(&r);
	}
	assert_int_equal(n, 5);
	assert_int_equal(pages, 3);
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			assert_string_not_equal(seen[i], seen[j]);
	/* bad paging input: 400, and no other parameter */
	assert_int_equal(
	    req("GET", "/v1/workspaces?cursor=garbage", S.admin_key, NULL, &r),
	    400);
	assert_string_equal(hv_httpc_error_code(&r), "invalid_request");
	hv_httpc_resp_free(&r);
	assert_int_equal(
	    req("GET", "/v1/workspaces?limit=0", S.admin_key, NULL, &r), 400);
	hv_httpc_resp_free(&r);
	assert_int_equal(
	    req("GET", "/v1/workspaces?name=x", S.admin_key, NULL, &r), 400);
	hv_httpc_resp_free(&r);
}

static void
test_apikey_create_answer(void **state)
{
	static const char *const fields[] = {"id", "name", "user", "scopes",
	    "credentials", "created_at", "expires_at", "revoked_at",
	    "last_used_at", "created_by", "workspace_id", "status", NULL};
	struct hv_httpc_resp r, l;
	const json_t *it, *item = NULL;
	char id[64];
	size_t i;

	(void)state;
	assert_int_equal(
	    req("POST", "/v1/api-keys", S.admin_key,
	        "{\"name\":\"shape\",\"scopes\":[\"credentials:read\"]}", &r),
	    201);
	for (i = 0; fields[i] != NULL; i++)
		if (json_object_get(r.json, fields[i]) == NULL)
			fail_msg("create answer lacks '%s'", fields[i]);
	assert_non_null(str(r.json, "key"));
	assert_string_equal(str(r.json, "status"), "active");
	assert_true(json_is_null(json_object_get(r.json, "last_used_at")));
	assert_true(json_is_null(json_object_get(r.json, "revoked_at")));
	assert_string_equal(str(r.json, "created_by"), "test-admin");
	(void)snprintf(id, sizeof(id), "%s", str(r.json, "id"));
	/* the list item has the same fields, without the key */
	assert_int_equal(
	    req("GET", "/v1/api-keys?limit=200", S.admin_key, NULL, &l), 200);
	json_array_foreach(json_object_get(l.json, "items"), i,
	    it) if (strcmp(str(it, "id"), id) == 0) item = it;
	assert_non_null(item);
	assert_null(json_object_get(item, "key"));
	for (i = 0; fields[i] != NULL; i++)
		assert_true(json_equal(json_object_get(item, fields[i]),
		    json_object_get(r.json, fields[i])));
	hv_httpc_resp_free(&l);
	hv_httpc_resp_free(&r);
}

/* Whether the list answer in r holds a key with this id. */
static bool
lists(const struct hv_httpc_resp *r, const char *id)
{
	const json_t *it;
	size_t i;

	json_array_foreach(json_object_get(r->json, "items"), i,
	    it) if (strcmp(str(it, "id"), id) == 0) return true;
	return false;
}

static void
test_admin_lists_every_workspace(void **state)
{
	struct hv_httpc_resp r;
	char body[256], path[256], b_id[64], b_key[160], a_id[64], a_key[160];

	(void)state;
	(void)snprintf(body, sizeof(body),
	    "{\"name\":\"in-b\",\"scopes\":"
	    "[\"apikeys:read\"],\"workspace_id\":\"%s\"}",
	    ws_b);
	hv_test_mint_key(
	    &S, NULL, body, b_key, sizeof(b_key), b_id, sizeof(b_id));
	hv_test_mint_key(&S, NULL,
	    "{\"name\":\"in-default\",\"scopes\":"
	    "[\"apikeys:read\"]}",
	    a_key, sizeof(a_key), a_id, sizeof(a_id));
	/* admin: both */
	assert_int_equal(
	    req("GET", "/v1/api-keys?limit=200", S.admin_key, NULL, &r), 200);
	assert_true(lists(&r, b_id));
	assert_true(lists(&r, a_id));
	hv_httpc_resp_free(&r);
	/* admin narrowed to workspace b */
	(void)snprintf(
	    path, sizeof(path), "/v1/api-keys?workspace_id=%s", ws_b);
	assert_int_equal(req("GET", path, S.admin_key, NULL, &r), 200);
	assert_true(lists(&r, b_id));
	assert_false(lists(&r, a_id));
	hv_httpc_resp_free(&r);
	/* a key of the default workspace: its own only */
	assert_int_equal(
	    req("GET", "/v1/api-keys?limit=200", a_key, NULL, &r), 200);
	assert_true(lists(&r, a_id));
	assert_false(lists(&r, b_id));
	hv_httpc_resp_free(&r);
	assert_int_equal(req("GET", path, a_key, NULL, &r), 403);
	assert_string_equal(hv_httpc_error_code(&r), "forbidden");
	hv_httpc_resp_free(&r);
	(void)snprintf(
	    path, sizeof(path), "/v1/api-keys?workspace_id=%s", S.workspace_id);
	assert_int_equal(req("GET", path, a_key, NULL, &r), 200);
	assert_true(lists(&r, a_id));
	hv_httpc_resp_free(&r);
	assert_int_equal(
	    req("GET", "/v1/api-keys?workspace_id=nope", S.admin_key, NULL, &r),
	    400);
	hv_httpc_resp_free(&r);
}

static void
test_head(void **state)
{
	static const char head[] = "HEAD /healthz HTTP/1.1\r\nHost: x\r\n"
	                           "Connection: close\r\n\r\n";
	struct hv_httpc_resp r;
	char out[4096];
	long st;

	(void)state;
	assert_int_equal(req("HEAD", "/healthz", NULL, NULL, &r), 200);
	assert_true(r.request_id[0] != '\0');
	assert_int_equal(r.len, 0);
	hv_httpc_resp_free(&r);
	assert_int_equal(
	    req("HEAD", "/v1/credentials", S.admin_key, NULL, &r), 200);
	assert_true(r.request_id[0] != '\0');
	hv_httpc_resp_free(&r);
	assert_int_equal(req("HEAD", "/v1/credentials", NULL, NULL, &r), 401);
	hv_httpc_resp_free(&r);
	/* on the wire: headers only */
	hv_httpc_raw(
	    S.port, head, sizeof(head) - 1, out, sizeof(out), &st, 5000);
	assert_int_equal(st, 200);
	assert_non_null(strstr(out, "X-Request-Id: "));
	assert_null(strstr(out, "\"ok\""));
	/* 405 names HEAD wherever GET is served */
	assert_int_equal(req("PUT", "/healthz", NULL, NULL, &r), 405);
	assert_string_equal(r.allow, "GET, HEAD");
	hv_httpc_resp_free(&r);
	assert_int_equal(req("PUT", "/v1/admin/rewrap", NULL, NULL, &r), 405);
	assert_string_equal(r.allow, "POST");
	hv_httpc_resp_free(&r);
}

static void
test_authorization_whitespace(void **state)
{
	char h[512];
	const char *hdrs[2] = {h, NULL};
	struct hv_httpc_resp r;

	(void)state;
	(void)snprintf(h, sizeof(h), "Authorization: Bearer   %s", S.admin_key);
	assert_int_equal(
	    hv_httpc_do(&C, "GET", "/v1/services", NULL, hdrs, NULL, 0, &r),
	    200);
	hv_httpc_resp_free(&r);
	(void)snprintf(
	    h, sizeof(h), "Authorization: Bearer %s \t", S.admin_key);
	assert_int_equal(
	    hv_httpc_do(&C, "GET", "/v1/services", NULL, hdrs, NULL, 0, &r),
	    200);
	hv_httpc_resp_free(&r);
	(void)snprintf(h, sizeof(h), "Authorization: Bearer\t%s", S.admin_key);
	assert_int_equal(
	    hv_httpc_do(&C, "GET", "/v1/services", NULL, hdrs, NULL, 0, &r),
	    200);
	hv_httpc_resp_free(&r);
	/* still refused: no key, another scheme, a key with a space in it */
	(void)snprintf(h, sizeof(h), "Authorization: Bearer   ");
	assert_int_equal(
	    hv_httpc_do(&C, "GET", "/v1/services", NULL, hdrs, NULL, 0, &r),
	    401);
	hv_httpc_resp_free(&r);
	(void)snprintf(h, sizeof(h), "Authorization: Basic %s", S.admin_key);
	assert_int_equal(
	    hv_httpc_do(&C, "GET", "/v1/services", NULL, hdrs, NULL, 0, &r),
	    401);
	hv_httpc_resp_free(&r);
	(void)snprintf(h, sizeof(h), "Authorization: Bearer %.10s %s",
	    S.admin_key, S.admin_key + 10);
	assert_int_equal(
	    hv_httpc_do(&C, "GET", "/v1/services", NULL, hdrs, NULL, 0, &r),
	    401);
	hv_httpc_resp_free(&r);
}

/* POST /v1/workspaces with raw framing headers and body. */
static long
framed(const char *framing, const char *body, char *out, size_t cap)
{
	char req[1024];
	long st = 0;
	int n;

	n = snprintf(req, sizeof(req),
	    "POST /v1/workspaces HTTP/1.1\r\n"
	    "Host: x\r\nAuthorization: Bearer %s\r\nContent-Type: "
	    "application/json\r\n%s\r\n%s",
	    S.admin_key, framing, body);
	assert_true(n > 0 && (size_t)n < sizeof(req));
	hv_httpc_raw(S.port, req, (size_t)n, out, cap, &st, 5000);
	return st;
}

static void
test_framing(void **state)
{
	/* a second request hides behind the first one's body */
	static const char smuggled[] =
	    "{\"name\":\"smug-1\"}GET /healthz "
	    "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char out[8192];
	long ws0, st;

	(void)state;
	ws0 = hv_test_count_rows(&S, "workspaces");
	st = framed("Content-Length: 17\r\nContent-Length: 5\r\n", smuggled,
	    out, sizeof(out));
	assert_int_equal(st, 400);
	assert_non_null(strstr(out, "conflicting Content-Length"));
	assert_non_null(strstr(out, "X-Request-Id: "));
	assert_null(strstr(out, "\"ok\"")); /* no second answer */
	assert_int_equal(
	    framed("Transfer-Encoding: gzip\r\n", smuggled, out, sizeof(out)),
	    400);
	assert_non_null(strstr(out, "only chunked"));
	assert_int_equal(
	    framed("Transfer-Encoding: chunked \r\n",
	        "11\r\n{\"name\":\"smug-2\"}\r\n0\r\n\r\n", out, sizeof(out)),
	    400);
	assert_int_equal(
	    framed("Transfer-Encoding: gzip, chunked\r\n",
	        "11\r\n{\"name\":\"smug-3\"}\r\n0\r\n\r\n", out, sizeof(out)),
	    400);
	assert_int_equal(framed("Transfer-Encoding: chunked\r\n"
	                        "Content-Length: 5\r\n",
	                     "11\r\n{\"name\":\"smug-4\"}\r\n0\r\n"
	                     "\r\n",
	                     out, sizeof(out)),
	    400);
	assert_non_null(strstr(out, "Transfer-Encoding and Content-Length"));
	assert_null(strstr(out, "\"ok\""));
	assert_int_equal(hv_test_count_rows(&S, "workspaces"), ws0);
	/* well-framed: equal duplicates, chunked in any case */
	assert_int_equal(framed("Content-Length: 16\r\nContent-Length: 16\r\n"
	                        "Connection: close\r\n",
	                     "{\"name\":\"frm-1\"}", out, sizeof(out)),
	    201);
	assert_int_equal(
	    framed("Transfer-Encoding: Chunked\r\n"
	           "Connection: close\r\n",
	        "10\r\n{\"name\":\"frm-2\"}\r\n0\r\n\r\n", out, sizeof(out)),
	    201);
	assert_int_equal(hv_test_count_rows(&S, "workspaces"), ws0 + 2);
}

/* Send all of buf on fd; false when the peer closed under us. */
static bool
send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/* Read one answer (headers and Content-Length body) into out; status. */
static long
read_answer(int fd, char *out, size_t cap)
{
	size_t got = 0;
	const char *end, *cl;

	out[0] = '\0';
	for (;;) {
		ssize_t n;

		end = strstr(out, "\r\n\r\n");
		cl = strstr(out, "Content-Length: ");
		if (end != NULL && cl != NULL &&
		    (size_t)(end + 4 - out) + strtoul(cl + 16, NULL, 10) <= got)
			break;
		if (got + 1 >= cap)
			return 0;
		n = recv(fd, out + got, cap - 1 - got, 0);
		if (n <= 0)
			return 0;
		got += (size_t)n;
		out[got] = '\0';
	}
	return strncmp(out, "HTTP/1.1 ", 9) == 0 ? strtol(out + 9, NULL, 10)
	                                         : 0;
}

static void
test_refusal_after_body(void **state)
{
	const size_t body = 8u * 1024 * 1024;
	static const char health[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	struct sockaddr_in sa;
	struct timeval tv = {10, 0};
	char head[512], out[4096], *req;
	size_t hl;
	int fd, n;

	(void)state;
	n = snprintf(head, sizeof(head),
	    "POST /v1/credentials HTTP/1.1\r\n"
	    "Host: x\r\nAuthorization: Bearer %s\r\nContent-Type: "
	    "application/json\r\nContent-Length: %zu\r\n\r\n",
	    S.admin_key, body);
	assert_true(n > 0 && (size_t)n < sizeof(head));
	hl = (size_t)n;
	req = malloc(hl + body);
	assert_non_null(req);
	memcpy(req, head, hl);
	memset(req + hl, ' ', body);
	req[hl] = '{';
	req[hl + body - 1] = '}';
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(S.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* the whole body goes out: nobody closes under the sender */
	assert_true(send_all(fd, req, hl + body));
	free(req);
	assert_int_equal(read_answer(fd, out, sizeof(out)), 413);
	assert_non_null(strstr(out, "X-Request-Id: "));
	assert_non_null(strstr(out, "payload_too_large"));
	/* and the connection still serves */
	assert_true(send_all(fd, health, sizeof(health) - 1));
	assert_int_equal(read_answer(fd, out, sizeof(out)), 200);
	close(fd);
}

static int
setup(void **state)
{
	struct hv_httpc_resp r;

	(void)state;
	hv_test_server_start(&S, "http_shapes", NULL);
	hv_httpc_init(&C, S.base);
	assert_int_equal(req("POST", "/v1/workspaces", S.admin_key,
	                     "{\"name\":\"team-b\"}", &r),
	    201);
	(void)snprintf(ws_b, sizeof(ws_b), "%s", str(r.json, "id"));
	hv_httpc_resp_free(&r);
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
	    cmocka_unit_test(test_workspace_list_pages),
	    cmocka_unit_test(test_apikey_create_answer),
	    cmocka_unit_test(test_admin_lists_every_workspace),
	    cmocka_unit_test(test_head),
	    cmocka_unit_test(test_authorization_whitespace),
	    cmocka_unit_test(test_framing),
	    cmocka_unit_test(test_refusal_after_body),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
