#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

int
lms_error_set(struct lms_error **err, enum lms_error_kind kind, int errnum, const char *fmt, ...)
{
	if (err == NULL || *err != NULL)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *what = xvasprintf(fmt, ap);
	va_end(ap);

	struct lms_error *e = xcalloc(1, sizeof(*e));
	e->kind = kind;
	e->errnum = errnum;
	if (errnum != 0) {
		e->message = xasprintf("%s: %s", what, strerror(errnum));
		free(what);
	} else {
		e->message = what;
	}
	*err = e;
	return -1;
}

int
lms_error_prefix(struct lms_error **err, const char *fmt, ...)
{
	if (err == NULL || *err == NULL)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *context = xvasprintf(fmt, ap);
	va_end(ap);
	char *joined = xasprintf("%s: %s", context, (*err)->message);
	free(context);
	free((*err)->message);
	(*err)->message = joined;
	return -1;
}

void
lms_error_free(struct lms_error *e)
{
	if (e == NULL)
		return;
	free(e->message);
	free(e);
}

const char *
lms_error_kind_name(enum lms_error_kind kind)
{
	switch (kind) {
	case LMS_ERR_INTERNAL:
		return "internal_error";
	case LMS_ERR_INVALID:
		return "invalid_request";
	case LMS_ERR_NOT_FOUND:
		return "not_found";
	case LMS_ERR_FORBIDDEN:
		return "forbidden";
	case LMS_ERR_UNSUPPORTED:
		return "unsupported";
	case LMS_ERR_SETUP:
		return "sandbox_setup_failed";
	case LMS_ERR_UNREACHABLE:
		return "backend_unavailable";
	case LMS_ERR_TIMEOUT:
		return "backend_timeout";
	case LMS_ERR_BAD_GATEWAY:
		return "bad_backend_response";
	case LMS_ERR_BACKEND:
		return "backend_error";
	case LMS_ERR_BUSY:
		return "too_many_requests";
	case LMS_ERR_CANCELLED:
		return "cancelled";
	case LMS_ERR_CONFLICT:
		return "conflict";
	}
	return "internal_error";
}
