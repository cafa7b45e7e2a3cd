"""Network on request (issue 13, first slice; API.md "Network", docs/SECURITY.md "Network").

Every packet stays on this machine: the "internet" is a namespace the fixture builds (net_fixtures.py) at
198.18.0.0/15, and every forbidden address a sandbox is shown not to reach is a listener the test itself starts
(on the host, or inside that namespace) and first reaches from the HOST, so that each refusal could fail.
"""

import json
import os
import re
import socket
import subprocess
import threading

import pytest

from conftest import host_pids_with, unique_marker
from net_fixtures import (  # noqa: F401  (test_internet is a fixture)
    HOST_ADDR,
    HTTP_PORT,
    BIG_ADDRS,
    METADATA_ADDR,
    NAME_BAD,
    NAME_BIG,
    NAME_OK,
    NET_ADDR,
    PRIVATE_ADDR,
    PRIVATE_RANGE,
    test_internet,
)
from server_fixtures import assert_error, assert_exec_result, daemons, metric_sum, parse_metrics, show, wait_until

pytestmark = pytest.mark.require_root

# Run inside a sandbox: connects to each [host, port] of argv[1] (JSON) and prints {"host port": "ok" | error}.
CONNECT = r"""
import json, socket, sys
out = {}
for host, port in json.loads(sys.argv[1]):
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(4)
        s.connect((host, port))
        s.close()
        out[f"{host} {port}"] = "ok"
    except Exception as e:
        out[f"{host} {port}"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""

# Run inside a sandbox: GET http://argv[1]/ and print the body (a name goes through the sandbox's resolver).
HTTP_GET = r"""
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")
"""

# One A query for argv[2] to the DNS server at argv[1]:53 (or argv[3]); prints the first address, or the rcode.
DIG = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
port = int(sys.argv[3]) if len(sys.argv) > 3 else 53
q = struct.pack(">HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(q, (server, port))
a = s.recv(2048)
rcode, an = struct.unpack(">H", a[2:4])[0] & 15, struct.unpack(">H", a[6:8])[0]
print(socket.inet_ntoa(a[-4:]) if rcode == 0 and an else "rcode=%d" % rcode)
"""

# Run inside a sandbox: argv[1] JSON [[transport, name], ...] asked of the sandbox's resolver 127.0.0.53:53, the
# TCP ones on one connection (each query after its two-byte length); prints [[TC bit, rcode, [addresses]], ...].
DNS_ASK = r"""
import json, socket, struct, sys
def query(i, name):
    q = struct.pack(">HHHHHH", 0x7000 + i, 0x0100, 1, 0, 0, 0)
    return q + b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
def read(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed")
        b += c
    return b
def parse(a, i):
    tid, flags, qd, an = struct.unpack(">HHHH", a[:8])
    assert tid == 0x7000 + i, tid
    return [bool(flags & 0x200), flags & 15, [socket.inet_ntoa(a[-4 - 16 * k:len(a) - 16 * k]) for k in range(an)]]
asks = json.loads(sys.argv[1])
out, tcp = [], None
for i, (how, name) in enumerate(asks):
    if how == "udp":
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(5)
        u.sendto(query(i, name), ("127.0.0.53", 53))
        out.append(parse(u.recv(4096), i))
        continue
    if tcp is None:
        tcp = socket.create_connection(("127.0.0.53", 53), timeout=5)
    q = query(i, name)
    tcp.sendall(struct.pack(">H", len(q)) + q)
    out.append(parse(read(tcp, struct.unpack(">H", read(tcp, 2))[0]), i))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def servers(lms_bin, tmp_path_factory, test_internet):
    """Three daemons: with network (DNS pointed at the test internet), the same with the test namespace's 10.x
    range allowed, and one without --allow-network."""
    tmp = tmp_path_factory.mktemp("net")
    with daemons(lms_bin, tmp) as start:
        dns = ("--network-dns", NET_ADDR)
        yield {
            "net": start("--allow-network", *dns),
            "private": start("--allow-network", *dns, "--network-allow-private", PRIVATE_RANGE),
            "off": start(),
            # An allowlist-only server: network true means this list.
            "list": start("--allow-network", *dns, "--network-allow", NAME_OK),
        }


def sandbox_connect(server, targets, network=True):
    r = assert_exec_result(server.exec({"argv": ["python3", "-c", CONNECT, json.dumps(targets)],
                                        "network": network, "timeout_ms": 30000}))
    assert r["exit_code"] == 0, r
    return json.loads(r["stdout"])


class Listener:
    """A TCP listener on the host at (addr, ephemeral port), accepting and closing in a thread."""

    def __init__(self, addr):
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((addr, 0))
        self.sock.listen(64)
        self.addr, self.port = addr, self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
                c.close()
            except OSError:
                return

    def close(self):
        self.sock.close()


def host_connects(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect((addr, port))
    return True


def host_addresses():
    """Every address of the host's interfaces (link-local IPv6 left out: it needs an interface to connect)."""
    out = json.loads(subprocess.run(["ip", "-j", "addr"], check=True, capture_output=True, text=True).stdout)
    addrs = []
    for link in out:
        for a in link.get("addr_info", []):
            if a["family"] == "inet6" and a["local"].startswith("fe80"):
                continue
            addrs.append(a["local"])
    return addrs


