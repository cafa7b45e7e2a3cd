"""The files API of persistent sandboxes (API.md, "Persistent sandboxes", Files): GET/PUT/DELETE
/v1/sandboxes/{id}/files/{path}, against the real daemon. Every path is resolved inside the sandbox's root with its
own user's permissions: no way of naming a path (links, `..`, encoded separators, a link swapped in meanwhile, a tar
stream's names and links) reads or writes a file of the host, makes a device or a set-user-ID file."""

import io
import os
import socket
import tarfile
import threading
import time

import pytest

from server_fixtures import assert_error, assert_exec_result, daemons, proc_usage, show

pytestmark = pytest.mark.require_root

MiB = 1 << 20
HOST_SECRET = b"host secret: never through the files API\n"


@pytest.fixture
def start(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path) as start:
        yield start


@pytest.fixture
def server(start):
    return start()


@pytest.fixture
def sbx(server):
    r = server.post("/v1/sandboxes", {"ttl_s": 600})
    assert r.status_code == 201, show(r)
    return r.json()["id"]


@pytest.fixture
def host_dir(tmp_path):
    """A host directory with a secret in it, outside anything a sandbox sees (the sandbox's /tmp is its own)."""
    d = tmp_path / "host"
    d.mkdir()
    (d / "secret").write_bytes(HOST_SECRET)
    os.chmod(d, 0o777)  # writable by anyone: only the resolution keeps the sandbox out
    return d


def url(sbx, path):
    return f"/v1/sandboxes/{sbx}/files{path}"


def put(server, sbx, path, data, **kw):
    return server.request("PUT", url(sbx, path), data=data, **kw)


