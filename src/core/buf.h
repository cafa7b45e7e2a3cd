#pragma once
/* A growable byte buffer. Always NUL-terminated after its `len` bytes, so text can be used as a string. */
#include <stddef.h>

struct lms_buf {
	char *data; /* NULL until the first append */
	size_t len;
	size_t cap;
};

void lms_buf_append(struct lms_buf *b, const void *data, size_t len);
/* Returns the data (caller frees) and leaves the buffer empty. Never NULL. */
char *lms_buf_steal(struct lms_buf *b, size_t *len);
void lms_buf_clear(struct lms_buf *b);
/* Appends printf-formatted text. */
__attribute__((format(printf, 2, 3))) void lms_buf_printf(struct lms_buf *b, const char *fmt, ...);
