#!/usr/bin/python3
"""How many slow connections one client needs before /healthz stops answering (issue 10, item 9).

Starts `lm-sandbox-serve --listen 127.0.0.1:0`, then opens connections from one address (--source,
default 127.0.0.2; 127.0.0.1 is the victim's own address) in steps of --step, each sending the start
of a request's headers and then a byte a second, never finishing them. After each step it asks
GET /healthz from 127.0.0.1 with a --deadline second timeout, and reports the first count at which it
did not answer, with the daemon's threads and VmRSS then. Loopback only; at most --max connections,
each step bounded in time; every socket is closed at the end.

    bench/bench_slow_clients.py --serve-bin build/lm-sandbox-serve
"""
import argparse
import http.client
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_server import start_server  # noqa: E402 (the same start-up as the server bench)


def start(serve_bin, extra):
    """The daemon on a free loopback port, as bench_server.py starts it: (process, port)."""
    proc, url = start_server(serve_bin, extra)
    return proc, int(url.rsplit(":", 1)[1])


def usage(pid):
    threads = rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return threads, rss


def healthz(port, deadline):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=deadline)
        c.request("GET", "/healthz")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--serve-bin", default="build/lm-sandbox-serve")
    p.add_argument("--source", default="127.0.0.2")
    p.add_argument("--step", type=int, default=100)
    p.add_argument("--max", type=int, default=1200)
    p.add_argument("--deadline", type=float, default=3.0)
    p.add_argument("extra", nargs="*", help="more daemon options (after --)")
    a = p.parse_args()
    proc, port = start(a.serve_bin, a.extra)
    socks = []
    failed_at = None
    try:
        while len(socks) < a.max:
            for _ in range(a.step):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(a.source, 0))
                    s.setblocking(False)
                    s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    socks.append(s)
                except OSError:
                    socks.append(None)
            time.sleep(0.3)
            for s in socks:
                if s is not None:
                    try:
                        s.send(b"s")
                    except OSError:
                        pass
            if not healthz(port, a.deadline):
                failed_at = len(socks)
                break
        threads, rss = usage(proc.pid)
        held = 0
        for s in socks:
            if s is None:
                continue
            try:
                held += s.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                held += 1
            except OSError:
                pass
        verdict = f"stopped answering at {failed_at}" if failed_at else f"still answering at {len(socks)}"
        print(f"{a.serve_bin}: slow connections from {a.source}: /healthz {verdict}; the daemon holds {held} of "
              f"them, {threads} threads, VmRSS {rss} KiB")
    finally:
        for s in socks:
            if s is not None:
                s.close()
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
