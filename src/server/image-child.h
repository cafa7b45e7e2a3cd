#pragma once
/*
 * The daemon's imports and pulls (PUT /v1/images/{name}, POST /v1/images/pull) run in a child process,
 * `lm-sandbox-client image import|pull --json` beside the daemon: the daemon links neither libcrypto nor
 * (until the gateway's first call) libcurl, a hostile archive's or registry's worst costs that process
 * alone, and the store stays written by one program (image/import.c).
 */
#include <stdatomic.h>

#include "core/error.h"

/* Runs `lm-sandbox-client image ARGS` (with --json and --state-dir STATE_DIR added), its standard input
 * in_fd (-1: /dev/null), and waits. 0 and *name (the stored image's, to free) when it succeeded; else -1
 * with the child's own error (its kind and message) or why it could not run. The child is killed, and the
 * error LMS_ERR_CANCELLED, when client_fd (the request's socket, or -1) hangs up or *stopping turns true.
 * Thread-safe (posix_spawn). */
int lms_image_child_run(const char *state_dir, const char *const *args, int in_fd, int client_fd, atomic_bool *stopping,
			char **name, struct lms_error **err);
