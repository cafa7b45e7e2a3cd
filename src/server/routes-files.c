/*
 * A persistent sandbox's files over HTTP (API.md, "Persistent sandboxes", Files): GET, PUT and DELETE
 * /v1/sandboxes/{id}/files/{file_path}. What they do to the files is sandbox-files.c; here are the
 * request's parts (path, ?mode, ?recursive, Accept, Content-Type), the streaming of bodies both ways,
 * and errno -> status. Each call pushes the sandbox's expiry forward, as an exec does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "server/history.h"
#include "server/sandbox-files.h"
#include "server/sandboxes.h"
#include "server/server.h"

/* The sandbox's path: what follows "/files" ("/" when nothing does). */
static const char *
file_path(const struct lms_request *req)
{
	const char *p = strstr(req->path + strlen("/v1/sandboxes/"), "/files");
	p = p ? p + strlen("/files") : "";
	return p[0] == '\0' ? "/" : p;
}

struct errno_reply {
	int errnum;
	unsigned status;
	const char *code;
};

static const struct errno_reply errno_replies[] = {
    {ENOENT, 404, "file_not_found"},
    {EACCES, 403, "permission_denied"},
    {EPERM, 403, "permission_denied"},
    {EROFS, 403, "read_only_file_system"},
    {EISDIR, 409, "is_a_directory"},
    {ENOTDIR, 409, "not_a_directory"},
    {ENOTEMPTY, 409, "directory_not_empty"},
    {EEXIST, 409, "directory_not_empty"},
    {ENOSPC, 507, "disk_full"},
    {EDQUOT, 507, "disk_full"},
    {EFBIG, 507, "disk_full"},
    {ENAMETOOLONG, 400, "name_too_long"},
    {ELOOP, 400, "too_many_symlinks"},
    {EINVAL, 400, "invalid_path"},
    {EXDEV, 400, "invalid_path"},
};

/* An error of the files: its errno says the status; an archive's own fault (no errno) is 400. */
static enum MHD_Result
reply_files_error(struct lms_request *req, const struct lms_error *e)
{
	for (size_t i = 0; i < sizeof(errno_replies) / sizeof(errno_replies[0]); i++)
		if (errno_replies[i].errnum == e->errnum)
			return lms_reply_error(req, errno_replies[i].status,
					       errno_replies[i].status >= 500 ? "server_error"
									      : "invalid_request_error",
					       errno_replies[i].code, "%s", e->message);
	if (e->kind == LMS_ERR_INVALID)
		return lms_reply_error(req, 400, "invalid_request_error", "invalid_archive", "%s", e->message);
	return lms_reply_lms_error(req, e);
}

/* The sandbox's root, opened while the sandbox is held; the hold ends at once (a slow upload does not
 * keep a DELETE waiting), and releasing it pushes the expiry forward. -1 with the reply queued. */
static int
open_root(struct lms_request *req, enum MHD_Result *reply)
{
	struct lms_sandbox_entry *e = lms_sandbox_hold(req, reply);
	if (e == NULL)
		return -1;
	_cleanup_error_ struct lms_error *err = NULL;
	int fd = lms_sandboxes_open_root(e, &err);
	lms_sandboxes_release(req->server->sandboxes, e, NULL);
	if (fd < 0)
		*reply = lms_reply_lms_error(req, err);
	return fd;
}

/* The end of a call pushes the expiry forward again (a long transfer is use). */
static void
touch_sandbox(struct lms_request *req)
{
	char id[LMS_SANDBOX_ID_SIZE];
	lms_sandbox_path_id(req, id);
	uint64_t key;
	const struct lms_sandbox_settings *base;
	const char *reason;
	struct lms_sandbox_entry *e = lms_sandboxes_acquire(req->server->sandboxes, id, &key, &base, &reason, NULL);
	if (e != NULL)
		lms_sandboxes_release(req->server->sandboxes, e, NULL);
}

