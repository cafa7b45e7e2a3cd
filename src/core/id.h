#pragma once
/* The public ids of the daemon's objects: sandboxes ("sbx_", or "sbx_NODE_" in a cluster: docs/deploy.md,
 * "Scaling"), background processes ("proc_"). */

/* A node's name (server/cluster.h): a DNS label of at most this many characters. */
#define LMS_NODE_MAX 40
/* Room for any sandbox id and its NUL: "sbx_" NODE "_" and 16 hex digits. */
#define LMS_SANDBOX_ID_SIZE 64

/* prefix and 16 hex digits of randomness ("sbx_0123456789abcdef"): out holds at least strlen(prefix) + 17.
 * Where getrandom fails, a counter mixed with the clock keeps ids distinct within the process. */
void lms_random_id(char *out, const char *prefix);
