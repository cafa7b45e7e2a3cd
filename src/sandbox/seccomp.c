#include "sandbox/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/buf.h"

/* Denied outright: each changes the host (time, swap, modules, reboot), reaches into the kernel's
 * wider attack surface (bpf, io_uring, userfaultfd, perf, keyrings), escapes the mount view
 * (mount, pivot_root, handles, setns) or reads another process's memory. */
const char *const lms_seccomp_denied[] = {
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "process_vm_readv",
    "process_vm_writev",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "uselib",
    "nfsservctl",
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "fanotify_init",
    "pidfd_getfd",
    /* What Docker's default profile refuses without CAP_SYS_PTRACE or CAP_SYS_NICE (neither of which a
     * command holds), plus old or rare kernel surface no command needs (docs/SECURITY.md, the table). */
    "kcmp",
    "process_madvise",
    "get_mempolicy",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "mbind",
    "migrate_pages",
    "move_pages",
    "modify_ldt",
    "memfd_secret",
    "sysfs",
    "ustat",
    NULL,
};

/* Linux AIO: io_setup takes from fs.aio-max-nr, one budget for the whole host. ENOSYS, as a kernel
 * without CONFIG_AIO answers: libaio users fall back, and glibc's POSIX AIO uses threads. */
const char *const lms_seccomp_enosys[] = {
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents", NULL,
};

/* The personalities Docker's default profile allows: PER_LINUX, PER_LINUX32, UNAME26 and both, and the
 * query 0xffffffff. Sorted. */
static const uint32_t personalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};
#define N_PERSONALITIES (sizeof(personalities) / sizeof(personalities[0]))
/* The personality check's length: arch, number, upper half, lower half against each value, the denial. */
#define PERSONALITY_LEN (8 + N_PERSONALITIES)

/* A rule compares an argument once, and "none of five values" takes about 90 libseccomp rules (half a
 * millisecond of compiling in every `lm-sandbox run`). Written by hand instead and put before the
 * compiled program: anything but the native personality call goes on to it unchanged (other ABIs are
 * killed there), and an allowed value goes on to it too (which allows personality). */
static void
personality_check(struct sock_filter *out, uint32_t arch, uint32_t nr)
{
	const uint32_t end = PERSONALITY_LEN, deny = PERSONALITY_LEN - 1;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	const uint32_t lo = offsetof(struct seccomp_data, args[0]), hi = lo + 4;
#else
	const uint32_t hi = offsetof(struct seccomp_data, args[0]), lo = hi + 4;
#endif
	size_t k = 0;
	out[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	out[k] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 0, (uint8_t)(end - k - 1));
	k++;
	out[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	out[k] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, (uint8_t)(end - k - 1));
	k++;
	out[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, hi);
	out[k] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, (uint8_t)(deny - k - 1));
	k++;
	out[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, lo);
	for (size_t i = 0; i < N_PERSONALITIES; i++, k++)
		out[k] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, personalities[i],
						      (uint8_t)(end - k - 1), 0);
	out[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
}

static int
add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned count, const struct scmp_arg_cmp *args,
	 struct lms_error **err)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR)
		return 0; /* not a system call of this architecture */
	int r = seccomp_rule_add_array(ctx, action, nr, count, args);
	if (r < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, -r, "seccomp: add rule for %s", name);
	return 0;
}

