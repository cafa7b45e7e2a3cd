/* Byte counts for people (human.h). */
#include "core/human.h"

#include <stdio.h>

void
lms_human_bytes(unsigned long long bytes, char out[32])
{
	if (bytes >= 1ull << 30)
		snprintf(out, 32, "%.1f GiB", (double)bytes / (double)(1ull << 30));
	else if (bytes >= 1ull << 20)
		snprintf(out, 32, "%.1f MiB", (double)bytes / (double)(1ull << 20));
	else
		snprintf(out, 32, "%.1f KiB", (double)bytes / 1024.0);
}
