/*
 * hv-p11rate: raw PKCS#11 rates of the operations hsmvault asks of its key
 * store, without any hsmvault code in the way: the key store ceiling of
 * the benchmark (docs/performance.md).
 *
 * The module is dlopen()ed and initialized with CKF_OS_LOCKING_OK (never
 * C_Initialize(NULL): SoftHSM then runs without locks). Each thread has
 * its own session; by default each session uses a session copy of the key
 * (C_CopyObject, CKA_TOKEN false), as hsm/p11.c does; --token-key uses the
 * token object itself. Operations, mirroring hsm/p11.c:
 *   unwrap  C_DecryptInit + C_Decrypt, AES-256-GCM, 52-byte AAD, of a
 *           48-byte wrapped DEK (32 + tag)
 *   wrap    C_GenerateRandom (12-byte IV) + C_EncryptInit + C_Encrypt
 *   hmac    C_SignInit + C_Sign, CKM_SHA256_HMAC, 320-byte message (the
 *           size of an audit row's canonical form)
 *   random  C_GenerateRandom, 32 bytes (a new DEK)
 *
 * Usage: hv-p11rate --module SO --token LABEL --pin-file F --op OP
 *            [--threads N] [--procs N] [--seconds S] [--prefix P]
 *            [--token-key]
 * Prints one JSON line: {"op", "threads", "procs", "ops", "seconds",
 * "rate", "copies"}.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define DEK_LEN     32
#define IV_LEN      12
#define TAG_LEN     16
#define AAD_LEN     52
#define MSG_LEN     320
#define MAX_THREADS 64

enum op { OP_UNWRAP, OP_WRAP, OP_HMAC, OP_RANDOM };

static CK_FUNCTION_LIST *fn;
static CK_SLOT_ID slot;
static enum op the_op;
static bool token_key;
static char key_label[128];
static atomic_bool stop_flag;

struct worker {
	pthread_t th;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	unsigned char wrapped[DEK_LEN + TAG_LEN];
	unsigned char iv[IV_LEN];
	unsigned long ops;
	CK_RV fail;
	const char *fail_at;
};

static unsigned char aad[AAD_LEN];
static unsigned char msg[MSG_LEN];

static void
die(const char *what, CK_RV rv)
{
	fprintf(
	    stderr, "hv-p11rate: %s failed: 0x%lx\n", what, (unsigned long)rv);
	exit(1);
}

static void
load_module(const char *path)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	CK_C_INITIALIZE_ARGS ia;
	void *dl;
	CK_RV rv;

	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		fprintf(stderr, "hv-p11rate: cannot load %s: %s\n", path,
		    dlerror());
		exit(1);
	}
	*(void **)&get = dlsym(dl, "C_GetFunctionList");
	if (get == NULL || get(&fn) != CKR_OK)
		die("C_GetFunctionList", CKR_GENERAL_ERROR);
	memset(&ia, 0, sizeof(ia));
	ia.flags = CKF_OS_LOCKING_OK;
	rv = fn->C_Initialize(&ia);
	if (rv != CKR_OK)
		die("C_Initialize", rv);
}

static bool
find_slot(const char *label)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO ti;
	size_t ll = strlen(label);
	CK_RV rv;

	rv = fn->C_GetSlotList(CK_TRUE, slots, &n);
	if (rv != CKR_OK)
		die("C_GetSlotList", rv);
	for (i = 0; i < n; i++) {
		size_t k;

		if (fn->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (ll > sizeof(ti.label) || memcmp(ti.label, label, ll) != 0)
			continue;
		for (k = ll; k < sizeof(ti.label) && ti.label[k] == ' '; k++)
			;
		if (k == sizeof(ti.label)) {
			slot = slots[i];
			return true;
		}
	}
	return false;
}

static CK_OBJECT_HANDLE
find_key(CK_SESSION_HANDLE s, const char *label)
{
	CK_ATTRIBUTE t[1] = {{CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h = 0;
	CK_ULONG n = 0;
	CK_RV rv;

	rv = fn->C_FindObjectsInit(s, t, 1);
	if (rv != CKR_OK)
		die("C_FindObjectsInit", rv);
	rv = fn->C_FindObjects(s, &h, 1, &n);
	(void)fn->C_FindObjectsFinal(s);
	if (rv != CKR_OK || n != 1) {
		fprintf(stderr,
		    "hv-p11rate: key '%s' not found (run "
		    "hsmvault init first)\n",
		    label);
		exit(1);
	}
	return h;
}

static CK_RV
gcm(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, unsigned char *iv, bool enc,
    unsigned char *in, CK_ULONG in_len, unsigned char *out, CK_ULONG *out_len)
{
	CK_GCM_PARAMS p;
	CK_MECHANISM m = {CKM_AES_GCM, &p, sizeof(p)};
	CK_RV rv;

	memset(&p, 0, sizeof(p));
	p.pIv = iv;
	p.ulIvLen = IV_LEN;
	p.ulIvBits = IV_LEN * 8;
	p.pAAD = aad;
	p.ulAADLen = AAD_LEN;
	p.ulTagBits = TAG_LEN * 8;
	if (enc) {
		rv = fn->C_EncryptInit(s, &m, key);
		if (rv == CKR_OK)
			rv = fn->C_Encrypt(s, in, in_len, out, out_len);
	} else {
		rv = fn->C_DecryptInit(s, &m, key);
		if (rv == CKR_OK)
			rv = fn->C_Decrypt(s, in, in_len, out, out_len);
	}
	return rv;
}

static CK_RV
one_op(struct worker *w)
{
	unsigned char out[64], dek[DEK_LEN];
	CK_MECHANISM hm = {CKM_SHA256_HMAC, NULL, 0};
	CK_ULONG n = sizeof(out);
	CK_RV rv;

	switch (the_op) {
	case OP_UNWRAP:
		rv = gcm(w->s, w->key, w->iv, false, w->wrapped,
		    sizeof(w->wrapped), out, &n);
		if (rv == CKR_OK && n != DEK_LEN)
			rv = CKR_GENERAL_ERROR;
		return rv;
	case OP_WRAP:
		rv = fn->C_GenerateRandom(w->s, w->iv, IV_LEN);
		if (rv == CKR_OK) {
			memset(dek, 0x5a, sizeof(dek));
			rv = gcm(
			    w->s, w->key, w->iv, true, dek, DEK_LEN, out, &n);
		}
		return rv;
	case OP_HMAC:
		rv = fn->C_SignInit(w->s, &hm, w->key);
		if (rv == CKR_OK)
			rv = fn->C_Sign(w->s, msg, MSG_LEN, out, &n);
		return rv;
	case OP_RANDOM:
		return fn->C_GenerateRandom(w->s, out, DEK_LEN);
	}
	return CKR_GENERAL_ERROR;
}

static void *
work(void *arg)
{
	struct worker *w = arg;
	CK_RV rv;

	while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
		rv = one_op(w);
		if (rv != CKR_OK) {
			w->fail = rv;
			w->fail_at = "operation";
			break;
		}
		w->ops++;
	}
	return NULL;
}

/* Prepare worker w: session, key handle (copy), the blob to unwrap. */
static void
prepare(struct worker *w, CK_OBJECT_HANDLE token_obj)
{
	CK_BBOOL f = CK_FALSE;
	CK_ATTRIBUTE t[1] = {{CKA_TOKEN, &f, sizeof(f)}};
	unsigned char dek[DEK_LEN];
	CK_ULONG n = sizeof(w->wrapped);
	CK_RV rv;

	rv = fn->C_OpenSession(
	    slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &w->s);
	if (rv != CKR_OK)
		die("C_OpenSession", rv);
	w->key = token_obj;
	if (!token_key) {
		rv = fn->C_CopyObject(w->s, token_obj, t, 1, &w->key);
		if (rv != CKR_OK)
			die("C_CopyObject", rv);
	}
	if (the_op == OP_UNWRAP) {
		rv = fn->C_GenerateRandom(w->s, w->iv, IV_LEN);
		if (rv == CKR_OK)
			rv = fn->C_GenerateRandom(w->s, dek, DEK_LEN);
		if (rv == CKR_OK)
			rv = gcm(w->s, w->key, w->iv, true, dek, DEK_LEN,
			    w->wrapped, &n);
		if (rv != CKR_OK || n != sizeof(w->wrapped))
			die("wrap of the test DEK", rv);
	}
}

