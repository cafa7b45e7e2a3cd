/*
 * `lm-sandbox sandbox cp SRC DST`, as `docker cp`: one side ID:PATH, the other a local path or `-` (a tar
 * stream). A file travels as its bytes (PUT/GET /v1/sandboxes/{id}/files/{path}), a directory as a tar stream
 * (Content-Type / Accept: application/x-tar); both stream, never whole in memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/commands.h"
#include "client/tar.h"
#include "core/alloc.h"
#include "core/fdio.h"

#define TAR_TYPE "application/x-tar"
#define DEFAULT_DIR "/work" /* where a relative PATH of ID:PATH is: the sandbox's working directory */

struct place {
	bool remote;
	bool stdio; /* "-" */
	char *id;
	char *path;	 /* without a trailing "/" or "/.": "/work/x", "/", "out" */
	bool dir_syntax; /* ended in "/": must be a directory */
	bool content;	 /* ended in "/.": a directory's content, not the directory */
};

static void
place_free(struct place *p)
{
	free(p->id);
	free(p->path);
}

static void
parse_place(const char *arg, struct place *p)
{
	memset(p, 0, sizeof(*p));
	const char *colon = strchr(arg, ':');
	const char *slash = strchr(arg, '/');
	const char *path = arg;
	/* ID:PATH when a colon comes before any slash (docker's rule: ./a:b is a local file). */
	if (colon != NULL && colon != arg && (slash == NULL || colon < slash)) {
		p->remote = true;
		p->id = xstrndup(arg, (size_t)(colon - arg));
		path = colon + 1;
	} else if (strcmp(arg, "-") == 0) {
		p->stdio = true;
		p->path = xstrdup("-");
		return;
	}
	_cleanup_free_ char *full =
	    p->remote && path[0] != '/' ? xasprintf("%s%s%s", DEFAULT_DIR, path[0] ? "/" : "", path) : xstrdup(path);
	size_t len = strlen(full);
	if (len >= 2 && strcmp(full + len - 2, "/.") == 0) {
		p->content = true;
		len -= 2;
	} else if (strcmp(full, ".") == 0) {
		p->content = true;
	}
	if (len > 0 && full[len - 1] == '/')
		p->dir_syntax = true;
	while (len > 1 && full[len - 1] == '/')
		len--;
	p->path = xstrndup(full, len ? len : 1);
	if (len == 0)
		p->path[0] = p->remote ? '/' : '.';
}

static char *
base_name(const char *path)
{
	_cleanup_free_ char *copy = xstrdup(path);
	return xstrdup(basename(copy));
}

static char *
files_url(const struct place *p, const char *path, const char *query)
{
	_cleanup_free_ char *id = lms_client_escape(p->id, false);
	_cleanup_free_ char *esc = lms_client_escape(path, true);
	return xasprintf("/v1/sandboxes/%s/files%s%s%s", id, esc[0] == '/' ? "" : "/", esc, query ? query : "");
}

/* ---- what a remote path is ---- */

enum kind { ABSENT, FILE_KIND, DIR_KIND };

static int
stop_at_once(void *userdata, const struct lms_client_response *resp, const char *data, size_t len,
	     struct lms_error **err)
{
	(void)userdata, (void)resp, (void)data, (void)len, (void)err;
	return 1;
}

/* A GET of the path, stopped at its first byte: a directory answers with its JSON listing, a file with its
 * bytes, a missing path with 404. */
static int
remote_kind(struct lms_client *c, const struct place *p, const char *path, enum kind *kind, struct lms_error **err)
{
	_cleanup_free_ char *url = files_url(p, path, NULL);
	_cleanup_free_ char *what = xasprintf("%s:%s", p->id, path);
	struct lms_client_request rq = {.method = "GET", .path = url, .body_fd = -1, .on_data = stop_at_once};
	struct lms_client_response resp;
	int r = lms_client_call(c, &rq, &resp, err);
	char code[64];
	if (r < 0)
		;
	else if (resp.status == 200)
		*kind = resp.content_type && strcmp(resp.content_type, "application/json") == 0 ? DIR_KIND : FILE_KIND;
	/* A missing file; a missing route (an older daemon) is said by the call that follows. */
	else if (resp.status == 404 &&
		 strcmp(lms_client_error_code(&resp, code, sizeof(code)), "sandbox_not_found") != 0)
		*kind = ABSENT;
	else
		r = lms_client_api_error(c, &resp, what, err);
	lms_client_response_clear(&resp);
	return r;
}

