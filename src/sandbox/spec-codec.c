/*
 * A sandbox spec as bytes: the job the daemon hands to its spawner (a memfd) and the launch message a
 * prepared sandbox's PID 1 reads (a pipe). The decoder takes hostile input as if it were: every length
 * is checked against what is left, every count against the engine's bounds.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "sandbox/sandbox.h"

#define SPEC_MAGIC 0x314d534cu /* "LSM1" */
#define NONE32 0xffffffffu
#define NONE64 UINT64_MAX

static void
put(struct lms_buf *b, const void *p, size_t n)
{
	lms_buf_append(b, p, n);
}

static void
put_u32(struct lms_buf *b, uint32_t v)
{
	put(b, &v, sizeof(v));
}

static void
put_u64(struct lms_buf *b, uint64_t v)
{
	put(b, &v, sizeof(v));
}

static void
put_str(struct lms_buf *b, const char *s)
{
	if (s == NULL) {
		put_u32(b, NONE32);
		return;
	}
	size_t n = strlen(s);
	put_u32(b, (uint32_t)n);
	put(b, s, n);
}

void
lms_spec_encode(const struct lms_sandbox_spec *spec, struct lms_buf *out)
{
	struct lms_buf *b = out;
	const struct lms_limits *l = &spec->limits;
	put_u32(b, SPEC_MAGIC);
	uint64_t nums[] = {l->timeout_ms, l->memory_mb,	 l->pids,    l->cpu_ms,	  l->output_bytes,
			   l->disk_mb,	  spec->network, spec->gpus, l->millicpus};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		put_u64(b, nums[i]);
	char *const *lists[] = {spec->argv, spec->env, spec->layers};
	for (int k = 0; k < 3; k++) {
		uint32_t n = 0;
		while (lists[k] && lists[k][n])
			n++;
		put_u32(b, n);
		for (uint32_t i = 0; i < n; i++)
			put_str(b, lists[k][i]);
	}
	put_str(b, spec->cwd);
	put_str(b, spec->image);
	put_str(b, spec->storage);
	put_str(b, spec->net_dns);
	put_str(b, spec->net_allow_private);
	put_str(b, spec->net_allow);
	put_u64(b, spec->stdin_data ? spec->stdin_len : NONE64);
	if (spec->stdin_data)
		put(b, spec->stdin_data, spec->stdin_len);
}

struct reader {
	const char *p, *end;
	char *out; /* where the next copied string goes */
};

static bool
take(struct reader *r, void *dst, size_t n)
{
	if ((size_t)(r->end - r->p) < n)
		return false;
	memcpy(dst, r->p, n);
	r->p += n;
	return true;
}

static bool
take_str(struct reader *r, char **s)
{
	uint32_t n;
	if (!take(r, &n, sizeof(n)))
		return false;
	if (n == NONE32) {
		*s = NULL;
		return true;
	}
	if ((size_t)(r->end - r->p) < n || memchr(r->p, '\0', n) != NULL)
		return false;
	memcpy(r->out, r->p, n);
	r->out[n] = '\0';
	*s = r->out;
	r->out += n + 1;
	r->p += n;
	return true;
}

static bool
take_list(struct reader *r, char ***list, char ***slots, size_t *free_slots)
{
	uint32_t n;
	if (!take(r, &n, sizeof(n)) || n > LMS_MAX_ARGS + LMS_MAX_ENV || (size_t)n + 1 > *free_slots)
		return false;
	*list = *slots;
	for (uint32_t i = 0; i < n; i++)
		if (!take_str(r, &(*list)[i]) || (*list)[i] == NULL)
			return false;
	(*list)[n] = NULL;
	*slots += n + 1;
	*free_slots -= n + 1;
	return true;
}

int
lms_spec_decode(const char *data, size_t len, struct lms_sandbox_spec *spec, void **storage, struct lms_error **err)
{
	/* One block: pointer slots for argv and env, then every string copied with its NUL. */
	/* argv and env (the whole environment, defaults included) share the slots. */
	size_t slots = LMS_MAX_ARGS + LMS_MAX_ENV + LMS_MAX_LAYERS + 16;
	char *block = xmalloc(slots * sizeof(char *) + len + slots + 8);
	char **slot = (char **)block;
	struct reader r = {.p = data, .end = data + len, .out = block + slots * sizeof(char *)};
	uint32_t magic;
	uint64_t nums[9], stdin_len;
	char **argv = NULL, **env = NULL, **layers = NULL, *cwd, *image, *storage_dir, *net_dns, *net_allow, *net_list;
	lms_sandbox_spec_init(spec);
	bool ok = take(&r, &magic, sizeof(magic)) && magic == SPEC_MAGIC && take(&r, nums, sizeof(nums)) &&
		  take_list(&r, &argv, &slot, &slots) && take_list(&r, &env, &slot, &slots) &&
		  take_list(&r, &layers, &slot, &slots) && take_str(&r, &cwd) && take_str(&r, &image) &&
		  take_str(&r, &storage_dir) && take_str(&r, &net_dns) && take_str(&r, &net_allow) &&
		  take_str(&r, &net_list) && take(&r, &stdin_len, sizeof(stdin_len));
	if (ok && stdin_len != NONE64) {
		ok = stdin_len <= (uint64_t)(r.end - r.p);
		if (ok) {
			spec->stdin_data = r.p;
			spec->stdin_len = (size_t)stdin_len;
			r.p += stdin_len;
		}
	}
	if (!ok || r.p != r.end || nums[6] > 1) {
		free(block);
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "decode a job: malformed or truncated spec");
	}
	spec->limits = (struct lms_limits){.timeout_ms = nums[0],
					   .memory_mb = nums[1],
					   .pids = nums[2],
					   .cpu_ms = nums[3],
					   .output_bytes = nums[4],
					   .disk_mb = nums[5],
					   .millicpus = nums[8]};
	spec->network = nums[6] != 0;
	spec->gpus = nums[7];
	spec->argv = argv;
	spec->env = env;
	/* No layers and no layer list are the same: the host image. */
	spec->layers = layers != NULL && layers[0] != NULL ? layers : NULL;
	spec->cwd = cwd;
	spec->image = image;
	spec->storage = storage_dir;
	spec->net_dns = net_dns;
	spec->net_allow_private = net_allow;
	spec->net_allow = net_list;
	*storage = block;
	return 0;
}