# ---- off, on, by address and by name ------------------------------------------------------------------------------


def test_network_off_reaches_nothing(servers):
    got = sandbox_connect(servers["net"], [[NET_ADDR, HTTP_PORT]], network=False)
    assert got[f"{NET_ADDR} {HTTP_PORT}"] != "ok", got
    assert host_connects(NET_ADDR, HTTP_PORT)


def test_network_on_reaches_the_test_internet_by_address_and_by_name(servers):
    s = servers["net"]
    for url in (f"http://{NET_ADDR}:{HTTP_PORT}/", f"http://{NAME_OK}:{HTTP_PORT}/"):
        r = assert_exec_result(s.exec({"argv": ["python3", "-c", HTTP_GET, url], "network": True}))
        assert r["exit_code"] == 0 and r["stdout"].startswith("hello from"), (url, r)
        assert r["net_rx_bytes"] > 0 and r["net_tx_bytes"] > 0, r
    r = assert_exec_result(s.exec({"argv": ["cat", "/etc/resolv.conf"], "network": True}))
    assert "nameserver 127.0.0.53" in r["stdout"], r


def test_bytes_are_counted_in_the_result_and_in_metrics(servers):
    s = servers["net"]
    before = metric_sum(parse_metrics(s.get("/metrics").text), "lms_network_received_bytes_total")
    size = 2_000_000
    r = assert_exec_result(s.exec({"argv": ["python3", "-c", HTTP_GET, f"http://{NET_ADDR}:{HTTP_PORT}/size/{size}"],
                                   "network": True, "output_bytes": 16}))
    assert r["exit_code"] == 0, r
    assert size <= r["net_rx_bytes"] < size * 1.2, r
    after = metric_sum(parse_metrics(s.get("/metrics").text), "lms_network_received_bytes_total")
    assert after - before >= r["net_rx_bytes"], (before, after, r)
    off = assert_exec_result(s.exec({"argv": ["true"]}))
    assert off["net_rx_bytes"] == 0 and off["net_tx_bytes"] == 0, off


# ---- never the host ------------------------------------------------------------------------------------------------


def test_never_the_hosts_loopback_listeners_v4_and_v6(servers):
    listeners = [Listener("127.0.0.1"), Listener("::1")]
    try:
        for lst in listeners:
            assert host_connects(lst.addr, lst.port)
        targets = [[lst.addr, lst.port] for lst in listeners]
        targets.append(["::ffff:127.0.0.1", listeners[0].port])
        got = sandbox_connect(servers["net"], targets)
        assert all(v != "ok" for v in got.values()), got
    finally:
        for lst in listeners:
            lst.close()


def test_never_the_hosts_own_addresses_nor_the_daemons_port(servers):
    s = servers["net"]
    addrs = host_addresses()
    assert HOST_ADDR in addrs, addrs
    listeners = [Listener("0.0.0.0"), Listener("::")]
    try:
        targets = []
        for a in addrs:
            lst = listeners[1] if ":" in a else listeners[0]
            assert host_connects(a, lst.port), a
            targets.append([a, lst.port])
        targets.append(["127.0.0.1", s.port])
        targets.append([f"::ffff:{HOST_ADDR}", listeners[0].port])
        got = sandbox_connect(s, targets)
        assert all(v != "ok" for v in got.values()), got
    finally:
        for lst in listeners:
            lst.close()


