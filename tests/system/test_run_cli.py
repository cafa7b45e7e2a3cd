"""`lm-sandbox run`: what a user of the command line sees (exit statuses, streams, --json, flags)."""

import json as jsonlib
import os
import subprocess

import pytest

root = pytest.mark.require_root

JSON_KEYS = {
    "stdout": str, "stderr": str, "exit_code": int, "signal": (str, type(None)), "timed_out": bool,
    "oom_killed": bool, "pids_limit_hit": bool, "stdout_truncated": bool, "stderr_truncated": bool,
    "duration_ms": (int, float), "cpu_ms": (int, float), "max_rss_kb": int, "net_rx_bytes": int, "net_tx_bytes": int,
}


# ---- output and exit status ---------------------------------------------------------------------------------------


@root
def test_echo_streams_to_stdout(run):
    r = run(["--", "echo", "hi"], json=False)
    assert (r.returncode, r.stdout) == (0, b"hi\n"), str(r)


@root
def test_exit_code_passes_through(run):
    assert run(["--", "sh", "-c", "exit 7"], json=False).returncode == 7
    r = run(["--", "sh", "-c", "exit 7"])
    assert r.returncode == 0 and r["exit_code"] == 7 and r["signal"] is None, str(r)


@root
def test_signal_death(run):
    plain = run(["--", "sh", "-c", "kill -9 $$"], json=False)
    assert plain.returncode == 137, str(plain)
    r = run(["--", "sh", "-c", "kill -9 $$"])
    assert r.returncode == 0 and r["signal"] == "SIGKILL", str(r)
    term = run(["--", "sh", "-c", "kill -15 $$"])
    assert term["signal"] == "SIGTERM", str(term)


@root
@pytest.mark.parametrize("program", ["/nonexistent/program", "lms-no-such-command"])
def test_missing_program_is_127(run, program):
    plain = run(["--", program], json=False)
    assert plain.returncode == 127, str(plain)
    assert plain.stderr, "a message says what was not found"
    r = run(["--", program])
    assert r.returncode == 0 and r["exit_code"] == 127, str(r)


@root
@pytest.mark.parametrize("program", ["/etc/passwd", "/usr"])
def test_not_executable_is_126(run, program):
    plain = run(["--", program], json=False)
    assert plain.returncode == 126, str(plain)
    r = run(["--", program])
    assert r.returncode == 0 and r["exit_code"] == 126, str(r)


@root
def test_not_executable_file_made_inside(run):
    r = run(["--", "sh", "-c", "printf '#!/bin/sh\\necho ran\\n' > /tmp/f; chmod 644 /tmp/f; exec /tmp/f"], json=False)
    assert r.returncode == 126 and b"ran" not in r.stdout, str(r)


@pytest.mark.parametrize("args", [
    [],
    ["--"],
    ["--bogus-flag", "--", "true"],
    ["--memory-mb", "abc", "--", "true"],
    ["--timeout-ms", "12x", "--", "true"],
    ["--pids", "-5", "--", "true"],
    ["--output-bytes", "", "--", "true"],
    ["--memory-mb"],
    ["--env", "NOEQUALS", "--", "true"],
], ids=["nothing", "dashdash-only", "unknown-flag", "memory-not-number", "timeout-trailing", "pids-negative",
        "output-empty", "memory-no-value", "env-no-equals"])
def test_usage_errors_exit_2(lms_bin, args):
    for json in (False, True):
        argv = [str(lms_bin), "run", *(["--json"] if json else []), *args]
        r = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
        assert r.returncode == 2, f"{argv}: exit {r.returncode}, stderr {r.stderr!r}"
        assert r.stderr, f"{argv}: no message on stderr"
        if json and r.stdout.strip():  # an error object may be printed, never a result
            obj = jsonlib.loads(r.stdout)
            assert "error" in obj and "exit_code" not in obj, f"{argv}: a usage error printed {r.stdout!r}"


@root
def test_gpu(run):
    # One test for both kinds of host, so that neither kind skips it (a skip fails CI).
    if not os.path.exists("/dev/nvidiactl"):
        for json in (False, True):
            r = run(["--gpu", "--", "true"], json=json)
            assert r.returncode == 125, f"--gpu without an NVIDIA driver must fail setup\n{r}"
            assert b"nvidia" in r.stderr.lower() or b"gpu" in r.stderr.lower(), f"the message names the cause\n{r}"
        return
    r = run(["--gpu", "--", "sh", "-c", "ls /dev; nvidia-smi -L"])
    assert r.returncode == 0 and r["exit_code"] == 0, f"--gpu on a host with a driver\n{r}"
    assert "nvidiactl" in r["stdout"] and "GPU 0" in r["stdout"], r.json
    plain = run(["--", "ls", "/dev"])
    assert "nvidia" not in plain["stdout"], f"NVIDIA devices inside without --gpu: {plain['stdout']}"


