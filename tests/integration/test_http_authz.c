/*
 * test_http_authz: authentication and authorization over HTTP.
 *   - every route of the route table x every kind of bad key (missing,
 *     not Bearer, malformed, wrong checksum, unknown, expired, revoked):
 *     401 unauthorized with WWW-Authenticate, and nothing changes;
 *   - every route x a key holding every scope but the route's: 403;
 *   - tenancy: another workspace's key gets 404 (also on writes),
 *     personal credentials stay with their user, organization credentials
 *     are shared (read) but edited only by their own workspace;
 *   - the credential allow-list of a key: 403 outside it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "api.h"
#include "apikey.h"
#include "httpc.h"
#include "httpsrv.h"
#include "mem.h"

static struct hv_test_server S;
static struct hv_httpc C;
static char cred_id[64]; /* a workspace credential of the default ws */
static char key_id[64];  /* an API key id, for DELETE /v1/api-keys */

static const char *const all_scopes[] = {"credentials:read",
    "credentials:write", "credentials:use", "credentials:reveal",
    "apikeys:read", "apikeys:write", "audit:read", NULL};

/* The route's pattern with {id} filled in. */
static void
concrete(const struct hv_route *r, char *out, size_t cap)
{
	const char *brace = strchr(r->key.pattern, '{');
	const char *id =
	    strstr(r->key.pattern, "api-keys") != NULL ? key_id : cred_id;

	if (brace == NULL) {
		(void)snprintf(out, cap, "%s", r->key.pattern);
		return;
	}
	(void)snprintf(out, cap, "%.*s%s%s", (int)(brace - r->key.pattern),
	    r->key.pattern, id, strchr(brace, '}') + 1);
}

static const char *
route_body(const struct hv_route *r)
{
	return (r->flags & (HV_ROUTE_BODY_REQUIRED | HV_ROUTE_BODY_OPTIONAL))
	    ? "{}"
	    : NULL;
}

static long
call(const struct hv_route *r, const char *const *hdrs,
    struct hv_httpc_resp *resp)
{
	char path[256];
	const char *body = route_body(r);

	concrete(r, path, sizeof(path));
	return hv_httpc_do(&C, r->key.method, path, NULL, hdrs, body,
	    body != NULL ? strlen(body) : 0, resp);
}

static void
snapshot(long out[3])
{
	out[0] = hv_test_count_rows(&S, "credentials");
	out[1] = hv_test_count_rows(&S, "credential_versions");
	out[2] = hv_test_count_rows(&S, "api_keys");
}

