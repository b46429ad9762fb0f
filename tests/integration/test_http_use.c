/*
 * test_http_use: credential test and use through the HTTP API (the
 * in-process server of tests/lib/httpsrv.h) against the stand-in provider
 * on 127.0.0.1 (tests/lib/stubprov.h): GET /v1/services, test with a good
 * and a bad token (status, account, audit), use with injection and
 * scrubbing, refusals (escapes, injected header override, private
 * targets) that send nothing, revoked and expired credentials (409 with
 * their codes), and an unreachable provider (502 upstream_error).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <unistd.h>

#include "httpc.h"
#include "httpsrv.h"
#include "mem.h"
#include "stubprov.h"
#include "uuid.h"

static struct hv_test_server S;
static struct hv_httpc C;
static struct hv_stubprov *P;

static void
check_common(const struct hv_httpc_resp *r)
{
	assert_int_equal(r->curl_rc, 0);
	if (!hv_uuid_valid(r->request_id))
		fail_msg("bad X-Request-Id '%s'", r->request_id);
	if (r->status >= 400) {
		const json_t *e = json_object_get(r->json, "error");

		if (!json_is_string(json_object_get(e, "code")) ||
		    !json_is_string(json_object_get(e, "message")))
			fail_msg("status %ld without envelope: %s", r->status,
			    r->body);
	}
}

static long
post(const char *path, const char *body, struct hv_httpc_resp *r)
{
	hv_httpc_do(&C, "POST", path, S.admin_key, NULL, body,
	    body != NULL ? strlen(body) : 0, r);
	check_common(r);
	return r->status;
}

static void
expect_post(const char *path, const char *body, long status, const char *code)
{
	struct hv_httpc_resp r;

	if (post(path, body, &r) != status)
		fail_msg("POST %s %s: want %ld, got %ld %s", path,
		    body != NULL ? body : "", status, r.status, r.body);
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

static void
cred_status(const char *id, const char *want)
{
	struct hv_httpc_resp r;
	char path[128];

	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", id);
	assert_int_equal(
	    hv_httpc_do(&C, "GET", path, S.admin_key, NULL, NULL, 0, &r), 200);
	assert_string_equal(jstr(r.json, "status"), want);
	hv_httpc_resp_free(&r);
}

static void
test_services(void **state)
{
	struct hv_httpc_resp r;
	json_t *items, *it;
	size_t i;
	bool stripe = false, shopify = false, http = false;

	(void)state;
	assert_int_equal(hv_httpc_do(&C, "GET", "/v1/services", S.admin_key,
	                     NULL, NULL, 0, &r),
	    200);
	check_common(&r);
	items = json_object_get(r.json, "items");
	assert_true(json_array_size(items) >= 20);
	json_array_foreach(items, i, it)
	{
		const char *id = jstr(it, "id");

		assert_true(json_is_array(json_object_get(it, "auth_types")));
		assert_true(json_is_object(json_object_get(it, "injection")));
		assert_non_null(json_object_get(it, "test"));
		assert_non_null(json_object_get(it, "token_url"));
		assert_non_null(json_object_get(it, "allowed_hosts"));
		if (strcmp(id, "stripe") == 0) {
			stripe = true;
			/* the configured override is what the catalog says */
			assert_string_equal(
			    jstr(it, "base_url"), hv_stubprov_url(P));
			assert_string_equal(jstr(it, "token_url"),
			    "https://dashboard.stripe.com/apikeys");
		}
		if (strcmp(id, "shopify") == 0)
			shopify = true;
		if (strcmp(id, "http") == 0)
			http = true;
	}
	assert_true(stripe && shopify && http);
	hv_httpc_resp_free(&r);
	/* any valid key; none: 401 */
	assert_int_equal(
	    hv_httpc_do(&C, "GET", "/v1/services", NULL, NULL, NULL, 0, &r),
	    401);
	hv_httpc_resp_free(&r);
}

