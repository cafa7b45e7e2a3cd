/*
 * Every route, in one table, and how a request finds its route: the dispatcher (request.c) and
 * /openapi.json (openapi.c) are both made from it, so the document cannot drift from what the server
 * answers (tests/system/test_server.py checks both ways).
 */
#include <stdio.h>
#include <string.h>

#include "server/server.h"

const struct lms_route lms_routes[] = {
    {"POST", "/v1/exec", lms_route_exec, true, true, false,
     "Run one command in a fresh sandbox (JSON result, or Server-Sent Events with stream: true)", "ExecRequest",
     "ExecResult"},
    {"POST", "/run-bash/", lms_route_run_bash, true, true, true,
     "The original sketch's endpoint: {\"cmd\": ...} runs in a fresh sandbox", "RunBashRequest", "RunBashResult"},
    {"POST", "/run-bash", lms_route_run_bash, true, true, true, "Same as /run-bash/", "RunBashRequest",
     "RunBashResult"},
    {"GET", "/v1/models", lms_route_models, true, false, false,
     "Models of every reachable backend, as backend/name (OpenAI's list shape)", NULL, NULL},
    {"POST", "/v1/chat/completions", lms_route_chat_completions, true, true, false,
     "OpenAI chat completion, relayed to the backend that owns model (stream: true relays its events as they "
     "arrive)",
     "ChatRequest", NULL},
    {"POST", "/ollama/", lms_route_ollama, true, true, true,
     "The original sketch's endpoint: {\"cmd\": prompt, \"model\": optional} to Ollama; the chat.completion "
     "object",
     "SeedChatRequest", NULL},
    {"POST", "/ollama", lms_route_ollama, true, true, true, "Same as /ollama/", "SeedChatRequest", NULL},
    {"POST", "/llama-cpp/", lms_route_llamacpp, true, true, true,
     "The original sketch's endpoint: {\"cmd\", \"model\"} to llama-server; {output, error, model, usage}",
     "SeedChatRequest", "LlamaCppResult"},
    {"POST", "/llama-cpp", lms_route_llamacpp, true, true, true, "Same as /llama-cpp/", "SeedChatRequest",
     "LlamaCppResult"},
    {"GET", "/api/{path}", lms_route_ollama_api, true, false, false,
     "Ollama's own API, relayed unchanged (NDJSON streams too) behind lm-sandbox's token", NULL, NULL},
    {"POST", "/api/{path}", lms_route_ollama_api, true, false, false, "Ollama's own API, relayed unchanged", NULL,
     NULL},
    {"DELETE", "/api/{path}", lms_route_ollama_api, true, false, false, "Ollama's own API, relayed unchanged", NULL,
     NULL},
    {"GET", "/v1/images", lms_route_image_list, true, false, false,
     "The imported images (lm-sandbox image import): name, digest, size, created_at, source, layers", NULL, NULL},
    {"POST", "/v1/images/pull", lms_route_image_pull, true, true, false,
     "Pull an image from a registry: {\"ref\": \"ubuntu:22.04\", \"name\": optional} (201 with the image)", "ImagePull",
     NULL},
    {"PUT", "/v1/images/{id}", lms_route_image_put, true, false, false,
     "Import an image from the body: a docker save archive, an OCI layout's tar or a root file system tarball "
     "(201)",
     NULL, NULL, &lms_image_put_sink},
    {"DELETE", "/v1/images/{id}", lms_route_image_delete, true, false, false,
     "Remove an image and the layers no other image uses (204; 409 while a persistent sandbox has it)", NULL, NULL},
    {"POST", "/v1/sandboxes", lms_route_sandbox_create, true, true, false,
     "Make a persistent sandbox: files and background processes stay between its commands", "SandboxRequest",
     "Sandbox"},
    {"GET", "/v1/sandboxes", lms_route_sandbox_list, true, false, false,
     "The persistent sandboxes, of every node in a cluster (?metadata.KEY=VALUE filters, ?node=local)", NULL, NULL},
    {"GET", "/v1/sandboxes/{id}", lms_route_sandbox_get, true, false, false, "One persistent sandbox", NULL, "Sandbox"},
    {"DELETE", "/v1/sandboxes/{id}", lms_route_sandbox_delete, true, false, false,
     "End a sandbox: every process killed, every mount, cgroup and file removed (204)", NULL, NULL},
    {"POST", "/v1/sandboxes/{id}/fork", lms_route_sandbox_fork, true, true, false,
     "A new sandbox with a copy of this one's files at this moment (not its processes)", "SandboxFork", "Sandbox"},
    {"GET", "/v1/sandboxes/{id}/history", lms_route_sandbox_history, true, false, false,
     "The sandbox's audit log: every tool call made in it through any route, newest last (?limit=N)", NULL, NULL},
    {"GET", "/v1/sandboxes/{id}/processes", lms_route_process_list, true, false, false,
     "The sandbox's background processes, oldest first", NULL, NULL},
    {"GET", "/v1/sandboxes/{id}/processes/{id}", lms_route_process_get, true, false, false,
     "One background process, by process_id or pid (?wait=true blocks until it exits)", NULL, NULL},
    {"GET", "/v1/sandboxes/{id}/processes/{id}/output", lms_route_process_output, true, false, false,
     "Its combined output from ?offset=N on (raw bytes; ?follow=true: Server-Sent Events until it exits)", NULL, NULL},
    {"POST", "/v1/sandboxes/{id}/processes/{id}/signal", lms_route_process_signal, true, true, false,
     "A signal for its session: {\"signal\": \"SIGTERM\"}", NULL, NULL},
    {"POST", "/v1/sandboxes/{id}/processes/{id}/stdin", lms_route_process_stdin, true, false, false,
     "Bytes for its standard input (raw body; ?close=true closes it after)", NULL, NULL},
    {"POST", "/v1/sandboxes/{id}/exec", lms_route_sandbox_exec, true, true, false,
     "Run a command in a persistent sandbox (as POST /v1/exec; it returns when the command exits, whatever it "
     "left running in the background)",
     "ExecRequest", "ExecResult"},
    {"GET", "/v1/sandboxes/{id}/files/{file_path}", lms_route_files_get, true, false, false,
     "A file's bytes, a directory's listing, or (Accept: application/x-tar) a directory as a tar stream", NULL, NULL},
    {"PUT", "/v1/sandboxes/{id}/files/{file_path}", lms_route_files_put, true, false, false,
     "Write a file (raw body; parents made; ?mode=0644), or (Content-Type: application/x-tar) unpack into a "
     "directory (201)",
     NULL, NULL, &lms_files_put_sink},
    {"DELETE", "/v1/sandboxes/{id}/files/{file_path}", lms_route_files_delete, true, false, false,
     "Remove a file, or a directory (?recursive=true for one that is not empty) (204)", NULL, NULL},
    {"GET", "/v1/sandboxes/{id}/ports/{port}/{port_path}", lms_route_ports, true, false, false,
     "Relay HTTP to the server listening on 127.0.0.1:{port} inside the sandbox (its answer streamed as it "
     "comes, WebSockets too; 502 port_unreachable when nothing listens)",
     NULL, NULL, &lms_ports_sink},
    {"HEAD", "/v1/sandboxes/{id}/ports/{port}/{port_path}", lms_route_ports, true, false, false,
     "Same as GET: the request and its body relayed to the sandbox's port", NULL, NULL, &lms_ports_sink},
    {"POST", "/v1/sandboxes/{id}/ports/{port}/{port_path}", lms_route_ports, true, false, false,
     "Same as GET: the request and its body relayed to the sandbox's port", NULL, NULL, &lms_ports_sink},
    {"PUT", "/v1/sandboxes/{id}/ports/{port}/{port_path}", lms_route_ports, true, false, false,
     "Same as GET: the request and its body relayed to the sandbox's port", NULL, NULL, &lms_ports_sink},
    {"PATCH", "/v1/sandboxes/{id}/ports/{port}/{port_path}", lms_route_ports, true, false, false,
     "Same as GET: the request and its body relayed to the sandbox's port", NULL, NULL, &lms_ports_sink},
    {"DELETE", "/v1/sandboxes/{id}/ports/{port}/{port_path}", lms_route_ports, true, false, false,
     "Same as GET: the request and its body relayed to the sandbox's port", NULL, NULL, &lms_ports_sink},
    {"POST", "/v1/agent", lms_route_agent, true, true, false,
     "Run a model that uses a sandbox: its tool calls run there until it answers (JSON result, or Server-Sent "
     "Events with stream: true)",
     "AgentRequest", "AgentResult"},
    {"POST", "/mcp", lms_route_mcp, true, true, false,
     "The Model Context Protocol over Streamable HTTP (JSON-RPC 2.0): the sandbox's tools for any MCP host; "
     "legacy initialize clients served statelessly, 2026-07-28 clients per request",
     "McpRequest", "McpResponse"},
    {"OPTIONS", "/mcp", lms_route_mcp_preflight, false, false, false,
     "CORS preflight of POST /mcp, for the pages of --cors-origin (204)", NULL, NULL},
    {"GET", "/healthz", lms_route_healthz, false, false, false, "Liveness and version (no token needed)", NULL,
     "Health"},
    {"GET", "/metrics", lms_route_metrics, true, false, false, "Prometheus metrics (text format)", NULL, NULL},
    {"GET", "/openapi.json", lms_route_openapi, false, false, false, "This document (OpenAPI 3.1)", NULL, NULL},
    {"GET", "/docs", lms_route_docs, false, false, false, "A readable page of this API", NULL, NULL},
};

