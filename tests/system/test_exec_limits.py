"""Per-command limits inside a persistent sandbox (issue 11): `limits.memory_mb` and `limits.pids` of one
POST /v1/sandboxes/{id}/exec (or of a background process) bound that command and its children only, in a group
of their own below the sandbox's; the group goes when the command ends, and with it whatever it left running."""

import re
from pathlib import Path

import pytest

from server_fixtures import assert_exec_result, daemons, show

pytestmark = pytest.mark.require_root

OWN_GROUP = re.compile(r"^\d+:[^:]*:(/\.\.)?/x\d+$", re.M)  # a line of /proc/self/cgroup in a command's own group


@pytest.fixture
def start(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path) as start:
        yield start


def create(s, **body):
    r = s.post("/v1/sandboxes", body)
    assert r.status_code == 201, show(r)
    return r.json()["id"]


def sh(s, sbx, cmd, **fields):
    return assert_exec_result(s.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": cmd, **fields}))


def command_groups(outer):
    """The groups below each sandbox group (lms-*) inside the outer cgroup: the commands' own (x<N>), and on v2
    the init leaf, which is not one."""
    found = []
    for d in outer.dirs:
        for sandbox in Path(d).glob("**/lms-*"):
            found += [p.name for p in sandbox.iterdir() if p.is_dir() and p.name != "init"]
    return found


def test_a_memory_hog_with_its_own_limit_dies_alone(outer_cgroup, start):
    s = start(cgroup=outer_cgroup)
    sbx = create(s, limits={"memory_mb": 512})
    r = s.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": "sleep 1000", "background": True})
    assert r.status_code == 202, show(r)
    server = r.json()
    # The command runs in its own group (the sandbox's cgroup namespace shows it below its root on v1, beside
    # PID 1's init leaf, "/../x3", on v2) ...
    mine = sh(s, sbx, "cat /proc/self/cgroup", limits={"memory_mb": 64})
    assert OWN_GROUP.search(mine["stdout"]), mine
    # ... and 200 MiB fits the sandbox's 512 but not the command's 64.
    hog = sh(s, sbx, "python3 -c 'x = bytearray(200 << 20); print(len(x))'", limits={"memory_mb": 64})
    assert hog["oom_killed"] and hog["exit_code"] == 137, hog
    fits = sh(s, sbx, "python3 -c 'x = bytearray(200 << 20); print(len(x))'")
    assert fits["exit_code"] == 0 and not fits["oom_killed"], fits
    # The earlier background process lived on through both.
    proc = s.get(f"/v1/sandboxes/{sbx}/processes/{server['process_id']}").json()
    assert proc["state"] == "running", proc
    assert command_groups(outer_cgroup) == []


def test_a_fork_bomb_with_its_own_pids_limit_leaves_the_sandbox_usable(outer_cgroup, start):
    s = start(cgroup=outer_cgroup)
    sbx = create(s, limits={"pids": 256})
    bomb = sh(s, sbx, "exec -a lms-bomb bash -c 'f() { f | f & }; f; sleep 1'", limits={"pids": 16},
              timeout_ms=10000)
    assert bomb["pids_limit_hit"] and not bomb["timed_out"], bomb
    # What the bomb left behind went with its group: nothing of it is left, and the sandbox has all its
    # processes for the next command.
    left = sh(s, sbx, "ps -e -o args= | grep -c '[l]ms-bomb' || true")
    assert left["stdout"] == "0\n", left
    many = sh(s, sbx, "for i in $(seq 100); do sleep 2 & done; wait; echo done")
    assert many["stdout"] == "done\n" and not many["pids_limit_hit"], many
    assert command_groups(outer_cgroup) == []


def test_a_background_process_keeps_its_own_limit_until_it_ends(outer_cgroup, start):
    s = start(cgroup=outer_cgroup)
    sbx = create(s, limits={"memory_mb": 512})
    r = s.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": "while [ ! -e /work/go ]; do sleep 0.05; done; "
                                                     "python3 -c 'x = bytearray(200 << 20)'",
                                             "background": True, "limits": {"memory_mb": 64}})
    assert r.status_code == 202, show(r)
    proc = r.json()
    assert len(set(command_groups(outer_cgroup))) == 1  # in each hierarchy of v1
    sh(s, sbx, "touch /work/go")
    done = s.get(f"/v1/sandboxes/{sbx}/processes/{proc['process_id']}",
                 params={"wait": "true", "timeout_ms": "20000"}).json()
    assert done["state"] == "exited" and done["exit_code"] == 137, done
    # Its group goes at the next call into the sandbox after it ended.
    sh(s, sbx, "true")
    assert command_groups(outer_cgroup) == []


def test_limits_above_the_sandbox_are_clamped_to_it(start):
    s = start()
    sbx = create(s, limits={"memory_mb": 128, "pids": 64})
    r = sh(s, sbx, "cat /proc/self/cgroup", limits={"memory_mb": 4096, "pids": 100000})
    # Clamped to the sandbox's: no group of its own (it would be the sandbox's limits again).
    assert r["exit_code"] == 0 and not OWN_GROUP.search(r["stdout"]), r


def test_a_command_that_cannot_start_in_its_group_says_so(start):
    s = start()
    sbx = create(s)
    r = assert_exec_result(s.post(f"/v1/sandboxes/{sbx}/exec",
                                  {"argv": ["no-such-program"], "limits": {"memory_mb": 64}}))
    assert r["exit_code"] == 127 and "no-such-program" in r["stderr"], r
    assert sh(s, sbx, "echo ok", limits={"pids": 8})["stdout"] == "ok\n"
