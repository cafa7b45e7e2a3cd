/* GET /v1/images and DELETE /v1/images/{name}: the image store (image/store.h) of --state-dir over HTTP. */
#include <string.h>

#include "core/alloc.h"
#include "image/store.h"
#include "image/users.h"
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