static int
build(scmp_filter_ctx ctx, struct lms_error **err)
{
	for (const char *const *name = lms_seccomp_denied; *name; name++)
		if (add_rule(ctx, SCMP_ACT_ERRNO(EPERM), *name, 0, NULL, err) < 0)
			return -1;
	for (const char *const *name = lms_seccomp_enosys; *name; name++)
		if (add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), *name, 0, NULL, err) < 0)
			return -1;
	/* vsock reaches the hypervisor and its other guests: a network namespace does not isolate it.
	 * Docker refuses the family too. The domain is an int: compare the low half only. */
	struct scmp_arg_cmp vsock = SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, AF_VSOCK);
	if (add_rule(ctx, SCMP_ACT_ERRNO(EPERM), "socket", 1, &vsock, err) < 0 ||
	    add_rule(ctx, SCMP_ACT_ERRNO(EPERM), "socketpair", 1, &vsock, err) < 0)
		return -1;
	/* Socket buffer sizes stay the sandbox's (net.ipv4.tcp_[rw]mem, child.c): cgroup v1 lets every socket
	 * exceed the group's TCP limit by up to its send buffer, and a buffer set by SO_SNDBUF is never
	 * shrunk under pressure. The call answers success and changes nothing, as a kernel that clamps the
	 * size to its maximum would look to a caller (docs/SECURITY.md, "Socket buffers"). */
	static const int sizes[] = {SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE, SO_RCVBUFFORCE};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct scmp_arg_cmp opt[] = {SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, SOL_SOCKET),
					     SCMP_A2(SCMP_CMP_MASKED_EQ, 0xffffffffu, (unsigned)sizes[i])};
		if (add_rule(ctx, SCMP_ACT_ERRNO(0), "setsockopt", 2, opt, err) < 0)
			return -1;
	}

	/* New user namespaces give back every capability inside them: the gate to most kernel exploits. */
	struct scmp_arg_cmp newuser = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER);
	if (add_rule(ctx, SCMP_ACT_ERRNO(EPERM), "unshare", 1, &newuser, err) < 0 ||
	    add_rule(ctx, SCMP_ACT_ERRNO(EPERM), "clone", 1, &newuser, err) < 0)
		return -1;
	/* clone3 passes its flags in memory that a filter cannot read: ENOSYS makes libc fall back to clone. */
	if (add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err) < 0)
		return -1;
	/* TIOCSTI and TIOCLINUX push keystrokes into a terminal (CVE-2017-5226 in bubblewrap). The request
	 * is a 32-bit int in the kernel, so compare the low half only. */
	struct scmp_arg_cmp sti = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI);
	struct scmp_arg_cmp linux_ioctl = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX);
	if (add_rule(ctx, SCMP_ACT_ERRNO(EPERM), "ioctl", 1, &sti, err) < 0 ||
	    add_rule(ctx, SCMP_ACT_ERRNO(EPERM), "ioctl", 1, &linux_ioctl, err) < 0)
		return -1;
	return 0;
}

static int
export_program(scmp_filter_ctx ctx, struct sock_fprog *prog, struct lms_error **err)
{
	_cleanup_fd_ int fd = memfd_create("lms-seccomp", MFD_CLOEXEC);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "seccomp: memfd_create");
	int r = seccomp_export_bpf(ctx, fd);
	if (r < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, -r, "seccomp: export the filter");
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % sizeof(struct sock_filter) != 0 || size > 65536 * (off_t)sizeof(struct sock_filter))
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "seccomp: exported filter has a bad size %lld",
				     (long long)size);
	int nr = seccomp_syscall_resolve_name("personality");
	size_t head = nr == __NR_SCMP_ERROR ? 0 : PERSONALITY_LEN, len = (size_t)size / sizeof(struct sock_filter);
	if (head + len > BPF_MAXINSNS)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "seccomp: the filter has %zu instructions, more than %d",
				     head + len, BPF_MAXINSNS);
	struct sock_filter *code = xmalloc((head + len) * sizeof(struct sock_filter));
	if (head > 0)
		personality_check(code, seccomp_arch_native(), (uint32_t)nr);
	if (pread(fd, code + head, (size_t)size, 0) != size) {
		free(code);
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "seccomp: read the exported filter");
	}
	prog->len = (unsigned short)(head + len);
	prog->filter = code;
	return 0;
}

const struct sock_fprog *
lms_seccomp_program(struct lms_error **err)
{
	static struct sock_fprog prog;
	if (prog.filter != NULL)
		return &prog;

	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (ctx == NULL) {
		lms_error_set(err, LMS_ERR_INTERNAL, ENOMEM, "seccomp: init");
		return NULL;
	}
	/* Other ABIs (i386 via int 0x80, x32) would bypass a native-only filter: they kill. The default
	 * action kills the thread; the whole process where libseccomp can tell the kernel supports it. */
	(void)seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	/* The loader sets no_new_privs itself, in its own order. */
	int r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (r < 0)
		lms_error_set(err, LMS_ERR_INTERNAL, -r, "seccomp: clear the no_new_privs attribute");
	if (r >= 0)
		r = build(ctx, err);
	if (r >= 0)
		r = export_program(ctx, &prog, err);
	seccomp_release(ctx);
	return r < 0 ? NULL : &prog;
}