static void
test_bad_keys(void **state)
{
	char revoked[160], expired[160], wrong[160], unknown[200], path[120];
	char rid[64], exp_body[200], hdr[8][300];
	const char *kinds[8];
	struct hv_secret *gen = NULL;
	struct hv_err err = {HV_OK, ""};
	const struct hv_route *routes;
	struct hv_httpc_resp r;
	long before[3], after[3];
	time_t t;
	struct tm tm;
	size_t n, i, k, nk = 0;

	(void)state;
	/* a revoked key */
	hv_test_mint_key(&S, NULL,
	    "{\"name\":\"soon revoked\",\"scopes\":"
	    "[\"admin\"]}",
	    revoked, sizeof(revoked), rid, sizeof(rid));
	(void)snprintf(path, sizeof(path), "/v1/api-keys/%s", rid);
	assert_int_equal(
	    hv_httpc_do(&C, "DELETE", path, S.admin_key, NULL, NULL, 0, &r),
	    204);
	hv_httpc_resp_free(&r);
	/* a key that expires in two seconds */
	t = time(NULL) + 2;
	gmtime_r(&t, &tm);
	(void)strftime(exp_body, sizeof(exp_body),
	    "{\"name\":\"short\","
	    "\"scopes\":[\"admin\"],\"expires_at\":\"%Y-%m-%dT%H:%M:%SZ\"}",
	    &tm);
	hv_test_mint_key(&S, NULL, exp_body, expired, sizeof(expired), NULL, 0);
	assert_int_equal(hv_httpc_do(&C, "GET", "/v1/credentials", expired,
	                     NULL, NULL, 0, &r),
	    200);
	hv_httpc_resp_free(&r);
	/* the admin key with one character changed: checksum fails */
	(void)snprintf(wrong, sizeof(wrong), "%s", S.admin_key);
	wrong[strlen(wrong) - 1] = wrong[strlen(wrong) - 1] == 'A' ? 'B' : 'A';
	/* well formed, right checksum, never issued */
	assert_int_equal(
	    hv_apikey_generate(S.cfg.apikey_prefix, &gen, &err), HV_OK);
	(void)snprintf(unknown, sizeof(unknown), "%.*s", (int)gen->len,
	    (const char *)gen->buf);
	hv_secret_free(&gen);
	sleep(3); /* `expired` is now past its expiry */

	kinds[nk++] = NULL; /* no header */
	(void)snprintf(hdr[nk], sizeof(hdr[nk]),
	    "Authorization: Basic "
	    "dXNlcjpwYXNz");
	kinds[nk] = hdr[nk];
	nk++;
	(void)snprintf(hdr[nk], sizeof(hdr[nk]),
	    "Authorization: Bearer "
	    "hv_sk_short");
	kinds[nk] = hdr[nk];
	nk++;
	(void)snprintf(
	    hdr[nk], sizeof(hdr[nk]), "Authorization: Bearer %s", wrong);
	kinds[nk] = hdr[nk];
	nk++;
	(void)snprintf(
	    hdr[nk], sizeof(hdr[nk]), "Authorization: Bearer %s", unknown);
	kinds[nk] = hdr[nk];
	nk++;
	(void)snprintf(
	    hdr[nk], sizeof(hdr[nk]), "Authorization: Bearer %s", expired);
	kinds[nk] = hdr[nk];
	nk++;
	(void)snprintf(
	    hdr[nk], sizeof(hdr[nk]), "Authorization: Bearer %s", revoked);
	kinds[nk] = hdr[nk];
	nk++;
	(void)snprintf(hdr[nk], sizeof(hdr[nk]),
	    "Authorization: Bearer %s "
	    "extra",
	    S.admin_key);
	kinds[nk] = hdr[nk];
	nk++;

	snapshot(before);
	routes = hv_http_routes(&n);
	for (i = 0; i < n; i++) {
		if (routes[i].flags & HV_ROUTE_PUBLIC)
			continue;
		for (k = 0; k < nk; k++) {
			const char *const one[] = {kinds[k], NULL};

			if (call(&routes[i], kinds[k] != NULL ? one : NULL,
			        &r) != 401)
				fail_msg("%s %s with bad key #%zu: %ld %s",
				    routes[i].key.method, routes[i].key.pattern,
				    k, r.status, r.body);
			assert_string_equal(
			    hv_httpc_error_code(&r), "unauthorized");
			assert_non_null(strstr(r.www_auth, "Bearer"));
			assert_true(r.request_id[0] != '\0');
			hv_httpc_resp_free(&r);
		}
	}
	snapshot(after);
	assert_memory_equal(before, after, sizeof(before));
}

static void
test_missing_scope(void **state)
{
	const struct hv_route *routes;
	struct hv_httpc_resp r;
	long before[3], after[3];
	size_t n, i;

	(void)state;
	snapshot(before);
	routes = hv_http_routes(&n);
	for (i = 0; i < n; i++) {
		char body[512], key[160], hdr[256];
		const char *const hdrs[] = {hdr, NULL};
		size_t used, k;

		if ((routes[i].flags & HV_ROUTE_PUBLIC) || routes[i].scope == 0)
			continue;
		/* every scope but the route's (admin implies all: never) */
		used = (size_t)snprintf(body, sizeof(body),
		    "{\"name\":\"no "
		    "%s\",\"scopes\":[",
		    routes[i].key.pattern);
		for (k = 0; all_scopes[k] != NULL; k++) {
			if (hv_scope_parse(all_scopes[k]) == routes[i].scope)
				continue;
			used += (size_t)snprintf(body + used,
			    sizeof(body) - used, "%s\"%s\"",
			    body[used - 1] == '[' ? "" : ",", all_scopes[k]);
		}
		(void)snprintf(body + used, sizeof(body) - used, "]}");
		hv_test_mint_key(&S, NULL, body, key, sizeof(key), NULL, 0);
		(void)snprintf(
		    hdr, sizeof(hdr), "Authorization: Bearer %s", key);
		if (call(&routes[i], hdrs, &r) != 403)
			fail_msg("%s %s without its scope: %ld %s",
			    routes[i].key.method, routes[i].key.pattern,
			    r.status, r.body);
		assert_string_equal(hv_httpc_error_code(&r), "forbidden");
		hv_httpc_resp_free(&r);
	}
	snapshot(after);
	/* only the keys minted above were added */
	assert_int_equal(before[0], after[0]);
	assert_int_equal(before[1], after[1]);
}

