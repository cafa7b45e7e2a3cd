"""The port relay of persistent sandboxes (docs/API-NOTES.md, "The port relay"): /v1/sandboxes/{id}/ports/{port}/...
reaches a server listening on 127.0.0.1:{port} inside that sandbox, behind the token, with its answer streamed back
as it comes; nothing else of the sandbox, of another sandbox or of the host is reached through it."""

import json
import socket
import textwrap

import pytest
import requests

from server_fixtures import assert_error, assert_exec_result, daemons, show, wait_until

pytestmark = pytest.mark.require_root

TOKEN = "relay-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# The sandbox's server: files from /work/site, echoes of the request, an event stream held open until
# /work/release exists, and a chunked answer (as servers speaking HTTP/1.1 send).
APP = textwrap.dedent('''
    import base64, hashlib, json, os, sys, time
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class App(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *a, **kw):
            super().__init__(*a, directory="/work/site", **kw)

        def send_json(self, obj, status=200):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-App", "inside")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.startswith("/echo"):
                return self.send_json({"method": "GET", "path": self.path, "headers": dict(self.headers.items())})
            if self.path == "/sse":
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"event: first\\ndata: 1\\n\\n")
                self.wfile.flush()
                while not os.path.exists("/work/release"):
                    time.sleep(0.02)
                self.wfile.write(b"event: second\\ndata: 2\\n\\n")
                self.wfile.flush()
                self.close_connection = True
                return
            if self.path == "/ws":
                return self.websocket()
            if self.path == "/chunked":
                self.send_response(201)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in (b"hello ", b"chunked ", b"world"):
                    self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(part), part))
                self.wfile.write(b"0\\r\\n\\r\\n")
                return
            return super().do_GET()

        def websocket(self):
            # RFC 6455 in brief: the handshake, then each text frame echoed until a close frame.
            key = self.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
            self.end_headers()
            self.wfile.write(b"\\x81\\x05hello")  # a frame of its own first, before any from the client
            self.wfile.flush()
            self.close_connection = True
            while True:
                b0, b1 = self.rfile.read(2)
                mask = self.rfile.read(4)
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(self.rfile.read(b1 & 0x7f)))
                if b0 & 0x0f == 8:
                    self.wfile.write(b"\\x88\\x00")
                    self.wfile.flush()
                    return
                reply = b"echo: " + data
                self.wfile.write(bytes([0x81, len(reply)]) + reply)
                self.wfile.flush()

        def do_POST(self):
            if self.headers.get("Transfer-Encoding") == "chunked":
                body = b""
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_json({"method": "POST", "path": self.path, "body": body.decode()}, status=201)

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
''')


@pytest.fixture(scope="module")
def server(lms_bin, tmp_path_factory):
    with daemons(lms_bin, tmp_path_factory.mktemp("ports")) as start:
        yield start(env={"LM_SANDBOX_API_TOKEN": TOKEN})


def call(server, method, path, **kwargs):
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return server.request(method, path, headers=headers, **kwargs)


def new_sandbox(server):
    r = call(server, "POST", "/v1/sandboxes", json={})
    assert r.status_code == 201, show(r)
    return r.json()["id"]


