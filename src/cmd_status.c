/* cmd_status: `hsmvault status` and `hsmvault audit verify`. */
#include "cmd.h"

int
hv_cmd_status(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	json_t *out = NULL;
	int rc = 1;

	(void)o;
	if (hv_cmd_open(cfg, false, &v, &err) != HV_OK ||
	    hv_vault_status(v, &out, &err) != HV_OK) {
		rc = hv_cmd_fail(&err);
		goto out;
	}
	rc = hv_cmd_print(out);
out:
	json_decref(out);
	hv_vault_close(&v);
	return rc;
}

int
hv_cmd_audit_verify(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	json_t *out = NULL;
	int rc = 1;

	(void)o;
	if (hv_cmd_open(cfg, false, &v, &err) != HV_OK ||
	    hv_vault_audit_verify(v, &out, &err) != HV_OK) {
		rc = hv_cmd_fail(&err);
		goto out;
	}
	(void)hv_cmd_print(out);
	rc = json_is_true(json_object_get(out, "ok")) ? 0 : 1;
	if (rc != 0)
		fprintf(stderr, "hsmvault: audit log verification FAILED\n");
out:
	json_decref(out);
	hv_vault_close(&v);
	return rc;
}
