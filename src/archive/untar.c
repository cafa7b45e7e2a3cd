/* The tar unpacker (untar.h), on libarchive's reader; every file system call is relative to a descriptor. */
#include "archive/untar.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "core/inroot.h"

#define COPY_BLOCK (256 * 1024)
#define READ_BLOCK (64 * 1024)

/* OCI's markers (image-spec layer.md, "Whiteouts") and overlayfs's for an opaque directory when mounted
 * with userxattr (in a user namespace). */
#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"
#define OVERLAY_OPAQUE_XATTR "user.overlay.opaque"

static const struct lms_untar_opts no_opts;

/* The state of one unpack: its options, its counts, its reader's buffer. */
struct unpack_ctx {
	const struct lms_untar_opts *o;
	struct lms_untar_stats *st;
	int fd;
	char *block;
};

/* An entry's name made relative and checked: no leading "/", no ".." component ("./" and "." are
 * dropped). NULL when refused. */
static char *
clean_name(const char *raw)
{
	if (raw == NULL || raw[0] == '/' || strlen(raw) >= PATH_MAX)
		return NULL;
	char *out = xmalloc(strlen(raw) + 1);
	size_t n = 0;
	for (const char *p = raw; *p;) {
		while (*p == '/')
			p++;
		size_t len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			free(out);
			return NULL;
		}
		if (len > 0 && !(len == 1 && p[0] == '.')) {
			if (n > 0)
				out[n++] = '/';
			memcpy(out + n, p, len);
			n += len;
		}
		p += len;
	}
	out[n] = '\0';
	return out;
}

static int
entry_error(struct lms_error **err, int errnum, const char *entry, const char *what)
{
	return lms_error_set(err, errnum == 0 ? LMS_ERR_INVALID : LMS_ERR_FORBIDDEN, errnum, "tar entry \"%.200s\": %s",
			     entry, what);
}

/* The entry's directory, made where missing, within dirfd: *name gets its last component. */
static int
entry_parent(int dirfd, const char *clean, char **buf, const char **name, struct lms_error **err)
{
	if (lms_inroot_split(clean, 1, buf, name) < 0)
		return entry_error(err, ENAMETOOLONG, clean, "name too long");
	int pfd = lms_inroot_mkdirs(dirfd, *buf, 0755, LMS_BENEATH);
	if (pfd == -EXDEV)
		return entry_error(err, 0, clean, "its directory leads out of the target (through a symbolic link)");
	if (pfd < 0)
		return entry_error(err, -pfd, clean, "make its directory");
	return pfd;
}

/* What is in the way of a new non-directory is removed (as tar does); a directory in the way is an error. */
static int
clear_name(int pfd, const char *name, const char *entry, struct lms_error **err)
{
	if (unlinkat(pfd, name, 0) < 0 && errno != ENOENT)
		return entry_error(err, errno, entry,
				   errno == EISDIR || errno == EPERM ? "a directory is in the way"
								     : "remove what is in the way");
	return 0;
}

static int
too_big(struct unpack_ctx *u, const char *entry, struct lms_error **err)
{
	return lms_error_set(err, LMS_ERR_INVALID, 0,
			     "tar entry \"%.200s\": the archive unpacks to more than %llu bytes (refused: the cap on "
			     "an archive's size)",
			     entry, u->o->max_bytes);
}

