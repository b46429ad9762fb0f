/*
 * test_tpm: the TPM 2.0 key store backend (hsm/tpm.c) against a private
 * swtpm: what the cross-backend conformance suite does not cover (blob
 * files, slot hygiene, stale objects, TPM restarts and resets, the
 * circuit breaker, a hung TPM, a different TPM, metadata changes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hsm.h"
#include "log.h"
#include "swtpm.h"
#include "testenv.h"

static struct hv_swtpm tpm;
static unsigned int dir_seq;

static uint64_t
ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
new_dir(char *out, size_t cap)
{
	snprintf(out, cap, "%s/data%u", tpm.dir, ++dir_seq);
}

static enum hv_rc
open_tpm(const char *tcti, const char *dir, unsigned int breaker_ms,
    unsigned int retry_max, struct hv_hsm **h, struct hv_err *err)
{
	struct hv_hsm_config cfg = {
	    .keystore = "tpm",
	    .tpm_tcti = tcti,
	    .data_dir = dir,
	    .breaker_ms = breaker_ms,
	    .retry_max = retry_max,
	};

	return hv_hsm_open(&cfg, h, err);
}

static struct hv_hsm *
open_ok(const char *dir)
{
	struct hv_hsm *h = NULL;
	struct hv_err err = {0};
	enum hv_rc rc;

	rc = open_tpm(tpm.tcti, dir, 200, 3, &h, &err);
	if (rc != HV_OK)
		fprintf(stderr, "open: %s\n", err.msg);
	assert_int_equal(rc, HV_OK);
	return h;
}

static struct hv_hsm *
open_init(char *dir, size_t cap)
{
	struct hv_hsm *h;
	struct hv_err err = {0};

	new_dir(dir, cap);
	h = open_ok(dir);
	assert_int_equal(hv_hsm_ensure_keys(h, true, &err), HV_OK);
	return h;
}

static struct hv_secret *
dek_fill(uint8_t b)
{
	struct hv_secret *s = hv_secret_new(HV_DEK_LEN);

	assert_non_null(s);
	memset(s->buf, b, HV_DEK_LEN);
	return s;
}

/* Transient objects currently loaded in the swtpm (needs no client). */
static int
transient_count(void)
{
	char out[2048];
	int n = 0;
	const char *p;

	if (hv_test_sh_out(out, sizeof(out),
	        "TPM2TOOLS_TCTI='%s' "
	        "tpm2_getcap handles-transient 2>/dev/null",
	        tpm.tcti) != 0)
		return -1;
	for (p = out; (p = strstr(p, "0x80")) != NULL; p++)
		n++;
	return n;
}

static unsigned int
closed_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void
test_open_errors(void **state)
{
	struct hv_hsm *h = NULL;
	struct hv_err err = {0};
	char dir[300], tcti[128];

	(void)state;
	new_dir(dir, sizeof(dir));
	assert_int_equal(open_tpm(tpm.tcti, NULL, 0, 0, &h, &err), HV_E_CONFIG);
	assert_null(h);
	/* A port nothing listens on: one the kernel just handed out. */
	snprintf(
	    tcti, sizeof(tcti), "swtpm:host=127.0.0.1,port=%u", closed_port());
	assert_int_equal(open_tpm(tcti, dir, 0, 1, &h, &err), HV_E_KEYSTORE);
	assert_null(h);
	assert_int_equal(
	    open_tpm("nosuchtcti:x", dir, 0, 1, &h, &err), HV_E_KEYSTORE);
	assert_null(h);
}

static void
test_ensure_keys_and_files(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_kek_info keks[4];
	char dir[300], path[400], meta[512];
	const char *files[] = {
	    "tpm-keys.meta", "tpm-hmac.blob", "tpm-kek-1.blob"};
	struct stat st;
	size_t n = 0, i;
	FILE *f;

	(void)state;
	new_dir(dir, sizeof(dir));
	h = open_ok(dir);
	assert_int_equal(hv_hsm_ensure_keys(h, false, &err), HV_E_NOT_FOUND);
	assert_non_null(strstr(err.msg, "hsmvault init"));
	assert_int_equal(hv_hsm_ensure_keys(h, true, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h, false, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h, true, &err), HV_OK);
	assert_int_equal(hv_hsm_kek_list(h, keks, 4, &n, &err), HV_OK);
	assert_int_equal(n, 1);
	assert_int_equal(keks[0].version, 1);
	assert_int_equal(keks[0].state, HV_KEK_ACTIVE);
	hv_hsm_close(&h);
	assert_null(h);
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
	}
	snprintf(path, sizeof(path), "%s/tpm-keys.meta", dir);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(meta, 1, sizeof(meta) - 1, f);
	meta[n] = '\0';
	fclose(f);
	assert_non_null(strstr(meta, "hsmvault-tpm-keys 1\n"));
	assert_non_null(strstr(meta, "\nprimary 000b"));
	assert_non_null(strstr(meta, "\nkek 1 enabled\n"));
	/* Objects are flushed on close: no slot is left taken. */
	assert_int_equal(transient_count(), 0);
}

