#pragma once
/*
 * `lm-sandbox serve`: HTTP on libmicrohttpd's epoll thread; a request's handler, once its body is in, on a
 * thread of its own while its connection is suspended (workers.c, pump.c). Files:
 *   daemon.c    the daemon's life: start, signals, shutdown
 *   listener.c  the listening socket, the loopback check (listener.h)
 *   request.c   libmicrohttpd's callbacks: request context, X-Request-Id, body, the per-request log line
 *   auth.c      the token check (auth.h)
 *   reply.c     replies, API.md's one error shape, Server-Sent Events, error kind -> status
 *   jobs.c      the registry of running jobs that SIGTERM cancels
 *   conns.c     the header deadline: connections that do not send a request's headers in time are closed
 *   workers.c   the threads that run handlers and streams' producers off libmicrohttpd's thread
 *   pump.c      a streamed response's bounded buffer between its producer and libmicrohttpd
 *   router.c    the route table and how a request finds its route
 *   openapi.c   /openapi.json, made from the route table
 *   routes-*.c  one file per group of routes; metrics.c, settings.c
 *   mcp.c       POST /mcp: JSON-RPC and MCP's Streamable HTTP transport; mcp-tools.c its tools
 * Sandboxes run through the spawner (sandbox/spawner.h), forked before the first thread.
 */
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/id.h"
#include "api/exec-request.h"
#include "core/error.h"
#include "sandbox/spawner.h"
#include "server/settings.h"
#include "server/metrics.h"

struct lms_backends;
struct lms_conns;
struct lms_workers;
struct lms_pump;
struct lms_cluster;
struct lms_forward;

struct lms_request;

typedef enum MHD_Result (*lms_handler_fn)(struct lms_request *req);

/* A route whose body is not held in memory but handed over as it comes (the files API's uploads): no
 * --max-body-bytes, no share of --max-body-bytes-in-flight; the route bounds it. The handler runs at its
 * end as for any route. */
struct lms_body_sink {
	/* The headers are in (route, token checked): may reply at once (an error; the body is dropped). */
	enum MHD_Result (*begin)(struct lms_request *req);
	/* Each piece of the body, in order; none once a reply is queued. */
	void (*chunk)(struct lms_request *req, const char *data, size_t len);
	/* The request is over, whatever happened (a client gone mid-body included): frees req->sink_state. */
	void (*end)(struct lms_request *req);
};

struct lms_route {
	const char *method; /* "GET", "POST" */
	const char *path;   /* exact path, or a prefix ending in "/{path}" */
	lms_handler_fn handler;
	bool auth;		     /* needs the token when one is configured */
	bool json_body;		     /* takes a JSON body (415 for other content types) */
	bool form_ok;		     /* also takes a JSON body sent as application/x-www-form-urlencoded (curl -d) */
	const char *summary;	     /* for /openapi.json */
	const char *request_schema;  /* component name of the body, or NULL */
	const char *response_schema; /* component name of the 200 body, or NULL */
	const struct lms_body_sink *sink; /* the body streams to it (NULL: held, as JSON is) */
};

struct lms_job_node {
	struct lms_job *job;
	struct lms_job_node *next;
};

struct lms_server {
	struct lms_config *cfg;
	struct MHD_Daemon *mhd;
	struct lms_spawner *spawner;
	struct lms_backends *backends;
	struct lms_sandboxes *sandboxes;
	struct lms_procs *procs; /* the sandboxes' background processes (processes.h) */
	struct lms_conns *conns;
	struct lms_workers *workers;
	const struct lms_cluster *cluster; /* this node and its peers (cluster.h) */
	struct lms_metrics metrics;
	atomic_int active;		 /* executions running now */
	atomic_int relays;		 /* port relays open now (routes-ports.c) */
	atomic_uint_fast64_t body_bytes; /* reserved by the request bodies held now (request.c) */
	atomic_bool stopping;
	bool have_bash;
	pthread_mutex_t jobs_lock; /* guards jobs: SIGTERM cancels every running job */
	struct lms_job_node *jobs;
	char *listen_url;
};

