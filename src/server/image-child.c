/* The importer's child process (image-child.h). */
#include "server/image-child.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/self.h"

#define CLIENT "lm-sandbox-client"
#define ANSWER_MAX (64u << 10) /* its one line: a name, or an error message */
#define MAX_ARGS 16

extern char **environ;

/* Reads the child's stdout (up to ANSWER_MAX; the rest is dropped, so it never blocks on a full pipe)
 * until it ends, or until the client hangs up or the daemon stops: then the child is killed (a pull
 * resumes its downloads next time, an import's leftovers go with the next import). The 250 ms poll is
 * how `stopping` is seen: SIGTERM wakes no thread but the signal thread. */
static char *
read_answer(int fd, pid_t pid, int client_fd, atomic_bool *stopping, size_t *len, const char **cancelled)
{
	char *buf = xmalloc(ANSWER_MAX + 1);
	size_t n = 0;
	char drop[4096];
	*cancelled = NULL;
	struct pollfd fds[2] = {{.fd = fd, .events = POLLIN}, {.fd = client_fd, .events = POLLRDHUP}};
	for (;;) {
		int ready = poll(fds, client_fd >= 0 ? 2 : 1, 250);
		if (ready < 0 && errno != EINTR)
			break;
		if (stopping != NULL && atomic_load(stopping))
			*cancelled = "the server is stopping";
		else if (client_fd >= 0 && (fds[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			*cancelled = "the client went away";
		if (*cancelled != NULL) {
			kill(pid, SIGKILL);
			break;
		}
		if (ready <= 0 || fds[0].revents == 0)
			continue;
		ssize_t k = n < ANSWER_MAX ? read(fd, buf + n, ANSWER_MAX - n) : read(fd, drop, sizeof(drop));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		if (n < ANSWER_MAX)
			n += (size_t)k;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* The child's answer: {"name": N} or {"error": {"kind": K, "message": M}}. */
static int
take_answer(const char *text, size_t len, int status, char **name, struct lms_error **err)
{
	json_auto_t *j = json_loadb(text, len, JSON_DISABLE_EOF_CHECK, NULL);
	const char *n = json_string_value(json_object_get(j, "name"));
	if (n != NULL && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		*name = xstrdup(n);
		return 0;
	}
	const json_t *e = json_object_get(j, "error");
	const char *message = json_string_value(json_object_get(e, "message"));
	json_int_t kind = json_integer_value(json_object_get(e, "kind"));
	if (message != NULL && kind >= 0 && kind <= LMS_ERR_KIND_MAX)
		return lms_error_set(err, (enum lms_error_kind)kind, 0, "%s", message);
	if (WIFSIGNALED(status))
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, CLIENT " image was killed by signal %d",
				     WTERMSIG(status));
	return lms_error_set(err, LMS_ERR_INTERNAL, 0,
			     CLIENT " image exited with %d without saying why (is it the same version as the daemon?)",
			     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

int
lms_image_child_run(const char *state_dir, const char *const *args, int in_fd, int client_fd, atomic_bool *stopping,
		    char **name, struct lms_error **err)
{
	*name = NULL;
	_cleanup_free_ char *path = lms_self_sibling(CLIENT);
	if (path == NULL)
		return lms_error_set(err, LMS_ERR_UNSUPPORTED, errno,
				     "find " CLIENT
				     " beside the daemon (it imports and pulls images): install it there");
	const char *argv[MAX_ARGS + 6] = {CLIENT, "image"};
	size_t k = 2, i = 0;
	for (; args[i] != NULL && i < MAX_ARGS; i++) {
		argv[k++] = args[i];
		if (i == 0) { /* after the subcommand */
			argv[k++] = "--json";
			argv[k++] = "--state-dir";
			argv[k++] = state_dir;
		}
	}
	argv[k] = NULL;
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "create a pipe for " CLIENT);
	posix_spawn_file_actions_t fa;
	int r = posix_spawn_file_actions_init(&fa);
	if (r == 0 && in_fd >= 0)
		r = posix_spawn_file_actions_adddup2(&fa, in_fd, STDIN_FILENO);
	else if (r == 0)
		r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	/* Its warnings (a device node skipped) are the importer's to print on a terminal, not the log's. */
	if (r == 0)
		r = posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	pid_t pid = -1;
	if (r == 0)
		r = posix_spawn(&pid, path, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	if (r != 0) {
		close(out[0]);
		return lms_error_set(err, LMS_ERR_INTERNAL, r, "run %s", path);
	}
	size_t len;
	const char *cancelled;
	_cleanup_free_ char *answer = read_answer(out[0], pid, client_fd, stopping, &len, &cancelled);
	close(out[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return lms_error_set(err, LMS_ERR_INTERNAL, errno, "wait for %s", path);
	}
	if (cancelled != NULL)
		return lms_error_set(err, LMS_ERR_CANCELLED, 0, "image %s stopped: %s", args[0], cancelled);
	return take_answer(answer, len, status, name, err);
}