static void
test_test_endpoint(void **state)
{
	char good[64], bad[64], path[128];
	struct hv_httpc_resp r;

	(void)state;
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"github\",\"name\":"
	    "\"gh\",\"secret\":{\"token\":\"ghp_good\"}}",
	    good, sizeof(good));
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"github\",\"name\":"
	    "\"gh-bad\",\"secret\":{\"token\":\"ghp_bad\"}}",
	    bad, sizeof(bad));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", good);
	assert_int_equal(post(path, NULL, &r), 200);
	assert_true(json_is_true(json_object_get(r.json, "ok")));
	assert_string_equal(jstr(r.json, "account"), "octocat");
	assert_true(json_is_string(json_object_get(r.json, "detail")));
	hv_httpc_resp_free(&r);
	assert_int_equal(post(path, "{}", &r), 200);
	hv_httpc_resp_free(&r);
	expect_post(path, "{\"x\":1}", 400, "invalid_request");
	cred_status(good, "active");

	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", bad);
	assert_int_equal(post(path, NULL, &r), 200);
	assert_true(json_is_false(json_object_get(r.json, "ok")));
	assert_true(json_is_null(json_object_get(r.json, "account")));
	assert_null(strstr(r.body, "ghp_bad"));
	hv_httpc_resp_free(&r);
	cred_status(bad, "failing");

	/* audited */
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/audit", bad);
	assert_int_equal(
	    hv_httpc_do(&C, "GET", path, S.admin_key, NULL, NULL, 0, &r), 200);
	assert_non_null(strstr(r.body, "credential.test"));
	hv_httpc_resp_free(&r);
}

static void
test_use_endpoint(void **state)
{
	char id[64], path[128];
	struct hv_httpc_resp r;
	json_t *echo, *last;

	(void)state;
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"st\",\"secret\":{\"key\":\"sk_test_http\"}}",
	    id, sizeof(id));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", id);
	assert_int_equal(
	    post(path,
	        "{\"method\":\"POST\",\"path\":"
	        "\"/echo/v1/"
	        "customers\",\"query\":{\"limit\":\"2\"},\"headers\":"
	        "{\"Stripe-Version\":\"2024-06-20\"},\"body\":{\"email\":"
	        "\"a@example.com\"}}",
	        &r),
	    200);
	assert_int_equal(
	    json_integer_value(json_object_get(r.json, "status")), 200);
	assert_true(json_is_object(json_object_get(r.json, "headers")));
	assert_string_equal(jstr(r.json, "body_encoding"), "utf-8");
	assert_null(strstr(r.body, "sk_test_http"));
	assert_non_null(strstr(r.body, "[REDACTED]"));
	echo = json_loads(jstr(r.json, "body"), 0, NULL);
	assert_non_null(echo);
	assert_string_equal(jstr(echo, "path"), "/echo/v1/customers");
	json_decref(echo);
	hv_httpc_resp_free(&r);
	last = hv_stubprov_last(P);
	assert_string_equal(
	    jstr(json_object_get(last, "headers"), "authorization"),
	    "Bearer sk_test_http");
	assert_string_equal(
	    jstr(json_object_get(last, "headers"), "stripe-version"),
	    "2024-06-20");
	assert_string_equal(
	    jstr(last, "body"), "{\"email\":\"a@example.com\"}");
	json_decref(last);

	/* the provider's 401: answered as is, credential failing */
	assert_int_equal(post(path, "{\"path\":\"/v1/balance\"}", &r), 200);
	assert_int_equal(
	    json_integer_value(json_object_get(r.json, "status")), 401);
	hv_httpc_resp_free(&r);
	cred_status(id, "failing");
	/* a redirect is answered, not followed */
	assert_int_equal(post(path, "{\"path\":\"/redirect\"}", &r), 200);
	assert_int_equal(
	    json_integer_value(json_object_get(r.json, "status")), 302);
	hv_httpc_resp_free(&r);
}

