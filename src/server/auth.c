/* The API token: `Authorization: Bearer <token>`, compared in constant time. */
#include "server/auth.h"

#include <string.h>
#include <strings.h>

bool
lms_auth_ok(const char *token, const char *authorization)
{
	if (token == NULL)
		return true;
	if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
		return false;
	const char *given = authorization + 7;
	size_t gl = strlen(given), wl = strlen(token);
	/* Constant time in the token's content: every byte of the longer one is looked at. */
	unsigned char diff = gl != wl;
	for (size_t i = 0; i < (gl > wl ? gl : wl); i++)
		diff |= (unsigned char)(i < gl ? given[i] : 0) ^ (unsigned char)(i < wl ? token[i] : 0);
	return diff == 0;
}
