/*
 * `lm-sandbox chat`: the agent loop in a terminal, against a running daemon. Each turn is a POST /v1/agent with
 * "stream": true on the conversation so far (the client holds it: the daemon keeps nothing between runs but
 * the sandbox). Unless --yes, the run has "confirm": true, so the daemon stops before running the model's tool
 * calls (finish_reason "tool_calls"); each is shown and asked about here, a declined one answered with a tool
 * message, and the conversation sent back: the daemon runs the calls it finds unanswered, then goes on. So no
 * daemon ever waits on a person, and a dropped client leaves nothing half-asked.
 *
 * Ctrl-C while a run streams closes its connection, which ends the run and kills its command (the sandbox
 * stays); the conversation is rebuilt from the events seen, the cut call answered "interrupted by the user",
 * and the prompt comes back. Ctrl-C at a prompt (or a second one) leaves. The sandbox is kept and named at the
 * end. Colours only on a terminal, and never with NO_COLOR set.
 */
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/exec-json.h"
#include "client/commands.h"
#include "client/sse.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/fdio.h"

#define MAX_EVENT (16u << 20)
#define MAX_TASK (1u << 20) /* a task piped in */
#define MAX_LINE 65536	    /* a line typed */

static volatile sig_atomic_t interrupts;

static void
on_sigint(int sig)
{
	(void)sig;
	interrupts++;
}

struct chat {
	struct lms_client *c;
	const struct lms_client_args *a;
	char *sandbox_id;
	char *model;
	json_t *messages; /* the conversation, without the daemon's system message */
	bool always;	  /* --yes, or "a" answered once */
	bool tty;	  /* stdout is a terminal */
	bool colour;
	int ask_fd; /* where confirmations are read: standard input, or /dev/tty when a task was piped in */
	/* one run: */
	json_t *seen;	     /* the conversation as the events rebuild it (for a run cut by Ctrl-C) */
	json_t *step_msg;    /* the assistant message of the step being streamed (in seen), or NULL */
	json_int_t step;     /* its step */
	struct lms_buf text; /* the model's words of the step so far */
	json_t *approved;    /* ids the user allowed: the daemon's tool_call event for them is not shown again */
	json_t *done;	     /* the done event's data */
	json_t *failed;	     /* an error event's */
	bool at_line_start;
};

static const char *
paint(const struct chat *ch, const char *code)
{
	return ch->colour ? code : "";
}
#define BOLD "\033[1m"
#define DIM "\033[2m"
#define RED "\033[31m"
#define YELLOW "\033[33m"
#define CYAN "\033[36m"
#define RESET "\033[0m"

/* Text of the model or of a command, on our stdout. On a terminal its control characters are shown (^[ for
 * ESC), never obeyed: a sandbox's output must not move the cursor, retitle the window or forge our prompt. */
static void
out(struct chat *ch, const char *s, size_t n)
{
	if (!ch->tty) {
		fwrite(s, 1, n, stdout);
	} else {
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
			    (unsigned char)s[i + 1] < 0xa0) {
				fputc('?', stdout); /* a C1 control (U+0080..U+009F): some terminals obey them too */
				i++;
			} else if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
				fputc('^', stdout);
				fputc(c == 0x7f ? '?' : c + '@', stdout);
			} else {
				fputc(c, stdout);
			}
		}
	}
	if (n > 0)
		ch->at_line_start = s[n - 1] == '\n';
}

static void
put(struct chat *ch, const char *s)
{
	out(ch, s, strlen(s));
}

static void
newline(struct chat *ch)
{
	if (!ch->at_line_start)
		out(ch, "\n", 1);
}

