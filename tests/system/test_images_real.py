"""Images made by the real tools (issue 12): umoci and skopeo (OCI layouts, docker-archive and oci-archive with gzip
and zstd layers) and Docker (`docker import`, `docker build`, `docker save`), all from the real Debian root file
system of mmdebstrap, each imported and run.

Each tool's second layer deletes a file and empties a directory of the Debian below it, so that the whiteouts and
opaque markers the tools write themselves are what the importer honours. The tests skip loudly without a tool, as
root only, and without Debian's mirror (mmdebstrap); under CI=true a skip is a failure (scripts/test.sh).
Docker: a dockerd of the test's own (its own socket, data and exec roots and network namespace, no bridge), so that
no other daemon on the machine is touched; builds use the classic builder and no network.
"""
import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import time

import pytest

from server_fixtures import unmount_under
from test_images import debian_tarball, image_cmd, run_in  # noqa: F401 (debian_tarball: a fixture)

root = pytest.mark.require_root

# What each image's second layer does to the Debian below it, and how a sandbox of it shows that.
CHANGE = "rm /etc/issue && rm -r /etc/apt/apt.conf.d/* && mkdir -p /srv/new && echo added > /srv/new/file"
CHECK = ("cat /etc/debian_version; test ! -e /etc/issue && echo issue-deleted; ls -A /etc/apt/apt.conf.d | wc -l; "
         "cat /srv/new/file; apt-get --version | head -1")


def need(*tools):
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"NEEDS {t} (apt-get install umoci skopeo docker.io; scripts/deps.sh installs them)")


