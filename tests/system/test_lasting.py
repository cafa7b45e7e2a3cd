"""The process model that lasts (docs/ARCHITECTURE.md): a sandbox's PID 1 that takes many commands, driven
through the real spawner without HTTP (tests/driver/spawner-driver.c). One-shot sandboxes are the special case
that every other test exercises; these check what a lasting sandbox adds: files and background processes kept
between commands, a command that returns when it exits whatever it left behind, a timeout that kills its own
session only, isolation between sandboxes, and a destroy that leaves nothing."""

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import host_pids_with, lms_bin_path, unique_marker, wait_pids_gone
from server_fixtures import wait_until

pytestmark = pytest.mark.require_root


class Driver:
    def __init__(self, lms_bin):
        exe = Path(lms_bin).parent / "tests" / "driver" / "lms-spawner-driver"
        if not os.access(exe, os.X_OK):
            pytest.skip(f"NO DRIVER: {exe} is missing; build it (make)")
        self.proc = subprocess.Popen([str(exe), str(lms_bin)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the driver ended without answering {request}"
        return json.loads(line)

    def result(self, **request):
        answer = self.ask(**request)
        assert "result" in answer, f"{request} failed: {answer}"
        return answer["result"]

    def sh(self, sandbox, cmd, **fields):
        return self.result(op="exec", sandbox=sandbox, request={"cmd": cmd, **fields})

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture
def driver():
    d = Driver(lms_bin_path())
    yield d
    d.close()


def test_files_stay_between_commands(driver):
    driver.result(op="create", sandbox=1)
    assert driver.sh(1, "echo kept > /work/f; mkdir -p /tmp/d && echo too > /tmp/d/g")["exit_code"] == 0
    assert driver.sh(1, "cat /work/f /tmp/d/g")["stdout"] == "kept\ntoo\n"
    driver.result(op="destroy", sandbox=1)


def test_a_command_returns_when_it_exits_and_its_background_process_stays(driver):
    marker = unique_marker()
    driver.result(op="create", sandbox=1)
    # The background sleep holds the command's stdout: the call must not wait for it.
    first = driver.sh(1, f"sleep {marker} & echo $!", timeout_ms=20000)
    assert first["exit_code"] == 0 and not first["timed_out"], first
    pid = int(first["stdout"])
    later = driver.sh(1, f"kill -0 {pid} && echo alive; cat /proc/{pid}/cmdline | tr '\\0' ' '")
    assert later["stdout"] == f"alive\nsleep {marker} "
    assert len(host_pids_with(marker)) == 1
    driver.result(op="destroy", sandbox=1)


def test_a_timeout_kills_its_session_and_spares_an_earlier_background_process(driver):
    kept, killed = unique_marker(), unique_marker()
    driver.result(op="create", sandbox=1)
    driver.sh(1, f"sleep {kept} >/dev/null 2>&1 &")
    # set -m puts the inner sleep in a process group of its own, as job control does: the session still ends.
    slow = driver.sh(1, f"set -m; sleep {killed} & sleep {killed}", timeout_ms=300)
    assert slow["timed_out"] and slow["signal"] == "SIGKILL", slow
    assert wait_pids_gone(host_pids_with(killed), 10) == []
    assert len(host_pids_with(kept)) == 1
    assert driver.sh(1, "echo still usable")["stdout"] == "still usable\n"
    driver.result(op="destroy", sandbox=1)


def test_sandboxes_see_nothing_of_each_other(driver):
    marker = unique_marker()
    driver.result(op="create", sandbox=1)
    driver.result(op="create", sandbox=2)
    driver.sh(1, f"echo mine > /work/secret; sleep {marker} >/dev/null 2>&1 &")
    other = driver.sh(2, "cat /work/secret")
    assert other["exit_code"] == 1 and "No such file" in other["stderr"], other
    # Every process sandbox 2 can see, by command line: not sandbox 1's sleep.
    seen = driver.sh(2, "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done")["stdout"]
    assert f"sleep {marker} " not in seen.splitlines(), seen
    assert f"sleep {marker} " in driver.sh(1, "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done")[
        "stdout"].splitlines()
    assert driver.sh(1, "cat /work/secret")["stdout"] == "mine\n"
    driver.result(op="destroy", sandbox=1)
    driver.result(op="destroy", sandbox=2)


def cgroup_dirs(pid):
    dirs = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "lms-" not in path:
            continue
        for mount in (Path("/sys/fs/cgroup") / c for c in ([controllers] if controllers else [""])):
            if (mount / path.lstrip("/")).is_dir():
                dirs.append(mount / path.lstrip("/"))
    return dirs


def test_destroy_kills_every_process_and_removes_the_cgroup(driver):
    marker = unique_marker()
    driver.result(op="create", sandbox=1)
    driver.sh(1, f"setsid sh -c 'sleep {marker} & sleep {marker}' >/dev/null 2>&1 &"
                 f" nohup sleep {marker} >/dev/null 2>&1 &")
    # The background commands may start after their parent returned: wait for all three.
    pids = wait_until(lambda: (lambda p: p if len(p) == 3 else None)(host_pids_with(marker)), 10)
    assert pids, host_pids_with(marker)
    groups = cgroup_dirs(pids[0])
    assert groups, "the sandbox has no cgroup of its own"
    driver.result(op="destroy", sandbox=1)
    # When destroy has answered, nothing of the sandbox is left.
    assert [p for p in pids if Path(f"/proc/{p}").exists()] == []
    assert [g for g in groups if g.exists()] == []


def test_unknown_and_repeated_ids_are_refused(driver):
    gone = driver.ask(op="exec", sandbox=99, request={"cmd": "true"})
    assert gone["error"]["code"] == "not_found", gone
    assert driver.ask(op="destroy", sandbox=99)["error"]["code"] == "not_found"
    driver.result(op="create", sandbox=5)
    assert "exists already" in driver.ask(op="create", sandbox=5)["error"]["message"]
    driver.result(op="destroy", sandbox=5)
    assert driver.ask(op="exec", sandbox=5, request={"cmd": "true"})["error"]["code"] == "not_found"


def test_one_shot_jobs_and_lasting_sandboxes_share_the_spawner(driver):
    driver.result(op="create", sandbox=1)
    driver.sh(1, "echo lasting > /work/f")
    one = driver.result(op="run", request={"cmd": "cat /work/f"})
    assert one["exit_code"] == 1 and "No such file" in one["stderr"], one
    assert driver.sh(1, "cat /work/f")["stdout"] == "lasting\n"
    driver.result(op="destroy", sandbox=1)


def test_a_command_that_cannot_start_is_the_shells_127_and_the_sandbox_goes_on(driver):
    driver.result(op="create", sandbox=1)
    missing = driver.result(op="exec", sandbox=1, request={"argv": ["no-such-program"]})
    assert missing["exit_code"] == 127 and "no-such-program" in missing["stderr"]
    bad_cwd = driver.ask(op="exec", sandbox=1, request={"cmd": "true", "cwd": "/proc/1/nonexistent"})
    assert "error" in bad_cwd and "/proc/1" in bad_cwd["error"]["message"], bad_cwd
    assert driver.sh(1, "pwd", cwd="/work/sub")["stdout"] == "/work/sub\n"
    driver.result(op="destroy", sandbox=1)


def read_log_until(proc, done, timeout):
    """The daemon-style JSON lines of proc's stderr, read until done(line) holds or timeout seconds pass."""
    lines, deadline, pending = [], time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], deadline - time.monotonic())
        if not ready:
            break
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            if raw.startswith(b"{"):
                lines.append(json.loads(raw))
                if done(lines[-1]):
                    return lines
    return lines