/* ---- in ---- */

static int
put(struct lms_client *c, const struct place *dst, const char *path, const char *query, const char *type, int fd,
    int64_t size, struct lms_error **err)
{
	_cleanup_free_ char *url = files_url(dst, path, query);
	_cleanup_free_ char *what = xasprintf("copy to %s:%s", dst->id, path);
	struct lms_client_request rq = {
	    .method = "PUT", .path = url, .content_type = type, .body_fd = fd, .body_size = size};
	struct lms_client_response resp;
	int r = lms_client_call(c, &rq, &resp, err);
	if (r == 0 && (resp.status < 200 || resp.status > 299))
		r = lms_client_api_error(c, &resp, what, err);
	lms_client_response_clear(&resp);
	return r;
}

static int
copy_in(struct lms_client *c, const struct place *src, const struct place *dst, struct lms_error **err)
{
	if (src->stdio)
		return put(c, dst, dst->path, NULL, TAR_TYPE, STDIN_FILENO, -1, err);
	struct stat st;
	if (stat(src->path, &st) < 0)
		return lms_error_set(err, LMS_ERR_INVALID, errno, "%s", src->path);
	enum kind kind = ABSENT;
	if (remote_kind(c, dst, dst->path, &kind, err) < 0)
		return -1;
	_cleanup_free_ char *name = base_name(src->path);
	if (S_ISREG(st.st_mode)) {
		_cleanup_fd_ int fd = open(src->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return lms_error_set(err, LMS_ERR_INVALID, errno, "open %s", src->path);
		_cleanup_free_ char *target =
		    kind == DIR_KIND || dst->dir_syntax
			? xasprintf("%s%s%s", dst->path, strcmp(dst->path, "/") ? "/" : "", name)
			: xstrdup(dst->path);
		_cleanup_free_ char *mode = xasprintf("?mode=%04o", (unsigned)(st.st_mode & 0777));
		return put(c, dst, target, mode, "application/octet-stream", fd, (int64_t)st.st_size, err);
	}
	if (!S_ISDIR(st.st_mode))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s is neither a file nor a directory", src->path);
	if (kind == FILE_KIND)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "cannot copy the directory %s onto the file %s:%s",
				     src->path, dst->id, dst->path);
	struct lms_tar_child child;
	if (lms_tar_spawn_pack(src->path, kind == DIR_KIND && !src->content ? name : "", &child, err) < 0)
		return -1;
	int r = put(c, dst, dst->path, NULL, TAR_TYPE, child.fd, -1, err);
	int w = lms_tar_wait(&child, r < 0 ? NULL : err);
	return r < 0 || w < 0 ? -1 : 0;
}

/* ---- out ---- */

struct sink {
	const struct place *src, *dst;
	bool started;
	/* a tar stream: unpacked by a child, or passed to stdout */
	struct lms_tar_child child;
	int out_fd;
	/* a file: a temporary beside its target, renamed at the end; or wrapped as tar on stdout */
	char *target, *temp;
	struct lms_tar_file *tar;
	FILE *spool; /* stdout as tar, size unknown: the bytes wait here for their count */
};

