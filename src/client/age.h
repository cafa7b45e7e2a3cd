#pragma once
/* Times of the API (RFC 3339, UTC) as `ls` shows them: "3 minutes ago", "in about an hour", as docker ps does. */
#include <stddef.h>
#include <time.h>

/* "2024-05-01T12:00:00.123Z" (a fraction and a numeric offset are accepted) in milliseconds since the epoch;
 * -1 when it is not such a time. */
long long lms_client_parse_time_ms(const char *text);

/* A span of `ms` milliseconds (>= 0) in words: "Less than a second", "1 second", "3 minutes",
 * "About an hour", "5 days" (docker's HumanDuration). */
void lms_client_human_duration(long long ms, char *buf, size_t size);

/* `then` relative to `now` (both ms since the epoch): "3 minutes ago", "in 10 minutes", "" for then < 0. */
void lms_client_relative_time(long long then, long long now, char *buf, size_t size);
