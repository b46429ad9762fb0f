/*
 * test_httpreq: the pure request validation of the HTTP API (httpreq.c):
 * UTF-8 and header text, URL unescaping, route matching and 405 Allow
 * lists, query parameters, If-Match, Content-Type, strict JSON bodies and
 * the body of POST .../use. Every accept has its refusals next to it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"
#include "httpreq.h"

#define U8(s) hv_httpreq_utf8_valid((s), sizeof(s) - 1)

static void
test_utf8(void **state)
{
	(void)state;
	assert_true(U8(""));
	assert_true(U8("plain ascii"));
	assert_true(U8("caf\xc3\xa9"));      /* é */
	assert_true(U8("\xe2\x82\xac"));     /* € */
	assert_true(U8("\xf0\x9f\x94\x91")); /* 🔑 */
	assert_true(U8("\xf4\x8f\xbf\xbf")); /* U+10FFFF */
	assert_false(U8("\xc3"));            /* truncated */
	assert_false(U8("\xe2\x82"));
	assert_false(U8("\x80"));             /* lone continuation */
	assert_false(U8("\xc0\xaf"));         /* overlong '/' */
	assert_false(U8("\xe0\x80\xaf"));     /* overlong */
	assert_false(U8("\xf0\x80\x80\xaf")); /* overlong */
	assert_false(U8("\xed\xa0\x80"));     /* surrogate D800 */
	assert_false(U8("\xf4\x90\x80\x80")); /* > U+10FFFF */
	assert_false(U8("\xff"));
	assert_false(U8("ok\xc3(")); /* bad continuation */
}

static void
test_text_ok(void **state)
{
	(void)state;
	assert_true(hv_httpreq_text_ok("Bearer abc", 10));
	assert_true(hv_httpreq_text_ok("a\tb", 3));
	assert_true(hv_httpreq_text_ok("caf\xc3\xa9", 5));
	assert_false(hv_httpreq_text_ok("a\0b", 3));
	assert_false(hv_httpreq_text_ok("a\nb", 3));
	assert_false(hv_httpreq_text_ok("a\rb", 3));
	assert_false(hv_httpreq_text_ok("a\x7f", 2));
	assert_false(hv_httpreq_text_ok("a\x1b[31m", 6));
	assert_false(hv_httpreq_text_ok("\xff", 1));
	assert_false(hv_httpreq_text_ok(NULL, 0));
}

static void
test_unescape(void **state)
{
	char s[64];

	(void)state;
	(void)snprintf(s, sizeof(s), "/v1/a%%20b%%2Fc");
	assert_int_equal(hv_httpreq_unescape(s), strlen("/v1/a b/c"));
	assert_string_equal(s, "/v1/a b/c");
	(void)snprintf(s, sizeof(s), "x%%00y"); /* NUL never decoded */
	assert_int_equal(hv_httpreq_unescape(s), 3);
	assert_string_equal(s, "x\xffy");
	assert_false(hv_httpreq_text_ok(s, 3));
	(void)snprintf(s, sizeof(s), "%%4%%zz%%"); /* malformed kept */
	hv_httpreq_unescape(s);
	assert_string_equal(s, "%4%zz%");
	(void)snprintf(s, sizeof(s), "%%c3%%A9");
	hv_httpreq_unescape(s);
	assert_string_equal(s, "\xc3\xa9");
}