static int
write_file(struct archive *a, int pfd, const char *name, const char *entry, mode_t perm, time_t mtime,
	   struct unpack_ctx *u, struct lms_error **err)
{
	struct lms_untar_stats *st = u->st;
	if (clear_name(pfd, name, entry, err) < 0)
		return -1;
	int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return entry_error(err, errno, entry, "create the file");
	char *buf = xmalloc(COPY_BLOCK);
	int r = 0;
	for (;;) {
		la_ssize_t n = archive_read_data(a, buf, COPY_BLOCK);
		if (n == 0)
			break;
		if (n < 0) {
			r = lms_error_set(err, LMS_ERR_INVALID, 0, "tar entry \"%.200s\": %s", entry,
					  archive_error_string(a) ? archive_error_string(a) : "bad data");
			break;
		}
		if (u->o->max_bytes != 0 && st->bytes + (unsigned long long)n > u->o->max_bytes) {
			r = too_big(u, entry, err);
			break;
		}
		if (lms_fd_write_all(fd, buf, (size_t)n) < 0) {
			r = entry_error(err, errno, entry, "write the file");
			break;
		}
		st->bytes += (unsigned long long)n;
	}
	free(buf);
	struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = mtime}};
	if (r == 0 && fchmod(fd, perm & 0777) < 0)
		r = entry_error(err, errno, entry, "set its mode");
	if (r == 0)
		(void)futimens(fd, times); /* a time it cannot keep is not worth failing for */
	close(fd);
	return r;
}

static int
make_dir(int pfd, const char *name, const char *entry, mode_t perm, struct lms_error **err)
{
	if (mkdirat(pfd, name, 0700) < 0 && errno != EEXIST)
		return entry_error(err, errno, entry, "make the directory");
	/* The mode is set through a descriptor: a path-based chmod would follow a link swapped in. */
	int fd = lms_inroot_open(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, LMS_BENEATH);
	if (fd < 0)
		return entry_error(err, -fd, entry,
				   fd == -ENOTDIR || fd == -ELOOP ? "something else is in the way"
								  : "open the directory");
	int r = fchmod(fd, (perm & 01777) | 0700) < 0 ? entry_error(err, errno, entry, "set its mode") : 0;
	close(fd);
	return r;
}

static int
make_hardlink(int dirfd, int pfd, const char *name, const char *entry, const char *target, struct lms_error **err)
{
	_cleanup_free_ char *clean = clean_name(target);
	if (clean == NULL || clean[0] == '\0')
		return entry_error(err, 0, entry, "a hard link to a name outside the target (refused)");
	_cleanup_free_ char *buf = NULL;
	const char *tname;
	if (lms_inroot_split(clean, 1, &buf, &tname) < 0)
		return entry_error(err, ENAMETOOLONG, entry, "link target too long");
	int tfd = lms_inroot_open(dirfd, buf, O_PATH | O_DIRECTORY, 0, LMS_BENEATH);
	if (tfd < 0)
		return entry_error(err, tfd == -EXDEV ? 0 : -tfd, entry,
				   tfd == -EXDEV ? "a hard link whose target leads out (refused)"
						 : "find its link target");
	int r = clear_name(pfd, name, entry, err);
	/* Without AT_SYMLINK_FOLLOW: a link to a symbolic link is to the link itself, which stays inside. */
	if (r == 0 && linkat(tfd, tname, pfd, name, 0) < 0)
		r = entry_error(err, errno, entry, "make the hard link");
	close(tfd);
	return r;
}

/* A whiteout entry (opts->whiteouts): `.wh..wh..opq` marks its directory opaque, `.wh.NAME` hides NAME of
 * the layers below. */
static int
make_whiteout(int pfd, const char *name, const char *entry, struct lms_error **err)
{
	if (strcmp(name, WHITEOUT_OPAQUE) == 0) {
		int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return entry_error(err, errno, entry, "open its directory to mark it opaque");
		int r = 0;
		if (fsetxattr(fd, OVERLAY_OPAQUE_XATTR, "y", 1, 0) < 0)
			r = entry_error(err, errno, entry,
					"mark its directory opaque (the " OVERLAY_OPAQUE_XATTR
					" xattr: the state directory's file system must take user xattrs)");
		close(fd);
		return r;
	}
	const char *hidden = name + strlen(WHITEOUT_PREFIX);
	if (!lms_inroot_name_ok(hidden) || strncmp(hidden, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) == 0)
		return entry_error(err, 0, entry, "a whiteout of no valid name (refused)");
	if (clear_name(pfd, hidden, entry, err) < 0)
		return -1;
	if (mknodat(pfd, hidden, S_IFCHR | 0600, makedev(0, 0)) < 0)
		return entry_error(err, errno, entry, "make the whiteout");
	return 0;
}

