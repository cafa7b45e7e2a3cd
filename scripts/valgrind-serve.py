#!/usr/bin/python3
"""The daemon under valgrind: `valgrind-serve.py VALGRIND_ARGS... -- SERVE_BINARY`.

Starts the daemon (its spawner, a separate static program, runs natively) with a fake llama-server as
its backend, exercises every kind of route once (execution plain and streamed, a bad request, health,
metrics, OpenAPI, the models list, a chat plain and streamed through libcurl, a persistent sandbox's
life), then stops it with
SIGTERM. Exits with the daemon's status: valgrind's --error-exitcode on any error or leak, 0 if clean.
Standard library only.
"""
import http.client
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    sep = sys.argv.index("--")
    valgrind, serve = sys.argv[1:sep], sys.argv[sep + 1]
    spec = importlib.util.spec_from_file_location("fake_llm", os.path.join(ROOT, "tests", "fakes", "fake_llm.py"))
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    fake_url, stop_fake = fake.start_fake("llamacpp", models=["tiny.gguf"], chunks=4, delay_ms=0)
    proc = subprocess.Popen(valgrind + [serve, "--listen", "127.0.0.1:0", "--pool-size", "1",
                                        "--llamacpp-url", fake_url, "--ollama-url", "http://127.0.0.1:9"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = []
    url = None
    for line in proc.stderr:
        log.append(line)
        if '"listening"' in line:
            url = json.loads(line)["url"]
            break
    drain = threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True)
    drain.start()
    try:
        if url is None:
            raise RuntimeError("the daemon did not start")
        host, port = url.split("//")[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=120)

        def call(method, path, body=None, want=200):
            conn.request(method, path, json.dumps(body) if body is not None else None,
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status != want:
                raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
            return data

        call("POST", "/v1/exec", {"argv": ["echo", "hi"]})
        call("POST", "/v1/exec", {"cmd": "echo out; echo err >&2", "stream": True})
        call("POST", "/run-bash/", {"cmd": "true"})
        call("POST", "/v1/exec", {"argv": []}, want=400)
        call("GET", "/healthz")
        call("GET", "/metrics")
        call("GET", "/openapi.json")
        call("GET", "/v1/models")
        chat = {"model": "llamacpp/tiny.gguf", "messages": [{"role": "user", "content": "hi"}]}
        call("POST", "/v1/chat/completions", chat)
        call("POST", "/v1/chat/completions", dict(chat, stream=True))
        # A persistent sandbox: made, two commands (one streamed), listed, read, deleted, then gone; and
        # one left for the shutdown to end.
        sbx = json.loads(call("POST", "/v1/sandboxes", {"metadata": {"k": "v"}, "ttl_s": 60}, want=201))["id"]
        call("POST", f"/v1/sandboxes/{sbx}/exec", {"cmd": "echo kept > /work/f; sleep 100 &"})
        call("POST", f"/v1/sandboxes/{sbx}/exec", {"cmd": "cat /work/f", "stream": True})
        call("GET", "/v1/sandboxes?metadata.k=v")
        call("GET", f"/v1/sandboxes/{sbx}")
        call("DELETE", f"/v1/sandboxes/{sbx}", want=204)
        call("GET", f"/v1/sandboxes/{sbx}", want=404)
        call("POST", "/v1/sandboxes", {}, want=201)
        conn.close()
    except Exception as e:
        proc.kill()
        proc.wait()
        drain.join(5)
        sys.stderr.write("".join(log) + f"\nvalgrind-serve: {e}\n")
        return 1
    finally:
        stop_fake()
    proc.send_signal(signal.SIGTERM)
    status = proc.wait(120)
    drain.join(5)
    if status != 0:
        sys.stderr.write("".join(log))
    return status


if __name__ == "__main__":
    sys.exit(main())
