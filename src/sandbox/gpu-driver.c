/*
 * Finding the driver's user-space files the way libnvidia-container does (its list of utility and
 * compute libraries and tools): by soname in the dynamic linker's cache, by name on a search path.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "sandbox/gpu-driver.h"

#define LINE_MAX_BYTES 4096
/* `ldconfig -p` of a host with thousands of libraries is a few hundred KiB. */
#define LDCONFIG_MAX (8u << 20)
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* libnvidia-container's utility and compute libraries (what `--gpus` with the default capabilities
 * "compute,utility" binds). */
static const char *const driver_libs[] = {
    "libnvidia-ml",
    "libnvidia-cfg",
    "libcuda",
    "libcudadebugger",
    "libnvidia-opencl",
    "libnvidia-gpucomp",
    "libnvidia-ptxjitcompiler",
    "libnvidia-fatbinaryloader",
    "libnvidia-allocator",
    "libnvidia-compiler",
    "libnvidia-pkcs11",
    "libnvidia-pkcs11-openssl3",
    "libnvidia-nvvm",
    NULL,
};

static const char *const driver_bins[] = {
    "nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control", "nvidia-cuda-mps-server", NULL};

const char *
lms_gpu_host_abi(void)
{
#if defined(__x86_64__)
	return "x86-64";
#elif defined(__aarch64__)
	return "AArch64";
#else
	return NULL;
#endif
}

static void
add(char ***list, size_t *n, const char *s, size_t len)
{
	if (*n >= LMS_GPU_DRIVER_FILES_MAX)
		return; /* a cache that lists more is not a driver's: the first ones are kept */
	*list = xrealloc(*list, (*n + 2) * sizeof(char *));
	(*list)[*n] = xstrndup(s, len);
	(*list)[++*n] = NULL;
}

/* Whether soname is "<lib>.so" or "<lib>.so.<anything>" for a driver library. */
static bool
is_driver_soname(const char *s, size_t len)
{
	for (const char *const *l = driver_libs; *l; l++) {
		size_t n = strlen(*l);
		if (len >= n + 3 && memcmp(s, *l, n) == 0 && memcmp(s + n, ".so", 3) == 0 &&
		    (len == n + 3 || s[n + 3] == '.'))
			return true;
	}
	return false;
}

/* Whether the comma-separated flags "libc6,x86-64, OS ABI: Linux 3.2.0" name the ABI. Without an ABI
 * tag ("libc6") the entry is the other word size's on a 64-bit host. */
static bool
has_abi(const char *flags, size_t len, const char *abi)
{
	size_t n = strlen(abi);
	for (size_t i = 0; i + n <= len; i++)
		if ((i == 0 || flags[i - 1] == ',') && memcmp(flags + i, abi, n) == 0 &&
		    (i + n == len || flags[i + n] == ','))
			return true;
	return false;
}

static bool
listed(char **list, size_t n, const char *soname, size_t len)
{
	for (size_t i = 0; i < n; i++) {
		const char *base = strrchr(list[i], '/');
		base = base ? base + 1 : list[i];
		if (strlen(base) == len && memcmp(base, soname, len) == 0)
			return true;
	}
	return false;
}

/* One cache line: "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1". */
static void
one_line(const char *line, size_t len, const char *abi, struct lms_gpu_driver *drv, char ***sonames, size_t *n_so)
{
	while (len > 0 && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	const char *sp = memchr(line, ' ', len);
	if (sp == NULL)
		return;
	size_t so_len = (size_t)(sp - line);
	const char *open = sp + 1, *end = line + len;
	if (open >= end || *open != '(')
		return;
	const char *close = memchr(open, ')', (size_t)(end - open));
	if (close == NULL || (size_t)(end - close) < 5 || memcmp(close, ") => ", 5) != 0)
		return;
	const char *path = close + 5;
	size_t path_len = (size_t)(end - path);
	while (path_len > 0 && (path[path_len - 1] == ' ' || path[path_len - 1] == '\r'))
		path_len--;
	if (!is_driver_soname(line, so_len) || !has_abi(open + 1, (size_t)(close - open - 1), abi))
		return;
	if (path_len < 2 || path[0] != '/' || memmem(path, path_len, "/../", 4) != NULL ||
	    (path_len >= 3 && memcmp(path + path_len - 3, "/..", 3) == 0) || memchr(path, '\0', path_len) != NULL)
		return;
	if (listed(*sonames, *n_so, line, so_len))
		return; /* the linker takes the first entry of a soname */
	add(sonames, n_so, line, so_len);
	add(&drv->libs, &drv->n_libs, path, path_len);
}

void
lms_gpu_driver_libs(const char *text, size_t len, const char *abi, struct lms_gpu_driver *drv)
{
	if (abi == NULL)
		return;
	char **sonames = NULL;
	size_t n_so = 0;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t line_len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (line_len <= LINE_MAX_BYTES)
			one_line(p, line_len, abi, drv, &sonames, &n_so);
		p += line_len + 1;
	}
	for (size_t i = 0; i < n_so; i++)
		free(sonames[i]);
	free(sonames);
}