static int
local_dir_target(struct sink *s, struct lms_error **err)
{
	struct stat st;
	const char *dst = s->dst->path;
	_cleanup_free_ char *name = base_name(s->src->path);
	if (stat(dst, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return lms_error_set(err, LMS_ERR_INVALID, 0,
					     "cannot copy the directory %s:%s onto the file %s", s->src->id,
					     s->src->path, dst);
		s->target = s->src->content ? xstrdup(dst) : xasprintf("%s/%s", dst, name);
	} else if (errno == ENOENT) {
		s->target = xstrdup(dst);
	} else {
		return lms_error_set(err, LMS_ERR_INVALID, errno, "%s", dst);
	}
	if (mkdir(s->target, 0777) < 0 && errno != EEXIST)
		return lms_error_set(err, LMS_ERR_INVALID, errno, "mkdir %s", s->target);
	return 0;
}

static int
local_file_target(struct sink *s, struct lms_error **err)
{
	struct stat st;
	const char *dst = s->dst->path;
	_cleanup_free_ char *name = base_name(s->src->path);
	if (stat(dst, &st) == 0 && S_ISDIR(st.st_mode))
		s->target = xasprintf("%s/%s", dst, name);
	else if (s->dst->dir_syntax)
		return lms_error_set(err, LMS_ERR_INVALID, ENOENT, "the directory %s", dst);
	else
		s->target = xstrdup(dst);
	_cleanup_free_ char *copy = xstrdup(s->target);
	s->temp = xasprintf("%s/.%s.lms-XXXXXX", dirname(copy), name);
	int fd = mkostemp(s->temp, O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		free(s->temp);
		s->temp = NULL;
		return lms_error_set(err, LMS_ERR_INVALID, e, "create a file beside %s", s->target);
	}
	s->out_fd = fd;
	return 0;
}

/* At the first byte: a tar stream is a directory, anything else a file's bytes. */
static int
start_sink(struct sink *s, const struct lms_client_response *resp, struct lms_error **err)
{
	s->started = true;
	bool tar = resp->content_type != NULL && strcmp(resp->content_type, TAR_TYPE) == 0;
	if (s->dst->stdio && tar) {
		s->out_fd = STDOUT_FILENO;
		return 0;
	}
	if (s->dst->stdio) {
		_cleanup_free_ char *name = base_name(s->src->path);
		if (resp->content_length < 0) {
			if ((s->spool = tmpfile()) == NULL)
				return lms_error_set(err, LMS_ERR_INTERNAL, errno, "tmpfile");
			return 0;
		}
		s->tar = lms_tar_file_begin(STDOUT_FILENO, name, resp->content_length, err);
		return s->tar ? 0 : -1;
	}
	if (!tar)
		return local_file_target(s, err);
	if (local_dir_target(s, err) < 0)
		return -1;
	if (lms_tar_spawn_unpack(s->target, &s->child, err) < 0)
		return -1;
	s->out_fd = s->child.fd;
	return 0;
}

static int
on_data(void *userdata, const struct lms_client_response *resp, const char *data, size_t len, struct lms_error **err)
{
	struct sink *s = userdata;
	if (!s->started && start_sink(s, resp, err) < 0)
		return -1;
	if (s->tar != NULL)
		return lms_tar_file_write(s->tar, data, len, err);
	if (s->spool != NULL)
		return fwrite(data, 1, len, s->spool) == len ? 0 : lms_error_set(err, LMS_ERR_INTERNAL, errno, "spool");
	if (lms_fd_write_all(s->out_fd, data, len) == 0)
		return 0;
	if (errno == EPIPE && s->child.pid > 0)
		return lms_tar_wait(&s->child, err); /* the unpacking stopped: its reason is the one to say */
	return lms_error_set(err, LMS_ERR_INTERNAL, errno, "write %s", s->temp ? s->temp : "standard output");
}

/* The end of a transfer that went well. */
static int
finish_sink(struct sink *s, struct lms_error **err)
{
	if (s->child.pid > 0)
		return lms_tar_wait(&s->child, err);
	if (s->tar != NULL) {
		struct lms_tar_file *t = s->tar;
		s->tar = NULL;
		return lms_tar_file_end(t, err);
	}
	if (s->spool != NULL) {
		_cleanup_free_ char *name = base_name(s->src->path);
		long size = ftell(s->spool);
		if (size < 0 || fflush(s->spool) != 0 || fseek(s->spool, 0, SEEK_SET) != 0)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "spool");
		struct lms_tar_file *t = lms_tar_file_begin(STDOUT_FILENO, name, size, err);
		if (t == NULL)
			return -1;
		char buf[65536];
		size_t n;
		int r = 0;
		while (r == 0 && (n = fread(buf, 1, sizeof(buf), s->spool)) > 0)
			r = lms_tar_file_write(t, buf, n, err);
		return lms_tar_file_end(t, r < 0 ? NULL : err) < 0 || r < 0 ? -1 : 0;
	}
	if (s->temp != NULL) {
		mode_t mask = umask(0);
		umask(mask);
		if (fchmod(s->out_fd, 0666 & ~mask) < 0 || close(s->out_fd) < 0) {
			s->out_fd = -1;
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "write %s", s->temp);
		}
		s->out_fd = -1;
		if (rename(s->temp, s->target) < 0)
			return lms_error_set(err, LMS_ERR_INVALID, errno, "rename %s to %s", s->temp, s->target);
		free(s->temp);
		s->temp = NULL;
	}
	return 0;
}

