/*
 * GPU discovery over a root path: the device nodes under <root>/dev and the driver's own description of
 * each GPU under <root>/proc/driver/nvidia/gpus. No NVIDIA library is loaded: the daemon and the CLI
 * must work the same on a host without the driver.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/file.h"
#include "sandbox/gpu.h"

/* Where the driver describes its GPUs, one folder per PCI bus location. */
#define PROC_GPUS "proc/driver/nvidia/gpus"
/* An information file is a dozen short lines. */
#define INFORMATION_MAX 4096

static const char *const control_nodes[] = {"nvidiactl",      "nvidia-uvm",  "nvidia-uvm-tools",
					    "nvidia-modeset", "nvidia-caps", NULL};

/* N for "nvidiaN" (digits only, no leading zero but "0", N < LMS_GPU_MAX), else -1. */
static int
node_minor(const char *name)
{
	if (strncmp(name, "nvidia", 6) != 0)
		return -1;
	const char *d = name + 6;
	size_t n = strspn(d, "0123456789");
	if (n == 0 || n > 2 || d[n] != '\0' || (n > 1 && d[0] == '0'))
		return -1;
	int minor = atoi(d);
	return minor < LMS_GPU_MAX ? minor : -1;
}

bool
lms_gpu_node_wanted(const char *name, uint64_t minors)
{
	for (const char *const *c = control_nodes; *c; c++)
		if (strcmp(name, *c) == 0)
			return true;
	int minor = node_minor(name);
	return minor >= 0 && (minors >> minor & 1);
}

/* Copies the value of "Key: value" lines (trimmed, bounded) into dst. */
static void
copy_value(const char *v, size_t len, char *dst, size_t size)
{
	while (len > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\r'))
		len--;
	if (len >= size)
		len = size - 1;
	memcpy(dst, v, len);
	dst[len] = '\0';
	/* The name goes into JSON and Prometheus labels: keep it printable ASCII. */
	for (char *p = dst; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e || *p == '"' || *p == '\\')
			*p = '?';
}

bool
lms_gpu_parse_information(const char *text, struct lms_gpu *gpu)
{
	bool have_minor = false;
	for (const char *line = text; *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		const char *colon = memchr(line, ':', len);
		if (colon != NULL) {
			size_t klen = (size_t)(colon - line);
			const char *v = colon + 1;
			size_t vlen = len - klen - 1;
			if (klen == 5 && memcmp(line, "Model", 5) == 0) {
				copy_value(v, vlen, gpu->name, sizeof(gpu->name));
			} else if (klen == 8 && memcmp(line, "GPU UUID", 8) == 0) {
				copy_value(v, vlen, gpu->uuid, sizeof(gpu->uuid));
			} else if (klen == 12 && memcmp(line, "Bus Location", 12) == 0) {
				copy_value(v, vlen, gpu->bus, sizeof(gpu->bus));
			} else if (klen == 12 && memcmp(line, "Device Minor", 12) == 0) {
				char num[8];
				copy_value(v, vlen, num, sizeof(num));
				char *e;
				long m = strtol(num, &e, 10);
				have_minor = num[0] >= '0' && num[0] <= '9' && *e == '\0' && m < LMS_GPU_MAX;
				if (have_minor)
					gpu->minor = (unsigned)m;
			}
		}
		line = end ? end + 1 : line + len;
	}
	return have_minor;
}

static int
by_bus(const void *a, const void *b)
{
	const struct lms_gpu *x = a, *y = b;
	int c = strcmp(x->bus, y->bus);
	return c != 0 ? c : (int)x->minor - (int)y->minor;
}

/* Opens <root>/<rel> for listing: 1 and *d, 0 when it does not exist (no GPU there), or -1. */
static int
open_dir(const char *root, const char *rel, DIR **d, struct lms_error **err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : lms_error_set(err, LMS_ERR_SETUP, errno, "gpu: open %s", path);
	*d = fdopendir(fd);
	if (*d == NULL) {
		close(fd);
		return lms_error_set(err, LMS_ERR_SETUP, errno, "gpu: list %s", path);
	}
	return 1;
}

/* The character devices /dev/nvidiaN, as a mask of minors (symbolic links followed: a fake tree's
 * nodes are links to /dev/null). */
static int
dev_minors(const char *root, uint64_t *minors, bool *control, struct lms_error **err)
{
	*minors = 0;
	*control = false;
	DIR *d;
	int r = open_dir(root, "dev", &d, err);
	if (r <= 0)
		return r;
	int dfd = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		bool ctl = strcmp(e->d_name, "nvidiactl") == 0;
		int minor = node_minor(e->d_name);
		if ((!ctl && minor < 0) || fstatat(dfd, e->d_name, &st, 0) < 0 || !S_ISCHR(st.st_mode))
			continue; /* not a GPU node, gone, or a dangling link: not usable */
		if (ctl)
			*control = true;
		else
			*minors |= 1ull << minor;
	}
	closedir(d);
	return 0;
}

