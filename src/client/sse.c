#include "client/sse.h"

#include <string.h>

#include "client/http.h"

void
lms_sse_init(struct lms_sse *p, size_t max_bytes, lms_sse_fn fn, void *userdata)
{
	memset(p, 0, sizeof(*p));
	p->fn = fn;
	p->userdata = userdata;
	p->max_bytes = max_bytes;
}

void
lms_sse_free(struct lms_sse *p)
{
	lms_buf_clear(&p->line);
	lms_buf_clear(&p->event);
	lms_buf_clear(&p->data);
}

bool
lms_sse_pending(const struct lms_sse *p)
{
	return p->line.len > 0 || p->have_data;
}

static int
dispatch(struct lms_sse *p, struct lms_error **err)
{
	int r = 0;
	if (p->have_data) {
		size_t len = p->data.len - 1; /* the last data line's LF is not part of the data */
		p->data.data[len] = '\0';
		r = p->fn(p->userdata, p->event.len > 0 ? p->event.data : "message", p->data.data, len, err);
	}
	lms_buf_clear(&p->event);
	lms_buf_clear(&p->data);
	p->have_data = false;
	return r;
}

/* One complete line (without its end). */
static int
line(struct lms_sse *p, const char *s, size_t len, struct lms_error **err)
{
	if (len == 0)
		return dispatch(p, err);
	if (s[0] == ':')
		return 0;
	const char *colon = memchr(s, ':', len);
	size_t name_len = colon ? (size_t)(colon - s) : len;
	const char *value = colon ? colon + 1 : s + len;
	size_t value_len = (size_t)(s + len - value);
	if (value_len > 0 && value[0] == ' ') {
		value++;
		value_len--;
	}
	if (name_len == 5 && memcmp(s, "event", 5) == 0) {
		lms_buf_clear(&p->event);
		lms_buf_append(&p->event, value, value_len);
	} else if (name_len == 4 && memcmp(s, "data", 4) == 0) {
		if (p->data.len + value_len + 1 > p->max_bytes)
			return lms_error_set(err, LMS_ERR_INVALID, 0,
					     "the daemon sent an event of more than %zu bytes of data", p->max_bytes);
		lms_buf_append(&p->data, value, value_len);
		lms_buf_append(&p->data, "\n", 1);
		p->have_data = true;
	}
	/* id, retry and unknown fields mean nothing to a client that does not reconnect. */
	return 0;
}

int
lms_sse_feed(struct lms_sse *p, const char *bytes, size_t len, struct lms_error **err)
{
	size_t i = 0;
	if (!p->started && len > 0) {
		/* A UTF-8 byte order mark may open the stream; it may arrive in pieces too, so only a whole one at
		 * the very start is skipped (the daemon never sends one). */
		if (len >= 3 && memcmp(bytes, "\xEF\xBB\xBF", 3) == 0)
			i = 3;
		p->started = true;
	}
	while (i < len) {
		if (p->after_cr && bytes[i] == '\n') {
			p->after_cr = false;
			i++;
			continue;
		}
		p->after_cr = false;
		/* The rest of this piece up to the next line end. */
		size_t end = i;
		while (end < len && bytes[end] != '\n' && bytes[end] != '\r')
			end++;
		if (p->line.len + (end - i) > p->max_bytes)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "the daemon sent a line of more than %zu bytes",
					     p->max_bytes);
		if (end == len) {
			lms_buf_append(&p->line, bytes + i, end - i);
			break;
		}
		int r;
		if (p->line.len > 0) {
			lms_buf_append(&p->line, bytes + i, end - i);
			r = line(p, p->line.data, p->line.len, err);
			lms_buf_clear(&p->line);
		} else {
			r = line(p, bytes + i, end - i, err);
		}
		if (r < 0)
			return -1;
		p->after_cr = bytes[end] == '\r';
		i = end + 1;
	}
	return 0;
}

int
lms_sse_on_data(void *userdata, const struct lms_client_response *resp, const char *data, size_t len,
		struct lms_error **err)
{
	struct lms_sse *sse = userdata;
	if (resp->content_type == NULL || strcmp(resp->content_type, "text/event-stream") != 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "the daemon answered with %s, not an event stream",
				     resp->content_type ? resp->content_type : "no content type");
	return lms_sse_feed(sse, data, len, err);
}
