"""`lm-sandbox image pull`, POST /v1/images/pull and PUT /v1/images/{name} (API.md, "Images"; issue 12).

A real registry: Debian's docker-registry, started here on 127.0.0.1 with an ephemeral port and its own storage,
images pushed to it with skopeo (Debian's) from OCI layouts of a small root file system made of the host's own
binaries (test_images.py). A multi-platform index, a blob damaged in the registry's storage, and a registry behind
a bearer-token server (a small python proxy that hands out tokens as Docker Hub does) are made here too. Without
docker-registry or skopeo every test skips loudly (a failure under CI=true, where .ci/run installs them).
"""

import gzip
import hashlib
import http.server
import io
import json
import os
import platform
import socket
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import requests

from server_fixtures import daemons
from test_images import (CONFIG, add_file, base_extra, image_cmd, layer_dirs, mini_rootfs, oci_layout, run_in,
                         sha, whiteout_layer)

root = pytest.mark.require_root

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"NEEDS {tool} (apt-get install {tool}; scripts/deps.sh installs it, CI has it)")


def listening_port(pid, timeout=10):
    """The TCP port process `pid` listens on (it was told port 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if f"pid={pid}," in line:
                return int(line.split()[3].rsplit(":", 1)[1])
        time.sleep(0.05)  # polling a port that appears: there is no event to wait on
    raise AssertionError(f"docker-registry (pid {pid}) did not listen within {timeout} s")


class Registry:
    def __init__(self, tmp):
        need("docker-registry")
        need("skopeo")
        self.dir = tmp
        (tmp / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {tmp}/data\n  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:0\n")
        self.log = open(tmp / "log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(tmp / "config.yml")], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.host = f"127.0.0.1:{listening_port(self.proc.pid)}"

    def push(self, src, name, all_images=False, fmt=None):
        r = subprocess.run(["skopeo", "copy", "--quiet", *(["--all"] if all_images else []),
                            *(["--format", fmt] if fmt else []), src,
                            f"docker://{self.host}/{name}", "--dest-tls-verify=false"], capture_output=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr.decode()

    def manifest(self, name):
        return urllib.request.urlopen(urllib.request.Request(
            f"http://{self.host}/v2/{name.split(':')[0]}/manifests/{name.split(':')[1]}",
            headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                               "application/vnd.oci.image.manifest.v1+json"})).read()

    def digest(self, name):
        return sha(self.manifest(name))

    def blob_gets(self, digest):
        return sum(1 for line in (self.dir / "log").read_text(errors="replace").splitlines()
                   if "GET /v2/" in line and f"/blobs/{digest}" in line)

    def blob_file(self, digest):
        hexd = digest.split(":")[1]
        return self.dir / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


def layer_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            add_file(tar, name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def base_layer():
    return gzip.compress(mini_rootfs(extra=[base_extra]), mtime=0)


@pytest.fixture(scope="module")
def mini(registry, base_layer, tmp_path_factory):
    """mini:1 in the registry: the root file system and a layer with a whiteout and an opaque directory."""
    layout = tmp_path_factory.mktemp("mini") / "oci"
    manifest = oci_layout(layout, [(base_layer, GZ), (whiteout_layer(), TAR)], CONFIG)
    registry.push(f"oci:{layout}", "mini:1")
    return {"layout": layout, "manifest": manifest, "digest": registry.digest("mini:1")}


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def pull(lms_bin, state, *args):
    return image_cmd(lms_bin, state, "pull", *args, timeout=300)


@root
def test_pull_by_tag_runs_and_a_stored_layer_is_not_fetched_again(lms_bin, state, registry, mini):
    r = pull(lms_bin, state, f"{registry.host}/mini:1")
    assert r.returncode == 0, r.stderr.decode()
    assert b"mini:1: 2 layers" in r.stdout, r.stdout
    out = run_in(lms_bin, state, "mini:1", "ls; echo $GREETING; cat /etc/hostname; test ! -e /etc/gone")
    assert out.returncode == 0 and out.stdout == b"c\nfrom-the-image\nmini\n", out
    ls = image_cmd(lms_bin, state, "ls").stdout.decode()
    assert "mini:1" in ls and "registry" in ls, ls
    assert not list((state / "images/pulls/blobs/sha256").iterdir()), "the downloads are gone after the import"
    base = mini["manifest"]["layers"][0]["digest"]
    before, layers = registry.blob_gets(base), layer_dirs(state)
    again = pull(lms_bin, state, "--name", "again", f"{registry.host}/mini:1")
    assert again.returncode == 0, again.stderr.decode()
    assert registry.blob_gets(base) == before, "a layer in the store was fetched again"
    assert layer_dirs(state) == layers, "the second image shares the first one's layers"


@root
def test_pull_by_digest(lms_bin, state, registry, mini):
    r = pull(lms_bin, state, f"{registry.host}/mini@{mini['digest']}")
    assert r.returncode == 0, r.stderr.decode()
    out = run_in(lms_bin, state, "mini", "cat /etc/hostname")
    assert out.stdout == b"mini\n", out
    wrong = "sha256:" + "0" * 64
    r = pull(lms_bin, state, "--name", "nope", f"{registry.host}/mini@{wrong}")
    assert r.returncode == 1 and b"404" in r.stderr, r.stderr


@root
def test_pull_a_docker_schema_2_manifest(lms_bin, state, registry, mini):
    registry.push(f"oci:{mini['layout']}", "mini-docker:1", fmt="v2s2")
    r = pull(lms_bin, state, f"{registry.host}/mini-docker:1")
    assert r.returncode == 0, r.stderr.decode()
    out = run_in(lms_bin, state, "mini-docker:1", "ls; echo $GREETING")
    assert out.stdout == b"c\nfrom-the-image\n", out


@root
def test_a_pull_over_max_size_is_refused_before_its_layers_are_fetched(lms_bin, state, registry, mini):
    base = mini["manifest"]["layers"][0]["digest"]
    before = registry.blob_gets(base)
    r = pull(lms_bin, state, "--max-size", "100000", f"{registry.host}/mini:1")
    assert r.returncode == 1 and b"--max-size" in r.stderr, r.stderr
    assert registry.blob_gets(base) == before, "a layer was fetched past the cap"
    assert image_cmd(lms_bin, state, "ls").stdout.decode().count("\n") == 1, "no image was stored"


def platform_layout(path, base_layer):
    """An OCI layout whose index has an image per platform (each /etc/hostname its own) and an attestation."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
        return {"digest": sha(data), "size": len(data)}

    manifests = []
    for arch, variant in [("arm64", "v8"), ("amd64", None), ("s390x", None)]:
        top = layer_of({"etc/hostname": f"{arch}\n".encode()})
        cfg = json.dumps({**CONFIG, "architecture": arch}).encode()
        m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(cfg)},
                        "layers": [{"mediaType": GZ, **put(base_layer)}, {"mediaType": TAR, **put(top)}]}).encode()
        plat = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(m), "platform": plat})
    manifests.append({**manifests[1], "platform": {"os": "unknown", "architecture": "unknown"},
                      "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    (path / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "manifests": [{"mediaType": index["mediaType"], **put(json.dumps(index).encode())}]}))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


@root
def test_pull_a_multi_platform_index_takes_the_hosts_platform(lms_bin, state, registry, base_layer, tmp_path):
    # skopeo copy --all of a layout whose index.json names an index: the registry holds the index itself.
    layout = tmp_path / "multi"
    platform_layout(layout, base_layer)
    registry.push(f"oci:{layout}", "multi:1", all_images=True)
    r = pull(lms_bin, state, f"{registry.host}/multi:1")
    assert r.returncode == 0, r.stderr.decode()
    out = run_in(lms_bin, state, "multi:1", "cat /etc/hostname")
    assert out.stdout == f"{HOST_ARCH}\n".encode(), out


@root
def test_a_blob_with_the_wrong_digest_is_refused(lms_bin, state, registry, base_layer, tmp_path):
    # A layer of its own (the registry shares blobs between repositories), damaged in the registry's storage
    # after the push (skopeo compresses it on the way): same length, one byte changed.
    layer = layer_of({"etc/unique": os.urandom(64).hex().encode()})
    layout = tmp_path / "bad"
    oci_layout(layout, [(base_layer, GZ), (layer, TAR)], CONFIG)
    registry.push(f"oci:{layout}", "damaged:1")
    manifest = json.loads(registry.manifest("damaged:1"))
    blob = registry.blob_file(manifest["layers"][1]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    r = pull(lms_bin, state, f"{registry.host}/damaged:1")
    assert r.returncode == 1, r.stdout
    err = r.stderr.decode()
    assert "digest" in err and "refused" in err and manifest["layers"][1]["digest"] in err, err
    assert image_cmd(lms_bin, state, "ls").stdout.decode().count("\n") == 1, "no image was stored"
    assert not [p for p in (state / "images/pulls/blobs/sha256").iterdir() if p.name.endswith(".part")]


class TokenProxy:
    """Docker Hub's scheme in front of the registry: /v2/ needs `Authorization: Bearer TOKEN`, a 401 names the
    realm (/token) that hands out TOKEN for the right service and scope. Records each request's Range."""

    TOKEN = "t0ken-" + os.urandom(8).hex()

    def __init__(self, upstream, auth=True):
        proxy = self
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy.requests.append((self.path, self.headers.get("Authorization"), self.headers.get("Range")))
                if self.path.startswith("/token?"):
                    q = dict(p.split("=", 1) for p in self.path.split("?", 1)[1].split("&"))
                    ok = q.get("service") == "test-registry" and "repository%3Amini%3Apull" in q.get("scope", "")
                    body = json.dumps({"token": proxy.TOKEN} if ok else {}).encode()
                    self.send_response(200 if ok else 400)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if auth and self.headers.get("Authorization") != f"Bearer {proxy.TOKEN}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", f'Bearer realm="http://{proxy.host}/token",'
                                     'service="test-registry",scope="repository:mini:pull"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k in ("Accept", "Range")}
                try:
                    resp = urllib.request.urlopen(urllib.request.Request(f"http://{upstream}{self.path}",
                                                                         headers=headers))
                except urllib.error.HTTPError as e:
                    resp = e
                body = resp.read()
                self.send_response(resp.status if hasattr(resp, "status") else resp.code)
                for k in ("Content-Type", "Docker-Content-Digest", "Content-Range"):
                    if resp.headers.get(k):
                        self.send_header(k, resp.headers[k])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@root
def test_a_registry_that_demands_a_bearer_token(lms_bin, state, registry, mini):
    proxy = TokenProxy(registry.host)
    try:
        r = pull(lms_bin, state, f"{proxy.host}/mini:1")
    finally:
        proxy.stop()
    assert r.returncode == 0, r.stderr.decode()
    assert any(p.startswith("/token?") for p, _, _ in proxy.requests), proxy.requests
    v2 = [(p, a) for p, a, _ in proxy.requests if p.startswith("/v2/")]
    assert v2[0][1] is None and all(a == f"Bearer {TokenProxy.TOKEN}" for _, a in v2[1:]), v2
    assert run_in(lms_bin, state, "mini:1", "cat /etc/hostname").stdout == b"mini\n"


@root
def test_a_killed_pull_resumes_its_download_with_range(lms_bin, state, registry, mini, base_layer):
    # What a pull killed mid-layer leaves: the first half of the layer in its .part file.
    digest = mini["manifest"]["layers"][0]["digest"]
    blobs = state / "images/pulls/blobs/sha256"
    blobs.mkdir(parents=True)
    half = len(base_layer) // 2
    (blobs / f"{digest.split(':')[1]}.part").write_bytes(base_layer[:half])
    proxy = TokenProxy(registry.host, auth=False)
    try:
        r = pull(lms_bin, state, f"{proxy.host}/mini:1")
    finally:
        proxy.stop()
    assert r.returncode == 0, r.stderr.decode()
    ranges = [rng for p, _, rng in proxy.requests if digest in p]
    assert ranges == [f"bytes={half}-"], proxy.requests
    assert run_in(lms_bin, state, "mini:1", "cat /etc/hostname").stdout == b"mini\n"


@root
def test_references_that_are_not_valid(lms_bin, state):
    for ref, word in [("UPPER/case", "repository"), ("name:bad tag", "tag"), ("name@sha256:12", "digest"),
                      ("127.0.0.1:5000/x:" + "t" * 200, "tag")]:
        r = pull(lms_bin, state, ref)
        assert r.returncode == 1 and word in r.stderr.decode(), (ref, r.stderr)
    # Nobody listens on port 9 of loopback: unreachable, said so.
    r = pull(lms_bin, state, "127.0.0.1:9/x:1")
    assert r.returncode == 1 and b"127.0.0.1:9" in r.stderr, r.stderr


# ---- over HTTP ------------------------------------------------------------------------------------------------


@root
def test_post_images_pull_and_put_images(lms_bin, tmp_path, registry, mini, base_layer):
    archive = tmp_path / "mini.oci.tar"
    r = subprocess.run(["skopeo", "copy", "--quiet", f"oci:{mini['layout']}", f"oci-archive:{archive}"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(mini_rootfs())
    with daemons(lms_bin, tmp_path) as start:
        cap = max(archive.stat().st_size, rootfs.stat().st_size) + 4096
        s = start("--max-upload-bytes", str(cap))
        r = s.post("/v1/images/pull", {"ref": f"{registry.host}/mini:1", "name": "viaapi"}, timeout=300)
        assert r.status_code == 201, r.text
        img = r.json()
        assert img["name"] == "viaapi" and img["source"] == "registry" and len(img["layers"]) == 2, img
        ex = s.exec({"cmd": "cat /etc/hostname; echo $GREETING", "image": "viaapi"}).json()
        assert ex["stdout"] == "mini\nfrom-the-image\n", ex
        r = s.post("/v1/images/pull", {"ref": f"{registry.host}/mini:nosuchtag"}, timeout=60)
        assert r.status_code == 404 and "nosuchtag" in r.json()["error"]["message"], r.text
        r = s.post("/v1/images/pull", {"ref": "BAD REF"})
        assert r.status_code == 400, r.text
        r = s.post("/v1/images/pull", {"name": "x"})
        assert r.status_code == 400, r.text

        with open(archive, "rb") as f:
            r = s.request("PUT", "/v1/images/from-skopeo", data=f, timeout=300)
        assert r.status_code == 201, r.text
        assert r.json()["source"] == "oci-layout" and len(r.json()["layers"]) == 2, r.text
        with open(rootfs, "rb") as f:
            r = s.request("PUT", "/v1/images/plain", data=f, timeout=300)
        assert r.status_code == 201 and r.json()["source"] == "rootfs", r.text
        for name in ("from-skopeo", "plain"):
            ex = s.exec({"cmd": "cat /etc/hostname", "image": name}).json()
            assert ex["stdout"] == "mini\n", ex
        names = [i["name"] for i in s.get("/v1/images").json()["data"]]
        assert names == ["from-skopeo", "plain", "viaapi"], names

        r = s.request("PUT", "/v1/images/big", data=b"x" * (cap + 1))
        assert r.status_code == 413, r.text
        r = s.request("PUT", "/v1/images/bad", data=b"this is no archive")
        assert r.status_code == 400 and "tar" in r.json()["error"]["message"], r.text
        r = s.request("PUT", "/v1/images/host", data=rootfs.read_bytes())
        assert r.status_code == 400, r.text
        assert "big" not in [i["name"] for i in s.get("/v1/images").json()["data"]]
        leftovers = [p.name for p in (s.state_dir / "images").iterdir()
                     if p.name not in ("records", "layers", "tmp", "pulls", "lock")]
        assert leftovers == [], leftovers


def clients_of(state_dir):
    """PIDs of lm-sandbox-client processes working on state_dir."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"lm-sandbox-client") and str(state_dir).encode() in argv:
            pids.append(int(d.name))
    return pids


@root
def test_a_client_that_goes_away_ends_its_pull_and_a_stalled_pull_does_not_hold_the_daemon(lms_bin, tmp_path):
    # A "registry" that takes connections (the kernel's backlog) and never answers.
    stall = socket.socket()
    stall.bind(("127.0.0.1", 0))
    stall.listen(8)
    ref = f"127.0.0.1:{stall.getsockname()[1]}/x:1"
    try:
        with daemons(lms_bin, tmp_path) as start:
            s = start()
            with pytest.raises(requests.exceptions.ReadTimeout):
                s.post("/v1/images/pull", {"ref": ref}, timeout=1.5)
            deadline = time.monotonic() + 10
            while clients_of(s.state_dir) and time.monotonic() < deadline:
                time.sleep(0.05)  # the daemon notices the hang-up within its 250 ms poll
            assert clients_of(s.state_dir) == [], "the pull outlived its client"
            # A pull under way when SIGTERM comes: the daemon still stops at once (daemons() checks it).
            def pull_until_stopped():
                try:
                    s.post("/v1/images/pull", {"ref": ref}, timeout=30)
                except requests.exceptions.RequestException:
                    pass  # the daemon ends the connection as it stops

            t = threading.Thread(target=pull_until_stopped, daemon=True)
            t.start()
            deadline = time.monotonic() + 10
            while not clients_of(s.state_dir) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert clients_of(s.state_dir), "the pull did not start"
    finally:
        stall.close()
