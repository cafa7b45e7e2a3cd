/* The importer (import.h): detect the input's kind, unpack its layers into the store, write the record. */
#include "image/import.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/untar.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/fdio.h"
#include "core/file.h"
#include "core/inroot.h"
#include "image/users.h"
#include "core/tree.h"
#include "image/digest.h"
#include "image/platform.h"
#include "sandbox/sandbox.h"

#define JSON_MAX (4u << 20)	 /* a manifest, an index, a configuration */
#define OUTER_MAX_ENTRIES 100000 /* a docker save or OCI archive: blobs and a few JSON files */
#define NAME_CAP 4096
#define INDEX_DEPTH 4 /* an index of indexes of ... */
#define COPY_BLOCK (256 * 1024)

struct importer {
	const char *state_dir;
	char *tmp; /* STATE/images/tmp/PID: everything unfinished */
	int tmpfd, layersfd;
	unsigned long long budget; /* file bytes the remaining layers may write */
	unsigned long long max_entries;
	unsigned seq;
	const char *source; /* an OCI layout's "source" in the record (NULL: "oci-layout") */
	/* What the record gets. */
	char **layers;
	size_t n_layers;
	unsigned long long size;
};

static void
hash_update(void *userdata, const void *data, size_t len)
{
	EVP_DigestUpdate(userdata, data, len);
}

/* The store's directories, made where missing (0700: layers are the sandboxes' to read through their
 * overlay, nobody else's). */
int
lms_image_store_make(const char *state_dir, struct lms_error **err)
{
	_cleanup_free_ char *copy = xstrdup(state_dir);
	for (char *p = copy + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(copy, 0755) < 0 && errno != EEXIST)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "create the state directory %s", copy);
		*p = c;
		if (c == '\0')
			break;
	}
	static const char *const subs[] = {"images", "images/records", "images/layers", "images/tmp"};
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		_cleanup_free_ char *path = xasprintf("%s/%s", state_dir, subs[i]);
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "create %s", path);
	}
	return 0;
}

/* Unpacks one layer from fd into the store (once: a layer whose digest is there already is not read).
 * want: the digest the layer must have (an OCI blob's name), or NULL (a legacy layer.tar, a rootfs). */
