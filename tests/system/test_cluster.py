"""Two daemons as one cluster (docs/deploy.md, "Scaling"): each names itself (--node-id) in the ids of the
sandboxes it makes, and forwards a request for another node's sandbox to that node (--peers), streams both ways.
Both run on this machine on ports of their own, with their own state dirs and the one token of the cluster."""

import http.server
import io
import json
import re
import socket
import tarfile
import threading
import time

import pytest

from cli_client import sandbox_cli
from server_fixtures import assert_error, assert_exec_result, daemons, show

pytestmark = pytest.mark.require_root

TOKEN = "cluster-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port():
    """A port the kernel has just handed out and taken back: both daemons must know both ports before either
    starts, so neither can use port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(lms_bin, tmp_path):
    ports = {"node-a": free_port(), "node-b": free_port()}
    peers = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in ports.items())
    with daemons(lms_bin, tmp_path) as start:
        a, b = (start("--node-id", n, "--peers", peers + (",node-c=http://127.0.0.1:1" if n == "node-a" else ""),
                      listen=f"127.0.0.1:{p}", env={"LM_SANDBOX_API_TOKEN": TOKEN}) for n, p in ports.items())
        yield a, b


def create(s):
    r = s.post("/v1/sandboxes", {}, headers=AUTH)
    assert r.status_code == 201, show(r)
    return r.json()["id"]


def sh(s, sbx, cmd):
    return assert_exec_result(s.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": cmd}, headers=AUTH))


def test_ids_name_their_node_and_every_request_reaches_it_from_either(cluster):
    a, b = cluster
    on_a, on_b = create(a), create(b)
    assert on_a.startswith("sbx_node-a_") and on_b.startswith("sbx_node-b_"), (on_a, on_b)
    # Commands through B run on A, in A's sandbox: its files are there for A too.
    assert sh(b, on_a, "echo hi > /work/f && hostname >/dev/null && echo ok")["stdout"] == "ok\n"
    assert sh(a, on_a, "cat /work/f")["stdout"] == "hi\n"
    got = b.get(f"/v1/sandboxes/{on_a}", headers=AUTH)
    assert got.status_code == 200 and got.json()["id"] == on_a and got.headers["X-LMS-Node"] == "node-a", show(got)
    # Each node's own list (?node=local) has its own sandboxes only; B's stay on B.
    assert [x["id"] for x in a.get("/v1/sandboxes?node=local", headers=AUTH).json()["data"]] == [on_a]
    assert [x["id"] for x in b.get("/v1/sandboxes?node=local", headers=AUTH).json()["data"]] == [on_b]
    assert sh(a, on_b, "test -e /work/f || echo absent")["stdout"] == "absent\n"
    # The token is checked on both: a request without it is refused before it goes anywhere.
    assert_error(b.post(f"/v1/sandboxes/{on_a}/exec", {"cmd": "true"}), 401)
    # Delete through the other node; it is gone on its own.
    r = b.request("DELETE", f"/v1/sandboxes/{on_a}", headers=AUTH)
    assert r.status_code == 204, show(r)
    err = assert_error(a.get(f"/v1/sandboxes/{on_a}", headers=AUTH), 404, "sandbox_not_found")
    assert err.get("reason") == "deleted", err
    assert_error(b.get(f"/v1/sandboxes/{on_a}", headers=AUTH), 404, "sandbox_not_found")


def test_files_stream_both_ways_through_a_peer(cluster):
    a, b = cluster
    sbx = create(a)
    big = bytes(range(256)) * 8192  # 2 MiB, sent with a length
    r = b.request("PUT", f"/v1/sandboxes/{sbx}/files/work/big file", data=big, headers=AUTH)
    assert r.status_code == 201, show(r)
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))  # the same, chunked (no length)
    r = b.request("PUT", f"/v1/sandboxes/{sbx}/files/work/chunked", data=chunks, headers=AUTH)
    assert r.status_code == 201, show(r)
    assert sh(a, sbx, "cmp '/work/big file' /work/chunked && wc -c < /work/chunked")["stdout"] == f"{len(big)}\n"
    r = b.get(f"/v1/sandboxes/{sbx}/files/work/big file", headers=AUTH)
    assert r.status_code == 200 and r.content == big, show(r)
    r = b.get(f"/v1/sandboxes/{sbx}/files/work", headers={**AUTH, "Accept": "application/x-tar"})
    assert r.status_code == 200, show(r)
    names = tarfile.open(fileobj=io.BytesIO(r.content)).getnames()
    assert any(n.endswith("chunked") for n in names), names
    assert_error(b.get(f"/v1/sandboxes/{sbx}/files/work/none", headers=AUTH), 404)


def test_exec_events_and_a_followed_output_stream_through_a_peer(cluster):
    a, b = cluster
    sbx = create(a)
    sse = b.sse({"cmd": "for i in 1 2 3; do echo line $i; sleep 0.1; done", "stream": True}, headers=AUTH,
                path=f"/v1/sandboxes/{sbx}/exec")
    assert sse.status == 200 and sse.header("Content-Type").startswith("text/event-stream")
    events = sse.events()
    sse.close()
    out = "".join(d.get("data", "") for n, d in events if n == "stdout")
    assert out == "line 1\nline 2\nline 3\n" and events[-1][0] == "exit", events
    r = b.post(f"/v1/sandboxes/{sbx}/exec", {"cmd": "for i in 1 2; do echo p$i; sleep 0.1; done", "background": True},
               headers=AUTH)
    assert r.status_code == 202, show(r)
    proc = r.json()["process_id"]
    sse = b.sse(None, headers=AUTH, path=f"/v1/sandboxes/{sbx}/processes/{proc}/output?follow=true")
    events = sse.events()
    sse.close()
    assert "".join(d["data"] for n, d in events if n == "output") == "p1\np2\n", events
    assert events[-1][0] == "exit" and events[-1][1]["exit_code"] == 0, events
    listed = b.get(f"/v1/sandboxes/{sbx}/processes", headers=AUTH).json()["data"]
    assert [p["process_id"] for p in listed] == [proc], listed


def test_a_node_that_is_down_or_unknown_gets_the_documented_errors(cluster):
    a, b = cluster
    on_b = create(b)
    # Listed but down (node-c's port has nobody): 503 naming the node, and it says when to retry.
    r = a.post("/v1/sandboxes/sbx_node-c_0123456789abcdef/exec", {"cmd": "true"}, headers=AUTH)
    err = assert_error(r, 503, "peer_unavailable")
    assert "node-c" in err["message"] and r.headers.get("Retry-After") == "1", err
    # Not in the cluster: a forged name is a sandbox that does not exist, never a forward.
    err = assert_error(a.get("/v1/sandboxes/sbx_evil-host_0123456789abcdef", headers=AUTH), 404, "sandbox_not_found")
    assert "evil-host" in err["message"], err
    assert_error(a.get("/v1/sandboxes/sbx_Evil.Host:80_0123456789abcdef", headers=AUTH), 404, "sandbox_not_found")
    # A request that came through a peer already is never sent on again.
    r = b.get("/v1/sandboxes/sbx_node-a_0123456789abcdef", headers={**AUTH, "X-LMS-Forwarded-By": "node-a"})
    assert_error(r, 508, "forward_loop")
    # B stops: its sandboxes cannot be reached through A, and A says which node is missing.
    status, _ = b.stop()
    assert status == 0
    err = assert_error(a.get(f"/v1/sandboxes/{on_b}", headers=AUTH), 503, "peer_unavailable")
    assert "node-b" in err["message"], err
    # A's own sandboxes go on.
    assert sh(a, create(a), "echo fine")["stdout"] == "fine\n"


# ---- The cluster-wide list: GET /v1/sandboxes gathers every node's (API-NOTES.md, "Cluster") ----


class FakePeer:
    """A peer that is not lm-sandbox: an HTTP server on an ephemeral port that answers GET /v1/sandboxes with
    whatever the test sets (`answer`: (status, body bytes), or "hang": nothing until the test ends), and keeps
    what it was asked."""

    def __init__(self):
        self.answer = (200, b'{"data": []}')
        self.asked = []
        self.release = threading.Event()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                peer.asked.append((self.path, dict(self.headers)))
                if peer.answer == "hang":
                    peer.release.wait(30)
                    return
                status, body = peer.answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_peer():
    f = FakePeer()
    yield f
    f.close()


@pytest.fixture
def start_cluster(lms_bin, tmp_path):
    """start_cluster(*names, extra={NAME: URL}) -> the daemons named, each with --peers naming all of them and
    `extra`'s peers (a fake one)."""
    with daemons(lms_bin, tmp_path) as start:
        def start_all(*names, extra=None):
            ports = {n: free_port() for n in names}
            urls = {**{n: f"http://127.0.0.1:{p}" for n, p in ports.items()}, **(extra or {})}
            peers = ",".join(f"{n}={u}" for n, u in urls.items())
            return [start("--node-id", n, "--peers", peers, listen=f"127.0.0.1:{p}",
                          env={"LM_SANDBOX_API_TOKEN": TOKEN}) for n, p in ports.items()]
        yield start_all


