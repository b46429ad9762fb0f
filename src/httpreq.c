/*
 * httpreq: pure validation of request parts (see httpreq.h). Everything
 * here runs on untrusted bytes and is fuzzed by tests/fuzz/fuzz_request.c:
 * no recursion on input, no allocation except jansson's, bounds first.
 */
#include "httpreq.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "uuid.h"

bool
hv_httpreq_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t need, k;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1fu;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0fu;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07u;
			min = 0x10000;
		} else {
			return false; /* continuation, 0xc0/0xc1, >= 0xf5 */
		}
		if (n - i <= need)
			return false;
		for (k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0u) != 0x80u)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3fu);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

bool
hv_httpreq_text_ok(const char *s, size_t n)
{
	size_t i;

	if (s == NULL)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return hv_httpreq_utf8_valid(s, n);
}

void
hv_httpreq_sanitize(char *out, size_t cap, const char *s, size_t n)
{
	size_t i;

	if (cap == 0)
		return;
	for (i = 0; i < n && i + 1 < cap; i++) {
		unsigned char c = (unsigned char)s[i];

		out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[i] = '\0';
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t
hv_httpreq_unescape(char *s)
{
	size_t r = 0, w = 0;

	while (s[r] != '\0') {
		if (s[r] == '%') {
			int hi = hexval(s[r + 1]);
			int lo = hi >= 0 ? hexval(s[r + 2]) : -1;

			if (hi >= 0 && lo >= 0) {
				/* %00: 0xff, never valid UTF-8, never a NUL */
				s[w++] = (hi | lo) != 0 ? (char)(hi * 16 + lo)
				                        : (char)0xff;
				r += 3;
				continue;
			}
		}
		s[w++] = s[r++];
	}
	s[w] = '\0';
	return w;
}

bool
hv_httpreq_match(const char *pattern, const char *path,
    struct hv_httpreq_seg *caps, size_t max, size_t *ncaps)
{
	const char *pp = pattern, *sp = path;
	size_t nc = 0;

	if (pattern == NULL || path == NULL || *pp != '/' || *sp != '/')
		return false;
	while (*pp != '\0' && *sp != '\0') {
		const char *pe, *se;
		size_t plen, slen;

		/* Both at a '/': step over it to the segment. */
		if (*pp != '/' || *sp != '/')
			return false;
		pp++;
		sp++;
		pe = strchr(pp, '/');
		se = strchr(sp, '/');
		plen = pe != NULL ? (size_t)(pe - pp) : strlen(pp);
		slen = se != NULL ? (size_t)(se - sp) : strlen(sp);
		if (plen >= 2 && pp[0] == '{' && pp[plen - 1] == '}') {
			if (slen == 0)
				return false;
			if (caps != NULL && nc < max) {
				caps[nc].p = sp;
				caps[nc].len = slen;
			}
			nc++;
		} else if (plen != slen || memcmp(pp, sp, plen) != 0) {
			return false;
		}
		pp += plen;
		sp += slen;
	}
	if (*pp != '\0' || *sp != '\0')
		return false;
	if (nc > max)
		return false;
	if (ncaps != NULL)
		*ncaps = nc;
	return true;
}

/* Append s to the comma-separated list in buf (bounded, NUL-terminated). */
static void
list_add(char *buf, size_t cap, const char *s)
{
	size_t used;
	int n;

	if (cap == 0)
		return;
	used = strnlen(buf, cap);
	if (used >= cap - 1)
		return;
	n = snprintf(buf + used, cap - used, "%s%s", used > 0 ? ", " : "", s);
	if (n < 0 || (size_t)n >= cap - used)
		buf[used] = '\0'; /* does not fit: leave the list as it was */
}

enum hv_httpreq_found
hv_httpreq_route_find(const void *tbl, size_t n, size_t stride,
    const char *method, const char *path, size_t *idx,
    struct hv_httpreq_seg caps[HV_HTTPREQ_MAX_CAPS], size_t *ncaps, char *allow,
    size_t allow_cap)
{
	const unsigned char *base = tbl;
	bool path_seen = false;
	size_t i, nc;

	if (allow != NULL && allow_cap > 0)
		allow[0] = '\0';
	for (i = 0; i < n; i++) {
		const struct hv_httpreq_route *r =
		    (const void *)(base + i * stride);
		struct hv_httpreq_seg tmp[HV_HTTPREQ_MAX_CAPS];

		if (!hv_httpreq_match(
		        r->pattern, path, tmp, HV_HTTPREQ_MAX_CAPS, &nc))
			continue;
		if (strcmp(r->method, method) == 0) {
			memcpy(caps, tmp, sizeof(tmp[0]) * nc);
			*ncaps = nc;
			*idx = i;
			return HV_HTTPREQ_FOUND;
		}
		path_seen = true;
		if (allow != NULL)
			list_add(allow, allow_cap, r->method);
	}
	return path_seen ? HV_HTTPREQ_BAD_METHOD : HV_HTTPREQ_NO_PATH;
}

static bool
in_list(const char *s, const char *const *list)
{
	size_t i;

	for (i = 0; list != NULL && list[i] != NULL; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static const char *const scopes[] = {
    "personal", "workspace", "organization", NULL};
static const char *const auth_types[] = {
    "api_key", "bearer", "basic", "oauth2", "custom_headers", NULL};
static const char *const statuses[] = {
    "active", "expired", "failing", "revoked", NULL};

/* Characters of an identifier-like filter (service id, audit action). */
static bool
ident_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 64)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		        c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* An RFC 3339 timestamp's alphabet; the vault parses it. */
static bool
timestamp_chars_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 64)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= '0' && c <= '9') || c == 'T' || c == 't' ||
		        c == 'Z' || c == 'z' || c == ':' || c == '+' ||
		        c == '-' || c == '.' || c == ' '))
			return false;
	}
	return true;
}

