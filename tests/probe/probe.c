/*
 * lms-probe: tries one forbidden (or revealing) thing per invocation and prints one JSON line.
 *
 *   lms-probe CHECK [ARG...]
 *   {"check":"CHECK","ok":true|false,"errno":"EPERM"|null,"detail":"..."}
 *
 * `ok` says the operation succeeded; `errno` names the error when it did not. The probe exits 0 whatever the
 * check found and 1 only for a usage error. It is linked statically so it runs in any root file system, and it is
 * fed into the sandbox on stdin by tests/system/conftest.py (crun's tests/init.c and bubblewrap's try-syscall.c
 * follow the same idea).
 *
 * Every check is written to be harmless when run as root on the host, which the tests do as a positive control:
 * paths that cannot exist, invalid magic numbers, "set the clock to what it is", handles that are closed at once,
 * files that are removed again. Checks that open a file for writing never write into an existing one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/kexec.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/quota.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

extern char **environ;

struct result {
	bool ok;
	int err;
	size_t len;
	char detail[65536];
};

typedef void (*check_fn)(char **argv, struct result *r);

struct check {
	const char *name;
	int min_args;
	int max_args;
	const char *args;
	check_fn fn;
	const char *doc;
};

static struct result result;
static _Alignas(struct file_handle) unsigned char handle_buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];

static void __attribute__((format(printf, 2, 3))) add(struct result *r, const char *fmt, ...)
{
	size_t room = sizeof(r->detail) - r->len;
	va_list ap;

	if (room <= 1)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(r->detail + r->len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->len += (size_t)n < room ? (size_t)n : room - 1;
}

static void
add_bytes(struct result *r, const char *p, size_t n)
{
	size_t room = sizeof(r->detail) - 1 - r->len;

	if (n > room)
		n = room;
	memcpy(r->detail + r->len, p, n);
	r->len += n;
	r->detail[r->len] = '\0';
}

/* Records the outcome of a call that returns < 0 and sets errno on failure. Returns true when it succeeded. */
static bool
record(struct result *r, long rc)
{
	r->ok = rc >= 0;
	r->err = r->ok ? 0 : errno;
	return r->ok;
}

/* Checks that are one call; FD_CHECK's call returns a new descriptor, closed again. */
#define SIMPLE_CHECK(fn, call) CHECK_WITH(fn, call, record)
#define FD_CHECK(fn, call) CHECK_WITH(fn, call, record_fd)
#define CHECK_WITH(fn, call, recorder)                                                                                 \
	static void fn(char **argv, struct result *r)                                                                  \
	{                                                                                                              \
		(void)argv;                                                                                            \
		recorder(r, (call));                                                                                   \
	}

/* Records like record() and closes what the call returned when it is a new descriptor. */
static bool
record_fd(struct result *r, long rc)
{
	if (record(r, rc))
		close((int)rc);
	return r->ok;
}

static void
add_file(struct result *r, const char *path)
{
	char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0) {
		add(r, "(%s: %s)", path, strerror(errno));
		return;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		add_bytes(r, buf, (size_t)n);
	close(fd);
}

/* Appends the lines of /proc/self/status that start with `prefix`. */
static bool
add_status_lines(struct result *r, const char *prefix)
{
	char line[512];
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return record(r, -1);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, prefix, strlen(prefix)) == 0)
			add(r, "%s", line);
	fclose(f);
	r->ok = true;
	return true;
}

/* ---- files and mounts ---------------------------------------------------------------------------------------- */