static long
get(const char *key, const char *path, struct hv_httpc_resp *r)
{
	return hv_httpc_do(&C, "GET", path, key, NULL, NULL, 0, r);
}

static void
expect(const char *method, const char *path, const char *key, const char *body,
    long status)
{
	struct hv_httpc_resp r;

	if (hv_httpc_do(&C, method, path, key, NULL, body,
	        body != NULL ? strlen(body) : 0, &r) != status)
		fail_msg("%s %s: want %ld, got %ld %s", method, path, status,
		    r.status, r.body);
	hv_httpc_resp_free(&r);
}

static void
test_tenancy(void **state)
{
	struct hv_httpc_resp r;
	char ws_b[64], body[400], key_b[160], alice[160], bob[160], nouser[160];
	char org_id[64], pers_id[64], path[160];
	const char *full =
	    "\"scopes\":[\"credentials:read\","
	    "\"credentials:write\",\"credentials:reveal\",\"credentials:use\","
	    "\"audit:read\"]";

	(void)state;
	/* workspace B and a key there */
	(void)snprintf(
	    body, sizeof(body), "{\"name\":\"tenant-b-%d\"}", (int)getpid());
	assert_int_equal(hv_httpc_do(&C, "POST", "/v1/workspaces", S.admin_key,
	                     NULL, body, strlen(body), &r),
	    201);
	(void)snprintf(ws_b, sizeof(ws_b), "%s",
	    json_string_value(json_object_get(r.json, "id")));
	hv_httpc_resp_free(&r);
	(void)snprintf(body, sizeof(body),
	    "{\"name\":\"b\",%s,"
	    "\"workspace_id\":\"%s\"}",
	    full, ws_b);
	hv_test_mint_key(&S, NULL, body, key_b, sizeof(key_b), NULL, 0);

	/* a workspace credential of A is invisible to B: 404 everywhere */
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", cred_id);
	expect("GET", path, key_b, NULL, 404);
	expect("PATCH", path, key_b, "{\"name\":\"stolen\"}", 404);
	expect("DELETE", path, key_b, NULL, 404);
	(void)snprintf(
	    path, sizeof(path), "/v1/credentials/%s/secret", cred_id);
	expect("GET", path, key_b, NULL, 404);
	(void)snprintf(
	    path, sizeof(path), "/v1/credentials/%s/rotate", cred_id);
	expect("POST", path, key_b, "{\"secret\":{\"key\":\"x\"}}", 404);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/audit", cred_id);
	expect("GET", path, key_b, NULL, 404);
	(void)snprintf(
	    path, sizeof(path), "/v1/credentials/%s/revoke", cred_id);
	expect("POST", path, key_b, NULL, 404);
	assert_int_equal(get(key_b, "/v1/credentials", &r), 200);
	assert_null(strstr(r.body, cred_id));
	hv_httpc_resp_free(&r);
	assert_int_equal(get(key_b, "/v1/audit", &r), 200);
	assert_null(strstr(r.body, cred_id));
	hv_httpc_resp_free(&r);

	/* an organization credential of A: B reads it, cannot change it */
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"github\",\"name\":"
	    "\"org token\",\"auth_type\":\"bearer\",\"scope\":\"organization\","
	    "\"secret\":{\"token\":\"ghp_org\"}}",
	    org_id, sizeof(org_id));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", org_id);
	assert_int_equal(get(key_b, path, &r), 200);
	hv_httpc_resp_free(&r);
	/* visible to B, so not 404: 403, only its own workspace changes it */
	expect("PATCH", path, key_b, "{\"name\":\"mine now\"}", 403);
	expect("DELETE", path, key_b, NULL, 403);
	assert_int_equal(get(S.admin_key, path, &r), 200);
	assert_non_null(strstr(r.body, "org token"));
	hv_httpc_resp_free(&r);

	/* personal credentials stay with their user */
	(void)snprintf(body, sizeof(body),
	    "{\"name\":\"alice\",%s,"
	    "\"user\":\"alice\"}",
	    full);
	hv_test_mint_key(&S, NULL, body, alice, sizeof(alice), NULL, 0);
	(void)snprintf(body, sizeof(body),
	    "{\"name\":\"bob\",%s,"
	    "\"user\":\"bob\"}",
	    full);
	hv_test_mint_key(&S, NULL, body, bob, sizeof(bob), NULL, 0);
	(void)snprintf(body, sizeof(body), "{\"name\":\"nouser\",%s}", full);
	hv_test_mint_key(&S, NULL, body, nouser, sizeof(nouser), NULL, 0);
	hv_test_make_cred(&S, alice,
	    "{\"service\":\"slack\",\"name\":"
	    "\"alice slack\",\"auth_type\":\"bearer\",\"scope\":\"personal\","
	    "\"secret\":{\"token\":\"xoxb-alice\"}}",
	    pers_id, sizeof(pers_id));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", pers_id);
	expect("GET", path, alice, NULL, 200);
	expect("GET", path, bob, NULL, 404);
	expect("GET", path, nouser, NULL, 404);
	expect("GET", path, key_b, NULL, 404);
	expect("DELETE", path, bob, NULL, 404);
	(void)snprintf(
	    path, sizeof(path), "/v1/credentials/%s/secret", pers_id);
	expect("GET", path, bob, NULL, 404);
	expect("GET", path, alice, NULL, 200);
	assert_int_equal(get(bob, "/v1/credentials?scope=personal", &r), 200);
	assert_null(strstr(r.body, pers_id));
	hv_httpc_resp_free(&r);
	assert_int_equal(get(alice, "/v1/credentials?scope=personal", &r), 200);
	assert_non_null(strstr(r.body, pers_id));
	hv_httpc_resp_free(&r);
}

