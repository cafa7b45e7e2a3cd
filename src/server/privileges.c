/*
 * The start-up privilege check (privileges.h). The namespace steps run in a forked child, since they
 * change the process that makes them; the cgroup step makes and removes one probe group with the
 * sandbox engine's own code, so that it fails exactly as a sandbox would. Called before any thread exists.
 */
#include "server/privileges.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file.h"
#include "sandbox/cgroup.h"

/* What the child reports on its pipe: the step that failed (LMS_PRIV_OK: none) and its errno. */
struct probe_report {
	int step;
	int errnum;
};

static void
report(int fd, enum lms_priv_step step, int errnum)
{
	struct probe_report r = {.step = (int)step, .errnum = errnum};
	ssize_t n = write(fd, &r, sizeof(r));
	_exit(n == (ssize_t)sizeof(r) ? 0 : 1);
}

static bool
write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	size_t len = strlen(text);
	bool ok = write(fd, text, len) == (ssize_t)len;
	return close(fd) == 0 && ok;
}

/* The grandchild: PID 1 of the new PID namespace, the only process that may mount its proc. */
static void
probe_proc(int fd, const char *dir)
{
	char target[64];
	snprintf(target, sizeof(target), "%s/proc", dir);
	if (mkdir(target, 0555) < 0)
		report(fd, LMS_PRIV_MOUNT, errno);
	if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		report(fd, LMS_PRIV_PROC, errno);
	report(fd, LMS_PRIV_OK, 0);
}

/* The child: the sandbox's steps in miniature (sandbox/prepare.c, sandbox/mount.c), own ids mapped only. */
static void
probe_namespaces(int fd)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (unshare(CLONE_NEWUSER) < 0)
		report(fd, LMS_PRIV_USERNS, errno);
	char map[32];
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)uid);
	if (!write_text("/proc/self/setgroups", "deny") || !write_text("/proc/self/uid_map", map))
		report(fd, LMS_PRIV_IDMAP, errno);
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)gid);
	if (!write_text("/proc/self/gid_map", map))
		report(fd, LMS_PRIV_IDMAP, errno);
	if (unshare(CLONE_NEWNS | CLONE_NEWPID) < 0)
		report(fd, LMS_PRIV_USERNS, errno);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		report(fd, LMS_PRIV_MOUNT, errno);
	/* Any directory will do: the tmpfs is seen by this mount namespace only. */
	const char *dir = access("/tmp", F_OK) == 0 ? "/tmp" : access("/mnt", F_OK) == 0 ? "/mnt" : "/dev";
	if (mount("lms-probe", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755") < 0)
		report(fd, LMS_PRIV_MOUNT, errno);
	pid_t pid = fork();
	if (pid < 0)
		report(fd, LMS_PRIV_USERNS, errno);
	if (pid == 0)
		probe_proc(fd, dir);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	_exit(0);
}

static void
read_context(struct lms_priv_context *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	_cleanup_free_ char *status = lms_file_read_at(AT_FDCWD, "/proc/self/status", 65536, NULL);
	const char *line = status ? strstr(status, "\nSeccomp:") : NULL;
	ctx->seccomp_filtered = line && atoi(line + strlen("\nSeccomp:")) == 2;
	_cleanup_free_ char *aa = lms_file_read_at(AT_FDCWD, "/proc/self/attr/apparmor/current", 256, NULL);
	if (aa == NULL)
		aa = lms_file_read_at(AT_FDCWD, "/proc/self/attr/current", 256, NULL);
	/* "docker-default (enforce)"; "unconfined" or a complain-mode profile refuses nothing. */
	if (aa && strstr(aa, "(enforce)")) {
		size_t n = strcspn(aa, " \n");
		snprintf(ctx->apparmor, sizeof(ctx->apparmor), "%.*s", (int)(n < 63 ? n : 63), aa);
	}
	ctx->container = access("/.dockerenv", F_OK) == 0 || access("/run/.containerenv", F_OK) == 0 ||
			 getenv("KUBERNETES_SERVICE_HOST") != NULL;
}

#define SECCOMP_HINT                                                                                                   \
	"Docker: --security-opt seccomp=unconfined; Kubernetes: securityContext.seccompProfile.type: Unconfined "      \
	"(every sandboxed command still gets the sandbox's own, stricter filter)"

int
lms_privileges_explain(enum lms_priv_step step, int errnum, const struct lms_priv_context *ctx, struct lms_error **err)
{
	const char *why = strerror(errnum);
	switch (step) {
	case LMS_PRIV_OK:
		return 0;
	case LMS_PRIV_USERNS:
		if (ctx->seccomp_filtered && errnum == EPERM)
			return lms_error_set(
			    err, LMS_ERR_FORBIDDEN, 0,
			    "missing privilege: seccomp: this process's seccomp filter refuses new user "
			    "namespaces (%s), as Docker's default profile does; grant it: " SECCOMP_HINT,
			    why);
		return lms_error_set(
		    err, LMS_ERR_FORBIDDEN, 0,
		    "missing privilege: user namespaces: the kernel refuses a new user namespace (%s); grant it: "
		    "sysctl user.max_user_namespaces=15000 (and kernel.unprivileged_userns_clone=1 where it exists)%s",
		    why, ctx->container ? "; Docker: no userns-remap for this container (--userns=host)" : "");
	case LMS_PRIV_IDMAP:
		return lms_error_set(
		    err, LMS_ERR_FORBIDDEN, 0,
		    "missing privilege: capabilities SETUID, SETGID and SETFCAP: writing a sandbox's "
		    "uid and gid maps was refused (%s); grant them: Docker: --cap-add SETUID --cap-add "
		    "SETGID --cap-add SETFCAP (its default set has them); Kubernetes: "
		    "securityContext.capabilities.add",
		    why);
	case LMS_PRIV_MOUNT:
		if (ctx->apparmor[0])
			return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
					     "missing privilege: AppArmor: the profile '%s' refuses mounts in the "
					     "sandbox's namespaces (%s); grant it: Docker: --security-opt "
					     "apparmor=unconfined; Kubernetes: securityContext.appArmorProfile.type: "
					     "Unconfined",
					     ctx->apparmor, why);
		if (ctx->seccomp_filtered)
			return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
					     "missing privilege: seccomp: this process's seccomp filter refuses mount "
					     "(%s); grant it: " SECCOMP_HINT,
					     why);
		return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
				     "missing privilege: mount in a user namespace: refused (%s) by a security module; "
				     "run the daemon unconfined",
				     why);
	case LMS_PRIV_PROC:
		return lms_error_set(
		    err, LMS_ERR_FORBIDDEN, 0,
		    "missing privilege: an unmasked /proc: the kernel refuses the sandbox a fresh proc "
		    "(%s) while parts of this one are masked or read-only, as a container's are; grant "
		    "it: Docker: --security-opt systempaths=unconfined; Kubernetes: "
		    "securityContext.procMount: Unmasked",
		    why);
	}
	return lms_error_set(err, LMS_ERR_INTERNAL, 0, "privilege check: unknown step %d", (int)step);
}

