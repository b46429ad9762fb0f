/*
 * fuzz_request: libFuzzer target over src/httpreq.c, the pure request
 * validation of the HTTP API: URL unescaping, route matching against the
 * real route table, query parameters, If-Match, Content-Type, header text,
 * JSON bodies (depth, UTF-8, duplicates, field lists) and the body of
 * POST .../use. No server, no database, no key store.
 *
 * Build: cmake -DHV_FUZZ=ON -DCMAKE_C_COMPILER=clang ...; run:
 *   build/fuzz_request -max_total_time=60 -max_len=4096
 *
 * Every function must return without crashing, leaking or reading out of
 * bounds (ASan/UBSan), and a few invariants are asserted with
 * __builtin_trap().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "httpreq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated heap copy, so that ASan sees every overread. */
static char *
dupz(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static void
fuzz_route(const struct hv_route *tbl, size_t nr, const char *s)
{
	static const char *const methods[] = {
	    "GET", "POST", "PATCH", "DELETE", "PUT"};
	struct hv_httpreq_seg caps[HV_HTTPREQ_MAX_CAPS];
	char allow[64];
	size_t idx = 0, nc = 0, i, k;
	enum hv_httpreq_found f;

	for (k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
		f = hv_httpreq_route_find(tbl, nr, sizeof(tbl[0]), methods[k],
		    s, &idx, caps, &nc, allow, sizeof(allow));
		if (f == HV_HTTPREQ_FOUND) {
			if (idx >= nr || nc > HV_HTTPREQ_MAX_CAPS)
				__builtin_trap();
			for (i = 0; i < nc; i++)
				if (caps[i].len == 0 || caps[i].p < s ||
				    caps[i].p + caps[i].len > s + strlen(s) ||
				    memchr(caps[i].p, '/', caps[i].len))
					__builtin_trap();
		} else if (f == HV_HTTPREQ_BAD_METHOD) {
			if (strlen(allow) >= sizeof(allow))
				__builtin_trap();
		}
	}
}

/* Split s at '&' and '=' into at most 16 parameters (in place). */
static void
fuzz_query(const struct hv_route *tbl, size_t nr, char *s, uint8_t sel)
{
	struct hv_httpreq_kv kv[16];
	struct hv_list_query q;
	struct hv_err err;
	size_t n = 0;
	char *p = s;

	while (n < 16 && p != NULL) {
		char *amp = strchr(p, '&');
		char *eq;

		if (amp != NULL)
			*amp = '\0';
		eq = strchr(p, '=');
		if (eq != NULL)
			*eq = '\0';
		kv[n].key = p;
		kv[n].key_len = strlen(p);
		kv[n].val = eq != NULL ? eq + 1 : NULL;
		kv[n].val_len = eq != NULL ? strlen(eq + 1) : 0;
		n++;
		p = amp != NULL ? amp + 1 : NULL;
	}
	memset(&err, 0, sizeof(err));
	if (hv_httpreq_query(kv, n, tbl[sel % nr].query, &q, &err) == HV_OK) {
		if (q.limit > HV_HTTPREQ_MAX_LIMIT)
			__builtin_trap();
	} else if (err.msg[0] == '\0') {
		__builtin_trap(); /* every refusal explains itself */
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct hv_route *tbl;
	struct hv_err err;
	json_t *j = NULL;
	size_t nr, ul;
	uint8_t sel;
	char *s;
	long ver;

	if (size < 1)
		return 0;
	sel = data[0];
	data++;
	size--;
	tbl = hv_http_routes(&nr);

	/* Text checks on the raw bytes. */
	if (hv_httpreq_text_ok((const char *)data, size) &&
	    !hv_httpreq_utf8_valid((const char *)data, size))
		__builtin_trap();
	/*
	 * What the syntax check accepts, jansson parses, refusing at most a
	 * duplicate key or a number out of range (anything else would turn
	 * into a 500 in hv_httpreq_json).
	 */
	memset(&err, 0, sizeof(err));
	if (hv_httpreq_json_syntax((const char *)data, size,
	        HV_HTTPREQ_MAX_DEPTH, &err) == HV_OK) {
		json_error_t je;

		j = json_loadb((const char *)data, size,
		    JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
		if (j == NULL &&
		    hv_httpreq_utf8_valid((const char *)data, size) &&
		    json_error_code(&je) != json_error_duplicate_key &&
		    json_error_code(&je) != json_error_numeric_overflow)
			__builtin_trap();
		json_decref(j);
		j = NULL;
	}

	/* URL: unescape, then route. */
	s = dupz(data, size);
	ul = hv_httpreq_unescape(s);
	if (ul > size || ul != strlen(s))
		__builtin_trap(); /* never longer, never an inner NUL */
	fuzz_route(tbl, nr, s);
	free(s);

	s = dupz(data, size);
	fuzz_query(tbl, nr, s, sel);
	free(s);

	s = dupz(data, size);
	memset(&err, 0, sizeof(err));
	if (hv_httpreq_if_match(s, &ver, &err) == HV_OK &&
	    (ver < -1 || ver > 999999999L))
		__builtin_trap();
	(void)hv_httpreq_content_type_json(s);
	free(s);

	/* JSON body, with the field list of some route. */
	memset(&err, 0, sizeof(err));
	if (hv_httpreq_json((const char *)data, size, tbl[sel % nr].fields, &j,
	        &err) == HV_OK &&
	    j != NULL) {
		if (!json_is_object(j))
			__builtin_trap();
		memset(&err, 0, sizeof(err));
		(void)hv_httpreq_use_body(j, &err);
		json_decref(j);
	}
	return 0;
}
