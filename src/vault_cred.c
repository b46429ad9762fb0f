/*
 * vault_cred: the credential operations of SPEC section 4 (create, list,
 * get, edit, rotate, revoke/unrevoke, duplicate, delete, reveal, and the
 * open/record pair behind test and use). Rules and choices are written
 * down in docs/credentials.md.
 *
 * Every mutation runs in one transaction on one pooled connection: the
 * credential row is locked (SELECT ... FOR UPDATE), access is checked on
 * the locked row, the change and its audit row are written, and only then
 * is the transaction committed; any failure, the audit row's included,
 * rolls everything back (fail closed).
 *
 * Secrets: a request's secret object is validated field by field and
 * serialized by jansson straight into locked memory (json_dumpb into a
 * struct hv_secret), sealed by the envelope module (fresh DEK per version,
 * AAD = workspace | credential | version) and stored as ciphertext and
 * wrapped DEK. A decrypted plaintext is parsed back with json_loadb from
 * locked memory and wiped; jansson's own strings are wiped on free by the
 * zeroing allocator (hv_mem_json_init).
 *
 * Access: scope (hv_vault_require, which audits denials), then visibility
 * (404, exactly as a missing row), then the key's allow-list (403); a
 * change also needs the credential's own workspace (or admin), so that a
 * deployment-wide `organization` credential can be used everywhere but
 * edited only by its owners.
 *
 * DEK cache: every decryption goes through hv_vault_open_version(), which looks
 * the DEK up in v->dekcache (src/dekcache.h; cfg dek_cache_size,
 * dek_cache_ttl_ms, dek_cache_max_uses) under a key made of the ids, the
 * version, the KEK version and the wrapped bytes just read, unwraps in the
 * key store only on a miss (hv_envelope_unwrap_dek) and always decrypts
 * in process (hv_envelope_open_dek). hv_vault_forget_cached() drops a
 * credential's DEKs after a rotate, revoke or delete has committed. With
 * dek_cache_size 0 every open unwraps in the key store.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "group.h"
#include "log.h"
#include "mem.h"
#include "uuid.h"
#include "vault_int.h"

/* Limits (docs/credentials.md). Characters are Unicode code points. */
#define NAME_MAX_CHARS         200
#define NOTES_MAX_CHARS        10000
#define SERVICE_MAX_CHARS      64
#define URL_MAX_BYTES          2048
#define SECRET_VALUE_MAX_BYTES 16384
#define SECRET_MAX_BYTES       65536
#define HEADERS_MAX            32
#define HEADER_NAME_MAX        128
#define QUERY_MAX_CHARS        200
#define LIST_DEFAULT           50
#define LIST_MAX               200
#define CURSOR_MAX             128

/* Timestamps leave the database as RFC 3339 UTC with microseconds. */
#define TS(col)                                                                \
	"to_char(" col " AT TIME ZONE 'UTC', "                                 \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
/* An active credential past its expires_at reads as expired. */
#define STATUS_EXPR                                                            \
	"(CASE WHEN status = 'active' AND expires_at IS NOT NULL "             \
	"AND expires_at <= now() THEN 'expired' ELSE status END)"

/* The columns of every credential row we read; see enum col. */
#define COLS                                                                   \
	"id::text, workspace_id::text, service, name, auth_type, scope, "      \
	"owner_user, notes, injection::text, " STATUS_EXPR ", status, "        \
	"version, base_url, " TS("expires_at") ", " TS("created_at") ", " TS(  \
	    "updated_at") ", " TS("last_used_at") ", created_by, "             \
	                                          "(extract(epoch FROM "       \
	                                          "created_at) * "             \
	                                          "1000000)::bigint"

enum col {
	C_ID,
	C_WS,
	C_SERVICE,
	C_NAME,
	C_AUTH,
	C_SCOPE,
	C_OWNER,
	C_NOTES,
	C_INJECTION,
	C_STATUS,     /* effective (expired computed) */
	C_STATUS_RAW, /* as stored */
	C_VERSION,
	C_BASE_URL,
	C_EXPIRES,
	C_CREATED,
	C_UPDATED,
	C_LAST_USED,
	C_CREATED_BY,
	C_CREATED_US,
	C_NCOLS
};

static const struct hv_stmt cred_stmts[] = {
    /* create and duplicate: the credential and its version 1, one trip */
    {"cred_create",
        "WITH c AS (INSERT INTO credentials (id, workspace_id, service, "
        "name, auth_type, scope, owner_user, notes, injection, status, "
        "version, base_url, expires_at, created_by) VALUES ($1::uuid, "
        "$2::uuid, $3, $4, $5, $6, $7, $8, $9::jsonb, 'active', 1, $10, "
        "$11::timestamptz, $12) RETURNING " COLS "), "
        "v AS (INSERT INTO credential_versions (credential_id, version, "
        "kek_version, wrapped_dek, nonce, ciphertext) SELECT $1::uuid, 1, "
        "$13::integer, $14::bytea, $15::bytea, $16::bytea FROM c) "
        "SELECT * FROM c",
        16},
    /*
	 * reveal and use: the row and its current version in one snapshot
	 * and one round trip (text results: bytea as \x hex)
	 */
    {"cred_get_secret",
        "SELECT " COLS ", v.kek_version, v.wrapped_dek, v.nonce, "
        "v.ciphertext FROM credentials LEFT JOIN LATERAL (SELECT "
        "kek_version, wrapped_dek, nonce, ciphertext FROM "
        "credential_versions cv WHERE cv.credential_id = credentials.id "
        "AND cv.version = credentials.version) v ON true WHERE "
        "credentials.id = $1::uuid",
        1},
    /* record_use: lock and update in one statement (access checked after;
	 * a refusal rolls it back) */
    {"cred_use_update",
        "UPDATE credentials SET last_used_at = now(), status = CASE WHEN "
        "$2::text IS NULL OR status = 'revoked' THEN status ELSE $2::text "
        "END WHERE id = $1::uuid RETURNING " COLS,
        2},
    /*
     * a group of use records (hv_vault_use_group_run): the distinct ids
     * of $1 locked in id order (two groups never wait on each other in a
     * cycle), each given last_used_at and its status of $2, as above
     */
    {"cred_use_update_many",
        "UPDATE credentials SET last_used_at = now(), status = CASE WHEN "
        "l.lst IS NULL OR status = 'revoked' THEN status ELSE l.lst END "
        "FROM (SELECT c.id AS lid, u.st AS lst FROM credentials c JOIN "
        "unnest($1::uuid[], $2::text[]) AS u(id, st) ON c.id = u.id "
        "ORDER BY c.id FOR UPDATE OF c) l WHERE credentials.id = l.lid "
        "RETURNING " COLS,
        2},
    {"cred_version_insert",
        "INSERT INTO credential_versions (credential_id, version, "
        "kek_version, wrapped_dek, nonce, ciphertext) VALUES ($1::uuid, "
        "$2::integer, $3::integer, $4::bytea, $5::bytea, $6::bytea)",
        6},
    {"cred_get", "SELECT " COLS " FROM credentials WHERE id = $1::uuid", 1},
    {"cred_lock",
        "SELECT " COLS " FROM credentials WHERE id = $1::uuid FOR UPDATE", 1},
    {"cred_version_get",
        "SELECT kek_version, wrapped_dek, nonce, ciphertext FROM "
        "credential_versions WHERE credential_id = $1::uuid AND "
        "version = $2::integer",
        2},
    {"cred_update",
        "UPDATE credentials SET name = $2, notes = $3, scope = $4, "
        "owner_user = $5, injection = $6::jsonb, updated_at = now() "
        "WHERE id = $1::uuid RETURNING " COLS,
        6},
    {"cred_rotate",
        "UPDATE credentials SET version = $2::integer, base_url = $3, "
        "expires_at = $4::timestamptz, status = CASE WHEN status = "
        "'revoked' THEN status ELSE 'active' END, updated_at = now() "
        "WHERE id = $1::uuid RETURNING " COLS,
        4},
    {"cred_set_status",
        "UPDATE credentials SET status = $2, updated_at = now() "
        "WHERE id = $1::uuid RETURNING " COLS,
        2},
    {"cred_delete_versions",
        "DELETE FROM credential_versions WHERE credential_id = $1::uuid", 1},
    {"cred_delete", "DELETE FROM credentials WHERE id = $1::uuid", 1},
    /*
	 * Visibility in SQL mirrors hv_vault_visible() (rows are checked
	 * again in C) so that pages are full; each filter is off when its
	 * parameter is NULL. The search is a case-insensitive substring:
	 * $5 is q with \, % and _ escaped by like_escape(), lowered here by
	 * PostgreSQL (the database's locale, as before) and matched with LIKE,
	 * which the trigram indexes of sql/0002-search-index.sql serve. No
	 * ESCAPE clause: backslash is LIKE's default escape, and a '\'
	 * literal would depend on standard_conforming_strings. The statement
	 * stays on custom plans (its generic plan cannot fold the IS NULL
	 * filters and costs more; test_search checks), so each search is
	 * planned with its pattern: a q without trigrams (most under 3
	 * characters) gets a scan. The page is picked in a subquery and only
	 * its rows are formatted (to_char, the status CASE): formatting every
	 * matching row before the sort cost most of a broad list's time.
	 * docs/storage.md.
	 */
    {"cred_list",
        "SELECT " COLS " FROM (SELECT * FROM credentials WHERE "
        "($1::boolean OR scope = 'organization' OR "
        "(workspace_id = $2::uuid AND (scope = 'workspace' OR "
        "(scope = 'personal' AND owner_user = $3::text)))) "
        "AND ($4::uuid[] IS NULL OR id = ANY($4::uuid[])) "
        "AND ($5::text IS NULL "
        "OR lower(name) LIKE ('%' || lower($5::text) || '%') "
        "OR lower(service) LIKE ('%' || lower($5::text) || '%') "
        "OR lower(notes) LIKE ('%' || lower($5::text) || '%')) "
        "AND ($6::text IS NULL OR scope = $6::text) "
        "AND ($7::text IS NULL OR auth_type = $7::text) "
        "AND ($8::text IS NULL OR " STATUS_EXPR " = $8::text) "
        "AND ($9::text IS NULL OR service = $9::text) "
        "AND ($10::bigint IS NULL OR (created_at, id) > "
        "('epoch'::timestamptz + $10::bigint * interval '1 microsecond', "
        "$11::uuid)) "
        "ORDER BY created_at, id LIMIT $12::integer) credentials "
        "ORDER BY created_at, id",
        12},
};

/*
 * cred_create_<n> for n = 2..CREATE_GROUP_MAX: cred_create for n
 * credentials at once (a group of creates, docs/performance.md), each row
 * with cred_create's 16 parameters in the same order, $16k+1.. for row k.
 * The versions do not read c: the foreign key is checked at the end of
 * the statement, when the credentials are in.
 */
#define CREATE_GROUP_SQL_CAP (1536 + CREATE_GROUP_MAX * 320)

static bool
create_group_sql_of(size_t n, char *b, size_t cap)
{
	size_t off = 0, i;
	bool ok;

	ok = hv_sql_put(b, cap, &off,
	    "WITH c AS (INSERT INTO credentials (id, workspace_id, service, "
	    "name, auth_type, scope, owner_user, notes, injection, status, "
	    "version, base_url, expires_at, created_by) VALUES ");
	for (i = 0; ok && i < n; i++) {
		size_t k = i * 16;

		ok = hv_sql_put(b, cap, &off,
		    "%s($%zu::uuid, $%zu::uuid, $%zu, $%zu, $%zu, $%zu, $%zu, "
		    "$%zu, $%zu::jsonb, 'active', 1, $%zu, $%zu::timestamptz, "
		    "$%zu)",
		    i == 0 ? "" : ", ", k + 1, k + 2, k + 3, k + 4, k + 5,
		    k + 6, k + 7, k + 8, k + 9, k + 10, k + 11, k + 12);
	}
	ok = ok &&
	    hv_sql_put(b, cap, &off,
	        " RETURNING " COLS "), v AS (INSERT INTO credential_versions "
	        "(credential_id, version, kek_version, wrapped_dek, nonce, "
	        "ciphertext) VALUES ");
	for (i = 0; ok && i < n; i++) {
		size_t k = i * 16;

		ok = hv_sql_put(b, cap, &off,
		    "%s($%zu::uuid, 1, $%zu::integer, $%zu::bytea, "
		    "$%zu::bytea, "
		    "$%zu::bytea)",
		    i == 0 ? "" : ", ", k + 1, k + 13, k + 14, k + 15, k + 16);
	}
	return ok && hv_sql_put(b, cap, &off, ") SELECT * FROM c");
}

static int
create_group_nparams(size_t n)
{
	return (int)(16 * n);
}

static struct hv_stmt_family create_group_family = {"cred_create_",
    CREATE_GROUP_MAX, CREATE_GROUP_SQL_CAP, create_group_sql_of,
    create_group_nparams, NULL};

void
hv_vault_cred_register(void)
{
	hv_store_register(
	    cred_stmts, sizeof(cred_stmts) / sizeof(cred_stmts[0]));
	hv_store_register_family(&create_group_family);
}

static const char *const auth_types[] = {
    "api_key", "bearer", "basic", "oauth2", "custom_headers", NULL};
static const char *const scopes[] = {
    "personal", "workspace", "organization", NULL};
static const char *const statuses[] = {
    "active", "expired", "failing", "revoked", NULL};

/* The string of the NULL-terminated set equal to s, or NULL. */
static const char *
one_of(const char *s, const char *const *set)
{
	for (; s != NULL && *set != NULL; set++)
		if (strcmp(s, *set) == 0)
			return *set;
	return NULL;
}

static bool
in_set(const char *s, const char *const *set)
{
	return one_of(s, set) != NULL;
}

/* ------------------------------------------------------------------ */
/* Field validation                                                    */

/*
 * A field name is echoed in errors only when it looks like a field name:
 * short, [A-Za-z0-9_.-]. Anything else might be pasted data.
 */
static const char *
safe_name(const char *k)
{
	size_t i, n = strlen(k);

	if (n == 0 || n > 40)
		return "(unprintable)";
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)k[i]) && k[i] != '_' &&
		    k[i] != '-' && k[i] != '.')
			return "(unprintable)";
	return k;
}