/* The owner the sandbox sees (opts->map_owners). A link's own owner: AT_SYMLINK_NOFOLLOW. */
static int
set_owner(const struct lms_untar_opts *o, struct archive_entry *ae, int pfd, const char *name, const char *entry,
	  struct lms_error **err)
{
	la_int64_t uid = archive_entry_uid(ae), gid = archive_entry_gid(ae);
	uid_t u = o->owner_base + (uid >= 0 && uid < (la_int64_t)o->owner_count ? (uid_t)uid : 0);
	gid_t g = o->owner_base + (gid >= 0 && gid < (la_int64_t)o->owner_count ? (gid_t)gid : 0);
	if (fchownat(pfd, name, u, g, AT_SYMLINK_NOFOLLOW) < 0)
		return entry_error(err, errno, entry, "set its owner");
	return 0;
}

static int
unpack_entry(struct archive *a, struct archive_entry *ae, int dirfd, struct unpack_ctx *u, struct lms_error **err)
{
	const struct lms_untar_opts *o = u->o;
	struct lms_untar_stats *st = u->st;
	const char *raw = archive_entry_pathname(ae);
	if (o->max_entries != 0 && st->entries + st->skipped >= o->max_entries)
		return lms_error_set(
		    err, LMS_ERR_INVALID, 0,
		    "tar entry \"%.200s\": the archive has more than %llu entries (refused: the cap on "
		    "entries)",
		    raw ? raw : "", o->max_entries);
	if (raw != NULL && o->max_name != 0 && strlen(raw) > o->max_name)
		return entry_error(err, 0, raw, "a name longer than the cap on names (refused)");
	_cleanup_free_ char *clean = clean_name(raw);
	if (clean == NULL)
		return entry_error(err, 0, raw ? raw : "", "an absolute name, or one with .. (refused)");
	if (clean[0] == '\0')
		return 0; /* "." or "./": the target itself, which exists */
	mode_t type = archive_entry_filetype(ae);
	const char *hardlink = archive_entry_hardlink(ae);
	if (hardlink == NULL && (type == AE_IFCHR || type == AE_IFBLK)) {
		if (!o->skip_devices)
			return entry_error(err, 0, clean, "a device node (refused)");
		st->skipped++;
		return 0;
	}
	if (hardlink == NULL && type == AE_IFSOCK) {
		st->skipped++;
		return 0; /* a socket is nothing without its process */
	}
	if (o->max_bytes != 0 && hardlink == NULL && type == AE_IFREG && archive_entry_size(ae) > 0 &&
	    st->bytes + (unsigned long long)archive_entry_size(ae) > o->max_bytes)
		return too_big(u, clean, err);
	_cleanup_free_ char *buf = NULL;
	const char *name;
	int pfd = entry_parent(dirfd, clean, &buf, &name, err);
	if (pfd < 0)
		return -1;
	mode_t perm = archive_entry_perm(ae);
	int r = 0;
	bool whiteout = o->whiteouts && strncmp(name, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) == 0;
	if (whiteout) {
		r = make_whiteout(pfd, name, clean, err);
	} else if (hardlink != NULL) {
		r = make_hardlink(dirfd, pfd, name, clean, hardlink, err);
	} else if (type == AE_IFDIR) {
		r = make_dir(pfd, name, clean, perm, err);
	} else if (type == AE_IFLNK) {
		const char *target = archive_entry_symlink(ae);
		if (target == NULL || target[0] == '\0')
			r = entry_error(err, 0, clean, "a symbolic link without a target");
		else if ((r = clear_name(pfd, name, clean, err)) == 0 && symlinkat(target, pfd, name) < 0)
			r = entry_error(err, errno, clean, "make the symbolic link");
	} else if (type == AE_IFIFO) {
		if ((r = clear_name(pfd, name, clean, err)) == 0 && mkfifoat(pfd, name, perm & 0777) < 0)
			r = entry_error(err, errno, clean, "make the FIFO");
	} else if (type == AE_IFREG) {
		r = write_file(a, pfd, name, clean, perm, archive_entry_mtime(ae), u, err);
	} else {
		r = entry_error(err, 0, clean, "an entry of an unknown type");
	}
	if (r == 0 && o->map_owners && !whiteout && hardlink == NULL)
		r = set_owner(o, ae, pfd, name, clean, err);
	close(pfd);
	st->entries += r == 0;
	return r;
}