def run(server, sbx, cmd):
    return assert_exec_result(call(server, "POST", f"/v1/sandboxes/{sbx}/exec", json={"cmd": cmd}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(server, sbx, port):
    """The app in the background; returns once it accepts connections, polled with an exec in the sandbox."""
    r = call(server, "PUT", f"/v1/sandboxes/{sbx}/files/work/app.py", data=APP.encode())
    assert r.status_code == 201, show(r)
    r = call(server, "PUT", f"/v1/sandboxes/{sbx}/files/work/site/hello.txt", data=b"hello from inside\n")
    assert r.status_code == 201, show(r)
    r = call(server, "POST", f"/v1/sandboxes/{sbx}/exec",
             json={"cmd": f"exec python3 /work/app.py {port}", "background": True})
    assert r.status_code == 202, show(r)
    probe = (f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 1)' 2>/dev/null")
    assert wait_until(lambda: run(server, sbx, probe)["exit_code"] == 0, 20), "the app never listened"


def sandbox_with_app(server):
    sbx = new_sandbox(server)
    port = free_port()
    start_app(server, sbx, port)
    run(server, sbx, "rm -f /work/release")
    return sbx, port


@pytest.fixture(scope="module")
def app(server):
    return sandbox_with_app(server)


def test_get_a_file_and_the_status_and_headers_of_the_inside(server, app):
    sbx, port = app
    r = call(server, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/hello.txt")
    assert r.status_code == 200 and r.content == b"hello from inside\n", show(r)
    assert r.headers["Content-Type"].startswith("text/plain") and "X-Request-Id" in r.headers
    r = call(server, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/missing.txt")
    assert r.status_code == 404 and b"File not found" in r.content, show(r)
    # The sandbox's root path, with and without the trailing slash: its directory listing.
    for path in (f"/v1/sandboxes/{sbx}/ports/{port}/", f"/v1/sandboxes/{sbx}/ports/{port}"):
        r = call(server, "GET", path)
        assert r.status_code == 200 and b"hello.txt" in r.content, show(r)
    r = call(server, "HEAD", f"/v1/sandboxes/{sbx}/ports/{port}/hello.txt")
    assert r.status_code == 200 and r.content == b"", show(r)


def test_a_posted_body_is_echoed_and_the_query_passes(server, app):
    sbx, port = app
    r = call(server, "POST", f"/v1/sandboxes/{sbx}/ports/{port}/submit?a=1&b=two%20words",
             data=b"payload \x00 bytes".decode("latin-1").encode())
    assert r.status_code == 201, show(r)
    echoed = r.json()
    assert echoed["method"] == "POST" and echoed["body"] == "payload \x00 bytes", echoed
    # The query as libmicrohttpd read it, encoded again: a space (%20 or +) goes on as "+".
    assert echoed["path"] == "/submit?a=1&b=two+words", echoed
    # A body the client sends chunked (no length known up front) arrives whole.
    r = call(server, "POST", f"/v1/sandboxes/{sbx}/ports/{port}/streamed",
             data=iter([b"part one, ", b"part two"]))
    assert r.status_code == 201 and r.json()["body"] == "part one, part two", show(r)
    r = call(server, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/echo/x?q=%C3%A9t%C3%A9&flag&p=a+b%2Bc")
    assert r.status_code == 200 and r.json()["path"] == "/echo/x?q=%C3%A9t%C3%A9&flag&p=a+b%2Bc", show(r)


def test_a_chunked_answer_is_relayed_whole(server, app):
    sbx, port = app
    r = call(server, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/chunked")
    assert r.status_code == 201 and r.content == b"hello chunked world", show(r)


def test_server_sent_events_arrive_one_by_one(server, app):
    sbx, port = app
    run(server, sbx, "rm -f /work/release")
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(server.url + f"/v1/sandboxes/{sbx}/ports/{port}/sse", headers=AUTH, stream=True, timeout=30)
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream", show(r)
        lines = r.iter_lines()
        # The first event comes while the server still holds the stream open (it waits for /work/release).
        assert next(lines) == b"event: first" and next(lines) == b"data: 1", "the first event did not arrive"
        run(server, sbx, "touch /work/release")
        rest = list(lines)
        assert b"event: second" in rest and b"data: 2" in rest, rest
        r.close()


def test_the_daemons_credentials_are_not_forwarded(server, app):
    sbx, port = app
    r = call(server, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/echo",
             headers={"Cookie": "session=daemon-secret", "X-Custom": "kept", "Connection": "X-Hop",
                      "X-Hop": "dropped"})
    assert r.status_code == 200, show(r)
    headers = {k.lower(): v for k, v in r.json()["headers"].items()}
    assert "authorization" not in headers and TOKEN not in json.dumps(headers), headers
    assert "cookie" not in headers and "x-hop" not in headers, headers
    assert headers["x-custom"] == "kept" and headers["host"] == f"127.0.0.1:{port}", headers
    assert headers["x-forwarded-prefix"] == f"/v1/sandboxes/{sbx}/ports/{port}", headers


def test_no_token_is_401(server, app):
    sbx, port = app
    assert_error(server.request("GET", f"/v1/sandboxes/{sbx}/ports/{port}/hello.txt"), 401)
    assert_error(server.request("POST", f"/v1/sandboxes/{sbx}/ports/{port}/x", data=b"body",
                                headers={"Authorization": "Bearer wrong"}), 401)


def test_nothing_listening_bad_ports_and_unknown_sandboxes(server, app):
    sbx, port = app
    closed = free_port()
    r = call(server, "GET", f"/v1/sandboxes/{sbx}/ports/{closed}/")
    assert_error(r, 502, "port_unreachable")
    for bad in ("0", "65536", "http", "080", "-1"):
        assert_error(call(server, "GET", f"/v1/sandboxes/{sbx}/ports/{bad}/"), 400, "invalid_port")
    assert_error(call(server, "GET", f"/v1/sandboxes/sbx_0000000000000000/ports/{port}/"), 404, "sandbox_not_found")


def test_a_host_listener_on_the_same_port_is_not_reached(server):
    sbx = new_sandbox(server)
    with socket.socket() as host:
        host.bind(("127.0.0.1", 0))
        host.listen(8)
        host.setblocking(False)
        port = host.getsockname()[1]
        assert_error(call(server, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/"), 502, "port_unreachable")
        with pytest.raises(BlockingIOError):
            host.accept()  # nothing came to the host's listener


def test_another_sandboxs_server_is_not_reached(server, app):
    other, port = app
    sbx = new_sandbox(server)
    assert_error(call(server, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/hello.txt"), 502, "port_unreachable")
    r = call(server, "GET", f"/v1/sandboxes/{other}/ports/{port}/hello.txt")
    assert r.status_code == 200, show(r)


def open_stream(server, sbx, port):
    """An event stream of the app held open (its first event read); returns (session, response, lines)."""
    s = requests.Session()
    s.trust_env = False
    r = s.get(server.url + f"/v1/sandboxes/{sbx}/ports/{port}/sse", headers=AUTH, stream=True, timeout=30)
    assert r.status_code == 200, show(r)
    lines = r.iter_lines()
    assert next(lines) == b"event: first"
    return s, r, lines


def test_a_stream_does_not_hold_its_sandbox_and_ends_with_it(server):
    sbx, port = sandbox_with_app(server)
    s, r, lines = open_stream(server, sbx, port)
    with s, r:
        # The stream is open and silent; the DELETE does not wait for it, and the stream ends with the sandbox.
        d = call(server, "DELETE", f"/v1/sandboxes/{sbx}", timeout=15)
        assert d.status_code == 204, show(d)
        with _ends():
            rest = list(lines)
            assert b"event: second" not in rest, rest


class _ends:
    """The rest of a stream cut by its sandbox's end: read to its end, or cut with an error; either is its end."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, requests.exceptions.RequestException)


def test_relays_are_bounded_by_max_concurrent(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path) as start:
        s = start("--max-concurrent", "1", env={"LM_SANDBOX_API_TOKEN": TOKEN})
        sbx, port = sandbox_with_app(s)
        session, r, lines = open_stream(s, sbx, port)
        with session, r:
            busy = call(s, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/hello.txt")
            assert_error(busy, 429, "too_many_relays")
            assert busy.headers.get("Retry-After") == "1", show(busy)
            run(s, sbx, "touch /work/release")
            assert b"event: second" in list(lines)
        # The stream's end gave its place back, and so does a WebSocket's.
        assert wait_until(lambda: call(s, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/hello.txt").status_code == 200,
                          10)
        # That GET's own place comes back once the daemon has finished it, which may be a moment after the client
        # read its answer: a 429 then is tried again.
        assert wait_until(lambda: websocket_session(s, sbx, port, busy_ok=True), 10)
        assert wait_until(lambda: call(s, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/hello.txt").status_code == 200,
                          10)


def test_a_restarted_daemons_sandbox_is_relayed_on_its_new_pid1(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path) as start:
        s = start(env={"LM_SANDBOX_API_TOKEN": TOKEN})
        sbx = new_sandbox(s)
        state = s.state_dir
        s.stop(keep_state=True)
        again = start(state=state, env={"LM_SANDBOX_API_TOKEN": TOKEN})
        # Its PID 1 is made again at this first use; no server runs in it yet (processes do not survive).
        port = free_port()
        assert_error(call(again, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/"), 502, "port_unreachable")
        start_app(again, sbx, port)
        r = call(again, "GET", f"/v1/sandboxes/{sbx}/ports/{port}/hello.txt")
        assert r.status_code == 200 and r.content == b"hello from inside\n", show(r)


def ws_frame(payload, opcode=1):
    mask = b"\x01\x02\x03\x04"
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def ws_read(sock):
    head = sock.recv(2, socket.MSG_WAITALL)
    return head[0] & 0x0f, sock.recv(head[1] & 0x7f, socket.MSG_WAITALL) if head[1] & 0x7f else b""


def websocket_session(server, sbx, port, busy_ok=False):
    """A WebSocket through the relay: the handshake, the inside's first frame, two echoes, the close. True; with
    busy_ok, False when the relay answered 429 (every place taken)."""
    sock = server.connect(timeout=15)
    with sock:
        sock.sendall((f"GET /v1/sandboxes/{sbx}/ports/{port}/ws HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                      f"Authorization: Bearer {TOKEN}\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            got = sock.recv(1)
            assert got, f"the connection closed in the head: {head!r}"
            head += got
        lines = head.decode().split("\r\n")
        if busy_ok and lines[0].startswith("HTTP/1.1 429"):
            return False
        assert lines[0].startswith("HTTP/1.1 101"), head
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if line)}
        # RFC 6455's own example key and its answer: the inside's handshake came through unchanged.
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", headers
        assert headers["upgrade"].lower() == "websocket", headers
        assert ws_read(sock) == (1, b"hello")  # the inside spoke first
        for text in (b"one", b"two"):
            sock.sendall(ws_frame(text))
            assert ws_read(sock) == (1, b"echo: " + text)
        sock.sendall(ws_frame(b"", opcode=8))
        assert ws_read(sock) == (8, b"")
        assert sock.recv(1) == b"", "the connection stayed open after both sides closed"
    return True


def test_a_websocket_is_relayed_both_ways(server, app):
    websocket_session(server, *app)


def test_the_daemon_stops_with_relays_open(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path) as start:
        s = start(env={"LM_SANDBOX_API_TOKEN": TOKEN})
        sbx, port = sandbox_with_app(s)
        session, r, lines = open_stream(s, sbx, port)
        ws = s.connect(timeout=15)
        with session, r, ws:
            ws.sendall((f"GET /v1/sandboxes/{sbx}/ports/{port}/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        f"{TOKEN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                        "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            assert ws.recv(12) == b"HTTP/1.1 101"
            status, killed = s.stop()
            assert status == 0 and not killed, s.describe()


def test_a_body_framed_two_ways_goes_on_as_chunks(server, app):
    # Content-Length says 4, the chunks say more: the body is read as chunks (RFC 9112), and goes on so, whole; a
    # relay that forwarded the length would leave the rest to the inside as a second, smuggled request.
    sbx, port = app
    data = b"abcdGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    sock = server.connect(timeout=15)
    with sock:
        sock.sendall((f"POST /v1/sandboxes/{sbx}/ports/{port}/both HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                      f"{TOKEN}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                      f"{len(data):x}\r\n").encode() + data + b"\r\n0\r\n\r\n")
        answer = b""
        while got := sock.recv(65536):
            answer += got
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201") and b"Transfer-Encoding: chunked" in head, answer
    assert json.loads(body.split(b"\r\n")[1])["body"] == data.decode(), answer