struct lms_request {
	struct lms_server *server;
	struct MHD_Connection *conn;
	const struct lms_route *route;
	char *method;
	char *path;
	char id[64];
	double start_ms;
	unsigned status; /* of the reply, for the log and the metrics */
	struct lms_buf body;
	uint64_t body_reserved; /* of server->body_bytes */
	bool body_too_large;
	bool body_refused; /* past --max-body-bytes-in-flight: dropped, 503 */
	bool replied;
	bool first_call_done;
	void *sink_state; /* the route's sink's */
	/* workers.c: the handler runs on a thread of its own, where lms_reply() keeps the answer in pending
	 * (and its status in status) for libmicrohttpd's thread to queue once the connection is resumed. */
	bool dispatched;
	bool on_worker;
	struct MHD_Response *pending;
	enum MHD_Result result; /* the handler's */
	struct lms_pump *pump;	/* the last stream response made (reply.c), to produce if it is the answer */
	const struct MHD_Response *pump_response;
	struct lms_forward *forward; /* a request for another node's sandbox, on its way there (forward.c) */
	bool forwarded;		     /* it was another node's: the route's own sink never began */
};

/* daemon.c: serves until SIGTERM, SIGINT or SIGHUP; < 0 when it cannot start. */
int lms_server_run(struct lms_config *cfg, struct lms_error **err);
/* --idle-timeout-ms in libmicrohttpd's unit, whole seconds (rounded up). */
unsigned lms_server_idle_timeout_s(const struct lms_server *s);

/* request.c: libmicrohttpd's access handler and completion callback (cls: the struct lms_server). */
enum MHD_Result lms_request_on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				       const char *version, const char *upload_data, size_t *upload_size,
				       void **con_cls);
void lms_request_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			      enum MHD_RequestTerminationCode toe);
/* The body as a JSON object (new reference), or NULL with *reply the 400 `invalid_json` that says why. */
json_t *lms_request_json_object(struct lms_request *req, enum MHD_Result *reply);
/* The client's socket, to watch for a hang-up; -1 if unknown. */
int lms_request_socket(const struct lms_request *req);
/* Frees the request's body and gives its share of --max-body-bytes-in-flight back; a handler calls it
 * once the body is parsed (the request does it after the handler too). */
void lms_request_body_done(struct lms_request *req);

/* reply.c. Every reply carries X-Request-Id; each returns what the handler returns to libmicrohttpd. */
struct lms_header {
	const char *name, *value;
};
enum MHD_Result lms_reply(struct lms_request *req, unsigned status, struct MHD_Response *resp);
/* Takes the reference to body; adds a newline. */
enum MHD_Result lms_reply_json(struct lms_request *req, unsigned status, json_t *body);
/* The same with extra headers (an array ending with {NULL, NULL}, or NULL). */
enum MHD_Result lms_reply_json_headers(struct lms_request *req, unsigned status, json_t *body,
				       const struct lms_header *headers);
/* API.md's error shape, {"error": {"message", "type", "code"}}, the message from fmt, with extra headers
 * (Allow, Retry-After): an array ending with {NULL, NULL}, or NULL. */
__attribute__((format(printf, 6, 7))) enum MHD_Result lms_reply_error_headers(struct lms_request *req, unsigned status,
									      const struct lms_header *headers,
									      const char *type, const char *code,
									      const char *fmt, ...);
/* The same without extra headers: lms_reply_error(req, status, type, code, fmt, ...). */
#define lms_reply_error(req, status, type, ...) lms_reply_error_headers((req), (status), NULL, (type), __VA_ARGS__)
enum MHD_Result lms_reply_lms_error(struct lms_request *req, const struct lms_error *e);
/* A response read from `reader` as its bytes come (cls freed by free_cls). libmicrohttpd's idle timeout
 * runs only while it waits for the client to take bytes, never while the reader waits for a command or
 * a backend: a stream that is silent for a while is not cut. */