static int
add_layer(struct importer *im, int fd, const char *want, const char *what, struct lms_error **err)
{
	_cleanup_free_ char *digest = NULL;
	unsigned long long bytes = 0;
	struct stat st;
	if (want != NULL && fstatat(im->layersfd, want + 7, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
		digest = xstrdup(want);
		bytes = lms_image_layer_size(im->state_dir, want);
	} else {
		char dir[32], root[40];
		snprintf(dir, sizeof(dir), "layer-%u", ++im->seq);
		snprintf(root, sizeof(root), "%s/root", dir);
		if (mkdirat(im->tmpfd, dir, 0700) < 0 || mkdirat(im->tmpfd, root, 0755) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "create %s/%s", im->tmp, root);
		_cleanup_fd_ int rootfd = openat(im->tmpfd, root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (rootfd < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "open %s/%s", im->tmp, root);
		EVP_MD_CTX *ctx = lms_sha256_new();
		bool root_user = geteuid() == 0;
		struct lms_untar_opts o = {
		    .max_entries = im->max_entries,
		    .max_bytes = im->budget == 0 ? 1 : im->budget,
		    .max_name = NAME_CAP,
		    .whiteouts = true,
		    .skip_devices = true,
		    .map_owners = root_user,
		    .owner_base = LMS_UID_BASE,
		    .owner_count = LMS_UID_COUNT,
		    .on_read = hash_update,
		    .userdata = ctx,
		};
		struct lms_untar_stats us;
		int r = lms_untar_fd_opts(rootfd, fd, &o, &us, err);
		/* What libarchive left unread (the end-of-archive padding, a compressor's trailer) is of the blob:
		 * the digest covers every byte. */
		char *block = xmalloc(COPY_BLOCK);
		ssize_t n;
		while (r == 0 && (n = read(fd, block, COPY_BLOCK)) != 0) {
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				r = lms_error_set(err, LMS_ERR_INVALID, errno, "read %s", what);
			else
				hash_update(ctx, block, (size_t)n);
		}
		free(block);
		digest = lms_sha256_end(ctx);
		EVP_MD_CTX_free(ctx);
		if (r < 0)
			return lms_error_prefix(err, "%s", what);
		if (want != NULL && strcmp(want, digest) != 0)
			return lms_error_set(
			    err, LMS_ERR_INVALID, 0,
			    "%s: its content's digest is %s, not the %s it is named by (damaged or forged)", what,
			    digest, want);
		if (root_user && fchown(rootfd, LMS_UID_BASE, LMS_UID_BASE) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "set the owner of %s/%s", im->tmp, root);
		bytes = us.bytes;
		char size[32], sizepath[48];
		snprintf(size, sizeof(size), "%llu\n", bytes);
		snprintf(sizepath, sizeof(sizepath), "%s/size", dir);
		_cleanup_fd_ int sfd = openat(im->tmpfd, sizepath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (sfd < 0 || lms_fd_write_all(sfd, size, strlen(size)) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "write %s/%s", im->tmp, sizepath);
		/* The rename is the layer's commit point: layers/HEX is whole or absent. The same layer already
		 * there (a rootfs imported twice): the new copy goes. */
		if (renameat(im->tmpfd, dir, im->layersfd, digest + 7) < 0) {
			if (errno != EEXIST && errno != ENOTEMPTY)
				return lms_error_set(err, LMS_ERR_SETUP, errno, "store layer %s", digest);
			if (lms_tree_remove(im->tmpfd, dir, err) < 0)
				return -1;
		}
	}
	if (bytes > im->budget)
		bytes = im->budget;
	im->budget -= bytes;
	im->size += bytes;
	im->layers = xrealloc(im->layers, (im->n_layers + 2) * sizeof(char *));
	im->layers[im->n_layers++] = steal_pointer(&digest);
	im->layers[im->n_layers] = NULL;
	return 0;
}

/* A JSON file of the layout, by a name the layout gives (never leaving it). */
static json_t *
read_json(int dirfd, const char *path, char **digest, struct lms_error **err)
{
	int fd = lms_inroot_open(dirfd, path, O_RDONLY | O_NOFOLLOW, 0, LMS_BENEATH);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INVALID, -fd, "open %.200s in the image", path), NULL;
	size_t len;
	_cleanup_free_ char *text = lms_file_read_fd(fd, path, JSON_MAX, &len, err);
	close(fd);
	if (text == NULL)
		return NULL;
	json_error_t jerr;
	json_t *j = json_loadb(text, len, 0, &jerr);
	if (j == NULL)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%.200s in the image is not JSON: %s (line %d)", path,
				     jerr.text, jerr.line),
		       NULL;
	if (digest != NULL)
		*digest = lms_sha256_of(text, len);
	return j;
}

static char *
blob_path(const char *digest)
{
	return xasprintf("blobs/sha256/%s", digest + 7);
}

static int
add_layer_file(struct importer *im, int dirfd, const char *path, const char *want, struct lms_error **err)
{
	/* A layer in the store already is not read (a puller does not even fetch it: its blob is absent). */
	struct stat st;
	if (want != NULL && fstatat(im->layersfd, want + 7, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
		return add_layer(im, -1, want, path, err);
	int fd = lms_inroot_open(dirfd, path, O_RDONLY | O_NOFOLLOW, 0, LMS_BENEATH);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_INVALID, -fd, "open layer %.200s in the image", path);
	_cleanup_free_ char *what = xasprintf("layer %.200s", path);
	int r = add_layer(im, fd, want, what, err);
	close(fd);
	return r;
}

/* The configuration's Env and WorkingDir (both optional). */
static int
take_config(const json_t *cfg, struct lms_image *img, struct lms_error **err)
{
	const json_t *c = json_object_get(cfg, "config");
	if (c == NULL)
		c = json_object_get(cfg, "container_config");
	const json_t *env = json_object_get(c, "Env");
	const json_t *wd = json_object_get(c, "WorkingDir");
	size_t n = json_is_array(env) ? json_array_size(env) : 0;
	if (n > LMS_MAX_ENV)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "the image's Env has %zu entries, more than %d", n,
				     LMS_MAX_ENV);
	img->env = xcalloc(n + 1, sizeof(char *));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const char *e = json_string_value(json_array_get(env, i));
		if (e == NULL || strchr(e, '=') == NULL || e[0] == '=' || strlen(e) > 65536)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "the image's Env entry %zu is not NAME=VALUE", i);
		img->env[k++] = xstrdup(e);
	}
	const char *w = json_string_value(wd);
	if (w != NULL && w[0] != '\0') {
		if (w[0] != '/' || strlen(w) >= 4096)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "the image's WorkingDir '%.200s' is not absolute",
					     w);
		img->working_dir = xstrdup(w);
	}
	return 0;
}

