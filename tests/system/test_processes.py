"""Background processes of persistent sandboxes as objects (API.md, "Persistent sandboxes"): an exec with
"background": true answers 202 at once; the process's combined output is kept (the latest bytes past the cap, at
absolute offsets), read by offset or followed as Server-Sent Events; signals, standard input and wait; its life
never depends on a client's connection, and it ends with its sandbox."""

import json
import socket

import pytest

from conftest import host_pids_with, unique_marker, wait_pids_gone
from server_fixtures import assert_error, assert_exec_result, daemons, show, wait_until

pytestmark = pytest.mark.require_root

PROC_FIELDS = {"process_id", "pid", "cmd", "state", "started_at", "output_bytes", "exit_code", "signal", "ended_at"}


@pytest.fixture
def server(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path) as start:
        yield start()


@pytest.fixture
def sbx(server):
    r = server.post("/v1/sandboxes", {})
    assert r.status_code == 201, show(r)
    return r.json()["id"]


def background(s, sbx, cmd, **fields):
    r = s.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": cmd, "background": True, **fields})
    assert r.status_code == 202, show(r)
    proc = r.json()
    assert set(proc) == PROC_FIELDS and proc["process_id"].startswith("proc_") and proc["pid"] > 0, proc
    return proc


def waited(s, sbx, ref):
    r = s.get(f"/v1/sandboxes/{sbx}/processes/{ref}", params={"wait": "true", "timeout_ms": "20000"})
    assert r.status_code == 200, show(r)
    return r.json()


def output(s, sbx, ref, **params):
    r = s.get(f"/v1/sandboxes/{sbx}/processes/{ref}/output", params=params)
    assert r.status_code == 200, show(r)
    return r


