#!/usr/bin/python3
"""The server model's figures (issue 10, item 9): what a request costs and what idle or slow connections cost.

For one `lm-sandbox-serve` binary it prints, as markdown rows:
- the one-shot round trip (POST /v1/exec of `true`, median of --rounds, the pool refilled between calls)
  and the 16-client rate (wrk -t2 -c16 for --seconds), as bench_server.py measures them;
- the daemon's threads (/proc/PID/status) holding --idle kept-alive connections, each idle after one
  GET /healthz, spread over 127.0.0.2-127.0.0.9 so that no per-address limit closes them;
- how many slow connections it takes before /healthz (asked from 127.0.0.1, --deadline s) stops
  answering, for headers sent a byte at a time and for idle kept-alive connections, with the per-address
  limit off (--max-connections-per-ip 0) and --max-connections raised to --limit, so that what is measured
  is the model, not the limits in front of it (and once with the default limits, for headers a byte at a
  time, up to 1,200). At most --max connections each, in steps of --step.
Loopback only; every socket is closed at the end.

    bench/bench_model.py --serve-bin build/lm-sandbox-serve
"""
import argparse
import os
import resource
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "system"))
from bench_server import POOL_SIZE, round_trips, start_server, wrk_rate  # noqa: E402
from bench_slow_clients import healthz, usage  # noqa: E402

SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]


def threads_of(pid):
    return usage(pid)[0]


def held_and_threads(socks, pid):
    """How many of socks the daemon still holds, and its threads."""
    return sum(1 for s in socks if s is not None and still_open(s)), threads_of(pid)


def stop(proc, socks):
    for s in socks:
        if s is not None:
            s.close()
    proc.terminate()
    proc.wait(10)


def open_conn(port, i, kind):
    """One connection from SOURCES[i % n]: headers begun and never finished ("slow"), or one request
    answered and then idle ("idle"). None when the daemon refused it."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(SOURCES[i % len(SOURCES)], 0))
        if kind == "slow":
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        else:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            if not s.recv(65536).startswith(b"HTTP/1.1 200"):
                s.close()
                return None
        s.setblocking(False)
        return s
    except OSError:
        return None


def still_open(s):
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def attack(serve_bin, kind, step, most, options, deadline):
    """(connections at which /healthz stopped answering or None, connections opened, held, threads)."""
    proc, url = start_server(serve_bin, options)
    port = int(url.rsplit(":", 1)[1])
    socks = []
    failed_at = None
    try:
        while len(socks) < most:
            socks += [open_conn(port, len(socks) + k, kind) for k in range(step)]
            for s in socks:
                if s is not None and kind == "slow":
                    try:
                        s.send(b"s")
                    except OSError:
                        pass
            if not healthz(port, deadline):
                failed_at = len(socks)
                break
        return (failed_at, len(socks), *held_and_threads(socks, proc.pid))
    finally:
        stop(proc, socks)


def idle_threads(serve_bin, count):
    proc, url = start_server(serve_bin, ["--max-connections-per-ip", "0"])
    port = int(url.rsplit(":", 1)[1])
    base = threads_of(proc.pid)
    socks = []
    try:
        socks = [open_conn(port, i, "idle") for i in range(count)]
        held, threads = held_and_threads(socks, proc.pid)
        return base, threads, held
    finally:
        stop(proc, socks)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve-bin", default="build/lm-sandbox-serve")
    p.add_argument("--label", default=None, help="the model's name in the rows (default: the binary)")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--idle", type=int, default=500)
    p.add_argument("--step", type=int, default=250)
    p.add_argument("--max", type=int, default=3000)
    p.add_argument("--limit", type=int, default=4000, help="--max-connections for the attacks")
    p.add_argument("--deadline", type=float, default=3.0)
    p.add_argument("--skip-rates", action="store_true")
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, a.max + 1000)), hard))
    label = a.label or a.serve_bin
    rows = []
    if not a.skip_rates:
        proc, url = start_server(a.serve_bin)
        try:
            rt = round_trips(url, a.rounds, proc.pid, POOL_SIZE)
            rate, bad, errors = wrk_rate(url, a.seconds)
        finally:
            proc.terminate()
            proc.wait(30)
        rows.append(f"| {label} | one-shot round trip (ms, median of {a.rounds}) | {rt['exec']:.2f} |")
        rows.append(f"| {label} | 16-client rate (req/s, wrk -c16 {a.seconds} s; non-2xx {bad}, socket errors "
                    f"{errors}) | {rate:.0f} |")
    base, threads, held = idle_threads(a.serve_bin, a.idle)
    rows.append(f"| {label} | threads with {held} idle kept-alive connections (none: {base}) | {threads} |")
    raised = ["--max-connections-per-ip", "0", "--max-connections", str(a.limit), "--header-timeout-ms", "600000"]
    for kind, options, most, where in (
            ("slow", [], 1200, "the default limits (1,024; 128 per address)"),
            ("slow", raised, a.max, f"--max-connections {a.limit}, no per-address limit"),
            ("idle", raised, a.max, f"--max-connections {a.limit}, no per-address limit")):
        failed_at, opened, held, threads = attack(a.serve_bin, kind, a.step, most, options, a.deadline)
        what = "headers a byte at a time" if kind == "slow" else "idle kept-alive"
        verdict = f"stopped answering at {failed_at}" if failed_at else f"still answering at {opened}"
        rows.append(f"| {label} | {what} from {len(SOURCES)} addresses, {where}: /healthz | "
                    f"{verdict} (daemon holds {held}, {threads} threads) |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
