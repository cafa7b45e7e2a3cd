/*
 * The root file system of a sandbox, assembled in its private mount namespace: a size-limited tmpfs
 * holding read-only binds of the host's system directories (the `host` image) or an overlay of an
 * imported image's layers with its upper layer on that tmpfs, a writable /work and /tmp, a fresh /proc
 * and a minimal /dev; then pivot_root into it and detach the old root (as bubblewrap does).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "core/file.h"
#include "core/stringify.h"
#include "net/nft-rules.h"
#include "sandbox/child.h"
#include "sandbox/gpu.h"

/* Where the new root is built, inside the sandbox's own mount namespace (the host's /tmp is untouched). */
#define BASE "/tmp"

/* The host directories of the `host` image (API.md): bound read-only, or recreated as the same
 * symbolic link where the host has a merged /usr. */
static const char *const host_dirs[] = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", NULL};

static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};

/* /proc files that change the host or reveal it, made read-only as Docker and bubblewrap do. */
static const char *const proc_readonly[] = {"sys", "sysrq-trigger", "irq", "bus", NULL};

static int
do_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data,
	 struct lms_init_msg *msg)
{
	/* The kernel ignores source and type for binds, remounts and propagation changes; "none" keeps
	 * checkers such as valgrind from flagging NULL. */
	if (mount(src ? src : "none", dst, type ? type : "none", flags, data) < 0)
		return lms_child_fail(msg, errno, "mount %s on %s", type ? type : src ? src : "(remount)", dst);
	return 0;
}

/* Makes a bind mount read-only, nosuid and nodev, submounts included where the kernel can (5.12+). */
static int
make_readonly(const char *path, struct lms_init_msg *msg)
{
#if HAVE_SYS_MOUNT_SETATTR
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
	if (syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof(attr)) == 0)
		return 0;
	if (errno != ENOSYS)
		return lms_child_fail(msg, errno, "make %s read-only", path);
#endif
	/* A remount must keep the flags the kernel locked on the source (noexec, nodev...), or it fails. */
	struct statvfs st;
	if (statvfs(path, &st) < 0)
		return lms_child_fail(msg, errno, "statvfs %s", path);
	unsigned long keep = st.f_flag & (ST_NOEXEC | ST_NOATIME | ST_NODIRATIME | ST_RELATIME);
	return do_mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | keep, NULL, msg);
}

static int
bind_readonly(const char *src, const char *dst, struct lms_init_msg *msg)
{
	if (do_mount(src, dst, NULL, MS_BIND | MS_REC, NULL, msg) < 0)
		return -1;
	return make_readonly(dst, msg);
}

static int
host_entries(struct lms_init_msg *msg)
{
	char src[64], target[256];
	for (const char *const *d = host_dirs; *d; d++) {
		snprintf(src, sizeof(src), "/%s", *d);
		struct stat st;
		if (lstat(src, &st) < 0)
			continue; /* lib32, libx32 and the like exist on some hosts only */
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(src, target, sizeof(target) - 1);
			if (n < 0)
				return lms_child_fail(msg, errno, "readlink %s", src);
			target[n] = '\0';
			if (symlink(target, *d) < 0)
				return lms_child_fail(msg, errno, "symlink /%s -> %s", *d, target);
			continue;
		}
		if (!S_ISDIR(st.st_mode))
			continue;
		if (mkdir(*d, 0755) < 0)
			return lms_child_fail(msg, errno, "mkdir /%s", *d);
		if (bind_readonly(src, *d, msg) < 0)
			return -1;
	}
	return 0;
}

static int
bind_device(const char *src, const char *dst, struct lms_init_msg *msg)
{
	int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
	if (fd < 0)
		return lms_child_fail(msg, errno, "create /%s", dst);
	close(fd);
	if (do_mount(src, dst, NULL, MS_BIND, NULL, msg) < 0 ||
	    do_mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC, NULL, msg) < 0)
		return -1;
	return 0;
}

