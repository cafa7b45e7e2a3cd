#pragma once
/*
 * Which manifest of an OCI index (or a Docker manifest list) serves this host: the importer's OCI layouts
 * and the puller's registries choose the same way.
 */
#include <jansson.h>

#if defined(__x86_64__)
#define LMS_IMAGE_HOST_ARCH "amd64"
#define LMS_IMAGE_HOST_VARIANT NULL
#elif defined(__aarch64__)
#define LMS_IMAGE_HOST_ARCH "arm64"
#define LMS_IMAGE_HOST_VARIANT "v8"
#else
#define LMS_IMAGE_HOST_ARCH "unknown"
#define LMS_IMAGE_HOST_VARIANT NULL
#endif

/* The entry of index["manifests"] for linux and the host's architecture (its variant preferred, e.g.
 * arm64/v8, when several differ by variant), else the index's only entry when it names no platform. NULL
 * when none fits. Borrowed from `index`. */
const json_t *lms_image_pick_manifest(const json_t *index);
