#include "image/users.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "image/store.h"

/* A sandbox id as the daemon makes them: letters, digits, '-' and '_' (never a path). */
static bool
user_ok(const char *user)
{
	size_t n = strlen(user);
	if (n == 0 || n > 64)
		return false;
	for (const char *c = user; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
		      *c == '_'))
			return false;
	return true;
}

int
lms_image_use(const char *state_dir, const char *name, const char *user, struct lms_error **err)
{
	if (lms_image_name_check(name, err) < 0)
		return -1;
	if (!user_ok(user))
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "'%.64s' is not a sandbox id", user);
	_cleanup_fd_ int lock = lms_image_lock(state_dir, err);
	if (lock < 0)
		return -1;
	_cleanup_free_ char *record = xasprintf("%s/images/records/%s.json", state_dir, name);
	if (access(record, F_OK) < 0)
		return errno == ENOENT ? lms_error_set(err, LMS_ERR_NOT_FOUND, 0, "image '%s' does not exist", name)
				       : lms_error_set(err, LMS_ERR_SETUP, errno, "look for %s", record);
	_cleanup_free_ char *users = xasprintf("%s/images/users", state_dir);
	_cleanup_free_ char *dir = xasprintf("%s/%s", users, name);
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, user);
	if ((mkdir(users, 0700) < 0 && errno != EEXIST) || (mkdir(dir, 0700) < 0 && errno != EEXIST))
		return lms_error_set(err, LMS_ERR_SETUP, errno, "create %s (the image's users)", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "create %s (the image's users)", path);
	close(fd);
	return 0;
}

void
lms_image_unuse(const char *state_dir, const char *name, const char *user)
{
	if (lms_image_name_check(name, NULL) < 0 || !user_ok(user))
		return;
	/* Held to the return (none when it cannot be taken: forgetting is still right). */
	_cleanup_fd_ int lock = lms_image_lock(state_dir, NULL);
	(void)lock;
	_cleanup_free_ char *dir = xasprintf("%s/images/users/%s", state_dir, name);
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, user);
	(void)unlink(path);
	(void)rmdir(dir); /* the last user gone; ENOTEMPTY otherwise */
}

int
lms_image_check_unused(const char *state_dir, const char *name, struct lms_error **err)
{
	_cleanup_free_ char *dir = xasprintf("%s/images/users/%s", state_dir, name);
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0
				       : lms_error_set(err, LMS_ERR_SETUP, errno, "list %s (the image's users)", dir);
	struct dirent *e;
	char user[NAME_MAX + 1] = "";
	while ((e = readdir(d)) != NULL)
		if (user_ok(e->d_name)) {
			snprintf(user, sizeof(user), "%s", e->d_name);
			break;
		}
	closedir(d);
	if (user[0] == '\0')
		return 0;
	return lms_error_set(err, LMS_ERR_CONFLICT, 0, LMS_IMAGE_IN_USE " (sandbox %s is one)", name, user);
}