static void
test_match(void **state)
{
	struct hv_httpreq_seg caps[HV_HTTPREQ_MAX_CAPS];
	size_t n = 0;

	(void)state;
	assert_true(hv_httpreq_match("/v1/credentials", "/v1/credentials", caps,
	    HV_HTTPREQ_MAX_CAPS, &n));
	assert_int_equal(n, 0);
	assert_true(hv_httpreq_match("/v1/credentials/{id}/rotate",
	    "/v1/credentials/abc/rotate", caps, HV_HTTPREQ_MAX_CAPS, &n));
	assert_int_equal(n, 1);
	assert_int_equal(caps[0].len, 3);
	assert_memory_equal(caps[0].p, "abc", 3);
	assert_false(hv_httpreq_match("/v1/credentials", "/v1/credentials/",
	    caps, HV_HTTPREQ_MAX_CAPS, &n));
	assert_false(hv_httpreq_match("/v1/credentials", "//v1/credentials",
	    caps, HV_HTTPREQ_MAX_CAPS, &n));
	assert_false(hv_httpreq_match("/v1/credentials/{id}",
	    "/v1/credentials/", caps, HV_HTTPREQ_MAX_CAPS, &n));
	assert_false(hv_httpreq_match("/v1/credentials/{id}",
	    "/v1/credentials//", caps, HV_HTTPREQ_MAX_CAPS, &n));
	assert_false(hv_httpreq_match("/v1/credentials/{id}",
	    "/v1/credentials/a/b", caps, HV_HTTPREQ_MAX_CAPS, &n));
	assert_false(hv_httpreq_match(
	    "/healthz", "/healthzz", caps, HV_HTTPREQ_MAX_CAPS, &n));
	assert_false(hv_httpreq_match(
	    "/healthz", "/health", caps, HV_HTTPREQ_MAX_CAPS, &n));
	assert_false(
	    hv_httpreq_match("/healthz", "", caps, HV_HTTPREQ_MAX_CAPS, &n));
	assert_false(hv_httpreq_match(
	    "/healthz", "healthz", caps, HV_HTTPREQ_MAX_CAPS, &n));
}

static void
test_route_find(void **state)
{
	struct hv_httpreq_seg caps[HV_HTTPREQ_MAX_CAPS];
	const struct hv_route *tbl;
	char allow[64];
	size_t n, idx = 99, nc = 0;

	(void)state;
	tbl = hv_http_routes(&n);
	assert_int_equal(
	    hv_httpreq_route_find(tbl, n, sizeof(tbl[0]), "GET",
	        "/v1/credentials/x", &idx, caps, &nc, allow, sizeof(allow)),
	    HV_HTTPREQ_FOUND);
	assert_string_equal(tbl[idx].key.pattern, "/v1/credentials/{id}");
	assert_int_equal(nc, 1);
	assert_int_equal(
	    hv_httpreq_route_find(tbl, n, sizeof(tbl[0]), "PUT",
	        "/v1/credentials/x", &idx, caps, &nc, allow, sizeof(allow)),
	    HV_HTTPREQ_BAD_METHOD);
	assert_string_equal(allow, "GET, PATCH, DELETE");
	assert_int_equal(hv_httpreq_route_find(tbl, n, sizeof(tbl[0]), "GET",
	                     "/v1/credentials/x/nope", &idx, caps, &nc, allow,
	                     sizeof(allow)),
	    HV_HTTPREQ_NO_PATH);
	assert_int_equal(hv_httpreq_route_find(tbl, n, sizeof(tbl[0]), "get",
	                     "/healthz", &idx, caps, &nc, allow, sizeof(allow)),
	    HV_HTTPREQ_BAD_METHOD); /* methods are case-sensitive */
	assert_int_equal(
	    hv_httpreq_route_find(tbl, n, sizeof(tbl[0]), "POST",
	        "/v1/admin/kek/rotate", &idx, caps, &nc, allow, sizeof(allow)),
	    HV_HTTPREQ_FOUND);
}

#define KV(k, v)                                                               \
	{                                                                      \
		k, sizeof(k) - 1, v, (v) != NULL ? strlen(v) : 0               \
	}

static enum hv_rc
q1(const char *k, const char *v, struct hv_list_query *q)
{
	static const char *const all[] = {"q", "scope", "auth_type", "status",
	    "service", "limit", "cursor", "action", "credential_id", "since",
	    NULL};
	struct hv_httpreq_kv kv = {k, strlen(k), v, v != NULL ? strlen(v) : 0};
	struct hv_err err = {HV_OK, ""};
	enum hv_rc rc;

	rc = hv_httpreq_query(&kv, 1, all, q, &err);
	if (rc != HV_OK)
		assert_true(err.msg[0] != '\0');
	return rc;
}

