"""POST /mcp, the MCP server over Streamable HTTP (API.md "MCP"; docs/API-NOTES.md "MCP"), against the real daemon:
raw HTTP for each rule of the transport and of JSON-RPC, both eras (the legacy initialize handshake served
statelessly, and the 2026-07-28 per-request _meta with its header checks), the tools, and the official TypeScript
client (@modelcontextprotocol/sdk, pinned in tests/compat/package.json) over Streamable HTTP."""

import base64
import os
import re
import shutil
import uuid

import pytest

from conftest import host_pids_with, unique_marker, wait_pids_gone
from server_fixtures import EXEC_FIELDS, cut, daemons, show, wait_until

pytestmark = pytest.mark.require_root

MODERN = "2026-07-28"
LEGACY = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
TOOLS = {"sandbox_create", "bash", "read_file", "write_file", "edit_file", "list_files", "sandbox_delete"}
NODE_TIMEOUT = 180


@pytest.fixture
def start(lms_bin, tmp_path):
    with daemons(lms_bin, tmp_path, base_args=("--pool-size", "0")) as start:
        yield start


@pytest.fixture
def server(start):
    return start()


def rpc(s, method, params=None, *, id=1, headers=None, **kwargs):
    body = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        body["id"] = id
    if params is not None:
        body["params"] = params
    return s.post("/mcp", body, headers=headers, **kwargs)


def modern_meta(**extra):
    return {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}, **extra}


def modern_headers(method, name=None, version=MODERN):
    h = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    if name is not None:
        h["Mcp-Name"] = name
    return h


def modern(s, method, params=None, *, headers=None, **kwargs):
    params = dict(params or {})
    params["_meta"] = modern_meta(**params.get("_meta", {}))
    h = modern_headers(method, params.get("name"))
    h.update(headers or {})
    return rpc(s, method, params, headers=h, **kwargs)


def result_of(resp, id=1):
    assert resp.status_code == 200, show(resp)
    body = resp.json()
    assert body.get("jsonrpc") == "2.0" and body.get("id") == id and "result" in body, body
    return body["result"]


def assert_rpc_error(resp, status, code, id=1):
    assert resp.status_code == status, show(resp)
    body = resp.json()
    assert body.get("jsonrpc") == "2.0" and "result" not in body, body
    assert body.get("id") == id, body
    assert body["error"]["code"] == code and body["error"]["message"], body
    return body["error"]


def call(s, name, arguments=None, **kwargs):
    return result_of(rpc(s, "tools/call", {"name": name, "arguments": arguments or {}}, **kwargs))


def text(result):
    return "".join(c["text"] for c in result["content"] if c["type"] == "text")


def new_sandbox(s):
    r = call(s, "sandbox_create")
    assert r["isError"] is False, r
    return r["structuredContent"]["sandbox_id"]


# ---- the legacy era: initialize, stateless ---------------------------------------------------------------------

@pytest.mark.parametrize("version", LEGACY)
def test_initialize_answers_each_legacy_version_with_itself_and_no_session(server, version):
    r = rpc(server, "initialize", {"protocolVersion": version, "capabilities": {},
                                   "clientInfo": {"name": "t", "version": "1"}})
    res = result_of(r)
    assert res["protocolVersion"] == version, res
    assert res["serverInfo"]["name"] == "lm-sandbox" and res["serverInfo"]["version"], res
    assert "tools" in res["capabilities"], res
    assert "resultType" not in res, "a legacy client gets a legacy result"
    assert r.headers.get("Mcp-Session-Id") is None, "the server is stateless: it mints no session"
    assert r.headers["Content-Type"].startswith("application/json")


def test_initialize_with_an_unknown_version_offers_the_latest_legacy_one(server):
    assert result_of(rpc(server, "initialize", {"protocolVersion": "2023-01-01", "capabilities": {}}))[
        "protocolVersion"] == "2025-11-25"
    assert_rpc_error(rpc(server, "initialize", {"capabilities": {}}), 200, -32602)


def test_notifications_are_accepted_with_202_and_no_body(server):
    for method in ("notifications/initialized", "notifications/cancelled"):
        r = rpc(server, method, {"requestId": 1}, id=None)
        assert r.status_code == 202 and r.content == b"", show(r)


def test_get_and_delete_are_405_with_allow(server):
    for method in ("GET", "DELETE"):
        r = server.request(method, "/mcp")
        assert r.status_code == 405, show(r)
        assert "POST" in r.headers["Allow"], r.headers