/* docker save's manifest.json: [{"Config": PATH, "Layers": [PATH...]}] (the first image). */
static int
docker_archive(struct importer *im, int dirfd, struct lms_image *img, struct lms_error **err)
{
	json_auto_t *m = read_json(dirfd, "manifest.json", NULL, err);
	if (m == NULL)
		return -1;
	const json_t *first = json_array_get(m, 0);
	const char *config = json_string_value(json_object_get(first, "Config"));
	const json_t *layers = json_object_get(first, "Layers");
	if (config == NULL || !json_is_array(layers) || json_array_size(layers) == 0 ||
	    json_array_size(layers) > LMS_IMAGE_MAX_LAYERS)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "manifest.json names no Config, or not 1 to %d Layers",
				     LMS_IMAGE_MAX_LAYERS);
	json_auto_t *cfg = read_json(dirfd, config, &img->digest, err);
	if (cfg == NULL || take_config(cfg, img, err) < 0)
		return -1;
	size_t i;
	const json_t *l;
	json_array_foreach(layers, i, l)
	{
		const char *path = json_string_value(l);
		if (path == NULL)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "manifest.json: layer %zu is not a path", i);
		/* Docker 25+: blobs/sha256/HEX, named by the digest it must have. */
		_cleanup_free_ char *want = NULL;
		if (strncmp(path, "blobs/sha256/", 13) == 0)
			want = xasprintf("sha256:%s", path + 13);
		if (add_layer_file(im, dirfd, path, want && lms_digest_ok(want) ? want : NULL, err) < 0)
			return -1;
	}
	img->source = xstrdup("docker-archive");
	return 0;
}

