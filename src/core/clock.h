#pragma once
#include <pthread.h>
#include <time.h>

/* Milliseconds on the monotonic clock: for deadlines and durations, never for dates. */
double lms_monotonic_ms(void);

/* A condition whose timed waits count on the monotonic clock (a change of the date moves no deadline). */
void lms_cond_init_monotonic(pthread_cond_t *cond);

/* The monotonic clock's time `ms` from now (negative: now), for pthread_cond_timedwait on such a condition. */
struct timespec lms_monotonic_after_ms(double ms);
