#pragma once
/*
 * Allocation that cannot fail (a failed allocation aborts: STYLE.md), and the cleanup helpers that
 * tie a resource's life to a scope: `_cleanup_free_ char *p = ...; return steal_pointer(&p);`.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
__attribute__((format(printf, 1, 2))) char *xasprintf(const char *fmt, ...);
__attribute__((format(printf, 1, 0))) char *xvasprintf(const char *fmt, va_list ap);

static inline void
lms_freep(void *p)
{
	free(*(void **)p);
}

static inline void
lms_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void
lms_fclosep(FILE **f)
{
	if (*f != NULL)
		fclose(*f);
}

/* Frees a NULL-terminated array of strings and the array itself. */
void lms_strv_free(char **v);
static inline void
lms_strv_freep(char ***v)
{
	lms_strv_free(*v);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(lms_freep)
#define _cleanup_fd_ _cleanup_(lms_closep)
#define _cleanup_file_ _cleanup_(lms_fclosep)
#define _cleanup_strv_ _cleanup_(lms_strv_freep)

/* Takes ownership out of a cleanup variable. Type-checked: the result has the pointee's type. */
#define steal_pointer(pp)                                                                                              \
	({                                                                                                             \
		__typeof__(*(pp)) _stolen = *(pp);                                                                     \
		*(pp) = NULL;                                                                                          \
		_stolen;                                                                                               \
	})

static inline int
steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}
