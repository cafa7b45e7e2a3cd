#pragma once
/*
 * `lm-sandbox image import`: a root file system into the image store (store.h), from a plain root-file-
 * system tarball (docker export, mmdebstrap, debootstrap), a `docker save` archive (the legacy layout and
 * the OCI one Docker 25+ writes) or an OCI image layout (a directory or a tar of one); layers plain, gzip
 * or zstd, each unpacked once by digest (archive/untar.c, with OCI whiteouts as overlayfs's). Every byte
 * of the input is hostile: names, links and sizes are checked as the unpacker does, the JSON is bounded.
 * Uses libarchive: linked by lm-sandbox-client, not by the static lm-sandbox.
 */
#include "core/error.h"
#include "image/store.h"

/* Defaults of the caps (lm-sandbox image import --max-size, --max-entries). */
#define LMS_IMPORT_MAX_BYTES (32ull << 30) /* all layers' files together */
#define LMS_IMPORT_MAX_ENTRIES 2000000ull  /* per layer */

struct lms_import_opts {
	unsigned long long max_bytes;	/* 0: LMS_IMPORT_MAX_BYTES */
	unsigned long long max_entries; /* 0: LMS_IMPORT_MAX_ENTRIES */
	const char *source; /* an OCI layout's "source" in the record (NULL: "oci-layout"; a pull's: "registry") */
};

/* Imports `file` ("-": standard input; a directory: an OCI layout) as image `name` (replacing one of that
 * name), then frees the layers nothing uses any more. *out: the stored image. */
int lms_image_import(const char *state_dir, const char *name, const char *file, const struct lms_import_opts *opts,
		     struct lms_image **out, struct lms_error **err);

/* STATE_DIR and its images/ directories, made where missing. */
int lms_image_store_make(const char *state_dir, struct lms_error **err);
