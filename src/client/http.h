#pragma once
/*
 * The client's HTTP calls to the daemon, over libcurl (linked: this binary is the client and nothing else).
 * One call is one request; a body goes out from memory or streams from a descriptor, and an answer comes
 * back whole (bounded) or streams to a callback as it arrives. A daemon that cannot be reached, a refused
 * token and a gone sandbox become messages that say what to do (lms_client_api_error).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/error.h"

/* Where the daemon is and how to prove who we are. */
struct lms_client {
	char *url;		/* "http://127.0.0.1:8000", no trailing slash */
	char *token;		/* NULL: none */
	const char *token_from; /* "LM_SANDBOX_API_TOKEN" or the --token-file path, for messages */
	void *curl;		/* CURL *, made on the first call and reused (one connection kept alive) */
};

/* The url (NULL: LM_SANDBOX_URL, else http://127.0.0.1:8000) and the token (token_file, else
 * LM_SANDBOX_API_TOKEN, else none). */
int lms_client_init(struct lms_client *c, const char *url, const char *token_file, struct lms_error **err);
void lms_client_free(struct lms_client *c);

struct lms_client_response {
	long status;
	char *content_type;	/* without parameters, lower case; NULL when the daemon sent none */
	int64_t content_length; /* -1 when not known */
	struct lms_buf body;	/* the body when no on_data was given, or always for an error status */
	bool stopped;		/* on_data returned 1 */
};

/* Bytes of a 2xx answer as they arrive (resp has its status and headers). 0: more; 1: stop here without an
 * error; -1 with *err: fail the call. */
typedef int (*lms_client_data_fn)(void *userdata, const struct lms_client_response *resp, const char *data, size_t len,
				  struct lms_error **err);

/* Asked about once a second, and whenever bytes move, while the call runs: true to give it up at once (the
 * connection is closed, which cancels what the daemon was doing for it; the call fails with
 * LMS_ERR_CANCELLED). */
typedef bool (*lms_client_cancel_fn)(void *userdata);

struct lms_client_request {
	const char *method; /* GET, POST, PUT, DELETE */
	const char *path;   /* "/v1/sandboxes?x=y", already escaped */
	const char *content_type;
	const char *accept;
	const char *body; /* in memory, body_len bytes; or: */
	size_t body_len;
	int body_fd;	   /* streamed from this descriptor when >= 0 */
	int64_t body_size; /* its length, -1 when not known (sent chunked) */
	json_t *json;	   /* or this, as application/json */
	lms_client_data_fn on_data;
	void *userdata;
	size_t max_body;	    /* bound of a body kept in resp->body (0: 16 MiB) */
	const char *const *headers; /* more "Name: value" lines, NULL-terminated; NULL: none */
	lms_client_cancel_fn cancel;
	void *cancel_data;
};

/* Sends the request and receives the answer. 0 once an answer came (whatever its status: see resp), -1 when
 * none could be had (the daemon is not running, the connection broke, a callback failed). resp is filled
 * (then lms_client_response_clear) either way. */
int lms_client_call(struct lms_client *c, const struct lms_client_request *rq, struct lms_client_response *resp,
		    struct lms_error **err);
void lms_client_response_clear(struct lms_client_response *resp);

/* The answer's JSON body, or NULL with *err when it is not JSON. */
json_t *lms_client_json(const struct lms_client_response *resp, struct lms_error **err);

/* The error of a non-2xx answer, as a message for a person: the daemon's message and what to do about it
 * (`what` is the call: "create a sandbox", "sandbox sbx_1"). Always returns -1. */
int lms_client_api_error(const struct lms_client *c, const struct lms_client_response *resp, const char *what,
			 struct lms_error **err);

/* The API's error code of a non-2xx answer ("sandbox_not_found"), or "" when it has none. */
const char *lms_client_error_code(const struct lms_client_response *resp, char *buf, size_t size);

/* `s` percent-escaped for a URL: each byte but unreserved ones (and '/' when keep_slash). Caller frees. */
char *lms_client_escape(const char *s, bool keep_slash);
