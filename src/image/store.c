/* The image store (store.h): records and layers under STATE_DIR/images. */
#include "image/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fdio.h"
#include "core/file.h"
#include "core/tree.h"
#include "image/users.h"
#include "sandbox/sandbox.h"

#define RECORD_MAX (1u << 20)
#define DIGEST_PREFIX "sha256:"

char *
lms_images_dir(const char *state_dir)
{
	return xasprintf("%s/images", state_dir);
}

int
lms_image_name_check(const char *name, struct lms_error **err)
{
	size_t n = name ? strlen(name) : 0;
	bool ok = n >= 1 && n <= LMS_IMAGE_NAME_MAX &&
		  strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			       "0123456789._:-") == n;
	ok = ok && ((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') ||
		    (name[0] >= '0' && name[0] <= '9'));
	if (!ok)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "image name '%.200s' is not 1 to %d letters, digits and . _ : - starting with a "
				     "letter or digit",
				     name ? name : "", LMS_IMAGE_NAME_MAX);
	if (strcmp(name, LMS_IMAGE_HOST) == 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "image name '" LMS_IMAGE_HOST
				     "' is the host's own root file system: choose another");
	return 0;
}

/* "sha256:" and 64 lower-case hex digits: the only digests a layer directory is named after. */
static bool
digest_ok(const char *d)
{
	if (d == NULL || strncmp(d, DIGEST_PREFIX, strlen(DIGEST_PREFIX)) != 0)
		return false;
	const char *hex = d + strlen(DIGEST_PREFIX);
	return strlen(hex) == 64 && strspn(hex, "0123456789abcdef") == 64;
}

static char *
layer_root(const char *state_dir, const char *digest)
{
	return xasprintf("%s/images/layers/%s/root", state_dir, digest + strlen(DIGEST_PREFIX));
}

unsigned long long
lms_image_layer_size(const char *state_dir, const char *digest)
{
	if (!digest_ok(digest))
		return 0;
	_cleanup_free_ char *path = xasprintf("%s/images/layers/%s", state_dir, digest + strlen(DIGEST_PREFIX));
	_cleanup_fd_ int dir = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return 0;
	_cleanup_free_ char *text = lms_file_read_at(dir, "size", 64, NULL);
	return text ? strtoull(text, NULL, 10) : 0;
}

char **
lms_image_env(const struct lms_image *img, char *const *extra)
{
	size_t m = 0, k = 0;
	while (img->env && img->env[m])
		m++;
	while (extra && extra[k])
		k++;
	char **env = xcalloc(m + k + 1, sizeof(char *));
	for (size_t i = 0; i < m; i++)
		env[i] = xstrdup(img->env[i]);
	for (size_t i = 0; i < k; i++)
		env[m + i] = xstrdup(extra[i]);
	return env;
}

void
lms_image_free(struct lms_image *img)
{
	if (img == NULL)
		return;
	free(img->name);
	free(img->digest);
	free(img->source);
	free(img->created_at);
	free(img->working_dir);
	lms_strv_free(img->layers);
	lms_strv_free(img->paths);
	lms_strv_free(img->env);
	free(img);
}

/* A JSON array of strings as a NULL-terminated vector; NULL when it is not one or has more than max. */
static char **
strv_from_json(const json_t *a, size_t max)
{
	if (!json_is_array(a) || json_array_size(a) > max)
		return NULL;
	char **v = xcalloc(json_array_size(a) + 1, sizeof(char *));
	size_t i;
	const json_t *s;
	json_array_foreach(a, i, s)
	{
		if (!json_is_string(s)) {
			lms_strv_free(v);
			return NULL;
		}
		v[i] = xstrdup(json_string_value(s));
	}
	return v;
}

