"""Persistent sandboxes over HTTP (API.md, "Persistent sandboxes"): POST/GET/DELETE /v1/sandboxes[/{id}] and
POST /v1/sandboxes/{id}/exec, against the real daemon. The process model under them is test_lasting.py's."""

import re
import time

import pytest

from conftest import host_pids_with, unique_marker, wait_pids_gone
from server_fixtures import (
    assert_error,
    assert_exec_result,
    cgroup_dirs_of,
    daemons,
    show,
    wait_until,
)

pytestmark = pytest.mark.require_root

SANDBOX_FIELDS = {"id", "image", "state", "created_at", "last_used_at", "expires_at", "ttl_s", "limits", "network",
                  "gpu", "metadata"}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture
def start(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path) as start:
        yield start


@pytest.fixture
def server(start):
    return start()


def create(s, **body):
    r = s.post("/v1/sandboxes", body)
    assert r.status_code == 201, show(r)
    sbx = r.json()
    assert set(sbx) == SANDBOX_FIELDS, sbx
    return sbx


def sh(s, sbx, cmd, **fields):
    return assert_exec_result(s.post(f"/v1/sandboxes/{sbx['id']}/exec", {"cmd": cmd, **fields}))


def test_a_sandbox_is_made_listed_and_read(server):
    sbx = create(server, metadata={"owner": "alice", "task": "t1"}, ttl_s=120)
    assert re.fullmatch(r"sbx_[0-9a-f]{16}", sbx["id"]) and sbx["state"] == "running", sbx
    assert sbx["image"] == "host" and sbx["network"] is False and sbx["gpu"] is False and sbx["ttl_s"] == 120
    assert all(RFC3339.fullmatch(sbx[k]) for k in ("created_at", "last_used_at", "expires_at")), sbx
    assert sbx["metadata"] == {"owner": "alice", "task": "t1"}
    other = create(server, metadata={"owner": "bob"})
    got = server.get(f"/v1/sandboxes/{sbx['id']}")
    assert got.status_code == 200 and got.json()["id"] == sbx["id"], show(got)
    ids = {x["id"] for x in server.get("/v1/sandboxes").json()["data"]}
    assert ids == {sbx["id"], other["id"]}
    mine = server.get("/v1/sandboxes", params={"metadata.owner": "alice"}).json()["data"]
    assert [x["id"] for x in mine] == [sbx["id"]]
    assert server.get("/v1/sandboxes", params={"metadata.owner": "carol"}).json()["data"] == []


def test_files_env_and_a_background_server_stay_between_commands(server):
    marker = unique_marker()
    sbx = create(server, env={"GREETING": "hello", "OVERRIDE": "sandbox"})
    first = sh(server, sbx, f"echo $GREETING > /work/note; sleep {marker} & echo started", timeout_ms=20000)
    # The call returns when the command exits, though its background sleep holds its stdout.
    assert first["stdout"] == "started\n" and not first["timed_out"], first
    later = sh(server, sbx, f"cat /work/note; echo $OVERRIDE; pgrep -fx 'sleep {marker}' >/dev/null && echo alive",
               env={"OVERRIDE": "command"})
    assert later["stdout"] == "hello\ncommand\nalive\n", later
    assert len(host_pids_with(marker)) == 1
    # A small server in the background answers a later command on the sandbox's own loopback.
    sh(server, sbx, "python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &")
    got = sh(server, sbx, "for i in $(seq 100); do python3 -c \"import urllib.request as u;"
                          "print(u.urlopen('http://127.0.0.1:8000/note').read().decode(), end='')\" 2>/dev/null "
                          "&& break; sleep 0.1; done", timeout_ms=20000)
    assert got["stdout"] == "hello\n", got


def test_a_command_streams_in_its_sandbox(server):
    sbx = create(server)
    sh(server, sbx, "echo kept > /work/f")
    sse = server.sse({"cmd": "cat /work/f; echo err >&2", "stream": True}, path=f"/v1/sandboxes/{sbx['id']}/exec")
    events = list(sse.events())
    assert ("stdout", {"data": "kept\n"}) in events, events
    assert events[-1][0] == "exit" and events[-1][1]["exit_code"] == 0, events


def test_delete_kills_what_runs_and_leaves_nothing(server):
    marker = unique_marker()
    sbx = create(server)
    sh(server, sbx, f"setsid sleep {marker} >/dev/null 2>&1 & nohup sleep {marker} >/dev/null 2>&1 &")
    blocker = server.raw_request("POST", f"/v1/sandboxes/{sbx['id']}/exec",
                                 {"argv": ["sleep", marker], "timeout_ms": 60000},
                                 headers={"Content-Type": "application/json"})
    try:
        pids = wait_until(lambda: (lambda p: p if len(p) == 3 else None)(host_pids_with(marker)), 10)
        assert pids, host_pids_with(marker)
        groups = list(cgroup_dirs_of(pids[0]).values())
        t = time.monotonic()
        r = server.request("DELETE", f"/v1/sandboxes/{sbx['id']}")
        assert r.status_code == 204 and r.content == b"", show(r)
        assert time.monotonic() - t < 10, "DELETE waited for the running command instead of killing it"
        assert host_pids_with(marker) == [], "processes of a deleted sandbox are left"
        assert [g for g in groups if g and g.exists() and "lms-" in str(g)] == []
    finally:
        blocker.close()
    gone = assert_error(server.get(f"/v1/sandboxes/{sbx['id']}"), 404, "sandbox_not_found")
    assert gone["reason"] == "deleted", gone
    again = assert_error(server.post(f"/v1/sandboxes/{sbx['id']}/exec", {"cmd": "true"}), 404, "sandbox_not_found")
    assert again["reason"] == "deleted"
    assert_error(server.request("DELETE", f"/v1/sandboxes/{sbx['id']}"), 404, "sandbox_not_found")