@pytest.fixture
def world_dir():
    """A directory every user can reach (pytest's tmp_path sits below a 0700 one)."""
    d = Path(tempfile.mkdtemp(prefix="lms-test-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def unprivileged_driver(world_dir, *args):
    """The driver as nobody, with copies of the binaries that nobody can run."""
    lms_bin = lms_bin_path()
    driver = Path(lms_bin).parent / "tests" / "driver" / "lms-spawner-driver"
    for exe in (lms_bin, driver):
        shutil.copy(exe, world_dir / exe.name)
        os.chmod(world_dir / exe.name, 0o755)
    return subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             str(world_dir / driver.name), str(world_dir / lms_bin.name), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def failing_pool(world_dir, *args):
    """The log of an unprivileged driver's pool up to its "stopped refilling" line, and a job's answer."""
    proc = unprivileged_driver(world_dir, *args)
    try:
        logged = read_log_until(proc, lambda line: line["msg"].startswith("pool: stopped refilling"), 30)
        proc.stdin.write(json.dumps({"op": "run", "request": {"argv": ["true"]}}).encode() + b"\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    if "result" in answer:
        pytest.skip("this machine lets an unprivileged user make sandboxes: nothing fails to log")
    return logged, answer


def test_a_pool_that_cannot_prepare_says_why(world_dir):
    """Unprivileged and without a delegated cgroup, no sandbox can be made: each pool worker's failure reaches
    the log with its cause, the pool says once that it stopped refilling, and a job still gets the cause."""
    logged, answer = failing_pool(world_dir, "4")
    failures = [line for line in logged if line["msg"] == "pool: preparing a sandbox failed"]
    assert len(failures) >= 3 and all(line["level"] == "warning" for line in failures), logged
    # The pool's cause is the job's cause: the same missing piece, named in each.
    cause = answer["error"]["message"]
    assert all(line["error"].split(":")[0] == cause.split(":")[0] for line in failures), (failures, cause)
    assert "delegated" in failures[0]["error"] or "user namespace" in failures[0]["error"], failures[0]
    assert logged[-1]["msg"].startswith("pool: stopped refilling") and logged[-1]["level"] == "error", logged


def test_the_log_level_reaches_the_spawner(world_dir):
    """At --log-level error the spawner (an exec'd helper, started with no environment) drops the warnings
    and keeps the error."""
    logged, _ = failing_pool(world_dir, "4", "error")
    assert [line["level"] for line in logged] == ["error"], logged