/* A cursor is opaque but printable ASCII without spaces. */
static bool
cursor_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > HV_HTTPREQ_MAX_QVAL)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

static enum hv_rc
bad_param(struct hv_err *err, const char *what, const char *key, size_t klen)
{
	char name[48];

	hv_httpreq_sanitize(name, sizeof(name), key, klen);
	return hv_err_set(
	    err, HV_E_INVALID, "%s query parameter '%s'", what, name);
}

enum hv_rc
hv_httpreq_query(const struct hv_httpreq_kv *kv, size_t n,
    const char *const *allowed, struct hv_list_query *q, struct hv_err *err)
{
	struct hv_list_query r;
	size_t i, j;

	memset(&r, 0, sizeof(r));
	for (i = 0; i < n; i++) {
		const char *k = kv[i].key, *v = kv[i].val;
		size_t kl = kv[i].key_len, vl = kv[i].val_len;

		if (k == NULL || kl != strnlen(k, kl + 1) ||
		    !in_list(k, allowed))
			return bad_param(err, "unknown", k != NULL ? k : "",
			    k != NULL ? kl : 0);
		for (j = 0; j < i; j++)
			if (strcmp(kv[j].key, k) == 0)
				return bad_param(err, "repeated", k, kl);
		if (v == NULL || vl != strnlen(v, vl + 1))
			return bad_param(err, "missing value of", k, kl);
		if (vl > HV_HTTPREQ_MAX_QVAL || !hv_httpreq_text_ok(v, vl))
			return bad_param(err, "invalid", k, kl);
		if (strcmp(k, "limit") == 0) {
			unsigned long lim = 0;

			if (vl == 0 || vl > 3)
				return hv_err_set(err, HV_E_INVALID,
				    "limit must be an integer from 1 to %d",
				    HV_HTTPREQ_MAX_LIMIT);
			for (j = 0; j < vl; j++) {
				if (v[j] < '0' || v[j] > '9')
					return hv_err_set(err, HV_E_INVALID,
					    "limit must be an integer from 1 "
					    "to %d",
					    HV_HTTPREQ_MAX_LIMIT);
				lim = lim * 10 + (unsigned long)(v[j] - '0');
			}
			if (lim < 1 || lim > HV_HTTPREQ_MAX_LIMIT)
				return hv_err_set(err, HV_E_INVALID,
				    "limit must be an integer from 1 to %d",
				    HV_HTTPREQ_MAX_LIMIT);
			r.limit = (unsigned int)lim;
		} else if (strcmp(k, "cursor") == 0) {
			if (!cursor_ok(v, vl))
				return bad_param(err, "invalid", k, kl);
			r.cursor = v;
		} else if (strcmp(k, "q") == 0) {
			if (vl > 200)
				return bad_param(err, "too long", k, kl);
			r.q = vl > 0 ? v : NULL;
		} else if (strcmp(k, "scope") == 0) {
			if (!in_list(v, scopes))
				return bad_param(err, "invalid", k, kl);
			r.scope = v;
		} else if (strcmp(k, "auth_type") == 0) {
			if (!in_list(v, auth_types))
				return bad_param(err, "invalid", k, kl);
			r.auth_type = v;
		} else if (strcmp(k, "status") == 0) {
			if (!in_list(v, statuses))
				return bad_param(err, "invalid", k, kl);
			r.status = v;
		} else if (strcmp(k, "service") == 0) {
			if (!ident_ok(v, vl))
				return bad_param(err, "invalid", k, kl);
			r.service = v;
		} else if (strcmp(k, "action") == 0) {
			if (!ident_ok(v, vl))
				return bad_param(err, "invalid", k, kl);
			r.action = v;
		} else if (strcmp(k, "credential_id") == 0) {
			if (!hv_uuid_valid(v))
				return bad_param(err, "invalid", k, kl);
			r.credential_id = v;
		} else if (strcmp(k, "workspace_id") == 0) {
			if (!hv_uuid_valid(v))
				return bad_param(err, "invalid", k, kl);
			r.workspace_id = v;
		} else if (strcmp(k, "since") == 0) {
			if (!timestamp_chars_ok(v, vl))
				return bad_param(err, "invalid", k, kl);
			r.since = v;
		} else {
			/* allowed by the route but unknown here: our bug */
			return bad_param(err, "unsupported", k, kl);
		}
	}
	*q = r;
	return HV_OK;
}

