"""Tests of the fake LLM backends in tests/fakes/fake_llm.py (a llama-server and an Ollama), which the LLM gateway's
tests stand on: fixture shapes, SSE and NDJSON framing, the failure modes, the request log and the counters.

Everything listens on 127.0.0.1 with a port the kernel picks. Nothing sleeps to synchronise: a test waits on a
socket, on the fake's blocking /_fake/* queries or on a process.

The llama-server shapes are pinned twice: exact bodies and key-order "signatures" copied below from
shared/fixtures/llama-server/, and, wherever that directory is found (LMS_FIXTURES, shared/ in the repository or
beside it, as in CI), those copies are checked against the files themselves.
"""

import http.client
import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_PATH = REPO / "tests" / "fakes" / "fake_llm.py"

_spec = importlib.util.spec_from_file_location("fake_llm", FAKE_PATH)
fake_llm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_llm)

TIMEOUT = 5  # seconds for anything that should be immediate


# ---- the llama-server fixtures, as copies checked against the files when they are there ------------------------------


def _fixtures_dir():
    candidates = [os.environ.get("LMS_FIXTURES"), REPO / "shared" / "fixtures", REPO.parent / "shared" / "fixtures"]
    for c in candidates:
        if c and (Path(c) / "llama-server" / "health.txt").is_file():
            return Path(c) / "llama-server"
    return None


FIXTURES = _fixtures_dir()

# (status, body) of fixtures the fake reproduces byte for byte.
EXACT = {
    "health.txt": (200, b'{"status":"ok"}'),
    "v1-health.txt": (200, b'{"status":"ok"}'),
    "health-loading.txt": (503, b'{"error":{"message":"Loading model","type":"unavailable_error","code":503}}'),
    "error-not-found.txt": (404, b'{"error":{"message":"File Not Found","type":"not_found_error","code":404}}'),
    "error-method-not-allowed.txt": (
        404, b'{"error":{"message":"File Not Found","type":"not_found_error","code":404}}'),
    "error-missing-messages.txt": (
        400, b'{"error":{"code":400,"message":"\'messages\' is required","type":"invalid_request_error"}}'),
    "error-completion-missing-prompt.txt": (
        400, b'{"error":{"code":400,"message":"[json.exception.out_of_range.403] key \'prompt\' not found",'
             b'"type":"invalid_request_error"}}'),
    "error-embeddings-not-enabled.txt": (
        501, b'{"error":{"code":501,"message":"This server does not support embeddings. Start it with `--embeddings`",'
             b'"type":"not_supported_error"}}'),
}

_TIMINGS = ("timings{cache_n,prompt_n,prompt_ms,prompt_per_token_ms,prompt_per_second,predicted_n,predicted_ms,"
            "predicted_per_token_ms,predicted_per_second}")
_USAGE = "usage{completion_tokens,prompt_tokens,total_tokens,prompt_tokens_details{cached_tokens}}"
_CHUNK_TAIL = "created,id,model,system_fingerprint,object"

