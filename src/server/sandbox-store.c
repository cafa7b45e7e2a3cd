#include "server/sandbox-store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/id.h"

#include "core/alloc.h"
#include "core/fdio.h"
#include "core/file.h"
#include "core/log.h"
#include "core/tree.h"
#include "sandbox/sandbox.h"

#define RECORD "sandbox.json"
#define RECORD_TMP "sandbox.json.tmp"
#define RECORD_MAX (1u << 20)

struct lms_store {
	char *dir; /* STATE_DIR/sandboxes */
	int dirfd;
};

/* work/, tmp/, shm/: its /work, /tmp, /dev/shm; upper/ and ovlwork/: an image sandbox's overlay (its upper
 * layer and overlayfs's work directory), empty for the host image. A fork copies all but ovlwork/. */
static const char *const parts[] = {"work", "tmp", "shm", "upper", "ovlwork"};
static const mode_t part_modes[] = {0755, 01777, 01777, 0755, 0700};
#define COPIED_PARTS 4

static int
mkdir_p(const char *path, mode_t mode, struct lms_error **err)
{
	_cleanup_free_ char *copy = xstrdup(path);
	for (char *p = copy + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(copy, mode) < 0 && errno != EEXIST)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "create the state directory %s", copy);
		*p = c;
		if (c == '\0')
			return 0;
	}
}

/* Whether this process may mount (CAP_SYS_ADMIN in its effective set): root in a container started with
 * the narrow set of docs/deploy.md may not. */
static bool
can_mount(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {0};
	if (syscall(SYS_capget, &hdr, data) < 0)
		return false;
	return data[CAP_SYS_ADMIN / 32].effective & (1u << (CAP_SYS_ADMIN % 32));
}

int
lms_store_open(const char *state_dir, struct lms_store **out, struct lms_error **err)
{
	*out = NULL;
	if (geteuid() == 0 && !can_mount()) {
		lms_log(LMS_LOG_WARNING, NULL,
			"sandboxes end with this daemon: keeping them across restarts mounts their file systems, which "
			"needs CAP_SYS_ADMIN (a container with the narrow set of docs/deploy.md has not got it)",
			"state_dir", state_dir, NULL);
		return 0;
	}
	if (geteuid() != 0) {
		lms_log(LMS_LOG_WARNING, NULL,
			"sandboxes end with this daemon: only a daemon run as root keeps them across restarts (it "
			"mounts their file systems)",
			"state_dir", state_dir, NULL);
		return 0;
	}
	if (state_dir == NULL || state_dir[0] != '/')
		return lms_error_set(err, LMS_ERR_INVALID, 0, "--state-dir must be an absolute path, not '%s'",
				     state_dir ? state_dir : "");
	_cleanup_free_ char *dir = xasprintf("%s/sandboxes", state_dir);
	if (mkdir_p(dir, 0700, err) < 0)
		return lms_error_prefix(err, "sandboxes");
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "open the state directory %s", dir);
	struct lms_store *st = xcalloc(1, sizeof(*st));
	st->dir = steal_pointer(&dir);
	st->dirfd = fd;
	*out = st;
	return 0;
}

void
lms_store_free(struct lms_store *st)
{
	if (st == NULL)
		return;
	close(st->dirfd);
	free(st->dir);
	free(st);
}

static int
make_parts(int fs, struct lms_error **err)
{
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		/* Owned by the sandbox's root (uid 0 inside); the mode is set after mkdir, which the umask cuts. */
		if (mkdirat(fs, parts[i], 0700) < 0 || fchmodat(fs, parts[i], part_modes[i], 0) < 0 ||
		    fchownat(fs, parts[i], LMS_UID_BASE, LMS_UID_BASE, AT_SYMLINK_NOFOLLOW) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "create %s in the sandbox's storage", parts[i]);
	}
	return 0;
}

/* The sandbox's tmpfs of disk_mb. huge=within_size: a file's pages come in large folios where the whole
 * folio lies within the file (a big upload, a build's outputs), so a 256 MiB write into the sandbox costs
 * far fewer page allocations and charges (2.5x less time than 4 KiB pages on the bench machine); a small
 * file still takes small pages, so no part of disk_mb is lost to rounding. A kernel without transparent
 * huge pages refuses the option (EINVAL): the tmpfs is then made with small pages, as before. */