/*
 * Refuse members of obj not listed in allowed. A top-level field is named
 * in the message; inside `in` (the secret object, whose member names a
 * careless client may have filled with secret data) the message lists the
 * allowed names instead.
 */
static enum hv_rc
only_fields(const json_t *obj, const char *const *allowed, const char *in,
    struct hv_err *err)
{
	const char *k;
	json_t *val;
	char list[128] = "";
	size_t i, o = 0;

	json_object_foreach((json_t *)obj, k, val)
	{
		(void)val;
		if (in_set(k, allowed))
			continue;
		if (in == NULL)
			return hv_err_set(err, HV_E_INVALID,
			    "unknown field '%s'", safe_name(k));
		for (i = 0; allowed[i] != NULL; i++) {
			int n = snprintf(list + o, sizeof(list) - o, "%s%s",
			    i > 0 ? ", " : "", allowed[i]);

			if (n < 0 || (size_t)n >= sizeof(list) - o)
				break;
			o += (size_t)n;
		}
		return hv_err_set(err, HV_E_INVALID,
		    "unknown field in '%s' "
		    "(allowed: %s)",
		    in, list);
	}
	return HV_OK;
}

static size_t
utf8_chars(const char *s, size_t n)
{
	size_t i, c = 0;

	for (i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			c++;
	return c;
}

/* Well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static bool
utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, k, len;
	uint32_t cp;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xE0) == 0xC0) {
			len = 2;
			cp = s[i] & 0x1Fu;
		} else if ((s[i] & 0xF0) == 0xE0) {
			len = 3;
			cp = s[i] & 0x0Fu;
		} else if ((s[i] & 0xF8) == 0xF0) {
			len = 4;
			cp = s[i] & 0x07u;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3Fu);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += len;
	}
	return true;
}

enum str_kind {
	STR_LINE,   /* one line of text: no control characters */
	STR_TEXT,   /* free text: newlines and tabs allowed, may be empty */
	STR_SECRET, /* secret value: no control characters but tab */
};

/*
 * Check a JSON value as a string field named `what`. Absent (NULL) or
 * JSON null give *out NULL unless required. Messages name the field only.
 */
static enum hv_rc
want_string(const json_t *val, const char *what, bool required, size_t max,
    bool max_is_bytes, enum str_kind kind, const char **out, struct hv_err *err)
{
	const char *s;
	size_t n, i;

	*out = NULL;
	if (val == NULL || json_is_null(val)) {
		if (required)
			return hv_err_set(
			    err, HV_E_INVALID, "'%s' is required", what);
		return HV_OK;
	}
	if (!json_is_string(val))
		return hv_err_set(
		    err, HV_E_INVALID, "'%s' must be a string", what);
	s = json_string_value(val);
	n = json_string_length(val);
	if (strlen(s) != n)
		return hv_err_set(err, HV_E_INVALID,
		    "'%s' must not contain NUL characters", what);
	if (n == 0 && kind != STR_TEXT)
		return hv_err_set(
		    err, HV_E_INVALID, "'%s' must not be empty", what);
	if ((max_is_bytes ? n : utf8_chars(s, n)) > max)
		return hv_err_set(err, HV_E_INVALID,
		    "'%s' is too long (at most %zu %s)", what, max,
		    max_is_bytes ? "bytes" : "characters");
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch != 0x7f)
			continue;
		if (ch == '\t' && kind != STR_LINE)
			continue;
		if ((ch == '\n' || ch == '\r') && kind == STR_TEXT)
			continue;
		return hv_err_set(err, HV_E_INVALID,
		    "'%s' must not contain control characters", what);
	}
	*out = s;
	return HV_OK;
}

/* RFC 9110 token (header field names). */
static bool
is_token(const char *s, size_t max)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (isalnum(ch) || (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch)))
			continue;
		return false;
	}
	return true;
}

/* Headers that frame or route the request: never taken from a secret. */
static bool
forbidden_header(const char *name)
{
	static const char *const bad[] = {"host", "content-length",
	    "transfer-encoding", "connection", "upgrade", "te", "trailer",
	    "keep-alive", "proxy-connection", "expect", NULL};
	size_t i;

	for (i = 0; bad[i] != NULL; i++)
		if (strcasecmp(name, bad[i]) == 0)
			return true;
	return false;
}

static bool
digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int
num(const char *s, size_t n)
{
	int v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/*
 * Strict RFC 3339 date-time (section 5.6): YYYY-MM-DDTHH:MM:SS[.frac]
 * (Z | +HH:MM | -HH:MM), 'T' and 'Z' in either case. Writes the text with
 * T and Z upper-cased to out (which PostgreSQL parses exactly).
 */
static bool
rfc3339(const char *s, char *out, size_t cap)
{
	static const int mdays[] = {
	    31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	size_t n = strlen(s), i;
	int y, mo, d, h, mi, se, maxd;
	const char *p;

	if (n < 20 || n >= cap || n > 64)
		return false;
	if (!digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
	    !digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't') ||
	    !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) ||
	    s[16] != ':' || !digits(s + 17, 2))
		return false;
	y = num(s, 4);
	mo = num(s + 5, 2);
	d = num(s + 8, 2);
	h = num(s + 11, 2);
	mi = num(s + 14, 2);
	se = num(s + 17, 2);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 60)
		return false;
	maxd = mdays[mo - 1];
	if (mo == 2 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		maxd = 28;
	if (d > maxd)
		return false;
	p = s + 19;
	if (*p == '.') {
		p++;
		i = 0;
		while (p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == 0 || i > 9)
			return false;
		p += i;
	}
	if (*p == 'Z' || *p == 'z') {
		if (p[1] != '\0')
			return false;
	} else if (*p == '+' || *p == '-') {
		if (strlen(p) != 6 || !digits(p + 1, 2) || p[3] != ':' ||
		    !digits(p + 4, 2) || num(p + 1, 2) > 23 ||
		    num(p + 4, 2) > 59)
			return false;
	} else {
		return false;
	}
	memcpy(out, s, n + 1);
	out[10] = 'T';
	if (out[n - 1] == 'z')
		out[n - 1] = 'Z';
	return true;
}

static bool
is_loopback_host(const char *h)
{
	size_t n = strlen(h);

	if (strcmp(h, "localhost") == 0 || strcmp(h, "::1") == 0)
		return true;
	if (n > 10 && strcmp(h + n - 10, ".localhost") == 0)
		return true;
	return strncmp(h, "127.", 4) == 0 && strspn(h, "0123456789.") == n;
}

/*
 * An absolute https URL (http only for a loopback host when private
 * targets are allowed), without user info, query or fragment, only
 * printable ASCII. The normalized form (trailing slashes removed) is
 * written to out.
 */
static enum hv_rc
check_url(const struct hv_vault *v, const char *url, const char *what,
    char *out, size_t cap, struct hv_err *err)
{
	char host[256];
	size_t n = strlen(url), i, slen;
	const char *auth, *end;
	bool https;

	if (n > URL_MAX_BYTES || n + 1 > cap)
		return hv_err_set(err, HV_E_INVALID,
		    "'%s' is too long (at most %d bytes)", what, URL_MAX_BYTES);
	for (i = 0; i < n; i++)
		if ((unsigned char)url[i] <= 0x20 ||
		    (unsigned char)url[i] >= 0x7f)
			return hv_err_set(err, HV_E_INVALID,
			    "'%s' must be a URL of printable ASCII "
			    "characters without spaces",
			    what);
	if (strncasecmp(url, "https://", 8) == 0) {
		https = true;
		slen = 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		https = false;
		slen = 7;
	} else {
		return hv_err_set(err, HV_E_INVALID,
		    "'%s' must be an absolute https:// URL", what);
	}
	auth = url + slen;
	end = auth + strcspn(auth, "/?#");
	if (memchr(auth, '@', (size_t)(end - auth)) != NULL)
		return hv_err_set(
		    err, HV_E_INVALID, "'%s' must not contain user info", what);
	if (strchr(url, '#') != NULL)
		return hv_err_set(err, HV_E_INVALID,
		    "'%s' must not contain a fragment", what);
	if (strchr(url, '?') != NULL)
		return hv_err_set(
		    err, HV_E_INVALID, "'%s' must not contain a query", what);
	if (end == auth || !hv_url_host(url, host, sizeof(host)) ||
	    host[0] == '\0')
		return hv_err_set(
		    err, HV_E_INVALID, "'%s' has no valid host", what);
	/* Host characters and an optional numeric port 1..65535. */
	{
		const char *hp = auth, *port = NULL;

		if (*hp == '[') {
			const char *rb = memchr(hp, ']', (size_t)(end - hp));

			if (rb == NULL)
				return hv_err_set(err, HV_E_INVALID,
				    "'%s' has no valid host", what);
			for (i = 1; hp + i < rb; i++)
				if (!isxdigit((unsigned char)hp[i]) &&
				    hp[i] != ':' && hp[i] != '.')
					return hv_err_set(err, HV_E_INVALID,
					    "'%s' has no valid host", what);
			if (rb + 1 < end) {
				if (rb[1] != ':')
					return hv_err_set(err, HV_E_INVALID,
					    "'%s' has no valid host", what);
				port = rb + 2;
			}
		} else {
			const char *colon = memchr(hp, ':', (size_t)(end - hp));
			const char *hend = colon != NULL ? colon : end;

			if (hend == hp)
				return hv_err_set(err, HV_E_INVALID,
				    "'%s' has no valid host", what);
			for (i = 0; hp + i < hend; i++)
				if (!isalnum((unsigned char)hp[i]) &&
				    hp[i] != '-' && hp[i] != '.')
					return hv_err_set(err, HV_E_INVALID,
					    "'%s' has no valid host", what);
			if (colon != NULL)
				port = colon + 1;
		}
		if (port != NULL) {
			size_t pl = (size_t)(end - port);

			if (pl == 0 || pl > 5 || !digits(port, pl) ||
			    num(port, pl) < 1 || num(port, pl) > 65535)
				return hv_err_set(err, HV_E_INVALID,
				    "'%s' has an invalid port", what);
		}
	}
	if (!https &&
	    !(v->cfg->allow_private_targets && is_loopback_host(host)))
		return hv_err_set(err, HV_E_INVALID,
		    "'%s' must use https (http is allowed only for loopback "
		    "hosts when allow_private_targets is on)",
		    what);
	memcpy(out, url, n + 1);
	while (n > (size_t)(end - url) && out[n - 1] == '/')
		out[--n] = '\0';
	return HV_OK;
}

/*
 * Validate a secret object for auth_type: required fields present, no
 * unknown ones, every value a non-empty string within limits (headers:
 * an object of string values under valid names).
 */
static enum hv_rc
check_secret(const struct hv_vault *v, const json_t *sec, const char *auth_type,
    struct hv_err *err)
{
	static const char *const f_api_key[] = {"key", NULL};
	static const char *const f_bearer[] = {"token", NULL};
	static const char *const f_basic[] = {"username", "password", NULL};
	static const char *const f_oauth2[] = {"access_token", "refresh_token",
	    "client_id", "client_secret", "token_url", "expires_at", NULL};
	static const char *const f_headers[] = {"headers", NULL};
	const char *const *fields;
	const char *k, *s;
	json_t *val;
	enum hv_rc rc;
	size_t i, req;
	char what[64];

	if (sec == NULL)
		return hv_err_set(err, HV_E_INVALID, "'secret' is required");
	if (!json_is_object(sec))
		return hv_err_set(
		    err, HV_E_INVALID, "'secret' must be an object");
	if (strcmp(auth_type, "api_key") == 0) {
		fields = f_api_key;
		req = 1;
	} else if (strcmp(auth_type, "bearer") == 0) {
		fields = f_bearer;
		req = 1;
	} else if (strcmp(auth_type, "basic") == 0) {
		fields = f_basic;
		req = 2;
	} else if (strcmp(auth_type, "oauth2") == 0) {
		fields = f_oauth2;
		req = 1;
	} else if (strcmp(auth_type, "custom_headers") == 0) {
		fields = f_headers;
		req = 1;
	} else {
		return hv_err_set(err, HV_E_INVALID, "unknown 'auth_type'");
	}
	rc = only_fields(sec, fields, "secret", err);
	if (rc != HV_OK)
		return rc;
	if (strcmp(auth_type, "custom_headers") == 0) {
		const json_t *h = json_object_get(sec, "headers");

		if (h == NULL || json_is_null(h))
			return hv_err_set(
			    err, HV_E_INVALID, "'secret.headers' is required");
		if (!json_is_object(h))
			return hv_err_set(err, HV_E_INVALID,
			    "'secret.headers' must be an object");
		if (json_object_size(h) == 0)
			return hv_err_set(err, HV_E_INVALID,
			    "'secret.headers' must not be empty");
		if (json_object_size(h) > HEADERS_MAX)
			return hv_err_set(err, HV_E_INVALID,
			    "'secret.headers' has too many entries (at most "
			    "%d)",
			    HEADERS_MAX);
		json_object_foreach((json_t *)h, k, val)
		{
			if (!is_token(k, HEADER_NAME_MAX))
				return hv_err_set(err, HV_E_INVALID,
				    "'secret.headers' has an invalid header "
				    "name");
			if (forbidden_header(k))
				return hv_err_set(err, HV_E_INVALID,
				    "'secret.headers' must not set %s",
				    safe_name(k));
			rc = want_string(val, "secret.headers value", true,
			    SECRET_VALUE_MAX_BYTES, true, STR_SECRET, &s, err);
			if (rc != HV_OK)
				return rc;
		}
		return HV_OK;
	}
	for (i = 0; fields[i] != NULL; i++) {
		(void)snprintf(what, sizeof(what), "secret.%s", fields[i]);
		rc = want_string(json_object_get(sec, fields[i]), what, i < req,
		    SECRET_VALUE_MAX_BYTES, true, STR_SECRET, &s, err);
		if (rc != HV_OK)
			return rc;
		if (s == NULL)
			continue;
		if (strcmp(fields[i], "username") == 0 &&
		    strchr(s, ':') != NULL)
			return hv_err_set(err, HV_E_INVALID,
			    "'secret.username' must not contain ':'");
		if (strcmp(fields[i], "token_url") == 0) {
			char u[URL_MAX_BYTES + 1];

			rc = check_url(v, s, what, u, sizeof(u), err);
			if (rc != HV_OK)
				return rc;
		}
		if (strcmp(fields[i], "expires_at") == 0) {
			char t[80];

			if (!rfc3339(s, t, sizeof(t)))
				return hv_err_set(err, HV_E_INVALID,
				    "'secret.expires_at' must be an RFC 3339 "
				    "date-time");
		}
	}
	return HV_OK;
}