# Key order of fixture objects (see signature()): (file, which SSE event or None for the body, depth) -> signature.
SIGNATURES = {
    ("chat-completions.txt", None, 99):
        "{choices[{finish_reason,index,message{role,content}}],created,model,system_fingerprint,object,"
        f"{_USAGE},id,{_TIMINGS}}}",
    ("chat-completions-stream.txt", 0, 99):
        f"{{choices[{{finish_reason,index,delta{{role,content}}}}],{_CHUNK_TAIL}}}",
    ("chat-completions-stream.txt", 1, 99): f"{{choices[{{finish_reason,index,delta{{content}}}}],{_CHUNK_TAIL}}}",
    ("chat-completions-stream.txt", -1, 99):
        f"{{choices[{{finish_reason,index,delta{{}}}}],{_CHUNK_TAIL},{_TIMINGS}}}",
    ("chat-completions-stream-usage.txt", -2, 99): f"{{choices[{{finish_reason,index,delta{{}}}}],{_CHUNK_TAIL}}}",
    ("chat-completions-stream-usage.txt", -1, 99): f"{{choices[],{_CHUNK_TAIL},{_USAGE},{_TIMINGS}}}",
    ("chat-with-tools-required.txt", None, 99):
        "{choices[{finish_reason,index,message{role,content,tool_calls[{type,function{name,arguments},id}]}}],"
        f"created,model,system_fingerprint,object,{_USAGE},id,{_TIMINGS}}}",
    ("chat-with-tools-required-stream.txt", 1, 99):
        f"{{choices[{{finish_reason,index,delta{{tool_calls[{{index,id,type,function{{name,arguments}}}}]}}}}],"
        f"{_CHUNK_TAIL}}}",
    ("chat-with-tools-required-stream.txt", 2, 99):
        f"{{choices[{{finish_reason,index,delta{{tool_calls[{{index,function{{arguments}}}}]}}}}],{_CHUNK_TAIL}}}",
    ("models.txt", None, 99):
        "{models[{name,model,modified_at,size,digest,type,description,tags[],capabilities[],parameters,"
        "details{parent_model,format,family,families[],parameter_size,quantization_level}}],object,"
        "data[{id,aliases[],tags[],object,created,owned_by,meta{vocab_type,n_vocab,n_ctx,n_ctx_train,n_embd,n_params,"
        "size,ftype}}]}",
    ("completion.txt", None, 1):
        "{index,content,tokens,id_slot,stop,model,tokens_predicted,tokens_evaluated,generation_settings,prompt,"
        "has_new_line,truncated,stop_type,stopping_word,tokens_cached,timings}",
    ("completion-stream.txt", 0, 99): "{index,content,tokens[],stop,id_slot,tokens_predicted,tokens_evaluated}",
    ("completion-stream.txt", -1, 1):
        "{index,content,tokens,id_slot,stop,model,tokens_predicted,tokens_evaluated,generation_settings,prompt,"
        "has_new_line,truncated,stop_type,stopping_word,tokens_cached,timings}",
    ("v1-completions.txt", None, 99):
        f"{{choices[{{text,index,logprobs,finish_reason}}],created,model,system_fingerprint,object,{_USAGE},id,"
        f"{_TIMINGS}}}",
    ("v1-completions-stream.txt", 0, 99):
        "{choices[{text,index,logprobs,finish_reason}],created,model,system_fingerprint,object,id}",
    ("v1-completions-stream.txt", -1, 99):
        f"{{choices[{{text,index,logprobs,finish_reason}}],created,model,system_fingerprint,object,{_USAGE},id,"
        f"{_TIMINGS}}}",
    ("error-bad-json.txt", None, 99): "{error{code,message,type}}",
    ("props.txt", None, 1):
        "{default_generation_settings,total_slots,model_alias,model_ftype,model_path,modalities,media_marker,"
        "endpoint_slots,endpoint_props,endpoint_metrics,ui,ui_settings,chat_template,chat_template_caps,bos_token,"
        "eos_token,build_info,is_sleeping,cors_proxy_enabled}",
}


def signature(obj, depth=99):
    """Keys in order, nested: {"a": {"b": 1}, "c": [{"d": 2}]} -> "{a{b},c[{d}]}" (depth 1: top-level keys only)."""
    if isinstance(obj, dict):
        return "{" + ",".join(k + (signature(v, depth - 1) if depth > 1 else "") for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + (signature(obj[0], depth) if obj and depth > 1 else "") + "]"
    return ""


def _fixture_file(name):
    """(status, headers, body) of a fixture file: CRLF headers, body byte for byte."""
    raw = (FIXTURES / name).read_bytes()
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def sse_payloads(body):
    """The data payloads of an SSE body (JSON objects parsed, "[DONE]" kept as text)."""
    out = []
    for event in body.split(b"\n\n"):
        if event:
            assert event.startswith(b"data: "), f"not an SSE data event: {event!r}"
            text = event[len(b"data: "):].decode()
            out.append(text if text == "[DONE]" else json.loads(text))
    return out


def exact(name):
    """The (status, body) a fixture pins exactly; checked against the file when it is there."""
    status, body = EXACT[name]
    if FIXTURES:
        f_status, _, f_body = _fixture_file(name)
        assert (f_status, f_body) == (status, body), f"the copy of {name} in this test differs from the fixture"
    return status, body


def expected_signature(name, event, depth=99):
    sig = SIGNATURES[(name, event, depth)]
    if FIXTURES:
        _, _, body = _fixture_file(name)
        obj = json.loads(body) if event is None else [p for p in sse_payloads(body) if p != "[DONE]"][event]
        assert signature(obj, depth) == sig, f"the signature of {name}[{event}] in this test differs from the fixture"
    return sig


# ---- talking to a fake -----------------------------------------------------------------------------------------------


class Raw:
    """HTTP/1.1 over a plain socket, read incrementally, so that framing, timing and closes are visible."""

    def __init__(self, url, timeout=TIMEOUT):
        u = urlsplit(url)
        self.hostport = u.netloc
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        self.buf = b""

    def send(self, method, path, body=None, headers=()):
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.hostport}", *[f"{k}: {v}" for k, v in headers]]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        return self

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self):
        """(status, headers with lower-case names) of the next response."""
        status = int(self._line().split()[1])
        headers = {}
        while line := self._line():
            k, v = line.decode().split(":", 1)
            headers[k.lower()] = v.strip()
        return status, headers

    def chunks(self):
        """Yields (arrival time, data) per HTTP chunk; returns after the terminating chunk, raises EOFError when the
        connection ends before it."""
        while True:
            size = int(self._line().split(b";")[0], 16)
            if size == 0:
                self._line()
                return
            data = self._exact(size)
            self._line()
            yield time.monotonic(), data

    def body(self, headers):
        if headers.get("transfer-encoding") == "chunked":
            return b"".join(data for _, data in self.chunks())
        return self._exact(int(headers.get("content-length", 0)))

    def response(self):
        status, headers = self.head()
        return status, headers, self.body(headers)

    def read_until_closed(self):
        """Everything left until the peer closes (b"" when it closes at once)."""
        try:
            while True:
                self._more()
        except EOFError:
            return self.buf

    def close(self):
        self.sock.close()


