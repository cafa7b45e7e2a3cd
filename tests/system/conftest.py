"""Fixtures shared by every system test: the built binary, the probe, an outer cgroup, root and CI rules.

Run: /usr/bin/python3 -m pytest tests/system -q
  LMS_BIN    the lm-sandbox binary (default: build/lm-sandbox under the repository root)
  LMS_PROBE  the static probe       (default: build/tests/probe/lms-probe)
  CI=true    every skip becomes a failure (a test that could not run proves nothing)
"""

import errno as errno_mod
import json as json_mod
import os
import select
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI") == "true"

# Feeds the probe in on stdin (the build directory is not visible inside) and runs it with the check's arguments.
PROBE_SCRIPT = 'cat > /tmp/p && chmod +x /tmp/p && exec /tmp/p "$@"'


# ---- pytest hooks: root marker, skips that shout, skips that fail in CI ------------------------------------------


def pytest_configure(config):
    config.addinivalue_line("markers", "require_root: the test needs root (namespaces, uid maps, cgroups)")
    # Print every skip's reason in the summary, even under -q: a skipped security test must be seen.
    chars = config.option.reportchars or ""
    if "s" not in chars and "a" not in chars and "A" not in chars:
        config.option.reportchars = chars + "s"


def pytest_runtest_setup(item):
    if item.get_closest_marker("require_root") and os.geteuid() != 0:
        pytest.skip("NEEDS ROOT: sandbox tests map uids and create cgroups; run as root (CI does)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"


# ---- results ------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one `lm-sandbox run` did. `json` is the parsed object when --json was given and the CLI exited 0."""

    argv: list
    returncode: int
    stdout: bytes
    stderr: bytes
    elapsed: float
    json: dict | None = None

    def __getitem__(self, key):
        assert self.json is not None, f"no JSON result:\n{self}"
        return self.json[key]

    def __str__(self):
        def cut(b):
            text = b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
            return text if len(text) < 3000 else text[:3000] + f"... ({len(text)} chars)"

        lines = [
            f"argv: {[a if len(a) < 200 else a[:200] + '...' for a in map(str, self.argv)]}",
            f"exit status: {self.returncode} after {self.elapsed:.2f} s",
            f"stdout: {cut(self.stdout)}",
            f"stderr: {cut(self.stderr)}",
        ]
        return "\n".join(lines)


@dataclass
class ProbeResult:
    check: str
    ok: bool
    errno: str | None
    detail: str
    run: Result | None = field(default=None, repr=False)

    def __str__(self):
        where = f"\n{self.run}" if self.run else ""
        return f"probe {self.check}: ok={self.ok} errno={self.errno} detail={self.detail!r}{where}"


def parse_probe_line(text, check, run=None):
    for line in reversed(text.splitlines()):
        if line.startswith('{"check"'):
            obj = json_mod.loads(line)
            assert obj["check"] == check, f"probe answered {obj['check']} for {check}"
            return ProbeResult(obj["check"], obj["ok"], obj["errno"], obj["detail"], run)
    raise AssertionError(f"no probe line for {check} in {text!r}\n{run or ''}")


# ---- locating the binaries ----------------------------------------------------------------------------------------


def lms_bin_path():
    return Path(os.environ.get("LMS_BIN") or REPO / "build" / "lm-sandbox")


def probe_bin_path():
    return Path(os.environ.get("LMS_PROBE") or REPO / "build" / "tests" / "probe" / "lms-probe")


@pytest.fixture(scope="session")
def lms_bin():
    path = lms_bin_path()
    if not os.access(path, os.X_OK):
        pytest.skip(f"NO BINARY: {path} is missing; build it (make) or set LMS_BIN")
    return path


@pytest.fixture(scope="session")
def probe_bin():
    path = probe_bin_path()
    if not os.access(path, os.X_OK):
        pytest.skip(f"NO PROBE: {path} is missing; build it (make) or set LMS_PROBE")
    return path


@pytest.fixture(scope="session")
def probe_bytes(probe_bin):
    return probe_bin.read_bytes()


# ---- running the CLI ----------------------------------------------------------------------------------------------


def _preexec(cgroup, preexec_fn):
    if cgroup is None:
        return preexec_fn

    def enter():
        cgroup.enter(os.getpid())
        if preexec_fn:
            preexec_fn()

    return enter


def run_cli(lms_bin, args, *, json=True, stdin=None, timeout=60, env=None, pass_fds=(), cgroup=None, preexec_fn=None):
    """Runs `lm-sandbox run [--json] ARGS` to the end. stdin: bytes to feed (else /dev/null). env: the CLI's
    whole environment (default: ours). cgroup: an OuterCgroup the CLI starts in. preexec_fn: run in the child
    before exec. Raises AssertionError when the CLI does not return within `timeout` seconds (it is killed) or,
    with json, exits 0 but prints something other than one JSON object."""
    argv = [str(lms_bin), "run", *(["--json"] if json else []), *map(str, args)]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=env,
            pass_fds=pass_fds,
            preexec_fn=_preexec(cgroup, preexec_fn),
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"lm-sandbox did not return within {timeout} s: {argv[:12]}\n"
                             f"stdout: {e.stdout!r:.2000}\nstderr: {e.stderr!r:.2000}") from None
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
    if json and proc.returncode == 0:
        try:
            result.json = json_mod.loads(proc.stdout)
        except ValueError as e:
            raise AssertionError(f"--json output is not one JSON object ({e}):\n{result}") from None
        assert isinstance(result.json, dict), f"--json output is not an object:\n{result}"
    return result