static int
check_namespaces(struct lms_error **err)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "privilege check: pipe");
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(fds[0]);
		close(fds[1]);
		return lms_error_set(err, LMS_ERR_INTERNAL, e, "privilege check: fork");
	}
	if (pid == 0) {
		close(fds[0]);
		probe_namespaces(fds[1]);
	}
	close(fds[1]);
	struct probe_report r = {.step = -1};
	ssize_t n;
	while ((n = read(fds[0], &r, sizeof(r))) < 0 && errno == EINTR)
		;
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(r) || r.step < LMS_PRIV_OK || r.step > LMS_PRIV_PROC)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "privilege check: its child ended without a report");
	struct lms_priv_context ctx;
	read_context(&ctx);
	return lms_privileges_explain((enum lms_priv_step)r.step, r.errnum, &ctx, err);
}

static int
check_cgroup(const struct lms_limits *limits, struct lms_error **err)
{
	/* Named as the engine names its groups (lms-PID-N), so that one left by a killed daemon is reaped. */
	char name[48];
	snprintf(name, sizeof(name), "lms-%d-0", (int)getpid());
	struct lms_cgroup *cg = NULL;
	_cleanup_error_ struct lms_error *cause = NULL;
	if (lms_cgroup_create(LMS_CGROUP_FS, LMS_CGROUP_SELF, name, limits, &cg, &cause) == 0)
		return lms_cgroup_destroy(cg, err);
	/* The cause without the engine's own hint (written for a user outside any container). */
	size_t keep = strcspn(cause->message, "(");
	while (keep > 0 && cause->message[keep - 1] == ' ')
		keep--;
	struct lms_priv_context ctx;
	read_context(&ctx);
	return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
			     "missing privilege: a writable cgroup for the sandboxes' limits (%.*s); grant it: %s",
			     (int)keep, cause->message,
			     ctx.container ? "Docker: --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw; Kubernetes: "
					     "mount the host's /sys/fs/cgroup (hostPath) writable"
			     : geteuid() == 0 ? "mount /sys/fs/cgroup writable (systemd: Delegate=yes)"
					      : "run as root, or in a delegated cgroup (systemd-run --user --scope -p "
						"Delegate=yes)");
}

int
lms_privileges_check(const struct lms_limits *limits, struct lms_error **err)
{
	if (check_namespaces(err) < 0)
		return -1;
	return check_cgroup(limits, err);
}
