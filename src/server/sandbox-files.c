/* A persistent sandbox's files from the daemon (sandbox-files.h). */
#include "server/sandbox-files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "archive/tarpack.h"
#include "archive/untar.h"
#include "core/alloc.h"
#include "core/fdio.h"
#include "core/inroot.h"
#include "sandbox/sandbox.h"

int
lms_files_enter(struct lms_fsid *saved, struct lms_error **err)
{
	/* The sandbox's root user is LMS_UID_BASE on the host (prepare.c's uid map). */
	return lms_fsid_enter(saved, LMS_UID_BASE, LMS_UID_BASE, err);
}

static int
fail(struct lms_error **err, int errnum, const char *what, const char *path)
{
	return lms_error_set(err, errnum == ENOENT ? LMS_ERR_NOT_FOUND : LMS_ERR_FORBIDDEN, errnum, "%s %.512s", what,
			     path);
}

int
lms_files_open(int rootfd, const char *path, struct stat *st, struct lms_error **err)
{
	struct lms_fsid id;
	if (lms_files_enter(&id, err) < 0)
		return -1;
	int fd = lms_inroot_open(rootfd, path, O_PATH, 0, LMS_INROOT);
	int e = fd < 0 ? -fd : fstat(fd, st) < 0 ? errno : 0;
	lms_fsid_leave(&id);
	if (e != 0 && fd >= 0)
		close(fd);
	return e != 0 ? fail(err, e, fd < 0 ? "open" : "stat", path) : fd;
}

int
lms_files_reopen(int opath_fd, int flags, struct lms_error **err)
{
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", opath_fd);
	int fd = open(self, flags | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return lms_error_set(err, errno == ENOENT ? LMS_ERR_NOT_FOUND : LMS_ERR_FORBIDDEN, errno, "read");
	return fd;
}

static const char *
type_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG:
		return "file";
	case S_IFDIR:
		return "directory";
	case S_IFLNK:
		return "symlink";
	case S_IFIFO:
		return "fifo";
	case S_IFSOCK:
		return "socket";
	case S_IFCHR:
		return "char_device";
	case S_IFBLK:
		return "block_device";
	default:
		return "unknown";
	}
}

static json_t *
mode_json(mode_t m)
{
	char text[8];
	snprintf(text, sizeof(text), "%04o", (unsigned)(m & 07777));
	return json_string(text);
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
		      json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

json_t *
lms_files_list(int opath_dir, struct lms_error **err)
{
	int fd = lms_files_reopen(opath_dir, O_RDONLY | O_DIRECTORY, err);
	if (fd < 0)
		return NULL;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		lms_error_set(err, LMS_ERR_INTERNAL, errno, "list the directory");
		return NULL;
	}
	size_t n = 0, cap = 64;
	json_t **items = xmalloc(cap * sizeof(*items));
	bool truncated = false;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone meanwhile */
		if (n == LMS_FILES_MAX_ENTRIES) {
			truncated = true;
			break;
		}
		if (n == cap)
			items = xrealloc(items, (cap *= 2) * sizeof(*items));
		json_t *name = json_stringn(de->d_name, strlen(de->d_name));
		if (name == NULL) /* not UTF-8: shown with its bytes escaped away */
			name = json_string("\xef\xbf\xbd");
		items[n++] = json_pack("{s:o, s:s, s:I, s:o, s:I}", "name", name, "type", type_name(st.st_mode), "size",
				       (json_int_t)st.st_size, "mode", mode_json(st.st_mode), "mtime",
				       (json_int_t)st.st_mtim.tv_sec);
	}
	closedir(d);
	qsort(items, n, sizeof(*items), by_name);
	json_t *entries = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(entries, items[i]);
	free(items);
	json_t *out = json_pack("{s:o}", "entries", entries);
	if (truncated)
		json_object_set_new(out, "truncated", json_true());
	return out;
}

/* Everything in directory fd (which it takes), depth first, by names under descriptors. */
static int
remove_tree(int fd, int depth, const char *path, struct lms_error **err)
{
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		int e = errno;
		close(fd);
		return fail(err, e, "list", path);
	}
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0 || errno == ENOENT)
			continue;
		if (errno != EISDIR && errno != EPERM)
			r = fail(err, errno, "remove an entry of", path);
		else if (depth >= 256)
			r = lms_error_set(err, LMS_ERR_INVALID, ELOOP, "remove %.512s: deeper than 256 directories",
					  path);
		else {
			int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				r = fail(err, errno, "open a directory in", path);
			else if ((r = remove_tree(sub, depth + 1, path, err)) == 0 &&
				 unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
				r = fail(err, errno, "remove a directory in", path);
		}
		/* The directory changed under readdir: start it again rather than miss a name. */
		if (r == 0)
			rewinddir(d);
	}
	closedir(d);
	return r;
}

