/* A sandbox's audit log (history.h). */
#include "server/history.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/exec-json.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/fdio.h"
#include "core/log.h"
#include "core/utf8.h"
#include "sandbox/sandbox.h"

/* One record on disk at most this long (the summaries are bounded far below it): a longer line is not ours. */
#define MAX_RECORD (64u << 10)

struct lms_history {
	pthread_mutex_t lock;
	char *path;	 /* NULL: memory only */
	json_t *entries; /* the last LMS_HISTORY_MAX, oldest first */
	size_t in_file;	 /* records in the file, torn ones included */
};

static void
warn(const struct lms_history *h, const char *what)
{
	lms_log(LMS_LOG_WARNING, NULL, what, "path", h->path, "error", strerror(errno), NULL);
}

static void
keep(struct lms_history *h, json_t *entry)
{
	json_array_append_new(h->entries, entry);
	if (json_array_size(h->entries) > LMS_HISTORY_MAX)
		json_array_remove(h->entries, 0);
}

/* Rewrites the file with the entries kept: a crash leaves the old file or the new one. */
static void
compact(struct lms_history *h)
{
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", h->path);
	_cleanup_fd_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		warn(h, "history: could not rewrite the audit log");
		return;
	}
	size_t i;
	json_t *e;
	json_array_foreach(h->entries, i, e)
	{
		_cleanup_free_ char *line = json_dumps(e, LMS_JSON_FLAGS);
		if (line == NULL || lms_fd_write_all(fd, line, strlen(line)) < 0 || lms_fd_write_all(fd, "\n", 1) < 0) {
			warn(h, "history: could not rewrite the audit log");
			(void)unlink(tmp);
			return;
		}
	}
	if (rename(tmp, h->path) < 0) {
		warn(h, "history: could not rewrite the audit log");
		(void)unlink(tmp);
		return;
	}
	h->in_file = json_array_size(h->entries);
}

static void
load(struct lms_history *h)
{
	_cleanup_fd_ int fd = open(h->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			warn(h, "history: could not read the audit log");
		return;
	}
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_buf all = {0};
	/* Twice the kept entries of the longest records: the file is compacted before it grows past that. */
	if (lms_fd_read_to_end(fd, 2 * (size_t)LMS_HISTORY_MAX * MAX_RECORD, &all, "the audit log", &err) < 0) {
		lms_log(LMS_LOG_WARNING, NULL, "history: could not read the audit log", "path", h->path, "error",
			err->message, NULL);
		return;
	}
	bool torn = false;
	for (size_t at = 0; at < all.len;) {
		const char *line = all.data + at, *nl = memchr(line, '\n', all.len - at);
		if (nl == NULL) { /* the last record, cut short by a crash */
			torn = true;
			break;
		}
		json_t *e = json_loadb(line, (size_t)(nl - line), 0, NULL);
		h->in_file++;
		if (json_is_object(e))
			keep(h, e);
		else {
			json_decref(e);
			torn = true;
		}
		at = (size_t)(nl - all.data) + 1;
	}
	lms_buf_clear(&all);
	/* A torn tail would glue the next record onto it: start again from whole records. */
	if (torn)
		compact(h);
}

struct lms_history *
lms_history_open(const char *path)
{
	struct lms_history *h = xcalloc(1, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	h->entries = json_array();
	h->path = path ? xstrdup(path) : NULL;
	if (h->path != NULL)
		load(h);
	return h;
}

void
lms_history_free(struct lms_history *h)
{
	if (h == NULL)
		return;
	json_decref(h->entries);
	free(h->path);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

void
lms_history_add(struct lms_history *h, json_t *entry)
{
	_cleanup_free_ char *line = h->path ? json_dumps(entry, LMS_JSON_FLAGS) : NULL;
	pthread_mutex_lock(&h->lock);
	keep(h, entry);
	if (line != NULL) {
		_cleanup_free_ char *rec = xasprintf("%s\n", line);
		size_t n = strlen(rec);
		_cleanup_fd_ int fd = open(h->path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		/* One write: a crash leaves the record whole or torn at the end, never two records mixed. */
		if (fd < 0 || lms_fd_write_all(fd, rec, n) < 0)
			warn(h, "history: could not append to the audit log");
		else if (++h->in_file >= 2 * LMS_HISTORY_MAX)
			compact(h);
	}
	pthread_mutex_unlock(&h->lock);
}

json_t *
lms_history_json(struct lms_history *h, size_t limit)
{
	json_t *out = json_array();
	pthread_mutex_lock(&h->lock);
	size_t n = json_array_size(h->entries);
	for (size_t i = limit > 0 && limit < n ? n - limit : 0; i < n; i++)
		json_array_append(out, json_array_get(h->entries, i));
	pthread_mutex_unlock(&h->lock);
	return out;
}

/* A string of a client or a model, bounded and made UTF-8 for JSON. */
static json_t *
text(const char *s)
{
	size_t len = strlen(s), n;
	bool cut = len > LMS_HISTORY_TEXT;
	char *clean = lms_utf8_sanitize(s, cut ? LMS_HISTORY_TEXT : len, &n);
	json_t *out =
	    cut ? json_sprintf("%s[… %zu bytes omitted …]", clean, len - LMS_HISTORY_TEXT) : json_stringn(clean, n);
	free(clean);
	return out;
}

json_t *
lms_history_entry(const struct lms_history_call *c)
{
	char at[40];
	lms_rfc3339(c->started_s, at);
	json_t *args = json_object();
	if (c->command != NULL)
		json_object_set_new(args, "command", text(c->command));
	if (c->path != NULL)
		json_object_set_new(args, "path", text(c->path));
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s, s:I, s:o}", "at", at, "via", c->via, "tool", c->tool,
			 "arguments", args, "exit_code", c->exit_code >= 0 ? json_integer(c->exit_code) : json_null(),
			 "status", c->status ? c->status : "ok", "duration_ms", (json_int_t)(c->duration_ms + 0.5),
			 "bytes", c->bytes >= 0 ? json_integer(c->bytes) : json_null());
}

const char *
lms_history_status(const struct lms_sandbox_result *r)
{
	return r->timed_out	   ? "timed_out"
	       : r->oom_killed	   ? "oom_killed"
	       : r->cancelled	   ? "cancelled"
	       : r->exit_code == 0 ? "ok"
				   : "error";
}

char *
lms_history_argv(char *const *argv)
{
	if (argv && argv[0] && argv[1] && strcmp(argv[1], "-c") == 0 && argv[2] && !argv[3])
		return xstrdup(argv[2]); /* "cmd": the shell's script */
	struct lms_buf b = {0};
	for (size_t i = 0; argv && argv[i]; i++) {
		if (i > 0)
			lms_buf_append(&b, " ", 1);
		lms_buf_append(&b, argv[i], strlen(argv[i]));
	}
	lms_buf_append(&b, "", 1);
	return b.data;
}
