#pragma once
/*
 * `lm-sandbox image pull`: an image from a registry over the OCI distribution protocol (GET
 * /v2/REPO/manifests/REF, then its blobs), with anonymous bearer tokens as Docker Hub and GHCR hand out.
 * The blobs go into STATE/images/pulls, an OCI image layout being filled (each blob through NAME.part,
 * verified, then renamed: a killed pull resumes where it stopped), and the importer (import.h) makes the
 * image from that layout: one path from "a manifest, a config and layer blobs" to an image. Every byte of
 * the registry is hostile: sizes, counts and digests are checked before anything enters the store.
 * Uses libcurl and libcrypto: lm-sandbox-client only.
 */
#include <stdbool.h>

#include "core/error.h"
#include "image/store.h"

#define LMS_PULL_MANIFEST_MAX (4u << 20) /* a manifest, an index, a config */

struct lms_pull_opts {
	const char *name;	      /* the store's name; NULL: lms_image_ref_default_name */
	bool insecure;		      /* plain http to any registry (otherwise to loopback ones only) */
	bool progress;		      /* a progress line on stderr (for a terminal) */
	unsigned long long max_bytes; /* 0: LMS_IMPORT_MAX_BYTES, for the blobs and for the layers' files */
};

/* Pulls `ref` into the store of `state_dir` (replacing an image of the same name). *out: the image. Errors:
 * LMS_ERR_INVALID (the reference, a manifest that is not one), LMS_ERR_NOT_FOUND (no such repository or
 * tag), LMS_ERR_FORBIDDEN (the registry refused even with a token), LMS_ERR_UNREACHABLE, LMS_ERR_TIMEOUT,
 * LMS_ERR_BAD_GATEWAY (an answer that is cut short, too large, or does not match its digest). */
int lms_image_pull(const char *state_dir, const char *ref, const struct lms_pull_opts *opts, struct lms_image **out,
		   struct lms_error **err);
