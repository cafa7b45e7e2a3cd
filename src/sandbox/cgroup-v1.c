/* cgroup v1: one hierarchy per controller (this project's development and CI machines). */
#include <fcntl.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/file.h"
#include "sandbox/cgroup.h"

static const char *const controllers[LMS_CG_COUNT] = {
    [LMS_CG_MEMORY] = "memory",
    [LMS_CG_PIDS] = "pids",
    [LMS_CG_CPUACCT] = "cpuacct",
    [LMS_CG_CPU] = "cpu",
};

static bool
same_directory(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int
make_group(struct lms_cgroup *cg, int idx, const char *fs_root, const char *self_text, const char *name,
	   struct lms_error **err)
{
	_cleanup_free_ char *own = lms_cgroup_self_path(self_text, controllers[idx]);
	if (own == NULL) {
		if (idx == LMS_CG_CPUACCT || idx == LMS_CG_CPU)
			return 0; /* optional: CPU time then comes from rusage; a CPU limit then fails to be set */
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "the %s controller is not mounted (no '%s' line in /proc/self/cgroup): "
				     "memory and pids limits need it",
				     controllers[idx], controllers[idx]);
	}
	/* A joined hierarchy ("cpu,cpuacct") is mounted under its joined name, with a symlink per name. */
	_cleanup_free_ char *parent = xasprintf("%s/%s%s", fs_root, controllers[idx], strcmp(own, "/") ? own : "");
	/* "cpu,cpuacct" joined: the cpuacct group made just before is the cpu group too (cpu_fd()). */
	if (idx == LMS_CG_CPU && cg->path[LMS_CG_CPUACCT] != NULL) {
		_cleanup_free_ char *acct_parent = xstrdup(cg->path[LMS_CG_CPUACCT]);
		*strrchr(acct_parent, '/') = '\0';
		if (same_directory(parent, acct_parent))
			return 0;
	}
	lms_cgroup_reap_stale(parent);
	char *path = xasprintf("%s/%s", parent, name);
	/* A caller delegated memory, pids and cpuacct only (an unprivileged run) may not write cpu: without
	 * it, only a request for a CPU limit fails (set_cpu_limit says why). */
	if (idx == LMS_CG_CPU && mkdir(path, 0755) < 0) {
		int e = errno;
		int r = e == EACCES || e == EPERM || e == EROFS
			    ? 0
			    : lms_error_set(err, LMS_ERR_SETUP, e, "create %s", path);
		free(path);
		return r;
	}
	if (idx != LMS_CG_CPU && lms_cgroup_mkdir(path, err) < 0) {
		free(path);
		return -1;
	}
	cg->path[idx] = path;
	cg->dirfd[idx] = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cg->dirfd[idx] < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "open %s", path);
	return 0;
}

int
lms_cgroup_v1_create(struct lms_cgroup *cg, const char *fs_root, const char *self_cgroup, const char *name,
		     const struct lms_limits *limits, struct lms_error **err)
{
	_cleanup_free_ char *self_text = lms_file_read_at(AT_FDCWD, self_cgroup, 65536, err);
	if (self_text == NULL)
		return -1;
	for (int i = 0; i < LMS_CG_COUNT; i++)
		if (make_group(cg, i, fs_root, self_text, name, err) < 0)
			return -1;

	return lms_cgroup_v1_set_limits(cg, limits, err);
}

/* The group that holds cpu.cfs_quota_us: cpu's own, or cpuacct's where the two are joined. -1: none. */
static int
cpu_fd(const struct lms_cgroup *cg, const char **path)
{
	static const int order[] = {LMS_CG_CPU, LMS_CG_CPUACCT};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		int idx = order[i];
		if (cg->dirfd[idx] >= 0 && lms_cgroup_has(cg->dirfd[idx], "cpu.cfs_quota_us")) {
			*path = cg->path[idx];
			return cg->dirfd[idx];
		}
	}
	return -1;
}

static int
set_cpu_limit(const struct lms_cgroup *cg, const struct lms_limits *limits, struct lms_error **err)
{
	const char *path = NULL;
	int fd = cpu_fd(cg, &path);
	if (fd < 0) {
		if (limits->millicpus == 0)
			return 0;
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "a CPU limit (cpus) needs the cgroup v1 cpu controller, which is not mounted "
				     "(no 'cpu' line in /proc/self/cgroup); run without one (cpus 0)");
	}
	char text[32];
	if (limits->millicpus == 0) {
		snprintf(text, sizeof(text), "-1");
	} else {
		snprintf(text, sizeof(text), "%llu", LMS_CGROUP_CPU_PERIOD_US);
		if (lms_cgroup_write(fd, "cpu.cfs_period_us", text, err) < 0)
			return lms_error_prefix(err, "set the CPU period in %s", path);
		snprintf(text, sizeof(text), "%llu",
			 (unsigned long long)(limits->millicpus * LMS_CGROUP_CPU_PERIOD_US / 1000));
	}
	if (lms_cgroup_write(fd, "cpu.cfs_quota_us", text, err) < 0)
		return lms_error_prefix(err, "set the CPU limit in %s", path);
	return 0;
}

int
lms_cgroup_v1_set_limits(const struct lms_cgroup *cg, const struct lms_limits *limits, struct lms_error **err)
{
	char text[32];
	int mem = cg->dirfd[LMS_CG_MEMORY];
	snprintf(text, sizeof(text), "%llu", (unsigned long long)limits->memory_mb << 20);
	/* memsw must stay >= the memory limit: lowered after it, raised before it. */
	bool memsw = lms_cgroup_has(mem, "memory.memsw.limit_in_bytes");
	for (int pass = 0; pass < 2; pass++) {
		const char *file = pass == 0 ? "memory.limit_in_bytes" : "memory.memsw.limit_in_bytes";
		if (pass == 1 && !memsw)
			break;
		if (lms_cgroup_write(mem, file, text, NULL) == 0)
			continue;
		/* Raising: memsw first, then the memory limit. */
		if (pass == 0 && memsw && lms_cgroup_write(mem, "memory.memsw.limit_in_bytes", text, err) == 0 &&
		    lms_cgroup_write(mem, file, text, err) == 0)
			break;
		return lms_error_set(err, LMS_ERR_SETUP, errno, "set %s in %s", file, cg->path[LMS_CG_MEMORY]);
	}
	/* v1 charges TCP buffers to a counter of their own, and only once it has a limit: without one, a
	 * sandbox's loopback connections queue as much as the host's tcp_mem allows, outside its memory limit
	 * (v2 charges them to memory.current). A quarter of the memory limit: together, 1.25 times it. */
	if (lms_cgroup_has(mem, "memory.kmem.tcp.limit_in_bytes")) {
		snprintf(text, sizeof(text), "%llu", (unsigned long long)limits->memory_mb << 18);
		if (lms_cgroup_write(mem, "memory.kmem.tcp.limit_in_bytes", text, err) < 0)
			return lms_error_prefix(err, "set the TCP buffer limit in %s", cg->path[LMS_CG_MEMORY]);
	}
	snprintf(text, sizeof(text), "%llu", (unsigned long long)limits->pids);
	if (lms_cgroup_write(cg->dirfd[LMS_CG_PIDS], "pids.max", text, err) < 0)
		return lms_error_prefix(err, "set pids limit in %s", cg->path[LMS_CG_PIDS]);
	return set_cpu_limit(cg, limits, err);
}
