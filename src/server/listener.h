#pragma once
#include <stdbool.h>
#include <sys/socket.h>

#include "core/error.h"

/* Opens a listening TCP socket (O_CLOEXEC, SO_REUSEADDR) on listen_spec, "HOST:PORT" or "[V6]:PORT" (port 0
 * picks a free one). Sets *loopback, and *url (caller frees) to the address it is bound to, as
 * "http://127.0.0.1:8000". Returns the descriptor, or -1: LMS_ERR_INVALID for a spec that does not
 * resolve, LMS_ERR_SETUP when the socket cannot be bound; messages name --listen. */
int lms_listener_open(const char *listen_spec, bool *loopback, char **url, struct lms_error **err);

/* Whether sa is a loopback address (127/8, ::1, ::ffff:127.0.0.0/104). */
bool lms_listener_is_loopback(const struct sockaddr *sa);