static void
test_wrap_format_and_garbage(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_secret *dek = dek_fill(7), *back = NULL;
	uint8_t w1[HV_WRAPPED_MAX], w2[HV_WRAPPED_MAX], mix[HV_WRAPPED_MAX];
	uint8_t junk[200];
	size_t l1 = 0, l2 = 0, pub_len;
	uint32_t used = 0;
	char dir[300];

	(void)state;
	h = open_init(dir, sizeof(dir));
	assert_int_equal(hv_hsm_wrap(h, 0, (const uint8_t *)"a", 1, dek, w1,
	                     &l1, &used, &err),
	    HV_OK);
	assert_int_equal(used, 1);
	assert_true(l1 > 100 && l1 <= HV_WRAPPED_MAX);
	assert_memory_equal(w1, "HVT1", 4);
	/* Wrapping is randomized: the same DEK and AAD differ each time. */
	assert_int_equal(hv_hsm_wrap(h, 0, (const uint8_t *)"a", 1, dek, w2,
	                     &l2, NULL, &err),
	    HV_OK);
	assert_int_equal(l1, l2);
	assert_memory_not_equal(w1, w2, l1);
	/* Unknown version, empty, short, junk. */
	assert_int_equal(
	    hv_hsm_unwrap(h, 9, (const uint8_t *)"a", 1, w1, l1, &back, &err),
	    HV_E_NOT_FOUND);
	assert_int_equal(
	    hv_hsm_unwrap(h, 1, (const uint8_t *)"a", 1, w1, 0, &back, &err),
	    HV_E_CRYPTO);
	assert_int_equal(
	    hv_hsm_unwrap(h, 1, (const uint8_t *)"a", 1, w1, 20, &back, &err),
	    HV_E_CRYPTO);
	assert_int_equal(hv_hsm_unwrap(h, 1, (const uint8_t *)"a", 1, w1,
	                     l1 - 1, &back, &err),
	    HV_E_CRYPTO);
	memset(junk, 0x41, sizeof(junk));
	memcpy(junk, "HVT1", 4);
	assert_int_equal(hv_hsm_unwrap(h, 1, (const uint8_t *)"a", 1, junk,
	                     sizeof(junk), &back, &err),
	    HV_E_CRYPTO);
	/* Public area of one wrapped DEK with the private area of another. */
	pub_len = 4 + 2 + ((size_t)w1[4] << 8 | w1[5]);
	memcpy(mix, w1, pub_len);
	memcpy(mix + pub_len, w2 + pub_len, l2 - pub_len);
	assert_int_equal(
	    hv_hsm_unwrap(h, 1, (const uint8_t *)"a", 1, mix, l1, &back, &err),
	    HV_E_CRYPTO);
	assert_null(back);
	/* And the genuine ones still work after all that. */
	assert_int_equal(
	    hv_hsm_unwrap(h, 1, (const uint8_t *)"a", 1, w2, l2, &back, &err),
	    HV_OK);
	assert_memory_equal(back->buf, dek->buf, HV_DEK_LEN);
	hv_secret_free(&back);
	hv_secret_free(&dek);
	hv_hsm_close(&h);
}

static void
test_hmac_lengths(void **state)
{
	static const size_t lens[] = {0, 1, 1023, 1024, 1025, 3000, 5000};
	uint8_t msg[5000], mac[7][HV_HMAC_LEN], again[HV_HMAC_LEN];
	struct hv_hsm *h;
	struct hv_err err = {0};
	char dir[300];
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7 + 3);
	h = open_init(dir, sizeof(dir));
	for (i = 0; i < 7; i++) {
		assert_int_equal(
		    hv_hsm_hmac(h, msg, lens[i], mac[i], &err), HV_OK);
		assert_int_equal(
		    hv_hsm_hmac(h, msg, lens[i], again, &err), HV_OK);
		assert_memory_equal(mac[i], again, HV_HMAC_LEN);
		for (j = 0; j < i; j++)
			assert_memory_not_equal(mac[i], mac[j], HV_HMAC_LEN);
	}
	hv_hsm_close(&h);
	assert_int_equal(transient_count(), 0);
}