static void
check_read(char **argv, struct result *r)
{
	char buf[256];
	int fd = open(argv[0], O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (!record(r, fd))
		return;
	ssize_t n = read(fd, buf, sizeof(buf));
	if (record(r, n))
		add_bytes(r, buf, (size_t)n);
	close(fd);
}

static void
check_write(char **argv, struct result *r)
{
	int fd = open(argv[0], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);

	if (fd >= 0) {
		r->ok = write(fd, "lms-probe\n", 10) == 10;
		r->err = r->ok ? 0 : errno;
		add(r, "created, wrote and removed the file");
		close(fd);
		unlink(argv[0]);
		return;
	}
	if (errno != EEXIST) {
		record(r, -1);
		return;
	}
	/* An existing file (a sysfs attribute, /proc/sysrq-trigger) is only opened: permission is decided there. */
	fd = open(argv[0], O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (record(r, fd)) {
		add(r, "opened the existing file for writing (nothing written)");
		close(fd);
	}
}

static void
check_mount(char **argv, struct result *r)
{
	const char *target = argv[0] ? argv[0] : "/tmp/x";

	if (mkdir(target, 0700) < 0 && errno != EEXIST)
		add(r, "mkdir %s: %s; ", target, strerror(errno));
	if (record(r, mount("lms-probe", target, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k"))) {
		add(r, "mounted tmpfs on %s", target);
		umount2(target, 0);
	}
}

SIMPLE_CHECK(check_umount, umount2(argv[0], 0))
/* Paths that cannot exist: allowed, the call fails with ENOENT; denied, with EPERM. */
SIMPLE_CHECK(check_pivot_root, syscall(SYS_pivot_root, "/lms-probe-absent-new", "/lms-probe-absent-old"))

static void
check_mknod(char **argv, struct result *r)
{
	const char *path = argv[0] ? argv[0] : "/tmp/lms-probe-node";

	if (record(r, mknod(path, S_IFCHR | 0600, makedev(1, 3)))) {
		add(r, "created char device 1:3 at %s (removed)", path);
		unlink(path);
	}
}

SIMPLE_CHECK(check_chroot, chroot(argv[0] ? argv[0] : "/"))

static void
check_listdir(char **argv, struct result *r)
{
	DIR *d = opendir(argv[0]);
	struct dirent *e;

	if (!record(r, d ? 0 : -1))
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			add(r, "%s\n", e->d_name);
	closedir(d);
}

/* ---- namespaces and processes -------------------------------------------------------------------------------- */

static void
reap(long pid)
{
	if (pid > 0)
		waitpid((pid_t)pid, NULL, __WALL);
}

SIMPLE_CHECK(check_unshare_user, unshare(CLONE_NEWUSER))

static void
check_clone_user(char **argv, struct result *r)
{
	(void)argv;
	/* x86_64 argument order: flags, stack, parent_tid, child_tid, tls. A NULL stack makes it fork-like. */
	long pid = syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), NULL, NULL, NULL, 0UL);

	if (pid == 0)
		_exit(0);
	record(r, pid);
	reap(pid);
}

static void
check_clone3(char **argv, struct result *r)
{
	(void)argv;
	struct clone_args ca;

	/* clone3's flags live in memory that seccomp cannot read, so a filter must refuse the call as a whole. */
	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_NEWUSER;
	ca.exit_signal = SIGCHLD;
	add(r, "clone3(CLONE_NEWUSER)");
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid == 0)
		_exit(0);
	record(r, pid);
	reap(pid);
}

static void
check_setns(char **argv, struct result *r)
{
	const char *path = argv[0] ? argv[0] : "/proc/self/ns/net";
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		add(r, "open %s failed", path);
		record(r, -1);
		return;
	}
	add(r, "setns(%s)", path);
	record(r, setns(fd, 0));
	close(fd);
}

static void
check_kill(char **argv, struct result *r)
{
	long pid = strcmp(argv[0], "self") == 0 ? (long)getpid() : strtol(argv[0], NULL, 10);
	int sig = (int)strtol(argv[1], NULL, 10);

	add(r, "kill(%ld, %d)", pid, sig);
	record(r, kill((pid_t)pid, sig));
}

static void
check_pid(char **argv, struct result *r)
{
	(void)argv;
	add(r, "%ld %ld", (long)getpid(), (long)getppid());
	r->ok = true;
}

/* Copies between two buffers of this very process. */
static long
process_vm(long nr)
{
	static char a[16] = "lms-probe", b[16];
	struct iovec local = {a, sizeof(a)}, remote = {b, sizeof(b)};

	return syscall(nr, (long)getpid(), &local, 1UL, &remote, 1UL, 0UL);
}

SIMPLE_CHECK(check_process_vm_readv, process_vm(SYS_process_vm_readv))
SIMPLE_CHECK(check_process_vm_writev, process_vm(SYS_process_vm_writev))
/* ---- kernel facilities seccomp must deny --------------------------------------------------------------------- */

static const char not_elf[64];