@root
def test_unknown_image_is_125(run):
    for json in (False, True):
        r = run(["--image", "lms-no-such-image", "--", "true"], json=json)
        assert r.returncode == 125, str(r)
        assert b"lms-no-such-image" in r.stderr or b"image" in r.stderr.lower(), str(r)


# ---- --json -------------------------------------------------------------------------------------------------------


@root
def test_json_has_exactly_the_documented_keys(run):
    r = run(["--", "sh", "-c", "echo out; echo err >&2"])
    assert r.returncode == 0, str(r)
    assert set(r.json) == set(JSON_KEYS), f"keys differ: +{set(r.json) - set(JSON_KEYS)} -{set(JSON_KEYS) - set(r.json)}"
    for key, types in JSON_KEYS.items():
        value = r.json[key]
        assert isinstance(value, types) and (key in ("timed_out", "oom_killed", "pids_limit_hit", "stdout_truncated",
                                                     "stderr_truncated") or not isinstance(value, bool)), \
            f"{key} = {value!r} has the wrong type"
    assert r.json["exit_code"] == 0 and r.json["signal"] is None and r.json["timed_out"] is False
    assert r.json["oom_killed"] is False and r.json["stdout_truncated"] is False
    assert r.json["duration_ms"] >= 0 and r.json["cpu_ms"] >= 0 and r.json["max_rss_kb"] > 0, r.json


@root
def test_json_separates_stdout_and_stderr(run):
    r = run(["--", "sh", "-c", "echo out; echo err >&2"])
    assert (r["stdout"], r["stderr"]) == ("out\n", "err\n"), r.json
    plain = run(["--", "sh", "-c", "echo out; echo err >&2"], json=False)
    assert plain.stdout == b"out\n" and b"err\n" in plain.stderr and b"out" not in plain.stderr, str(plain)


@root
def test_json_replaces_invalid_utf8(run):
    r = run(["--", "printf", "a\\377b\\303\\251"])
    assert r["stdout"] == "a\ufffdb\u00e9", repr(r["stdout"])
    plain = run(["--", "printf", "a\\377b"], json=False)
    assert plain.stdout == b"a\xffb", "without --json, bytes pass through untouched"


@root
def test_large_output_streams_whole(run):
    r = run(["--", "head", "-c", "300000", "/dev/zero"], json=False)
    assert r.returncode == 0 and len(r.stdout) == 300000 and set(r.stdout) == {0}


@root
def test_output_is_streamed_while_running(spawn):
    s = spawn(["--timeout-ms", "5000", "--", "sh", "-c", "echo first; sleep 30"])
    assert s.read_until(b"first\n", 20), f"no output: {s.out!r}"
    assert s.proc.poll() is None, "the first line came only when the command ended: output is not streamed"
    status, _, _ = s.wait(30)
    assert status == 124


# ---- stdin, cwd, env, files ---------------------------------------------------------------------------------------


@root
def test_stdin_with_i(run):
    data = b"hello\x00world\n" * 1000
    r = run(["-i", "--", "cat"], json=False, stdin=data)
    assert r.returncode == 0 and r.stdout == data, str(r)
    j = run(["-i", "--", "wc", "-c"], stdin=data)
    assert j["stdout"].strip() == str(len(data)), j.json


@root
def test_stdin_is_dev_null_without_i(lms_bin):
    # Our end of the pipe stays open: if the sandbox read the caller's stdin, cat would never end.
    p = subprocess.Popen([str(lms_bin), "run", "--", "cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        status = p.wait(timeout=20)
        out, err = p.stdout.read(), p.stderr.read()
        assert status == 0 and out == b"", (status, out, err)
    finally:
        p.stdin.close()
        if p.poll() is None:
            p.kill()
            p.wait()


@root
def test_default_cwd_is_work(run):
    assert run(["--", "pwd"])["stdout"] == "/work\n"


@root
def test_cwd_flag(run):
    assert run(["--cwd", "/tmp", "--", "pwd"])["stdout"] == "/tmp\n"


@root
def test_env_flag(run):
    r = run(["--env", "FOO=bar", "--env", "EMPTY=", "--env", "EQ=a=b", "--", "env"])
    lines = r["stdout"].splitlines()
    assert "FOO=bar" in lines and "EMPTY=" in lines and "EQ=a=b" in lines, lines


@root
def test_work_is_writable_and_executable(run):
    script = "printf '#!/bin/sh\\necho script-ran\\n' > /work/s.sh && chmod +x /work/s.sh && /work/s.sh"
    r = run(["--", "sh", "-c", script])
    assert r["exit_code"] == 0 and r["stdout"] == "script-ran\n", r.json


@root
def test_root_listing_has_no_host_private_dirs(run):
    r = run(["--", "ls", "/"])
    entries = set(r["stdout"].split())
    assert {"usr", "etc", "work", "tmp", "proc", "dev"} <= entries, f"control: the usual tree is there: {entries}"
    assert not entries & {"home", "root", "var", "srv", "mnt", "media", "opt", "run"}, entries


@root
def test_runs_as_root_of_the_sandbox(run):
    assert run(["--", "id", "-u"])["stdout"] == "0\n"