def test_never_metadata_nor_a_private_address_unless_allowed(servers):
    for addr in (METADATA_ADDR, PRIVATE_ADDR):
        assert host_connects(addr, HTTP_PORT), addr
    got = sandbox_connect(servers["net"], [[METADATA_ADDR, HTTP_PORT], [PRIVATE_ADDR, HTTP_PORT]])
    assert all(v != "ok" for v in got.values()), got
    # Refused fast (admin-prohibited), not left to time out.
    assert all("113" in v or "unreachable" in v.lower() for v in got.values()), got
    got = sandbox_connect(servers["private"], [[METADATA_ADDR, HTTP_PORT], [PRIVATE_ADDR, HTTP_PORT]])
    assert got[f"{PRIVATE_ADDR} {HTTP_PORT}"] == "ok", got
    assert got[f"{METADATA_ADDR} {HTTP_PORT}"] != "ok", got


def test_a_name_that_resolves_to_a_forbidden_address_is_refused(servers):
    r = assert_exec_result(servers["net"].exec(
        {"argv": ["python3", "-c", HTTP_GET, f"http://{NAME_BAD}:{HTTP_PORT}/"], "network": True}))
    # Refused by the sandbox's DNS forwarder (its answer names a private address): no address at all, not a
    # connection the filter then stops. The name does resolve on the host, and the address answers there.
    assert r["exit_code"] != 0 and "urlopen error [Errno -" in r["stderr"], r
    assert "Errno 113" not in r["stderr"], r
    out = subprocess.run(["python3", "-c", DIG, NET_ADDR, NAME_BAD], capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == PRIVATE_ADDR, out
    assert host_connects(PRIVATE_ADDR, HTTP_PORT)


def test_the_sandboxes_root_cannot_remove_the_filter(servers):
    script = f"nft flush ruleset; echo nft=$?; python3 -c '{CONNECT}' '[[\"{PRIVATE_ADDR}\", {HTTP_PORT}]]'"
    r = assert_exec_result(servers["net"].exec({"cmd": script, "network": True}))
    lines = r["stdout"].splitlines()
    assert lines[0] != "nft=0", r
    assert json.loads(lines[1])[f"{PRIVATE_ADDR} {HTTP_PORT}"] != "ok", r


def test_never_a_server_in_another_sandbox(servers):
    s = servers["net"]
    resp = s.post("/v1/sandboxes", {"network": True})
    assert resp.status_code == 201, show(resp)
    sbx = resp.json()["id"]
    try:
        serve = ("import http.server as h; s = h.HTTPServer(('0.0.0.0', 0), h.SimpleHTTPRequestHandler); "
                 "open('/tmp/port.new', 'w').write(str(s.server_port)); __import__('os').rename('/tmp/port.new', "
                 "'/tmp/port'); s.serve_forever()")
        start = (f'nohup python3 -c "{serve}" >/dev/null 2>&1 & '
                 "for i in $(seq 200); do [ -s /tmp/port ] && cat /tmp/port && exit 0; sleep 0.05; done; exit 1")
        r = s.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": start})
        assert r.status_code == 200 and r.json()["exit_code"] == 0, show(r)
        port = int(r.json()["stdout"])
        r = s.post(f"/v1/sandboxes/{sbx}/exec", {"argv": ["python3", "-c", CONNECT, json.dumps([["127.0.0.1", port]])]})
        assert json.loads(r.json()["stdout"]) == {f"127.0.0.1 {port}": "ok"}, show(r)  # it does listen
        targets = [[a, port] for a in host_addresses()] + [["127.0.0.1", port]]
        got = sandbox_connect(s, targets)
        assert all(v != "ok" for v in got.values()), got
        with pytest.raises(OSError):
            host_connects("127.0.0.1", port)  # pasta publishes nothing of the sandbox on the host
    finally:
        s.request("DELETE", f"/v1/sandboxes/{sbx}")


# ---- pasta is part of the sandbox ----------------------------------------------------------------------------------


def pastas_beside(pid):
    """The network's helper processes (pasta, and the DNS forwarder "lms-dns") in the same cgroup as host process
    `pid` (the sandbox's)."""
    def cgroup(p):
        try:
            with open(f"/proc/{p}/cgroup") as f:
                return f.read()
        except OSError:
            return None

    mine = cgroup(pid)
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith("pasta") or comm.startswith("passt") or comm == "lms-dns":
            if mine is not None and cgroup(p) == mine:
                found.append(int(p))
    return found


def both_helpers(pids):
    """pids, when pasta and the DNS forwarder are both among them; else None."""
    comms = set()
    for p in pids:
        try:
            with open(f"/proc/{p}/comm") as f:
                comms.add("dns" if f.read().strip() == "lms-dns" else "pasta")
        except OSError:
            pass
    return pids if comms == {"dns", "pasta"} else None


def _exec_in_thread(server, body):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", server.exec(body, timeout=60)))
    t.start()
    return t, box


def gone(pids):
    return not any(os.path.exists(f"/proc/{p}") for p in pids)


@pytest.mark.parametrize("how", ["exit", "timeout"])
def test_pasta_is_gone_after_the_exec(servers, how):
    s = servers["net"]
    marker = unique_marker()
    seconds = 2 if how == "exit" else 600
    body = {"argv": ["sh", "-c", f"sleep {seconds}; true", marker], "network": True}
    if how == "timeout":
        body["timeout_ms"] = 3000
    t, box = _exec_in_thread(s, body)
    pids = wait_until(lambda: host_pids_with(marker), 15)
    assert pids, "the command never showed up"
    pastas = wait_until(lambda: both_helpers(pastas_beside(pids[0])), 5)
    assert pastas, "no pasta and DNS forwarder in the sandbox's cgroup"
    t.join(60)
    r = box["r"]
    assert r.status_code == 200, show(r)
    assert r.json()["timed_out"] is (how == "timeout"), r.json()
    assert wait_until(lambda: gone(pastas), 5), f"pasta {pastas} outlived its sandbox"


def network_sandbox_with_pasta(s):
    """A persistent network sandbox of server s with a background `sleep` in it: (its id, its pasta pids)."""
    resp = s.post("/v1/sandboxes", {"network": True})
    assert resp.status_code == 201, show(resp)
    sbx = resp.json()["id"]
    marker = unique_marker()
    r = s.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": f"nohup sh -c 'sleep 600; true' {marker} >/dev/null 2>&1 &"})
    assert r.status_code == 200, show(r)
    pids = wait_until(lambda: host_pids_with(marker), 15)
    assert pids, "the background command never showed up"
    pastas = wait_until(lambda: both_helpers(pastas_beside(pids[0])), 5)
    assert pastas, "no pasta and DNS forwarder in the sandbox's cgroup"
    return sbx, pastas


def test_pasta_is_gone_after_delete(servers):
    s = servers["net"]
    sbx, pastas = network_sandbox_with_pasta(s)
    r = s.request("DELETE", f"/v1/sandboxes/{sbx}")
    assert r.status_code in (200, 204), show(r)
    assert wait_until(lambda: gone(pastas), 10), f"pasta {pastas} outlived its sandbox"


# ---- the server's switch -------------------------------------------------------------------------------------------


def test_network_needs_allow_network(servers):
    s = servers["off"]
    for network in (True, {"allow": ["example.org"]}):
        err = assert_error(s.exec({"argv": ["true"], "network": network}), 403)
        assert "--allow-network" in err["message"], err
    assert_error(s.post("/v1/sandboxes", {"network": True}), 403)


def test_a_crash_leaves_no_pasta_and_the_revived_sandbox_gets_a_new_one(lms_bin, tmp_path, test_internet):
    with daemons(lms_bin, tmp_path) as start:
        args = ("--allow-network", "--network-dns", NET_ADDR)
        s = start(*args)
        sbx, pastas = network_sandbox_with_pasta(s)
        s.proc.kill()
        s.proc.wait(30)
        again = start(*args, state=s.state_dir)
        # The revived sandbox is made again (a new PID 1 in a new cgroup), which also reaps the dead one's group.
        r = again.post(f"/v1/sandboxes/{sbx}/exec",
                       {"argv": ["python3", "-c", HTTP_GET, f"http://{NAME_OK}:{HTTP_PORT}/"]})
        assert r.status_code == 200 and r.json()["stdout"].startswith("hello from"), show(r)
        assert wait_until(lambda: gone(pastas), 10), f"pasta {pastas} outlived its crashed daemon"


# ---- allowlists -----------------------------------------------------------------------------------------------------

# Run inside a sandbox: each step of argv[1] in order, [["connect", host, port] | ["get", url] | ["resolve", name]],
# each result "ok ..." or the error, as JSON.
STEPS = r"""
import json, socket, sys, urllib.request
out = []
for step in json.loads(sys.argv[1]):
    try:
        if step[0] == "connect":
            socket.create_connection((step[1], step[2]), timeout=4).close()
            out.append("ok")
        elif step[0] == "get":
            out.append("ok " + urllib.request.urlopen(step[1], timeout=5).read().decode().strip())
        else:
            out.append("ok " + socket.getaddrinfo(step[1], 80, socket.AF_INET)[0][4][0])
    except Exception as e:
        out.append(f"{type(e).__name__}: {e}")
print(json.dumps(out))
"""


def steps(server, steps, network):
    r = assert_exec_result(server.exec({"argv": ["python3", "-c", STEPS, json.dumps(steps)], "network": network,
                                        "timeout_ms": 30000}))
    assert r["exit_code"] == 0, r
    return json.loads(r["stdout"])


def test_an_allowlist_admits_its_names_and_refuses_the_rest(servers):
    url = f"http://{NAME_OK}:{HTTP_PORT}/"
    got = steps(servers["net"], [["connect", NET_ADDR, HTTP_PORT], ["get", url], ["resolve", "other.example.org"],
                                 ["connect", NET_ADDR, HTTP_PORT]], {"allow": [NAME_OK]})
    # By address before any name led there: refused by the filter, not only by DNS.
    assert not got[0].startswith("ok"), got
    assert got[1].startswith("ok hello from"), got
    assert not got[2].startswith("ok"), got  # a name outside the list does not even resolve
    # Once its allowed name resolved to it, the address is reached (the filter admits what DNS answered).
    assert got[3] == "ok", got
    # Without the allowlist the same server reaches the address at once: the refusal above is the list's.
    assert sandbox_connect(servers["net"], [[NET_ADDR, HTTP_PORT]])[f"{NET_ADDR} {HTTP_PORT}"] == "ok"


def test_an_allowlisted_range_is_reached_by_address_and_its_names_are_not(servers):
    got = steps(servers["net"], [["connect", NET_ADDR, HTTP_PORT], ["resolve", NAME_OK]],
                {"allow": [f"{NET_ADDR}/32"]})
    assert got[0] == "ok" and not got[1].startswith("ok"), got


def test_an_allowlist_never_opens_what_is_forbidden(servers):
    # A wildcard admits the test internet's names, but not one that resolves to a private address, and a private
    # range or the metadata address listed outright stays refused (--network-allow-private is what lifts those).
    got = steps(servers["net"], [["get", f"http://{NAME_OK}:{HTTP_PORT}/"], ["resolve", NAME_BAD],
                                 ["connect", PRIVATE_ADDR, HTTP_PORT], ["connect", METADATA_ADDR, HTTP_PORT]],
                {"allow": ["*.test-internet.example", PRIVATE_RANGE, f"{METADATA_ADDR}/32"]})
    assert got[0].startswith("ok hello from"), got
    assert not any(g.startswith("ok") for g in got[1:]), got
    assert host_connects(PRIVATE_ADDR, HTTP_PORT) and host_connects(METADATA_ADDR, HTTP_PORT)


def test_the_servers_own_allowlist(servers):
    s = servers["list"]
    got = steps(s, [["connect", NET_ADDR, HTTP_PORT], ["get", f"http://{NAME_OK}:{HTTP_PORT}/"]], True)
    assert not got[0].startswith("ok") and got[1].startswith("ok hello from"), got
    err = assert_error(s.exec({"argv": ["true"], "network": {"allow": ["example.org"]}}), 403)
    assert "--network-allow" in err["message"], err


def test_a_persistent_sandbox_keeps_its_allowlist(servers):
    s = servers["net"]
    r = s.post("/v1/sandboxes", {"network": {"allow": [NAME_OK]}})
    assert r.status_code == 201, show(r)
    sbx = r.json()["id"]
    try:
        assert r.json()["network"] == {"allow": [NAME_OK]}, r.json()
        assert s.get(f"/v1/sandboxes/{sbx}").json()["network"] == {"allow": [NAME_OK]}
        body = {"argv": ["python3", "-c", STEPS, json.dumps([["resolve", "other.example.org"],
                                                             ["get", f"http://{NAME_OK}:{HTTP_PORT}/"]])]}
        out = s.post(f"/v1/sandboxes/{sbx}/exec", body)
        assert out.status_code == 200, show(out)
        got = json.loads(out.json()["stdout"])
        assert not got[0].startswith("ok") and got[1].startswith("ok hello from"), got
    finally:
        s.request("DELETE", f"/v1/sandboxes/{sbx}")


# ---- network sandboxes prepared ahead ------------------------------------------------------------------------------
# After a one-shot exec with a network, the daemon keeps a few sandboxes with that same network (filter, pasta, DNS
# forwarder) prepared (API-NOTES.md "Network sandboxes prepared ahead"). Each test first shows that a command did
# run in one of them (its network namespace is one the daemon held before the request), then that it got what a
# sandbox made for it would have given.

# Run inside a sandbox: prints its network namespace, then the STEPS of argv[1].
NETNS_STEPS = "import os; print(os.readlink('/proc/self/ns/net'))\n" + STEPS


@pytest.fixture
def pooled(lms_bin, tmp_path, test_internet):
    with daemons(lms_bin, tmp_path) as start:
        yield start("--allow-network", "--network-dns", NET_ADDR)


def descendants(pid):
    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(p))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.add(c)
            todo.append(c)
    return found


