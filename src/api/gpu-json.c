/* The `gpu` field and the GPU list in the API's JSON, and the CLI's spelling of a selection. */
#include <string.h>

#include "api/gpu-json.h"

int
lms_gpu_selection_parse(const json_t *v, uint64_t *gpus, struct lms_error **err)
{
	if (v == NULL)
		return 0;
	if (json_is_boolean(v)) {
		*gpus = json_is_true(v) ? LMS_GPU_ALL : 0;
		return 0;
	}
	if (!json_is_array(v))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "gpu must be true, false or a list of GPU indices such as [0, 1]");
	if (json_array_size(v) == 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "gpu: an empty list selects no GPU: send false");
	uint64_t mask = 0;
	size_t i;
	const json_t *x;
	json_array_foreach(v, i, x)
	{
		if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= LMS_GPU_MAX)
			return lms_error_set(err, LMS_ERR_INVALID, 0,
					     "gpu[%zu] must be a GPU index, an integer from 0 to %d", i,
					     LMS_GPU_MAX - 1);
		mask |= 1ull << json_integer_value(x);
	}
	*gpus = mask;
	return 0;
}

json_t *
lms_gpu_selection_json(uint64_t gpus)
{
	if (gpus == 0 || gpus == LMS_GPU_ALL)
		return json_boolean(gpus != 0);
	json_t *list = json_array();
	for (int i = 0; i < LMS_GPU_MAX; i++)
		if (gpus >> i & 1)
			json_array_append_new(list, json_integer(i));
	return list;
}

bool
lms_gpu_selection_text_like(const char *text)
{
	return strcmp(text, "all") == 0 ||
	       (text[0] >= '0' && text[0] <= '9' && strspn(text, "0123456789,") == strlen(text));
}

int
lms_gpu_selection_parse_text(const char *text, uint64_t *gpus, struct lms_error **err)
{
	if (text == NULL || strcmp(text, "all") == 0) {
		*gpus = LMS_GPU_ALL;
		return 0;
	}
	uint64_t mask = 0;
	const char *p = text;
	for (;;) {
		size_t n = strspn(p, "0123456789");
		unsigned long v = 0;
		for (size_t k = 0; k < n && v < LMS_GPU_MAX; k++)
			v = v * 10 + (unsigned long)(p[k] - '0');
		if (n == 0 || v >= LMS_GPU_MAX)
			return lms_error_set(
			    err, LMS_ERR_INVALID, 0,
			    "--gpu takes all or GPU indices 0 to %d separated by commas (0,1), not '%s'",
			    LMS_GPU_MAX - 1, text);
		mask |= 1ull << v;
		p += n;
		if (*p == '\0')
			break;
		if (*p++ != ',')
			return lms_error_set(err, LMS_ERR_INVALID, 0,
					     "--gpu takes all or GPU indices separated by commas (0,1), not '%s'",
					     text);
	}
	*gpus = mask;
	return 0;
}

json_t *
lms_gpus_json(const struct lms_gpus *gpus)
{
	json_t *list = json_array();
	for (size_t i = 0; i < gpus->count; i++) {
		const struct lms_gpu *g = &gpus->gpu[i];
		json_array_append_new(list,
				      json_pack("{s:i, s:s, s:s, s:s, s:o}", "index", (int)g->index, "name", g->name,
						"uuid", g->uuid, "bus", g->bus, "memory_mb",
						g->memory_mb ? json_integer((json_int_t)g->memory_mb) : json_null()));
	}
	return list;
}
