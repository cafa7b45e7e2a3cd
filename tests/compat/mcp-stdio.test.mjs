// The official MCP TypeScript SDK (npm `@modelcontextprotocol/sdk` v1, pinned in package.json), unchanged, over
// stdio: it spawns `lm-sandbox mcp` as any MCP host does (llama-server's --mcp-servers-config, a desktop
// assistant's mcpServers), which bridges to the daemon's POST /mcp. Run by tests/system/test_mcp_stdio.py, which
// starts the daemon and sets:
//   LMS_BIN    the lm-sandbox binary
//   LMS_URL    the daemon, e.g. http://127.0.0.1:PORT
//   LMS_TOKEN  the API token (optional)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

import { assertProgress, assertSandboxed, text } from './mcp-checks.mjs';

const bin = process.env.LMS_BIN;
const url = process.env.LMS_URL;
assert.ok(bin && url, 'LMS_BIN and LMS_URL are not set (see the top of this file)');

const client = new Client({ name: 'lm-sandbox-compat-stdio', version: '1.0.0' });
const stderr = [];
let sandboxId;

before(async () => {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  if (process.env.LMS_TOKEN) env.LM_SANDBOX_API_TOKEN = process.env.LMS_TOKEN;
  const transport = new StdioClientTransport({ command: bin, args: ['mcp', '--url', url], env, stderr: 'pipe' });
  transport.stderr?.on('data', (d) => stderr.push(d.toString()));
  await client.connect(transport);
});

after(async () => {
  await client.close();
});

test('initialize over stdio reaches the daemon', () => {
  assert.equal(client.getServerVersion()?.name, 'lm-sandbox');
  assert.ok(client.getServerCapabilities()?.tools);
});

test('tools/list lists the sandbox tools', async () => {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  for (const n of ['sandbox_create', 'bash', 'read_file', 'write_file', 'sandbox_delete']) assert.ok(names.includes(n), n);
});

test('sandbox_create, bash, write_file and read_file back', async () => {
  const created = await client.callTool({ name: 'sandbox_create', arguments: {} });
  assert.equal(created.isError, false, text(created));
  sandboxId = created.structuredContent.sandbox_id;
  const r = await client.callTool({ name: 'bash', arguments: { sandbox_id: sandboxId, command: 'echo hi > /work/f.txt; echo done' } });
  assert.equal(r.isError, false, text(r));
  assert.equal(r.structuredContent.stdout, 'done\n');
  const back = await client.callTool({ name: 'read_file', arguments: { sandbox_id: sandboxId, path: 'f.txt' } });
  assert.equal(back.structuredContent.stdout, 'hi\n');
  const content = 'line one\nünïcode ✓\n';
  await client.callTool({ name: 'write_file', arguments: { sandbox_id: sandboxId, path: 'g.txt', content } });
  const g = await client.callTool({ name: 'read_file', arguments: { sandbox_id: sandboxId, path: '/work/g.txt' } });
  assert.equal(g.structuredContent.stdout, content);
});

test('the call is sandboxed: /etc/shadow unreadable, uid 0 inside is not root outside', async () => {
  await assertSandboxed(client, sandboxId);
});

test('progress notifications come through stdio while the command runs', async () => {
  await assertProgress((params, onprogress) => client.callTool(params, undefined, { onprogress }), sandboxId);
});

test('an aborted call is cancelled, and the next one is answered', async () => {
  const controller = new AbortController();
  const pending = client.callTool({ name: 'bash', arguments: { sandbox_id: sandboxId, command: 'sleep 30' } }, undefined,
    { signal: controller.signal });
  setTimeout(() => controller.abort('test'), 500);
  await assert.rejects(pending);
  const started = Date.now();
  const r = await client.callTool({ name: 'bash', arguments: { sandbox_id: sandboxId, command: 'echo next' } });
  assert.equal(r.structuredContent.stdout, 'next\n');
  assert.ok(Date.now() - started < 10000, 'the cancelled command held the bridge');
});

test('sandbox_delete, and nothing but messages came on stdout', async () => {
  const d = await client.callTool({ name: 'sandbox_delete', arguments: { sandbox_id: sandboxId } });
  assert.equal(d.isError, false, text(d));
  assert.match(stderr.join(''), /serving MCP/);
});
