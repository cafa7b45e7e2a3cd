/* GET /openapi.json's document, made from the route table (router.c). */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "core/stringify.h"
#include "server/server.h"

/* The defaults are the sandbox's own (sandbox.h), written once. */
#define S(number) LMS_STRINGIFY(number)

/* clang-format off: one JSON text, written as it reads */
static const char
    components
	[] =
	    "{\"securitySchemes\": {\"bearer\": {\"type\": \"http\", \"scheme\": \"bearer\"}}, "
	    "\"schemas\": {"
	    "  \"AgentRequest\": {\"type\": \"object\", \"required\": [\"model\"], \"properties\": {"
	    "\"model\": {\"type\": \"string\"}, \"prompt\": {\"type\": \"string\"}, \"messages\": {\"type\": "
	    "\"array\"}, \"sandbox_id\": {\"type\": \"string\"}, \"max_steps\": {\"type\": \"integer\"}, "
	    "\"timeout_ms\": {\"type\": \"integer\"}, \"step_timeout_ms\": {\"type\": \"integer\"}, "
	    "\"stream\": {\"type\": \"boolean\"}, \"confirm\": {\"type\": \"boolean\"}, \"image\": {\"type\": "
	    "\"string\"}, \"network\": {}}},"
	    "  \"AgentResult\": {\"type\": \"object\", \"description\": \"or, with stream: true, the events "
	    "assistant, tool_call, tool_output, tool_result, warning, then done (this object)\", \"properties\": {"
	    "\"sandbox_id\": {\"type\": \"string\"}, \"steps\": {\"type\": \"integer\"}, \"finish_reason\": "
	    "{\"enum\": [\"stop\", \"max_steps\", \"timeout\", \"tool_calls\"]}, \"content\": {\"type\": "
	    "\"string\"}, \"messages\": {\"type\": \"array\"}, \"usage\": {\"type\": \"object\"}, \"timings\": "
	    "{\"type\": \"object\"}, \"context\": {\"type\": \"object\"}, \"context_exceeded\": {\"type\": "
	    "\"boolean\"}}},"
	    "  \"McpRequest\": {\"type\": \"object\", \"description\": \"one JSON-RPC 2.0 request "
	    "or "
	    "notification (no batches): initialize, ping, server/discover, tools/list, "
	    "tools/call\", "
	    "\"required\": [\"jsonrpc\", \"method\"], \"properties\": {\"jsonrpc\": {\"const\": "
	    "\"2.0\"}, "
	    "\"id\": {\"type\": [\"string\", \"integer\"]}, \"method\": {\"type\": \"string\"}, "
	    "\"params\": {\"type\": \"object\"}}},"
	    "  \"McpResponse\": {\"type\": \"object\", \"description\": \"a JSON-RPC 2.0 response "
	    "(or, "
	    "for tools/call with Accept: text/event-stream, Server-Sent Events: "
	    "notifications/progress, "
	    "then the response)\", \"required\": [\"jsonrpc\"], \"properties\": {\"jsonrpc\": "
	    "{\"const\": "
	    "\"2.0\"}, \"id\": {}, \"result\": {\"type\": \"object\"}, \"error\": {\"type\": "
	    "\"object\", "
	    "\"properties\": {\"code\": {\"type\": \"integer\"}, \"message\": {\"type\": "
	    "\"string\"}, "
	    "\"data\": {}}}}},"
	    "  \"Limits\": {\"type\": \"object\", \"properties\": {    \"memory_mb\": {\"type\": "
	    "\"integer\", "
	    "\"minimum\": 4, \"default\": " S(LMS_DEFAULT_MEMORY_MB) "},    \"pids\": {\"type\": "
								     "\"integer\", \"minimum\": "
								     "1, "
								     "\"default\": " S(LMS_DEFAULT_PIDS) "},    "
													 "\"cpu_ms\": "
													 "{\"type\": "
													 "\"integer\","
													 " "
													 "\"minimum\":"
													 " "
													 "0},    "
													 "\"cpus\": "
													 "{\"type\": "
													 "\"number\", "
													 "\"minimum\":"
													 " "
													 "0, "
													 "\"maximum\":"
													 " "
													 "1024},  "
													 "  "
													 "\"output_"
													 "bytes\": "
													 "{\"type\": "
													 "\"integer\","
													 " "
													 "\"minimum\":"
													 " "
													 "0, "
													 "\"default\":"
													 " " S(
													     LMS_DEFAULT_OUTPUT_BYTES) "},    \"disk_mb\": {\"type\": \"integer\", \"minimum\": 1, \"default\": " S(LMS_DEFAULT_DISK_MB) "}},    \"description\": \"May tighten the server's limits, "
																													 "never loosen them: larger values are clamped.\"},  \"ExecRequest\": {\"type\": \"object\", "
																													 "\"description\": \"Exactly one of cmd and argv.\",   \"properties\": {    \"cmd\": {"
																													 "\"type\": \"string\", \"description\": \"run as bash -c (sh -c without bash)\"},    \"argv\": {"
																													 "\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"minItems\": 1},    \"stdin\": {"
																													 "\"type\": \"string\"},    \"env\": {\"type\": \"object\", \"additionalProperties\": {"
																													 "\"type\": \"string\"}},    \"cwd\": {\"type\": \"string\", \"default\": \"" LMS_DEFAULT_CWD
																													 "\"},    \"timeout_ms\": {"
																													 "\"type\": \"integer\", \"minimum\": 1, \"default\": " S(LMS_DEFAULT_TIMEOUT_MS) "},    \"limits\": {\"$ref\": \"#/components/schemas/Limits\"},    \"network\": {"
																																							  "\"type\": \"boolean\", \"default\": false},    \"image\": {\"type\": \"string\", "
																																							  "\"default\": \"host\"},    \"gpu\": {\"type\": [\"boolean\", \"array\"], \"items\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 63}, \"default\": false},    \"encoding\": {"
																																							  "\"type\": \"string\", \"enum\": [\"utf-8\", \"base64\"], \"default\": \"utf-8\"},    \"stream\": {"
																																							  "\"type\": \"boolean\", \"default\": false}}},  \"ExecResult\": {\"type\": \"object\", "
																																							  "\"required\": [\"stdout\", \"stderr\", \"exit_code\", \"signal\",    \"timed_out\", \"oom_killed\", "
																																							  "\"stdout_truncated\", \"stderr_truncated\", \"duration_ms\", \"cpu_ms\",    \"max_rss_kb\"], "
																																							  "\"properties\": {    \"stdout\": {\"type\": \"string\"}, \"stderr\": {\"type\": \"string\"}, "
																																							  "   \"exit_code\": {\"type\": \"integer\", \"description\": \"128+N when signal N ended it\"}, "
																																							  "   \"signal\": {\"type\": [\"string\", \"null\"], \"examples\": [\"SIGKILL\"]},    \"timed_out\": {"
																																							  "\"type\": \"boolean\"}, \"oom_killed\": {\"type\": \"boolean\"},    \"pids_limit_hit\": {\"type\": \"boolean\", "
																																							  "\"description\": \"a fork was refused at the command's own pids limit\"},    \"stdout_truncated\": {"
																																							  "\"type\": \"boolean\"}, \"stderr_truncated\": {\"type\": \"boolean\"},    \"duration_ms\": {"
																																							  "\"type\": \"number\"}, \"cpu_ms\": {\"type\": \"number\"},    \"max_rss_kb\": {"
																																							  "\"type\": \"integer\"}, \"net_rx_bytes\": {\"type\": \"integer\"}, "
																																							  "\"net_tx_bytes\": {\"type\": \"integer\"}}},  \"RunBashRequest\": {\"type\": \"object\", \"required\": [\"cmd\"], "
																																							  "\"properties\": {    \"cmd\": {\"type\": \"string\"}}, "
																																							  "\"description\": \"and every field of ExecRequest\"},  \"RunBashResult\": {\"allOf\": [{"
																																							  "\"$ref\": \"#/components/schemas/ExecResult\"}, {\"type\": \"object\",    \"properties\": {"
																																							  "\"output\": {\"type\": \"string\", \"description\": \"= stdout\"},    \"error\": {"
																																							  "\"type\": \"string\", \"description\": \"= stderr\"}}}]},  \"ChatRequest\": {\"type\": \"object\", "
																																							  "\"required\": [\"model\", \"messages\"], \"properties\": {    \"model\": {\"type\": \"string\", "
																																							  "\"description\": \"backend/name, or a bare name\"},    \"messages\": {\"type\": \"array\"}, "
																																							  "\"stream\": {\"type\": \"boolean\"}}, "
																																							  "   \"description\": \"OpenAI's chat completion request; every field passes through untouched\"}, "
																																							  " \"SeedChatRequest\": {\"type\": \"object\", \"required\": [\"cmd\"], \"properties\": {"
																																							  "    \"cmd\": {\"type\": \"string\", \"description\": \"the prompt (data, never shell text)\"}, "
																																							  "   \"model\": {\"type\": \"string\"}}},  \"LlamaCppResult\": {\"type\": \"object\", "
																																							  "\"properties\": {\"output\": {\"type\": \"string\"},    \"error\": {\"type\": \"string\"}, "
																																							  "\"model\": {\"type\": \"string\"}, \"usage\": {\"type\": \"object\"}}},  \"SandboxRequest\": {"
																																							  "\"type\": \"object\", \"properties\": {    \"image\": {\"type\": \"string\", "
																																							  "\"default\": \"host\"},    \"ttl_s\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 3600, "
																																							  "\"description\": \"idle time; capped by --max-ttl-s\"},    \"limits\": {"
																																							  "\"$ref\": \"#/components/schemas/Limits\"}, \"network\": {\"type\": [\"boolean\", \"object\"]}, "
																																							  "   \"gpu\": {\"type\": [\"boolean\", \"array\"]}, \"env\": {\"type\": \"object\"}, "
																																							  "   \"metadata\": {\"type\": \"object\", \"additionalProperties\": {\"type\": \"string\"}}}}, "
																																							  "\"ImagePull\": {\"type\": \"object\", \"required\": [\"ref\"], \"properties\": {\"ref\": {\"type\": "
																																							  "\"string\", \"description\": \"as docker pull reads it: ubuntu:22.04, host:port/name@sha256:HEX\"}, "
																																							  "\"name\": {\"type\": \"string\", \"description\": \"the store's name; default: the repository's last part "
																																							  "and its tag\"}}}, "
																																							  "\"SandboxFork\": {\"type\": \"object\", \"properties\": {\"ttl_s\": {\"type\": \"integer\", \"minimum\": 1, "
																																							  "\"description\": \"default: the source's\"}, \"metadata\": {\"type\": \"object\", \"additionalProperties\": "
																																							  "{\"type\": \"string\"}, \"description\": \"default: the source's\"}}}, "
																																							  " \"Sandbox\": {\"type\": \"object\", \"required\": [\"id\", \"image\", \"state\", \"created_at\", "
																																							  "\"last_used_at\",    \"expires_at\", \"limits\", \"network\", \"gpu\", \"metadata\"], "
																																							  "\"properties\": {    \"id\": {\"type\": \"string\", \"examples\": [\"sbx_0123456789abcdef\"]}, "
																																							  "\"image\": {\"type\": \"string\"},    \"state\": {\"type\": \"string\", \"enum\": [\"running\"]}, "
																																							  "\"created_at\": {\"type\": \"string\", \"format\": \"date-time\"},    \"last_used_at\": {"
																																							  "\"type\": \"string\", \"format\": \"date-time\"}, \"expires_at\": {\"type\": \"string\", "
																																							  "\"format\": \"date-time\"},    \"ttl_s\": {\"type\": \"integer\"}, \"limits\": {"
																																							  "\"type\": \"object\"}, \"network\": {\"type\": [\"boolean\", \"object\"]},    \"gpu\": {\"type\": [\"boolean\", \"array\"]}, "
																																							  "\"metadata\": {\"type\": \"object\"}}},  \"Health\": {\"type\": \"object\", \"properties\": {"
																																							  "\"status\": {\"type\": \"string\"},    \"version\": {\"type\": \"string\"}, \"backends\": {"
																																							  "\"type\": \"object\"}}},  \"Error\": {\"type\": \"object\", \"required\": [\"error\"], "
																																							  "\"properties\": {\"error\": {    \"type\": \"object\", \"required\": [\"message\", \"type\", "
																																							  "\"code\"], \"properties\": {    \"message\": {\"type\": \"string\"}, \"type\": {"
																																							  "\"type\": \"string\"}, \"code\": {\"type\": \"string\"}}}}} }}";
