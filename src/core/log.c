/*
 * JSON lines built by hand on the stack rather than with jansson: jansson allocates for every value
 * and formats numbers and times through stdio and libc's locale and time-zone code, which take locks;
 * a lock held by another thread at fork() stays held forever in the child. This file calls no such
 * thing (clock_gettime and write only; the calendar and the numbers are plain arithmetic), so a line
 * can be written from any process, between fork and exec, or from a signal handler (log.h).
 */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/utf8.h"

int lms_log_threshold = LMS_LOG_INFO;
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = {"debug", "info", "warning", "error"};

/* Room kept at the end of a line for what closes it: "…" and '"' after a cut value, then "}\n". */
#define RESERVE 8

struct line {
	char buf[LMS_LOG_LINE_MAX];
	size_t len;
	bool full; /* a value was cut or a field left out: no more fields */
};

static bool
put(struct line *l, const char *s, size_t n)
{
	if (l->len + n > sizeof(l->buf) - RESERVE)
		return false;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	return true;
}

/* Into the reserve: only for the few bytes that close a line. */
static void
put_closing(struct line *l, const char *s)
{
	size_t n = strlen(s);
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static size_t
format_uint(char *out, unsigned long long v, int min_digits)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0 || n < min_digits);
	for (int i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return (size_t)n;
}

/*
 * A JSON string: quotes, backslashes and control characters escaped, each invalid UTF-8 sequence
 * replaced by U+FFFD (as lms_utf8_sanitize does). With `cut`, a string that does not fit is cut at a
 * character boundary and ends in "…"; without, false and nothing kept.
 */
static bool
put_string(struct line *l, const char *s, size_t len, bool cut)
{
	static const char hex[] = "0123456789abcdef";
	size_t mark = l->len;
	if (!put(l, "\"", 1))
		return false;
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		char esc[8];
		const char *unit = esc;
		size_t n, bad = 0, used;
		unsigned char c = p[i];
		if (c == '"' || c == '\\') {
			esc[0] = '\\', esc[1] = (char)c, n = 2, used = 1;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			esc[0] = '\\', esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't', n = 2, used = 1;
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4], esc[5] = hex[c & 15], n = 6, used = 1;
		} else if ((used = lms_utf8_sequence(p + i, len - i, &bad)) > 0) {
			unit = s + i, n = used;
		} else {
			unit = "\xEF\xBF\xBD", n = 3, used = bad;
		}
		if (!put(l, unit, n)) {
			if (!cut) {
				l->len = mark;
				return false;
			}
			put_closing(l, "\xE2\x80\xA6\"");
			l->full = true;
			return true;
		}
		i += used;
	}
	if (!put(l, "\"", 1))
		put_closing(l, "\"");
	return true;
}

static bool
put_cstring(struct line *l, const char *s, size_t max_len, bool cut)
{
	if (s == NULL)
		return put(l, "null", 4);
	return put_string(l, s, max_len ? strnlen(s, max_len) : strlen(s), cut);
}

static bool
put_int(struct line *l, long long v)
{
	char tmp[24];
	size_t n = 0;
	if (v < 0)
		tmp[n++] = '-';
	n += format_uint(tmp + n, v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v, 1);
	return put(l, tmp, n);
}

static bool
put_real(struct line *l, double v)
{
	if (v != v || v > 1e300 || v < -1e300)
		return put(l, "null", 4);
	char tmp[40];
	size_t n = 0;
	if (v < 0) {
		tmp[n++] = '-';
		v = -v;
	}
	if (v >= 1e15) /* past what 3 decimals of a 64-bit integer hold: the integer part alone */
		return put(l, tmp, n + format_uint(tmp + n, (unsigned long long)v, 1));
	unsigned long long milli = (unsigned long long)(v * 1000 + 0.5);
	n += format_uint(tmp + n, milli / 1000, 1);
	tmp[n++] = '.';
	n += format_uint(tmp + n, milli % 1000, 3);
	return put(l, tmp, n);
}

/* ,"key": — or false with nothing kept, when the line has no room for it. */
static bool
begin_field(struct line *l, const char *key)
{
	if (l->full)
		return false;
	size_t mark = l->len;
	if (put(l, ",", 1) && put_cstring(l, key, 0, false) && put(l, ":", 1))
		return true;
	l->len = mark;
	l->full = true;
	return false;
}

