#pragma once
/*
 * Unpacking a tar stream (plain or gzip) into a directory, every entry made by hand under the
 * directory's descriptor, never by a path string from the host's root: a name that is absolute or has a
 * `..` component, a directory that leads out (through a symbolic link the archive or anyone else made),
 * a hard link to anything outside, a device node: each is refused with an error that names the entry.
 * Set-user-ID, set-group-ID bits are dropped, owners are not kept (everything belongs to the caller's
 * file identity), symbolic links are stored as they are (their targets are the reader's business:
 * the unpacker never follows one out). No HTTP in here: the files API and the images' layers use it.
 *
 * What was unpacked before an error stays.
 */
#include <stddef.h>

#include "core/error.h"

struct lms_untar_stats {
	unsigned long long entries, bytes;
};

/* From a descriptor (a pipe, a file), to its end. */
int lms_untar_fd(int dirfd, int fd, struct lms_untar_stats *stats, struct lms_error **err);
/* From memory (the fuzz target). */
int lms_untar_mem(int dirfd, const void *data, size_t len, struct lms_untar_stats *stats, struct lms_error **err);
