#include "client/tar.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "core/alloc.h"
#include "core/fdio.h"

#define BLOCK (64u << 10)
#define EXIT_PEER_GONE 3 /* the other end of the data pipe closed: the transfer failed, and says why */

static int
archive_failed(struct archive *a, const char *what, const char *name, struct lms_error **err)
{
	const char *why = archive_error_string(a);
	return lms_error_set(err, LMS_ERR_INTERNAL, 0, "%s %s: %s", what, name, why ? why : "failed");
}

/* ---- packing (in the child) ---- */

static int
copy_data(struct archive *disk, struct archive *out, const char *name, struct lms_error **err)
{
	char *buf = xmalloc(BLOCK);
	int r = 0;
	for (;;) {
		la_ssize_t n = archive_read_data(disk, buf, BLOCK);
		if (n == 0)
			break;
		if (n < 0) {
			r = archive_failed(disk, "read", name, err);
			break;
		}
		if (archive_write_data(out, buf, (size_t)n) != n) {
			r = archive_failed(out, "pack", name, err);
			break;
		}
	}
	free(buf);
	return r;
}

static int
pack(const char *path, const char *prefix, int fd, struct lms_error **err)
{
	struct archive *disk = archive_read_disk_new();
	struct archive *out = archive_write_new();
	int r = -1;
	archive_read_disk_set_symlink_physical(disk); /* a link travels as a link, as docker cp does */
	if (archive_read_disk_open(disk, path) != ARCHIVE_OK) {
		archive_failed(disk, "read", path, err);
		goto done;
	}
	if (archive_write_set_format_pax_restricted(out) != ARCHIVE_OK ||
	    archive_write_open_fd(out, fd) != ARCHIVE_OK) {
		archive_failed(out, "pack", path, err);
		goto done;
	}
	size_t base = strlen(path);
	for (;;) {
		struct archive_entry *e = archive_entry_new();
		int h = archive_read_next_header2(disk, e);
		if (h == ARCHIVE_EOF) {
			archive_entry_free(e);
			break;
		}
		if (h < ARCHIVE_WARN) {
			archive_entry_free(e);
			archive_failed(disk, "read", path, err);
			goto done;
		}
		archive_read_disk_descend(disk);
		const char *full = archive_entry_pathname(e);
		const char *rel = strncmp(full, path, base) == 0 ? full + base : full;
		while (*rel == '/')
			rel++;
		_cleanup_free_ char *name = NULL;
		if (*rel == '\0' && prefix[0] == '\0') {
			archive_entry_free(e); /* the directory itself: the receiver's DST is it */
			continue;
		}
		name = *rel == '\0' ? xstrdup(prefix) : prefix[0] ? xasprintf("%s/%s", prefix, rel) : xstrdup(rel);
		_cleanup_free_ char *source = xstrdup(full);
		archive_entry_set_pathname(e, name);
		/* Owners are this machine's business, not the sandbox's. */
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		archive_entry_set_uname(e, NULL);
		archive_entry_set_gname(e, NULL);
		int w = archive_write_header(out, e);
		if (w < ARCHIVE_WARN) {
			archive_failed(out, "pack", source, err);
			archive_entry_free(e);
			goto done;
		}
		int c = archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0
			    ? copy_data(disk, out, source, err)
			    : 0;
		archive_entry_free(e);
		if (c < 0)
			goto done;
	}
	if (archive_write_close(out) != ARCHIVE_OK) {
		archive_failed(out, "pack", path, err);
		goto done;
	}
	r = 0;
done:
	archive_read_free(disk);
	archive_write_free(out);
	return r;
}

/* ---- unpacking (in the child, in the target directory) ---- */

static bool
inside(const char *name)
{
	if (name[0] == '/')
		return false;
	for (const char *p = name; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return false;
		p += n;
		while (*p == '/')
			p++;
	}
	return true;
}

static int
unpack(int fd, const char *dir, struct lms_error **err)
{
	if (chdir(dir) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "chdir %s", dir);
	struct archive *in = archive_read_new();
	struct archive *out = archive_write_disk_new();
	int r = -1;
	archive_read_support_format_tar(in);
	archive_write_disk_set_options(out, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
						ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
						ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_UNLINK);
	if (archive_read_open_fd(in, fd, BLOCK) != ARCHIVE_OK) {
		archive_failed(in, "unpack into", dir, err);
		goto done;
	}
	for (;;) {
		struct archive_entry *e;
		int h = archive_read_next_header(in, &e);
		if (h == ARCHIVE_EOF)
			break;
		if (h < ARCHIVE_WARN) {
			archive_failed(in, "unpack into", dir, err);
			goto done;
		}
		const char *name = archive_entry_pathname(e);
		const char *link = archive_entry_hardlink(e);
		mode_t type = archive_entry_filetype(e);
		if (name == NULL || !inside(name) || (link != NULL && !inside(link))) {
			lms_error_set(err, LMS_ERR_INVALID, 0, "unpack into %s: the entry '%s' leads outside", dir,
				      name ? name : "(no name)");
			goto done;
		}
		if (link == NULL && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
			fprintf(stderr, "lm-sandbox: skipped %s/%s: neither a file, a directory nor a link\n", dir,
				name);
			continue;
		}
		archive_entry_set_perm(e, archive_entry_perm(e) & 0777);
		if (archive_write_header(out, e) < ARCHIVE_WARN) {
			archive_failed(out, "unpack", name, err);
			goto done;
		}
		const void *block;
		size_t len;
		la_int64_t offset;
		int d;
		while ((d = archive_read_data_block(in, &block, &len, &offset)) == ARCHIVE_OK)
			if (archive_write_data_block(out, block, len, offset) < ARCHIVE_WARN) {
				archive_failed(out, "write", name, err);
				goto done;
			}
		if (d != ARCHIVE_EOF) {
			archive_failed(in, "unpack", name, err);
			goto done;
		}
		if (archive_write_finish_entry(out) < ARCHIVE_WARN) {
			archive_failed(out, "write", name, err);
			goto done;
		}
	}
	/* Directories' modes and times are set last, once their content is in. */
	if (archive_write_close(out) != ARCHIVE_OK) {
		archive_failed(out, "unpack into", dir, err);
		goto done;
	}
	r = 0;
done:
	archive_read_free(in);
	archive_write_free(out);
	return r;
}