/*
 * Serialize a (validated) secret object into locked memory, compact and
 * with sorted keys. json_dumpb writes straight into the secret's buffer,
 * so no heap copy of the plaintext is ever made by us.
 */
static enum hv_rc
secret_serialize(const json_t *sec, struct hv_secret **out, struct hv_err *err)
{
	const size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
	struct hv_secret *s = NULL;
	size_t n;

	n = json_dumpb(sec, NULL, 0, flags);
	if (n == 0)
		return hv_err_set(err, HV_E_NOMEM, "cannot serialize secret");
	if (n > SECRET_MAX_BYTES)
		return hv_err_set(err, HV_E_INVALID,
		    "'secret' is too large (at most %d bytes)",
		    SECRET_MAX_BYTES);
	s = hv_secret_new(n);
	if (s == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	if (json_dumpb(sec, (char *)s->buf, n, flags) != n) {
		hv_secret_free(&s);
		return hv_err_set(
		    err, HV_E_INTERNAL, "secret serialization changed size");
	}
	*out = s;
	return HV_OK;
}

/* Parse a decrypted payload back into a JSON object. */
static enum hv_rc
secret_parse(const struct hv_secret *pt, json_t **out, struct hv_err *err)
{
	json_error_t jerr;
	json_t *j;

	j = json_loadb(
	    (const char *)pt->buf, pt->len, JSON_REJECT_DUPLICATES, &jerr);
	/* jansson's error text may quote the input: wipe it unread. */
	hv_mem_zero(&jerr, sizeof(jerr));
	if (j == NULL || !json_is_object(j)) {
		json_decref(j);
		return hv_err_set(
		    err, HV_E_CRYPTO, "decrypted secret is not a JSON object");
	}
	*out = j;
	return HV_OK;
}

/*
 * Free what json_dumps() returned: it comes from jansson's allocator,
 * which is the zeroing one of hv_mem_json_init() once that is installed.
 */
static void
json_text_free(char *s)
{
	json_malloc_t m;
	json_free_t f;

	if (s == NULL)
		return;
	json_get_alloc_funcs(&m, &f);
	f(s);
}

/* The service's default injection for auth_type, or NULL. */
static const json_t *
default_injection(const struct hv_service *svc, const char *auth_type)
{
	return svc != NULL ? hv_service_injection(svc, auth_type) : NULL;
}

/* Validate a user-supplied injection (object) for auth_type. */
static enum hv_rc
check_injection(const json_t *inj, const char *auth_type, struct hv_err *err)
{
	enum hv_rc rc;

	if (!json_is_object(inj))
		return hv_err_set(
		    err, HV_E_INVALID, "'injection' must be an object");
	rc = hv_injection_check(inj, auth_type, err);
	if (rc != HV_OK && err != NULL)
		err->rc = HV_E_INVALID;
	return rc == HV_OK ? HV_OK : HV_E_INVALID;
}

/* expected_version: a positive integer, or absent/null (-1). */
static enum hv_rc
body_expected_version(
    const json_t *body, long header_ev, long *ev, struct hv_err *err)
{
	const json_t *j = json_object_get(body, "expected_version");
	long bv = -1;

	if (j != NULL && !json_is_null(j)) {
		if (!json_is_integer(j) || json_integer_value(j) < 1 ||
		    json_integer_value(j) > INT32_MAX)
			return hv_err_set(err, HV_E_INVALID,
			    "'expected_version' must be a positive integer");
		bv = (long)json_integer_value(j);
	}
	if (bv >= 0 && header_ev >= 0 && bv != header_ev)
		return hv_err_set(err, HV_E_INVALID,
		    "'expected_version' and If-Match disagree");
	*ev = bv >= 0 ? bv : header_ev;
	return HV_OK;
}

/* ------------------------------------------------------------------ */
/* Rows, access, audit                                                 */

static const char *
val(const PGresult *r, int row, enum col c)
{
	if (PQgetisnull(r, row, (int)c))
		return NULL;
	return PQgetvalue(r, row, (int)c);
}

static bool
is_admin(const struct hv_principal *p)
{
	return (p->scopes & HV_SCOPE_ADMIN) != 0;
}

/*
 * The injection of the rows of one answer, parsed once per distinct text:
 * a page's rows mostly share one (one service's), and parsing it again
 * for each row was about a tenth of a search's CPU in the server. Rows
 * that take it share the one json_t, which nothing changes once built.
 */
struct inj_memo {
	const char *text; /* borrowed from the PGresult */
	json_t *inj;      /* a reference of its own; NULL: none yet */
};

static json_t *
injection_json(const char *text, struct inj_memo *m)
{
	json_t *inj;

	if (text == NULL)
		return NULL;
	if (m != NULL && m->inj != NULL && strcmp(m->text, text) == 0)
		return json_incref(m->inj);
	inj = json_loads(text, 0, NULL);
	if (inj != NULL && m != NULL) {
		json_decref(m->inj);
		m->inj = json_incref(inj);
		m->text = text;
	}
	return inj;
}

/*
 * The public JSON of row `row` (no secret, no owner label); m, when not
 * NULL, remembers the injection across the rows of one answer.
 */
static json_t *
row_json_memo(const PGresult *r, int row, struct inj_memo *m)
{
	/* in answer order; injection and version are put in between */
	static const struct {
		const char *key;
		enum col col;
		bool nullable;
	} f[] = {{"id", C_ID, false}, {"workspace_id", C_WS, false},
	    {"service", C_SERVICE, false}, {"name", C_NAME, false},
	    {"auth_type", C_AUTH, false}, {"scope", C_SCOPE, false},
	    {"status", C_STATUS, false}, {"base_url", C_BASE_URL, true},
	    {"expires_at", C_EXPIRES, true}, {"created_at", C_CREATED, false},
	    {"updated_at", C_UPDATED, false},
	    {"last_used_at", C_LAST_USED, true},
	    {"created_by", C_CREATED_BY, false}, {"notes", C_NOTES, false}};
	json_t *inj, *o;
	long ver;
	char *end = NULL;
	size_t i;

	inj = injection_json(val(r, row, C_INJECTION), m);
	if (inj == NULL)
		return NULL;
	errno = 0;
	ver = strtol(val(r, row, C_VERSION), &end, 10);
	if (errno != 0 || end == NULL || *end != '\0') {
		json_decref(inj);
		return NULL;
	}
	o = json_object();
	if (o == NULL) {
		json_decref(inj);
		return NULL;
	}
	/*
	 * The keys are ours and the text comes from PostgreSQL, which hands
	 * out valid UTF-8 (client_encoding UTF8, store.c): no second check
	 * of either, the slowest part of a list of 50 rows. Should a byte
	 * sequence be invalid after all, serializing the answer fails (500).
	 */
	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		const char *v = val(r, row, f[i].col);
		json_t *j;

		if (v == NULL && !f[i].nullable)
			goto fail;
		j = v != NULL ? json_string_nocheck(v) : json_null();
		if (json_object_set_new_nocheck(o, f[i].key, j) != 0)
			goto fail;
		if (f[i].col == C_SCOPE) {
			if (json_object_set_new_nocheck(o, "injection", inj) !=
			    0) {
				inj = NULL;
				goto fail;
			}
			inj = NULL;
		} else if (f[i].col == C_STATUS &&
		    json_object_set_new_nocheck(
		        o, "version", json_integer((json_int_t)ver)) != 0) {
			goto fail;
		}
	}
	return o;
fail:
	json_decref(inj);
	json_decref(o);
	return NULL;
}

static json_t *
row_json(const PGresult *r, int row)
{
	return row_json_memo(r, row, NULL);
}

/* Row of r whose id is id, or -1. */
static int
row_of_id(const PGresult *r, const char *id)
{
	int t;

	for (t = 0; t < PQntuples(r); t++)
		if (strcmp(val(r, t, C_ID), id) == 0)
			return t;
	return -1;
}

static enum hv_rc
not_found(struct hv_err *err)
{
	return hv_err_set(err, HV_E_NOT_FOUND, "credential not found");
}

/* Run a one-id statement expected to return one credential row. */
static enum hv_rc
fetch_row(struct hv_conn *c, const char *stmt, const char *id, PGresult **out,
    struct hv_err *err)
{
	const char *params[1] = {id};
	PGresult *r = NULL;
	enum hv_rc rc;

	rc = hv_store_exec(c, stmt, 1, params, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		return rc;
	if (PQnfields(r) != C_NCOLS) {
		PQclear(r);
		return hv_err_set(
		    err, HV_E_INTERNAL, "%s: unexpected columns", stmt);
	}
	if (PQntuples(r) != 1) {
		PQclear(r);
		return not_found(err);
	}
	*out = r;
	return HV_OK;
}

/*
 * How long row 0 of r may be served from the metadata cache: *until_us is
 * its expires_at (the computed status flips then) or 0 for none. False:
 * do not cache it.
 */
static bool
cache_until(const PGresult *r, int64_t *until_us)
{
	const char *e = val(r, 0, C_EXPIRES);
	struct hv_err scratch = {0};

	*until_us = 0;
	if (e == NULL)
		return true;
	return hv_vault_parse_time(e, until_us, &scratch, "expires_at") ==
	    HV_OK &&
	    *until_us > 0;
}

/*
 * Visibility (404), allow-list (403) and, for changes, the credential's
 * own workspace (403) of row 0 of r.
 */
static enum hv_rc
check_access(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const PGresult *r, bool change,
    struct hv_err *err)
{
	/*
	 * A refusal of something the key can see is a denied request: it
	 * gets its auth.denied row (in a transaction of its own, so that it
	 * stays when the caller's transaction rolls back). What the key
	 * cannot see is answered 404 like a credential that does not exist.
	 */
	if (!hv_vault_visible(
	        p, val(r, 0, C_WS), val(r, 0, C_SCOPE), val(r, 0, C_OWNER)))
		return not_found(err);
	if (!hv_vault_allowed(p, val(r, 0, C_ID))) {
		(void)hv_vault_deny(v, p, ctx, val(r, 0, C_ID),
		    "credential not in the api key's allow-list");
		return hv_err_set(err, HV_E_FORBIDDEN,
		    "credential is outside this key's allow-list");
	}
	if (change && !is_admin(p) &&
	    strcmp(val(r, 0, C_WS), p->workspace_id) != 0) {
		(void)hv_vault_deny(v, p, ctx, val(r, 0, C_ID),
		    "change of another workspace's credential");
		return hv_err_set(err, HV_E_FORBIDDEN,
		    "credential belongs to another workspace; only its own "
		    "workspace can change it");
	}
	return HV_OK;
}

static const char *
created_by(const struct hv_principal *p)
{
	if (p->name[0] != '\0')
		return p->name;
	if (p->key_id[0] != '\0')
		return p->key_id;
	return "cli";
}

static void
fill_event(struct hv_audit_event *ev, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *ws, const char *action,
    const char *cred_id, const char *outcome, const char *detail)
{
	memset(ev, 0, sizeof(*ev));
	ev->workspace_id = ws;
	ev->actor_id = p->key_id[0] != '\0' ? p->key_id : NULL;
	ev->actor_name = created_by(p);
	ev->action = action;
	ev->credential_id = cred_id;
	ev->outcome = outcome;
	ev->request_id = ctx != NULL ? ctx->request_id : NULL;
	ev->remote_addr = ctx != NULL ? ctx->remote_addr : NULL;
	ev->detail = detail;
}

/* Append an audit row in the open transaction of c. */
static enum hv_rc
audit_tx(struct hv_vault *v, struct hv_conn *c, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *ws, const char *action,
    const char *cred_id, const char *detail, struct hv_err *err)
{
	struct hv_audit_event ev;

	fill_event(&ev, p, ctx, ws, action, cred_id, "success", detail);
	return hv_audit_append(v->audit, c, &ev, err);
}

/* ------------------------------------------------------------------ */
/* Envelope I/O                                                        */

/*
 * After a committed rotate (an OAuth refresh included), revoke or delete
 * of cred_id: neither a cached DEK nor the cached metadata row outlives it
 * here (vault_int.h).
 * (Other instances drop the row when the trigger's notification arrives
 * and hold DEKs at most dek_cache_ttl_ms; docs/performance.md says why
 * that is safe.) An edit, an unrevoke and a use change no DEK and forget
 * only the row.
 */
void
hv_vault_forget_cached(struct hv_vault *v, const char *cred_id)
{
	hv_dekcache_forget(v->dekcache, cred_id);
	hv_credcache_forget(v->credcache, cred_id);
}

/* Insert the sealed version row (vault_int.h). */
enum hv_rc
hv_vault_insert_version(struct hv_conn *c, const char *id, uint32_t version,
    const struct hv_envelope *env, struct hv_err *err)
{
	char ver[16], kek[16];
	const char *params[6];
	int lengths[6] = {0, 0, 0, 0, 0, 0};
	int formats[6] = {0, 0, 0, 1, 1, 1};

	(void)snprintf(ver, sizeof(ver), "%" PRIu32, version);
	(void)snprintf(kek, sizeof(kek), "%" PRIu32, env->kek_version);
	params[0] = id;
	params[1] = ver;
	params[2] = kek;
	params[3] = (const char *)env->wrapped;
	lengths[3] = (int)env->wrapped_len;
	params[4] = (const char *)env->nonce;
	lengths[4] = HV_ENVELOPE_NONCE_LEN;
	params[5] = (const char *)env->ct;
	lengths[5] = (int)env->ct_len;
	return hv_store_exec(c, "cred_version_insert", 6, params, lengths,
	    formats, false, NULL, err);
}

/* Seal the secret object for (ws, id, version) (vault_int.h). */
enum hv_rc
hv_vault_seal_secret(struct hv_vault *v, const char *ws, const char *id,
    uint32_t version, const json_t *sec, struct hv_envelope *env,
    struct hv_err *err)
{
	struct hv_secret *pt = NULL;
	enum hv_rc rc;

