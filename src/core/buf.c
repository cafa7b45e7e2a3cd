#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>

#include "core/alloc.h"

void
lms_buf_append(struct lms_buf *b, const void *data, size_t len)
{
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + len + 1)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
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

void
lms_buf_printf(struct lms_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *text = xvasprintf(fmt, ap);
	va_end(ap);
	lms_buf_append(b, text, strlen(text));
	free(text);
}
