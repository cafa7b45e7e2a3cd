#!/usr/bin/python3
"""Start-up latency benchmark: lm-sandbox vs bubblewrap vs bare exec.

Method
------
Each candidate is a command line that does (almost) nothing inside its
sandbox, so what is measured is the cost of setting up and tearing down the
sandbox: process wall time from fork+exec to reaping the child, taken with
time.perf_counter_ns() around subprocess.run().

* Warm-up: every candidate first runs a few times untimed (page cache,
  dynamic loader, binfmt, kernel slab caches).
* Interleaving: round r runs every candidate exactly once, in a freshly
  shuffled order (seeded, so runs are reproducible).  Any drift over the
  run (CPU frequency, thermal throttling, noisy neighbours) therefore hits
  every candidate equally, instead of biasing whichever ran last.
* Medians (with p10/p90 for spread) rather than means: start-up times have
  a long right tail from scheduler hiccups, and the median is robust to it.
* Ratios of medians rather than absolute times are the headline numbers:
  absolute milliseconds depend on the machine, kernel and virtualisation,
  while "lm-sandbox / bwrap" on the same machine in the same run is what
  carries over.  The project goal is lms-true / bwrap <= 0.60.

Child CPU time (user+sys, whole process tree) is taken from the delta of
getrusage(RUSAGE_CHILDREN) around each run; it is reported alongside.

Only the Python standard library is used.  Run it via `make bench`.
"""
import argparse
import datetime
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time

GOAL = 0.60
BWRAP_ARGS = [
    "--unshare-all", "--die-with-parent", "--new-session",
    "--ro-bind", "/usr", "/usr",
    "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
    "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
    "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--",
]
UNSHARE_ARGS = ["--user", "--map-root-user", "--pid", "--fork",
                "--mount", "--net", "--ipc", "--uts"]


def candidates(lms_bin):
    """Return an ordered list of (name, argv)."""
    bwrap = shutil.which("bwrap") or "bwrap"
    unshare = shutil.which("unshare") or "unshare"
    return [
        ("bare-true", ["/usr/bin/true"]),
        ("unshare-5ns", [unshare] + UNSHARE_ARGS + ["/usr/bin/true"]),
        ("bwrap", [bwrap] + BWRAP_ARGS + ["/usr/bin/true"]),
        ("lms-true", [lms_bin, "run", "--", "true"]),
        ("bwrap-sh-echo", [bwrap] + BWRAP_ARGS + ["sh", "-c", "echo hi"]),
        ("lms-sh-echo", [lms_bin, "run", "--", "sh", "-c", "echo hi"]),
    ]


def is_available(argv):
    """True if argv[0] resolves to an executable file."""
    exe = argv[0]
    if os.sep in exe:
        return os.path.isfile(exe) and os.access(exe, os.X_OK)
    return shutil.which(exe) is not None


def run_once(name, argv):
    """Run argv once; return (wall_ns, child_cpu_ns).  Abort on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter_ns()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    except OSError as e:
        sys.exit(f"bench: candidate '{name}' could not start: {e}")
    wall = time.perf_counter_ns() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"bench: candidate '{name}' failed with exit status "
                 f"{proc.returncode}\n  command: {subprocess.list2cmdline(argv)}"
                 "\n  (rerun it by hand to see its error output)")
    cpu = (after.ru_utime + after.ru_stime
           - before.ru_utime - before.ru_stime)
    return wall, int(cpu * 1e9)


def measure(cands, rounds, warmup, seed):
    """Warm up, then run interleaved rounds; return {name: ([wall], [cpu])}."""
    for _ in range(warmup):
        for name, argv in cands:
            run_once(name, argv)
    samples = {name: ([], []) for name, _ in cands}
    rng = random.Random(seed)
    order = list(cands)
    for _ in range(rounds):
        rng.shuffle(order)
        for name, argv in order:
            wall, cpu = run_once(name, argv)
            samples[name][0].append(wall)
            samples[name][1].append(cpu)
    return samples


def pct(values, p):
    """p-th percentile (0..100) of values, nearest-rank on sorted data."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def summarise(samples):
    """Return {name: dict(med, p10, p90, cpu)} in milliseconds."""
    out = {}
    for name, (wall, cpu) in samples.items():
        out[name] = {"med": statistics.median(wall) / 1e6,
                     "p10": pct(wall, 10) / 1e6, "p90": pct(wall, 90) / 1e6,
                     "cpu": statistics.median(cpu) / 1e6}
    return out