@pytest.fixture
def run(lms_bin):
    """run(args, *, json=True, stdin=None, timeout=60, env=None, pass_fds=(), cgroup=None, preexec_fn=None)"""

    def _run(args, **kwargs):
        return run_cli(lms_bin, args, **kwargs)

    return _run


@pytest.fixture
def probe(lms_bin, probe_bytes):
    """probe(check, *args, extra_run_args=(), **run_kwargs) -> ProbeResult: runs lms-probe CHECK ARGS in a fresh
    sandbox. The sandbox run itself must succeed and the probe must exit 0."""

    def _probe(check, *args, extra_run_args=(), **kwargs):
        result = run_cli(
            lms_bin,
            [*extra_run_args, "-i", "--", "sh", "-c", PROBE_SCRIPT, "sh", check, *args],
            stdin=probe_bytes,
            **kwargs,
        )
        assert result.returncode == 0, f"sandbox run for probe {check} failed:\n{result}"
        assert result["exit_code"] == 0, f"probe {check} did not exit 0 in the sandbox:\n{result.json}"
        return parse_probe_line(result["stdout"], check, result)

    return _probe


@pytest.fixture
def host_probe(probe_bin):
    """host_probe(check, *args, **popen_kwargs) -> ProbeResult: the same probe run directly on the host, as the
    positive control that shows what the check does where nothing stops it."""

    def _host_probe(check, *args, **kwargs):
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.run([str(probe_bin), check, *map(str, args)], capture_output=True, timeout=30, **kwargs)
        assert proc.returncode == 0, f"host probe {check}: {proc}"
        return parse_probe_line(proc.stdout.decode(), check)

    return _host_probe


class Spawned:
    """A CLI started in the background (output streamed, not --json) for tests that look at the host meanwhile."""

    def __init__(self, lms_bin, args, **popen_kwargs):
        self.argv = [str(lms_bin), "run", *map(str, args)]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, **popen_kwargs)
        self.out = b""

    def read_until(self, token, timeout):
        """Reads stdout until `token` arrived (True) or `timeout` s passed or stdout closed (False)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while token not in self.out:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return False
            chunk = os.read(fd, 65536)
            if not chunk:
                return False
            self.out += chunk
        return True

    def wait(self, timeout):
        """Waits for the CLI to exit; returns (status, stdout, stderr). Raises AssertionError past `timeout` s."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"lm-sandbox did not return within {timeout} s: {self.argv[:12]}\n"
                                 f"stdout: {(self.out + out)!r:.2000}\nstderr: {err!r:.2000}") from None
        self.out += out
        return self.proc.returncode, self.out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def spawn(lms_bin):
    """spawn(args, **popen_kwargs) -> Spawned: `lm-sandbox run ARGS` in the background; killed after the test."""
    started = []

    def _spawn(args, **kwargs):
        s = Spawned(lms_bin, args, **kwargs)
        started.append(s)
        return s

    yield _spawn
    for s in started:
        s.kill()


# ---- host processes -----------------------------------------------------------------------------------------------


def unique_marker():
    """A number no other process on the machine has on its command line (sleep accepts it: `sleep 313.<n>`)."""
    return f"313.{os.getpid()}{uuid.uuid4().int % 10**6:06d}"


def host_pids_with(marker):
    """The pids of the host's processes whose command line has `marker` as one of its arguments."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if marker.encode() in args:
            found.append(int(entry.name))
    return found


def wait_pids_gone(pids, timeout):
    """Waits (on pidfds, no polling) until every pid has exited; returns those still alive after `timeout` s."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    try:
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(fds), [], [], left)
            for fd in ready:
                os.close(fd)
                del fds[fd]
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


