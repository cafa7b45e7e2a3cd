#pragma once
/*
 * The image store under --state-dir (docs/ARCHITECTURE.md, "State on disk"): layers kept once by digest,
 * each an unpacked tree, and an image a small JSON record naming its layers in order with its Env and
 * WorkingDir. Read by the daemon and `lm-sandbox run` (an image's layer directories for the sandbox's
 * overlay), written by the importer (image/import.c). No HTTP, no libarchive.
 */
#include <stdbool.h>

#include "core/error.h"

/* The daemon's --state-dir default, which `lm-sandbox image` and `run --image` share. */
#define LMS_STATE_DIR_DEFAULT "/var/lib/lm-sandbox"

#define LMS_IMAGE_MAX_LAYERS 128
#define LMS_IMAGE_NAME_MAX 128

struct lms_image {
	char *name;
	char *digest;		 /* "sha256:HEX" of the image's configuration (or of its only layer) */
	char *source;		 /* "rootfs", "docker-archive", "oci-layout" */
	char *created_at;	 /* RFC 3339: when it was imported */
	char *working_dir;	 /* NULL: none (the sandbox's default /work) */
	char **layers;		 /* "sha256:HEX", the lowest first */
	char **paths;		 /* each layer's tree, absolute (lms_image_load fills it), the lowest first */
	char **env;		 /* "K=V" */
	bool has_bash;		 /* /bin/bash or /usr/bin/bash is in one of its layers: "cmd" runs as bash -c */
	unsigned long long size; /* bytes of its layers' files */
};

/* STATE_DIR/images. */
char *lms_images_dir(const char *state_dir);

/* A name a user may give: 1 to 128 of [A-Za-z0-9._:-], starting with a letter or digit, not "host". */
int lms_image_name_check(const char *name, struct lms_error **err);

/* The image's record, with its layers' paths. LMS_ERR_NOT_FOUND names it when it is not there. */
int lms_image_load(const char *state_dir, const char *name, struct lms_image **out, struct lms_error **err);

/* Writes the record (a temporary name, then a rename: a crash leaves the old record or the new). */
int lms_image_save(const char *state_dir, const struct lms_image *img, struct lms_error **err);

/* The names of the stored images, sorted. */
int lms_image_names(const char *state_dir, char ***names, struct lms_error **err);

/* Removes the record, then every layer no record names. LMS_ERR_NOT_FOUND when there is no such image. */
int lms_image_remove(const char *state_dir, const char *name, struct lms_error **err);

/* Removes every layer no record names, and what a dead importer left in tmp/. */
int lms_image_collect(const char *state_dir, struct lms_error **err);

/* The store's lock (flock on images/lock), exclusive: imports and removals take it. A descriptor. */
int lms_image_lock(const char *state_dir, struct lms_error **err);

/* The bytes of a stored layer's files (its `size` file), 0 when unknown. */
unsigned long long lms_image_layer_size(const char *state_dir, const char *digest);

/* The environment of a command in the image: its Env, then `extra` (a name in both: extra's wins, as the
 * last of repeated names does). A new vector of copies. */
char **lms_image_env(const struct lms_image *img, char *const *extra);

void lms_image_free(struct lms_image *img);
static inline void
lms_image_freep(struct lms_image **img)
{
	lms_image_free(*img);
}
#define _cleanup_image_ __attribute__((cleanup(lms_image_freep)))