static bool
header_is(struct lms_request *req, const char *name, const char *type)
{
	const char *v = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
	if (v == NULL)
		return false;
	if (strcmp(name, MHD_HTTP_HEADER_ACCEPT) == 0)
		return strcasestr(v, type) != NULL;
	size_t n = strcspn(v, "; \t");
	return n == strlen(type) && strncasecmp(v, type, n) == 0;
}

static bool
query_true(struct lms_request *req, const char *key)
{
	const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
	return v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/* A regular file's body: read into the response's buffer of DOWNLOAD_BLOCK and sent from there, on
 * libmicrohttpd's thread (reads of the page cache, as sendfile's would be). Not sendfile:
 * libmicrohttpd sends a file 128 KiB per call with a poll between, and the client then copies out of
 * skbs of page-cache pages; 1 MiB pieces copied into the socket's own buffers took a 256 MiB download
 * from 0.177 s to 0.112 s (cp: 0.103 s) on the bench machine. The buffer is one per download, freed with
 * it: the daemon's memory stays flat whatever the file's size. */
#define DOWNLOAD_BLOCK (1024 * 1024)

static ssize_t
file_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	int fd = (int)(intptr_t)cls;
	for (;;) {
		ssize_t n = pread(fd, buf, max, (off_t)pos);
		if (n > 0)
			return n;
		if (n < 0 && errno == EINTR)
			continue;
		/* Shorter than its Content-Length (cut meanwhile by the sandbox) or unreadable: the client
		 * sees a cut body, not a whole one. */
		lms_log(LMS_LOG_WARNING, NULL, "files: a download was cut", "error",
			n == 0 ? "the file became shorter while it was sent" : strerror(errno), NULL);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

static void
file_free(void *cls)
{
	close((int)(intptr_t)cls);
}

/* The tar stream of a directory, read from the packer's pipe as the client takes it. */
static ssize_t
tar_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct lms_tarout *t = cls;
	for (;;) {
		ssize_t n = read(lms_tarout_fd(t), buf, max);
		if (n > 0)
			return n;
		if (n < 0 && errno == EINTR)
			continue;
		_cleanup_error_ struct lms_error *err = NULL;
		if (n == 0 && lms_tarout_end(t, &err) == 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
		/* The status is sent already: the stream is cut, so the client cannot take it as whole. */
		lms_log(LMS_LOG_WARNING, NULL, "files: a tar download was cut", "error",
			err ? err->message : "read the packer's pipe", NULL);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

static void
tar_free(void *cls)
{
	lms_tarout_free(cls);
}

/* The reply for an open path (fd, which it takes). The tar packer's thread is started outside the
 * sandbox's identity (a thread starts with its creator's) and takes it itself. */
static enum MHD_Result
get_open(struct lms_request *req, int fd, const struct stat *st)
{
	_cleanup_error_ struct lms_error *err = NULL;
	if (S_ISDIR(st->st_mode) && header_is(req, MHD_HTTP_HEADER_ACCEPT, "application/x-tar")) {
		struct lms_tarout *t = lms_tarout_start(fd, &err); /* takes fd */
		if (t == NULL)
			return reply_files_error(req, err);
		struct MHD_Response *resp = lms_reply_stream_response(req, 256 * 1024, tar_read, t, tar_free);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-tar");
		return lms_reply(req, 200, resp);
	}
	if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode)) {
		close(fd);
		return lms_reply_error(req, 409, "invalid_request_error", "not_a_regular_file",
				       "%.512s is neither a regular file nor a directory", file_path(req));
	}
	struct lms_fsid id;
	if (lms_files_enter(&id, &err) < 0) {
		close(fd);
		return lms_reply_lms_error(req, err);
	}
	json_t *list = NULL;
	int data = -1;
	if (S_ISDIR(st->st_mode))
		list = lms_files_list(fd, &err);
	else
		data = lms_files_reopen(fd, O_RDONLY, &err);
	lms_fsid_leave(&id);
	close(fd);
	if (err != NULL) {
		lms_error_prefix(&err, "%.512s", file_path(req));
		return reply_files_error(req, err);
	}
	if (list != NULL)
		return lms_reply_json(req, 200, list);
	/* Read a block at a time from the descriptor (file_read): the daemon never holds the file. */
	struct MHD_Response *resp = MHD_create_response_from_callback((uint64_t)st->st_size, DOWNLOAD_BLOCK, file_read,
								      (void *)(intptr_t)data, file_free);
	if (resp == NULL) {
		close(data);
		return lms_reply_error(req, 500, "server_error", "internal_error", "could not make the response");
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
	return lms_reply(req, 200, resp);
}

enum MHD_Result
lms_route_files_get(struct lms_request *req)
{
	enum MHD_Result reply = MHD_NO;
	int root = open_root(req, &reply);
	if (root < 0)
		return reply;
	_cleanup_error_ struct lms_error *err = NULL;
	struct stat st;
	int fd = lms_files_open(root, file_path(req), &st, &err);
	close(root);
	return fd < 0 ? reply_files_error(req, err) : get_open(req, fd, &st);
}

/* A write or a delete into the sandbox's audit log. */
static void
record(struct lms_request *req, const char *tool, bool ok, double started_s, double started_ms, long long bytes)
{
	char id[LMS_SANDBOX_ID_SIZE];
	lms_sandbox_path_id(req, id);
	struct lms_history_call c = {.via = "http",
				     .tool = tool,
				     .path = file_path(req),
				     .status = ok ? "ok" : "error",
				     .exit_code = -1,
				     .started_s = started_s,
				     .duration_ms = lms_monotonic_ms() - started_ms,
				     .bytes = bytes};
	lms_sandboxes_record(req->server->sandboxes, id, lms_history_entry(&c));
}

enum MHD_Result
lms_route_files_delete(struct lms_request *req)
{
	enum MHD_Result reply = MHD_NO;
	int root = open_root(req, &reply);
	if (root < 0)
		return reply;
	_cleanup_error_ struct lms_error *err = NULL;
	double started_s = lms_wall_s(), started_ms = lms_monotonic_ms();
	int r = lms_files_remove(root, file_path(req), query_true(req, "recursive"), &err);
	close(root);
	touch_sandbox(req);
	record(req, "delete_file", r == 0, started_s, started_ms, -1);
	if (r < 0)
		return reply_files_error(req, err);
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	return lms_reply(req, 204, resp);
}

/* An upload in progress: one file (through a temporary name), or a tar stream into a directory. */
struct put_state {
	double started_s, started_ms;
	bool tar;
	struct lms_upload up;
	struct lms_untar_job *untar;
	uint64_t received, max;
	bool too_large;
	struct lms_error *err; /* writing failed: the rest of the body is dropped */
};

static enum MHD_Result
reply_too_large(struct lms_request *req)
{
	return lms_reply_error(req, 413, "invalid_request_error", "body_too_large",
			       "the upload is larger than %llu bytes (the server's --max-upload-bytes)",
			       (unsigned long long)req->server->cfg->max_upload_bytes);
}

/* ?mode: octal permission bits, 0 to 0777 (set-user-ID and the like are not the files API's to give). */
static int
parse_mode(struct lms_request *req, unsigned *mode)
{
	const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "mode");
	*mode = LMS_UPLOAD_MODE_DEFAULT;
	if (v == NULL)
		return 0;
	size_t n = strlen(v);
	if (n == 0 || n > 4 || strspn(v, "01234567") != n)
		return -1;
	unsigned long m = strtoul(v, NULL, 8);
	if (m > 0777)
		return -1;
	*mode = (unsigned)m;
	return 0;
}

static enum MHD_Result
put_begin(struct lms_request *req)
{
	uint64_t max = req->server->cfg->max_upload_bytes;
	const char *length = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (length && strtoull(length, NULL, 10) > max)
		return reply_too_large(req);
	unsigned mode;
	if (parse_mode(req, &mode) < 0)
		return lms_reply_error(req, 400, "invalid_request_error", "invalid_mode",
				       "mode must be octal permission bits, 0 to 0777 (such as 0644 or 755)");
	bool tar = header_is(req, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-tar");
	enum MHD_Result reply = MHD_NO;
	int root = open_root(req, &reply);
	if (root < 0)
		return reply;
	struct put_state *st = xcalloc(1, sizeof(*st));
	st->started_s = lms_wall_s();
	st->started_ms = lms_monotonic_ms();
	st->tar = tar;
	st->max = max;
	st->up.fd = st->up.dirfd = -1;
	_cleanup_error_ struct lms_error *err = NULL;
	int r = 0;
	if (tar)
		r = (st->untar = lms_untar_start(root, file_path(req), &err)) ? 0 : -1;
	else
		r = lms_upload_begin(&st->up, root, file_path(req), mode, &err);
	close(root);
	if (r < 0) {
		free(st);
		return reply_files_error(req, err);
	}
	req->sink_state = st;
	return MHD_YES;
}

static void
put_chunk(struct lms_request *req, const char *data, size_t len)
{
	struct put_state *st = req->sink_state;
	if (st == NULL || st->too_large || st->err != NULL)
		return;
	st->received += len;
	if (st->received > st->max) {
		st->too_large = true; /* nothing more is written; the file is removed at the end */
		return;
	}
	if (!st->tar)
		(void)lms_upload_write(&st->up, data, len, &st->err);
	else if (lms_untar_feed(st->untar, data, len) < 0)
		lms_error_set(&st->err, LMS_ERR_INVALID, 0, "the unpacker stopped"); /* finish says why */
}

static void
put_end(struct lms_request *req)
{
	struct put_state *st = req->sink_state;
	if (st == NULL)
		return;
	if (st->untar != NULL)
		(void)lms_untar_finish(st->untar, NULL, NULL);
	lms_upload_abort(&st->up);
	lms_error_free(st->err);
	free(st);
	req->sink_state = NULL;
}

const struct lms_body_sink lms_files_put_sink = {put_begin, put_chunk, put_end};

static enum MHD_Result
put_reply(struct lms_request *req, struct put_state *st, bool *ok)
{
	_cleanup_error_ struct lms_error *err = NULL;
	if (st->tar) {
		unsigned long long entries = 0;
		int r = lms_untar_finish(steal_pointer(&st->untar), &entries, &err);
		if (st->too_large)
			return reply_too_large(req);
		if (r < 0)
			return reply_files_error(req, err);
		*ok = true;
		return lms_reply_json(req, 201,
				      json_pack("{s:s, s:s, s:I}", "path", file_path(req), "type", "directory",
						"entries", (json_int_t)entries));
	}
	/* A failed upload leaves nothing by the time its client hears of it. */
	if (st->too_large || st->err != NULL)
		lms_upload_abort(&st->up);
	if (st->too_large)
		return reply_too_large(req);
	if (st->err != NULL)
		return reply_files_error(req, st->err);
	uint64_t size = st->up.bytes;
	unsigned mode = st->up.mode;
	if (lms_upload_commit(&st->up, &err) < 0)
		return reply_files_error(req, err);
	char text[8];
	snprintf(text, sizeof(text), "%04o", mode);
	*ok = true;
	return lms_reply_json(req, 201,
			      json_pack("{s:s, s:s, s:I, s:s}", "path", file_path(req), "type", "file", "size",
					(json_int_t)size, "mode", text));
}

enum MHD_Result
lms_route_files_put(struct lms_request *req)
{
	struct put_state *st = req->sink_state;
	touch_sandbox(req);
	bool ok = false;
	long long received = (long long)st->received;
	enum MHD_Result reply = put_reply(req, st, &ok);
	record(req, "write_file", ok, st->started_s, st->started_ms, received);
	return reply;
}
