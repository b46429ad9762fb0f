/*
 * Unit tests of dekcache: keys, hits and copies, expiry by age, max uses,
 * least-recently-used eviction, forget and its generation, the disabled
 * (size 0) cache, allocation failures, and consistency under threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dekcache.h"
#include "mem.h"

#define WS    "6f1d2c3b-4a59-4e68-8f77-0a1b2c3d4e5f"
#define WS2   "6f1d2c3b-4a59-4e68-8f77-0a1b2c3d4e60"
#define CRED  "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f60"
#define CRED2 "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f61"

static const uint8_t blob[61] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

static void
sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void
mkkey(const char *cred, uint32_t ver, struct hv_dekcache_key *k)
{
	struct hv_err err = {0};

	assert_int_equal(
	    hv_dekcache_key(WS, cred, ver, 1, blob, sizeof(blob), k, &err),
	    HV_OK);
}

/* A DEK whose bytes say which key it belongs to. */
static struct hv_secret *
mkdek(uint8_t tag)
{
	struct hv_secret *d = hv_secret_new(HV_DEKCACHE_DEK_LEN);
	size_t i;

	assert_non_null(d);
	for (i = 0; i < d->len; i++)
		d->buf[i] = (uint8_t)(tag + i);
	return d;
}

static void
assert_dek(const struct hv_secret *d, uint8_t tag)
{
	size_t i;

	assert_int_equal(d->len, HV_DEKCACHE_DEK_LEN);
	for (i = 0; i < d->len; i++)
		assert_int_equal(d->buf[i], (uint8_t)(tag + i));
}

static struct hv_dekcache *
mkcache(unsigned int n, unsigned int ttl, unsigned int uses)
{
	struct hv_dekcache *c = NULL;
	struct hv_err err = {0};

	assert_int_equal(hv_dekcache_new(n, ttl, uses, &c, &err), HV_OK);
	assert_non_null(c);
	return c;
}

static void
test_key(void **state)
{
	struct hv_dekcache_key a, b;
	struct hv_err err = {0};
	uint8_t other[61];

	(void)state;
	mkkey(CRED, 1, &a);
	mkkey(CRED, 1, &b);
	assert_memory_equal(a.digest, b.digest, sizeof(a.digest));
	/* every input changes the key */
	mkkey(CRED, 2, &b);
	assert_memory_not_equal(a.digest, b.digest, sizeof(a.digest));
	mkkey(CRED2, 1, &b);
	assert_memory_not_equal(a.digest, b.digest, sizeof(a.digest));
	assert_memory_not_equal(a.cred, b.cred, sizeof(a.cred));
	assert_int_equal(
	    hv_dekcache_key(WS2, CRED, 1, 1, blob, sizeof(blob), &b, &err),
	    HV_OK);
	assert_memory_not_equal(a.digest, b.digest, sizeof(a.digest));
	assert_int_equal(
	    hv_dekcache_key(WS, CRED, 1, 2, blob, sizeof(blob), &b, &err),
	    HV_OK);
	assert_memory_not_equal(a.digest, b.digest, sizeof(a.digest));
	/* a re-wrapped DEK (other bytes) is another key */
	memcpy(other, blob, sizeof(other));
	other[60] ^= 1;
	assert_int_equal(
	    hv_dekcache_key(WS, CRED, 1, 1, other, sizeof(other), &b, &err),
	    HV_OK);
	assert_memory_not_equal(a.digest, b.digest, sizeof(a.digest));
	assert_int_equal(
	    hv_dekcache_key(WS, CRED, 1, 1, blob, 60, &b, &err), HV_OK);
	assert_memory_not_equal(a.digest, b.digest, sizeof(a.digest));
	/* case of the uuid text does not matter */
	assert_int_equal(hv_dekcache_key("6F1D2C3B-4A59-4E68-8F77-0A1B2C3D4E5F",
	                     CRED, 1, 1, blob, sizeof(blob), &b, &err),
	    HV_OK);
	assert_memory_equal(a.digest, b.digest, sizeof(a.digest));
	/* failures */
	assert_int_equal(
	    hv_dekcache_key("nope", CRED, 1, 1, blob, sizeof(blob), &b, &err),
	    HV_E_INVALID);
	assert_int_equal(
	    hv_dekcache_key(WS, "x", 1, 1, blob, sizeof(blob), &b, &err),
	    HV_E_INVALID);
	assert_int_equal(
	    hv_dekcache_key(WS, CRED, 1, 1, blob, 257, &b, &err), HV_E_INVALID);
}

