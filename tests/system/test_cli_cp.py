"""`lm-sandbox sandbox cp` (issue 11): files and directories in and out of a sandbox, as `docker cp` copies
them, streamed (never whole in memory), and what a sandbox sends treated as hostile.

The tests against the real daemon need its files API (PUT/GET /v1/sandboxes/{id}/files/{path}, built on the
branch `files`): without it they skip, saying so. The tests of the client's own streaming and of hostile tar
streams talk to a small fake daemon here, and always run."""

import http.server
import io
import json
import os
import socketserver
import stat
import subprocess
import tarfile
import threading
import time

import pytest

from cli_client import client_env, sandbox_cli
from server_fixtures import daemons


# ---- against the real daemon --------------------------------------------------------------------------------------


@pytest.fixture
def real(lms_bin, tmp_path):
    """(run cli against the daemon, a new sandbox's id, the daemon). Skips when the daemon has no files API."""
    if os.geteuid() != 0:
        pytest.skip("NEEDS ROOT: sandbox tests map uids and create cgroups; run as root (CI does)")
    with daemons(lms_bin, tmp_path) as start:
        server = start()
        sid = server.post("/v1/sandboxes", {}).json()["id"]
        probe = server.request("PUT", f"/v1/sandboxes/{sid}/files/work/.probe", data=b"x")
        if probe.status_code not in (404, 405):
            yield (lambda *args, **kwargs: sandbox_cli(lms_bin, server.url, *args, **kwargs)), sid, server
            return
    # Skipped once the daemon is stopped (a skip raised inside `daemons` would leave it running).
    pytest.skip(f"NO FILES API: this daemon answers PUT .../files/ with {probe.status_code} "
                "(the files API comes with the branch `files`)")


def sh(cli, sid, script):
    r = cli("exec", sid, "--", "sh", "-c", script)
    assert r.returncode == 0, r
    return r.out


def make_tree(root):
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(bytes(range(256)) * 4)
    (root / "sub" / "b.txt").write_text("b\n")
    (root / "run.sh").write_text("#!/bin/sh\necho ran\n")
    os.chmod(root / "run.sh", 0o750)
    os.symlink("sub/b.txt", root / "link")


def test_a_file_goes_in_and_comes_out_with_its_bytes_and_mode(real, tmp_path):
    cli, sid, _ = real
    src = tmp_path / "tool.sh"
    src.write_bytes(b"#!/bin/sh\nprintf '\\377ok\\n'\n")
    os.chmod(src, 0o755)
    r = cli("cp", src, f"{sid}:/work/bin/tool.sh")
    assert r.returncode == 0, r
    assert sh(cli, sid, "/work/bin/tool.sh | od -An -c | tr -s ' '").strip() == "377 o k \\n"
    # Into an existing directory: under its own name (a relative PATH is under /work).
    assert cli("cp", src, f"{sid}:bin").returncode == 0
    assert sh(cli, sid, "ls /work/bin") == "tool.sh\n"
    out = tmp_path / "back"
    r = cli("cp", f"{sid}:/work/bin/tool.sh", out)
    assert r.returncode == 0 and out.read_bytes() == src.read_bytes(), r
    into = tmp_path / "dir"
    into.mkdir()
    assert cli("cp", f"{sid}:/work/bin/tool.sh", into).returncode == 0
    assert (into / "tool.sh").read_bytes() == src.read_bytes()


def test_a_directory_goes_in_as_docker_cp_puts_it(real, tmp_path):
    cli, sid, _ = real
    make_tree(tmp_path / "proj")
    assert cli("cp", tmp_path / "proj", f"{sid}:/work/new").returncode == 0  # absent: made with SRC's content
    assert cli("cp", tmp_path / "proj", f"{sid}:/work/new").returncode == 0  # present: SRC lands inside
    assert cli("cp", f"{tmp_path / 'proj'}/.", f"{sid}:/work/flat").returncode == 0
    listing = sh(cli, sid, "cd /work && find new flat | sort; readlink new/link; stat -c %a new/run.sh; "
                 "sh new/run.sh; cmp new/a.bin new/proj/a.bin && echo same")
    assert listing.split("\n") == [
        "flat", "flat/a.bin", "flat/link", "flat/run.sh", "flat/sub", "flat/sub/b.txt",
        "new", "new/a.bin", "new/link", "new/proj", "new/proj/a.bin", "new/proj/link", "new/proj/run.sh",
        "new/proj/sub", "new/proj/sub/b.txt", "new/run.sh", "new/sub", "new/sub/b.txt",
        "sub/b.txt", "750", "ran", "same", ""], listing