/* A call as a person reads it: the command of bash, the path of the file tools. */
static void
show_call(struct chat *ch, const char *name, const char *arguments)
{
	json_t *args = json_loads(arguments ? arguments : "", 0, NULL);
	const char *command = json_string_value(json_object_get(args, "command"));
	const char *path = json_string_value(json_object_get(args, "path"));
	newline(ch);
	fputs(paint(ch, CYAN BOLD), stdout);
	if (strcmp(name, "bash") == 0 && command != NULL) {
		put(ch, "$ ");
		put(ch, command);
	} else {
		put(ch, name);
		put(ch, " ");
		put(ch, path ? path : arguments ? arguments : "");
		if (path != NULL && strcmp(name, "write_file") == 0)
			printf(" (%zu bytes)", json_string_length(json_object_get(args, "content")));
	}
	fputs(paint(ch, RESET), stdout);
	out(ch, "\n", 1);
	json_decref(args);
	fflush(stdout);
}

/* ---- the events of one run ---- */

static void
on_assistant(struct chat *ch, const json_t *data)
{
	const char *delta = json_string_value(json_object_get(data, "delta"));
	if (delta == NULL)
		return;
	if (ch->step_msg != NULL) /* words after a step's calls: the next step */
		ch->step_msg = NULL;
	lms_buf_append(&ch->text, delta, strlen(delta));
	out(ch, delta, strlen(delta));
}

static void
on_tool_call(struct chat *ch, const json_t *data)
{
	const char *id = json_string_value(json_object_get(data, "id"));
	const char *name = json_string_value(json_object_get(data, "name"));
	const char *arguments = json_string_value(json_object_get(data, "arguments"));
	json_int_t step = json_integer_value(json_object_get(data, "step"));
	if (id == NULL || name == NULL || arguments == NULL)
		return;
	/* Step 0 runs the calls of the conversation's last message, which `seen` has already. */
	if (step > 0 && (ch->step_msg == NULL || step != ch->step)) {
		ch->step_msg = json_pack("{s:s, s:s%, s:[]}", "role", "assistant", "content",
					 ch->text.data ? ch->text.data : "", ch->text.len, "tool_calls");
		json_array_append_new(ch->seen, ch->step_msg);
		ch->step = step;
	}
	ch->text.len = 0;
	if (ch->step_msg != NULL)
		json_array_append_new(json_object_get(ch->step_msg, "tool_calls"),
				      json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function",
						"name", name, "arguments", arguments));
	if (json_object_get(ch->approved, id) == NULL)
		show_call(ch, name, arguments);
}

static void
on_tool_output(struct chat *ch, const json_t *data)
{
	const char *text = json_string_value(json_object_get(data, "data"));
	bool err = strcmp(json_string_value(json_object_get(data, "stream")) ?: "", "stderr") == 0;
	if (text == NULL)
		return;
	if (err)
		fputs(paint(ch, RED), stdout);
	out(ch, text, strlen(text));
	if (err)
		fputs(paint(ch, RESET), stdout);
}

static void
on_tool_result(struct chat *ch, const json_t *data)
{
	const char *id = json_string_value(json_object_get(data, "id"));
	const char *name = json_string_value(json_object_get(data, "name"));
	const char *content = json_string_value(json_object_get(data, "content"));
	json_t *code = json_object_get(data, "exit_code");
	if (id != NULL)
		json_array_append_new(ch->seen, json_pack("{s:s, s:s, s:s, s:s}", "role", "tool", "tool_call_id", id,
							  "name", name ? name : "", "content", content ? content : ""));
	newline(ch);
	if (json_is_true(json_object_get(data, "timed_out")))
		printf("%s[timed out]%s\n", paint(ch, YELLOW), paint(ch, RESET));
	else if (json_is_true(json_object_get(data, "oom_killed")))
		printf("%s[out of memory]%s\n", paint(ch, YELLOW), paint(ch, RESET));
	else if (json_is_integer(code) && json_integer_value(code) != 0)
		printf("%s[exit %lld]%s\n", paint(ch, DIM), (long long)json_integer_value(code), paint(ch, RESET));
	else if (content != NULL && (json_is_true(json_object_get(data, "is_error")) ||
				     (name != NULL && strcmp(name, "bash") != 0 && strcmp(name, "read_file") != 0))) {
		fputs(paint(ch, json_is_true(json_object_get(data, "is_error")) ? YELLOW : DIM), stdout);
		put(ch, content);
		fputs(paint(ch, RESET), stdout);
		newline(ch);
	}
	ch->at_line_start = true;
}

