/*
 * Every route, in one table: the dispatcher (http.c) and /openapi.json are both made from it, so the
 * document cannot drift from what the server answers (tests/system/test_server.py checks both ways).
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
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
    {"GET", "/healthz", lms_route_healthz, false, false, false, "Liveness and version (no token needed)", NULL,
     "Health"},
    {"GET", "/metrics", lms_route_metrics, true, false, false, "Prometheus metrics (text format)", NULL, NULL},
    {"GET", "/openapi.json", lms_route_openapi, false, false, false, "This document (OpenAPI 3.1)", NULL, NULL},
    {"GET", "/docs", lms_route_docs, false, false, false, "A readable page of this API", NULL, NULL},
};

const size_t lms_n_routes = sizeof(lms_routes) / sizeof(lms_routes[0]);

static const char components[] =
    "{\"securitySchemes\": {\"bearer\": {\"type\": \"http\", \"scheme\": \"bearer\"}},"
    " \"schemas\": {"
    "  \"Limits\": {\"type\": \"object\", \"properties\": {"
    "    \"memory_mb\": {\"type\": \"integer\", \"minimum\": 4, \"default\": 512},"
    "    \"pids\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 256},"
    "    \"cpu_ms\": {\"type\": \"integer\", \"minimum\": 0},"
    "    \"output_bytes\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 1048576},"
    "    \"disk_mb\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 1024}},"
    "    \"description\": \"May tighten the server's limits, never loosen them: larger values are clamped.\"},"
    "  \"ExecRequest\": {\"type\": \"object\", \"description\": \"Exactly one of cmd and argv.\","
    "   \"properties\": {"
    "    \"cmd\": {\"type\": \"string\", \"description\": \"run as bash -c (sh -c without bash)\"},"
    "    \"argv\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"minItems\": 1},"
    "    \"stdin\": {\"type\": \"string\"},"
    "    \"env\": {\"type\": \"object\", \"additionalProperties\": {\"type\": \"string\"}},"
    "    \"cwd\": {\"type\": \"string\", \"default\": \"/work\"},"
    "    \"timeout_ms\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 30000},"
    "    \"limits\": {\"$ref\": \"#/components/schemas/Limits\"},"
    "    \"network\": {\"type\": \"boolean\", \"default\": false},"
    "    \"image\": {\"type\": \"string\", \"default\": \"host\"},"
    "    \"gpu\": {\"type\": \"boolean\", \"default\": false},"
    "    \"encoding\": {\"type\": \"string\", \"enum\": [\"utf-8\", \"base64\"], \"default\": \"utf-8\"},"
    "    \"stream\": {\"type\": \"boolean\", \"default\": false}}},"
    "  \"ExecResult\": {\"type\": \"object\", \"required\": [\"stdout\", \"stderr\", \"exit_code\", \"signal\","
    "    \"timed_out\", \"oom_killed\", \"stdout_truncated\", \"stderr_truncated\", \"duration_ms\", \"cpu_ms\","
    "    \"max_rss_kb\"], \"properties\": {"
    "    \"stdout\": {\"type\": \"string\"}, \"stderr\": {\"type\": \"string\"},"
    "    \"exit_code\": {\"type\": \"integer\", \"description\": \"128+N when signal N ended it\"},"
    "    \"signal\": {\"type\": [\"string\", \"null\"], \"examples\": [\"SIGKILL\"]},"
    "    \"timed_out\": {\"type\": \"boolean\"}, \"oom_killed\": {\"type\": \"boolean\"},"
    "    \"stdout_truncated\": {\"type\": \"boolean\"}, \"stderr_truncated\": {\"type\": \"boolean\"},"
    "    \"duration_ms\": {\"type\": \"number\"}, \"cpu_ms\": {\"type\": \"number\"},"
    "    \"max_rss_kb\": {\"type\": \"integer\"}}},"
    "  \"RunBashRequest\": {\"type\": \"object\", \"required\": [\"cmd\"], \"properties\": {"
    "    \"cmd\": {\"type\": \"string\"}}, \"description\": \"and every field of ExecRequest\"},"
    "  \"RunBashResult\": {\"allOf\": [{\"$ref\": \"#/components/schemas/ExecResult\"}, {\"type\": \"object\","
    "    \"properties\": {\"output\": {\"type\": \"string\", \"description\": \"= stdout\"},"
    "    \"error\": {\"type\": \"string\", \"description\": \"= stderr\"}}}]},"
    "  \"ChatRequest\": {\"type\": \"object\", \"required\": [\"model\", \"messages\"], \"properties\": {"
    "    \"model\": {\"type\": \"string\", \"description\": \"backend/name, or a bare name\"},"
    "    \"messages\": {\"type\": \"array\"}, \"stream\": {\"type\": \"boolean\"}},"
    "    \"description\": \"OpenAI's chat completion request; every field passes through untouched\"},"
    "  \"SeedChatRequest\": {\"type\": \"object\", \"required\": [\"cmd\"], \"properties\": {"
    "    \"cmd\": {\"type\": \"string\", \"description\": \"the prompt (data, never shell text)\"},"
    "    \"model\": {\"type\": \"string\"}}},"
    "  \"LlamaCppResult\": {\"type\": \"object\", \"properties\": {\"output\": {\"type\": \"string\"},"
    "    \"error\": {\"type\": \"string\"}, \"model\": {\"type\": \"string\"}, \"usage\": {\"type\": \"object\"}}},"
    "  \"Health\": {\"type\": \"object\", \"properties\": {\"status\": {\"type\": \"string\"},"
    "    \"version\": {\"type\": \"string\"}, \"backends\": {\"type\": \"object\"}}},"
    "  \"Error\": {\"type\": \"object\", \"required\": [\"error\"], \"properties\": {\"error\": {"
    "    \"type\": \"object\", \"required\": [\"message\", \"type\", \"code\"], \"properties\": {"
    "    \"message\": {\"type\": \"string\"}, \"type\": {\"type\": \"string\"}, \"code\": {\"type\": \"string\"}}}}}"
    " }}";

static json_t *
schema_ref(const char *name)
{
	/* One formatted string: a pack format of "s+" with the wrong count of parts reads past the arguments. */
	char ref[128];
	snprintf(ref, sizeof(ref), "#/components/schemas/%s", name);
	return json_pack("{s:{s:{s:s}}}", "application/json", "schema", "$ref", ref);
}