def create_with(s, metadata):
    r = s.post("/v1/sandboxes", {"metadata": metadata}, headers=AUTH)
    assert r.status_code == 201, show(r)
    return r.json()["id"]


def listed(s, query="", headers=None):
    r = s.get(f"/v1/sandboxes{query}", headers={**AUTH, **(headers or {})})
    assert r.status_code == 200, show(r)
    return r


def ids(r):
    return [x["id"] for x in r.json()["data"]]


def test_either_node_lists_every_nodes_sandboxes_newest_first_with_filters(start_cluster):
    a, b = start_cluster("node-a", "node-b")
    made = [create_with(a, {"team": "red"}), create_with(b, {"team": "red"}), create_with(b, {"team": "blue"}),
            create_with(a, {"team": "blue"})]
    for s in (a, b):
        r = listed(s)
        body = r.json()
        assert sorted(ids(r)) == sorted(made), body
        assert body["unreachable_nodes"] == [] and "X-LMS-Unreachable-Nodes" not in r.headers, body
        # Newest first (by created_at), each entry naming its node, the one its id names.
        created = [x["created_at"] for x in body["data"]]
        assert created == sorted(created, reverse=True), body
        assert all(x["node"] == x["id"].split("_")[1] for x in body["data"]), body
        # The filters apply on every node.
        red = listed(s, "?metadata.team=red")
        assert sorted(ids(red)) == sorted(made[:2]), red.json()
        assert all(x["metadata"] == {"team": "red"} for x in red.json()["data"]), red.json()
        assert ids(listed(s, "?metadata.team=green")) == []
    # ?node=local: the node that takes the request only; ?node=NAME: that node's only.
    assert sorted(ids(listed(a, "?node=local"))) == sorted([made[0], made[3]])
    assert ids(listed(b, "?node=local&metadata.team=blue")) == [made[2]]
    assert sorted(ids(listed(a, "?node=node-b"))) == sorted(made[1:3])
    assert ids(listed(a, "?node=node-a&metadata.team=red")) == [made[0]]
    assert_error(a.get("/v1/sandboxes?node=node-z", headers=AUTH), 400, "invalid_request")
    # The token is checked on the node asked before anything is gathered.
    assert_error(a.get("/v1/sandboxes"), 401)
    # A request that came through a peer is answered with the local list only, whatever it asks.
    assert sorted(ids(listed(b, headers={"X-LMS-Forwarded-By": "node-a"}))) == sorted(made[1:3])