	rc = secret_serialize(sec, &pt, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_envelope_seal(v->hsm, ws, id, version, pt, env, err);
	hv_secret_free(&pt);
	return rc;
}

static uint32_t
be32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;

	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 |
	    (uint32_t)u[2] << 8 | (uint32_t)u[3];
}

/*
 * Decrypt env, version `ver` of credential (ws, id), into a JSON object
 * (*secret, new). The one place where DEKs are unwrapped: from the DEK
 * cache when it holds this (ids, version, KEK version, wrapped bytes),
 * else in the key store. gen is hv_dekcache_gen() taken before env was
 * read from the database.
 */
static enum hv_rc
open_env(struct hv_vault *v, const char *ws, const char *id, uint32_t ver,
    const struct hv_envelope *env, uint64_t gen, json_t **secret,
    struct hv_err *err)
{
	struct hv_dekcache_key key;
	struct hv_secret *pt = NULL, *dek = NULL;
	bool cached = false;
	enum hv_rc rc;

	if (v->dekcache != NULL) {
		rc = hv_dekcache_key(ws, id, ver, env->kek_version,
		    env->wrapped, env->wrapped_len, &key, err);
		if (rc != HV_OK)
			return rc;
		cached = hv_dekcache_get(v->dekcache, &key, &dek);
	}
	if (!cached) {
		rc = hv_envelope_unwrap_dek(v->hsm, ws, id, ver, env->wrapped,
		    env->wrapped_len, env->kek_version, &dek, err);
		if (rc != HV_OK)
			return rc;
	}
	rc = hv_envelope_open_dek(dek, ws, id, ver, env, &pt, err);
	/* cached only once it opened the payload it belongs to */
	if (rc == HV_OK && !cached && v->dekcache != NULL)
		hv_dekcache_put(v->dekcache, &key, dek, gen);
	if (rc == HV_OK)
		rc = secret_parse(pt, secret, err);
	hv_secret_free(&dek);
	hv_secret_free(&pt);
	return rc;
}

static bool
parse_version(const char *version, uint32_t *out)
{
	unsigned long ver;
	char *end = NULL;

	errno = 0;
	ver = strtoul(version, &end, 10);
	if (errno != 0 || end == NULL || *end != '\0' || ver == 0 ||
	    ver > UINT32_MAX)
		return false;
	*out = (uint32_t)ver;
	return true;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* A text-format bytea ("\x" hex) into out (cap bytes); false if bad. */
static bool
bytea_text(const char *s, size_t n, uint8_t *out, size_t cap, size_t *len)
{
	size_t i;

	if (n < 2 || s[0] != '\\' || s[1] != 'x' || (n - 2) % 2 != 0 ||
	    (n - 2) / 2 > cap)
		return false;
	for (i = 0; i < (n - 2) / 2; i++) {
		int hi = hexval(s[2 + 2 * i]), lo = hexval(s[3 + 2 * i]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	*len = (n - 2) / 2;
	return true;
}

/*
 * env from the text columns c0..c0+3 (kek_version, wrapped_dek, nonce,
 * ciphertext) of row 0 of r, as cred_get_secret returns them.
 */
static enum hv_rc
env_from_text(
    const PGresult *r, int c0, struct hv_envelope *env, struct hv_err *err)
{
	size_t wl = 0, nl = 0, cl = 0, tl;
	uint32_t kek;

	if (PQgetisnull(r, 0, c0) || PQgetisnull(r, 0, c0 + 1))
		return hv_err_set(err, HV_E_INTERNAL,
		    "credential has no row for its current version");
	tl = (size_t)PQgetlength(r, 0, c0 + 3);
	if (!parse_version(PQgetvalue(r, 0, c0), &kek) ||
	    !bytea_text(PQgetvalue(r, 0, c0 + 1),
	        (size_t)PQgetlength(r, 0, c0 + 1), env->wrapped,
	        sizeof(env->wrapped), &wl) ||
	    wl < 1 ||
	    !bytea_text(PQgetvalue(r, 0, c0 + 2),
	        (size_t)PQgetlength(r, 0, c0 + 2), env->nonce,
	        sizeof(env->nonce), &nl) ||
	    nl != HV_ENVELOPE_NONCE_LEN || tl < 4)
		return hv_err_set(
		    err, HV_E_CRYPTO, "stored credential version is malformed");
	env->kek_version = kek;
	env->wrapped_len = wl;
	env->ct = hv_malloc((tl - 2) / 2);
	if (env->ct == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	if (!bytea_text(
	        PQgetvalue(r, 0, c0 + 3), tl, env->ct, (tl - 2) / 2, &cl) ||
	    cl < 1)
		return hv_err_set(
		    err, HV_E_CRYPTO, "stored credential version is malformed");
	env->ct_len = cl;
	return HV_OK;
}

/*
 * The envelope of a stored version: columns col..col+3 of row, fetched in
 * binary, are kek_version (int4), wrapped_dek, nonce and ciphertext. Every
 * length is checked before it is copied; env must be hv_envelope_init()ed
 * and is released by the caller.
 */
static enum hv_rc
env_from_row(const PGresult *r, int row, int col, struct hv_envelope *env,
    struct hv_err *err)
{
	int wl = PQgetlength(r, row, col + 1);
	int nl = PQgetlength(r, row, col + 2);
	int cl = PQgetlength(r, row, col + 3);

	if (PQgetlength(r, row, col) != 4 || wl < 1 || wl > HV_WRAPPED_MAX ||
	    nl != HV_ENVELOPE_NONCE_LEN || cl < 1)
		return hv_err_set(
		    err, HV_E_CRYPTO, "stored credential version is malformed");
	env->kek_version = be32(PQgetvalue(r, row, col));
	memcpy(env->wrapped, PQgetvalue(r, row, col + 1), (size_t)wl);
	env->wrapped_len = (size_t)wl;
	memcpy(env->nonce, PQgetvalue(r, row, col + 2), HV_ENVELOPE_NONCE_LEN);
	env->ct = hv_malloc((size_t)cl);
	if (env->ct == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	memcpy(env->ct, PQgetvalue(r, row, col + 3), (size_t)cl);
	env->ct_len = (size_t)cl;
	return HV_OK;
}

enum hv_rc
hv_vault_open_version(struct hv_vault *v, struct hv_conn *c, const char *ws,
    const char *id, const char *version, json_t **secret, struct hv_err *err)
{
	const char *params[2] = {id, version};
	struct hv_envelope env;
	PGresult *r = NULL;
	uint64_t gen;
	uint32_t ver;
	enum hv_rc rc;

	hv_envelope_init(&env);
	if (!parse_version(version, &ver)) {
		rc = hv_err_set(err, HV_E_INTERNAL, "bad version number");
		goto out;
	}
	/* before the read: a forget() after it voids our put */
	gen = hv_dekcache_gen(v->dekcache);
	rc = hv_store_exec(
	    c, "cred_version_get", 2, params, NULL, NULL, true, &r, err);
	if (rc != HV_OK)
		goto out;
	if (PQntuples(r) != 1) {
		rc = hv_err_set(err, HV_E_INTERNAL,
		    "credential has no row for its current version");
		goto out;
	}
	rc = env_from_row(r, 0, 0, &env, err);
	if (rc != HV_OK)
		goto out;
	rc = open_env(v, ws, id, ver, &env, gen, secret, err);
out:
	hv_envelope_release(&env);
	PQclear(r);
	return rc;
}

/*
 * Insert credential params[0..11] (cred_create's order) and its version 1
 * sealed in env, in one statement; *r gets the credential row (COLS).
 */
static enum hv_rc
insert_credential(struct hv_conn *c, const char *const *cred_params,
    const struct hv_envelope *env, PGresult **r, struct hv_err *err)
{
	const char *params[16];
	int lengths[16] = {0}, formats[16] = {0};
	char kek[16];
	int i;

	for (i = 0; i < 12; i++)
		params[i] = cred_params[i];
	(void)snprintf(kek, sizeof(kek), "%" PRIu32, env->kek_version);
	params[12] = kek;
	params[13] = (const char *)env->wrapped;
	lengths[13] = (int)env->wrapped_len;
	params[14] = (const char *)env->nonce;
	lengths[14] = HV_ENVELOPE_NONCE_LEN;
	params[15] = (const char *)env->ct;
	lengths[15] = (int)env->ct_len;
	formats[13] = formats[14] = formats[15] = 1;
	return hv_store_exec(
	    c, "cred_create", 16, params, lengths, formats, false, r, err);
}

/* ------------------------------------------------------------------ */
/* Create                                                              */

/*
 * A create checked and sealed, ready to be written: alone by its caller,
 * or queued for a group commit (then *out is filled by the writer before
 * done runs). Every string is a copy in buf: the request may be gone.
 */
struct create_job {
	struct hv_group_item item; /* the queue's link */
	char id[HV_UUID_STR];
	const char *params[12]; /* cred_create's $1..$12 */
	struct hv_audit_event ev;
	struct hv_envelope env;
	json_t *out; /* queued: the answer (borrowed: the caller's) */
	hv_done_fn done;
	void *arg;
	size_t len;
	char buf[];
};

static void
job_free(struct create_job *j)
{
	if (j == NULL)
		return;
	hv_envelope_release(&j->env);
	hv_free_wipe(j, sizeof(*j) + j->len);
}

/*
 * The job of credential id with cred_create's parameters params[1..11]
 * (params[0] is id) and the audit event of p's request.
 */
static struct create_job *
job_new(const char *id, const char *const *params, const struct hv_principal *p,
    const struct hv_reqctx *ctx)
{
	struct hv_audit_event ev;
	const char *ef[4];
	struct create_job *j;
	size_t need = 0, off = 0, i;

	fill_event(&ev, p, ctx, p->workspace_id, "credential.create", NULL,
	    "success", NULL);
	ef[0] = ev.actor_id;
	ef[1] = ev.actor_name;
	ef[2] = ev.request_id;
	ef[3] = ev.remote_addr;
	for (i = 1; i < 12; i++)
		need += params[i] != NULL ? strlen(params[i]) + 1 : 0;
	for (i = 0; i < 4; i++)
		need += ef[i] != NULL ? strlen(ef[i]) + 1 : 0;
	j = hv_calloc(1, sizeof(*j) + need);
	if (j == NULL)
		return NULL;
	j->len = need;
	hv_envelope_init(&j->env);
	(void)snprintf(j->id, sizeof(j->id), "%s", id);
	j->params[0] = j->id;
	for (i = 1; i < 12; i++)
		j->params[i] = hv_strput(j->buf, &off, params[i]);
	j->ev = ev;
	j->ev.workspace_id = j->params[1];
	j->ev.credential_id = j->id;
	j->ev.actor_id = hv_strput(j->buf, &off, ef[0]);
	j->ev.actor_name = hv_strput(j->buf, &off, ef[1]);
	j->ev.request_id = hv_strput(j->buf, &off, ef[2]);
	j->ev.remote_addr = hv_strput(j->buf, &off, ef[3]);
	return j;
}

/* Write job j in a transaction of its own; *out gets the row. */
static enum hv_rc
create_write(
    struct hv_vault *v, struct create_job *j, json_t **out, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	json_t *o = NULL;
	enum hv_rc rc;

	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_begin(c, err);
	if (rc != HV_OK)
		goto out;
	rc = insert_credential(c, j->params, &j->env, &r, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_audit_append(v->audit, c, &j->ev, err);
	if (rc != HV_OK)
		goto out;
	o = row_json(r, 0);
	if (o == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	rc = hv_store_commit(c, err);
	if (rc != HV_OK)
		goto out;
	*out = o;
	o = NULL;
out:
	hv_store_release(v->store, &c); /* rolls back if still open */
	json_decref(o);
	PQclear(r);
	return rc;
}

/*
 * Write jobs j[0..n-1] (2..CREATE_GROUP_MAX) in one transaction: one
 * statement for the credentials and their versions, one for their audit
 * rows (hv_audit_append_many), one commit; on success *rows has the
 * credential rows, j[k]'s at row[k]. *sent: the COMMIT went out, so the
 * outcome is the commit's and nothing may be written again.
 */
static enum hv_rc
create_many(struct hv_vault *v, struct create_job **j, size_t n,
    PGresult **rows, int *row, bool *sent, struct hv_err *err)
{
	const char *params[16 * CREATE_GROUP_MAX];
	int lengths[16 * CREATE_GROUP_MAX], formats[16 * CREATE_GROUP_MAX];
	char kek[CREATE_GROUP_MAX][16];
	const struct hv_audit_event *evs[CREATE_GROUP_MAX];
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	enum hv_rc rc;
	size_t i, k;

	*sent = false;
	memset(lengths, 0, sizeof(lengths[0]) * 16 * n);
	memset(formats, 0, sizeof(formats[0]) * 16 * n);
	for (i = 0; i < n; i++) {
		const struct hv_envelope *env = &j[i]->env;
		size_t b = 16 * i;

		for (k = 0; k < 12; k++)
			params[b + k] = j[i]->params[k];
		(void)snprintf(
		    kek[i], sizeof(kek[i]), "%" PRIu32, env->kek_version);
		params[b + 12] = kek[i];
		params[b + 13] = (const char *)env->wrapped;
		lengths[b + 13] = (int)env->wrapped_len;
		params[b + 14] = (const char *)env->nonce;
		lengths[b + 14] = HV_ENVELOPE_NONCE_LEN;
		params[b + 15] = (const char *)env->ct;
		lengths[b + 15] = (int)env->ct_len;
		formats[b + 13] = formats[b + 14] = formats[b + 15] = 1;
		evs[i] = &j[i]->ev;
	}
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_begin(c, err);
	if (rc == HV_OK)
		rc = hv_store_exec(c,
		    hv_stmt_family_name(&create_group_family, n), (int)(16 * n),
		    params, lengths, formats, false, &r, err);
	if (rc != HV_OK)
		goto out;
	if ((size_t)PQntuples(r) != n) {
		rc = hv_err_set(err, HV_E_DATABASE,
		    "a group of %zu creates returned %d rows", n, PQntuples(r));
		goto out;
	}
	/* RETURNING's order is not promised: match the rows by id */
	for (i = 0; i < n; i++) {
		row[i] = row_of_id(r, j[i]->id);
		if (row[i] < 0) {
			rc = hv_err_set(err, HV_E_DATABASE,
			    "a group of creates lost a row");
			goto out;
		}
	}
	rc = hv_audit_append_many(v->audit, c, evs, n, err);
	if (rc != HV_OK)
		goto out;
	*sent = true;
	rc = hv_store_commit(c, err);
	if (rc != HV_OK)
		goto out;
	*rows = r;
	r = NULL;
out:
	hv_store_release(v->store, &c); /* rolls back if still open */
	PQclear(r);
	return rc;
}

/*
 * The group's writer (hv_group_fn): the jobs in one transaction, and if
 * that fails before its commit went out, each job alone, so that one bad
 * create never fails the others and each gets its own outcome. Then each
 * job's done, and the job is freed.
 */
void
hv_vault_create_group_run(void *ctx, struct hv_group_item **items, size_t n)
{
	struct hv_vault *v = ctx;
	struct create_job *j[CREATE_GROUP_MAX];
	enum hv_rc rcs[CREATE_GROUP_MAX];
	struct hv_err errs[CREATE_GROUP_MAX];
	int row[CREATE_GROUP_MAX];
	PGresult *rows = NULL;
	struct hv_err err = {HV_OK, ""};
	bool sent = false;
	enum hv_rc rc = HV_E_INTERNAL;
	size_t i;

	for (i = 0; i < n; i++) {
		j[i] = (struct create_job *)(void *)items[i];
		rcs[i] = HV_OK;
		errs[i].rc = HV_OK;
		errs[i].msg[0] = '\0';
	}
	if (n > 1)
		rc = create_many(v, j, n, &rows, row, &sent, &err);
	for (i = 0; i < n; i++) {
		json_t *o = NULL;

		if (rc == HV_OK) {
			o = row_json(rows, row[i]);
			if (o == NULL)
				rcs[i] = hv_err_set(
				    &errs[i], HV_E_NOMEM, "out of memory");
		} else if (sent) {
			rcs[i] = rc;
			errs[i] = err;
		} else {
			rcs[i] = create_write(v, j[i], &o, &errs[i]);
		}
		if (o != NULL && json_object_update_new(j[i]->out, o) != 0)
			rcs[i] =
			    hv_err_set(&errs[i], HV_E_NOMEM, "out of memory");
	}
	PQclear(rows);
	/* j[i]->out is not touched after its done: the caller's again */
	for (i = 0; i < n; i++) {
		j[i]->done(j[i]->arg, rcs[i], &errs[i]);
		job_free(j[i]);
	}
}

/*
 * Check and seal a create; *job gets it (NULL with the error otherwise).
 */
static enum hv_rc
create_prepare(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const json_t *body, struct create_job **job,
    struct hv_err *err)
{
	static const char *const fields[] = {"service", "name", "auth_type",
	    "scope", "notes", "secret", "injection", "expires_at", "base_url",
	    NULL};
	const char *service, *name, *auth_type, *scope, *notes, *expires,
	    *base_url;
	const struct hv_service *svc;
	const json_t *inj, *sec;
	char id[HV_UUID_STR], expires_buf[80], url[URL_MAX_BYTES + 1];
	char *inj_text = NULL;
	const char *params[12];
	struct create_job *j = NULL;
	enum hv_rc rc;

	*job = NULL;
	rc = hv_vault_require(v, p, HV_SCOPE_CRED_WRITE, ctx, err);
	if (rc != HV_OK)
		goto out;
	if (!json_is_object(body)) {
		rc =
		    hv_err_set(err, HV_E_INVALID, "body must be a JSON object");
		goto out;
	}
	rc = only_fields(body, fields, NULL, err);
	if (rc != HV_OK)
		goto out;

	rc = want_string(json_object_get(body, "service"), "service", true,
	    SERVICE_MAX_CHARS, false, STR_LINE, &service, err);
	if (rc != HV_OK)
		goto out;
	svc = hv_catalog_find(v->catalog, service);
	if (svc == NULL) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "unknown 'service' (see "
		    "GET /v1/services; \"http\" for a generic HTTP API)");
		goto out;
	}

	rc = want_string(json_object_get(body, "auth_type"), "auth_type", false,
	    32, true, STR_LINE, &auth_type, err);
	if (rc != HV_OK)
		goto out;
	if (auth_type == NULL)
		auth_type = hv_service_default_auth_type(svc);
	if (!in_set(auth_type, auth_types)) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'auth_type' must be one of "
		    "api_key, bearer, basic, oauth2, custom_headers");
		goto out;
	}
	if (!hv_service_supports(svc, auth_type)) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'auth_type' %s is not "
		    "supported by service %s",
		    auth_type, hv_service_id(svc));
		goto out;
	}

	rc = want_string(json_object_get(body, "name"), "name", true,
	    NAME_MAX_CHARS, false, STR_LINE, &name, err);
	if (rc != HV_OK)
		goto out;

	rc = want_string(json_object_get(body, "scope"), "scope", false, 32,
	    true, STR_LINE, &scope, err);
	if (rc != HV_OK)
		goto out;
	if (scope == NULL)
		scope = "workspace";
	if (!in_set(scope, scopes)) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'scope' must be one of "
		    "personal, workspace, organization");
		goto out;
	}
	if (strcmp(scope, "personal") == 0 && p->user[0] == '\0') {
		rc = hv_err_set(err, HV_E_INVALID,
		    "scope 'personal' needs an "
		    "API key with a user label");
		goto out;
	}

