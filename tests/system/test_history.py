"""The audit log (API.md, "Agent": GET /v1/sandboxes/{id}/history): every tool call made in a sandbox through any
route (exec, background processes, file writes and deletes, fork, MCP tool calls, the agent's steps), newest last,
bounded, and kept on disk with the sandbox so that it survives a restart and a torn last record."""

import re
import signal

import pytest

from server_fixtures import assert_error, daemons, show

pytestmark = pytest.mark.require_root

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
ENTRY_FIELDS = {"at", "via", "tool", "arguments", "exit_code", "status", "duration_ms", "bytes"}


@pytest.fixture
def start(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path, base_args=("--pool-size", "0")) as start:
        yield start


def create(s):
    r = s.post("/v1/sandboxes", {})
    assert r.status_code == 201, show(r)
    return r.json()["id"]


def history(s, sid, **params):
    r = s.get(f"/v1/sandboxes/{sid}/history", params=params)
    assert r.status_code == 200, show(r)
    data = r.json()["data"]
    for e in data:
        assert set(e) == ENTRY_FIELDS and RFC3339.fullmatch(e["at"]), e
    return data


def mcp_call(s, name, arguments):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    r = s.post("/mcp", body, headers={"Accept": "application/json, text/event-stream",
                                      "MCP-Protocol-Version": "2025-06-18"})
    assert r.status_code == 200, show(r)
    return r


def test_every_route_is_logged_newest_last(start):
    s = start()
    sid = create(s)
    r = s.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "echo hello; exit 3"})
    assert r.status_code == 200 and r.json()["exit_code"] == 3, show(r)
    r = s.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "sleep 60", "background": True})
    assert r.status_code == 202, show(r)
    r = s.request("PUT", f"/v1/sandboxes/{sid}/files/work/a.txt", data=b"12345")
    assert r.status_code == 201, show(r)
    r = s.request("DELETE", f"/v1/sandboxes/{sid}/files/work/a.txt")
    assert r.status_code == 204, show(r)
    r = s.request("DELETE", f"/v1/sandboxes/{sid}/files/work/none")
    assert r.status_code == 404, show(r)
    r = s.post(f"/v1/sandboxes/{sid}/fork", {})
    forked = r.json()["id"] if r.status_code == 201 else None
    mcp_call(s, "bash", {"sandbox_id": sid, "command": "echo via-mcp"})
    got = history(s, sid)
    tools = [(e["via"], e["tool"]) for e in got]
    expect = [("http", "exec"), ("http", "process"), ("http", "write_file"), ("http", "delete_file"),
              ("http", "delete_file")] + ([("http", "fork")] if forked else []) + [("mcp", "bash")]
    assert tools == expect, got
    exec_entry = got[0]
    assert exec_entry["arguments"] == {"command": "echo hello; exit 3"} and exec_entry["exit_code"] == 3
    assert exec_entry["status"] == "error" and exec_entry["bytes"] == len("hello\n"), exec_entry
    assert got[1]["arguments"] == {"command": "sleep 60"} and got[1]["status"] == "started", got[1]
    assert got[2]["arguments"] == {"path": "/work/a.txt"} and got[2]["bytes"] == 5 and got[2]["status"] == "ok"
    assert got[4]["status"] == "error", got[4]
    if forked:
        assert got[5]["arguments"] == {"path": forked}, got[5]
    assert got[-1]["arguments"] == {"command": "echo via-mcp"} and got[-1]["exit_code"] == 0, got[-1]
    assert all(e["duration_ms"] >= 0 for e in got)
    assert [e["tool"] for e in history(s, sid, limit=2)] == [t for _, t in expect[-2:]]
    # A sandbox has only its own calls; a forked one starts empty.
    if forked:
        assert history(s, forked) == []


def test_limit_is_checked_and_an_unknown_sandbox_is_404(start):
    s = start()
    sid = create(s)
    for bad in ("0", "-1", "x", "100000"):
        assert_error(s.get(f"/v1/sandboxes/{sid}/history", params={"limit": bad}), 400, "invalid_request")
    assert_error(s.get("/v1/sandboxes/sbx_0000000000000000/history"), 404, "sandbox_not_found")


def test_the_log_survives_a_crash_and_a_torn_last_record_is_ignored(start):
    s = start()
    sid = create(s)
    for i in range(3):
        assert s.post(f"/v1/sandboxes/{sid}/exec", {"cmd": f"echo {i}"}).status_code == 200
    path = s.state_dir / "sandboxes" / sid / "history.jsonl"
    assert len(path.read_text().splitlines()) == 3
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait(30)
    with open(path, "a") as f:  # a record cut short by the crash
        f.write('{"at": "2026-01-01T00:00:00Z", "via": "ht')
    again = start(state=s.state_dir)
    got = history(again, sid)
    assert [e["arguments"]["command"] for e in got] == ["echo 0", "echo 1", "echo 2"], got
    assert again.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "echo 3"}).status_code == 200
    assert [e["arguments"]["command"] for e in history(again, sid)] == ["echo 0", "echo 1", "echo 2", "echo 3"]
    assert all(line.endswith("}") for line in path.read_text().splitlines())


def test_the_log_is_bounded(start):
    s = start()
    sid = create(s)
    path_dir = s.state_dir / "sandboxes" / sid
    # Writes are the cheapest calls: 1000 kept, the file compacted at 2000 records.
    sess = s.session()
    for i in range(2005):
        r = s.request("PUT", f"/v1/sandboxes/{sid}/files/work/f{i % 3}", data=b"x", session=sess)
        assert r.status_code == 201, show(r)
    got = history(s, sid)
    assert len(got) == 1000 and got[-1]["arguments"]["path"] == f"/work/f{2004 % 3}"
    assert len((path_dir / "history.jsonl").read_text().splitlines()) <= 1005