def sh(*argv, timeout=600, **kw):
    r = subprocess.run([str(a) for a in argv], capture_output=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{argv}: {r.stderr.decode(errors='replace')[-1500:]}"
    return r


def check_image(lms_bin, state, name):
    out = run_in(lms_bin, state, name, CHECK, timeout=120)
    assert out.returncode == 0, out
    lines = out.stdout.decode().splitlines()
    assert lines[0].startswith("12.") and lines[1:4] == ["issue-deleted", "0", "added"], lines
    assert lines[4].startswith("apt "), lines


def whiteouts(layer):
    """The whiteout names a layer tar (plain or gzip) holds: deleted files and opaque directories alike."""
    if layer[:2] == b"\x1f\x8b":
        layer = gzip.decompress(layer)
    names = tarfile.open(fileobj=io.BytesIO(layer)).getnames()
    return sorted(n.lstrip("./") for n in names if os.path.basename(n).startswith(".wh."))


def assert_tool_wrote_whiteouts(layers):
    """One of the tool's layers deletes /etc/issue and what /etc/apt/apt.conf.d held (a whiteout each, or an
    opaque marker): the markers are the tool's own, not the test's."""
    found = [whiteouts(layer) for layer in layers]
    mine = next((w for w in found if "etc/.wh.issue" in w), None)
    assert mine is not None, f"no layer deletes /etc/issue: {found}"
    assert any(n.startswith("etc/apt/apt.conf.d/.wh.") for n in mine), mine


@pytest.fixture(scope="module")
def umoci_layout(tmp_path_factory, debian_tarball):  # noqa: F811
    """An OCI layout by umoci: the Debian as its first layer, then unpack, CHANGE, repack as the second."""
    need("umoci")
    if os.geteuid() != 0:
        pytest.skip("NEEDS root: umoci unpacks the Debian with its owners")
    d = tmp_path_factory.mktemp("umoci")
    layout = d / "layout"
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:base")
    sh("umoci", "raw", "add-layer", "--image", f"{layout}:base", debian_tarball)
    bundle = d / "bundle"
    sh("umoci", "unpack", "--image", f"{layout}:base", bundle)
    sh("chroot", bundle / "rootfs", "/bin/sh", "-c", CHANGE)
    sh("umoci", "repack", "--image", f"{layout}:v2", bundle)
    sh("umoci", "rm", "--image", f"{layout}:base")
    sh("umoci", "gc", "--layout", layout)
    shutil.rmtree(bundle)
    blob = lambda digest: (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()  # noqa: E731
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    assert_tool_wrote_whiteouts([blob(layer["digest"]) for layer in manifest["layers"][1:]])
    return layout


@root
def test_umoci_layout_with_its_own_whiteouts(lms_bin, tmp_path, umoci_layout):
    state = tmp_path / "state"
    r = image_cmd(lms_bin, state, "import", "umoci", str(umoci_layout), timeout=600)
    assert r.returncode == 0, r.stderr
    check_image(lms_bin, state, "umoci")


@root
@pytest.mark.parametrize("dest", ["docker-archive", "oci-archive-gzip", "oci-archive-zstd"])
def test_skopeo_archives_of_the_umoci_image(lms_bin, tmp_path, umoci_layout, dest):
    need("skopeo")
    archive = tmp_path / f"{dest}.tar"
    kind = dest.split("-gzip")[0].split("-zstd")[0]
    flags = []
    if dest.endswith("gzip"):
        flags = ["--dest-compress", "--dest-compress-format", "gzip"]
    elif dest.endswith("zstd"):
        flags = ["--dest-compress", "--dest-compress-format", "zstd"]
    sh("skopeo", "--insecure-policy", "copy", "--quiet", *flags, f"oci:{umoci_layout}:v2",
       f"{kind}:{archive}:lms/real:v2" if kind == "docker-archive" else f"{kind}:{archive}:v2")
    if dest.endswith("zstd"):
        with tarfile.open(archive) as t:
            blobs = [m for m in t.getmembers() if m.name.startswith("blobs/") and m.isfile()]
            assert any(t.extractfile(m).read(4) == b"\x28\xb5\x2f\xfd" for m in blobs), "no zstd layer"
    state = tmp_path / "state"
    r = image_cmd(lms_bin, state, "import", "real", str(archive), timeout=600)
    assert r.returncode == 0, r.stderr
    check_image(lms_bin, state, "real")


# ---- Docker ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    need("dockerd", "docker")
    if os.geteuid() != 0:
        pytest.skip("NEEDS root to start a dockerd of the test's own")
    d = tmp_path_factory.mktemp("dockerd")
    sock = d / "docker.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0"}
    log = open(d / "dockerd.log", "wb")
    # In a network namespace of its own: a dockerd started with --bridge none deletes the machine's docker0
    # bridge at start (moby's removeDefaultBridgeInterface), which would cut off the Docker a developer runs.
    proc = subprocess.Popen(["unshare", "--net", "--", "dockerd", "--host", f"unix://{sock}", "--data-root", str(d / "data"),
                             "--exec-root", str(d / "exec"), "--pidfile", str(d / "docker.pid"), "--bridge", "none",
                             "--iptables=false", "--ip-masq=false"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (d / "dockerd.log").read_text(errors="replace")[-1500:]
                pytest.skip(f"SKIPPED LOUDLY: the test's dockerd did not come up: {tail}")
            time.sleep(0.1)  # dockerd has no readiness signal but its API answering
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        unmount_under(d)


@root
def test_docker_save_of_a_docker_build_on_the_imported_debian(lms_bin, tmp_path, dockerd, debian_tarball):  # noqa: F811
    sh("docker", "import", debian_tarball, "lms-debian:base", env=dockerd)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "copied").write_text("from the context\n")
    (ctx / "Dockerfile").write_text(f"FROM lms-debian:base\nRUN {CHANGE}\nCOPY copied /srv/copied\n"
                                    "ENV GREETING=from-docker\nWORKDIR /srv\n")
    sh("docker", "build", "--network", "none", "-q", "-t", "lms-debian:built", ctx, env=dockerd)
    archive = tmp_path / "saved.tar"
    sh("docker", "save", "-o", archive, "lms-debian:built", env=dockerd)
    with tarfile.open(archive) as t:
        layers = [t.extractfile(m).read() for m in t.getmembers()
                  if m.isfile() and (m.name.endswith("layer.tar") or m.name.startswith("blobs/"))
                  and m.size > 512 and t.extractfile(m).read(262)[257:262] == b"ustar"]
    assert_tool_wrote_whiteouts(layers)
    state = tmp_path / "state"
    r = image_cmd(lms_bin, state, "import", "built", str(archive), timeout=600)
    assert r.returncode == 0, r.stderr
    check_image(lms_bin, state, "built")
    out = run_in(lms_bin, state, "built", "pwd; echo $GREETING; cat /srv/copied")
    assert out.stdout.decode() == "/srv\nfrom-docker\nfrom the context\n", out
