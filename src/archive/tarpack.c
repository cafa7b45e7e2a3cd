/* The tar packer (tarpack.h), on libarchive's writer. */
#include "archive/tarpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "core/alloc.h"

#define COPY_BLOCK (256 * 1024)
/* Deeper trees are cut there (each level holds a descriptor). */
#define MAX_DEPTH 128

struct packer {
	struct archive *a;
	struct archive_entry *ae;
	struct lms_tarpack_stats *st;
	char *buf;
	char path[PATH_MAX];
};

static int
archive_fail(struct packer *p, struct lms_error **err)
{
	const char *why = archive_error_string(p->a);
	return lms_error_set(err, LMS_ERR_INTERNAL, archive_errno(p->a) > 0 ? archive_errno(p->a) : 0,
			     "tar: write \"%.200s\": %s", p->path, why ? why : "failed");
}

static int
header(struct packer *p, const struct stat *st, const char *link, struct lms_error **err)
{
	archive_entry_clear(p->ae);
	archive_entry_copy_stat(p->ae, st);
	archive_entry_set_uid(p->ae, 0);
	archive_entry_set_gid(p->ae, 0);
	archive_entry_set_nlink(p->ae, 1); /* every file whole: hard links are not looked for */
	archive_entry_set_pathname(p->ae, p->path);
	if (link != NULL)
		archive_entry_set_symlink(p->ae, link);
	if (archive_write_header(p->a, p->ae) != ARCHIVE_OK)
		return archive_fail(p, err);
	p->st->entries++;
	return 0;
}

/* Exactly st_size bytes, as the header said: a file that shrank meanwhile is padded with zeros. */
static int
file_data(struct packer *p, int fd, off_t size, struct lms_error **err)
{
	off_t left = size;
	while (left > 0) {
		size_t want = left < COPY_BLOCK ? (size_t)left : COPY_BLOCK;
		ssize_t n = read(fd, p->buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			memset(p->buf, 0, want);
			n = (ssize_t)want;
		}
		if (archive_write_data(p->a, p->buf, (size_t)n) != n)
			return archive_fail(p, err);
		left -= n;
		p->st->bytes += (unsigned long long)n;
	}
	return 0;
}

static int walk(struct packer *p, int dfd, size_t plen, int depth, struct lms_error **err);

/* One name of directory dfd; p->path holds its path, plen long. */
static int
pack_one(struct packer *p, int dfd, const char *name, size_t plen, int depth, struct lms_error **err)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		p->st->skipped++;
		return 0; /* gone meanwhile */
	}
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
		if (n < 0) {
			p->st->skipped++;
			return 0;
		}
		target[n] = '\0';
		return header(p, &st, target, err);
	}
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		p->st->skipped++;
		return 0;
	}
	int fd =
	    openat(dfd, name,
		   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
	struct stat again;
	if (fd < 0 || fstat(fd, &again) < 0 || again.st_ino != st.st_ino || again.st_dev != st.st_dev) {
		if (fd >= 0)
			close(fd);
		p->st->skipped++; /* not readable by the sandbox's user, or swapped meanwhile */
		return 0;
	}
	int r;
	if (S_ISREG(again.st_mode)) {
		r = header(p, &again, NULL, err);
		if (r == 0)
			r = file_data(p, fd, again.st_size, err);
		close(fd);
		return r;
	}
	r = header(p, &again, NULL, err);
	struct statfs fs;
	bool pseudo = fstatfs(fd, &fs) == 0 && (fs.f_type == PROC_SUPER_MAGIC || fs.f_type == SYSFS_MAGIC);
	if (r == 0 && !pseudo && depth < MAX_DEPTH)
		r = walk(p, fd, plen, depth + 1, err); /* takes fd */
	else
		close(fd);
	return r;
}

static int
walk(struct packer *p, int dfd, size_t plen, int depth, struct lms_error **err)
{
	DIR *d = fdopendir(dfd);
	if (d == NULL) {
		close(dfd);
		p->st->skipped++;
		return 0;
	}
	int r = 0;
	struct dirent *de;
	while (r == 0 && (errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		size_t n = strlen(de->d_name);
		if (plen + n + 2 >= sizeof(p->path)) {
			p->st->skipped++;
			continue;
		}
		size_t len = plen;
		if (len > 0)
			p->path[len++] = '/';
		memcpy(p->path + len, de->d_name, n + 1);
		r = pack_one(p, dirfd(d), de->d_name, len + n, depth, err);
		p->path[plen] = '\0';
	}
	closedir(d);
	return r;
}

int
lms_tar_pack(int dirfd, int out_fd, struct lms_tarpack_stats *stats, struct lms_error **err)
{
	struct lms_tarpack_stats none;
	struct packer p = {.st = stats ? stats : &none};
	*p.st = (struct lms_tarpack_stats){0};
	p.a = archive_write_new();
	p.ae = archive_entry_new();
	if (p.a == NULL || p.ae == NULL)
		abort(); /* out of memory */
	p.buf = xmalloc(COPY_BLOCK);
	int r = 0;
	if (archive_write_set_format_pax_restricted(p.a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(p.a, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(p.a, out_fd) != ARCHIVE_OK)
		r = archive_fail(&p, err);
	int fd = r == 0 ? openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (r == 0 && fd < 0)
		r = lms_error_set(err, LMS_ERR_FORBIDDEN, errno, "tar: open the directory");
	if (r == 0)
		r = walk(&p, fd, 0, 0, err);
	if (r == 0 && archive_write_close(p.a) != ARCHIVE_OK)
		r = archive_fail(&p, err);
	archive_write_free(p.a);
	archive_entry_free(p.ae);
	free(p.buf);
	return r;
}