/* An OCI image layout: index.json, then (through any indexes) a manifest, its config and layers. */
static int
oci_layout(struct importer *im, int dirfd, struct lms_image *img, struct lms_error **err)
{
	json_t *index = read_json(dirfd, "index.json", NULL, err);
	if (index == NULL)
		return -1;
	json_t *manifest = NULL;
	for (int depth = 0; depth < INDEX_DEPTH && manifest == NULL; depth++) {
		const json_t *m = lms_image_pick_manifest(index);
		/* A copy: the index it is in goes before it is compared. */
		_cleanup_free_ char *digest = xstrdup(json_string_value(json_object_get(m, "digest")) ?: "");
		if (!lms_digest_ok(digest)) {
			json_decref(index);
			return lms_error_set(err, LMS_ERR_INVALID, 0,
					     "the image's index names no manifest for linux/" LMS_IMAGE_HOST_ARCH
					     " (or its digest is not sha256:HEX)");
		}
		_cleanup_free_ char *path = blob_path(digest), *got = NULL;
		json_t *next = read_json(dirfd, path, &got, err);
		json_decref(index);
		if (next == NULL)
			return -1;
		if (strcmp(got, digest) != 0) {
			json_decref(next);
			return lms_error_set(err, LMS_ERR_INVALID, 0, "blob %s has the digest %s (damaged or forged)",
					     digest, got);
		}
		if (json_object_get(next, "manifests") != NULL)
			index = next; /* an index (a multi-platform image): one more level */
		else
			manifest = next;
	}
	if (manifest == NULL)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "the image's indexes nest deeper than %d", INDEX_DEPTH);
	json_auto_t *mref = manifest;
	const char *cdigest = json_string_value(json_object_get(json_object_get(mref, "config"), "digest"));
	const json_t *layers = json_object_get(mref, "layers");
	if (!lms_digest_ok(cdigest) || !json_is_array(layers) || json_array_size(layers) == 0 ||
	    json_array_size(layers) > LMS_IMAGE_MAX_LAYERS)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "the image's manifest names no config, or not 1 to %d layers",
				     LMS_IMAGE_MAX_LAYERS);
	_cleanup_free_ char *cpath = blob_path(cdigest);
	json_auto_t *cfg = read_json(dirfd, cpath, &img->digest, err);
	if (cfg == NULL)
		return -1;
	if (strcmp(img->digest, cdigest) != 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "config blob %s has the digest %s (damaged or forged)",
				     cdigest, img->digest);
	if (take_config(cfg, img, err) < 0)
		return -1;
	size_t i;
	const json_t *l;
	json_array_foreach(layers, i, l)
	{
		const char *d = json_string_value(json_object_get(l, "digest"));
		if (!lms_digest_ok(d))
			return lms_error_set(err, LMS_ERR_INVALID, 0, "the image's layer %zu has no sha256 digest", i);
		_cleanup_free_ char *path = blob_path(d);
		if (add_layer_file(im, dirfd, path, d, err) < 0)
			return -1;
	}
	img->source = xstrdup(im->source ? im->source : "oci-layout");
	return 0;
}

static int
layout(struct importer *im, int dirfd, struct lms_image *img, struct lms_error **err)
{
	struct stat st;
	if (fstatat(dirfd, "manifest.json", &st, AT_SYMLINK_NOFOLLOW) == 0)
		return docker_archive(im, dirfd, img, err);
	if (fstatat(dirfd, "index.json", &st, AT_SYMLINK_NOFOLLOW) == 0)
		return oci_layout(im, dirfd, img, err);
	return lms_error_set(err, LMS_ERR_INVALID, 0,
			     "a directory that is no OCI image layout (no index.json) nor docker save output (no "
			     "manifest.json)");
}

/* Whether a tar holds an image (docker save, an OCI layout) rather than a root file system: its top holds
 * manifest.json or index.json, and no root file system's directory comes first. */
static int
tar_is_layout(int fd, bool *is_layout, struct lms_error **err)
{
	*is_layout = false;
	struct archive *a = archive_read_new();
	if (a == NULL)
		abort();
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	int r = 0;
	if (archive_read_open_fd(a, fd, 64 * 1024) != ARCHIVE_OK)
		r = lms_error_set(err, LMS_ERR_INVALID, 0, "the input is not a tar archive (plain, gzip or zstd): %s",
				  archive_error_string(a) ? archive_error_string(a) : "unknown format");
	struct archive_entry *ae;
	for (unsigned long n = 0; r == 0 && n < OUTER_MAX_ENTRIES; n++) {
		int h = archive_read_next_header(a, &ae);
		if (h == ARCHIVE_EOF)
			break;
		if (h != ARCHIVE_OK && h != ARCHIVE_WARN) {
			r = lms_error_set(err, LMS_ERR_INVALID, 0, "the input is not a tar archive: %s",
					  archive_error_string(a) ? archive_error_string(a) : "bad header");
			break;
		}
		const char *name = archive_entry_pathname(ae);
		while (name && strncmp(name, "./", 2) == 0)
			name += 2;
		if (name == NULL)
			continue;
		if (strcmp(name, "manifest.json") == 0 || strcmp(name, "index.json") == 0) {
			*is_layout = true;
			break;
		}
		static const char *const rootfs[] = {"bin", "etc", "usr", "lib", "sbin", "var"};
		bool found = false;
		for (size_t i = 0; i < sizeof(rootfs) / sizeof(rootfs[0]); i++) {
			size_t len = strlen(rootfs[i]);
			found |= strncmp(name, rootfs[i], len) == 0 && (name[len] == '\0' || name[len] == '/');
		}
		if (found)
			break;
	}
	archive_read_free(a);
	if (r == 0 && lseek(fd, 0, SEEK_SET) < 0)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "rewind the input");
	return r;
}