def test_an_idle_sandbox_expires(start):
    s = start("--max-ttl-s", "60")
    sbx = create(s, ttl_s=1)
    gone = wait_until(lambda: s.get(f"/v1/sandboxes/{sbx['id']}").status_code == 404, 10)
    assert gone, "a sandbox with ttl_s 1 was still there after 10 s"
    err = assert_error(s.get(f"/v1/sandboxes/{sbx['id']}"), 404, "sandbox_not_found")
    assert err["reason"] == "expired", err
    assert_error(s.post("/v1/sandboxes", {"ttl_s": 61}), 400)


def test_a_running_command_keeps_its_sandbox_alive(start):
    s = start("--max-ttl-s", "60")
    sbx = create(s, ttl_s=2)
    # The command runs longer than the idle time: in use, the sandbox does not expire under it (and its idle
    # time starts again when it ends, which leaves 2 s for the look below, on a busy machine too).
    r = sh(s, sbx, "sleep 3.5; echo done", timeout_ms=10000)
    assert r["stdout"] == "done\n", r
    assert s.get(f"/v1/sandboxes/{sbx['id']}").status_code == 200


def test_the_number_of_sandboxes_is_capped(start):
    s = start("--max-sandboxes", "2")
    a, _ = create(s), create(s)
    r = s.post("/v1/sandboxes", {})
    assert_error(r, 429, "too_many_requests")
    assert int(r.headers["Retry-After"]) >= 1, show(r)
    assert s.request("DELETE", f"/v1/sandboxes/{a['id']}").status_code == 204
    create(s)


def test_bad_requests_are_refused_with_the_field(server):
    assert_error(server.post("/v1/sandboxes", {"metadata": {"k": 1}}), 400)
    assert_error(server.post("/v1/sandboxes", {"ttl_s": "long"}), 400)
    assert_error(server.post("/v1/sandboxes", {"limits": {"memory_mb": "lots"}}), 400)
    assert_error(server.post("/v1/sandboxes", {"image": "nope"}), 404)
    assert_error(server.post("/v1/sandboxes", {"network": True}), 403)
    unknown = assert_error(server.get("/v1/sandboxes/sbx_0000000000000000"), 404, "sandbox_not_found")
    assert "reason" not in unknown
    sbx = create(server, limits={"memory_mb": 64})
    assert sbx["limits"]["memory_mb"] == 64


def test_a_memory_hog_and_a_fork_bomb_stop_at_the_sandbox_limits(outer_cgroup, start):
    # The daemon in an outer cgroup: should the sandbox's own limits fail, the host's still hold.
    s = start(cgroup=outer_cgroup)
    sbx = create(s, limits={"memory_mb": 64, "pids": 32})
    hog = sh(s, sbx, "python3 -c 'x = bytearray(300 << 20)'")
    assert hog["oom_killed"] and hog["exit_code"] == 137, hog
    # The bomb's processes are its session's: its timeout ends every one of them.
    bomb = sh(s, sbx, "f() { f | f & }; f; sleep 10", timeout_ms=2000)
    assert bomb["timed_out"], bomb
    # The sandbox goes on, with its files, for the next command.
    assert sh(s, sbx, "echo after > /work/f; cat /work/f")["stdout"] == "after\n"


def test_fifty_sandboxes_at_once(start):
    s = start("--max-sandboxes", "50")
    made = [create(s, metadata={"n": str(i)}) for i in range(50)]
    for i, sbx in enumerate(made):
        sh(s, sbx, f"echo {i} > /work/n")
    assert all(sh(s, sbx, "cat /work/n")["stdout"] == f"{i}\n" for i, sbx in enumerate(made))
    assert len(s.get("/v1/sandboxes").json()["data"]) == 50
    assert_error(s.post("/v1/sandboxes", {}), 429)
    for sbx in made:
        assert s.request("DELETE", f"/v1/sandboxes/{sbx['id']}").status_code == 204
    assert s.get("/v1/sandboxes").json()["data"] == []


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_daemon_leaves_no_sandbox_behind(start, how):
    """A daemon that ends ends its sandboxes' processes and cgroups (their files stay for the next start:
    test_survival.py)."""
    import signal
    s = start()
    marker = unique_marker()
    sbx = create(s)
    sh(s, sbx, f"setsid sleep {marker} >/dev/null 2>&1 &")
    pids = wait_until(lambda: host_pids_with(marker), 10)
    assert pids
    groups = [g for g in cgroup_dirs_of(pids[0]).values() if g and "lms-" in str(g)]
    assert groups, cgroup_dirs_of(pids[0])
    s.proc.send_signal(getattr(signal, how))
    s.proc.wait(30)
    assert wait_pids_gone(pids, 10) == [], f"a sandbox's process outlived its daemon ({how})"
    assert wait_until(lambda: not any(g.exists() for g in groups), 10), f"cgroups left: {groups}"