def test_a_background_process_answers_at_once_and_keeps_its_output_and_status(server, sbx):
    # It waits for a file that only a later exec writes: the 202 cannot have waited for it.
    proc = background(server, sbx, "while [ ! -e /work/go ]; do sleep 0.05; done; seq 5; echo oops >&2; exit 3")
    assert proc["state"] == "running"
    assert assert_exec_result(server.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": "touch /work/go"}))["exit_code"] == 0
    done = waited(server, sbx, proc["process_id"])
    assert done["state"] == "exited" and done["exit_code"] == 3 and done["signal"] is None, done
    r = output(server, sbx, proc["process_id"])
    assert r.content == b"1\n2\n3\n4\n5\noops\n"
    assert r.headers["Lms-Output-Offset"] == "0" and r.headers["Lms-Output-Next-Offset"] == str(len(r.content))
    assert r.headers["Lms-Output-Complete"] == "true" and r.headers["Lms-Output-Dropped"] == "0"
    # By offset, and by pid as well as by id.
    assert output(server, sbx, str(proc["pid"]), offset=6).content == b"4\n5\noops\n"
    listed = server.get(f"/v1/sandboxes/{sbx}/processes").json()["data"]
    assert [p["process_id"] for p in listed] == [proc["process_id"]] and listed[0]["output_bytes"] == len(r.content)


def test_output_past_the_cap_keeps_the_latest_bytes_at_their_offsets(server, sbx):
    proc = background(server, sbx, "seq 100000", limits={"output_bytes": 4096})
    assert waited(server, sbx, proc["process_id"])["exit_code"] == 0
    everything = "".join(f"{i}\n" for i in range(1, 100001)).encode()
    r = output(server, sbx, proc["process_id"], offset=0)
    assert r.content == everything[-4096:]
    assert int(r.headers["Lms-Output-Total"]) == len(everything)
    assert int(r.headers["Lms-Output-Offset"]) == len(everything) - 4096
    assert int(r.headers["Lms-Output-Dropped"]) == len(everything) - 4096
    tail = output(server, sbx, proc["process_id"], offset=len(everything) - 7)
    assert tail.content == b"100000\n" and tail.headers["Lms-Output-Dropped"] == "0"
    assert output(server, sbx, proc["process_id"], offset=len(everything) + 50).content == b""


def test_follow_streams_the_output_as_it_comes_then_the_exit(server, sbx):
    proc = background(server, sbx, "for i in 1 2 3; do echo line $i; sleep 0.1; done; printf 'caf\\xc3'; printf '\\xa9'")
    sse = server.sse(None, path=f"/v1/sandboxes/{sbx}/processes/{proc['process_id']}/output?follow=true")
    events = list(sse.events())
    assert events[-1][0] == "exit" and events[-1][1]["exit_code"] == 0, events
    text = "".join(data["data"] for name, data in events if name == "output")
    # A character split across two writes arrives whole.
    assert text == "line 1\nline 2\nline 3\ncafé", events
    assert [d["offset"] for n, d in events if n == "output"][0] == 0


def test_stdin_signals_and_their_errors(server, sbx):
    cat = background(server, sbx, "cat")
    r = server.request("POST", f"/v1/sandboxes/{sbx}/processes/{cat['process_id']}/stdin", data=b"hello ")
    assert r.status_code == 204, show(r)
    assert wait_until(lambda: output(server, sbx, cat["process_id"]).content == b"hello ", 10)
    r = server.request("POST", f"/v1/sandboxes/{sbx}/processes/{cat['pid']}/stdin", params={"close": "true"},
                       data=b"world")
    assert r.status_code == 204, show(r)
    done = waited(server, sbx, cat["process_id"])
    assert done["exit_code"] == 0 and output(server, sbx, cat["process_id"]).content == b"hello world"
    assert_error(server.request("POST", f"/v1/sandboxes/{sbx}/processes/{cat['process_id']}/stdin", data=b"x"), 409)

    sleeper = background(server, sbx, "exec sleep 1000")
    r = server.post(f"/v1/sandboxes/{sbx}/processes/{sleeper['process_id']}/signal", {"signal": "SIGINT"})
    assert r.status_code == 202, show(r)
    done = waited(server, sbx, sleeper["process_id"])
    assert done["signal"] == "SIGINT" and done["exit_code"] == 130, done
    assert_error(server.post(f"/v1/sandboxes/{sbx}/processes/{sleeper['process_id']}/signal", {"signal": "TERM"}),
                 409, "conflict")
    assert_error(server.post(f"/v1/sandboxes/{sbx}/processes/{sleeper['process_id']}/signal", {"signal": "SIGNOPE"}),
                 400)
    assert_error(server.get(f"/v1/sandboxes/{sbx}/processes/proc_0000000000000000"), 404, "process_not_found")
    assert_error(server.get(f"/v1/sandboxes/{sbx}/processes/99999/output"), 404, "process_not_found")
    assert_error(server.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": "true", "background": True, "stream": True}), 400)
    assert_error(server.get(f"/v1/sandboxes/{sbx}/processes/1/output", params={"offset": "-1"}), 400)


def test_a_process_outlives_its_client_and_commands_run_beside_it(server, sbx):
    marker = unique_marker()
    body = json.dumps({"cmd": f"sleep 0.3; echo {marker} > /work/after", "background": True}).encode()
    # The client that started it goes away at once, before reading the answer.
    with socket.create_connection((server.host, server.port)) as c:
        c.sendall(b"POST /v1/sandboxes/%s/exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (sbx.encode(), len(body)) + body)
    sleeper = background(server, sbx, f"exec sleep {marker}")
    # A foreground command runs while both live, and its timeout kills only its own session.
    r = assert_exec_result(server.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": "sleep 10", "timeout_ms": 300}))
    assert r["timed_out"], r
    assert wait_until(lambda: assert_exec_result(server.post(
        f"/v1/sandboxes/{sbx}/exec", {"cmd": "cat /work/after 2>/dev/null"}))["stdout"] == f"{marker}\n", 10)
    assert waited_state(server, sbx, sleeper["process_id"]) == "running"


def waited_state(s, sbx, ref):
    return s.get(f"/v1/sandboxes/{sbx}/processes/{ref}").json()["state"]


def test_deleting_the_sandbox_ends_its_processes(server, sbx):
    marker = unique_marker()
    background(server, sbx, f"exec sleep {marker}")
    pids = wait_until(lambda: host_pids_with(marker), 10)
    assert pids
    assert server.request("DELETE", f"/v1/sandboxes/{sbx}").status_code == 204
    assert wait_pids_gone(pids, 10) == []
    gone = assert_error(server.get(f"/v1/sandboxes/{sbx}/processes"), 404, "sandbox_not_found")
    assert gone["reason"] == "deleted"


def test_a_program_that_cannot_start_is_an_exited_process_with_the_shells_status(server, sbx):
    r = server.post(f"/v1/sandboxes/{sbx}/exec", {"argv": ["no-such-program-here"], "background": True})
    assert r.status_code == 202, show(r)
    proc = r.json()
    assert proc["state"] == "exited" and proc["exit_code"] == 127 and proc["pid"] == 0, proc
    assert b"no-such-program-here" in output(server, sbx, proc["process_id"]).content


def test_a_request_stdin_is_the_processes_input_then_its_end(server, sbx):
    proc = background(server, sbx, "cat; echo end", stdin="given\n")
    assert waited(server, sbx, proc["process_id"])["exit_code"] == 0
    assert output(server, sbx, proc["process_id"]).content == b"given\nend\n"