def test_a_directory_comes_out_as_docker_cp_gets_it(real, tmp_path):
    cli, sid, _ = real
    sh(cli, sid, "mkdir -p /work/out/sub && echo x > /work/out/sub/x && ln -s sub/x /work/out/l && "
       "chmod 700 /work/out/sub")
    dst = tmp_path / "got"
    assert cli("cp", f"{sid}:/work/out", dst).returncode == 0
    assert (dst / "sub" / "x").read_text() == "x\n" and os.readlink(dst / "l") == "sub/x"
    assert stat.S_IMODE(os.stat(dst / "sub").st_mode) == 0o700
    assert cli("cp", f"{sid}:/work/out", dst).returncode == 0
    assert (dst / "out" / "sub" / "x").read_text() == "x\n"
    # What comes out is the caller's, whoever owned it inside.
    assert os.stat(dst / "sub" / "x").st_uid == os.geteuid()


def test_dash_is_a_tar_stream_both_ways(real, tmp_path):
    cli, sid, _ = real
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("t/hello.txt")
        data = b"hello\n"
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    assert cli("cp", "-", f"{sid}:/work/fromtar", stdin=buf.getvalue()).returncode == 0
    assert sh(cli, sid, "cat /work/fromtar/t/hello.txt") == "hello\n"
    out = cli("cp", f"{sid}:/work/fromtar", "-")
    assert out.returncode == 0, out
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as t:
        assert t.extractfile([m for m in t.getmembers() if m.name.endswith("hello.txt")][0]).read() == b"hello\n"
    one = cli("cp", f"{sid}:/work/fromtar/t/hello.txt", "-")
    with tarfile.open(fileobj=io.BytesIO(one.stdout)) as t:
        assert [m.name for m in t.getmembers()] == ["hello.txt"] and t.extractfile("hello.txt").read() == b"hello\n"


def test_what_the_sandbox_cannot_read_cp_cannot_either_and_errors_say_what(real, tmp_path):
    cli, sid, _ = real
    r = cli("cp", f"{sid}:/etc/shadow", tmp_path / "shadow")
    assert r.returncode == 1 and not (tmp_path / "shadow").exists(), r
    gone = cli("cp", tmp_path, "sbx_0000000000000000:/work")
    assert gone.returncode == 1 and "no such sandbox" in gone.err, gone
    missing = cli("cp", f"{sid}:/work/none", tmp_path / "none")
    assert missing.returncode == 1 and "/work/none" in missing.err, missing


# ---- against a fake daemon: the client's own streaming and safety -------------------------------------------------


