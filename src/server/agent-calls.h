#pragma once
/*
 * Tool calls that a local model wrote into its message text instead of tool_calls (API.md, "Agent"): a
 * bare JSON object, a fenced ```json block, or <tool_call>…</tool_call> tags (Qwen's and Hermes'
 * template). Recognised here so that the agent loop runs them and records them as proper tool calls.
 */
#include <jansson.h>
#include <stdbool.h>

/* The calls in `content`, as OpenAI tool_calls ([{"id", "type": "function", "function": {"name",
 * "arguments": "<JSON text>"}}], ids call_<first_id>, call_<first_id + 1>, …), or NULL when the text holds
 * none. An object counts only when it names a tool that `known` says exists, so that a model showing
 * JSON to the user is not taken for a call. */
json_t *lms_agent_content_calls(const char *content, bool (*known)(const char *name), unsigned first_id);
