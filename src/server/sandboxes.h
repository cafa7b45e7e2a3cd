#pragma once
/*
 * The daemon's persistent sandboxes (API.md, "Persistent sandboxes"): a registry of the sandboxes it
 * made through the spawner, by their public id ("sbx_" and 16 hex digits), with their settings, their
 * idle time to live, and a short memory of those that are gone and why (deleted, expired, failed), so
 * that a client can tell gone from transient. No HTTP in here: routes-sandboxes.c is the HTTP side.
 *
 * Thread-safe. A sandbox in use (an exec running in it) is held by a reference and never expires; a
 * DELETE cancels what runs in it.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "sandbox/spawner.h"

struct lms_server;
struct lms_sandboxes;
struct lms_sandbox_entry;

/* What a sandbox is made with: limits (the whole sandbox's), network, gpu, env and image are parsed by
 * the one exec parser (api/exec-request.c) from the creation body. */
struct lms_sandbox_settings {
	struct lms_sandbox_spec spec; /* argv unused; env: the sandbox's, added to every command's */
	uint64_t ttl_s;
	json_t *metadata; /* an object of strings; the settings keep a reference */
};

struct lms_store;
/* store: where sandboxes are kept across restarts (sandbox-store.h), or NULL. */
int lms_sandboxes_new(struct lms_server *s, struct lms_store *store, uint64_t max, uint64_t max_ttl_s,
		      struct lms_sandboxes **out, struct lms_error **err);
/* At start, before any request: every whole sandbox of the store made again (new PID 1s on their files;
 * their processes did not survive), the rest removed. Returns how many. */
int lms_sandboxes_restore(struct lms_sandboxes *sbs);
/* Stops the expiry thread; the sandboxes end with the spawner. NULL is a no-op. */
void lms_sandboxes_free(struct lms_sandboxes *sbs);

/* Makes one (LMS_ERR_BUSY past --max-sandboxes) and returns its JSON object (new reference). */
json_t *lms_sandboxes_create(struct lms_sandboxes *sbs, const struct lms_sandbox_settings *set, struct lms_error **err);

/* A new sandbox with a copy of id's files at this moment (its processes are not copied), its settings,
 * and ttl_s and metadata when given (else id's). */
json_t *lms_sandboxes_fork(struct lms_sandboxes *sbs, const char *id, const uint64_t *ttl_s, const json_t *metadata,
			   const char **reason, struct lms_error **err);

/* Whether a persistent sandbox has `image` as its root (DELETE /v1/images/{name} is then 409). */
bool lms_sandboxes_use_image(struct lms_sandboxes *sbs, const char *image);
/* {"data": [...]} of those whose metadata has every (key, value) of filter (an object; NULL: all). */
json_t *lms_sandboxes_list(struct lms_sandboxes *sbs, const json_t *filter);

/* The sandbox's object, or NULL with LMS_ERR_NOT_FOUND; *reason is "deleted", "expired", "failed" or NULL. */
json_t *lms_sandboxes_get(struct lms_sandboxes *sbs, const char *id, const char **reason, struct lms_error **err);

/* Appends a tool call made in id to its audit log (history.h; `entry` taken). A sandbox gone meanwhile is no
 * error: the call ran, there is just no log left to keep it. */
void lms_sandboxes_record(struct lms_sandboxes *sbs, const char *id, json_t *entry);
/* {"data": [...]}: the last `limit` entries of id's audit log (0: all kept), oldest first; NULL with
 * LMS_ERR_NOT_FOUND (and *reason) when it does not exist. */
json_t *lms_sandboxes_history(struct lms_sandboxes *sbs, const char *id, size_t limit, const char **reason,
			      struct lms_error **err);

/* Ends it: what runs in it is killed, then every process, mount and cgroup of it is removed. */
int lms_sandboxes_delete(struct lms_sandboxes *sbs, const char *id, const char **reason, struct lms_error **err);

/* Holds a sandbox for one command: *key is the spawner's id, *base its settings (valid until released).
 * Pushes its expiry forward. NULL with LMS_ERR_NOT_FOUND (and *reason) when it does not exist. */
struct lms_sandbox_entry *lms_sandboxes_acquire(struct lms_sandboxes *sbs, const char *id, uint64_t *key,
						const struct lms_sandbox_settings **base, const char **reason,
						struct lms_error **err);
/* An O_PATH descriptor of the sandbox's root directory (its PID 1's /proc/PID/root, checked to be that
 * PID 1's through a pidfd kept from creation), for the files API; call it while holding the entry. */
int lms_sandboxes_open_root(const struct lms_sandbox_entry *e, struct lms_error **err);
/* A connection to 127.0.0.1:port of the sandbox's own network namespace (and nothing else: net/ns-socket.h),
 * entered through the pidfd kept from its PID 1's creation; call it while holding the entry. */
int lms_sandboxes_connect_port(const struct lms_sandbox_entry *e, uint16_t port, int timeout_ms,
			       struct lms_error **err);
/* Foreground commands of one sandbox at once (background processes have their own cap). */
#define LMS_SANDBOX_MAX_COMMANDS 16
/* Before a foreground command starts in a held sandbox: LMS_ERR_BUSY (429) when LMS_SANDBOX_MAX_COMMANDS
 * run in it already. A claim ends with the release of the command's job, or with unclaim when it could
 * not start. */
int lms_sandboxes_claim(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, struct lms_error **err);
void lms_sandboxes_unclaim(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e);
/* A command of it started: a DELETE cancels it (the job stays the caller's). */
void lms_sandboxes_attach_job(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, struct lms_job *job);
/* The command has ended (job: the one attached, whose claim ends too, or NULL); the idle time starts again. */
void lms_sandboxes_release(struct lms_sandboxes *sbs, struct lms_sandbox_entry *e, struct lms_job *job);
