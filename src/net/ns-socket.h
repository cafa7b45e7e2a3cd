#pragma once
/*
 * A TCP connection to 127.0.0.1:PORT of another network namespace (a sandbox's), made from the daemon:
 * the socket is created by a short-lived thread that enters that namespace and then ends, so that no
 * thread of the daemon ever stays in it; a socket keeps the namespace it was made in for its whole life.
 * Only the namespace's own loopback is ever connected to (docs/SECURITY.md, "The port relay").
 */
#include <stdint.h>

#include "core/error.h"

/* A socket of the network namespace of the process that pidfd refers to (setns on a pidfd: a pid reused
 * by another process can never be entered instead), connected to its 127.0.0.1:port within timeout_ms.
 * Non-blocking and close-on-exec. LMS_ERR_UNREACHABLE when nothing listens there (refused, or the
 * connect timed out), LMS_ERR_INTERNAL when the namespace cannot be entered. */
int lms_netns_connect_loopback(int pidfd, uint16_t port, int timeout_ms, struct lms_error **err);