/* What `docker run --gpus` gives: the selected /dev/nvidiaN, the control nodes and the /dev/nvidia-caps
 * folder (gpu.c says which). The driver's user-space libraries and nvidia-smi come with the host's /usr
 * and /etc (ld.so.cache). */
static int
add_nvidia_devices(uint64_t minors, struct lms_init_msg *msg)
{
	DIR *d = opendir("/dev");
	if (d == NULL)
		return lms_child_fail(msg, errno, "list /dev for NVIDIA devices");
	char src[300], dst[300];
	int r = 0;
	struct dirent *e;
	while (r == 0 && (e = readdir(d)) != NULL) {
		if (!lms_gpu_node_wanted(e->d_name, minors))
			continue;
		snprintf(src, sizeof(src), "/dev/%s", e->d_name);
		snprintf(dst, sizeof(dst), "dev/%s", e->d_name);
		struct stat st;
		if (lstat(src, &st) < 0)
			continue;
		if (S_ISCHR(st.st_mode)) {
			r = bind_device(src, dst, msg);
		} else if (S_ISDIR(st.st_mode)) {
			if (mkdir(dst, 0755) < 0)
				r = lms_child_fail(msg, errno, "mkdir /%s", dst);
			else
				r = bind_readonly(src, dst, msg);
		}
	}
	closedir(d);
	return r;
}

static int
make_dev_nodes(uint64_t gpu_minors, int shm, struct lms_init_msg *msg)
{
	char src[64], dst[64];
	if (do_mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755,nr_inodes=64", msg) < 0)
		return -1;
	for (const char *const *n = dev_nodes; *n; n++) {
		/* Device nodes cannot be created in a user namespace: bind the host's. */
		snprintf(src, sizeof(src), "/dev/%s", *n);
		snprintf(dst, sizeof(dst), "dev/%s", *n);
		if (bind_device(src, dst, msg) < 0)
			return -1;
	}
	if (gpu_minors && add_nvidia_devices(gpu_minors, msg) < 0)
		return -1;
	if (mkdir("dev/pts", 0755) < 0 || mkdir("dev/shm", 01777) < 0)
		return lms_child_fail(msg, errno, "mkdir /dev/pts, /dev/shm");
	/* A private devpts instance: the sandbox's terminals are its own, not the host's. Its ptys still count
	 * in the host's kernel.pty.max (shared by every instance): max= bounds the sandbox's share. */
	if (do_mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		     "newinstance,ptmxmode=0666,mode=0620,max=" LMS_STRINGIFY(LMS_SANDBOX_PTYS), msg) < 0)
		return -1;
	char shm_path[64];
	snprintf(shm_path, sizeof(shm_path), "/proc/self/fd/%d", shm);
	if (do_mount(shm_path, "dev/shm", NULL, MS_BIND, NULL, msg) < 0)
		return -1;
	static const char *const links[][2] = {
	    {"pts/ptmx", "dev/ptmx"},	       {"/proc/self/fd", "dev/fd"},	  {"/proc/self/fd/0", "dev/stdin"},
	    {"/proc/self/fd/1", "dev/stdout"}, {"/proc/self/fd/2", "dev/stderr"},
	};
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		if (symlink(links[i][0], links[i][1]) < 0)
			return lms_child_fail(msg, errno, "symlink /%s", links[i][1]);
	return 0;
}

/* A mount point: made, or (an image's root has most of them) the directory already there. Anything else
 * of that name in an image (a file, a link that could lead a mount elsewhere) is removed first: in the
 * overlay, that is a whiteout in the sandbox's own upper layer. */
