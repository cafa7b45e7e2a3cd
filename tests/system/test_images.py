"""Images: `lm-sandbox image import|ls|rm`, `run --image`, `"image"` in POST /v1/exec (API.md, "Images").

Archives are made here: a small root file system from the host's own dash and coreutils (their libraries with
them), OCI layouts and docker save archives around it (gzip and zstd layers, whiteouts, opaque directories), and
hostile archives of every class the importer must refuse or sanitise. The real Debian (mmdebstrap) test needs
Debian's mirror: it skips loudly without it (a failure under CI=true).
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from procinfo import descendants, ready_pool_workers
from server_fixtures import daemons, wait_until

root = pytest.mark.require_root

HOST_TOOLS = ["/bin/sh", "/usr/bin/dash", "/usr/bin/cat", "/usr/bin/ls", "/usr/bin/id", "/usr/bin/env",
              "/usr/bin/touch", "/usr/bin/pwd", "/usr/bin/rm", "/usr/bin/stat", "/usr/bin/head", "/usr/bin/true",
              "/usr/bin/mkdir"]


def client(lms_bin):
    return str(Path(lms_bin).parent / "lm-sandbox-client")


def image_cmd(lms_bin, state, *args, stdin=None, timeout=120):
    """`lm-sandbox image ARGS --state-dir STATE`, through the static binary (which execs the client)."""
    sub, rest = args[0], list(args[1:])
    return subprocess.run([str(lms_bin), "image", sub, "--state-dir", str(state), *rest], input=stdin,
                          capture_output=True, timeout=timeout)


def run_in(lms_bin, state, image, script, *extra, timeout=60):
    return subprocess.run([str(lms_bin), "run", "--state-dir", str(state), "--image", image, *extra, "--", "sh",
                           "-c", script], capture_output=True, timeout=timeout)


def libraries(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/"):
                libs.append(p)
    return libs


def add_file(tar, name, data=b"", mode=0o644, **kw):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def add_entry(tar, name, type_, mode=0o755, **kw):
    info = tarfile.TarInfo(name)
    info.type = type_
    info.mode = mode
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info)


def mini_rootfs(extra=None):
    """A tar (bytes) of a root file system that runs sh, cat, ls...: the host's binaries and their libraries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        seen = set()
        for d in ["bin", "usr", "usr/bin", "etc", "tmp", "lib", "lib64", "usr/lib", "work"]:
            add_entry(tar, d, tarfile.DIRTYPE)
        for tool in HOST_TOOLS:
            for path in [os.path.realpath(tool), *libraries(tool)]:
                real = os.path.realpath(path)
                for name in {path.lstrip("/"), real.lstrip("/")}:
                    if name in seen:
                        continue
                    seen.add(name)
                    parent = os.path.dirname(name)
                    while parent and parent not in seen:
                        add_entry(tar, parent, tarfile.DIRTYPE)
                        seen.add(parent)
                        parent = os.path.dirname(parent)
                    with open(real, "rb") as f:
                        add_file(tar, name, f.read(), mode=0o755)
        # The tool names the commands use (/bin/sh and friends) in /bin and /usr/bin.
        for tool in HOST_TOOLS:
            name = "bin/" + os.path.basename(tool)
            if name not in seen:
                add_entry(tar, name, tarfile.SYMTYPE, linkname="/" + os.path.realpath(tool).lstrip("/"))
                seen.add(name)
        add_file(tar, "etc/hostname", b"mini\n")
        for fn in extra or []:
            fn(tar)
    return buf.getvalue()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_layout(path, layers, config):
    """An OCI image layout in directory `path`: layers (bytes, already compressed) with their media types."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
        return sha(data)

    cfg = json.dumps(config).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cfg),
                           "size": len(cfg)},
                "layers": [{"mediaType": mt, "digest": put(data), "size": len(data)} for data, mt in layers]}
    mdata = json.dumps(manifest).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": manifest["mediaType"], "digest": put(mdata),
                                                "size": len(mdata),
                                                "platform": {"os": "linux", "architecture": "amd64"}}]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return manifest


def tar_dir(path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(path.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(path)), recursive=False)
    return buf.getvalue()


def zstd(data):
    if shutil.which("zstd") is None:
        pytest.skip("NEEDS zstd: the zstd layer is made with the zstd program (apt-get install zstd)")
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def whiteout_layer():
    """A second layer that deletes /etc/gone, empties /data (opaque) and adds /data/c."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add_entry(tar, "etc", tarfile.DIRTYPE)
        add_file(tar, "etc/.wh.gone")
        add_entry(tar, "data", tarfile.DIRTYPE)
        add_file(tar, "data/.wh..wh..opq")
        add_file(tar, "data/c", b"c\n")
    return buf.getvalue()


