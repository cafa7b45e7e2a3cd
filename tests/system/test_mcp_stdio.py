"""`lm-sandbox mcp`, the MCP server on standard input/output (docs/API-NOTES.md "MCP over stdio"), spawned as an MCP
host spawns it, against a real daemon: newline-delimited JSON-RPC bridged to POST /mcp (both eras), progress streamed
through as it comes, a cancellation or a host that goes away kills the command, a closed stdin ends it, no daemon
or a refused token is said clearly, messages bounded, nothing but messages on stdout. Then the official clients:
@modelcontextprotocol/sdk (v1) over stdio spawning `lm-sandbox mcp`, and @modelcontextprotocol/client (v2) over
Streamable HTTP with its default legacy handshake and with versionNegotiation auto (tests/compat/)."""

import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import host_pids_with, unique_marker, wait_pids_gone
from server_fixtures import clean_env, cut, wait_until
from test_mcp import server, start  # noqa: F401 (the fixtures: a daemon without a pool)

pytestmark = pytest.mark.require_root

MODERN = "2026-07-28"
TIMEOUT = 30
NODE_TIMEOUT = 180


class Bridge:
    """`lm-sandbox mcp` with pipes: send() a message a line, recv() the next line it writes (parsed)."""

    def __init__(self, lms_bin, *args, env=None, read=True):
        """read=False: nothing reads its stdout (a test that closes it: a pipe being read cannot be closed)."""
        self.proc = subprocess.Popen([str(lms_bin), "mcp", *map(str, args)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(env))
        self.lines = queue.Queue()
        self.raw = []
        self.err = []
        if read:
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines, self.raw), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, None, self.err), daemon=True).start()

    @staticmethod
    def _read(f, q, keep):
        for raw in f:
            keep.append(raw)
            if q is not None:
                q.put(raw)
        if q is not None:
            q.put(None)

    def send(self, msg):
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode() + b"\n"
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv(self, timeout=TIMEOUT):
        raw = self.lines.get(timeout=timeout)
        assert raw is not None, f"lm-sandbox mcp closed its stdout\n{self.stderr()}"
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw
        return json.loads(raw)

    def request(self, id, method, params=None):
        msg = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.recv()

    def nothing_more(self, timeout=0.5):
        try:
            raw = self.lines.get(timeout=timeout)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected output: {raw!r}")

    def close_stdin(self):
        self.proc.stdin.close()

    def wait(self, timeout=TIMEOUT):
        return self.proc.wait(timeout)

    def stderr(self):
        return b"".join(self.err).decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def bridges(lms_bin):
    made = []

    def bridge(*args, env=None, read=True):
        b = Bridge(lms_bin, *args, env=env, read=read)
        made.append(b)
        return b

    yield bridge
    for b in made:
        b.stop()


def result(resp, id):
    assert resp.get("jsonrpc") == "2.0" and resp.get("id") == id and "result" in resp, resp
    return resp["result"]


def tool(b, id, name, arguments):
    return result(b.request(id, "tools/call", {"name": name, "arguments": arguments}), id)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stdio_serves_the_daemons_tools_a_message_a_line(server, bridges):
    b = bridges("--url", server.url)
    init = result(b.request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                              "clientInfo": {"name": "t", "version": "1"}}), 1)
    assert init["serverInfo"]["name"] == "lm-sandbox" and "tools" in init["capabilities"], init
    assert init["protocolVersion"] == "2025-06-18"
    b.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    tools = {t["name"] for t in result(b.request(2, "tools/list"), 2)["tools"]}
    assert {"sandbox_create", "bash", "read_file", "write_file"} <= tools, tools
    sbx = tool(b, 3, "sandbox_create", {})["structuredContent"]["sandbox_id"]
    # A string id, unicode and a line end inside the content: all of it on one line each way.
    w = result(b.request("w", "tools/call", {"name": "write_file",
                                             "arguments": {"sandbox_id": sbx, "path": "a.txt",
                                                           "content": "héllo\nwörld\n"}}), "w")
    assert w["isError"] is False, w
    r = tool(b, 4, "bash", {"sandbox_id": sbx, "command": "cat /work/a.txt; id -u"})
    assert r["structuredContent"]["stdout"] == "héllo\nwörld\n0\n", r
    # The notification had no answer: every line on stdout was the answer to a request, in order.
    ids = [json.loads(line)["id"] for line in b.raw]
    assert ids == [1, 2, 3, "w", 4], ids
    b.close_stdin()
    assert b.wait() == 0, b.stderr()