struct MHD_Response *lms_reply_stream_response(struct lms_request *req, size_t block_size,
					       MHD_ContentReaderCallback reader, void *cls,
					       MHD_ContentReaderFreeCallback free_cls);
/* The same, of a known size (MHD_SIZE_UNKNOWN: unknown). */
struct MHD_Response *lms_reply_stream_response_size(struct lms_request *req, uint64_t size, size_t block_size,
						    MHD_ContentReaderCallback reader, void *cls,
						    MHD_ContentReaderFreeCallback free_cls);
/* 200 with Server-Sent Events read from `reader` as they come (cls freed by free_cls). */
enum MHD_Result lms_reply_event_stream(struct lms_request *req, MHD_ContentReaderCallback reader, void *cls,
				       MHD_ContentReaderFreeCallback free_cls);
/* Appends one Server-Sent Event `event` with data's JSON (takes the reference to data). */
void lms_sse_event(struct lms_buf *out, const char *event, json_t *data);
/* The same with extra headers (an array ending with {NULL, NULL}, or NULL). */
enum MHD_Result lms_reply_event_stream_headers(struct lms_request *req, MHD_ContentReaderCallback reader, void *cls,
					       MHD_ContentReaderFreeCallback free_cls,
					       const struct lms_header *headers);
/* The HTTP status of an error's kind. */
unsigned lms_error_status(const struct lms_error *e);

/* jobs.c: registers a running job so that shutdown can cancel it (a job tracked once shutdown has begun
 * is cancelled at once). */
void lms_server_track_job(struct lms_server *s, struct lms_job *job);
void lms_server_untrack_job(struct lms_server *s, struct lms_job *job);
void lms_server_cancel_jobs(struct lms_server *s);

/* conns.c: the header deadline (--header-timeout-ms) and the thread that enforces it. */
struct lms_conns *lms_conns_new(uint64_t header_timeout_ms, struct lms_error **err);
void lms_conns_free(struct lms_conns *c); /* after MHD_stop_daemon */
/* MHD_OPTION_NOTIFY_CONNECTION's callback (cls: the struct lms_conns): a new connection's deadline starts. */
void lms_conns_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			     enum MHD_ConnectionNotificationCode code);
/* A request's headers are in: no deadline until it is done. */
void lms_conns_headers_done(struct MHD_Connection *conn);
/* A request is done: the next one's headers have the timeout again. */
void lms_conns_request_done(struct lms_conns *c, struct MHD_Connection *conn);

/* workers.c (the struct lms_server's workers). */
struct lms_workers *lms_workers_new(void);
void lms_workers_free(struct lms_workers *w);
/* A complete request: suspends its connection and runs its handler on a new thread; called again once
 * that thread resumed it, queues the answer. */
enum MHD_Result lms_workers_dispatch(struct lms_workers *w, struct lms_request *req);
/* No more dispatches; the sockets of requests being served are shut down, streams' producers stop
 * waiting for their clients; returns when every thread has ended (no connection is suspended then). */
void lms_workers_stop(struct lms_workers *w);

/* pump.c: a response read by reader (on a producer thread) through a buffer of two blocks; *out its pump. */
struct MHD_Response *lms_pump_response(struct MHD_Connection *conn, int client_fd, uint64_t size, size_t block_size,
				       MHD_ContentReaderCallback reader, void *cls,
				       MHD_ContentReaderFreeCallback free_cls, struct lms_pump **out);
/* The producer's share, taken before the connection is resumed; lms_pump_run gives it back. */
void lms_pump_hold(struct lms_pump *p);
/* The producer: calls the reader until the stream ends or the response is let go. */
void lms_pump_run(struct lms_pump *p);
/* The daemon stops: the producer waits no more for room, and a reader that waits is woken. */
void lms_pump_stop(struct lms_pump *p);

