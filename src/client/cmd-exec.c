/*
 * `lm-sandbox sandbox exec ID -- CMD...`: POST /v1/sandboxes/{id}/exec with "stream": true and base64 output,
 * each stdout and stderr event written to our own stdout and stderr as it arrives, the exit event turned into
 * our exit status (as `lm-sandbox run` does: the command's own, 124 for a timeout, 125 when it could not run).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "client/commands.h"
#include "client/sse.h"
#include "core/alloc.h"
#include "core/base64.h"
#include "core/buf.h"
#include "core/fdio.h"
#include "core/utf8.h"

#define EXIT_TIMEOUT 124
#define EXIT_NOT_RUN 125
#define MAX_STDIN (64u << 20) /* the daemon's own bound on a body is lower (8 MiB by default) and says so */
#define MAX_EVENT (16u << 20)

struct run {
	const char *id;
	json_t *exit;		/* the exit event's data */
	struct lms_error *fail; /* an error event's */
};

static int
on_event(void *userdata, const char *event, const char *data, size_t len, struct lms_error **err)
{
	struct run *x = userdata;
	bool out = strcmp(event, "stdout") == 0;
	if (!out && strcmp(event, "stderr") != 0 && strcmp(event, "exit") != 0 && strcmp(event, "error") != 0)
		return 0; /* an event of a later version of the API */
	json_error_t jerr;
	json_t *obj = json_loadb(data, len, 0, &jerr);
	if (!json_is_object(obj)) {
		json_decref(obj);
		return lms_error_set(err, LMS_ERR_INTERNAL, 0,
				     "sandbox %s: the daemon sent a %s event that is not a JSON object", x->id, event);
	}
	int r = 0;
	if (out || strcmp(event, "stderr") == 0) {
		const char *b64 = json_string_value(json_object_get(obj, "data"));
		size_t n = b64 ? strlen(b64) : 0;
		unsigned char *buf = xmalloc(n / 4 * 3 + 3);
		long got = b64 ? lms_base64_decode(b64, n, buf) : -1;
		if (got < 0)
			r = lms_error_set(err, LMS_ERR_INTERNAL, 0,
					  "sandbox %s: the daemon sent a %s event without base64 data", x->id, event);
		/* A reader of ours that went away does not stop the command here: a closed pipe is what ends it. */
		else
			(void)lms_fd_write_all(out ? STDOUT_FILENO : STDERR_FILENO, buf, (size_t)got);
		free(buf);
	} else if (strcmp(event, "exit") == 0) {
		json_decref(x->exit);
		x->exit = json_incref(obj);
	} else {
		const char *message = json_string_value(json_object_get(json_object_get(obj, "error"), "message"));
		lms_error_set(&x->fail, LMS_ERR_SETUP, 0, "sandbox %s: %s", x->id,
			      message ? message : "the command failed");
	}
	json_decref(obj);
	return r;
}

/* Standard input as the request's "stdin": only when it is not a terminal (a person typing is not a file). */
static int
add_stdin(json_t *body, struct lms_error **err)
{
	if (isatty(STDIN_FILENO))
		return 0;
	struct lms_buf in = {0};
	_cleanup_error_ struct lms_error *read_err = NULL;
	if (lms_fd_read_to_end(STDIN_FILENO, MAX_STDIN, &in, "standard input", &read_err) < 0) {
		/* A closed or write-only descriptor 0 is no input, not a failure. */
		if (read_err->errnum == EBADF || read_err->errnum == EISDIR)
			return 0;
		return lms_error_set(err, LMS_ERR_INVALID, 0, "%s%s", read_err->message,
				     read_err->kind == LMS_ERR_INVALID
					 ? ": copy it in with `lm-sandbox sandbox cp` and read the file"
					 : "");
	}
	for (size_t i = 0, bad; i < in.len;) {
		size_t step = lms_utf8_sequence((const unsigned char *)in.data + i, in.len - i, &bad);
		if (step == 0) {
			lms_buf_clear(&in);
			return lms_error_set(
			    err, LMS_ERR_INVALID, 0,
			    "standard input is not UTF-8 text (byte %zu), and the API's stdin is a JSON "
			    "string: copy binary input in with `lm-sandbox sandbox cp` and read the file "
			    "(or give -n)",
			    i);
		}
		i += step;
	}
	json_object_set_new(body, "stdin", json_stringn(in.data ? in.data : "", in.len));
	lms_buf_clear(&in);
	return 0;
}

static int
result_status(struct run *x)
{
	json_t *e = x->exit;
	json_t *code = json_object_get(e, "exit_code");
	if (json_is_true(json_object_get(e, "timed_out"))) {
		fprintf(stderr, "lm-sandbox: sandbox %s: the command timed out\n", x->id);
		return EXIT_TIMEOUT;
	}
	if (json_is_true(json_object_get(e, "oom_killed")))
		fprintf(stderr, "lm-sandbox: sandbox %s: out of memory (the sandbox's limit)\n", x->id);
	if (!json_is_integer(code)) {
		fprintf(stderr, "lm-sandbox: sandbox %s: the daemon's exit event has no exit_code\n", x->id);
		return EXIT_NOT_RUN;
	}
	json_int_t v = json_integer_value(code);
	return v >= 0 && v <= 255 ? (int)v : EXIT_NOT_RUN;
}

int
lms_client_exec(struct lms_client *c, const struct lms_client_args *a)
{
	_cleanup_error_ struct lms_error *err = NULL;
	json_t *body = json_copy(a->body);
	if (!a->no_stdin && add_stdin(body, &err) < 0) {
		json_decref(body);
		lms_client_report(err);
		return LMS_CLIENT_EXIT_USAGE;
	}
	_cleanup_free_ char *esc = lms_client_escape(a->id, false);
	_cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/exec", esc);
	_cleanup_free_ char *what = xasprintf("sandbox %s", a->id);
	struct run x = {.id = a->id};
	struct lms_sse sse;
	lms_sse_init(&sse, MAX_EVENT, on_event, &x);
	struct lms_client_request rq = {.method = "POST",
					.path = path,
					.json = body,
					.accept = "text/event-stream",
					.body_fd = -1,
					.on_data = lms_sse_on_data,
					.userdata = &sse};
	struct lms_client_response resp;
	int r = lms_client_call(c, &rq, &resp, &err);
	json_decref(body);
	if (r == 0 && resp.status != 200)
		r = lms_client_api_error(c, &resp, what, &err);
	int status = EXIT_NOT_RUN;
	if (r < 0)
		lms_client_report(err);
	else if (x.fail != NULL)
		lms_client_report(x.fail);
	else if (x.exit != NULL)
		status = result_status(&x);
	else
		fprintf(stderr, "lm-sandbox: sandbox %s: the daemon's stream ended before the command did%s\n", a->id,
			lms_sse_pending(&sse) ? " (cut in the middle of an event)" : "");
	lms_client_response_clear(&resp);
	lms_sse_free(&sse);
	lms_error_free(x.fail);
	json_decref(x.exit);
	return status;
}
