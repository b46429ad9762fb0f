/* cmd_common: helpers shared by the command verbs. */
#include "cmd.h"

#include <stdio.h>

int
hv_cmd_print(json_t *v)
{
	/* json_dumpf: no buffer from jansson's (zeroing) allocator to free */
	if (json_dumpf(v, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
		return 1;
	fputc('\n', stdout);
	return 0;
}

int
hv_cmd_fail(const struct hv_err *err)
{
	fprintf(stderr, "hsmvault: %s\n",
	    err->msg[0] != '\0' ? err->msg : hv_strerror(err->rc));
	return 1;
}

enum hv_rc
hv_cmd_open(struct hv_cfg *cfg, bool create_keys, struct hv_vault **v,
    struct hv_err *err)
{
	if (cfg->database_url == NULL)
		return hv_err_set(err, HV_E_CONFIG,
		    "no database: set "
		    "HSMVAULT_DATABASE_URL or database_url");
	return hv_vault_open(cfg, create_keys, v, err);
}
