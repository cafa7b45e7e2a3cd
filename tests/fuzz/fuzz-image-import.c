/*
 * libFuzzer target: the image importer (image/import.c) on an archive of any bytes: a docker save, an
 * OCI layout's tar, a root file system's tarball, or garbage. Each input is written to a file and imported
 * into a fresh state directory with small caps. Whatever it is: the import succeeds or fails with a
 * message, never writes outside the state directory (a sentinel folder beside it stays empty), and never
 * leaves a setuid file or a device node in a layer.
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char top[64], state[PATH_MAX], beside[PATH_MAX], input[PATH_MAX];

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	chmod(path, 0700);
	return remove(path);
}

static void
cleanup(void)
{
	nftw(top, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int
check_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path, (void)flag, (void)ftw;
	/* Whiteouts are 0/0 character devices (overlayfs's); anything else special is a breach. */
	if ((st->st_mode & (S_ISUID | S_ISGID)) && S_ISREG(st->st_mode))
		abort();
	if ((S_ISCHR(st->st_mode) && st->st_rdev != 0) || S_ISBLK(st->st_mode))
		abort();
	return 0;
}

static bool
empty(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return false;
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!top[0]) {
		snprintf(top, sizeof(top), "/tmp/lms-fuzz-import-XXXXXX");
		if (!mkdtemp(top))
			abort();
		atexit(cleanup);
		snprintf(beside, sizeof(beside), "%s/beside", top);
		snprintf(input, sizeof(input), "%s/input.tar", top);
		snprintf(state, sizeof(state), "%s/state", top);
	}
	mkdir(beside, 0755);
	FILE *f = fopen(input, "wb");
	if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
		abort();
	struct lms_import_opts opts = {.max_bytes = 4 << 20, .max_entries = 256};
	struct lms_image *img = NULL;
	struct lms_error *err = NULL;
	int r = lms_image_import(state, "fuzz", input, &opts, &img, &err);
	if (r < 0 && (err == NULL || err->message == NULL))
		abort();
	lms_error_free(err);
	lms_image_free(img);
	nftw(state, check_entry, 16, FTW_PHYS);
	if (!empty(beside))
		abort();
	nftw(state, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
