#pragma once
/*
 * Which persistent sandboxes have an image as their root (docs/ARCHITECTURE.md, "State on disk"): one
 * empty file STATE_DIR/images/users/NAME/SANDBOX_ID each, written under the store's lock by the daemon
 * that makes the sandbox and removed when it is gone, so that `lm-sandbox image rm` (no daemon in
 * between) and DELETE /v1/images refuse alike while a sandbox, running or stored across a restart,
 * still needs the image's layers.
 */
#include "core/error.h"

/* The reason both give (LMS_ERR_CONFLICT), the image's name first. */
#define LMS_IMAGE_IN_USE "image '%s' is the root of a persistent sandbox: delete the sandboxes made with it first"

/* Records that sandbox `user` has image `name` as its root; LMS_ERR_NOT_FOUND when the image is gone
 * (removed since the request named it). Takes the store's lock. */
int lms_image_use(const char *state_dir, const char *name, const char *user, struct lms_error **err);

/* Forgets it (nothing when it was not recorded). */
void lms_image_unuse(const char *state_dir, const char *name, const char *user);

/* 0 when no sandbox has the image as its root, else LMS_ERR_CONFLICT (LMS_IMAGE_IN_USE, naming one of
 * them). The caller holds the store's lock. */
int lms_image_check_unused(const char *state_dir, const char *name, struct lms_error **err);
