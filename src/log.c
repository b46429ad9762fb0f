/* log: JSON lines on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include <sys/uio.h>
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

/* Escape s into out as a JSON string body; truncates safely. */
static size_t
escape(char *out, size_t cap, const char *s)
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
	return o;
}

void
hv_log(enum hv_log_level lvl, const char *fmt, ...)
{
	char msg[1024], esc[2048], line[2300], ts[40];
	struct timespec now;
	struct tm tm;
	va_list ap;
	int n;

	if ((int)lvl < atomic_load(&threshold))
		return;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	escape(esc, sizeof(esc), msg);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line),
	    "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":\"%s\"}\n", ts,
	    now.tv_nsec / 1000000, names[lvl], esc);
	if (n > 0)
		(void)!write(STDERR_FILENO, line,
		    (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void
hv_log_raw_json(const char *line)
{
	struct iovec iov[2];

	/* one writev: lines from different threads never interleave */
	iov[0].iov_base = (void *)(uintptr_t)line;
	iov[0].iov_len = strlen(line);
	iov[1].iov_base = (void *)(uintptr_t) "\n";
	iov[1].iov_len = 1;
	(void)!writev(STDERR_FILENO, iov, 2);
}