static void
test_random_lengths(void **state)
{
	static const size_t lens[] = {1, 31, 32, 33, 48, 1000};
	uint8_t a[1000], b[1000], zero[1000] = {0};
	struct hv_hsm *h;
	struct hv_err err = {0};
	char dir[300];
	size_t i;

	(void)state;
	new_dir(dir, sizeof(dir));
	h = open_ok(dir);
	assert_int_equal(hv_hsm_random(h, a, 0, &err), HV_OK);
	for (i = 0; i < 6; i++) {
		memset(a, 0, sizeof(a));
		assert_int_equal(hv_hsm_random(h, a, lens[i], &err), HV_OK);
		assert_int_equal(hv_hsm_random(h, b, lens[i], &err), HV_OK);
		if (lens[i] >= 16) {
			assert_memory_not_equal(a, zero, lens[i]);
			assert_memory_not_equal(a, b, lens[i]);
		}
	}
	hv_hsm_close(&h);
}

/* Three KEK versions, unwraps of all of them interleaved with HMACs: the
 * LRU table must flush and reload without ever running out of slots. */
static void
test_slots_under_load(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_secret *dek[3], *back = NULL;
	uint8_t w[3][HV_WRAPPED_MAX], mac[HV_HMAC_LEN], rw[HV_WRAPPED_MAX];
	size_t wl[3], rwl = 0;
	uint32_t v, used;
	char dir[300];
	int i, k;

	(void)state;
	h = open_init(dir, sizeof(dir));
	for (k = 0; k < 3; k++) {
		if (k > 0) {
			assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
			assert_int_equal(v, (uint32_t)k + 1);
		}
		dek[k] = dek_fill((uint8_t)(0x10 + k));
		assert_int_equal(hv_hsm_wrap(h, 0, (const uint8_t *)"x", 1,
		                     dek[k], w[k], &wl[k], &used, &err),
		    HV_OK);
		assert_int_equal(used, (uint32_t)k + 1);
	}
	for (i = 0; i < 60; i++) {
		k = (i * 7) % 3;
		assert_int_equal(
		    hv_hsm_unwrap(h, (uint32_t)k + 1, (const uint8_t *)"x", 1,
		        w[k], wl[k], &back, &err),
		    HV_OK);
		assert_memory_equal(back->buf, dek[k]->buf, HV_DEK_LEN);
		hv_secret_free(&back);
		assert_int_equal(
		    hv_hsm_hmac(h, (const uint8_t *)"m", 1, mac, &err), HV_OK);
		if (i % 10 == 0) {
			/* Re-wrap (rewrap's pattern): the active version 3. */
			assert_int_equal(hv_hsm_wrap(h, 0, (const uint8_t *)"y",
			                     1, dek[0], rw, &rwl, &used, &err),
			    HV_OK);
			assert_int_equal(used, 3);
			assert_int_equal(
			    hv_hsm_unwrap(h, 3, (const uint8_t *)"y", 1, rw,
			        rwl, &back, &err),
			    HV_OK);
			assert_memory_equal(back->buf, dek[0]->buf, HV_DEK_LEN);
			hv_secret_free(&back);
		}
	}
	for (k = 0; k < 3; k++)
		hv_secret_free(&dek[k]);
	hv_hsm_close(&h);
	assert_int_equal(transient_count(), 0);
}

/* A crashed process left all three slots taken: open must clean up. */
static void
test_stale_objects_flushed(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_secret *dek = dek_fill(3), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX], mac[HV_HMAC_LEN];
	size_t wl = 0;
	char dir[300];
	pid_t pid;
	int st;

	(void)state;
	h = open_init(dir, sizeof(dir));
	assert_int_equal(
	    hv_hsm_wrap(h, 0, (const uint8_t *)"s", 1, dek, w, &wl, NULL, &err),
	    HV_OK);
	hv_hsm_close(&h);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		h = open_ok(dir);
		if (hv_hsm_unwrap(h, 1, (const uint8_t *)"s", 1, w, wl, &back,
		        &err) != HV_OK ||
		    hv_hsm_hmac(h, (const uint8_t *)"m", 1, mac, &err) != HV_OK)
			_exit(2);
		_exit(0); /* no close: the objects stay loaded */
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(transient_count() >= 2);
	h = open_ok(dir);
	assert_int_equal(
	    hv_hsm_unwrap(h, 1, (const uint8_t *)"s", 1, w, wl, &back, &err),
	    HV_OK);
	assert_memory_equal(back->buf, dek->buf, HV_DEK_LEN);
	hv_secret_free(&back);
	hv_secret_free(&dek);
	hv_hsm_close(&h);
	assert_int_equal(transient_count(), 0);
}