enum hv_rc
hv_httpreq_if_match(const char *s, long *version, struct hv_err *err)
{
	const char *p, *e;
	long v = 0;
	size_t nd = 0;

	if (s == NULL) {
		*version = -1;
		return HV_OK;
	}
	p = s;
	e = s + strlen(s);
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (e - p == 1 && *p == '*') {
		*version = -1;
		return HV_OK;
	}
	if (e - p >= 2 && *p == '"' && e[-1] == '"') {
		p++;
		e--;
	}
	for (; p < e; p++) {
		if (*p < '0' || *p > '9' || ++nd > 9)
			return hv_err_set(err, HV_E_INVALID,
			    "If-Match must be "
			    "a credential version, such as \"3\"");
		v = v * 10 + (*p - '0');
	}
	if (nd == 0 || v < 1)
		return hv_err_set(err, HV_E_INVALID,
		    "If-Match must be a "
		    "credential version, such as \"3\"");
	*version = v;
	return HV_OK;
}

/* Skip optional whitespace. */
static const char *
ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

bool
hv_httpreq_content_type_json(const char *s)
{
	static const char mt[] = "application/json";
	const char *p;

	if (s == NULL)
		return false;
	p = ows(s);
	if (strncasecmp(p, mt, sizeof(mt) - 1) != 0)
		return false;
	p = ows(p + sizeof(mt) - 1);
	while (*p == ';') {
		const char *v;
		size_t vl;

		p = ows(p + 1);
		if (*p == '\0')
			return true; /* "application/json;" */
		if (strncasecmp(p, "charset", 7) != 0)
			return false;
		p = ows(p + 7);
		if (*p != '=')
			return false;
		p = ows(p + 1);
		if (*p == '"') {
			v = p + 1;
			p = strchr(v, '"');
			if (p == NULL)
				return false;
			vl = (size_t)(p - v);
			p++;
		} else {
			v = p;
			while (
			    *p != '\0' && *p != ';' && *p != ' ' && *p != '\t')
				p++;
			vl = (size_t)(p - v);
		}
		if (!((vl == 5 && strncasecmp(v, "utf-8", 5) == 0) ||
		        (vl == 4 && strncasecmp(v, "utf8", 4) == 0)))
			return false;
		p = ows(p);
	}
	return *p == '\0';
}

