/*
 * The floor under a one-shot call, for bench_server.py: what the engine alone costs once a sandbox is
 * prepared (as the server's pool does ahead of demand), with no HTTP and no process between the caller
 * and the sandbox. Each round prepares a sandbox, lets it settle, then times lms_sandbox_launch of
 * PROGRAM (the command, its exit, and the teardown that API.md puts before the reply); then, after the
 * same pause, a bare posix_spawn and wait of PROGRAM. Prints one JSON line of medians in milliseconds.
 *
 * Usage: lms-floor ROUNDS PAUSE_MS PROGRAM (as root, or with a delegated cgroup).
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include "core/clock.h"
#include "sandbox/sandbox.h"

extern char **environ;

static void
discard(void *userdata, enum lms_stream stream, const char *data, size_t len)
{
	(void)userdata, (void)stream, (void)data, (void)len;
}

static int
compare(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double
median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), compare);
	return v[n / 2];
}

static void
pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0)
		;
}

/* One round: 0, or -1 after saying what failed. */
static int
round_once(const struct lms_sandbox_spec *spec, long pause, double *launch, double *bare)
{
	struct lms_error *err = NULL;
	struct lms_sandbox *sp = NULL;
	if (lms_sandbox_create(spec, &sp, &err) < 0) {
		fprintf(stderr, "lms-floor: prepare a sandbox: %s\n", err->message);
		lms_error_free(err);
		return -1;
	}
	pause_ms(pause);
	struct lms_sandbox_result res;
	double t = lms_monotonic_ms();
	struct lms_output out = {.fn = discard, .drain_fd = -1};
	int r = lms_sandbox_launch(sp, spec, &out, &res, &err);
	*launch = lms_monotonic_ms() - t;
	if (r < 0 || res.exit_code != 0) {
		fprintf(stderr, "lms-floor: run %s in the sandbox: %s\n", spec->argv[0],
			r < 0 ? err->message : "it did not exit 0");
		lms_error_free(err);
		return -1;
	}
	pause_ms(pause);
	pid_t pid;
	int status = 0;
	t = lms_monotonic_ms();
	int e = posix_spawn(&pid, spec->argv[0], NULL, NULL, spec->argv, environ);
	if (e != 0 || waitpid(pid, &status, 0) < 0 || status != 0) {
		fprintf(stderr, "lms-floor: run %s on the host: failed\n", spec->argv[0]);
		return -1;
	}
	*bare = lms_monotonic_ms() - t;
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc != 4 || atoi(argv[1]) < 1 || atol(argv[2]) < 0 || argv[3][0] != '/') {
		fputs("usage: lms-floor ROUNDS PAUSE_MS /ABSOLUTE/PROGRAM\n", stderr);
		return 2;
	}
	size_t rounds = (size_t)atoi(argv[1]);
	long pause = atol(argv[2]);
	struct lms_sandbox_spec spec;
	lms_sandbox_spec_init(&spec);
	char *args[] = {argv[3], NULL};
	spec.argv = args;
	spec.cancel_fd = -1;
	double *launch = calloc(rounds, sizeof(double)), *bare = calloc(rounds, sizeof(double));
	if (launch == NULL || bare == NULL)
		return 1;
	for (size_t i = 0; i < rounds; i++)
		if (round_once(&spec, pause, &launch[i], &bare[i]) < 0)
			return 1;
	printf("{\"rounds\": %zu, \"pause_ms\": %ld, \"launch_ms\": %.3f, \"bare_ms\": %.3f}\n", rounds, pause,
	       median(launch, rounds), median(bare, rounds));
	free(launch);
	free(bare);
	return 0;
}