static void
test_hit_is_a_copy(void **state)
{
	struct hv_dekcache *c = mkcache(8, 60000, 0);
	struct hv_dekcache_key k;
	struct hv_secret *d = mkdek(7), *got = NULL, *got2 = NULL;
	struct hv_dekcache_stats st;

	(void)state;
	mkkey(CRED, 1, &k);
	assert_false(hv_dekcache_get(c, &k, &got));
	assert_null(got);
	hv_dekcache_put(c, &k, d, hv_dekcache_gen(c));
	hv_secret_free(&d); /* the cache keeps its own copy */
	assert_true(hv_dekcache_get(c, &k, &got));
	assert_dek(got, 7);
	got->buf[0] ^= 0xff; /* changing the copy changes nothing */
	assert_true(hv_dekcache_get(c, &k, &got2));
	assert_dek(got2, 7);
	assert_ptr_not_equal(got->buf, got2->buf);
	/* a second put of the same key is ignored */
	d = mkdek(9);
	hv_dekcache_put(c, &k, d, hv_dekcache_gen(c));
	hv_secret_free(&d);
	hv_secret_free(&got2);
	assert_true(hv_dekcache_get(c, &k, &got2));
	assert_dek(got2, 7);
	hv_dekcache_stats(c, &st);
	assert_int_equal(st.hits, 3);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.capacity, 8);
	/* a DEK of the wrong length is not cached */
	d = hv_secret_new(16);
	assert_non_null(d);
	mkkey(CRED2, 1, &k);
	hv_dekcache_put(c, &k, d, hv_dekcache_gen(c));
	assert_false(hv_dekcache_get(c, &k, &got));
	hv_secret_free(&d);
	hv_secret_free(&got);
	hv_secret_free(&got2);
	hv_dekcache_free(&c);
	assert_null(c);
	hv_dekcache_free(&c); /* NULL-safe */
}

static void
test_expiry(void **state)
{
	struct hv_dekcache *c = mkcache(8, 60, 0);
	struct hv_dekcache_key k;
	struct hv_secret *d = mkdek(1), *got = NULL;
	struct hv_dekcache_stats st;

	(void)state;
	mkkey(CRED, 1, &k);
	hv_dekcache_put(c, &k, d, hv_dekcache_gen(c));
	assert_true(hv_dekcache_get(c, &k, &got));
	hv_secret_free(&got);
	sleep_ms(100);
	/* age counts from the unwrap, not from the last hit */
	assert_false(hv_dekcache_get(c, &k, &got));
	assert_null(got);
	hv_dekcache_stats(c, &st);
	assert_int_equal(st.expired, 1);
	assert_int_equal(st.entries, 0);
	/* and it can be cached again afterwards */
	hv_dekcache_put(c, &k, d, hv_dekcache_gen(c));
	assert_true(hv_dekcache_get(c, &k, &got));
	assert_dek(got, 1);
	hv_secret_free(&got);
	hv_secret_free(&d);
	hv_dekcache_free(&c);
}

static void
test_max_uses(void **state)
{
	struct hv_dekcache *c = mkcache(8, 60000, 3);
	struct hv_dekcache_key k;
	struct hv_secret *d = mkdek(3), *got = NULL;
	struct hv_dekcache_stats st;
	int i;

	(void)state;
	mkkey(CRED, 1, &k);
	hv_dekcache_put(c, &k, d, hv_dekcache_gen(c));
	for (i = 0; i < 3; i++) {
		assert_true(hv_dekcache_get(c, &k, &got));
		assert_dek(got, 3);
		hv_secret_free(&got);
	}
	assert_false(hv_dekcache_get(c, &k, &got));
	hv_dekcache_stats(c, &st);
	assert_int_equal(st.used_up, 1);
	assert_int_equal(st.hits, 3);
	assert_int_equal(st.entries, 0);
	hv_secret_free(&d);
	hv_dekcache_free(&c);
}