static void
test_query(void **state)
{
	static const char *const page[] = {"limit", "cursor", NULL};
	struct hv_list_query q;
	struct hv_err err = {HV_OK, ""};
	struct hv_httpreq_kv two[2] = {KV("limit", "5"), KV("limit", "6")};
	struct hv_httpreq_kv nul = {"q", 1, "a\0b", 3};

	(void)state;
	assert_int_equal(q1("limit", "1", &q), HV_OK);
	assert_int_equal(q.limit, 1);
	assert_int_equal(q1("limit", "200", &q), HV_OK);
	assert_int_equal(q.limit, 200);
	assert_int_equal(q1("limit", "0", &q), HV_E_INVALID);
	assert_int_equal(q1("limit", "201", &q), HV_E_INVALID);
	assert_int_equal(q1("limit", "-1", &q), HV_E_INVALID);
	assert_int_equal(q1("limit", "+1", &q), HV_E_INVALID);
	assert_int_equal(q1("limit", "1e2", &q), HV_E_INVALID);
	assert_int_equal(q1("limit", "", &q), HV_E_INVALID);
	assert_int_equal(q1("limit", "99999999999999999999", &q), HV_E_INVALID);
	assert_int_equal(q1("limit", NULL, &q), HV_E_INVALID);
	assert_int_equal(q1("scope", "workspace", &q), HV_OK);
	assert_string_equal(q.scope, "workspace");
	assert_int_equal(q1("scope", "everyone", &q), HV_E_INVALID);
	assert_int_equal(q1("auth_type", "oauth2", &q), HV_OK);
	assert_int_equal(q1("auth_type", "kerberos", &q), HV_E_INVALID);
	assert_int_equal(q1("status", "revoked", &q), HV_OK);
	assert_int_equal(q1("status", "gone", &q), HV_E_INVALID);
	assert_int_equal(q1("service", "stripe", &q), HV_OK);
	assert_int_equal(q1("service", "Stripe'; DROP", &q), HV_E_INVALID);
	assert_int_equal(q1("action", "credential.create", &q), HV_OK);
	assert_int_equal(
	    q1("credential_id", "0b6f3a2e-8f9c-4a51-9d1e-2c3b4a5d6e7f", &q),
	    HV_OK);
	assert_int_equal(q1("credential_id", "nope", &q), HV_E_INVALID);
	assert_int_equal(q1("since", "2024-01-02T03:04:05Z", &q), HV_OK);
	assert_int_equal(q1("since", "yesterday", &q), HV_E_INVALID);
	assert_int_equal(q1("q", "caf\xc3\xa9 ' OR 1=1 --", &q), HV_OK);
	assert_int_equal(q1("q", "", &q), HV_OK);
	assert_null(q.q);
	assert_int_equal(q1("q", "\xff", &q), HV_E_INVALID);
	assert_int_equal(q1("q", "a\nb", &q), HV_E_INVALID);
	assert_int_equal(q1("cursor", "abc_DEF-123", &q), HV_OK);
	assert_int_equal(q1("cursor", "a b", &q), HV_E_INVALID);
	assert_int_equal(hv_httpreq_query(&nul, 1,
	                     (const char *const[]){"q", NULL}, &q, &err),
	    HV_E_INVALID);
	assert_int_equal(
	    hv_httpreq_query(two, 2, page, &q, &err), HV_E_INVALID);
	assert_non_null(strstr(err.msg, "repeated"));
	assert_int_equal(
	    hv_httpreq_query(two, 1, NULL, &q, &err), HV_E_INVALID);
	assert_non_null(strstr(err.msg, "unknown"));
	assert_int_equal(hv_httpreq_query(NULL, 0, NULL, &q, &err), HV_OK);
	assert_int_equal(q.limit, 0);
}

static void
test_if_match(void **state)
{
	struct hv_err err = {HV_OK, ""};
	long v = 0;

	(void)state;
	assert_int_equal(hv_httpreq_if_match(NULL, &v, &err), HV_OK);
	assert_int_equal(v, -1);
	assert_int_equal(hv_httpreq_if_match("*", &v, &err), HV_OK);
	assert_int_equal(v, -1);
	assert_int_equal(hv_httpreq_if_match("3", &v, &err), HV_OK);
	assert_int_equal(v, 3);
	assert_int_equal(hv_httpreq_if_match(" \"42\" ", &v, &err), HV_OK);
	assert_int_equal(v, 42);
	assert_int_equal(hv_httpreq_if_match("999999999", &v, &err), HV_OK);
	assert_int_equal(
	    hv_httpreq_if_match("1000000000", &v, &err), HV_E_INVALID);
	assert_int_equal(hv_httpreq_if_match("0", &v, &err), HV_E_INVALID);
	assert_int_equal(hv_httpreq_if_match("", &v, &err), HV_E_INVALID);
	assert_int_equal(hv_httpreq_if_match("\"\"", &v, &err), HV_E_INVALID);
	assert_int_equal(
	    hv_httpreq_if_match("W/\"3\"", &v, &err), HV_E_INVALID);
	assert_int_equal(
	    hv_httpreq_if_match("\"3\", \"4\"", &v, &err), HV_E_INVALID);
	assert_int_equal(hv_httpreq_if_match("-3", &v, &err), HV_E_INVALID);
	assert_int_equal(hv_httpreq_if_match("\"3", &v, &err), HV_E_INVALID);
	assert_int_equal(hv_httpreq_if_match("3abc", &v, &err), HV_E_INVALID);
}

