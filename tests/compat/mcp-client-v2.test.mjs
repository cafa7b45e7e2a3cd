// The official MCP TypeScript client v2 (npm `@modelcontextprotocol/client`, pinned in package.json), unchanged,
// against lm-sandbox's POST /mcp over Streamable HTTP, in both eras: its default (the legacy `initialize`
// handshake) and `versionNegotiation: {mode: 'auto'}` (it probes with server/discover and speaks the 2026-07-28
// revision: per-request _meta and the MCP-Protocol-Version/Mcp-Method/Mcp-Name headers). Run by
// tests/system/test_mcp_stdio.py, which starts the daemon and sets:
//   LMS_MCP_URL  the endpoint, e.g. http://127.0.0.1:PORT/mcp
//   LMS_TOKEN    the API token (optional)
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

import { assertProgress, assertSandboxed, text } from './mcp-checks.mjs';

const url = process.env.LMS_MCP_URL;
assert.ok(url, 'LMS_MCP_URL is not set (see the top of this file)');
const token = process.env.LMS_TOKEN;

async function connect(options) {
  const client = new Client({ name: 'lm-sandbox-compat-v2', version: '1.0.0' }, options);
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : undefined,
  });
  await client.connect(transport);
  return client;
}

async function session(client, era) {
  assert.equal(client.getServerVersion()?.name, 'lm-sandbox', era);
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  assert.deepEqual(names, ['bash', 'edit_file', 'list_files', 'read_file', 'sandbox_create', 'sandbox_delete',
    'write_file']);
  const created = await client.callTool({ name: 'sandbox_create', arguments: {} });
  assert.equal(created.isError, false, text(created));
  const sandboxId = created.structuredContent.sandbox_id;
  assert.match(sandboxId, /^sbx_[0-9a-f]{16}$/);
  const r = await client.callTool({ name: 'bash', arguments: { sandbox_id: sandboxId, command: `echo ${era} > /work/era.txt; echo ok` } });
  assert.equal(r.isError, false, text(r));
  assert.equal(r.structuredContent.stdout, 'ok\n');
  const back = await client.callTool({ name: 'read_file', arguments: { sandbox_id: sandboxId, path: 'era.txt' } });
  assert.equal(back.structuredContent.stdout, `${era}\n`);
  const failing = await client.callTool({ name: 'bash', arguments: { sandbox_id: sandboxId, command: 'exit 3' } });
  assert.equal(failing.isError, true);
  assert.equal(failing.structuredContent.exit_code, 3);
  await assertSandboxed(client, sandboxId);
  await assertProgress((params, onprogress) => client.callTool(params, { onprogress }), sandboxId);
  const d = await client.callTool({ name: 'sandbox_delete', arguments: { sandbox_id: sandboxId } });
  assert.equal(d.isError, false, text(d));
  await client.close();
}

test('the default: the legacy initialize handshake, served statelessly', async () => {
  const client = await connect();
  assert.notEqual(client.getNegotiatedProtocolVersion?.(), '2026-07-28');
  await session(client, 'legacy');
});

test("versionNegotiation: {mode: 'auto'} finds the 2026-07-28 revision and speaks it", async () => {
  const client = await connect({ versionNegotiation: { mode: 'auto' } });
  assert.equal(client.getNegotiatedProtocolVersion(), '2026-07-28');
  await session(client, 'modern');
});
