/* log: JSON lines on stderr. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include <unistd.h>

static atomic_int threshold = HV_LOG_INFO;

static const char *const names[] = {"debug", "info", "warn", "error"};

/*
 * The access-log buffer (hv_log_buffer_start). Two buffers: request
 * threads append to buf[cur]; the flusher writes buf[!cur] (when busy)
 * with the lock released, so a slow stderr never holds up a request
 * unless both buffers are full. Everything written to stderr goes through
 * lb.mu while the buffer is on, so lines keep their order.
 */
#define LOGBUF_CAP (256 * 1024)

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* the flusher: a full buffer, or stop */
	pthread_cond_t room; /* appenders and hv_log: buf[!cur] written */
	char *buf[2];
	size_t len[2];
	int cur;
	bool busy; /* buf[!cur] holds lines not written yet */
	bool on, stop;
	unsigned int flush_ms;
	pthread_t thread;
} lb = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .room = PTHREAD_COND_INITIALIZER,
};

/* write(2) all of p to stderr, through short writes and EINTR. */
static void
write_all(const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(STDERR_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* nowhere to log to: the lines are dropped */
		p += w;
		n -= (size_t)w;
	}
}

/* With lb.mu held and buf[!cur] free: hand buf[cur] to the flusher. */
static void
swap_locked(void)
{
	lb.cur ^= 1;
	lb.len[lb.cur] = 0;
	lb.busy = true;
	pthread_cond_signal(&lb.wake);
}

static void *
flusher(void *arg)
{
	struct timespec at;
	int done;

	(void)arg;
	pthread_mutex_lock(&lb.mu);
	while (!lb.stop || lb.busy) {
		if (!lb.busy && !lb.stop) {
			clock_gettime(CLOCK_MONOTONIC, &at);
			at.tv_sec += lb.flush_ms / 1000;
			at.tv_nsec += (long)(lb.flush_ms % 1000) * 1000000L;
			if (at.tv_nsec >= 1000000000L) {
				at.tv_sec++;
				at.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&lb.wake, &lb.mu, &at);
			if (!lb.busy && lb.len[lb.cur] > 0)
				swap_locked();
		}
		if (lb.busy) {
			done = lb.cur ^ 1;
			pthread_mutex_unlock(&lb.mu);
			write_all(lb.buf[done], lb.len[done]);
			pthread_mutex_lock(&lb.mu);
			lb.busy = false;
			pthread_cond_broadcast(&lb.room);
		}
	}
	pthread_mutex_unlock(&lb.mu);
	return NULL;
}

int
hv_log_buffer_start(unsigned int flush_ms)
{
	pthread_condattr_t ca;
	int rc;

	if (flush_ms == 0 || lb.on)
		return 0;
	lb.buf[0] = malloc(LOGBUF_CAP);
	lb.buf[1] = malloc(LOGBUF_CAP);
	if (lb.buf[0] == NULL || lb.buf[1] == NULL)
		goto fail;
	/* the flusher's deadlines are on the monotonic clock */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_destroy(&lb.wake);
	pthread_cond_init(&lb.wake, &ca);
	pthread_condattr_destroy(&ca);
	lb.len[0] = lb.len[1] = 0;
	lb.cur = 0;
	lb.busy = lb.stop = false;
	lb.flush_ms = flush_ms;
	pthread_mutex_lock(&lb.mu);
	lb.on = true;
	pthread_mutex_unlock(&lb.mu);
	rc = pthread_create(&lb.thread, NULL, flusher, NULL);
	if (rc == 0)
		return 0;
	pthread_mutex_lock(&lb.mu);
	lb.on = false;
	pthread_mutex_unlock(&lb.mu);
fail:
	free(lb.buf[0]);
	free(lb.buf[1]);
	lb.buf[0] = lb.buf[1] = NULL;
	return -1;
}

void
hv_log_buffer_stop(void)
{
	pthread_mutex_lock(&lb.mu);
	if (!lb.on) {
		pthread_mutex_unlock(&lb.mu);
		return;
	}
	lb.stop = true;
	pthread_cond_signal(&lb.wake);
	pthread_mutex_unlock(&lb.mu);
	pthread_join(lb.thread, NULL);
	pthread_mutex_lock(&lb.mu);
	write_all(lb.buf[lb.cur], lb.len[lb.cur]);
	lb.on = false;
	pthread_mutex_unlock(&lb.mu);
	free(lb.buf[0]);
	free(lb.buf[1]);
	lb.buf[0] = lb.buf[1] = NULL;
}

/*
 * One line to stderr now, after every buffered line (hv_log's records:
 * rare, and a warning or an error must not wait for the flusher).
 */
static void
out_now(const char *line, size_t n)
{
	pthread_mutex_lock(&lb.mu);
	if (lb.on) {
		while (lb.busy)
			pthread_cond_wait(&lb.room, &lb.mu);
		write_all(lb.buf[lb.cur], lb.len[lb.cur]);
		lb.len[lb.cur] = 0;
	}
	write_all(line, n);
	pthread_mutex_unlock(&lb.mu);
}

/*
 * One line (n bytes) to stderr: appended to the buffer when it is on
 * (waiting only while both buffers are full), else written at once.
 */
