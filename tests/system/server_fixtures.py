"""Helpers for the tests of `lm-sandbox serve` (test_server.py): starting and stopping a daemon on a free port,
collecting its log, talking HTTP (plain, raw socket, Server-Sent Events), reading its metrics and /proc.

The daemon is found as LMS_SERVE (when set), else `lm-sandbox-serve` beside LMS_BIN, else `LMS_BIN serve`.
Every daemon listens on 127.0.0.1:0 (a port the kernel picks) unless a test says otherwise, keeps its state in a
temporary directory, and gets our environment without any LM_SANDBOX_* variable plus the ones a test gives.
"""

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests

from conftest import cgroup_is_v2, own_cgroup_dir
from procinfo import descendants  # noqa: F401 (re-exported for the tests)

# The documented result of POST /v1/exec (API.md, "Execution") and its types.
EXEC_FIELDS = {
    "stdout": str, "stderr": str, "exit_code": int, "signal": (str, type(None)), "timed_out": bool,
    "oom_killed": bool, "pids_limit_hit": bool, "stdout_truncated": bool, "stderr_truncated": bool,
    "duration_ms": (int, float), "cpu_ms": (int, float), "max_rss_kb": int, "net_rx_bytes": int, "net_tx_bytes": int,
}
EXIT_EVENT_FIELDS = set(EXEC_FIELDS) - {"stdout", "stderr"}

# A variable in the daemon's own environment that must never reach a sandbox.
DAEMON_ONLY_VAR = "LMS_TEST_DAEMON_ONLY"

START_TIMEOUT = 20  # seconds for a daemon to say "listening"
STOP_TIMEOUT = 10   # seconds between SIGTERM and SIGKILL in teardown


def serve_argv(lms_bin):
    explicit = os.environ.get("LMS_SERVE")
    if explicit:
        return [explicit]
    sibling = Path(lms_bin).parent / "lm-sandbox-serve"
    if os.access(sibling, os.X_OK):
        return [str(sibling)]
    return [str(lms_bin), "serve"]


