/*
 * clock: the few clock readings the vault needs, in one place.
 *
 * Monotonic time for ages, deadlines and back-off (never jumps); realtime
 * for what is compared with database timestamps (expires_at, audit rows).
 *
 * Thread-safety: every function is thread-safe.
 */
#ifndef HV_CLOCK_H
#define HV_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t hv_mono_ms(void);

/* CLOCK_MONOTONIC in microseconds. */
uint64_t hv_mono_us(void);

/* CLOCK_MONOTONIC in seconds. */
double hv_mono_s(void);

/* CLOCK_REALTIME in microseconds since the epoch. */
int64_t hv_real_us(void);

/* Sleep ms milliseconds, resuming after signals. */
void hv_sleep_ms(unsigned int ms);

#endif