def base_extra(tar):
    add_file(tar, "etc/gone", b"gone\n")
    add_entry(tar, "data", tarfile.DIRTYPE)
    add_file(tar, "data/a", b"a\n")
    add_file(tar, "data/b", b"b\n")


CONFIG = {"architecture": "amd64", "os": "linux",
          "config": {"Env": ["PATH=/usr/bin:/bin", "GREETING=from-the-image", "BOTH=image"], "WorkingDir": "/data"},
          "rootfs": {"type": "layers", "diff_ids": []}}


@pytest.fixture(scope="module")
def rootfs():
    return mini_rootfs(extra=[base_extra])


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def layer_dirs(state):
    d = state / "images" / "layers"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# ---- step 1: the store, import, ls, rm ------------------------------------------------------------------------------


@root
def test_rootfs_tarball_imports_and_runs(lms_bin, state, tmp_path, rootfs):
    f = tmp_path / "rootfs.tar.gz"
    f.write_bytes(gzip.compress(rootfs))
    r = image_cmd(lms_bin, state, "import", "mini", str(f))
    assert r.returncode == 0, r.stderr
    assert b"mini: 1 layer" in r.stdout
    rec = json.loads((state / "images" / "records" / "mini.json").read_text())
    assert rec["source"] == "rootfs" and rec["layers"] == [sha(f.read_bytes())] and rec["env"] == []
    out = run_in(lms_bin, state, "mini", "cat /etc/hostname /data/a; pwd; id -u")
    assert out.returncode == 0 and out.stdout == b"mini\na\n/work\n0\n", out
    ls = image_cmd(lms_bin, state, "ls")
    assert ls.returncode == 0 and b"mini" in ls.stdout and b"rootfs" in ls.stdout, ls


@root
def test_stdin_import_and_a_shared_layer_is_stored_once(lms_bin, state, rootfs):
    for name in ("one", "two"):
        r = image_cmd(lms_bin, state, "import", name, "-", stdin=rootfs)
        assert r.returncode == 0, r.stderr
    assert len(layer_dirs(state)) == 1
    assert image_cmd(lms_bin, state, "rm", "one").returncode == 0
    assert len(layer_dirs(state)) == 1, "the layer is still two's"
    assert run_in(lms_bin, state, "two", "cat /etc/hostname").stdout == b"mini\n"
    assert image_cmd(lms_bin, state, "rm", "two").returncode == 0
    assert layer_dirs(state) == [], "nothing uses the layer any more"
    gone = image_cmd(lms_bin, state, "rm", "two")
    assert gone.returncode != 0 and b"does not exist" in gone.stderr


@root
def test_oci_layout_whiteouts_env_and_workdir(lms_bin, state, tmp_path, rootfs):
    layout = tmp_path / "oci"
    oci_layout(layout, [(gzip.compress(rootfs), "application/vnd.oci.image.layer.v1.tar+gzip"),
                        (zstd(whiteout_layer()), "application/vnd.oci.image.layer.v1.tar+zstd")], CONFIG)
    r = image_cmd(lms_bin, state, "import", "oci", str(layout))
    assert r.returncode == 0, r.stderr
    assert b"2 layers" in r.stdout
    out = run_in(lms_bin, state, "oci", 'test ! -e /etc/gone && ls /data && pwd && echo "$GREETING $BOTH"',
                 "--env", "BOTH=request")
    assert out.returncode == 0, out
    assert out.stdout == b"c\n/data\nfrom-the-image request\n", out
    # As a tar of the layout too (what skopeo's oci-archive and docker save 25+ are).
    archive = tmp_path / "oci.tar"
    archive.write_bytes(tar_dir(layout))
    r = image_cmd(lms_bin, state, "import", "oci-tar", str(archive))
    assert r.returncode == 0, r.stderr
    assert len(layer_dirs(state)) == 2, "the same layers, stored once"
    assert run_in(lms_bin, state, "oci-tar", "ls /data").stdout == b"c\n"