def call(url, method, path, body=None, headers=()):
    """One exchange on a fresh connection: (status, headers, body bytes)."""
    raw = Raw(url).send(method, path, body, headers)
    try:
        return raw.response()
    finally:
        raw.close()


def call_json(url, method, path, body=None, headers=()):
    status, _, data = call(url, method, path, body, headers)
    return status, json.loads(data)


def control(url, method, path):
    """A /_fake/* query through http.client (blocking ones wait on the fake's side, up to their timeout)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT + 5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        assert resp.status == 200, (resp.status, resp.read())
        return json.loads(resp.read())
    finally:
        conn.close()


CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Say hello."}]}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def content_of(chunks):
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def words(n):
    return "".join(f"chunk {i} " for i in range(n))


@pytest.fixture
def fake():
    """fake(kind, mode="normal", **opts) -> url of an in-process fake, stopped after the test."""
    stops = []

    def start(kind, mode="normal", **opts):
        url, stop = fake_llm.start_fake(kind, mode, **opts)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()


# ---- llama-server: fixture shapes ------------------------------------------------------------------------------------


def test_llamacpp_health_models_and_props_match_the_fixtures(fake):
    url = fake("llamacpp", models="a.gguf,b.gguf")
    for path, name in (("/health", "health.txt"), ("/v1/health", "v1-health.txt")):
        status, headers, body = call(url, "GET", path)
        assert (status, body) == exact(name)
        assert headers["server"] == "llama.cpp"
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert headers["keep-alive"] == "timeout=5, max=100"
        assert headers["access-control-allow-origin"] == ""
    for path in ("/v1/models", "/models"):
        status, models = call_json(url, "GET", path)
        assert status == 200
        assert signature(models) == expected_signature("models.txt", None)
        assert [m["id"] for m in models["data"]] == ["a.gguf", "b.gguf"]
        assert [m["name"] for m in models["models"]] == ["a.gguf", "b.gguf"]
    status, props = call_json(url, "GET", "/props")
    assert status == 200 and props["model_alias"] == "a.gguf"
    assert signature(props, 1) == expected_signature("props.txt", None, 1)


def test_llamacpp_chat_completion_and_keep_alive(fake):
    url = fake("llamacpp", chunks=5)
    raw = Raw(url)
    try:
        # two answers on one connection: HTTP/1.1 keep-alive
        status, headers, body = raw.send("POST", "/v1/chat/completions", CHAT).response()
        assert status == 200 and "connection" not in headers
        obj = json.loads(body)
        assert signature(obj) == expected_signature("chat-completions.txt", None)
        assert obj["object"] == "chat.completion" and obj["model"] == "tiny.gguf"  # the request's model is ignored
        assert obj["id"].startswith("chatcmpl-") and len(obj["id"]) == len("chatcmpl-") + 32
        assert obj["choices"][0]["message"] == {"role": "assistant", "content": words(5)}
        assert obj["choices"][0]["finish_reason"] == "stop"
        assert obj["usage"]["completion_tokens"] == 5
        status, _, body = raw.send("POST", "/chat/completions", dict(CHAT, max_tokens=3)).response()
        obj = json.loads(body)
        assert status == 200
        assert obj["choices"][0]["message"]["content"] == words(3)
        assert obj["choices"][0]["finish_reason"] == "length"
    finally:
        raw.close()


@pytest.mark.parametrize("include_usage", [False, True])
def test_llamacpp_chat_stream_sse_framing(fake, include_usage):
    url = fake("llamacpp", chunks=4)
    req = dict(CHAT, stream=True, **({"stream_options": {"include_usage": True}} if include_usage else {}))
    status, headers, body = call(url, "POST", "/v1/chat/completions", req)
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert headers["transfer-encoding"] == "chunked"
    assert headers["x-accel-buffering"] == "no"
    assert body.endswith(b"\n\ndata: [DONE]\n\n")
    payloads = sse_payloads(body)  # every event is one data line that is JSON, except the final [DONE]
    assert payloads[-1] == "[DONE]" and "[DONE]" not in payloads[:-1]
    chunks = payloads[:-1]
    assert all(isinstance(c, dict) and c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert signature(chunks[0]) == expected_signature("chat-completions-stream.txt", 0)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert signature(chunks[1]) == expected_signature("chat-completions-stream.txt", 1)
    assert content_of(chunks) == words(4)
    if include_usage:
        assert signature(chunks[-2]) == expected_signature("chat-completions-stream-usage.txt", -2)
        assert signature(chunks[-1]) == expected_signature("chat-completions-stream-usage.txt", -1)
        assert chunks[-1]["usage"]["completion_tokens"] == 4
        finish = chunks[-2]
    else:
        assert signature(chunks[-1]) == expected_signature("chat-completions-stream.txt", -1)
        assert all("usage" not in c for c in chunks)
        finish = chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "stop"


def test_llamacpp_completion_routes(fake):
    url = fake("llamacpp", chunks=3)
    status, obj = call_json(url, "POST", "/completion", {"prompt": "Once upon a time", "n_predict": 8})
    assert status == 200 and obj["content"] == words(3) and obj["stop"] is True
    assert signature(obj, 1) == expected_signature("completion.txt", None, 1)
    # native SSE: no [DONE], the last event has stop: true
    status, headers, body = call(url, "POST", "/completion", {"prompt": "Once upon a time", "stream": True})
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = sse_payloads(body)
    assert "[DONE]" not in events
    assert signature(events[0]) == expected_signature("completion-stream.txt", 0)
    assert signature(events[-1], 1) == expected_signature("completion-stream.txt", -1, 1)
    assert [e["stop"] for e in events] == [False, False, False, True]
    assert "".join(e["content"] for e in events) == words(3)

    status, obj = call_json(url, "POST", "/v1/completions", {"model": "tiny", "prompt": "Once", "max_tokens": 2})
    assert status == 200 and obj["object"] == "text_completion"
    assert signature(obj) == expected_signature("v1-completions.txt", None)
    assert obj["choices"][0]["text"] == words(2) and obj["choices"][0]["finish_reason"] == "length"
    status, _, body = call(url, "POST", "/v1/completions", {"model": "tiny", "prompt": "Once", "stream": True})
    events = sse_payloads(body)
    assert status == 200 and events[-1] == "[DONE]"
    assert signature(events[0]) == expected_signature("v1-completions-stream.txt", 0)
    assert signature(events[-2]) == expected_signature("v1-completions-stream.txt", -1)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == words(3)


def test_llamacpp_tool_choice_required_answers_with_a_tool_call(fake):
    url = fake("llamacpp")
    req = dict(CHAT, tools=[WEATHER_TOOL], tool_choice="required", temperature=0, max_tokens=48)
    status, obj = call_json(url, "POST", "/v1/chat/completions", req)
    assert status == 200
    assert signature(obj) == expected_signature("chat-with-tools-required.txt", None)
    choice = obj["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == ""
    (tc,) = choice["message"]["tool_calls"]
    assert tc["type"] == "function" and tc["function"] == {"name": "get_weather", "arguments": '{"city":""}'}
    assert len(tc["id"]) == 32 and tc["id"].isalnum()  # no call_ prefix

    status, _, body = call(url, "POST", "/v1/chat/completions", dict(req, stream=True))
    events = sse_payloads(body)
    assert status == 200 and events[-1] == "[DONE]"
    chunks = events[:-1]
    assert signature(chunks[1]) == expected_signature("chat-with-tools-required-stream.txt", 1)
    assert signature(chunks[2]) == expected_signature("chat-with-tools-required-stream.txt", 2)
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0]["function"]["name"] == "get_weather"
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city":""}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    # tools without tool_choice "required": a plain answer; the tools were received untouched
    status, obj = call_json(url, "POST", "/v1/chat/completions", dict(CHAT, tools=[WEATHER_TOOL]))
    assert status == 200 and obj["choices"][0]["message"]["content"] == words(8)
    log = control(url, "GET", "/_fake/requests")
    assert log[-1]["json"]["tools"] == [WEATHER_TOOL]


def test_llamacpp_errors_match_the_fixtures(fake):
    url = fake("llamacpp")
    cases = [
        ("GET", "/no/such/endpoint", None, "error-not-found.txt"),
        ("DELETE", "/v1/chat/completions", None, "error-method-not-allowed.txt"),
        ("POST", "/v1/chat/completions", {"model": "tiny", "max_tokens": 8}, "error-missing-messages.txt"),
        ("POST", "/completion", {"n_predict": 8}, "error-completion-missing-prompt.txt"),
        ("POST", "/v1/embeddings", {"input": "hello"}, "error-embeddings-not-enabled.txt"),
    ]
    for method, path, body, name in cases:
        status, headers, data = call(url, method, path, body)
        assert (status, data) == exact(name), name
        assert headers["connection"] == "close", name  # llama-server closes after an error
    # malformed JSON is a 500 server_error carrying the parser's message (error-bad-json.txt)
    bad = b'{"messages": [{"role": "user", "content": "Hi"}'  # the request of error-bad-json.txt
    status, headers, data = call(url, "POST", "/v1/chat/completions", bad)
    obj = json.loads(data)
    assert status == 500 and headers["connection"] == "close"
    assert signature(obj) == expected_signature("error-bad-json.txt", None)
    assert obj["error"]["code"] == 500 and obj["error"]["type"] == "server_error"
    assert obj["error"]["message"].startswith("[json.exception.parse_error.101] parse error at line 1, column ")
    # a prompt over the context: 400 exceed_context_size_error
    status, obj = call_json(fake("llamacpp", n_ctx=64), "POST", "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "hello " * 100}]})
    assert status == 400 and obj["error"]["type"] == "exceed_context_size_error" and obj["error"]["n_ctx"] == 64


def test_llamacpp_loading_mode_answers_503_everywhere(fake):
    url = fake("llamacpp", mode="loading")
    for method, path, body in (("GET", "/health", None), ("GET", "/v1/models", None),
                               ("POST", "/v1/chat/completions", dict(CHAT, stream=True))):
        status, headers, data = call(url, method, path, body)
        assert (status, data) == exact("health-loading.txt"), path
        assert headers["connection"] == "close"
    assert [e["path"] for e in control(url, "GET", "/_fake/requests")] == ["/health", "/v1/models",
                                                                           "/v1/chat/completions"]


# ---- Ollama ----------------------------------------------------------------------------------------------------------


def test_ollama_native_chat_and_generate(fake):
    url = fake("ollama", chunks=3, models="llama3.2,qwen3:0.6b")
    for path, body, text_of in (
            ("/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]},
             lambda o: o["message"]["content"]),
            ("/api/generate", {"model": "qwen3:0.6b", "prompt": "Why is the sky blue?"}, lambda o: o["response"])):
        # stream is the default: NDJSON, one compact object per line, the last with done: true and the metrics
        status, headers, data = call(url, "POST", path, body)
        assert status == 200 and headers["content-type"] == "application/x-ndjson", path
        assert headers["transfer-encoding"] == "chunked"
        assert data.endswith(b"}\n") and b"data:" not in data and b"[DONE]" not in data
        lines = [json.loads(line) for line in data.split(b"\n")[:-1]]
        assert [o["done"] for o in lines] == [False, False, False, True]
        assert all(o["model"] == body["model"] for o in lines)
        assert "".join(text_of(o) for o in lines) == words(3)
        last = lines[-1]
        assert text_of(last) == "" and last["done_reason"] == "stop"
        for field in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                      "eval_duration"):
            assert isinstance(last[field], int) and last[field] > 0, field
        assert last["eval_count"] == 3
        # stream: false gives one JSON object
        status, headers, data = call(url, "POST", path, dict(body, stream=False, options={"num_predict": 2}))
        obj = json.loads(data)
        assert status == 200 and headers["content-type"] == "application/json; charset=utf-8"
        assert obj["done"] is True and obj["done_reason"] == "length" and text_of(obj) == words(2)
    # no messages: the model is only loaded
    status, obj = call_json(url, "POST", "/api/chat", {"model": "llama3.2", "messages": []})
    assert status == 200 and obj["done_reason"] == "load" and "eval_count" not in obj


def test_ollama_openai_chat_and_tools(fake):
    url = fake("ollama", chunks=3)
    req = {"model": "llama3.2", "messages": [{"role": "user", "content": "Say hi"}]}
    status, obj = call_json(url, "POST", "/v1/chat/completions", req)  # stream defaults to false here
    assert status == 200 and obj["object"] == "chat.completion" and obj["system_fingerprint"] == "fp_ollama"
    assert obj["choices"][0]["message"] == {"role": "assistant", "content": words(3)}
    assert obj["usage"]["completion_tokens"] == 3

    status, headers, data = call(url, "POST", "/v1/chat/completions",
                                 dict(req, stream=True, stream_options={"include_usage": True}))
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert data.endswith(b"\n\ndata: [DONE]\n\n")
    events = sse_payloads(data)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "chunk 0 "}
    assert content_of(chunks) == words(3)
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 3

    tools_req = dict(req, tools=[WEATHER_TOOL], tool_choice="required")
    status, obj = call_json(url, "POST", "/v1/chat/completions", tools_req)
    (tc,) = obj["choices"][0]["message"]["tool_calls"]
    assert obj["choices"][0]["finish_reason"] == "tool_calls"
    assert tc["function"] == {"name": "get_weather", "arguments": '{"city":""}'}  # OpenAI: a JSON string
    assert tc["id"].startswith("call_")
    status, obj = call_json(url, "POST", "/api/chat", dict(tools_req, stream=False))
    (tc,) = obj["message"]["tool_calls"]
    assert tc["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": ""}}  # native: an object


def test_ollama_listing_and_errors(fake):
    url = fake("ollama", models="llama3.2,me/tiny:1b")
    assert call(url, "GET", "/")[2] == b"Ollama is running"
    status, tags = call_json(url, "GET", "/api/tags")
    assert [m["name"] for m in tags["models"]] == ["llama3.2:latest", "me/tiny:1b"]
    assert all(len(m["digest"]) == 64 and m["details"]["format"] == "gguf" for m in tags["models"])
    assert call_json(url, "GET", "/api/version") == (200, {"version": "0.33.0"})
    assert call_json(url, "GET", "/api/ps") == (200, {"models": []})
    status, models = call_json(url, "GET", "/v1/models")
    assert [(m["id"], m["owned_by"]) for m in models["data"]] == [("llama3.2:latest", "library"), ("me/tiny:1b", "me")]

    msg = [{"role": "user", "content": "x"}]
    assert call_json(url, "POST", "/api/chat", {"model": "nosuchmodel", "messages": msg}) == (
        404, {"error": "model 'nosuchmodel' not found"})
    assert call_json(url, "POST", "/v1/chat/completions", {"model": "nosuchmodel", "messages": msg}) == (
        404, {"error": {"message": "model 'nosuchmodel' not found", "type": "not_found_error", "param": None,
                        "code": None}})
    assert call_json(url, "POST", "/api/chat", b"") == (400, {"error": "missing request body"})
    assert call_json(url, "POST", "/api/chat", {"messages": msg}) == (400, {"error": "model is required"})
    assert call_json(url, "POST", "/v1/chat/completions", {"model": "llama3.2", "messages": []}) == (
        400, {"error": {"message": "[] is too short - 'messages'", "type": "invalid_request_error", "param": None,
                        "code": None}})
    status, obj = call_json(url, "POST", "/api/generate", b'{"model": ')
    assert status == 400 and isinstance(obj["error"], str)
    assert call(url, "GET", "/no/such")[::2] == (404, b"404 page not found")
    assert call(url, "GET", "/api/chat")[::2] == (405, b"405 method not allowed")


# ---- modes -----------------------------------------------------------------------------------------------------------


STREAMS = {  # kind, path, body of a streamed answer
    "llamacpp-sse": ("llamacpp", "/v1/chat/completions", dict(CHAT, stream=True)),
    "ollama-ndjson": ("ollama", "/api/chat", {"model": "llama3.2", "messages": CHAT["messages"]}),
    "ollama-sse": ("ollama", "/v1/chat/completions", {"model": "llama3.2", "messages": CHAT["messages"],
                                                       "stream": True}),
}


@pytest.mark.parametrize("stream", list(STREAMS))
def test_slow_mode_sends_the_first_chunk_long_before_the_last(fake, stream):
    kind, path, body = STREAMS[stream]
    url = fake(kind, mode="slow", chunks=8, delay_ms=50)
    raw = Raw(url)
    try:
        start = time.monotonic()
        status, headers = raw.send("POST", path, body).head()
        assert status == 200
        arrivals = []  # time of each chunk that carries a content piece
        text = b""
        for at, data in raw.chunks():
            text += data
            if b"chunk " in data:
                arrivals.append(at - start)
        total = time.monotonic() - start
    finally:
        raw.close()
    assert len(arrivals) == 8 and text.count(b"chunk ") == 8
    assert total >= 8 * 0.05  # each content chunk waited its delay
    assert arrivals[0] < total / 2, f"first chunk after {arrivals[0]:.3f} s of {total:.3f} s"


@pytest.mark.parametrize("stream", list(STREAMS))
def test_fail_midstream_closes_without_the_end(fake, stream):
    kind, path, body = STREAMS[stream]
    url = fake(kind, mode="fail-midstream", chunks=8)
    raw = Raw(url)
    received = b""
    try:
        status, headers = raw.send("POST", path, body).head()
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        with pytest.raises(EOFError):  # the connection ends before the terminating chunk
            for _, data in raw.chunks():
                received += data
    finally:
        raw.close()
    assert received.count(b"chunk ") == 4  # half of the content went out
    assert b"[DONE]" not in received and b'"done":true' not in received and b'"finish_reason":"stop"' not in received
    (entry,) = control(url, "GET", "/_fake/requests")
    assert entry["outcome"] == "failed"
    assert control(url, "GET", "/_fake/active")["failed"] == 1


def test_fail_midstream_truncates_a_whole_answer(fake):
    url = fake("llamacpp", mode="fail-midstream")
    raw = Raw(url)
    try:
        status, headers = raw.send("POST", "/v1/chat/completions", CHAT).head()
        assert status == 200
        with pytest.raises(EOFError):
            raw.body(headers)  # fewer bytes than Content-Length, then the close
    finally:
        raw.close()


@pytest.mark.parametrize("kind,path,body", [
    ("llamacpp", "/v1/chat/completions", CHAT),
    ("ollama", "/api/chat", {"model": "llama3.2", "messages": CHAT["messages"]}),
])
def test_drop_mode_closes_without_any_response(fake, kind, path, body):
    url = fake(kind, mode="drop")
    raw = Raw(url).send("POST", path, body)
    try:
        assert raw.read_until_closed() == b""
    finally:
        raw.close()
    (entry,) = control(url, "GET", "/_fake/requests")  # the request was read in full first
    assert entry["json"] == body and entry["outcome"] == "dropped" and entry["status"] is None
    # only generation routes are affected: listing still works (all_routes would drop it too)
    health = "/health" if kind == "llamacpp" else "/api/version"
    assert call(url, "GET", health)[0] == 200


def test_hang_mode_never_answers_and_the_fake_still_stops(fake):
    url, stop = fake_llm.start_fake("ollama", mode="hang")
    try:
        raw = Raw(url, timeout=0.3).send("POST", "/v1/chat/completions", {"model": "llama3.2", "messages": [
            {"role": "user", "content": "hi"}], "stream": True})
        assert control(url, "GET", "/_fake/active?wait_open_streams=1&timeout=5")["open_streams"] == 1
        with pytest.raises(socket.timeout):
            raw.sock.recv(1)  # nothing at all within the read timeout
        started = time.monotonic()
        stop()
        assert time.monotonic() - started < 2
        raw.sock.settimeout(TIMEOUT)
        assert raw.read_until_closed() == b""  # the hung connection was closed, still without an answer
        raw.close()
        assert stop.__self__.server.socket.fileno() == -1  # and the listening socket is closed
    finally:
        stop()


def test_bad_json_mode_answers_200_with_garbage(fake):
    url = fake("llamacpp", mode="bad-json")
    status, headers, data = call(url, "POST", "/v1/chat/completions", CHAT)
    assert status == 200 and headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(data)
    status, headers, data = call(url, "POST", "/v1/chat/completions", dict(CHAT, stream=True))
    assert status == 200 and headers["content-type"] == "text/event-stream"
    payloads = [e[len(b"data: "):] for e in data.split(b"\n\n") if e.startswith(b"data: ")]
    assert payloads and payloads[-1] == b"[DONE]"
    for p in payloads[:-1]:
        with pytest.raises(ValueError):
            json.loads(p)
    url = fake("ollama", mode="bad-json")
    status, headers, data = call(url, "POST", "/api/chat", {"model": "llama3.2", "messages": CHAT["messages"]})
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    for line in data.splitlines():
        with pytest.raises(ValueError):
            json.loads(line)


def test_client_disconnect_mid_stream_counts_as_cancelled(fake):
    url = fake("llamacpp", mode="slow", chunks=100, delay_ms=50)  # 5 s if read to the end
    raw = Raw(url)
    try:
        status, _ = raw.send("POST", "/v1/chat/completions", dict(CHAT, stream=True)).head()
        assert status == 200
        for _, data in raw.chunks():
            if b"chunk 0 " in data:
                break
        assert control(url, "GET", "/_fake/active")["open_streams"] == 1
    finally:
        raw.close()
    active = control(url, "GET", "/_fake/active?wait_cancelled=1&timeout=5")
    assert active["cancelled"] == 1 and active["open_streams"] == 0 and active["completed"] == 0
    (entry,) = control(url, "GET", "/_fake/requests")
    assert entry["outcome"] == "cancelled"


# ---- request log, counters, settings ---------------------------------------------------------------------------------


def test_request_log_records_what_was_sent(fake):
    url = fake("llamacpp")
    assert control(url, "GET", "/_fake/requests") == []
    req = dict(CHAT, tools=[WEATHER_TOOL])
    status, _, _ = call(url, "POST", "/v1/chat/completions", req,
                        headers=[("Authorization", "Bearer s3cret"), ("X-Trace", "a"), ("X-Trace", "b")])
    assert status == 200
    call(url, "GET", "/v1/models?x=1")
    log = control(url, "GET", "/_fake/requests?wait=2&timeout=5")
    assert [(e["method"], e["path"]) for e in log] == [("POST", "/v1/chat/completions"), ("GET", "/v1/models?x=1")]
    first = log[0]
    assert first["headers"]["authorization"] == "Bearer s3cret"
    assert first["headers"]["x-trace"] == "a, b" and ["X-Trace", "b"] in first["header_list"]
    assert first["json"] == req and json.loads(first["body"]) == req
    assert first["status"] == 200 and first["outcome"] == "completed"
    # what the fake answers never repeats a header it was sent
    _, _, body = call(url, "POST", "/v1/chat/completions", CHAT, headers=[("Authorization", "Bearer s3cret")])
    assert b"s3cret" not in body
    assert control(url, "DELETE", "/_fake/requests") == {"cleared": 3}
    assert control(url, "GET", "/_fake/requests") == []
    assert control(url, "GET", "/_fake/active")["completed"] == 0  # only streams and held answers are counted


def test_settings_change_at_run_time(fake):
    url = fake("ollama")
    u = urlsplit(url)

    def put(change):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
        conn.request("PUT", "/_fake/config", body=json.dumps(change))
        resp = conn.getresponse()
        out = resp.status, json.loads(resp.read())
        conn.close()
        return out

    status, cfg = put({"mode": "drop", "models": ["a", "b:1"]})
    assert status == 200 and cfg["mode"] == "drop" and cfg["models"] == ["a:latest", "b:1"]
    assert control(url, "GET", "/_fake/config")["mode"] == "drop"
    raw = Raw(url).send("POST", "/api/chat", {"model": "a", "messages": CHAT["messages"]})
    assert raw.read_until_closed() == b""
    raw.close()
    assert put({"mode": "no-such-mode"})[0] == 400
    assert put({"mode": "normal", "chunks": 2})[0] == 200
    status, obj = call_json(url, "POST", "/api/chat", {"model": "a", "messages": CHAT["messages"], "stream": False})
    assert status == 200 and obj["message"]["content"] == words(2)


def test_tool_calls_auto_and_all_routes(fake):
    # tool_calls "auto": a call while the last message is not a tool result, then a plain answer (an agent loop)
    url = fake("llamacpp", tool_calls="auto", tool_name="bash", tool_args={"command": "echo hi"}, chunks=2)
    bash = {"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}
    messages = [{"role": "user", "content": "run it"}]
    status, obj = call_json(url, "POST", "/v1/chat/completions", {"messages": messages, "tools": [WEATHER_TOOL, bash]})
    (tc,) = obj["choices"][0]["message"]["tool_calls"]
    assert status == 200 and tc["function"] == {"name": "bash", "arguments": '{"command":"echo hi"}'}
    messages += [obj["choices"][0]["message"], {"role": "tool", "tool_call_id": tc["id"], "content": "hi"}]
    status, obj = call_json(url, "POST", "/v1/chat/completions", {"messages": messages, "tools": [WEATHER_TOOL, bash]})
    assert status == 200 and obj["choices"][0] == {"finish_reason": "stop", "index": 0,
                                                   "message": {"role": "assistant", "content": words(2)}}
    # all_routes: the mode reaches the listing and health routes too; /_fake/* never
    url = fake("llamacpp", mode="drop", all_routes=True)
    raw = Raw(url).send("GET", "/health")
    assert raw.read_until_closed() == b""
    raw.close()
    assert [e["path"] for e in control(url, "GET", "/_fake/requests")] == ["/health"]


# ---- the command line ------------------------------------------------------------------------------------------------


def spawn(*args):
    proc = subprocess.Popen([sys.executable, str(FAKE_PATH), *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    if not ready:
        proc.kill()
        raise AssertionError(f"the fake printed nothing within 20 s: {proc.communicate()}")
    line = proc.stdout.readline()
    assert line, f"the fake exited: {proc.wait()} {proc.stderr.read()!r}"
    return proc, json.loads(line)


def finish(proc, sig):
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the fake did not exit within {TIMEOUT} s of {sig!r}: {proc.communicate()}") from None
    return proc.returncode, out, err


@pytest.mark.parametrize("kind,path,answer", [
    ("llamacpp", "/health", {"status": "ok"}),
    ("ollama", "/api/version", {"version": "0.33.0"}),
])
def test_cli_prints_its_url_serves_and_stops_on_sigterm(kind, path, answer):
    proc, info = spawn("--kind", kind, "--port", "0", "--chunks", "2", "--models", "m1,m2")
    try:
        assert info["pid"] == proc.pid and info["url"].startswith("http://127.0.0.1:")
        assert call_json(info["url"], "GET", path) == (200, answer)
        assert control(info["url"], "GET", "/_fake/config")["chunks"] == 2
    finally:
        rc, out, err = finish(proc, signal.SIGTERM)
    assert rc == 0, err
    assert out == b""  # the URL line was the only output


def test_cli_hang_mode_stops_on_sigint_with_a_request_hanging():
    proc, info = spawn("--kind", "llamacpp", "--mode", "hang")
    raw = None
    try:
        url = info["url"]
        raw = Raw(url).send("POST", "/v1/chat/completions", dict(CHAT, stream=True))
        assert control(url, "GET", "/_fake/active?wait_open_streams=1&timeout=5")["open_streams"] == 1
    finally:
        rc, _, err = finish(proc, signal.SIGINT)
        if raw:
            assert raw.read_until_closed() == b""
            raw.close()
    assert rc == 0, err
