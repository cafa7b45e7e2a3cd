#!/usr/bin/python3
"""The container's start-to-healthy and stop times (bench/RESULTS.md, "Deployment").

    bench/bench_deploy.py [--image lm-sandbox:test] [--rounds 5]

Runs the image with the narrow privileges of docs/deploy.md (as tests/deploy/test_deploy.py does), and
measures from the call of `docker run -d` to the first 200 from /healthz on the host and to Docker's
`healthy` (--health-interval 50ms), then `docker stop`.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "deploy"))
from test_deploy import NARROW  # noqa: E402  the one list of the narrow privileges


def docker(*args):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def one(image, token, i):
    name = f"lms-bench-{os.getpid()}-{i}"
    t0 = time.monotonic()
    docker("run", "-d", "--name", name, "-p", "127.0.0.1::8000", "-v", f"{token}:/run/secrets/token:ro",
           "-e", "LM_SANDBOX_TOKEN_FILE=/run/secrets/token", "--health-interval", "50ms", *NARROW, image)
    try:
        port = docker("port", name, "8000").split()[0].rsplit(":", 1)[1]
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.01)
        healthz = time.monotonic() - t0
        while docker("inspect", "-f", "{{.State.Health.Status}}", name) != "healthy":
            time.sleep(0.01)
        healthy = time.monotonic() - t0
        t1 = time.monotonic()
        docker("stop", "-t", "10", name)
        return healthz, healthy, time.monotonic() - t1
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="lm-sandbox:test")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        token = os.path.join(d, "token")
        with open(token, "w") as f:
            f.write(os.urandom(16).hex() + "\n")
        os.chmod(token, 0o600)
        rows = [one(args.image, token, i) for i in range(args.rounds)]
    size = int(docker("image", "inspect", "-f", "{{.Size}}", args.image)) / 1e6
    print(f"image size: {size:.0f} MB")
    for label, xs in zip(("to /healthz 200", "to Docker healthy", "docker stop"), zip(*rows)):
        print(f"{label}: median {statistics.median(xs) * 1000:.0f} ms "
              f"(min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})")


if __name__ == "__main__":
    main()
