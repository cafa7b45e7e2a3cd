#pragma once
/*
 * GPUs in the API (API.md "GPU"): the `gpu` field of an exec or a sandbox (false, true, or a list of
 * indices) as the engine's selection mask, the CLI's `--gpu all|0,1`, and the GPUs found as JSON and
 * text (GET /healthz, `lm-sandbox version`).
 */
#include <jansson.h>
#include <stdint.h>

#include "core/error.h"
#include "sandbox/gpu.h"

/* false -> 0, true -> LMS_GPU_ALL, [0, 2] -> bits 0 and 2. NULL (absent) leaves *gpus as it is.
 * LMS_ERR_INVALID for another type, an empty list, or an index that is not an integer 0..63. */
int lms_gpu_selection_parse(const json_t *v, uint64_t *gpus, struct lms_error **err);
/* The reverse: false, true or the list of indices. */
json_t *lms_gpu_selection_json(uint64_t gpus);
/* "all" (or NULL: the bare flag) -> LMS_GPU_ALL, "0,1" -> bits 0 and 1; LMS_ERR_INVALID otherwise. */
int lms_gpu_selection_parse_text(const char *text, uint64_t *gpus, struct lms_error **err);
/* Whether text reads as a selection ("all" or digits and commas): the CLI's optional argument. */
bool lms_gpu_selection_text_like(const char *text);
/* [{"index", "name", "uuid", "bus", "memory_mb" (null when unknown)}, ...]. */
json_t *lms_gpus_json(const struct lms_gpus *gpus);