def test_requests_are_served_without_initialize_and_ping_answers(server):
    assert result_of(rpc(server, "ping")) == {}
    res = result_of(rpc(server, "tools/list", id="list-1"), id="list-1")
    assert {t["name"] for t in res["tools"]} == TOOLS
    assert "ttlMs" not in res and "resultType" not in res, res


def test_tools_have_precise_schemas(server):
    tools = {t["name"]: t for t in result_of(rpc(server, "tools/list"))["tools"]}
    for name, t in tools.items():
        assert len(t["description"]) > 30, name
        schema = t["inputSchema"]
        assert schema["type"] == "object" and isinstance(schema["properties"], dict), name
        for prop, spec in schema["properties"].items():
            assert spec.get("type") and spec.get("description"), (name, prop)
        assert set(schema.get("required", [])) <= set(schema["properties"]), name
        assert t["outputSchema"]["type"] == "object", name
        if name != "sandbox_create":
            assert "sandbox_id" in schema["properties"], name
    assert tools["bash"]["inputSchema"]["required"] == ["command"]
    assert set(tools["bash"]["inputSchema"]["properties"]) == {"sandbox_id", "command", "timeout_ms"}
    assert set(tools["read_file"]["inputSchema"]["properties"]) == {"sandbox_id", "path", "offset", "limit"}
    assert set(tools["write_file"]["inputSchema"]["required"]) == {"path", "content"}
    assert set(tools["edit_file"]["inputSchema"]["required"]) == {"path", "old", "new"}
    assert tools["list_files"]["inputSchema"]["required"] == ["path"]
    assert tools["sandbox_delete"]["inputSchema"]["required"] == ["sandbox_id"]
    assert set(EXEC_FIELDS) - {"signal"} <= set(tools["bash"]["outputSchema"]["properties"])


# ---- the 2026-07-28 era: per-request _meta --------------------------------------------------------------------

