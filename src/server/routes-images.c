/*
 * GET, PUT and DELETE /v1/images/{name}, POST /v1/images/pull: the image store (image/store.h) of
 * --state-dir over HTTP. Imports and pulls run in a child (server/image-child.h); a PUT body streams to an
 * unnamed file first (the importer needs to see an archive whole to tell its kind).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "image/store.h"
#include "image/users.h"
#include "server/image-child.h"
#include "server/sandboxes.h"
#include "server/server.h"

#define IMAGES_PREFIX "/v1/images/"

static json_t *
image_json(const struct lms_image *img)
{
	json_t *layers = json_array();
	for (char **l = img->layers; *l; l++)
		json_array_append_new(layers, json_string(*l));
	return json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:s?}", "name", img->name, "digest", img->digest, "size",
			 (json_int_t)img->size, "created_at", img->created_at, "source", img->source, "layers", layers,
			 "working_dir", img->working_dir);
}

enum MHD_Result
lms_route_image_list(struct lms_request *req)
{
	const char *state_dir = req->server->cfg->state_dir;
	_cleanup_error_ struct lms_error *err = NULL;
	_cleanup_strv_ char **names = NULL;
	if (lms_image_names(state_dir, &names, &err) < 0)
		return lms_reply_lms_error(req, err);
	json_t *data = json_array();
	for (char **n = names; *n; n++) {
		struct lms_image *img;
		if (lms_image_load(state_dir, *n, &img, NULL) < 0)
			continue; /* removed meanwhile, or damaged: `image ls` says which */
		json_array_append_new(data, image_json(img));
		lms_image_free(img);
	}
	return lms_reply_json(req, 200, json_pack("{s:o}", "data", data));
}

enum MHD_Result
lms_route_image_delete(struct lms_request *req)
{
	const char *name = req->path + strlen(IMAGES_PREFIX);
	_cleanup_error_ struct lms_error *err = NULL;
	if (lms_image_name_check(name, NULL) < 0)
		lms_error_set(&err, LMS_ERR_NOT_FOUND, 0, "image '%.128s' does not exist", name);
	else if (lms_sandboxes_use_image(req->server->sandboxes, name))
		lms_error_set(&err, LMS_ERR_CONFLICT, 0, LMS_IMAGE_IN_USE, name);
	else
		(void)lms_image_remove(req->server->cfg->state_dir, name, &err);
	if (err != NULL)
		return lms_reply_lms_error(req, err);
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	return lms_reply(req, 204, resp);
}

/* 201 with the record of the image the child stored. */
static enum MHD_Result
reply_stored(struct lms_request *req, const char *name)
{
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_image *img;
	if (lms_image_load(req->server->cfg->state_dir, name, &img, &err) < 0)
		return lms_reply_lms_error(req, err);
	enum MHD_Result r = lms_reply_json(req, 201, image_json(img));
	lms_image_free(img);
	return r;
}

enum MHD_Result
lms_route_image_pull(struct lms_request *req)
{
	enum MHD_Result reply = MHD_NO;
	json_auto_t *body = lms_request_json_object(req, &reply);
	if (body == NULL)
		return reply;
	const char *ref = json_string_value(json_object_get(body, "ref"));
	const json_t *jname = json_object_get(body, "name");
	const char *name = json_string_value(jname);
	if (ref == NULL || (jname != NULL && !json_is_null(jname) && name == NULL))
		return lms_reply_error(req, 400, "invalid_request_error", "invalid_request",
				       "the body is {\"ref\": \"IMAGE[:TAG|@sha256:HEX]\", \"name\": optional name}");
	_cleanup_error_ struct lms_error *err = NULL;
	if (name != NULL && lms_image_name_check(name, &err) < 0)
		return lms_reply_lms_error(req, err);
	/* "--" first: a reference that starts with "-" is no option of the child. */
	const char *args[] = {"pull", name ? "--name" : "--", name ? name : ref, name ? "--" : NULL, name ? ref : NULL,
			      NULL};
	_cleanup_free_ char *stored = NULL;
	if (lms_image_child_run(req->server->cfg->state_dir, args, -1, lms_request_socket(req), &req->server->stopping,
				&stored, &err) < 0)
		return lms_reply_lms_error(req, err);
	return reply_stored(req, stored);
}