static void
test_refusals(void **state)
{
	static const char *const bad[] = {
	    "{\"path\":\"//evil.example.com/\"}",
	    "{\"path\":\"https://evil.example.com/\"}",
	    "{\"path\":\"/echo/../../x\"}",
	    "{\"path\":\"/echo/%2e%2e/x\"}",
	    "{\"path\":\"/echo\",\"headers\":{\"Authorization\":\"x\"}}",
	    "{\"path\":\"/echo\",\"headers\":{\"Host\":\"evil\"}}",
	    "{\"path\":\"/echo\",\"method\":\"TRACE\"}",
	    "{\"path\":\"/echo\",\"extra\":1}",
	};
	char id[64], rv[64], ex[64], down[64], priv[64], path[160], body[400];
	unsigned long before;
	size_t i;

	(void)state;
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"ref\",\"secret\":{\"key\":\"sk_test_ref\"}}",
	    id, sizeof(id));
	before = hv_stubprov_count(P);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", id);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_post(path, bad[i], 400, "invalid_request");
	assert_int_equal(hv_stubprov_count(P), before);

	/* revoked, expired */
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"rv\",\"secret\":{\"key\":\"sk_test_rv\"}}",
	    rv, sizeof(rv));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/revoke", rv);
	expect_post(path, NULL, 200, NULL);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", rv);
	expect_post(
	    path, "{\"path\":\"/v1/balance\"}", 409, "credential_revoked");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", rv);
	expect_post(path, NULL, 409, "credential_revoked");
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"ex\",\"expires_at\":\"2001-01-01T00:00:00Z\",\"secret\":{"
	    "\"key\":"
	    "\"sk_test_ex\"}}",
	    ex, sizeof(ex));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", ex);
	expect_post(
	    path, "{\"path\":\"/v1/balance\"}", 409, "credential_expired");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", ex);
	expect_post(path, NULL, 409, "credential_expired");

	/* nothing listening: 502 upstream_error */
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"http\",\"name\":"
	    "\"down\",\"base_url\":\"http://127.0.0.1:1\",\"auth_type\":"
	    "\"bearer\",\"secret\":{\"token\":\"tok_down\"}}",
	    down, sizeof(down));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", down);
	expect_post(path, "{\"path\":\"/x\"}", 502, "upstream_error");

	/* private targets refused when not allowed: 403, nothing sent */
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"stripe\",\"name\":"
	    "\"priv\",\"base_url\":\"https://127.0.0.1:%u\",\"secret\":"
	    "{\"key\":\"sk_test_priv\"}}",
	    (unsigned int)hv_stubprov_port(P));
	hv_test_make_cred(&S, S.admin_key, body, priv, sizeof(priv));
	before = hv_stubprov_count(P);
	S.cfg.allow_private_targets = false;
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", priv);
	expect_post(path, "{\"path\":\"/v1/balance\"}", 403, "forbidden");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", priv);
	expect_post(path, NULL, 403, "forbidden");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", id);
	expect_post(path, "{\"path\":\"/v1/balance\"}", 403, "forbidden");
	S.cfg.allow_private_targets = true;
	assert_int_equal(hv_stubprov_count(P), before);
}

/* One use on a client of its own (a thread), and what it got back. */
struct user {
	const char *key;   /* the API key */
	const char *id;    /* the credential */
	const char *upath; /* the provider path */
	int times;         /* uses, one after the other */
	long status;       /* hsmvault's answer to the last */
	long pstatus;      /* the provider's status in it */
	char code[64];     /* the error code of a refusal */
	int ok;            /* answers 200 with the provider's 200 */
};

static void *
user_main(void *arg)
{
	struct user *u = arg;
	struct hv_httpc c;
	struct hv_httpc_resp r;
	char path[128], body[128];
	int i;

	hv_httpc_init(&c, S.base);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", u->id);
	(void)snprintf(body, sizeof(body), "{\"path\":\"%s\"}", u->upath);
	for (i = 0; i < u->times; i++) {
		hv_httpc_do(
		    &c, "POST", path, u->key, NULL, body, strlen(body), &r);
		u->status = r.status;
		u->pstatus =
		    (long)json_integer_value(json_object_get(r.json, "status"));
		(void)snprintf(u->code, sizeof(u->code), "%s",
		    jstr(json_object_get(r.json, "error"), "code"));
		if (r.status == 200 && u->pstatus == 200)
			u->ok++;
		hv_httpc_resp_free(&r);
	}
	hv_httpc_release(&c);
	return NULL;
}

/* credential.use audit rows of credential id. */
static long
use_rows(PGconn *c, const char *id)
{
	char sql[200];

	(void)snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM audit_log WHERE action = 'credential.use' "
	    "AND credential_id = '%s'",
	    id);
	return hv_test_db_long(c, sql);
}

/*
 * Start u[0..n-1] in order while lk holds credentials locked (its
 * transaction is open): u[0]'s record is written alone and waits on its
 * worker thread; u[1] is taken alone by the writer thread, which then
 * waits too; u[2..] queue behind it, in this order, held. Then commit lk
 * and wait for every one.
 */