	rc = want_string(json_object_get(body, "notes"), "notes", false,
	    NOTES_MAX_CHARS, false, STR_TEXT, &notes, err);
	if (rc != HV_OK)
		goto out;
	if (notes == NULL)
		notes = "";

	inj = json_object_get(body, "injection");
	if (inj == NULL || json_is_null(inj)) {
		inj = default_injection(svc, auth_type);
		if (inj == NULL) {
			rc = hv_err_set(err, HV_E_INTERNAL,
			    "service %s has no "
			    "injection for %s",
			    hv_service_id(svc), auth_type);
			goto out;
		}
	} else {
		rc = check_injection(inj, auth_type, err);
		if (rc != HV_OK)
			goto out;
	}

	rc = want_string(json_object_get(body, "expires_at"), "expires_at",
	    false, 64, true, STR_LINE, &expires, err);
	if (rc != HV_OK)
		goto out;
	if (expires != NULL) {
		if (!rfc3339(expires, expires_buf, sizeof(expires_buf))) {
			rc = hv_err_set(err, HV_E_INVALID,
			    "'expires_at' must be "
			    "an RFC 3339 date-time");
			goto out;
		}
		expires = expires_buf;
	}

	rc = want_string(json_object_get(body, "base_url"), "base_url", false,
	    URL_MAX_BYTES, true, STR_LINE, &base_url, err);
	if (rc != HV_OK)
		goto out;
	if (base_url != NULL) {
		rc = check_url(v, base_url, "base_url", url, sizeof(url), err);
		if (rc != HV_OK)
			goto out;
		base_url = url;
	} else if (hv_service_is_generic(svc)) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'base_url' is required for "
		    "service %s",
		    hv_service_id(svc));
		goto out;
	}

	sec = json_object_get(body, "secret");
	rc = check_secret(v, sec, auth_type, err);
	if (rc != HV_OK)
		goto out;

	inj_text = json_dumps(inj, JSON_COMPACT | JSON_SORT_KEYS);
	if (inj_text == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	rc = hv_uuid_new(id);
	if (rc != HV_OK) {
		rc = hv_err_set(err, rc, "cannot make an id");
		goto out;
	}
	params[0] = id;
	params[1] = p->workspace_id;
	params[2] = service;
	params[3] = name;
	params[4] = auth_type;
	params[5] = scope;
	params[6] = strcmp(scope, "personal") == 0 ? p->user : NULL;
	params[7] = notes;
	params[8] = inj_text;
	params[9] = base_url;
	params[10] = expires;
	params[11] = created_by(p);
	j = job_new(id, params, p, ctx);
	if (j == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	/* The key store works before any connection is held. */
	rc = hv_vault_seal_secret(v, p->workspace_id, id, 1, sec, &j->env, err);
	if (rc != HV_OK)
		goto out;
	*job = j;
	j = NULL;
out:
	job_free(j);
	json_text_free(inj_text);
	return rc;
}

enum hv_rc
hv_vault_cred_create(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const json_t *body, json_t **out,
    struct hv_err *err)
{
	struct create_job *j;
	enum hv_rc rc;

	rc = create_prepare(v, p, ctx, body, &j, err);
	if (rc != HV_OK)
		return rc;
	rc = create_write(v, j, out, err);
	job_free(j);
	return rc;
}

enum hv_rc
hv_vault_cred_create_async(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const json_t *body, hv_done_fn done, void *arg,
    bool *pending, json_t **out, struct hv_err *err)
{
	struct create_job *j;
	json_t *o;
	enum hv_rc rc;

	*pending = false;
	if (v->creates == NULL || done == NULL)
		return hv_vault_cred_create(v, p, ctx, body, out, err);
	rc = create_prepare(v, p, ctx, body, &j, err);
	if (rc != HV_OK)
		return rc;
	if (hv_group_alone(v->creates)) {
		/* nothing to share a commit with: written here, at once */
		rc = create_write(v, j, out, err);
		hv_group_alone_end(v->creates);
		job_free(j);
		return rc;
	}
	o = json_object();
	if (o == NULL) {
		job_free(j);
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	}
	j->out = o;
	j->done = done;
	j->arg = arg;
	rc = hv_group_push(v->creates, &j->item, err);
	if (rc != HV_OK) {
		job_free(j);
		json_decref(o);
		return rc;
	}
	*out = o;
	*pending = true;
	return HV_OK;
}

/* ------------------------------------------------------------------ */
/* List                                                                */

static const char b64u[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void
b64u_encode(const unsigned char *in, size_t n, char *out, size_t cap)
{
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i + 3 <= n && o + 5 < cap; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];
		out[o++] = b64u[v >> 18 & 63];
		out[o++] = b64u[v >> 12 & 63];
		out[o++] = b64u[v >> 6 & 63];
		out[o++] = b64u[v & 63];
	}
	if (n - i == 1 && o + 3 < cap) {
		v = (uint32_t)in[i] << 16;
		out[o++] = b64u[v >> 18 & 63];
		out[o++] = b64u[v >> 12 & 63];
	} else if (n - i == 2 && o + 4 < cap) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64u[v >> 18 & 63];
		out[o++] = b64u[v >> 12 & 63];
		out[o++] = b64u[v >> 6 & 63];
	}
	out[o] = '\0';
}

/* Strict unpadded base64url; false on any other character or length. */
static bool
b64u_decode(const char *in, unsigned char *out, size_t cap, size_t *len)
{
	size_t n = strlen(in), i, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (n % 4 == 1)
		return false;
	for (i = 0; i < n; i++) {
		const char *pos = in[i] != '\0' ? strchr(b64u, in[i]) : NULL;

		if (pos == NULL)
			return false;
		acc = acc << 6 | (uint32_t)(pos - b64u);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return false;
			out[o++] = (unsigned char)(acc >> bits & 0xff);
		}
	}
	/* Unused low bits must be zero (one encoding per cursor). */
	if ((acc & ((1u << bits) - 1)) != 0)
		return false;
	*len = o;
	return true;
}

/* Cursor = base64url("<created_at µs>|<uuid>"). */
static enum hv_rc
cursor_decode(const char *cur, char *us, size_t us_cap, char id[HV_UUID_STR],
    struct hv_err *err)
{
	unsigned char raw[CURSOR_MAX];
	size_t n = 0, bar;
	char *end = NULL;
	long long t;

	if (strlen(cur) > CURSOR_MAX ||
	    !b64u_decode(cur, raw, sizeof(raw) - 1, &n))
		goto bad;
	raw[n] = '\0';
	if (strlen((char *)raw) != n)
		goto bad;
	bar = strcspn((char *)raw, "|");
	if (bar == 0 || bar >= n || bar >= us_cap || n - bar - 1 != 36)
		goto bad;
	raw[bar] = '\0';
	if (!digits((char *)raw + (raw[0] == '-'), bar - (raw[0] == '-')) ||
	    bar - (raw[0] == '-') == 0)
		goto bad;
	errno = 0;
	t = strtoll((char *)raw, &end, 10);
	if (errno != 0 || end == NULL || *end != '\0')
		goto bad;
	if (!hv_uuid_normalize((char *)raw + bar + 1, id))
		goto bad;
	(void)snprintf(us, us_cap, "%lld", t);
	return HV_OK;
bad:
	return hv_err_set(err, HV_E_INVALID, "malformed 'cursor'");
}

static json_t *
cursor_encode(const char *us, const char *id)
{
	char raw[CURSOR_MAX], enc[CURSOR_MAX * 2];
	int n;

	n = snprintf(raw, sizeof(raw), "%s|%s", us, id);
	if (n < 0 || (size_t)n >= sizeof(raw))
		return NULL;
	b64u_encode((unsigned char *)raw, (size_t)n, enc, sizeof(enc));
	return json_string(enc);
}