SIMPLE_CHECK(check_keyctl, syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0L))
SIMPLE_CHECK(check_add_key, syscall(SYS_add_key, "user", "lms-probe", "x", 1UL, KEY_SPEC_PROCESS_KEYRING))
SIMPLE_CHECK(check_request_key, syscall(SYS_request_key, "user", "lms-probe-absent", NULL, KEY_SPEC_PROCESS_KEYRING))
/* UFFD_USER_MODE_ONLY is allowed to unprivileged users whatever vm.unprivileged_userfaultfd says. */
FD_CHECK(check_userfaultfd, syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY))
/* One segment too many: root gets EINVAL after the permission check, so nothing is ever loaded or unloaded. */
SIMPLE_CHECK(check_kexec_load, syscall(SYS_kexec_load, 0UL, (unsigned long)(KEXEC_SEGMENT_MAX + 1), NULL, 0UL))
SIMPLE_CHECK(check_kexec_file_load, syscall(SYS_kexec_file_load, -1L, -1L, 0UL, NULL, 0UL))
SIMPLE_CHECK(check_init_module, syscall(SYS_init_module, not_elf, sizeof(not_elf), ""))
SIMPLE_CHECK(check_finit_module, syscall(SYS_finit_module, -1L, "", 0L))
SIMPLE_CHECK(check_delete_module, syscall(SYS_delete_module, "lms_probe_absent", (long)O_NONBLOCK))
SIMPLE_CHECK(check_acct, syscall(SYS_acct, "/lms-probe-absent/acct"))
SIMPLE_CHECK(check_swapon, syscall(SYS_swapon, "/lms-probe-absent/swap", 0L))
SIMPLE_CHECK(check_swapoff, syscall(SYS_swapoff, "/lms-probe-absent/swap"))
/* The permission check comes before the magic check: with a wrong magic2 root gets EINVAL and nothing happens. */
SIMPLE_CHECK(check_reboot, syscall(SYS_reboot, (long)LINUX_REBOOT_MAGIC1, 0L, (long)LINUX_REBOOT_CMD_CAD_OFF, NULL))
SIMPLE_CHECK(check_quotactl, syscall(SYS_quotactl, (long)QCMD(Q_SYNC, USRQUOTA), NULL, 0L, NULL))
/* Harmless on the host: a one-event AIO context destroyed at once; a vsock socket closed unconnected. */
static long
aio_context(void)
{
	unsigned long ctx = 0;
	long r = syscall(SYS_io_setup, 1L, &ctx);

	if (r == 0)
		syscall(SYS_io_destroy, ctx);
	return r;
}

static long
vsock_pair(void)
{
	int sv[2];
	long r = socketpair(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);

	if (r == 0) {
		close(sv[0]);
		close(sv[1]);
	}
	return r;
}

/* Turns ADDR_NO_RANDOMIZE on for this process only, then back to what it was. */
static long
personality_no_aslr(void)
{
	long old = syscall(SYS_personality, 0xffffffffUL);
	long r = syscall(SYS_personality, (unsigned long)old | 0x0040000UL);

	if (r >= 0)
		syscall(SYS_personality, (unsigned long)old);
	return r;
}

SIMPLE_CHECK(check_io_setup, aio_context())
FD_CHECK(check_vsock, socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0))
SIMPLE_CHECK(check_vsock_pair, vsock_pair())
SIMPLE_CHECK(check_kcmp, syscall(SYS_kcmp, (long)getpid(), (long)getpid(), 0L /* KCMP_FILE */, 0L, 0L))
SIMPLE_CHECK(check_personality, personality_no_aslr())
SIMPLE_CHECK(check_set_mempolicy, syscall(SYS_set_mempolicy, 0L /* MPOL_DEFAULT */, NULL, 0UL))
SIMPLE_CHECK(check_modify_ldt, syscall(SYS_modify_ldt, 0L, handle_buf, 16UL))
#ifdef SYS_lookup_dcookie
SIMPLE_CHECK(check_lookup_dcookie, syscall(SYS_lookup_dcookie, 0UL, handle_buf, 64UL))
#else
SIMPLE_CHECK(check_lookup_dcookie, (errno = ENOSYS, -1L))
#endif

