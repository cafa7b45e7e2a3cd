"""`lm-sandbox sandbox create|ls|exec|rm` against a real daemon (issue 11): what a Docker user expects of
`docker run -d`, `docker ps`, `docker exec` and `docker rm`, and errors that say what to do. `cp` is
test_cli_cp.py's."""

import os
import re
import signal
import stat

import pytest

from cli_client import sandbox_cli, spawn_cli, wait_output
from server_fixtures import closed_url, daemons, wait_until

pytestmark = pytest.mark.require_root

SBX_ID = re.compile(r"sbx_[0-9a-f]{16}")


@pytest.fixture
def start(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path) as start:
        yield start


@pytest.fixture
def server(start):
    return start()


@pytest.fixture
def cli(lms_bin, server):
    """cli(*args, **kwargs) runs `lm-sandbox sandbox ARGS` against the test's daemon."""
    return lambda *args, **kwargs: sandbox_cli(lms_bin, server.url, *args, **kwargs)


def create(cli, *args):
    r = cli("create", *args)
    assert r.returncode == 0 and SBX_ID.fullmatch(r.out.strip()), r
    return r.out.strip()


def test_create_prints_the_id_and_the_sandbox_has_what_was_asked(cli, server):
    sid = create(cli, "--memory", "256m", "--pids", "64", "--disk", "64m", "--ttl", "10m", "-e", "GREETING=hi",
                 "--label", "owner=alice")
    sbx = server.get(f"/v1/sandboxes/{sid}").json()
    assert sbx["limits"]["memory_mb"] == 256 and sbx["limits"]["pids"] == 64 and sbx["limits"]["disk_mb"] == 64, sbx
    assert sbx["ttl_s"] == 600 and sbx["metadata"] == {"owner": "alice"}, sbx
    r = cli("exec", sid, "--", "sh", "-c", 'echo "$GREETING"')
    assert r.returncode == 0 and r.out == "hi\n", r


def test_ls_shows_state_age_expiry_and_labels_and_filters(cli):
    a = create(cli, "-l", "owner=alice", "-l", "task=t1", "--ttl", "2h")
    b = create(cli, "-l", "owner=bob")
    r = cli("ls")
    assert r.returncode == 0, r
    lines = r.out.splitlines()
    assert re.match(r"ID\s+STATE\s+CREATED\s+EXPIRES\s+LABELS$", lines[0]), r
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {a, b}, r
    assert re.search(r"running\s+(Less than a second|\d+ seconds?) ago\s+in (about an hour|\d+ minutes|2 hours)"
                     r"\s+owner=alice,task=t1$", rows[a]), r
    assert rows[b].endswith("owner=bob"), r
    # Columns line up: every row's STATE starts where the header's does.
    col = lines[0].index("STATE")
    assert all(line[col:col + 7] == "running" for line in lines[1:]), r
    q = cli("ls", "-q")
    assert q.returncode == 0 and sorted(q.out.split()) == sorted([a, b]), q
    f = cli("ls", "-q", "--filter", "label=owner=alice")
    assert f.returncode == 0 and f.out.split() == [a], f
    none = cli("ls", "-q", "--filter", "label=owner=carol")
    assert none.returncode == 0 and none.out == "", none