void
lms_gpu_driver_bins(const char *root, const char *path_list, struct lms_gpu_driver *drv)
{
	char path[4096];
	for (const char *const *b = driver_bins; *b; b++) {
		for (const char *dir = path_list; dir && *dir;) {
			const char *colon = strchr(dir, ':');
			size_t dlen = colon ? (size_t)(colon - dir) : strlen(dir);
			struct stat st;
			int n = snprintf(path, sizeof(path), "%s%.*s/%s", root, (int)dlen, dir, *b);
			size_t rlen = strlen(root);
			if (dlen > 0 && dir[0] == '/' && n > 0 && (size_t)n < sizeof(path) && stat(path, &st) == 0 &&
			    S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
				add(&drv->bins, &drv->n_bins, path + rlen, (size_t)n - rlen);
				break;
			}
			dir = colon ? colon + 1 : NULL;
		}
	}
}

void
lms_gpu_driver_free(struct lms_gpu_driver *drv)
{

	for (size_t i = 0; i < drv->n_libs; i++)
		free(drv->libs[i]);
	for (size_t i = 0; i < drv->n_bins; i++)
		free(drv->bins[i]);
	free(drv->libs);
	free(drv->bins);
	*drv = (struct lms_gpu_driver){0};
}

/* `ldconfig -p`'s output (at most LDCONFIG_MAX bytes), into out. */
static int
run_ldconfig(struct lms_buf *out, struct lms_error **err)
{
	static const char *const where[] = {"/sbin/ldconfig", "/usr/sbin/ldconfig", NULL};
	const char *prog = NULL;
	for (const char *const *w = where; *w && prog == NULL; w++)
		if (access(*w, X_OK) == 0)
			prog = *w;
	if (prog == NULL)
		return lms_error_set(
		    err, LMS_ERR_SETUP, 0,
		    "gpu: find the driver's libraries: no ldconfig (/sbin/ldconfig, /usr/sbin/ldconfig) "
		    "to read the dynamic linker's cache");
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "gpu: a pipe for %s -p", prog);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	char *argv[] = {(char *)prog, (char *)"-p", NULL};
	char *envp[] = {(char *)"LC_ALL=C", NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, prog, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (rc != 0) {
		close(p[0]);
		return lms_error_set(err, LMS_ERR_SETUP, rc, "gpu: run %s -p", prog);
	}
	char chunk[65536];
	ssize_t n;
	bool too_long = false;
	while ((n = read(p[0], chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (out->len + (size_t)n > LDCONFIG_MAX) {
			too_long = true;
			break;
		}
		lms_buf_append(out, chunk, (size_t)n);
	}
	close(p[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (too_long)
		return lms_error_set(err, LMS_ERR_SETUP, 0, "gpu: %s -p printed more than %u MiB", prog,
				     LDCONFIG_MAX >> 20);
	return 0;
}

int
lms_gpu_driver_find(const char *path_list, struct lms_gpu_driver *drv, struct lms_error **err)
{
	*drv = (struct lms_gpu_driver){0};
	struct lms_buf out = {0};
	if (run_ldconfig(&out, err) < 0) {
		lms_buf_clear(&out);
		return -1;
	}
	lms_gpu_driver_libs(out.data ? out.data : "", out.len, lms_gpu_host_abi(), drv);
	lms_buf_clear(&out);
	if (path_list == NULL)
		path_list = getenv("PATH");
	lms_gpu_driver_bins("", path_list && path_list[0] ? path_list : DEFAULT_PATH, drv);
	if (drv->n_libs == 0) {
		lms_gpu_driver_free(drv);
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "gpu: no NVIDIA driver libraries (libcuda, libnvidia-ml, ...) in the dynamic "
				     "linker's cache (ldconfig -p), which an image sandbox needs: install the driver's "
				     "user-space libraries on the host (or run ldconfig after installing them)");
	}
	return 0;
}
