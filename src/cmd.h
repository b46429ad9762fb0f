/*
 * cmd: the hsmvault command line. src/hv.c holds main() and the verb
 * table; each src/cmd_<verb>.c implements verbs. A verb gets the loaded
 * configuration and its own options already parsed into struct hv_opts.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error. Results go to stdout as
 * JSON; progress and errors to stderr. Secrets never go to stdout except
 * the one-time API key of `apikey create` (and only when --key-file is not
 * given).
 */
#ifndef HV_CMD_H
#define HV_CMD_H

#include <jansson.h>
#include <stdbool.h>

#include "cfg.h"
#include "err.h"
#include "vault.h"

#define HV_OPTS_MAX 16

/* Options of one verb: --name value or --name=value, in declared order. */
struct hv_opts {
	const char *names[HV_OPTS_MAX];
	const char *values[HV_OPTS_MAX];
	size_t n;
	char **args; /* positional arguments */
	int nargs;
};

/* The value of option name, or NULL when absent. */
const char *hv_opt(const struct hv_opts *o, const char *name);

struct hv_cmd {
	const char *verb;        /* "apikey" */
	const char *sub;         /* "create", or NULL */
	const char *const *opts; /* accepted option names, NULL-terminated */
	int nargs;               /* positional arguments required */
	int (*fn)(struct hv_cfg *cfg, const struct hv_opts *o);
	const char *usage; /* one line of arguments */
	const char *help;  /* what it does */
};

/* Print a JSON value to stdout (pretty); returns 0. */
int hv_cmd_print(json_t *v);
/* Print "hsmvault: <msg>" to stderr; returns 1. */
int hv_cmd_fail(const struct hv_err *err);

/* Open the vault from cfg (keys must exist unless create_keys). */
enum hv_rc hv_cmd_open(struct hv_cfg *cfg, bool create_keys,
    struct hv_vault **v, struct hv_err *err);

int hv_cmd_init(struct hv_cfg *cfg, const struct hv_opts *o);
int hv_cmd_migrate(struct hv_cfg *cfg, const struct hv_opts *o);
int hv_cmd_serve(struct hv_cfg *cfg, const struct hv_opts *o);
int hv_cmd_apikey_create(struct hv_cfg *cfg, const struct hv_opts *o);
int hv_cmd_apikey_list(struct hv_cfg *cfg, const struct hv_opts *o);
int hv_cmd_apikey_revoke(struct hv_cfg *cfg, const struct hv_opts *o);
int hv_cmd_kek_rotate(struct hv_cfg *cfg, const struct hv_opts *o);
int hv_cmd_kek_disable(struct hv_cfg *cfg, const struct hv_opts *o);
int hv_cmd_rewrap(struct hv_cfg *cfg, const struct hv_opts *o);
int hv_cmd_audit_verify(struct hv_cfg *cfg, const struct hv_opts *o);
int hv_cmd_status(struct hv_cfg *cfg, const struct hv_opts *o);

#endif