/* clang-format on */

static json_t *
schema_ref(const char *name)
{
	/* One formatted string: a pack format of "s+" with the wrong count of parts reads past the arguments. */
	char ref[128];
	snprintf(ref, sizeof(ref), "#/components/schemas/%s", name);
	return json_pack("{s:{s:{s:s}}}", "application/json", "schema", "$ref", ref);
}

/* The files API's parameters and answers: its errors are named by errno (docs/API-NOTES.md, "Files"). */
static json_t *
files_parameters(const char *method)
{
	json_t *p =
	    json_pack("[{s:s, s:s, s:b, s:s, s:{s:s}}, {s:s, s:s, s:b, s:s, s:{s:s}}]", "name", "id", "in", "path",
		      "required", 1, "description", "the sandbox's id", "schema", "type", "string", "name", "file_path",
		      "in", "path", "required", 1, "description",
		      "the absolute path inside the sandbox, resolved inside its root (.. and links never leave it)",
		      "schema", "type", "string");
	if (strcmp(method, "PUT") == 0)
		json_array_append_new(p, json_pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "name", "mode", "in", "query",
						   "description", "octal permission bits of the file, 0 to 0777 (0644)",
						   "schema", "type", "string", "pattern", "^[0-7]{1,4}$"));
	if (strcmp(method, "DELETE") == 0)
		json_array_append_new(p, json_pack("{s:s, s:s, s:s, s:{s:s}}", "name", "recursive", "in", "query",
						   "description", "true: a directory and everything in it", "schema",
						   "type", "boolean"));
	return p;
}