static int
mount_fs(const char *source, const char *path, uint64_t disk_mb)
{
	char opts[80];
	snprintf(opts, sizeof(opts), "size=%llum,mode=0755,huge=within_size", (unsigned long long)disk_mb);
	if (mount(source, path, "tmpfs", MS_NOSUID | MS_NODEV, opts) == 0)
		return 0;
	if (errno != EINVAL)
		return -1;
	snprintf(opts, sizeof(opts), "size=%llum,mode=0755", (unsigned long long)disk_mb);
	return mount(source, path, "tmpfs", MS_NOSUID | MS_NODEV, opts);
}

int
lms_store_make(struct lms_store *st, const char *id, uint64_t disk_mb, char **storage, struct lms_error **err)
{
	_cleanup_free_ char *fs_path = lms_store_path(st, id);
	if (mkdirat(st->dirfd, id, 0700) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "create %s/%s", st->dir, id);
	_cleanup_free_ char *fs_rel = xasprintf("%s/fs", id);
	char source[64];
	snprintf(source, sizeof(source), "lms-%s", id);
	int r = 0;
	if (mkdirat(st->dirfd, fs_rel, 0755) < 0)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "create %s", fs_path);
	else if (mount_fs(source, fs_path, disk_mb) < 0)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "mount the sandbox's tmpfs on %s", fs_path);
	if (r == 0) {
		_cleanup_fd_ int fs = openat(st->dirfd, fs_rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		r = fs < 0 ? lms_error_set(err, LMS_ERR_SETUP, errno, "open %s", fs_path) : make_parts(fs, err);
	}
	if (r < 0) {
		(void)lms_store_remove(st, id, NULL);
		return -1;
	}
	*storage = steal_pointer(&fs_path);
	return 0;
}

char *
lms_store_path(const struct lms_store *st, const char *id)
{
	return xasprintf("%s/%s/fs", st->dir, id);
}

char *
lms_store_history_path(const struct lms_store *st, const char *id)
{
	return xasprintf("%s/%s/history.jsonl", st->dir, id);
}

int
lms_store_commit(struct lms_store *st, const char *id, const json_t *record, struct lms_error **err)
{
	_cleanup_free_ char *text = json_dumps(record, JSON_COMPACT);
	_cleanup_free_ char *tmp = xasprintf("%s/" RECORD_TMP, id), *final = xasprintf("%s/" RECORD, id);
	if (text == NULL)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "encode the record of sandbox %s", id);
	_cleanup_fd_ int fd = openat(st->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || lms_fd_write_all(fd, text, strlen(text)) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "write %s/%s", st->dir, tmp);
	/* No fsync: the record matters only while the host runs (the tmpfs with the files does not outlive
	 * it), and a process that crashes loses nothing of the page cache. The rename is what makes a crash
	 * leave the old state or the new, never half. */
	if (renameat(st->dirfd, tmp, st->dirfd, final) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "commit %s/%s", st->dir, final);
	return 0;
}

void
lms_store_touch(struct lms_store *st, const char *id)
{
	char rel[64];
	snprintf(rel, sizeof(rel), "%s/" RECORD, id);
	if (utimensat(st->dirfd, rel, NULL, AT_SYMLINK_NOFOLLOW) < 0 && errno != ENOENT)
		lms_log(LMS_LOG_WARNING, NULL, "sandbox: could not record its use", "sandbox", id, "error",
			strerror(errno), NULL);
}

int
lms_store_remove(struct lms_store *st, const char *id, struct lms_error **err)
{
	char rel[64];
	snprintf(rel, sizeof(rel), "%s/" RECORD, id);
	if (unlinkat(st->dirfd, rel, 0) < 0 && errno != ENOENT && errno != ENOTDIR)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "remove %s/%s", st->dir, rel);
	_cleanup_free_ char *fs_path = xasprintf("%s/%s/fs", st->dir, id);
	if (umount2(fs_path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "unmount %s", fs_path);
	if (lms_tree_remove(st->dirfd, id, err) < 0)
		return lms_error_prefix(err, "remove %s/%s", st->dir, id);
	return 0;
}