static void
out_buffered(const char *line, size_t n)
{
	if (n > LOGBUF_CAP) {
		out_now(line, n); /* never fits: after the buffered lines */
		return;
	}
	pthread_mutex_lock(&lb.mu);
	if (!lb.on) {
		pthread_mutex_unlock(&lb.mu);
		write_all(line, n);
		return;
	}
	while (lb.len[lb.cur] + n > LOGBUF_CAP) {
		if (!lb.busy)
			swap_locked();
		else
			pthread_cond_wait(&lb.room, &lb.mu);
	}
	memcpy(lb.buf[lb.cur] + lb.len[lb.cur], line, n);
	lb.len[lb.cur] += n;
	pthread_mutex_unlock(&lb.mu);
}

void
hv_log_set_level(enum hv_log_level lvl)
{
	atomic_store(&threshold, (int)lvl);
}

int
hv_log_parse_level(const char *s)
{
	int i;

	for (i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

/*
 * Escape s into out (cap bytes, NUL included) as a JSON string body;
 * truncates safely. *all (when not NULL): s went in whole.
 */
static size_t
escape(char *out, size_t cap, const char *s, bool *all)
{
	size_t o = 0;
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0' && o + 7 < cap; p++) {
		if (*p == '"' || *p == '\\') {
			out[o++] = '\\';
			out[o++] = (char)*p;
		} else if (*p < 0x20) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", *p);
		} else {
			out[o++] = (char)*p;
		}
	}
	out[o] = '\0';
	if (all != NULL)
		*all = *p == '\0';
	return o;
}

/* "2026-11-22T10:00:00.123Z" into ts (at least 32 bytes). */
static void
format_ts(char *ts, size_t cap, const struct timespec *now)
{
	struct tm tm;
	size_t n;

	gmtime_r(&now->tv_sec, &tm);
	n = strftime(ts, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	(void)snprintf(
	    ts + n, cap - n, ".%03dZ", (int)(now->tv_nsec / 1000000));
}

void
hv_log(enum hv_log_level lvl, const char *fmt, ...)
{
	char msg[1024], esc[2048], line[2300], ts[40];
	struct timespec now;
	va_list ap;
	int n;

	if ((int)lvl < atomic_load(&threshold))
		return;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	escape(esc, sizeof(esc), msg, NULL);
	clock_gettime(CLOCK_REALTIME, &now);
	format_ts(ts, sizeof(ts), &now);
	n = snprintf(line, sizeof(line),
	    "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n", ts, names[lvl],
	    esc);
	if (n > 0)
		out_now(line,
		    (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/*
 * ,"key":"escaped value" into out, the value escaped in place and cut at
 * HV_LOG_FIELD_MAX bytes; nothing when v is NULL. cap when out is too
 * small (a value cut by the buffer, not by the limit, is no field).
 */
static size_t
put_field(char *out, size_t cap, const char *key, const char *v)
{
	size_t o, room, lim;
	bool all;
	int n;

	if (v == NULL)
		return 0;
	n = snprintf(out, cap, ",\"%s\":\"", key);
	if (n < 0 || (size_t)n + 2 >= cap)
		return cap;
	o = (size_t)n;
	room = cap - o - 1; /* the closing quote */
	lim = room < HV_LOG_FIELD_MAX + 1 ? room : HV_LOG_FIELD_MAX + 1;
	o += escape(out + o, lim, v, &all);
	if (!all && lim == room)
		return cap;
	out[o++] = '"';
	out[o] = '\0';
	return o;
}

size_t
hv_log_access_format(char *buf, size_t cap, const struct hv_access_rec *r,
    const struct timespec *now)
{
	char ts[40];
	size_t o;
	int n;

	format_ts(ts, sizeof(ts), now);
	n = snprintf(buf, cap,
	    "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\"", ts);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	o = (size_t)n;
	o += put_field(buf + o, cap - o, "request_id", r->request_id);
	o += put_field(buf + o, cap - o, "method", r->method);
	o += put_field(buf + o, cap - o, "route", r->route);
	o += put_field(buf + o, cap - o, "path", r->path);
	if (o >= cap)
		return 0;
	/* milliseconds with two decimals, truncated, without floating point */
	n = snprintf(buf + o, cap - o,
	    ",\"status\":%u,\"duration_ms\":%llu.%02llu", r->status,
	    (unsigned long long)(r->duration_us / 1000),
	    (unsigned long long)(r->duration_us / 10 % 100));
	if (n < 0 || (size_t)n >= cap - o)
		return 0;
	o += (size_t)n;
	o += put_field(buf + o, cap - o, "remote_addr", r->remote_addr);
	o += put_field(buf + o, cap - o, "key_id", r->key_id);
	o += put_field(buf + o, cap - o, "termination", r->termination);
	if (o + 2 > cap)
		return 0;
	buf[o++] = '}';
	buf[o] = '\0';
	return o;
}

void
hv_log_access(const struct hv_access_rec *r)
{
	char line[HV_LOG_FIELD_MAX * 8 + 512];
	struct timespec now;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &now);
	n = hv_log_access_format(line, sizeof(line) - 1, r, &now);
	if (n == 0)
		return;
	/* whole lines: lines from different threads never interleave */
	line[n] = '\n';
	out_buffered(line, n + 1);
}
