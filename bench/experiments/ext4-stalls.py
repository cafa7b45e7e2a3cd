#!/usr/bin/env python3
"""Plain 256 MiB writes into a new file (1 MiB `write`s, the file removed after each, 0.3 s apart), with what
/proc/vmstat counted during the slow ones: whether a slow round of the files benchmark is the daemon's or the
file system's. Usage: bench/experiments/ext4-stalls.py [DIR] [ROUNDS] (DIR: a directory on the file system to
probe, /tmp by default)."""
import os
import sys
import tempfile
import time

WATCHED = ("compact", "stall", "throttle", "dirty", "writeback", "pgscan", "steal", "thp", "alloc_")


def vmstat():
    with open("/proc/vmstat") as f:
        return {k: int(v) for k, v in (line.split() for line in f)}


def main():
    where = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    work = tempfile.mkdtemp(prefix="lms-ext4-stalls-", dir=where)
    dst = os.path.join(work, "dst")
    block = os.urandom(1 << 20)
    times = []
    try:
        for _ in range(rounds):
            before = vmstat()
            t = time.perf_counter()
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            for _ in range(256):
                os.write(fd, block)
            os.close(fd)
            dt = time.perf_counter() - t
            os.unlink(dst)
            after = vmstat()
            times.append(dt)
            if dt > 0.2:
                moved = {k: after[k] - before[k] for k in after
                         if after[k] != before[k] and any(w in k for w in WATCHED)}
                print(f"slow: {dt * 1000:.0f} ms; vmstat moved: {moved}")
            time.sleep(0.3)
    finally:
        os.rmdir(work)
    times.sort()
    print(f"{rounds} writes of 256 MiB into {where}: median {times[len(times) // 2] * 1000:.0f} ms, "
          f"{sum(t > 0.2 for t in times)} over 200 ms, the slowest {times[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