def test_server_discover_lists_both_eras_and_says_its_result_type(server):
    res = result_of(modern(server, "server/discover"))
    assert res["supportedVersions"][0] == MODERN and set(LEGACY) <= set(res["supportedVersions"]), res
    assert res["resultType"] == "complete", res
    assert "tools" in res["capabilities"], res
    assert res["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "lm-sandbox", res
    assert isinstance(res["ttlMs"], int) and res["cacheScope"] in ("public", "private"), res


def test_modern_tools_list_carries_cache_hints(server):
    res = result_of(modern(server, "tools/list"))
    assert {t["name"] for t in res["tools"]} == TOOLS
    assert res["resultType"] == "complete" and res["ttlMs"] > 0 and res["cacheScope"] == "public", res


def test_modern_tools_call_runs_and_says_its_result_type(server):
    res = result_of(modern(server, "tools/call", {"name": "bash", "arguments": {"command": "echo modern"}}))
    assert res["resultType"] == "complete" and res["isError"] is False, res
    assert res["structuredContent"]["stdout"] == "modern\n"


def test_mcp_name_may_come_base64_encoded(server):
    encoded = "=?base64?" + base64.b64encode(b"bash").decode() + "?="
    res = result_of(modern(server, "tools/call", {"name": "bash", "arguments": {"command": "true"}},
                           headers={"Mcp-Name": encoded}))
    assert res["isError"] is False, res


@pytest.mark.parametrize("headers, why", [
    ({"MCP-Protocol-Version": None}, "protocol version header missing"),
    ({"Mcp-Method": None}, "method header missing"),
    ({"Mcp-Method": "tools/list"}, "method header differs"),
    ({"Mcp-Name": None}, "name header missing"),
    ({"Mcp-Name": "read_file"}, "name header differs"),
    ({"Mcp-Name": "=?base64?" + base64.b64encode(b"read_file").decode() + "?="}, "encoded name differs"),
])
def test_headers_that_do_not_match_the_body_are_header_mismatch(server, headers, why):
    params = {"name": "bash", "arguments": {"command": "true"}, "_meta": modern_meta()}
    h = modern_headers("tools/call", "bash")
    for k, v in headers.items():
        if v is None:
            del h[k]
        else:
            h[k] = v
    err = assert_rpc_error(rpc(server, "tools/call", params, headers=h), 400, -32020)
    assert "header" in err["message"].lower(), (why, err)


def test_a_version_header_that_differs_from_meta_is_header_mismatch(server):
    for version in ("2025-11-25", "2099-01-01"):
        params = {"_meta": modern_meta()}
        assert_rpc_error(rpc(server, "tools/list", params, headers=modern_headers("tools/list", version=version)),
                         400, -32020)


def test_whitespace_around_a_header_value_is_not_part_of_it(server):
    res = result_of(modern(server, "tools/call", {"name": "bash", "arguments": {"command": "true"}},
                           headers={"Mcp-Name": "bash \t", "Mcp-Method": "tools/call  "}))
    assert res["isError"] is False, res


def test_initialize_with_modern_meta_is_not_a_modern_method(server):
    assert_rpc_error(modern(server, "initialize", {"protocolVersion": MODERN, "capabilities": {}}), 404, -32601)


def test_an_unsupported_version_lists_the_supported_ones(server):
    meta = modern_meta(**{"io.modelcontextprotocol/protocolVersion": "2099-01-01"})
    err = assert_rpc_error(rpc(server, "tools/list", {"_meta": meta},
                               headers=modern_headers("tools/list", version="2099-01-01")), 400, -32022)
    assert MODERN in err["data"]["supported"] and err["data"]["requested"] == "2099-01-01", err
    # The same through the header alone, on a legacy request.
    err = assert_rpc_error(rpc(server, "tools/list", headers={"MCP-Protocol-Version": "1900-01-01"}), 400, -32022)
    assert "2025-11-25" in err["data"]["supported"], err


def test_a_modern_header_without_meta_or_capabilities_is_invalid_params(server):
    assert_rpc_error(rpc(server, "tools/list", headers=modern_headers("tools/list")), 400, -32602)
    meta = modern_meta()
    del meta["io.modelcontextprotocol/clientCapabilities"]
    err = assert_rpc_error(rpc(server, "tools/list", {"_meta": meta}, headers=modern_headers("tools/list")), 400,
                           -32602)
    assert "clientCapabilities" in err["message"], err


def test_unknown_methods_are_method_not_found(server):
    # Modern: 404 with the JSON-RPC error, so that a client tells it from a server without the endpoint.
    assert_rpc_error(modern(server, "resources/list"), 404, -32601)
    assert_rpc_error(modern(server, "ping"), 404, -32601)  # removed in 2026-07-28
    assert_rpc_error(rpc(server, "resources/list"), 200, -32601)
    assert_rpc_error(rpc(server, "server/discover"), 200, -32601)  # a legacy request: no such method there


# ---- JSON-RPC: malformed, batches, wrong types ------------------------------------------------------------------

def test_malformed_json_is_parse_error(server):
    r = server.post("/mcp", b'{"jsonrpc": "2.0", "id": 1, "method": ', headers={"Content-Type": "application/json"})
    err = assert_rpc_error(r, 400, -32700, id=None)
    assert "line 1" in err["message"], err


@pytest.mark.parametrize("body, code, id", [
    ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], -32600, None),
    (b'"a string"', -32600, None),
    (b'42', -32600, None),
    ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, -32600, 1),
    ({"id": 1, "method": "ping"}, -32600, 1),
    ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}, -32600, None),
    ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, -32600, None),
    ({"jsonrpc": "2.0", "id": 1, "method": 7}, -32600, 1),
    ({"jsonrpc": "2.0", "id": 1, "method": ""}, -32600, 1),
    ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": "x"}, -32600, 1),
    ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}, -32602, 1),
    ({"jsonrpc": "2.0", "id": 1, "result": {}}, -32600, 1),
])
def test_invalid_requests_get_the_proper_error(server, body, code, id):
    assert_rpc_error(server.post("/mcp", body), 400, code, id=id)


def test_wrong_tools_call_params_are_invalid_params(server):
    assert_rpc_error(rpc(server, "tools/call", {"name": 7}), 200, -32602)
    assert_rpc_error(rpc(server, "tools/call", {"arguments": {}}), 200, -32602)
    assert_rpc_error(rpc(server, "tools/call", {"name": "bash", "arguments": ["ls"]}), 200, -32602)
    err = assert_rpc_error(rpc(server, "tools/call", {"name": "rm_rf", "arguments": {}}), 200, -32602)
    assert "rm_rf" in err["message"] and "bash" in err["message"], err
    assert_rpc_error(rpc(server, "tools/call", {"name": "bash", "arguments": {"command": "true"},
                                                 "_meta": {"progressToken": {"x": 1}}}), 200, -32602)
    assert_rpc_error(rpc(server, "tools/list", {"cursor": 3}), 200, -32602)


