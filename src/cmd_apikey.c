/*
 * cmd_apikey: `hsmvault apikey create|list|revoke`, straight against the
 * database and key store (how the first admin key is made).
 */
#include "cmd.h"
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "a,b,c" as a JSON array of strings; "all" stays a string when allow. */
static json_t *
split_list(const char *s)
{
	json_t *arr = json_array();
	const char *p = s;

	while (arr != NULL && *p != '\0') {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n > 0)
			json_array_append_new(arr, json_stringn(p, n));
		p += n;
		if (*p == ',')
			p++;
	}
	return arr;
}

static int
write_key_file(const char *path, const char *key, struct hv_err *err)
{
	size_t n = strlen(key);
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return hv_err_set(err, HV_E_IO, "cannot write '%s': %s", path,
		    strerror(errno));
	if (fchmod(fd, 0600) != 0 || write(fd, key, n) != (ssize_t)n ||
	    write(fd, "\n", 1) != 1) {
		close(fd);
		return hv_err_set(err, HV_E_IO, "cannot write '%s'", path);
	}
	if (close(fd) != 0)
		return hv_err_set(err, HV_E_IO, "cannot write '%s'", path);
	return HV_OK;
}

int
hv_cmd_apikey_create(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	json_t *body = NULL, *out = NULL;
	const char *name = hv_opt(o, "name"), *scopes = hv_opt(o, "scopes");
	const char *ws = hv_opt(o, "workspace"), *user = hv_opt(o, "user");
	const char *exp = hv_opt(o, "expires-at");
	const char *creds = hv_opt(o, "credentials");
	const char *keyfile = hv_opt(o, "key-file");
	struct hv_reqctx ctx = {"cli", "local"};
	int rc = 1;

	if (name == NULL || scopes == NULL) {
		fprintf(stderr,
		    "hsmvault: apikey create needs --name and "
		    "--scopes (e.g. --scopes admin)\n");
		return 2;
	}
	body =
	    json_pack("{s:s, s:o}", "name", name, "scopes", split_list(scopes));
	if (body == NULL)
		goto out;
	if (ws != NULL)
		json_object_set_new(body, "workspace_id", json_string(ws));
	if (user != NULL)
		json_object_set_new(body, "user", json_string(user));
	if (exp != NULL)
		json_object_set_new(body, "expires_at", json_string(exp));
	if (creds != NULL)
		json_object_set_new(body, "credentials",
		    strcmp(creds, "all") == 0 ? json_string("all")
		                              : split_list(creds));
	if (hv_cmd_open(cfg, false, &v, &err) != HV_OK ||
	    hv_vault_apikey_create(v, NULL, &ctx, body, &out, &err) != HV_OK) {
		rc = hv_cmd_fail(&err);
		goto out;
	}
	if (keyfile != NULL) {
		json_t *k = json_object_get(out, "key");

		if (!json_is_string(k) ||
		    write_key_file(keyfile, json_string_value(k), &err) !=
		        HV_OK) {
			rc = hv_cmd_fail(&err);
			goto out;
		}
		json_object_del(out, "key");
		json_object_set_new(out, "key_file", json_string(keyfile));
	}
	rc = hv_cmd_print(out);
out:
	json_decref(out);
	json_decref(body);
	hv_vault_close(&v);
	return rc;
}

int
hv_cmd_apikey_list(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	struct hv_principal p = {0};
	struct hv_list_query q = {0};
	struct hv_reqctx ctx = {"cli", "local"};
	const char *limit = hv_opt(o, "limit");
	const char *ws = hv_opt(o, "workspace");
	json_t *out = NULL;
	int rc = 1;

	if (limit != NULL) {
		char *end;
		unsigned long n = strtoul(limit, &end, 10);

		if (*limit == '\0' || *end != '\0' || n == 0 || n > 200) {
			fprintf(stderr, "hsmvault: --limit wants 1..200\n");
			return 2;
		}
		q.limit = (unsigned int)n;
	}
	/* without --workspace: every workspace's keys (the CLI is admin) */
	q.workspace_id = ws;
	q.cursor = hv_opt(o, "cursor");
	if (hv_cmd_open(cfg, false, &v, &err) != HV_OK ||
	    hv_principal_cli(v, ws, &p, &err) != HV_OK ||
	    hv_vault_apikey_list(v, &p, &ctx, &q, &out, &err) != HV_OK) {
		rc = hv_cmd_fail(&err);
		goto out;
	}
	rc = hv_cmd_print(out);
out:
	json_decref(out);
	hv_principal_release(&p);
	hv_vault_close(&v);
	return rc;
}

int
hv_cmd_apikey_revoke(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	struct hv_principal p = {0};
	struct hv_reqctx ctx = {"cli", "local"};
	int rc = 1;

	if (hv_cmd_open(cfg, false, &v, &err) != HV_OK ||
	    hv_principal_cli(v, hv_opt(o, "workspace"), &p, &err) != HV_OK ||
	    hv_vault_apikey_revoke(v, &p, &ctx, o->args[0], &err) != HV_OK) {
		rc = hv_cmd_fail(&err);
		goto out;
	}
	fprintf(stderr, "hsmvault: api key %s revoked\n", o->args[0]);
	rc = 0;
out:
	hv_principal_release(&p);
	hv_vault_close(&v);
	return rc;
}
