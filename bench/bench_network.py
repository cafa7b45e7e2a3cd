#!/usr/bin/python3
"""Network sandboxes (issue 13): what `network: true` costs.

Method
------
* Start-up through the daemon (the headline, goal <= 2): POST /v1/exec of `true` with `network: true` against
  `false` on a kept-alive connection, interleaved in a shuffled order (seeded), medians with p10/p90. Both
  kinds come from the pool of sandboxes prepared ahead, so each exec first waits until the pool is full again
  (as bench_server.py's round trip does: an agent's steps are seconds apart); then the same back to back,
  where the pool of network sandboxes cannot keep up and the figure shows what a burst costs.
* Start-up of the CLI, which has no pool: `lm-sandbox run -- true` against `lm-sandbox run --network -- true`,
  interleaved the same way, wall time from spawn to reap. The off figure is the command the start-up
  benchmark (bench.py) times, for comparison with its lms-true.
* Throughput: a 100 MB HTTP download (curl to /dev/null) from the test internet (a network namespace behind a
  veth pair at 198.18.X.0/24, tests/system/net_fixtures.py) inside a network sandbox against the same curl on
  the host; the median of a few rounds of each, the ratio inside/host (goal >= 0.5).

Needs root, pasta, nft, ip and curl. Only the standard library (and the test fixture's module).
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "system"))

import net_fixtures as nf  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from bench_server import POOL_SIZE, start_server, wait_pool  # noqa: E402

# The pool keeps this many sandboxes of a recent network (sandbox/pool.c, IMAGE_WARM) beside POOL_SIZE plain ones.
NET_WARM = 2

SIZE = 100_000_000


def timed(argv):
    t0 = time.perf_counter_ns()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ms = (time.perf_counter_ns() - t0) / 1e6
    if p.returncode != 0:
        raise SystemExit(f"{argv} failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    return ms


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def startup(lms, dns, rounds, seed):
    cands = {
        "network-false": [lms, "run", "--", "true"],
        "network-true": [lms, "run", "--network", "--network-dns", dns, "--", "true"],
    }
    for argv in cands.values():
        for _ in range(3):
            timed(argv)
    samples = {k: [] for k in cands}
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(cands)
        rng.shuffle(order)
        for k in order:
            samples[k].append(timed(cands[k]))
    return samples


def exec_once(conn, network):
    body = json.dumps({"argv": ["true"], "network": network})
    t0 = time.perf_counter_ns()
    conn.request("POST", "/v1/exec", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    ms = (time.perf_counter_ns() - t0) / 1e6
    if resp.status != 200 or json.loads(data)["exit_code"] != 0:
        raise SystemExit(f"bench_network: exec (network {network}) failed: {resp.status} {data[:300]!r}")
    return ms


def daemon_startup(serve_bin, dns, rounds, seed):
    """{"network-false", "network-true"} x {"warm", "back-to-back"}: lists of ms."""
    proc, url = start_server(serve_bin, ["--allow-network", "--network-dns", dns])
    try:
        host, port = url.split("//")[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port))
        for _ in range(3):
            for network in (False, True):
                exec_once(conn, network)
        full = POOL_SIZE + NET_WARM
        samples = {f"daemon {k} {w}": [] for w in ("warm", "back-to-back") for k in ("network-false", "network-true")}
        rng = random.Random(seed)
        for _ in range(rounds):
            order = [False, True]
            rng.shuffle(order)
            for network in order:
                wait_pool(proc.pid, full)
                samples[f"daemon network-{str(network).lower()} warm"].append(exec_once(conn, network))
        wait_pool(proc.pid, full)
        for _ in range(rounds):
            for network in (False, True):
                samples[f"daemon network-{str(network).lower()} back-to-back"].append(exec_once(conn, network))
        conn.close()
        return samples
    finally:
        proc.terminate()
        proc.wait(30)


def curl_seconds(argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{argv} failed: {p.stderr[-500:]}")
    return float(p.stdout.strip().splitlines()[-1])


def throughput(lms, dns, rounds):
    url = f"http://{nf.NET_ADDR}:{nf.HTTP_PORT}/size/{SIZE}"
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}\n", url]
    host, inside = [], []
    for _ in range(rounds):
        host.append(SIZE / curl_seconds(curl) / 1e6)
        inside.append(SIZE / curl_seconds([lms, "run", "--network", "--network-dns", dns, "--memory-mb", "512",
                                           "--timeout-ms", "120000", "--", *curl]) / 1e6)
    return host, inside


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default=str(REPO / "build" / "lm-sandbox"))
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--download-rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--append", help="append the markdown report to this file")
    args = p.parse_args()
    missing = [t for t in ("pasta", "nft", "ip", "curl") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        print(f"bench_network: skipped: needs root and {', '.join(missing) or 'nothing else'}", file=sys.stderr)
        return 0
    gen = nf.test_internet.__wrapped__()
    next(gen)
    try:
        d = daemon_startup(args.bin + "-serve", nf.NET_ADDR, args.rounds, args.seed)
        s = startup(args.bin, nf.NET_ADDR, args.rounds, args.seed)
        host, inside = throughput(args.bin, nf.NET_ADDR, args.download_rounds)
    finally:
        try:
            next(gen)
        except StopIteration:
            pass
    med = {k: statistics.median(v) for k, v in s.items()}
    ratio = med["network-true"] / med["network-false"]
    dmed = {k: statistics.median(v) for k, v in d.items()}
    warm = dmed["daemon network-true warm"] / dmed["daemon network-false warm"]
    burst = dmed["daemon network-true back-to-back"] / dmed["daemon network-false back-to-back"]
    tput = statistics.median(inside) / statistics.median(host)
    lines = [
        "",
        "## Network sandboxes (`bench/bench_network.py`)",
        "",
        f"POST /v1/exec of `true` with `network` true and false on a kept-alive connection, {args.rounds} interleaved "
        "rounds each waiting for the pool to be full again (warm), then as many back to back; and "
        "`lm-sandbox run -- true` with and without `--network` (the CLI has no pool). Median, p10, p90 ms:",
        "",
        "| candidate | median ms | p10 ms | p90 ms |",
        "|---|---:|---:|---:|",
    ]
    for k, v in list(d.items()) + [(f"cli {k}", v) for k, v in s.items()]:
        m = statistics.median(v)
        lines.append(f"| {k} | {m:.1f} | {pct(v, 10):.1f} | {pct(v, 90):.1f} |")
    lines += [
        "",
        f"**daemon, warm: network true / false = {warm:.2f} (goal <= 2) {'MET' if warm <= 2 else 'NOT MET'}**; "
        f"back to back {burst:.2f}; CLI (no pool) {ratio:.2f}",
        "",
        f"100 MB download from the test internet with curl, median of {args.download_rounds}: host "
        f"{statistics.median(host):.0f} MB/s, inside a network sandbox {statistics.median(inside):.0f} MB/s",
        "",
        f"**inside / host = {tput:.2f} (goal >= 0.5) {'MET' if tput >= 0.5 else 'NOT MET'}**",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append:
        with open(args.append, "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
