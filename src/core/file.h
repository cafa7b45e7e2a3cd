#pragma once
#include <stddef.h>

#include "core/error.h"

/* Writes the whole string to an existing file (cgroup and /proc files: one write(2), no O_CREAT). */
int lms_file_write(const char *path, const char *text, struct lms_error **err);
/* Same, relative to a directory fd. */
int lms_file_write_at(int dirfd, const char *name, const char *text, struct lms_error **err);
/* Reads at most `max` bytes of a small file into a NUL-terminated string (caller frees). */
char *lms_file_read_at(int dirfd, const char *name, size_t max, struct lms_error **err);
/* Same, with the length in *len (the bytes may hold NULs). */
char *lms_file_read_len_at(int dirfd, const char *name, size_t max, size_t *len, struct lms_error **err);
/* Same, from an open descriptor (not closed); `name` is for messages. */
char *lms_file_read_fd(int fd, const char *name, size_t max, size_t *len, struct lms_error **err);
