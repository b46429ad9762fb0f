/*
 * hv-bench: the in-process half of bench/run (docs/performance.md).
 *
 *   hv-bench seed --config F --count N [--threads T] --ids OUT
 *       create N credentials through hv_vault_cred_create (real envelopes,
 *       real audit rows), T threads; append their ids to OUT, one a line.
 *   hv-bench keys --config F --count N --out FILE
 *       mint N API keys (credentials read/write/use/reveal, all
 *       credentials) through hv_vault_apikey_create; FILE gets the keys,
 *       one a line (a benchmark's throw-away keys, mode 0600).
 *   hv-bench auth --config F --key-file K [--seconds S]
 *       hv_vault_authenticate with the verified-key cache hit, and with it
 *       missed (entry evicted before each call: key store HMAC + one
 *       SELECT): calls per second and microseconds per call.
 *   hv-bench hsm --config F --op unwrap|wrap|hmac|random [--threads T]
 *            [--seconds S]
 *       the same key store operations as hv-p11rate, but through
 *       hsm/hsm.h (lock, session pool, retry wrapper, locked memory).
 *   hv-bench sql NAME...
 *       print the SQL text of registered statements, one a line, exactly
 *       as the server prepares them (for the pgbench ceilings).
 *   hv-bench open --config F [--threads T] [--seconds S] [--cache N]
 *       hv_envelope_unwrap_dek + hv_envelope_open_dek of one sealed
 *       200-byte secret, with a DEK cache of N entries (0: every open
 *       unwraps in the key store).
 *
 * Each measuring command prints one JSON line. The configuration is read
 * as hsmvault reads it (file, then HSMVAULT_* variables).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "cfg.h"
#include "dekcache.h"
#include "envelope.h"
#include "hsm.h"
#include "log.h"
#include "mem.h"
#include "uuid.h"
#include "vault.h"
#include "vault_int.h"

#define MAX_THREADS 64

struct args {
	const char *config, *ids, *out, *key_file, *op;
	long count, threads, seconds, cache;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
fail(const char *what, const struct hv_err *err)
{
	fprintf(stderr, "hv-bench: %s: %s\n", what,
	    err != NULL && err->msg[0] != '\0' ? err->msg : "failed");
	exit(1);
}

static long
num_arg(const char *s, long lo, long hi)
{
	char *end = NULL;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "hv-bench: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

static void
load_cfg(struct hv_cfg *cfg, const char *path)
{
	struct hv_err err = {0};
	int lvl;

	hv_cfg_init(cfg);
	if (path != NULL && hv_cfg_load_file(cfg, path, &err) != HV_OK)
		fail("configuration", &err);
	if (hv_cfg_load_env(cfg, &err) != HV_OK)
		fail("environment", &err);
	lvl = cfg->log_level ? hv_log_parse_level(cfg->log_level) : -1;
	hv_log_set_level(lvl >= 0 ? (enum hv_log_level)lvl : HV_LOG_WARN);
	if (cfg->softhsm2_conf != NULL && getenv("SOFTHSM2_CONF") == NULL)
		setenv("SOFTHSM2_CONF", cfg->softhsm2_conf, 1);
	if (hv_cfg_resolve_pin(cfg, &err) != HV_OK)
		fail("pin", &err);
}

/* ---------------------------------------------------------------- */
/* seed                                                              */

struct seed_ctx {
	struct hv_vault *v;
	struct hv_principal p;
	long count;
	atomic_long next;
	pthread_mutex_t mu;
	FILE *out;
	atomic_long failed;
};

/*
 * The names of the seed, "bench <i> tag-<t>", used to be "bench %07ld
 * tag-%03ld" with t = i % 100, and two of the hundred tags were slow to
 * search (9-10 ms at 10,000 credentials, 0.5-1 ms for the others), which
 * made the benchmark's list p99 at one connection:
 *  - ANALYZE's histogram of the names holds every hundredth name in sort
 *    order, which was i's order, so all its bounds but the first carried
 *    tag-099 and PostgreSQL, estimating that tag-099 matches every row,
 *    searched it with a sequential scan;
 *  - every padded number held the trigram "000" of tag-000, whose search
 *    then read that trigram's posting list of every row.
 * Real names have neither. Now t is i % 100 turned by a mix of the
 * bits of i / 100: every hundred consecutive credentials still hold each
 * tag once (a tag matches 1%), without a period; and no padding.
 */
static long
tag_of(long i)
{
	uint64_t x = (uint64_t)(i / 100);

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return (long)(((uint64_t)(i % 100) + x % 100) % 100);
}

