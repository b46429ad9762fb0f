/*
 * Unit tests of group: every pushed item is run exactly once, in queue
 * order, in groups of at most max; items pushed while a group runs form
 * the next group; hv_group_alone() says yes only when nothing is queued or
 * running; hv_group_free() runs what is still queued and then refuses
 * pushes; bad sizes are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "group.h"

struct item {
	struct hv_group_item link; /* first */
	int n;
	int runs;
};

/* What run() saw, and a gate that holds it back. */
struct seen {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool hold;   /* run() waits while true */
	int running; /* run() calls inside the gate */
	int groups;
	int items;
	int biggest;
	int last; /* the n of the last item run, for the order */
	bool in_order;
};

static void
run(void *ctx, struct hv_group_item **items, size_t n)
{
	struct seen *s = ctx;
	size_t i;

	pthread_mutex_lock(&s->mu);
	s->running++;
	pthread_cond_broadcast(&s->cv);
	while (s->hold)
		pthread_cond_wait(&s->cv, &s->mu);
	s->groups++;
	s->items += (int)n;
	if ((int)n > s->biggest)
		s->biggest = (int)n;
	for (i = 0; i < n; i++) {
		struct item *it = (struct item *)(void *)items[i];

		it->runs++;
		if (it->n != s->last + 1)
			s->in_order = false;
		s->last = it->n;
	}
	s->running--;
	pthread_mutex_unlock(&s->mu);
}

static void
seen_init(struct seen *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->in_order = true;
}