static int
unpack(struct archive *a, int opened, int dirfd, struct unpack_ctx *u, struct lms_error **err)
{
	struct lms_untar_stats *st = u->st;
	*st = (struct lms_untar_stats){0};
	int r = 0;
	if (opened != ARCHIVE_OK)
		r = lms_error_set(err, LMS_ERR_INVALID, 0, "tar: %s",
				  archive_error_string(a) ? archive_error_string(a) : "cannot read the stream");
	while (r == 0) {
		struct archive_entry *ae;
		int h = archive_read_next_header(a, &ae);
		if (h == ARCHIVE_EOF)
			break;
		if (h != ARCHIVE_OK && h != ARCHIVE_WARN) {
			r = lms_error_set(err, LMS_ERR_INVALID, 0, "tar: %s (after %llu entries)",
					  archive_error_string(a) ? archive_error_string(a) : "not a tar stream",
					  st->entries);
			break;
		}
		r = unpack_entry(a, ae, dirfd, u, err);
	}
	archive_read_free(a);
	free(u->block);
	return r;
}

static struct archive *
reader(void)
{
	struct archive *a = archive_read_new();
	if (a == NULL)
		abort(); /* out of memory */
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	archive_read_support_filter_gzip(a);
	/* Image layers come with zstd too; without libzstd libarchive runs the zstd program, else fails
	 * with a message at the first layer that needs it. */
	archive_read_support_filter_zstd(a);
	return a;
}

/* libarchive's read callback: the descriptor's bytes, each shown to on_read (the layer's digest). */
static la_ssize_t
read_block(struct archive *a, void *userdata, const void **buf)
{
	struct unpack_ctx *u = userdata;
	ssize_t n;
	do
		n = read(u->fd, u->block, READ_BLOCK);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		archive_set_error(a, errno, "read the archive: %s", strerror(errno));
		return -1;
	}
	if (n > 0 && u->o->on_read != NULL)
		u->o->on_read(u->o->userdata, u->block, (size_t)n);
	*buf = u->block;
	return n;
}

int
lms_untar_fd_opts(int dirfd, int fd, const struct lms_untar_opts *opts, struct lms_untar_stats *stats,
		  struct lms_error **err)
{
	struct lms_untar_stats none;
	struct unpack_ctx u = {.o = opts ? opts : &no_opts, .st = stats ? stats : &none, .fd = fd};
	u.block = xmalloc(READ_BLOCK);
	struct archive *a = reader();
	return unpack(a, archive_read_open(a, &u, NULL, read_block, NULL), dirfd, &u, err);
}

int
lms_untar_fd(int dirfd, int fd, struct lms_untar_stats *stats, struct lms_error **err)
{
	return lms_untar_fd_opts(dirfd, fd, NULL, stats, err);
}

int
lms_untar_mem(int dirfd, const void *data, size_t len, struct lms_untar_stats *stats, struct lms_error **err)
{
	struct lms_untar_stats none;
	struct unpack_ctx u = {.o = &no_opts, .st = stats ? stats : &none, .fd = -1};
	struct archive *a = reader();
	return unpack(a, archive_read_open_memory(a, data, len), dirfd, &u, err);
}