static int
on_event(void *userdata, const char *event, const char *data, size_t len, struct lms_error **err)
{
	struct chat *ch = userdata;
	json_t *obj = json_loadb(data, len, 0, NULL);
	if (!json_is_object(obj)) {
		json_decref(obj);
		return lms_error_set(err, LMS_ERR_INTERNAL, 0, "the daemon sent a %s event that is not a JSON object",
				     event);
	}
	if (strcmp(event, "assistant") == 0)
		on_assistant(ch, obj);
	else if (strcmp(event, "tool_call") == 0)
		on_tool_call(ch, obj);
	else if (strcmp(event, "tool_output") == 0)
		on_tool_output(ch, obj);
	else if (strcmp(event, "tool_result") == 0)
		on_tool_result(ch, obj);
	else if (strcmp(event, "warning") == 0) {
		newline(ch);
		fputs(paint(ch, YELLOW), stdout);
		put(ch, "warning: ");
		put(ch, json_string_value(json_object_get(obj, "message")) ?: "");
		fputs(paint(ch, RESET), stdout);
		out(ch, "\n", 1);
	} else if (strcmp(event, "done") == 0) {
		json_decref(ch->done);
		ch->done = json_incref(obj);
	} else if (strcmp(event, "error") == 0) {
		json_decref(ch->failed);
		ch->failed = json_incref(obj);
	}
	json_decref(obj);
	fflush(stdout);
	return 0;
}

static bool
cancelled(void *userdata)
{
	(void)userdata;
	return interrupts > 0;
}

/* The last assistant message's calls that no tool message answers get `why` as their answer. */
static void
answer_unanswered(json_t *messages, const char *why)
{
	size_t n = json_array_size(messages), at = n;
	while (at > 0 &&
	       strcmp(json_string_value(json_object_get(json_array_get(messages, at - 1), "role")) ?: "", "tool") == 0)
		at--;
	json_t *last = at > 0 ? json_array_get(messages, at - 1) : NULL;
	size_t i;
	json_t *call;
	json_array_foreach(json_object_get(last, "tool_calls"), i, call)
	{
		const char *id = json_string_value(json_object_get(call, "id"));
		bool answered = false;
		for (size_t k = at; id && k < json_array_size(messages) && !answered; k++)
			answered =
			    strcmp(json_string_value(json_object_get(json_array_get(messages, k), "tool_call_id"))
				       ?: "",
				   id) == 0;
		if (id != NULL && !answered)
			json_array_append_new(
			    messages,
			    json_pack("{s:s, s:s, s:O?, s:s}", "role", "tool", "tool_call_id", id, "name",
				      json_object_get(json_object_get(call, "function"), "name"), "content", why));
	}
}

enum outcome { RUN_DONE, RUN_CUT, RUN_FAILED };

/* One POST /v1/agent over the conversation. RUN_DONE with ch->done, RUN_CUT (Ctrl-C: ch->messages rebuilt),
 * RUN_FAILED (said on stderr). */