def sh(server, sbx, cmd):
    res = assert_exec_result(server.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": cmd}))
    assert res["exit_code"] == 0, res
    return res["stdout"]


def tar_bytes(entries):
    """A tar stream of (name, kind, payload, mode): kind file (payload: bytes), dir, symlink or hardlink (payload:
    the target), chr (a device node)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, payload, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                       "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE}[kind]
            if kind == "file":
                ti.size = len(payload)
                t.addfile(ti, io.BytesIO(payload))
            else:
                if kind in ("symlink", "hardlink"):
                    ti.linkname = payload
                if kind == "chr":
                    ti.devmajor, ti.devminor = 1, 3
                t.addfile(ti)
    return buf.getvalue()


def raw_get(server, path):
    """GET with the path sent exactly as given (no client-side normalisation of `..` or escapes)."""
    sock = server.raw_request("GET", path, headers={"Connection": "close"})
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def assert_host_untouched(host_dir):
    assert sorted(os.listdir(host_dir)) == ["secret"], os.listdir(host_dir)
    assert (host_dir / "secret").read_bytes() == HOST_SECRET


# ---- round trips ---------------------------------------------------------------------------------------------------

def test_a_file_goes_in_and_comes_out_with_its_mode(server, sbx):
    data = bytes(range(256)) * 1000
    r = put(server, sbx, "/work/deep/er/f.bin?mode=0750", data)
    assert r.status_code == 201, show(r)
    assert r.json() == {"path": "/work/deep/er/f.bin", "type": "file", "size": len(data), "mode": "0750"}
    got = server.get(url(sbx, "/work/deep/er/f.bin"))
    assert got.status_code == 200 and got.content == data, show(got)
    assert got.headers["Content-Type"] == "application/octet-stream"
    # The command sees the same file, owned by the sandbox's root, with the mode asked for; parents 0755.
    assert sh(server, sbx, "stat -c '%a %u %s' /work/deep/er/f.bin /work/deep") == f"750 0 {len(data)}\n755 0 60\n" \
        or sh(server, sbx, "stat -c '%a %u' /work/deep/er/f.bin").startswith("750 0")
    # Written again: replaced whole, the default mode, no temporary name left beside it.
    assert put(server, sbx, "/work/deep/er/f.bin", b"short").status_code == 201
    assert server.get(url(sbx, "/work/deep/er/f.bin")).content == b"short"
    listing = server.get(url(sbx, "/work/deep/er")).json()
    assert [(e["name"], e["mode"], e["size"]) for e in listing["entries"]] == [("f.bin", "0644", 5)], listing


def test_a_directory_lists_its_entries(server, sbx):
    sh(server, sbx, "mkdir -p /work/d/sub && printf abc > /work/d/a && ln -s a /work/d/link && mkfifo /work/d/p")
    r = server.get(url(sbx, "/work/d"))
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json", show(r)
    entries = r.json()["entries"]
    assert [e["name"] for e in entries] == ["a", "link", "p", "sub"]
    for e in entries:
        assert set(e) == {"name", "type", "size", "mode", "mtime"}, e
        assert isinstance(e["mtime"], int) and abs(e["mtime"] - time.time()) < 600, e
    kinds = {e["name"]: e["type"] for e in entries}
    assert kinds == {"a": "file", "link": "symlink", "p": "fifo", "sub": "directory"}
    assert entries[0]["size"] == 3
    # The root lists too; a FIFO is not read (that would block), a missing path is 404.
    assert "work" in [e["name"] for e in server.get(url(sbx, "/")).json()["entries"]]
    assert_error(server.get(url(sbx, "/work/d/p")), 409, "not_a_regular_file")
    assert_error(server.get(url(sbx, "/work/nothing")), 404, "file_not_found")
    # A link is followed (inside the sandbox).
    assert server.get(url(sbx, "/work/d/link")).content == b"abc"


def test_a_directory_travels_as_tar_both_ways(server, sbx):
    stream = tar_bytes([("proj", "dir", None, 0o755), ("proj/src/main.py", "file", b"print(1)\n", 0o644),
                        ("proj/run.sh", "file", b"#!/bin/sh\necho hi\n", 0o755),
                        ("proj/latest", "symlink", "src/main.py", 0o777),
                        ("proj/same", "hardlink", "proj/run.sh", 0o755)])
    r = put(server, sbx, "/work/in", stream, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 201, show(r)
    assert r.json()["entries"] == 5 and r.json()["type"] == "directory"
    assert sh(server, sbx, "cd /work/in/proj && sh run.sh && cat latest && stat -c %a run.sh && stat -c %h same") \
        == "hi\nprint(1)\n755\n2\n"
    out = server.get(url(sbx, "/work/in"), headers={"Accept": "application/x-tar"})
    assert out.status_code == 200 and out.headers["Content-Type"] == "application/x-tar", show(out)
    with tarfile.open(fileobj=io.BytesIO(out.content)) as t:
        members = {m.name: m for m in t.getmembers()}
        assert set(members) == {"proj", "proj/src", "proj/src/main.py", "proj/run.sh", "proj/latest", "proj/same"}
        assert t.extractfile("proj/src/main.py").read() == b"print(1)\n"
        assert members["proj/latest"].issym() and members["proj/latest"].linkname == "src/main.py"
        assert members["proj/run.sh"].mode & 0o777 == 0o755
    # Unpacking into a directory that exists adds to it; a tar stream into a file's path is refused.
    assert put(server, sbx, "/work/in", tar_bytes([("more", "file", b"m", 0o600)]),
               headers={"Content-Type": "application/x-tar"}).status_code == 201
    assert server.get(url(sbx, "/work/in/more")).content == b"m"
    assert_error(put(server, sbx, "/work/in/more", tar_bytes([("x", "file", b"", 0o644)]),
                     headers={"Content-Type": "application/x-tar"}), 409, "not_a_directory")
    assert_error(put(server, sbx, "/work/bad", b"this is no tar stream" * 100,
                     headers={"Content-Type": "application/x-tar"}), 400, "invalid_archive")


def test_delete_a_file_and_a_tree(server, sbx):
    sh(server, sbx, "mkdir -p /work/t/a/b && touch /work/t/a/b/f /work/t/g && ln -s /usr /work/t/usr")
    r = server.request("DELETE", url(sbx, "/work/t/g"))
    assert r.status_code == 204 and r.content == b"", show(r)
    assert_error(server.request("DELETE", url(sbx, "/work/t/g")), 404, "file_not_found")
    assert_error(server.request("DELETE", url(sbx, "/work/t")), 409, "directory_not_empty")
    # A link in the tree is removed itself, never what it points to.
    assert server.request("DELETE", url(sbx, "/work/t?recursive=true")).status_code == 204
    assert sh(server, sbx, "ls /work; test -x /usr/bin/env && echo usr-intact") == "usr-intact\n"
    assert_error(server.request("DELETE", url(sbx, "/")), 400)
    assert_error(server.request("DELETE", url(sbx, "/usr/bin/env")), 403, "read_only_file_system")


def test_errors_are_clear(server, sbx):
    assert_error(put(server, sbx, "/work", b"x"), 409, "is_a_directory")
    assert_error(put(server, sbx, "/usr/evil", b"x"), 403, "read_only_file_system")
    assert_error(put(server, sbx, "/work/f?mode=4755", b"x"), 400, "invalid_mode")
    assert_error(put(server, sbx, "/work/f?mode=rwx", b"x"), 400, "invalid_mode")
    assert put(server, sbx, "/work/f", b"x").status_code == 201
    assert_error(put(server, sbx, "/work/f/under", b"x"), 409, "not_a_directory")
    assert_error(server.get(url("sbx_0000000000000000", "/work")), 404, "sandbox_not_found")
    # The sandbox's disk is its limit: 507 when it is full, and nothing half-written is left.
    small = server.post("/v1/sandboxes", {"limits": {"disk_mb": 4}}).json()["id"]
    assert_error(put(server, small, "/work/big", b"\0" * (8 * MiB)), 507, "disk_full")
    assert server.get(url(small, "/work")).json()["entries"] == []


def test_each_call_pushes_the_expiry_forward(server, sbx):
    before = server.get(f"/v1/sandboxes/{sbx}").json()["expires_at"]
    time.sleep(0.05)  # the clock must move on for the new expiry to differ (RFC 3339 milliseconds)
    assert server.get(url(sbx, "/work")).status_code == 200
    after = server.get(f"/v1/sandboxes/{sbx}").json()["expires_at"]
    assert after > before, (before, after)


# ---- the sandbox's own user -----------------------------------------------------------------------------------------

def test_what_the_sandbox_cannot_read_the_api_cannot(server, sbx):
    # The host image's /etc is the host's, read-only: /etc/shadow is root's there, and the sandbox's root is
    # not the host's.
    assert sh(server, sbx, "cat /etc/shadow >/dev/null 2>&1 || echo refused") == "refused\n"
    assert_error(server.get(url(sbx, "/etc/shadow")), 403, "permission_denied")
    # The API has no capability at all: a file of the sandbox's own with mode 000 is refused, where the sandbox's
    # root reads it through its capabilities in its user namespace (the API is stricter, never looser).
    sh(server, sbx, "echo private > /work/p && chmod 000 /work/p")
    assert_error(server.get(url(sbx, "/work/p")), 403, "permission_denied")
    assert_error(put(server, sbx, "/etc/passwd", b"x"), 403)


# ---- escapes -------------------------------------------------------------------------------------------------------

def test_links_and_dotdot_never_reach_the_host(server, sbx, host_dir):
    secret = host_dir / "secret"
    depth = "../" * 20
    sh(server, sbx, f"ln -s {secret} /work/abs && ln -s {depth}{str(secret).lstrip('/')} /work/rel && "
                    f"ln -s {host_dir} /work/dirlink && ln -s {depth}{str(host_dir).lstrip('/')} /work/reldir && "
                    f"ln -s /proc/self/root{host_dir} /work/magic && mkdir -p {host_dir}")
    for path in ("/work/abs", "/work/rel", "/work/dirlink/secret", "/work/reldir/secret", "/work/magic/secret",
                 f"/work/../../../..{secret}", f"{secret}"):
        r = server.get(url(sbx, path))
        assert r.status_code in (400, 403, 404), show(r)
        assert HOST_SECRET not in r.content
    # Sent as is, and percent-encoded (%2F, %2e%2e): the same, resolved inside.
    for raw in (f"/work/../../../../..{secret}", f"/work%2F..%2F..%2F..%2F..{str(secret).replace('/', '%2F')}",
                f"/%2e%2e/%2e%2e/%2e%2e{secret}", f"/work/dirlink%2Fsecret"):
        status, body = raw_get(server, url(sbx, raw))
        assert status in (400, 403, 404) and HOST_SECRET not in body, (raw, status, body[:200])
    # Writes and removals through the same links land inside the sandbox, or nowhere.
    for path in ("/work/dirlink/new", "/work/reldir/new", "/work/abs", "/work/magic/new"):
        put(server, sbx, path, b"written")
    for path in ("/work/dirlink/secret", "/work/reldir/secret", "/work/magic/secret"):
        server.request("DELETE", url(sbx, path))
    server.request("DELETE", url(sbx, "/work/dirlink?recursive=true"))
    assert_host_untouched(host_dir)
    # What was written through /work/dirlink is in the sandbox, at the link's target inside it (the sandbox's
    # own directory of that name, made above).
    assert server.get(url(sbx, f"{host_dir}/new")).content == b"written"


def test_a_link_swapped_in_during_requests_never_leads_out(server, sbx, host_dir):
    # In the sandbox, /work/swap flips between a directory (with a decoy) and a link to the host's directory
    # as fast as a shell can, while the client reads and writes through it.
    loop = (f"while :; do rm -rf /work/swap.d; mkdir /work/swap.d; echo decoy > /work/swap.d/secret; "
            f"mv -T /work/swap.d /work/swap 2>/dev/null || {{ rm -rf /work/swap; mv /work/swap.d /work/swap; }}; "
            f"ln -sfn {host_dir} /work/swap.l; mv -T /work/swap.l /work/swap 2>/dev/null; done")
    sh(server, sbx, f"nohup sh -c '{loop}' >/dev/null 2>&1 &")
    seen = set()
    s = server.session()
    deadline = time.monotonic() + 4
    n = 0
    while time.monotonic() < deadline or n < 50:
        r = server.get(url(sbx, "/work/swap/secret"), session=s)
        assert HOST_SECRET not in r.content, show(r)
        seen.add(r.status_code)
        server.request("PUT", url(sbx, f"/work/swap/w{n}"), data=b"w", session=s)
        n += 1
    assert 200 in seen, seen  # the decoy was read: the race was run
    assert_host_untouched(host_dir)


def test_tar_names_and_links_never_leave_the_directory(server, sbx, host_dir):
    tar = {"Content-Type": "application/x-tar"}
    bad = {
        "../escape": [("../escape", "file", b"x", 0o644)],
        "a/../../escape": [("a/../../escape", "file", b"x", 0o644)],
        f"{host_dir}/abs": [(f"{host_dir}/abs", "file", b"x", 0o644)],
        "out/escape": [("out", "symlink", str(host_dir), 0o777), ("out/escape", "file", b"x", 0o644)],
        "up/escape": [("up", "symlink", "../../../../../../../../" + str(host_dir).lstrip("/"), 0o777),
                      ("up/escape", "file", b"x", 0o644)],
        "hard": [("hard", "hardlink", str(host_dir / "secret"), 0o644)],
        "hard2": [("hard2", "hardlink", "../../../../../../../" + str(host_dir / "secret").lstrip("/"), 0o644)],
        "null": [("null", "chr", None, 0o666)],
    }
    for entry, entries in bad.items():
        r = put(server, sbx, "/work/x", tar_bytes(entries), headers=tar)
        err = assert_error(r, 400)
        assert entry in err["message"], (entry, err)
    assert_host_untouched(host_dir)
    # Set-user-ID and set-group-ID bits are dropped; the files themselves come in.
    r = put(server, sbx, "/work/s", tar_bytes([("suid", "file", b"#!/bin/sh\n", 0o4755), ("sgid", "dir", None, 0o2775)]),
            headers=tar)
    assert r.status_code == 201, show(r)
    assert sh(server, sbx, "stat -c %a /work/s/suid /work/s/sgid") == "755\n775\n"
    assert sh(server, sbx, "find /work -type c -o -type b -o -perm /6000") == ""


# ---- limits and streaming ------------------------------------------------------------------------------------------

def test_uploads_over_the_limit_are_413_and_leave_nothing(start):
    server = start("--max-upload-bytes", str(MiB))
    sbx = server.post("/v1/sandboxes", {}).json()["id"]
    assert put(server, sbx, "/work/ok", b"\1" * MiB).status_code == 201
    # Declared too large: refused before the body is read.
    assert_error(put(server, sbx, "/work/big", b"\1" * (MiB + 1)), 413, "body_too_large")
    # Chunked (no Content-Length): refused once it passes the limit; neither the file nor its temporary is left.
    def chunks():
        for _ in range(4):
            yield b"\2" * (MiB // 2)
    assert_error(put(server, sbx, "/work/chunked", chunks()), 413, "body_too_large")
    big_tar = tar_bytes([("f", "file", b"\3" * (2 * MiB), 0o644)])
    def tar_chunks():
        for i in range(0, len(big_tar), MiB // 4):
            yield big_tar[i:i + MiB // 4]
    assert_error(put(server, sbx, "/work/tar", tar_chunks(), headers={"Content-Type": "application/x-tar"}), 413,
                 "body_too_large")
    # (A tar stream unpacks as it comes: what came before the limit stays, as for any failed unpacking.)
    names = [e["name"] for e in server.get(url(sbx, "/work")).json()["entries"]]
    assert names == ["ok", "tar"], names


def test_big_files_stream_without_growing_the_daemon(server, sbx):
    size = 256 * MiB
    rss = []

    def body():
        block = os.urandom(MiB)
        for _ in range(size // MiB):
            rss.append(proc_usage(server.pid)[2])
            yield block
    base = proc_usage(server.pid)[2]
    r = put(server, sbx, "/work/big", body(), timeout=120)
    assert r.status_code == 201 and r.json()["size"] == size, show(r)
    got = 0
    with server.request("GET", url(sbx, "/work/big"), stream=True, timeout=120) as resp:
        assert resp.status_code == 200 and int(resp.headers["Content-Length"]) == size
        for chunk in resp.iter_content(MiB):
            got += len(chunk)
            if got % (16 * MiB) < MiB:
                rss.append(proc_usage(server.pid)[2])
    assert got == size
    grown_mib = (max(rss) - base) / 1024
    assert grown_mib < 48, f"the daemon grew by {grown_mib:.0f} MiB moving a {size // MiB} MiB file"
