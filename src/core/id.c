#include "core/id.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "core/clock.h"

void
lms_random_id(char *out, const char *prefix)
{
	unsigned char raw[8];
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		static uint64_t counter;
		uint64_t n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) ^ (uint64_t)(lms_monotonic_ms() * 1000);
		memcpy(raw, &n, sizeof(raw));
	}
	size_t p = strlen(prefix);
	memcpy(out, prefix, p);
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + p + 2 * i, 3, "%02x", raw[i]);
}
