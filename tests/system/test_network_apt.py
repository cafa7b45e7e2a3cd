"""apt-get inside an imported Debian with `network: true` (issue 13): the one test that reaches an outside host,
the Debian mirror the machine's own apt is configured with, and nothing else.

The mirror is never named here: its entries are read at run time from the host's apt sources (/etc/apt/sources.list
and /etc/apt/sources.list.d/*.list and *.sources), those for the image's release copied into the sandbox. Where the
mirror resolves to a private address, the daemon gets `--network-allow-private` for exactly those addresses. Skips
loudly (a failure under CI=true, scripts/test.sh) without mmdebstrap or without an apt mirror configured.
"""
import base64
import glob
import ipaddress
import os
import re
import socket
from urllib.parse import urlsplit

import pytest

from server_fixtures import daemons
from test_images import debian_tarball, image_cmd  # noqa: F401 (debian_tarball: a fixture)

pytestmark = pytest.mark.require_root

RELEASE = "bookworm"  # the release test_images.debian_tarball makes
# apt-get unchanged: no `-o APT::Sandbox::User=root` is needed, the sandbox's user namespace maps 65536 ids and
# apt's drop to its `_apt` user (uid 42) works (docs/API-NOTES.md, "apt-get in a network sandbox").
APT = "apt-get -q"
# A name outside the allowlist (RFC 6761's .invalid: never anybody's), refused by the sandbox's forwarder.
OTHER_NAME = "lms-not-allowed.invalid"
PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                             "fc00::/7")]


def host_apt_sources():
    """The host's apt entries for RELEASE: [(file name, text)] in the format of their file, and their URIs."""
    found, uris = [], []
    one_line = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]
    for path in one_line:
        if not os.path.isfile(path):
            continue
        keep = []
        for line in open(path, errors="replace"):
            words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2].startswith(RELEASE):
                keep.append(line.rstrip("\n"))
                uris.append(words[1])
        if keep:
            found.append((os.path.basename(path).replace("sources.list", "host") + ".list"
                          if path.endswith("sources.list") else os.path.basename(path), "\n".join(keep) + "\n"))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        keep = []
        for stanza in re.split(r"\n\s*\n", open(path, errors="replace").read()):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            if ("deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes").lower() != "no"
                    and any(s.startswith(RELEASE) for s in fields.get("Suites", "").split())):
                keep.append(stanza.strip())
                uris.extend(fields.get("URIs", "").split())
        if keep:
            found.append((os.path.basename(path), "\n\n".join(keep) + "\n"))
    return found, uris


def private_addresses(uris):
    """The private addresses (each as ADDR/32 or /128) the mirrors' names resolve to, on the host, now."""
    out = set()
    for uri in uris:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
        except OSError as e:
            pytest.skip(f"SKIPPED LOUDLY: the apt mirror's name does not resolve on this machine: {e}")
        for info in infos:
            addr = ipaddress.ip_address(info[4][0])
            if any(addr in net for net in PRIVATE):
                out.add(f"{addr}/{addr.max_prefixlen}")
    return sorted(out)


@pytest.fixture(scope="module")
def apt_sources():
    sources, uris = host_apt_sources()
    if not sources:
        pytest.skip(f"SKIPPED LOUDLY: no apt mirror for {RELEASE} in /etc/apt/sources.list(.d): this test reaches "
                    "only the mirror the machine's own apt uses")
    return sources, uris


def sh(server, sbx, script, timeout_ms=300000):
    r = server.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": script, "timeout_ms": timeout_ms},
                    timeout=timeout_ms / 1000 + 30)
    assert r.status_code == 200, r.text
    return r.json()


def keyrings(sources):
    """The host's keyring files the entries name (deb822 Signed-By, one-line [signed-by=...]) that are files."""
    paths = set()
    for _, text in sources:
        paths.update(re.findall(r"^Signed-By:\s*(/\S+)\s*$", text, re.M))
        paths.update(re.findall(r"signed-by=(/[^\s\]]+)", text))
    return sorted(p for p in paths if os.path.isfile(p))


def install_sources(server, sbx, sources):
    """The host's entries in place of the image's own, with the keyrings they name (base64: any byte passes the
    shell unchanged)."""
    put = lambda data, path: f"mkdir -p {os.path.dirname(path)} && echo {base64.b64encode(data).decode()} | " \
        f"base64 -d > {path}"  # noqa: E731
    steps = ["rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*"]
    steps += [put(open(path, "rb").read(), path) for path in keyrings(sources)]
    steps += [put(text.encode(), f"/etc/apt/sources.list.d/{name}") for name, text in sources]
    r = sh(server, sbx, " && ".join(steps))
    assert r["exit_code"] == 0, r


def mirror_hosts(uris):
    return sorted({urlsplit(u).hostname for u in uris if urlsplit(u).hostname})


@pytest.mark.parametrize("network", ["true", "allowlist"])
def test_apt_get_update_and_install_in_an_imported_debian(lms_bin, tmp_path, debian_tarball, apt_sources,  # noqa: F811
                                                          network):
    """`network: true`, and an allowlist naming only the mirrors' hosts: apt-get update and install work; with the
    allowlist, another name is refused (the forwarder answers REFUSED without asking upstream)."""
    sources, uris = apt_sources
    state = tmp_path / "state"
    state.mkdir()
    r = image_cmd(lms_bin, state, "import", RELEASE, str(debian_tarball), timeout=300)
    assert r.returncode == 0, r.stderr
    allow = [a for addr in private_addresses(uris) for a in ("--network-allow-private", addr)]
    with daemons(lms_bin, tmp_path) as start:
        s = start("--allow-network", *allow, state=state)
        net = True if network == "true" else {"allow": mirror_hosts(uris)}
        created = s.post("/v1/sandboxes", {"image": RELEASE, "network": net})
        assert created.status_code == 201, created.text
        sbx = created.json()["id"]
        install_sources(s, sbx, sources)
        update = sh(s, sbx, f"{APT} update 2>&1")
        assert update["exit_code"] == 0, update["stdout"][-3000:]
        assert not re.search(r"^(W|E): ", update["stdout"], re.M), update["stdout"][-3000:]
        install = sh(s, sbx, f"DEBIAN_FRONTEND=noninteractive {APT} install -y --no-install-recommends hello 2>&1")
        assert install["exit_code"] == 0, install["stdout"][-3000:]
        # A later exec of the persistent sandbox still has it.
        ran = sh(s, sbx, "hello && dpkg -s hello | grep -c '^Status: install ok installed'")
        assert ran["exit_code"] == 0 and ran["stdout"] == "Hello, world!\n1\n", ran
        if network == "allowlist":
            other = sh(s, sbx, f"getent ahosts {OTHER_NAME}; echo status=$?; "
                               f"exec 3<>/dev/tcp/{OTHER_NAME}/80 && echo connected")
            assert "status=2" in other["stdout"] and "connected" not in other["stdout"], other
        assert s.request("DELETE", f"/v1/sandboxes/{sbx}").status_code == 204
