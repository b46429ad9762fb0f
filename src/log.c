/* log: JSON lines on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include <unistd.h>

static atomic_int threshold = HV_LOG_INFO;

static const char *const names[] = {"debug", "info", "warn", "error"};

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
		(void)!write(STDERR_FILENO, line,
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
	/* one write: lines from different threads never interleave */
	line[n] = '\n';
	(void)!write(STDERR_FILENO, line, n + 1);
}