def held_network_namespaces(server):
    """The network namespaces of the network sandboxes `server` holds now: each has a DNS forwarder (lms-dns) in it,
    in the cgroup its worker made (named lms-WORKERPID-N)."""
    workers = descendants(server.proc.pid)
    found = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() != "lms-dns":
                    continue
            with open(f"/proc/{p}/cgroup") as f:
                cgroup = f.read()
            netns = os.readlink(f"/proc/{p}/ns/net")
        except OSError:
            continue
        m = re.search(r"/lms-(\d+)-\d+", cgroup)
        if m and int(m.group(1)) in workers:
            found.add(netns)
    return found


def netns_steps(server, todo, network):
    """STEPS in a one-shot sandbox: (its network namespace, the results). Every namespace a command of `server`
    ran in is noted in server.used_netns (a sandbox is ended just after its result is sent: for a moment its
    forwarder is still there)."""
    r = assert_exec_result(server.exec({"argv": ["python3", "-c", NETNS_STEPS, json.dumps(todo)],
                                        "network": network, "timeout_ms": 30000}))
    assert r["exit_code"] == 0, r
    netns, out = r["stdout"].split("\n", 1)
    server.used_netns = getattr(server, "used_netns", set()) | {netns}
    return netns, json.loads(out)


def prepared(server):
    """The network namespaces of sandboxes `server` holds that no command has run in yet."""
    return held_network_namespaces(server) - getattr(server, "used_netns", set())


