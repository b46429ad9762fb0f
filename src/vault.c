/*
 * vault: open/close, init and migrate, principals and scopes, visibility,
 * and API-key authentication with its verified-key cache
 * (docs/storage.md, SPEC section 3).
 *
 * Authentication hot path: the key's format and checksum are checked
 * first (no I/O); then a cache keyed by SHA-256 of the presented key holds
 * the principal of recently verified keys, so a repeat request touches
 * neither the key store nor the database. Revocation reaches the cache of
 * every instance through PostgreSQL LISTEN/NOTIFY: a background thread
 * holds its own connection, LISTENs on HV_REVOKE_CHANNEL and sends a
 * heartbeat every HEARTBEAT_MS. A cache entry older than FRESH_S is
 * trusted only while that heartbeat is recent (every notification sent
 * before a heartbeat has been read when its answer arrives), so with the
 * listener away entries live at most FRESH_S: a revoked key is refused
 * everywhere within one second either way. The same thread writes
 * last_used_at in batches about once a second.
 */
#include "vault_int.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "apikey.h"
#include "digest.h"
#include "group.h"
#include "log.h"
#include "mem.h"
#include "uuid.h"

/*
 * The verified-key cache: CACHE_SETS sets of CACHE_WAYS entries, the least
 * recently used of a full set dropped. One slot per hash (direct mapping)
 * made two busy keys that share a slot drop each other on every request,
 * a key store HMAC each; with 100 keys about one in ten shares one.
 */
#define CACHE_WAYS   4
#define CACHE_SETS   256
#define CACHE_SLOTS  (CACHE_WAYS * CACHE_SETS)
#define OVERFLOW_MAX 256
#define HEARTBEAT_MS 200
#define FLUSH_MS     1000
/* Without a recent heartbeat a cached key is trusted this long. */
#define FRESH_S 0.5
/* With one, this long (keys change only by revocation, which notifies). */
#define CACHE_MAX_S 60.0
/* auth.denied rows for well-formed keys: a token bucket per instance. */
#define DENY_RATE  50.0
#define DENY_BURST 200.0

static const char *const scope_names[] = {
    "credentials:read",
    "credentials:write",
    "credentials:use",
    "credentials:reveal",
    "apikeys:read",
    "apikeys:write",
    "audit:read",
    "admin",
};
#define NSCOPES (sizeof(scope_names) / sizeof(scope_names[0]))

static const struct hv_stmt vault_stmts[] = {
    {"vault_key_by_hmac",
        "SELECT id::text, workspace_id::text, name, user_label, scopes, "
        "credential_ids, revoked_at IS NOT NULL, "
        "expires_at IS NOT NULL AND expires_at <= now(), "
        "coalesce((extract(epoch FROM expires_at) * 1000000)::bigint, 0) "
        "FROM api_keys WHERE key_hmac = $1",
        1},
    {"vault_last_used",
        "UPDATE api_keys SET last_used_at = now() "
        "WHERE id = ANY($1::uuid[])",
        1},
    {"vault_ws_find",
        "SELECT id::text FROM workspaces WHERE id::text = lower($1) "
        "OR name = $1 ORDER BY (id::text = lower($1)) DESC LIMIT 1",
        1},
    /* to_regclass resolves the names as our statements resolve
	 * "credentials": through the search_path */
    {"vault_search_indexes",
        "SELECT count(*) FROM unnest(ARRAY['credentials_name_trgm', "
        "'credentials_service_trgm', 'credentials_notes_trgm']) AS i(n) "
        "WHERE to_regclass(i.n) IS NOT NULL",
        0},
    {"vault_ws_default",
        "SELECT id::text FROM workspaces ORDER BY (name = 'default') DESC, "
        "created_at, id LIMIT 1",
        0},
    {"vault_ws_init",
        "INSERT INTO workspaces (id, name) SELECT $1, 'default' "
        "WHERE NOT EXISTS (SELECT 1 FROM workspaces)",
        1},
    {"vault_ws_lock", "SELECT pg_advisory_xact_lock(7531468254417667)", 0},
    /* held by `init` for its whole run, released when its connection closes */
    {"vault_init_lock", "SELECT pg_advisory_lock(7531468254417669)", 0},
};

/* One verified key: the principal as of `fetched`. */
struct centry {
	bool used;
	bool dirty; /* last_used_at not yet written */
	uint8_t h[HV_SHA256_LEN];
	struct hv_principal p;
	int64_t expires_us; /* 0: never */
	double fetched;     /* monotonic seconds */
	double hit_at;      /* monotonic seconds of the last use */
};

struct akcache {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct centry slots[CACHE_SLOTS];
	char overflow[OVERFLOW_MAX][HV_UUID_STR]; /* dirty ids evicted */
	size_t noverflow;
	uint64_t gen; /* bumped by every revocation seen */
	bool listening;
	double heartbeat_at; /* monotonic time of the last heartbeat */
	bool cred_trigger;   /* sql/0003's trigger is there and enabled */
	/*
	 * Until when (hv_mono_ms) cached credential metadata may be served:
	 * set with every change of listening, heartbeat_at or cred_trigger
	 * (publish_fresh), read without the lock on every metadata read.
	 */
	_Atomic uint64_t cred_fresh_until_ms;
	bool started, stop;
	pthread_t th;
	double deny_tokens, deny_at;
	unsigned long deny_suppressed;
	unsigned long hits, misses, revocations;
};

/* ---------------------------------------------------------------- */
/* scopes, principals, visibility                                     */

unsigned int
hv_scope_parse(const char *s)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < NSCOPES; i++)
		if (strcmp(s, scope_names[i]) == 0)
			return 1u << i;
	return 0;
}

const char *
hv_scope_name(unsigned int bit)
{
	size_t i;

	for (i = 0; i < NSCOPES; i++)
		if (bit == 1u << i)
			return scope_names[i];
	return NULL;
}

unsigned int
hv_scope_all(void)
{
	return (1u << NSCOPES) - 1;
}

json_t *
hv_scopes_to_json(unsigned int scopes)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < NSCOPES; i++)
		if (scopes & (1u << i))
			json_array_append_new(a, json_string(scope_names[i]));
	return a;
}

