#pragma once
/*
 * Whole directory trees handled through descriptors, never through path strings, so that a tree a
 * sandbox wrote (hostile: symbolic links anywhere, names of any bytes, any depth) can be copied or removed
 * by the daemon without following a link out of it.
 */
#include "core/error.h"

/* Deepest tree handled: each level holds two descriptors while it is walked. */
#define LMS_TREE_MAX_DEPTH 128

/* Copies what src_dir holds into dst_dir (which should be empty): directories, regular files (their
 * bytes, mode, owner, times and user.* and trusted.overlay.* attributes), symbolic links as links, FIFOs,
 * and overlayfs's whiteouts (character devices 0/0), so that a copy of an overlay's upper layer still
 * hides what it deleted; sockets and device nodes are left out. Hard links become separate files. */
int lms_tree_copy(int src_dir, int dst_dir, struct lms_error **err);

/* Removes `name` in dir and, when it is a directory, everything under it (rm -r without following links).
 * A name that does not exist is no error. */
int lms_tree_remove(int dir, const char *name, struct lms_error **err);
