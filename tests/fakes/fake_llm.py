#!/usr/bin/python3
"""Fake LLM backends for the gateway's tests: llama.cpp's `llama-server` and Ollama.

Responses follow shared/fixtures/llama-server/*.txt (recorded from a real llama-server) and
shared/fixtures/ollama/CONTRACT.md. Python standard library only. See tests/fakes/README.md.

CLI:    fake_llm.py --kind llamacpp|ollama [--port 0] [--mode MODE] [--chunks N] [--delay-ms D] [--models a,b]
        prints one line {"url": "http://127.0.0.1:PORT", "pid": PID} once listening; SIGTERM/SIGINT stop it (exit 0).
Python: url, stop = start_fake("llamacpp", mode="slow", delay_ms=50); ...; stop()

Modes act on the generation routes (chat, completion, generate) unless all_routes is set; "loading" acts on every
route of a llama-server (as the real one does) and on the generation routes of an Ollama. The /_fake/* routes are
never affected by a mode and never recorded:
  GET    /_fake/requests[?wait=N&timeout=S]   the requests received so far (waits until there are N)
  DELETE /_fake/requests                      forget them
  GET    /_fake/active[?wait_<counter>=N&timeout=S]
         {"open_streams", "cancelled", "completed", "failed", "stopped", "streams"} (waits until counter >= N)
  DELETE /_fake/active                        zero the counters (open_streams excepted)
  GET    /_fake/config, PUT|POST /_fake/config {"mode": "hang", ...}   read or change the settings at run time
"""

import argparse
import email.utils
import hashlib
import json
import os
import random
import select
import signal
import socket
import socketserver
import string
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

KINDS = ("llamacpp", "ollama")
MODES = ("normal", "slow", "hang", "fail-midstream", "drop", "loading", "bad-json")
TOOL_CALLS = ("required", "auto", "never")
DEFAULT_MODELS = {"llamacpp": ["tiny.gguf"], "ollama": ["llama3.2:latest"]}
COUNTERS = ("open_streams", "cancelled", "completed", "failed", "stopped", "streams")

FINGERPRINT = "b0-3f545be"  # llama-server's system_fingerprint / build_info in the fixtures
OLLAMA_VERSION = "0.33.0"
JSON_CT = "application/json; charset=utf-8"

# Bodies copied from the llama-server fixtures (byte for byte where the fixture has no variable part).
LLAMA_LOADING = {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}
LLAMA_NOT_FOUND = {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}
LLAMA_MISSING_MESSAGES = {"error": {"code": 400, "message": "'messages' is required", "type": "invalid_request_error"}}
LLAMA_MISSING_PROMPT = {"error": {"code": 400, "message": "[json.exception.out_of_range.403] key 'prompt' not found",
                                  "type": "invalid_request_error"}}
LLAMA_NO_EMBEDDINGS = {"error": {"code": 501,
                                 "message": "This server does not support embeddings. Start it with `--embeddings`",
                                 "type": "not_supported_error"}}
OLLAMA_BUSY = "server busy, please try again.  maximum pending requests exceeded"

# What "bad-json" sends instead of JSON.
GARBAGE_BODY = b'{"choices": [{"message": this is not JSON'
GARBAGE_SSE = [b'data: {"choices": [{"delta": {"content": "chunk\n\n', b"data: <html>not json</html>\n\n",
               b"data: [DONE]\n\n"]
GARBAGE_NDJSON = [b'{"model": "x", "message": {"content": "chunk\n', b"<html>not json</html>\n"]

# /props of the fixture (props.txt); model_alias, model_path and n_ctx are filled in per server.
_PROPS_JSON = (
    '{"default_generation_settings":{"params":{"seed":4294967295,"temperature":0.800000011920929,"dynatem'
    'p_range":0.0,"dynatemp_exponent":1.0,"top_k":40,"top_p":0.949999988079071,"min_p":0.0500000007450580'
    '6,"top_n_sigma":-1.0,"xtc_probability":0.0,"xtc_threshold":0.10000000149011612,"typical_p":1.0,"repe'
    'at_last_n":64,"repeat_penalty":1.0,"presence_penalty":0.0,"frequency_penalty":0.0,"dry_multiplier":0'
    '.0,"dry_base":1.75,"dry_allowed_length":2,"dry_penalty_last_n":64,"mirostat":0,"mirostat_tau":5.0,"m'
    'irostat_eta":0.10000000149011612,"adaptive_target":-1.0,"adaptive_decay":0.8999999761581421,"max_tok'
    'ens":-1,"n_predict":-1,"n_keep":0,"n_discard":0,"ignore_eos":false,"stream":false,"n_probs":0,"min_k'
    'eep":0,"chat_format":"Content-only","reasoning_format":"none","reasoning_in_content":false,"generati'
    'on_prompt":"","samplers":["penalties","dry","top_n_sigma","top_k","typ_p","top_p","min_p","xtc","tem'
    'perature"],"speculative.types":"none","timings_per_token":false,"post_sampling_probs":false,"backend'
    '_sampling":false,"lora":[]},"n_ctx":512},"total_slots":4,"model_alias":"tiny.gguf","model_ftype":"al'
    'l F32","model_path":"tiny.gguf","modalities":{"vision":false,"video":false,"audio":false},"media_mar'
    'ker":"<__media_YQyT2z96R0BLSC66d65TMEw8BzRjsmB4__>","endpoint_slots":true,"endpoint_props":false,"en'
    'dpoint_metrics":true,"ui":true,"ui_settings":{},"chat_template":"{%- if tools %}\\n{{- \'<|im_start|>s'
    "ystem\\\\n' }}\\n{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\\\n\\\\n' }}{%- endif %"
    "}\\n{{- '# Tools\\\\n\\\\nYou may call one or more functions to assist with the user query.\\\\n\\\\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\\\\n<tools>' }}\\n{%- for tool in to"
    "ols %}{{- '\\\\n' }}{{- tool | tojson }}{%- endfor %}\\n{{- '\\\\n</tools>\\\\n\\\\nFor each function call, r"
    'eturn a json object with function name and arguments within <tool_call></tool_call> XML tags:\\\\n<too'
    'l_call>\\\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\\\n</tool_call><|im_end|>\\\\n'
    "' }}\\n{%- else %}\\n{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\\\n' + messages[0].c"
    "ontent + '<|im_end|>\\\\n' }}{%- endif %}\\n{%- endif %}\\n{%- for message in messages %}\\n{%- if (messa"
    "ge.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant' "
    "and not message.tool_calls) %}\\n{{- '<|im_start|>' + message.role + '\\\\n' + message.content + '<|im_"
    "end|>\\\\n' }}\\n{%- elif message.role == 'assistant' %}\\n{{- '<|im_start|>' + message.role }}\\n{%- if "
    "message.content %}{{- '\\\\n' + message.content }}{%- endif %}\\n{%- for tool_call in message.tool_call"
    's %}\\n{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}\\n'
    '{{- \'\\\\n<tool_call>\\\\n{\\"name\\": \\"\' }}{{- tool_call.name }}{{- \'\\", \\"arguments\\": \' }}{{- tool_cal'
    "l.arguments | tojson }}{{- '}\\\\n</tool_call>' }}\\n{%- endfor %}\\n{{- '<|im_end|>\\\\n' }}\\n{%- elif me"
    "ssage.role == 'tool' %}\\n{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}{"
    "{- '<|im_start|>user' }}{%- endif %}\\n{{- '\\\\n<tool_response>\\\\n' }}{{- message.content }}{{- '\\\\n</"
    "tool_response>' }}\\n{%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}{{- '<|im_end|>"
    "\\\\n' }}{%- endif %}\\n{%- endif %}\\n{%- endfor %}\\n{%- if add_generation_prompt %}{{- '<|im_start|>as"
    'sistant\\\\n\' }}{%- endif %}","chat_template_caps":{"supports_object_arguments":true,"supports_paralle'
    'l_tool_calls":true,"supports_preserve_reasoning":false,"supports_reasoning_effort":false,"supports_s'
    'tring_content":true,"supports_system_role":true,"supports_tool_calls":true,"supports_tools":true,"su'
    'pports_typed_content":false},"bos_token":"<s>","eos_token":"</s>","build_info":"b0-3f545be","is_slee'
    'ping":false,"cors_proxy_enabled":false}'
)

