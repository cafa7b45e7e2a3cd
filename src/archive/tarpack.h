#pragma once
/*
 * Packing a directory into a tar stream (pax), walked through descriptors: each name is opened under its
 * directory's descriptor without following a symbolic link (a link is stored as a link), so a tree that
 * changes during the walk can never lead it elsewhere. Regular files, directories and symbolic links are
 * stored; devices, FIFOs and sockets are left out, as are /proc and /sys file systems beneath it and
 * what the caller's identity cannot read (skipped, counted). Owners are stored as 0 (the unpacker keeps
 * none). No HTTP in here.
 */
#include "core/error.h"

struct lms_tarpack_stats {
	unsigned long long entries, bytes, skipped;
};

/* Writes the tar of dirfd's tree to out_fd (a pipe the reader drains) until its end. */
int lms_tar_pack(int dirfd, int out_fd, struct lms_tarpack_stats *stats, struct lms_error **err);
