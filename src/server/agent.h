#pragma once
/*
 * The agent loop of POST /v1/agent (API.md, "Agent"): the model gets the sandbox's five tools in OpenAI
 * tool format, each tool call it makes runs in the run's persistent sandbox (mcp-tools.c, the tools the
 * MCP server serves), the results go back to it, until it answers without a tool call, max_steps model
 * calls are made, or timeout_ms has passed. The model is reached through the gateway's chat service
 * (llm/chat.h), streamed. No HTTP in here: events go to a callback, failures come back as the API's error
 * object with its status (routes-agent.c replies with them).
 */
#include <jansson.h>

struct lms_server;

/* One event of the run (assistant, tool_call, tool_output, tool_result): `data` is taken. */
struct lms_agent_sink {
	void (*event)(void *cls, const char *name, json_t *data);
	void *cls;
};

/* A request checked: the body of POST /v1/agent, or NULL with the 400 error object in *error. */
struct lms_agent;
struct lms_agent *lms_agent_parse(struct lms_server *s, const json_t *body, json_t **error);
/* Whether the client asked for Server-Sent Events. */
int lms_agent_streamed(const struct lms_agent *a);
void lms_agent_free(struct lms_agent *a);

/*
 * Runs it: the result object ({sandbox_id, steps, finish_reason, content, messages, usage}), or NULL with
 * *status and *error (the API's error object) when the run could not start or the model failed (a
 * backend error, an unknown model, a sandbox that does not exist). When hangup_fd hangs up (the client
 * left) the run ends, its running command killed: NULL with *status 499. sink may be NULL.
 */
json_t *lms_agent_run(struct lms_agent *a, int hangup_fd, const struct lms_agent_sink *sink, unsigned *status,
		      json_t **error);