/* Names carry "tag-NNN" (100 tags): a search for one matches 1%. */
static json_t *
seed_body(long i)
{
	char name[96], notes[160], key[64];
	static const char abc[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	uint8_t rnd[24];
	size_t k;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, (int)(i & 0xff), sizeof(rnd));
	(void)snprintf(name, sizeof(name), "bench %ld tag-%03ld", i, tag_of(i));
	(void)snprintf(notes, sizeof(notes),
	    "benchmark credential %ld of "
	    "team %ld; rotated quarterly",
	    i, i % 37);
	memcpy(key, "sk_test_", 8);
	for (k = 0; k < sizeof(rnd); k++)
		key[8 + k] = abc[rnd[k] % (sizeof(abc) - 1)];
	key[8 + sizeof(rnd)] = '\0';
	return json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "service", "stripe",
	    "name", name, "auth_type", "api_key", "notes", notes, "secret",
	    "key", key);
}

static void *
seed_worker(void *arg)
{
	struct seed_ctx *s = arg;
	struct hv_reqctx ctx = {"bench-seed", "local"};

	for (;;) {
		long i = atomic_fetch_add(&s->next, 1);
		struct hv_err err = {0};
		json_t *body, *out = NULL;

		if (i >= s->count)
			break;
		body = seed_body(i);
		if (body == NULL ||
		    hv_vault_cred_create(s->v, &s->p, &ctx, body, &out, &err) !=
		        HV_OK) {
			if (atomic_fetch_add(&s->failed, 1) < 5)
				fprintf(
				    stderr, "hv-bench: create: %s\n", err.msg);
			json_decref(body);
			continue;
		}
		pthread_mutex_lock(&s->mu);
		fprintf(s->out, "%s\n",
		    json_string_value(json_object_get(out, "id")));
		pthread_mutex_unlock(&s->mu);
		json_decref(out);
		json_decref(body);
	}
	return NULL;
}

static void
cmd_seed(const struct args *a)
{
	struct hv_cfg cfg;
	struct hv_err err = {0};
	struct seed_ctx s;
	pthread_t th[MAX_THREADS];
	double t0, t1;
	long i;

	if (a->ids == NULL || a->count <= 0) {
		fprintf(stderr, "hv-bench seed: --count and --ids needed\n");
		exit(2);
	}
	load_cfg(&cfg, a->config);
	if (cfg.db_pool < (unsigned int)a->threads)
		cfg.db_pool = (unsigned int)a->threads;
	memset(&s, 0, sizeof(s));
	if (hv_vault_open(&cfg, false, &s.v, &err) != HV_OK)
		fail("open", &err);
	if (hv_principal_cli(s.v, NULL, &s.p, &err) != HV_OK)
		fail("principal", &err);
	s.count = a->count;
	atomic_init(&s.next, 0);
	atomic_init(&s.failed, 0);
	pthread_mutex_init(&s.mu, NULL);
	s.out = fopen(a->ids, "a");
	if (s.out == NULL) {
		fprintf(stderr, "hv-bench: cannot write %s\n", a->ids);
		exit(1);
	}
	t0 = now_s();
	for (i = 0; i < a->threads; i++)
		if (pthread_create(&th[i], NULL, seed_worker, &s) != 0)
			fail("pthread_create", NULL);
	for (i = 0; i < a->threads; i++)
		pthread_join(th[i], NULL);
	t1 = now_s();
	fclose(s.out);
	printf("{\"created\":%ld,\"failed\":%ld,\"seconds\":%.3f,"
	       "\"rate\":%.0f}\n",
	    s.count - atomic_load(&s.failed), atomic_load(&s.failed), t1 - t0,
	    (double)(s.count - atomic_load(&s.failed)) / (t1 - t0));
	hv_principal_release(&s.p);
	hv_vault_close(&s.v);
	hv_cfg_release(&cfg);
	if (atomic_load(&s.failed) != 0)
		exit(1);
}

/* ---------------------------------------------------------------- */
/* keys                                                              */