int
lms_files_remove(int rootfd, const char *path, bool recursive, struct lms_error **err)
{
	_cleanup_free_ char *parent = NULL;
	const char *name;
	int r = lms_inroot_split(path, 0, &parent, &name);
	if (r < 0)
		return lms_error_set(err, LMS_ERR_INVALID, -r, "path %.512s", path);
	if (!lms_inroot_name_ok(name))
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%.512s cannot be removed (the top, \".\" or \"..\")",
				     path);
	struct lms_fsid id;
	if (lms_files_enter(&id, err) < 0)
		return -1;
	int pfd = lms_inroot_open(rootfd, parent, O_PATH | O_DIRECTORY, 0, LMS_INROOT);
	struct stat st;
	if (pfd < 0)
		r = fail(err, -pfd, "open the directory of", path);
	else if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		r = fail(err, errno, "remove", path);
	else if (!S_ISDIR(st.st_mode))
		r = unlinkat(pfd, name, 0) < 0 ? fail(err, errno, "remove", path) : 0;
	else if (unlinkat(pfd, name, AT_REMOVEDIR) == 0)
		r = 0;
	else if (errno != ENOTEMPTY && errno != EEXIST)
		r = fail(err, errno, "remove", path);
	else if (!recursive)
		r = lms_error_set(
		    err, LMS_ERR_INVALID, ENOTEMPTY,
		    "remove %.512s: the directory is not empty (?recursive=true removes it and all in it)", path);
	else {
		int dfd = lms_inroot_open(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, LMS_BENEATH);
		r = dfd < 0 ? fail(err, -dfd, "open", path) : remove_tree(dfd, 0, path, err);
		if (r == 0 && unlinkat(pfd, name, AT_REMOVEDIR) < 0)
			r = fail(err, errno, "remove", path);
	}
	if (pfd >= 0)
		close(pfd);
	lms_fsid_leave(&id);
	return r;
}

