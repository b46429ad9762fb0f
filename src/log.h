/*
 * log: one-line JSON records on stderr: {"ts","level","msg",...}.
 *
 * Callers must never pass secrets, PINs, API keys or request bodies. The
 * level threshold is process-wide and set once at start-up.
 *
 * Thread-safety: each record is written with a single write(2).
 */
#ifndef HV_LOG_H
#define HV_LOG_H

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

/* Write a pre-built JSON object line as is (the access log). */
void hv_log_raw_json(const char *line);

#define hv_log_debug(...) hv_log(HV_LOG_DEBUG, __VA_ARGS__)
#define hv_log_info(...)  hv_log(HV_LOG_INFO, __VA_ARGS__)
#define hv_log_warn(...)  hv_log(HV_LOG_WARN, __VA_ARGS__)
#define hv_log_error(...) hv_log(HV_LOG_ERROR, __VA_ARGS__)

#endif
