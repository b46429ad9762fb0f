/*
 * Unit tests of credcache: a row comes back column for column (NULLs
 * included), expiry by TTL (spread over half of it) and by the row's own
 * expires_at, forget and
 * clear with their generation (a row read before a forget is refused),
 * the oldest way dropped from a full set, a cache filled to 60% with
 * random ids keeping 99% of them, oversized rows refused, the disabled
 * (size 0) cache, and consistency under threads.
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

#include "clock.h"
#include "credcache.h"
#include "uuid.h"

#define ID1 "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f60"
#define ID2 "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f61"

/* A one-row text result: "name" = name, NULL, "" and a fixed column. */
static PGresult *
row(const char *name)
{
	PGresAttDesc att[4];
	PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	int i;

	assert_non_null(r);
	memset(att, 0, sizeof(att));
	for (i = 0; i < 4; i++)
		att[i].name = (char *)"c";
	assert_true(PQsetResultAttrs(r, 4, att));
	assert_true(PQsetvalue(r, 0, 0, (char *)name, (int)strlen(name)));
	assert_true(PQsetvalue(r, 0, 1, NULL, -1));
	assert_true(PQsetvalue(r, 0, 2, (char *)"", 0));
	assert_true(PQsetvalue(r, 0, 3, (char *)"fixed", 5));
	return r;
}

static struct hv_credcache *
mk(unsigned int size, unsigned int ttl)
{
	struct hv_credcache *c = NULL;
	struct hv_err err = {0};

	assert_int_equal(hv_credcache_new(size, ttl, &c, &err), HV_OK);
	assert_non_null(c);
	return c;
}

static void
test_roundtrip(void **state)
{
	struct hv_credcache *c = mk(64, 10000);
	PGresult *in = row("alpha"), *out;
	struct hv_credcache_stats st;

	(void)state;
	assert_null(hv_credcache_get(c, ID1));
	hv_credcache_put(c, ID1, in, 0, hv_credcache_gen(c, ID1));
	out = hv_credcache_get(c, ID1);
	assert_non_null(out);
	assert_int_equal(PQntuples(out), 1);
	assert_int_equal(PQnfields(out), 4);
	assert_string_equal(PQgetvalue(out, 0, 0), "alpha");
	assert_true(PQgetisnull(out, 0, 1));
	assert_false(PQgetisnull(out, 0, 2));
	assert_string_equal(PQgetvalue(out, 0, 2), "");
	assert_string_equal(PQgetvalue(out, 0, 3), "fixed");
	PQclear(out);
	assert_null(hv_credcache_get(c, ID2));
	hv_credcache_stats(c, &st);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.misses, 2);
	assert_int_equal(st.entries, 1);
	assert_true(st.capacity >= 64);
	/* a second put of the same id replaces it, one entry */
	PQclear(in);
	in = row("beta");
	hv_credcache_put(c, ID1, in, 0, hv_credcache_gen(c, ID1));
	out = hv_credcache_get(c, ID1);
	assert_string_equal(PQgetvalue(out, 0, 0), "beta");
	PQclear(out);
	hv_credcache_stats(c, &st);
	assert_int_equal(st.entries, 1);
	PQclear(in);
	hv_credcache_free(&c);
	assert_null(c);
}

static void
test_expiry(void **state)
{
	struct hv_credcache *c = mk(64, 80);
	PGresult *in = row("alpha"), *out;

	(void)state;
	hv_credcache_put(c, ID1, in, 0, hv_credcache_gen(c, ID1));
	out = hv_credcache_get(c, ID1);
	assert_non_null(out);
	PQclear(out);
	hv_sleep_ms(120);
	assert_null(hv_credcache_get(c, ID1));
	hv_credcache_free(&c);

	/* the row's own expiry comes first */
	c = mk(64, 60000);
	hv_credcache_put(
	    c, ID1, in, hv_real_us() + 60 * 1000, hv_credcache_gen(c, ID1));
	out = hv_credcache_get(c, ID1);
	assert_non_null(out);
	PQclear(out);
	hv_sleep_ms(100);
	assert_null(hv_credcache_get(c, ID1));
	/* already expired: never stored */
	hv_credcache_put(
	    c, ID2, in, hv_real_us() - 1000, hv_credcache_gen(c, ID2));
	assert_null(hv_credcache_get(c, ID2));
	PQclear(in);
	hv_credcache_free(&c);
}

/* How many of ids[0..n) the cache has. */
static int
count_kept(struct hv_credcache *c, char (*ids)[40], int n)
{
	PGresult *out;
	int i, kept = 0;

	for (i = 0; i < n; i++) {
		out = hv_credcache_get(c, ids[i]);
		kept += out != NULL;
		PQclear(out);
	}
	return kept;
}

/*
 * Entries stored together do not expire together: with a TTL of 2 s, none
 * of 500 rows stored at once is gone before 1 s, and at 1.1-1.9 s some
 * are and some are not (without the spread, all would still be there).
 */
