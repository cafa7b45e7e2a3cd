"""Foreground commands of one persistent sandbox side by side (issue 11), as Docker's `exec` and E2B allow: two
POST /v1/sandboxes/{id}/exec at once both run, each with its own output, exit code and timeout; a sandbox runs at
most 16 at once (429 past that). No test here measures time: each command waits for a file that only another one,
running at the same moment, writes."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from server_fixtures import assert_error, assert_exec_result, daemons, show

pytestmark = pytest.mark.require_root

MAX_COMMANDS = 16  # API-NOTES.md, "Persistent sandboxes"


@pytest.fixture
def server(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path) as start:
        yield start()


@pytest.fixture
def sbx(server):
    r = server.post("/v1/sandboxes", {})
    assert r.status_code == 201, show(r)
    return r.json()["id"]


def wait_for(path):
    return f"while [ ! -e {path} ]; do sleep 0.02; done"


def test_two_commands_run_at_once_each_with_its_own_output_and_status(server, sbx):
    def run(me, other, code):
        return server.post(f"/v1/sandboxes/{sbx}/exec", {
            "cmd": f"touch /work/{me}; {wait_for('/work/' + other)}; echo out-{me}; echo err-{me} >&2; exit {code}",
            "timeout_ms": 20000})

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(run, "a", "b", 3), pool.submit(run, "b", "a", 4)
        a, b = assert_exec_result(a.result()), assert_exec_result(b.result())
    # Each could only end once the other had started: both ran at once.
    assert (a["stdout"], a["stderr"], a["exit_code"], a["timed_out"]) == ("out-a\n", "err-a\n", 3, False), a
    assert (b["stdout"], b["stderr"], b["exit_code"], b["timed_out"]) == ("out-b\n", "err-b\n", 4, False), b


def test_a_timeout_ends_its_own_command_only(server, sbx):
    def waiter():
        return server.post(f"/v1/sandboxes/{sbx}/exec",
                           {"cmd": f"touch /work/waiting; {wait_for('/work/go')}; echo done", "timeout_ms": 30000})

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(waiter)
        slow = assert_exec_result(server.post(f"/v1/sandboxes/{sbx}/exec", {
            "cmd": f"{wait_for('/work/waiting')}; sleep 60", "timeout_ms": 1000}))
        assert slow["timed_out"] and slow["exit_code"] == 137, slow
        assert not waiting.done()
        go = assert_exec_result(server.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": "touch /work/go"}))
        assert go["exit_code"] == 0, go
        done = assert_exec_result(waiting.result())
    assert done["stdout"] == "done\n" and not done["timed_out"], done


def test_commands_at_once_are_capped_per_sandbox(server, sbx):
    def hold(i):
        return server.post(f"/v1/sandboxes/{sbx}/exec",
                           {"cmd": f"touch /work/held-{i}; {wait_for('/work/release')}; echo {i}",
                            "timeout_ms": 60000}, timeout=90)

    with ThreadPoolExecutor(MAX_COMMANDS) as pool:
        held = [pool.submit(hold, i) for i in range(MAX_COMMANDS)]
        # Once every one has started (a background process sees their files), one more is refused ...
        r = server.post(f"/v1/sandboxes/{sbx}/exec", {
            "cmd": f"n=0; while [ $n -lt {MAX_COMMANDS} ]; do n=$(ls /work | grep -c held-); sleep 0.02; done",
            "background": True})
        assert r.status_code == 202, show(r)
        waited = server.get(f"/v1/sandboxes/{sbx}/processes/{r.json()['process_id']}",
                            params={"wait": "true", "timeout_ms": "60000"}).json()
        assert waited["state"] == "exited" and waited["exit_code"] == 0, waited
        extra = server.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": "true"})
        assert_error(extra, 429)
        assert "Retry-After" in extra.headers and str(MAX_COMMANDS) in extra.json()["error"]["message"]
        # ... while the files API still works, and releases them all.
        put = server.request("PUT", f"/v1/sandboxes/{sbx}/files/work/release", data=b"")
        assert put.status_code == 201, show(put)
        outputs = sorted(assert_exec_result(f.result(timeout=90))["stdout"] for f in held)
    assert outputs == sorted(f"{i}\n" for i in range(MAX_COMMANDS))
    # Once they have ended, commands run again.
    assert assert_exec_result(server.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": "echo again"}))["stdout"] == "again\n"
