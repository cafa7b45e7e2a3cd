#pragma once
/* The public ids of the daemon's objects: sandboxes ("sbx_"), background processes ("proc_"). */

/* prefix and 16 hex digits of randomness ("sbx_0123456789abcdef"): out holds at least strlen(prefix) + 17.
 * Where getrandom fails, a counter mixed with the clock keeps ids distinct within the process. */
void lms_random_id(char *out, const char *prefix);