static void
test_eviction_lru(void **state)
{
	struct hv_dekcache *c = mkcache(4, 60000, 0);
	struct hv_dekcache_key k[6];
	struct hv_secret *d, *got = NULL;
	struct hv_dekcache_stats st;
	uint32_t v;

	(void)state;
	for (v = 0; v < 6; v++)
		mkkey(CRED, v + 1, &k[v]);
	for (v = 0; v < 4; v++) {
		d = mkdek((uint8_t)v);
		hv_dekcache_put(c, &k[v], d, hv_dekcache_gen(c));
		hv_secret_free(&d);
	}
	/* touch 0: 1 becomes the least recently used */
	assert_true(hv_dekcache_get(c, &k[0], &got));
	hv_secret_free(&got);
	d = mkdek(4);
	hv_dekcache_put(c, &k[4], d, hv_dekcache_gen(c));
	hv_secret_free(&d);
	assert_false(hv_dekcache_get(c, &k[1], &got));
	for (v = 0; v < 5; v++) {
		if (v == 1)
			continue;
		assert_true(hv_dekcache_get(c, &k[v], &got));
		assert_dek(got, (uint8_t)v);
		hv_secret_free(&got);
	}
	/* now 0 is the oldest touched: it goes next */
	d = mkdek(5);
	hv_dekcache_put(c, &k[5], d, hv_dekcache_gen(c));
	hv_secret_free(&d);
	assert_false(hv_dekcache_get(c, &k[0], &got));
	hv_dekcache_stats(c, &st);
	assert_int_equal(st.evicted, 2);
	assert_int_equal(st.entries, 4);
	hv_dekcache_free(&c);
}

static void
test_forget_and_gen(void **state)
{
	struct hv_dekcache *c = mkcache(16, 60000, 0);
	struct hv_dekcache_key a1, a2, b1;
	struct hv_secret *d = mkdek(5), *got = NULL;
	struct hv_dekcache_stats st;
	uint64_t g;

	(void)state;
	mkkey(CRED, 1, &a1);
	mkkey(CRED, 2, &a2);
	mkkey(CRED2, 1, &b1);
	hv_dekcache_put(c, &a1, d, hv_dekcache_gen(c));
	hv_dekcache_put(c, &a2, d, hv_dekcache_gen(c));
	hv_dekcache_put(c, &b1, d, hv_dekcache_gen(c));
	hv_dekcache_forget(c, CRED);
	assert_false(hv_dekcache_get(c, &a1, &got));
	assert_false(hv_dekcache_get(c, &a2, &got));
	assert_true(hv_dekcache_get(c, &b1, &got));
	hv_secret_free(&got);
	hv_dekcache_stats(c, &st);
	assert_int_equal(st.forgotten, 2);

	/* a put that read its wrapped DEK before a forget is dropped */
	g = hv_dekcache_gen(c);
	hv_dekcache_forget(c, CRED);
	hv_dekcache_put(c, &a1, d, g);
	assert_false(hv_dekcache_get(c, &a1, &got));
	hv_dekcache_put(c, &a1, d, hv_dekcache_gen(c));
	assert_true(hv_dekcache_get(c, &a1, &got));
	hv_secret_free(&got);

	/* an id that does not parse drops everything */
	hv_dekcache_forget(c, "not-a-uuid");
	assert_false(hv_dekcache_get(c, &b1, &got));
	hv_dekcache_put(c, &b1, d, hv_dekcache_gen(c));
	hv_dekcache_clear(c);
	assert_false(hv_dekcache_get(c, &b1, &got));
	hv_dekcache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	hv_secret_free(&d);
	hv_dekcache_free(&c);
}

static void
test_size_zero(void **state)
{
	struct hv_dekcache *c = (struct hv_dekcache *)&c;
	struct hv_dekcache_key k;
	struct hv_secret *d = mkdek(1), *got = NULL;
	struct hv_dekcache_stats st;
	struct hv_err err = {0};

	(void)state;
	assert_int_equal(hv_dekcache_new(0, 60000, 0, &c, &err), HV_OK);
	assert_null(c);
	mkkey(CRED, 1, &k);
	hv_dekcache_put(c, &k, d, hv_dekcache_gen(c));
	assert_false(hv_dekcache_get(c, &k, &got));
	assert_null(got);
	hv_dekcache_forget(c, CRED);
	hv_dekcache_clear(c);
	memset(&st, 0xff, sizeof(st));
	hv_dekcache_stats(c, &st);
	assert_int_equal(st.hits, 0);
	assert_int_equal(st.capacity, 0);
	hv_dekcache_free(&c);
	hv_secret_free(&d);
}

