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
 *
 * An image layer (lms_untar_opts) adds: caps on entries, name length and bytes written (a decompression
 * bomb stops at the cap), zstd, device nodes skipped rather than refused (a root file system's /dev is
 * the sandbox's own), owners kept as the sandbox will see them, and OCI whiteouts made overlayfs's.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/error.h"

struct lms_untar_stats {
	unsigned long long entries, bytes;
	unsigned long long skipped; /* device nodes and sockets left out */
};

/* What an image layer needs beyond the files API's defaults (all zero: lms_untar_fd's behaviour). */
struct lms_untar_opts {
	unsigned long long max_entries; /* 0: no cap */
	unsigned long long max_bytes;	/* file bytes written, all entries together; 0: no cap */
	size_t max_name;		/* longest entry name; 0: PATH_MAX */
	/* OCI whiteouts: `.wh.NAME` becomes an overlayfs whiteout (a 0/0 character device, which the kernel
	 * lets anyone make) and `.wh..wh..opq` the user.overlay.opaque xattr of its directory. */
	bool whiteouts;
	bool skip_devices; /* device nodes are skipped (stats->skipped) instead of refused */
	/* Owners: uid and gid u become owner_base + u (u < owner_count; else owner_base): the ids of the
	 * sandbox's user namespace, so that its root owns what the image's root owned. */
	bool map_owners;
	uid_t owner_base;
	uid_t owner_count;
	/* Every compressed byte read, in order (the layer's digest). */
	void (*on_read)(void *userdata, const void *data, size_t len);
	void *userdata;
};

/* From a descriptor (a pipe, a file), to its end. */
int lms_untar_fd(int dirfd, int fd, struct lms_untar_stats *stats, struct lms_error **err);
/* Same, with an image layer's options. */
int lms_untar_fd_opts(int dirfd, int fd, const struct lms_untar_opts *opts, struct lms_untar_stats *stats,
		      struct lms_error **err);
/* From memory (the fuzz target). */
int lms_untar_mem(int dirfd, const void *data, size_t len, struct lms_untar_stats *stats, struct lms_error **err);
