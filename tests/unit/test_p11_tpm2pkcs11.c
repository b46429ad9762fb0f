/*
 * test_p11_tpm2pkcs11: the PKCS#11 backend (hsm/p11.c) against a second
 * real module, tpm2-pkcs11 1.9 (Debian libtpm2-pkcs11-1), over a private
 * swtpm behind tpm2-abrmd on a private D-Bus session bus.
 *
 * What this pins down (docs/keystore-tpm.md, "tpm2-pkcs11"):
 *   - login, key lookup by label, HMAC (CKM_SHA256_HMAC on a key made by
 *     tpm2_ptool), random and probe work through tpm2-pkcs11;
 *   - hsmvault cannot use it as a key store all the same: the module has
 *     no C_GenerateKey (keys can only come from tpm2_ptool), and no
 *     CKM_AES_GCM (nor AES key wrap), the mechanism every KEK wrap uses.
 *     Both fail cleanly, with the PKCS#11 function and CKR_ code named.
 * If tpm2-pkcs11 ever gains those, the failure checks here turn red and
 * say so.
 *
 * Needs: libtpm2-pkcs11-1, libtpm2-pkcs11-tools (tpm2_ptool), tpm2-abrmd,
 * libtss2-tcti-tabrmd0, dbus, swtpm. This is an optional compatibility
 * check: without them the test is skipped (77) even under
 * HV_REQUIRE_INTEGRATION.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hsm.h"
#include "log.h"
#include "swtpm.h"
#include "testenv.h"

#define MODULE_GLOB "/usr/lib/*/pkcs11/libtpm2_pkcs11.so"
#define TABRMD_GLOB "/usr/lib/*/libtss2-tcti-tabrmd.so.0"
#define TOKEN       "hvtpm2"
#define USER_PIN    "87654321"
#define SO_PIN      "12345678"

static struct hv_swtpm tpm;
static char dir[300];
static char module[300];
static pid_t dbus_pid, abrmd_pid;

static void
skip_all(const char *what)
{
	fprintf(stderr, "SKIP: %s (optional tpm2-pkcs11 check)\n", what);
	exit(77);
}

/* The first path matching pattern, into out; false when none. */
static bool
find_path(const char *pattern, char *out, size_t cap)
{
	glob_t g;
	bool ok = false;

	if (glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
		snprintf(out, cap, "%s", g.gl_pathv[0]);
		ok = true;
	}
	globfree(&g);
	return ok;
}

