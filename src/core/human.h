#pragma once
/* A byte count for people: "12.3 MiB". */

/* Writes "N.N KiB|MiB|GiB" into out. */
void lms_human_bytes(unsigned long long bytes, char out[32]);