# generation_settings of /completion (completion.txt); max_tokens, n_predict and stream are filled in per request.
_GENERATION_SETTINGS = {
    "seed": 4294967295, "temperature": 0.800000011920929, "dynatemp_range": 0.0, "dynatemp_exponent": 1.0,
    "top_k": 40, "top_p": 0.949999988079071, "min_p": 0.05000000074505806, "top_n_sigma": -1.0,
    "xtc_probability": 0.0, "xtc_threshold": 0.10000000149011612, "typical_p": 1.0, "repeat_last_n": 64,
    "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "dry_multiplier": 0.0,
    "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": 64,
    "dry_sequence_breakers": ["\n", ":", "\"", "*"], "mirostat": 0, "mirostat_tau": 5.0,
    "mirostat_eta": 0.10000000149011612, "adaptive_target": -1.0, "adaptive_decay": 0.8999999761581421,
    "stop": [], "max_tokens": -1, "n_predict": -1, "n_keep": 0, "n_discard": 0, "ignore_eos": False,
    "stream": False, "logit_bias": [], "n_probs": 0, "min_keep": 0, "grammar": "", "grammar_lazy": False,
    "grammar_triggers": [], "preserved_tokens": [], "chat_format": "Content-only", "reasoning_format": "deepseek",
    "reasoning_in_content": False, "generation_prompt": "",
    "samplers": ["penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"],
    "speculative.types": "none", "timings_per_token": False, "post_sampling_probs": False,
    "backend_sampling": False, "lora": [],
}


# ---- small helpers ---------------------------------------------------------------------------------------------------


def piece(i):
    """The i-th content piece of every answer: tests reassemble "chunk 0 chunk 1 ..."."""
    return f"chunk {i} "


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def sse(obj):
    return b"data: " + (obj if isinstance(obj, bytes) else dumps(obj)) + b"\n\n"


def rand_alnum(n, alphabet=string.ascii_letters + string.digits):
    return "".join(random.choice(alphabet) for _ in range(n))


def rfc3339_now():
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def llama_error(code, message, type_):
    return {"error": {"code": code, "message": message, "type": type_}}


def openai_error(status, message):
    type_ = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}


def text_of(content):
    """The text of a message content (a string, or OpenAI parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_tokens(messages, tools=None):
    """A rough token count (words plus template overhead): only its order of magnitude matters."""
    n = 3
    for m in messages if isinstance(messages, list) else []:
        n += 4 + (len(text_of(m.get("content")).split()) if isinstance(m, dict) else 0)
    if tools:
        n += len(json.dumps(tools).split())
    return n


def limit(value):
    """A max_tokens / n_predict / num_predict value, or None when absent or unlimited."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def plan(cfg, max_tokens):
    """(number of content pieces, finish reason) for an answer."""
    n = cfg["chunks"]
    if max_tokens is not None and max_tokens < n:
        return max_tokens, "length"
    return n, "stop"


def default_args(parameters):
    """Arguments for a tool call: every required parameter, empty ({"city": ""} for get_weather, as in the fixture)."""
    empty = {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "object": {}}
    props = parameters.get("properties", {}) if isinstance(parameters, dict) else {}
    required = parameters.get("required", []) if isinstance(parameters, dict) else []
    out = {}
    for name in required if isinstance(required, list) else []:
        if isinstance(name, str):
            spec = props.get(name) if isinstance(props, dict) else None
            out[name] = empty.get(spec.get("type") if isinstance(spec, dict) else None, "")
    return out