int
lms_store_copy(struct lms_store *st, const char *from, const char *to, struct lms_error **err)
{
	for (size_t i = 0; i < COPIED_PARTS; i++) {
		_cleanup_free_ char *src_rel = xasprintf("%s/fs/%s", from, parts[i]);
		_cleanup_free_ char *dst_rel = xasprintf("%s/fs/%s", to, parts[i]);
		_cleanup_fd_ int src = openat(st->dirfd, src_rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (src < 0 && errno == ENOENT && i >= 3)
			continue; /* a sandbox stored before images had no upper/ */
		_cleanup_fd_ int dst = openat(st->dirfd, dst_rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (src < 0 || dst < 0)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "open /%s of sandbox %s or %s", parts[i],
					     from, to);
		struct stat sst;
		if (lms_tree_copy(src, dst, err) < 0)
			return lms_error_prefix(err, "copy /%s of sandbox %s", parts[i], from);
		if (fstat(src, &sst) == 0 &&
		    (fchmod(dst, sst.st_mode & 07777) < 0 || fchown(dst, sst.st_uid, sst.st_gid) < 0))
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "copy the mode of /%s", parts[i]);
	}
	return 0;
}

/* Our directories' names: "sbx_", an optional node name and '_' (a cluster's: server/cluster.h), and
 * 16 hex digits (core/id.h). */
static bool
is_sandbox_name(const char *name)
{
	size_t n = strlen(name);
	if (strncmp(name, "sbx_", 4) != 0 || n < 20 || n >= LMS_SANDBOX_ID_SIZE)
		return false;
	if (n > 20 && (name[n - 17] != '_' || name[4] == '-' || name[4] == '_'))
		return false;
	for (const char *p = name + 4; p < name + n - 17; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || *p == '-'))
			return false;
	for (const char *p = name + n - 16; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* Why the sandbox in directory `id` is not whole, or NULL when it is (*record and *used_s then set). */
static const char *
check_whole(struct lms_store *st, const char *id, json_t **record, double *used_s)
{
	_cleanup_fd_ int dir = openat(st->dirfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat dst, fst, rst;
	if (dir < 0 || fstat(dir, &dst) < 0)
		return "its directory cannot be opened";
	if (fstatat(dir, RECORD, &rst, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(rst.st_mode))
		return "it has no record (a crash while it was made or removed)";
	if (fstatat(dir, "fs", &fst, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(fst.st_mode) || fst.st_dev == dst.st_dev)
		return "its files are gone (its tmpfs is not mounted: the host restarted)";
	_cleanup_error_ struct lms_error *e = NULL;
	_cleanup_free_ char *text = lms_file_read_at(dir, RECORD, RECORD_MAX, &e);
	json_t *obj = text ? json_loads(text, 0, NULL) : NULL;
	if (!json_is_object(obj)) {
		json_decref(obj);
		return "its record cannot be read";
	}
	*record = obj;
	*used_s = (double)rst.st_mtim.tv_sec + (double)rst.st_mtim.tv_nsec / 1e9;
	return NULL;
}

static void
remove_logged(struct lms_store *st, const char *id, const char *why)
{
	_cleanup_error_ struct lms_error *e = NULL;
	if (lms_store_remove(st, id, &e) < 0)
		lms_log(LMS_LOG_ERROR, NULL, "sandbox: could not remove what a previous run left", "sandbox", id, "why",
			why, "error", e->message, NULL);
	else
		lms_log(LMS_LOG_INFO, NULL, "sandbox: removed what a previous run left", "sandbox", id, "why", why,
			NULL);
}

int
lms_store_load(struct lms_store *st, lms_store_found_fn fn, void *userdata)
{
	int fd = openat(st->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		lms_log(LMS_LOG_ERROR, NULL, "sandboxes: cannot list the state directory", "dir", st->dir, "error",
			strerror(errno), NULL);
		if (fd >= 0)
			close(fd);
		return 0;
	}
	int kept = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (!is_sandbox_name(e->d_name)) {
			lms_log(LMS_LOG_WARNING, NULL, "sandboxes: left alone a file that is not ours", "dir", st->dir,
				"name", e->d_name, NULL);
			continue;
		}
		json_t *record = NULL;
		double used_s = 0;
		const char *why = check_whole(st, e->d_name, &record, &used_s);
		if (why == NULL && fn(userdata, e->d_name, record, used_s) < 0)
			why = "it could not be restored";
		json_decref(record);
		if (why != NULL)
			remove_logged(st, e->d_name, why);
		else
			kept++;
	}
	closedir(d);
	return kept;
}