static void
test_expiry_spread(void **state)
{
	struct hv_credcache *c = mk(1024, 2000);
	PGresult *in = row("alpha");
	char ids[500][40];
	uint64_t t0, ta, tb;
	int i, kept, n;

	(void)state;
	t0 = hv_mono_ms();
	for (i = 0; i < 500; i++) {
		(void)snprintf(ids[i], sizeof(ids[i]),
		    "6a1c0e52-3b7d-4f90-8c2e-%012x", (unsigned int)i * 7919u);
		hv_credcache_put(c, ids[i], in, 0, hv_credcache_gen(c, ids[i]));
	}
	kept = count_kept(c, ids, 500);
	assert_in_range(kept, 490, 500); /* a few may fall out of a set */
	hv_sleep_ms(900);
	ta = hv_mono_ms() - t0;
	n = count_kept(c, ids, 500);
	if (ta < 1000) /* else this machine is too slow to tell */
		assert_int_equal(n, kept);
	hv_sleep_ms(1500 - (unsigned int)(hv_mono_ms() - t0));
	ta = hv_mono_ms() - t0;
	n = count_kept(c, ids, 500);
	tb = hv_mono_ms() - t0;
	/* about (2000 - t) / 1000 of them: 450 at 1.1 s, 50 at 1.9 s */
	if (ta >= 1100 && tb <= 1900 && (n <= 25 || n >= kept - 25))
		fail_msg(
		    "%d of %d rows left after %llu-%llu ms of a 2000 ms TTL", n,
		    kept, (unsigned long long)ta, (unsigned long long)tb);
	PQclear(in);
	hv_credcache_free(&c);
}

/* An id whose forget does not move the generation of id's stripe. */
static const char *
other_stripe(struct hv_credcache *c, const char *id)
{
	static char buf[HV_UUID_STR];
	uint64_t g;
	int i;

	for (i = 0; i < 256; i++) {
		(void)snprintf(buf, sizeof(buf),
		    "00000000-0000-4000-8000-%012x", (unsigned int)i);
		g = hv_credcache_gen(c, id);
		hv_credcache_forget(c, buf);
		if (hv_credcache_gen(c, id) == g)
			return buf;
	}
	fail_msg("every id shares a stripe with %s", id);
	return NULL;
}

static void
test_forget_and_generation(void **state)
{
	struct hv_credcache *c = mk(64, 60000);
	PGresult *in = row("alpha"), *out;
	const char *other;
	uint64_t gen;

	(void)state;
	hv_credcache_put(c, ID1, in, 0, hv_credcache_gen(c, ID1));
	hv_credcache_put(c, ID2, in, 0, hv_credcache_gen(c, ID2));
	hv_credcache_forget(c, ID1);
	assert_null(hv_credcache_get(c, ID1));
	out = hv_credcache_get(c, ID2);
	assert_non_null(out);
	PQclear(out);

	/* read before a forget, stored after it: refused */
	gen = hv_credcache_gen(c, ID1);
	hv_credcache_forget(c, ID1);
	assert_int_not_equal(hv_credcache_gen(c, ID1), gen);
	hv_credcache_put(c, ID1, in, 0, gen);
	assert_null(hv_credcache_get(c, ID1));

	/* a forget of an id of another stripe leaves ID1's puts alone */
	other = other_stripe(c, ID1);
	gen = hv_credcache_gen(c, ID1);
	hv_credcache_forget(c, other);
	assert_int_equal(hv_credcache_gen(c, ID1), gen);
	hv_credcache_put(c, ID1, in, 0, gen);
	out = hv_credcache_get(c, ID1);
	assert_non_null(out);
	PQclear(out);
	hv_credcache_forget(c, ID1);

	/* a clear refuses every put read before it */
	gen = hv_credcache_gen(c, ID1);
	hv_credcache_clear(c);
	hv_credcache_put(c, ID1, in, 0, gen);
	assert_null(hv_credcache_get(c, ID1));
	hv_credcache_put(c, ID1, in, 0, hv_credcache_gen(c, ID1));
	hv_credcache_clear(c);
	assert_null(hv_credcache_get(c, ID1));
	assert_null(hv_credcache_get(c, ID2));
	/* not a uuid: never stored */
	hv_credcache_put(
	    c, "not-a-uuid", in, 0, hv_credcache_gen(c, "not-a-uuid"));
	assert_null(hv_credcache_get(c, "not-a-uuid"));
	PQclear(in);
	hv_credcache_free(&c);
}

