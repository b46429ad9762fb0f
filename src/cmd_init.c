/* cmd_init: `hsmvault init` and `hsmvault migrate`. */
#include "cmd.h"

int
hv_cmd_init(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	json_t *report = NULL;
	int rc;

	(void)o;
	if (cfg->database_url == NULL) {
		hv_err_set(&err, HV_E_CONFIG,
		    "no database: set "
		    "HSMVAULT_DATABASE_URL or database_url");
		return hv_cmd_fail(&err);
	}
	if (hv_vault_init(cfg, &report, &err) != HV_OK)
		return hv_cmd_fail(&err);
	rc = hv_cmd_print(report);
	json_decref(report);
	return rc;
}

int
hv_cmd_migrate(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	json_t *report = NULL;
	int rc;

	(void)o;
	if (cfg->database_url == NULL) {
		hv_err_set(&err, HV_E_CONFIG,
		    "no database: set "
		    "HSMVAULT_DATABASE_URL or database_url");
		return hv_cmd_fail(&err);
	}
	if (hv_vault_migrate(cfg, &report, &err) != HV_OK)
		return hv_cmd_fail(&err);
	rc = hv_cmd_print(report);
	json_decref(report);
	return rc;
}
