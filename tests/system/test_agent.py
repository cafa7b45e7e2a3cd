"""POST /v1/agent (API.md, "Agent"), driven by the scripted fake model of tests/fakes/fake_llm.py (llama-server
kind, `script`): turn N of the script answers a conversation with N assistant messages, so a whole loop runs
deterministically. The commands run in real sandboxes; nothing reaches a real model server."""

import json

import pytest

from scripted_model import MODEL, bash, fake_llm, model, script, server  # noqa: F401 (fixtures)
from server_fixtures import closed_url, daemons, show, wait_until

TOOLS = {"bash", "read_file", "write_file", "edit_file", "list_files"}


def agent(server, body, timeout=60):
    r = server.post("/v1/agent", dict({"model": MODEL}, **body), timeout=timeout)
    assert r.status_code == 200, show(r)
    return r.json()


def sandbox_run(server, sid, cmd):
    r = server.post(f"/v1/sandboxes/{sid}/exec", {"cmd": cmd})
    assert r.status_code == 200, show(r)
    return r.json()


def tool_messages(result):
    return [m for m in result["messages"] if m["role"] == "tool"]


def model_requests(model):
    with model.state.cond:
        return [e["json"] for e in model.state.requests if e["method"] == "POST"]


WRITE_RUN_ANSWER = (
    {"content": "", "tool_calls": [{"name": "write_file", "arguments": {
        "path": "hello.sh", "content": "echo \"hello from $((6 * 7))\"\n"}}]},
    {"content": "", "tool_calls": [bash("sh /work/hello.sh")]},
    {"content": "The script printed: {last_tool}"},
)