static json_t *
operation(const struct lms_route *r)
{
	json_t *error =
	    json_pack("{s:s, s:o}", "description", "error (API.md's one shape)", "content", schema_ref("Error"));
	json_t *ok = json_pack("{s:s}", "description", "success");
	if (r->response_schema)
		json_object_set_new(ok, "content", schema_ref(r->response_schema));
	else if (strcmp(r->path, "/metrics") == 0)
		json_object_set_new(ok, "content", json_pack("{s:{}}", "text/plain"));
	else if (strcmp(r->path, "/docs") == 0)
		json_object_set_new(ok, "content", json_pack("{s:{}}", "text/html"));
	if (strcmp(r->path, "/v1/exec") == 0)
		json_object_set_new(json_object_get(ok, "content"), "text/event-stream",
				    json_pack("{s:{s:s}}", "schema", "description",
					      "events stdout/stderr {data} as read, then exit {result less output}"));
	json_t *op = json_pack("{s:s, s:{s:o, s:o}}", "summary", r->summary, "responses", "200", ok, "default", error);
	if (r->request_schema)
		json_object_set_new(op, "requestBody",
				    json_pack("{s:b, s:o}", "required", 1, "content", schema_ref(r->request_schema)));
	if (!r->auth)
		json_object_set_new(op, "security", json_array());
	if (strstr(r->path, "{path}") != NULL)
		json_object_set_new(op, "parameters",
				    json_pack("[{s:s, s:s, s:b, s:{s:s}}]", "name", "path", "in", "path", "required", 1,
					      "schema", "type", "string"));
	return op;
}

json_t *
lms_openapi_document(void)
{
	json_t *doc =
	    json_pack("{s:s, s:{s:s, s:s, s:s}, s:[{s:[]}]}", "openapi", "3.1.0", "info", "title", "lm-sandbox",
		      "version", LMS_VERSION, "description",
		      "Runs the commands of local language models in isolated sandboxes.", "security", "bearer");
	json_t *paths = json_object();
	for (size_t i = 0; i < lms_n_routes; i++) {
		const struct lms_route *r = &lms_routes[i];
		json_t *item = json_object_get(paths, r->path);
		if (item == NULL) {
			item = json_object();
			json_object_set_new(paths, r->path, item);
		}
		char method[8];
		size_t n = 0;
		for (; r->method[n] && n < sizeof(method) - 1; n++)
			method[n] = (char)(r->method[n] | 0x20);
		method[n] = '\0';
		json_object_set_new(item, method, operation(r));
	}
	json_object_set_new(doc, "paths", paths);
	json_object_set_new(doc, "components", json_loads(components, 0, NULL));
	return doc;
}