# ---- cgroups ------------------------------------------------------------------------------------------------------


def cgroup_is_v2():
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def own_cgroup_dir(controller, pid="self"):
    """The directory of `pid`'s cgroup for a v1 controller ("memory", "pids", "cpuacct"), or for v2 when
    controller is None. Found through mountinfo, so combined hierarchies (cpu,cpuacct) work too."""
    memberships = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            memberships[c] = path
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, post = line.split(" - ", 1)
        fields, post_fields = pre.split(), post.split()
        fstype, options = post_fields[0], post_fields[2].split(",")
        root, mount_point = fields[3], fields[4]
        if controller is None and fstype == "cgroup2" and "" in memberships:
            path = memberships[""]
        elif controller is not None and fstype == "cgroup" and controller in options and controller in memberships:
            path = memberships[controller]
        else:
            continue
        rel = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
        return Path(mount_point) / ("" if rel == "." else rel)
    return None


def cgroup_procs(directory):
    """The pids in `directory` and every cgroup below it."""
    pids = []
    for dirpath, _, _ in os.walk(directory):
        try:
            pids += [int(p) for p in Path(dirpath, "cgroup.procs").read_text().split()]
        except OSError:
            pass
    return pids


def remove_cgroup_tree(directory):
    """Kills what runs in `directory` (and below) and removes it bottom-up. Returns the sub-directories that
    existed (so a caller can say what was left behind)."""
    directory = Path(directory)
    if not directory.exists():
        return []
    children = sorted((Path(d) for d, _, _ in os.walk(directory)), key=lambda p: len(p.parts), reverse=True)
    pids = cgroup_procs(directory)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_pids_gone(pids, 10)
    for d in children:
        for _ in range(200):  # a killed task leaves its cgroup a moment after it is reaped
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno_mod.EBUSY:
                    raise
                time.sleep(0.01)
    return [str(d.relative_to(directory)) for d in children if d != directory]


def v2_delegating_ancestor(start):
    """The nearest cgroup v2 directory, from `start` up to the mount's root, whose children get the memory and pids
    controllers (enabling them where the kernel lets us: a cgroup with processes in it cannot delegate)."""
    for d in [start, *start.parents]:
        control = d / "cgroup.subtree_control"
        if not control.exists():
            break
        if {"memory", "pids"} <= set(control.read_text().split()):
            return d
        try:
            control.write_text("+memory +pids")
            return d
        except OSError:
            continue
    pytest.skip(f"NO OUTER CGROUP: no cgroup from {start} up delegates memory and pids")


class OuterCgroup:
    """A memory (1 GiB) and pids (512) limit around a test that would hurt the host if our own limits failed."""

    def __init__(self, memory_bytes=1 << 30, pids=512):
        name = f"pytest-outer-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dirs = []
        if cgroup_is_v2():
            parent = v2_delegating_ancestor(own_cgroup_dir(None))
            d = parent / name
            d.mkdir()
            self.dirs.append(d)
            (d / "memory.max").write_text(str(memory_bytes))
            if (d / "memory.swap.max").exists():
                (d / "memory.swap.max").write_text("0")
            (d / "pids.max").write_text(str(pids))
        else:
            for controller in ("memory", "pids"):
                parent = own_cgroup_dir(controller)
                if parent is None:
                    self.remove()
                    pytest.skip(f"NO OUTER CGROUP: no cgroup v1 {controller} hierarchy mounted")
                d = parent / name
                d.mkdir()
                self.dirs.append(d)
            memory, pid_dir = self.dirs
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            if (memory / "memory.memsw.limit_in_bytes").exists():
                (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            (pid_dir / "pids.max").write_text(str(pids))

    def enter(self, pid):
        """Moves `pid` in (called from the child between fork and exec, so: plain writes only)."""
        for d in self.dirs:
            with open(d / "cgroup.procs", "w") as f:
                f.write(str(pid))

    def remove(self):
        left = []
        for d in self.dirs:
            left += remove_cgroup_tree(d)
        return left


@pytest.fixture
def outer_cgroup():
    """An OuterCgroup to pass as run(..., cgroup=outer_cgroup). It is removed after the test; cgroups the sandbox
    left inside it are reported as an error of the test."""
    if os.geteuid() != 0:
        pytest.skip("NEEDS ROOT: the outer cgroup of a memory or fork test needs root")
    cg = OuterCgroup()
    yield cg
    left = cg.remove()
    assert not left, f"the sandbox left cgroups behind inside the outer cgroup: {left}"
