/*
 * hv: main() of the hsmvault command line. Reads the configuration in
 * three layers (file, HSMVAULT_* environment, flags), finds the verb in a
 * table and runs it.
 */
#include "cmd.h"
#include "log.h"
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const o_none[] = {NULL};
static const char *const o_create[] = {"name", "scopes", "workspace", "user",
    "expires-at", "credentials", "key-file", NULL};
static const char *const o_list[] = {"workspace", "limit", "cursor", NULL};
static const char *const o_revoke[] = {"workspace", NULL};
static const char *const o_rewrap[] = {"batch", NULL};

static const struct hv_cmd cmds[] = {
    {"init", NULL, o_none, 0, hv_cmd_init, "",
        "apply migrations, create the KEK and HMAC key in the key store "
        "when absent, and the default workspace"},
    {"migrate", NULL, o_none, 0, hv_cmd_migrate, "",
        "apply pending database migrations (safe to run twice)"},
    {"serve", NULL, o_none, 0, hv_cmd_serve, "",
        "serve the HTTP API on listen (default 127.0.0.1:8200)"},
    {"apikey", "create", o_create, 0, hv_cmd_apikey_create,
        "--name NAME --scopes S1,S2 [--workspace ID] [--user U] "
        "[--expires-at RFC3339] [--credentials all|ID,ID] [--key-file F]",
        "mint an API key; it is shown once (or written to --key-file, "
        "mode 0600)"},
    {"apikey", "list", o_list, 0, hv_cmd_apikey_list,
        "[--workspace ID] [--limit N] [--cursor C]",
        "list API keys of every workspace, or of one (no key material); "
        "next_cursor goes to --cursor"},
    {"apikey", "revoke", o_revoke, 1, hv_cmd_apikey_revoke,
        "ID [--workspace ID]", "revoke an API key"},
    {"kek", "rotate", o_none, 0, hv_cmd_kek_rotate, "",
        "create a new KEK version in the key store; new DEKs use it"},
    {"kek", "disable", o_none, 1, hv_cmd_kek_disable, "VERSION",
        "disable a retired KEK version that no DEK references any more"},
    {"rewrap", NULL, o_rewrap, 0, hv_cmd_rewrap, "[--batch N]",
        "re-wrap every DEK to the newest KEK (payloads are never "
        "decrypted); online and resumable, with progress on stderr"},
    {"audit", "verify", o_none, 0, hv_cmd_audit_verify, "",
        "verify the audit chains; names the first altered, removed or "
        "reordered row; exit 1 when the log was tampered with"},
    {"status", NULL, o_none, 0, hv_cmd_status, "",
        "key store, KEK versions with the DEKs each protects, counts"},
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void
usage_all(FILE *f)
{
	size_t i;

	fprintf(f,
	    "usage: hsmvault [--config FILE] [--KEY=VALUE ...] "
	    "COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < NCMDS; i++) {
		char name[40];

		snprintf(name, sizeof(name), "%s%s%s", cmds[i].verb,
		    cmds[i].sub ? " " : "", cmds[i].sub ? cmds[i].sub : "");
		fprintf(f, "  %-16s %s\n", name, cmds[i].help);
	}
	fprintf(f,
	    "\nconfiguration: a file (--config, or HSMVAULT_CONFIG), "
	    "HSMVAULT_* environment variables, and --KEY=VALUE flags,\n"
	    "later ones winning: --database-url, --keystore, "
	    "--pkcs11-module, --pkcs11-token, --pkcs11-pin-file,\n"
	    "--tpm-tcti, --listen, --data, ... (docs/configuration.md). "
	    "The PIN comes from HSMVAULT_PKCS11_PIN or\n"
	    "pkcs11_pin_file, never from the command line.\n"
	    "`hsmvault COMMAND --help` describes one command.\n");
}

static void
usage_one(FILE *f, const struct hv_cmd *c)
{
	fprintf(f, "usage: hsmvault [--config FILE] %s%s%s %s\n\n%s\n", c->verb,
	    c->sub ? " " : "", c->sub ? c->sub : "", c->usage, c->help);
}

/* `hsmvault apikey --help`: the commands of one group; false if none. */
static bool
usage_group(FILE *f, const char *verb)
{
	bool any = false;
	size_t i;

	for (i = 0; i < NCMDS; i++) {
		if (cmds[i].sub == NULL || strcmp(cmds[i].verb, verb) != 0)
			continue;
		if (!any)
			fprintf(f,
			    "usage: hsmvault [--config FILE] %s COMMAND "
			    "[ARGS]\n\ncommands:\n",
			    verb);
		any = true;
		fprintf(f, "  %-16s %s\n", cmds[i].sub, cmds[i].help);
	}
	if (any)
		fprintf(f,
		    "\n`hsmvault %s COMMAND --help` describes one "
		    "command.\n",
		    verb);
	return any;
}

static bool
is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 ||
	    strcmp(a, "help") == 0;
}

const char *
hv_opt(const struct hv_opts *o, const char *name)
{
	size_t i;

	for (i = 0; i < o->n; i++)
		if (strcmp(o->names[i], name) == 0)
			return o->values[i];
	return NULL;
}

static bool
cmd_accepts(const struct hv_cmd *c, const char *name)
{
	const char *const *p;

	for (p = c->opts; *p != NULL; p++)
		if (strcmp(*p, name) == 0)
			return true;
	return false;
}