static void
test_full_set_and_size(void **state)
{
	/* four entries: one set of four ways */
	struct hv_credcache *c = mk(4, 60000);
	struct hv_credcache_stats st;
	char ids[6][40], big[5000];
	PGresult *in = row("alpha"), *out, *huge;
	int i, kept = 0;

	(void)state;
	for (i = 0; i < 6; i++) {
		(void)snprintf(ids[i], sizeof(ids[i]),
		    "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f7%d", i);
		hv_credcache_put(c, ids[i], in, 0, hv_credcache_gen(c, ids[i]));
		hv_sleep_ms(2); /* distinct birth times */
	}
	hv_credcache_stats(c, &st);
	assert_int_equal(st.capacity, 4);
	assert_int_equal(st.entries, 4);
	for (i = 0; i < 6; i++) {
		out = hv_credcache_get(c, ids[i]);
		if (out != NULL)
			kept |= 1 << i;
		PQclear(out);
	}
	assert_int_equal(kept, 0x3c); /* the two oldest went */

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	huge = row(big);
	hv_credcache_put(c, ID1, huge, 0, hv_credcache_gen(c, ID1));
	assert_null(hv_credcache_get(c, ID1));
	PQclear(huge);
	PQclear(in);
	hv_credcache_free(&c);
}

/*
 * 600 random ids in 1,024 entries: sets of four ways would leave about 35
 * of them without a slot (some sets get more than four), sixteen ways
 * about 2. The ids are fixed (xorshift from a constant seed).
 */
static void
test_occupancy(void **state)
{
	struct hv_credcache *c = mk(1024, 60000);
	struct hv_credcache_stats st;
	PGresult *in = row("alpha"), *out;
	char ids[600][40];
	uint64_t x = 0x9e3779b97f4a7c15u, y;
	int i, kept = 0;

	(void)state;
	for (i = 0; i < 600; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		y = x * 0x2545f4914f6cdd1du;
		(void)snprintf(ids[i], sizeof(ids[i]),
		    "%08x-%04x-4%03x-8%03x-%012llx", (unsigned int)(x >> 32),
		    (unsigned int)(x >> 16) & 0xffff, (unsigned int)x & 0xfff,
		    (unsigned int)(y >> 52),
		    (unsigned long long)y & 0xffffffffffffull);
		hv_credcache_put(c, ids[i], in, 0, hv_credcache_gen(c, ids[i]));
	}
	for (i = 0; i < 600; i++) {
		out = hv_credcache_get(c, ids[i]);
		if (out != NULL)
			kept++;
		PQclear(out);
	}
	hv_credcache_stats(c, &st);
	assert_int_equal(st.capacity, 1024);
	assert_int_equal(st.entries, kept);
	if (kept < 594)
		fail_msg("kept %d of 600 ids in 1024 entries", kept);
	PQclear(in);
	hv_credcache_free(&c);
}

static void
test_disabled(void **state)
{
	struct hv_credcache *c = (struct hv_credcache *)1;
	struct hv_err err = {0};
	PGresult *in = row("alpha");

	(void)state;
	assert_int_equal(hv_credcache_new(0, 1000, &c, &err), HV_OK);
	assert_null(c);
	hv_credcache_put(c, ID1, in, 0, hv_credcache_gen(c, ID1));
	assert_null(hv_credcache_get(c, ID1));
	hv_credcache_forget(c, ID1);
	hv_credcache_clear(c);
	hv_credcache_free(&c);
	assert_int_equal(hv_credcache_new(16, 0, &c, &err), HV_E_CONFIG);
	assert_non_null(strstr(err.msg, "cred_cache_ttl_ms"));
	assert_int_equal(
	    hv_credcache_new(1u << 23, 1000, &c, &err), HV_E_CONFIG);
	PQclear(in);
}

struct worker {
	struct hv_credcache *c;
	int n;
	int bad;
};

/* Readers, writers and forgetters on a few ids: every hit is whole. */
static void *
work(void *arg)
{
	struct worker *w = arg;
	char id[40], name[64];
	PGresult *in, *out;
	int i;

	for (i = 0; i < 3000; i++) {
		(void)snprintf(id, sizeof(id),
		    "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f8%d", i % 7);
		(void)snprintf(name, sizeof(name), "%s-%d", id, w->n);
		if (i % 5 == 0) {
			hv_credcache_forget(w->c, id);
		} else if (i % 2 == 0) {
			in = row(name);
			hv_credcache_put(
			    w->c, id, in, 0, hv_credcache_gen(w->c, id));
			PQclear(in);
		} else {
			out = hv_credcache_get(w->c, id);
			if (out != NULL &&
			    (strncmp(PQgetvalue(out, 0, 0), id, 36) != 0 ||
			        strcmp(PQgetvalue(out, 0, 3), "fixed") != 0))
				w->bad++;
			PQclear(out);
		}
	}
	return NULL;
}

static void
test_threads(void **state)
{
	struct hv_credcache *c = mk(8, 60000);
	struct worker w[4];
	pthread_t th[4];
	int i;

	(void)state;
	for (i = 0; i < 4; i++) {
		w[i].c = c;
		w[i].n = i;
		w[i].bad = 0;
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].bad, 0);
	}
	hv_credcache_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_expiry),
	    cmocka_unit_test(test_expiry_spread),
	    cmocka_unit_test(test_forget_and_generation),
	    cmocka_unit_test(test_full_set_and_size),
	    cmocka_unit_test(test_occupancy),
	    cmocka_unit_test(test_disabled),
	    cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