static enum outcome
run_once(struct chat *ch)
{
	json_t *body = json_pack("{s:s, s:O, s:s, s:b, s:b}", "model", ch->model, "messages", ch->messages,
				 "sandbox_id", ch->sandbox_id, "stream", 1, "confirm", !ch->always);
	json_decref(ch->seen);
	ch->seen = json_deep_copy(ch->messages);
	ch->step_msg = NULL;
	ch->step = 0;
	ch->text.len = 0;
	json_decref(ch->done);
	json_decref(ch->failed);
	ch->done = ch->failed = NULL;
	struct lms_sse sse;
	lms_sse_init(&sse, MAX_EVENT, on_event, ch);
	struct lms_client_request rq = {.method = "POST",
					.path = "/v1/agent",
					.json = body,
					.accept = "text/event-stream",
					.body_fd = -1,
					.on_data = lms_sse_on_data,
					.userdata = &sse,
					.cancel = cancelled};
	struct lms_client_response resp;
	_cleanup_error_ struct lms_error *err = NULL;
	int r = lms_client_call(ch->c, &rq, &resp, &err);
	json_decref(body);
	enum outcome o = RUN_FAILED;
	if (r < 0 && err->kind == LMS_ERR_CANCELLED) {
		newline(ch);
		printf("%s[interrupted: the command was stopped]%s\n", paint(ch, YELLOW), paint(ch, RESET));
		ch->at_line_start = true;
		if (ch->text.len > 0) /* the model's words of a step that asked for nothing yet */
			json_array_append_new(ch->seen, json_pack("{s:s, s:s%}", "role", "assistant", "content",
								  ch->text.data, ch->text.len));
		answer_unanswered(ch->seen, "interrupted by the user (Ctrl-C): the command was stopped. Wait for "
					    "the user's next message.");
		json_decref(ch->messages);
		ch->messages = json_incref(ch->seen);
		o = RUN_CUT;
	} else if (r == 0 && resp.status != 200) {
		lms_client_api_error(ch->c, &resp, "the agent", &err);
		lms_client_report(err);
	} else if (r < 0) {
		lms_client_report(err);
	} else if (ch->done != NULL) {
		o = RUN_DONE;
	} else {
		const char *msg = json_string_value(json_object_get(json_object_get(ch->failed, "error"), "message"));
		newline(ch);
		fprintf(stderr, "lm-sandbox: the agent: %s\n",
			msg ? msg : "the daemon's stream ended before the run did");
	}
	lms_client_response_clear(&resp);
	lms_sse_free(&sse);
	fflush(stdout);
	return o;
}

/* ---- input ---- */

/* A line from fd, without its newline; NULL at the end of input or on Ctrl-C. The wait wakes every
 * 100 ms to look at Ctrl-C: the signal may be taken by another thread (libcurl's resolver), and then no
 * read of this one is interrupted. */
static char *
read_line(int fd)
{
	struct lms_buf b = {0};
	for (;;) {
		char c;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int ready = interrupts > 0 ? 1 : poll(&p, 1, 100);
		if (ready == 0 || (ready < 0 && errno == EINTR && interrupts == 0))
			continue;
		ssize_t n = interrupts > 0 ? -1 : read(fd, &c, 1);
		if (n < 0 && errno == EINTR && interrupts == 0)
			continue;
		if (n <= 0 || interrupts > 0) {
			if (n == 0 && b.len > 0)
				break; /* a last line without a newline */
			lms_buf_clear(&b);
			return NULL;
		}
		if (c == '\n')
			break;
		if (b.len < MAX_LINE)
			lms_buf_append(&b, &c, 1);
	}
	lms_buf_append(&b, "", 1);
	return b.data;
}

/* y, n or a for one call; false when the user left (end of input, Ctrl-C). */
static bool
ask(struct chat *ch, const json_t *call, char *answer)
{
	json_t *fn = json_object_get(call, "function");
	show_call(ch, json_string_value(json_object_get(fn, "name")) ?: "",
		  json_string_value(json_object_get(fn, "arguments")));
	for (;;) {
		printf("%srun this? [y/n/a(lways)] %s", paint(ch, BOLD), paint(ch, RESET));
		fflush(stdout);
		_cleanup_free_ char *line = read_line(ch->ask_fd);
		if (line == NULL)
			return false;
		char c = line[strspn(line, " \t")];
		if (c == 'y' || c == 'Y' || c == 'n' || c == 'N' || c == 'a' || c == 'A') {
			*answer = (char)(c | 0x20);
			return true;
		}
	}
}

/* The calls of a run stopped for confirmation: asked about, the declined ones answered. false: leave. */
static bool
confirm_calls(struct chat *ch)
{
	json_t *last = json_array_get(ch->messages, json_array_size(ch->messages) - 1);
	size_t i;
	json_t *call;
	json_array_foreach(json_object_get(last, "tool_calls"), i, call)
	{
		const char *id = json_string_value(json_object_get(call, "id"));
		char answer = 'y';
		if (!ch->always && !ask(ch, call, &answer))
			return false;
		if (answer == 'a')
			ch->always = true;
		if (answer == 'n')
			json_array_append_new(
			    ch->messages,
			    json_pack("{s:s, s:s, s:O?, s:s}", "role", "tool", "tool_call_id", id ?: "", "name",
				      json_object_get(json_object_get(call, "function"), "name"), "content",
				      "The user declined to run this. Do not run it again; ask what they want instead, "
				      "or try another way."));
		else if (id != NULL)
			json_object_set_new(ch->approved, id, json_true());
	}
	return true;
}