static pid_t
spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();
	int fd;

	if (pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			(void)dup2(fd, 1);
			(void)dup2(fd, 2);
			close(fd);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static void
stop(pid_t *pid)
{
	int st;

	if (*pid > 0) {
		kill(*pid, SIGTERM);
		(void)waitpid(*pid, &st, 0);
	}
	*pid = 0;
}

static int
group_setup(void **state)
{
	char bus[400], addr[420], log[400], tcti[160], store[400], lib[300];
	const char *tmp = getenv("TMPDIR");
	int i;

	(void)state;
	if (!find_path(MODULE_GLOB, module, sizeof(module)))
		skip_all("tpm2-pkcs11 module (libtpm2-pkcs11-1)");
	if (!find_path(TABRMD_GLOB, lib, sizeof(lib)))
		skip_all("tabrmd tcti (libtss2-tcti-tabrmd0)");
	if (hv_test_sh(
	        "command -v tpm2_ptool >/dev/null && command -v "
	        "tpm2-abrmd >/dev/null && command -v dbus-daemon >/dev/null") !=
	    0)
		skip_all("tpm2_ptool, tpm2-abrmd or dbus-daemon");
	hv_swtpm_start(&tpm);
	snprintf(dir, sizeof(dir), "%s/hvt2p.XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		return -1;

	/* A private session bus, and tpm2-abrmd on it in front of swtpm
	 * (tpm2_ptool runs tpm2-tools, which need a resource manager: three
	 * transient slots are not enough for it). */
	snprintf(bus, sizeof(bus), "%s/bus", dir);
	snprintf(addr, sizeof(addr), "--address=unix:path=%s", bus);
	snprintf(log, sizeof(log), "%s/dbus.log", dir);
	{
		char *argv[] = {
		    "dbus-daemon", "--session", "--nofork", addr, NULL};

		dbus_pid = spawn(argv, log);
	}
	for (i = 0; i < 100 && access(bus, F_OK) != 0; i++)
		usleep(20 * 1000);
	snprintf(addr, sizeof(addr), "unix:path=%s", bus);
	setenv("DBUS_SESSION_BUS_ADDRESS", addr, 1);
	snprintf(tcti, sizeof(tcti), "--tcti=%s", tpm.tcti);
	snprintf(log, sizeof(log), "%s/abrmd.log", dir);
	{
		char *argv[] = {"tpm2-abrmd", "--session", "--allow-root",
		    "--flush-all", tcti, NULL};

		abrmd_pid = spawn(argv, log);
	}
	setenv("TPM2TOOLS_TCTI", "tabrmd:bus_type=session", 1);
	setenv("TPM2_PKCS11_TCTI", "tabrmd:bus_type=session", 1);
	for (i = 0; i < 100; i++) {
		if (hv_test_sh("tpm2_getrandom 4 >/dev/null 2>&1") == 0)
			break;
		usleep(50 * 1000);
	}
	if (i == 100) {
		fprintf(stderr, "tpm2-abrmd did not come up (see %s)\n", dir);
		return -1;
	}
	snprintf(store, sizeof(store), "%s/store", dir);
	mkdir(store, 0700);
	setenv("TPM2_PKCS11_STORE", store, 1);
	/* Keys come from tpm2_ptool: the module cannot generate them. */
	if (hv_test_sh(
	        "cd '%s' && tpm2_ptool init >ptool.log 2>&1 && "
	        "tpm2_ptool addtoken --pid=1 --label=" TOKEN " --sopin=" SO_PIN
	        " --userpin=" USER_PIN " >>ptool.log 2>&1 && "
	        "tpm2_ptool addkey --label=" TOKEN
	        " --key-label=hsmvault-kek-1 "
	        "--userpin=" USER_PIN " --algorithm=aes256 >>ptool.log 2>&1 && "
	        "tpm2_ptool addkey --label=" TOKEN " --key-label=hsmvault-hmac "
	        "--userpin=" USER_PIN
	        " --algorithm=hmac:sha256 >>ptool.log 2>&1",
	        dir) != 0) {
		fprintf(stderr, "tpm2_ptool failed (see %s/ptool.log)\n", dir);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	stop(&abrmd_pid);
	stop(&dbus_pid);
	hv_swtpm_destroy(&tpm);
	if (dir[0] == '/' && strstr(dir, "hvt2p.") != NULL)
		(void)hv_test_sh("rm -rf '%s'", dir);
	return 0;
}

static struct hv_hsm *
open_token(const char *uri)
{
	char data[400];
	struct hv_hsm_config cfg = {
	    .keystore = "pkcs11",
	    .p11_module = module,
	    .p11_token = uri,
	    .p11_pin = USER_PIN,
	    .data_dir = data,
	};
	struct hv_hsm *h = NULL;
	struct hv_err err = {0};
	enum hv_rc rc;

	snprintf(data, sizeof(data), "%s/data", dir);
	rc = hv_hsm_open(&cfg, &h, &err);
	if (rc != HV_OK)
		fprintf(stderr, "open: %s\n", err.msg);
	assert_int_equal(rc, HV_OK);
	return h;
}

/* What works: login, lookup of ptool-made keys, HMAC, random, probe. */
static void
test_hmac_random_probe(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_hsm_status st;
	uint8_t a[HV_HMAC_LEN], b[HV_HMAC_LEN], c[HV_HMAC_LEN], r[64];
	uint8_t zero[64] = {0};

	(void)state;
	h = open_token("pkcs11:token=" TOKEN);
	assert_int_equal(hv_hsm_ensure_keys(h, false, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"hv_sk_x", 7, a, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"hv_sk_x", 7, b, &err), HV_OK);
	assert_memory_equal(a, b, HV_HMAC_LEN);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"hv_sk_y", 7, c, &err), HV_OK);
	assert_memory_not_equal(a, c, HV_HMAC_LEN);
	assert_int_equal(hv_hsm_random(h, r, sizeof(r), &err), HV_OK);
	assert_memory_not_equal(r, zero, sizeof(r));
	assert_int_equal(hv_hsm_probe(h, &st, &err), HV_OK);
	assert_true(st.reachable);
	assert_string_equal(st.backend, "pkcs11");
	assert_int_equal(st.active_kek, 1);
	hv_hsm_close(&h);
}

/* What does not: wrapping needs CKM_AES_GCM, which the module lacks. */
static void
test_wrap_mechanism_missing(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_secret *dek = hv_secret_new(HV_DEK_LEN);
	uint8_t out[HV_WRAPPED_MAX];
	size_t len = 0;
	enum hv_rc rc;

	(void)state;
	assert_non_null(dek);
	h = open_token("pkcs11:token=" TOKEN);
	rc = hv_hsm_wrap(
	    h, 0, (const uint8_t *)"a|b|1", 5, dek, out, &len, NULL, &err);
	fprintf(stderr, "wrap through tpm2-pkcs11: %s\n", err.msg);
	assert_int_not_equal(rc, HV_OK);
	assert_int_not_equal(rc, HV_E_CRYPTO);
	assert_non_null(strstr(err.msg, "CKR_MECHANISM_INVALID"));
	hv_secret_free(&dek);
	hv_hsm_close(&h);
}

/* ... and hsmvault init cannot create keys: no C_GenerateKey. */
static void
test_keygen_unsupported(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	enum hv_rc rc;

	(void)state;
	h = open_token("pkcs11:token=" TOKEN ";object=fresh");
	assert_int_equal(hv_hsm_ensure_keys(h, false, &err), HV_E_NOT_FOUND);
	rc = hv_hsm_ensure_keys(h, true, &err);
	fprintf(stderr, "ensure_keys through tpm2-pkcs11: %s\n", err.msg);
	assert_int_not_equal(rc, HV_OK);
	assert_non_null(strstr(err.msg, "C_GenerateKey"));
	assert_non_null(strstr(err.msg, "CKR_FUNCTION_NOT_SUPPORTED"));
	hv_hsm_close(&h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hmac_random_probe),
	    cmocka_unit_test(test_wrap_mechanism_missing),
	    cmocka_unit_test(test_keygen_unsupported),
	};

	hv_log_set_level(HV_LOG_ERROR);
	setenv("TSS2_LOG", "all+none", 0);
	setenv("TPM2_PKCS11_LOG_LEVEL", "0", 0);
	return cmocka_run_group_tests_name(
	    "p11_tpm2pkcs11", tests, group_setup, group_teardown);
}