/* router.c */
extern const struct lms_route lms_routes[];
extern const size_t lms_n_routes;
/* An exact path ("{id}" and "{port}" match one non-empty segment), a route ending in "/{path}" for any
 * non-empty rest without "..", one ending in "/{file_path}" for any rest (the files API: its own
 * resolution), or one ending in "/{port_path}" for any rest or none (the port relay: the sandbox's). */
bool lms_route_matches(const struct lms_route *r, const char *path);
/* The route of method and path, or NULL; allow receives the methods of every route of that path,
 * "GET, POST" (empty: no route has it, a 404; else a 405 with Allow). */
const struct lms_route *lms_router_find(const char *method, const char *path, char *allow, size_t allow_size);

/* forward.c: a request for another node's sandbox (its id names a peer, cluster.h) goes there as it comes:
 * headers, then the body piece by piece, then the peer's answer streamed back. Called once the route and
 * token are checked: *taken false, it is this node's (MHD_YES); else it is answered here: forwarded
 * (req->forward set), or an error queued (404 for a node not in the cluster, 503 for a peer that cannot
 * be reached, 508 for a request that came through a peer already). */
enum MHD_Result lms_forward_begin(struct lms_request *req, bool *taken);
void lms_forward_chunk(struct lms_request *req, const char *data, size_t len);
/* The body is all there: the peer's answer becomes the reply. */
enum MHD_Result lms_forward_reply(struct lms_request *req);
/* The request is over, whatever happened: frees req->forward. */
void lms_forward_end(struct lms_request *req);
/* Percent-encodes s (n bytes) onto out, keeping `keep` as they are besides the unreserved characters. */
void lms_url_encode(struct lms_buf *out, const char *s, size_t n, const char *keep);

/* openapi.c */
json_t *lms_openapi_document(void);

struct lms_sandbox_entry;
/* routes-sandboxes.c: the {id} of a /v1/sandboxes/{id}... path; the 404 of a sandbox that is not there
 * (with its reason when known). */
void lms_sandbox_path_id(const struct lms_request *req, char id[LMS_SANDBOX_ID_SIZE]);
enum MHD_Result lms_reply_sandbox_not_found(struct lms_request *req, const struct lms_error *e, const char *reason);
/* Holds the path's sandbox (release it with lms_sandboxes_release), or replies (the typed 404, or why its
 * PID 1 could not be made again) and returns NULL. */
struct lms_sandbox_entry *lms_sandbox_hold(struct lms_request *req, enum MHD_Result *reply);

/* routes-files.c: GET, PUT, DELETE /v1/sandboxes/{id}/files/{file_path} */
extern const struct lms_body_sink lms_files_put_sink;
extern const struct lms_body_sink lms_image_put_sink;
enum MHD_Result lms_route_files_get(struct lms_request *req);
enum MHD_Result lms_route_files_put(struct lms_request *req);
enum MHD_Result lms_route_files_delete(struct lms_request *req);

/* routes-ports.c: GET|HEAD|POST|PUT|PATCH|DELETE /v1/sandboxes/{id}/ports/{port}/{port_path}, the body
 * streamed to the sandbox's server as it comes. */
extern const struct lms_body_sink lms_ports_sink;
enum MHD_Result lms_route_ports(struct lms_request *req);
/* The daemon's stop: waits for the WebSocket bridges, which end within a second of `stopping`. */
void lms_ports_wait_bridges(void);

/* routes-exec.c */
enum MHD_Result lms_route_exec(struct lms_request *req);
enum MHD_Result lms_route_run_bash(struct lms_request *req);
/* Where a command runs: a fresh one-shot sandbox ({0}), or persistent sandbox `sandbox`, held as entry of
 * sbs and released when the reply ends. */
