// The official MCP TypeScript SDK (npm `@modelcontextprotocol/sdk`, pinned in package.json), unchanged, against
// lm-sandbox's POST /mcp over Streamable HTTP. Run by tests/system/test_mcp.py, which starts the daemon and sets:
//   LMS_MCP_URL  the endpoint, e.g. http://127.0.0.1:PORT/mcp
//   LMS_TOKEN    the API token (optional)
// By hand: cd tests/compat && npm ci && LMS_MCP_URL=... node --test mcp-sdk.test.mjs
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { assertProgress, assertSandboxed, text } from './mcp-checks.mjs';

const url = process.env.LMS_MCP_URL;
assert.ok(url, 'LMS_MCP_URL is not set (see the top of this file)');
const token = process.env.LMS_TOKEN;

const client = new Client({ name: 'lm-sandbox-compat', version: '1.0.0' });
let sandboxId;

before(async () => {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : undefined,
  });
  await client.connect(transport);
});

after(async () => {
  await client.close();
});

test('initialize reports the server and its tools capability, statelessly', () => {
  assert.equal(client.getServerVersion()?.name, 'lm-sandbox');
  assert.ok(client.getServerCapabilities()?.tools, JSON.stringify(client.getServerCapabilities()));
});

test('tools/list lists the seven tools with input and output schemas', async () => {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  assert.deepEqual(names, ['bash', 'edit_file', 'list_files', 'read_file', 'sandbox_create', 'sandbox_delete',
    'write_file']);
  for (const t of tools) {
    assert.equal(t.inputSchema.type, 'object', t.name);
    assert.equal(t.outputSchema?.type, 'object', t.name);
    assert.ok(t.description.length > 20, t.name);
  }
});

test('sandbox_create, then bash runs in it', async () => {
  const created = await client.callTool({ name: 'sandbox_create', arguments: {} });
  assert.equal(created.isError, false, text(created));
  sandboxId = created.structuredContent.sandbox_id;
  assert.match(sandboxId, /^sbx_[0-9a-f]{16}$/);
  const r = await client.callTool({ name: 'bash', arguments: { sandbox_id: sandboxId, command: 'echo hello; id -u' } });
  assert.equal(r.isError, false, text(r));
  assert.equal(r.structuredContent.exit_code, 0);
  assert.equal(r.structuredContent.stdout, 'hello\n0\n');
  assert.match(text(r), /exit code 0/);
});

test('a failing command is a result with isError, not a protocol error', async () => {
  const r = await client.callTool({ name: 'bash', arguments: { sandbox_id: sandboxId, command: 'echo oops >&2; exit 3' } });
  assert.equal(r.isError, true);
  assert.equal(r.structuredContent.exit_code, 3);
  assert.equal(r.structuredContent.stderr, 'oops\n');
});

test('write_file then read_file gives the content back, edit_file changes it once', async () => {
  const content = 'line one\nline two\nünïcode ✓\n';
  const w = await client.callTool({ name: 'write_file', arguments: { sandbox_id: sandboxId, path: '/work/sub/a.txt', content } });
  assert.equal(w.isError, false, text(w));
  const r = await client.callTool({ name: 'read_file', arguments: { sandbox_id: sandboxId, path: 'sub/a.txt' } });
  assert.equal(r.isError, false, text(r));
  assert.equal(r.structuredContent.stdout, content);
  const e = await client.callTool({ name: 'edit_file', arguments: { sandbox_id: sandboxId, path: 'sub/a.txt', old: 'two', new: '2' } });
  assert.equal(e.isError, false, text(e));
  const again = await client.callTool({ name: 'read_file', arguments: { sandbox_id: sandboxId, path: 'sub/a.txt', offset: 2, limit: 1 } });
  assert.equal(again.structuredContent.stdout, 'line 2\n');
  const l = await client.callTool({ name: 'list_files', arguments: { sandbox_id: sandboxId, path: '/work/sub' } });
  assert.match(l.structuredContent.stdout, /a\.txt/);
});

test('the call is sandboxed: /etc/shadow unreadable, uid 0 inside maps to no root outside', async () => {
  await assertSandboxed(client, sandboxId);
});

test('progress notifications arrive while a long command runs', async () => {
  await assertProgress((params, onprogress) => client.callTool(params, undefined, { onprogress }), sandboxId);
});

test('sandbox_delete ends it; a later call says it is gone', async () => {
  const d = await client.callTool({ name: 'sandbox_delete', arguments: { sandbox_id: sandboxId } });
  assert.equal(d.isError, false, text(d));
  const r = await client.callTool({ name: 'bash', arguments: { sandbox_id: sandboxId, command: 'true' } });
  assert.equal(r.isError, true);
  assert.match(text(r), /does not exist/);
});