static int
mount_point(const char *dir, mode_t mode, struct lms_init_msg *msg)
{
	if (mkdir(dir, mode) == 0)
		return chmod(dir, mode) < 0 ? lms_child_fail(msg, errno, "chmod /%s", dir) : 0;
	if (errno != EEXIST)
		return lms_child_fail(msg, errno, "mkdir /%s", dir);
	struct stat st;
	if (lstat(dir, &st) < 0)
		return lms_child_fail(msg, errno, "lstat /%s", dir);
	if (S_ISDIR(st.st_mode))
		return 0;
	if (unlink(dir) < 0 || mkdir(dir, mode) < 0)
		return lms_child_fail(msg, errno, "replace /%s (not a directory in the image) by a directory", dir);
	return 0;
}

static int
make_dev(uint64_t gpu_minors, int stored_shm, struct lms_init_msg *msg)
{
	if (mount_point("dev", 0755, msg) < 0)
		return -1;
	if (stored_shm >= 0)
		return make_dev_nodes(gpu_minors, stored_shm, msg);
	/* /dev/shm is a directory of the scratch tmpfs, so that it counts in the same disk_mb as /work and
	 * /tmp: made here, under the place /dev's own tmpfs is about to cover, and kept by an O_PATH
	 * descriptor through which it is bound (the magic link reaches the covered directory). */
	if (mkdir("dev/shm", 01777) < 0 || chmod("dev/shm", 01777) < 0)
		return lms_child_fail(msg, errno, "mkdir /dev/shm on the scratch file system");
	int shm = open("dev/shm", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (shm < 0)
		return lms_child_fail(msg, errno, "open /dev/shm on the scratch file system");
	int r = make_dev_nodes(gpu_minors, shm, msg);
	close(shm);
	return r;
}

/* With a selection of GPUs, the sandbox's /proc/driver/nvidia/gpus shows the selected ones only (as
 * libnvidia-container does): NVML lists what is there and fails on a GPU whose node is missing. The
 * selected folders are held open, a tmpfs covers the folder, and they are bound back onto it. */
static int
hide_other_gpus(uint64_t minors, struct lms_init_msg *msg)
{
	static const char gpus_dir[] = "proc/driver/nvidia/gpus";
	int dfd = open(gpus_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : lms_child_fail(msg, errno, "open /%s", gpus_dir);
	DIR *d = fdopendir(dfd);
	if (d == NULL) {
		close(dfd);
		return lms_child_fail(msg, errno, "list /%s", gpus_dir);
	}
	char names[LMS_GPU_MAX][64], path[128];
	int keep[LMS_GPU_MAX], n = 0, r = 0;
	struct dirent *e;
	while (r == 0 && n < LMS_GPU_MAX && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof(names[0]))
			continue;
		snprintf(path, sizeof(path), "%.63s/information", e->d_name); /* its length is checked above */
		char *text = lms_file_read_at(dfd, path, 4096, NULL);
		struct lms_gpu g = {0};
		bool selected = text != NULL && lms_gpu_parse_information(text, &g) && (minors >> g.minor & 1);
		free(text);
		if (!selected)
			continue;
		keep[n] = openat(dfd, e->d_name, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (keep[n] < 0)
			r = lms_child_fail(msg, errno, "open /%s/%s", gpus_dir, e->d_name);
		else
			snprintf(names[n++], sizeof(names[0]), "%.63s", e->d_name);
	}
	closedir(d);
	if (r == 0)
		r = do_mount("tmpfs", gpus_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16k,mode=0555", msg);
	for (int i = 0; i < n; i++) {
		char dst[128], src[64];
		snprintf(dst, sizeof(dst), "%s/%.63s", gpus_dir, names[i]);
		snprintf(src, sizeof(src), "/proc/self/fd/%d", keep[i]);
		if (r == 0 && mkdir(dst, 0555) < 0)
			r = lms_child_fail(msg, errno, "mkdir /%s", dst);
		if (r == 0)
			r = bind_readonly(src, dst, msg);
		close(keep[i]);
	}
	if (r == 0)
		r = do_mount(NULL, gpus_dir, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			     "size=16k,mode=0555", msg);
	return r;
}

static int
make_proc(uint64_t gpu_minors, bool gpu_only, struct lms_init_msg *msg)
{
	char path[64];
	if (mount_point("proc", 0555, msg) < 0)
		return -1;
	/* Shows this PID namespace only: the host's processes are not there to see. */
	if (do_mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, msg) < 0)
		return -1;
	for (const char *const *p = proc_readonly; *p; p++) {
		snprintf(path, sizeof(path), "proc/%s", *p);
		if (access(path, F_OK) < 0)
			continue;
		if (bind_readonly(path, path, msg) < 0)
			return -1;
	}
	return gpu_minors && gpu_only ? hide_other_gpus(gpu_minors, msg) : 0;
}

/* mkdir -p of a relative path, each new directory 0755 (an image may lack /usr/local). */
static int
mkdir_parents(const char *path, struct lms_init_msg *msg)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return lms_child_fail(msg, errno, "mkdir /%s in the image's root", buf);
		if (c == '\0')
			return 0;
		*p = c;
	}
}

