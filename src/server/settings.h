#pragma once
/*
 * The daemon's settings: one table (settings.c) drives the flags, the LM_SANDBOX_* environment variables,
 * the --env-file, `lm-sandbox serve --help` and validation (STYLE.md, "Configuration").
 * Precedence: flag > environment variable > env file > default.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "core/log.h"
#include "sandbox/sandbox.h"

struct lms_config {
	char *listen; /* "127.0.0.1:8000", "[::1]:8000", "0.0.0.0:0" */
	char *state_dir;
	char *token_file;
	char *env_file;
	enum lms_log_level log_level;
	uint64_t max_concurrent;
	uint64_t pool_size;
	uint64_t max_timeout_ms;
	uint64_t max_body_bytes;
	uint64_t max_sandboxes;
	uint64_t max_ttl_s;
	uint64_t max_upload_bytes;
	uint64_t max_body_bytes_in_flight;
	uint64_t max_connections;
	uint64_t max_connections_per_ip;
	uint64_t header_timeout_ms;
	uint64_t idle_timeout_ms;
	bool allow_network;
	char *network_dns;	     /* the upstream resolver of network sandboxes; NULL: the host's */
	char *network_allow_private; /* "CIDR,CIDR": private ranges network sandboxes may reach */
	char *network_allow;	     /* "name,*.name,CIDR": an allowlist-only server's list (network: true means it) */
	bool insecure_no_auth;
	bool sandbox_optional; /* a failed start-up privilege check is logged, not fatal */
	char *ollama_url;
	char *llamacpp_url;
	char *backends;	    /* "NAME=URL,NAME=URL" */
	char *cors_origins; /* "ORIGIN,ORIGIN": pages that may call POST /mcp (mcp.c) */
	char *node_id;	    /* this node's name (cluster.h); NULL: from $HOSTNAME */
	char *peers;	    /* "NAME=URL,NAME=URL": the cluster's other nodes */
	char *ollama_model;
	char *llamacpp_model;
	uint64_t backend_connect_timeout_ms;
	uint64_t backend_timeout_ms;
	uint64_t backend_first_byte_timeout_ms;
	uint64_t models_cache_ms;
	struct lms_limits defaults; /* a request's limits start here and may only go lower */
	char *token;		    /* from --token-file or LM_SANDBOX_API_TOKEN; never logged */
};

/* Fills cfg from argv (the words after `serve`), envp and the env file. Prints --help and returns 1
 * when asked. Errors are LMS_ERR_INVALID and name the flag or variable. */
int lms_config_load(struct lms_config *cfg, int argc, char **argv, char **envp, struct lms_error **err);

/* Applies the entries of env-file text (len bytes; `name`, the file's path, prefixes messages as
 * "name:LINE:"): KEY=VALUE lines, '#' comments, blank lines, an optional `export `, values in matching
 * single or double quotes. LM_SANDBOX_* keys must be settings (or LM_SANDBOX_API_TOKEN); other keys are
 * ignored. Errors are LMS_ERR_INVALID. cfg may be zeroed or loaded; lms_config_free() frees it. */
int lms_config_parse_env(struct lms_config *cfg, const char *text, size_t len, const char *name,
			 struct lms_error **err);

void lms_config_help(FILE *f);
void lms_config_free(struct lms_config *cfg);
