#!/usr/bin/python3
"""The agent's own cost per step (issue 14; goal <= 2 ms): POST /v1/agent against the scripted fake model of
tests/fakes/fake_llm.py, each step a `bash` call of `true`, then an answer. The daemon's result carries
`timings` (API-NOTES.md, "Agent"): the run's wall time, the time spent waiting on the model (the backend request
to the answer's last byte, less the daemon's own parsing of it), and in the tool calls (the command through the
same path MCP and the exec route take, sandbox round trip included). The agent's own cost is the rest: the
conversation built and serialised for each model call, the answer parsed and assembled, tool calls extracted and
checked, results shaped, events written, the transcript kept. Reported per step (a step = one model call), for
short and long runs (the conversation grows with each step), JSON and streamed.

Standard library only. Run via `make bench`, which appends this section to bench/RESULTS.md.
"""
import argparse
import http.client
import json
import os
import signal
import statistics
import sys
import time

from bench_server import load_fakes, start_server  # the same daemon start and fake models as the server bench


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "unknown CPU")
    except OSError:
        return "unknown CPU"


def start_agent_server(serve_bin, fake_url):
    return start_server(serve_bin, ("--pool-size", "0", "--llamacpp-url", fake_url, "--ollama-url",
                                    "http://127.0.0.1:9"))


def run(url, sandbox_id, steps, stream):
    host, port = url.split("//")[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    body = {"model": "llamacpp/scripted", "prompt": "run true, many times", "sandbox_id": sandbox_id,
            "max_steps": steps + 1, "stream": stream}
    t = time.perf_counter()
    conn.request("POST", "/v1/agent", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    wall = (time.perf_counter() - t) * 1e3
    conn.close()
    if resp.status != 200:
        sys.exit(f"bench_agent: /v1/agent answered {resp.status}: {data[:300]!r}")
    if stream:
        done = [e for e in data.split(b"\n\n") if e.startswith(b"event: done")]
        result = json.loads(done[0].split(b"data: ", 1)[1])
    else:
        result = json.loads(data)
    if result["steps"] != steps + 1 or result["finish_reason"] != "stop":
        sys.exit(f"bench_agent: the run did not go as scripted: {result['steps']} steps, {result['finish_reason']}")
    return result["timings"], wall, result["steps"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve-bin", default="build/lm-sandbox-serve")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--append", help="append a markdown section here")
    args = p.parse_args()
    fakes = load_fakes()
    fake = fakes.Fake("llamacpp", models=["scripted"], script=[])
    proc, url = start_agent_server(args.serve_bin, fake.url)
    rows = []
    try:
        host, port = url.split("//")[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/v1/sandboxes", "{}", {"Content-Type": "application/json"})
        sid = json.loads(conn.getresponse().read())["id"]
        conn.close()
        for steps in (10, 50):
            script = [{"tool_calls": [{"name": "bash", "arguments": {"command": "true"}}]}] * steps
            script.append({"content": "done"})
            with fake.state.cond:
                fake.state.config = dict(fake.state.config, script=script)
            for stream in (False, True):
                run(url, sid, steps, stream)  # warm-up
                per = {"agent": [], "model": [], "tools": [], "total": []}
                for _ in range(args.runs):
                    t, wall, n = run(url, sid, steps, stream)
                    for k in per:
                        per[k].append(t[f"{k}_ms"] / n)
                rows.append((steps, stream, {k: statistics.median(v) for k, v in per.items()},
                             max(per["agent"])))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        fake.stop()
    lines = ["", "## The agent's own cost per step (issue 14)", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this machine ({cpu_model()}, "
             f"{os.cpu_count()} CPUs, "
             f"`{os.uname().release}`); `{' '.join(sys.argv)}`. Each step is one model call of the scripted fake "
             "(llama-server kind, streamed) asking for `bash` `true`, then the answer; medians over "
             f"{args.runs} runs of the per-step figure of each run (the daemon's `timings`), in ms.", "",
             "| steps | mode | agent's own / step | worst run | model / step | tool / step | total / step |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for steps, stream, m, worst in rows:
        lines.append(f"| {steps + 1} | {'stream' if stream else 'JSON'} | {m['agent']:.3f} | {worst:.3f} | "
                     f"{m['model']:.3f} | {m['tools']:.3f} | {m['total']:.3f} |")
    med = max(r[2]["agent"] for r in rows)
    worst = max(r[3] for r in rows)
    lines += ["", f"**agent's own cost per step: {med:.3f} ms, the median of the slowest configuration (goal <= 2 ms) "
              f"{'MET' if med <= 2 else 'NOT MET'}**; the slowest single run: {worst:.3f} ms.", ""]
    text = "\n".join(lines)
    print(text)
    if args.append:
        with open(args.append, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