/* Each of the host's files (opened before the scratch tmpfs covered /tmp: fds) bound read-only as
 * dir/<its name> (the caller closes the descriptors: PID 1 keeps none). A name already there (two cache
 * entries of one file) is bound once. */
static int
bind_files(char *const *files, const int *fds, size_t n, const char *dir, struct lms_init_msg *msg)
{
	char dst[512], src[64];
	for (size_t i = 0; i < n; i++) {
		const char *base = strrchr(files[i], '/');
		base = base ? base + 1 : files[i];
		if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
			continue;
		snprintf(dst, sizeof(dst), "%s/%s", dir, base);
		int fd = open(dst, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return lms_child_fail(msg, errno, "create /%s for the driver's %s", dst, files[i]);
		close(fd);
		snprintf(src, sizeof(src), "/proc/self/fd/%d", fds[i]);
		if (bind_readonly(src, dst, msg) < 0)
			return -1;
	}
	return 0;
}

/* An image's sandbox with a GPU: the host driver's libraries and tools (gpu-driver.c found them) on a
 * tmpfs of the sandbox's own at LMS_GPU_DRIVER_DIR, each bound read-only, the tmpfs then read-only too:
 * nothing of them can be changed from inside, and the image itself is not touched but for the empty
 * mount point directory. As libnvidia-container does, without running ldconfig in the image: exec.c
 * puts the directories on the command's LD_LIBRARY_PATH and PATH. */
static int
bind_driver(const struct lms_gpu_driver *drv, const int *fds, struct lms_init_msg *msg)
{
	const char *dir = &LMS_GPU_DRIVER_DIR[1], *lib = &LMS_GPU_DRIVER_LIB_DIR[1], *bin = &LMS_GPU_DRIVER_BIN_DIR[1];
	if (mkdir_parents(dir, msg) < 0 ||
	    do_mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=1024,mode=0755", msg) < 0)
		return -1;
	if (mkdir(lib, 0755) < 0 || mkdir(bin, 0755) < 0)
		return lms_child_fail(msg, errno, "mkdir %s's lib64 and bin", LMS_GPU_DRIVER_DIR);
	if (bind_files(drv->libs, fds, drv->n_libs, lib, msg) < 0 ||
	    bind_files(drv->bins, fds + drv->n_libs, drv->n_bins, bin, msg) < 0)
		return -1;
	return do_mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=64k,mode=0755", msg);
}

/* /work or /tmp: a directory of the scratch tmpfs bound onto itself (so that it stays writable when the
 * root is made read-only), or the stored directory (stored >= 0) bound in. */
static int
make_scratch(const char *dir, mode_t mode, int stored, struct lms_init_msg *msg)
{
	if (mount_point(dir, mode, msg) < 0)
		return -1;
	char src[64];
	if (stored >= 0)
		snprintf(src, sizeof(src), "/proc/self/fd/%d", stored);
	return do_mount(stored >= 0 ? src : dir, dir, NULL, MS_BIND, NULL, msg);
}

int
lms_mount_open_storage(const char *storage, bool image, int fds[5], struct lms_init_msg *msg)
{
	static const char *const parts[5] = {"work", "tmp", "shm", "upper", "ovlwork"};
	int dir = open(storage, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir < 0)
		return lms_child_fail(msg, errno, "open the sandbox's storage %s", storage);
	for (int i = 0; i < (image ? 5 : 3); i++) {
		fds[i] = openat(dir, parts[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fds[i] < 0) {
			int e = errno;
			close(dir);
			return lms_child_fail(msg, e, "open %s/%s", storage, parts[i]);
		}
	}
	close(dir);
	return 0;
}

int
lms_mount_open_layers(char *const *layers, int *fds, struct lms_init_msg *msg)
{
	size_t n = 0;
	fds[0] = -1;
	for (; layers[n] != NULL && n < LMS_MAX_LAYERS; n++) {
		fds[n] = open(layers[n], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		fds[n + 1] = -1;
		if (fds[n] < 0) {
			int e = errno;
			for (size_t i = 0; i < n; i++)
				close(fds[i]);
			fds[0] = -1;
			return lms_child_fail(msg, e, "open the image's layer %s (import the image again)", layers[n]);
		}
	}
	return 0;
}

/* The image's root: an overlay of its layers (read-only, the lowest last in lowerdir) under an upper layer
 * of the scratch tmpfs (or the stored one: stored[3] and [4]), mounted on BASE/root. The layers are named by
 * /proc/self/fd links: short (a mount's options fit in a page) and reaching the host's directories whatever covers
 * their paths now. userxattr: overlayfs in a user namespace reads user.overlay.* (the importer's opaque directories).
 */
static int
mount_overlay(const int *layers, const int stored[5], struct lms_init_msg *msg)
{
	if (mkdir("root", 0755) < 0 || (stored[3] < 0 && (mkdir("upper", 0755) < 0 || mkdir("ovlwork", 0700) < 0)))
		return lms_child_fail(msg, errno, "mkdir the overlay's directories on the scratch file system");
	char upper[64], work[64];
	if (stored[3] >= 0) {
		snprintf(upper, sizeof(upper), "/proc/self/fd/%d", stored[3]);
		snprintf(work, sizeof(work), "/proc/self/fd/%d", stored[4]);
	} else {
		snprintf(upper, sizeof(upper), BASE "/upper");
		snprintf(work, sizeof(work), BASE "/ovlwork");
	}
	size_t n = 0;
	while (layers[n] >= 0)
		n++;
	char opts[4096];
	size_t len = (size_t)snprintf(opts, sizeof(opts), "lowerdir=");
	for (size_t i = n; i-- > 0 && len < sizeof(opts);)
		len += (size_t)snprintf(opts + len, sizeof(opts) - len, "/proc/self/fd/%d%s", layers[i], i ? ":" : "");
	if (len < sizeof(opts))
		len +=
		    (size_t)snprintf(opts + len, sizeof(opts) - len, ",upperdir=%s,workdir=%s,userxattr", upper, work);
	if (len >= sizeof(opts))
		return lms_child_fail(msg, E2BIG, "the overlay's options for %zu layers", n);
	return do_mount("overlay", "root", "overlay", MS_NOSUID | MS_NODEV, opts, msg);
}

/* /work, /tmp and /dev/shm of an image sandbox without storage: directories of the scratch tmpfs beside
 * the upper layer (one disk_mb for everything the sandbox writes), bound in as stored ones are. */
static int
scratch_parts(int fds[3], struct lms_init_msg *msg)
{
	static const char *const parts[3] = {"files/work", "files/tmp", "files/shm"};
	static const mode_t modes[3] = {0755, 01777, 01777};
	if (mkdir("files", 0755) < 0)
		return lms_child_fail(msg, errno, "mkdir the scratch files");
	for (int i = 0; i < 3; i++) {
		if (mkdir(parts[i], modes[i]) < 0 || chmod(parts[i], modes[i]) < 0 ||
		    (fds[i] = open(parts[i], O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
			return lms_child_fail(msg, errno, "make %s on the scratch file system", parts[i]);
	}
	return 0;
}

/* A network sandbox's /etc/resolv.conf names its own DNS forwarder (net/nft-rules.h), on its loopback. An image's root
 * is writable: the file is replaced. The host's /etc is a read-only bind: a file of the scratch tmpfs is bound over its
 * resolv.conf (or over what its symbolic link names; made on the scratch tmpfs itself when that is outside the bound
 * folders, as /run is). */
static int
write_file(const char *path, const char *text, struct lms_init_msg *msg)
{
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return lms_child_fail(msg, errno, "create /%s", path);
	ssize_t n = write(fd, text, strlen(text));
	int e = n < 0 ? errno : EIO;
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : lms_child_fail(msg, e, "write /%s", path);
}

static int
make_parents(char *path, struct lms_init_msg *msg)
{
	for (char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		int r = mkdir(path, 0755);
		int e = errno;
		*p = '/';
		if (r < 0 && e != EEXIST)
			return lms_child_fail(msg, e, "mkdir /%s for /etc/resolv.conf", path);
	}
	return 0;
}

static int
write_resolv_conf(bool image, struct lms_init_msg *msg)
{
	static const char text[] = "# lm-sandbox: the sandbox's DNS forwarder\nnameserver " LMS_NET_DNS_FORWARD "\n";
	if (image) {
		if (mkdir("etc", 0755) < 0 && errno != EEXIST)
			return lms_child_fail(msg, errno, "mkdir /etc");
		if (unlink("etc/resolv.conf") < 0 && errno != ENOENT)
			return lms_child_fail(msg, errno, "remove the image's /etc/resolv.conf");
		return write_file("etc/resolv.conf", text, msg);
	}
	char link[PATH_MAX], target[PATH_MAX + 8] = "etc/resolv.conf";
	ssize_t n = readlink(target, link, sizeof(link) - 1);
	if (n > 0) {
		link[n] = '\0';
		/* One level, relative to / or to /etc; "../" at the front of a relative link leaves /etc. */
		const char *rel = link;
		if (link[0] == '/')
			snprintf(target, sizeof(target), "%s", link + 1);
		else if (strncmp(rel, "../", 3) == 0)
			snprintf(target, sizeof(target), "%s", rel + 3);
		else
			snprintf(target, sizeof(target), "etc/%s", rel);
		if (strstr(target, "..") != NULL)
			return lms_child_fail(msg, EINVAL, "follow the host's /etc/resolv.conf link (%s)", link);
	}
	struct stat st;
	if (lstat(target, &st) < 0) {
		/* Outside the host's bound folders (/run/...): made on the scratch tmpfs, where it is read. */
		if (make_parents(target, msg) < 0)
			return -1;
		return write_file(target, text, msg);
	}
	if (!S_ISREG(st.st_mode))
		return lms_child_fail(msg, EINVAL, "bind over /%s (the host's resolv.conf is not a file)", target);
	if (write_file(".resolv.conf", text, msg) < 0 ||
	    do_mount(".resolv.conf", target, NULL, MS_BIND, NULL, msg) < 0 ||
	    do_mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL, msg) < 0)
		return -1;
	/* The bind holds the file: its name on the root goes. */
	if (unlink(".resolv.conf") < 0)
		return lms_child_fail(msg, errno, "remove the scratch /.resolv.conf");
	return 0;
}

static int
assemble(const struct lms_child_ctx *ctx, const int stored[5], const int *layers, const int *driver_fds,
	 struct lms_init_msg *msg)
{
	uint64_t disk_mb = ctx->disk_mb;
	char opts[64];
	/* With storage, the tmpfs holds only the mount points and links of the root (an image's upper layer is
	 * stored too). */
	if (stored[0] >= 0)
		snprintf(opts, sizeof(opts), "size=1m,nr_inodes=4096,mode=0755");
	else
		snprintf(opts, sizeof(opts), "size=%llum,mode=0755", (unsigned long long)disk_mb);
	if (do_mount("tmpfs", BASE, "tmpfs", MS_NOSUID | MS_NODEV, opts, msg) < 0)
		return -1;
	if (chdir(BASE) < 0)
		return lms_child_fail(msg, errno, "chdir %s", BASE);
	int own[3] = {-1, -1, -1};
	const int *parts = stored;
	if (layers != NULL) {
		if (stored[0] < 0 && scratch_parts(own, msg) < 0)
			goto fail;
		if (stored[0] < 0)
			parts = own;
		if (mount_overlay(layers, stored, msg) < 0)
			goto fail;
		if (chdir("root") < 0) {
			lms_child_fail(msg, errno, "chdir to the image's root");
			goto fail;
		}
		if (ctx->driver != NULL && bind_driver(ctx->driver, driver_fds, msg) < 0)
			goto fail;
	} else if (host_entries(msg) < 0) {
		goto fail;
	}
	if (ctx->network && write_resolv_conf(layers != NULL, msg) < 0)
		goto fail;
	if (make_scratch("work", 0755, parts[0], msg) < 0 || make_scratch("tmp", 01777, parts[1], msg) < 0 ||
	    make_dev(ctx->gpu_minors, parts[2], msg) < 0 || make_proc(ctx->gpu_minors, ctx->gpu_only, msg) < 0)
		goto fail;
	for (int i = 0; i < 3; i++)
		if (own[i] >= 0)
			close(own[i]);
	return 0;
fail:
	for (int i = 0; i < 3; i++)
		if (own[i] >= 0)
			close(own[i]);
	return -1;
}

int
lms_mount_root(const struct lms_child_ctx *ctx, const int stored[5], const int *layers, struct lms_init_msg *msg)
{
	/* Nothing of the sandbox's mounts may propagate back to the host. */
	if (do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, msg) < 0)
		return -1;
	/* The driver's files are opened here, in this mount namespace (a bind's source must be of it) and
	 * before the scratch tmpfs covers /tmp, as the sandbox's root (which must be able to read them). */
	size_t n_driver = ctx->driver ? ctx->driver->n_libs + ctx->driver->n_bins : 0;
	int driver_fds[2 * LMS_GPU_DRIVER_FILES_MAX];
	if (n_driver > sizeof(driver_fds) / sizeof(driver_fds[0]))
		return lms_child_fail(msg, E2BIG, "bind %zu driver files", n_driver);
	int r = 0;
	for (size_t i = 0; i < n_driver; i++) {
		const struct lms_gpu_driver *d = ctx->driver;
		const char *path = i < d->n_libs ? d->libs[i] : d->bins[i - d->n_libs];
		driver_fds[i] = r < 0 ? -1 : open(path, O_PATH | O_CLOEXEC);
		if (driver_fds[i] < 0 && r == 0)
			r = lms_child_fail(msg, errno,
					   "gpu: open the driver's %s (it and its directories must be "
					   "readable by all)",
					   path);
	}
	if (r == 0)
		r = assemble(ctx, stored, layers, driver_fds, msg);
	for (size_t i = 0; i < n_driver; i++)
		if (driver_fds[i] >= 0)
			close(driver_fds[i]);
	if (r < 0)
		return -1;

	/* pivot_root(".", ".") stacks the old root on the new one; detaching it leaves no way back
	 * (pivot_root(2), "NOTES"). */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return lms_child_fail(msg, errno, "pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		return lms_child_fail(msg, errno, "detach the old root");
	if (chdir("/") < 0)
		return lms_child_fail(msg, errno, "chdir /");
	if (do_mount(NULL, "/dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL, msg) < 0)
		return -1;
	/* An image's root stays writable: its changes go to the sandbox's upper layer, never to the image. */
	if (layers != NULL)
		return 0;
	return do_mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL, msg);
}