static void
cmd_keys(const struct args *a)
{
	struct hv_cfg cfg;
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	struct hv_principal p;
	struct hv_reqctx ctx = {"bench-keys", "local"};
	FILE *f;
	long i;
	int fd;

	if (a->out == NULL || a->count <= 0) {
		fprintf(stderr, "hv-bench keys: --count and --out needed\n");
		exit(2);
	}
	load_cfg(&cfg, a->config);
	if (hv_vault_open(&cfg, false, &v, &err) != HV_OK)
		fail("open", &err);
	if (hv_principal_cli(v, NULL, &p, &err) != HV_OK)
		fail("principal", &err);
	fd = open(a->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (f == NULL) {
		fprintf(stderr, "hv-bench: cannot write %s\n", a->out);
		exit(1);
	}
	for (i = 0; i < a->count; i++) {
		char name[64];
		json_t *body, *out = NULL;

		(void)snprintf(name, sizeof(name), "bench key %ld", i);
		body = json_pack("{s:s,s:[s,s,s,s],s:s}", "name", name,
		    "scopes", "credentials:read", "credentials:write",
		    "credentials:use", "credentials:reveal", "credentials",
		    "all");
		if (body == NULL ||
		    hv_vault_apikey_create(v, &p, &ctx, body, &out, &err) !=
		        HV_OK)
			fail("apikey create", &err);
		fprintf(
		    f, "%s\n", json_string_value(json_object_get(out, "key")));
		json_decref(out);
		json_decref(body);
	}
	fclose(f);
	hv_principal_release(&p);
	hv_vault_close(&v);
	hv_cfg_release(&cfg);
}

/* ---------------------------------------------------------------- */
/* auth                                                              */

static char *
read_line(const char *path)
{
	char buf[512];
	FILE *f = fopen(path, "r");

	if (f == NULL || fgets(buf, sizeof(buf), f) == NULL) {
		fprintf(stderr, "hv-bench: cannot read %s\n", path);
		exit(1);
	}
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return strdup(buf);
}

static void
cmd_auth(const struct args *a)
{
	struct hv_cfg cfg;
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	struct hv_principal p;
	struct hv_reqctx ctx = {"bench-auth", "local"};
	char header[600], key_id[HV_UUID_STR];
	char *key;
	double t0, t, hit_s, miss_s;
	long nhit = 0, nmiss = 0;

	if (a->key_file == NULL) {
		fprintf(stderr, "hv-bench auth: --key-file needed\n");
		exit(2);
	}
	key = read_line(a->key_file);
	(void)snprintf(header, sizeof(header), "Bearer %s", key);
	hv_mem_zero(key, strlen(key));
	free(key);
	load_cfg(&cfg, a->config);
	if (hv_vault_open(&cfg, false, &v, &err) != HV_OK)
		fail("open", &err);
	/* first call: fills the cache (and starts its thread) */
	if (hv_vault_authenticate(v, header, &ctx, &p, &err) != HV_OK)
		fail("authenticate", &err);
	(void)snprintf(key_id, sizeof(key_id), "%s", p.key_id);
	hv_principal_release(&p);
	/* let the revocation listener connect: entries are trusted then */
	usleep(300000);
	t0 = now_s();
	do {
		if (hv_vault_authenticate(v, header, &ctx, &p, &err) != HV_OK)
			fail("authenticate", &err);
		hv_principal_release(&p);
		nhit++;
		t = now_s();
	} while (t - t0 < (double)a->seconds);
	hit_s = t - t0;
	t0 = now_s();
	do {
		hv_vault_cache_evict(v, key_id);
		if (hv_vault_authenticate(v, header, &ctx, &p, &err) != HV_OK)
			fail("authenticate", &err);
		hv_principal_release(&p);
		nmiss++;
		t = now_s();
	} while (t - t0 < (double)a->seconds);
	miss_s = t - t0;
	printf("{\"hit_rate\":%.0f,\"hit_us\":%.2f,\"miss_rate\":%.0f,"
	       "\"miss_us\":%.2f}\n",
	    (double)nhit / hit_s, hit_s * 1e6 / (double)nhit,
	    (double)nmiss / miss_s, miss_s * 1e6 / (double)nmiss);
	hv_mem_zero(header, sizeof(header));
	hv_vault_close(&v);
	hv_cfg_release(&cfg);
}

/* ---------------------------------------------------------------- */
/* hsm and open: timed loops over threads                            */

enum hop { H_UNWRAP, H_WRAP, H_HMAC, H_RANDOM, H_OPEN };

struct loop {
	struct hv_hsm *hsm;
	struct hv_dekcache *cache;
	enum hop op;
	const struct hv_envelope *env;
	uint8_t wrapped[HV_WRAPPED_MAX];
	size_t wrapped_len;
	uint32_t kek;
	atomic_bool stop;
	atomic_long ops;
	atomic_long failed;
	char first_err[sizeof(((struct hv_err *)0)->msg)];
};

#define WS_ID   "6f1d2c3b-4a59-4e68-8f77-0a1b2c3d4e5f"
#define CRED_ID "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f60"

static enum hv_rc
loop_once(struct loop *l, struct hv_err *err)
{
	uint8_t aad[HV_ENVELOPE_AAD_MAX], out[HV_WRAPPED_MAX], msg[320];
	size_t aad_len = 0, out_len = 0;
	struct hv_secret *dek = NULL, *pt = NULL;
	struct hv_dekcache_key k;
	uint64_t gen;
	bool hit = false;
	enum hv_rc rc;

	switch (l->op) {
	case H_UNWRAP:
		rc = hv_envelope_unwrap_dek(l->hsm, WS_ID, CRED_ID, 1,
		    l->wrapped, l->wrapped_len, l->kek, &dek, err);
		hv_secret_free(&dek);
		return rc;
	case H_WRAP:
		dek = hv_secret_new(HV_DEK_LEN);
		if (dek == NULL)
			return hv_err_set(err, HV_E_NOMEM, "out of memory");
		rc = hv_envelope_aad(
		    HV_AAD_DEK, WS_ID, CRED_ID, 1, aad, &aad_len, err);
		if (rc == HV_OK)
			rc = hv_hsm_wrap(l->hsm, 0, aad, aad_len, dek, out,
			    &out_len, NULL, err);
		hv_secret_free(&dek);
		return rc;
	case H_HMAC:
		memset(msg, 0x3c, sizeof(msg));
		return hv_hsm_hmac(l->hsm, msg, sizeof(msg), out, err);
	case H_RANDOM:
		return hv_hsm_random(l->hsm, out, HV_DEK_LEN, err);
	case H_OPEN:
		gen = hv_dekcache_gen(l->cache);
		if (l->cache != NULL) {
			rc = hv_dekcache_key(WS_ID, CRED_ID, 1, l->kek,
			    l->wrapped, l->wrapped_len, &k, err);
			if (rc != HV_OK)
				return rc;
			hit = hv_dekcache_get(l->cache, &k, &dek);
		}
		if (!hit) {
			rc = hv_envelope_unwrap_dek(l->hsm, WS_ID, CRED_ID, 1,
			    l->wrapped, l->wrapped_len, l->kek, &dek, err);
			if (rc != HV_OK)
				return rc;
		}
		rc = hv_envelope_open_dek(
		    dek, WS_ID, CRED_ID, 1, l->env, &pt, err);
		if (rc == HV_OK && !hit && l->cache != NULL)
			hv_dekcache_put(l->cache, &k, dek, gen);
		hv_secret_free(&dek);
		hv_secret_free(&pt);
		return rc;
	}
	return HV_E_INTERNAL;
}

static void *
loop_worker(void *arg)
{
	struct loop *l = arg;

	while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
		struct hv_err err = {0};

		if (loop_once(l, &err) != HV_OK) {
			if (atomic_fetch_add(&l->failed, 1) == 0)
				(void)snprintf(l->first_err,
				    sizeof(l->first_err), "%s", err.msg);
			continue;
		}
		atomic_fetch_add_explicit(&l->ops, 1, memory_order_relaxed);
	}
	return NULL;
}

