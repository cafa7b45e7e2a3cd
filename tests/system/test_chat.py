"""`lm-sandbox chat` (README, "chat"): the agent loop in a terminal, driven in a pseudo-terminal (or with a piped
task) against a running daemon and the scripted fake model of tests/fakes/fake_llm.py: the prompt, the confirmation
(y and n), --yes, Ctrl-C during a command, piped input. The commands run in real sandboxes."""

import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest

from cli_client import client_env
from conftest import host_pids_with, unique_marker, wait_pids_gone
from scripted_model import MODEL, bash, model, script, server  # noqa: F401 (fixtures)
from server_fixtures import show, wait_until

ANSI = re.compile(rb"\x1b\[[0-9;]*m")
SANDBOX_LINE = re.compile(r"sandbox (sbx_[0-9a-f]{16}) kept: look inside with `lm-sandbox sandbox exec \1 -- ")


class Term:
    """lm-sandbox chat in a pseudo-terminal: what it writes is read as it comes; keys are typed into it."""

    def __init__(self, lms_bin, url, *args, env=None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal, as in a shell
            try:
                os.execve(str(lms_bin), [str(lms_bin), "chat", *args], client_env(url, env))
            finally:
                os._exit(127)
        self.seen = b""
        self.status = None

    def expect(self, pattern, timeout=30):
        """Reads until `pattern` (a regex on the text without colours) shows up after what was matched before."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = ANSI.sub(b"", self.seen).decode("utf-8", "replace")
            m = rx.search(text, getattr(self, "_pos", 0))
            if m:
                self._pos = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{pattern!r} did not come within {timeout} s; the terminal shows:\n{text}")

    def _read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child has gone and the pty is closed
            return False
        self.seen += data
        return bool(data)

    def type(self, text):
        os.write(self.fd, text.encode() if isinstance(text, str) else text)

    def wait(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read(0.2):
                    pass
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            self._read(0.1)
        raise AssertionError(f"chat did not end within {timeout} s:\n{self.text()}")

    def text(self):
        return ANSI.sub(b"", self.seen).decode("utf-8", "replace")

    def close(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@pytest.fixture
def term(lms_bin, server):
    made = []

    def start(*args, env=None):
        t = Term(lms_bin, server.url, "--model", MODEL, *args, env=env)
        made.append(t)
        return t
    yield start
    for t in made:
        t.close()


def sandbox_of(text):
    m = SANDBOX_LINE.search(text)
    assert m, text
    return m.group(1)


def history(server, sid):
    r = server.get(f"/v1/sandboxes/{sid}/history")
    assert r.status_code == 200, show(r)
    return [e["arguments"].get("command") for e in r.json()["data"]]


def test_a_confirmed_command_runs_and_its_output_streams_under_it(term, server, model):
    script(model, {"content": "I will count.", "tool_calls": [bash("echo one; echo two >&2")]},
           {"content": "It printed: {last_tool}"})
    t = term()
    t.expect(r"> ")
    t.type("count for me\n")
    t.expect(r"I will count\.")
    t.expect(r"\$ echo one; echo two >&2\s+run this\? \[y/n/a\(lways\)\] ")
    t.type("y\n")
    t.expect(r"one\r?\n")
    t.expect(r"two\r?\n")
    t.expect(r"It printed: exit code 0")
    t.expect(r"> ")
    t.type(b"\x04")  # Ctrl-D: leave
    assert t.wait() == 0
    sid = sandbox_of(t.text())
    assert history(server, sid) == ["echo one; echo two >&2"]
    # Colours on a terminal.
    assert b"\x1b[" in t.seen


def test_a_declined_command_does_not_run_and_the_model_is_told(term, server, model):
    marker = unique_marker()
    script(model, {"tool_calls": [bash(f"touch /work/{marker}")]}, {"content": "Understood: {last_tool}"})
    t = term()
    t.expect(r"> ")
    t.type("make a file\n")
    t.expect(rf"\$ touch /work/{re.escape(marker)}\s+run this\?")
    t.type("n\n")
    t.expect(r"Understood: The user declined to run this")
    t.expect(r"> ")
    t.type(b"\x04")
    assert t.wait() == 0
    sid = sandbox_of(t.text())
    assert history(server, sid) == []
    r = server.post(f"/v1/sandboxes/{sid}/exec", {"cmd": f"ls /work/{marker}"})
    assert r.json()["exit_code"] != 0, show(r)


def test_yes_runs_without_asking_and_no_color_means_none(term, server, model):
    script(model, {"tool_calls": [bash("echo first")]}, {"tool_calls": [bash("echo second")]},
           {"content": "both ran"})
    t = term("--yes", env={"NO_COLOR": "1"})
    t.expect(r"> ")
    t.type("run two things\n")
    t.expect(r"\$ echo first\s+first\s+\$ echo second\s+second\s+both ran")
    t.expect(r"> ")
    t.type(b"\x04")
    assert t.wait() == 0
    assert "run this?" not in t.text() and b"\x1b[" not in t.seen
    assert history(server, sandbox_of(t.text())) == ["echo first", "echo second"]


def test_ctrl_c_stops_the_running_command_and_a_second_leaves(term, server, model):
    marker = unique_marker()
    script(model, {"content": "Sleeping.", "tool_calls": [bash(f"echo started; sleep {marker}")]},
           {"content": "after the interruption: {last_tool}"})
    t = term("--yes")
    t.expect(r"> ")
    t.type("sleep a while\n")
    t.expect(r"started")
    pids = wait_until(lambda: host_pids_with(marker), 10)
    assert pids, "the sleep never ran"
    t.type(b"\x03")  # Ctrl-C
    t.expect(r"\[interrupted: the command was stopped\]")
    t.expect(r"> ")
    assert wait_pids_gone(pids, 10) == [], "the command outlived Ctrl-C"
    # The conversation goes on: the model hears the command was interrupted.
    t.type("go on\n")
    t.expect(r"after the interruption: interrupted by the user")
    t.expect(r"> ")
    t.type(b"\x03")  # Ctrl-C at the prompt: leave
    assert t.wait() == 0
    sid = sandbox_of(t.text())
    got = server.get(f"/v1/sandboxes/{sid}/history").json()["data"]
    assert [e["arguments"]["command"] for e in got] == [f"echo started; sleep {marker}"], got


def test_a_piped_task_runs_with_yes_and_the_sandbox_is_named(lms_bin, server, model):
    script(model, {"tool_calls": [bash("cat > /work/task.txt <<'EOF'\npiped\nEOF\ncat /work/task.txt")]},
           {"content": "The file says {last_tool}"})
    p = subprocess.run([str(lms_bin), "chat", "--yes", "--model", MODEL], input=b"write the task file\n",
                       capture_output=True, timeout=60, env=client_env(server.url))
    out, err = p.stdout.decode(), p.stderr.decode()
    assert p.returncode == 0, (out, err)
    assert "piped" in out and "The file says exit code 0" in out and "\x1b[" not in out, out
    sid = sandbox_of(err)
    r = server.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "cat /work/task.txt"})
    assert r.json()["stdout"] == "piped\n", show(r)
    # The model got the whole of standard input as the task.
    with model.state.cond:
        first = next(e["json"] for e in model.state.requests if e["method"] == "POST")
    assert first["messages"][1] == {"role": "user", "content": "write the task file\n"}


def test_a_piped_task_without_yes_and_without_a_terminal_is_refused(lms_bin, server, model):
    p = subprocess.run([str(lms_bin), "chat", "--model", MODEL], input=b"task\n", capture_output=True, timeout=60,
                       env=client_env(server.url), start_new_session=True)
    assert p.returncode == 2 and "give --yes" in p.stderr.decode(), p



def test_terminal_escapes_from_a_command_are_shown_not_obeyed(term, server, model):
    script(model, {"tool_calls": [bash(r"printf 'a\033]0;owned\007b\033[2Jc\n'")]}, {"content": "ok"})
    t = term("--yes")
    t.expect(r"> ")
    t.type("print escapes\n")
    t.expect(r"a\^\[\]0;owned\^Gb\^\[\[2Jc")
    t.expect(r"> ")
    t.type(b"\x04")
    assert t.wait() == 0
    assert b"\x1b]0;owned" not in t.seen and b"\x1b[2J" not in t.seen
