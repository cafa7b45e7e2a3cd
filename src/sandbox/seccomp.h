#pragma once
/*
 * The seccomp filter every sandboxed process runs under (docs/SECURITY.md lists what it denies).
 * Compiled once with libseccomp and exported to a plain BPF program, so that loading it in the child
 * is one prctl(2): no allocation, no library call after fork.
 */
#include <linux/filter.h>

#include "core/error.h"

/* Returns the compiled program (owned by the module, valid until exit). Not thread-safe on first call. */
const struct sock_fprog *lms_seccomp_program(struct lms_error **err);

/* The names of the system calls the filter denies with EPERM, NULL-terminated (for docs and tests). */
extern const char *const lms_seccomp_denied[];
/* Those it answers with ENOSYS (Linux AIO), NULL-terminated. */
extern const char *const lms_seccomp_enosys[];