def clean_env(extra=None):
    """Our environment without LM_SANDBOX_* (so the caller's shell cannot change a test) plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LM_SANDBOX_")}
    env.update(extra or {})
    return env


def cut(text, n=4000):
    return text if len(text) <= n else text[:n // 2] + f"\n... ({len(text)} chars) ...\n" + text[-n // 2:]


class Server:
    """One daemon process. Its stderr is read line by line by a thread for as long as it runs."""

    def __init__(self, argv, env, cgroup=None):
        self.argv = argv
        preexec = (lambda: cgroup.enter(os.getpid())) if cgroup is not None else None
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, preexec_fn=preexec)
        self.pid = self.proc.pid
        self.url = None
        self.host = None
        self.port = None
        self.state_dir = None
        self._lines = []
        self._stdout = []
        self._cond = threading.Condition()
        self._eof = False
        self._sessions = []
        self._threads = [threading.Thread(target=self._drain_stderr, daemon=True),
                         threading.Thread(target=self._drain_stdout, daemon=True)]
        for t in self._threads:
            t.start()

    # ---- output ----

    def _drain_stderr(self):
        for raw in self.proc.stderr:
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _drain_stdout(self):
        for raw in self.proc.stdout:
            with self._cond:
                self._stdout.append(raw.decode("utf-8", "replace"))

    def stderr_lines(self):
        with self._cond:
            return list(self._lines)

    def stderr_text(self):
        return "\n".join(self.stderr_lines())

    def stdout_text(self):
        with self._cond:
            return "".join(self._stdout)

    def logs(self):
        """The stderr lines that are JSON objects, parsed."""
        out = []
        for line in self.stderr_lines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def wait_log(self, predicate, timeout=5):
        """Waits until a parsed log line satisfies `predicate`; returns every such line ([] after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = []
                for line in self._lines:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(obj, dict) and predicate(obj):
                        found.append(obj)
                left = deadline - time.monotonic()
                if found or left <= 0 or self._eof:
                    return found
                self._cond.wait(left)

    def describe(self):
        status = self.proc.poll()
        return (f"daemon {self.argv} pid {self.pid} ({'running' if status is None else f'exited {status}'})\n"
                f"stderr:\n{cut(self.stderr_text())}\nstdout:\n{cut(self.stdout_text(), 1000)}")

    # ---- life ----

    def wait_listening(self, timeout=START_TIMEOUT):
        """Waits for the `listening` log line and takes the URL from it. Raises AssertionError when the daemon
        exits first or says nothing within `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(obj, dict) and obj.get("msg") == "listening" and obj.get("url"):
                        self._set_url(obj["url"])
                        return self.url
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        raise AssertionError(f"the daemon did not log a 'listening' line with a url within {timeout} s\n"
                             f"{self.describe()}")

    def _set_url(self, url):
        parts = urlsplit(url)
        host = parts.hostname
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1" if host != "::" else "::1"
        self.host, self.port = host, parts.port
        netloc = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.url = f"http://{netloc}"

    def wait_exit(self, timeout):
        """The exit status, or None when still running after `timeout` s."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT, keep_state=False):
        """SIGTERM, then SIGKILL after `timeout` s. Returns (exit status, whether SIGKILL was needed). Its
        sandboxes' file systems, which outlive it, are unmounted unless `keep_state` (a test that starts it
        again on the same state)."""
        for s in self._sessions:
            s.close()
        self._sessions.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status = self.wait_exit(timeout)
        killed = False
        if status is None:
            killed = True
            self.proc.kill()
            status = self.proc.wait()
        for t in self._threads:
            t.join(5)
        if self.state_dir is not None and not keep_state:
            unmount_under(self.state_dir)
        return status, killed

    # ---- HTTP ----

    def session(self):
        s = requests.Session()
        s.trust_env = False  # no proxy from the environment between us and the daemon
        self._sessions.append(s)
        return s

    def request(self, method, path, *, session=None, timeout=30, **kwargs):
        s = session
        if s is None:
            s = requests.Session()
            s.trust_env = False
        try:
            return s.request(method, self.url + path, timeout=timeout, **kwargs)
        finally:
            if session is None:
                s.close()

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        """POSTs `body` as JSON (a dict or list) or as given (bytes/str, no Content-Type added)."""
        if isinstance(body, (dict, list)):
            kwargs["json"] = body
        elif body is not None:
            kwargs["data"] = body
        return self.request("POST", path, **kwargs)

    def exec(self, body, **kwargs):
        return self.post("/v1/exec", body, **kwargs)

    def connect(self, timeout=30):
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def raw_request(self, method, path, body=b"", headers=None, timeout=30):
        """Sends one HTTP/1.1 request over a new socket and returns the socket (to read or to drop)."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock = self.connect(timeout)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return sock

    def sse(self, body, headers=None, path="/v1/exec", timeout=30):
        return SSE(self, body, headers=headers, path=path, timeout=timeout)


class SSE:
    """A POST (or a GET) whose answer is read as Server-Sent Events, one event at a time, as the bytes arrive."""

    def __init__(self, server, body, headers=None, path="/v1/exec", timeout=30):
        """body None: a GET of path."""
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
        h = {"Accept": "text/event-stream"} if body is None else \
            {"Content-Type": "application/json", "Accept": "text/event-stream"}
        h.update(headers or {})
        if body is None:
            self.conn.request("GET", path, headers=h)
        else:
            self.conn.request("POST", path, body=json.dumps(body).encode(), headers=h)
        self.resp = self.conn.getresponse()
        self.buf = b""
        self.raw = b""

    @property
    def status(self):
        return self.resp.status

    def header(self, name):
        return self.resp.getheader(name)

    def next_event(self):
        """(event name, parsed data) of the next event, or None at the end of the stream."""
        while True:
            self.buf = self.buf.replace(b"\r\n", b"\n")
            if b"\n\n" in self.buf:
                block, self.buf = self.buf.split(b"\n\n", 1)
                event, data = "message", []
                for line in block.decode("utf-8").split("\n"):
                    if line.startswith(":"):
                        continue
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                if not data and event == "message":
                    continue  # a comment or keep-alive
                text = "\n".join(data)
                try:
                    parsed = json.loads(text)
                except ValueError as e:
                    raise AssertionError(f"event {event!r} carries data that is not JSON ({e}): {text!r}") from None
                return event, parsed
            chunk = self.resp.read1(65536)
            if not chunk:
                if self.buf.strip():
                    raise AssertionError(f"the stream ended inside an event: {self.buf!r}")
                return None
            self.raw += chunk
            self.buf += chunk

    def events(self):
        out = []
        while (e := self.next_event()) is not None:
            out.append(e)
        return out

    def close(self):
        self.resp.close()
        self.conn.close()


def start_server(lms_bin, args=(), *, env=None, state_dir=None, listen="127.0.0.1:0", wait=True, cgroup=None):
    """Starts `lm-sandbox serve --listen LISTEN --state-dir STATE_DIR ARGS` and (when `wait`) waits until it
    listens. `env`: variables added to the clean environment; `cgroup`: an OuterCgroup it starts in. Returns a
    Server; the caller stops it."""
    argv = serve_argv(lms_bin)
    if listen is not None:
        argv += ["--listen", listen]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    argv += [str(a) for a in args]
    server = Server(argv, clean_env(env), cgroup)
    server.state_dir = state_dir
    if wait:
        try:
            server.wait_listening()
        except BaseException:
            server.stop()
            raise
    return server


@contextlib.contextmanager
def daemons(lms_bin, tmp_path, *, base_args=(), must_keep_running=False):
    """The body of a `start` fixture: yields start(*args, **start_server's keywords) -> Server, each daemon with
    its own state dir under tmp_path and base_args before args. On leaving, each gets SIGTERM; one that was
    running must exit 0 within STOP_TIMEOUT, and with `must_keep_running` one that had exited on its own fails
    the test too (a test that means a daemon to refuse to start leaves that out)."""
    started = []

    def start(*args, state=None, **kwargs):
        """state: the state dir of an earlier daemon, to start it again on the same sandboxes."""
        if state is None:
            state = tmp_path / f"state-{len(started)}"
            state.mkdir()
        s = start_server(lms_bin, [*base_args, *args], state_dir=state, **kwargs)
        started.append(s)
        return s

    problems = []
    try:
        yield start
    finally:
        # Also when the test failed: its daemons stopped and its mounts gone, or they outlive the run.
        for s in started:
            was_running = s.alive()
            status, killed = s.stop()
            if (was_running or must_keep_running) and (not was_running or killed or status != 0):
                problems.append(f"running at the end: {was_running}; after SIGTERM: status {status}, "
                                f"needed SIGKILL: {killed}\n{s.describe()}")
        # Sandboxes outlive their daemon (their file systems stay mounted for the next start): the test's are
        # unmounted here so that its temporary directory can go.
        unmount_under(tmp_path)
    assert not problems, "\n".join(problems)


def mounts_under(path):
    """The mount points at or below `path` (from /proc/self/mountinfo), deepest first."""
    root = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].encode().decode("unicode_escape")
            if target == root or target.startswith(root + "/"):
                found.append(target)
    return sorted(found, key=len, reverse=True)


def unmount_under(path):
    for target in mounts_under(path):
        subprocess.run(["umount", "-l", target], check=False, stderr=subprocess.DEVNULL)


def run_serve(lms_bin, args, *, env=None, timeout=20):
    """Runs the daemon's command line to its end (for --help and start-up errors): (status, stdout, stderr).
    A daemon that is still running after `timeout` s is stopped and the call fails."""
    argv = serve_argv(lms_bin) + [str(a) for a in args]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=clean_env(env))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise AssertionError(f"{argv} was still running after {timeout} s (expected it to exit)\n"
                             f"stdout: {out.decode(errors='replace')[:2000]}\n"
                             f"stderr: {err.decode(errors='replace')[:2000]}") from None
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# ---- answers -------------------------------------------------------------------------------------------------------


def show(resp):
    """A response for an assertion message."""
    body = resp.text if len(resp.content) < 3000 else resp.text[:3000] + f"... ({len(resp.content)} bytes)"
    req = resp.request
    sent = req.body if isinstance(req.body, (str, type(None))) else req.body[:300] if isinstance(req.body, bytes) \
        else "<stream>"
    return (f"{req.method} {req.url} body={sent!r:.300}\n-> {resp.status_code} {dict(resp.headers)}\n{body}")


def assert_error(resp, status, code=None):
    """The response is API.md's one error shape with `status` (and `code`, when given). Returns the error."""
    assert resp.status_code == status, f"expected {status}:\n{show(resp)}"
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == "application/json", show(resp)
    assert resp.headers.get("X-Request-Id"), f"no X-Request-Id on an error:\n{show(resp)}"
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"the error body is not JSON:\n{show(resp)}") from None
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the one error shape:\n{show(resp)}"
    err = body["error"]
    # API.md: a sandbox that is gone says why (reason), when the server still knows.
    extra = {"reason"} if err.get("code") == "sandbox_not_found" and "reason" in err else set()
    assert isinstance(err, dict) and set(err) == {"message", "type", "code"} | extra, \
        f"not the one error shape:\n{show(resp)}"
    if extra:
        assert err["reason"] in ("deleted", "expired", "failed"), f"unknown reason:\n{show(resp)}"
    for k in ("message", "type", "code"):
        assert isinstance(err[k], str) and err[k], f"error.{k} is not a non-empty string:\n{show(resp)}"
    if code is not None:
        assert err["code"] == code, f"expected code {code!r}:\n{show(resp)}"
    return err


def assert_exec_result(resp, extra=()):
    """A 200 exec result with exactly the documented fields (plus `extra`) of the right types. Returns it."""
    assert resp.status_code == 200, show(resp)
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == "application/json", show(resp)
    body = resp.json()
    assert set(body) == set(EXEC_FIELDS) | set(extra), \
        f"fields {sorted(body)} are not the documented {sorted(set(EXEC_FIELDS) | set(extra))}"
    for k, t in EXEC_FIELDS.items():
        assert isinstance(body[k], t) and not (t is int and isinstance(body[k], bool)), \
            f"{k} = {body[k]!r} is not {t}"
    return body


# ---- metrics -------------------------------------------------------------------------------------------------------

METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def parse_metrics(text):
    """Prometheus text format -> list of (name, {label: value}, float). Raises AssertionError on a bad line."""
    samples = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = {}
        if m.group(3):
            rest = m.group(3).strip()
            pos = 0
            while pos < len(rest):
                lm = LABEL.match(rest, pos)
                assert lm, f"bad labels in {line!r}"
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples


def metric_sum(samples, name, **labels):
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == v2 for k, v2 in labels.items()))


# ---- the daemon in /proc ------------------------------------------------------------------------------------------


def proc_usage(pid):
    """(open fds, threads, VmRSS in KiB) of `pid`."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = rss = None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            threads = int(line.split()[1])
        elif line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return fds, threads, rss


def cgroup_dirs_of(pid):
    """{controller: directory} of `pid`'s cgroups (memory, pids, cpuacct on v1; unified on v2)."""
    if cgroup_is_v2():
        return {"unified": own_cgroup_dir(None, pid)}
    return {c: own_cgroup_dir(c, pid) for c in ("memory", "pids", "cpuacct")}


def lms_cgroup_dirs_below(directory):
    """Every directory named lms-* at any depth below `directory`."""
    found = []
    if directory is None or not Path(directory).is_dir():
        return found
    for dirpath, dirnames, _ in os.walk(directory):
        for d in dirnames:
            if d.startswith("lms-"):
                found.append(Path(dirpath) / d)
    return found


def wait_until(predicate, timeout, interval=0.02):
    """Polls `predicate` until it returns something true (returned) or `timeout` s passed (its last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def new_request_id():
    return f"t-{uuid.uuid4().hex}"


def closed_url():
    """The URL of a port on 127.0.0.1 that nothing listens on (a backend that is down)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