static void
test_content_type(void **state)
{
	(void)state;
	assert_true(hv_httpreq_content_type_json("application/json"));
	assert_true(hv_httpreq_content_type_json("Application/JSON"));
	assert_true(hv_httpreq_content_type_json("application/json; "
	                                         "charset=utf-8"));
	assert_true(hv_httpreq_content_type_json("application/json;charset="
	                                         "\"UTF-8\""));
	assert_false(hv_httpreq_content_type_json(NULL));
	assert_false(hv_httpreq_content_type_json(""));
	assert_false(hv_httpreq_content_type_json("text/plain"));
	assert_false(hv_httpreq_content_type_json("application/jsonp"));
	assert_false(hv_httpreq_content_type_json("application/json-seq"));
	assert_false(hv_httpreq_content_type_json("application/json; "
	                                          "charset=latin1"));
	assert_false(hv_httpreq_content_type_json("application/json; "
	                                          "boundary=x"));
	assert_false(hv_httpreq_content_type_json("application/x-www-form-"
	                                          "urlencoded"));
	assert_false(hv_httpreq_content_type_json("multipart/form-data"));
}

static enum hv_rc
js(const char *s, size_t n, const char *const *fields, struct hv_err *err)
{
	json_t *j = NULL;
	enum hv_rc rc;

	err->msg[0] = '\0';
	rc = hv_httpreq_json(s, n, fields, &j, err);
	json_decref(j);
	return rc;
}

#define JS(lit, f, e) js((lit), sizeof(lit) - 1, (f), (e))