static void
sink_free(struct sink *s)
{
	if (s->child.pid > 0)
		lms_tar_wait(&s->child, NULL);
	if (s->tar != NULL)
		lms_tar_file_end(s->tar, NULL);
	if (s->spool != NULL)
		fclose(s->spool);
	if (s->temp != NULL) {
		if (s->out_fd >= 0)
			close(s->out_fd);
		unlink(s->temp);
	}
	free(s->temp);
	free(s->target);
}

static int
copy_out(struct lms_client *c, const struct place *src, const struct place *dst, struct lms_error **err)
{
	_cleanup_free_ char *url = files_url(src, src->path, NULL);
	_cleanup_free_ char *what = xasprintf("copy from %s:%s", src->id, src->path);
	struct sink s = {.src = src, .dst = dst, .out_fd = -1, .child = {.pid = -1, .fd = -1, .error_fd = -1}};
	struct lms_client_request rq = {
	    .method = "GET", .path = url, .accept = TAR_TYPE, .body_fd = -1, .on_data = on_data, .userdata = &s};
	struct lms_client_response resp;
	int r = lms_client_call(c, &rq, &resp, err);
	if (r == 0 && resp.status != 200)
		r = lms_client_api_error(c, &resp, what, err);
	/* An empty file has no first byte to start with. */
	if (r == 0 && !s.started)
		r = start_sink(&s, &resp, err);
	if (r == 0)
		r = finish_sink(&s, err);
	sink_free(&s);
	lms_client_response_clear(&resp);
	return r;
}

int
lms_client_cp(struct lms_client *c, const struct lms_client_args *a)
{
	/* A reader that went away (the unpacking helper, or our stdout's) is an error to report, not a death. */
	signal(SIGPIPE, SIG_IGN);
	struct place src, dst;
	parse_place(a->operands[0], &src);
	parse_place(a->operands[1], &dst);
	_cleanup_error_ struct lms_error *err = NULL;
	bool usage = src.remote == dst.remote || (src.stdio && !dst.remote);
	int r;
	if (src.remote == dst.remote)
		r = lms_error_set(&err, LMS_ERR_INVALID, 0,
				  src.remote ? "copying from one sandbox to another is not supported: copy out, then in"
					     : "one of SRC and DST must be ID:PATH, a path in a sandbox");
	else if (src.stdio && !dst.remote)
		r = lms_error_set(&err, LMS_ERR_INVALID, 0, "`-` as SRC needs DST to be ID:PATH");
	else
		r = src.remote ? copy_out(c, &src, &dst, &err) : copy_in(c, &src, &dst, &err);
	if (r < 0) {
		/* Say which copy failed, unless the message already does. */
		if (strncmp(err->message, "copy ", 5) != 0)
			lms_error_prefix(&err, "cp %s %s", a->operands[0], a->operands[1]);
		lms_client_report(err);
	}
	place_free(&src);
	place_free(&dst);
	return r == 0 ? 0 : usage ? LMS_CLIENT_EXIT_USAGE : LMS_CLIENT_EXIT_FAILED;
}