class Fake(http.server.BaseHTTPRequestHandler):
    """GET answers with the server's `answer` (content type, body iterator); PUT's body is counted and dropped."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        ctype, length, chunks = self.server.answer(self.path)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        for c in chunks:
            self.wfile.write(c)

    def do_PUT(self):
        received = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while (n := int(self.rfile.readline().strip(), 16)) > 0:
                while n > 0:
                    got = len(self.rfile.read(min(n, 1 << 20)))
                    received, n = received + got, n - got
                self.rfile.readline()
            self.rfile.readline()
        else:
            n = int(self.headers.get("Content-Length", "0"))
            while n > 0:
                got = len(self.rfile.read(min(n, 1 << 20)))
                received, n = received + got, n - got
        self.server.received.append((self.path, self.headers.get("Content-Type"), received))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


class FakeServer(socketserver.ThreadingTCPServer):
    def handle_error(self, request, client_address):
        pass  # a client that stops reading on purpose (cp's probe of a path) is no error here


@pytest.fixture
def fake():
    srv = FakeServer(("127.0.0.1", 0), Fake)
    srv.daemon_threads = True
    srv.received = []
    srv.answer = None
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def cli_rusage(lms_bin, url, *args, stdin=subprocess.DEVNULL, cwd=None):
    """Runs the client; (exit status, stderr, its peak RSS in KiB). The peak is the last VmHWM read from /proc
    while it ran (wait4's ru_maxrss would not do: Linux carries the forking parent's RSS over exec into it)."""
    proc = subprocess.Popen([str(lms_bin), "sandbox", *map(str, args)], stdin=stdin, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=client_env(url), cwd=cwd)
    errs = []
    reader = threading.Thread(target=lambda: errs.append(proc.stderr.read()), daemon=True)
    reader.start()
    peak = 0
    while proc.poll() is None:
        try:
            for line in open(f"/proc/{proc.pid}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.002)  # sampling, not synchronisation: the peak only grows
    reader.join()
    return proc.returncode, errs[0].decode(errors="replace"), peak


BIG = 192 << 20  # well over what a client that buffered could hide in its RSS


def test_a_big_file_streams_out_and_in_without_being_held_in_memory(lms_bin, fake, tmp_path):
    block = os.urandom(1 << 20)
    fake.answer = lambda path: ("application/octet-stream", BIG, (block for _ in range(BIG >> 20)))
    status, err, rss_out = cli_rusage(lms_bin, fake.url, "cp", "sbx_1:/work/big", tmp_path / "big")
    assert status == 0, err
    assert (tmp_path / "big").stat().st_size == BIG
    # Uploading: the existing path is probed first (a GET answered with a file), then the bytes go.
    status, err, rss_in = cli_rusage(lms_bin, fake.url, "cp", tmp_path / "big", "sbx_1:/work/copy")
    assert status == 0, err
    assert fake.received[-1] == ("/v1/sandboxes/sbx_1/files/work/copy?mode=0644", "application/octet-stream", BIG)
    (tmp_path / "big").unlink()
    assert max(rss_out, rss_in) < 48 << 10, f"peak RSS {rss_out} / {rss_in} KiB for a {BIG >> 20} MiB file"


def test_a_big_directory_streams_in_as_tar(lms_bin, fake, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    block = os.urandom(1 << 20)
    with open(d / "big", "wb") as f:
        for _ in range(BIG >> 20):  # written, not sparse: a sparse file travels as its extents only
            f.write(block)
    fake.answer = lambda path: ("application/json", 2, iter([b"{}"]))  # the destination is a directory
    status, err, rss = cli_rusage(lms_bin, fake.url, "cp", d, "sbx_1:/work")
    assert status == 0, err
    path, ctype, received = fake.received[-1]
    assert path == "/v1/sandboxes/sbx_1/files/work" and ctype == "application/x-tar" and received > BIG
    assert rss < 48 << 10, f"peak RSS {rss} KiB"


def tar_of(*members):
    """A tar stream of (TarInfo, data) pairs, written as given (names are not cleaned)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for info, data in members:
            info.size = len(data) if data is not None else 0
            t.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def member(name, kind=tarfile.REGTYPE, mode=0o644, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, linkname
    return info


@pytest.mark.parametrize("evil", [
    [(member("../escaped"), b"x")],
    [(member("/tmp/lms-cp-absolute-escape"), b"x")],
    [(member("ok/../../escaped"), b"x")],
    [(member("hard", tarfile.LNKTYPE, linkname="../outside/secret"), None)],
    # Refused, or the link replaced by a directory of dst's own (libarchive's SECURE_SYMLINKS with UNLINK).
    [(member("link", tarfile.SYMTYPE, linkname="../outside"), None), (member("link/planted"), b"x")],
])
def test_a_hostile_tar_from_a_sandbox_writes_nothing_outside(lms_bin, fake, tmp_path, evil):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("mine\n")
    dst = tmp_path / "dst"
    body = tar_of(*evil)
    fake.answer = lambda path: ("application/x-tar", len(body), iter([body]))
    r = sandbox_cli(lms_bin, fake.url, "cp", "sbx_1:/work/d", dst)
    if evil[0][0].type == tarfile.SYMTYPE and r.returncode == 0:
        assert (dst / "link").is_dir() and not (dst / "link").is_symlink(), r
    else:
        assert r.returncode == 1, r
    assert sorted(os.listdir(outside)) == ["secret"] and (outside / "secret").read_text() == "mine\n"
    assert not (tmp_path / "escaped").exists() and not os.path.exists("/tmp/lms-cp-absolute-escape")


def test_set_uid_bits_and_device_nodes_do_not_come_out(lms_bin, fake, tmp_path):
    body = tar_of((member("bin/su", mode=0o4755), b"#!/bin/sh\n"), (member("dir", tarfile.DIRTYPE, 0o3777), None),
                  (member("fifo", tarfile.FIFOTYPE), None), (member("null", tarfile.CHRTYPE), None),
                  (member("plain"), b"ok\n"))
    fake.answer = lambda path: ("application/x-tar", len(body), iter([body]))
    dst = tmp_path / "dst"
    r = sandbox_cli(lms_bin, fake.url, "cp", "sbx_1:/work/d", dst)
    assert r.returncode == 0, r
    assert stat.S_IMODE(os.stat(dst / "bin" / "su").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dst / "dir").st_mode) == 0o777
    assert not (dst / "fifo").exists() and not (dst / "null").exists() and "skipped" in r.err, r
    assert (dst / "plain").read_text() == "ok\n"


def test_cp_usage_errors(lms_bin, fake, tmp_path):
    both = sandbox_cli(lms_bin, fake.url, "cp", "a", "b")
    assert both.returncode == 2 and "ID:PATH" in both.err, both
    two = sandbox_cli(lms_bin, fake.url, "cp", "sbx_1:/a", "sbx_2:/b")
    assert two.returncode == 2 and "copy out, then in" in two.err, two
    assert not json.dumps(fake.received) or fake.received == []
