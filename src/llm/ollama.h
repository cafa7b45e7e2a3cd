#pragma once
/*
 * Ollama's own chat API (POST /api/chat), for callers that must choose the context size: Ollama's
 * OpenAI-compatible route takes no options and silently truncates a conversation longer than its default
 * num_ctx (2048 or 4096 tokens), so that a model forgets its task without a word. Here: the model's limit
 * (POST /api/show, cached per backend and model), the context a request needs, the OpenAI request turned
 * into Ollama's (with options.num_ctx), and Ollama's NDJSON lines turned back into OpenAI chunks, so that
 * chat.c assembles them as any stream. shared/fixtures/ollama/CONTRACT.md is the protocol.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "llm/backend.h"

/* The context a request gets and what the model allows. */
struct lms_ollama_context {
	int64_t num_ctx; /* asked for: what the conversation needs, in powers of two, within the limit */
	int64_t limit;	 /* the model's (its GGUF context_length); 0 when /api/show did not say */
	int64_t needed;	 /* the estimate: the conversation's tokens and room for the answer */
	bool exceeded;	 /* needed > limit: Ollama will drop the oldest part of the conversation */
};

/* The model's context length from /api/show, asked once per backend and model (also when it failed: 0). */
int64_t lms_ollama_context_limit(struct lms_backends *bs, struct lms_backend *b, const char *model);

/* The context for a request whose JSON text is `request_len` bytes (a token is 3 bytes or more: an
 * estimate on the safe side), with `answer_tokens` of room for the answer. */
struct lms_ollama_context lms_ollama_context_for(size_t request_len, int64_t answer_tokens, int64_t limit);

/* The /api/chat body (a new object) for an OpenAI chat request, the model as Ollama names it. */
json_t *lms_ollama_request(const json_t *openai, const char *model, int64_t num_ctx);

/* One NDJSON line of /api/chat as an OpenAI chat.completion.chunk (a new object). The last line (done:
 * true) carries the finish_reason and the usage. *calls counts the tool calls seen (their indexes). An
 * error line ({"error": "..."}) stays an error object, which the assembly reports. */
json_t *lms_ollama_chunk(const json_t *line, unsigned *calls);