def test_bounded_body_and_content_type(server):
    r = server.post("/mcp", b"x" * (9 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, show(r)
    r = server.post("/mcp", b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, show(r)
    r = rpc(server, "ping", headers={"Accept": "text/html"})
    assert r.status_code == 406 and r.json()["error"]["code"] == -32600, show(r)


# ---- the tools ---------------------------------------------------------------------------------------------------

def test_bash_returns_the_exec_result_beside_the_text(server):
    sbx = new_sandbox(server)
    r = call(server, "bash", {"sandbox_id": sbx, "command": "echo out; echo err >&2"})
    assert r["isError"] is False
    st = r["structuredContent"]
    for field, kind in EXEC_FIELDS.items():
        assert isinstance(st[field], kind), (field, st)
    assert st["stdout"] == "out\n" and st["stderr"] == "err\n" and st["exit_code"] == 0 and st["sandbox_id"] == sbx
    t = text(r)
    assert t.startswith("exit code 0\n"), "the flags come first"
    assert "out\n" in t and "err\n" in t


def test_a_failing_command_is_a_result_with_is_error(server):
    sbx = new_sandbox(server)
    r = call(server, "bash", {"sandbox_id": sbx, "command": "exit 7"})
    assert r["isError"] is True and r["structuredContent"]["exit_code"] == 7, r
    assert text(r).startswith("exit code 7")
    r = call(server, "bash", {"sandbox_id": sbx, "command": "sleep 5", "timeout_ms": 300})
    assert r["isError"] is True and r["structuredContent"]["timed_out"] is True, r
    assert text(r).startswith("timed out"), text(r)


def test_bad_arguments_are_results_a_model_can_correct(server):
    r = call(server, "bash", {"command": 42})
    assert r["isError"] is True and "command" in text(r) and "string" in text(r), r
    r = call(server, "bash", {})
    assert r["isError"] is True and "command" in text(r), r
    r = call(server, "read_file", {"path": "/x", "offset": -1})
    assert r["isError"] is True and "offset" in text(r), r
    r = call(server, "bash", {"sandbox_id": "sbx_0000000000000000", "command": "true"})
    assert r["isError"] is True and "does not exist" in text(r), r


def test_a_call_without_sandbox_id_makes_one_and_names_it(server):
    r = call(server, "bash", {"command": "echo hi > /work/f; echo made"})
    sbx = r["structuredContent"]["sandbox_id"]
    assert re.fullmatch(r"sbx_[0-9a-f]{16}", sbx) and sbx in text(r), r
    assert server.get(f"/v1/sandboxes/{sbx}").status_code == 200
    again = call(server, "read_file", {"sandbox_id": sbx, "path": "/work/f"})
    assert again["structuredContent"]["stdout"] == "hi\n" and sbx not in text(again), again


def test_output_over_the_budget_keeps_head_and_tail(server):
    sbx = new_sandbox(server)
    r = call(server, "bash", {"sandbox_id": sbx, "command": "seq 1 20000"})
    out = r["structuredContent"]["stdout"]
    m = re.search(r"\n\[… (\d+) bytes omitted …\]\n", out)
    assert m, out[:200]
    full = "".join(f"{i}\n" for i in range(1, 20001))
    head, tail = out[:m.start()], out[m.end():]
    assert full.startswith(head) and full.endswith(tail) and len(head) > 4000 and len(tail) > 4000
    assert len(head) + len(tail) + int(m.group(1)) == len(full)
    assert len(out.encode()) <= 16 * 1024 + 64
    assert m.group(0) in text(r)


def test_file_tools_write_read_edit_and_list(server):
    sbx = new_sandbox(server)
    content = "alpha\nbeta\ngamma\nbeta\n"
    w = call(server, "write_file", {"sandbox_id": sbx, "path": "/work/deep/dir/f.txt", "content": content})
    assert w["isError"] is False, w
    assert call(server, "read_file", {"sandbox_id": sbx, "path": "deep/dir/f.txt"})["structuredContent"][
        "stdout"] == content
    part = call(server, "read_file", {"sandbox_id": sbx, "path": "deep/dir/f.txt", "offset": 2, "limit": 2})
    assert part["structuredContent"]["stdout"] == "beta\ngamma\n", part
    none = call(server, "edit_file", {"sandbox_id": sbx, "path": "deep/dir/f.txt", "old": "delta", "new": "x"})
    assert none["isError"] is True and "matched 0 times" in text(none), none
    two = call(server, "edit_file", {"sandbox_id": sbx, "path": "deep/dir/f.txt", "old": "beta", "new": "x"})
    assert two["isError"] is True and "matched 2 times" in text(two), two
    one = call(server, "edit_file", {"sandbox_id": sbx, "path": "deep/dir/f.txt", "old": "gamma\nbeta", "new": "G"})
    assert one["isError"] is False, one
    after = call(server, "bash", {"sandbox_id": sbx, "command": "cat /work/deep/dir/f.txt"})
    assert after["structuredContent"]["stdout"] == "alpha\nbeta\nG\n"
    ls = call(server, "list_files", {"sandbox_id": sbx, "path": "/work/deep/dir"})
    assert ls["isError"] is False and "f.txt" in ls["structuredContent"]["stdout"], ls
    missing = call(server, "read_file", {"sandbox_id": sbx, "path": "/work/nope"})
    assert missing["isError"] is True and "No such file" in text(missing), missing


def test_file_tools_have_the_sandbox_users_permissions(server):
    sbx = new_sandbox(server)
    shadow = call(server, "read_file", {"sandbox_id": sbx, "path": "/etc/shadow"})
    assert shadow["isError"] is True and "Permission denied" in text(shadow), shadow
    ro = call(server, "write_file", {"sandbox_id": sbx, "path": "/usr/lms-mcp-test", "content": "x"})
    assert ro["isError"] is True and not os.path.exists("/usr/lms-mcp-test"), ro
    edit = call(server, "edit_file", {"sandbox_id": sbx, "path": "/etc/hostname", "old": "a", "new": "b"})
    assert edit["isError"] is True, edit


def test_sandbox_delete_ends_the_sandbox(server):
    sbx = new_sandbox(server)
    r = call(server, "sandbox_delete", {"sandbox_id": sbx})
    assert r["isError"] is False and r["structuredContent"] == {"sandbox_id": sbx, "deleted": True}, r
    assert server.get(f"/v1/sandboxes/{sbx}").status_code == 404
    again = call(server, "sandbox_delete", {"sandbox_id": sbx})
    assert again["isError"] is True, again


# ---- Server-Sent Events: progress, cancellation -----------------------------------------------------------------

SSE_ACCEPT = {"Accept": "application/json, text/event-stream"}


def test_a_long_bash_sends_progress_then_the_response_on_sse(server):
    sbx = new_sandbox(server)
    body = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "bash", "arguments": {"sandbox_id": sbx, "command": "for i in 1 2 3; do echo $i; "
                                                                                  "sleep 0.4; done"},
                       "_meta": {"progressToken": "tok-1"}}}
    st = server.sse(body, headers=SSE_ACCEPT, path="/mcp")
    try:
        assert st.status == 200 and st.header("Content-Type").startswith("text/event-stream")
        events = [data for _, data in st.events()]
    finally:
        st.close()
    progress = [e for e in events if e.get("method") == "notifications/progress"]
    assert len(progress) >= 2, events
    assert all(p["params"]["progressToken"] == "tok-1" for p in progress)
    values = [p["params"]["progress"] for p in progress]
    assert values == sorted(values) and len(set(values)) == len(values), values
    final = events[-1]
    assert final["id"] == 5 and final["result"]["structuredContent"]["stdout"] == "1\n2\n3\n", final
    assert len(events) == len(progress) + 1


def test_without_a_progress_token_the_stream_has_only_the_response(server):
    body = {"jsonrpc": "2.0", "id": "x", "method": "tools/call",
            "params": {"name": "bash", "arguments": {"command": "sleep 0.3; echo done"}}}
    st = server.sse(body, headers=SSE_ACCEPT, path="/mcp")
    try:
        events = [data for _, data in st.events()]
    finally:
        st.close()
    assert len(events) == 1 and events[0]["id"] == "x", events


def test_closing_the_stream_cancels_the_command(server):
    sbx = new_sandbox(server)
    marker = unique_marker()
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "bash", "arguments": {"sandbox_id": sbx, "command": f"echo up; sleep {marker}"},
                       "_meta": {"progressToken": 1}}}
    st = server.sse(body, headers=SSE_ACCEPT, path="/mcp")
    try:
        first = st.next_event()
        assert first and first[1]["method"] == "notifications/progress", first
        pids = wait_until(lambda: host_pids_with(marker), 10)
        assert pids, "the command never started"
    finally:
        st.close()
    assert wait_pids_gone(pids, 10) == [], "the command outlived its closed stream"
    # The sandbox itself stays, and takes the next call.
    assert call(server, "bash", {"sandbox_id": sbx, "command": "echo still"})["structuredContent"][
        "stdout"] == "still\n"