/* One process: login, threads, run; returns the count of operations. */
static unsigned long
run_process(const char *module, const char *token, const char *pin, int threads,
    double seconds)
{
	struct worker *ws;
	CK_SESSION_HANDLE ls;
	CK_OBJECT_HANDLE obj;
	CK_C_INITIALIZE_ARGS ia;
	unsigned long total = 0;
	int i, tries;
	CK_RV rv;

	/*
	 * SoftHSM2 reads its token directory at C_Initialize; a token file
	 * that another process is rewriting at that moment (a login in the
	 * server) is skipped. Look again a few times before giving up.
	 */
	load_module(module);
	for (tries = 0; !find_slot(token); tries++) {
		if (tries == 20) {
			fprintf(stderr, "hv-p11rate: no token labelled '%s'\n",
			    token);
			exit(1);
		}
		(void)fn->C_Finalize(NULL);
		usleep(50000);
		memset(&ia, 0, sizeof(ia));
		ia.flags = CKF_OS_LOCKING_OK;
		rv = fn->C_Initialize(&ia);
		if (rv != CKR_OK)
			die("C_Initialize", rv);
	}
	rv = fn->C_OpenSession(
	    slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &ls);
	if (rv != CKR_OK)
		die("C_OpenSession", rv);
	/* concurrent logins from several processes sometimes fail at once */
	for (tries = 0;; tries++) {
		rv = fn->C_Login(
		    ls, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
		if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
			break;
		if (rv == CKR_PIN_INCORRECT || tries == 20)
			die("C_Login", rv);
		usleep(20000);
	}
	obj = find_key(ls, key_label);
	ws = calloc((size_t)threads, sizeof(*ws));
	if (ws == NULL)
		die("calloc", CKR_HOST_MEMORY);
	for (i = 0; i < threads; i++)
		prepare(&ws[i], obj);
	/* warm-up: one operation each, outside the clock */
	for (i = 0; i < threads; i++)
		if (one_op(&ws[i]) != CKR_OK)
			die("first operation", CKR_GENERAL_ERROR);
	for (i = 0; i < threads; i++)
		if (pthread_create(&ws[i].th, NULL, work, &ws[i]) != 0)
			die("pthread_create", CKR_HOST_MEMORY);
	usleep((useconds_t)(seconds * 1e6));
	atomic_store(&stop_flag, true);
	for (i = 0; i < threads; i++) {
		pthread_join(ws[i].th, NULL);
		if (ws[i].fail != CKR_OK)
			die(ws[i].fail_at, ws[i].fail);
		total += ws[i].ops;
	}
	for (i = 0; i < threads; i++)
		(void)fn->C_CloseSession(ws[i].s);
	(void)fn->C_Logout(ls);
	(void)fn->C_CloseSession(ls);
	(void)fn->C_Finalize(NULL);
	free(ws);
	return total;
}

static char *
read_pin(const char *path)
{
	static char buf[256];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "hv-p11rate: cannot read %s\n", path);
		exit(1);
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf;
}