static void
check_bpf(char **argv, struct result *r)
{
	(void)argv;
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	record_fd(r, syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
}

static void
check_io_uring(char **argv, struct result *r)
{
	(void)argv;
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	record_fd(r, syscall(SYS_io_uring_setup, 1U, &p));
}

static void
check_perf_event_open(char **argv, struct result *r)
{
	(void)argv;
	struct perf_event_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.type = PERF_TYPE_SOFTWARE;
	attr.size = sizeof(attr);
	attr.config = PERF_COUNT_SW_TASK_CLOCK;
	attr.disabled = 1;
	attr.exclude_kernel = 1;
	attr.exclude_hv = 1;
	record_fd(r, syscall(SYS_perf_event_open, &attr, 0L, -1L, -1L, 0UL));
}

static void
check_name_to_handle_at(char **argv, struct result *r)
{
	struct file_handle *fh = (struct file_handle *)handle_buf;
	int mount_id;

	fh->handle_bytes = MAX_HANDLE_SZ;
	record(r, syscall(SYS_name_to_handle_at, AT_FDCWD, argv[0] ? argv[0] : "/etc/passwd", fh, &mount_id, 0L));
}

static void
check_open_by_handle_at(char **argv, struct result *r)
{
	struct file_handle *fh = (struct file_handle *)handle_buf;
	int mount_id;

	/* A real handle where one can be had, else a made-up one: either way a denial shows as EPERM. */
	fh->handle_bytes = MAX_HANDLE_SZ;
	if (syscall(SYS_name_to_handle_at, AT_FDCWD, argv[0] ? argv[0] : "/etc/passwd", fh, &mount_id, 0L) < 0) {
		memset(handle_buf, 0, sizeof(handle_buf));
		fh->handle_bytes = 8;
		fh->handle_type = 1;
	}
	int mount_fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	record_fd(r, syscall(SYS_open_by_handle_at, (long)mount_fd, fh, (long)(O_RDONLY | O_CLOEXEC)));
	if (mount_fd >= 0)
		close(mount_fd);
}

static void
check_settimeofday(char **argv, struct result *r)
{
	(void)argv;
	struct timeval tv;

	gettimeofday(&tv, NULL);
	record(r, syscall(SYS_settimeofday, &tv, NULL));
}

static void
check_clock_settime(char **argv, struct result *r)
{
	(void)argv;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	record(r, syscall(SYS_clock_settime, (long)CLOCK_REALTIME, &ts));
}

static void
check_adjtimex(char **argv, struct result *r)
{
	(void)argv;
	struct timex tx;

	memset(&tx, 0, sizeof(tx));
	if (!record(r, syscall(SYS_adjtimex, &tx))) {
		add(r, "reading failed");
		return;
	}
	tx.modes = ADJ_STATUS; /* the status it already has */
	record(r, syscall(SYS_adjtimex, &tx));
}

static void
check_tiocsti(char **argv, struct result *r)
{
	int fd = argv[0] ? (int)strtol(argv[0], NULL, 10) : 0;
	char c = ' ';

	add(r, "ioctl(%d, TIOCSTI)", fd);
	record(r, ioctl(fd, TIOCSTI, &c));
}

FD_CHECK(check_tty, open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK))

static void
check_sethostname(char **argv, struct result *r)
{
	(void)argv;
	char name[256] = "";

	gethostname(name, sizeof(name) - 1);
	add(r, "sethostname(%s) (unchanged)", name);
	record(r, sethostname(name, strlen(name)));
}

static void
check_hostname(char **argv, struct result *r)
{
	(void)argv;
	struct utsname u;

	if (record(r, uname(&u)))
		add(r, "%s", u.nodename);
}

/* ---- network ------------------------------------------------------------------------------------------------- */

static void
check_connect(char **argv, struct result *r)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int port = (int)strtol(argv[1], NULL, 10);

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, argv[0], &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, argv[0], &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		len = sizeof(*sin6);
	} else {
		add(r, "not a numeric address: %s", argv[0]);
		errno = EINVAL;
		record(r, -1);
		return;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!record(r, fd)) {
		add(r, "socket failed");
		return;
	}
	int rc = connect(fd, (struct sockaddr *)&ss, len);
	if (rc < 0 && errno == EINPROGRESS) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int n = poll(&p, 1, 1000);
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (n == 0)
			soerr = ETIMEDOUT;
		else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		errno = soerr;
		record(r, soerr ? -1 : 0);
	} else {
		record(r, rc);
	}
	add(r, "connect %s port %d", argv[0], port);
	close(fd);
}

/* ---- what the process was given ------------------------------------------------------------------------------ */

static int
compare_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

#define STATUS_CHECK(fn, prefix)                                                                                       \
	static void fn(char **argv, struct result *r)                                                                  \
	{                                                                                                              \
		(void)argv;                                                                                            \
		add_status_lines(r, prefix);                                                                           \
	}