def test_a_node_that_is_down_makes_the_list_partial_and_says_which(start_cluster, lms_bin):
    a, b = start_cluster("node-a", "node-b")
    on_a, on_b = create_with(a, {}), create_with(b, {})
    assert sorted(ids(listed(a))) == sorted([on_a, on_b])
    status, _ = b.stop()
    assert status == 0
    r = listed(a)
    body = r.json()
    assert ids(r) == [on_a] and body["unreachable_nodes"] == ["node-b"], body
    assert "connect" in body["node_errors"]["node-b"].lower(), body
    assert r.headers["X-LMS-Unreachable-Nodes"] == "node-b", r.headers
    # The CLI shows the NODE column and says on stderr which node did not answer; the rest is still listed.
    cli = sandbox_cli(lms_bin, a.url, "ls", env={"LM_SANDBOX_API_TOKEN": TOKEN})
    assert cli.returncode == 0, cli
    lines = cli.out.splitlines()
    assert re.match(r"ID\s+NODE\s+STATE\s+CREATED\s+EXPIRES\s+LABELS$", lines[0]), cli
    assert len(lines) == 2 and re.match(rf"{on_a}\s+node-a\s+running\s", lines[1]), cli
    assert "the list is partial: node node-b did not answer" in cli.err, cli
    q = sandbox_cli(lms_bin, a.url, "ls", "-q", env={"LM_SANDBOX_API_TOKEN": TOKEN})
    assert q.returncode == 0 and q.out.split() == [on_a] and "node-b" in q.err, q