const size_t lms_n_routes = sizeof(lms_routes) / sizeof(lms_routes[0]);

/* An exact path; a "{id}" or "{port}" segment matches one non-empty segment; a route ending in "/{path}"
 * (the relay of Ollama's /api/...) any non-empty rest without ".."; one ending in "/{file_path}" any rest at
 * all (the files API resolves it inside the sandbox's root, where ".." cannot leave it); one ending in
 * "/{port_path}" any rest or none (the sandbox's server reads it as its own path). */
bool
lms_route_matches(const struct lms_route *r, const char *path)
{
	size_t n = strlen(r->path);
	if (n > 7 && strcmp(r->path + n - 7, "/{path}") == 0)
		return strncmp(path, r->path, n - 6) == 0 && path[n - 6] != '\0' && strstr(path, "..") == NULL;
	const char *pat = r->path, *p = path;
	while (*pat != '\0') {
		if (strcmp(pat, "{file_path}") == 0)
			return true;
		if (strcmp(pat, "/{port_path}") == 0)
			return *p == '\0' || *p == '/';
		size_t var = strncmp(pat, "{id}", 4) == 0 ? 4 : strncmp(pat, "{port}", 6) == 0 ? 6 : 0;
		if (var > 0 && (pat[var] == '/' || pat[var] == '\0')) {
			size_t seg = strcspn(p, "/");
			if (seg == 0)
				return false;
			p += seg;
			pat += var;
			continue;
		}
		if (*pat++ != *p++)
			return false;
	}
	return *p == '\0';
}

const struct lms_route *
lms_router_find(const char *method, const char *path, char *allow, size_t allow_size)
{
	const struct lms_route *match = NULL;
	allow[0] = '\0';
	/* A path some route names literally (/v1/images/pull) is that route's alone, not also a {id} of a
	 * pattern beside it (an image named "pull" is not PUT or DELETEd over HTTP). */
	bool literal = false;
	for (size_t i = 0; i < lms_n_routes && !literal; i++)
		literal = strchr(lms_routes[i].path, '{') == NULL && strcmp(lms_routes[i].path, path) == 0;
	for (size_t i = 0; i < lms_n_routes; i++) {
		if (!lms_route_matches(&lms_routes[i], path) || (literal && strchr(lms_routes[i].path, '{') != NULL))
			continue;
		if (strcmp(lms_routes[i].method, method) == 0)
			match = &lms_routes[i];
		size_t used = strlen(allow);
		snprintf(allow + used, allow_size - used, "%s%s", used ? ", " : "", lms_routes[i].method);
	}
	return match;
}