/* TPM restart (swtpm stopped and started: Startup CLEAR) mid-use. */
static void
test_restart_recovers(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_hsm_status st;
	struct hv_secret *dek = dek_fill(9), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX], m1[HV_HMAC_LEN], m2[HV_HMAC_LEN];
	size_t wl = 0;
	char dir[300];

	(void)state;
	h = open_init(dir, sizeof(dir));
	assert_int_equal(
	    hv_hsm_wrap(h, 0, (const uint8_t *)"r", 1, dek, w, &wl, NULL, &err),
	    HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"r", 1, m1, &err), HV_OK);
	assert_int_equal(hv_swtpm_restart(&tpm), 0);
	assert_int_equal(
	    hv_hsm_unwrap(h, 1, (const uint8_t *)"r", 1, w, wl, &back, &err),
	    HV_OK);
	assert_memory_equal(back->buf, dek->buf, HV_DEK_LEN);
	hv_secret_free(&back);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"r", 1, m2, &err), HV_OK);
	assert_memory_equal(m1, m2, HV_HMAC_LEN);
	/* A crash this time (SIGKILL): same story. */
	hv_swtpm_kill(&tpm);
	assert_int_equal(hv_swtpm_resume(&tpm), 0);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"r", 1, m2, &err), HV_OK);
	assert_memory_equal(m1, m2, HV_HMAC_LEN);
	assert_int_equal(hv_hsm_probe(h, &st, &err), HV_OK);
	assert_true(st.reachable);
	assert_true(st.reconnects >= 2);
	assert_string_equal(st.backend, "tpm");
	assert_int_equal(st.active_kek, 1);
	hv_secret_free(&dek);
	hv_hsm_close(&h);
}

/* TPM reset through the control channel (a power cycle without
 * Startup): the backend must send TPM2_Startup itself. */
static void
test_reset_needs_startup(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	uint8_t m1[HV_HMAC_LEN], m2[HV_HMAC_LEN];
	char dir[300];

	(void)state;
	if (hv_test_sh("command -v swtpm_ioctl >/dev/null") != 0) {
		skip();
		return;
	}
	h = open_init(dir, sizeof(dir));
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"z", 1, m1, &err), HV_OK);
	/* Re-initialize the TPM (_TPM_Init): it now needs Startup. */
	assert_int_equal(hv_test_sh("swtpm_ioctl --tcp 127.0.0.1:%u -i "
	                            ">/dev/null",
	                     tpm.port + 1),
	    0);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"z", 1, m2, &err), HV_OK);
	assert_memory_equal(m1, m2, HV_HMAC_LEN);
	hv_hsm_close(&h);
}

static void
test_breaker_fails_fast(void **state)
{
	struct hv_hsm *h = NULL;
	struct hv_err err = {0};
	struct hv_hsm_status st;
	uint8_t mac[HV_HMAC_LEN], rnd[8];
	uint64_t t0, dt;
	char dir[300];
	int i;

	(void)state;
	new_dir(dir, sizeof(dir));
	assert_int_equal(open_tpm(tpm.tcti, dir, 300, 3, &h, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h, true, &err), HV_OK);
	hv_swtpm_stop(&tpm);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"b", 1, mac, &err), HV_E_KEYSTORE);
	t0 = ms_now();
	for (i = 0; i < 100; i++)
		assert_int_equal(
		    hv_hsm_random(h, rnd, sizeof(rnd), &err), HV_E_KEYSTORE);
	dt = ms_now() - t0;
	assert_true(dt < 100); /* 100 calls: no reconnect each */
	assert_non_null(strstr(err.msg, "unreachable"));
	assert_int_equal(hv_hsm_probe(h, &st, &err), HV_E_KEYSTORE);
	assert_false(st.reachable);
	assert_int_equal(hv_swtpm_resume(&tpm), 0);
	usleep(350 * 1000);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"b", 1, mac, &err), HV_OK);
	assert_int_equal(hv_hsm_probe(h, &st, &err), HV_OK);
	assert_true(st.reachable);
	hv_hsm_close(&h);
}

