"""Two daemons as one cluster (docs/deploy.md, "Scaling"): each names itself (--node-id) in the ids of the
sandboxes it makes, and forwards a request for another node's sandbox to that node (--peers), streams both ways.
Both run on this machine on ports of their own, with their own state dirs and the one token of the cluster."""

import io
import socket
import tarfile

import pytest

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
    # Each node lists its own sandboxes only; B's stay on B.
    assert [x["id"] for x in a.get("/v1/sandboxes", headers=AUTH).json()["data"]] == [on_a]
    assert [x["id"] for x in b.get("/v1/sandboxes", headers=AUTH).json()["data"]] == [on_b]
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