/* ---- a strict JSON syntax check (RFC 8259), no allocation ---------- */

struct scan {
	const unsigned char *p;
	size_t n, i;
	const char *why; /* set on failure */
};

static void
skip_ws(struct scan *s)
{
	while (s->i < s->n &&
	    (s->p[s->i] == ' ' || s->p[s->i] == '\t' || s->p[s->i] == '\n' ||
	        s->p[s->i] == '\r'))
		s->i++;
}

static int
hex4(const struct scan *s, size_t at)
{
	int v = 0, k, h;

	if (s->n - at < 4)
		return -1;
	for (k = 0; k < 4; k++) {
		h = hexval((char)s->p[at + (size_t)k]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* At the opening quote; leaves s->i after the closing one. */
static bool
scan_string(struct scan *s)
{
	s->i++;
	for (;;) {
		unsigned char c;

		if (s->i >= s->n) {
			s->why = "unterminated string";
			return false;
		}
		c = s->p[s->i];
		if (c == '"') {
			s->i++;
			return true;
		}
		if (c < 0x20) {
			s->why = "control character in a string";
			return false;
		}
		if (c != '\\') {
			s->i++;
			continue;
		}
		if (s->i + 1 >= s->n) {
			s->why = "unterminated string";
			return false;
		}
		c = s->p[s->i + 1];
		if (c == 'u') {
			int u = hex4(s, s->i + 2), lo;

			if (u < 0) {
				s->why = "bad \\u escape";
				return false;
			}
			if (u == 0) {
				s->why = "\\u0000 is not allowed";
				return false;
			}
			if (u >= 0xdc00 && u <= 0xdfff) {
				s->why = "lone surrogate escape";
				return false;
			}
			s->i += 6;
			if (u >= 0xd800 && u <= 0xdbff) {
				if (s->n - s->i < 6 || s->p[s->i] != '\\' ||
				    s->p[s->i + 1] != 'u') {
					s->why = "lone surrogate escape";
					return false;
				}
				lo = hex4(s, s->i + 2);
				if (lo < 0xdc00 || lo > 0xdfff) {
					s->why = "lone surrogate escape";
					return false;
				}
				s->i += 6;
			}
			continue;
		}
		if (strchr("\"\\/bfnrt", (char)c) == NULL || c == '\0') {
			s->why = "bad escape in a string";
			return false;
		}
		s->i += 2;
	}
}

static bool
is_digit(const struct scan *s)
{
	return s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9';
}

static bool
scan_number(struct scan *s)
{
	if (s->p[s->i] == '-')
		s->i++;
	if (!is_digit(s)) {
		s->why = "bad number";
		return false;
	}
	if (s->p[s->i] == '0')
		s->i++;
	else
		while (is_digit(s))
			s->i++;
	if (s->i < s->n && s->p[s->i] == '.') {
		s->i++;
		if (!is_digit(s)) {
			s->why = "bad number";
			return false;
		}
		while (is_digit(s))
			s->i++;
	}
	if (s->i < s->n && (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
		s->i++;
		if (s->i < s->n && (s->p[s->i] == '+' || s->p[s->i] == '-'))
			s->i++;
		if (!is_digit(s)) {
			s->why = "bad number";
			return false;
		}
		while (is_digit(s))
			s->i++;
	}
	return true;
}

static bool
scan_literal(struct scan *s)
{
	static const char *const lits[] = {"true", "false", "null"};
	size_t k, l;

	for (k = 0; k < 3; k++) {
		l = strlen(lits[k]);
		if (s->n - s->i >= l && memcmp(s->p + s->i, lits[k], l) == 0) {
			s->i += l;
			return true;
		}
	}
	s->why = "unexpected character";
	return false;
}

enum hv_rc
hv_httpreq_json_syntax(
    const char *buf, size_t len, unsigned int max_depth, struct hv_err *err)
{
	enum { VALUE, KEY, AFTER } state = VALUE;
	char stack[HV_HTTPREQ_MAX_DEPTH + 1];
	struct scan s = {(const unsigned char *)buf, len, 0, NULL};
	size_t depth = 0;

	if (max_depth > HV_HTTPREQ_MAX_DEPTH)
		max_depth = HV_HTTPREQ_MAX_DEPTH;
	for (;;) {
		unsigned char c;

		skip_ws(&s);
		if (s.i >= s.n) {
			if (state == AFTER && depth == 0)
				return HV_OK;
			s.why = "unexpected end of the body";
			break;
		}
		c = s.p[s.i];
		if (state == AFTER) {
			if (depth == 0) {
				s.why = "data after the json value";
				break;
			}
			if (c == ',') {
				s.i++;
				state = stack[depth - 1] == '{' ? KEY : VALUE;
			} else if (c == (stack[depth - 1] == '{' ? '}' : ']')) {
				s.i++;
				depth--;
			} else {
				s.why = "expected ',' or a closing bracket";
				break;
			}
			continue;
		}
		if (state == KEY) {
			if (c != '"') {
				s.why = "expected a string key";
				break;
			}
			if (!scan_string(&s))
				break;
			skip_ws(&s);
			if (s.i >= s.n || s.p[s.i] != ':') {
				s.why = "expected ':'";
				break;
			}
			s.i++;
			state = VALUE;
			continue;
		}
		/* VALUE */
		if (c == '{' || c == '[') {
			if (depth >= max_depth) {
				return hv_err_set(err, HV_E_INVALID,
				    "json "
				    "nested deeper than %u levels",
				    max_depth);
			}
			stack[depth++] = (char)c;
			s.i++;
			skip_ws(&s);
			if (s.i < s.n && s.p[s.i] == (c == '{' ? '}' : ']')) {
				s.i++;
				depth--;
				state = AFTER;
			} else {
				state = c == '{' ? KEY : VALUE;
			}
			continue;
		}
		if (c == '"') {
			if (!scan_string(&s))
				break;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			if (!scan_number(&s))
				break;
		} else if (!scan_literal(&s)) {
			break;
		}
		state = AFTER;
	}
	return hv_err_set(err, HV_E_INVALID, "malformed json at byte %zu: %s",
	    s.i, s.why != NULL ? s.why : "syntax error");
}

/*
 * jansson refused text our syntax check accepted: a duplicate key or a
 * number out of range is the client's; anything else is an allocation
 * failure inside jansson (it reports those as syntax errors), ours.
 */
static enum hv_rc
json_fail(struct hv_err *err, const json_error_t *je)
{
	switch (json_error_code(je)) {
	case json_error_duplicate_key:
		return hv_err_set(err, HV_E_INVALID,
		    "duplicate key in json "
		    "object");
	case json_error_numeric_overflow:
		return hv_err_set(err, HV_E_INVALID, "number out of range");
	default:
		return hv_err_set(err, HV_E_NOMEM,
		    "cannot parse the body "
		    "(out of memory)");
	}
}

enum hv_rc
hv_httpreq_json(const char *buf, size_t len, const char *const *fields,
    json_t **out, struct hv_err *err)
{
	json_error_t je;
	json_t *j = NULL;
	const char *key;
	json_t *val;

	if (len == 0) {
		*out = NULL;
		return HV_OK;
	}
	if (!hv_httpreq_utf8_valid(buf, len))
		return hv_err_set(err, HV_E_INVALID, "body is not valid utf-8");
	{
		size_t i = 0;

		while (i < len &&
		    (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' ||
		        buf[i] == '\r'))
			i++;
		if (i < len && buf[i] != '{')
			return hv_err_set(err, HV_E_INVALID,
			    "body must be a "
			    "json object");
	}
	if (hv_httpreq_json_syntax(buf, len, HV_HTTPREQ_MAX_DEPTH, err) !=
	    HV_OK)
		return HV_E_INVALID;
	/* No JSON_DECODE_ANY, no JSON_ALLOW_NUL, EOF check on. */
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (j == NULL) {
		enum hv_rc rc = json_fail(err, &je);

		/* je.text may quote the body, which can hold a secret */
		hv_mem_zero(&je, sizeof(je));
		return rc;
	}
	hv_mem_zero(&je, sizeof(je));
	if (!json_is_object(j)) {
		json_decref(j);
		return hv_err_set(err, HV_E_INTERNAL,
		    "json syntax check and "
		    "parser disagree");
	}
	if (fields != NULL) {
		json_object_foreach(j, key, val)
		{
			(void)val;
			if (!in_list(key, fields)) {
				char name[48];

				hv_httpreq_sanitize(
				    name, sizeof(name), key, strlen(key));
				json_decref(j);
				return hv_err_set(err, HV_E_INVALID,
				    "unknown field '%s'", name);
			}
		}
	}
	*out = j;
	return HV_OK;
}

/* RFC 7230 tchar. */
static bool
token_ok(const char *s)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";
	size_t i, n = strlen(s);

	if (n == 0 || n > 256)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') ||
		        (c != '\0' && strchr(extra, c) != NULL)))
			return false;
	}
	return true;
}