def test_modern_requests_are_sent_with_the_headers_their_body_says(server, bridges):
    b = bridges("--url", server.url)
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}
    disc = result(b.request(1, "server/discover", {"_meta": meta}), 1)
    assert MODERN in disc["supportedVersions"] and disc["resultType"] == "complete", disc
    r = result(b.request(2, "tools/call", {"name": "bash", "arguments": {"command": "echo modern"}, "_meta": meta}),
               2)
    assert r["resultType"] == "complete" and r["structuredContent"]["stdout"] == "modern\n", r
    # A modern method the daemon does not have: its own 404 JSON-RPC error comes through.
    err = b.request(3, "ping", {"_meta": meta})
    assert err["id"] == 3 and err["error"]["code"] == -32601, err


def test_progress_notifications_come_as_the_command_runs(server, bridges):
    b = bridges("--url", server.url)
    b.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "bash", "arguments": {"command": "echo a; sleep 0.6; echo b; sleep 0.6; echo c"},
                       "_meta": {"progressToken": "p"}}})
    first = b.recv()
    arrived = time.monotonic()
    assert first["method"] == "notifications/progress" and first["params"]["progressToken"] == "p", first
    seen = [first]
    while "id" not in seen[-1]:
        seen.append(b.recv())
    done = time.monotonic()
    assert result(seen[-1], 7)["structuredContent"]["stdout"] == "a\nb\nc\n"
    assert len(seen) >= 3, seen
    assert done - arrived > 0.5, "the progress notifications were held back until the answer"


def test_a_cancellation_kills_the_command_and_the_next_message_is_served(server, bridges):
    b = bridges("--url", server.url)
    marker = unique_marker()
    b.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "bash", "arguments": {"command": f"sleep {marker}"}}})
    pids = wait_until(lambda: host_pids_with(marker), 15)
    assert pids, "the command never started"
    b.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "reason": "user"}})
    assert wait_pids_gone(pids, 10) == [], "the command outlived its cancellation"
    # A cancelled request gets no answer; the bridge goes on.
    assert result(b.request(2, "ping"), 2) == {}
    assert [json.loads(line)["id"] for line in b.raw] == [2]


def test_a_cancellation_of_a_waiting_message_drops_it(server, bridges):
    b = bridges("--url", server.url)
    b.send(b"".join(json.dumps(m).encode() + b"\n" for m in (
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "bash",
                                                                      "arguments": {"command": "sleep 0.5"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"})))
    assert result(b.recv(), 1)["isError"] is False
    assert result(b.recv(), 3) == {}


def test_end_of_input_answers_what_was_sent_then_exits(server, lms_bin):
    lines = b"".join(json.dumps(m).encode() + b"\n" for m in (
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "bash",
                                                                      "arguments": {"command": "echo piped"}}}))
    # The last line without its line end is a message too.
    lines += b'{"jsonrpc": "2.0", "id": 3, "method": "ping"}'
    p = subprocess.run([str(lms_bin), "mcp", "--url", server.url], input=lines, capture_output=True,
                       timeout=TIMEOUT, env=clean_env())
    assert p.returncode == 0, p.stderr
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert [m["id"] for m in out] == [1, 2, 3], out
    assert out[1]["result"]["structuredContent"]["stdout"] == "piped\n"
    assert b"serving MCP" in p.stderr


def test_a_host_that_goes_away_kills_the_command(server, bridges):
    b = bridges("--url", server.url, read=False)
    marker = unique_marker()
    b.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "bash", "arguments": {"command": f"sleep {marker}"}}})
    pids = wait_until(lambda: host_pids_with(marker), 15)
    assert pids, "the command never started"
    b.proc.stdout.close()  # the host's end of our stdout: as when the host dies
    assert wait_pids_gone(pids, 10) == [], "the command outlived its host"
    assert b.wait() != 0