static void
gate(struct seen *s, bool hold)
{
	pthread_mutex_lock(&s->mu);
	s->hold = hold;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Wait until run() is inside the gate. */
static void
wait_running(struct seen *s)
{
	pthread_mutex_lock(&s->mu);
	while (s->running == 0)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
}

static void
test_bad_sizes(void **state)
{
	struct hv_group *g = NULL;
	struct hv_err err = {HV_OK, ""};
	struct seen s;

	(void)state;
	seen_init(&s);
	assert_int_equal(
	    hv_group_new("t", 0, 8, run, &s, &g, &err), HV_E_CONFIG);
	assert_int_equal(
	    hv_group_new("t", 65, 8, run, &s, &g, &err), HV_E_CONFIG);
	assert_int_equal(
	    hv_group_new("t", 1, 0, run, &s, &g, &err), HV_E_INTERNAL);
	assert_int_equal(
	    hv_group_new("t", 1, 65, run, &s, &g, &err), HV_E_INTERNAL);
	assert_null(g);
	hv_group_free(&g); /* NULL-safe */
}

/*
 * One writer held inside its first group: everything pushed meanwhile
 * waits, and once let go runs in groups of at most max, in order, each
 * item once.
 */
static void
test_groups_form_behind_a_running_one(void **state)
{
	struct hv_group *g = NULL;
	struct hv_err err = {HV_OK, ""};
	struct item it[21];
	struct seen s;
	int i;

	(void)state;
	seen_init(&s);
	assert_int_equal(hv_group_new("t", 1, 8, run, &s, &g, &err), HV_OK);
	assert_true(hv_group_alone(g));  /* nothing queued, nothing running */
	assert_false(hv_group_alone(g)); /* the first is still "running" */
	hv_group_alone_end(g);
	memset(it, 0, sizeof(it));
	for (i = 0; i < 21; i++)
		it[i].n = i + 1;
	gate(&s, true);
	assert_int_equal(hv_group_push(g, &it[0].link, &err), HV_OK);
	wait_running(&s);
	assert_false(hv_group_alone(g)); /* a group is running */
	for (i = 1; i < 21; i++)
		assert_int_equal(hv_group_push(g, &it[i].link, &err), HV_OK);
	assert_false(hv_group_alone(g));
	gate(&s, false);
	hv_group_free(&g); /* runs what is queued, then joins */
	assert_null(g);
	for (i = 0; i < 21; i++)
		assert_int_equal(it[i].runs, 1);
	assert_true(s.in_order);
	assert_int_equal(s.items, 21);
	/* 1, then 20 queued in groups of at most 8: 8, 8, 4 */
	assert_int_equal(s.groups, 4);
	assert_int_equal(s.biggest, 8);
}

struct pusher {
	struct hv_group *g;
	struct item it[200];
	int refused;
	int alone; /* items the pusher did itself */
};

static void *
pusher_main(void *arg)
{
	struct pusher *p = arg;
	struct hv_err err = {HV_OK, ""};
	int i;

	for (i = 0; i < 200; i++) {
		p->it[i].n = i;
		if (hv_group_alone(p->g)) {
			p->it[i].runs++; /* the caller does its own work */
			p->alone++;
			hv_group_alone_end(p->g);
		} else if (hv_group_push(p->g, &p->it[i].link, &err) != HV_OK) {
			p->refused++;
		}
	}
	return NULL;
}

/*
 * 4 threads × 200 items, 2 writers: each item done exactly once, by its
 * pusher (alone) or in a group of at most 16.
 */
static void
test_threads(void **state)
{
	static struct pusher p[4];
	struct hv_group *g = NULL;
	struct hv_err err = {HV_OK, ""};
	struct seen s;
	pthread_t th[4];
	unsigned long groups, items;
	int i, k, alone = 0;

	(void)state;
	seen_init(&s);
	assert_int_equal(hv_group_new("t", 2, 16, run, &s, &g, &err), HV_OK);
	memset(p, 0, sizeof(p));
	for (i = 0; i < 4; i++) {
		p[i].g = g;
		assert_int_equal(
		    pthread_create(&th[i], NULL, pusher_main, &p[i]), 0);
	}
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	hv_group_free(&g);
	for (i = 0; i < 4; i++) {
		assert_int_equal(p[i].refused, 0);
		alone += p[i].alone;
		for (k = 0; k < 200; k++)
			assert_int_equal(p[i].it[k].runs, 1);
	}
	assert_int_equal(s.items + alone, 800);
	assert_true(s.biggest <= 16);
	/* the counters agree with what run() saw */
	seen_init(&s);
	assert_int_equal(hv_group_new("t", 1, 4, run, &s, &g, &err), HV_OK);
	gate(&s, true);
	assert_int_equal(hv_group_push(g, &p[0].it[0].link, &err), HV_OK);
	wait_running(&s);
	for (k = 1; k < 7; k++)
		assert_int_equal(
		    hv_group_push(g, &p[0].it[k].link, &err), HV_OK);
	gate(&s, false);
	for (k = 0; k < 1000; k++) {
		hv_group_stats(g, &groups, &items);
		if (items == 7)
			break;
		usleep(1000);
	}
	hv_group_free(&g);
	assert_int_equal(items, 7);
	assert_int_equal(groups, 3); /* 1, then 4 and 2 */
	assert_int_equal(s.groups, 3);
}

struct freer {
	struct hv_group *g;
};

static void *
freer_main(void *arg)
{
	struct freer *f = arg;

	hv_group_free(&f->g);
	return NULL;
}

/*
 * hv_group_free() runs what is queued (here held back by the gate) before
 * it returns; a push once it began is refused and the item stays the
 * caller's, not run.
 */
static void
test_free_drains_then_refuses(void **state)
{
	static struct item it[100];
	struct hv_err err = {HV_OK, ""};
	struct freer f = {NULL};
	struct seen s;
	pthread_t th;
	int i, pushed = 0;

	(void)state;
	seen_init(&s);
	memset(it, 0, sizeof(it));
	assert_int_equal(hv_group_new("t", 1, 4, run, &s, &f.g, &err), HV_OK);
	gate(&s, true);
	for (i = 0; i < 3; i++) {
		it[i].n = i + 1;
		assert_int_equal(hv_group_push(f.g, &it[i].link, &err), HV_OK);
		pushed++;
		if (i == 0)
			wait_running(&s);
	}
	{
		struct hv_group *g = f.g; /* valid until the freer returns */

		assert_int_equal(pthread_create(&th, NULL, freer_main, &f), 0);
		for (i = 3; i < 100; i++) {
			it[i].n = i + 1;
			if (hv_group_push(g, &it[i].link, &err) != HV_OK)
				break;
			pushed++;
			usleep(1000);
		}
	}
	assert_true(i < 100); /* refused once free began */
	assert_int_equal(err.rc, HV_E_INTERNAL);
	gate(&s, false);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_null(f.g);
	for (i = 0; i < 100; i++)
		assert_int_equal(it[i].runs, i < pushed ? 1 : 0);
	assert_int_equal(s.items, pushed);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_sizes),
	    cmocka_unit_test(test_groups_form_behind_a_running_one),
	    cmocka_unit_test(test_threads),
	    cmocka_unit_test(test_free_drains_then_refuses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