static long
num_arg(const char *s, long lo, long hi)
{
	char *end = NULL;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "hv-p11rate: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

int
main(int argc, char **argv)
{
	const char *module = NULL, *token = NULL, *pin_file = NULL;
	const char *op = NULL, *prefix = "hsmvault";
	long threads = 1, procs = 1, seconds = 3, p;
	unsigned long total = 0;
	int i, fds[MAX_THREADS][2];
	pid_t pids[MAX_THREADS];
	char *pin;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--token-key") == 0) {
			token_key = true;
			continue;
		}
		if (i + 1 >= argc)
			goto usage;
		if (strcmp(a, "--module") == 0)
			module = argv[++i];
		else if (strcmp(a, "--token") == 0)
			token = argv[++i];
		else if (strcmp(a, "--pin-file") == 0)
			pin_file = argv[++i];
		else if (strcmp(a, "--op") == 0)
			op = argv[++i];
		else if (strcmp(a, "--prefix") == 0)
			prefix = argv[++i];
		else if (strcmp(a, "--threads") == 0)
			threads = num_arg(argv[++i], 1, MAX_THREADS);
		else if (strcmp(a, "--procs") == 0)
			procs = num_arg(argv[++i], 1, MAX_THREADS);
		else if (strcmp(a, "--seconds") == 0)
			seconds = num_arg(argv[++i], 1, 600);
		else
			goto usage;
	}
	if (module == NULL || token == NULL || pin_file == NULL || op == NULL)
		goto usage;
	if (strcmp(op, "unwrap") == 0)
		the_op = OP_UNWRAP;
	else if (strcmp(op, "wrap") == 0)
		the_op = OP_WRAP;
	else if (strcmp(op, "hmac") == 0)
		the_op = OP_HMAC;
	else if (strcmp(op, "random") == 0)
		the_op = OP_RANDOM;
	else
		goto usage;
	(void)snprintf(key_label, sizeof(key_label), "%s-%s", prefix,
	    the_op == OP_HMAC ? "hmac" : "kek-1");
	memset(aad, 0xa5, sizeof(aad));
	memset(msg, 0x3c, sizeof(msg));
	pin = read_pin(pin_file);

	for (p = 0; p < procs; p++) {
		if (pipe(fds[p]) != 0)
			die("pipe", CKR_GENERAL_ERROR);
		pids[p] = fork();
		if (pids[p] < 0)
			die("fork", CKR_GENERAL_ERROR);
		if (pids[p] == 0) {
			unsigned long n;

			close(fds[p][0]);
			n = run_process(
			    module, token, pin, (int)threads, (double)seconds);
			if (write(fds[p][1], &n, sizeof(n)) != sizeof(n))
				_exit(1);
			_exit(0);
		}
		close(fds[p][1]);
	}
	for (p = 0; p < procs; p++) {
		unsigned long n = 0;
		int st = 0;

		if (read(fds[p][0], &n, sizeof(n)) != sizeof(n))
			n = 0;
		close(fds[p][0]);
		(void)waitpid(pids[p], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "hv-p11rate: worker process failed\n");
			return 1;
		}
		total += n;
	}
	printf("{\"op\":\"%s\",\"threads\":%ld,\"procs\":%ld,\"ops\":%lu,"
	       "\"seconds\":%ld,\"rate\":%.0f,\"copies\":%s}\n",
	    op, threads, procs, total, seconds, (double)total / (double)seconds,
	    token_key ? "false" : "true");
	return 0;
usage:
	fprintf(stderr,
	    "usage: hv-p11rate --module SO --token LABEL "
	    "--pin-file F --op unwrap|wrap|hmac|random [--threads N] "
	    "[--procs N] [--seconds S] [--prefix P] [--token-key]\n");
	return 2;
}
