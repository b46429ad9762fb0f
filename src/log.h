/*
 * log: one-line JSON records on stderr: {"ts","level","msg",...}.
 *
 * Callers must never pass secrets, PINs, API keys or request bodies. The
 * level threshold is process-wide and set once at start-up.
 *
 * Thread-safety: records never interleave. Each is written with a single
 * write(2), or, once hv_log_buffer_start() has run, access-log records are
 * gathered in a buffer that a flusher thread writes at least every
 * flush_ms; any other record is written at once, after the buffered ones.
 */
#ifndef HV_LOG_H
#define HV_LOG_H

#include <stddef.h>
#include <stdint.h>

struct timespec;

enum hv_log_level {
	HV_LOG_DEBUG = 0,
	HV_LOG_INFO = 1,
	HV_LOG_WARN = 2,
	HV_LOG_ERROR = 3,
};

/* Set the threshold; records below it are dropped. Default: info. */
void hv_log_set_level(enum hv_log_level lvl);

/* Parse "debug", "info", "warn", "error"; returns -1 when unknown. */
int hv_log_parse_level(const char *s);

void hv_log(enum hv_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Longest escaped value of one access-log field; longer ones are cut. */
#define HV_LOG_FIELD_MAX 512

/* One access-log record ("msg":"request"); NULL fields are left out. */
struct hv_access_rec {
	const char *request_id;
	const char *method;
	const char *route;
	const char *path;
	unsigned int status;
	uint64_t duration_us;
	const char *remote_addr;
	const char *key_id;
	const char *termination;
};

/*
 * Format r, stamped with now, as one JSON object without a newline into
 * buf; returns its length, 0 when it does not fit in cap bytes. Every
 * string is escaped; a field whose escaped value is longer than
 * HV_LOG_FIELD_MAX bytes is cut.
 */
size_t hv_log_access_format(char *buf, size_t cap,
    const struct hv_access_rec *r, const struct timespec *now);

/* Write r as one line, whatever the threshold (the access log). */
void hv_log_access(const struct hv_access_rec *r);

/*
 * Buffer the access log from now on: its lines go to stderr in batches, at
 * the latest flush_ms after they were logged (also when a buffer of
 * 256 KiB fills, and before any other record). 0 = no buffer, each line
 * its own write(2). Returns -1 (and stays unbuffered) when the buffers or
 * the flusher thread cannot be had. Call once, before the threads that log.
 */
int hv_log_buffer_start(unsigned int flush_ms);

/* Write what is buffered, stop the flusher; back to one write per line. */
void hv_log_buffer_stop(void);

#define hv_log_debug(...) hv_log(HV_LOG_DEBUG, __VA_ARGS__)
#define hv_log_info(...)  hv_log(HV_LOG_INFO, __VA_ARGS__)
#define hv_log_warn(...)  hv_log(HV_LOG_WARN, __VA_ARGS__)
#define hv_log_error(...) hv_log(HV_LOG_ERROR, __VA_ARGS__)

#endif
