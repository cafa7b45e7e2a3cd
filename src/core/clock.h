#pragma once
#include <pthread.h>
#include <time.h>

/* Milliseconds on the monotonic clock: for deadlines and durations, never for dates. */
double lms_monotonic_ms(void);

/* Seconds since the epoch (the date): for timestamps shown to people and clients. */
double lms_wall_s(void);

/* s (seconds since the epoch) as RFC 3339 in UTC with milliseconds: "2026-12-01T11:36:00.249Z". */
void lms_rfc3339(double s, char out[40]);

/* A condition whose timed waits count on the monotonic clock (a change of the date moves no deadline). */
void lms_cond_init_monotonic(pthread_cond_t *cond);

/* The monotonic clock's time `ms` from now (negative: now), for pthread_cond_timedwait on such a condition. */
struct timespec lms_monotonic_after_ms(double ms);