# ---- Origin, Host, CORS, the token ------------------------------------------------------------------------------

def test_a_foreign_origin_is_403(server):
    r = rpc(server, "ping", headers={"Origin": "http://evil.example"})
    err = assert_rpc_error(r, 403, -32000, id=None)
    assert "--cors-origin" in err["message"], err
    assert "Access-Control-Allow-Origin" not in r.headers


def test_the_servers_own_origin_is_allowed(server):
    for origin in (server.url, f"http://localhost:{server.port}"):
        r = rpc(server, "ping", headers={"Origin": origin})
        assert result_of(r) == {}, origin
    assert rpc(server, "ping", headers={"Origin": f"http://localhost:{server.port + 1}"}).status_code == 403


def test_a_rebound_host_name_is_403(server):
    r = rpc(server, "ping", headers={"Host": f"attacker.example:{server.port}"})
    assert_rpc_error(r, 403, -32000, id=None)


def test_cors_origin_gets_cors_headers_and_a_preflight(start):
    s = start("--cors-origin", "https://app.example", "--cors-origin", "http://other.example:3000")
    r = rpc(s, "ping", headers={"Origin": "https://app.example"})
    assert result_of(r) == {}
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example" and "Origin" in r.headers["Vary"]
    pre = s.request("OPTIONS", "/mcp", headers={"Origin": "http://other.example:3000",
                                                "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "content-type, mcp-protocol-version"})
    assert pre.status_code == 204, show(pre)
    assert pre.headers["Access-Control-Allow-Origin"] == "http://other.example:3000"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    allowed = pre.headers["Access-Control-Allow-Headers"].lower()
    for h in ("authorization", "content-type", "mcp-protocol-version", "mcp-method", "mcp-name"):
        assert h in allowed, allowed
    assert s.request("OPTIONS", "/mcp", headers={"Origin": "https://evil.example"}).status_code == 403


def test_mcp_is_behind_the_token(start):
    token = f"tok-{uuid.uuid4().hex}"
    s = start(env={"LM_SANDBOX_API_TOKEN": token})
    assert rpc(s, "ping").status_code == 401
    assert result_of(rpc(s, "ping", headers={"Authorization": f"Bearer {token}"})) == {}


# ---- the official TypeScript client -----------------------------------------------------------------------------

def test_the_official_typescript_sdk_over_streamable_http(start):
    from test_compat_node import ensure_sdk, installed_version, run_node_test
    node = shutil.which("node")
    if node is None:
        pytest.skip("NO NODE: the MCP SDK test needs Node.js (Debian: apt-get install nodejs npm)")
    ensure_sdk()
    token = f"tok-{uuid.uuid4().hex}"
    s = start(env={"LM_SANDBOX_API_TOKEN": token})
    env = dict(os.environ, LMS_MCP_URL=s.url + "/mcp", LMS_TOKEN=token, NO_COLOR="1",
               NO_PROXY="127.0.0.1,localhost,::1", no_proxy="127.0.0.1,localhost,::1")
    rc, out = run_node_test(node, "mcp-sdk.test.mjs", env, NODE_TIMEOUT)
    assert rc == 0, (f"@modelcontextprotocol/sdk {installed_version('@modelcontextprotocol/sdk')} failed against "
                     f"POST /mcp: exit {rc}\n{cut(out, 8000)}\n--- daemon ---\n{s.describe()}")


def test_hostile_bytes_in_headers_and_arguments_get_clean_errors(server):
    # A header value that is not ASCII, and numbers far out of range: a JSON-RPC error or an error result,
    # never a 500 or a crash.
    params = {"_meta": modern_meta()}
    r = rpc(server, "tools/list", params, headers={**modern_headers("tools/list"),
                                                     "Mcp-Method": "tools/l\u00efst".encode("latin-1")})
    assert_rpc_error(r, 400, -32020)
    r = rpc(server, "tools/list", headers={"MCP-Protocol-Version": "\u00ff".encode("latin-1")})
    assert_rpc_error(r, 400, -32022)
    big = call(server, "read_file", {"path": "/etc/hostname", "offset": 1e300, "limit": 9223372036854775807})
    assert big["isError"] is False and big["structuredContent"]["stdout"] == "", big
    r = call(server, "bash", {"command": "echo ok", "timeout_ms": 1e300})
    assert r["structuredContent"]["stdout"] == "ok\n", r
    assert server.get("/healthz").status_code == 200