static void
test_json(void **state)
{
	static const char *const fields[] = {"name", "notes", NULL};
	char deep[200];
	struct hv_err err = {HV_OK, ""};
	json_t *j = (json_t *)1;
	size_t i;

	(void)state;
	assert_int_equal(hv_httpreq_json("", 0, NULL, &j, &err), HV_OK);
	assert_null(j);
	assert_int_equal(JS("{}", NULL, &err), HV_OK);
	assert_int_equal(JS(" {\"name\":\"x\"} \n", fields, &err), HV_OK);
	assert_int_equal(JS("{\"other\":1}", fields, &err), HV_E_INVALID);
	assert_non_null(strstr(err.msg, "unknown field 'other'"));
	assert_int_equal(
	    JS("{\"name\":1,\"name\":2}", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("[]", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("\"s\"", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("{} x", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("{}{}", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("{\"a\":\"\\u0000\"}", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("{\"a\":\"x\0y\"}", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("{\"a\":\"\xff\"}", NULL, &err), HV_E_INVALID);
	assert_int_equal(
	    JS("{\"a\":\"\xed\xa0\x80\"}", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("{'a':1}", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("{\"a\":1,}", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("{\"a\":NaN}", NULL, &err), HV_E_INVALID);
	assert_int_equal(JS("   ", NULL, &err), HV_E_INVALID);
	/* the message never quotes the body */
	assert_int_equal(JS("{\"secret\": hunter2}", NULL, &err), HV_E_INVALID);
	assert_null(strstr(err.msg, "hunter2"));
	assert_null(strstr(err.msg, "hunt"));
	/* depth: 32 levels pass, 33 do not; brackets in strings don't count */
	for (i = 0; i < 2; i++) {
		size_t open = i == 0 ? 31 : 32, k = 0, d;

		memset(deep, 0, sizeof(deep));
		memcpy(deep, "{\"a\":", 5);
		k = 5;
		for (d = 0; d < open; d++)
			deep[k++] = '[';
		for (d = 0; d < open; d++)
			deep[k++] = ']';
		deep[k++] = '}';
		assert_int_equal(
		    js(deep, k, NULL, &err), i == 0 ? HV_OK : HV_E_INVALID);
	}
	assert_non_null(strstr(err.msg, "deeper"));
	/* brackets inside strings do not nest */
	assert_int_equal(JS("{\"[[[[[[\":1}", NULL, &err), HV_OK);
	assert_int_equal(
	    hv_httpreq_json_syntax("{\"\\\"[[[\":1}", 11, 1, &err), HV_OK);
	assert_int_equal(
	    hv_httpreq_json_syntax("[[]]", 4, 1, &err), HV_E_INVALID);
}

#define SYN(lit) hv_httpreq_json_syntax((lit), sizeof(lit) - 1, 32, &err)

static void
test_json_syntax(void **state)
{
	struct hv_err err = {HV_OK, ""};

	(void)state;
	assert_int_equal(SYN("{}"), HV_OK);
	assert_int_equal(SYN(" [ 1 , -0 , 0.5 , 1e3 , -2E-7 , 10 ] "), HV_OK);
	assert_int_equal(SYN("{\"a\":{\"b\":[true,false,null,\"\"]}}"), HV_OK);
	assert_int_equal(SYN("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\""), HV_OK);
	assert_int_equal(SYN("\"\\ud83d\\udd11\""), HV_OK); /* pair */
	assert_int_equal(SYN(""), HV_E_INVALID);
	assert_int_equal(SYN("{"), HV_E_INVALID);
	assert_int_equal(SYN("{\"a\"}"), HV_E_INVALID);
	assert_int_equal(SYN("{\"a\":}"), HV_E_INVALID);
	assert_int_equal(SYN("{a:1}"), HV_E_INVALID);
	assert_int_equal(SYN("[1,]"), HV_E_INVALID);
	assert_int_equal(SYN("[,1]"), HV_E_INVALID);
	assert_int_equal(SYN("[1 2]"), HV_E_INVALID);
	assert_int_equal(SYN("01"), HV_E_INVALID);
	assert_int_equal(SYN("1."), HV_E_INVALID);
	assert_int_equal(SYN(".5"), HV_E_INVALID);
	assert_int_equal(SYN("1e"), HV_E_INVALID);
	assert_int_equal(SYN("+1"), HV_E_INVALID);
	assert_int_equal(SYN("-"), HV_E_INVALID);
	assert_int_equal(SYN("tru"), HV_E_INVALID);
	assert_int_equal(SYN("nul"), HV_E_INVALID);
	assert_int_equal(SYN("\"abc"), HV_E_INVALID);
	assert_int_equal(SYN("\"a\tb\""), HV_E_INVALID); /* raw tab */
	assert_int_equal(SYN("\"\\x\""), HV_E_INVALID);
	assert_int_equal(SYN("\"\\u12\""), HV_E_INVALID);
	assert_int_equal(SYN("\"\\u0000\""), HV_E_INVALID);
	assert_int_equal(SYN("\"\\udc00\""), HV_E_INVALID);
	assert_int_equal(SYN("\"\\ud800\""), HV_E_INVALID);
	assert_int_equal(SYN("\"\\ud800\\u0041\""), HV_E_INVALID);
	assert_int_equal(SYN("{}}"), HV_E_INVALID);
	assert_int_equal(SYN("[]]"), HV_E_INVALID);
	assert_int_equal(SYN("[}"), HV_E_INVALID);
	assert_int_equal(SYN("{]"), HV_E_INVALID);
	assert_int_equal(
	    hv_httpreq_json_syntax("[\0]", 3, 32, &err), HV_E_INVALID);
	assert_non_null(strstr(err.msg, "at byte 1"));
}

static enum hv_rc
use(const char *s)
{
	struct hv_err err = {HV_OK, ""};
	json_t *j = json_loads(s, 0, NULL);
	enum hv_rc rc;

	assert_non_null(j);
	rc = hv_httpreq_use_body(j, &err);
	json_decref(j);
	if (rc != HV_OK)
		assert_true(err.msg[0] != '\0');
	return rc;
}

static void
check_norm(const char *in, const char *method, const char *path)
{
	json_error_t je;
	json_t *j = json_loads(in, 0, &je), *n;

	assert_non_null(j);
	n = hv_httpreq_use_normalize(j);
	assert_non_null(n);
	if (method != NULL)
		assert_string_equal(
		    json_string_value(json_object_get(n, "method")), method);
	assert_string_equal(
	    json_string_value(json_object_get(n, "path")), path);
	json_decref(n);
	json_decref(j);
}

static void
test_use_normalize(void **state)
{
	struct hv_err err = {0};
	json_t *j, *n;

	(void)state;
	check_norm("{\"method\":\"get\",\"path\":\"v1/balance\"}", "GET",
	    "/v1/balance");
	check_norm("{\"method\":\"Post\",\"path\":\"/x\"}", "POST", "/x");
	check_norm("{\"path\":\"user?x=1\"}", NULL, "/user?x=1");
	/* escapes are left for the check to refuse */
	check_norm("{\"path\":\"http://evil.example/\"}", NULL,
	    "http://evil.example/");
	check_norm("{\"path\":\"//evil.example/\"}", NULL, "//evil.example/");
	check_norm("{\"path\":\"mailto:x\"}", NULL, "mailto:x");
	check_norm("{\"method\":\"g3t\",\"path\":\"/\"}", "g3t", "/");
	j = json_loads("{\"path\":\"http://evil.example/\"}", 0, NULL);
	n = hv_httpreq_use_normalize(j);
	assert_int_equal(hv_httpreq_use_body(n, &err), HV_E_INVALID);
	json_decref(n);
	json_decref(j);
	j = json_loads(
	    "{\"method\":\"delete\",\"path\":\"v1/x/../../y\"}", 0, NULL);
	n = hv_httpreq_use_normalize(j);
	assert_int_equal(hv_httpreq_use_body(n, &err), HV_E_INVALID);
	json_decref(n);
	json_decref(j);
	/* a non-object or missing fields come back unchanged */
	j = json_loads("{}", 0, NULL);
	n = hv_httpreq_use_normalize(j);
	assert_ptr_equal(n, j);
	json_decref(n);
	json_decref(j);
}

static void
test_use_body(void **state)
{
	(void)state;
	assert_int_equal(use("{\"path\":\"/v1/balance\"}"), HV_OK);
	assert_int_equal(
	    use("{\"method\":\"POST\",\"path\":\"/x?y=1\","
	        "\"query\":{\"a\":\"b\"},\"headers\":{\"X-Trace\":\"1\"},"
	        "\"body\":{\"k\":[1,2]}}"),
	    HV_OK);
	assert_int_equal(use("{\"path\":\"/x\",\"body\":\"raw\"}"), HV_OK);
	assert_int_equal(use("{}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"x\"}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"//evil.example/x\"}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/a/../../etc\"}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/a/..\"}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/a\\\\b\"}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/a\\r\\nHost: x\"}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/@evil\"}"), HV_E_INVALID);
	assert_int_equal(
	    use("{\"path\":\"/x\",\"method\":\"TRACE\"}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/x\",\"method\":1}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/x\",\"extra\":1}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/x\",\"headers\":{\"Host\":\"e\"}}"),
	    HV_E_INVALID);
	assert_int_equal(
	    use("{\"path\":\"/x\",\"headers\":{\"A B\":\"e\"}}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/x\",\"headers\":{\"A\":\"e\\r\\n"
	                     "B: c\"}}"),
	    HV_E_INVALID);
	assert_int_equal(
	    use("{\"path\":\"/x\",\"headers\":{\"A\":1}}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/x\",\"query\":[1]}"), HV_E_INVALID);
	assert_int_equal(use("{\"path\":\"/x\",\"body\":1}"), HV_E_INVALID);
}

static void
test_sanitize(void **state)
{
	char out[8];

	(void)state;
	hv_httpreq_sanitize(out, sizeof(out),
	    "a\nb\xff"
	    "cdefgh",
	    9);
	assert_string_equal(out, "a?b?cde");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_text_ok),
	    cmocka_unit_test(test_unescape),
	    cmocka_unit_test(test_match),
	    cmocka_unit_test(test_route_find),
	    cmocka_unit_test(test_query),
	    cmocka_unit_test(test_if_match),
	    cmocka_unit_test(test_content_type),
	    cmocka_unit_test(test_json),
	    cmocka_unit_test(test_json_syntax),
	    cmocka_unit_test(test_use_body),
	    cmocka_unit_test(test_use_normalize),
	    cmocka_unit_test(test_sanitize),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
