/*
 * test_http_openapi: docs/openapi.yaml and the server's route table
 * describe the same API. Every route is documented, every documented
 * operation is a route, and each operation documents the error statuses
 * its route can produce (405 always; 401 without a key; 403 for a scope;
 * 404 for a path id; 400/413/415 with a body).
 *
 * The YAML is read with the layout rule the document states: paths at
 * indent 2 starting with "/", methods at indent 4, status codes at
 * indent 8 under `responses:`. No database or key store needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "api.h"

#define MAX_OPS 64

struct op {
	char method[8]; /* upper case */
	char path[128];
	char statuses[256]; /* " 200 401 ..." */
};

static struct op ops[MAX_OPS];
static size_t n_ops;

static const char *const methods[] = {
    "get", "post", "put", "patch", "delete", "head", "options", NULL};

static size_t
indent(const char *l)
{
	size_t n = 0;

	while (l[n] == ' ')
		n++;
	return n;
}

static void
load_doc(void)
{
	char path[1024], line[1024], cur_path[128] = "";
	const char *src = getenv("HV_SOURCE_DIR");
	bool in_paths = false;
	struct op *cur = NULL;
	FILE *f;

	(void)snprintf(path, sizeof(path), "%s/docs/openapi.yaml",
	    src != NULL ? src : ".");
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "cannot open %s\n", path);
		exit(1);
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t ind = indent(line), i;
		char *s = line + ind, *colon;

		line[strcspn(line, "\r\n")] = '\0';
		if (*s == '\0' || *s == '#')
			continue;
		if (ind == 0) {
			in_paths = strncmp(s, "paths:", 6) == 0;
			cur = NULL;
			continue;
		}
		if (!in_paths)
			continue;
		if (ind == 2) {
			assert_true(s[0] == '/');
			colon = strrchr(s, ':');
			assert_non_null(colon);
			*colon = '\0';
			(void)snprintf(cur_path, sizeof(cur_path), "%s", s);
			cur = NULL;
		} else if (ind == 4) {
			cur = NULL;
			for (i = 0; methods[i] != NULL; i++) {
				size_t ml = strlen(methods[i]);

				if (strncmp(s, methods[i], ml) == 0 &&
				    s[ml] == ':') {
					assert_true(n_ops < MAX_OPS);
					cur = &ops[n_ops++];
					for (size_t k = 0; k < ml; k++)
						cur->method[k] =
						    (char)(methods[i][k] - 'a' +
						        'A');
					(void)snprintf(cur->path,
					    sizeof(cur->path), "%s", cur_path);
				}
			}
		} else if (ind == 8 && cur != NULL && s[0] == '"' &&
		    strlen(s) > 5 && s[4] == '"') {
			size_t l = strlen(cur->statuses);

			(void)snprintf(cur->statuses + l,
			    sizeof(cur->statuses) - l, " %.3s", s + 1);
		}
	}
	fclose(f);
	assert_true(n_ops > 0);
}

static const struct op *
find_op(const char *method, const char *path)
{
	size_t i;

	for (i = 0; i < n_ops; i++)
		if (strcmp(ops[i].method, method) == 0 &&
		    strcmp(ops[i].path, path) == 0)
			return &ops[i];
	return NULL;
}

static bool
has_status(const struct op *o, const char *st)
{
	char k[8];

	(void)snprintf(k, sizeof(k), " %s", st);
	return strstr(o->statuses, k) != NULL;
}

static void
test_every_route_documented(void **state)
{
	const struct hv_route *r;
	size_t n, i;

	(void)state;
	r = hv_http_routes(&n);
	for (i = 0; i < n; i++) {
		const struct op *o = find_op(r[i].key.method, r[i].key.pattern);

		if (o == NULL)
			fail_msg("route %s %s is not in docs/openapi.yaml",
			    r[i].key.method, r[i].key.pattern);
	}
}

static void
test_every_operation_routed(void **state)
{
	const struct hv_route *r;
	size_t n, i, k;

	(void)state;
	r = hv_http_routes(&n);
	for (i = 0; i < n_ops; i++) {
		bool found = false;

		for (k = 0; k < n; k++)
			if (strcmp(ops[i].method, r[k].key.method) == 0 &&
			    strcmp(ops[i].path, r[k].key.pattern) == 0)
				found = true;
		if (!found)
			fail_msg("documented %s %s has no route", ops[i].method,
			    ops[i].path);
	}
	assert_int_equal(n_ops, n);
}

static void
test_error_statuses_documented(void **state)
{
	const struct hv_route *r;
	size_t n, i;

	(void)state;
	r = hv_http_routes(&n);
	for (i = 0; i < n; i++) {
		const struct op *o = find_op(r[i].key.method, r[i].key.pattern);
		const char *m = r[i].key.method, *p = r[i].key.pattern;

		assert_non_null(o);
		if (!has_status(o, "405"))
			fail_msg("%s %s: 405 not documented", m, p);
		if (!(r[i].flags & HV_ROUTE_PUBLIC) && !has_status(o, "401"))
			fail_msg("%s %s: 401 not documented", m, p);
		if (r[i].scope != 0 && !has_status(o, "403"))
			fail_msg("%s %s: 403 not documented", m, p);
		if (strchr(p, '{') != NULL && !has_status(o, "404"))
			fail_msg("%s %s: 404 not documented", m, p);
		if ((r[i].flags &
		        (HV_ROUTE_BODY_REQUIRED | HV_ROUTE_BODY_OPTIONAL)) &&
		    !(has_status(o, "400") && has_status(o, "413") &&
		        has_status(o, "415")))
			fail_msg("%s %s: 400/413/415 not documented", m, p);
		if ((r[i].flags & HV_ROUTE_IF_MATCH) && !has_status(o, "409"))
			fail_msg("%s %s: 409 not documented", m, p);
		if (!(r[i].flags & HV_ROUTE_PUBLIC) &&
		    !(r[i].flags & HV_ROUTE_METRICS) && !has_status(o, "503"))
			fail_msg("%s %s: 503 not documented", m, p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_route_documented),
	    cmocka_unit_test(test_every_operation_routed),
	    cmocka_unit_test(test_error_statuses_documented),
	};

	load_doc();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
