#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>

#include "core/alloc.h"

/* Room for `extra` more bytes and the terminator. */
static void
reserve(struct lms_buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void
lms_buf_append(struct lms_buf *b, const void *data, size_t len)
{
	reserve(b, len);
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void
lms_buf_printf(struct lms_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

char *
lms_buf_steal(struct lms_buf *b, size_t *len)
{
	if (b->data == NULL)
		lms_buf_append(b, "", 0);
	char *d = b->data;
	if (len != NULL)
		*len = b->len;
	*b = (struct lms_buf){0};
	return d;
}

void
lms_buf_clear(struct lms_buf *b)
{
	free(b->data);
	*b = (struct lms_buf){0};
}