def pooled_steps(server, todo, network):
    """STEPS in a one-shot sandbox once `server` holds a prepared one: (whether the command ran in a sandbox that
    was prepared before it was asked for, its results)."""
    ready = wait_until(lambda: prepared(server), 20)
    netns, out = netns_steps(server, todo, network)
    return netns in ready, out


def test_a_network_exec_runs_in_a_sandbox_prepared_ahead(pooled):
    get = ["get", f"http://{NAME_OK}:{HTTP_PORT}/"]
    assert not held_network_namespaces(pooled)  # none before a network was asked for
    assert netns_steps(pooled, [get], True)[1][0].startswith("ok hello from")
    # The first one was made on demand; the daemon now keeps its like prepared.
    took, got = pooled_steps(pooled, [get, ["connect", NET_ADDR, HTTP_PORT]], True)
    assert took, "the second network exec did not run in a sandbox prepared ahead"
    assert got[0].startswith("ok hello from") and got[1] == "ok", got


def test_a_sandbox_prepared_for_one_network_never_serves_another(pooled):
    listed = {"allow": [NAME_OK]}
    todo = [["connect", NET_ADDR, HTTP_PORT], ["resolve", "other.example.org"],
            ["get", f"http://{NAME_OK}:{HTTP_PORT}/"]]
    took = {"listed": 0, "open": 0}
    for _ in range(4):
        for name, network in (("listed", listed), ("open", True)):
            pooled_took, got = pooled_steps(pooled, todo, network)
            took[name] += pooled_took
            assert got[2].startswith("ok hello from"), (name, got)
            if name == "listed":
                assert not got[0].startswith("ok") and not got[1].startswith("ok"), got
            else:
                assert got[0] == "ok", got
    assert took["listed"] and took["open"], f"prepared sandboxes were never used: {took}"