static void
test_failures(void **state)
{
	struct hv_dekcache *c = NULL;
	struct hv_dekcache_key k;
	struct hv_secret *d = mkdek(2), *got = NULL;
	struct hv_err err = {0};
	long n;

	(void)state;
	assert_int_equal(
	    hv_dekcache_new(HV_DEKCACHE_MAX_ENTRIES + 1, 1000, 0, &c, &err),
	    HV_E_CONFIG);
	assert_null(c);
	/* every allocation of new() failing in turn */
	for (n = 1; n <= 8; n++) {
		hv_mem_fail_after(n);
		if (hv_dekcache_new(8, 1000, 0, &c, &err) == HV_OK) {
			hv_mem_fail_after(0);
			break;
		}
		hv_mem_fail_after(0);
		assert_int_equal(err.rc, HV_E_NOMEM);
		assert_null(c);
	}
	assert_true(n > 1);
	assert_non_null(c);
	/* no memory for the caller's copy: a miss, the entry stays */
	mkkey(CRED, 1, &k);
	hv_dekcache_put(c, &k, d, hv_dekcache_gen(c));
	hv_mem_fail_after(1);
	assert_false(hv_dekcache_get(c, &k, &got));
	hv_mem_fail_after(0);
	assert_null(got);
	assert_true(hv_dekcache_get(c, &k, &got));
	assert_dek(got, 2);
	hv_secret_free(&got);
	hv_secret_free(&d);
	hv_dekcache_free(&c);
}

/* Threads: random gets, puts and forgets; every hit has the right DEK. */
#define NKEYS    64
#define NTHREADS 4
#define ITERS    40000

static struct hv_dekcache *shared;
static struct hv_dekcache_key keys[NKEYS];
static const char *const creds[4] = {CRED, CRED2,
    "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f62",
    "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f63"};

static void *
hammer(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;
	unsigned long bad = 0, hits = 0;
	int i;

	for (i = 0; i < ITERS; i++) {
		unsigned int r = (unsigned int)rand_r(&seed);
		unsigned int k = r % NKEYS;
		struct hv_secret *got = NULL;

		if (r % 1000 == 0) {
			hv_dekcache_forget(shared, creds[k % 4]);
		} else if (r % 3 == 0) {
			uint64_t g = hv_dekcache_gen(shared);
			struct hv_secret *d = mkdek((uint8_t)k);

			hv_dekcache_put(shared, &keys[k], d, g);
			hv_secret_free(&d);
		} else if (hv_dekcache_get(shared, &keys[k], &got)) {
			size_t j;

			hits++;
			for (j = 0; j < got->len; j++)
				if (got->buf[j] != (uint8_t)(k + j))
					bad++;
			hv_secret_free(&got);
		}
	}
	return (void *)(uintptr_t)(bad != 0 ? 0 : hits + 1);
}

static void
test_threads(void **state)
{
	pthread_t th[NTHREADS];
	struct hv_dekcache_stats st;
	unsigned long total_hits = 0;
	int i;

	(void)state;
	/* smaller than the key set: evictions happen all the time */
	shared = mkcache(24, 60000, 5);
	for (i = 0; i < NKEYS; i++)
		mkkey(creds[i % 4], (uint32_t)(i / 4 + 1), &keys[i]);
	for (i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, hammer,
		                     (void *)(uintptr_t)(i + 1)),
		    0);
	for (i = 0; i < NTHREADS; i++) {
		void *ret;

		assert_int_equal(pthread_join(th[i], &ret), 0);
		/* 0 means a hit returned another key's DEK */
		assert_true((uintptr_t)ret != 0);
		total_hits += (unsigned long)(uintptr_t)ret - 1;
	}
	hv_dekcache_stats(shared, &st);
	assert_int_equal(st.hits, total_hits);
	assert_true(st.hits > 0);
	assert_true(st.evicted > 0);
	assert_true(st.used_up > 0);
	assert_true(st.forgotten > 0);
	assert_true(st.entries <= 24);
	hv_dekcache_free(&shared);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key),
	    cmocka_unit_test(test_hit_is_a_copy),
	    cmocka_unit_test(test_expiry),
	    cmocka_unit_test(test_max_uses),
	    cmocka_unit_test(test_eviction_lru),
	    cmocka_unit_test(test_forget_and_gen),
	    cmocka_unit_test(test_size_zero),
	    cmocka_unit_test(test_failures),
	    cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
