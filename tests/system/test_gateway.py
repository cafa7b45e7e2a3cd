"""The LLM gateway of `lm-sandbox serve`: GET /v1/models, POST /v1/chat/completions, the seed endpoints POST /ollama/
and POST /llama-cpp/, the backends in /healthz, tested from the outside against docs/API.md ("LLM gateway",
"Seed-compatible endpoints") with the fakes of tests/fakes/fake_llm.py standing in for Ollama and llama-server.

Every backend URL a daemon gets points at a fake (a thread of this process) or at a closed port (a "down" backend);
nothing here reaches a real model server. Nothing sleeps to synchronise: a test waits on the daemon's answer or on
the fake's blocking /_fake/* queries. Timing assertions compare one run's own times with generous margins.
"""

import http.client
import importlib.util
import json
import os
import re
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from server_fixtures import Server, assert_error, clean_env, closed_url, daemons, run_serve, serve_argv, show

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("fake_llm", REPO / "tests" / "fakes" / "fake_llm.py")
fake_llm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_llm)

CHAT = "/v1/chat/completions"
QUICK = 5  # seconds for anything that should be immediate (an error, a cancellation, a health check)


def text_of(n):
    """What a fake answers with n content chunks."""
    return "".join(fake_llm.piece(i) for i in range(n))


# ---- the fakes ----------------------------------------------------------------------------------------------------


class Fake:
    """One in-process fake backend with its control routes (/_fake/*) at hand."""

    def __init__(self, kind, **opts):
        self.kind = kind
        self.url, self._stop = fake_llm.start_fake(kind, **opts)
        self.http = requests.Session()
        self.http.trust_env = False

    def _ctl(self, method, path, **kwargs):
        r = self.http.request(method, self.url + path, timeout=70, **kwargs)
        assert r.status_code == 200, f"fake control {method} {path}: {r.status_code} {r.text}"
        return r.json()

    def log(self, wait=0, timeout=QUICK):
        """Every request the fake received (waits until there are `wait`)."""
        return self._ctl("GET", f"/_fake/requests?wait={wait}&timeout={timeout}")

    def generations(self):
        """The POSTs (chat, completion, generate) among them: what the gateway forwarded."""
        return [e for e in self.log() if e["method"] == "POST"]

    def model_fetches(self):
        return sum(1 for e in self.log() if e["method"] == "GET" and e["path"].split("?")[0] == "/v1/models")

    def clear(self):
        self._ctl("DELETE", "/_fake/requests")
        self._ctl("DELETE", "/_fake/active")

    def active(self, timeout=QUICK, **waits):
        q = "&".join([f"wait_{k}={v}" for k, v in waits.items()] + [f"timeout={timeout}"])
        return self._ctl("GET", f"/_fake/active?{q}")

    def configure(self, **change):
        return self._ctl("PUT", "/_fake/config", json=change)

    def stop(self):
        self.http.close()
        self._stop()


@pytest.fixture
def fake():
    """fake(kind, **opts) -> Fake; every one is stopped after the test (after the daemons: ask for it first)."""
    made = []

    def _fake(kind, **opts):
        f = Fake(kind, **opts)
        made.append(f)
        return f

    yield _fake
    for f in made:
        f.stop()