static const char *
record_problem(const json_t *rec, struct lms_image *img, const char *state_dir)
{
	const char *digest = json_string_value(json_object_get(rec, "digest"));
	const char *source = json_string_value(json_object_get(rec, "source"));
	const char *created = json_string_value(json_object_get(rec, "created_at"));
	const json_t *wd = json_object_get(rec, "working_dir");
	if (digest == NULL || source == NULL || created == NULL || !(json_is_null(wd) || json_is_string(wd)))
		return "it lacks digest, source, created_at or working_dir";
	img->digest = xstrdup(digest);
	img->source = xstrdup(source);
	img->created_at = xstrdup(created);
	img->working_dir = json_is_string(wd) ? xstrdup(json_string_value(wd)) : NULL;
	img->has_bash = json_is_true(json_object_get(rec, "has_bash"));
	json_int_t size = json_integer_value(json_object_get(rec, "size"));
	img->size = size > 0 ? (unsigned long long)size : 0;
	if ((img->layers = strv_from_json(json_object_get(rec, "layers"), LMS_IMAGE_MAX_LAYERS)) == NULL ||
	    img->layers[0] == NULL)
		return "its layers are not a list of 1 to 128 digests";
	if ((img->env = strv_from_json(json_object_get(rec, "env"), LMS_MAX_ENV)) == NULL)
		return "its env is not a list of strings";
	for (char **e = img->env; *e; e++)
		if (strchr(*e, '=') == NULL || (*e)[0] == '=')
			return "an env entry is not NAME=VALUE";
	if (img->working_dir != NULL && (img->working_dir[0] != '/' || strlen(img->working_dir) >= 4096))
		return "its working_dir is not an absolute path";
	size_t n = 0;
	while (img->layers[n])
		n++;
	img->paths = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		if (!digest_ok(img->layers[i]))
			return "a layer is not a sha256 digest";
		img->paths[i] = layer_root(state_dir, img->layers[i]);
	}
	return NULL;
}

int
lms_image_load(const char *state_dir, const char *name, struct lms_image **out, struct lms_error **err)
{
	*out = NULL;
	if (lms_image_name_check(name, NULL) < 0)
		return lms_error_set(err, LMS_ERR_NOT_FOUND, 0,
				     "image '%.200s' does not exist (not a valid image name)", name);
	_cleanup_free_ char *path = xasprintf("%s/images/records/%s.json", state_dir, name);
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return lms_error_set(err, LMS_ERR_NOT_FOUND, 0,
				     "image '%s' does not exist in %s/images: import it with `lm-sandbox image import "
				     "--state-dir %s %s FILE`",
				     name, state_dir, state_dir, name);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "open the record of image '%s' (%s)", name, path);
	size_t len;
	_cleanup_free_ char *text = lms_file_read_fd(fd, path, RECORD_MAX, &len, err);
	if (text == NULL)
		return -1;
	json_auto_t *rec = json_loadb(text, len, 0, NULL);
	struct lms_image *img = xcalloc(1, sizeof(*img));
	img->name = xstrdup(name);
	const char *bad = json_is_object(rec) ? record_problem(rec, img, state_dir) : "it is not a JSON object";
	if (bad != NULL) {
		lms_image_free(img);
		return lms_error_set(err, LMS_ERR_INTERNAL, 0,
				     "the record of image '%s' (%s) is damaged: %s; import "
				     "the image again",
				     name, path, bad);
	}
	*out = img;
	return 0;
}

static json_t *
strv_to_json(char *const *v)
{
	json_t *a = json_array();
	for (; v && *v; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

int
lms_image_save(const char *state_dir, const struct lms_image *img, struct lms_error **err)
{
	json_auto_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:b, s:I}", "name", img->name, "digest",
				     img->digest, "source", img->source, "created_at", img->created_at, "working_dir",
				     img->working_dir ? json_string(img->working_dir) : json_null(), "layers",
				     strv_to_json(img->layers), "env", strv_to_json(img->env), "has_bash",
				     img->has_bash, "size", (json_int_t)img->size);
	_cleanup_free_ char *text = rec ? json_dumps(rec, JSON_INDENT(2)) : NULL;
	if (text == NULL)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "encode the record of image '%s' (not UTF-8?)",
				     img->name);
	_cleanup_free_ char *tmp = xasprintf("%s/images/records/.%s.json.tmp", state_dir, img->name);
	_cleanup_free_ char *final = xasprintf("%s/images/records/%s.json", state_dir, img->name);
	_cleanup_fd_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || lms_fd_write_all(fd, text, strlen(text)) < 0 || lms_fd_write_all(fd, "\n", 1) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "write %s", tmp);
	/* The layers it names are on disk already (renamed into layers/ before): the record's rename is the
	 * commit point, so that a crash leaves the old image or the new, never one with a missing layer. */
	if (fsync(fd) < 0 || rename(tmp, final) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "commit %s", final);
	return 0;
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
lms_image_names(const char *state_dir, char ***names, struct lms_error **err)
{
	*names = xcalloc(1, sizeof(char *));
	_cleanup_free_ char *path = xasprintf("%s/images/records", state_dir);
	DIR *d = opendir(path);
	if (d == NULL)
		return errno == ENOENT ? 0 : lms_error_set(err, LMS_ERR_INTERNAL, errno, "list the images in %s", path);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		char *name = xstrndup(e->d_name, len - 5);
		if (lms_image_name_check(name, NULL) < 0) {
			free(name);
			continue;
		}
		*names = xrealloc(*names, (n + 2) * sizeof(char *));
		(*names)[n++] = name;
		(*names)[n] = NULL;
	}
	closedir(d);
	qsort(*names, n, sizeof(char *), compare_names);
	return 0;
}