int
lms_upload_begin(struct lms_upload *up, int rootfd, const char *path, unsigned mode, struct lms_error **err)
{
	*up = (struct lms_upload){.dirfd = -1, .fd = -1, .mode = mode};
	_cleanup_free_ char *parent = NULL;
	const char *name;
	int r = lms_inroot_split(path, 0, &parent, &name);
	if (r < 0)
		return lms_error_set(err, LMS_ERR_INVALID, -r, "path %.512s", path);
	if (!lms_inroot_name_ok(name))
		return lms_error_set(err, LMS_ERR_INVALID, EISDIR, "%.512s names a directory, not a file", path);
	up->name = xstrdup(name);
	struct lms_fsid id;
	if (lms_files_enter(&id, err) < 0)
		return -1;
	up->dirfd = lms_inroot_mkdirs(rootfd, parent, 0755, LMS_INROOT);
	struct stat st;
	if (up->dirfd < 0)
		r = fail(err, -up->dirfd, "make the directories of", path);
	else if (fstatat(up->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
		r = lms_error_set(err, LMS_ERR_INVALID, EISDIR,
				  "%.512s is a directory (send Content-Type: application/x-tar to unpack into it)",
				  path);
	for (int tries = 0; r == 0 && up->fd < 0; tries++) {
		uint64_t rnd = 0;
		if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			rnd = (uint64_t)getpid() * 1000003u + (uint64_t)tries;
		snprintf(up->tmp, sizeof(up->tmp), ".lms-upload-%016llx", (unsigned long long)rnd);
		up->fd = openat(up->dirfd, up->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (up->fd < 0 && (errno != EEXIST || tries > 8))
			r = fail(err, errno, "create a file beside", path);
	}
	lms_fsid_leave(&id);
	if (r < 0)
		lms_upload_abort(up);
	return r;
}

int
lms_upload_write(struct lms_upload *up, const char *data, size_t len, struct lms_error **err)
{
	if (lms_fd_write_all(up->fd, data, len) < 0)
		return lms_error_set(err, LMS_ERR_FORBIDDEN, errno, "write the file");
	up->bytes += len;
	return 0;
}

int
lms_upload_commit(struct lms_upload *up, struct lms_error **err)
{
	struct lms_fsid id;
	if (lms_files_enter(&id, err) < 0)
		return -1;
	int r = 0;
	if (fchmod(up->fd, up->mode) < 0)
		r = lms_error_set(err, LMS_ERR_FORBIDDEN, errno, "set the file's mode");
	else if (close(steal_fd(&up->fd)) < 0)
		r = lms_error_set(err, LMS_ERR_FORBIDDEN, errno, "write the file");
	else if (renameat(up->dirfd, up->tmp, up->dirfd, up->name) < 0)
		r = lms_error_set(err, LMS_ERR_FORBIDDEN, errno, "put the file in place");
	else
		up->tmp[0] = '\0';
	lms_fsid_leave(&id);
	lms_upload_abort(up);
	return r;
}

void
lms_upload_abort(struct lms_upload *up)
{
	if (up->fd >= 0)
		close(steal_fd(&up->fd));
	if (up->dirfd >= 0 && up->tmp[0] != '\0') {
		struct lms_fsid id;
		if (lms_files_enter(&id, NULL) == 0) {
			(void)unlinkat(up->dirfd, up->tmp, 0);
			lms_fsid_leave(&id);
		}
		up->tmp[0] = '\0';
	}
	if (up->dirfd >= 0)
		close(steal_fd(&up->dirfd));
	free(up->name);
	up->name = NULL;
}

/* A thread that runs fn(arg) beside a new pipe (its ends in *rd, *wr; the writer's buffer 1 MiB). */
static int
start_piped(void *(*fn)(void *), void *arg, pthread_t *thread, int *rd, int *wr, const char *what,
	    struct lms_error **err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "start the %s: pipe", what);
	*rd = p[0];
	*wr = p[1];
	(void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20); /* fewer wake-ups; the default is fine too */
	int r = pthread_create(thread, NULL, fn, arg);
	if (r != 0) {
		close(p[0]);
		close(p[1]);
		return lms_error_set(err, LMS_ERR_INTERNAL, r, "start the %s: a thread", what);
	}
	return 0;
}

/* The threads of the tar streams: each takes the sandbox's identity for its whole life. */
struct lms_untar_job {
	pthread_t thread;
	int dirfd, in, out; /* the pipe: the thread reads `in`, feed writes `out` */
	unsigned long long entries;
	struct lms_error *err;
};

static void *
untar_main(void *arg)
{
	struct lms_untar_job *j = arg;
	struct lms_fsid id;
	if (lms_files_enter(&id, &j->err) == 0) {
		struct lms_untar_stats st;
		(void)lms_untar_fd(j->dirfd, j->in, &st, &j->err);
		j->entries = st.entries;
		lms_fsid_leave(&id);
	}
	close(steal_fd(&j->in)); /* feed then fails at once (EPIPE) instead of blocking */
	return NULL;
}

struct lms_untar_job *
lms_untar_start(int rootfd, const char *path, struct lms_error **err)
{
	struct lms_fsid id;
	if (lms_files_enter(&id, err) < 0)
		return NULL;
	int dirfd = lms_inroot_mkdirs(rootfd, path, 0755, LMS_INROOT);
	lms_fsid_leave(&id);
	if (dirfd < 0) {
		fail(err, -dirfd, "make the directory", path);
		return NULL;
	}
	struct lms_untar_job *j = xcalloc(1, sizeof(*j));
	j->dirfd = dirfd;
	if (start_piped(untar_main, j, &j->thread, &j->in, &j->out, "tar unpacker", err) < 0) {
		close(dirfd);
		free(j);
		return NULL;
	}
	return j;
}

int
lms_untar_feed(struct lms_untar_job *j, const char *data, size_t len)
{
	if (j->out < 0)
		return -1;
	if (lms_fd_write_all(j->out, data, len) < 0) {
		close(steal_fd(&j->out));
		return -1;
	}
	return 0;
}

int
lms_untar_finish(struct lms_untar_job *j, unsigned long long *entries, struct lms_error **err)
{
	if (j->out >= 0)
		close(steal_fd(&j->out));
	pthread_join(j->thread, NULL);
	close(j->dirfd);
	int r = 0;
	if (j->err != NULL) {
		r = -1;
		if (err != NULL && *err == NULL)
			*err = steal_pointer(&j->err);
		lms_error_free(j->err);
	}
	if (entries != NULL)
		*entries = j->entries;
	free(j);
	return r;
}

struct lms_tarout {
	pthread_t thread;
	bool joined;
	int dirfd, in, out; /* the thread writes `out`, the reply reads `in` */
	struct lms_error *err;
};

static void *
tarout_main(void *arg)
{
	struct lms_tarout *t = arg;
	struct lms_fsid id;
	if (lms_files_enter(&id, &t->err) == 0) {
		(void)lms_tar_pack(t->dirfd, t->out, NULL, &t->err);
		lms_fsid_leave(&id);
	}
	close(steal_fd(&t->out)); /* the reader's end-of-file */
	return NULL;
}

struct lms_tarout *
lms_tarout_start(int opath_dir, struct lms_error **err)
{
	struct lms_tarout *t = xcalloc(1, sizeof(*t));
	t->dirfd = opath_dir;
	if (start_piped(tarout_main, t, &t->thread, &t->in, &t->out, "tar packer", err) < 0) {
		close(opath_dir);
		free(t);
		return NULL;
	}
	return t;
}

int
lms_tarout_fd(const struct lms_tarout *t)
{
	return t->in;
}

int
lms_tarout_end(struct lms_tarout *t, struct lms_error **err)
{
	if (!t->joined) {
		if (t->in >= 0)
			close(steal_fd(&t->in)); /* a packer still writing stops (EPIPE) */
		pthread_join(t->thread, NULL);
		t->joined = true;
	}
	if (t->err == NULL)
		return 0;
	if (err != NULL && *err == NULL)
		*err = steal_pointer(&t->err);
	return -1;
}

void
lms_tarout_free(struct lms_tarout *t)
{
	if (t == NULL)
		return;
	(void)lms_tarout_end(t, NULL);
	lms_error_free(t->err);
	close(t->dirfd);
	free(t);
}