static void
held_uses(PGconn *lk, struct user *u, pthread_t *th, int n)
{
	long held = hv_test_metric(&S, "hsmvault_http_held_answers");
	int i, k;

	assert_true(held >= 0);
	for (i = 0; i < n; i++) {
		u[i].times = 1;
		assert_int_equal(
		    pthread_create(&th[i], NULL, user_main, &u[i]), 0);
		for (k = 0; k < 1000 &&
		     (i < 2 ? hv_test_lock_waits(lk) < i + 1
		            : hv_test_metric(&S, "hsmvault_http_held_answers") <
		                 held + i);
		     k++)
			usleep(10000);
		if (i < 2)
			assert_int_equal(hv_test_lock_waits(lk), i + 1);
		else
			assert_int_equal(
			    hv_test_metric(&S, "hsmvault_http_held_answers"),
			    held + i);
	}
	PQclear(PQexec(lk, "COMMIT"));
	for (i = 0; i < n; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_int_equal(hv_test_metric(&S, "hsmvault_http_held_answers"), 0);
}

/*
 * Use records with group commit (the default): a use whose record finds
 * others queued or being written is queued, its answer held until the
 * group that holds it commits. 8 clients at once each get their answers
 * and leave one audit row per use. In a group, each credential's status
 * is the one its last use in the group sets; a group whose statement
 * fails, or in which a credential is no longer visible to the key that
 * used it, is written again one record at a time, each getting the
 * answer it gets alone.
 */
static void
test_use_group(void **state)
{
	char a[64], b[64], d[64], key[160], body[256];
	struct user u[8];
	pthread_t th[8];
	PGconn *db, *lk;
	long groups, grouped, ra, rb, rd;
	int i;

	(void)state;
	db = PQconnectdb(S.db.url);
	assert_int_equal(PQstatus(db), CONNECTION_OK);
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":\"grp a\",\"secret\":{\"key\":"
	    "\"sk_test_a\"}}",
	    a, sizeof(a));
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":\"grp b\",\"secret\":{\"key\":"
	    "\"sk_test_b\"}}",
	    b, sizeof(b));
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":\"grp d\",\"secret\":{\"key\":"
	    "\"sk_test_d\"}}",
	    d, sizeof(d));

	/* 8 clients × 20 uses: every answer, every audit row */
	ra = use_rows(db, a);
	rb = use_rows(db, b);
	for (i = 0; i < 8; i++) {
		memset(&u[i], 0, sizeof(u[i]));
		u[i].key = S.admin_key;
		u[i].id = i % 2 == 0 ? a : b;
		u[i].upath = "/echo/many";
		u[i].times = 20;
		assert_int_equal(
		    pthread_create(&th[i], NULL, user_main, &u[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(u[i].ok, 20);
	}
	assert_int_equal(use_rows(db, a), ra + 80);
	assert_int_equal(use_rows(db, b), rb + 80);

	/*
	 * A group of four, made deterministic with a lock: in queue order
	 * a 200, b 401, a 401, b 200; a ends failing and b active.
	 */
	groups = hv_test_metric(&S, "hsmvault_use_group_commits_total");
	grouped = hv_test_metric(&S, "hsmvault_use_grouped_total");
	assert_true(groups >= 0 && grouped >= 0);
	ra = use_rows(db, a);
	rb = use_rows(db, b);
	rd = use_rows(db, d);
	lk = PQconnectdb(S.db.url);
	assert_int_equal(PQstatus(lk), CONNECTION_OK);
	PQclear(PQexec(lk, "BEGIN; LOCK TABLE credentials IN EXCLUSIVE MODE"));
	memset(u, 0, sizeof(u));
	for (i = 0; i < 6; i++)
		u[i].key = S.admin_key;
	u[0].id = d, u[0].upath = "/echo/lone";
	u[1].id = d, u[1].upath = "/echo/writer";
	u[2].id = a, u[2].upath = "/echo/first";
	u[3].id = b, u[3].upath = "/v1/balance";
	u[4].id = a, u[4].upath = "/v1/balance";
	u[5].id = b, u[5].upath = "/echo/last";
	held_uses(lk, u, th, 6);
	PQfinish(lk);
	for (i = 0; i < 6; i++) {
		assert_int_equal(u[i].status, 200);
		assert_int_equal(u[i].pstatus, i == 3 || i == 4 ? 401 : 200);
	}
	assert_int_equal(
	    hv_test_metric(&S, "hsmvault_use_group_commits_total"), groups + 2);
	assert_int_equal(
	    hv_test_metric(&S, "hsmvault_use_grouped_total"), grouped + 5);
	assert_int_equal(use_rows(db, a), ra + 2);
	assert_int_equal(use_rows(db, b), rb + 2);
	assert_int_equal(use_rows(db, d), rd + 2);
	cred_status(a, "failing");
	cred_status(b, "active");
	cred_status(d, "active");

	/*
	 * A group whose statement fails (a CHECK refuses d's last_used_at)
	 * is written again one record at a time: a and b still get 200,
	 * d the answer it gets alone, and no audit row.
	 */
	hv_test_sql(&S,
	    "ALTER TABLE credentials ADD CONSTRAINT test_no_use CHECK "
	    "(name <> 'grp d' OR last_used_at IS NULL "
	    "OR last_used_at < '2000-01-01') NOT VALID");
	memset(&u[7], 0, sizeof(u[7]));
	u[7].key = S.admin_key, u[7].id = d, u[7].upath = "/echo/alone";
	u[7].times = 1;
	(void)user_main(&u[7]);
	assert_true(u[7].status >= 400);
	ra = use_rows(db, a);
	rb = use_rows(db, b);
	rd = use_rows(db, d);
	lk = PQconnectdb(S.db.url);
	PQclear(PQexec(lk, "BEGIN; LOCK TABLE credentials IN EXCLUSIVE MODE"));
	memset(u, 0, 5 * sizeof(u[0]));
	for (i = 0; i < 5; i++)
		u[i].key = S.admin_key, u[i].upath = "/echo/fallback";
	u[0].id = u[1].id = a;
	u[2].id = b, u[3].id = d, u[4].id = a;
	held_uses(lk, u, th, 5);
	PQfinish(lk);
	for (i = 0; i < 5; i++) {
		if (i == 3) {
			assert_int_equal(u[i].status, u[7].status);
			assert_string_equal(u[i].code, u[7].code);
			continue;
		}
		assert_int_equal(u[i].status, 200);
	}
	assert_int_equal(use_rows(db, a), ra + 3);
	assert_int_equal(use_rows(db, b), rb + 1);
	assert_int_equal(use_rows(db, d), rd);
	hv_test_sql(&S, "ALTER TABLE credentials DROP CONSTRAINT test_no_use");

	/*
	 * A credential made personal to another user while its use waited
	 * in a group: that use gets the 404 it gets alone, the others 200.
	 */
	(void)snprintf(body, sizeof(body),
	    "{\"name\":\"grp user\",\"scopes\":[\"credentials:read\","
	    "\"credentials:use\"],\"user\":\"carol\"}");
	hv_test_mint_key(&S, NULL, body, key, sizeof(key), NULL, 0);
	ra = use_rows(db, a);
	rb = use_rows(db, b);
	lk = PQconnectdb(S.db.url);
	(void)snprintf(body, sizeof(body),
	    "BEGIN; UPDATE credentials SET scope = 'personal', owner_user = "
	    "'dave' WHERE id = '%s'; LOCK TABLE credentials IN EXCLUSIVE MODE",
	    b);
	PQclear(PQexec(lk, body));
	memset(u, 0, 5 * sizeof(u[0]));
	for (i = 0; i < 5; i++)
		u[i].key = key, u[i].id = a, u[i].upath = "/echo/moved";
	u[3].id = b;
	held_uses(lk, u, th, 5);
	PQfinish(lk);
	for (i = 0; i < 5; i++)
		assert_int_equal(u[i].status, i == 3 ? 404 : 200);
	assert_int_equal(use_rows(db, a), ra + 4);
	assert_int_equal(use_rows(db, b), rb);
	PQfinish(db);
}

static void
tweak(struct hv_cfg *cfg)
{
	static const char *const services[] = {"stripe", "github"};
	struct hv_err err = {0};
	char key[96];
	size_t i;

	cfg->allow_private_targets = true;
	cfg->upstream_timeout_ms = 5000;
	for (i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		(void)snprintf(
		    key, sizeof(key), "service_%s_base_url", services[i]);
		if (hv_cfg_set(cfg, key, hv_stubprov_url(P), &err) != HV_OK)
			fail_msg("%s: %s", key, err.msg);
	}
}

static int
setup(void **state)
{
	(void)state;
	hv_mem_json_init(); /* before any JSON: the stand-in makes some */
	P = hv_stubprov_start();
	hv_stubprov_accept_header(P, "Authorization", "Bearer ghp_good");
	hv_test_server_start(&S, "httpuse", tweak);
	hv_httpc_init(&C, S.base);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	hv_httpc_release(&C);
	hv_test_server_stop(&S);
	hv_stubprov_stop(&P);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_services),
	    cmocka_unit_test(test_test_endpoint),
	    cmocka_unit_test(test_use_endpoint),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_use_group),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
