#pragma once
#include <stdbool.h>

/* Whether a request with this Authorization header value (NULL: none) may pass when the server's token
 * is `token` (NULL: no token configured, every request passes). Constant time in the token's bytes. */
bool lms_auth_ok(const char *token, const char *authorization);
