#pragma once
/*
 * The body of POST /v1/exec (and /run-bash/, /v1/sandboxes/{id}/exec) parsed into a sandbox spec:
 * the one JSON-to-spec parser of every exec-like route (DESIGN.md). Every byte of the body is hostile:
 * this is fuzzed (tests/fuzz/fuzz-exec-request.c).
 */
#include <stdbool.h>
#include <stddef.h>

#include "api/exec-json.h"
#include "core/error.h"
#include "sandbox/sandbox.h"

/* What the server allows: the defaults a request starts from and the ceilings it may not pass. */
struct lms_exec_policy {
	struct lms_limits defaults;    /* used for fields the request leaves out */
	struct lms_limits ceilings;    /* a request may tighten limits, never loosen them: larger values are
					* clamped to these (timeout_ms: --max-timeout-ms; the others: the
					* server's defaults) */
	bool allow_network;	       /* --allow-network */
	const char *net_dns;	       /* --network-dns (spec.h's net_dns), NULL: the host's resolver */
	const char *net_allow_private; /* --network-allow-private, "CIDR,CIDR" or NULL */
	const char *net_allow;	       /* --network-allow: an allowlist-only server's list, or NULL */
	bool have_bash;		       /* the root file system has /bin/bash: "cmd" runs as bash -c, else sh -c */
	const char *state_dir;	       /* where imported images are (image/store.h); NULL: only "host" */
};

struct lms_exec_request {
	struct lms_sandbox_spec spec; /* argv, env, cwd, stdin_data point into storage owned by this struct */
	enum lms_encoding encoding;
	bool stream;
	bool background; /* a persistent sandbox's background process (202 at once) */
	/* owned storage behind spec's pointers */
	char **argv;
	char **env;
	char *cwd;
	char *image;
	char **layers; /* an imported image's layer directories (the server resolved its name) */
	char *stdin_data;
	char *net_allow; /* the allowlist, comma-separated (spec.net_allow) */
};

/*
 * Parses `len` bytes of JSON. Errors (all LMS_ERR_INVALID unless said, each message saying what to
 * change): malformed JSON (the message names line and column), a body that is not an object, a field
 * of the wrong type, both or neither of "cmd"/"argv", an empty argv or one with a non-string, an env
 * that is not an object of strings or has a name with '=' or an empty name, a relative cwd, a
 * negative or non-integer limit, an unknown "encoding"; "network" other than false without allow_network is
 * LMS_ERR_FORBIDDEN, as is an allowlist ({"allow": [...]}) on a server with its own (--network-allow); an image
 * neither "host" nor imported under policy->state_dir is LMS_ERR_NOT_FOUND (an imported one brings its layers, Env,
 * WorkingDir and bash-or-sh into the spec). NUL bytes inside strings are rejected where the kernel cannot take them
 * (argv, env, cwd) and kept in stdin. Unknown fields are ignored. On success *out is set; free it with
 * lms_exec_request_free.
 */
int lms_exec_request_parse(const char *body, size_t len, const struct lms_exec_policy *policy,
			   struct lms_exec_request **out, struct lms_error **err);

void lms_exec_request_free(struct lms_exec_request *req);
