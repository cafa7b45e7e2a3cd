// What every MCP client test asserts the same way, whichever client and transport it drives.
import assert from 'node:assert/strict';

// The text blocks of a tool result, joined.
export function text(result) {
  return result.content.filter((c) => c.type === 'text').map((c) => c.text).join('');
}

// The call ran in the sandbox: /etc/shadow is unreadable, and uid 0 inside is an unprivileged uid outside.
export async function assertSandboxed(client, sandboxId) {
  const shadow = await client.callTool({ name: 'read_file', arguments: { sandbox_id: sandboxId, path: '/etc/shadow' } });
  assert.equal(shadow.isError, true, text(shadow));
  assert.match(shadow.structuredContent.stderr, /Permission denied|No such file/);
  const map = await client.callTool({ name: 'bash', arguments: { sandbox_id: sandboxId, command: 'id -u; cat /proc/self/uid_map' } });
  const [uid, mapLine] = map.structuredContent.stdout.trim().split('\n');
  assert.equal(uid, '0');
  const [inside, outside] = mapLine.trim().split(/\s+/).map(Number);
  assert.equal(inside, 0);
  assert.notEqual(outside, 0, `uid 0 inside is uid ${outside} outside: ${mapLine}`);
}

// Progress notifications arrive, in order, while a command runs for a second. `call(params, onprogress)` is the
// client's callTool with its progress option (v1 and v2 take it in different places).
export async function assertProgress(call, sandboxId) {
  const seen = [];
  const r = await call(
    { name: 'bash', arguments: { sandbox_id: sandboxId, command: 'for i in 1 2 3; do echo $i; sleep 0.4; done' } },
    (p) => seen.push(p),
  );
  assert.equal(r.structuredContent.stdout, '1\n2\n3\n');
  assert.ok(seen.length >= 2, `progress notifications: ${JSON.stringify(seen)}`);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i].progress > seen[i - 1].progress);
}