static void
end_field(struct line *l, size_t mark, bool ok)
{
	if (!ok) {
		l->len = mark;
		l->full = true;
	}
}

static void
add_string(struct line *l, const char *key, const char *value, size_t max_len)
{
	size_t mark = l->len;
	if (begin_field(l, key))
		end_field(l, mark, put_cstring(l, value, max_len, true));
}

/* "2025-01-31T12:00:00.123Z" from the Unix time: days to a civil date as in Howard Hinnant's
 * chrono-compatible algorithms (days_from_civil's inverse), with no time-zone code involved. */
static size_t
format_time(char *out)
{
	struct timespec ts = {0};
	clock_gettime(CLOCK_REALTIME, &ts); /* cannot fail with a valid clock and pointer */
	long long secs = ts.tv_sec, days = secs / 86400, rem = secs % 86400;
	if (rem < 0)
		rem += 86400, days--;
	long long z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
	long long doe = z - era * 146097;
	long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
	long long day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
	long long year = yoe + era * 400 + (month <= 2);
	size_t n = format_uint(out, (unsigned long long)(year < 0 ? 0 : year), 4);
	const unsigned long long parts[] = {(unsigned long long)month,	    (unsigned long long)day,
					    (unsigned long long)rem / 3600, (unsigned long long)rem / 60 % 60,
					    (unsigned long long)rem % 60,   (unsigned long long)ts.tv_nsec / 1000000};
	const char seps[] = "--T::.";
	for (size_t i = 0; i < 6; i++) {
		out[n++] = seps[i];
		n += format_uint(out + n, parts[i], i == 5 ? 3 : 2);
	}
	out[n++] = 'Z';
	return n;
}

static void
begin_line(struct line *l, enum lms_log_level level, const char *request_id, const char *msg)
{
	char stamp[40];
	size_t n = format_time(stamp);
	l->len = 0;
	l->full = false;
	put(l, "{\"time\":\"", 9);
	put(l, stamp, n);
	put(l, "\",\"level\":", 10);
	put_cstring(l, lms_log_level_name(level), 0, false);
	put(l, ",\"msg\":", 7);
	put_cstring(l, msg, 0, true);
	if (request_id != NULL)
		add_string(l, "request_id", request_id, 0);
}

static void
finish_line(struct line *l)
{
	put_closing(l, "}\n");
	/* The log is where failures are reported: a line that cannot be written is dropped. */
	(void)lms_fd_write_all(__atomic_load_n(&log_fd, __ATOMIC_RELAXED), l->buf, l->len);
}

void
lms_log_emit(enum lms_log_level level, const char *request_id, const char *msg, ...)
{
	int saved = errno;
	struct line l;
	begin_line(&l, level, request_id, msg);
	va_list ap;
	va_start(ap, msg);
	for (const char *key; (key = va_arg(ap, const char *)) != NULL;)
		add_string(&l, key, va_arg(ap, const char *), 0);
	va_end(ap);
	finish_line(&l);
	errno = saved;
}

void
lms_log_emit_fields(enum lms_log_level level, const char *request_id, const char *msg,
		    const struct lms_log_field *fields, size_t n)
{
	int saved = errno;
	struct line l;
	begin_line(&l, level, request_id, msg);
	for (size_t i = 0; i < n; i++) {
		const struct lms_log_field *f = &fields[i];
		size_t mark = l.len;
		if (f->type == LMS_LOG_T_STR)
			add_string(&l, f->key, f->str, f->max_len);
		else if (begin_field(&l, f->key))
			end_field(&l, mark, f->type == LMS_LOG_T_INT ? put_int(&l, f->num) : put_real(&l, f->real));
	}
	finish_line(&l);
	errno = saved;
}

void
lms_log_set_level(enum lms_log_level level)
{
	__atomic_store_n(&lms_log_threshold, (int)level, __ATOMIC_RELAXED);
}

int
lms_log_level_parse(const char *name)
{
	for (size_t i = 0; name && i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *
lms_log_level_name(enum lms_log_level level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "error";
	return level_names[level];
}

int
lms_log_set_fd(int fd)
{
	return __atomic_exchange_n(&log_fd, fd, __ATOMIC_RELAXED);
}