def test_the_model_writes_a_script_runs_it_and_answers_with_its_output(server, model):
    script(model, *WRITE_RUN_ANSWER)
    res = agent(server, {"prompt": "write hello.sh and run it"})
    assert res["finish_reason"] == "stop" and res["steps"] == 3
    assert "hello from 42" in res["content"] and res["content"].startswith("The script printed:")
    roles = [m["role"] for m in res["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    system = res["messages"][0]["content"]
    assert "/work" in system and "no network" in system and "120000 ms" in system
    call = res["messages"][2]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "write_file"
    assert json.loads(call["function"]["arguments"])["path"] == "hello.sh"
    tools = tool_messages(res)
    assert [t["tool_call_id"] for t in tools] == [m["tool_calls"][0]["id"] for m in res["messages"]
                                                  if m.get("tool_calls")]
    assert tools[1]["content"].startswith("exit code 0\n") and "hello from 42" in tools[1]["content"]
    # The files are the sandbox's, and it stays for the client to look inside.
    assert sandbox_run(server, res["sandbox_id"], "cat /work/hello.sh")["stdout"] == "echo \"hello from $((6 * 7))\"\n"
    # The model was offered exactly the five tools, as OpenAI function tools without sandbox_id.
    first = model_requests(model)[0]
    assert {t["function"]["name"] for t in first["tools"]} == TOOLS
    for t in first["tools"]:
        assert t["type"] == "function" and "sandbox_id" not in t["function"]["parameters"]["properties"]
    assert first["stream"] is True
    # usage is the sum over the steps.
    fakes = [fake_llm.llama_usage(fake_llm.prompt_tokens(r["messages"], r["tools"]), 1) for r in model_requests(model)]
    assert res["usage"]["prompt_tokens"] == sum(u["prompt_tokens"] for u in fakes)
    assert res["usage"]["total_tokens"] == res["usage"]["prompt_tokens"] + res["usage"]["completion_tokens"]


def test_a_given_sandbox_is_used_and_kept(server, model):
    sid = server.post("/v1/sandboxes", {}).json()["id"]
    sandbox_run(server, sid, "echo earlier > /work/note.txt")
    script(model, {"tool_calls": [{"name": "read_file", "arguments": {"path": "/work/note.txt"}}]},
           {"content": "{last_tool}"})
    res = agent(server, {"prompt": "read note.txt", "sandbox_id": sid})
    assert res["sandbox_id"] == sid and res["content"].strip() == "earlier"


def test_streamed_events_come_in_order_with_arguments_split_across_chunks(server, model):
    script(model, {"content": "Let me run it.", "tool_calls": [bash("echo out; echo err >&2")]},
           {"content": "It said: {last_tool}"})
    stream = server.sse({"model": MODEL, "prompt": "run it", "stream": True}, path="/v1/agent", timeout=60)
    assert stream.status == 200
    events = stream.events()
    stream.close()
    names = [e[0] for e in events]
    assert names[-1] == "done" and names.count("done") == 1
    first_call = names.index("tool_call")
    assert set(names[:first_call]) == {"assistant"}
    assert "".join(d["delta"] for n, d in events[:first_call]) == "Let me run it."
    call = events[first_call][1]
    assert call["name"] == "bash" and json.loads(call["arguments"]) == {"command": "echo out; echo err >&2"}
    outputs = [d for n, d in events if n == "tool_output"]
    result_at = names.index("tool_result")
    assert outputs and all(names.index("tool_output") < result_at for _ in outputs)
    assert {o["stream"] for o in outputs} <= {"stdout", "stderr"} and all(o["id"] == call["id"] for o in outputs)
    assert "out\n" in "".join(o["data"] for o in outputs if o["stream"] == "stdout")
    result = events[result_at][1]
    assert result["id"] == call["id"] and result["exit_code"] == 0 and result["timed_out"] is False
    assert set(names[result_at + 1:-1]) == {"assistant"}
    done = events[-1][1]
    assert done["finish_reason"] == "stop" and done["steps"] == 2 and done["content"].startswith("It said:")
    assert "out" in done["content"]


def test_max_steps_ends_a_model_that_never_stops(server, model):
    script(model, *[{"tool_calls": [bash(f"echo step {i}")]} for i in range(5)])
    res = agent(server, {"prompt": "loop", "max_steps": 2})
    assert res["finish_reason"] == "max_steps" and res["steps"] == 2
    assert len(tool_messages(res)) == 2 and len(model_requests(model)) == 2


def test_malformed_arguments_and_unknown_tools_get_an_error_the_model_can_act_on(server, model):
    script(model, {"tool_calls": [{"name": "bash", "arguments": "{\"command\": \"ls"},
                                  {"name": "python", "arguments": {"code": "1"}},
                                  {"name": "bash", "arguments": {"command": 42}}]},
           {"content": "sorry"})
    res = agent(server, {"prompt": "go"})
    assert res["finish_reason"] == "stop"
    bad_json, unknown, wrong_type = (t["content"] for t in tool_messages(res))
    assert "not valid JSON" in bad_json
    assert "no tool named \"python\"" in unknown and "bash" in unknown
    assert "command" in wrong_type and "string" in wrong_type


@pytest.mark.parametrize("form", ["bare", "fenced", "tags"])
def test_tool_calls_written_in_the_content_are_run_and_recorded_as_tool_calls(server, model, form):
    call = json.dumps({"name": "bash", "arguments": {"command": "echo via-content"}})
    content = {"bare": call, "fenced": f"I will run:\n```json\n{call}\n```\n",
               "tags": f"<tool_call>\n{call}\n</tool_call>"}[form]
    script(model, {"content": content}, {"content": "{last_tool}"})
    res = agent(server, {"prompt": "go"})
    assert res["steps"] == 2 and "via-content" in res["content"]
    assistant = res["messages"][2]
    assert assistant["tool_calls"][0]["function"]["name"] == "bash"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"command": "echo via-content"}
    assert tool_messages(res)[0]["tool_call_id"] == assistant["tool_calls"][0]["id"]


def test_json_that_names_no_tool_is_an_answer(server, model):
    script(model, {"content": "{\"answer\": 42}"})
    res = agent(server, {"prompt": "go"})
    assert res["steps"] == 1 and res["content"] == "{\"answer\": 42}"


def test_a_command_past_the_step_budget_is_killed_and_said_so(server, model):
    script(model, {"tool_calls": [bash("sleep 30")]}, {"content": "{last_tool}"})
    res = agent(server, {"prompt": "go", "step_timeout_ms": 300}, timeout=20)
    assert res["content"].startswith("timed out"), res["content"]


def test_the_run_budget_ends_the_run(server, model):
    script(model, *[{"tool_calls": [bash("sleep 30")]} for _ in range(5)])
    res = agent(server, {"prompt": "go", "timeout_ms": 400}, timeout=20)
    assert res["finish_reason"] == "timeout" and res["steps"] == 1


def test_a_client_that_disconnects_ends_the_run_and_its_command(server, model):
    script(model, {"tool_calls": [bash("echo started; exec sleep 97")]}, {"content": "never"})
    stream = server.sse({"model": MODEL, "prompt": "go", "stream": True}, path="/v1/agent", timeout=30)
    sid = None
    while (e := stream.next_event()) is not None:
        if e[0] == "tool_output" and "started" in e[1]["data"]:
            break
    assert e is not None
    stream.close()
    sid = server.get("/v1/sandboxes").json()["data"][0]["id"]

    def sleeping():
        return "sleep 97" in sandbox_run(server, sid, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")["stdout"]

    assert wait_until(lambda: not sleeping(), 10), "the command still runs"
    assert len(model_requests(model)) == 1


@pytest.mark.parametrize("body, word", [({}, "model"), ({"model": MODEL}, "prompt"),
                                        ({"model": MODEL, "prompt": "x", "max_steps": 0}, "max_steps"),
                                        ({"model": MODEL, "prompt": "x", "messages": []}, "prompt")])
def test_bad_requests_are_400(server, body, word):
    r = server.post("/v1/agent", body)
    assert r.status_code == 400 and word in r.json()["error"]["message"], show(r)


def test_unknown_model_and_sandbox_are_404(server):
    r = server.post("/v1/agent", {"model": "nope", "prompt": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", show(r)
    assert server.get("/v1/sandboxes").json()["data"] == []  # nothing ran: the run's sandbox is gone
    r = server.post("/v1/agent", {"model": MODEL, "prompt": "x", "sandbox_id": "sbx_0000000000000000"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "sandbox_not_found", show(r)


def test_agent_steps_are_in_the_sandboxs_audit_log(server, model):
    script(model, *WRITE_RUN_ANSWER)
    res = agent(server, {"prompt": "write hello.sh and run it"})
    r = server.get(f"/v1/sandboxes/{res['sandbox_id']}/history")
    assert r.status_code == 200, show(r)
    got = r.json()["data"]
    assert [(e["via"], e["tool"]) for e in got] == [("agent", "write_file"), ("agent", "bash")], got
    assert got[0]["arguments"] == {"path": "hello.sh"} and got[1]["arguments"] == {"command": "sh /work/hello.sh"}
    assert got[1]["exit_code"] == 0 and got[1]["bytes"] == len("hello from 42\n"), got[1]


# ---- Ollama: the context asked for (options.num_ctx on /api/chat), and said when it is outgrown ----

@pytest.fixture
def ollama(request):
    fake = fake_llm.Fake("ollama", models=["scripted:latest"], script=[], n_ctx=getattr(request, "param", 32768))
    yield fake
    fake.stop()


@pytest.fixture
def oserver(lms_bin, tmp_path, ollama):
    with daemons(lms_bin, tmp_path, base_args=("--pool-size", "0")) as start:
        yield start("--ollama-url", ollama.url, "--llamacpp-url", closed_url())


def native_requests(fake, path):
    with fake.state.cond:
        return [e["json"] for e in fake.state.requests if e["method"] == "POST" and e["path"] == path]


def test_ollama_gets_a_context_large_enough_for_the_conversation(oserver, ollama):
    script(ollama, *WRITE_RUN_ANSWER)
    r = oserver.post("/v1/agent", {"model": "ollama/scripted", "prompt": "write hello.sh and run it"}, timeout=60)
    assert r.status_code == 200, show(r)
    res = r.json()
    assert res["finish_reason"] == "stop" and "hello from 42" in res["content"], res
    chats = native_requests(ollama, "/api/chat")
    assert len(chats) == 3 and native_requests(ollama, "/v1/chat/completions") == []
    for c in chats:
        n = c["options"]["num_ctx"]
        assert n >= 4096 and n & (n - 1) == 0 and n >= len(json.dumps(c["messages"])) // 3, c["options"]
        assert c["stream"] is True and {t["function"]["name"] for t in c["tools"]} == TOOLS
    # Ollama's own message form: the tool call's arguments as an object, the tool result named.
    assistant = next(m for m in chats[1]["messages"] if m.get("tool_calls"))
    assert isinstance(assistant["tool_calls"][0]["function"]["arguments"], dict)
    assert next(m for m in chats[1]["messages"] if m["role"] == "tool")["tool_name"] == "write_file"
    # The model's limit is asked once (cached), and the result says what was asked for.
    assert len(native_requests(ollama, "/api/show")) == 1
    assert res["context"]["limit"] == 32768 and res["context_exceeded"] is False, res["context"]
    assert res["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("ollama", [600], indirect=True)
def test_a_conversation_that_outgrows_the_model_is_said_so(oserver, ollama):
    script(ollama, {"tool_calls": [bash("seq 1 3000")]}, {"content": "done"})
    stream = oserver.sse({"model": "ollama/scripted", "prompt": "count", "stream": True}, path="/v1/agent",
                         timeout=60)
    events = stream.events()
    stream.close()
    names = [e[0] for e in events]
    assert names.count("warning") == 1, names
    warning = next(json.loads(e[1]) if isinstance(e[1], str) else e[1] for e in events if e[0] == "warning")
    assert warning["code"] == "context_exceeded" and "600 tokens" in warning["message"], warning
    done = events[-1][1]
    done = json.loads(done) if isinstance(done, str) else done
    assert done["context_exceeded"] is True and done["context"]["limit"] == 600, done["context"]
    # Never more than the model can take.
    assert all(c["options"]["num_ctx"] <= 600 for c in native_requests(ollama, "/api/chat"))


def test_confirm_stops_before_the_calls_and_the_conversation_given_back_runs_them(server, model):
    script(model, {"content": "two things", "tool_calls": [bash("echo yes-ran > /work/a"), bash("echo no > /work/b")]},
           {"content": "ok: {last_tool}"})
    res = agent(server, {"prompt": "do it", "confirm": True})
    assert res["finish_reason"] == "tool_calls" and res["steps"] == 1, res
    last = res["messages"][-1]
    assert last["role"] == "assistant" and len(last["tool_calls"]) == 2
    sid = res["sandbox_id"]
    assert sandbox_run(server, sid, "ls /work")["stdout"] == ""  # nothing ran yet
    # The client declines the second call (its own tool message) and sends the conversation back.
    declined = {"role": "tool", "tool_call_id": last["tool_calls"][1]["id"], "name": "bash", "content": "declined"}
    again = agent(server, {"messages": res["messages"][1:] + [declined], "sandbox_id": sid, "confirm": True})
    assert again["finish_reason"] == "stop" and again["content"].startswith("ok: exit code 0"), again
    assert sandbox_run(server, sid, "ls /work")["stdout"] == "a\n"
    tools = tool_messages(again)
    assert [t["tool_call_id"] for t in tools] == [declined["tool_call_id"], last["tool_calls"][0]["id"]]
    assert server.post("/v1/agent", {"model": MODEL, "prompt": "x", "confirm": "yes"}).status_code == 400