def tool_call_for(req, cfg):
    """(name, arguments object) when this answer is a tool call, else None.

    A call is made when the request has tools and tool_choice is "required" or names a function; with the
    tool_calls setting "auto" also whenever the last message is not a tool result (tool_choice "none" excepted);
    never with tool_calls "never"."""
    tools = req.get("tools")
    if cfg["tool_calls"] == "never" or not isinstance(tools, list) or not tools:
        return None
    choice = req.get("tool_choice")
    forced = None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        forced = choice["function"].get("name")
    messages = req.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages and isinstance(messages[-1], dict) else {}
    wanted = forced or choice == "required" or (
        cfg["tool_calls"] == "auto" and choice != "none" and last.get("role") != "tool")
    if not wanted:
        return None
    functions = [t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    name = forced or cfg["tool_name"] or (functions[0].get("name") if functions else None)
    if not isinstance(name, str) or not name:
        return None
    spec = next((f for f in functions if f.get("name") == name), {})
    args = cfg["tool_args"] if cfg["tool_args"] is not None else default_args(spec.get("parameters"))
    return name, args


def scripted_turn(script, messages):
    """The scripted model's answer to `messages`: {content, calls}. Turn N of the script answers a conversation
    with N assistant messages (so a loop replays deterministically); past the script, "done". In content,
    {last_tool} is the last tool result's text. A call's arguments: an object (sent as JSON) or a string (sent
    as it is: malformed JSON on purpose)."""
    n = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
    turn = script[n] if n < len(script) else {"content": "done"}
    last = next((m.get("content") for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "tool"),
                "")
    content = str(turn.get("content") or "").replace("{last_tool}", last if isinstance(last, str) else "")
    calls = []
    for k, c in enumerate(turn.get("tool_calls") or []):
        args = c.get("arguments", {})
        calls.append({"id": f"call_{n}_{k}", "name": c.get("name", ""),
                      "arguments": args if isinstance(args, str) else json.dumps(args)})
    return {"content": content, "calls": calls}


def llama_timings(p, n):
    return {"cache_n": 0, "prompt_n": p, "prompt_ms": p * 0.25, "prompt_per_token_ms": 0.25,
            "prompt_per_second": 4000.0, "predicted_n": n, "predicted_ms": n * 1.0, "predicted_per_token_ms": 1.0,
            "predicted_per_second": 1000.0}


def llama_usage(p, n):
    return {"completion_tokens": n, "prompt_tokens": p, "total_tokens": p + n,
            "prompt_tokens_details": {"cached_tokens": 0}}


def ollama_metrics(p, n):
    load, prompt, ev = 2_000_000, p * 1_000_000, n * 20_000_000
    return {"total_duration": load + prompt + ev, "load_duration": load, "prompt_eval_count": p,
            "prompt_eval_duration": prompt, "eval_count": n, "eval_duration": ev}


def ollama_name(name):
    """Ollama's canonical name: a missing tag means :latest."""
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def go_json_error(text, err):
    """What Go's JSON decoder says about `text` (approximately)."""
    if err.pos >= len(text.rstrip()):
        return "unexpected EOF"
    return f"invalid character '{text[err.pos]}' looking for beginning of value"


# ---- settings and shared state ---------------------------------------------------------------------------------------


def make_config(kind, mode="normal", chunks=8, delay_ms=200, models=None, all_routes=False, tool_calls="required",
                tool_name=None, tool_args=None, n_ctx=4096, script=None):
    """Validated settings of one fake. Raises ValueError on a bad value."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if tool_calls not in TOOL_CALLS:
        raise ValueError(f"tool_calls must be one of {', '.join(TOOL_CALLS)}")
    for name, value, low in (("chunks", chunks, 1), ("delay_ms", delay_ms, 0), ("n_ctx", n_ctx, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}")
    if models is None:
        models = DEFAULT_MODELS[kind]
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        raise ValueError("models must be a non-empty list of names")
    if kind == "ollama":
        models = [ollama_name(m) for m in models]
    if tool_name is not None and not isinstance(tool_name, str):
        raise ValueError("tool_name must be a string or null")
    if tool_args is not None and not isinstance(tool_args, dict):
        raise ValueError("tool_args must be an object or null")
    if script is not None and not (isinstance(script, list) and all(isinstance(s, dict) for s in script)):
        raise ValueError("script must be a list of turns ({content?, tool_calls?}) or null")
    return {"script": script, "kind": kind, "mode": mode, "chunks": chunks, "delay_ms": delay_ms, "models": list(models),
            "all_routes": bool(all_routes), "tool_calls": tool_calls, "tool_name": tool_name,
            "tool_args": tool_args, "n_ctx": n_ctx}


class State:
    """What every connection of one fake shares: settings, request log, stream counters."""

    def __init__(self, config, verbose=False):
        self.config = config
        self.verbose = verbose
        self.cond = threading.Condition()
        self.requests = []
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.stopping = threading.Event()
        self.started = int(time.time())

    def snapshot(self):
        with self.cond:
            return dict(self.config)

    def record(self, method, path, headers, body):
        text = body.decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = None
        entry = {"method": method, "path": path, "headers": {}, "header_list": [], "body": text, "json": parsed,
                 "time": time.time(), "status": None, "outcome": None}
        for name, value in headers.items():
            entry["header_list"].append([name, value])
            key = name.lower()
            entry["headers"][key] = entry["headers"][key] + ", " + value if key in entry["headers"] else value
        with self.cond:
            self.requests.append(entry)
            self.cond.notify_all()
        return entry

    def count(self, **deltas):
        with self.cond:
            for key, delta in deltas.items():
                self.counters[key] += delta
            self.cond.notify_all()

    def wait(self, predicate, timeout):
        with self.cond:
            self.cond.wait_for(lambda: predicate() or self.stopping.is_set(), timeout)


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its connections, so that stop() ends even keep-alive and hung ones."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address, handler, state):
        self.state = state
        self.track = threading.Lock()
        self.connections = set()
        self.handler_threads = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)  # HTTPServer's would look the host name up
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address), daemon=True)
        with self.track:
            self.connections.add(request)
            self.handler_threads.add(thread)
        thread.start()

    def _serve_connection(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except OSError:  # the peer went away, or stop() shut the connection down
            if self.state.verbose and not self.state.stopping.is_set():
                self.handle_error(request, client_address)
        except Exception:  # a bug in the fake: say so, a silent close would be hard to tell from a mode
            sys.stderr.write(f"fake_llm: error while serving {client_address}:\n{traceback.format_exc()}")
        finally:
            self.shutdown_request(request)
            with self.track:
                self.connections.discard(request)
                self.handler_threads.discard(threading.current_thread())

    def handle_error(self, request, client_address):
        if self.state.verbose:
            super().handle_error(request, client_address)

    def close_connections(self):
        with self.track:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_handlers(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            with self.track:
                threads = list(self.handler_threads)
            if not threads or time.monotonic() >= deadline:
                return
            threads[0].join(max(0.0, deadline - time.monotonic()))


# ---- the request handler shared by both kinds ------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    kind = None
    error_closes = False  # llama-server closes the connection after every error response

    def log_message(self, format, *args):
        if self.server.state.verbose:
            sys.stderr.write(f"fake_llm[{self.kind}] {self.address_string()} {format % args}\n")

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    # -- reading

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ValueError("truncated chunked body")
                size = int(line.split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                part = self.rfile.read(size)
                if len(part) != size:
                    raise ValueError("truncated chunked body")
                data += part
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return b""
        body = self.rfile.read(length)
        if len(body) != length:
            raise ValueError("truncated body")
        return body

    def _dispatch(self):
        self.state = self.server.state
        self.entry = None
        self.route_path, _, self.query = self.path.partition("?")
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        try:
            if self.route_path == "/_fake" or self.route_path.startswith("/_fake/"):
                self._control(body)
                return
            cfg = self.state.snapshot()
            self.entry = self.state.record(self.command, self.path, self.headers, body)
            self.route(cfg, body)
        except OSError:  # the client went away while we answered
            self.close_connection = True
            self._outcome("cancelled", force=True)

    def _outcome(self, outcome, force=False):
        """Notes how the answer to the logged request ended. Called before its last bytes go out (so that a client
        that has read them and asks /_fake/requests sees it); a failed last write then forces "cancelled"."""
        if self.entry is not None and (force or self.entry["outcome"] is None):
            self.entry["outcome"] = outcome

    # -- writing

    def base_headers(self):
        return []

    def _write_head(self, status, headers):
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        for name, value in headers:
            lines.append(f"{name}: {value}\r\n")
            if name.lower() == "connection" and value.lower() == "close":
                self.close_connection = True
        lines.append("\r\n")
        self.wfile.write("".join(lines).encode("latin-1"))
        if self.entry is not None:
            self.entry["status"] = status

    def respond(self, status, body, content_type=JSON_CT, close=None, mode="normal", cfg=None):
        """A whole answer with Content-Length. mode slow delays it; fail-midstream sends half of it and closes."""
        if not isinstance(body, bytes):
            body = dumps(body)
        if close is None:
            close = self.error_closes and status >= 400
        if mode == "slow" and cfg is not None:
            if not self._hold(cfg["delay_ms"] * cfg["chunks"] / 1000.0):
                return
        headers = self.base_headers() + [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        headers += [("Connection", "close")] if close else self.keep_alive_headers()
        self._write_head(status, headers)
        if self.command == "HEAD":
            self._outcome("completed")
            return
        if mode == "fail-midstream":
            self._outcome("failed")
            self.close_connection = True
            self.wfile.write(body[: len(body) // 2])
            return
        self._outcome("completed")
        self.wfile.write(body)

    def keep_alive_headers(self):
        return []

    def stream_headers(self, content_type):
        return self.base_headers() + [("Content-Type", content_type)]

    def stream(self, content_type, events, cfg, mode):
        """Sends `events` ([(bytes, is_content)]) as a chunked 200 answer, one HTTP chunk per event.

        slow: waits delay_ms before each content event; fail-midstream: closes the connection after half the content
        events (at least one) without the last chunk; a client that goes away before the end counts as cancelled."""
        chunked = self.request_version != "HTTP/1.0"
        headers = self.stream_headers(content_type)
        if chunked:
            headers += [("Transfer-Encoding", "chunked")] + self.keep_alive_headers()
        else:
            headers += [("Connection", "close")]
        delay = cfg["delay_ms"] / 1000.0 if mode == "slow" else 0.0
        cut = None
        if mode == "fail-midstream":
            content_at = [i for i, (_, is_content) in enumerate(events) if is_content] or [0]
            cut = content_at[max(1, len(content_at) // 2) - 1]
        self.state.count(open_streams=1, streams=1)
        finished = False

        def finish(outcome):  # once per stream; before the close or the last chunk, so a client sees it counted
            nonlocal finished
            if not finished:
                finished = True
                self._outcome(outcome)
                self.state.count(open_streams=-1, **{outcome: 1})

        outcome = "stopped"
        try:
            self._write_head(200, headers)
            for i, (data, is_content) in enumerate(events):
                if delay and is_content:
                    why = self._wait(delay)
                    if why != "ok":
                        outcome = "cancelled" if why == "closed" else "stopped"
                        self.close_connection = True
                        return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                if i == cut:
                    outcome = "failed"
                    self.close_connection = True
                    return
            finish("completed")
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
            if finished:  # only the last chunk was lost
                self._outcome("cancelled", force=True)
                self.state.count(completed=-1, cancelled=1)
            else:
                outcome = "cancelled"
        finally:
            finish(outcome)

    def _wait(self, seconds):
        """Waits `seconds`; returns "ok", "closed" (the client closed its end) or "stopping" (the fake stops)."""
        deadline = time.monotonic() + seconds
        sock = self.connection
        peer_sent_data = False
        while True:
            if self.state.stopping.is_set():
                return "stopping"
            left = deadline - time.monotonic()
            if left <= 0:
                return "ok"
            if peer_sent_data:  # a pipelined request: cannot tell a close from it any more, just wait
                self.state.stopping.wait(min(left, 0.05))
                continue
            try:
                readable = select.select([sock], [], [], min(left, 0.05))[0]
            except (OSError, ValueError):
                return "closed"
            if readable:
                try:
                    data = sock.recv(1, socket.MSG_PEEK)
                except (BlockingIOError, InterruptedError, socket.timeout):
                    continue
                except OSError:
                    return "closed"
                if not data:
                    return "closed"
                peer_sent_data = True

    def _hold(self, seconds):
        """Holds an answer back for `seconds` (forever: None) as an open stream; True when it may go on."""
        self.state.count(open_streams=1, streams=1)
        why = self._wait(float("inf") if seconds is None else seconds)
        if why == "ok":
            self.state.count(open_streams=-1)
            return True
        outcome = "cancelled" if why == "closed" else "stopped"
        self.close_connection = True
        self._outcome(outcome)
        self.state.count(open_streams=-1, **{outcome: 1})
        return False

    # -- modes

    def effective_mode(self, cfg, generation):
        return cfg["mode"] if generation or cfg["all_routes"] else "normal"

    def drop_or_hang(self, mode):
        """drop: close at once, no answer. hang: never answer (until the client or the fake goes). True if done."""
        if mode == "drop":
            self.close_connection = True
            self._outcome("dropped")
            return True
        if mode == "hang":
            self._hold(None)
            self.close_connection = True
            return True
        return False

    def garbage(self, stream, sse_stream=True):
        if not stream:
            self.respond(200, GARBAGE_BODY, close=False)
            return
        content_type = "text/event-stream" if sse_stream else "application/x-ndjson"
        events = [(e, True) for e in (GARBAGE_SSE if sse_stream else GARBAGE_NDJSON)]
        self.stream(content_type, events, self.state.snapshot(), "normal")

    # -- control routes

    def _control(self, body):
        st = self.state
        q = {k: v[-1] for k, v in parse_qs(self.query).items()}
        try:
            timeout = min(float(q.get("timeout", 5)), 60.0)
        except ValueError:
            timeout = 5.0
        path, method = self.route_path, self.command
        if path == "/_fake/requests" and method == "GET":
            want = int(q.get("wait", 0) or 0)
            st.wait(lambda: len(st.requests) >= want, timeout)
            with st.cond:
                out = [dict(e) for e in st.requests]
            return self._control_answer(200, out)
        if path == "/_fake/requests" and method == "DELETE":
            with st.cond:
                n = len(st.requests)
                st.requests.clear()
            return self._control_answer(200, {"cleared": n})
        if path == "/_fake/active" and method == "GET":
            waits = {k[5:]: int(v) for k, v in q.items() if k.startswith("wait_") and k[5:] in COUNTERS}
            st.wait(lambda: all(st.counters[k] >= n for k, n in waits.items()), timeout)
            with st.cond:
                return self._control_answer(200, dict(st.counters))
        if path == "/_fake/active" and method == "DELETE":
            with st.cond:
                for key in COUNTERS:
                    if key != "open_streams":
                        st.counters[key] = 0
                return self._control_answer(200, dict(st.counters))
        if path == "/_fake/config" and method == "GET":
            return self._control_answer(200, st.snapshot())
        if path == "/_fake/config" and method in ("PUT", "POST"):
            try:
                change = json.loads(body or b"{}")
                if not isinstance(change, dict):
                    raise ValueError("the body must be a JSON object")
                with st.cond:
                    merged = dict(st.config)
                    merged.update(change)
                    st.config = make_config(**merged)
                    new = dict(st.config)
            except (ValueError, TypeError) as e:
                return self._control_answer(400, {"error": str(e)})
            return self._control_answer(200, new)
        return self._control_answer(404, {"error": f"no control route {method} {path}"})

    def _control_answer(self, status, obj):
        body = dumps(obj)
        self._write_head(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        self.wfile.write(body)


# ---- llama-server ----------------------------------------------------------------------------------------------------


class LlamaCppHandler(_Handler):
    kind = "llamacpp"
    error_closes = True
    timeout = 5  # llama-server's keep-alive: "Keep-Alive: timeout=5, max=100"
    GET_ROUTES = {"/health", "/v1/health", "/models", "/v1/models", "/props", "/slots", "/metrics"}
    CHAT = {"/v1/chat/completions", "/chat/completions"}
    COMPLETIONS = {"/v1/completions", "/completions"}
    GENERATION = CHAT | COMPLETIONS | {"/completion"}
    POST_ROUTES = GENERATION | {"/v1/embeddings", "/embeddings"}

    def base_headers(self):
        return [("Server", "llama.cpp"), ("Access-Control-Allow-Origin", self.headers.get("Origin", ""))]

    def keep_alive_headers(self):
        return [("Keep-Alive", "timeout=5, max=100")]

    def stream_headers(self, content_type):
        return self.base_headers() + [("X-Accel-Buffering", "no"), ("Content-Type", content_type)]

    def error(self, obj):
        code = obj["error"]["code"]
        self.respond(code, obj, close=True)

    def model_for(self, requested, cfg):
        # single-model llama-server ignores the request's model and reports its own alias
        return requested if requested in cfg["models"] else cfg["models"][0]

    def route(self, cfg, body):
        path, method = self.route_path, self.command
        if cfg["mode"] == "loading":
            return self.error(LLAMA_LOADING)
        known = (method in ("GET", "HEAD") and path in self.GET_ROUTES) or (method == "POST" and path in
                                                                             self.POST_ROUTES)
        if not known:  # llama-server answers an unknown path and a wrong method alike
            return self.error(LLAMA_NOT_FOUND)
        generation = method == "POST" and path in self.GENERATION
        mode = self.effective_mode(cfg, generation)
        if self.drop_or_hang(mode):
            return
        req = None
        if method == "POST":
            text = body.decode("utf-8", "replace")
            try:
                req = json.loads(text)
            except ValueError as e:
                if mode == "bad-json":
                    return self.garbage(False)
                why = "unexpected end of input" if e.pos >= len(text.rstrip()) else e.msg
                return self.error(llama_error(
                    500, f"[json.exception.parse_error.101] parse error at line {e.lineno}, column {e.colno}: "
                         f"syntax error while parsing value - {why}", "server_error"))
            if not isinstance(req, dict):
                req = {}
        if mode == "bad-json":
            return self.garbage(bool(req and req.get("stream")))
        if path in ("/health", "/v1/health"):
            return self.respond(200, {"status": "ok"}, mode=mode, cfg=cfg)
        if path in ("/models", "/v1/models"):
            return self.respond(200, self.models_body(cfg), mode=mode, cfg=cfg)
        if path == "/props":
            props = json.loads(_PROPS_JSON)
            props["model_alias"] = props["model_path"] = cfg["models"][0]
            props["default_generation_settings"]["n_ctx"] = cfg["n_ctx"]
            return self.respond(200, props, mode=mode, cfg=cfg)
        if path == "/slots":
            slots = [{"id": i, "n_ctx": cfg["n_ctx"], "speculative": False, "is_processing": False} for i in range(4)]
            return self.respond(200, slots, mode=mode, cfg=cfg)
        if path == "/metrics":
            with self.state.cond:
                n = len(self.state.requests)
            text = (f"# HELP llamacpp:requests_processing Number of requests processing\n"
                    f"# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 0\n"
                    f"# HELP llamacpp:n_decode_total Total number of llama_decode() calls\n"
                    f"# TYPE llamacpp:n_decode_total counter\nllamacpp:n_decode_total {n}\n").encode()
            return self.respond(200, text, content_type="text/plain; version=0.0.4", mode=mode, cfg=cfg)
        if path in ("/v1/embeddings", "/embeddings"):
            return self.error(LLAMA_NO_EMBEDDINGS)
        if path in self.CHAT:
            return self.chat(req, cfg, mode)
        return self.completion(req, cfg, mode, native=path == "/completion")

    def models_body(self, cfg):
        models, data = [], []
        for name in cfg["models"]:
            models.append({"name": name, "model": name, "modified_at": "", "size": "", "digest": "", "type": "model",
                           "description": "", "tags": [""], "capabilities": ["completion"], "parameters": "",
                           "details": {"parent_model": "", "format": "gguf", "family": "", "families": [""],
                                       "parameter_size": "", "quantization_level": ""}})
            data.append({"id": name, "aliases": [name], "tags": [], "object": "model", "created": self.state.started,
                         "owned_by": "llamacpp",
                         "meta": {"vocab_type": True, "n_vocab": 32002, "n_ctx": cfg["n_ctx"],
                                  "n_ctx_train": cfg["n_ctx"], "n_embd": 64, "n_params": 4178496,
                                  "size": 16713984, "ftype": "all F32"}})
        return {"models": models, "object": "list", "data": data}

    def context_check(self, p, cfg):
        if p <= cfg["n_ctx"]:
            return True
        self.error({"error": {"code": 400, "message": f"request ({p} tokens) exceeds the available context size "
                                                      f"({cfg['n_ctx']} tokens), try increasing it",
                              "type": "exceed_context_size_error", "n_prompt_tokens": p, "n_ctx": cfg["n_ctx"]}})
        return False

    def chat(self, req, cfg, mode):
        if "messages" not in req:
            return self.error(LLAMA_MISSING_MESSAGES)
        messages = req["messages"]
        if not isinstance(messages, list):
            return self.error(llama_error(400, "Expected 'messages' to be an array", "invalid_request_error"))
        p = prompt_tokens(messages, req.get("tools"))
        if not self.context_check(p, cfg):
            return
        if cfg.get("script") is not None:
            return self.scripted(req, cfg, mode, p)
        model = self.model_for(req.get("model"), cfg)
        n, finish = plan(cfg, limit(req.get("max_completion_tokens")) or limit(req.get("max_tokens")) or
                         limit(req.get("n_predict")))
        call = tool_call_for(req, cfg)
        cid, created = "chatcmpl-" + rand_alnum(32), int(time.time())
        if call:
            arguments = dumps(call[1]).decode()
            fragments = [arguments[:1]] + [arguments[i:i + 3] for i in range(1, len(arguments), 3)]
            n, finish = len(fragments), "tool_calls"
            call_id = rand_alnum(32)
        if not req.get("stream"):
            message = {"role": "assistant", "content": "".join(piece(i) for i in range(n))}
            if call:
                message = {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": call[0], "arguments": arguments}, "id": call_id}]}
            obj = {"choices": [{"finish_reason": finish, "index": 0, "message": message}], "created": created,
                   "model": model, "system_fingerprint": FINGERPRINT, "object": "chat.completion",
                   "usage": llama_usage(p, n), "id": cid, "timings": llama_timings(p, n)}
            return self.respond(200, obj, mode=mode, cfg=cfg)

        def chunk(choice_or_none, **extra):
            obj = {"choices": [choice_or_none] if choice_or_none else [], "created": created, "id": cid,
                   "model": model, "system_fingerprint": FINGERPRINT, "object": "chat.completion.chunk"}
            obj.update(extra)
            return sse(obj)

        def delta(d, finish_reason=None):
            return {"finish_reason": finish_reason, "index": 0, "delta": d}

        events = [(chunk(delta({"role": "assistant", "content": None})), False)]
        if call:
            first = {"index": 0, "id": call_id, "type": "function",
                     "function": {"name": call[0], "arguments": fragments[0]}}
            events.append((chunk(delta({"tool_calls": [first]})), True))
            events += [(chunk(delta({"tool_calls": [{"index": 0, "function": {"arguments": f}}]})), True)
                       for f in fragments[1:]]
        else:
            events += [(chunk(delta({"content": piece(i)})), True) for i in range(n)]
        include_usage = isinstance(req.get("stream_options"), dict) and req["stream_options"].get("include_usage")
        if include_usage:
            events.append((chunk(delta({}, finish)), False))
            events.append((chunk(None, usage=llama_usage(p, n), timings=llama_timings(p, n)), False))
        else:
            events.append((chunk(delta({}, finish), timings=llama_timings(p, n)), False))
        events.append((b"data: [DONE]\n\n", False))
        self.stream("text/event-stream", events, cfg, mode)

    def scripted(self, req, cfg, mode, p):
        """The scripted model: turn N (N = the assistant messages so far) of cfg["script"]."""
        model = self.model_for(req.get("model"), cfg)
        cid, created = "chatcmpl-" + rand_alnum(32), int(time.time())
        turn = scripted_turn(cfg["script"], req["messages"])
        content, calls = turn["content"], turn["calls"]
        n = max(1, len(content) // 4)
        finish = "tool_calls" if calls else "stop"
        usage = llama_usage(p, n)
        if not req.get("stream"):
            message = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = [{"type": "function", "id": c["id"], "function": {
                    "name": c["name"], "arguments": c["arguments"]}} for c in calls]
            obj = {"choices": [{"finish_reason": finish, "index": 0, "message": message}], "created": created,
                   "model": model, "object": "chat.completion", "usage": usage, "id": cid}
            return self.respond(200, obj, mode=mode, cfg=cfg)

        def chunk(choice_or_none, **extra):
            obj = {"choices": [choice_or_none] if choice_or_none else [], "created": created, "id": cid,
                   "model": model, "object": "chat.completion.chunk"}
            obj.update(extra)
            return sse(obj)

        def delta(d, finish_reason=None):
            return {"finish_reason": finish_reason, "index": 0, "delta": d}

        events = [(chunk(delta({"role": "assistant", "content": None})), False)]
        events += [(chunk(delta({"content": content[i:i + 4]})), True) for i in range(0, len(content), 4)]
        for k, c in enumerate(calls):
            args = c["arguments"]
            fragments = [args[i:i + 3] for i in range(0, len(args), 3)] or [""]
            first = {"index": k, "id": c["id"], "type": "function",
                     "function": {"name": c["name"], "arguments": fragments[0]}}
            events.append((chunk(delta({"tool_calls": [first]})), True))
            events += [(chunk(delta({"tool_calls": [{"index": k, "function": {"arguments": f}}]})), True)
                       for f in fragments[1:]]
        events.append((chunk(delta({}, finish)), False))
        include_usage = isinstance(req.get("stream_options"), dict) and req["stream_options"].get("include_usage")
        if include_usage:
            events.append((chunk(None, usage=usage), False))
        events.append((b"data: [DONE]\n\n", False))
        self.stream("text/event-stream", events, cfg, mode)

    def completion(self, req, cfg, mode, native):
        if "prompt" not in req:
            return self.error(LLAMA_MISSING_PROMPT)
        prompt = req["prompt"] if isinstance(req["prompt"], str) else json.dumps(req["prompt"])
        p = len(prompt.split()) + 1
        if not self.context_check(p, cfg):
            return
        model = self.model_for(req.get("model"), cfg)
        max_tokens = limit(req.get("n_predict")) if native else limit(req.get("max_tokens"))
        if native and max_tokens is None:
            max_tokens = limit(req.get("max_tokens"))
        n, finish = plan(cfg, max_tokens)
        stream = bool(req.get("stream"))
        if native:
            settings = dict(_GENERATION_SETTINGS, max_tokens=max_tokens or -1, n_predict=max_tokens or -1,
                            stream=stream)
            final = {"index": 0, "content": "", "tokens": [], "id_slot": 0, "stop": True, "model": model,
                     "tokens_predicted": n, "tokens_evaluated": p, "generation_settings": settings,
                     "prompt": "<s>" + prompt, "has_new_line": False, "truncated": False,
                     "stop_type": "limit" if finish == "length" else "eos", "stopping_word": "",
                     "tokens_cached": p + n, "timings": llama_timings(p, n)}
            if not stream:
                final["content"] = "".join(piece(i) for i in range(n))
                return self.respond(200, final, mode=mode, cfg=cfg)
            events = [(sse({"index": 0, "content": piece(i), "tokens": [1000 + i], "stop": False, "id_slot": -1,
                            "tokens_predicted": i + 1, "tokens_evaluated": p}), True) for i in range(n)]
            events.append((sse(final), False))  # native SSE has no [DONE]
            return self.stream("text/event-stream", events, cfg, mode)
        cid, created = "chatcmpl-" + rand_alnum(32), int(time.time())

        def obj(text, finish_reason, final_fields):
            out = {"choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
                   "created": created, "model": model, "system_fingerprint": FINGERPRINT,
                   "object": "text_completion"}
            if final_fields:
                out["usage"] = llama_usage(p, n)
            out["id"] = cid
            if final_fields:
                out["timings"] = llama_timings(p, n)
            return out

        if not stream:
            return self.respond(200, obj("".join(piece(i) for i in range(n)), finish, True), mode=mode, cfg=cfg)
        events = [(sse(obj(piece(i), None, False)), True) for i in range(n)]
        events += [(sse(obj("", finish, True)), False), (b"data: [DONE]\n\n", False)]
        self.stream("text/event-stream", events, cfg, mode)


# ---- Ollama ----------------------------------------------------------------------------------------------------------


class OllamaHandler(_Handler):
    kind = "ollama"
    ROUTES = {"/": {"GET", "HEAD"}, "/api/tags": {"GET", "HEAD"}, "/api/version": {"GET", "HEAD"},
              "/api/ps": {"GET"}, "/api/show": {"POST"}, "/api/chat": {"POST"}, "/api/generate": {"POST"},
              "/v1/models": {"GET"}, "/v1/chat/completions": {"POST"}}
    GENERATION = {"/api/chat", "/api/generate", "/v1/chat/completions"}

    def base_headers(self):
        return [("Date", email.utils.formatdate(usegmt=True))]

    def stream_headers(self, content_type):
        extra = [("Cache-Control", "no-cache")] if content_type == "text/event-stream" else []
        return [("Content-Type", content_type)] + extra + self.base_headers()

    def find_model(self, name, cfg):
        return isinstance(name, str) and name != "" and ollama_name(name) in cfg["models"]

    def route(self, cfg, body):
        path, method = self.route_path, self.command
        allowed = self.ROUTES.get(path)
        if allowed is None and path.startswith("/v1/models/"):
            allowed = {"GET"}
        if allowed is None:
            return self.respond(404, b"404 page not found", content_type="text/plain")
        if method not in allowed:
            return self.respond(405, b"405 method not allowed", content_type="text/plain")
        generation = path in self.GENERATION
        openai = path.startswith("/v1/")
        mode = self.effective_mode(cfg, generation)
        if self.drop_or_hang(mode):
            return
        if mode == "loading":
            return self.respond(503, openai_error(503, OLLAMA_BUSY) if openai else {"error": OLLAMA_BUSY})
        req = {}
        if method == "POST":
            text = body.decode("utf-8", "replace")
            if mode == "bad-json":
                try:
                    req = json.loads(text)
                except ValueError:
                    req = {}
                stream = req.get("stream", not openai) if isinstance(req, dict) else False
                return self.garbage(bool(stream), sse_stream=openai)
            message = None
            if not text.strip():
                message = "missing request body"
            else:
                try:
                    req = json.loads(text)
                    if not isinstance(req, dict):
                        message = f"json: cannot unmarshal {type(req).__name__} into Go value of type api.ChatRequest"
                except ValueError as e:
                    message = go_json_error(text, e)
            if message:
                return self.respond(400, openai_error(400, message) if openai else {"error": message})
        elif mode == "bad-json":
            return self.garbage(False)
        if path == "/":
            return self.respond(200, b"Ollama is running", content_type="text/plain; charset=utf-8", mode=mode,
                                cfg=cfg)
        if path == "/api/version":
            return self.respond(200, {"version": OLLAMA_VERSION}, mode=mode, cfg=cfg)
        if path == "/api/tags":
            return self.respond(200, {"models": [self.tag(m) for m in cfg["models"]]}, mode=mode, cfg=cfg)
        if path == "/api/ps":
            return self.respond(200, {"models": []}, mode=mode, cfg=cfg)
        if path == "/v1/models":
            return self.respond(200, {"object": "list", "data": [self.v1_model(m) for m in cfg["models"]]},
                                mode=mode, cfg=cfg)
        if path.startswith("/v1/models/"):
            name = path[len("/v1/models/"):]
            if not self.find_model(name, cfg):
                return self.respond(404, openai_error(404, f"model '{name}' not found"))
            return self.respond(200, self.v1_model(ollama_name(name)), mode=mode, cfg=cfg)
        name = req.get("model", req.get("name")) if path == "/api/show" else req.get("model")
        if not isinstance(name, str) or not name:
            return self.respond(400, openai_error(400, "model is required") if openai else
                                {"error": "model is required"})
        if not self.find_model(name, cfg):
            message = f"model '{name}' not found"
            return self.respond(404, openai_error(404, message) if openai else {"error": message})
        if path == "/api/show":
            return self.respond(200, self.show(ollama_name(name), cfg), mode=mode, cfg=cfg)
        if path == "/v1/chat/completions":
            return self.openai_chat(req, name, cfg, mode)
        if path == "/api/chat" and cfg.get("script") is not None:
            return self.scripted_native(req, name, cfg, mode)
        return self.native(req, name, cfg, mode, chat=path == "/api/chat")

    def tag(self, name):
        return {"name": name, "model": name, "modified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                          time.gmtime(self.state.started)),
                "size": 2019393189, "digest": hashlib.sha256(name.encode()).hexdigest(),
                "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                            "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}}

    def v1_model(self, name):
        owner = name.split("/", 1)[0] if "/" in name else "library"
        return {"id": name, "object": "model", "created": self.state.started, "owned_by": owner}

    def show(self, name, cfg):
        return {"modelfile": f"FROM {name}\n", "parameters": "", "template": "{{ .Prompt }}",
                "details": self.tag(name)["details"],
                "model_info": {"general.architecture": "llama", "llama.context_length": cfg["n_ctx"]},
                "capabilities": ["completion", "tools"], "modified_at": self.tag(name)["modified_at"]}

    def native(self, req, model, cfg, mode, chat):
        stream = req.get("stream", True) is not False
        options = req.get("options") if isinstance(req.get("options"), dict) else {}
        base = {"model": model}
        if chat:
            messages = req.get("messages")
            if not messages:  # load (or unload with keep_alive 0) without generating
                reason = "unload" if req.get("keep_alive") in (0, "0", "0s") else "load"
                return self.respond(200, dict(base, created_at=rfc3339_now(),
                                              message={"role": "assistant", "content": ""}, done=True,
                                              done_reason=reason), mode=mode, cfg=cfg)
            p = prompt_tokens(messages, req.get("tools"))
        else:
            prompt = req.get("prompt")
            if not prompt:
                reason = "unload" if req.get("keep_alive") in (0, "0", "0s") else "load"
                return self.respond(200, dict(base, created_at=rfc3339_now(), response="", done=True,
                                              done_reason=reason), mode=mode, cfg=cfg)
            p = len(str(prompt).split()) + 1
        n, finish = plan(cfg, limit(options.get("num_predict")))
        call = tool_call_for(req, cfg) if chat else None

        def line(text, done, **extra):
            obj = dict(base, created_at=rfc3339_now())
            if chat:
                obj["message"] = {"role": "assistant", "content": text}
                if "tool_calls" in extra:
                    obj["message"]["tool_calls"] = extra.pop("tool_calls")
            else:
                obj["response"] = text
            obj["done"] = done
            if done:
                obj["done_reason"] = finish
                if not chat:
                    obj["context"] = [1, 2, 3]
                obj.update(ollama_metrics(p, n))
            return obj

        calls = None
        if call:
            calls = [{"id": "call_" + rand_alnum(8, string.ascii_lowercase + string.digits),
                      "function": {"index": 0, "name": call[0], "arguments": call[1]}}]
            n = 1
        if not stream:
            if calls:
                return self.respond(200, line("", True, tool_calls=calls), mode=mode, cfg=cfg)
            return self.respond(200, line("".join(piece(i) for i in range(n)), True), mode=mode, cfg=cfg)
        if calls:
            events = [(dumps(line("", False, tool_calls=calls)) + b"\n", True)]
        else:
            events = [(dumps(line(piece(i), False)) + b"\n", True) for i in range(n)]
        events.append((dumps(line("", True)) + b"\n", False))
        self.stream("application/x-ndjson", events, cfg, mode)

    def scripted_native(self, req, model, cfg, mode):
        """The scripted model on /api/chat. It insists on options.num_ctx (Ollama silently truncates at its
        default otherwise: an agent must always say what context it needs), and truncates as Ollama does: a
        conversation over num_ctx keeps only its last num_ctx tokens (prompt_eval_count says how many)."""
        options = req.get("options") if isinstance(req.get("options"), dict) else {}
        num_ctx = options.get("num_ctx")
        if not isinstance(num_ctx, int) or isinstance(num_ctx, bool) or num_ctx < 1:
            return self.respond(400, {"error": "the scripted fake wants options.num_ctx (a positive integer): "
                                               "without it Ollama truncates at its default context"})
        messages = req.get("messages") if isinstance(req.get("messages"), list) else []
        p = min(prompt_tokens(messages, req.get("tools")), num_ctx, cfg["n_ctx"])
        turn = scripted_turn(cfg["script"], messages)
        content, calls = turn["content"], turn["calls"]
        base = {"model": model}
        events = [(dumps(dict(base, created_at=rfc3339_now(), message={"role": "assistant", "content": content[i:i + 4]},
                              done=False)) + b"\n", True) for i in range(0, len(content), 4)]
        if calls:  # whole, in one line, arguments as an object (a string when the script wants it malformed)
            native = []
            for c in calls:
                try:
                    args = json.loads(c["arguments"])
                except ValueError:
                    args = c["arguments"]
                native.append({"id": c["id"], "function": {"index": len(native), "name": c["name"], "arguments": args}})
            events.append((dumps(dict(base, created_at=rfc3339_now(),
                                      message={"role": "assistant", "content": "", "tool_calls": native},
                                      done=False)) + b"\n", True))
        n = max(1, len(content) // 4)
        events.append((dumps(dict(base, created_at=rfc3339_now(), message={"role": "assistant", "content": ""},
                                  done=True, done_reason="stop", **ollama_metrics(p, n))) + b"\n", False))
        self.stream("application/x-ndjson", events, cfg, mode)

    def openai_chat(self, req, model, cfg, mode):
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.respond(400, openai_error(400, f"{json.dumps(messages or [])} is too short - 'messages'"))
        p = prompt_tokens(messages, req.get("tools"))
        n, finish = plan(cfg, limit(req.get("max_completion_tokens")) or limit(req.get("max_tokens")))
        call = tool_call_for(req, cfg)
        cid, created = f"chatcmpl-{random.randrange(999)}", int(time.time())
        calls = None
        if call:
            calls = [{"id": "call_" + rand_alnum(8, string.ascii_lowercase + string.digits), "index": 0,
                      "type": "function", "function": {"name": call[0], "arguments": dumps(call[1]).decode()}}]
            n, finish = 1, "tool_calls"
        usage = {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}
        head = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "fp_ollama"}
        if not req.get("stream"):
            message = {"role": "assistant", "content": "".join(piece(i) for i in range(n))}
            if calls:
                message = {"role": "assistant", "content": "", "tool_calls": calls}
            obj = dict(head, choices=[{"index": 0, "message": message, "finish_reason": finish}], usage=usage)
            return self.respond(200, obj, mode=mode, cfg=cfg)

        def chunk(choices, **extra):
            return sse(dict(head, object="chat.completion.chunk", choices=choices, **extra))

        if calls:
            deltas = [{"role": "assistant", "content": "", "tool_calls": calls}]
        else:
            deltas = [{"content": piece(i)} for i in range(n)]
            deltas[0] = {"role": "assistant", "content": piece(0)}
        events = [(chunk([{"index": 0, "delta": d, "finish_reason": None}]), True) for d in deltas]
        events.append((chunk([{"index": 0, "delta": {}, "finish_reason": finish}]), False))
        if isinstance(req.get("stream_options"), dict) and req["stream_options"].get("include_usage"):
            events.append((chunk([], usage=usage), False))
        events.append((b"data: [DONE]\n\n", False))
        self.stream("text/event-stream", events, cfg, mode)


HANDLERS = {"llamacpp": LlamaCppHandler, "ollama": OllamaHandler}


# ---- starting and stopping -------------------------------------------------------------------------------------------


class Fake:
    """A running fake: .url, .state, .stop()."""

    def __init__(self, kind, mode="normal", host="127.0.0.1", port=0, verbose=False, **opts):
        self.state = State(make_config(kind, mode, **opts), verbose)
        self.server = _Server((host, port), HANDLERS[kind], self.state)
        port = self.server.server_address[1]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._stopped = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"fake-{kind}", daemon=True)
        self.thread.start()

    def stop(self, timeout=5.0):
        """Stops serving, ends every connection (hung and keep-alive ones too) and waits for the handlers."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.state.stopping.set()
        with self.state.cond:
            self.state.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()
        self.server.join_handlers(timeout)
        self.thread.join(timeout)


def start_fake(kind, mode="normal", **opts):
    """Starts a fake of `kind` on a thread of this process. Returns (url, stop_fn).

    opts: host ("127.0.0.1"), port (0: any free one), chunks (8), delay_ms (200), models (list or "a,b"),
    all_routes (False), tool_calls ("required" | "auto" | "never"), tool_name, tool_args (dict), n_ctx (4096),
    verbose (False). stop_fn is idempotent."""
    fake = Fake(kind, mode, **opts)
    stop = fake.stop
    return fake.url, stop


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake llama-server / Ollama for tests (see tests/fakes/README.md).")
    ap.add_argument("--kind", required=True, choices=KINDS)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", default="normal", choices=MODES)
    ap.add_argument("--chunks", type=int, default=8, help="content chunks per answer (default 8)")
    ap.add_argument("--delay-ms", type=int, default=200, help="slow mode: pause before each chunk (default 200)")
    ap.add_argument("--models", default=None, help="comma-separated model names")
    ap.add_argument("--all-routes", action="store_true", help="apply the mode to every route, not only generation")
    ap.add_argument("--tool-calls", default="required", choices=TOOL_CALLS)
    ap.add_argument("--tool-name", default=None, help="the tool to call (default: the request's first)")
    ap.add_argument("--tool-args", default=None, help="JSON object: the arguments of every tool call")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    a = ap.parse_args(argv)
    try:
        tool_args = json.loads(a.tool_args) if a.tool_args is not None else None
        fake = Fake(a.kind, a.mode, host=a.host, port=a.port, verbose=a.verbose, chunks=a.chunks,
                    delay_ms=a.delay_ms, models=a.models, all_routes=a.all_routes, tool_calls=a.tool_calls,
                    tool_name=a.tool_name, tool_args=tool_args, n_ctx=a.n_ctx)
    except (ValueError, OSError) as e:
        ap.error(str(e))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:
        print(json.dumps({"url": fake.url, "pid": os.getpid()}), flush=True)
    except OSError:
        pass
    while not done.is_set():
        done.wait(0.2)
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