def test_an_address_the_host_gains_after_preparing_is_refused_all_the_same(pooled):
    # The filter of a prepared sandbox lists the host's addresses of when it was made: one added since would be
    # missing from it, so that sandbox must not be used.
    netns_steps(pooled, [], True)
    before = wait_until(lambda: prepared(pooled), 20)
    assert before, "no network sandbox was prepared"
    added = f"{NET_ADDR.rsplit('.', 1)[0]}.77"
    subprocess.run(["ip", "addr", "add", f"{added}/32", "dev", "lo"], check=True)
    lst = Listener(added)
    try:
        assert host_connects(added, lst.port)
        r = assert_exec_result(pooled.exec({"argv": ["python3", "-c", NETNS_STEPS,
                                                     json.dumps([["connect", added, lst.port]])],
                                            "network": True, "timeout_ms": 30000}))
        netns, out = r["stdout"].split("\n", 1)
        assert not json.loads(out)[0].startswith("ok"), out
        assert netns not in before, "a sandbox prepared before the host's address changed was used"
    finally:
        lst.close()
        subprocess.run(["ip", "addr", "del", f"{added}/32", "dev", "lo"], check=False)


def test_dns_over_tcp_in_the_sandbox(servers):
    """The sandbox's resolver answers over TCP too (several queries on one connection), with the filter's rules; a
    UDP answer too large for the client is TC, the same over TCP is the answer, and glibc's resolver (which
    retries over TCP on TC) resolves the name."""
    s = servers["net"]
    asks = [["tcp", NAME_OK], ["tcp", NAME_BAD], ["tcp", NAME_BIG], ["udp", NAME_BIG], ["tcp", "nx.test-internet.example"]]
    r = assert_exec_result(s.exec({"argv": ["python3", "-c", DNS_ASK, json.dumps(asks)], "network": True}))
    assert r["exit_code"] == 0, r
    ok, bad, big_tcp, big_udp, nx = json.loads(r["stdout"])
    assert ok == [False, 0, [NET_ADDR]], ok
    assert bad[:2] == [False, 5] and bad[2] == [], bad  # REFUSED: it names a private address
    assert big_tcp[:2] == [False, 0] and len(big_tcp[2]) == 16 and set(big_tcp[2]) <= set(BIG_ADDRS), big_tcp
    assert big_udp == [True, 0, []], big_udp
    assert nx == [False, 3, []], nx
    glibc = assert_exec_result(s.exec({"argv": ["getent", "ahostsv4", NAME_BIG], "network": True}))
    assert glibc["exit_code"] == 0, glibc
    assert {line.split()[0] for line in glibc["stdout"].splitlines()} <= set(BIG_ADDRS), glibc
    # An allowlist's names over TCP: its own name answered, another refused.
    listed = assert_exec_result(servers["list"].exec({"argv": ["python3", "-c", DNS_ASK,
                                                               json.dumps([["tcp", NAME_OK], ["tcp", NAME_BIG]])],
                                                      "network": True}))
    assert json.loads(listed["stdout"]) == [[False, 0, [NET_ADDR]], [False, 5, []]], listed