/* A TPM that stops answering: fail after the command deadline, not hang. */
static void
test_hung_tpm_times_out(void **state)
{
	struct hv_hsm *h = NULL;
	struct hv_err err = {0};
	uint8_t mac[HV_HMAC_LEN];
	uint64_t t0, dt;
	char dir[300];

	(void)state;
	new_dir(dir, sizeof(dir));
	assert_int_equal(open_tpm(tpm.tcti, dir, 200, 1, &h, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h, true, &err), HV_OK);
	hv_swtpm_pause(&tpm);
	t0 = ms_now();
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"h", 1, mac, &err), HV_E_KEYSTORE);
	dt = ms_now() - t0;
	assert_true(dt >= 4000 && dt < 15000);
	/* Breaker open: at once. */
	t0 = ms_now();
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"h", 1, mac, &err), HV_E_KEYSTORE);
	assert_true(ms_now() - t0 < 50);
	hv_swtpm_continue(&tpm);
	usleep(250 * 1000);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"h", 1, mac, &err), HV_OK);
	hv_hsm_close(&h);
}

/* Key blobs of one TPM opened against another: a clear config error. */
static void
test_other_tpm_refused(void **state)
{
	struct hv_swtpm other;
	struct hv_hsm *h = NULL;
	struct hv_err err = {0};
	char dir[300];

	(void)state;
	h = open_init(dir, sizeof(dir));
	hv_hsm_close(&h);
	hv_swtpm_start(&other);
	assert_int_equal(
	    open_tpm(other.tcti, dir, 0, 0, &h, &err), HV_E_CONFIG);
	assert_non_null(strstr(err.msg, "owner seed"));
	assert_null(h);
	hv_swtpm_destroy(&other);
}

/* Another process changed the metadata: the handle sees it at once. */
static void
test_metadata_changes(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_kek_info keks[4];
	struct hv_secret *dek = dek_fill(5), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX];
	size_t wl = 0, n = 0;
	uint32_t v;
	char dir[300];

	(void)state;
	h = open_init(dir, sizeof(dir));
	assert_int_equal(
	    hv_hsm_wrap(h, 0, (const uint8_t *)"m", 1, dek, w, &wl, NULL, &err),
	    HV_OK);
	assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
	assert_int_equal(
	    hv_test_sh(
	        "cd '%s' && sed 's/^kek 1 enabled$/kek 1 "
	        "disabled/' tpm-keys.meta > m.new && mv m.new tpm-keys.meta",
	        dir),
	    0);
	assert_int_equal(hv_hsm_kek_list(h, keks, 4, &n, &err), HV_OK);
	assert_int_equal(n, 2);
	assert_int_equal(keks[0].state, HV_KEK_DISABLED);
	assert_int_equal(keks[1].state, HV_KEK_ACTIVE);
	assert_int_equal(
	    hv_hsm_unwrap(h, 1, (const uint8_t *)"m", 1, w, wl, &back, &err),
	    HV_E_NOT_FOUND);
	assert_null(back);
	/* A corrupt file is a configuration error, not a crash. */
	assert_int_equal(hv_test_sh("cd '%s' && printf 'kek one on\\n' > "
	                            "m.new && mv m.new tpm-keys.meta",
	                     dir),
	    0);
	assert_int_equal(hv_hsm_kek_list(h, keks, 4, &n, &err), HV_E_CONFIG);
	assert_int_equal(
	    hv_hsm_wrap(h, 0, (const uint8_t *)"m", 1, dek, w, &wl, NULL, &err),
	    HV_E_CONFIG);
	hv_secret_free(&dek);
	hv_hsm_close(&h);
}