int
lms_image_lock(const char *state_dir, struct lms_error **err)
{
	_cleanup_free_ char *path = xasprintf("%s/images/lock", state_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "open the image store's lock %s", path);
	if (flock(fd, LOCK_EX) < 0) {
		int e = errno;
		close(fd);
		return lms_error_set(err, LMS_ERR_SETUP, e, "lock the image store (%s)", path);
	}
	return fd;
}

/* Whether any record names the layer (hex digits). */
static bool
layer_used(char *const *digests, const char *hex)
{
	for (; digests && *digests; digests++)
		if (strcmp(*digests + strlen(DIGEST_PREFIX), hex) == 0)
			return true;
	return false;
}

/* Every digest some record names; NULL (keep everything) when a record cannot be read. */
static char **
used_layers(const char *state_dir)
{
	_cleanup_strv_ char **names = NULL;
	if (lms_image_names(state_dir, &names, NULL) < 0)
		return NULL;
	char **used = xcalloc(1, sizeof(char *));
	size_t n = 0;
	for (char **name = names; *name; name++) {
		struct lms_image *img;
		if (lms_image_load(state_dir, *name, &img, NULL) < 0) {
			lms_strv_free(used);
			return NULL;
		}
		for (char **l = img->layers; *l; l++) {
			used = xrealloc(used, (n + 2) * sizeof(char *));
			used[n++] = xstrdup(*l);
			used[n] = NULL;
		}
		lms_image_free(img);
	}
	return used;
}

/* Removes the entries of dir (STATE/images/X) that keep() refuses. */
static int
sweep(const char *state_dir, const char *sub, bool (*keep)(const char *name, char *const *used), char *const *used,
      struct lms_error **err)
{
	_cleanup_free_ char *path = xasprintf("%s/images/%s", state_dir, sub);
	_cleanup_fd_ int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0)
		return errno == ENOENT ? 0 : lms_error_set(err, LMS_ERR_SETUP, errno, "open %s", path);
	DIR *d = fdopendir(dup(dirfd));
	if (d == NULL)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "list %s", path);
	int r = 0;
	struct dirent *e;
	while (r == 0 && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || keep(e->d_name, used))
			continue;
		r = lms_tree_remove(dirfd, e->d_name, err);
	}
	closedir(d);
	return r < 0 ? lms_error_prefix(err, "remove what nothing uses in %s", path) : 0;
}

static bool
keep_layer(const char *name, char *const *used)
{
	return layer_used(used, name);
}

/* An importer's directory in tmp/ is named after its PID: kept while that process lives. */
static bool
keep_tmp(const char *name, char *const *used)
{
	(void)used;
	long pid = strtol(name, NULL, 10);
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

int
lms_image_collect(const char *state_dir, struct lms_error **err)
{
	_cleanup_strv_ char **used = used_layers(state_dir);
	if (used == NULL)
		return 0; /* a record that cannot be read: better to keep every layer than to lose one it names */
	if (sweep(state_dir, "layers", keep_layer, used, err) < 0)
		return -1;
	return sweep(state_dir, "tmp", keep_tmp, NULL, err);
}

int
lms_image_remove(const char *state_dir, const char *name, struct lms_error **err)
{
	if (lms_image_name_check(name, err) < 0)
		return -1;
	_cleanup_fd_ int lock = lms_image_lock(state_dir, err);
	if (lock < 0)
		return -1;
	/* A persistent sandbox on these layers would lose them (image/users.h). */
	if (lms_image_check_unused(state_dir, name, err) < 0)
		return -1;
	_cleanup_free_ char *path = xasprintf("%s/images/records/%s.json", state_dir, name);
	if (unlink(path) < 0)
		return errno == ENOENT ? lms_error_set(err, LMS_ERR_NOT_FOUND, 0, "image '%s' does not exist", name)
				       : lms_error_set(err, LMS_ERR_SETUP, errno, "remove %s", path);
	return lms_image_collect(state_dir, err);
}