void
hv_principal_release(struct hv_principal *p)
{
	if (p == NULL)
		return;
	hv_free(p->cred_ids);
	memset(p, 0, sizeof(*p));
}

/* Deep copy; false when out of memory (dst then released). */
static bool
principal_copy(struct hv_principal *dst, const struct hv_principal *src)
{
	*dst = *src;
	dst->cred_ids = NULL;
	if (src->n_cred_ids > 0) {
		dst->cred_ids =
		    hv_calloc(src->n_cred_ids, sizeof(*dst->cred_ids));
		if (dst->cred_ids == NULL) {
			memset(dst, 0, sizeof(*dst));
			return false;
		}
		memcpy(dst->cred_ids, src->cred_ids,
		    src->n_cred_ids * sizeof(*dst->cred_ids));
	}
	return true;
}

bool
hv_vault_visible(const struct hv_principal *p, const char *workspace_id,
    const char *scope, const char *owner_user)
{
	bool same_ws;

	if (p == NULL || scope == NULL)
		return false;
	if (p->scopes & HV_SCOPE_ADMIN)
		return true;
	if (strcmp(scope, "organization") == 0)
		return true;
	same_ws = workspace_id != NULL &&
	    strcasecmp(workspace_id, p->workspace_id) == 0;
	if (strcmp(scope, "workspace") == 0)
		return same_ws;
	if (strcmp(scope, "personal") == 0)
		return same_ws && p->user[0] != '\0' && owner_user != NULL &&
		    strcmp(owner_user, p->user) == 0;
	return false;
}

bool
hv_vault_allowed(const struct hv_principal *p, const char *cred_id)
{
	size_t i;

	if (p == NULL || cred_id == NULL)
		return false;
	if (p->all_credentials)
		return true;
	for (i = 0; i < p->n_cred_ids; i++)
		if (strcasecmp(p->cred_ids[i], cred_id) == 0)
			return true;
	return false;
}

const char *
hv_principal_actor(const struct hv_principal *p)
{
	if (p == NULL)
		return "cli";
	if (p->name[0] != '\0')
		return p->name;
	return p->key_id[0] != '\0' ? p->key_id : "cli";
}

void
hv_vault_event(struct hv_audit_event *ev, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *ws, const char *action,
    const char *cred_id, const char *outcome, const char *detail)
{
	memset(ev, 0, sizeof(*ev));
	ev->workspace_id = ws;
	ev->actor_id = p != NULL && p->key_id[0] != '\0' ? p->key_id : NULL;
	ev->actor_name = hv_principal_actor(p);
	ev->action = action;
	ev->credential_id = cred_id;
	ev->outcome = outcome;
	ev->request_id = ctx != NULL ? ctx->request_id : NULL;
	ev->remote_addr = ctx != NULL ? ctx->remote_addr : NULL;
	ev->detail = detail;
}

enum hv_rc
hv_vault_deny(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *cred_id, const char *detail)
{
	struct hv_audit_event ev;
	struct hv_err e2 = {0};

	hv_vault_event(&ev, p, ctx,
	    p != NULL && p->workspace_id[0] != '\0' ? p->workspace_id : NULL,
	    "auth.denied", cred_id, "denied", detail);
	if (hv_audit_append_alone(v->audit, v->store, &ev, &e2) != HV_OK)
		hv_log_error("audit: cannot record auth.denied: %s", e2.msg);
	return HV_E_FORBIDDEN;
}

enum hv_rc
hv_vault_require(struct hv_vault *v, const struct hv_principal *p,
    unsigned int scope, const struct hv_reqctx *ctx, struct hv_err *err)
{
	char d[96];
	const char *name;

	if (p == NULL)
		return hv_err_set(err, HV_E_UNAUTHORIZED, "no principal");
	if ((p->scopes & HV_SCOPE_ADMIN) || (p->scopes & scope) == scope)
		return HV_OK;
	name = hv_scope_name(scope);
	snprintf(d, sizeof(d), "missing scope %s",
	    name != NULL ? name : "(several)");
	hv_vault_deny(v, p, ctx, NULL, d);
	return hv_err_set(err, HV_E_FORBIDDEN, "this api key lacks scope %s",
	    name != NULL ? name : "(several)");
}

/* ---------------------------------------------------------------- */
/* small parsers shared by the vault modules                          */

enum hv_rc
hv_vault_check_fields(
    const json_t *body, const char *const *allowed, struct hv_err *err)
{
	const char *k;
	json_t *val;
	size_t i;

	if (!json_is_object(body))
		return hv_err_set(
		    err, HV_E_INVALID, "body must be a JSON object");
	json_object_foreach((json_t *)body, k, val)
	{
		bool ok = false;

		(void)val;
		for (i = 0; allowed[i] != NULL; i++)
			if (strcmp(k, allowed[i]) == 0)
				ok = true;
		if (!ok)
			return hv_err_set(
			    err, HV_E_INVALID, "unknown field '%.64s'", k);
	}
	return HV_OK;
}