@root
def test_docker_save_legacy_archive(lms_bin, state, tmp_path, rootfs):
    buf = io.BytesIO()
    cfg = json.dumps(CONFIG).encode()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add_file(tar, "aaa/layer.tar", rootfs)
        add_file(tar, "bbb/layer.tar", whiteout_layer())
        add_file(tar, "cfg.json", cfg)
        add_file(tar, "manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["mini:latest"],
                                                    "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]).encode())
    r = image_cmd(lms_bin, state, "import", "saved", "-", stdin=buf.getvalue())
    assert r.returncode == 0, r.stderr
    rec = json.loads((state / "images" / "records" / "saved.json").read_text())
    assert rec["source"] == "docker-archive" and rec["digest"] == sha(cfg) and rec["working_dir"] == "/data"
    out = run_in(lms_bin, state, "saved", "test ! -e /etc/gone && ls /data")
    assert out.returncode == 0 and out.stdout == b"c\n", out


@root
def test_writes_go_to_the_sandbox_never_to_the_image(lms_bin, state, tmp_path, rootfs):
    assert image_cmd(lms_bin, state, "import", "mini", "-", stdin=rootfs).returncode == 0
    out = run_in(lms_bin, state, "mini", "echo new > /etc/new && rm /etc/hostname && cat /etc/new && "
                 "touch /usr/bin/x && ls /data")
    assert out.returncode == 0 and out.stdout == b"new\na\nb\n", out
    again = run_in(lms_bin, state, "mini", "cat /etc/hostname; test ! -e /etc/new && echo clean")
    assert again.stdout == b"mini\nclean\n", again
    layer = state / "images" / "layers" / layer_dirs(state)[0] / "root"
    assert (layer / "etc" / "hostname").exists() and not (layer / "etc" / "new").exists()


# ---- hostile archives ---------------------------------------------------------------------------------------------


def hostile(build):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add_entry(tar, "etc", tarfile.DIRTYPE)
        build(tar)
    return buf.getvalue()


HOSTILE = {
    "absolute name": (lambda t, out: add_file(t, "/etc/evil", b"x"), b"/etc/evil"),
    "dot-dot": (lambda t, out: add_file(t, "etc/../../evil", b"x"), b"etc/../../evil"),
    "symlink then write through it": (
        lambda t, out: (add_entry(t, "out", tarfile.SYMTYPE, linkname=str(out)), add_file(t, "out/evil", b"x")),
        b"out/evil"),
    "symlink then a directory through it": (
        lambda t, out: (add_entry(t, "out", tarfile.SYMTYPE, linkname=str(out)),
                        add_entry(t, "out/sub", tarfile.DIRTYPE)),
        b"out/sub"),
    "hard link to outside": (lambda t, out: add_entry(t, "etc/pw", tarfile.LNKTYPE, linkname="../../../etc/passwd"),
                             b"etc/pw"),
    "whiteout of a parent": (lambda t, out: add_file(t, "etc/.wh.."), b"etc/.wh.."),
}


@root
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_naming_the_entry(lms_bin, state, tmp_path, case):
    build, entry = HOSTILE[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    r = image_cmd(lms_bin, state, "import", "bad", "-", stdin=hostile(lambda t: build(t, outside)))
    assert r.returncode != 0, r
    assert entry in r.stderr, r.stderr
    assert not (state / "images" / "records" / "bad.json").exists()
    assert list(outside.iterdir()) == [] and not (tmp_path / "evil").exists()
    assert layer_dirs(state) == [] and list((state / "images" / "tmp").iterdir()) == []


@root
def test_setuid_bits_and_device_nodes_are_sanitised(lms_bin, state):
    data = hostile(lambda t: (add_file(t, "etc/suid", b"#!/bin/sh\n", mode=0o6755),
                              add_entry(t, "etc/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
                              add_entry(t, "etc/mem", tarfile.CHRTYPE, devmajor=1, devminor=1)))
    r = image_cmd(lms_bin, state, "import", "san", "-", stdin=data)
    assert r.returncode == 0, r.stderr
    etc = state / "images" / "layers" / layer_dirs(state)[0] / "root" / "etc"
    assert sorted(os.listdir(etc)) == ["suid"]
    assert (etc / "suid").stat().st_mode & 0o7777 == 0o755


@root
def test_caps_on_entries_size_and_a_decompression_bomb(lms_bin, state):
    many = hostile(lambda t: [add_file(t, f"etc/f{i}", b"x") for i in range(50)])
    r = image_cmd(lms_bin, state, "import", "many", "-", "--max-entries", "20", stdin=many)
    assert r.returncode != 0 and b"more than 20 entries" in r.stderr, r.stderr
    bomb = gzip.compress(hostile(lambda t: add_file(t, "etc/zeros", bytes(16 << 20))))
    assert len(bomb) < 100_000
    r = image_cmd(lms_bin, state, "import", "bomb", "-", "--max-size", str(1 << 20), stdin=bomb)
    assert r.returncode != 0 and b"etc/zeros" in r.stderr and b"more than 1048576 bytes" in r.stderr, r.stderr
    assert layer_dirs(state) == [] and list((state / "images" / "tmp").iterdir()) == []
    long_name = hostile(lambda t: add_file(t, "etc/" + "d/" * 2100 + "f", b"x"))
    r = image_cmd(lms_bin, state, "import", "long", "-", stdin=long_name)
    assert r.returncode != 0 and b"longer than the cap" in r.stderr, r.stderr


@root
def test_a_blob_that_does_not_match_its_digest_is_refused(lms_bin, state, tmp_path, rootfs):
    layout = tmp_path / "oci"
    m = oci_layout(layout, [(rootfs, "application/vnd.oci.image.layer.v1.tar")], CONFIG)
    blob = layout / "blobs" / "sha256" / m["layers"][0]["digest"][7:]
    blob.write_bytes(rootfs.replace(b"mini\n", b"evil\n"))
    r = image_cmd(lms_bin, state, "import", "forged", str(layout))
    assert r.returncode != 0 and b"damaged or forged" in r.stderr, r.stderr
    assert layer_dirs(state) == []


@root
def test_bad_names_and_unknown_images(lms_bin, state, rootfs):
    for name in ("host", "../x", "a/b", "-x", ""):
        r = image_cmd(lms_bin, state, "import", name, "-", stdin=rootfs)
        assert r.returncode != 0, name
    r = run_in(lms_bin, state, "nope", "true")
    assert r.returncode != 0 and b"image 'nope' does not exist" in r.stderr, r


# ---- step 2: "image" in POST /v1/exec -------------------------------------------------------------------------------


def import_oci(lms_bin, tmp_path, rootfs):
    """The two-layer OCI image as "oci", in the state directory a daemon of daemons() gets first."""
    layout = tmp_path / "oci"
    oci_layout(layout, [(gzip.compress(rootfs), "application/vnd.oci.image.layer.v1.tar+gzip"),
                        (whiteout_layer(), "application/vnd.oci.image.layer.v1.tar")], CONFIG)
    state = tmp_path / "state-0"
    state.mkdir()
    assert image_cmd(lms_bin, state, "import", "oci", str(layout)).returncode == 0
    return state


@root
def test_exec_with_an_imported_image(lms_bin, tmp_path, rootfs):
    state = import_oci(lms_bin, tmp_path, rootfs)
    with daemons(lms_bin, tmp_path) as start:
        s = start(state=state)
        r = s.exec({"cmd": "ls; echo $GREETING; cat /etc/hostname; test ! -e /etc/gone", "image": "oci"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["exit_code"] == 0 and body["stdout"] == "c\nfrom-the-image\nmini\n", body
        cwd = s.exec({"argv": ["pwd"], "image": "oci", "cwd": "/tmp", "env": {"GREETING": "x"}}).json()
        assert cwd["stdout"] == "/tmp\n", cwd
        missing = s.exec({"argv": ["true"], "image": "nope"})
        assert missing.status_code == 404 and "nope" in missing.text
        host = s.exec({"argv": ["cat", "/etc/hostname"], "image": "host"}).json()
        assert host["stdout"] != "mini\n"
        listed = s.get("/v1/images")
        assert listed.status_code == 200, listed.text
        (img,) = listed.json()["data"]
        assert {"name", "digest", "size", "created_at", "source"} <= set(img), img
        assert img["name"] == "oci" and img["source"] == "oci-layout" and img["size"] > 0
        assert img["digest"].startswith("sha256:") and len(img["layers"]) == 2


# ---- the one-shot pool keyed by image ---------------------------------------------------------------------------


def hostname_rootfs(name):
    return mini_rootfs(extra=[lambda tar: add_file(tar, "etc/which", name.encode() + b"\n")])


def warm_roots(pid):
    """The root file system types of the prepared sandboxes: "overlay" for an image's, "tmpfs" for the host's."""
    kinds = []
    for worker in ready_pool_workers(pid):
        for child in descendants(worker)[1:2]:
            try:
                for line in Path(f"/proc/{child}/mountinfo").read_text().splitlines():
                    fields = line.split()
                    if fields[4] == "/":
                        kinds.append(fields[fields.index("-") + 1])
            except OSError:
                pass
    return sorted(kinds)


@root
def test_the_pool_keeps_image_sandboxes_warm_per_image_never_mixed_nor_reused(lms_bin, tmp_path):
    state = tmp_path / "state-0"
    state.mkdir()
    for name in ("a", "b"):
        tar = tmp_path / f"{name}.tar"
        tar.write_bytes(hostname_rootfs(name))
        assert image_cmd(lms_bin, state, "import", name, str(tar)).returncode == 0
    with daemons(lms_bin, tmp_path) as start:
        s = start("--pool-size", "2", state=state)
        for name in ("a", "b"):
            r = s.exec({"cmd": "cat /etc/which", "image": name}).json()
            assert r["stdout"] == f"{name}\n", r
        # A warm sandbox of each image asked for (one each: their commands came one at a time), beside the
        # host's two.
        assert wait_until(lambda: warm_roots(s.pid) == ["overlay", "overlay", "tmpfs", "tmpfs"], 30), \
            f"no warm image sandboxes: {warm_roots(s.pid)}\n{s.describe()}"
        # Each command gets its own image's root, and never one a command before it wrote to.
        for i in range(6):
            name = "ab"[i % 2]
            r = s.exec({"cmd": "test ! -e /etc/used && touch /etc/used && cat /etc/which", "image": name}).json()
            assert r["exit_code"] == 0 and r["stdout"] == f"{name}\n", (i, r)
        host = s.exec({"cmd": "test ! -e /etc/which && echo host"}).json()
        assert host["stdout"] == "host\n", host


@root
def test_a_warm_image_sandbox_is_not_used_once_its_image_is_imported_again(lms_bin, tmp_path):
    state = tmp_path / "state-0"
    state.mkdir()
    tar = tmp_path / "b.tar"
    tar.write_bytes(hostname_rootfs("b"))
    assert image_cmd(lms_bin, state, "import", "b", str(tar)).returncode == 0
    # Removed and imported again, the image has the same layer paths but new directories, which the warm
    # sandbox made before does not see: a command gets a sandbox made now.
    with daemons(lms_bin, tmp_path) as start:
        s = start("--pool-size", "1", state=state)
        assert s.exec({"cmd": "cat /etc/which", "image": "b"}).json()["stdout"] == "b\n"
        assert wait_until(lambda: "overlay" in warm_roots(s.pid), 30), warm_roots(s.pid)
        assert s.request("DELETE", "/v1/images/b").status_code == 204
        assert image_cmd(lms_bin, state, "import", "b", str(tar)).returncode == 0
        for _ in range(3):
            r = s.exec({"cmd": "cat /etc/which", "image": "b"}).json()
            assert r["exit_code"] == 0 and r["stdout"] == "b\n", r


# ---- step 3: persistent sandboxes with an image -----------------------------------------------------------------


def sbx_sh(s, sbx, script):
    r = s.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": script})
    assert r.status_code == 200, r.text
    return r.json()


@root
def test_a_persistent_image_sandbox_keeps_its_changes_across_execs_and_restarts(lms_bin, tmp_path, rootfs):
    state = import_oci(lms_bin, tmp_path, rootfs)
    with daemons(lms_bin, tmp_path) as start:
        s = start(state=state)
        r = s.post("/v1/sandboxes", {"image": "oci"})
        assert r.status_code == 201, r.text
        sbx = r.json()
        assert sbx["image"] == "oci"
        first = sbx_sh(s, sbx["id"], "echo installed > /usr/bin/tool && rm /etc/hostname && pwd && echo $GREETING")
        assert first["exit_code"] == 0 and first["stdout"] == "/data\nfrom-the-image\n", first
        second = sbx_sh(s, sbx["id"], "cat /usr/bin/tool; test ! -e /etc/hostname && echo deleted")
        assert second["stdout"] == "installed\ndeleted\n", second
        other = s.post("/v1/sandboxes", {"image": "oci"}).json()
        assert sbx_sh(s, other["id"], "cat /etc/hostname; test ! -e /usr/bin/tool && echo clean")["stdout"] == \
            "mini\nclean\n", "another sandbox of the image sees none of it"
        s.stop(keep_state=True)
        again = start(state=state)
        after = sbx_sh(again, sbx["id"], "cat /usr/bin/tool; test ! -e /etc/hostname && echo deleted; pwd")
        assert after["stdout"] == "installed\ndeleted\n/data\n", after
        busy = again.request("DELETE", "/v1/images/oci")
        assert busy.status_code == 409 and "persistent sandbox" in busy.text, busy.text
        for sid in (sbx["id"], other["id"]):
            assert again.request("DELETE", f"/v1/sandboxes/{sid}").status_code == 204
        assert again.request("DELETE", "/v1/images/oci").status_code == 204
        assert again.get("/v1/images").json()["data"] == []
        assert again.request("DELETE", "/v1/images/oci").status_code == 404
    assert layer_dirs(state) == [], "the layers nothing uses are freed"


@root
def test_image_rm_of_the_client_is_refused_while_a_persistent_sandbox_uses_the_image(lms_bin, tmp_path, rootfs):
    state = import_oci(lms_bin, tmp_path, rootfs)
    with daemons(lms_bin, tmp_path) as start:
        s = start(state=state)
        sbx = s.post("/v1/sandboxes", {"image": "oci"}).json()
        fork = s.post(f"/v1/sandboxes/{sbx['id']}/fork", {}).json()
        busy = s.request("DELETE", "/v1/images/oci")
        assert busy.status_code == 409, busy.text
        r = image_cmd(lms_bin, state, "rm", "oci")
        assert r.returncode != 0 and busy.json()["error"]["message"].encode() in r.stderr, (r, busy.text)
        layout = tmp_path / "oci"
        again = image_cmd(lms_bin, state, "import", "oci", str(layout))
        assert again.returncode != 0 and b"root of a persistent sandbox" in again.stderr, again
        assert sbx_sh(s, sbx["id"], "cat /etc/hostname")["stdout"] == "mini\n", "its layers are all there"
        # Stopped, the daemon keeps the sandbox on disk for its next start: still refused.
        s.stop(keep_state=True)
        assert image_cmd(lms_bin, state, "rm", "oci").returncode != 0
        again = start(state=state)
        assert sbx_sh(again, sbx["id"], "cat /etc/hostname")["stdout"] == "mini\n"
        assert again.request("DELETE", f"/v1/sandboxes/{sbx['id']}").status_code == 204
        assert image_cmd(lms_bin, state, "rm", "oci").returncode != 0, "the fork still uses it"
        assert again.request("DELETE", f"/v1/sandboxes/{fork['id']}").status_code == 204
        r = image_cmd(lms_bin, state, "rm", "oci")
        assert r.returncode == 0, r
    assert layer_dirs(state) == []


@root
def test_a_fork_of_an_image_sandbox_keeps_its_whiteouts_and_opaque_directories(lms_bin, tmp_path, rootfs):
    state = import_oci(lms_bin, tmp_path, rootfs)
    with daemons(lms_bin, tmp_path) as start:
        s = start(state=state)
        sbx = s.post("/v1/sandboxes", {"image": "oci"}).json()
        # A file of the image deleted (a whiteout), a directory of it emptied and made again (opaque).
        made = sbx_sh(s, sbx["id"], "rm /etc/hostname && rm -r /data && mkdir /data && echo new > /data/new")
        assert made["exit_code"] == 0, made
        fork = s.post(f"/v1/sandboxes/{sbx['id']}/fork", {})
        assert fork.status_code == 201, fork.text
        seen = sbx_sh(s, fork.json()["id"], "test ! -e /etc/hostname && echo deleted; ls /data")
        assert seen["stdout"] == "deleted\nnew\n", seen
        assert sbx_sh(s, sbx["id"], "test ! -e /etc/hostname && echo deleted; ls /data")["stdout"] == \
            "deleted\nnew\n"


# ---- a real Debian ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def debian_tarball(tmp_path_factory):
    if shutil.which("mmdebstrap") is None:
        pytest.skip("NEEDS mmdebstrap (apt-get install mmdebstrap) to make a real Debian root file system")
    out = tmp_path_factory.mktemp("debian") / "bookworm.tar"
    r = subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "bookworm", str(out)], capture_output=True,
                       timeout=600)
    if r.returncode != 0:
        pytest.skip("NEEDS Debian's mirror through the machine's apt configuration: mmdebstrap failed: "
                    + r.stderr.decode(errors="replace")[-500:])
    return out


def local_deb(tmp_path):
    """A small .deb (dpkg-deb) that installs /usr/bin/lms-hello."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("NEEDS dpkg-deb (dpkg) to build a local .deb")
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr" / "bin").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text("Package: lms-hello\nVersion: 1.0\nArchitecture: all\n"
                                            "Maintainer: test <t@example.org>\nDescription: test package\n")
    tool = pkg / "usr" / "bin" / "lms-hello"
    tool.write_text("#!/bin/sh\necho hello from a package\n")
    tool.chmod(0o755)
    deb = tmp_path / "lms-hello.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(deb)], check=True, capture_output=True)
    return deb.read_bytes()


@root
def test_real_debian_from_mmdebstrap(lms_bin, tmp_path, debian_tarball):
    state = tmp_path / "state-0"
    state.mkdir()
    r = image_cmd(lms_bin, state, "import", "bookworm", str(debian_tarball), timeout=300)
    assert r.returncode == 0, r.stderr
    out = run_in(lms_bin, state, "bookworm", "cat /etc/debian_version && apt-get --version | head -1 && "
                 "dpkg -s base-files | grep -c Version && echo ok > /var/x && cat /var/x")
    assert out.returncode == 0, out
    lines = out.stdout.decode().splitlines()
    assert lines[0].startswith("12.") and lines[1].startswith("apt ") and lines[2:] == ["1", "ok"], out
    deb = local_deb(tmp_path)
    with daemons(lms_bin, tmp_path) as start:
        s = start(state=state)
        sbx = s.post("/v1/sandboxes", {"image": "bookworm"}).json()
        put = s.request("PUT", f"/v1/sandboxes/{sbx['id']}/files/work/lms-hello.deb", data=deb)
        assert put.status_code in (200, 201, 204), put.text
        inst = sbx_sh(s, sbx["id"], "dpkg -i /work/lms-hello.deb")
        assert inst["exit_code"] == 0, inst
        run = sbx_sh(s, sbx["id"], "lms-hello && dpkg -s lms-hello | grep Status")
        assert run["stdout"] == "hello from a package\nStatus: install ok installed\n", run


@root
def test_an_image_sandbox_with_network_names_the_dns_forwarder(lms_bin, state, tmp_path, rootfs):
    # An image's root is writable: its /etc/resolv.conf (a symbolic link here, as systemd images have) is replaced
    # by one naming pasta's DNS forwarder; the image itself keeps its own.
    import shutil
    if shutil.which("pasta") is None or shutil.which("nft") is None:
        pytest.skip("NEEDS pasta and nft: install passt and nftables (scripts/deps.sh does)")

    def resolv_link(tar):
        add_entry(tar, "etc/resolv.conf", tarfile.SYMTYPE, linkname="../run/resolv.conf")

    f = tmp_path / "rootfs.tar"
    f.write_bytes(mini_rootfs(extra=[base_extra, resolv_link]))
    assert image_cmd(lms_bin, state, "import", "mini-net", str(f)).returncode == 0
    out = run_in(lms_bin, state, "mini-net", "cat /etc/resolv.conf", "--network", "--network-dns", "192.0.2.53")
    assert out.returncode == 0 and b"nameserver 127.0.0.53" in out.stdout, out
    out = run_in(lms_bin, state, "mini-net", "cat /etc/resolv.conf || echo none")
    assert b"127.0.0.53" not in out.stdout, out