/* The conversation of a finished run, without the daemon's system message (it adds its own each run). */
static void
take_messages(struct chat *ch)
{
	json_t *all = json_object_get(ch->done, "messages"), *kept = json_array();
	size_t i;
	json_t *m;
	json_array_foreach(all, i, m) if (strcmp(json_string_value(json_object_get(m, "role")) ?: "", "system") != 0)
	    json_array_append(kept, m);
	json_decref(ch->messages);
	ch->messages = kept;
}

/* One task: runs until the model answers; false when the user left. */
static bool
turn(struct chat *ch, const char *task)
{
	json_array_append_new(ch->messages, json_pack("{s:s, s:s}", "role", "user", "content", task));
	for (;;) {
		enum outcome o = run_once(ch);
		if (o == RUN_CUT) {
			bool again = interrupts < 2;
			interrupts = 0;
			return again;
		}
		if (o == RUN_FAILED)
			return true; /* said; the user may try again */
		take_messages(ch);
		const char *finish = json_string_value(json_object_get(ch->done, "finish_reason")) ?: "";
		if (strcmp(finish, "tool_calls") != 0) {
			newline(ch);
			if (strcmp(finish, "stop") != 0)
				printf("%s[the run ended: %s]%s\n", paint(ch, YELLOW), finish, paint(ch, RESET));
			ch->at_line_start = true;
			return true;
		}
		if (!confirm_calls(ch))
			return false;
	}
}

/* --model, else $LM_SANDBOX_MODEL, else the first model the daemon lists; NULL (said) when there is none. */
static char *
pick_model(struct chat *ch)
{
	const char *given = json_string_value(json_object_get(ch->a->body, "model"));
	if (given == NULL)
		given = getenv("LM_SANDBOX_MODEL");
	if (given != NULL && given[0] != '\0')
		return xstrdup(given);
	struct lms_client_request rq = {.method = "GET", .path = "/v1/models", .body_fd = -1};
	struct lms_client_response resp;
	_cleanup_error_ struct lms_error *err = NULL;
	int r = lms_client_call(ch->c, &rq, &resp, &err);
	json_t *obj = NULL;
	char *model = NULL;
	if (r == 0 && resp.status != 200)
		r = lms_client_api_error(ch->c, &resp, "list the models", &err);
	else if (r == 0 && (obj = lms_client_json(&resp, &err)) == NULL)
		r = -1;
	const char *first = json_string_value(json_object_get(json_array_get(json_object_get(obj, "data"), 0), "id"));
	if (r == 0 && first == NULL)
		r = lms_error_set(&err, LMS_ERR_NOT_FOUND, 0,
				  "no model: the daemon's backends list none (is Ollama or llama-server running?); "
				  "give --model");
	if (r == 0)
		model = xstrdup(first);
	else
		lms_client_report(err);
	json_decref(obj);
	lms_client_response_clear(&resp);
	return model;
}

static int
make_sandbox(struct chat *ch)
{
	if (ch->a->id != NULL) {
		ch->sandbox_id = xstrdup(ch->a->id);
		return 0;
	}
	json_t *body = json_object();
	const char *keys[] = {"image", "network"};
	for (size_t i = 0; i < 2; i++)
		if (json_object_get(ch->a->body, keys[i]) != NULL)
			json_object_set(body, keys[i], json_object_get(ch->a->body, keys[i]));
	struct lms_client_request rq = {.method = "POST", .path = "/v1/sandboxes", .json = body, .body_fd = -1};
	struct lms_client_response resp;
	_cleanup_error_ struct lms_error *err = NULL;
	int r = lms_client_call(ch->c, &rq, &resp, &err);
	json_decref(body);
	json_t *obj = NULL;
	if (r == 0 && resp.status != 201)
		r = lms_client_api_error(ch->c, &resp, "create a sandbox", &err);
	else if (r == 0 && (obj = lms_client_json(&resp, &err)) == NULL)
		r = -1;
	if (r == 0 && !json_is_string(json_object_get(obj, "id")))
		r = lms_error_set(&err, LMS_ERR_INTERNAL, 0, "create a sandbox: the daemon's answer has no id");
	if (r == 0)
		ch->sandbox_id = xstrdup(json_string_value(json_object_get(obj, "id")));
	else
		lms_client_report(err);
	json_decref(obj);
	lms_client_response_clear(&resp);
	return r;
}

