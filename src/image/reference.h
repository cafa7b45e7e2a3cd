#pragma once
/*
 * An image reference as `docker pull` reads it: `ubuntu:22.04` is registry-1.docker.io's
 * `library/ubuntu:22.04`, `owner/name` is Docker Hub's, `host:port/repo:tag` and `name@sha256:HEX` name
 * another registry and a manifest by digest. Pure parsing: no network, no allocation but the result's.
 */
#include <stdbool.h>

#include "core/error.h"

struct lms_image_ref {
	char *registry;	  /* "registry-1.docker.io", "127.0.0.1:5000", "ghcr.io" */
	char *repository; /* "library/ubuntu", "owner/name" */
	char *reference;  /* what the manifest is asked by: the digest when there is one, else the tag */
	char *digest;	  /* "sha256:HEX", or NULL */
	char *tag;	  /* the tag given, or NULL ("latest" asked for when neither it nor a digest is given) */
	bool loopback;	  /* the registry is 127.0.0.0/8, [::1] or localhost: plain http is allowed */
};

/* Parses `text` (at most 512 bytes). LMS_ERR_INVALID says which part is wrong. */
int lms_image_ref_parse(const char *text, struct lms_image_ref *out, struct lms_error **err);

/* The store's name for a pulled image when the user gives none: the repository's last component, with
 * ":TAG" when a tag was given (`python:3.12`, `ubuntu`, `name` for `name@sha256:...`). A new string. */
char *lms_image_ref_default_name(const struct lms_image_ref *ref);

void lms_image_ref_clear(struct lms_image_ref *ref);
