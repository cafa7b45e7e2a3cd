"""Running `lm-sandbox sandbox ...` (the client of a running daemon) from the tests of test_cli_sandbox.py and
test_cli_cp.py."""

import signal
import subprocess
import time
from dataclasses import dataclass

from server_fixtures import clean_env


@dataclass
class Done:
    argv: list
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self):
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self):
        return self.stderr.decode("utf-8", "replace")

    def __str__(self):
        return (f"argv: {self.argv}\nexit status: {self.returncode}\nstdout: {self.stdout[:3000]!r}\n"
                f"stderr: {self.stderr[:3000]!r}")


def client_env(url, extra=None):
    """A clean environment (no LM_SANDBOX_* of the caller's shell) pointing the client at `url`."""
    env = clean_env(extra)
    if url is not None:
        env["LM_SANDBOX_URL"] = url
    return env


def sandbox_cli(lms_bin, url, *args, stdin=b"", env=None, timeout=60, cwd=None):
    """Runs `lm-sandbox sandbox ARGS` against the daemon at `url` to its end. stdin: bytes (None: /dev/null)."""
    argv = [str(lms_bin), "sandbox", *map(str, args)]
    try:
        p = subprocess.run(argv, input=stdin, stdin=subprocess.DEVNULL if stdin is None else None,
                           capture_output=True, timeout=timeout, env=client_env(url, env), cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{argv} did not return within {timeout} s\nstdout: {e.stdout!r:.2000}\n"
                             f"stderr: {e.stderr!r:.2000}") from None
    return Done(argv, p.returncode, p.stdout, p.stderr)


def spawn_cli(lms_bin, url, *args, env=None, **popen):
    """Starts `lm-sandbox sandbox ARGS` and returns the Popen (stdout and stderr are pipes)."""
    argv = [str(lms_bin), "sandbox", *map(str, args)]
    popen.setdefault("stdin", subprocess.DEVNULL)
    # As a terminal's shell starts it: SIGINT at its default, whatever this test run inherited (a run started
    # in the background by a non-interactive shell ignores SIGINT, and an ignored signal is inherited).
    popen.setdefault("preexec_fn", lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(url, env), **popen)


def wait_output(proc, token, timeout):
    """Reads proc's stdout until `token` (bytes) came or `timeout` s passed; returns what was read."""
    import os
    import select

    got = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while token not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        got += chunk
    return got