/* The driver's entries whose node exists, into out (unordered). */
static int
proc_gpus(const char *root, uint64_t minors, struct lms_gpus *out, struct lms_error **err)
{
	DIR *d;
	int r = open_dir(root, PROC_GPUS, &d, err);
	if (r <= 0)
		return r;
	int dfd = dirfd(d);
	uint64_t seen = 0;
	struct dirent *e;
	char name[300];
	while ((e = readdir(d)) != NULL && out->count < LMS_GPU_MAX) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(name, sizeof(name), "%s/information", e->d_name);
		char *text = lms_file_read_at(dfd, name, INFORMATION_MAX, NULL);
		if (text == NULL)
			continue; /* a GPU folder without its file (being removed): skip it */
		struct lms_gpu g = {0};
		bool ok = lms_gpu_parse_information(text, &g);
		free(text);
		if (!ok || !(minors >> g.minor & 1) || (seen >> g.minor & 1))
			continue;
		seen |= 1ull << g.minor;
		if (g.bus[0] == '\0')
			copy_value(e->d_name, strlen(e->d_name), g.bus, sizeof(g.bus));
		out->gpu[out->count++] = g;
	}
	closedir(d);
	return 0;
}

int
lms_gpu_discover(const char *root, struct lms_gpus *out, struct lms_error **err)
{
	memset(out, 0, sizeof(*out));
	uint64_t minors;
	if (dev_minors(root, &minors, &out->control, err) < 0 || proc_gpus(root, minors, out, err) < 0)
		return -1;
	if (out->count == 0) {
		/* No driver /proc files (a container that masks them): the nodes alone, by minor. */
		for (unsigned m = 0; m < LMS_GPU_MAX; m++)
			if (minors >> m & 1)
				out->gpu[out->count++] = (struct lms_gpu){.minor = m};
	} else {
		/* nvidia-smi and CUDA_DEVICE_ORDER=PCI_BUS_ID number GPUs in PCI bus order. */
		qsort(out->gpu, out->count, sizeof(out->gpu[0]), by_bus);
	}
	for (size_t i = 0; i < out->count; i++)
		out->gpu[i].index = (unsigned)i;
	return 0;
}

void
lms_gpu_mask_format(uint64_t mask, char *buf, size_t size)
{
	size_t used = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < LMS_GPU_MAX && used < size; i++)
		if (mask >> i & 1) {
			int n = snprintf(buf + used, size - used, "%s%u", used ? ", " : "", i);
			if (n < 0)
				return;
			used += (size_t)n;
		}
}

int
lms_gpu_select(const struct lms_gpus *gpus, uint64_t want, uint64_t *minors, struct lms_error **err)
{
	*minors = 0;
	if (!gpus->control || gpus->count == 0)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "gpu: this host has no NVIDIA GPU (%s); run without gpu, or on a host with "
				     "the NVIDIA driver loaded",
				     !gpus->control ? "/dev/nvidiactl does not exist" : "no /dev/nvidiaN device node");
	uint64_t have = 0;
	for (size_t i = 0; i < gpus->count; i++) {
		have |= 1ull << gpus->gpu[i].index;
		if (want >> gpus->gpu[i].index & 1)
			*minors |= 1ull << gpus->gpu[i].minor;
	}
	if (want != LMS_GPU_ALL && (want & ~have) != 0) {
		char missing[256], present[256];
		lms_gpu_mask_format(want & ~have, missing, sizeof(missing));
		lms_gpu_mask_format(have, present, sizeof(present));
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "gpu: no GPU with index %s on this host; it has %s (GET /healthz or "
				     "`lm-sandbox version` lists them)",
				     missing, present);
	}
	return 0;
}