int
main(int argc, char **argv)
{
	struct hv_cfg cfg;
	struct hv_err err = {0};
	struct hv_opts opts = {0};
	const struct hv_cmd *cmd = NULL;
	const char *config = getenv("HSMVAULT_CONFIG");
	const char *words[2] = {NULL, NULL};
	char *pos[8];
	int nwords = 0, npos = 0, i, rc = 1, lvl;
	bool help = false;
	size_t k;

	if (hv_mem_harden_process() != 0)
		hv_log_warn("cannot disable core dumps");
	hv_mem_json_init();
	/* tss2 would print its own non-JSON lines; we log its errors ourselves */
	setenv("TSS2_LOG", "all+none", 0);
	hv_cfg_init(&cfg);

	/* pass 1: the config file and the command words */
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (is_help(a)) {
			help = true;
		} else if (strcmp(a, "--config") == 0 && i + 1 < argc) {
			config = argv[++i];
		} else if (strncmp(a, "--config=", 9) == 0) {
			config = a + 9;
		} else if (strncmp(a, "--", 2) == 0) {
			if (strchr(a, '=') == NULL && i + 1 < argc &&
			    strncmp(argv[i + 1], "--", 2) != 0)
				i++; /* its value */
		} else if (nwords < 2 && npos == 0) {
			words[nwords++] = a;
		} else if (npos < 8) {
			pos[npos++] = argv[i];
		}
	}
	for (k = 0; k < NCMDS && nwords > 0; k++) {
		if (strcmp(cmds[k].verb, words[0]) != 0)
			continue;
		if (cmds[k].sub == NULL) {
			cmd = &cmds[k];
			if (nwords == 2 && npos < 8) {
				memmove(pos + 1, pos,
				    sizeof(pos[0]) * (size_t)npos);
				pos[0] = (char *)words[1];
				npos++;
			}
			break;
		}
		if (nwords == 2 && strcmp(cmds[k].sub, words[1]) == 0) {
			cmd = &cmds[k];
			break;
		}
	}
	if (cmd == NULL) {
		if (nwords == 1 &&
		    usage_group(help ? stdout : stderr, words[0])) {
			rc = help ? 0 : 2;
		} else if (help || nwords == 0) {
			usage_all(help ? stdout : stderr);
			rc = help ? 0 : 2;
		} else {
			fprintf(stderr, "hsmvault: unknown command '%s%s%s'\n",
			    words[0], nwords > 1 ? " " : "",
			    nwords > 1 ? words[1] : "");
			usage_all(stderr);
			rc = 2;
		}
		goto out;
	}
	if (help) {
		usage_one(stdout, cmd);
		rc = 0;
		goto out;
	}
	if (npos != cmd->nargs) {
		usage_one(stderr, cmd);
		rc = 2;
		goto out;
	}

	/* configuration: file, then environment, then flags */
	if (config != NULL && hv_cfg_load_file(&cfg, config, &err) != HV_OK) {
		rc = hv_cmd_fail(&err);
		goto out;
	}
	if (hv_cfg_load_env(&cfg, &err) != HV_OK) {
		rc = hv_cmd_fail(&err);
		goto out;
	}
	for (i = 1; i < argc; i++) {
		char name[96];
		const char *a = argv[i], *val, *eq;
		size_t n;

		if (strncmp(a, "--", 2) != 0 || is_help(a))
			continue;
		eq = strchr(a, '=');
		if (eq != NULL) {
			n = (size_t)(eq - a) - 2;
			val = eq + 1;
		} else {
			n = strlen(a) - 2;
			if (i + 1 >= argc ||
			    strncmp(argv[i + 1], "--", 2) == 0) {
				fprintf(
				    stderr, "hsmvault: %s needs a value\n", a);
				rc = 2;
				goto out;
			}
			val = argv[++i];
		}
		if (n == 0 || n >= sizeof(name)) {
			fprintf(stderr, "hsmvault: bad option '%s'\n", a);
			rc = 2;
			goto out;
		}
		memcpy(name, a + 2, n);
		name[n] = '\0';
		if (strcmp(name, "config") == 0)
			continue;
		if (cmd_accepts(cmd, name)) {
			if (opts.n == HV_OPTS_MAX) {
				rc = 2;
				goto out;
			}
			for (k = 0; cmd->opts[k] != NULL; k++)
				if (strcmp(cmd->opts[k], name) == 0)
					opts.names[opts.n] = cmd->opts[k];
			opts.values[opts.n++] = val;
			continue;
		}
		if (hv_cfg_set(&cfg, name, val, &err) != HV_OK) {
			rc = hv_cmd_fail(&err);
			if (rc == 1)
				rc = 2;
			goto out;
		}
	}
	lvl = cfg.log_level ? hv_log_parse_level(cfg.log_level) : -1;
	if (lvl >= 0)
		hv_log_set_level((enum hv_log_level)lvl);
	/*
	 * SoftHSM2 finds its tokens through SOFTHSM2_CONF; a configuration
	 * file can name it so that `--config` alone reaches the same token.
	 */
	if (cfg.softhsm2_conf != NULL && getenv("SOFTHSM2_CONF") == NULL)
		setenv("SOFTHSM2_CONF", cfg.softhsm2_conf, 1);
	if (hv_cfg_resolve_pin(&cfg, &err) != HV_OK) {
		rc = hv_cmd_fail(&err);
		goto out;
	}
	opts.args = pos;
	opts.nargs = npos;
	rc = cmd->fn(&cfg, &opts);
out:
	hv_cfg_release(&cfg);
	return rc;
}
