#pragma once
/*
 * One chat completion as a plain C call: the OpenAI chat.completions request in (JSON), the backend's
 * chat.completion object out (JSON). It resolves "model" to its backend (lms_backends_resolve), rewrites
 * it to the backend's own name, posts the request and parses the answer; with "stream": true each
 * Server-Sent Events chunk is handed to a callback as it arrives and the chunks are assembled into one
 * chat.completion at the end, so that a caller can show tokens as they come and still get one answer.
 *
 * The HTTP routes (/v1/chat/completions, /ollama/, /llama-cpp/) use it, and so will the agent loop and the
 * MCP server, which call it without HTTP. It knows nothing of HTTP requests: failures are error kinds
 * (core/error.h), and a backend's own error answer is data (its status and body in the result).
 * Thread-safe: each call uses only its own transfer.
 */
#include <jansson.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"
#include "llm/backend.h"
#include "llm/ollama.h"

/* Called with each `data:` chunk of a streamed answer (a parsed JSON object, borrowed) as it arrives.
 * Returns 0 to go on; < 0 stops the call, which then fails with LMS_ERR_CANCELLED. */
typedef int (*lms_chat_chunk_fn)(json_t *chunk, void *userdata);

struct lms_chat_options {
	lms_chat_chunk_fn on_chunk; /* NULL: the chunks are only assembled */
	void *userdata;
	/* Watched while the backend is waited for: when it becomes readable with nothing to read (the peer of
	 * a socket closed: the HTTP client's socket today) or at all (a pipe, an eventfd), the backend request
	 * is aborted and the call fails with LMS_ERR_CANCELLED. -1 for none. */
	int cancel_fd;
	/* For an Ollama backend: call its own /api/chat with options.num_ctx large enough for the request
	 * (llm/ollama.h), the answer assembled as a streamed OpenAI one; res->context says what was asked. The
	 * request must ask for a stream. Other backends ignore it. */
	bool ollama_context;
};

struct lms_chat_result {
	struct lms_backend *backend; /* the model's backend, once resolved (owned by the lms_backends) */
	char *model;		     /* the model as the backend knows it */
	long status;		     /* the backend's HTTP status; 0 when it sent none */
	double seconds;		     /* from the request to the backend's headers (or to its failure) */
	char *content_type;	     /* of the backend's answer */
	json_t *answer;		     /* on success: the chat.completion object (assembled when streamed) */
	struct lms_buf body;	     /* on LMS_ERR_BACKEND: the backend's error answer as it sent it */
	bool native;		     /* Ollama's /api/chat was called (ollama_context) */
	/* waiting on the backend: from the request to its answer's end, less the time spent here taking the
	 * answer's bytes apart (lms_chat only) */
	double backend_ms;
	struct lms_ollama_context context; /* then: the context asked for and the model's limit */
};

/*
 * One chat completion. `request` (an object, not changed) is sent with "model" rewritten. 0 with
 * res->answer, or -1 with *err: LMS_ERR_INVALID (no "model" string), LMS_ERR_NOT_FOUND (no backend serves
 * the model), LMS_ERR_UNREACHABLE, LMS_ERR_TIMEOUT, LMS_ERR_BAD_GATEWAY (dropped, not JSON, a stream cut
 * short), LMS_ERR_BACKEND (the backend answered an error status: res->status and res->body hold it),
 * LMS_ERR_CANCELLED, LMS_ERR_INTERNAL (libcurl cannot be loaded). `opts` may be NULL. The caller clears
 * `res` (zeroed before the call) with lms_chat_result_clear in every case.
 */
int lms_chat(struct lms_backends *bs, json_t *request, const struct lms_chat_options *opts, struct lms_chat_result *res,
	     struct lms_error **err);

/*
 * lms_chat in two halves, for a caller that relays the backend's bytes itself (/v1/chat/completions:
 * its clients see the backend's chunks unchanged). lms_chat_open resolves, posts and waits for the
 * backend's headers: 0 with res->status and res->content_type set and *relay (the caller frees it) ready
 * to be read; -1 with *err as lms_chat. lms_chat_finish reads the rest as lms_chat does.
 */
int lms_chat_open(struct lms_backends *bs, json_t *request, const struct lms_chat_options *opts,
		  struct lms_chat_result *res, struct lms_relay **relay, struct lms_error **err);
int lms_chat_finish(struct lms_relay *relay, const struct lms_chat_options *opts, struct lms_chat_result *res,
		    struct lms_error **err);

void lms_chat_result_clear(struct lms_chat_result *res);

/*
 * The assembly of a streamed answer, on its own for the unit tests and the fuzz target: bytes of a
 * text/event-stream in, each chunk to `on_chunk`, one chat.completion out. The "delta"s of each choice
 * are merged into its "message" (strings appended, tool calls merged by their "index"), the last
 * "finish_reason" and "usage" kept. Failures: LMS_ERR_BAD_GATEWAY (an event that is not a JSON object,
 * an error event, a stream that ends before `data: [DONE]` or a finish_reason), LMS_ERR_CANCELLED (the
 * callback stopped it).
 */
struct lms_chat_stream;
struct lms_chat_stream *lms_chat_stream_new(lms_chat_chunk_fn on_chunk, void *userdata);
int lms_chat_stream_feed(struct lms_chat_stream *s, const char *data, size_t len, struct lms_error **err);
/* The assembled chat.completion (a new reference), or NULL with *err. */
json_t *lms_chat_stream_finish(struct lms_chat_stream *s, struct lms_error **err);
void lms_chat_stream_free(struct lms_chat_stream *s);
