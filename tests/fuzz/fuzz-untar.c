/*
 * libFuzzer target: the tar unpacker (archive/untar.c), which unpacks what a client uploads into a
 * sandbox and an imported image's layers. Each input is unpacked into a fresh directory `in` beside an
 * empty sibling `out`, and `out` holds a marker: whatever the bytes, nothing appears outside `in` (the
 * sibling stays empty, the marker intact), and nothing inside is a device node (but an image layer's
 * whiteouts, 0/0) or has a set-user-ID or set-group-ID bit; a failure is an error with a message, never a
 * crash. An input that starts with IMAGE_MAGIC is unpacked as an image layer (whiteouts, devices skipped,
 * small caps on entries and bytes), the rest of it being the archive.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "archive/untar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IMAGE_MAGIC "LMSIMG\n"

static int image_mode;

static int
check_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path, (void)flag, (void)ftw;
	bool whiteout = image_mode && S_ISCHR(st->st_mode) && major(st->st_rdev) == 0 && minor(st->st_rdev) == 0;
	if ((S_ISCHR(st->st_mode) && !whiteout) || S_ISBLK(st->st_mode) || (st->st_mode & (S_ISUID | S_ISGID)))
		abort();
	return 0;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	chmod(path, 0700);
	return remove(path);
}

/* The names in dir but "." and "..", "keep" allowed. */
static int
others(const char *dir, const char *keep)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		abort();
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		     (keep == NULL || strcmp(de->d_name, keep) != 0);
	closedir(d);
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char top[] = "/tmp/lms-fuzz-untar-XXXXXX";
	if (mkdtemp(top) == NULL)
		abort();
	char in[PATH_MAX], out[PATH_MAX], marker[PATH_MAX];
	snprintf(in, sizeof(in), "%s/in/deep", top);
	snprintf(out, sizeof(out), "%s/out", top);
	snprintf(marker, sizeof(marker), "%s/marker", top);
	char mid[PATH_MAX];
	snprintf(mid, sizeof(mid), "%s/in", top);
	if (mkdir(mid, 0755) < 0 || mkdir(in, 0755) < 0 || mkdir(out, 0755) < 0)
		abort();
	FILE *m = fopen(marker, "w");
	if (m == NULL || fputs("marker", m) < 0 || fclose(m) != 0)
		abort();
	int dirfd = open(in, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		abort();
	struct lms_error *err = NULL;
	int r;
	size_t magic = strlen(IMAGE_MAGIC);
	image_mode = size >= magic && memcmp(data, IMAGE_MAGIC, magic) == 0;
	if (image_mode) {
		/* The descriptor reader that image layers go through (a memfd holds the bytes). */
		int fd = memfd_create("fuzz-layer", MFD_CLOEXEC);
		if (fd < 0 || write(fd, data + magic, size - magic) != (ssize_t)(size - magic) ||
		    lseek(fd, 0, SEEK_SET) != 0)
			abort();
		struct lms_untar_opts o = {
		    .max_entries = 64, .max_bytes = 1 << 20, .max_name = 512, .whiteouts = true, .skip_devices = true};
		r = lms_untar_fd_opts(dirfd, fd, &o, NULL, &err);
		close(fd);
	} else {
		r = lms_untar_mem(dirfd, data, size, NULL, &err);
	}
	if ((r < 0) != (err != NULL) || (err != NULL && err->message[0] == '\0'))
		abort();
	lms_error_free(err);
	close(dirfd);
	/* Nothing beside `in/deep`: `out` empty, `in` holding only `deep`, the marker as it was. */
	if (others(out, NULL) != 0 || others(mid, "deep") != 0 || others(top, NULL) != 3)
		abort();
	char buf[16] = {0};
	m = fopen(marker, "r");
	if (m == NULL || fread(buf, 1, sizeof(buf) - 1, m) != 6 || strcmp(buf, "marker") != 0)
		abort();
	fclose(m);
	if (nftw(in, check_entry, 16, FTW_PHYS) != 0)
		abort();
	nftw(top, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
