/*
 * group: a queue of items and the writer threads that run them in groups
 * (group.h).
 */
#include "group.h"

#include <pthread.h>
#include <stdio.h>

#include "log.h"
#include "mem.h"

#define MAX_WRITERS 64
#define MAX_ITEMS   64

struct hv_group {
	char name[32];
	hv_group_fn run;
	void *ctx;
	size_t max;
	unsigned int want; /* writer threads to start */
	pthread_mutex_t mu;
	pthread_cond_t cv;                  /* the queue has items, or stop */
	struct hv_group_item *head, **tail; /* under mu */
	unsigned int busy; /* groups being run, alone ones included */
	bool stop;
	pthread_t *writers;
	unsigned int nwriters; /* started */
	unsigned long groups, items;
};

enum hv_rc
hv_group_new(const char *name, unsigned int writers, size_t max,
    hv_group_fn run, void *ctx, struct hv_group **out, struct hv_err *err)
{
	struct hv_group *g;

	if (writers == 0 || writers > MAX_WRITERS)
		return hv_err_set(err, HV_E_CONFIG,
		    "%s: 1 to %d writer threads", name, MAX_WRITERS);
	if (max == 0 || max > MAX_ITEMS)
		return hv_err_set(err, HV_E_INTERNAL,
		    "%s: 1 to %d items per group", name, MAX_ITEMS);
	g = hv_calloc(1, sizeof(*g));
	if (g == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	(void)snprintf(g->name, sizeof(g->name), "%s", name);
	g->run = run;
	g->ctx = ctx;
	g->max = max;
	g->want = writers;
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->tail = &g->head;
	*out = g;
	return HV_OK;
}

static void *
writer_main(void *arg)
{
	struct hv_group *g = arg;
	struct hv_group_item *batch[MAX_ITEMS];
	size_t n;

	pthread_mutex_lock(&g->mu);
	for (;;) {
		while (g->head == NULL && !g->stop)
			pthread_cond_wait(&g->cv, &g->mu);
		if (g->head == NULL)
			break; /* stop, and nothing left to run */
		for (n = 0; n < g->max && g->head != NULL; n++) {
			batch[n] = g->head;
			g->head = g->head->next;
			batch[n]->next = NULL;
		}
		if (g->head == NULL)
			g->tail = &g->head;
		g->busy++;
		g->groups++;
		g->items += n;
		pthread_mutex_unlock(&g->mu);
		g->run(g->ctx, batch, n);
		pthread_mutex_lock(&g->mu);
		g->busy--;
	}
	pthread_mutex_unlock(&g->mu);
	return NULL;
}

void
hv_group_free(struct hv_group **gp)
{
	struct hv_group *g = gp != NULL ? *gp : NULL;
	unsigned int i;

	if (g == NULL)
		return;
	pthread_mutex_lock(&g->mu);
	g->stop = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	for (i = 0; i < g->nwriters; i++)
		pthread_join(g->writers[i], NULL);
	hv_free(g->writers);
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
	hv_free(g);
	*gp = NULL;
}

bool
hv_group_alone(struct hv_group *g)
{
	bool now;

	pthread_mutex_lock(&g->mu);
	now = g->head == NULL && g->busy == 0 && !g->stop;
	if (now)
		g->busy++;
	pthread_mutex_unlock(&g->mu);
	return now;
}

void
hv_group_alone_end(struct hv_group *g)
{
	pthread_mutex_lock(&g->mu);
	g->busy--;
	pthread_mutex_unlock(&g->mu);
}

enum hv_rc
hv_group_push(struct hv_group *g, struct hv_group_item *it, struct hv_err *err)
{
	enum hv_rc rc = HV_OK;

	pthread_mutex_lock(&g->mu);
	if (g->stop) {
		rc = hv_err_set(
		    err, HV_E_INTERNAL, "%s: shutting down", g->name);
		goto out;
	}
	if (g->writers == NULL) {
		g->writers = hv_calloc(g->want, sizeof(*g->writers));
		if (g->writers == NULL) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
		for (; g->nwriters < g->want; g->nwriters++)
			if (pthread_create(&g->writers[g->nwriters], NULL,
			        writer_main, g) != 0)
				break;
		if (g->nwriters < g->want)
			hv_log_warn("%s: %u of %u writer threads started",
			    g->name, g->nwriters, g->want);
	}
	if (g->nwriters == 0) {
		rc = hv_err_set(err, HV_E_INTERNAL,
		    "%s: cannot start a writer thread", g->name);
		goto out;
	}
	it->next = NULL;
	*g->tail = it;
	g->tail = &it->next;
	pthread_cond_signal(&g->cv);
out:
	pthread_mutex_unlock(&g->mu);
	return rc;
}

void
hv_group_stats(struct hv_group *g, unsigned long *groups, unsigned long *items)
{
	pthread_mutex_lock(&g->mu);
	*groups = g->groups;
	*items = g->items;
	pthread_mutex_unlock(&g->mu);
}