def ratio(stats, a, b):
    """Median ratio a/b as a string, or '-' when either is missing."""
    if a not in stats or b not in stats or stats[b]["med"] == 0:
        return "-"
    return f"{stats[a]['med'] / stats[b]['med']:.2f}"


def table(cands, stats, missing):
    """Markdown table of all candidates."""
    rows = ["| candidate | median ms | p10 ms | p90 ms | child CPU ms "
            "| / bwrap | / bare-true |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for name, _ in cands:
        if name in missing:
            rows.append(f"| {name} | missing | | | | | |")
            continue
        s = stats[name]
        rows.append(f"| {name} | {s['med']:.3f} | {s['p10']:.3f} "
                    f"| {s['p90']:.3f} | {s['cpu']:.3f} "
                    f"| {ratio(stats, name, 'bwrap')} "
                    f"| {ratio(stats, name, 'bare-true')} |")
    return "\n".join(rows)


def goal_lines(stats):
    """Headline ratios, the first one being the project goal."""
    r = ratio(stats, "lms-true", "bwrap")
    verdict = "" if r == "-" else (" MET" if float(r) <= GOAL else " NOT MET")
    return [f"**lms-true / bwrap = {r} (goal <= {GOAL:.2f}){verdict}**",
            f"lms-sh-echo / bwrap-sh-echo = "
            f"{ratio(stats, 'lms-sh-echo', 'bwrap-sh-echo')}"]


def read_first(path, prefix):
    """Value after ':' of the first line of path starting with prefix."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cgroup_version():
    """'v2', 'hybrid' or 'v1', from the filesystems mounted in /proc/mounts."""
    try:
        with open("/proc/mounts") as f:
            types = {line.split()[2] for line in f if len(line.split()) > 2}
    except OSError:
        return "unknown"
    v1, v2 = "cgroup" in types, "cgroup2" in types
    return "hybrid" if v1 and v2 else "v2" if v2 else "v1" if v1 else "none"


def machine_lines():
    """Machine description as markdown bullet lines."""
    mem_kb = read_first("/proc/meminfo", "MemTotal").split()[0]
    mem = (f"{int(mem_kb) / 1024 / 1024:.1f} GiB" if mem_kb.isdigit()
           else "unknown")
    return [f"- CPU: {read_first('/proc/cpuinfo', 'model name')}",
            f"- nproc: {os.cpu_count()}",
            f"- kernel: {platform.release()}",
            f"- memory: {mem}",
            f"- cgroups: {cgroup_version()}",
            f"- python: {platform.python_version()}"]


def report(args, cands, stats, missing):
    """Full markdown report for bench/RESULTS.md."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cmds = [f"- `{name}`: `{subprocess.list2cmdline(argv)}`"
            + (" (missing)" if name in missing else "") for name, argv in cands]
    return "\n".join(
        ["# lm-sandbox start-up benchmark", "",
         f"Measured {now}; {args.rounds} interleaved rounds after "
         f"{args.warmup} warm-up rounds (seed {args.seed}).", "",
         "## Machine", ""] + machine_lines()
        + ["", "## Candidates", ""] + cmds
        + ["", "## Results", "",
           "Wall time from spawn to reap (median, p10, p90); child CPU is "
           "the median user+sys of the whole process tree; ratios are of "
           "medians.", "", table(cands, stats, missing), ""]
        + goal_lines(stats)
        + ["", "## How to reproduce", "",
           "`make bench` (runs `/usr/bin/python3 bench/bench.py "
           "--out bench/RESULTS.md`; see the docstring for the method). "
           "The same benchmark on other machines: `bench/RESULTS-*.md`.", ""])


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bin", default="build/lm-sandbox")
    p.add_argument("--out", help="write a markdown report here")
    args = p.parse_args()
    if args.rounds < 1 or args.warmup < 0:
        p.error("--rounds must be >= 1 and --warmup >= 0")
    return args


def main():
    args = parse_args()
    if not is_available([args.bin]):
        print(f"bench: lm-sandbox binary '{args.bin}' not found or not "
              "executable; build it first (make)", file=sys.stderr)
        return 2
    cands = candidates(os.path.abspath(args.bin))
    missing = {n for n, argv in cands if not is_available(argv)}
    for name in sorted(missing):
        print(f"bench: '{name}' skipped: tool missing", file=sys.stderr)
    present = [(n, a) for n, a in cands if n not in missing]
    stats = summarise(measure(present, args.rounds, args.warmup, args.seed))
    print(table(cands, stats, missing))
    print("\n".join(goal_lines(stats)).replace("**", ""))
    if args.out:
        with open(args.out, "w") as f:
            f.write(report(args, cands, stats, missing))
        print(f"bench: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
