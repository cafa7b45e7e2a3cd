#!/usr/bin/python3
"""Network sandboxes (issue 13): what `network: true` costs.

Method
------
* Start-up: `lm-sandbox run -- true` against `lm-sandbox run --network -- true`, interleaved rounds in a
  shuffled order (seeded), wall time from spawn to reap, medians with p10/p90. The ratio on/off is the
  headline (goal <= 2); the off figure is the same command the start-up benchmark (bench.py) times, for
  comparison with its lms-true.
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
        s = startup(args.bin, nf.NET_ADDR, args.rounds, args.seed)
        host, inside = throughput(args.bin, nf.NET_ADDR, args.download_rounds)
    finally:
        try:
            next(gen)
        except StopIteration:
            pass
    med = {k: statistics.median(v) for k, v in s.items()}
    ratio = med["network-true"] / med["network-false"]
    tput = statistics.median(inside) / statistics.median(host)
    lines = [
        "",
        "## Network sandboxes (`bench/bench_network.py`)",
        "",
        f"`lm-sandbox run -- true` with and without `--network`, {args.rounds} interleaved rounds (median, p10, p90 ms):",
        "",
        "| candidate | median ms | p10 ms | p90 ms |",
        "|---|---:|---:|---:|",
    ]
    for k, v in s.items():
        lines.append(f"| {k} | {med[k]:.1f} | {pct(v, 10):.1f} | {pct(v, 90):.1f} |")
    lines += [
        "",
        f"**network true / false = {ratio:.2f} (goal <= 2) {'MET' if ratio <= 2 else 'NOT MET'}**",
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
