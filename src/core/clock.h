#pragma once
/* Milliseconds on the monotonic clock: for deadlines and durations, never for dates. */
double lms_monotonic_ms(void);