def test_exec_exit_status_streams_and_bytes_are_the_commands(cli):
    sid = create(cli)
    r = cli("exec", sid, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3 and r.stdout == b"out\n" and r.stderr == b"err\n", r
    # Bytes that are not UTF-8 come out unchanged (the client asks for base64).
    raw = cli("exec", sid, "--", "sh", "-c", r"printf '\377\000\376'")
    assert raw.returncode == 0 and raw.stdout == b"\xff\x00\xfe", raw
    # A signal that ends the command is 128+N, as a shell says it.
    killed = cli("exec", sid, "--", "sh", "-c", "kill -KILL $$")
    assert killed.returncode == 137, killed


def test_exec_conventions_for_what_could_not_run(cli):
    sid = create(cli)
    nf = cli("exec", sid, "--", "no-such-program")
    assert nf.returncode == 127 and "no-such-program" in nf.err, nf
    to = cli("exec", "--timeout", "1", sid, "--", "sleep", "30", timeout=30)
    assert to.returncode == 124 and "timed out" in to.err, to
    gone = cli("exec", "sbx_0000000000000000", "--", "true")
    assert gone.returncode == 125 and "no such sandbox" in gone.err, gone
    usage = cli("exec", sid)
    assert usage.returncode == 2 and "no command given" in usage.err, usage


def test_exec_takes_env_workdir_and_standard_input(cli):
    sid = create(cli)
    r = cli("exec", "-e", "A=1", "-w", "/tmp/made", sid, "--", "sh", "-c", 'echo "$A $(pwd)"; cat')
    assert r.returncode == 0 and r.out == "1 /tmp/made\n", r
    fed = cli("exec", sid, "--", "sh", "-c", "tr a-z A-Z", stdin=b"hello\nworld\n")
    assert fed.returncode == 0 and fed.out == "HELLO\nWORLD\n", fed
    skipped = cli("exec", "-n", sid, "--", "cat", stdin=b"not read\n")
    assert skipped.returncode == 0 and skipped.out == "", skipped
    binary = cli("exec", sid, "--", "cat", stdin=b"\xff\xfe")
    assert binary.returncode == 2 and "not UTF-8" in binary.err and "cp" in binary.err, binary


def test_a_sandbox_keeps_files_and_processes_between_execs(cli):
    sid = create(cli)
    assert cli("exec", sid, "--", "sh", "-c", "echo kept > /work/f; sleep 300 >/dev/null 2>&1 &").returncode == 0
    r = cli("exec", sid, "--", "sh", "-c", "cat /work/f; for p in /proc/[0-9]*; do cat $p/cmdline; echo; done")
    assert r.returncode == 0 and r.out.startswith("kept\n") and "sleep\x00300" in r.out, r


def test_exec_output_arrives_as_it_is_written_and_ctrl_c_ends_the_command(lms_bin, server, cli):
    sid = create(cli)
    proc = spawn_cli(lms_bin, server.url, "exec", sid, "--", "sh", "-c", "echo first; exec sleep 300")
    try:
        got = wait_output(proc, b"first\n", timeout=20)
        assert got == b"first\n", f"the first line did not arrive while the command ran: {got!r}"
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == -signal.SIGINT
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    def sleep_gone():
        r = cli("exec", sid, "--", "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        return r.returncode == 0 and "sleep 300" not in r.out

    assert wait_until(sleep_gone, timeout=10, interval=0.1), "the command outlived its client"


def test_rm_removes_each_and_goes_on_past_one_that_fails(cli, server):
    a, b = create(cli), create(cli)
    r = cli("rm", a, "sbx_0000000000000000", b)
    assert r.returncode == 1, r
    assert r.out.split() == [a, b], r
    assert "sbx_0000000000000000: no such sandbox" in r.err, r
    assert server.get(f"/v1/sandboxes/{a}").status_code == 404
    again = cli("exec", a, "--", "true")
    assert again.returncode == 125 and "no such sandbox (it was removed)" in again.err, again
    assert cli("ls", "-q").out == ""


def test_a_daemon_that_is_not_running_is_named_with_what_to_do(lms_bin):
    url = closed_url()
    for args, status in ((["ls"], 1), (["exec", "sbx_0000000000000000", "true"], 125), (["create"], 1)):
        r = sandbox_cli(lms_bin, url, *args)
        assert r.returncode == status, r
        assert f"cannot reach the lm-sandbox daemon at {url}" in r.err and "lm-sandbox serve" in r.err \
            and "make run" in r.err, r
    # The default address, without LM_SANDBOX_URL.
    r = sandbox_cli(lms_bin, None, "--url", url, "ls")
    assert r.returncode == 1 and url in r.err, r


def test_the_token_comes_from_the_environment_or_a_file_and_a_refusal_says_so(lms_bin, start, tmp_path):
    token = "t0ken-for-the-cli-tests"
    path = tmp_path / "token"
    path.write_text(token + "\n")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    s = start("--token-file", path)
    missing = sandbox_cli(lms_bin, s.url, "ls")
    assert missing.returncode == 1 and "wants a token" in missing.err and "LM_SANDBOX_API_TOKEN" in missing.err \
        and "--token-file" in missing.err, missing
    wrong = sandbox_cli(lms_bin, s.url, "ls", env={"LM_SANDBOX_API_TOKEN": "nope"})
    assert wrong.returncode == 1 and "refused the token from LM_SANDBOX_API_TOKEN" in wrong.err, wrong
    by_env = sandbox_cli(lms_bin, s.url, "create", env={"LM_SANDBOX_API_TOKEN": token})
    assert by_env.returncode == 0 and SBX_ID.fullmatch(by_env.out.strip()), by_env
    by_file = sandbox_cli(lms_bin, s.url, "--token-file", path, "exec", by_env.out.strip(), "--", "echo", "ok")
    assert by_file.returncode == 0 and by_file.out == "ok\n", by_file
    no_file = sandbox_cli(lms_bin, s.url, "ls", "--token-file", tmp_path / "absent")
    assert no_file.returncode == 2 and "absent" in no_file.err, no_file


def test_help_lists_the_commands_and_usage_errors_exit_2(lms_bin):
    r = sandbox_cli(lms_bin, None, "--help")
    assert r.returncode == 0, r
    for word in ("create", "ls", "exec", "cp", "rm", "--url", "--token-file", "LM_SANDBOX_URL"):
        assert word in r.out, (word, r)
    sub = sandbox_cli(lms_bin, None, "exec", "--help")
    assert sub.returncode == 0 and "--workdir" in sub.out and "124" in sub.out, sub
    top = sandbox_cli(lms_bin, None)
    assert top.returncode == 0 and "create" in top.out, top
    bad = sandbox_cli(lms_bin, None, "create", "--memory", "lots")
    assert bad.returncode == 2 and "512m" in bad.err, bad
    unknown = sandbox_cli(lms_bin, None, "start")
    assert unknown.returncode == 2 and "unknown command" in unknown.err, unknown
