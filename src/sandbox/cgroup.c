#include "sandbox/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "core/file.h"

char *
lms_cgroup_self_path(const char *self_text, const char *controller)
{
	/* Lines are "ID:controller[,controller...]:/path"; v2 has "0::/path". */
	size_t want = strlen(controller);
	for (const char *line = self_text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		const char *c1 = strchr(line, ':');
		if (!c1)
			break;
		const char *c2 = strchr(c1 + 1, ':');
		if (!c2)
			break;
		const char *end = strchr(c2, '\n');
		size_t path_len = end ? (size_t)(end - c2 - 1) : strlen(c2 + 1);
		const char *ctrls = c1 + 1;
		size_t ctrls_len = (size_t)(c2 - ctrls);
		bool match = false;
		if (want == 0) {
			match = ctrls_len == 0 && strncmp(line, "0:", 2) == 0;
		} else {
			for (const char *p = ctrls; p < c2;) {
				const char *comma = memchr(p, ',', (size_t)(c2 - p));
				size_t len = comma ? (size_t)(comma - p) : (size_t)(c2 - p);
				if (len == want && memcmp(p, controller, len) == 0)
					match = true;
				p += len + 1;
			}
		}
		if (match)
			return xstrndup(c2 + 1, path_len);
	}
	return NULL;
}

static struct lms_cgroup *
new_cgroup(int version)
{
	struct lms_cgroup *cg = xcalloc(1, sizeof(*cg));
	cg->version = version;
	cg->init_fd = -1;
	for (int i = 0; i < LMS_CG_COUNT; i++)
		cg->dirfd[i] = -1;
	return cg;
}

int
lms_cgroup_create(const char *fs_root, const char *self_cgroup, const char *name, const struct lms_limits *limits,
		  struct lms_cgroup **out, struct lms_error **err)
{
	struct lms_cgroup *cg = new_cgroup(0);

	/* v2 puts cgroup.controllers at the root of the unified mount; v1 and hybrid hosts do not. */
	_cleanup_free_ char *probe = xasprintf("%s/cgroup.controllers", fs_root);
	int r;
	if (access(probe, F_OK) == 0) {
		cg->version = 2;
		r = lms_cgroup_v2_create(cg, fs_root, self_cgroup, name, limits, err);
	} else {
		cg->version = 1;
		r = lms_cgroup_v1_create(cg, fs_root, self_cgroup, name, limits, err);
	}
	if (r < 0) {
		lms_cgroup_destroy(cg, NULL);
		return lms_error_prefix(err, "cgroup");
	}
	*out = cg;
	return 0;
}

int
lms_cgroup_set_limits(const struct lms_cgroup *cg, const struct lms_limits *limits, struct lms_error **err)
{
	int r =
	    cg->version == 2 ? lms_cgroup_v2_set_limits(cg, limits, err) : lms_cgroup_v1_set_limits(cg, limits, err);
	return r < 0 ? lms_error_prefix(err, "cgroup") : 0;
}

