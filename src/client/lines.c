#include "client/lines.h"

#include <string.h>

void
lms_lines_init(struct lms_lines *p, size_t max_bytes, lms_lines_fn fn, void *userdata)
{
	memset(p, 0, sizeof(*p));
	p->fn = fn;
	p->userdata = userdata;
	p->max_bytes = max_bytes;
}

static void
deliver(struct lms_lines *p)
{
	if (p->overflow || p->line.len > p->max_bytes) {
		p->line.len = p->max_bytes;
		p->line.data[p->line.len] = '\0';
		p->fn(p->userdata, p->line.data, p->line.len, true);
	} else {
		if (p->line.len > 0 && p->line.data[p->line.len - 1] == '\r')
			p->line.data[--p->line.len] = '\0';
		p->fn(p->userdata, p->line.data ? p->line.data : "", p->line.len, false);
	}
	p->line.len = 0;
	if (p->line.data != NULL)
		p->line.data[0] = '\0';
	p->overflow = false;
}

void
lms_lines_feed(struct lms_lines *p, const char *bytes, size_t len)
{
	while (len > 0) {
		const char *lf = memchr(bytes, '\n', len);
		size_t n = lf != NULL ? (size_t)(lf - bytes) : len;
		if (!p->overflow) {
			/* One byte more than the bound is kept, for a CR that a CRLF line of max_bytes carries. */
			size_t room = p->max_bytes + 1 - p->line.len;
			if (n > room) {
				lms_buf_append(&p->line, bytes, room);
				p->overflow = true;
			} else {
				lms_buf_append(&p->line, bytes, n);
			}
		}
		if (lf == NULL)
			return;
		if (!p->overflow && p->line.len == p->max_bytes + 1 && p->line.data[p->max_bytes] == '\r')
			p->line.data[--p->line.len] = '\0'; /* max_bytes and its CRLF: not too long */
		deliver(p);
		bytes = lf + 1;
		len -= n + 1;
	}
}

void
lms_lines_end(struct lms_lines *p)
{
	if (p->line.len > 0 || p->overflow)
		deliver(p);
}

void
lms_lines_free(struct lms_lines *p)
{
	lms_buf_clear(&p->line);
}