class PlainBackend:
    """A minimal OpenAI-compatible server whose chat route answers a 4xx that is not {"error": {...}}: model
    "plain" gets 422 text/plain, model "string-error" gets 400 {"error": "<text>"} (Ollama's native shape)."""

    PLAIN = "plain-backend says: the context is too long for this model"
    STRING = "plain-backend says: model requires more system memory"

    def __init__(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send(self, status, body, ctype):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.split("?")[0] == "/v1/models":
                    data = [{"id": m, "object": "model", "owned_by": "plain"} for m in ("plain", "string-error")]
                    return self.send(200, json.dumps({"object": "list", "data": data}).encode(), "application/json")
                self.send(404, b"404 page not found", "text/plain")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    model = json.loads(body).get("model")
                except (ValueError, AttributeError):
                    model = None
                if model == "string-error":
                    return self.send(400, json.dumps({"error": outer.STRING}).encode(), "application/json")
                self.send(422, outer.PLAIN.encode(), "text/plain; charset=utf-8")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---- the daemon ---------------------------------------------------------------------------------------------------


@pytest.fixture
def start(lms_bin, tmp_path):
    """start(*args, env=None) -> Server: a daemon on 127.0.0.1:0 with its own state dir and no prepared sandboxes.
    After the test each one gets SIGTERM and must exit 0 within 10 s; one that exited before fails the test."""
    with daemons(lms_bin, tmp_path, base_args=["--pool-size", "0"], must_keep_running=True) as start:
        yield start


def backends_args(ollama, llamacpp, *extras):
    """--ollama-url, --llamacpp-url and one --backend NAME=URL per extra (name, Fake | url)."""
    def url(x):
        return x if isinstance(x, str) else x.url
    args = ["--ollama-url", url(ollama), "--llamacpp-url", url(llamacpp)]
    for name, target in extras:
        args += ["--backend", f"{name}={url(target)}"]
    return args


def chat(server, model, content="Hello", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return server.post(CHAT, body, timeout=30)


class Stream:
    """A POST whose answer is read as Server-Sent Events `data:` lines, with the time each one arrived."""

    def __init__(self, server, body, path=CHAT, headers=None, timeout=30):
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
        h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        h.update(headers or {})
        self.t0 = time.monotonic()
        self.conn.request("POST", path, body=json.dumps(body).encode(), headers=h)
        self.resp = self.conn.getresponse()
        self.buf = b""
        self.raw = b""
        self.broken = None  # how the stream ended when it did not end cleanly
        self.end_time = None

    @property
    def status(self):
        return self.resp.status

    def content_type(self):
        return (self.resp.getheader("Content-Type") or "").split(";")[0].strip()

    def lines(self):
        """Yields (seconds since the request, payload) for each `data:` line as it arrives."""
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.rstrip(b"\r")
                if line.startswith(b"data:"):
                    yield time.monotonic() - self.t0, line[5:].strip().decode("utf-8")
            try:
                chunk = self.resp.read1(65536)
            except (http.client.IncompleteRead, ConnectionResetError, http.client.HTTPException) as e:
                self.broken = repr(e)
                chunk = b""
            if not chunk:
                self.end_time = time.monotonic() - self.t0
                return
            self.raw += chunk
            self.buf += chunk

    def read_all(self):
        """Every data line: (times, payloads)."""
        got = list(self.lines())
        return [t for t, _ in got], [p for _, p in got]

    def close(self):
        self.resp.close()
        self.conn.close()


def reassemble(payloads):
    """The content of chat.completion.chunk payloads (the [DONE] marker excepted), and the parsed chunks."""
    text, chunks = "", []
    for p in payloads:
        if p == "[DONE]":
            continue
        try:
            obj = json.loads(p)
        except ValueError:
            raise AssertionError(f"a relayed data line is not JSON: {p!r}") from None
        chunks.append(obj)
        for choice in obj.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
    return text, chunks


# ---- options ------------------------------------------------------------------------------------------------------

OPTIONS = {  # option -> its default as --help shows it (None: no default)
    "--ollama-url": "http://127.0.0.1:11434",
    "--llamacpp-url": "http://127.0.0.1:8080",
    "--backend": None,
    "--ollama-model": None,
    "--llamacpp-model": None,
    "--backend-connect-timeout-ms": "2000",
    "--backend-timeout-ms": "300000",
    "--models-cache-ms": "2000",
}


def test_help_lists_the_gateway_options_with_variables_and_defaults(lms_bin):
    status, out, err = run_serve(lms_bin, ["--help"])
    text = out + err
    assert status == 0, f"--help exited {status}:\n{text}"
    blocks = {}
    for block in re.split(r"\n(?=\s*--[a-z])", text):
        m = re.match(r"\s*(--[a-z0-9-]+)", block)
        if m:
            blocks[m.group(1)] = block
    for option, default in OPTIONS.items():
        assert option in blocks, f"--help does not list {option}:\n{text}"
        var = "LM_SANDBOX_" + option[2:].upper().replace("-", "_")
        assert var in blocks[option], f"--help does not name {var} for {option}:\n{blocks[option]}"
        if default is not None:
            assert re.search(r"default:\s*" + re.escape(default) + r"(\s|$)", blocks[option]), \
                f"--help does not give {option} the default {default}:\n{blocks[option]}"


def test_every_option_is_accepted(fake, start):
    o, l = fake("ollama"), fake("llamacpp")
    s = start(*backends_args(o, l, ("vllm", closed_url())), "--ollama-model", "llama3.2:latest",
              "--llamacpp-model", "tiny.gguf", "--backend-connect-timeout-ms", "1500", "--backend-timeout-ms", "60000",
              "--models-cache-ms", "100")
    r = s.get("/healthz")
    assert r.status_code == 200, show(r)
    assert set(r.json()["backends"]) == {"ollama", "llamacpp", "vllm"}, show(r)


def test_environment_variables_configure_the_gateway(fake, start):
    o = fake("ollama", models=["first:latest", "second:latest"])
    l = fake("llamacpp", models=["a.gguf", "b.gguf"])
    v = fake("llamacpp", models=["v.gguf"], mode="hang")
    w = fake("llamacpp", models=["w.gguf"])
    env = {"LM_SANDBOX_OLLAMA_URL": o.url, "LM_SANDBOX_LLAMACPP_URL": l.url,
           "LM_SANDBOX_BACKEND": f"vllm={v.url},lab2={w.url}",
           "LM_SANDBOX_OLLAMA_MODEL": "second:latest", "LM_SANDBOX_LLAMACPP_MODEL": "b.gguf",
           "LM_SANDBOX_MODELS_CACHE_MS": "0", "LM_SANDBOX_BACKEND_TIMEOUT_MS": "500",
           "LM_SANDBOX_BACKEND_CONNECT_TIMEOUT_MS": "1000"}
    s = start(env=env)

    backends = s.get("/healthz").json()["backends"]
    assert {k: (b["url"].rstrip("/"), b["reachable"]) for k, b in backends.items()} == {
        "ollama": (o.url, True), "llamacpp": (l.url, True), "vllm": (v.url, True), "lab2": (w.url, True)}, backends

    ids = {m["id"] for m in s.get("/v1/models").json()["data"]}
    assert ids == {"ollama/first:latest", "ollama/second:latest", "llamacpp/a.gguf", "llamacpp/b.gguf",
                   "vllm/v.gguf", "lab2/w.gguf"}, ids

    # LM_SANDBOX_MODELS_CACHE_MS=0: every listing asks the backend again.
    before = o.model_fetches()
    for _ in range(3):
        assert s.get("/v1/models").status_code == 200
    assert o.model_fetches() - before >= 3, "with LM_SANDBOX_MODELS_CACHE_MS=0 each GET /v1/models must ask the backend"

    # LM_SANDBOX_OLLAMA_MODEL / LM_SANDBOX_LLAMACPP_MODEL: the seed endpoints' default models.
    o.clear()
    l.clear()
    r = s.post("/ollama/", {"cmd": "hi"})
    assert r.status_code == 200, show(r)
    assert [e["json"]["model"] for e in o.generations()] == ["second:latest"]
    r = s.post("/llama-cpp/", {"cmd": "hi"})
    assert r.status_code == 200, show(r)
    assert [e["json"]["model"] for e in l.generations()] == ["b.gguf"]

    # LM_SANDBOX_BACKEND_TIMEOUT_MS=500 against a backend that never answers.
    t = time.monotonic()
    r = chat(s, "vllm/v.gguf")
    assert_error(r, 504, "backend_timeout")
    assert time.monotonic() - t < QUICK, f"the 504 took {time.monotonic() - t:.1f} s with a 500 ms backend timeout"


# ---- /healthz -----------------------------------------------------------------------------------------------------


def test_healthz_reports_each_backend_and_stays_ok(fake, start):
    o, v = fake("ollama"), fake("llamacpp", models=["v.gguf"])
    down_llama, down_extra = closed_url(), closed_url()
    s = start(*backends_args(o, down_llama, ("vllm", v), ("gone", down_extra)))
    r = s.get("/healthz")
    assert r.status_code == 200, show(r)
    body = r.json()
    assert body["status"] == "ok", show(r)
    got = {k: (b["url"].rstrip("/"), b["reachable"]) for k, b in body["backends"].items()}
    assert got == {"ollama": (o.url, True), "llamacpp": (down_llama, False), "vllm": (v.url, True),
                   "gone": (down_extra, False)}, show(r)


def test_healthz_is_ok_with_every_backend_down_and_needs_no_token(start):
    token = f"tok-{uuid.uuid4().hex}"
    urls = closed_url(), closed_url()
    s = start(*backends_args(*urls), env={"LM_SANDBOX_API_TOKEN": token})
    r = s.get("/healthz")
    assert r.status_code == 200, show(r)
    body = r.json()
    assert body["status"] == "ok", show(r)
    got = {k: (b["url"].rstrip("/"), b["reachable"]) for k, b in body["backends"].items()}
    assert got == {"ollama": (urls[0], False), "llamacpp": (urls[1], False)}, show(r)


def test_healthz_says_why_a_backend_is_down_and_the_log_says_it_once(start):
    down = closed_url()
    s = start("--ollama-url", down, "--models-cache-ms", "0")
    for _ in range(3):
        ollama = s.get("/healthz").json()["backends"]["ollama"]
        assert ollama["reachable"] is False and down in ollama["error"] and "unreachable" in ollama["error"], ollama
    # One line when it went, not one per request.
    gone = [line for line in s.logs() if line.get("msg") == "backend unreachable" and line["backend"] == "ollama"]
    assert len(gone) == 1 and gone[0]["level"] == "warning" and down in gone[0]["error"], s.stderr_text()


def test_healthz_has_no_error_for_a_backend_that_answers(fake, start):
    o = fake("ollama")
    s = start(*backends_args(o, closed_url()))
    assert "error" not in s.get("/healthz").json()["backends"]["ollama"]


# ---- GET /v1/models -----------------------------------------------------------------------------------------------


def test_models_is_the_union_of_the_reachable_backends(fake, start):
    o = fake("ollama", models=["llama3.2:latest", "qwen2.5:0.5b", "hf.co/org/m:q4"])
    l = fake("llamacpp", models=["tiny.gguf"])
    v = fake("llamacpp", models=["v1.gguf", "v2.gguf"])
    s = start(*backends_args(o, l, ("vllm", v), ("gone", closed_url())))
    r = s.get("/v1/models")
    assert r.status_code == 200, show(r)
    assert r.headers["Content-Type"].split(";")[0] == "application/json", show(r)
    body = r.json()
    assert body["object"] == "list" and isinstance(body["data"], list), show(r)
    ids = [m["id"] for m in body["data"]]
    assert sorted(ids) == sorted({"ollama/llama3.2:latest", "ollama/qwen2.5:0.5b", "ollama/hf.co/org/m:q4",
                                  "llamacpp/tiny.gguf", "vllm/v1.gguf", "vllm/v2.gguf"}), show(r)
    for m in body["data"]:
        assert m["object"] == "model", m
        assert m["owned_by"] == m["id"].split("/", 1)[0], f"owned_by is not the backend: {m}"


def _maps_libcurl(pid):
    return any("libcurl" in line for line in open(f"/proc/{pid}/maps"))


def test_libcurl_is_loaded_by_the_first_gateway_request_only(fake, start):
    # A daemon that only runs commands stays small: libcurl and its TLS stack are mapped on first use.
    o = fake("ollama", models=["m:latest"])
    s = start(*backends_args(o, closed_url()))
    assert s.exec({"argv": ["true"]}).status_code == 200
    assert not _maps_libcurl(s.pid), "libcurl is mapped before any gateway request"
    r = s.get("/v1/models")
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["ollama/m:latest"], show(r)
    assert _maps_libcurl(s.pid), "the gateway answered without libcurl mapped: is it still linked in?"


def _libcurl_files():
    """The real files of every libcurl the daemon could load: ldconfig's cache and LD_LIBRARY_PATH."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    paths = [path for _, path in re.findall(r"^\s*(libcurl(?:-gnutls)?\.so\.4) .* => (\S+)$", out, re.M)]
    for d in filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":")):
        paths += [os.path.join(d, n) for n in ("libcurl-gnutls.so.4", "libcurl.so.4") if os.path.exists(os.path.join(d, n))]
    return sorted({os.path.realpath(path) for path in paths})


@pytest.mark.require_root
def test_without_libcurl_commands_run_and_the_gateway_says_what_is_missing(fake, lms_bin):
    o = fake("ollama", models=["m:latest"])
    hidden = _libcurl_files()
    assert hidden, "no libcurl in ldconfig's cache: the daemon could never have loaded one"
    # The daemon in a mount namespace of its own, where every libcurl is an empty file.
    script = 'for f in "$0"; do mount --bind /dev/null "$f" || exit 99; done; exec "$@"'
    script = script.replace('"$0"', " ".join(f"'{f}'" for f in hidden))
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            *serve_argv(lms_bin), "--listen", "127.0.0.1:0", "--ollama-url", o.url, "--llamacpp-url", closed_url()]
    s = Server(argv, clean_env())
    try:
        s.wait_listening()
        r = s.exec({"argv": ["echo", "ran"]})
        assert r.status_code == 200 and r.json()["stdout"] == "ran\n", show(r)
        r = s.post(CHAT, {"model": "ollama/m:latest", "messages": [{"role": "user", "content": "hi"}]})
        assert_error(r, 500)
        assert "libcurl" in r.json()["error"]["message"] and "apt-get install" in r.json()["error"]["message"], show(r)
        assert o.generations() == [], "a request reached the backend without libcurl?"
    finally:
        s.stop()


def test_models_with_every_backend_down_is_an_empty_list(start):
    s = start(*backends_args(closed_url(), closed_url(), ("gone", closed_url())))
    r = s.get("/v1/models")
    assert r.status_code == 200, show(r)
    assert r.json()["object"] == "list" and r.json()["data"] == [], show(r)


@pytest.mark.parametrize("mode", ["drop", "bad-json", "loading", "hang"])
def test_models_leave_out_a_backend_that_answers_badly(fake, start, mode):
    o = fake("ollama")
    bad = fake("llamacpp", mode=mode, all_routes=True, models=["bad.gguf"])
    s = start(*backends_args(o, bad), "--backend-timeout-ms", "500")
    t = time.monotonic()
    r = s.get("/v1/models")
    took = time.monotonic() - t
    assert r.status_code == 200, show(r)
    assert {m["id"] for m in r.json()["data"]} == {"ollama/llama3.2:latest"}, show(r)
    assert took < QUICK, f"GET /v1/models took {took:.1f} s with a 500 ms backend timeout"
    assert bad.model_fetches() >= 1, "the backend's model list was not asked for"


def test_models_are_cached(fake, start):
    o, l = fake("ollama"), fake("llamacpp")
    s = start(*backends_args(o, l))  # the default --models-cache-ms (2000)
    answers = [s.get("/v1/models") for _ in range(5)]
    for r in answers:
        assert r.status_code == 200, show(r)
        assert {m["id"] for m in r.json()["data"]} == {"ollama/llama3.2:latest", "llamacpp/tiny.gguf"}, show(r)
    for f in (o, l):
        n = f.model_fetches()
        assert 1 <= n <= 2, f"5 GET /v1/models in a burst reached the {f.kind} backend's /v1/models {n} times " \
                            f"(the default 2000 ms cache should allow once or twice)"


def test_models_cache_zero_asks_every_time(fake, start):
    o, l = fake("ollama"), fake("llamacpp")
    s = start(*backends_args(o, l), "--models-cache-ms", "0")
    before = o.model_fetches()
    for _ in range(4):
        assert s.get("/v1/models").status_code == 200
    assert o.model_fetches() - before >= 4, "--models-cache-ms 0 must ask the backend on each GET /v1/models"
    o.configure(models=["fresh:latest"])
    ids = {m["id"] for m in s.get("/v1/models").json()["data"]}
    assert ids == {"ollama/fresh:latest", "llamacpp/tiny.gguf"}, f"a changed model list is not seen at once: {ids}"
    r = chat(s, "fresh:latest")
    assert r.status_code == 200, show(r)


def test_models_need_the_token(fake, start):
    token = f"tok-{uuid.uuid4().hex}"
    o, l = fake("ollama"), fake("llamacpp")
    s = start(*backends_args(o, l), env={"LM_SANDBOX_API_TOKEN": token})
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert_error(s.get("/v1/models", headers=headers), 401, "invalid_token")
        assert_error(s.post(CHAT, {"model": "ollama/llama3.2:latest", "messages": [{"role": "user", "content": "x"}]},
                            headers=headers), 401, "invalid_token")
    assert o.generations() == [], "a request without the token reached the backend"
    good = {"Authorization": f"Bearer {token}"}
    r = s.get("/v1/models", headers=good)
    assert r.status_code == 200 and len(r.json()["data"]) == 2, show(r)
    r = s.post(CHAT, {"model": "ollama/llama3.2:latest", "messages": [{"role": "user", "content": "x"}]}, headers=good)
    assert r.status_code == 200, show(r)
    [sent] = o.generations()
    assert "authorization" not in sent["headers"], f"the client's Authorization reached the backend: {sent['headers']}"
    assert token not in json.dumps(sent), "the API token reached the backend"


# ---- POST /v1/chat/completions: routing and forwarding ------------------------------------------------------------


@pytest.fixture
def routed(fake, start):
    """A daemon with four live backends whose model lists overlap, and the fakes by backend name."""
    fakes = {
        "ollama": fake("ollama", models=["llama3.2:latest", "shared:1b", "hf.co/org/m:q4"], chunks=3),
        "llamacpp": fake("llamacpp", models=["tiny.gguf", "shared:1b", "dup.gguf"], chunks=3),
        "vllm": fake("llamacpp", models=["dup.gguf", "x.gguf", "only-vllm"], chunks=3),
        "lab2": fake("llamacpp", models=["x.gguf", "only-lab2"], chunks=3),
    }
    s = start(*backends_args(fakes["ollama"], fakes["llamacpp"], ("vllm", fakes["vllm"]), ("lab2", fakes["lab2"])))
    return s, fakes


ROUTES = [  # requested model -> (backend, model the backend gets)
    ("ollama/llama3.2:latest", "ollama", "llama3.2:latest"),
    ("llamacpp/shared:1b", "llamacpp", "shared:1b"),
    ("lab2/x.gguf", "lab2", "x.gguf"),
    ("vllm/only-vllm", "vllm", "only-vllm"),
    ("ollama/hf.co/org/m:q4", "ollama", "hf.co/org/m:q4"),
    ("shared:1b", "ollama", "shared:1b"),        # ollama before llamacpp
    ("dup.gguf", "llamacpp", "dup.gguf"),        # llamacpp before the extras
    ("x.gguf", "vllm", "x.gguf"),                # the extras in the order given
    ("only-lab2", "lab2", "only-lab2"),
    ("tiny.gguf", "llamacpp", "tiny.gguf"),
    ("hf.co/org/m:q4", "ollama", "hf.co/org/m:q4"),  # a bare name with slashes, no backend called "hf.co"
]


@pytest.mark.parametrize("model,backend,bare", ROUTES, ids=[r[0] for r in ROUTES])
def test_chat_routes_by_model(routed, model, backend, bare):
    s, fakes = routed
    r = chat(s, model)
    assert r.status_code == 200, show(r)
    body = r.json()
    assert body["object"] == "chat.completion", show(r)
    assert body["choices"][0]["message"]["content"] == text_of(3), show(r)
    for name, f in fakes.items():
        got = f.generations()
        if name == backend:
            assert len(got) == 1, f"{model!r} should reach {backend} once, it got {len(got)} requests"
            assert got[0]["path"] == CHAT, got[0]["path"]
            assert got[0]["json"]["model"] == bare, f"{backend} got model {got[0]['json']['model']!r}, not {bare!r}"
        else:
            assert got == [], f"{model!r} should reach only {backend}, but {name} got {[e['json'] for e in got]}"


@pytest.mark.parametrize("model", ["nope.gguf", "nobody/tiny.gguf", "ollama"])
def test_chat_unknown_model_is_404(routed, model):
    s, fakes = routed
    assert_error(chat(s, model), 404, "model_not_found")
    assert all(f.generations() == [] for f in fakes.values()), "an unknown model reached a backend"


BAD_BODIES = [
    ("no body", None),
    ("not JSON", b'{"model": "ollama/llama3.2:latest", '),
    ("array", [{"model": "ollama/llama3.2:latest"}]),
    ("no model", {"messages": [{"role": "user", "content": "x"}]}),
    ("model null", {"model": None, "messages": [{"role": "user", "content": "x"}]}),
    ("model number", {"model": 7, "messages": [{"role": "user", "content": "x"}]}),
    ("model list", {"model": ["ollama/llama3.2:latest"], "messages": [{"role": "user", "content": "x"}]}),
    ("model object", {"model": {"id": "ollama/llama3.2:latest"}, "messages": [{"role": "user", "content": "x"}]}),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_BODIES], ids=[n for n, _ in BAD_BODIES])
def test_chat_bad_request_is_400(routed, body):
    s, fakes = routed
    headers = {"Content-Type": "application/json"} if not isinstance(body, (dict, list)) else {}
    assert_error(s.post(CHAT, body, headers=headers), 400)
    assert all(f.generations() == [] for f in fakes.values()), "a bad request reached a backend"


def test_chat_forwards_the_body_untouched_but_the_model(fake, start):
    o, l = fake("ollama"), fake("llamacpp")
    s = start(*backends_args(o, l))
    body = {
        "model": "ollama/llama3.2:latest",
        "messages": [{"role": "system", "content": "Be terse."},
                     {"role": "user", "content": "Weather in Zürich? ✓ \"quoted\" \\ back\nslash"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "the weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                           "required": ["city"]}}}],
        "tool_choice": "required",
        "temperature": 0.25,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 42,
        "stream_options": {"include_usage": True},
        "x_unknown_field": {"nested": [1, 2.5, None, True, "s"], "empty": {}},
        "user": "client-user-7",
    }
    r = s.post(CHAT, body, headers={"Authorization": "Bearer sk-client-secret-123", "X-Request-Id": "gw-fwd-1"})
    assert r.status_code == 200, show(r)
    answer = r.json()
    # The backend's answer comes back: a call of the client's tool.
    assert answer["object"] == "chat.completion" and answer["model"] == "llama3.2:latest", show(r)
    call = answer["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": ""}, \
        show(r)
    assert answer["choices"][0]["finish_reason"] == "tool_calls", show(r)

    [sent] = o.generations()
    assert sent["path"] == CHAT, sent["path"]
    assert sent["json"] == {**body, "model": "llama3.2:latest"}, \
        f"the forwarded body differs from the client's (model aside):\nsent {body}\ngot  {sent['json']}"
    assert sent["headers"].get("content-type", "").split(";")[0].strip() == "application/json", sent["headers"]
    assert "authorization" not in sent["headers"], f"the client's Authorization was forwarded: {sent['headers']}"
    assert "sk-client-secret-123" not in json.dumps(sent), "the client's bearer token reached the backend"


def test_chat_backend_4xx_keeps_its_status_and_error(fake, start):
    o, l = fake("ollama"), fake("llamacpp")
    s = start(*backends_args(o, l))
    # llama-server answers 400 {"error": {...}} to a chat without messages: that comes back as it is.
    r = s.post(CHAT, {"model": "llamacpp/tiny.gguf"})
    assert r.status_code == 400, show(r)
    assert r.json()["error"]["message"] == "'messages' is required", show(r)
    assert len(l.generations()) == 1, "the request did not reach llama-server"


def test_chat_backend_4xx_that_is_not_an_error_object_is_wrapped(fake, start):
    plain = PlainBackend()
    try:
        s = start(*backends_args(closed_url(), closed_url(), ("plain", plain.url)))
        err = assert_error(chat(s, "plain/plain"), 422)
        assert PlainBackend.PLAIN in err["message"], f"the backend's message is not in the error: {err}"
        err = assert_error(chat(s, "plain/string-error"), 400)
        assert PlainBackend.STRING in err["message"], f"the backend's message is not in the error: {err}"
    finally:
        plain.stop()


# ---- streaming ----------------------------------------------------------------------------------------------------


def test_stream_relays_chunks_as_they_arrive(fake, start):
    o, l = fake("ollama", mode="slow", delay_ms=300, chunks=6), fake("llamacpp")
    s = start(*backends_args(o, l))
    st = Stream(s, {"model": "ollama/llama3.2:latest", "stream": True,
                    "messages": [{"role": "user", "content": "count"}]})
    try:
        assert st.status == 200, f"status {st.status}: {st.resp.read(2000)!r}"
        assert st.content_type() == "text/event-stream", st.resp.getheaders()
        times, payloads = [], []
        for t, p in st.lines():
            if not times:
                # While the backend is still sending, the daemon serves other requests.
                r = s.get("/v1/models", timeout=QUICK)
                assert r.status_code == 200, show(r)
            times.append(t)
            payloads.append(p)
        total = st.end_time
    finally:
        st.close()
    assert st.broken is None, f"the stream broke: {st.broken}; got {st.raw!r}"
    assert payloads and payloads[-1] == "[DONE]", f"the stream does not end with data: [DONE]: {st.raw!r}"
    assert payloads.count("[DONE]") == 1, st.raw
    text, _ = reassemble(payloads)
    assert text == text_of(6), f"reassembled {text!r}, the backend sent {text_of(6)!r}"
    assert total >= 1.5, f"the stream took {total:.2f} s; the backend needs 6 x 300 ms"
    assert times[0] < total / 2, \
        f"the first data line came after {times[0]:.2f} s of {total:.2f} s: the stream is not relayed as it arrives"
    [sent] = o.generations()
    assert sent["json"]["stream"] is True


def test_stream_passes_stream_options_through(fake, start):
    o, l = fake("ollama"), fake("llamacpp", chunks=4)
    s = start(*backends_args(o, l))
    body = {"model": "tiny.gguf", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}], "x_extra": [1, {"a": None}]}
    st = Stream(s, body)
    try:
        assert st.status == 200, f"status {st.status}: {st.resp.read(2000)!r}"
        assert st.content_type() == "text/event-stream", st.resp.getheaders()
        _, payloads = st.read_all()
    finally:
        st.close()
    assert payloads[-1] == "[DONE]", st.raw
    text, chunks = reassemble(payloads)
    assert text == text_of(4), st.raw
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage and usage[-1]["completion_tokens"] == 4, f"no usage chunk: stream_options did not pass: {st.raw!r}"
    [sent] = l.generations()
    assert sent["json"] == {**body, "model": "tiny.gguf"}, sent["json"]


def test_client_disconnect_cancels_the_backend_request(fake, start):
    # llama-server sends its role chunk at once, then the content 30 s later: the client leaves in between, while
    # the daemon has nothing to write, so only watching the client's socket can notice.
    o, l = fake("ollama"), fake("llamacpp", mode="slow", delay_ms=30000, chunks=2)
    s = start(*backends_args(o, l))
    st = Stream(s, {"model": "llamacpp/tiny.gguf", "stream": True, "messages": [{"role": "user", "content": "go"}]})
    try:
        assert st.status == 200, f"status {st.status}: {st.resp.read(2000)!r}"
        first = next(st.lines(), None)
        assert first is not None, f"no data line before the end: {st.raw!r}"
        assert first[0] < QUICK, f"the backend's first chunk took {first[0]:.1f} s to be relayed"
    finally:
        st.close()
    counters = l.active(timeout=QUICK, cancelled=1)
    assert counters["cancelled"] >= 1 and counters["completed"] == 0, \
        f"the backend's stream was not cancelled within {QUICK} s of the client leaving: {counters}"
    r = s.get("/healthz")
    assert r.status_code == 200, show(r)


def test_stream_that_fails_midway_just_ends(fake, start):
    o, l = fake("ollama", mode="fail-midstream", chunks=8), fake("llamacpp")
    s = start(*backends_args(o, l))
    body = {"model": "ollama/llama3.2:latest", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    st = Stream(s, body, timeout=QUICK * 2)
    try:
        assert st.status == 200, f"status {st.status}: {st.resp.read(2000)!r}"
        _, payloads = st.read_all()
    finally:
        st.close()
    assert "[DONE]" not in payloads, f"a stream the backend broke off ends with [DONE]: {st.raw!r}"
    text, _ = reassemble(payloads)
    assert text == text_of(4), f"the chunks the backend sent before it failed are not all relayed: {text!r}"
    # The daemon is fine afterwards.
    assert s.get("/healthz").status_code == 200
    o.configure(mode="normal")
    st = Stream(s, body)
    try:
        _, payloads = st.read_all()
    finally:
        st.close()
    assert payloads[-1:] == ["[DONE]"] and reassemble(payloads)[0] == text_of(8), st.raw


# ---- backend errors -----------------------------------------------------------------------------------------------


def assert_backend_error(resp, status, code, backend, url, started):
    err = assert_error(resp, status, code)
    assert backend in err["message"] and url in err["message"], \
        f"the message does not name the backend {backend!r} and its URL {url}: {err['message']!r}"
    took = time.monotonic() - started
    assert took < QUICK, f"the {status} took {took:.1f} s"
    return err


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_unreachable_backend_is_503(fake, start, stream):
    down_ollama, down_extra = closed_url(), closed_url()
    l = fake("llamacpp")
    s = start(*backends_args(down_ollama, l, ("gone", down_extra)))
    for model, backend, url in (("ollama/llama3.2:latest", "ollama", down_ollama), ("gone/any", "gone", down_extra)):
        t = time.monotonic()
        r = chat(s, model, stream=stream)
        assert_backend_error(r, 503, "backend_unavailable", backend, url, t)
    assert s.get("/healthz").status_code == 200


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_backend_that_never_answers_is_504(fake, start, stream):
    o, l = fake("ollama", mode="hang"), fake("llamacpp")
    s = start(*backends_args(o, l), "--backend-timeout-ms", "500")
    t = time.monotonic()
    r = chat(s, "ollama/llama3.2:latest", stream=stream)
    assert_backend_error(r, 504, "backend_timeout", "ollama", o.url, t)
    assert s.get("/healthz").status_code == 200


def test_backend_timeout_is_to_the_first_byte_and_between_bytes(fake, start):
    # 10 chunks 150 ms apart: each gap is well inside 600 ms, the whole answer is not.
    o, l = fake("ollama", mode="slow", delay_ms=150, chunks=10), fake("llamacpp")
    s = start(*backends_args(o, l), "--backend-timeout-ms", "600")
    body = {"model": "ollama/llama3.2:latest", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    st = Stream(s, body)
    try:
        assert st.status == 200, f"status {st.status}: {st.resp.read(2000)!r}"
        _, payloads = st.read_all()
    finally:
        st.close()
    assert payloads[-1:] == ["[DONE]"] and reassemble(payloads)[0] == text_of(10), \
        f"a stream whose gaps are shorter than --backend-timeout-ms was cut: {st.raw!r} ({st.broken})"
    # Not streamed, the fake sends nothing for 1.5 s: past the time to the first byte.
    t = time.monotonic()
    r = chat(s, "ollama/llama3.2:latest")
    assert_backend_error(r, 504, "backend_timeout", "ollama", o.url, t)


@pytest.mark.parametrize("mode,stream", [("drop", False), ("drop", True), ("bad-json", False)],
                         ids=["drop", "drop-stream", "bad-json"])
def test_bad_backend_answer_is_502(fake, start, mode, stream):
    o, l = fake("ollama"), fake("llamacpp", mode=mode)
    s = start(*backends_args(o, l))
    t = time.monotonic()
    r = chat(s, "llamacpp/tiny.gguf", stream=stream)
    assert_backend_error(r, 502, "bad_backend_response", "llamacpp", l.url, t)
    assert len(l.generations()) == 1
    assert s.get("/healthz").status_code == 200


# ---- seed endpoints -----------------------------------------------------------------------------------------------


@pytest.fixture
def seeded(fake, start):
    o = fake("ollama", models=["first:latest", "second:latest"], chunks=5)
    l = fake("llamacpp", models=["a.gguf", "b.gguf"], chunks=5)
    return start(*backends_args(o, l)), o, l


def forwarded_prompt(entry):
    """The user's text in a forwarded generation request (a one-message chat, or a completion prompt)."""
    j = entry["json"]
    if "messages" in j:
        return j["messages"]
    return j.get("prompt")


@pytest.mark.parametrize("path", ["/ollama/", "/ollama"])
def test_seed_ollama(seeded, path):
    s, o, l = seeded
    r = s.post(path, {"cmd": "Introduce yourself."})
    assert r.status_code == 200, show(r)
    body = r.json()
    assert body["object"] == "chat.completion", show(r)
    assert body["choices"][0]["message"]["content"] == text_of(5), show(r)
    assert body["model"] == "first:latest", show(r)
    [sent] = o.generations()
    assert sent["json"]["messages"] == [{"role": "user", "content": "Introduce yourself."}], sent["json"]
    assert sent["json"]["model"] == "first:latest", "without a model, the backend's first model is used"
    assert l.generations() == []

    r = s.post(path, {"cmd": "Again.", "model": "second:latest"})
    assert r.status_code == 200, show(r)
    assert r.json()["model"] == "second:latest", show(r)
    assert o.generations()[-1]["json"]["model"] == "second:latest"


@pytest.mark.parametrize("path", ["/llama-cpp/", "/llama-cpp"])
def test_seed_llama_cpp(seeded, path):
    s, o, l = seeded
    r = s.post(path, {"cmd": "What is AI?"})
    assert r.status_code == 200, show(r)
    body = r.json()
    assert body["output"] == text_of(5) and body["error"] == "" and body["model"] == "a.gguf", show(r)
    assert isinstance(body["usage"], dict) and body["usage"].get("completion_tokens") == 5, show(r)
    [sent] = l.generations()
    prompt = forwarded_prompt(sent)
    assert prompt in ([{"role": "user", "content": "What is AI?"}], "What is AI?"), sent["json"]
    assert sent["json"]["model"] == "a.gguf", "without a model, the backend's first model is used"
    assert o.generations() == []

    r = s.post(path, {"cmd": "More.", "model": "b.gguf"})
    assert r.status_code == 200, show(r)
    assert r.json()["model"] == "b.gguf", show(r)
    assert l.generations()[-1]["json"]["model"] == "b.gguf"


def test_seed_default_models_from_options(fake, start):
    o = fake("ollama", models=["first:latest", "second:latest"])
    l = fake("llamacpp", models=["a.gguf", "b.gguf"])
    s = start(*backends_args(o, l), "--ollama-model", "second:latest", "--llamacpp-model", "b.gguf")
    r = s.post("/ollama/", {"cmd": "hi"})
    assert r.status_code == 200, show(r)
    r = s.post("/llama-cpp/", {"cmd": "hi"})
    assert r.status_code == 200 and r.json()["model"] == "b.gguf", show(r)
    assert [e["json"]["model"] for e in o.generations()] == ["second:latest"]
    assert [e["json"]["model"] for e in l.generations()] == ["b.gguf"]


@pytest.mark.parametrize("path", ["/ollama/", "/llama-cpp/"])
def test_seed_prompt_is_data_not_shell(seeded, path, tmp_path):
    s, o, l = seeded
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("x")
    m = [tmp_path / f"pwned-{i}" for i in range(6)]
    cmd = (f"$(touch {m[0]}); rm -rf {canary} ; echo `touch {m[1]}` && touch {m[2]} | sh -c 'touch {m[3]}' > {m[4]}"
           f" ; \"; touch {m[5]}; \" ' ; ' \\ %s %n ${{IFS}} {{}} *\nsecond line ünïcødé ✓")
    r = s.post(path, {"cmd": cmd})
    assert r.status_code == 200, show(r)
    f = o if path == "/ollama/" else l
    [sent] = f.generations()
    assert forwarded_prompt(sent) in ([{"role": "user", "content": cmd}], cmd), \
        f"the prompt was not forwarded verbatim:\n{cmd!r}\n{sent['json']}"
    assert not [p for p in m if p.exists()], "a shell ran the prompt"
    assert (canary / "keep").exists(), "a shell ran the prompt (rm -rf)"


def test_seed_ollama_passes_the_backends_own_error_on(seeded):
    s, o, l = seeded
    r = s.post("/ollama/", {"cmd": "hi", "model": "missing:1b"})
    assert r.status_code == 404, show(r)
    assert "missing:1b" in r.json()["error"]["message"], f"not Ollama's own message: {show(r)}"
    assert [e["json"]["model"] for e in o.generations()] == ["missing:1b"]


@pytest.mark.parametrize("path", ["/ollama/", "/llama-cpp/"])
@pytest.mark.parametrize("model", [None, "some-model"], ids=["default-model", "model"])
def test_seed_with_the_backend_down_is_503(start, path, model):
    s = start(*backends_args(closed_url(), closed_url()))
    body = {"cmd": "hello"} if model is None else {"cmd": "hello", "model": model}
    t = time.monotonic()
    assert_error(s.post(path, body), 503)
    assert time.monotonic() - t < QUICK


# ---- the OpenAPI document -----------------------------------------------------------------------------------------


def test_openapi_documents_the_gateway(fake, start):
    o, l = fake("ollama"), fake("llamacpp")
    s = start(*backends_args(o, l))
    r = s.get("/openapi.json")
    assert r.status_code == 200, show(r)
    paths = r.json()["paths"]
    for method, path in (("get", "/v1/models"), ("post", "/v1/chat/completions"), ("post", "/ollama/"),
                         ("post", "/llama-cpp/")):
        assert method in paths.get(path, {}), f"{method.upper()} {path} is not documented: {sorted(paths)}"
    for method, path, allowed in (("GET", CHAT, "POST"), ("POST", "/v1/models", "GET"), ("GET", "/ollama/", "POST"),
                                  ("GET", "/llama-cpp/", "POST")):
        r = s.request(method, path)
        assert_error(r, 405)
        allow = {m.strip().upper() for m in r.headers.get("Allow", "").split(",")}
        assert allowed in allow, f"{method} {path}: Allow is {r.headers.get('Allow')!r}"


def test_a_hung_backend_does_not_hold_up_health_models_or_shutdown(fake, start):
    """With the default (long) backend timeout, a backend that accepts and never answers counts as down for
    model lists and health after a short probe, other requests are not queued behind it, and SIGTERM still
    ends the daemon promptly (the `start` fixture asserts exit 0 without SIGKILL)."""
    o = fake("ollama")
    hung = fake("llamacpp", mode="hang", all_routes=True, models=["hung.gguf"])
    s = start(*backends_args(o, hung), "--models-cache-ms", "0")
    t = time.monotonic()
    r = s.get("/healthz")
    took = time.monotonic() - t
    assert r.status_code == 200 and r.json()["backends"]["llamacpp"]["reachable"] is False, show(r)
    assert took < 15, f"/healthz took {took:.1f} s behind a hung backend"
    r = s.get("/v1/models")
    assert r.status_code == 200 and {m["id"] for m in r.json()["data"]} == {"ollama/llama3.2:latest"}, show(r)
    # A chat routed explicitly to the healthy backend does not wait for the hung one's model list.
    t = time.monotonic()
    r = chat(s, "ollama/llama3.2:latest")
    assert r.status_code == 200, show(r)
    assert time.monotonic() - t < QUICK, "a chat to a healthy backend waited behind the hung one"


# ---- /api/...: Ollama's own API behind lm-sandbox's token ---------------------------------------------------------


def test_ollama_api_is_relayed_behind_the_token(fake, start):
    token = f"tok-{uuid.uuid4().hex}"
    o = fake("ollama")
    s = start(*backends_args(o, closed_url()), env={"LM_SANDBOX_API_TOKEN": token})
    assert s.get("/api/tags").status_code == 401, "Ollama's API must not be open without the token"
    auth = {"Authorization": f"Bearer {token}"}
    r = s.get("/api/tags", headers=auth)
    assert r.status_code == 200, show(r)
    assert [m["name"] for m in r.json()["models"]] == ["llama3.2:latest"], show(r)
    # Status, body and errors come back as Ollama gave them.
    r = s.post("/api/chat", {"model": "missing:latest", "messages": [{"role": "user", "content": "x"}]},
               headers=auth)
    assert r.status_code == 404 and "missing" in r.json()["error"], show(r)
    forwarded = [e for e in o.log() if e["path"].startswith("/api/")]
    assert [e["path"] for e in forwarded] == ["/api/tags", "/api/chat"], forwarded
    assert all("authorization" not in {k.lower() for k in e["headers"]} for e in forwarded), \
        "the client's token was forwarded to Ollama"


def test_ollama_api_streams_ndjson_as_it_arrives(fake, start):
    o = fake("ollama", mode="slow", delay_ms=300, chunks=6)
    s = start(*backends_args(o, closed_url()))
    t0 = time.monotonic()
    with requests.post(s.url + "/api/chat", json={"model": "llama3.2:latest", "messages": [
            {"role": "user", "content": "x"}]}, stream=True, timeout=30) as r:
        assert r.status_code == 200, show(r)
        lines, first = [], None
        for line in r.iter_lines():
            if line:
                first = first if first is not None else time.monotonic() - t0
                lines.append(json.loads(line))
    total = time.monotonic() - t0
    assert lines and lines[-1]["done"] is True, lines
    assert "".join(x["message"]["content"] for x in lines if not x["done"]) == text_of(6), lines
    assert first < total / 2, f"first line after {first:.2f} s of {total:.2f} s: the relay buffered"


def test_ollama_api_with_ollama_down_is_503(start):
    down = closed_url()
    s = start(*backends_args(down, closed_url()))
    r = s.get("/api/tags")
    assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable", show(r)
    assert down in r.json()["error"]["message"], show(r)


def test_metrics_count_backend_requests_by_backend_and_status(fake, start):
    o = fake("ollama")
    s = start(*backends_args(o, closed_url()))
    assert chat(s, "ollama/llama3.2:latest").status_code == 200
    assert chat(s, "llamacpp/tiny.gguf").status_code == 503
    text = s.get("/metrics").text
    assert re.search(r'^lms_backend_requests_total\{backend="ollama",status="200"\} 1$', text, re.M), text
    assert re.search(r'^lms_backend_requests_total\{backend="llamacpp",status="503"\} 1$', text, re.M), text
    assert re.search(r'^lms_backend_response_seconds_total\{backend="ollama",status="200"\} [0-9.]+$', text, re.M), text


def test_first_byte_timeout_is_its_own(fake, start):
    """--backend-first-byte-timeout-ms bounds the wait for the answer to start; --backend-timeout-ms then bounds
    the silences inside it: a model may think long before its first token, then stream quickly."""
    o, l = fake("ollama", mode="hang"), fake("llamacpp", mode="slow", delay_ms=150, chunks=4)
    s = start(*backends_args(o, l), "--backend-first-byte-timeout-ms", "500", "--backend-timeout-ms", "60000")
    t = time.monotonic()
    r = chat(s, "ollama/llama3.2:latest")
    assert r.status_code == 504 and r.json()["error"]["code"] == "backend_timeout", show(r)
    assert time.monotonic() - t < QUICK, "the first-byte limit was not applied"
    r = chat(s, "llamacpp/tiny.gguf", stream=True)
    assert r.status_code == 200 and "data: [DONE]" in r.text, show(r)


# ---- model names as Ollama users type them ------------------------------------------------------------------------


def test_an_untagged_model_name_means_latest_as_ollama_reads_it(fake, start):
    """`llama3.2` is `llama3.2:latest` to Ollama: /v1/models lists the tagged name, and the untagged one works in a
    chat, with or without the backend's prefix, and in the seed endpoint; the backend gets its own (tagged) name."""
    o = fake("ollama", models=["llama3.2:latest", "qwen2.5:0.5b"], chunks=2)
    l = fake("llamacpp", models=["tiny.gguf", "phi3"], chunks=2)
    s = start(*backends_args(o, l))
    ids = {m["id"] for m in s.get("/v1/models").json()["data"]}
    assert "ollama/llama3.2:latest" in ids and "ollama/llama3.2" not in ids, ids

    for model in ("llama3.2", "ollama/llama3.2", "llama3.2:latest"):
        r = chat(s, model)
        assert r.status_code == 200, f"{model!r}: {show(r)}"
        assert r.json()["choices"][0]["message"]["content"] == text_of(2), show(r)
    st = Stream(s, {"model": "llama3.2", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    try:
        assert st.status == 200, f"status {st.status}: {st.resp.read(2000)!r}"
        _, payloads = st.read_all()
    finally:
        st.close()
    assert payloads[-1:] == ["[DONE]"] and reassemble(payloads)[0] == text_of(2), st.raw
    r = s.post("/ollama/", {"cmd": "hi", "model": "llama3.2"})
    assert r.status_code == 200 and r.json()["object"] == "chat.completion", show(r)
    assert [e["json"]["model"] for e in o.generations()] == ["llama3.2:latest"] * 5, \
        "Ollama did not get its own name for the model"

    # The rule is Ollama's: another tag is another model, and llama-server's names are taken as they are.
    assert_error(chat(s, "qwen2.5"), 404, "model_not_found")
    r = chat(s, "phi3")
    assert r.status_code == 200, show(r)
    assert [e["json"]["model"] for e in l.generations()] == ["phi3"]
