#pragma once
/*
 * The model servers behind the gateway: Ollama, llama.cpp's llama-server and any OpenAI-compatible
 * server, each reached over libcurl. Model lists are gathered from every backend's GET /v1/models and
 * cached briefly, so that a burst of requests does not hammer the backends. Thread-safe.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/error.h"

enum lms_backend_kind { LMS_BACKEND_OLLAMA, LMS_BACKEND_LLAMACPP, LMS_BACKEND_OPENAI };

struct lms_backend {
	char *name; /* "ollama", "llamacpp", or the NAME of --backend NAME=URL */
	enum lms_backend_kind kind;
	char *url; /* without a trailing slash */
	/* cache, under lms_backends.lock */
	bool reachable;
	char *error;   /* why the last model list failed (NULL when it did not), for /healthz and the log */
	char **models; /* NULL-terminated ids as the backend names them */
	double fetched_ms;
	json_t *context_limits; /* Ollama: model -> its context length (llm/ollama.c), under the lock */
};

struct lms_backends {
	struct lms_backend *v;
	size_t n;
	uint64_t connect_timeout_ms;
	uint64_t timeout_ms;		/* silence allowed between two bytes */
	uint64_t first_byte_timeout_ms; /* to the response's headers */
	uint64_t cache_ms;
	pthread_mutex_t lock;
};

/* Builds the list: ollama, llamacpp, then `extra` ("NAME=URL,NAME=URL", may be NULL). */
int lms_backends_init(struct lms_backends *bs, const char *ollama_url, const char *llamacpp_url, const char *extra,
		      struct lms_error **err);
void lms_backends_free(struct lms_backends *bs);

/* Refreshes the model lists older than the cache time (reachability too). */
void lms_backends_refresh(struct lms_backends *bs);

/* {"object": "list", "data": [{"id": "backend/model", "object": "model", "owned_by": "backend"}, ...]} */
json_t *lms_backends_models_json(struct lms_backends *bs);

/* {"ollama": {"url", "reachable"[, "error"]}, ...} */
json_t *lms_backends_health_json(struct lms_backends *bs);

/* Finds the backend of `model` ("backend/name", or a bare name looked up in the model lists in
 * configured order). Returns the backend and sets *bare (caller frees) to the name the backend knows,
 * or NULL (LMS_ERR_NOT_FOUND). For an Ollama backend a name without a tag means NAME:latest, as Ollama
 * itself reads it: "llama3.2" matches "llama3.2:latest", and "ollama/llama3.2" is sent as that. */
struct lms_backend *lms_backends_resolve(struct lms_backends *bs, const char *model, char **bare,
					 struct lms_error **err);

/* The backend of a kind (the seed endpoints), or NULL. */
struct lms_backend *lms_backends_of_kind(struct lms_backends *bs, enum lms_backend_kind kind);

/* The first model a backend lists, or NULL (caller frees). */
char *lms_backend_first_model(struct lms_backends *bs, struct lms_backend *b);

/*
 * One request to a backend, its response read as it arrives (llm/relay.c). lms_relay_start sends it;
 * lms_relay_headers waits for the status line and headers; lms_relay_read returns body bytes as they
 * come (0 at the end). While waiting, client_fd is watched (the HTTP client's socket, or -1): when it
 * becomes readable with nothing to read (the peer closed a socket; any other descriptor: a byte written
 * to a pipe, an eventfd signalled), the transfer is aborted and the call fails with LMS_ERR_CANCELLED.
 *
 * Failures are error kinds (core/error.h), never HTTP statuses: LMS_ERR_UNREACHABLE, LMS_ERR_TIMEOUT,
 * LMS_ERR_BAD_GATEWAY, LMS_ERR_CANCELLED. A backend's own 4xx or 5xx is not a failure here: it is the
 * status and body the backend sent.
 */
struct lms_relay;
enum { LMS_RELAY_CLIENT_GONE = -2 };

/* Sends the request; `body` (NULL for none) is copied. */
int lms_relay_start(struct lms_backends *bs, struct lms_backend *b, const char *method, const char *path,
		    const char *body, size_t len, int client_fd, struct lms_relay **out, struct lms_error **err);
/* 0 with the backend's *status and *content_type (owned by the relay) set; -1 with *err. */
int lms_relay_headers(struct lms_relay *r, long *status, const char **content_type, struct lms_error **err);
/* Body bytes as they arrive: > 0, 0 at the end (lms_relay_end then says how it ended), or
 * LMS_RELAY_CLIENT_GONE. */
ssize_t lms_relay_read(struct lms_relay *r, char *buf, size_t max);
/* After lms_relay_read returned 0: 0 when the transfer completed, -1 with *err when it was cut short. */
int lms_relay_end(struct lms_relay *r, struct lms_error **err);
/* Reads the whole body (bounded), with the backend's *status. -1 with *err as lms_relay_headers. */
int lms_relay_body(struct lms_relay *r, long *status, struct lms_buf *out, struct lms_error **err);
void lms_relay_free(struct lms_relay *r);
/* Seconds from the request to the response's headers (or to now when there are none). */
double lms_relay_seconds(const struct lms_relay *r);
/* Changes the silence allowed (model lists and health probes use a short one). */
void lms_relay_set_timeout(struct lms_relay *r, uint64_t ms);
/* Set when the server stops: every transfer ends at its next wake-up (within a second). */
extern atomic_bool lms_relay_stopping;