static void
cmd_loop(const struct args *a, bool open_mode)
{
	static const char *const names[] = {"unwrap", "wrap", "hmac", "random"};
	struct hv_cfg cfg;
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	struct hv_envelope env;
	struct hv_secret *pt = NULL;
	struct loop l;
	pthread_t th[MAX_THREADS];
	double t0, t1;
	long i;

	memset(&l, 0, sizeof(l));
	hv_envelope_init(&env);
	if (open_mode) {
		l.op = H_OPEN;
	} else {
		for (i = 0; i < 4; i++)
			if (a->op != NULL && strcmp(a->op, names[i]) == 0)
				break;
		if (i == 4) {
			fprintf(stderr,
			    "hv-bench hsm: --op unwrap|wrap|hmac|"
			    "random\n");
			exit(2);
		}
		l.op = (enum hop)i;
	}
	load_cfg(&cfg, a->config);
	if (hv_vault_open(&cfg, false, &v, &err) != HV_OK)
		fail("open", &err);
	l.hsm = hv_vault_hsm(v);
	/* one sealed 200-byte secret */
	pt = hv_secret_new(200);
	if (pt == NULL)
		fail("memory", NULL);
	memset(pt->buf, 'x', pt->len);
	if (hv_envelope_seal(l.hsm, WS_ID, CRED_ID, 1, pt, &env, &err) != HV_OK)
		fail("seal", &err);
	hv_secret_free(&pt);
	memcpy(l.wrapped, env.wrapped, env.wrapped_len);
	l.wrapped_len = env.wrapped_len;
	l.kek = env.kek_version;
	l.env = &env;
	if (open_mode &&
	    hv_dekcache_new((unsigned int)a->cache, 60000, 0, &l.cache, &err) !=
	        HV_OK)
		fail("dek cache", &err);
	atomic_init(&l.stop, false);
	atomic_init(&l.ops, 0);
	atomic_init(&l.failed, 0);
	t0 = now_s();
	for (i = 0; i < a->threads; i++)
		if (pthread_create(&th[i], NULL, loop_worker, &l) != 0)
			fail("pthread_create", NULL);
	usleep((useconds_t)(a->seconds * 1000000));
	atomic_store(&l.stop, true);
	for (i = 0; i < a->threads; i++)
		pthread_join(th[i], NULL);
	t1 = now_s();
	if (atomic_load(&l.failed) != 0) {
		fprintf(stderr, "hv-bench: %ld failures, first: %s\n",
		    atomic_load(&l.failed), l.first_err);
		exit(1);
	}
	printf(
	    "{\"op\":\"%s\",\"threads\":%ld,\"cache\":%ld,\"ops\":%ld,"
	    "\"seconds\":%.3f,\"rate\":%.0f,\"us_per_op_per_thread\":%.2f}\n",
	    open_mode ? "open" : names[l.op], a->threads,
	    open_mode ? a->cache : 0L, atomic_load(&l.ops), t1 - t0,
	    (double)atomic_load(&l.ops) / (t1 - t0),
	    (t1 - t0) * 1e6 * (double)a->threads /
	        (double)(atomic_load(&l.ops) > 0 ? atomic_load(&l.ops) : 1));
	hv_dekcache_free(&l.cache);
	hv_envelope_release(&env);
	hv_vault_close(&v);
	hv_cfg_release(&cfg);
}