def test_a_peer_that_answers_garbage_or_nothing_does_not_break_the_list(start_cluster, fake_peer):
    a, b = start_cluster("node-a", "node-b", extra={"node-x": fake_peer.url})
    on_a, on_b = create_with(a, {"k": "v w&x"}), create_with(b, {"k": "v w&x"})
    everyone = sorted([on_a, on_b])
    entry = {"id": "sbx_node-x_00000000000000aa", "created_at": "2026-01-01T00:00:00.000Z", "state": "running"}
    # A well-formed answer is merged (the oldest, last); the peer is asked for its own list, with the
    # filters and the token.
    fake_peer.answer = (200, json.dumps({"data": [entry]}).encode())
    r = listed(a, "?metadata.k=v%20w%26x")
    assert sorted(ids(r)[:2]) == everyone and ids(r)[2] == entry["id"], r.json()
    assert r.json()["data"][2]["node"] == "node-x" and r.json()["unreachable_nodes"] == [], r.json()
    path, headers = fake_peer.asked[-1]
    assert path == "/v1/sandboxes?node=local&metadata.k=v%20w%26x", path
    assert headers.get("Authorization") == f"Bearer {TOKEN}" and headers.get("X-LMS-Forwarded-By") == "node-a"
    garbage = [
        (200, b"\x00\xff not json at all"),
        (200, b"[]"),
        (200, json.dumps({"data": "nope"}).encode()),
        (200, json.dumps({"data": [{"id": on_a, "created_at": "x"}]}).encode()),  # speaks for node-a
        (200, json.dumps({"data": [dict(entry)] * 10001}).encode()),  # more than a node may list
        (200, b"[" * 9_000_000),  # over the 8 MiB an answer may have
        (500, json.dumps({"data": [entry]}).encode()),
    ]
    for answer in garbage:
        fake_peer.answer = answer
        for s in (a, b):
            r = listed(s)
            assert sorted(ids(r)) == everyone, (answer[0], answer[1][:60], r.json())
            assert r.json()["unreachable_nodes"] == ["node-x"], r.json()
            assert r.headers["X-LMS-Unreachable-Nodes"] == "node-x"
    # A peer that takes the connection and never answers costs the deadline (5 s), not the list.
    fake_peer.answer = "hang"
    started = time.monotonic()
    r = listed(a)
    took = time.monotonic() - started
    assert sorted(ids(r)) == everyone and r.json()["unreachable_nodes"] == ["node-x"], r.json()
    assert "5000" in r.json()["node_errors"]["node-x"] or "timed out" in r.json()["node_errors"]["node-x"].lower()
    assert 4 < took < 8, took


def test_no_fan_out_loop_each_node_is_asked_once(start_cluster, fake_peer):
    """node-x (the fake) is a peer of both: a list gathered by A asks it once. Were B to gather again for
    A's request, node-x would be asked twice."""
    a, b = start_cluster("node-a", "node-b", extra={"node-x": fake_peer.url})
    on_b = create_with(b, {})
    for s, origin in ((a, "node-a"), (b, "node-b")):
        before = len(fake_peer.asked)
        assert ids(listed(s)) == [on_b]
        assert len(fake_peer.asked) == before + 1, fake_peer.asked[before:]
        assert fake_peer.asked[-1][1].get("X-LMS-Forwarded-By") == origin