def test_no_daemon_is_said_in_the_answer_and_on_stderr(bridges):
    url = f"http://127.0.0.1:{closed_port()}"
    b = bridges("--url", url)
    resp = b.request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                       "clientInfo": {"name": "t", "version": "1"}})
    assert resp["id"] == 1 and resp["error"]["code"] == -32000, resp
    msg = resp["error"]["message"]
    assert url in msg and "lm-sandbox serve" in msg, msg
    # A notification has no answer to carry the error: stderr alone says it.
    b.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    b.close_stdin()
    assert b.wait() == 0
    assert b.stderr().count("cannot reach the lm-sandbox daemon") == 2, b.stderr()
    assert all(json.loads(line).get("error") for line in b.raw)


def test_the_token_comes_from_the_environment_or_a_file(start, bridges, tmp_path):
    token = f"tok-{uuid.uuid4().hex}"
    s = start(env={"LM_SANDBOX_API_TOKEN": token})
    refused = bridges("--url", s.url).request(1, "ping")
    assert refused["error"]["code"] == -32000 and "LM_SANDBOX_API_TOKEN" in refused["error"]["message"], refused
    assert result(bridges("--url", s.url, env={"LM_SANDBOX_API_TOKEN": token}).request(1, "ping"), 1) == {}
    f = tmp_path / "token"
    f.write_text(token + "\n")
    assert result(bridges("--url", s.url, "--token-file", f).request(1, "ping"), 1) == {}


def test_bad_messages_get_errors_and_the_bridge_goes_on(server, bridges):
    b = bridges("--url", server.url)
    b.send(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
    err = b.recv()
    assert err["id"] is None and err["error"]["code"] == -32700, err
    b.send(b"\n   \n")  # blank lines are no messages
    b.send(b'{"jsonrpc": "2.0", "id": 2, "method": "ping"}\r\n')  # a CRLF line end is taken
    assert result(b.recv(), 2) == {}
    b.send(b'{"x": "' + b"a" * (9 << 20) + b'"}\n')
    err = b.recv()
    assert err["id"] is None and err["error"]["code"] == -32600 and "longer than" in err["error"]["message"], err
    assert result(b.request(3, "ping"), 3) == {}
    assert b.proc.poll() is None


def test_usage(lms_bin):
    p = subprocess.run([str(lms_bin), "mcp", "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0 and "--mcp-servers-config" in p.stdout, p
    p = subprocess.run([str(lms_bin), "mcp", "extra"], capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 2 and "lm-sandbox mcp --help" in p.stderr, p
    assert "mcp" in subprocess.run([str(lms_bin), "help"], capture_output=True, text=True).stdout


# ---- the official TypeScript clients ----------------------------------------------------------------------------

def node_or_skip():
    from test_compat_node import ensure_sdk
    node = shutil.which("node")
    if node is None:
        pytest.skip("NO NODE: the MCP client tests need Node.js (Debian: apt-get install nodejs npm)")
    ensure_sdk()
    return node


def run_client_test(node, test_file, env, server, tests):
    from test_compat_node import run_node_test
    env = dict(os.environ, NO_COLOR="1", NO_PROXY="127.0.0.1,localhost,::1", no_proxy="127.0.0.1,localhost,::1",
               **env)
    rc, out = run_node_test(node, test_file, env, NODE_TIMEOUT)
    assert rc == 0, f"{test_file} failed: exit {rc}\n{cut(out, 8000)}\n--- daemon ---\n{server.describe()}"
    assert f"# pass {tests}" in out, f"{test_file} did not run its {tests} tests:\n{cut(out, 4000)}"


def test_the_official_v1_sdk_over_stdio_spawning_lm_sandbox_mcp(start, lms_bin):
    node = node_or_skip()
    token = f"tok-{uuid.uuid4().hex}"
    s = start(env={"LM_SANDBOX_API_TOKEN": token})
    run_client_test(node, "mcp-stdio.test.mjs", {"LMS_BIN": str(lms_bin), "LMS_URL": s.url, "LMS_TOKEN": token}, s,
                    7)


def test_the_official_v2_client_over_streamable_http_both_eras(start):
    node = node_or_skip()
    token = f"tok-{uuid.uuid4().hex}"
    s = start(env={"LM_SANDBOX_API_TOKEN": token})
    run_client_test(node, "mcp-client-v2.test.mjs", {"LMS_MCP_URL": s.url + "/mcp", "LMS_TOKEN": token}, s, 2)