/* Rates through the public interface, single thread: HV_BENCH=1 only. */
static void
test_bench(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_secret *dek = dek_fill(1), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX], mac[HV_HMAC_LEN], rnd[32];
	const char *aad = "00000000-0000-0000-0000-000000000000|"
	                  "11111111-1111-1111-1111-111111111111|1";
	size_t wl = 0, alen = strlen(aad);
	uint64_t t0;
	double dt;
	char dir[300];
	int i, n = 2000;

	(void)state;
	if (getenv("HV_BENCH") == NULL) {
		hv_secret_free(&dek);
		skip();
		return;
	}
	h = open_init(dir, sizeof(dir));
	assert_int_equal(hv_hsm_wrap(h, 0, (const uint8_t *)aad, alen, dek, w,
	                     &wl, NULL, &err),
	    HV_OK);
	t0 = ms_now();
	for (i = 0; i < n; i++)
		assert_int_equal(hv_hsm_wrap(h, 0, (const uint8_t *)aad, alen,
		                     dek, w, &wl, NULL, &err),
		    HV_OK);
	dt = (double)(ms_now() - t0) / 1000.0;
	fprintf(
	    stderr, "bench wrap:   %8.0f/s  %6.0f us\n", n / dt, dt * 1e6 / n);
	t0 = ms_now();
	for (i = 0; i < n; i++) {
		assert_int_equal(hv_hsm_unwrap(h, 1, (const uint8_t *)aad, alen,
		                     w, wl, &back, &err),
		    HV_OK);
		hv_secret_free(&back);
	}
	dt = (double)(ms_now() - t0) / 1000.0;
	fprintf(
	    stderr, "bench unwrap: %8.0f/s  %6.0f us\n", n / dt, dt * 1e6 / n);
	t0 = ms_now();
	for (i = 0; i < n; i++)
		assert_int_equal(
		    hv_hsm_hmac(h, (const uint8_t *)aad, alen, mac, &err),
		    HV_OK);
	dt = (double)(ms_now() - t0) / 1000.0;
	fprintf(
	    stderr, "bench hmac:   %8.0f/s  %6.0f us\n", n / dt, dt * 1e6 / n);
	t0 = ms_now();
	for (i = 0; i < n; i++)
		assert_int_equal(
		    hv_hsm_random(h, rnd, sizeof(rnd), &err), HV_OK);
	dt = (double)(ms_now() - t0) / 1000.0;
	fprintf(stderr, "bench random: %8.0f/s  %6.0f us (32 bytes)\n", n / dt,
	    dt * 1e6 / n);
	/* Alternating two KEK versions: a Load (and primary) per switch. */
	{
		uint8_t w2[HV_WRAPPED_MAX];
		size_t wl2 = 0;
		uint32_t v;

		assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
		assert_int_equal(hv_hsm_wrap(h, 0, (const uint8_t *)aad, alen,
		                     dek, w2, &wl2, NULL, &err),
		    HV_OK);
		t0 = ms_now();
		for (i = 0; i < n / 2; i++) {
			assert_int_equal(
			    hv_hsm_unwrap(h, 1, (const uint8_t *)aad, alen, w,
			        wl, &back, &err),
			    HV_OK);
			hv_secret_free(&back);
			assert_int_equal(hv_hsm_wrap(h, 0, (const uint8_t *)aad,
			                     alen, dek, w2, &wl2, NULL, &err),
			    HV_OK);
		}
		dt = (double)(ms_now() - t0) / 1000.0;
		fprintf(stderr,
		    "bench rewrap: %8.0f/s  %6.0f us (unwrap v1 "
		    "+ wrap v2)\n",
		    (n / 2) / dt, dt * 1e6 / (n / 2));
	}
	hv_secret_free(&dek);
	hv_hsm_close(&h);
}

static int
group_setup(void **state)
{
	(void)state;
	hv_log_set_level(HV_LOG_ERROR);
	hv_swtpm_start(&tpm);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	hv_swtpm_destroy(&tpm);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_errors),
	    cmocka_unit_test(test_ensure_keys_and_files),
	    cmocka_unit_test(test_wrap_format_and_garbage),
	    cmocka_unit_test(test_hmac_lengths),
	    cmocka_unit_test(test_random_lengths),
	    cmocka_unit_test(test_slots_under_load),
	    cmocka_unit_test(test_stale_objects_flushed),
	    cmocka_unit_test(test_restart_recovers),
	    cmocka_unit_test(test_reset_needs_startup),
	    cmocka_unit_test(test_breaker_fails_fast),
	    cmocka_unit_test(test_hung_tpm_times_out),
	    cmocka_unit_test(test_other_tpm_refused),
	    cmocka_unit_test(test_metadata_changes),
	    cmocka_unit_test(test_bench),
	};

	/* TSS2 logs its own errors to stderr; the expected ones are noise. */
	setenv("TSS2_LOG", "all+none", 0);
	return cmocka_run_group_tests_name(
	    "tpm", tests, group_setup, group_teardown);
}