int
lms_client_chat(struct lms_client *c, const struct lms_client_args *a)
{
	const char *no_color = getenv("NO_COLOR");
	struct chat ch = {.c = c,
			  .a = a,
			  .messages = json_array(),
			  .approved = json_object(),
			  .always = a->yes,
			  .tty = isatty(STDOUT_FILENO),
			  .colour = isatty(STDOUT_FILENO) && (no_color == NULL || no_color[0] == '\0'),
			  .ask_fd = STDIN_FILENO,
			  .at_line_start = true};
	bool typed = isatty(STDIN_FILENO);
	_cleanup_fd_ int tty = -1;
	if (!typed && !a->yes) {
		tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
		if (tty < 0) {
			fprintf(stderr,
				"lm-sandbox: chat: standard input is not a terminal and there is no terminal to "
				"ask on (/dev/tty: %s): give --yes to run the model's commands without asking\n",
				strerror(errno));
			json_decref(ch.messages);
			json_decref(ch.approved);
			return LMS_CLIENT_EXIT_USAGE;
		}
		ch.ask_fd = tty;
	}
	struct sigaction sa = {.sa_handler = on_sigint}; /* no SA_RESTART: a read waiting for a line wakes up */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0)
		perror("lm-sandbox: chat: sigaction SIGINT");
	int status = 0;
	if ((ch.model = pick_model(&ch)) == NULL || make_sandbox(&ch) < 0) {
		status = LMS_CLIENT_EXIT_FAILED;
	} else if (!typed) { /* a piped task: all of standard input, one turn */
		struct lms_buf task = {0};
		_cleanup_error_ struct lms_error *err = NULL;
		if (lms_fd_read_to_end(STDIN_FILENO, MAX_TASK, &task, "standard input", &err) < 0) {
			lms_client_report(err);
			status = LMS_CLIENT_EXIT_USAGE;
		} else {
			lms_buf_append(&task, "", 1);
			if (task.data[strspn(task.data, " \t\r\n")] != '\0')
				(void)turn(&ch, task.data);
		}
		lms_buf_clear(&task);
	} else {
		printf("%sAsk for something; the model's commands run in sandbox %s. Ctrl-C stops a command, "
		       "Ctrl-D (or Ctrl-C here) leaves.%s\n",
		       paint(&ch, DIM), ch.sandbox_id, paint(&ch, RESET));
		for (;;) {
			printf("%s> %s", paint(&ch, BOLD), paint(&ch, RESET));
			fflush(stdout);
			_cleanup_free_ char *line = read_line(STDIN_FILENO);
			if (line == NULL)
				break;
			if (line[strspn(line, " \t\r")] == '\0')
				continue;
			if (!turn(&ch, line))
				break;
		}
		fputc('\n', stdout); /* after the prompt that got no line */
	}
	fflush(stdout);
	if (ch.sandbox_id != NULL)
		fprintf(stderr,
			"sandbox %s kept: look inside with `lm-sandbox sandbox exec %s -- ls -la /work`, remove "
			"it with `lm-sandbox sandbox rm %s`\n",
			ch.sandbox_id, ch.sandbox_id, ch.sandbox_id);
	free(ch.sandbox_id);
	free(ch.model);
	json_decref(ch.messages);
	json_decref(ch.seen);
	json_decref(ch.approved);
	json_decref(ch.done);
	json_decref(ch.failed);
	lms_buf_clear(&ch.text);
	return status;
}