/* Standard input (a pipe) into tmp/input: the kind of archive is known only once it is all there. */
static int
spool(struct importer *im, struct lms_error **err)
{
	int fd = openat(im->tmpfd, "input", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "create %s/input", im->tmp);
	char *block = xmalloc(COPY_BLOCK);
	unsigned long long total = 0;
	int r = 0;
	for (;;) {
		ssize_t n = read(STDIN_FILENO, block, COPY_BLOCK);
		if (n == 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = lms_error_set(err, LMS_ERR_INVALID, errno, "read standard input");
			break;
		}
		if ((total += (unsigned long long)n) > im->budget) {
			r = lms_error_set(err, LMS_ERR_INVALID, 0, "the input is larger than %llu bytes (--max-size)",
					  im->budget);
			break;
		}
		if (lms_fd_write_all(fd, block, (size_t)n) < 0) {
			r = lms_error_set(err, LMS_ERR_SETUP, errno, "write %s/input", im->tmp);
			break;
		}
	}
	free(block);
	if (r == 0 && lseek(fd, 0, SEEK_SET) < 0)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "rewind %s/input", im->tmp);
	if (r < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
import_input(struct importer *im, const char *file, struct lms_image *img, struct lms_error **err)
{
	_cleanup_fd_ int fd = -1;
	struct stat in;
	if (strcmp(file, "-") == 0 && fstat(STDIN_FILENO, &in) == 0 && S_ISREG(in.st_mode) &&
	    lseek(STDIN_FILENO, 0, SEEK_SET) == 0) {
		/* A file as standard input (the daemon's PUT body, `< file`) is read where it is: no copy. */
		if ((fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3)) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "duplicate standard input");
	} else if (strcmp(file, "-") == 0) {
		if ((fd = spool(im, err)) < 0)
			return -1;
	} else {
		if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
			return lms_error_set(err, LMS_ERR_NOT_FOUND, errno, "open %s", file);
		struct stat st;
		if (fstat(fd, &st) < 0)
			return lms_error_set(err, LMS_ERR_SETUP, errno, "stat %s", file);
		if (S_ISDIR(st.st_mode))
			return layout(im, fd, img, err);
		if (!S_ISREG(st.st_mode))
			return lms_error_set(
			    err, LMS_ERR_INVALID, 0,
			    "%s is neither a file nor a directory: give a file, a directory or - (standard "
			    "input)",
			    file);
	}
	bool is_layout;
	if (tar_is_layout(fd, &is_layout, err) < 0)
		return -1;
	if (!is_layout) {
		if (add_layer(im, fd, NULL, "the root file system", err) < 0)
			return -1;
		img->digest = xstrdup(im->layers[0]);
		img->source = xstrdup("rootfs");
		img->env = xcalloc(1, sizeof(char *));
		return 0;
	}
	/* An archive of a layout: its few files unpacked as they are, then read as a directory. */
	if (mkdirat(im->tmpfd, "outer", 0700) < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "create %s/outer", im->tmp);
	_cleanup_fd_ int outer = openat(im->tmpfd, "outer", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (outer < 0)
		return lms_error_set(err, LMS_ERR_SETUP, errno, "open %s/outer", im->tmp);
	struct lms_untar_opts o = {.max_entries = OUTER_MAX_ENTRIES, .max_bytes = im->budget, .max_name = NAME_CAP};
	if (lms_untar_fd_opts(outer, fd, &o, NULL, err) < 0)
		return lms_error_prefix(err, "the image archive");
	return layout(im, outer, img, err);
}

/* Any layer of the image has bash: API.md's "cmd" runs as bash -c there, else sh -c. */
static bool
find_bash(char *const *paths)
{
	for (; *paths; paths++) {
		struct stat st;
		_cleanup_free_ char *a = xasprintf("%s/usr/bin/bash", *paths), *b = xasprintf("%s/bin/bash", *paths);
		if ((lstat(a, &st) == 0 && S_ISREG(st.st_mode)) || (lstat(b, &st) == 0 && S_ISREG(st.st_mode)))
			return true;
	}
	return false;
}

int
lms_image_import(const char *state_dir, const char *name, const char *file, const struct lms_import_opts *opts,
		 struct lms_image **out, struct lms_error **err)
{
	*out = NULL;
	if (lms_image_name_check(name, err) < 0)
		return -1;
	if (state_dir == NULL || state_dir[0] != '/')
		return lms_error_set(err, LMS_ERR_INVALID, 0, "--state-dir must be an absolute path");
	if (lms_image_store_make(state_dir, err) < 0)
		return -1;
	_cleanup_fd_ int lock = lms_image_lock(state_dir, err);
	if (lock < 0)
		return -1;
	/* Replacing an image frees its old layers, which a persistent sandbox of it still needs. */
	if (lms_image_check_unused(state_dir, name, err) < 0)
		return -1;
	struct importer im = {
	    .state_dir = state_dir,
	    .tmp = xasprintf("%s/images/tmp/%d", state_dir, (int)getpid()),
	    .budget = opts && opts->max_bytes ? opts->max_bytes : LMS_IMPORT_MAX_BYTES,
	    .max_entries = opts && opts->max_entries ? opts->max_entries : LMS_IMPORT_MAX_ENTRIES,
	    .source = opts ? opts->source : NULL,
	    .tmpfd = -1,
	    .layersfd = -1,
	};
	_cleanup_free_ char *layers = xasprintf("%s/images/layers", state_dir);
	_cleanup_free_ char *tmps = xasprintf("%s/images/tmp", state_dir);
	_cleanup_fd_ int tmpsfd = open(tmps, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	char tmpname[24];
	snprintf(tmpname, sizeof(tmpname), "%d", (int)getpid());
	int r = 0;
	if (tmpsfd < 0 || (im.layersfd = open(layers, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "open %s", tmpsfd < 0 ? tmps : layers);
	/* A directory of this PID left by an importer that died: it is no one's. */
	if (r == 0)
		r = lms_tree_remove(tmpsfd, tmpname, err);
	if (r == 0 && (mkdirat(tmpsfd, tmpname, 0700) < 0 ||
		       (im.tmpfd = openat(tmpsfd, tmpname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0))
		r = lms_error_set(err, LMS_ERR_SETUP, errno, "create %s", im.tmp);
	struct lms_image *img = xcalloc(1, sizeof(*img));
	img->name = xstrdup(name);
	if (r == 0)
		r = import_input(&im, file, img, err);
	if (r == 0) {
		char when[40];
		lms_rfc3339(lms_wall_s(), when);
		img->created_at = xstrdup(when);
		img->layers = steal_pointer(&im.layers);
		img->size = im.size;
		size_t n = 0;
		while (img->layers[n])
			n++;
		img->paths = xcalloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			img->paths[i] = xasprintf("%s/%s/root", layers, img->layers[i] + 7);
		img->has_bash = find_bash(img->paths);
		r = lms_image_save(state_dir, img, err);
	}
	if (im.tmpfd >= 0)
		close(im.tmpfd);
	if (im.layersfd >= 0)
		close(im.layersfd);
	/* What this import left unfinished, and the layers an image it replaced was the last to use. */
	if (tmpsfd >= 0)
		(void)lms_tree_remove(tmpsfd, tmpname, NULL);
	if (r == 0)
		r = lms_image_collect(state_dir, err);
	lms_strv_free(im.layers);
	free(im.tmp);
	if (r < 0) {
		lms_image_free(img);
		return -1;
	}
	*out = img;
	return 0;
}