static void
check_fds(char **argv, struct result *r)
{
	(void)argv;
	int fds[1024];
	size_t n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (!record(r, d ? 0 : -1))
		return;
	while ((e = readdir(d)) && n < sizeof(fds) / sizeof(fds[0])) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		int fd = (int)strtol(e->d_name, NULL, 10);
		if (fd != dirfd(d))
			fds[n++] = fd;
	}
	closedir(d);
	qsort(fds, n, sizeof(fds[0]), compare_int);
	for (size_t i = 0; i < n; i++)
		add(r, i ? " %d" : "%d", fds[i]);
}

static void
check_env(char **argv, struct result *r)
{
	(void)argv;
	for (char **e = environ; *e; e++)
		add(r, e == environ ? "%s" : "\n%s", *e);
	r->ok = true;
}

STATUS_CHECK(check_caps, "Cap")
STATUS_CHECK(check_nnp, "NoNewPrivs")
STATUS_CHECK(check_seccomp, "Seccomp")
static void
check_uid(char **argv, struct result *r)
{
	(void)argv;
	add(r, "%ld %ld\nuid_map:\n", (long)getuid(), (long)getgid());
	add_file(r, "/proc/self/uid_map");
	add(r, "gid_map:\n");
	add_file(r, "/proc/self/gid_map");
	r->ok = true;
}

/* ---- the table ----------------------------------------------------------------------------------------------- */

static const struct check checks[] = {
    {"read", 1, 1, "PATH", check_read, "open and read PATH; detail = the first bytes"},
    {"write", 1, 1, "PATH", check_write, "create PATH (removed again), or open an existing PATH for writing"},
    {"mount", 0, 1, "[DIR]", check_mount, "mount a tmpfs on DIR (default /tmp/x), then unmount it"},
    {"umount", 1, 1, "PATH", check_umount, "umount2(PATH, 0)"},
    {"pivot_root", 0, 0, "", check_pivot_root, "pivot_root between paths that do not exist"},
    {"mknod", 0, 1, "[PATH]", check_mknod, "create the char device 1:3 (removed again)"},
    {"chroot", 0, 1, "[DIR]", check_chroot, "chroot(DIR), default /"},
    {"listdir", 1, 1, "DIR", check_listdir, "detail = the entries of DIR, one a line"},
    {"unshare-user", 0, 0, "", check_unshare_user, "unshare(CLONE_NEWUSER)"},
    {"clone-user", 0, 0, "", check_clone_user, "raw clone(CLONE_NEWUSER), the child exits at once"},
    {"clone3", 0, 0, "", check_clone3, "raw clone3(CLONE_NEWUSER), the child exits at once"},
    {"setns", 0, 1, "[NSFILE]", check_setns, "setns into NSFILE (default /proc/self/ns/net)"},
    {"kill", 2, 2, "PID|self SIG", check_kill, "kill(PID, SIG)"},
    {"pid", 0, 0, "", check_pid, "detail = \"pid ppid\""},
    {"process_vm_readv", 0, 0, "", check_process_vm_readv, "read own memory through process_vm_readv"},
    {"process_vm_writev", 0, 0, "", check_process_vm_writev, "write own memory through process_vm_writev"},
    {"keyctl", 0, 0, "", check_keyctl, "KEYCTL_GET_KEYRING_ID of the session keyring"},
    {"add_key", 0, 0, "", check_add_key, "add a user key to the process keyring"},
    {"request_key", 0, 0, "", check_request_key, "request an absent user key (no call-out)"},
    {"bpf", 0, 0, "", check_bpf, "BPF_MAP_CREATE of a one-entry array"},
    {"io_uring", 0, 0, "", check_io_uring, "io_uring_setup with one entry"},
    {"userfaultfd", 0, 0, "", check_userfaultfd, "userfaultfd(UFFD_USER_MODE_ONLY)"},
    {"perf_event_open", 0, 0, "", check_perf_event_open, "a software task-clock counter on itself"},
    {"name_to_handle_at", 0, 1, "[PATH]", check_name_to_handle_at, "handle of PATH (default /etc/passwd)"},
    {"open_by_handle_at", 0, 1, "[PATH]", check_open_by_handle_at, "open a handle of PATH (default /etc/passwd)"},
    {"kexec_load", 0, 0, "", check_kexec_load, "kexec_load with too many segments"},
    {"kexec_file_load", 0, 0, "", check_kexec_file_load, "kexec_file_load of fd -1"},
    {"init_module", 0, 0, "", check_init_module, "init_module of 64 zero bytes"},
    {"finit_module", 0, 0, "", check_finit_module, "finit_module of fd -1"},
    {"delete_module", 0, 0, "", check_delete_module, "delete_module of an absent module"},
    {"acct", 0, 0, "", check_acct, "acct of an absent path"},
    {"swapon", 0, 0, "", check_swapon, "swapon of an absent path"},
    {"swapoff", 0, 0, "", check_swapoff, "swapoff of an absent path"},
    {"reboot", 0, 0, "", check_reboot, "reboot(CAD_OFF) with a wrong magic2"},
    {"settimeofday", 0, 0, "", check_settimeofday, "set the clock to the time it has"},
    {"clock_settime", 0, 0, "", check_clock_settime, "set CLOCK_REALTIME to the time it has"},
    {"adjtimex", 0, 0, "", check_adjtimex, "set the NTP status it already has"},
    {"quotactl", 0, 0, "", check_quotactl, "Q_SYNC of every file system"},
    {"lookup_dcookie", 0, 0, "", check_lookup_dcookie, "lookup_dcookie(0)"},
    {"io_setup", 0, 0, "", check_io_setup, "io_setup of a one-event AIO context, destroyed at once"},
    {"vsock", 0, 0, "", check_vsock, "socket(AF_VSOCK, SOCK_STREAM), closed at once"},
    {"vsock_pair", 0, 0, "", check_vsock_pair, "socketpair(AF_VSOCK, SOCK_STREAM), closed at once"},
    {"kcmp", 0, 0, "", check_kcmp, "kcmp(self, self, KCMP_FILE, 0, 0)"},
    {"personality", 0, 0, "", check_personality, "set ADDR_NO_RANDOMIZE, then back"},
    {"set_mempolicy", 0, 0, "", check_set_mempolicy, "set_mempolicy(MPOL_DEFAULT)"},
    {"modify_ldt", 0, 0, "", check_modify_ldt, "read the LDT (modify_ldt func 0)"},
    {"tiocsti", 0, 1, "[FD]", check_tiocsti, "push a space into the input of FD (default 0) with TIOCSTI"},
    {"tty", 0, 0, "", check_tty, "open /dev/tty (the controlling terminal)"},
    {"sethostname", 0, 0, "", check_sethostname, "set the host name it already has"},
    {"hostname", 0, 0, "", check_hostname, "detail = uname's node name"},
    {"connect", 2, 2, "ADDR PORT", check_connect, "TCP connect to a numeric ADDR, 1 s timeout"},
    {"fds", 0, 0, "", check_fds, "detail = the open fds, space-separated"},
    {"env", 0, 0, "", check_env, "detail = the environment, one variable a line"},
    {"caps", 0, 0, "", check_caps, "detail = the Cap* lines of /proc/self/status"},
    {"nnp", 0, 0, "", check_nnp, "detail = the NoNewPrivs line of /proc/self/status"},
    {"seccomp", 0, 0, "", check_seccomp, "detail = the Seccomp lines of /proc/self/status"},
    {"uid", 0, 0, "", check_uid, "detail = \"uid gid\", then the uid_map and gid_map"},
};