int
lms_cgroup_child_create(const struct lms_cgroup *parent, const char *name, const struct lms_limits *limits,
			struct lms_cgroup **out, struct lms_error **err)
{
	struct lms_cgroup *cg = new_cgroup(parent->version);
	int r = parent->version == 2 ? lms_cgroup_v2_delegate(parent, err) : 0;
	/* v1: the memory and pids hierarchies (path[0] and path[1]); v2: the one unified group (path[0]). */
	for (int i = LMS_CG_MEMORY; r == 0 && i <= LMS_CG_PIDS; i++) {
		if (parent->path[i] == NULL)
			continue;
		char *path = xasprintf("%s/%s", parent->path[i], name);
		if ((r = lms_cgroup_mkdir(path, err)) < 0) {
			free(path);
			break;
		}
		cg->path[i] = path;
		if ((cg->dirfd[i] = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
			r = lms_error_set(err, LMS_ERR_SETUP, errno, "open %s", path);
	}
	struct lms_limits own = *limits;
	own.millicpus = 0; /* a CPU limit stays the sandbox's */
	if (r == 0 && cg->version == 2)
		r = lms_cgroup_v2_child_setup(cg, err);
	if (r == 0)
		r = lms_cgroup_set_limits(cg, &own, err);
	if (r < 0) {
		lms_cgroup_destroy(cg, NULL);
		return lms_error_prefix(err, "a command's own group");
	}
	*out = cg;
	return 0;
}

int
lms_cgroup_join_fds(const struct lms_cgroup *cg, int fds[2], size_t *n, struct lms_error **err)
{
	*n = 0;
	for (int i = LMS_CG_MEMORY; i <= LMS_CG_PIDS; i++) {
		if (cg->dirfd[i] < 0)
			continue;
		int fd = openat(cg->dirfd[i], "cgroup.procs", O_WRONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0) {
			int e = errno;
			lms_fd_close_all(fds, *n);
			*n = 0;
			return lms_error_set(err, LMS_ERR_SETUP, e, "cgroup: open %s/cgroup.procs", cg->path[i]);
		}
		fds[(*n)++] = fd;
	}
	return 0;
}

int
lms_cgroup_clone_fd(const struct lms_cgroup *cg)
{
	return cg->version == 2 ? (cg->init_fd >= 0 ? cg->init_fd : cg->dirfd[0]) : -1;
}

int
lms_cgroup_attach(const struct lms_cgroup *cg, pid_t pid, struct lms_error **err)
{
	char text[32];
	snprintf(text, sizeof(text), "%d", (int)pid);
	for (int i = 0; i < LMS_CG_COUNT; i++) {
		if (cg->dirfd[i] < 0)
			continue;
		/* v2: PID 1 goes to the init leaf (the group's own list must stay empty). */
		int fd = i == 0 && cg->init_fd >= 0 ? cg->init_fd : cg->dirfd[i];
		if (lms_cgroup_write(fd, "cgroup.procs", text, err) < 0)
			return lms_error_prefix(err, "cgroup: move pid %d into %s", (int)pid, cg->path[i]);
	}
	return 0;
}

int
lms_cgroup_mkdir(const char *path, struct lms_error **err)
{
	if (mkdir(path, 0755) == 0)
		return 0;
	int e = errno;
	bool denied = e == EACCES || e == EPERM || e == EROFS;
	return lms_error_set(err, denied ? LMS_ERR_FORBIDDEN : LMS_ERR_SETUP, 0, "create %s: %s%s", path, strerror(e),
			     denied ? " (memory and pids limits need a cgroup this user may write: run as root, or "
				      "from a cgroup delegated to this user, e.g. systemd-run --user --scope -p "
				      "Delegate=yes)"
				    : "");
}

int
lms_cgroup_write(int dirfd, const char *file, const char *text, struct lms_error **err)
{
	/* O_CREAT|O_TRUNC are no-ops on cgroupfs and let the unit tests run over a plain directory tree. */
	_cleanup_fd_ int fd = openat(dirfd, file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "open %s", file);
	size_t len = strlen(text);
	ssize_t n = write(fd, text, len);
	if (n < 0 || (size_t)n != len)
		return lms_error_set(err, LMS_ERR_INTERNAL, n < 0 ? errno : EIO, "write '%s' to %s", text, file);
	return 0;
}

bool
lms_cgroup_has(int dirfd, const char *file)
{
	return faccessat(dirfd, file, F_OK, 0) == 0;
}

static int
read_u64_field(int dirfd, const char *file, const char *key, uint64_t *value, struct lms_error **err)
{
	_cleanup_free_ char *text = lms_file_read_at(dirfd, file, 65536, err);
	if (text == NULL)
		return -1;
	if (key == NULL) {
		*value = strtoull(text, NULL, 10);
		return 0;
	}
	size_t klen = strlen(key);
	for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
			*value = strtoull(line + klen + 1, NULL, 10);
			return 0;
		}
	}
	return lms_error_set(err, LMS_ERR_INTERNAL, 0, "%s has no '%s' line", file, key);
}

int
lms_cgroup_cpu_ns(const struct lms_cgroup *cg, uint64_t *ns, struct lms_error **err)
{
	if (cg->version == 2) {
		uint64_t usec = 0;
		if (read_u64_field(cg->dirfd[0], "cpu.stat", "usage_usec", &usec, err) < 0)
			return -1;
		*ns = usec * 1000;
		return 0;
	}
	if (cg->dirfd[LMS_CG_CPUACCT] < 0)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, 0, "cgroup: no cpuacct controller");
	return read_u64_field(cg->dirfd[LMS_CG_CPUACCT], "cpuacct.usage", NULL, ns, err);
}

long
lms_cgroup_memory_peak_kb(const struct lms_cgroup *cg)
{
	uint64_t bytes = 0;
	if (cg->version == 2)
		read_u64_field(cg->dirfd[0], "memory.peak", NULL, &bytes, NULL); /* Linux 5.19+ */
	else if (cg->dirfd[LMS_CG_MEMORY] >= 0)
		read_u64_field(cg->dirfd[LMS_CG_MEMORY], "memory.max_usage_in_bytes", NULL, &bytes, NULL);
	return (long)(bytes / 1024);
}

uint64_t
lms_cgroup_oom_kills(const struct lms_cgroup *cg)
{
	uint64_t kills = 0;
	if (cg->version == 2)
		read_u64_field(cg->dirfd[0], "memory.events", "oom_kill", &kills, NULL);
	else if (cg->dirfd[LMS_CG_MEMORY] >= 0)
		read_u64_field(cg->dirfd[LMS_CG_MEMORY], "memory.oom_control", "oom_kill", &kills, NULL);
	return kills;
}

