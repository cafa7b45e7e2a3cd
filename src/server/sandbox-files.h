#pragma once
/*
 * A persistent sandbox's files, reached from the daemon (API.md, "Persistent sandboxes", Files): every
 * path resolved by the kernel inside the sandbox's root (core/inroot.h, RESOLVE_IN_ROOT, given the O_PATH
 * descriptor of its PID 1's root), every call made with the sandbox's root user's file identity on the
 * calling thread only (core/fsid.h): what a command in the sandbox cannot read or write, neither can
 * these. Uploads go to a temporary name in the target's directory and are renamed over it at the end; a
 * directory travels as a tar stream through a pipe and a thread of its own. No HTTP in here (the routes
 * are routes-files.c). Failures carry the errno, which the routes turn into a status.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/fsid.h"

/* The sandbox's file identity on this thread (lms_fsid_leave gives the daemon's back). */
int lms_files_enter(struct lms_fsid *saved, struct lms_error **err);

/* An O_PATH descriptor of path (links followed, inside the root) and its stat. Enters itself. */
int lms_files_open(int rootfd, const char *path, struct stat *st, struct lms_error **err);
/* The same file opened for reading (through /proc/self/fd: the same inode, the permissions checked now). */
int lms_files_reopen(int opath_fd, int flags, struct lms_error **err);
/* {"entries": [{"name", "type", "size", "mode", "mtime"}]} of an O_PATH directory, sorted by name (at most
 * LMS_FILES_MAX_ENTRIES; "truncated": true past them). Call within enter. */
#define LMS_FILES_MAX_ENTRIES 100000
json_t *lms_files_list(int opath_dir, struct lms_error **err);
/* Removes path (a directory: empty, or with recursive everything in it); the top cannot be. Enters itself. */
int lms_files_remove(int rootfd, const char *path, bool recursive, struct lms_error **err);

/* An upload of one file. begin makes the missing parents (0755) and a temporary file beside the target;
 * commit sets the mode and renames it over the target; abort removes it. All enter themselves. */
struct lms_upload {
	int dirfd, fd;
	char tmp[40];
	char *name;
	unsigned mode;
	uint64_t bytes;
};
#define LMS_UPLOAD_MODE_DEFAULT 0644u
int lms_upload_begin(struct lms_upload *up, int rootfd, const char *path, unsigned mode, struct lms_error **err);
int lms_upload_write(struct lms_upload *up, const char *data, size_t len, struct lms_error **err);
int lms_upload_commit(struct lms_upload *up, struct lms_error **err);
void lms_upload_abort(struct lms_upload *up);

/* A tar stream unpacked into directory path (made where missing) by a thread that reads a pipe. feed
 * blocks while the unpacker is behind; it fails once the unpacker has stopped (finish says why). */
struct lms_untar_job;
struct lms_untar_job *lms_untar_start(int rootfd, const char *path, struct lms_error **err);
int lms_untar_feed(struct lms_untar_job *j, const char *data, size_t len);
/* Ends the stream, waits for the unpacker, frees j: 0, or its error. */
int lms_untar_finish(struct lms_untar_job *j, unsigned long long *entries, struct lms_error **err);

/* A directory packed into a tar stream by a thread that writes a pipe: read lms_tarout_fd to its end,
 * then lms_tarout_end says whether the stream was whole. Takes opath_dir. */
struct lms_tarout;
struct lms_tarout *lms_tarout_start(int opath_dir, struct lms_error **err);
int lms_tarout_fd(const struct lms_tarout *t);
int lms_tarout_end(struct lms_tarout *t, struct lms_error **err);
void lms_tarout_free(struct lms_tarout *t);
