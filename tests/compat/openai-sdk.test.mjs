// The official OpenAI Node SDK (npm `openai`, pinned in package.json), unchanged, against lm-sandbox's LLM gateway.
// Run by tests/system/test_compat_node.py, which starts a fake backend and the daemon and sets:
//   LMS_URL           the gateway's base URL, e.g. http://127.0.0.1:PORT/v1
//   LMS_TOKEN         the API token (optional; "unused" is sent when it is empty)
//   LMS_EXPECT_MODEL  the model ids /v1/models must list, comma-separated; the first one is chatted with
//   LMS_EXPECT_TEXT   the text every answer of that model must have
// By hand: cd tests/compat && npm ci && LMS_URL=... LMS_EXPECT_MODEL=... LMS_EXPECT_TEXT=... node --test
import assert from 'node:assert/strict';
import { test } from 'node:test';

import OpenAI from 'openai';

function need(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set (see the top of this file)`);
  return value;
}

const baseURL = need('LMS_URL');
const expectedModels = need('LMS_EXPECT_MODEL')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const model = expectedModels[0];
const expectedText = process.env.LMS_EXPECT_TEXT ?? '';
assert.ok(expectedText, 'LMS_EXPECT_TEXT is not set (see the top of this file)');

// No retries: a failure must show the gateway's first answer, not the SDK's third try.
const client = new OpenAI({ baseURL, apiKey: process.env.LMS_TOKEN || 'unused', maxRetries: 0, timeout: 20_000 });
const messages = [{ role: 'user', content: 'hi' }];

test('models.list() lists the backend models', async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    assert.equal(typeof m.id, 'string', `a model without a string id: ${JSON.stringify(m)}`);
    ids.push(m.id);
  }
  for (const want of expectedModels) {
    assert.ok(ids.includes(want), `${want} is not among the listed models: ${JSON.stringify(ids)}`);
  }
});

test('chat.completions.create() answers', async () => {
  const completion = await client.chat.completions.create({ model, messages });
  assert.ok(Array.isArray(completion.choices) && completion.choices.length > 0, JSON.stringify(completion));
  assert.equal(completion.choices[0].message.content, expectedText, JSON.stringify(completion));
});

test('chat.completions.create({stream: true}) streams the answer in pieces', async () => {
  const stream = await client.chat.completions.create({ model, messages, stream: true });
  let text = '';
  let chunks = 0;
  let withContent = 0;
  for await (const chunk of stream) {
    chunks += 1;
    const piece = chunk.choices?.[0]?.delta?.content;
    if (piece) {
      text += piece;
      withContent += 1;
    }
  }
  assert.equal(text, expectedText, `reassembled from ${chunks} chunks`);
  assert.ok(withContent >= 2, `the answer came in ${withContent} content chunk(s) of ${chunks}: not streamed`);
});

test('an unknown model is rejected with a 404 APIError', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: `nosuch/model-${process.pid}`, messages }),
    (err) => {
      assert.ok(err instanceof OpenAI.APIError, `not an APIError: ${err}`);
      assert.equal(err.status, 404, `${err}`);
      assert.ok(err instanceof OpenAI.NotFoundError, `not a NotFoundError: ${err}`);
      return true;
    },
  );
});
