"""A test internet: a network namespace joined to the host by a veth pair (198.18.0.0/15, reserved for benchmarks),
with an HTTP server and a tiny DNS server in it, plus listeners at addresses no sandbox may reach (a 10.x address,
169.254.169.254) so that each refusal test can be shown to fail when the filter is missing.

Nothing here sends a packet to an address outside this machine: every address lives in the namespace the fixture
creates (and removes), or on the host's loopback.
"""

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass, field

import pytest

# The test internet's addresses: the host's end of the veth, the namespace's end (the "internet" server and DNS).
# The third octet is drawn per test process, so that two test runs on one machine do not collide.
_OCTET = 1 + (os.getpid() % 250)
HOST_ADDR = f"198.18.{_OCTET}.1"
NET_ADDR = f"198.18.{_OCTET}.2"
# Forbidden addresses put inside the namespace, routed there from the host, so that the host can reach them.
PRIVATE_ADDR = f"10.213.{_OCTET}.2"
PRIVATE_RANGE = f"10.213.{_OCTET}.0/24"
METADATA_ADDR = "169.254.169.254"  # one per machine: a second test internet at once skips (fails in CI)
HTTP_PORT = 8080
DNS_PORT = 53
# Names the DNS server answers: one on the test internet, one resolving to a forbidden address.
NAME_OK = "www.test-internet.example"
NAME_BAD = "private.test-internet.example"
# A name with more A records than a 1280-byte UDP answer holds: the DNS server answers it with TC over UDP unless the
# query's EDNS0 size makes room (the sandbox's forwarder offers 4096 for a query that came to it over TCP).
NAME_BIG = "big.test-internet.example"
BIG_ADDRS = [f"198.18.{_OCTET}.{10 + i}" for i in range(100)]

# The servers inside the namespace: an HTTP server on every address (GET /size/N returns N bytes) and a DNS server
# answering A queries from a fixed table (struct-packed, no library), over UDP only (the sandbox's forwarder asks
# upstream over UDP only), setting TC when the answer is longer than the query's EDNS0 size (512 without one).
SERVER_CODE = textwrap.dedent(
    r'''
    import http.server, socket, socketserver, struct, sys, threading
    NAMES = {NAMES}
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/size/"):
                n = int(self.path[6:])
                self.send_response(200); self.send_header("Content-Length", str(n)); self.end_headers()
                chunk = b"x" * 65536
                while n > 0:
                    self.wfile.write(chunk[:n]); n -= len(chunk)
                return
            body = ("hello from %s\n" % self.server.server_address[0]).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a): pass
    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
    def dns():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", {DNS_PORT}))
        while True:
            q, peer = s.recvfrom(2048)
            try:
                tid, flags, qd = struct.unpack(">HHH", q[:6])
                i, labels = 12, []
                while q[i]:
                    labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
                qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
                question = q[12:i + 5]
                opt = q[i + 5:i + 16]
                size = 512
                if struct.unpack(">H", q[10:12])[0] == 1 and len(opt) == 11 and opt[:3] == b"\0\0\x29":
                    size = max(512, struct.unpack(">H", opt[3:5])[0])
                name = ".".join(labels).lower()
                addrs = NAMES.get(name)
                addrs = [addrs] if isinstance(addrs, str) else addrs or []
                ans = b""
                if qtype == 1:
                    ans = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(a) for a in addrs)
                rcode = 0 if addrs else 3
                flags = 0x8180 | rcode
                if 12 + len(question) + len(ans) > size:
                    flags, ans = flags | 0x0200, b""
                hdr = struct.pack(">HHHHHH", tid, flags, 1, len(ans) // 16, 0, 0)
                s.sendto(hdr + question + ans, peer)
            except Exception as e:
                print("dns:", e, file=sys.stderr)
    threading.Thread(target=dns, daemon=True).start()
    srv = S(("0.0.0.0", {HTTP_PORT}), H)
    print("ready", flush=True)
    srv.serve_forever()
    '''
)


def _sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


@dataclass
class TestInternet:
    name: str
    veth: str
    proc: subprocess.Popen
    addrs: dict = field(default_factory=dict)

    def host_get(self, addr, port=HTTP_PORT, timeout=5):
        """From the HOST: the body of http://addr:port/ (proves the listener answers)."""
        import urllib.request

        with urllib.request.urlopen(f"http://{addr}:{port}/", timeout=timeout) as r:
            return r.read().decode()


def _missing_tools():
    missing = [t for t in ("ip", "pasta", "nft") if shutil.which(t) is None]
    return missing


@pytest.fixture(scope="module")
def test_internet():
    if os.geteuid() != 0:
        pytest.skip("NEEDS ROOT: the test internet is a network namespace with a veth pair")
    missing = _missing_tools()
    if missing:
        pytest.skip(f"NEEDS {', '.join(missing)}: install iproute2, passt and nftables (scripts/deps.sh does)")
    tag = uuid.uuid4().hex[:6]
    name, veth = f"lmsnet-{tag}", f"lmsv{tag}"
    _sh("ip", "netns", "add", name)
    proc = None
    metadata_routed = True
    try:
        _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        _sh("ip", "addr", "add", f"{HOST_ADDR}/24", "dev", veth)
        _sh("ip", "link", "set", veth, "up")
        ns = ("ip", "netns", "exec", name)
        _sh(*ns, "ip", "addr", "add", f"{NET_ADDR}/24", "dev", "eth0")
        _sh(*ns, "ip", "addr", "add", f"{PRIVATE_ADDR}/32", "dev", "eth0")
        _sh(*ns, "ip", "addr", "add", f"{METADATA_ADDR}/32", "dev", "eth0")
        _sh(*ns, "ip", "link", "set", "eth0", "up")
        _sh(*ns, "ip", "link", "set", "lo", "up")
        _sh(*ns, "ip", "route", "add", "default", "via", HOST_ADDR)
        # Host routes to the forbidden addresses that live in the namespace: so that the HOST reaches them, and a
        # sandbox that escaped its filter would too.
        _sh("ip", "route", "add", f"{PRIVATE_ADDR}/32", "via", NET_ADDR)
        routed = _sh("ip", "route", "add", f"{METADATA_ADDR}/32", "via", NET_ADDR, check=False)
        if routed.returncode != 0:
            metadata_routed = False
            pytest.skip(f"cannot route {METADATA_ADDR} to the test internet (another test run holds it?): "
                        f"{routed.stderr.strip()}")
        names = {NAME_OK: NET_ADDR, NAME_BAD: PRIVATE_ADDR, NAME_BIG: BIG_ADDRS}
        code = SERVER_CODE.replace("{NAMES}", repr(names)).replace("{DNS_PORT}", str(DNS_PORT))
        code = code.replace("{HTTP_PORT}", str(HTTP_PORT))
        proc = subprocess.Popen(
            [*ns, sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"the test internet's servers did not start: {proc.stderr.read()}"
        yield TestInternet(name=name, veth=veth, proc=proc)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        _sh("ip", "route", "del", f"{PRIVATE_ADDR}/32", check=False)
        if metadata_routed:
            _sh("ip", "route", "del", f"{METADATA_ADDR}/32", "via", NET_ADDR, check=False)
        _sh("ip", "link", "del", veth, check=False)
        _sh("ip", "netns", "del", name, check=False)
