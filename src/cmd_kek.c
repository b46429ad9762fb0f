/* cmd_kek: `hsmvault kek rotate|disable` and `hsmvault rewrap`. */
#include "cmd.h"

#include <stdio.h>
#include <stdlib.h>

int
hv_cmd_kek_rotate(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	struct hv_principal p = {0};
	struct hv_reqctx ctx = {"cli", "local"};
	json_t *out = NULL;
	int rc = 1;

	(void)o;
	if (hv_cmd_open(cfg, false, &v, &err) != HV_OK ||
	    hv_principal_cli(v, NULL, &p, &err) != HV_OK ||
	    hv_vault_kek_rotate(v, &p, &ctx, &out, &err) != HV_OK) {
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
hv_cmd_kek_disable(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	struct hv_principal p = {0};
	struct hv_reqctx ctx = {"cli", "local"};
	json_t *out = NULL;
	char *end;
	unsigned long ver;
	int rc = 1;

	ver = strtoul(o->args[0], &end, 10);
	if (o->args[0][0] == '\0' || *end != '\0' || ver == 0 ||
	    ver > 0xffffffffUL) {
		fprintf(stderr,
		    "hsmvault: VERSION must be a positive "
		    "integer\n");
		return 2;
	}
	if (hv_cmd_open(cfg, false, &v, &err) != HV_OK ||
	    hv_principal_cli(v, NULL, &p, &err) != HV_OK ||
	    hv_vault_kek_disable(v, &p, &ctx, (uint32_t)ver, &out, &err) !=
	        HV_OK) {
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

static void
progress(unsigned long done, unsigned long remaining, void *arg)
{
	unsigned long total = done + remaining;

	(void)arg;
	fprintf(stderr, "rewrap: %lu/%lu DEKs re-wrapped (%lu%%)\n", done,
	    total, total ? done * 100 / total : 100);
}

int
hv_cmd_rewrap(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	struct hv_principal p = {0};
	struct hv_reqctx ctx = {"cli", "local"};
	const char *b = hv_opt(o, "batch");
	unsigned long batch = 500;
	json_t *out = NULL;
	int rc = 1;

	if (b != NULL) {
		char *end;

		batch = strtoul(b, &end, 10);
		if (*b == '\0' || *end != '\0' || batch == 0 || batch > 10000) {
			fprintf(stderr, "hsmvault: --batch wants 1..10000\n");
			return 2;
		}
	}
	if (hv_cmd_open(cfg, false, &v, &err) != HV_OK ||
	    hv_principal_cli(v, NULL, &p, &err) != HV_OK ||
	    hv_vault_rewrap(v, &p, &ctx, (unsigned int)batch, 0, progress, NULL,
	        &out, &err) != HV_OK) {
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