static json_t *
files_success(const char *method)
{
	if (strcmp(method, "GET") == 0)
		return json_string("application/octet-stream: the file's bytes; application/json: a directory's "
				   "{entries: [{name, type, size, mode, mtime}]}; application/x-tar with Accept: "
				   "application/x-tar. Errors: 404 file_not_found, 403 permission_denied, 409 "
				   "not_a_regular_file");
	if (strcmp(method, "PUT") == 0)
		return json_string("201 {path, type, size, mode} (a file) or {path, type, entries} (a tar unpacked). "
				   "Errors: 413 body_too_large (--max-upload-bytes), 403 permission_denied or "
				   "read_only_file_system, 409 is_a_directory, 507 disk_full, 400 invalid_archive");
	return json_string("204. Errors: 404 file_not_found, 409 directory_not_empty, 403 permission_denied");
}

/* The port relay's parameters: its answer is the sandbox server's own (docs/API-NOTES.md, "The port relay"). */
static json_t *
ports_parameters(void)
{
	return json_pack("[{s:s, s:s, s:b, s:s, s:{s:s}}, {s:s, s:s, s:b, s:s, s:{s:s, s:i, s:i}}, "
			 "{s:s, s:s, s:b, s:s, s:{s:s}}]",
			 "name", "id", "in", "path", "required", 1, "description", "the sandbox's id", "schema", "type",
			 "string", "name", "port", "in", "path", "required", 1, "description",
			 "the port a server listens on at 127.0.0.1 inside the sandbox", "schema", "type", "integer",
			 "minimum", 1, "maximum", 65535, "name", "port_path", "in", "path", "required", 1,
			 "description", "the path (and query) the sandbox's server is asked for; may be empty",
			 "schema", "type", "string");
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
	if (strstr(r->path, "{file_path}") != NULL)
		json_object_set_new(op, "parameters", files_parameters(r->method));
	if (strstr(r->path, "{file_path}") != NULL)
		json_object_set_new(ok, "description", files_success(r->method));
	if (strstr(r->path, "{port_path}") != NULL) {
		json_object_set_new(op, "parameters", ports_parameters());
		json_object_set_new(ok, "description",
				    json_string("the sandbox server's own status, headers and body. Errors: 400 "
						"invalid_port, 404 sandbox_not_found, 413 body_too_large, 429 "
						"too_many_relays, 502 port_unreachable or port_bad_response, 504 "
						"port_timeout"));
	}
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