/* ---------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: hv-bench seed --config F --count N [--threads T] --ids "
	    "OUT\n"
	    "       hv-bench keys --config F --count N --out FILE\n"
	    "       hv-bench auth --config F --key-file K [--seconds S]\n"
	    "       hv-bench hsm --config F --op unwrap|wrap|hmac|random "
	    "[--threads T] [--seconds S]\n"
	    "       hv-bench sql NAME...\n"
	    "       hv-bench open --config F [--threads T] [--seconds S] "
	    "[--cache N]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct args a = {.threads = 1, .seconds = 3, .cache = 0};
	const char *verb;
	int i;

	if (argc < 2)
		usage();
	verb = argv[1];
	if (strcmp(verb, "sql") == 0) {
		hv_vault_register_statements();
		for (i = 2; i < argc; i++) {
			const char *sql = hv_store_statement_sql(argv[i]);

			if (sql == NULL) {
				fprintf(stderr, "hv-bench: no statement '%s'\n",
				    argv[i]);
				return 1;
			}
			printf("%s\n", sql);
		}
		return 0;
	}
	for (i = 2; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];

		if (strcmp(k, "--config") == 0)
			a.config = v;
		else if (strcmp(k, "--ids") == 0)
			a.ids = v;
		else if (strcmp(k, "--out") == 0)
			a.out = v;
		else if (strcmp(k, "--key-file") == 0)
			a.key_file = v;
		else if (strcmp(k, "--op") == 0)
			a.op = v;
		else if (strcmp(k, "--count") == 0)
			a.count = num_arg(v, 1, 10000000);
		else if (strcmp(k, "--threads") == 0)
			a.threads = num_arg(v, 1, MAX_THREADS);
		else if (strcmp(k, "--seconds") == 0)
			a.seconds = num_arg(v, 1, 3600);
		else if (strcmp(k, "--cache") == 0)
			a.cache = num_arg(v, 0, HV_DEKCACHE_MAX_ENTRIES);
		else
			usage();
	}
	if (i != argc)
		usage();
	hv_mem_json_init();
	if (strcmp(verb, "seed") == 0)
		cmd_seed(&a);
	else if (strcmp(verb, "keys") == 0)
		cmd_keys(&a);
	else if (strcmp(verb, "auth") == 0)
		cmd_auth(&a);
	else if (strcmp(verb, "hsm") == 0)
		cmd_loop(&a, false);
	else if (strcmp(verb, "open") == 0)
		cmd_loop(&a, true);
	else
		usage();
	return 0;
}
