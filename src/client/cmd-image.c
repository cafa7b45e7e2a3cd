/*
 * `lm-sandbox image import|pull|ls|rm`: the image store on this machine (image/store.h), with no daemon:
 * the store is files under --state-dir, which the daemon reads at each exec that names an image. Here, in
 * lm-sandbox-client, because importing needs libarchive and pulling libcurl, which the static lm-sandbox
 * does not link. The daemon's PUT /v1/images/{name} and POST /v1/images/pull run `import` and `pull` with
 * --json (server/image-child.c): one line on stdout says what happened, for the daemon to answer with.
 */
#include <getopt.h>
#include <jansson.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/commands.h"
#include "core/alloc.h"
#include "core/human.h"
#include "image/import.h"
#include "image/pull.h"
#include "image/store.h"

static const char usage_text[] =
    "usage: lm-sandbox image import [--state-dir DIR] [--max-size BYTES] [--max-entries N] NAME FILE|DIR|-\n"
    "       lm-sandbox image pull [--state-dir DIR] [--name NAME] [--insecure] [--max-size BYTES] REF\n"
    "       lm-sandbox image ls [--state-dir DIR]\n"
    "       lm-sandbox image rm [--state-dir DIR] NAME\n"
    "\n"
    "import takes a root file system tarball (docker export, mmdebstrap, debootstrap), a docker save archive\n"
    "or an OCI image layout (a directory or a tar of one); layers plain, gzip or zstd. - reads standard input.\n"
    "pull fetches REF from a registry as docker pull reads it: ubuntu:22.04 (Docker Hub's library/ubuntu),\n"
    "owner/name:tag, ghcr.io/owner/name:tag, host:port/name@sha256:HEX; stored as NAME (default: the\n"
    "repository's last part with its tag, as ubuntu:22.04). https, or http for a loopback registry.\n"
    "\n"
    "  --state-dir DIR    the daemon's state directory (default " LMS_STATE_DIR_DEFAULT ")\n"
    "  --max-size BYTES   refuse an image whose files add up to more (default 32 GiB)\n"
    "  --max-entries N    refuse a layer of more entries (default 2000000)\n"
    "  --name NAME        pull: store the image as NAME\n"
    "  --insecure         pull: plain http to any registry (not only a loopback one)\n";

static int
usage(int status)
{
	fputs(usage_text, status == 0 ? stdout : stderr);
	return status;
}

/* --json: the daemon reads one line, {"name": N} or {"error": {"kind": K, "message": M}}. */
static bool json_out;

static int
failed(struct lms_error *e)
{
	if (json_out) {
		json_auto_t *j = json_pack("{s:{s:i, s:s}}", "error", "kind", (int)e->kind, "message", e->message);
		json_dumpf(j, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		lms_client_report(e);
	}
	lms_error_free(e);
	return LMS_CLIENT_EXIT_FAILED;
}

static int
done(const struct lms_image *img)
{
	if (json_out) {
		json_auto_t *j = json_pack("{s:s}", "name", img->name);
		json_dumpf(j, stdout, JSON_COMPACT);
		putchar('\n');
		return 0;
	}
	size_t layers = 0;
	while (img->layers[layers])
		layers++;
	char size[32];
	lms_human_bytes(img->size, size);
	printf("%s: %zu layer%s, %s (%s)\n", img->name, layers, layers == 1 ? "" : "s", size, img->digest);
	return 0;
}

static bool
parse_count(const char *text, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v == 0 || text[0] == '-')
		return false;
	*out = v;
	return true;
}

static int
cmd_ls(const char *state_dir)
{
	struct lms_error *err = NULL;
	_cleanup_strv_ char **names = NULL;
	if (lms_image_names(state_dir, &names, &err) < 0)
		return failed(err);
	printf("%-24s %-8s %-10s %-26s %s\n", "NAME", "LAYERS", "SIZE", "CREATED", "SOURCE");
	for (char **n = names; *n; n++) {
		struct lms_image *img;
		if (lms_image_load(state_dir, *n, &img, &err) < 0) {
			lms_client_report(err);
			lms_error_free(err);
			err = NULL;
			continue;
		}
		size_t layers = 0;
		while (img->layers[layers])
			layers++;
		char size[32];
		lms_human_bytes(img->size, size);
		printf("%-24s %-8zu %-10s %-26s %s\n", img->name, layers, size, img->created_at, img->source);
		lms_image_free(img);
	}
	return 0;
}

int
lms_client_image_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"max-size", required_argument, NULL, 'm'},
	    {"max-entries", required_argument, NULL, 'e'},
	    {"name", required_argument, NULL, 'n'},
	    {"insecure", no_argument, NULL, 'k'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	if (argc < 2)
		return usage(LMS_CLIENT_EXIT_USAGE);
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0)
		return usage(0);
	const char *state_dir = LMS_STATE_DIR_DEFAULT;
	struct lms_import_opts opts = {0};
	struct lms_pull_opts pull = {.progress = isatty(STDERR_FILENO) == 1};
	optind = 1;
	int c;
	while ((c = getopt_long(argc - 1, argv + 1, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			state_dir = optarg;
			break;
		case 'm':
			if (!parse_count(optarg, &opts.max_bytes)) {
				fprintf(stderr, "lm-sandbox: --max-size must be a positive number of bytes, not '%s'\n",
					optarg);
				return LMS_CLIENT_EXIT_USAGE;
			}
			break;
		case 'e':
			if (!parse_count(optarg, &opts.max_entries)) {
				fprintf(stderr, "lm-sandbox: --max-entries must be a positive number, not '%s'\n",
					optarg);
				return LMS_CLIENT_EXIT_USAGE;
			}
			break;
		case 'n':
			pull.name = optarg;
			break;
		case 'k':
			pull.insecure = true;
			break;
		case 'j':
			json_out = true;
			pull.progress = false;
			break;
		case 'h':
			return usage(0);
		default:
			return usage(LMS_CLIENT_EXIT_USAGE);
		}
	}
	char **rest = argv + 1 + optind;
	int nrest = argc - 1 - optind;
	struct lms_error *err = NULL;
	if (strcmp(sub, "import") == 0 && nrest == 2) {
		struct lms_image *img;
		if (lms_image_import(state_dir, rest[0], rest[1], &opts, &img, &err) < 0)
			return failed(err);
		int r = done(img);
		lms_image_free(img);
		return r;
	}
	if (strcmp(sub, "pull") == 0 && nrest == 1) {
		struct lms_image *img;
		pull.max_bytes = opts.max_bytes;
		if (lms_image_pull(state_dir, rest[0], &pull, &img, &err) < 0)
			return failed(err);
		int r = done(img);
		lms_image_free(img);
		return r;
	}
	if (strcmp(sub, "ls") == 0 && nrest == 0)
		return cmd_ls(state_dir);
	if (strcmp(sub, "rm") == 0 && nrest == 1) {
		if (lms_image_remove(state_dir, rest[0], &err) < 0)
			return failed(err);
		return 0;
	}
	return usage(LMS_CLIENT_EXIT_USAGE);
}
