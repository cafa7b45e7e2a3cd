#pragma once
/*
 * Directories as tar streams, for `cp` (API.md: a directory travels as application/x-tar). Packing and
 * unpacking each run in a child process joined to the HTTP transfer by a pipe, so that neither side ever
 * holds more than a pipe's worth: libarchive pulls what it reads and pushes what it writes, libcurl does the
 * same the other way. Unpacking also changes its working directory (libarchive's safety checks work on
 * relative names), which a process of its own may do.
 *
 * What comes from a sandbox is hostile: no absolute name, no `..`, nothing written through a symbolic link
 * (ARCHIVE_EXTRACT_SECURE_*), only files, directories and symbolic links (device nodes and fifos are
 * skipped with a warning), a hard link only to a name inside, no set-uid, set-gid or sticky bit, no owner.
 */
#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"

struct lms_tar_child {
	pid_t pid;
	int fd;	      /* our end of the data pipe: read a pack, write an unpack */
	int error_fd; /* the child's error message comes back here */
};

/* Packs the local directory `path`: the entries' names are `prefix/...` ("": its content, unprefixed). */
int lms_tar_spawn_pack(const char *path, const char *prefix, struct lms_tar_child *child, struct lms_error **err);

/* Unpacks into the existing local directory `dir` what is written to child->fd. */
int lms_tar_spawn_unpack(const char *dir, struct lms_tar_child *child, struct lms_error **err);

/* Closes our end and waits. 0 when the child did its work; -1 with its own message otherwise. */
int lms_tar_wait(struct lms_tar_child *child, struct lms_error **err);

/* One regular file as a tar stream on fd (`docker cp ID:/file -`): begin with its size, write exactly that
 * many bytes, end. */
struct lms_tar_file;
struct lms_tar_file *lms_tar_file_begin(int fd, const char *name, int64_t size, struct lms_error **err);
int lms_tar_file_write(struct lms_tar_file *t, const void *data, size_t len, struct lms_error **err);
/* Ends and frees t (also after an error). */
int lms_tar_file_end(struct lms_tar_file *t, struct lms_error **err);