static void
put_json_string(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x",
			       c); /* bytes past ASCII as Latin-1: the line stays valid JSON whatever was read */
		else
			putchar(c);
	}
	putchar('"');
}

static int
usage(void)
{
	fputs("usage: lms-probe CHECK [ARG...]\nchecks:\n", stderr);
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
		fprintf(stderr, "  %-18s %-14s %s\n", checks[i].name, checks[i].args, checks[i].doc);
	return 1;
}

int
main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		const struct check *c = &checks[i];
		int nargs = argc - 2;

		if (strcmp(argv[1], c->name) != 0)
			continue;
		if (nargs < c->min_args || nargs > c->max_args)
			return usage();
		c->fn(argv + 2, &result);

		const char *name = result.ok ? NULL : strerrorname_np(result.err);
		printf("{\"check\":");
		put_json_string(c->name, strlen(c->name));
		printf(",\"ok\":%s,\"errno\":", result.ok ? "true" : "false");
		if (result.ok)
			fputs("null", stdout);
		else if (name)
			printf("\"%s\"", name);
		else
			printf("\"E%d\"", result.err);
		printf(",\"detail\":");
		put_json_string(result.detail, result.len);
		puts("}");
		return fflush(stdout) == 0 ? 0 : 1;
	}
	return usage();
}