/*
 * Headers a caller may not set on an outbound call: hop-by-hop and framing
 * headers curl owns, and anything that would replace or leak the injected
 * credential's origin.
 */
static const char *const use_forbidden_headers[] = {"host", "content-length",
    "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
    "proxy-authorization", "proxy-connection", "expect", NULL};

static bool
header_forbidden(const char *name)
{
	size_t i;

	for (i = 0; use_forbidden_headers[i] != NULL; i++)
		if (strcasecmp(name, use_forbidden_headers[i]) == 0)
			return true;
	return false;
}

static const char *const use_fields[] = {
    "method", "path", "query", "headers", "body", NULL};
static const char *const use_methods[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", NULL};

enum hv_rc
hv_httpreq_use_body(const json_t *body, struct hv_err *err)
{
	const char *key, *path;
	json_t *val, *m, *pj, *qj, *hj, *bj;
	size_t plen;

	if (!json_is_object(body))
		return hv_err_set(err, HV_E_INVALID,
		    "body must be a json "
		    "object");
	json_object_foreach((json_t *)body, key, val)
	{
		(void)val;
		if (!in_list(key, use_fields)) {
			char name[48];

			hv_httpreq_sanitize(
			    name, sizeof(name), key, strlen(key));
			return hv_err_set(err, HV_E_INVALID,
			    "unknown field "
			    "'%s'",
			    name);
		}
	}
	m = json_object_get(body, "method");
	if (m != NULL &&
	    (!json_is_string(m) || !in_list(json_string_value(m), use_methods)))
		return hv_err_set(err, HV_E_INVALID,
		    "method must be one of "
		    "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
	pj = json_object_get(body, "path");
	if (!json_is_string(pj))
		return hv_err_set(err, HV_E_INVALID,
		    "path is required and "
		    "must be a string");
	path = json_string_value(pj);
	plen = json_string_length(pj);
	if (plen == 0 || plen > 2048 || path[0] != '/' || path[1] == '/' ||
	    plen != strlen(path) || !hv_httpreq_text_ok(path, plen) ||
	    strchr(path, '\\') != NULL || strchr(path, ' ') != NULL ||
	    strchr(path, '\t') != NULL || strchr(path, '#') != NULL ||
	    strstr(path, "/../") != NULL ||
	    (plen >= 3 && strcmp(path + plen - 3, "/..") == 0) ||
	    strstr(path, "/./") != NULL || strchr(path, '@') != NULL)
		return hv_err_set(err, HV_E_INVALID,
		    "path must be relative "
		    "to the service base url and start with a single '/'");
	qj = json_object_get(body, "query");
	if (qj != NULL && !json_is_null(qj)) {
		if (!json_is_object(qj))
			return hv_err_set(err, HV_E_INVALID,
			    "query must be an "
			    "object of strings");
		json_object_foreach(qj, key, val)
		{
			if (!json_is_string(val) || strlen(key) == 0 ||
			    strlen(key) > 256 || json_string_length(val) > 4096)
				return hv_err_set(err, HV_E_INVALID,
				    "query "
				    "must be an object of strings");
		}
	}
	hj = json_object_get(body, "headers");
	if (hj != NULL && !json_is_null(hj)) {
		if (!json_is_object(hj))
			return hv_err_set(err, HV_E_INVALID,
			    "headers must be "
			    "an object of strings");
		json_object_foreach(hj, key, val)
		{
			const char *hv;
			size_t hl;

			if (!token_ok(key))
				return hv_err_set(err, HV_E_INVALID,
				    "invalid "
				    "header name");
			if (header_forbidden(key)) {
				char name[48];

				hv_httpreq_sanitize(
				    name, sizeof(name), key, strlen(key));
				return hv_err_set(err, HV_E_INVALID,
				    "header "
				    "'%s' may not be set",
				    name);
			}
			if (!json_is_string(val))
				return hv_err_set(err, HV_E_INVALID,
				    "headers "
				    "must be an object of strings");
			hv = json_string_value(val);
			hl = json_string_length(val);
			if (hl > 8192 || hl != strlen(hv) ||
			    !hv_httpreq_text_ok(hv, hl))
				return hv_err_set(err, HV_E_INVALID,
				    "invalid "
				    "header value");
		}
	}
	bj = json_object_get(body, "body");
	if (bj != NULL && !json_is_null(bj) && !json_is_string(bj) &&
	    !json_is_object(bj) && !json_is_array(bj))
		return hv_err_set(err, HV_E_INVALID,
		    "body must be a string, "
		    "an object, an array or null");
	return HV_OK;
}

json_t *
hv_httpreq_use_normalize(const json_t *body)
{
	const json_t *m = json_object_get(body, "method");
	const json_t *pj = json_object_get(body, "path");
	const char *ms = json_string_value(m), *ps = json_string_value(pj);
	char up[16];
	bool fix_m = false, fix_p = false;
	size_t i, n;
	json_t *copy;

	if (ms != NULL && (n = json_string_length(m)) > 0 && n < sizeof(up)) {
		for (i = 0; i < n; i++) {
			unsigned char ch = (unsigned char)ms[i];

			if (!((ch >= 'a' && ch <= 'z') ||
			        (ch >= 'A' && ch <= 'Z')))
				break;
			up[i] = (char)(ch >= 'a' ? ch - 'a' + 'A' : ch);
			if (ch >= 'a')
				fix_m = true;
		}
		up[i] = '\0';
		if (i != n)
			fix_m = false;
	}
	/* "v1/balance" but not "//h", "/x", "", "http:..." or "a:b/..." */
	if (ps != NULL && ps[0] != '\0' && ps[0] != '/') {
		size_t colon = strcspn(ps, ":"), slash = strcspn(ps, "/?");

		fix_p = colon >= slash;
	}
	if (!fix_m && !fix_p)
		return json_incref((json_t *)(uintptr_t)body);
	copy = json_copy((json_t *)(uintptr_t)body);
	if (copy == NULL)
		return NULL;
	if (fix_m && json_object_set_new(copy, "method", json_string(up)) != 0)
		goto fail;
	if (fix_p) {
		size_t pl = json_string_length(pj);
		char *np = malloc(pl + 2);

		if (np == NULL)
			goto fail;
		np[0] = '/';
		memcpy(np + 1, ps, pl);
		np[pl + 1] = '\0';
		if (json_object_set_new(
		        copy, "path", json_stringn(np, pl + 1)) != 0) {
			free(np);
			goto fail;
		}
		free(np);
	}
	return copy;
fail:
	json_decref(copy);
	return NULL;
}