bool
lms_cgroup_oom_killed(const struct lms_cgroup *cg)
{
	return lms_cgroup_oom_kills(cg) > 0;
}

bool
lms_cgroup_empty(const struct lms_cgroup *cg)
{
	int fd = cg->version == 2 ? cg->dirfd[0] : cg->dirfd[LMS_CG_PIDS];
	_cleanup_free_ char *procs = fd >= 0 ? lms_file_read_at(fd, "cgroup.procs", 1 << 20, NULL) : NULL;
	return procs != NULL && procs[0] == '\0';
}

bool
lms_cgroup_pids_hit(const struct lms_cgroup *cg)
{
	uint64_t refused = 0;
	int fd = cg->version == 2 ? cg->dirfd[0] : cg->dirfd[LMS_CG_PIDS];
	if (fd >= 0)
		read_u64_field(fd, "pids.events", "max", &refused, NULL);
	return refused > 0;
}

static void
kill_members(int dirfd)
{
	/* v2 has cgroup.kill (5.14+); elsewhere kill what cgroup.procs lists. */
	if (lms_cgroup_has(dirfd, "cgroup.kill") && lms_cgroup_write(dirfd, "cgroup.kill", "1", NULL) == 0)
		return;
	_cleanup_free_ char *procs = lms_file_read_at(dirfd, "cgroup.procs", 1 << 20, NULL);
	for (char *p = procs; p && *p;) {
		char *end;
		long pid = strtol(p, &end, 10);
		if (end == p)
			break;
		if (pid > 0)
			kill((pid_t)pid, SIGKILL);
		p = end;
		while (*p == '\n')
			p++;
	}
}

static int remove_dir(const char *path, int dirfd, struct lms_error **err);
static void kill_members(int dirfd);

static void remove_group_tree(const char *path);

/* Kills the members of every group below `path` (its commands' own, v2's init leaf) and removes those
 * groups, deepest first: their parent cannot go before them. */
static void
remove_children(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		_cleanup_free_ char *child = xasprintf("%s/%s", path, e->d_name);
		remove_group_tree(child);
	}
	closedir(d);
}

/* The group at `path` and every group below it: members killed, directories removed. */
static void
remove_group_tree(const char *path)
{
	remove_children(path);
	_cleanup_fd_ int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0)
		kill_members(fd);
	remove_dir(path, fd, NULL);
}

void
lms_cgroup_reap_stale(const char *parent)
{
	/* Groups are named lms-PID-N: one whose creator is gone was left by a killed supervisor. */
	DIR *d = opendir(parent);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int pid;
		unsigned seq;
		if (sscanf(e->d_name, "lms-%d-%u", &pid, &seq) != 2 || pid <= 0 || pid == getpid())
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s", parent, e->d_name);
		remove_group_tree(path);
	}
	closedir(d);
}

static int
remove_dir(const char *path, int dirfd, struct lms_error **err)
{
	/* Processes killed a moment ago may still be exiting: rmdir says EBUSY until they are gone. A fork
	 * bomb's child forked after the list was read was not killed with it: the members (dirfd, when
	 * given) are killed again every 10 ms until none is left. */
	for (int tries = 0;; tries++) {
		if (rmdir(path) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY || tries >= 2000)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "cgroup: remove %s", path);
		if (dirfd >= 0 && tries % 10 == 9)
			kill_members(dirfd);
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
}

int
lms_cgroup_destroy(struct lms_cgroup *cg, struct lms_error **err)
{
	if (cg == NULL)
		return 0;
	int r = 0;
	if (cg->init_fd >= 0) {
		close(cg->init_fd);
		_cleanup_free_ char *leaf = xasprintf("%s/init", cg->path[0]);
		(void)rmdir(leaf); /* empty once PID 1 was reaped; else remove_children below */
	}
	for (int i = 0; i < LMS_CG_COUNT; i++) {
		/* Empty already when its PID 1 was reaped (the common case): killing is for the rest. */
		bool removed = cg->path[i] == NULL || rmdir(cg->path[i]) == 0 || errno == ENOENT;
		if (!removed)
			remove_children(cg->path[i]);
		if (cg->dirfd[i] >= 0 && !removed)
			kill_members(cg->dirfd[i]);
		if (!removed && remove_dir(cg->path[i], cg->dirfd[i], err) < 0)
			r = -1;
		if (cg->dirfd[i] >= 0)
			close(cg->dirfd[i]);
		free(cg->path[i]);
	}
	free(cg);
	return r;
}