/* "{id,id,...}" of the allow-list; NULL in *out when all are allowed. */
static enum hv_rc
allow_array(const struct hv_principal *p, char **out, struct hv_err *err)
{
	size_t i, cap, o = 0;
	char *s;

	*out = NULL;
	if (p->all_credentials)
		return HV_OK;
	cap = 3 + p->n_cred_ids * HV_UUID_STR;
	s = hv_malloc(cap);
	if (s == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	s[o++] = '{';
	for (i = 0; i < p->n_cred_ids; i++) {
		size_t l = strnlen(p->cred_ids[i], HV_UUID_STR - 1);

		if (!hv_uuid_valid(p->cred_ids[i]))
			continue;
		if (o > 1)
			s[o++] = ',';
		memcpy(s + o, p->cred_ids[i], l);
		o += l;
	}
	s[o++] = '}';
	s[o] = '\0';
	*out = s;
	return HV_OK;
}

/*
 * q as the body of a LIKE pattern that matches q itself: \, % and _ get
 * a \ (LIKE's default escape) in front, so the search stays a plain
 * substring. Those bytes never occur inside a UTF-8 multibyte sequence, so
 * a byte loop is safe; lower-casing is left to PostgreSQL (cred_list).
 * out holds 2 * strlen(q) + 1 bytes: a checked q (at most QUERY_MAX_CHARS
 * UTF-8 characters) always fits in LIKE_PATTERN_MAX.
 */
#define LIKE_PATTERN_MAX (2 * 4 * QUERY_MAX_CHARS + 1)

static void
like_escape(const char *q, char out[LIKE_PATTERN_MAX])
{
	size_t i, o = 0;

	for (i = 0; q[i] != '\0' && o + 3 <= LIKE_PATTERN_MAX; i++) {
		if (q[i] == '\\' || q[i] == '%' || q[i] == '_')
			out[o++] = '\\';
		out[o++] = q[i];
	}
	out[o] = '\0';
}

enum hv_rc
hv_vault_cred_list(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const struct hv_list_query *q, json_t **out,
    struct hv_err *err)
{
	const struct hv_list_query empty = {0};
	char cur_us[32], cur_id[HV_UUID_STR], lim[16];
	const char *params[12];
	char *allow = NULL;
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	json_t *o = NULL, *items = NULL, *next = NULL;
	struct inj_memo memo = {NULL, NULL};
	unsigned int limit;
	char pattern[LIKE_PATTERN_MAX];
	const char *search = NULL;
	enum hv_rc rc;
	int i, n;

	rc = hv_vault_require(v, p, HV_SCOPE_CRED_READ, ctx, err);
	if (rc != HV_OK)
		goto out;
	if (q == NULL)
		q = &empty;
	limit = q->limit == 0 ? LIST_DEFAULT : q->limit;
	if (limit > LIST_MAX) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'limit' must be between 1 "
		    "and %d",
		    LIST_MAX);
		goto out;
	}
	if (q->q != NULL && q->q[0] != '\0') {
		size_t l = strlen(q->q), k;

		if (utf8_chars(q->q, l) > QUERY_MAX_CHARS) {
			rc = hv_err_set(err, HV_E_INVALID,
			    "'q' is too long (at "
			    "most %d characters)",
			    QUERY_MAX_CHARS);
			goto out;
		}
		if (!utf8_valid(q->q, l)) {
			rc = hv_err_set(err, HV_E_INVALID, "'q' must be UTF-8");
			goto out;
		}
		for (k = 0; k < l; k++)
			if ((unsigned char)q->q[k] < 0x20) {
				rc = hv_err_set(err, HV_E_INVALID,
				    "'q' must not "
				    "contain control characters");
				goto out;
			}
		like_escape(q->q, pattern);
		search = pattern;
	}
	if (q->scope != NULL && !in_set(q->scope, scopes)) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'scope' must be one of "
		    "personal, workspace, organization");
		goto out;
	}
	if (q->auth_type != NULL && !in_set(q->auth_type, auth_types)) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'auth_type' must be one of "
		    "api_key, bearer, basic, oauth2, custom_headers");
		goto out;
	}
	if (q->status != NULL && !in_set(q->status, statuses)) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'status' must be one of "
		    "active, expired, failing, revoked");
		goto out;
	}
	if (q->service != NULL &&
	    hv_catalog_find(v->catalog, q->service) == NULL) {
		rc = hv_err_set(err, HV_E_INVALID, "unknown 'service'");
		goto out;
	}
	if (q->cursor != NULL && q->cursor[0] != '\0') {
		rc = cursor_decode(
		    q->cursor, cur_us, sizeof(cur_us), cur_id, err);
		if (rc != HV_OK)
			goto out;
	}
	rc = allow_array(p, &allow, err);
	if (rc != HV_OK)
		goto out;
	(void)snprintf(lim, sizeof(lim), "%u", limit + 1);
	params[0] = is_admin(p) ? "t" : "f";
	params[1] = hv_uuid_valid(p->workspace_id) ? p->workspace_id : NULL;
	params[2] = p->user[0] != '\0' ? p->user : NULL;
	params[3] = allow;
	params[4] = search;
	params[5] = q->scope;
	params[6] = q->auth_type;
	params[7] = q->status;
	params[8] = q->service;
	params[9] = q->cursor != NULL && q->cursor[0] != '\0' ? cur_us : NULL;
	params[10] = params[9] != NULL ? cur_id : NULL;
	params[11] = lim;

	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_store_exec(
	    c, "cred_list", 12, params, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	items = json_array();
	if (items == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	n = PQntuples(r);
	for (i = 0; i < n && (unsigned int)i < limit; i++) {
		json_t *it;

		if (!hv_vault_visible(p, val(r, i, C_WS), val(r, i, C_SCOPE),
		        val(r, i, C_OWNER))) {
			/* SQL and C disagree: fail safe, never show it. */
			hv_log_warn("credential list: visibility mismatch for "
			            "%s",
			    val(r, i, C_ID));
			continue;
		}
		it = row_json_memo(r, i, &memo);
		if (it == NULL || json_array_append_new(items, it) != 0) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
	}
	if ((unsigned int)n > limit) {
		next = cursor_encode(val(r, (int)limit - 1, C_CREATED_US),
		    val(r, (int)limit - 1, C_ID));
		if (next == NULL) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
	} else {
		next = json_null();
	}
	o = json_pack("{s:o, s:o}", "items", items, "next_cursor", next);
	items = NULL;
	next = NULL;
	if (o == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	*out = o;
out:
	if (c != NULL)
		hv_store_release(v->store, &c);
	json_decref(memo.inj);
	PQclear(r);
	json_decref(items);
	json_decref(next);
	hv_free(allow);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Get                                                                 */

enum hv_rc
hv_vault_cred_get(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, json_t **out,
    struct hv_err *err)
{
	char idn[HV_UUID_STR];
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	json_t *o;
	enum hv_rc rc;
	uint64_t gen = 0;
	int64_t until = 0;
	bool cached;

	rc = hv_vault_require(v, p, HV_SCOPE_CRED_READ, ctx, err);
	if (rc != HV_OK)
		return rc;
	if (!hv_uuid_normalize(id, idn))
		return not_found(err);
	/* the same row, checked the same way, from the cache when fresh */
	cached = v->credcache != NULL && hv_vault_notices_fresh(v);
	if (cached)
		r = hv_credcache_get(v->credcache, idn);
	if (r == NULL) {
		gen = hv_credcache_gen(v->credcache, idn);
		rc = hv_store_acquire(v->store, &c, err);
		if (rc != HV_OK)
			return rc;
		rc = fetch_row(c, "cred_get", idn, &r, err);
		hv_store_release(v->store, &c);
		if (rc != HV_OK)
			return rc;
		if (cached && cache_until(r, &until))
			hv_credcache_put(v->credcache, idn, r, until, gen);
	}
	rc = check_access(v, p, ctx, r, false, err);
	if (rc == HV_OK) {
		o = row_json(r, 0);
		if (o == NULL)
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		else
			*out = o;
	}
	PQclear(r);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Changes: common frame                                               */

/*
 * Acquire, begin, lock the row of id (normalized into idn) and check
 * access for a change. On HV_OK the transaction is open and *r holds the
 * locked row.
 */
static enum hv_rc
begin_change(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, char idn[HV_UUID_STR],
    struct hv_conn **c, PGresult **r, struct hv_err *err)
{
	enum hv_rc rc;

	if (!hv_uuid_normalize(id, idn))
		return not_found(err);
	rc = hv_store_acquire(v->store, c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_begin(*c, err);
	if (rc != HV_OK)
		return rc;
	rc = fetch_row(*c, "cred_lock", idn, r, err);
	if (rc != HV_OK)
		return rc;
	return check_access(v, p, ctx, *r, true, err);
}

static enum hv_rc
check_version(const PGresult *r, long expected, struct hv_err *err)
{
	if (expected < 0)
		return HV_OK;
	if (strtol(val(r, 0, C_VERSION), NULL, 10) != expected)
		return hv_err_set(err, HV_E_CONFLICT,
		    "credential is at version "
		    "%s, not %ld",
		    val(r, 0, C_VERSION), expected);
	return HV_OK;
}

/* Commit and hand out the JSON of row 0 of r. */
static enum hv_rc
finish_change(
    struct hv_conn *c, const PGresult *r, json_t **out, struct hv_err *err)
{
	json_t *o = NULL;
	enum hv_rc rc;

	if (out != NULL) {
		o = row_json(r, 0);
		if (o == NULL)
			return hv_err_set(err, HV_E_NOMEM, "out of memory");
	}
	rc = hv_store_commit(c, err);
	if (rc != HV_OK) {
		json_decref(o);
		return rc;
	}
	if (out != NULL)
		*out = o;
	return HV_OK;
}

/* ------------------------------------------------------------------ */
/* Update (PATCH)                                                      */

enum hv_rc
hv_vault_cred_update(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const json_t *body,
    long expected_version, json_t **out, struct hv_err *err)
{
	static const char *const fields[] = {
	    "name", "notes", "scope", "injection", "expected_version", NULL};
	const char *name = NULL, *notes = NULL, *scope = NULL, *owner;
	const json_t *inj, *j;
	char idn[HV_UUID_STR];
	char *inj_text = NULL;
	const char *params[6];
	struct hv_conn *c = NULL;
	PGresult *r = NULL, *r2 = NULL;
	const struct hv_service *svc;
	bool has_notes;
	long ev;
	enum hv_rc rc;

	rc = hv_vault_require(v, p, HV_SCOPE_CRED_WRITE, ctx, err);
	if (rc != HV_OK)
		goto out;
	if (!json_is_object(body)) {
		rc =
		    hv_err_set(err, HV_E_INVALID, "body must be a JSON object");
		goto out;
	}
	if (json_object_get(body, "secret") != NULL) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'secret' cannot be edited; "
		    "use rotate (POST /v1/credentials/{id}/rotate)");
		goto out;
	}
	if (json_object_get(body, "base_url") != NULL) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'base_url' is bound to the "
		    "secret and changes only with rotate");
		goto out;
	}
	rc = only_fields(body, fields, NULL, err);
	if (rc != HV_OK)
		goto out;
	rc = body_expected_version(body, expected_version, &ev, err);
	if (rc != HV_OK)
		goto out;
	j = json_object_get(body, "name");
	if (j != NULL) {
		rc = want_string(j, "name", true, NAME_MAX_CHARS, false,
		    STR_LINE, &name, err);
		if (rc != HV_OK)
			goto out;
	}
	j = json_object_get(body, "notes");
	has_notes = j != NULL;
	rc = want_string(
	    j, "notes", false, NOTES_MAX_CHARS, false, STR_TEXT, &notes, err);
	if (rc != HV_OK)
		goto out;
	if (has_notes && notes == NULL)
		notes = ""; /* null clears */
	j = json_object_get(body, "scope");
	if (j != NULL) {
		rc = want_string(
		    j, "scope", true, 32, true, STR_LINE, &scope, err);
		if (rc != HV_OK)
			goto out;
		if (!in_set(scope, scopes)) {
			rc = hv_err_set(err, HV_E_INVALID,
			    "'scope' must be one "
			    "of personal, workspace, organization");
			goto out;
		}
	}
	inj = json_object_get(body, "injection");

	rc = begin_change(v, p, ctx, id, idn, &c, &r, err);
	if (rc != HV_OK)
		goto out;
	rc = check_version(r, ev, err);
	if (rc != HV_OK)
		goto out;

	/* Scope: becoming personal makes the caller's user the owner. */
	owner = val(r, 0, C_OWNER);
	if (scope != NULL && strcmp(scope, val(r, 0, C_SCOPE)) != 0) {
		if (strcmp(scope, "personal") == 0) {
			if (p->user[0] == '\0') {
				rc = hv_err_set(err, HV_E_INVALID,
				    "scope "
				    "'personal' needs an API key with a user "
				    "label");
				goto out;
			}
			owner = p->user;
		} else {
			owner = NULL;
		}
	}
	if (scope == NULL)
		scope = val(r, 0, C_SCOPE);

	if (inj != NULL && !json_is_null(inj)) {
		rc = check_injection(inj, val(r, 0, C_AUTH), err);
		if (rc != HV_OK)
			goto out;
		inj_text = json_dumps(inj, JSON_COMPACT | JSON_SORT_KEYS);
		if (inj_text == NULL) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
	} else if (inj != NULL) {
		/* null: back to the catalog default */
		svc = hv_catalog_find(v->catalog, val(r, 0, C_SERVICE));
		inj = default_injection(svc, val(r, 0, C_AUTH));
		if (inj == NULL) {
			rc = hv_err_set(err, HV_E_INVALID,
			    "service has no "
			    "default injection; give one");
			goto out;
		}
		inj_text = json_dumps(inj, JSON_COMPACT | JSON_SORT_KEYS);
		if (inj_text == NULL) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
	}
	params[0] = idn;
	params[1] = name != NULL ? name : val(r, 0, C_NAME);
	params[2] = notes != NULL ? notes : val(r, 0, C_NOTES);
	params[3] = scope;
	params[4] = owner;
	params[5] = inj_text != NULL ? inj_text : val(r, 0, C_INJECTION);
	rc = hv_store_exec(
	    c, "cred_update", 6, params, NULL, NULL, false, &r2, err);
	if (rc != HV_OK)
		goto out;
	if (PQntuples(r2) != 1) {
		rc = not_found(err);
		goto out;
	}
	rc = audit_tx(
	    v, c, p, ctx, val(r, 0, C_WS), "credential.update", idn, NULL, err);
	if (rc != HV_OK)
		goto out;
	rc = finish_change(c, r2, out, err);
	if (rc == HV_OK)
		hv_credcache_forget(v->credcache, idn); /* DEKs unchanged */
out:
	if (c != NULL)
		hv_store_release(v->store, &c);
	PQclear(r);
	PQclear(r2);
	json_text_free(inj_text);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Rotate                                                              */

enum hv_rc
hv_vault_cred_rotate(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const json_t *body,
    long expected_version, json_t **out, struct hv_err *err)
{
	static const char *const fields[] = {
	    "secret", "base_url", "expected_version", "expires_at", NULL};
	const json_t *sec, *bu, *ex;
	const char *base_url = NULL, *expires = NULL;
	char idn[HV_UUID_STR], url[URL_MAX_BYTES + 1], expires_buf[80];
	char newver[16];
	const char *params[4];
	struct hv_envelope env;
	struct hv_conn *c = NULL;
	PGresult *r = NULL, *r2 = NULL;
	const struct hv_service *svc;
	unsigned long ver;
	long ev;
	enum hv_rc rc;

	hv_envelope_init(&env);
	rc = hv_vault_require(v, p, HV_SCOPE_CRED_WRITE, ctx, err);
	if (rc != HV_OK)
		goto out;
	if (!json_is_object(body)) {
		rc =
		    hv_err_set(err, HV_E_INVALID, "body must be a JSON object");
		goto out;
	}
	rc = only_fields(body, fields, NULL, err);
	if (rc != HV_OK)
		goto out;
	rc = body_expected_version(body, expected_version, &ev, err);
	if (rc != HV_OK)
		goto out;
	sec = json_object_get(body, "secret");
	if (sec == NULL || json_is_null(sec)) {
		rc = hv_err_set(err, HV_E_INVALID, "'secret' is required");
		goto out;
	}
	bu = json_object_get(body, "base_url");
	if (bu != NULL && !json_is_null(bu)) {
		rc = want_string(bu, "base_url", true, URL_MAX_BYTES, true,
		    STR_LINE, &base_url, err);
		if (rc != HV_OK)
			goto out;
		rc = check_url(v, base_url, "base_url", url, sizeof(url), err);
		if (rc != HV_OK)
			goto out;
		base_url = url;
	}
	ex = json_object_get(body, "expires_at");
	if (ex != NULL && !json_is_null(ex)) {
		rc = want_string(
		    ex, "expires_at", true, 64, true, STR_LINE, &expires, err);
		if (rc != HV_OK)
			goto out;
		if (!rfc3339(expires, expires_buf, sizeof(expires_buf))) {
			rc = hv_err_set(err, HV_E_INVALID,
			    "'expires_at' must be "
			    "an RFC 3339 date-time");
			goto out;
		}
		expires = expires_buf;
	}

	rc = begin_change(v, p, ctx, id, idn, &c, &r, err);
	if (rc != HV_OK)
		goto out;
	rc = check_version(r, ev, err);
	if (rc != HV_OK)
		goto out;
	rc = check_secret(v, sec, val(r, 0, C_AUTH), err);
	if (rc != HV_OK)
		goto out;
	/* base_url: absent keeps it, null clears it (not for generic). */
	if (bu == NULL)
		base_url = val(r, 0, C_BASE_URL);
	svc = hv_catalog_find(v->catalog, val(r, 0, C_SERVICE));
	if (base_url == NULL && (svc == NULL || hv_service_is_generic(svc))) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "'base_url' is required for "
		    "service %s",
		    val(r, 0, C_SERVICE));
		goto out;
	}
	/* expires_at: absent keeps it, null clears it. */
	if (ex == NULL)
		expires = val(r, 0, C_EXPIRES);
	ver = strtoul(val(r, 0, C_VERSION), NULL, 10);
	if (ver == 0 || ver >= INT32_MAX) {
		rc = hv_err_set(err, HV_E_INTERNAL, "bad version number");
		goto out;
	}
	ver++;
	rc = hv_vault_seal_secret(
	    v, val(r, 0, C_WS), idn, (uint32_t)ver, sec, &env, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_vault_insert_version(c, idn, (uint32_t)ver, &env, err);
	if (rc != HV_OK)
		goto out;
	(void)snprintf(newver, sizeof(newver), "%lu", ver);
	params[0] = idn;
	params[1] = newver;
	params[2] = base_url;
	params[3] = expires;
	rc = hv_store_exec(
	    c, "cred_rotate", 4, params, NULL, NULL, false, &r2, err);
	if (rc != HV_OK)
		goto out;
	if (PQntuples(r2) != 1) {
		rc = not_found(err);
		goto out;
	}
	rc = audit_tx(
	    v, c, p, ctx, val(r, 0, C_WS), "credential.rotate", idn, NULL, err);
	if (rc != HV_OK)
		goto out;
	rc = finish_change(c, r2, out, err);
	if (rc == HV_OK)
		hv_vault_forget_cached(v, idn);
out:
	if (c != NULL)
		hv_store_release(v->store, &c);
	PQclear(r);
	PQclear(r2);
	hv_envelope_release(&env);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Revoke / unrevoke                                                   */

enum hv_rc
hv_vault_cred_revoke(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, bool revoke, json_t **out,
    struct hv_err *err)
{
	char idn[HV_UUID_STR];
	const char *params[2];
	struct hv_conn *c = NULL;
	PGresult *r = NULL, *r2 = NULL;
	const PGresult *res;
	enum hv_rc rc;

	rc = hv_vault_require(v, p, HV_SCOPE_CRED_WRITE, ctx, err);
	if (rc != HV_OK)
		goto out;
	rc = begin_change(v, p, ctx, id, idn, &c, &r, err);
	if (rc != HV_OK)
		goto out;
	res = r;
	/*
	 * Revoke always sets revoked; unrevoke turns only a revoked
	 * credential back to active (a failing one stays failing).
	 */
	if (revoke || strcmp(val(r, 0, C_STATUS_RAW), "revoked") == 0) {
		params[0] = idn;
		params[1] = revoke ? "revoked" : "active";
		rc = hv_store_exec(c, "cred_set_status", 2, params, NULL, NULL,
		    false, &r2, err);
		if (rc != HV_OK)
			goto out;
		if (PQntuples(r2) != 1) {
			rc = not_found(err);
			goto out;
		}
		res = r2;
	}
	rc = audit_tx(v, c, p, ctx, val(r, 0, C_WS),
	    revoke ? "credential.revoke" : "credential.unrevoke", idn, NULL,
	    err);
	if (rc != HV_OK)
		goto out;
	rc = finish_change(c, res, out, err);
	if (rc == HV_OK && revoke)
		hv_vault_forget_cached(v, idn);
	else if (rc == HV_OK && res == r2) /* unrevoked: only the row moved */
		hv_credcache_forget(v->credcache, idn);
out:
	if (c != NULL)
		hv_store_release(v->store, &c);
	PQclear(r);
	PQclear(r2);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Duplicate                                                           */

/* "<name> (copy)", cut on a character boundary to fit NAME_MAX_CHARS. */
static char *
copy_name(const char *name)
{
	static const char sfx[] = " (copy)";
	size_t n = strlen(name), keep = n, chars;
	char *s;

	chars = utf8_chars(name, n);
	while (chars + sizeof(sfx) - 1 > NAME_MAX_CHARS && keep > 0) {
		keep--;
		while (keep > 0 && ((unsigned char)name[keep] & 0xC0) == 0x80)
			keep--;
		chars = utf8_chars(name, keep);
	}
	s = hv_malloc(keep + sizeof(sfx));
	if (s == NULL)
		return NULL;
	memcpy(s, name, keep);
	memcpy(s + keep, sfx, sizeof(sfx));
	return s;
}

enum hv_rc
hv_vault_cred_duplicate(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const json_t *body,
    json_t **out, struct hv_err *err)
{
	static const char *const fields[] = {"name", NULL};
	const char *name = NULL, *ws;
	char idn[HV_UUID_STR], nid[HV_UUID_STR], detail[64];
	char *defname = NULL;
	const char *params[12];
	struct hv_envelope env;
	struct hv_conn *c = NULL;
	PGresult *r = NULL, *r2 = NULL;
	json_t *sec = NULL;
	enum hv_rc rc;

	hv_envelope_init(&env);
	rc = hv_vault_require(v, p, HV_SCOPE_CRED_WRITE, ctx, err);
	if (rc != HV_OK)
		goto out;
	if (body != NULL && !json_is_null(body)) {
		if (!json_is_object(body)) {
			rc = hv_err_set(
			    err, HV_E_INVALID, "body must be a JSON object");
			goto out;
		}
		rc = only_fields(body, fields, NULL, err);
		if (rc != HV_OK)
			goto out;
		rc = want_string(json_object_get(body, "name"), "name", false,
		    NAME_MAX_CHARS, false, STR_LINE, &name, err);
		if (rc != HV_OK)
			goto out;
	}
	/*
	 * The source row is locked so that a concurrent rotate or delete
	 * cannot slip between reading its version and copying it.
	 */
	rc = begin_change(v, p, ctx, id, idn, &c, &r, err);
	if (rc != HV_OK)
		goto out;
	ws = val(r, 0, C_WS);
	rc = hv_vault_open_version(
	    v, c, ws, idn, val(r, 0, C_VERSION), &sec, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_uuid_new(nid);
	if (rc != HV_OK) {
		rc = hv_err_set(err, rc, "cannot make an id");
		goto out;
	}
	rc = hv_vault_seal_secret(v, ws, nid, 1, sec, &env, err);
	json_decref(sec);
	sec = NULL;
	if (rc != HV_OK)
		goto out;
	if (name == NULL) {
		defname = copy_name(val(r, 0, C_NAME));
		if (defname == NULL) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
		name = defname;
	}
	params[0] = nid;
	params[1] = ws;
	params[2] = val(r, 0, C_SERVICE);
	params[3] = name;
	params[4] = val(r, 0, C_AUTH);
	params[5] = val(r, 0, C_SCOPE);
	params[6] = val(r, 0, C_OWNER);
	params[7] = val(r, 0, C_NOTES);
	params[8] = val(r, 0, C_INJECTION);
	params[9] = val(r, 0, C_BASE_URL);
	params[10] = val(r, 0, C_EXPIRES);
	params[11] = created_by(p);
	rc = insert_credential(c, params, &env, &r2, err);
	if (rc != HV_OK)
		goto out;
	/* One row on each credential's own audit trail. */
	(void)snprintf(detail, sizeof(detail), "copy %s", nid);
	rc = audit_tx(
	    v, c, p, ctx, ws, "credential.duplicate", idn, detail, err);
	if (rc != HV_OK)
		goto out;
	(void)snprintf(detail, sizeof(detail), "copy of %s", idn);
	rc = audit_tx(
	    v, c, p, ctx, ws, "credential.duplicate", nid, detail, err);
	if (rc != HV_OK)
		goto out;
	rc = finish_change(c, r2, out, err);
out:
	if (c != NULL)
		hv_store_release(v->store, &c);
	json_decref(sec);
	hv_free(defname);
	PQclear(r);
	PQclear(r2);
	hv_envelope_release(&env);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Delete (crypto-shred)                                               */

enum hv_rc
hv_vault_cred_delete(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, struct hv_err *err)
{
	char idn[HV_UUID_STR];
	const char *params[1];
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	enum hv_rc rc;

	rc = hv_vault_require(v, p, HV_SCOPE_CRED_WRITE, ctx, err);
	if (rc != HV_OK)
		goto out;
	rc = begin_change(v, p, ctx, id, idn, &c, &r, err);
	if (rc != HV_OK)
		goto out;
	params[0] = idn;
	/* The wrapped DEKs go first, explicitly (not only by cascade). */
	rc = hv_store_exec(
	    c, "cred_delete_versions", 1, params, NULL, NULL, false, NULL, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_store_exec(
	    c, "cred_delete", 1, params, NULL, NULL, false, NULL, err);
	if (rc != HV_OK)
		goto out;
	rc = audit_tx(
	    v, c, p, ctx, val(r, 0, C_WS), "credential.delete", idn, NULL, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_store_commit(c, err);
	if (rc == HV_OK)
		hv_vault_forget_cached(v, idn);
out:
	if (c != NULL)
		hv_store_release(v->store, &c);
	PQclear(r);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Reveal, open for use, record use                                    */

/*
 * The row of id (normalized into idn) with its current version's
 * envelope columns, access checked, in one statement (no lock, no
 * transaction); the connection is back in the pool before any key store
 * work. *gen is the DEK cache generation from before the read. *r (the
 * caller's to PQclear) may be set even on error.
 */
static enum hv_rc
read_secret_row(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, char idn[HV_UUID_STR],
    uint64_t *gen, PGresult **r, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	const char *params[1] = {idn};
	enum hv_rc rc;

	if (!hv_uuid_normalize(id, idn))
		return not_found(err);
	*gen = hv_dekcache_gen(v->dekcache);
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_exec(
	    c, "cred_get_secret", 1, params, NULL, NULL, false, r, err);
	hv_store_release(v->store, &c);
	if (rc != HV_OK)
		return rc;
	if (PQnfields(*r) != C_NCOLS + 4)
		return hv_err_set(err, HV_E_INTERNAL,
		    "cred_get_secret: "
		    "unexpected columns");
	if (PQntuples(*r) != 1)
		return not_found(err);
	return check_access(v, p, ctx, *r, false, err);
}

/* Decrypt the envelope of row 0 of r, as read by read_secret_row(). */
static enum hv_rc
open_row(struct hv_vault *v, const PGresult *r, const char *idn,
    struct hv_envelope *env, uint64_t gen, json_t **secret, struct hv_err *err)
{
	uint32_t ver;
	enum hv_rc rc;

	if (!parse_version(val(r, 0, C_VERSION), &ver))
		return hv_err_set(err, HV_E_INTERNAL, "bad version number");
	rc = env_from_text(r, C_NCOLS, env, err);
	if (rc != HV_OK)
		return rc;
	return open_env(v, val(r, 0, C_WS), idn, ver, env, gen, secret, err);
}

/* done == NULL: wait for the audit commit (hv_vault_cred_reveal). */
static enum hv_rc
reveal(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, hv_done_fn done, void *arg,
    bool *pending, json_t **out, struct hv_err *err)
{
	char idn[HV_UUID_STR];
	char ws[HV_UUID_STR] = "";
	struct hv_audit_event ev;
	struct hv_envelope env;
	PGresult *r = NULL;
	json_t *sec = NULL, *o = NULL;
	uint64_t gen = 0;
	enum hv_rc rc;

	hv_envelope_init(&env);
	rc = hv_vault_require(v, p, HV_SCOPE_CRED_REVEAL, ctx, err);
	if (rc != HV_OK)
		goto out;
	rc = read_secret_row(v, p, ctx, id, idn, &gen, &r, err);
	if (rc != HV_OK)
		goto out;
	(void)snprintf(ws, sizeof(ws), "%s", val(r, 0, C_WS));
	rc = open_row(v, r, idn, &env, gen, &sec, err);
	if (rc != HV_OK) {
		struct hv_err e2 = {0};

		/* Best effort: a failed reveal attempt is audited too. */
		fill_event(&ev, p, ctx, ws, "credential.reveal", idn, "failure",
		    hv_rc_code(rc));
		if (hv_audit_append_alone(v->audit, v->store, &ev, &e2) !=
		    HV_OK)
			hv_log_warn("reveal failure of %s not audited: %s", idn,
			    e2.msg);
		goto out;
	}
	o = json_pack("{s:o}", "secret", sec);
	sec = NULL;
	if (o == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	/* The secret leaves only once its audit row is committed. */
	fill_event(&ev, p, ctx, ws, "credential.reveal", idn, "success", NULL);
	if (done != NULL && hv_audit_async(v->audit)) {
		rc = hv_audit_submit(
		    v->audit, v->store, &ev, done, arg, pending, err);
	} else {
		rc = hv_audit_append_alone(v->audit, v->store, &ev, err);
	}
	if (rc != HV_OK)
		goto out;
	*out = o;
	o = NULL;
out:
	json_decref(o);
	json_decref(sec);
	hv_envelope_release(&env);
	PQclear(r);
	return rc;
}

enum hv_rc
hv_vault_cred_reveal(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, json_t **out,
    struct hv_err *err)
{
	return reveal(v, p, ctx, id, NULL, NULL, NULL, out, err);
}

enum hv_rc
hv_vault_cred_reveal_async(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, hv_done_fn done, void *arg,
    bool *pending, json_t **out, struct hv_err *err)
{
	*pending = false;
	return reveal(v, p, ctx, id, done, arg, pending, out, err);
}

enum hv_rc
hv_vault_cred_open_for_use(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, json_t **meta, json_t **secret,
    struct hv_err *err)
{
	char idn[HV_UUID_STR];
	struct hv_envelope env;
	PGresult *r = NULL;
	json_t *sec = NULL, *m = NULL;
	uint64_t gen = 0;
	enum hv_rc rc;

	hv_envelope_init(&env);
	rc = hv_vault_require(v, p, HV_SCOPE_CRED_USE, ctx, err);
	if (rc != HV_OK)
		goto out;
	rc = read_secret_row(v, p, ctx, id, idn, &gen, &r, err);
	if (rc != HV_OK)
		goto out;
	if (strcmp(val(r, 0, C_STATUS_RAW), "revoked") == 0) {
		rc = hv_err_set(err, HV_E_REVOKED, "credential is revoked");
		goto out;
	}
	m = row_json(r, 0);
	if (m == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	rc = open_row(v, r, idn, &env, gen, &sec, err);
	if (rc != HV_OK)
		goto out;
	*meta = m;
	*secret = sec;
	m = NULL;
	sec = NULL;
out:
	json_decref(m);
	json_decref(sec);
	hv_envelope_release(&env);
	PQclear(r);
	return rc;
}

static const char *const use_actions[] = {
    "credential.test", "credential.use", NULL};
static const char *const use_statuses[] = {
    "active", "failing", "expired", NULL};

/*
 * What a record is checked for before anything is written: action and
 * status among ours (*act, *st: the same strings, static), the key's
 * scope, and the id (normalized into idn).
 */
static enum hv_rc
record_check(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const char *action,
    const char *new_status, char idn[HV_UUID_STR], const char **act,
    const char **st, struct hv_err *err)
{
	enum hv_rc rc;

	*act = one_of(action, use_actions);
	*st = one_of(new_status, use_statuses);
	if (*act == NULL)
		return hv_err_set(err, HV_E_INTERNAL,
		    "record_use: action must "
		    "be credential.test or credential.use");
	if (new_status != NULL && *st == NULL)
		return hv_err_set(err, HV_E_INTERNAL,
		    "record_use: status must "
		    "be active, failing or expired");
	rc = hv_vault_require(v, p, HV_SCOPE_CRED_USE, ctx, err);
	if (rc != HV_OK)
		return rc;
	if (!hv_uuid_normalize(id, idn))
		return not_found(err);
	return HV_OK;
}

/* Write a checked record in a transaction of its own. */
static enum hv_rc
record_write(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *idn, const char *action, bool ok,
    const char *new_status, struct hv_err *err)
{
	const char *params[2];
	struct hv_audit_event ev;
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	enum hv_rc rc;

	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_begin(c, err);
	if (rc != HV_OK)
		goto out;
	/* lock and update at once; a refused access rolls the update back */
	params[0] = idn;
	params[1] = new_status;
	rc = hv_store_exec(
	    c, "cred_use_update", 2, params, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	if (PQnfields(r) != C_NCOLS || PQntuples(r) != 1) {
		rc = not_found(err);
		goto out;
	}
	rc = check_access(v, p, ctx, r, false, err);
	if (rc != HV_OK)
		goto out;
	fill_event(&ev, p, ctx, val(r, 0, C_WS), action, idn,
	    ok ? "success" : "failure", new_status);
	rc = hv_audit_append(v->audit, c, &ev, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_store_commit(c, err);
	if (rc == HV_OK)
		hv_credcache_forget(v->credcache, idn);
out:
	hv_store_release(v->store, &c);
	PQclear(r);
	return rc;
}

enum hv_rc
hv_vault_cred_record_use(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const char *action, bool ok,
    const char *new_status, struct hv_err *err)
{
	char idn[HV_UUID_STR];
	const char *act, *st;
	enum hv_rc rc;

	rc = record_check(
	    v, p, ctx, id, action, new_status, idn, &act, &st, err);
	if (rc != HV_OK)
		return rc;
	return record_write(v, p, ctx, idn, act, ok, st, err);
}

/* ------------------------------------------------------------------ */
/* Group commit of use records                                         */

/*
 * A use record queued for a group commit. The request's principal
 * (allow-list included) and context are copies in buf: the request is
 * held, but the record must not depend on how.
 */
struct use_job {
	struct hv_group_item item; /* the queue's link */
	struct hv_principal p;
	struct hv_reqctx ctx;
	char id[HV_UUID_STR];
	const char *action; /* a static string */
	const char *status; /* a static string, or NULL */
	bool ok;
	hv_done_fn done;
	void *arg;
	size_t len;
	char buf[];
};

static void
use_job_free(struct use_job *j)
{
	if (j != NULL)
		hv_free_wipe(j, sizeof(*j) + j->len);
}

static struct use_job *
use_job_new(const struct hv_principal *p, const struct hv_reqctx *ctx,
    const char *idn, const char *action, bool ok, const char *status)
{
	const char *rid = ctx != NULL ? ctx->request_id : NULL;
	const char *addr = ctx != NULL ? ctx->remote_addr : NULL;
	size_t ids = p->n_cred_ids * sizeof(p->cred_ids[0]);
	size_t need = ids, off;
	struct use_job *j;

	need += rid != NULL ? strlen(rid) + 1 : 0;
	need += addr != NULL ? strlen(addr) + 1 : 0;
	j = hv_calloc(1, sizeof(*j) + need);
	if (j == NULL)
		return NULL;
	j->len = need;
	j->p = *p;
	j->p.cred_ids = NULL;
	if (ids > 0) {
		memcpy(j->buf, p->cred_ids, ids);
		j->p.cred_ids = (char(*)[HV_UUID_STR])(void *)j->buf;
	}
	off = ids;
	j->ctx.request_id = hv_strput(j->buf, &off, rid);
	j->ctx.remote_addr = hv_strput(j->buf, &off, addr);
	(void)snprintf(j->id, sizeof(j->id), "%s", idn);
	j->action = action;
	j->status = status;
	j->ok = ok;
	return j;
}

/*
 * cred_use_update_many's arrays for jobs j[0..n-1]: each distinct id once
 * (in ids, "{a,b}"), with the status of its last job that sets one
 * (sts, "{active,NULL}"), as the records one after the other would
 * leave it.
 */
static void
use_arrays(struct use_job **j, size_t n, char *ids, size_t ids_cap, char *sts,
    size_t sts_cap)
{
	size_t i, k, oi = 0, os = 0;

	ids[oi++] = '{';
	sts[os++] = '{';
	for (i = 0; i < n; i++) {
		const char *st = NULL;

		for (k = 0; k < i; k++)
			if (strcmp(j[k]->id, j[i]->id) == 0)
				break;
		if (k < i)
			continue; /* written with its first job */
		for (k = i; k < n; k++)
			if (strcmp(j[k]->id, j[i]->id) == 0 &&
			    j[k]->status != NULL)
				st = j[k]->status;
		oi += (size_t)snprintf(ids + oi, ids_cap - oi, "%s%s",
		    oi > 1 ? "," : "", j[i]->id);
		os += (size_t)snprintf(sts + os, sts_cap - os, "%s%s",
		    os > 1 ? "," : "", st != NULL ? st : "NULL");
	}
	(void)snprintf(ids + oi, ids_cap - oi, "}");
	(void)snprintf(sts + os, sts_cap - os, "}");
}

/*
 * Write use records j[0..n-1] (2..USE_GROUP_MAX) in one transaction: one
 * statement for their credentials, one for their audit rows, one commit.
 * A record whose credential is gone or no longer visible to its key fails
 * the group before anything is written (*sent false): alone, it gets the
 * answer hv_vault_cred_record_use gives it. *sent: the COMMIT went out, so
 * the outcome is the commit's and nothing may be written again.
 */
static enum hv_rc
use_many(struct hv_vault *v, struct use_job **j, size_t n, bool *sent,
    struct hv_err *err)
{
	/* a UUID and a comma per id; "failing" and a comma per status */
	char ids[USE_GROUP_MAX * HV_UUID_STR + 3];
	char sts[USE_GROUP_MAX * 8 + 3];
	struct hv_audit_event evs[USE_GROUP_MAX];
	const struct hv_audit_event *evp[USE_GROUP_MAX];
	const char *params[2];
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	enum hv_rc rc;
	size_t i;
	int t;

	*sent = false;
	use_arrays(j, n, ids, sizeof(ids), sts, sizeof(sts));
	params[0] = ids;
	params[1] = sts;
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_begin(c, err);
	if (rc == HV_OK)
		rc = hv_store_exec(c, "cred_use_update_many", 2, params, NULL,
		    NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	if (PQnfields(r) != C_NCOLS) {
		rc = hv_err_set(err, HV_E_INTERNAL,
		    "cred_use_update_many: unexpected columns");
		goto out;
	}
	for (i = 0; i < n; i++) {
		/*
		 * Visibility as check_access() sees it; the allow-list
		 * depends on the key and the id alone, both as they were
		 * when the use opened the credential.
		 */
		t = row_of_id(r, j[i]->id);
		if (t < 0 ||
		    !hv_vault_visible(&j[i]->p, val(r, t, C_WS),
		        val(r, t, C_SCOPE), val(r, t, C_OWNER))) {
			rc = hv_err_set(err, HV_E_NOT_FOUND,
			    "a record of the group lost its credential");
			goto out;
		}
		fill_event(&evs[i], &j[i]->p, &j[i]->ctx, val(r, t, C_WS),
		    j[i]->action, j[i]->id, j[i]->ok ? "success" : "failure",
		    j[i]->status);
		evp[i] = &evs[i];
	}
	rc = hv_audit_append_many(v->audit, c, evp, n, err);
	if (rc != HV_OK)
		goto out;
	*sent = true;
	rc = hv_store_commit(c, err);
	if (rc != HV_OK)
		goto out;
	for (i = 0; i < n; i++)
		hv_credcache_forget(v->credcache, j[i]->id);
out:
	hv_store_release(v->store, &c); /* rolls back if still open */
	PQclear(r);
	return rc;
}

/*
 * The group's writer (hv_group_fn): the records in one transaction, and
 * if that fails before its commit went out, each record alone, so that
 * each gets the outcome it gets alone. Then each record's done.
 */
void
hv_vault_use_group_run(void *ctx, struct hv_group_item **items, size_t n)
{
	struct hv_vault *v = ctx;
	struct use_job *j[USE_GROUP_MAX];
	struct hv_err err = {HV_OK, ""};
	enum hv_rc rc = HV_E_INTERNAL;
	bool sent = false;
	size_t i;

	for (i = 0; i < n; i++)
		j[i] = (struct use_job *)(void *)items[i];
	if (n > 1)
		rc = use_many(v, j, n, &sent, &err);
	for (i = 0; i < n; i++) {
		struct hv_err e1 = {HV_OK, ""};
		enum hv_rc r1 = rc;

		if (rc == HV_OK || sent)
			e1 = err;
		else /* alone; checked when it was queued */
			r1 = record_write(v, &j[i]->p, &j[i]->ctx, j[i]->id,
			    j[i]->action, j[i]->ok, j[i]->status, &e1);
		j[i]->done(j[i]->arg, r1, &e1);
		use_job_free(j[i]);
	}
}

enum hv_rc
hv_vault_cred_record_use_async(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const char *action, bool ok,
    const char *new_status, hv_done_fn done, void *arg, bool *pending,
    struct hv_err *err)
{
	char idn[HV_UUID_STR];
	const char *act, *st;
	struct use_job *j;
	enum hv_rc rc;

	*pending = false;
	rc = record_check(
	    v, p, ctx, id, action, new_status, idn, &act, &st, err);
	if (rc != HV_OK)
		return rc;
	if (v->uses == NULL || done == NULL)
		return record_write(v, p, ctx, idn, act, ok, st, err);
	if (hv_group_alone(v->uses)) {
		/* nothing to share a commit with: written here, at once */
		rc = record_write(v, p, ctx, idn, act, ok, st, err);
		hv_group_alone_end(v->uses);
		return rc;
	}
	/*
	 * The provider has been called: a record that cannot be queued (no
	 * memory, shutting down) is written here rather than lost.
	 */
	j = use_job_new(p, ctx, idn, act, ok, st);
	if (j != NULL) {
		j->done = done;
		j->arg = arg;
		if (hv_group_push(v->uses, &j->item, err) == HV_OK) {
			*pending = true;
			return HV_OK;
		}
		use_job_free(j);
	}
	return record_write(v, p, ctx, idn, act, ok, st, err);
}