/* A PUT body on its way: an unnamed file in STATE/images (the store's file system; nothing is left by a
 * crash), bounded by --max-upload-bytes. */
struct image_put {
	int fd;
	uint64_t received;
	bool too_large;
	int write_errno; /* writing failed: the rest of the body is dropped */
};

static enum MHD_Result
image_too_large(struct lms_request *req)
{
	return lms_reply_error(req, 413, "invalid_request_error", "body_too_large",
			       "the image is larger than %llu bytes (the server's --max-upload-bytes): import it "
			       "with lm-sandbox image import on the server's machine",
			       (unsigned long long)req->server->cfg->max_upload_bytes);
}

static enum MHD_Result
image_put_begin(struct lms_request *req)
{
	const char *name = req->path + strlen(IMAGES_PREFIX);
	_cleanup_error_ struct lms_error *err = NULL;
	if (lms_image_name_check(name, &err) < 0)
		return lms_reply_lms_error(req, err);
	const char *length = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (length && strtoull(length, NULL, 10) > req->server->cfg->max_upload_bytes)
		return image_too_large(req);
	const char *state_dir = req->server->cfg->state_dir;
	_cleanup_free_ char *dir = xasprintf("%s/images", state_dir);
	if ((mkdir(state_dir, 0755) < 0 && errno != EEXIST) || (mkdir(dir, 0700) < 0 && errno != EEXIST))
		return lms_reply_error(req, 500, "server_error", "internal_error", "create %s: %s", dir,
				       strerror(errno));
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
		/* A file system without O_TMPFILE: a name for an instant. */
		_cleanup_free_ char *tmpl = xasprintf("%s/.upload-XXXXXX", dir);
		if ((fd = mkostemp(tmpl, O_CLOEXEC)) >= 0 && unlink(tmpl) < 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0)
		return lms_reply_error(req, 500, "server_error", "internal_error",
				       "create an unnamed file in %s for the upload: %s", dir, strerror(errno));
	struct image_put *st = xcalloc(1, sizeof(*st));
	st->fd = fd;
	req->sink_state = st;
	return MHD_YES;
}

static void
image_put_chunk(struct lms_request *req, const char *data, size_t len)
{
	struct image_put *st = req->sink_state;
	if (st == NULL || st->too_large || st->write_errno != 0)
		return;
	st->received += len;
	if (st->received > req->server->cfg->max_upload_bytes)
		st->too_large = true;
	else if (lms_fd_write_all(st->fd, data, len) < 0)
		st->write_errno = errno ? errno : EIO;
}

static void
image_put_end(struct lms_request *req)
{
	struct image_put *st = req->sink_state;
	if (st == NULL)
		return;
	close(st->fd);
	free(st);
	req->sink_state = NULL;
}

const struct lms_body_sink lms_image_put_sink = {image_put_begin, image_put_chunk, image_put_end};

enum MHD_Result
lms_route_image_put(struct lms_request *req)
{
	struct image_put *st = req->sink_state;
	const char *name = req->path + strlen(IMAGES_PREFIX);
	if (st->too_large)
		return image_too_large(req);
	if (st->write_errno != 0)
		return lms_reply_error(req, 500, "server_error", "internal_error", "write the upload of image %s: %s",
				       name, strerror(st->write_errno));
	if (lseek(st->fd, 0, SEEK_SET) < 0)
		return lms_reply_error(req, 500, "server_error", "internal_error", "rewind the upload of image %s: %s",
				       name, strerror(errno));
	_cleanup_error_ struct lms_error *err = NULL;
	_cleanup_free_ char *stored = NULL;
	const char *args[] = {"import", "--", name, "-", NULL};
	if (lms_image_child_run(req->server->cfg->state_dir, args, st->fd, lms_request_socket(req),
				&req->server->stopping, &stored, &err) < 0)
		return lms_reply_lms_error(req, err);
	return reply_stored(req, stored);
}
