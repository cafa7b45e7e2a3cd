#!/usr/bin/python3
"""Image sandboxes against host ones (issue 12, "Speed"), in one run on one machine.

* One-shot: POST /v1/exec {"argv": ["true"], "image": IMG} against the same with "host", interleaved round by
  round on one kept-alive connection, each timed once the pool is full again (goal: <= 1.1 x), and the same
  back to back (each refill beside the next request).
* Persistent: POST /v1/sandboxes {"image": IMG} and its first exec of true, against the same with "host",
  interleaved (goal: <= 1.5 x); each sandbox deleted after it.

The image is the small root file system of tests/system/test_images.py (the host's sh, coreutils and their
libraries, two layers), imported into the daemon's own state directory. Needs root (a stored sandbox mounts).

    sudo /usr/bin/python3 bench/bench_images.py [--serve-bin build/lm-sandbox-serve] [--rounds 100]
"""
import argparse
import gzip
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "system"))
sys.path.insert(0, HERE)
from bench_server import POOL_SIZE, emit, start_server  # noqa: E402
from procinfo import ready_pool_workers  # noqa: E402
import test_images  # noqa: E402 (the root file system the tests import)


def call(conn, method, path, body=None):
    t = time.perf_counter_ns()
    conn.request(method, path, json.dumps(body) if body is not None else None, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        sys.exit(f"bench_images: {method} {path} failed: {resp.status} {data[:300]!r}")
    return time.perf_counter_ns() - t, data


def wait_pool(pid, want, timeout=5):
    deadline = time.monotonic() + timeout
    while len(ready_pool_workers(pid)) < want and time.monotonic() < deadline:
        time.sleep(0.001)


def import_image(lms_bin, state):
    with tempfile.TemporaryDirectory() as d:
        layout = Path(d) / "oci"
        rootfs = test_images.mini_rootfs(extra=[test_images.base_extra])
        test_images.oci_layout(layout, [(gzip.compress(rootfs), "application/vnd.oci.image.layer.v1.tar+gzip"),
                                        (test_images.whiteout_layer(), "application/vnd.oci.image.layer.v1.tar")],
                               test_images.CONFIG)
        subprocess.run([lms_bin, "image", "import", "--state-dir", state, "img", str(layout)], check=True,
                       capture_output=True)


def one_shot(conn, image):
    ns, data = call(conn, "POST", "/v1/exec", {"argv": ["true"], "image": image})
    if json.loads(data)["exit_code"] != 0:
        sys.exit(f"bench_images: true failed in {image}: {data[:300]!r}")
    return ns


def first_exec(conn, image):
    t = time.perf_counter_ns()
    _, data = call(conn, "POST", "/v1/sandboxes", {"image": image})
    sid = json.loads(data)["id"]
    call(conn, "POST", f"/v1/sandboxes/{sid}/exec", {"argv": ["true"]})
    ns = time.perf_counter_ns() - t
    call(conn, "DELETE", f"/v1/sandboxes/{sid}")
    return ns


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve-bin", default="build/lm-sandbox-serve")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--append", help="append a markdown section to this file")
    p.add_argument("--warm", type=int, default=POOL_SIZE + 1,
                   help="prepared sandboxes that make the pool full (default: the host's 4 and the image's 1; "
                        "4 for a daemon whose pool prepares host sandboxes only)")
    args = p.parse_args()
    serve = os.path.abspath(args.serve_bin)
    lms_bin = str(Path(serve).parent / "lm-sandbox")
    proc, url = start_server(serve)
    state = next(a for a in Path(f"/proc/{proc.pid}/cmdline").read_text().split("\0") if "lms-bench-state-" in a)
    import_image(lms_bin, state)
    host, port = url.split("//")[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port))
    # The host image's pool, and one warm sandbox of the image (commands come one at a time).
    full = args.warm
    s = {k: [] for k in ("host", "image", "host-b2b", "image-b2b", "first-host", "first-image")}
    try:
        for _ in range(10):
            one_shot(conn, "img")
            one_shot(conn, "host")
        for i in range(args.rounds):
            for image in (("host", "img") if i % 2 else ("img", "host")):
                wait_pool(proc.pid, full)
                s["image" if image == "img" else "host"].append(one_shot(conn, image))
        for i in range(args.rounds):
            for image in (("host", "img") if i % 2 else ("img", "host")):
                s["image-b2b" if image == "img" else "host-b2b"].append(one_shot(conn, image))
        for i in range(max(10, args.rounds // 3)):
            for image in (("host", "img") if i % 2 else ("img", "host")):
                wait_pool(proc.pid, full)
                s["first-image" if image == "img" else "first-host"].append(first_exec(conn, image))
    finally:
        conn.close()
        proc.terminate()
        proc.wait(30)
    m = {k: statistics.median(v) / 1e6 for k, v in s.items()}
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    lines = [
        "## Image sandboxes against host ones", "",
        f"`bench/bench_images.py --rounds {args.rounds}` on {os.cpu_count()} vCPUs ({cpu}), kernel {os.uname().release}: "
        "the two-layer test image, interleaved with `host` on one kept-alive connection, medians.", "",
        "| figure | image | host | ratio | goal |", "|---|---:|---:|---:|---|",
        f"| one-shot POST /v1/exec of true, the pool full again (ms) | {m['image']:.3f} | {m['host']:.3f} "
        f"| {m['image'] / m['host']:.2f} | <= 1.1 |",
        f"| same, back to back (ms) | {m['image-b2b']:.3f} | {m['host-b2b']:.3f} "
        f"| {m['image-b2b'] / m['host-b2b']:.2f} | |",
        f"| create a persistent sandbox and run its first command (ms) | {m['first-image']:.3f} "
        f"| {m['first-host']:.3f} | {m['first-image'] / m['first-host']:.2f} | <= 1.5 |", ""]
    emit(lines, args.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
