"""Without root: lm-sandbox works through unprivileged user namespaces, or says exactly what is missing."""
import json
import os
import shutil
import subprocess

import pytest


def run_as_nobody(lms_bin, tmp_path, *run_args):
    """`lm-sandbox run RUN_ARGS` as uid 65534, from a copy it can execute wherever the checkout lives."""
    binary = tmp_path / "lm-sandbox"
    shutil.copy(lms_bin, binary)
    os.chmod(tmp_path, 0o755)
    os.chmod(binary, 0o755)
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(binary), "run",
                           *run_args], capture_output=True, stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_unprivileged_run_works_or_names_what_is_missing(lms_bin, tmp_path):
    r = run_as_nobody(lms_bin, tmp_path, "--", "id", "-u")
    if r.returncode == 0:
        assert r.stdout.strip() == b"0", r
        return
    assert r.returncode == 125, r
    message = r.stderr.decode()
    # The message names the missing piece and what to do about it.
    assert ("cgroup" in message and "delegated" in message) or "user namespace" in message, message


def _own_v1_cgroup(controller):
    for line in open("/proc/self/cgroup"):
        _, controllers, path = line.rstrip("\n").split(":", 2)
        if controller in controllers.split(","):
            return f"/sys/fs/cgroup/{controller}{path.rstrip('/')}"
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to delegate a cgroup to an unprivileged user")
@pytest.mark.skipif(os.path.exists("/sys/fs/cgroup/cgroup.controllers"), reason="cgroup v1 delegation test")
def test_unprivileged_run_with_a_delegated_cgroup(lms_bin, tmp_path):
    binary = tmp_path / "lm-sandbox"
    shutil.copy(lms_bin, binary)
    os.chmod(tmp_path, 0o755)
    os.chmod(binary, 0o755)
    groups = []
    try:
        for controller in ("memory", "pids", "cpuacct"):
            own = _own_v1_cgroup(controller)
            assert own, f"no {controller} controller"
            group = f"{own}/lms-test-delegated-{os.getpid()}"
            os.mkdir(group)
            groups.append(group)
            for entry in [group] + [os.path.join(group, f) for f in os.listdir(group)]:
                os.chown(entry, 65534, 65534)
        enter = "; ".join(f"echo $$ > {g}/cgroup.procs" for g in groups)
        r = subprocess.run(["sh", "-c", f'{enter}; exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"',
                            "sh", str(binary), "run", "--json", "--", "sh", "-c", "id -u; cat /proc/self/uid_map"],
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        assert r.returncode == 0, r
        result = json.loads(r.stdout)
        assert result["exit_code"] == 0, result
        lines = result["stdout"].split("\n")
        assert lines[0] == "0", result
        # Unprivileged: in-sandbox root is the caller's own uid, and nothing else is mapped.
        assert lines[1].split() == ["0", "65534", "1"], result
    finally:
        for group in groups:
            for child in os.listdir(group):
                if os.path.isdir(os.path.join(group, child)):
                    os.rmdir(os.path.join(group, child))
            os.rmdir(group)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_unprivileged_network_is_refused_naming_root(lms_bin, tmp_path):
    # The packet filter and pasta join the sandbox's namespace from the host side: root only, said at once.
    r = run_as_nobody(lms_bin, tmp_path, "--network", "--", "true")
    assert r.returncode == 125 and b"needs root" in r.stderr, r
