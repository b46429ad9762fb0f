/*
 * httpreq: validation of everything an HTTP request carries, as pure
 * functions over plain buffers: route matching, query parameters, If-Match,
 * Content-Type, header text, JSON bodies. No server, no database, no
 * global state: tests/fuzz/fuzz_request.c drives every function here.
 *
 * Every function that fails with HV_E_INVALID writes a message fit for the
 * client ("unknown query parameter 'x'"): names of fields and parameters
 * (sanitized to printable ASCII, truncated), never values, since a value
 * may be a secret the client misplaced.
 *
 * Thread-safety: every function is reentrant; no state.
 */
#ifndef HV_HTTPREQ_H
#define HV_HTTPREQ_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "vault.h"

/* Deepest nesting of arrays/objects accepted in a JSON body. */
#define HV_HTTPREQ_MAX_DEPTH 32
/* Path parameters ({id}) a pattern may hold. */
#define HV_HTTPREQ_MAX_CAPS 4
/* Longest value of a free-text query parameter (q, cursor, since...). */
#define HV_HTTPREQ_MAX_QVAL 512
/* Highest `limit` a list accepts. */
#define HV_HTTPREQ_MAX_LIMIT 200

/*
 * True when s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). NUL bytes are valid UTF-8; callers
 * that care use hv_httpreq_text_ok().
 */
bool hv_httpreq_utf8_valid(const char *s, size_t n);

/*
 * True when s[0..n) is text we accept in a header value or a query
 * parameter: valid UTF-8 with no control characters (C0 except HT, DEL;
 * so no NUL, CR or LF).
 */
bool hv_httpreq_text_ok(const char *s, size_t n);

/*
 * Decode %HH escapes of a URL path or query component in place and return
 * the new length (MHD's unescape callback). "%00" decodes to the byte 0xff
 * instead of a NUL: a C string cannot be cut short by it (a path such as
 * "/v1/credentials/<id>%00x" must not match the route of <id>), and as
 * 0xff is never valid UTF-8 every text check refuses it (404 in a path,
 * 400 in a query parameter). Malformed escapes ("%4", "%zz") are kept as
 * they are.
 */
size_t hv_httpreq_unescape(char *s);

/* One captured path segment: points into the matched path. */
struct hv_httpreq_seg {
	const char *p;
	size_t len;
};

/*
 * Match path against pattern. Patterns are absolute, made of literal
 * segments and "{name}" segments that match one non-empty segment (no
 * '/'). No normalization: "//", a trailing '/' or "." segments never
 * match. On a match, returns true and stores up to max captures in caps,
 * their count in *ncaps.
 */
bool hv_httpreq_match(const char *pattern, const char *path,
    struct hv_httpreq_seg *caps, size_t max, size_t *ncaps);

/*
 * The head of every route table entry (struct hv_route in api.h starts
 * with it), so that route look-up can be tested without the handlers.
 */
struct hv_httpreq_route {
	const char *method;
	const char *pattern;
};

enum hv_httpreq_found {
	HV_HTTPREQ_FOUND = 0,      /* *idx is the route */
	HV_HTTPREQ_NO_PATH = 1,    /* 404: no pattern matches */
	HV_HTTPREQ_BAD_METHOD = 2, /* 405: allow lists the methods */
};

/*
 * Look up method + path in a table of n entries of `stride` bytes each,
 * every entry beginning with a struct hv_httpreq_route. On FOUND: *idx,
 * caps, *ncaps as hv_httpreq_match(). On BAD_METHOD: allow receives the
 * comma-separated methods of the path ("GET, PATCH, DELETE"), truncated to
 * allow_cap.
 */
enum hv_httpreq_found hv_httpreq_route_find(const void *tbl, size_t n,
    size_t stride, const char *method, const char *path, size_t *idx,
    struct hv_httpreq_seg caps[HV_HTTPREQ_MAX_CAPS], size_t *ncaps, char *allow,
    size_t allow_cap);

/* One query parameter as MHD decodes it; val is NULL for "?flag". */
struct hv_httpreq_kv {
	const char *key;
	size_t key_len;
	const char *val;
	size_t val_len;
};