struct lms_sandboxes;
struct lms_sandbox_entry;
struct lms_exec_target {
	char id[LMS_SANDBOX_ID_SIZE]; /* the persistent sandbox's, for its audit log; "" for a one-shot sandbox */
	uint64_t sandbox;
	struct lms_sandboxes *sbs;
	struct lms_sandbox_entry *entry;
};
/* This server's rules for a command's request: its defaults, ceilings, network and shell. */
struct lms_exec_policy lms_server_exec_policy(const struct lms_server *s);
/* Runs xr there and replies: its JSON result, or its events with stream: true. Takes xr. */
enum MHD_Result lms_exec_respond(struct lms_request *req, struct lms_exec_request *xr, const struct lms_exec_target *t);

/* routes-images.c */
enum MHD_Result lms_route_image_list(struct lms_request *req);
enum MHD_Result lms_route_image_delete(struct lms_request *req);
enum MHD_Result lms_route_image_pull(struct lms_request *req);
enum MHD_Result lms_route_image_put(struct lms_request *req);

/* routes-sandboxes.c */
enum MHD_Result lms_route_sandbox_create(struct lms_request *req);
enum MHD_Result lms_route_sandbox_list(struct lms_request *req);
enum MHD_Result lms_route_sandbox_get(struct lms_request *req);
enum MHD_Result lms_route_sandbox_delete(struct lms_request *req);
enum MHD_Result lms_route_sandbox_fork(struct lms_request *req);
enum MHD_Result lms_route_sandbox_history(struct lms_request *req);
/* routes-processes.c */
struct lms_sandbox_entry;
struct lms_exec_request;
/* An exec with "background": true, its sandbox held by the caller (released here). */
enum MHD_Result lms_route_sandbox_start(struct lms_request *req, struct lms_sandbox_entry *entry, uint64_t key,
					const struct lms_exec_request *xr);
enum MHD_Result lms_route_process_list(struct lms_request *req);
enum MHD_Result lms_route_process_get(struct lms_request *req);
enum MHD_Result lms_route_process_output(struct lms_request *req);
enum MHD_Result lms_route_process_signal(struct lms_request *req);
enum MHD_Result lms_route_process_stdin(struct lms_request *req);
enum MHD_Result lms_route_sandbox_exec(struct lms_request *req);
struct lms_sandbox_settings;
/* The services under those routes, for callers inside the daemon (mcp-tools.c). A sandbox made from a
 * creation body (an object): its JSON object, or NULL with the error the route would answer. */
json_t *lms_sandbox_create_json(struct lms_server *s, const json_t *root, struct lms_error **err);
/* A command's exec body (len bytes of JSON) for sandbox base: its limits within the sandbox's, its
 * environment added to the sandbox's, the sandbox's network, GPUs and image. */
struct lms_exec_request *lms_sandbox_command_parse(struct lms_server *s, const struct lms_sandbox_settings *base,
						   const char *body, size_t len, struct lms_error **err);

/* mcp.c: POST /mcp (the MCP server over Streamable HTTP) and its CORS preflight. */
enum MHD_Result lms_route_mcp(struct lms_request *req);
enum MHD_Result lms_route_mcp_preflight(struct lms_request *req);

/* routes-agent.c: POST /v1/agent (the agent loop, agent.h). */
enum MHD_Result lms_route_agent(struct lms_request *req);

/* routes-llm.c */
enum MHD_Result lms_route_models(struct lms_request *req);
enum MHD_Result lms_route_chat_completions(struct lms_request *req);
enum MHD_Result lms_route_ollama(struct lms_request *req);
enum MHD_Result lms_route_llamacpp(struct lms_request *req);
enum MHD_Result lms_route_ollama_api(struct lms_request *req);

/* routes-ops.c */
enum MHD_Result lms_route_healthz(struct lms_request *req);
enum MHD_Result lms_route_metrics(struct lms_request *req);
enum MHD_Result lms_route_openapi(struct lms_request *req);
enum MHD_Result lms_route_docs(struct lms_request *req);
