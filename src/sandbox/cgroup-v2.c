/* cgroup v2: one unified hierarchy (Ubuntu 22.04 and later, the GPU machines). */
#include <fcntl.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/file.h"
#include "sandbox/cgroup.h"

#define TOP_GROUP "lm-sandbox"

static bool
has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; p && (p = strstr(p, word)) != NULL; p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

/* Makes `dir` hand memory and pids to its children, and cpu where `dir` has it (a CPU limit needs it; its
 * absence is reported when one is asked for). Fails (EBUSY) when `dir` itself holds processes: cgroup
 * v2's "no internal processes" rule. */
static int
delegate_controllers(const char *dir, struct lms_error **err)
{
	_cleanup_fd_ int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "open %s", dir);
	_cleanup_free_ char *enabled = lms_file_read_at(fd, "cgroup.subtree_control", 4096, err);
	if (enabled == NULL)
		return -1;
	_cleanup_free_ char *available = lms_file_read_at(fd, "cgroup.controllers", 4096, err);
	if (available == NULL)
		return -1;
	bool cpu = has_word(available, "cpu");
	if (has_word(enabled, "memory") && has_word(enabled, "pids") && (!cpu || has_word(enabled, "cpu")))
		return 0;
	if (!has_word(available, "memory") || !has_word(available, "pids"))
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "%s lacks the memory or pids controller (it offers: %s)", dir, available);
	/* cpu can be refused alone (a real-time process in the group): memory and pids are then enabled. */
	if (cpu && lms_cgroup_write(fd, "cgroup.subtree_control", "+memory +pids +cpu", NULL) == 0)
		return 0;
	if (lms_cgroup_write(fd, "cgroup.subtree_control", "+memory +pids", err) < 0)
		return lms_error_prefix(err, "enable memory and pids in %s", dir);
	return 0;
}

/* The group under which sandboxes are made: the caller's own when it can take them, else a
 * top-level one. */
static char *
parent_group(const char *fs_root, const char *self_cgroup, struct lms_error **err)
{
	_cleanup_free_ char *self_text = lms_file_read_at(AT_FDCWD, self_cgroup, 65536, err);
	if (self_text == NULL)
		return NULL;
	_cleanup_free_ char *own = lms_cgroup_self_path(self_text, "");
	if (own != NULL && strcmp(own, "/") != 0) {
		_cleanup_free_ char *dir = xasprintf("%s%s", fs_root, own);
		if (delegate_controllers(dir, NULL) == 0)
			return steal_pointer(&dir);
	}
	_cleanup_free_ char *top = xasprintf("%s/" TOP_GROUP, fs_root);
	if (access(top, F_OK) < 0 && lms_cgroup_mkdir(top, err) < 0)
		return NULL;
	if (delegate_controllers(fs_root, err) < 0 || delegate_controllers(top, err) < 0)
		return NULL;
	return steal_pointer(&top);
}

/* No swap, and one OOM kill takes the whole group (a one-shot call's sandbox, a command's own group). */
static int
group_rules(const struct lms_cgroup *cg, struct lms_error **err)
{
	int fd = cg->dirfd[0];
	if (lms_cgroup_has(fd, "memory.swap.max") && lms_cgroup_write(fd, "memory.swap.max", "0", err) < 0)
		return lms_error_prefix(err, "set swap limit in %s", cg->path[0]);
	if (lms_cgroup_has(fd, "memory.oom.group") && lms_cgroup_write(fd, "memory.oom.group", "1", err) < 0)
		return lms_error_prefix(err, "set memory.oom.group in %s", cg->path[0]);
	return 0;
}

int
lms_cgroup_v2_create(struct lms_cgroup *cg, const char *fs_root, const char *self_cgroup, const char *name,
		     const struct lms_limits *limits, struct lms_error **err)
{
	_cleanup_free_ char *parent = parent_group(fs_root, self_cgroup, err);
	if (parent == NULL)
		return -1;
	lms_cgroup_reap_stale(parent);
	char *path = xasprintf("%s/%s", parent, name);
	if (lms_cgroup_mkdir(path, err) < 0) {
		free(path);
		return -1;
	}
	cg->path[0] = path;
	cg->dirfd[0] = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cg->dirfd[0] < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "open %s", path);
	if (group_rules(cg, err) < 0)
		return -1;
	/* PID 1 sits in a leaf of its own, so that the group can later hand controllers to its commands'
	 * groups (lms_cgroup_child_create): v2 allows no process in a group whose children have them. */
	_cleanup_free_ char *leaf = xasprintf("%s/init", path);
	if (lms_cgroup_mkdir(leaf, err) < 0)
		return -1;
	if ((cg->init_fd = open(leaf, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "open %s", leaf);
	return lms_cgroup_v2_set_limits(cg, limits, err);
}

int
lms_cgroup_v2_child_setup(const struct lms_cgroup *cg, struct lms_error **err)
{
	return group_rules(cg, err);
}

int
lms_cgroup_v2_delegate(const struct lms_cgroup *parent, struct lms_error **err)
{
	return delegate_controllers(parent->path[0], err);
}

int
lms_cgroup_v2_set_limits(const struct lms_cgroup *cg, const struct lms_limits *limits, struct lms_error **err)
{
	char text[32];
	snprintf(text, sizeof(text), "%llu", (unsigned long long)limits->memory_mb << 20);
	if (lms_cgroup_write(cg->dirfd[0], "memory.max", text, err) < 0)
		return lms_error_prefix(err, "set memory limit in %s", cg->path[0]);
	snprintf(text, sizeof(text), "%llu", (unsigned long long)limits->pids);
	if (lms_cgroup_write(cg->dirfd[0], "pids.max", text, err) < 0)
		return lms_error_prefix(err, "set pids limit in %s", cg->path[0]);
	if (!lms_cgroup_has(cg->dirfd[0], "cpu.max")) {
		if (limits->millicpus == 0)
			return 0;
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0,
				     "a CPU limit (cpus) needs the cpu controller in %s, which its parent does not "
				     "delegate; run without one (cpus 0)",
				     cg->path[0]);
	}
	if (limits->millicpus == 0)
		snprintf(text, sizeof(text), "max %llu", LMS_CGROUP_CPU_PERIOD_US);
	else
		snprintf(text, sizeof(text), "%llu %llu",
			 (unsigned long long)(limits->millicpus * LMS_CGROUP_CPU_PERIOD_US / 1000),
			 LMS_CGROUP_CPU_PERIOD_US);
	if (lms_cgroup_write(cg->dirfd[0], "cpu.max", text, err) < 0)
		return lms_error_prefix(err, "set the CPU limit in %s", cg->path[0]);
	return 0;
}