static void
test_allow_list(void **state)
{
	char other[64], key[160], body[400], path[160];
	struct hv_httpc_resp r;
	long denied;

	(void)state;
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"other\",\"auth_type\":\"api_key\",\"scope\":\"workspace\","
	    "\"secret\":{\"key\":\"sk_other\"}}",
	    other, sizeof(other));
	(void)snprintf(body, sizeof(body),
	    "{\"name\":\"narrow\",\"scopes\":"
	    "[\"credentials:read\",\"credentials:reveal\","
	    "\"credentials:use\",\"credentials:write\"],"
	    "\"credentials\":[\"%s\"]}",
	    cred_id);
	hv_test_mint_key(&S, NULL, body, key, sizeof(key), NULL, 0);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", cred_id);
	expect("GET", path, key, NULL, 200);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", other);
	denied = hv_test_count_rows(&S, "auth_denied");
	assert_int_equal(get(key, path, &r), 403);
	assert_string_equal(hv_httpc_error_code(&r), "forbidden");
	hv_httpc_resp_free(&r);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/secret", other);
	expect("GET", path, key, NULL, 403);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", other);
	expect("POST", path, key, NULL, 403);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", other);
	expect("POST", path, key, "{\"path\":\"/v1/balance\"}", 403);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", other);
	expect("DELETE", path, key, NULL, 403);
	/* every one of the five refusals left its auth.denied row */
	assert_int_equal(hv_test_count_rows(&S, "auth_denied") - denied, 5);
	assert_int_equal(get(S.admin_key, path, &r), 200); /* still there */
	hv_httpc_resp_free(&r);
}

static int
setup(void **state)
{
	(void)state;
	hv_test_server_start(&S, "httpauthz", NULL);
	hv_httpc_init(&C, S.base);
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"main\",\"auth_type\":\"api_key\",\"scope\":\"workspace\","
	    "\"secret\":{\"key\":\"sk_main\"}}",
	    cred_id, sizeof(cred_id));
	hv_test_mint_key(&S, NULL,
	    "{\"name\":\"target\",\"scopes\":"
	    "[\"audit:read\"]}",
	    NULL, 0, key_id, sizeof(key_id));
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
	    cmocka_unit_test(test_bad_keys),
	    cmocka_unit_test(test_missing_scope),
	    cmocka_unit_test(test_tenancy),
	    cmocka_unit_test(test_allow_list),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