bool
hv_vault_text_ok(const json_t *v, size_t min, size_t max)
{
	const char *s;
	size_t n, i;

	if (!json_is_string(v))
		return false;
	s = json_string_value(v);
	n = json_string_length(v);
	if (strlen(s) != n || n < min || n > max)
		return false; /* embedded NUL, or out of range */
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static bool
digits(const char *s, int n, int *out)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

enum hv_rc
hv_vault_parse_time(
    const char *s, int64_t *epoch_us, struct hv_err *err, const char *field)
{
	static const int mdays[] = {
	    31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec, oh = 0, om = 0, dim;
	int64_t frac = 0, scale = 1000000;
	struct tm tm;
	time_t t;
	size_t i = 19;

	if (s == NULL || strlen(s) < 20 || strlen(s) > 40)
		goto bad;
	if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
	    s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &sec))
		goto bad;
	if (s[i] == '.') {
		size_t nd = 0;

		i++;
		while (s[i] >= '0' && s[i] <= '9') {
			if (nd < 6) {
				scale /= 10;
				frac += (s[i] - '0') * scale;
			}
			nd++;
			i++;
		}
		if (nd == 0 || nd > 9)
			goto bad;
	}
	if (s[i] == 'Z' || s[i] == 'z') {
		i++;
	} else if (s[i] == '+' || s[i] == '-') {
		if (!digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
		    !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
			goto bad;
		if (s[i] == '-') {
			oh = -oh;
			om = -om;
		}
		i += 6;
	} else {
		goto bad;
	}
	if (s[i] != '\0')
		goto bad;
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || h > 23 || mi > 59 ||
	    sec > 60)
		goto bad;
	dim = mdays[mo - 1];
	if (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		dim = 29;
	if (d < 1 || d > dim)
		goto bad;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec > 59 ? 59 : sec;
	t = timegm(&tm);
	t -= (time_t)oh * 3600 + (time_t)om * 60;
	*epoch_us = (int64_t)t * 1000000 + frac;
	return HV_OK;
bad:
	return hv_err_set(err, HV_E_INVALID,
	    "%s: not an RFC 3339 time "
	    "(e.g. 2030-01-31T12:00:00Z)",
	    field);
}

/* ---------------------------------------------------------------- */
/* open, close, migrate, init                                         */

void
hv_vault_register_statements(void)
{
	hv_store_register(
	    vault_stmts, sizeof(vault_stmts) / sizeof(vault_stmts[0]));
	hv_audit_register();
	hv_vault_apikey_register();
	hv_vault_admin_register();
	hv_vault_cred_register();
	hv_vault_provider_register();
}

struct hv_hsm *
hv_vault_hsm(struct hv_vault *v)
{
	return v->hsm;
}

struct hv_store *
hv_vault_store(struct hv_vault *v)
{
	return v->store;
}

struct hv_audit *
hv_vault_audit(struct hv_vault *v)
{
	return v->audit;
}

struct hv_group *
hv_vault_create_group(struct hv_vault *v)
{
	return v->creates;
}

struct hv_group *
hv_vault_use_group(struct hv_vault *v)
{
	return v->uses;
}

static void cache_stop(struct hv_vault *v);

void
hv_vault_close(struct hv_vault **vp)
{
	struct hv_vault *v;

	if (vp == NULL || *vp == NULL)
		return;
	v = *vp;
	cache_stop(v);
	hv_group_free(&v->creates); /* writes what is queued first */
	hv_group_free(&v->uses);
	hv_credcache_free(&v->credcache);
	hv_dekcache_free(&v->dekcache);
	hv_catalog_free(&v->catalog);
	hv_audit_free(&v->audit);
	hv_hsm_close(&v->hsm);
	hv_store_close(&v->store);
	hv_free(v);
	*vp = NULL;
}

static enum hv_rc
open_hsm(const struct hv_cfg *cfg, struct hv_hsm **out, struct hv_err *err)
{
	struct hv_hsm_config hc;

	memset(&hc, 0, sizeof(hc));
	hc.keystore = cfg->keystore;
	hc.p11_module = cfg->pkcs11_module;
	hc.p11_token = cfg->pkcs11_token;
	hc.p11_sessions = cfg->pkcs11_sessions;
	hc.tpm_tcti = cfg->tpm_tcti;
	hc.data_dir = cfg->data;
	/* a secret's buf[len] is always 0 (mem.h): no second copy of the PIN */
	if (cfg->pin != NULL)
		hc.p11_pin = (const char *)cfg->pin->buf;
	return hv_hsm_open(&hc, out, err);
}

enum hv_rc
hv_vault_open(const struct hv_cfg *cfg, bool create_keys, struct hv_vault **out,
    struct hv_err *err)
{
	struct hv_vault *v;
	enum hv_rc rc;

	hv_vault_register_statements();
	v = hv_calloc(1, sizeof(*v));
	if (v == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	v->cfg = cfg;
	rc = hv_store_open(cfg->database_url, cfg->db_pool, &v->store, err);
	if (rc != HV_OK)
		goto fail;
	rc = open_hsm(cfg, &v->hsm, err);
	if (rc != HV_OK)
		goto fail;
	rc = hv_hsm_ensure_keys(v->hsm, create_keys, err);
	if (rc != HV_OK)
		goto fail;
	rc = hv_audit_new(v->hsm, cfg->audit_chains, cfg->audit_group_leaders,
	    &v->audit, err);
	if (rc != HV_OK)
		goto fail;
	if (cfg->audit_chains < cfg->db_pool)
		hv_log_warn(
		    "audit_chains (%u) is below db_pool (%u): "
		    "connections will share audit chain heads and wait for "
		    "each other",
		    cfg->audit_chains, cfg->db_pool);
	if (cfg->dek_cache_size > 0 && cfg->dek_cache_ttl_ms == 0) {
		rc = hv_err_set(err, HV_E_CONFIG,
		    "dek_cache_ttl_ms must be "
		    "above 0 while dek_cache_size is (or set dek_cache_size "
		    "to 0)");
		goto fail;
	}
	rc = hv_dekcache_new(cfg->dek_cache_size, cfg->dek_cache_ttl_ms,
	    cfg->dek_cache_max_uses, &v->dekcache, err);
	if (rc != HV_OK)
		goto fail;
	rc = hv_credcache_new(
	    cfg->cred_cache_size, cfg->cred_cache_ttl_ms, &v->credcache, err);
	if (rc != HV_OK)
		goto fail;
	rc = hv_catalog_load(cfg->catalog, cfg, &v->catalog, err);
	if (rc != HV_OK)
		goto fail;
	if (cfg->create_group_writers > 0) {
		rc = hv_group_new("create group commit",
		    cfg->create_group_writers, CREATE_GROUP_MAX,
		    hv_vault_create_group_run, v, &v->creates, err);
		if (rc != HV_OK)
			goto fail;
	}
	if (cfg->use_group_writers > 0) {
		rc = hv_group_new("use group commit", cfg->use_group_writers,
		    USE_GROUP_MAX, hv_vault_use_group_run, v, &v->uses, err);
		if (rc != HV_OK)
			goto fail;
	}
	*out = v;
	return HV_OK;
fail:
	hv_vault_close(&v);
	return rc;
}

enum hv_rc
hv_vault_migrate(const struct hv_cfg *cfg, json_t **report, struct hv_err *err)
{
	struct hv_store *s = NULL;
	enum hv_rc rc;

	hv_vault_register_statements();
	rc = hv_store_open(cfg->database_url, 1, &s, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_migrate(s, report, err);
	hv_store_close(&s);
	return rc;
}

/* Make the "default" workspace when there is none; *id gets the default. */
static enum hv_rc
init_workspace(
    struct hv_vault *v, char id[HV_UUID_STR], bool *created, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	char nid[HV_UUID_STR];
	const char *p[1] = {nid};
	enum hv_rc rc;

	*created = false;
	if (hv_uuid_new(nid) != HV_OK)
		return hv_err_set(err, HV_E_INTERNAL, "uuid: rng failed");
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	/* two concurrent inits would both see an empty table */
	rc = hv_store_begin(c, err);
	if (rc == HV_OK)
		rc = hv_store_exec(
		    c, "vault_ws_lock", 0, NULL, NULL, NULL, false, NULL, err);
	if (rc == HV_OK)
		rc = hv_store_exec(
		    c, "vault_ws_init", 1, p, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	*created = strcmp(PQcmdTuples(r), "1") == 0;
	PQclear(r);
	r = NULL;
	rc = hv_store_exec(
	    c, "vault_ws_default", 0, NULL, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	if (PQntuples(r) != 1) {
		rc = hv_err_set(err, HV_E_INTERNAL, "no workspace after init");
		goto out;
	}
	snprintf(id, HV_UUID_STR, "%s", PQgetvalue(r, 0, 0));
	rc = hv_store_commit(c, err);
out:
	PQclear(r);
	hv_store_release(v->store, &c);
	return rc;
}

enum hv_rc
hv_vault_search_indexes(struct hv_vault *v, int *n, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	enum hv_rc rc;

	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_exec(
	    c, "vault_search_indexes", 0, NULL, NULL, NULL, false, &r, err);
	if (rc == HV_OK && PQntuples(r) != 1)
		rc = hv_err_set(err, HV_E_INTERNAL, "search indexes: no count");
	if (rc == HV_OK)
		*n = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10); /* 0..3 */
	PQclear(r);
	hv_store_release(v->store, &c);
	return rc;
}

enum hv_rc
hv_vault_init(const struct hv_cfg *cfg, json_t **report, struct hv_err *err)
{
	struct hv_vault *v = NULL;
	struct hv_store *ls = NULL;
	struct hv_conn *c = NULL, *lc = NULL;
	struct hv_hsm_status st;
	json_t *mig = NULL, *rep = NULL;
	char ws[HV_UUID_STR];
	bool created = false;
	enum hv_rc rc;

	rc = hv_vault_migrate(cfg, &mig, err);
	if (rc != HV_OK)
		return rc;
	/*
	 * One init at a time per database: two at once on an empty token
	 * would each find no key and create their own kek version 1. The
	 * lock is a session lock on a connection of its own, held until the
	 * end (closing the connection releases it, also on a crash).
	 */
	rc = hv_store_open(cfg->database_url, 1, &ls, err);
	if (rc == HV_OK)
		rc = hv_store_acquire(ls, &lc, err);
	if (rc == HV_OK)
		rc = hv_store_exec(lc, "vault_init_lock", 0, NULL, NULL, NULL,
		    false, NULL, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_vault_open(cfg, true, &v, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_audit_init_chains(v->audit, c, err);
	hv_store_release(v->store, &c);
	if (rc != HV_OK)
		goto out;
	rc = init_workspace(v, ws, &created, err);
	if (rc != HV_OK)
		goto out;
	memset(&st, 0, sizeof(st));
	rc = hv_hsm_probe(v->hsm, &st, err);
	if (rc != HV_OK)
		goto out;
	rep = json_pack("{s:O,s:{s:s,s:s,s:I},s:i,s:{s:s,s:s,s:b}}",
	    "migrations", mig, "keystore", "backend", st.backend, "token",
	    st.token, "active_kek", (json_int_t)st.active_kek, "audit_chains",
	    (int)(cfg->audit_chains ? cfg->audit_chains : 1), "workspace", "id",
	    ws, "name", "default", "created", created);
	if (rep == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	*report = rep;
out:
	json_decref(mig);
	hv_vault_close(&v);
	if (lc != NULL)
		hv_store_release(ls, &lc);
	hv_store_close(&ls); /* releases vault_init_lock */
	return rc;
}

enum hv_rc
hv_principal_cli(struct hv_vault *v, const char *workspace_id,
    struct hv_principal *out, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	const char *p[1] = {workspace_id};
	enum hv_rc rc;

	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	if (workspace_id != NULL)
		rc = hv_store_exec(
		    c, "vault_ws_find", 1, p, NULL, NULL, false, &r, err);
	else
		rc = hv_store_exec(
		    c, "vault_ws_default", 0, NULL, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	if (PQntuples(r) != 1) {
		rc = workspace_id != NULL
		    ? hv_err_set(err, HV_E_NOT_FOUND, "no such workspace")
		    : hv_err_set(err, HV_E_NOT_FOUND,
		          "no workspace (run hsmvault init)");
		goto out;
	}
	memset(out, 0, sizeof(*out));
	snprintf(out->workspace_id, sizeof(out->workspace_id), "%s",
	    PQgetvalue(r, 0, 0));
	snprintf(out->name, sizeof(out->name), "cli");
	out->scopes = hv_scope_all();
	out->all_credentials = true;
out:
	PQclear(r);
	hv_store_release(v->store, &c);
	return rc;
}

enum hv_rc
hv_vault_ready(struct hv_vault *v, struct hv_err *err)
{
	struct hv_hsm_status st;
	enum hv_rc rc;

	rc = hv_store_ping(v->store, err);
	if (rc != HV_OK)
		return rc;
	memset(&st, 0, sizeof(st));
	rc = hv_hsm_probe(v->hsm, &st, err);
	if (rc != HV_OK)
		return rc;
	if (!st.reachable)
		return hv_err_set(err, HV_E_KEYSTORE, "key store unreachable");
	return HV_OK;
}

enum hv_rc
hv_vault_services(struct hv_vault *v, json_t **out, struct hv_err *err)
{
	json_t *j = hv_catalog_to_json(v->catalog);

	if (j == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	*out = j;
	return HV_OK;
}

/* ---------------------------------------------------------------- */
/* the verified-key cache and its background thread                   */

static struct akcache *
cache_of(struct hv_vault *v)
{
	return __atomic_load_n(&v->apikey_cache, __ATOMIC_ACQUIRE);
}

/* The first entry of h's set. */
static struct centry *
set_of(struct akcache *k, const uint8_t h[HV_SHA256_LEN])
{
	return &k->slots[(((size_t)h[0] << 8 | h[1]) % CACHE_SETS) *
	    CACHE_WAYS];
}

/* The entry of h in its set, or NULL; under mu. */
static struct centry *
find(struct akcache *k, const uint8_t h[HV_SHA256_LEN])
{
	struct centry *set = set_of(k, h);
	size_t w;

	for (w = 0; w < CACHE_WAYS; w++)
		if (set[w].used && hv_ct_equal(set[w].h, h, HV_SHA256_LEN))
			return &set[w];
	return NULL;
}

/* A free entry of the set, else its least recently used; under mu. */
static struct centry *
victim(struct centry *set)
{
	struct centry *old = &set[0];
	size_t w;

	for (w = 0; w < CACHE_WAYS; w++) {
		if (!set[w].used)
			return &set[w];
		if (set[w].hit_at < old->hit_at)
			old = &set[w];
	}
	return old;
}

/* Remember the id of a dirty entry that is being dropped; under mu. */
static void
keep_dirty(struct akcache *k, struct centry *e)
{
	if (e->used && e->dirty && k->noverflow < OVERFLOW_MAX) {
		memcpy(k->overflow[k->noverflow++], e->p.key_id, HV_UUID_STR);
		e->dirty = false;
	}
}

static void
entry_clear(struct akcache *k, struct centry *e)
{
	keep_dirty(k, e);
	hv_principal_release(&e->p);
	hv_mem_zero(e->h, sizeof(e->h));
	e->used = false;
	e->dirty = false;
}

/* Drop every entry (under mu); called when notifications may be lost. */
static void
cache_clear_locked(struct akcache *k)
{
	size_t i;

	for (i = 0; i < CACHE_SLOTS; i++)
		if (k->slots[i].used)
			entry_clear(k, &k->slots[i]);
	k->gen++;
}

void
hv_vault_cache_evict(struct hv_vault *v, const char *key_id)
{
	struct akcache *k = cache_of(v);
	size_t i;

	if (k == NULL)
		return;
	pthread_mutex_lock(&k->mu);
	if (key_id[0] == '\0') {
		cache_clear_locked(k); /* a TRUNCATE of api_keys (sql/0004) */
	} else {
		for (i = 0; i < CACHE_SLOTS; i++)
			if (k->slots[i].used &&
			    strcasecmp(k->slots[i].p.key_id, key_id) == 0)
				entry_clear(k, &k->slots[i]);
		k->gen++;
	}
	k->revocations++;
	pthread_mutex_unlock(&k->mu);
}

/* Write last_used_at for every key used since the last flush. */
static void
flush_last_used(struct hv_vault *v)
{
	struct akcache *k = cache_of(v);
	char *arr = NULL;
	size_t n = 0, i, cap = (CACHE_SLOTS + OVERFLOW_MAX) * HV_UUID_STR + 3;
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	const char *p[1];

	arr = hv_malloc(cap);
	if (arr == NULL)
		return;
	arr[n++] = '{';
	pthread_mutex_lock(&k->mu);
	for (i = 0; i < CACHE_SLOTS; i++) {
		struct centry *e = &k->slots[i];

		if (e->used && e->dirty) {
			if (n > 1)
				arr[n++] = ',';
			memcpy(arr + n, e->p.key_id, strlen(e->p.key_id));
			n += strlen(e->p.key_id);
			e->dirty = false;
		}
	}
	for (i = 0; i < k->noverflow; i++) {
		if (n > 1)
			arr[n++] = ',';
		memcpy(arr + n, k->overflow[i], strlen(k->overflow[i]));
		n += strlen(k->overflow[i]);
	}
	k->noverflow = 0;
	pthread_mutex_unlock(&k->mu);
	arr[n++] = '}';
	arr[n] = '\0';
	if (n > 2) {
		p[0] = arr;
		if (hv_store_acquire(v->store, &c, &err) == HV_OK) {
			if (hv_store_exec(c, "vault_last_used", 1, p, NULL,
			        NULL, false, NULL, &err) != HV_OK)
				hv_log_warn(
				    "api keys: last_used_at: %s", err.msg);
			hv_store_release(v->store, &c);
		} else {
			hv_log_warn("api keys: last_used_at: %s", err.msg);
		}
	}
	hv_free(arr);
}

static void
drain_notifies(struct hv_vault *v, PGconn *pg)
{
	PGnotify *nf;

	while ((nf = PQnotifies(pg)) != NULL) {
		char idn[HV_UUID_STR];

		if (strcmp(nf->relname, HV_CRED_CHANNEL) == 0) {
			if (nf->extra != NULL &&
			    hv_uuid_normalize(nf->extra, idn))
				hv_credcache_forget(v->credcache, idn);
			else
				hv_credcache_clear(v->credcache);
		} else if (nf->extra != NULL && hv_uuid_valid(nf->extra)) {
			hv_vault_cache_evict(v, nf->extra);
		} else {
			hv_vault_cache_evict(v, "");
		}
		PQfreemem(nf);
	}
}

/*
 * Publish listener_fresh() for credential metadata: until FRESH_S after
 * the last heartbeat, when the listener is up and changes of credentials
 * are notified at all. Under k->mu.
 */
static void
publish_fresh(struct akcache *k)
{
	uint64_t until = 0;

	if (k->listening && k->cred_trigger)
		until = (uint64_t)((k->heartbeat_at + FRESH_S) * 1000.0);
	atomic_store_explicit(
	    &k->cred_fresh_until_ms, until, memory_order_release);
}

/*
 * Is sql/0003's trigger on credentials there and enabled? Without it no
 * change of a credential is ever notified (a server started before
 * `hsmvault migrate` ran), and cached metadata must not be served.
 */
static bool
cred_trigger_on(PGconn *pg)
{
	PGresult *r = PQexec(pg,
	    "SELECT 1 FROM pg_trigger WHERE tgrelid = "
	    "to_regclass('credentials') AND tgname = 'credentials_changed' "
	    "AND tgenabled <> 'D'");
	bool on = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;

	PQclear(r);
	return on;
}

static PGconn *
listener_connect(struct hv_vault *v)
{
	struct akcache *k = cache_of(v);
	struct hv_err err = {0};
	PGconn *pg = NULL;
	PGresult *r;
	bool trigger;

	if (hv_store_connect_raw(v->store, &pg, &err) != HV_OK) {
		hv_log_warn(
		    "listener (key revocations, credential changes): %s",
		    err.msg);
		return NULL;
	}
	r = PQexec(pg,
	    "SET application_name = 'hsmvault-listener'; "
	    "LISTEN " HV_REVOKE_CHANNEL "; LISTEN " HV_CRED_CHANNEL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		hv_log_warn("listener: LISTEN failed");
		PQclear(r);
		PQfinish(pg);
		return NULL;
	}
	PQclear(r);
	trigger = cred_trigger_on(pg);
	if (!trigger)
		hv_log_warn("credentials: no change notifications (trigger "
		            "credentials_changed missing or disabled; run "
		            "hsmvault migrate): metadata reads skip the cache");
	/* notifications sent while we were away are lost: start afresh */
	hv_credcache_clear(v->credcache);
	pthread_mutex_lock(&k->mu);
	cache_clear_locked(k);
	k->listening = true;
	k->heartbeat_at = hv_mono_s();
	k->cred_trigger = trigger;
	publish_fresh(k);
	pthread_mutex_unlock(&k->mu);
	hv_log_info("listener (key revocations, credential changes) connected");
	return pg;
}

static void *
bg_main(void *arg)
{
	struct hv_vault *v = arg;
	struct akcache *k = cache_of(v);
	PGconn *pg = NULL;
	double next_flush = hv_mono_s() + FLUSH_MS / 1000.0;
	double next_beat = 0;

	for (;;) {
		double now;
		bool stop;

		pthread_mutex_lock(&k->mu);
		stop = k->stop;
		pthread_mutex_unlock(&k->mu);
		if (stop)
			break;
		now = hv_mono_s();
		if (pg == NULL && now >= next_beat) {
			pg = listener_connect(v);
			if (pg == NULL)
				next_beat = now + 0.5;
		}
		if (pg != NULL && now >= next_beat) {
			PGresult *r = PQexec(pg, "SELECT 1");
			bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;

			PQclear(r);
			drain_notifies(v, pg);
			pthread_mutex_lock(&k->mu);
			if (ok)
				k->heartbeat_at = hv_mono_s();
			else
				k->listening = false;
			publish_fresh(k);
			pthread_mutex_unlock(&k->mu);
			if (!ok) {
				hv_log_warn("listener "
				            "lost its connection");
				PQfinish(pg);
				pg = NULL;
				next_beat = hv_mono_s() + 0.2;
			} else {
				next_beat = hv_mono_s() + HEARTBEAT_MS / 1000.0;
			}
		}
		if (hv_mono_s() >= next_flush) {
			flush_last_used(v);
			next_flush = hv_mono_s() + FLUSH_MS / 1000.0;
		}
		if (pg != NULL) {
			struct pollfd pfd = {
			    .fd = PQsocket(pg), .events = POLLIN};
			int wait = (int)((next_beat - hv_mono_s()) * 1000.0);

			if (wait < 1)
				wait = 1;
			if (wait > HEARTBEAT_MS)
				wait = HEARTBEAT_MS;
			if (poll(&pfd, 1, wait) > 0) {
				if (!PQconsumeInput(pg)) {
					pthread_mutex_lock(&k->mu);
					k->listening = false;
					publish_fresh(k);
					pthread_mutex_unlock(&k->mu);
					PQfinish(pg);
					pg = NULL;
					next_beat = hv_mono_s() + 0.2;
					continue;
				}
				drain_notifies(v, pg);
			}
		} else {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += HEARTBEAT_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_mutex_lock(&k->mu);
			if (!k->stop)
				pthread_cond_timedwait(&k->cv, &k->mu, &ts);
			pthread_mutex_unlock(&k->mu);
		}
	}
	if (pg != NULL)
		PQfinish(pg);
	flush_last_used(v);
	return NULL;
}

static pthread_mutex_t cache_init_mu = PTHREAD_MUTEX_INITIALIZER;

/* Create the cache and start its thread on the first authentication. */
static struct akcache *
cache_start(struct hv_vault *v)
{
	struct akcache *k;
	pthread_condattr_t ca;

	k = __atomic_load_n(&v->apikey_cache, __ATOMIC_ACQUIRE);
	if (k != NULL)
		return k; /* the hot path takes no global lock */
	pthread_mutex_lock(&cache_init_mu);
	k = v->apikey_cache;
	if (k != NULL)
		goto out;
	k = hv_calloc(1, sizeof(*k));
	if (k == NULL)
		goto out;
	pthread_mutex_init(&k->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cv, &ca);
	pthread_condattr_destroy(&ca);
	k->deny_tokens = DENY_BURST;
	k->deny_at = hv_mono_s();
	/* started is set before the thread or any reader can see k */
	k->started = true;
	__atomic_store_n(&v->apikey_cache, k, __ATOMIC_RELEASE);
	if (pthread_create(&k->th, NULL, bg_main, v) != 0) {
		hv_log_error("api keys: cannot start the cache thread; "
		             "caching off");
		pthread_mutex_lock(&k->mu);
		k->started = false;
		pthread_mutex_unlock(&k->mu);
	}
out:
	pthread_mutex_unlock(&cache_init_mu);
	return k;
}

static void
cache_stop(struct hv_vault *v)
{
	struct akcache *k = cache_of(v);
	size_t i;

	if (k == NULL)
		return;
	pthread_mutex_lock(&k->mu);
	k->stop = true;
	pthread_cond_broadcast(&k->cv);
	pthread_mutex_unlock(&k->mu);
	if (k->started)
		pthread_join(k->th, NULL);
	for (i = 0; i < CACHE_SLOTS; i++)
		hv_principal_release(&k->slots[i].p);
	pthread_cond_destroy(&k->cv);
	pthread_mutex_destroy(&k->mu);
	hv_free_wipe(k, sizeof(*k));
	v->apikey_cache = NULL;
}

/*
 * Is every notification committed more than FRESH_S ago read by now? The
 * listener is connected and its last heartbeat answered recently. Under
 * k->mu.
 */
static bool
listener_fresh(const struct akcache *k, double now)
{
	return k->listening && now - k->heartbeat_at < FRESH_S;
}

/* A cached principal for hash h, if still trustworthy. */
static bool
cache_get(
    struct akcache *k, const uint8_t h[HV_SHA256_LEN], struct hv_principal *out)
{
	struct centry *e;
	double now = hv_mono_s(), max_age;
	bool hit = false;

	pthread_mutex_lock(&k->mu);
	if (!k->started)
		goto out;
	max_age = listener_fresh(k, now) ? CACHE_MAX_S : FRESH_S;
	e = find(k, h);
	if (e == NULL)
		goto out;
	if (now - e->fetched >= max_age ||
	    (e->expires_us != 0 && hv_real_us() >= e->expires_us)) {
		entry_clear(k, e);
		goto out;
	}
	if (!principal_copy(out, &e->p))
		goto out;
	e->dirty = true;
	e->hit_at = now;
	hit = true;
out:
	if (hit)
		k->hits++;
	else
		k->misses++;
	pthread_mutex_unlock(&k->mu);
	return hit;
}

static bool
cache_put(struct akcache *k, const uint8_t h[HV_SHA256_LEN],
    const struct hv_principal *p, int64_t expires_us, uint64_t gen,
    double fetched)
{
	struct centry *e;
	struct hv_principal cp;

	if (!principal_copy(&cp, p))
		return false;
	pthread_mutex_lock(&k->mu);
	if (!k->started || k->gen != gen) {
		/* a revocation arrived while we read the database */
		pthread_mutex_unlock(&k->mu);
		hv_principal_release(&cp);
		return false;
	}
	e = find(k, h);
	if (e == NULL)
		e = victim(set_of(k, h));
	if (e->used)
		entry_clear(k, e);
	e->used = true;
	e->dirty = true;
	memcpy(e->h, h, HV_SHA256_LEN);
	e->p = cp;
	e->expires_us = expires_us;
	e->fetched = fetched;
	e->hit_at = fetched;
	pthread_mutex_unlock(&k->mu);
	return true;
}

/* Mark a key used without caching it (cache full of churn, or stale). */
static void
mark_used(struct akcache *k, const char *key_id)
{
	pthread_mutex_lock(&k->mu);
	if (k->noverflow < OVERFLOW_MAX)
		snprintf(
		    k->overflow[k->noverflow++], HV_UUID_STR, "%s", key_id);
	pthread_mutex_unlock(&k->mu);
}

bool
hv_vault_notices_fresh(struct hv_vault *v)
{
	struct akcache *k = cache_of(v);

	/* no lock: a metadata read has just taken k->mu to authenticate */
	return k != NULL &&
	    hv_mono_ms() <
	    atomic_load_explicit(&k->cred_fresh_until_ms, memory_order_acquire);
}

void
hv_vault_cache_stats(struct hv_vault *v, unsigned long *hits,
    unsigned long *misses, unsigned long *revocations, bool *listening)
{
	struct akcache *k = cache_of(v);

	*hits = *misses = *revocations = 0;
	*listening = false;
	if (k == NULL)
		return;
	pthread_mutex_lock(&k->mu);
	*hits = k->hits;
	*misses = k->misses;
	*revocations = k->revocations;
	*listening = listener_fresh(k, hv_mono_s());
	pthread_mutex_unlock(&k->mu);
}

void
hv_vault_caches(struct hv_vault *v, struct hv_vault_caches *out)
{
	struct akcache *k = cache_of(v);
	struct hv_dekcache_stats ds;
	struct hv_credcache_stats cs;
	unsigned long revs;
	bool listening;
	size_t i;

	memset(out, 0, sizeof(*out));
	hv_vault_cache_stats(
	    v, &out->apikey.hits, &out->apikey.misses, &revs, &listening);
	if (k != NULL) {
		pthread_mutex_lock(&k->mu);
		for (i = 0; i < CACHE_SLOTS; i++)
			out->apikey.entries += k->slots[i].used;
		pthread_mutex_unlock(&k->mu);
		out->apikey.capacity = CACHE_SLOTS;
	}
	hv_dekcache_stats(v->dekcache, &ds);
	out->dek.hits = ds.hits;
	out->dek.misses = ds.misses;
	out->dek.entries = ds.entries;
	out->dek.capacity = ds.capacity;
	hv_credcache_stats(v->credcache, &cs);
	out->cred.hits = cs.hits;
	out->cred.misses = cs.misses;
	out->cred.entries = cs.entries;
	out->cred.capacity = cs.capacity;
}

/* ---------------------------------------------------------------- */
/* authentication                                                     */

/* May we write one more auth.denied row now? Token bucket, under mu. */
static bool
deny_budget(struct akcache *k)
{
	double now = hv_mono_s();
	bool ok;

	pthread_mutex_lock(&k->mu);
	k->deny_tokens += (now - k->deny_at) * DENY_RATE;
	if (k->deny_tokens > DENY_BURST)
		k->deny_tokens = DENY_BURST;
	k->deny_at = now;
	ok = k->deny_tokens >= 1.0;
	if (ok)
		k->deny_tokens -= 1.0;
	else if (k->deny_suppressed++ % 1000 == 0)
		hv_log_warn("api keys: auth.denied audit rows rate-limited "
		            "(%lu suppressed)",
		    k->deny_suppressed);
	pthread_mutex_unlock(&k->mu);
	return ok;
}

static void
deny_unknown(struct hv_vault *v, struct akcache *k,
    const struct hv_principal *who, const struct hv_reqctx *ctx,
    const char *detail)
{
	struct hv_audit_event ev;
	struct hv_err e2 = {0};

	if (k != NULL && !deny_budget(k))
		return;
	hv_vault_event(&ev, who, ctx, who != NULL ? who->workspace_id : NULL,
	    "auth.denied", NULL, "denied", detail);
	if (who == NULL)
		ev.actor_name = NULL;
	if (hv_audit_append_alone(v->audit, v->store, &ev, &e2) != HV_OK)
		hv_log_error("audit: cannot record auth.denied: %s", e2.msg);
}

/* Parse a PostgreSQL text[] of scope names into bits; false if unknown. */
static bool
parse_scopes(const char *s, unsigned int *out)
{
	char name[64];
	size_t n = strlen(s), i = 1, j;
	unsigned int bits = 0;

	if (n < 2 || s[0] != '{' || s[n - 1] != '}')
		return false;
	while (i < n - 1) {
		j = 0;
		if (s[i] == '"')
			i++;
		while (i < n - 1 && s[i] != ',' && s[i] != '"') {
			if (j + 1 >= sizeof(name))
				return false;
			name[j++] = s[i++];
		}
		if (s[i] == '"')
			i++;
		name[j] = '\0';
		if (hv_scope_parse(name) == 0)
			return false;
		bits |= hv_scope_parse(name);
		if (s[i] == ',')
			i++;
	}
	*out = (bits & HV_SCOPE_ADMIN) ? hv_scope_all() : bits;
	return true;
}

/* Parse a uuid[] text "{a,b}" into p->cred_ids. */
static bool
parse_uuid_array(const char *s, struct hv_principal *p)
{
	size_t n = strlen(s), cnt = 0, i;

	if (n < 2 || s[0] != '{' || s[n - 1] != '}')
		return false;
	if (n > 2)
		for (i = 0, cnt = 1; i < n; i++)
			if (s[i] == ',')
				cnt++;
	p->n_cred_ids = 0;
	if (cnt == 0)
		return true;
	p->cred_ids = hv_calloc(cnt, sizeof(*p->cred_ids));
	if (p->cred_ids == NULL)
		return false;
	for (i = 1; i < n - 1;) {
		size_t len = strcspn(s + i, ",}");

		if (len != HV_UUID_STR - 1)
			return false;
		memcpy(p->cred_ids[p->n_cred_ids], s + i, len);
		p->cred_ids[p->n_cred_ids][len] = '\0';
		p->n_cred_ids++;
		i += len + 1;
	}
	return true;
}

enum hv_rc
hv_vault_authenticate(struct hv_vault *v, const char *header,
    const struct hv_reqctx *ctx, struct hv_principal *out, struct hv_err *err)
{
	uint8_t h[HV_SHA256_LEN], mac[HV_HMAC_LEN];
	struct akcache *k;
	struct hv_principal pr;
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	const char *key, *p[1];
	const int len[1] = {HV_HMAC_LEN}, fmt[1] = {1};
	int64_t exp_us;
	uint64_t gen = 0;
	double fetched;
	enum hv_rc rc;

	memset(&pr, 0, sizeof(pr));
	if (header == NULL || header[0] == '\0')
		return hv_err_set(err, HV_E_UNAUTHORIZED, "missing api key");
	/* exactly "Bearer" (any case), one space, the key, nothing else */
	if (strncasecmp(header, "Bearer ", 7) != 0)
		return hv_err_set(err, HV_E_UNAUTHORIZED,
		    "authorization must be 'Bearer <api key>'");
	key = header + 7;
	if (!hv_apikey_format_ok(v->cfg->apikey_prefix, key))
		return hv_err_set(err, HV_E_UNAUTHORIZED, "malformed api key");

	k = cache_start(v);
	if (!hv_sha256(key, strlen(key), h))
		k = NULL; /* no cache key: the key store decides */
	if (k != NULL && cache_get(k, h, out)) {
		hv_mem_zero(h, sizeof(h));
		return HV_OK;
	}
	if (k != NULL) {
		pthread_mutex_lock(&k->mu);
		gen = k->gen;
		pthread_mutex_unlock(&k->mu);
	}
	fetched = hv_mono_s();
	rc = hv_apikey_hash(v->hsm, key, mac, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		goto out;
	p[0] = (const char *)mac;
	rc = hv_store_exec(
	    c, "vault_key_by_hmac", 1, p, len, fmt, false, &r, err);
	hv_store_release(v->store, &c);
	if (rc != HV_OK)
		goto out;
	if (PQntuples(r) != 1) {
		deny_unknown(v, k, NULL, ctx, "unknown api key");
		rc = hv_err_set(err, HV_E_UNAUTHORIZED, "unknown api key");
		goto out;
	}
	snprintf(pr.key_id, sizeof(pr.key_id), "%s", PQgetvalue(r, 0, 0));
	snprintf(pr.workspace_id, sizeof(pr.workspace_id), "%s",
	    PQgetvalue(r, 0, 1));
	snprintf(pr.name, sizeof(pr.name), "%s", PQgetvalue(r, 0, 2));
	if (!PQgetisnull(r, 0, 3))
		snprintf(pr.user, sizeof(pr.user), "%s", PQgetvalue(r, 0, 3));
	if (strcmp(PQgetvalue(r, 0, 6), "t") == 0 ||
	    strcmp(PQgetvalue(r, 0, 7), "t") == 0) {
		bool revoked = strcmp(PQgetvalue(r, 0, 6), "t") == 0;

		deny_unknown(v, k, &pr, ctx,
		    revoked ? "revoked api key" : "expired api key");
		rc = hv_err_set(err, HV_E_UNAUTHORIZED, "%s api key",
		    revoked ? "revoked" : "expired");
		goto out;
	}
	if (!parse_scopes(PQgetvalue(r, 0, 4), &pr.scopes)) {
		rc = hv_err_set(
		    err, HV_E_INTERNAL, "api key %s: bad scopes", pr.key_id);
		goto out;
	}
	pr.all_credentials = PQgetisnull(r, 0, 5);
	if (!pr.all_credentials &&
	    !parse_uuid_array(PQgetvalue(r, 0, 5), &pr)) {
		rc = hv_err_set(err, HV_E_INTERNAL,
		    "api key %s: bad credential list", pr.key_id);
		goto out;
	}
	exp_us = strtoll(PQgetvalue(r, 0, 8), NULL, 10);
	if (!principal_copy(out, &pr)) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	if (k != NULL && !cache_put(k, h, &pr, exp_us, gen, fetched))
		mark_used(k, pr.key_id);
out:
	hv_mem_zero(h, sizeof(h));
	hv_mem_zero(mac, sizeof(mac));
	hv_principal_release(&pr);
	PQclear(r);
	return rc;
}