/* ---- the child process ---- */

enum job { PACK, UNPACK };

static int
spawn(enum job job, const char *path, const char *prefix, struct lms_tar_child *child, struct lms_error **err)
{
	int data[2], errors[2];
	if (pipe2(data, O_CLOEXEC) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "pipe");
	if (pipe2(errors, O_CLOEXEC) < 0) {
		lms_fd_close_all(data, 2);
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "pipe");
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		lms_fd_close_all(data, 2);
		lms_fd_close_all(errors, 2);
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "fork");
	}
	if (pid == 0) {
		/* The child: a write to a reader that went away is EPIPE, not a silent death. */
		signal(SIGPIPE, SIG_IGN);
		close(errors[0]);
		struct lms_error *e = NULL;
		int r;
		if (job == PACK) {
			close(data[0]);
			r = pack(path, prefix, data[1], &e);
		} else {
			close(data[1]);
			r = unpack(data[0], path, &e);
		}
		if (r == 0)
			_exit(0);
		if (e->errnum == EPIPE || strstr(e->message, "Broken pipe") != NULL)
			_exit(EXIT_PEER_GONE);
		(void)lms_fd_write_all(errors[1], e->message, strlen(e->message));
		_exit(1);
	}
	close(errors[1]);
	child->pid = pid;
	child->error_fd = errors[0];
	if (job == PACK) {
		close(data[1]);
		child->fd = data[0];
	} else {
		close(data[0]);
		child->fd = data[1];
	}
	return 0;
}

int
lms_tar_spawn_pack(const char *path, const char *prefix, struct lms_tar_child *child, struct lms_error **err)
{
	return spawn(PACK, path, prefix, child, err);
}

int
lms_tar_spawn_unpack(const char *dir, struct lms_tar_child *child, struct lms_error **err)
{
	return spawn(UNPACK, dir, "", child, err);
}

int
lms_tar_wait(struct lms_tar_child *child, struct lms_error **err)
{
	if (child->pid <= 0)
		return 0;
	if (child->fd >= 0)
		close(child->fd);
	child->fd = -1;
	char message[1024];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(child->error_fd, message + len, sizeof(message) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (len += (size_t)n) == sizeof(message) - 1)
			break;
	}
	message[len] = '\0';
	close(child->error_fd);
	child->error_fd = -1;
	int status;
	pid_t pid = child->pid;
	child->pid = -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "waitpid %d", (int)pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_PEER_GONE)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "the transfer stopped before the tar stream's end");
	if (len > 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "%s", message);
	return lms_error_set(err, LMS_ERR_INTERNAL, 0, "the tar process ended with status 0x%x", status);
}

/* ---- one file as a tar stream ---- */

struct lms_tar_file {
	struct archive *out;
	int64_t left;
	char *name;
};

struct lms_tar_file *
lms_tar_file_begin(int fd, const char *name, int64_t size, struct lms_error **err)
{
	struct lms_tar_file *t = xcalloc(1, sizeof(*t));
	t->out = archive_write_new();
	t->left = size;
	t->name = xstrdup(name);
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, size);
	archive_entry_set_mtime(e, time(NULL), 0);
	int ok = archive_write_set_format_pax_restricted(t->out) == ARCHIVE_OK &&
		 archive_write_open_fd(t->out, fd) == ARCHIVE_OK && archive_write_header(t->out, e) == ARCHIVE_OK;
	archive_entry_free(e);
	if (!ok) {
		archive_failed(t->out, "pack", name, err);
		lms_tar_file_end(t, NULL);
		return NULL;
	}
	return t;
}

int
lms_tar_file_write(struct lms_tar_file *t, const void *data, size_t len, struct lms_error **err)
{
	if ((int64_t)len > t->left)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "%s: more bytes came than announced", t->name);
	if (archive_write_data(t->out, data, len) != (la_ssize_t)len)
		return archive_failed(t->out, "pack", t->name, err);
	t->left -= (int64_t)len;
	return 0;
}

int
lms_tar_file_end(struct lms_tar_file *t, struct lms_error **err)
{
	int r = 0;
	if (t->left != 0)
		r = lms_error_set(err, LMS_ERR_INTERNAL, 0, "%s: %lld bytes fewer came than announced", t->name,
				  (long long)t->left);
	else if (archive_write_close(t->out) != ARCHIVE_OK)
		r = archive_failed(t->out, "pack", t->name, err);
	archive_write_free(t->out);
	free(t->name);
	free(t);
	return r;
}
