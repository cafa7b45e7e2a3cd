#pragma once
/*
 * Returns the path of the executable `name` in the directory of this process's own executable
 * (/proc/self/exe): "/usr/local/bin/lm-sandbox-serve" beside "/usr/local/bin/lm-sandbox". The caller
 * frees it. NULL with errno set when there is no such executable (ENOENT, EACCES) or /proc/self/exe
 * cannot be read. Allocates: not for a child between fork and exec of a threaded process.
 */
char *lms_self_sibling(const char *name);