/*
 * Check the query parameters kv[0..n) against the names a route allows
 * (NULL-terminated list, NULL = none) and fill q. Strings in q borrow
 * from kv. HV_E_INVALID for an unknown, repeated or valueless parameter,
 * text that is not clean UTF-8 (or holds NUL), `limit` outside 1..200 or
 * not plain digits, an unknown `scope`/`auth_type`/`status` value, a
 * `credential_id` or `workspace_id` that is not a UUID, or an over-long
 * value.
 */
enum hv_rc hv_httpreq_query(const struct hv_httpreq_kv *kv, size_t n,
    const char *const *allowed, struct hv_list_query *q, struct hv_err *err);

/*
 * Parse an If-Match header: NULL or "*" gives *version = -1 (no
 * precondition); otherwise 1-9 decimal digits, optionally in double quotes
 * (an ETag as we send it), with optional surrounding spaces. Anything else
 * (weak tags, lists, signs, garbage) is HV_E_INVALID.
 */
enum hv_rc
hv_httpreq_if_match(const char *s, long *version, struct hv_err *err);

/*
 * True when a Content-Type value is application/json (any case), with no
 * parameter other than an optional charset=utf-8 (quoted or not).
 */
bool hv_httpreq_content_type_json(const char *s);

/*
 * Check that buf[0..len) is one JSON value (RFC 8259) with nothing but
 * whitespace around it, nested at most max_depth (capped at
 * HV_HTTPREQ_MAX_DEPTH) deep, with no \u0000 and no lone surrogate escape.
 * Iterative, allocation-free, bounded by len: it runs before jansson, so
 * that malformed or deep text never reaches the parser, and so that a
 * later jansson failure can only mean a duplicate key, a number out of
 * range or an allocation failure. UTF-8 is not checked here
 * (hv_httpreq_utf8_valid). HV_E_INVALID with "malformed json at byte N:
 * ..." (never quoting the text).
 */
enum hv_rc hv_httpreq_json_syntax(
    const char *buf, size_t len, unsigned int max_depth, struct hv_err *err);

/*
 * Parse a request body strictly: at most HV_HTTPREQ_MAX_DEPTH deep, valid
 * UTF-8, no duplicate keys, no \u0000, no trailing data, a top-level object
 * whose keys are all in `fields` (NULL-terminated; NULL = any key). len 0
 * gives *out = NULL and HV_OK. On HV_OK with len > 0, *out is a new
 * reference. The message never quotes the body. HV_E_NOMEM (not
 * HV_E_INVALID) when jansson runs out of memory: a client never gets 400
 * for our allocation failure.
 */
enum hv_rc hv_httpreq_json(const char *buf, size_t len,
    const char *const *fields, json_t **out, struct hv_err *err);

/*
 * Check the body of POST /v1/credentials/{id}/use: {"method", "path",
 * "query", "headers", "body"} with method a known verb, path relative
 * ("/..." without "//" at the start, no backslash, no control characters,
 * no "..", at most 2048 bytes), query and headers objects of strings
 * (header names are RFC 7230 tokens; hop-by-hop and framing headers are
 * refused), body a string, object, array or null.
 */
enum hv_rc hv_httpreq_use_body(const json_t *body, struct hv_err *err);

/*
 * Forgiving spellings of a use body, before it is checked: a method in
 * lower or mixed case is upper-cased, and a path relative without its
 * leading slash ("v1/balance") gets one. A path that names a scheme
 * ("http://...", "mailto:...") or starts with "//" is left alone, so the
 * check refuses it. Returns a new reference (a shallow copy when anything
 * changed, else body itself with its count raised), or NULL when out of
 * memory.
 */
json_t *hv_httpreq_use_normalize(const json_t *body);

/*
 * A sanitized, NUL-terminated copy of s[0..n) for messages and logs:
 * printable ASCII kept, anything else as '?', at most cap - 1 bytes.
 */
void hv_httpreq_sanitize(char *out, size_t cap, const char *s, size_t n);

#endif
