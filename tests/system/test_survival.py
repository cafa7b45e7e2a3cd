"""Persistent sandboxes across the daemon's restarts and crashes, and forks (API.md, "Persistent sandboxes"):
files, metadata and idle time survive SIGTERM, kill -9 of the daemon and kill -9 of the spawner; processes do
not; a crash at any instant leaves each sandbox whole or cleanly gone; DELETE leaves nothing on disk or mounted.
The on-disk layout is docs/ARCHITECTURE.md's "State on disk"."""

import json
import os
import random
import signal
import subprocess
import threading

import pytest

from conftest import host_pids_with, unique_marker, wait_pids_gone
from server_fixtures import assert_error, assert_exec_result, daemons, mounts_under, show, wait_until

pytestmark = pytest.mark.require_root


@pytest.fixture
def start(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path) as start:
        yield start


def create(s, **body):
    r = s.post("/v1/sandboxes", body)
    assert r.status_code == 201, show(r)
    return r.json()


def sh(s, sbx, cmd, **fields):
    return assert_exec_result(s.post(f"/v1/sandboxes/{sbx['id']}/exec", {"cmd": cmd, **fields}))


def stored(s):
    """The sandbox directories under the daemon's state dir."""
    d = s.state_dir / "sandboxes"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def spawner_of(s):
    """The daemon's spawner: its child process named lms-spawner."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if int(fields[1]) == s.pid and comm == "lms-spawner":
            return int(entry)
    return None


WRITE_STATE = ("mkdir -p /work/dir/sub && echo work > /work/dir/sub/f && chmod 0700 /work/dir/sub/f && "
               "ln -s /etc/hostname /work/link && echo tmp > /tmp/t && echo shm > /dev/shm/s")
READ_STATE = "cat /work/dir/sub/f /tmp/t /dev/shm/s; stat -c %a /work/dir/sub/f; readlink /work/link"
STATE_OUT = "work\ntmp\nshm\n700\n/etc/hostname\n"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_files_metadata_and_idle_time_survive_a_restart_but_processes_do_not(start, how):
    s = start()
    marker = unique_marker()
    sbx = create(s, metadata={"owner": "alice"}, ttl_s=900, limits={"memory_mb": 128})
    sh(s, sbx, WRITE_STATE)
    sh(s, sbx, f"setsid sleep {marker} >/dev/null 2>&1 &")
    pids = wait_until(lambda: host_pids_with(marker), 10)
    assert pids
    s.proc.send_signal(getattr(signal, how))
    s.proc.wait(30)
    assert wait_pids_gone(pids, 10) == [], f"a sandbox's process outlived its daemon ({how})"

    again = start(state=s.state_dir)
    got = again.get(f"/v1/sandboxes/{sbx['id']}")
    assert got.status_code == 200, show(got)
    kept = got.json()
    for field in ("id", "created_at", "ttl_s", "metadata", "image", "limits", "network", "gpu"):
        assert kept[field] == sbx[field], (field, kept, sbx)
    assert [x["id"] for x in again.get("/v1/sandboxes", params={"metadata.owner": "alice"}).json()["data"]] == \
        [sbx["id"]]
    r = sh(again, sbx, READ_STATE + f"; pgrep -fx 'sleep {marker}' || echo no-sleep")
    assert r["stdout"] == STATE_OUT + "no-sleep\n", r
    assert host_pids_with(marker) == []
    # The sandbox's own limits came back with it.
    r = sh(again, sbx, "python3 -c 'b = bytearray(200 << 20); b[::4096] = b\"x\" * len(b[::4096])'")
    assert r["oom_killed"], r


def test_a_killed_spawner_is_replaced_and_sandboxes_keep_their_files(start):
    s = start()
    marker = unique_marker()
    sbx = create(s)
    sh(s, sbx, WRITE_STATE + f"; setsid sleep {marker} >/dev/null 2>&1 &")
    pids = wait_until(lambda: host_pids_with(marker), 10)
    spawner = spawner_of(s)
    assert spawner and pids
    os.kill(spawner, signal.SIGKILL)
    assert s.wait_log(lambda o: o.get("msg", "").startswith("spawner: it died"), 10), s.describe()
    assert wait_pids_gone(pids, 10) == []
    # Every route works again on the new spawner: the sandbox (a new PID 1 on its files), and one-shot execs.
    r = wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(
        s.post(f"/v1/sandboxes/{sbx['id']}/exec", {"cmd": READ_STATE})), 10)
    assert r and r.json()["stdout"] == STATE_OUT, r and show(r)
    assert assert_exec_result(s.exec({"cmd": "echo one-shot"}))["stdout"] == "one-shot\n"
    replacement = spawner_of(s)
    assert replacement and replacement != spawner
    assert s.alive()


def test_what_a_crash_left_half_made_is_removed_at_start(start):
    s = start()
    state = s.state_dir
    s.stop(keep_state=True)
    base = state / "sandboxes"
    # The states a crash can leave (sandbox-store.h): the tmpfs mounted but no record yet, a record still
    # being written, a record whose files are gone (the host restarted), a record that cannot be read.
    no_record, writing, no_files, garbage = (base / f"sbx_{n:016x}" for n in (1, 2, 3, 4))
    for d in (no_record, writing, garbage):
        (d / "fs").mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "crashed", str(d / "fs")], check=True)
        (d / "fs" / "work").mkdir()
    (writing / "sandbox.json.tmp").write_text('{"version": 1, "id": ')
    (no_files / "fs").mkdir(parents=True)
    (no_files / "sandbox.json").write_text(json.dumps({"version": 1}))
    (garbage / "sandbox.json").write_text("{not json")
    foreign = base / "notes.txt"
    foreign.write_text("not the daemon's")

    again = start(state=state)
    assert again.get("/v1/sandboxes").json()["data"] == []
    assert stored(again) == ["notes.txt"], "the daemon removed a file that was not its own, or left a half sandbox"
    assert mounts_under(base) == [], "a crashed run's mounts are left"
    removed = {o.get("sandbox") for o in again.logs() if o.get("msg") == "sandbox: removed what a previous run left"}
    assert removed == {d.name for d in (no_record, writing, no_files, garbage)}, again.stderr_text()


def test_kill_9_at_any_instant_leaves_each_sandbox_whole_or_gone(start):
    s = start("--max-sandboxes", "64")
    state = s.state_dir
    rng = random.Random(os.getpid())
    made = {}
    for round_ in range(4):
        stop = threading.Event()

        def churn(s=s):
            while not stop.is_set():
                try:
                    r = s.post("/v1/sandboxes", {"metadata": {"round": str(round_)}}, timeout=10)
                    if r.status_code == 201:
                        sid = r.json()["id"]
                        # Written whole or not at all (rename), so that a command cut short by the kill
                        # cannot leave a torn file: what is asserted is the sandbox, not the command.
                        write = f"echo {sid} > /work/me.new && mv /work/me.new /work/me"
                        e = s.post(f"/v1/sandboxes/{sid}/exec", {"cmd": write}, timeout=10)
                        made[sid] = e.status_code == 200
                        if rng.random() < 0.3:
                            s.request("DELETE", f"/v1/sandboxes/{sid}", timeout=10)
                except Exception:  # the daemon is being killed under it
                    return

        workers = [threading.Thread(target=churn) for _ in range(3)]
        for w in workers:
            w.start()
        wait_until(lambda: len(made) > 2 * round_ + 2, 20)
        threading.Event().wait(rng.random() * 0.2)  # a random instant, not a synchronisation
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(30)
        stop.set()
        for w in workers:
            w.join(30)
        s = start("--max-sandboxes", "64", state=state)
        listed = {x["id"] for x in s.get("/v1/sandboxes").json()["data"]}
        # Whole: listed, with its files; or gone: no directory, no mount.
        assert set(stored(s)) == listed, (stored(s), listed)
        assert len(mounts_under(state / "sandboxes")) == len(listed)
        for sid in listed:
            r = s.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "cat /work/me 2>/dev/null || echo none"})
            assert r.status_code == 200, show(r)
            assert r.json()["stdout"] in (f"{sid}\n", "none\n"), r.json()
            if made.get(sid):
                assert r.json()["stdout"] == f"{sid}\n", f"{sid} lost a file written before the crash"
    for sid in {x["id"] for x in s.get("/v1/sandboxes").json()["data"]}:
        assert s.request("DELETE", f"/v1/sandboxes/{sid}").status_code == 204
    assert stored(s) == [] and mounts_under(state / "sandboxes") == []


def test_delete_leaves_nothing_on_disk_or_mounted(start):
    s = start()
    sbx = create(s)
    sh(s, sbx, WRITE_STATE)
    assert stored(s) == [sbx["id"]] and len(mounts_under(s.state_dir)) == 1
    assert s.request("DELETE", f"/v1/sandboxes/{sbx['id']}").status_code == 204
    assert stored(s) == [] and mounts_under(s.state_dir) == []


def test_a_sandbox_that_expired_while_the_daemon_was_down_is_removed_at_start(start):
    s = start("--max-ttl-s", "60")
    sbx = create(s, ttl_s=1)
    keep = create(s, ttl_s=60)
    s.stop(keep_state=True)
    # The idle time runs while no daemon does: once it has passed, the next start removes the sandbox.
    record = s.state_dir / "sandboxes" / sbx["id"] / "sandbox.json"
    past = os.stat(record).st_mtime - 5
    os.utime(record, (past, past))
    again = start("--max-ttl-s", "60", state=s.state_dir)
    gone = wait_until(lambda: again.get(f"/v1/sandboxes/{sbx['id']}").status_code == 404, 10)
    assert gone
    err = assert_error(again.get(f"/v1/sandboxes/{sbx['id']}"), 404, "sandbox_not_found")
    assert err["reason"] == "expired", err
    assert again.get(f"/v1/sandboxes/{keep['id']}").status_code == 200
    # Its directory goes just after it leaves the list (the record first, then the rest).
    assert wait_until(lambda: stored(again) == [keep["id"]], 10), stored(again)


def test_a_full_disk_is_enospc_inside_and_the_sandbox_goes_on(start):
    s = start()
    sbx = create(s, limits={"disk_mb": 8})
    r = sh(s, sbx, "head -c 20000000 /dev/zero > /work/big; echo $?")
    assert "No space left on device" in r["stderr"] and r["stdout"] != "0\n", r
    assert sh(s, sbx, "rm /work/big && echo ok > /work/small && cat /work/small")["stdout"] == "ok\n"


def test_small_files_take_small_pages_of_the_disk(start):
    # The tmpfs gives large folios only to what fills them (huge=within_size, for fast big uploads): 300
    # small files must cost about 300 pages of disk_mb, not 300 huge pages, and a big file still fits.
    s = start()
    sbx = create(s, limits={"disk_mb": 16})
    r = sh(s, sbx, "for i in $(seq 300); do echo $i > /work/f$i || exit 1; done; "
                   "head -c 12000000 /dev/urandom > /work/big && echo ok; df -k /work | tail -1")
    assert r["stdout"].startswith("ok\n"), r
    used_kib = int(r["stdout"].split("\n")[1].split()[2])
    assert used_kib < 14 * 1024, r


def test_a_fork_copies_the_files_at_that_moment_but_not_the_processes(start):
    s = start("--max-sandboxes", "3")
    marker = unique_marker()
    src = create(s, metadata={"owner": "alice"}, env={"GREETING": "hi"}, ttl_s=600)
    sh(s, src, WRITE_STATE + f" && mkfifo /work/fifo; setsid sleep {marker} >/dev/null 2>&1 &")
    r = s.post(f"/v1/sandboxes/{src['id']}/fork", {"metadata": {"owner": "bob"}})
    assert r.status_code == 201, show(r)
    fork = r.json()
    assert fork["id"] != src["id"] and fork["metadata"] == {"owner": "bob"} and fork["ttl_s"] == 600, fork
    assert fork["limits"] == src["limits"]
    got = sh(s, fork, READ_STATE + f"; test -p /work/fifo && echo fifo; echo $GREETING; "
                                   f"pgrep -fx 'sleep {marker}' || echo no-sleep")
    assert got["stdout"] == STATE_OUT + "fifo\nhi\nno-sleep\n", got
    # Two sandboxes from then on: a change in one is not in the other, and the fork outlives its source.
    sh(s, fork, "echo forked > /work/dir/sub/f")
    assert sh(s, src, "cat /work/dir/sub/f")["stdout"] == "work\n"
    assert s.request("DELETE", f"/v1/sandboxes/{src['id']}").status_code == 204
    assert sh(s, fork, "cat /work/dir/sub/f")["stdout"] == "forked\n"
    plain = s.post(f"/v1/sandboxes/{fork['id']}/fork", {}).json()
    assert plain["metadata"] == {"owner": "bob"}, plain
    assert_error(s.post(f"/v1/sandboxes/{src['id']}/fork", {}), 404, "sandbox_not_found")
    assert_error(s.post(f"/v1/sandboxes/{fork['id']}/fork", {"ttl_s": "long"}), 400)
    create(s)
    assert_error(s.post(f"/v1/sandboxes/{fork['id']}/fork", {}), 429)
