#!/usr/bin/python3
"""Where the CPU of one POST /v1/exec {"argv":["true"]} goes, under load: starts SERVE_BIN (lm-sandbox-serve)
on a free port, runs `wrk -cCLIENTS` against it for SECONDS, and prints the CPU each kind of process used per
request, read from /proc before and after: its own (utime+stime) and that of the children it reaped (a
worker reaps its sandbox's PID 1, which reaps the command), the busiest kernel threads, and the machine's
totals from /proc/stat.

Usage (as root): bench/experiments/cpu-per-request.py SERVE_BIN [CLIENTS [SECONDS]]. Standard library and wrk.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "system"))
from procinfo import descendants  # noqa: E402 (standard library only, shared with the tests and the bench)

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def times(pid):
    """utime, stime, cutime, cstime of pid, in ticks."""
    text = open(f"/proc/{pid}/stat").read()
    return [int(x) for x in text[text.rindex(")") + 2:].split()[11:15]]


def comm(pid):
    return open(f"/proc/{pid}/comm").read().strip()


WORKERS = ("lms-pooled", "lms-worker", "lms-idle")  # one worker's names as its state changes


def snapshot(root):
    """pid -> (name, times) for the daemon's tree and for the kernel threads that serve it."""
    found = {}
    for p in descendants(root):
        try:
            name = comm(p)
            found[p] = ("workers (" + ", ".join(WORKERS) + ")" if name in WORKERS else name, times(p))
        except OSError:
            pass
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            name = comm(int(d))
            if name.startswith(("kworker", "rcu", "ksoftirqd", "migration")):
                found[int(d)] = ("kernel: " + re.sub(r"/u?\d+(:\d+)?[-+]?", "-", name).rstrip("-"), times(int(d)))
        except OSError:
            pass
    return found


def machine():
    return [int(x) for x in open("/proc/stat").readline().split()[1:8]]


def main():
    serve = sys.argv[1]
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "serve.log")
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\nwrk.body = \'{"argv":["true"]}\'\n'
                    'wrk.headers["Content-Type"] = "application/json"\n')
        with open(log_path, "w") as log:
            daemon = subprocess.Popen([serve, "--listen", "127.0.0.1:0", "--max-concurrent", "64"], stderr=log)
        try:
            url = None
            for _ in range(100):
                m = re.search(r"http://127\.0\.0\.1:\d+", open(log_path).read())
                if m:
                    url = m.group(0)
                    break
                time.sleep(0.1)
            if url is None:
                sys.exit(f"cpu-per-request: {serve} did not start:\n{open(log_path).read()}")
            time.sleep(1)  # the pool fills
            before, stat_before = snapshot(daemon.pid), machine()
            out = subprocess.run(["wrk", f"-t{min(2, clients)}", f"-c{clients}", f"-d{seconds}s", "-s", script,
                                  url + "/v1/exec"], capture_output=True, text=True, check=True).stdout
            after, stat_after = snapshot(daemon.pid), machine()
        finally:
            daemon.terminate()
            daemon.wait()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = rate * seconds
    per = {}
    for pid, (name, t) in after.items():
        t0 = before.get(pid, (name, [0, 0, 0, 0]))[1]
        d = [a - b for a, b in zip(t, t0)]
        own, reaped = per.get(name, (0, 0))
        per[name] = (own + d[0] + d[1], reaped + d[2] + d[3])
    print(f"{clients} clients: {rate:.1f} req/s. CPU ms per request, own | of reaped children:")
    for name, (own, reaped) in sorted(per.items(), key=lambda kv: -sum(kv[1])):
        if own + reaped > 0:
            print(f"  {name:32s} {own * TICK_MS / requests:6.2f} | {reaped * TICK_MS / requests:6.2f}")
    d = [a - b for a, b in zip(stat_after, stat_before)]
    print(f"  machine: user {(d[0] + d[1]) * TICK_MS / requests:.2f}, system {d[2] * TICK_MS / requests:.2f}, "
          f"idle {d[3] * TICK_MS / requests:.2f}, irq {(d[5] + d[6]) * TICK_MS / requests:.2f}")


if __name__ == "__main__":
    main()
