#!/usr/bin/python3
"""Server benchmark: `lm-sandbox serve` against bubblewrap, in one run on one machine.

Three figures, each with its anchor measured in the same run:

* Round trip of POST /v1/exec {"argv": ["true"]} on one kept-alive connection, interleaved round by
  round with a bubblewrap process running /usr/bin/true and a bare /usr/bin/true; medians and ratios
  (goal: exec <= 0.25 x bwrap). Before each timed run the bench waits until the daemon's pool is full
  again (every pool worker blocked in recvmsg, read from /proc), as it is when an agent takes seconds
  between commands, and so that no refill runs beside an anchor. The same without that wait (requests
  back to back, each refill beside the next request) and with --pool-size 0 are reported too.
* Sustained rate: wrk with 16 connections for --seconds against POST /v1/exec, beside the rate of two
  parallel bubblewrap loops over the same time (goal: >= 4 x).
* Idle resident memory of the daemon (VmRSS; goal <= 8 MiB) and of its spawner.
* MCP: a tools/call of bash `true` over Streamable HTTP against a sandbox exec of the same (goal: <= 1.3 x).
* The files API: a 256 MiB upload and download against `cp` of the same file and against the loopback TCP
  ceiling of the same shape, interleaved, the copies into ext4 and again into a tmpfs (goal: >= 0.5 x cp);
  `--files-only` runs just this figure.
* The floor under the round trip: build/bench/lms-floor (floor.c) times the engine alone launching
  /usr/bin/true in a prepared sandbox, teardown included, with no HTTP and no process in between,
  beside a bare posix_spawn of it from C.

Standard library only; wrk and bwrap from Debian. Run via `make bench`, which appends this section to
bench/RESULTS.md.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "system"))
from procinfo import descendants, ready_pool_workers  # noqa: E402 (standard library only, shared with the tests)

BWRAP = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
         "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
         "--symlink", "usr/sbin", "/sbin", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--",
         "/usr/bin/true"]
BODY = json.dumps({"argv": ["true"]})


POOL_SIZE = 4  # the daemon's default


def start_server(serve_bin, extra=()):
    # Its own state: persistent sandboxes keep their files under --state-dir (removed when they are).
    state = tempfile.mkdtemp(prefix="lms-bench-state-")
    proc = subprocess.Popen([serve_bin, "--listen", "127.0.0.1:0", "--max-concurrent", "64", "--state-dir", state,
                             *extra],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "listening":
            # Keep draining the log so the daemon never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, entry["url"]
    proc.kill()
    sys.exit("bench_server: the daemon did not report its address")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def exec_once(conn):
    t = time.perf_counter_ns()
    conn.request("POST", "/v1/exec", BODY, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    wall = time.perf_counter_ns() - t
    if resp.status != 200 or json.loads(data)["exit_code"] != 0:
        sys.exit(f"bench_server: exec failed: {resp.status} {data[:200]!r}")
    return wall


def proc_once(argv):
    t = time.perf_counter_ns()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter_ns() - t
    if r.returncode != 0:
        sys.exit(f"bench_server: {argv[0]} failed ({r.returncode})")
    return wall


def wait_pool(daemon_pid, size, timeout=5):
    deadline = time.monotonic() + timeout
    while size and len(ready_pool_workers(daemon_pid)) < size and time.monotonic() < deadline:
        time.sleep(0.001)


def round_trips(url, rounds, daemon_pid, pool_size):
    host, port = url.split("//")[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port))
    for _ in range(10):
        exec_once(conn)
        proc_once(BWRAP)
    samples = {"exec": [], "bwrap": [], "bare-true": [], "back-to-back": []}
    for i in range(rounds):
        order = [("exec", lambda: exec_once(conn)), ("bwrap", lambda: proc_once(BWRAP)),
                 ("bare-true", lambda: proc_once(["/usr/bin/true"]))]
        for name, fn in order[i % 3:] + order[:i % 3]:
            wait_pool(daemon_pid, pool_size)
            samples[name].append(fn())
    wait_pool(daemon_pid, pool_size)
    for _ in range(rounds):
        samples["back-to-back"].append(exec_once(conn))
    conn.close()
    return {k: statistics.median(v) / 1e6 for k, v in samples.items()}


def call(conn, method, path, body=None):
    conn.request(method, path, json.dumps(body) if body is not None else None, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def connect_with_sandbox(url):
    """A kept-alive connection and a new persistent sandbox's id; (None, None) when the daemon has none."""
    host, port = url.split("//")[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port))
    status, data = call(conn, "POST", "/v1/sandboxes", {})
    if status != 201:
        conn.close()
        return None, None
    return conn, json.loads(data)["id"]


def persistent(url, rounds, daemon_pid, idle_count=20):
    """Persistent sandboxes: an exec of true in one on a kept-alive connection, a create and its first command,
    and what an idle one costs (the PSS of its worker and its PID 1, and the daemon's growth). None when the
    daemon has no /v1/sandboxes."""
    conn, sbx = connect_with_sandbox(url)
    if conn is None:
        return None
    body = {"argv": ["true"]}
    for _ in range(10):
        call(conn, "POST", f"/v1/sandboxes/{sbx}/exec", body)
    execs, firsts = [], []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        status, data = call(conn, "POST", f"/v1/sandboxes/{sbx}/exec", body)
        execs.append(time.perf_counter_ns() - t)
        if status != 200 or json.loads(data)["exit_code"] != 0:
            sys.exit(f"bench_server: sandbox exec failed: {status} {data[:200]!r}")
    for _ in range(max(10, rounds // 5)):
        wait_pool(daemon_pid, POOL_SIZE)
        t = time.perf_counter_ns()
        status, data = call(conn, "POST", "/v1/sandboxes", {})
        other = json.loads(data)["id"]
        call(conn, "POST", f"/v1/sandboxes/{other}/exec", body)
        firsts.append(time.perf_counter_ns() - t)
        call(conn, "DELETE", f"/v1/sandboxes/{other}")
    call(conn, "DELETE", f"/v1/sandboxes/{sbx}")
    # Idle sandboxes: the processes each adds below the spawner, and the daemon's own growth.
    spawner = children(daemon_pid)[0]
    before = {p: pss_kib(p) for p in descendants(spawner)}
    rss_before = rss_kib(daemon_pid)
    made = []
    for _ in range(idle_count):
        made.append(json.loads(call(conn, "POST", "/v1/sandboxes", {})[1])["id"])
        call(conn, "POST", f"/v1/sandboxes/{made[-1]}/exec", body)
    after = {p: pss_kib(p) for p in descendants(spawner)}
    rss_after = rss_kib(daemon_pid)
    for s in made:
        call(conn, "DELETE", f"/v1/sandboxes/{s}")
    conn.close()
    added = sum(v for p, v in after.items() if p not in before)
    return {"exec": statistics.median(execs) / 1e6, "first": statistics.median(firsts) / 1e6,
            "idle_kib": added / idle_count, "daemon_kib": (rss_after - rss_before) / idle_count,
            "idle_count": idle_count}


FILES_BLOCK = 1 << 20  # every client and anchor moves the bytes in 1 MiB pieces


def cp_once(src, dst):
    t = time.perf_counter()
    subprocess.run(["cp", src, dst], check=True)
    dt = time.perf_counter() - t
    os.unlink(dst)
    return dt


# The ceiling's sender, a process of its own as the daemon is: it connects, waits for the go byte (the clock
# starts with it, after this process has started), then sends the whole file with sendfile (as the daemon once
# sends a download) or in 1 MiB reads and sends (as the bench's client sends an upload).
TCP_SENDER = """
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
s.recv(1)
with open(sys.argv[1], "rb", buffering=0) as f:
    if sys.argv[3] == "sendfile":
        s.sendfile(f)
    else:
        while block := f.read(1 << 20):
            s.sendall(block)
s.close()
"""


def tcp_once(src, dst, how="sendfile"):
    """The loopback ceiling: src sent over a loopback TCP connection by another process (how: "sendfile" or
    "send", 1 MiB reads) and received here in 1 MiB pieces, into dst (a host file, as the download's client
    writes it) or dropped (dst None); both sockets with 4 MiB buffers, no HTTP. Seconds."""
    size = os.path.getsize(src)
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        sender = subprocess.Popen([sys.executable, "-c", TCP_SENDER, src, str(lsock.getsockname()[1]), how])
        conn, _ = lsock.accept()
        with conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            t = time.perf_counter()
            conn.sendall(b"g")
            got = receive_into(conn.recv_into, dst)
            dt = time.perf_counter() - t
    if dst:
        os.unlink(dst)  # outside the time, as cp_once's
    if sender.wait(60) != 0 or got != size:
        sys.exit(f"bench_server: the loopback ceiling carried {got} of {size} bytes")
    return dt


def receive_into(readinto, dst):
    """Reads to the end with readinto(1 MiB buffer), writing the bytes to a new file dst or dropping them
    (dst None). The byte count."""
    buf = memoryview(bytearray(FILES_BLOCK))
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600) if dst else -1
    got = 0
    try:
        while n := readinto(buf):
            got += n
            view = buf[:n] if fd >= 0 else buf[:0]
            while view:
                view = view[os.write(fd, view):]
    finally:
        if fd >= 0:
            os.close(fd)
    return got


def put_file(conn, path, src):
    """PUT of the host file src, read and sent 1 MiB at a time (the connection's blocksize); the response,
    read. (Sent with sendfile instead, the body takes longer here: the daemon's reads then copy out of
    4 KiB page-cache pages rather than the socket's own large buffers, 0.18 s against 0.145 s.)"""
    with open(src, "rb", buffering=0) as f:
        conn.request("PUT", path, f, {"Content-Length": str(os.path.getsize(src))})
        resp = conn.getresponse()
        resp.read()
    return resp


def files_throughput(url, size_mib=256, rounds=11):
    """The files API against `cp` of the same file on the same machine, interleaved round by round; medians.
    Every side has its bytes in the page cache (the host file just written, the sandbox's tmpfs) and moves
    them in 1 MiB pieces or more: the upload reads the host file and PUTs it (the daemon writes it into the
    sandbox), the download GETs it (the daemon reads it 1 MiB at a time) into a new host file, as cp writes its
    copy (both copies removed, outside the time). The loopback ceilings of the same run (tcp_once, each
    direction's sender, no HTTP) say what any HTTP server could reach here. None when the daemon has no
    files API."""
    host, port = url.split("//")[1].rsplit(":", 1)
    # http.client's own 8 KiB blocks would make the client the bottleneck.
    conn = http.client.HTTPConnection(host, int(port), timeout=300, blocksize=FILES_BLOCK)
    status, data = call(conn, "POST", "/v1/sandboxes", {"limits": {"disk_mb": size_mib * 2 + 64}})
    if status != 201:
        conn.close()
        return None
    sbx = json.loads(data)["id"]
    work = tempfile.mkdtemp(prefix="lms-bench-files-")
    # The same copies into a tmpfs as well: on this VM a write into ext4 stalls now and then for 0.6-1 s
    # (8 of 40 plain 256 MiB writes, nothing in vmstat: the journal's commits), whoever writes.
    shm = tempfile.mkdtemp(prefix="lms-bench-files-", dir="/dev/shm")
    src, dst, shm_dst = os.path.join(work, "src"), os.path.join(work, "dst"), os.path.join(shm, "dst")
    with open(src, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
    times = {k: [] for k in ("cp", "upload", "download", "tcp", "tcp_send_file", "tcp_file", "cp_shm",
                             "download_shm", "tcp_send_shm")}

    def download(into):
        t = time.perf_counter()
        conn.request("GET", f"/v1/sandboxes/{sbx}/files/work/big")
        resp = conn.getresponse()
        got = receive_into(resp.readinto, into)
        dt = time.perf_counter() - t
        os.unlink(into)
        if resp.status != 200 or got != size_mib << 20:
            sys.exit(f"bench_server: download answered {resp.status} with {got} bytes")
        return dt

    try:
        for _ in range(rounds):
            times["cp"].append(cp_once(src, dst))
            times["tcp"].append(tcp_once(src, None))
            times["tcp_send_file"].append(tcp_once(src, dst, "send"))
            times["tcp_file"].append(tcp_once(src, dst))
            t = time.perf_counter()
            resp = put_file(conn, f"/v1/sandboxes/{sbx}/files/work/big", src)
            times["upload"].append(time.perf_counter() - t)
            if resp.status != 201:
                sys.exit(f"bench_server: upload answered {resp.status}")
            times["download"].append(download(dst))
            times["cp_shm"].append(cp_once(src, shm_dst))
            times["tcp_send_shm"].append(tcp_once(src, shm_dst, "send"))
            times["download_shm"].append(download(shm_dst))
        call(conn, "DELETE", f"/v1/sandboxes/{sbx}")
    finally:
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    return {k: statistics.median(v) for k, v in times.items()} | {"mib": size_mib, "rounds": rounds,
                                                                   "samples": times}


def files_lines(files):
    """The markdown of files_throughput's figures: each direction against cp and against the loopback
    ceiling of the same run, with the spread of every figure (the 2-core VM is shared)."""
    mib, smp = files["mib"], files["samples"]
    def spread(k):
        return f"{min(smp[k]) * 1000:.0f}-{max(smp[k]) * 1000:.0f}"
    rows = [("upload (PUT of a host file; the daemon writes the sandbox's file)", "upload", "cp", "tcp_send_file"),
            ("download (GET into a new host file; the daemon reads 1 MiB blocks)", "download", "cp",
             "tcp_send_file"),
            ("ceiling, both shapes: 1 MiB reads sent over loopback TCP, received into a host file",
             "tcp_send_file", "cp", "tcp_send_file"),
            ("ceiling: sendfile over loopback TCP, received into a host file", "tcp_file", "cp", "tcp_send_file"),
            ("ceiling: sendfile over loopback TCP, the bytes dropped", "tcp", "cp", "tcp_send_file"),
            ("cp into a tmpfs (/dev/shm)", "cp_shm", "cp_shm", None),
            ("download into a tmpfs (/dev/shm)", "download_shm", "cp_shm", "tcp_send_shm"),
            ("ceiling: 1 MiB reads sent over loopback TCP, received into a tmpfs", "tcp_send_shm", "cp_shm",
             "tcp_send_shm")]

    def ratio(a, b):
        return f"{files[a] / files[b]:.2f}" if a else ""

    return [f"{mib} MiB of random bytes through the files API and `cp` of the same file on the same machine, "
            f"interleaved, {files['rounds']} rounds, medians; page cache warm on every side (the host file, the "
            "sandbox's tmpfs); the client (Python, 1 MiB pieces) reads the host file for the upload and writes the "
            "download into a new host file, as cp writes its copy, on ext4 and again on a tmpfs (each set against "
            "cp into the same file system). Each ceiling is its direction's shape without HTTP (4 MiB socket "
            "buffers, 1 MiB reads).", "",
            "| figure | MiB/s | ms (min-max) | ratio to cp | of the ceiling | goal |",
            "|---|---:|---:|---:|---:|---|",
            f"| cp | {mib / files['cp']:.0f} | {files['cp'] * 1000:.0f} ({spread('cp')}) | 1.00 | | |",
            *[f"| {label} | {mib / files[k]:.0f} | {files[k] * 1000:.0f} ({spread(k)}) | "
              f"{ratio(anchor, k)} | {ratio(ceiling, k)} | "
              f"{'>= 0.5' if k.startswith(('upload', 'download')) else ''} |"
              for label, k, anchor, ceiling in rows], ""]


def engine_floor(serve_bin, rounds, pause_ms=20):
    floor = os.path.join(os.path.dirname(serve_bin), "bench", "lms-floor")
    if not os.access(floor, os.X_OK):
        return None
    out = subprocess.run([floor, str(rounds), str(pause_ms), "/usr/bin/true"], capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        print(f"bench_server: no floor row: {out.stderr.strip()}", file=sys.stderr)
        return None
    return json.loads(out.stdout)


def round_trips_unpooled(serve_bin, rounds):
    proc, url = start_server(serve_bin, ["--pool-size", "0"])
    try:
        host, port = url.split("//")[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port))
        samples = [exec_once(conn) for _ in range(rounds + 10)][10:]
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return statistics.median(samples) / 1e6


def wrk_rate(url, seconds):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.body = \'%s\'\nwrk.headers["Content-Type"] = "application/json"\n'
                % BODY)
        script = f.name
    try:
        out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", script, url + "/v1/exec"],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(script)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return rate, int(bad.group(1)) if bad else 0, errors.group(1) if errors else "none"


def bwrap_rate(seconds, loops=2):
    counts = [0] * loops
    stop = time.monotonic() + seconds

    def loop(i):
        while time.monotonic() < stop:
            proc_once(BWRAP)
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(loops)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def load_fakes():
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fakes", "fake_llm.py")
    spec = importlib.util.spec_from_file_location("fake_llm", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def stream_once(url, model):
    """One streamed chat; returns (seconds to the first data line, total seconds, data lines)."""
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "x"}], "stream": True})
    t = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    first, lines, buf = None, 0, b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        if first is None:
            first = time.perf_counter() - t
        buf += chunk
        *done, buf = buf.split(b"\n\n")
        lines += sum(1 for d in done if d.startswith(b"data:"))
    total = time.perf_counter() - t
    conn.close()
    if resp.status != 200:
        sys.exit(f"bench_server: stream through {url} answered {resp.status}")
    return first, total, lines


def gateway(serve_bin, rounds, chunks):
    fakes = load_fakes()
    fake_url, stop_fake = fakes.start_fake("llamacpp", chunks=chunks, delay_ms=0)
    proc = subprocess.Popen([serve_bin, "--listen", "127.0.0.1:0", "--pool-size", "0", "--llamacpp-url", fake_url,
                             "--ollama-url", "http://127.0.0.1:9"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = None
        for line in proc.stderr:
            entry = json.loads(line)
            if entry.get("msg") == "listening":
                url = entry["url"]
                break
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        samples = {"direct": [], "gateway": []}
        for i in range(rounds + 2):
            for name, target in (("direct", fake_url), ("gateway", url)) if i % 2 else (("gateway", url), ("direct", fake_url)):
                r = stream_once(target, "tiny.gguf" if name == "direct" else "llamacpp/tiny.gguf")
                if i >= 2:
                    samples[name].append(r)
        used_rss = rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        stop_fake()
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v), v[0][2])
           for k, v in samples.items()}
    return med, used_rss


def mcp_vs_exec(url, rounds):
    """An MCP tools/call of bash `true` over Streamable HTTP (as a client that accepts events sends it) against
    POST /v1/sandboxes/{id}/exec of the same command, interleaved in one sandbox on kept-alive connections:
    medians in ms. None when the daemon has no /mcp."""
    conn, sbx = connect_with_sandbox(url)
    if conn is None:
        return None
    rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "bash", "arguments": {"sandbox_id": sbx, "command": "true"}}})
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}

    def mcp_once():
        t = time.perf_counter_ns()
        conn.request("POST", "/mcp", rpc, headers)
        resp = conn.getresponse()
        data = resp.read()
        took = time.perf_counter_ns() - t
        if resp.status != 200 or b'"isError":false' not in data:
            sys.exit(f"bench_server: MCP tools/call failed: {resp.status} {data[:200]!r}")
        return took

    def exec_once_cmd():
        t = time.perf_counter_ns()
        status, data = call(conn, "POST", f"/v1/sandboxes/{sbx}/exec", {"cmd": "true"})
        took = time.perf_counter_ns() - t
        if status != 200:
            sys.exit(f"bench_server: sandbox exec failed: {status} {data[:200]!r}")
        return took

    for _ in range(10):
        mcp_once()
        exec_once_cmd()
    mcp, execs = [], []
    for _ in range(rounds):
        mcp.append(mcp_once())
        execs.append(exec_once_cmd())
    call(conn, "DELETE", f"/v1/sandboxes/{sbx}")
    conn.close()
    return {"mcp": statistics.median(mcp) / 1e6, "exec": statistics.median(execs) / 1e6}


def emit(lines, append):
    """Prints a markdown section and appends it to the file `append` names (when it does)."""
    text = "\n".join(lines)
    print(text)
    if append:
        with open(append, "a") as f:
            f.write("\n" + text)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve-bin", default="build/lm-sandbox-serve")
    p.add_argument("--rounds", type=int, default=150)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--append", help="append a markdown section to this file")
    p.add_argument("--stream-rounds", type=int, default=10)
    p.add_argument("--stream-chunks", type=int, default=5000)
    p.add_argument("--files-only", action="store_true",
                   help="only the files API's throughput against cp and the loopback ceiling")
    p.add_argument("--files-rounds", type=int, default=11)
    args = p.parse_args()
    if args.files_only:
        proc, url = start_server(os.path.abspath(args.serve_bin))
        try:
            files = files_throughput(url, rounds=args.files_rounds)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        if files is None:
            sys.exit("bench_server: the daemon has no files API (POST /v1/sandboxes failed)")
        emit(["## Files API throughput", "", *files_lines(files)], args.append)
        return
    proc, url = start_server(os.path.abspath(args.serve_bin))
    try:
        time.sleep(0.5)  # settle before the idle reading; nothing else waits on this
        idle = rss_kib(proc.pid)
        spawner = sum(rss_kib(c) for c in children(proc.pid))
        rt = round_trips(url, args.rounds, proc.pid, POOL_SIZE)
        lasting = persistent(url, args.rounds, proc.pid)
        files = files_throughput(url, rounds=args.files_rounds)
        mcp = mcp_vs_exec(url, args.rounds)
        rate, bad, socket_errors = wrk_rate(url, args.seconds)
        brate = bwrap_rate(args.seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    unpooled = round_trips_unpooled(os.path.abspath(args.serve_bin), args.rounds)
    floor = engine_floor(os.path.abspath(args.serve_bin), args.rounds)
    gw, gw_rss = gateway(os.path.abspath(args.serve_bin), args.stream_rounds, args.stream_chunks)
    lines = [
        "## Server (`lm-sandbox serve`)", "",
        f"{args.rounds} interleaved rounds on one kept-alive connection, each run timed once the pool of "
        f"{POOL_SIZE} is full again (an agent's pace); wrk -t2 -c16 for {args.seconds} s; the bubblewrap rate "
        "is two parallel loops over the same time.", "",
        "| figure | lm-sandbox | anchor | ratio | goal |", "|---|---:|---:|---:|---|",
        f"| POST /v1/exec round trip (median ms) | {rt['exec']:.3f} | bwrap {rt['bwrap']:.3f} "
        f"| {rt['exec'] / rt['bwrap']:.2f} | <= 0.25 |",
        f"| same, against bare true | {rt['exec']:.3f} | true {rt['bare-true']:.3f} "
        f"| {rt['exec'] / rt['bare-true']:.2f} | about 2 |",
        f"| round trip back to back (refill beside the next request) | {rt['back-to-back']:.3f} "
        f"| bwrap {rt['bwrap']:.3f} | {rt['back-to-back'] / rt['bwrap']:.2f} | |",
        f"| round trip with --pool-size 0 | {unpooled:.3f} | bwrap {rt['bwrap']:.3f} "
        f"| {unpooled / rt['bwrap']:.2f} | |",
        *([f"| floor: the engine alone in a prepared sandbox, no HTTP (lms-floor) | {floor['launch_ms']:.3f} "
           f"| bwrap {rt['bwrap']:.3f} | {floor['launch_ms'] / rt['bwrap']:.2f} | |",
           f"| same floor, against a bare posix_spawn of true from C | {floor['launch_ms']:.3f} "
           f"| spawn {floor['bare_ms']:.3f} | {floor['launch_ms'] / floor['bare_ms']:.2f} | |"] if floor else []),
        f"| sustained rate, 16 clients (req/s) | {rate:.0f} | bwrap x2 {brate:.0f} | {rate / brate:.2f} | >= 4 |",
        f"| idle RSS of the daemon (MiB) | {idle / 1024:.1f} | | | <= 8 |",
        f"| idle RSS of the spawner (MiB) | {spawner / 1024:.1f} | | | |",
        f"| RSS of a daemon after gateway use, libcurl loaded (MiB) | {gw_rss / 1024:.1f} | | | |", "",
        f"wrk: non-2xx responses {bad}, socket errors {socket_errors}.", "",
        "Where the floor's time goes, phase by phase, and what the init and the mount teardown cost: "
        "[docs/PERFORMANCE.md](../docs/PERFORMANCE.md) (`bench/experiments/init-cost.sh`).", "",
        *(["## Persistent sandboxes", "",
           f"One sandbox, {args.rounds} commands on a kept-alive connection; a new sandbox and its first command "
           f"(the pool full again before each); {lasting['idle_count']} idle sandboxes: the PSS their workers and "
           "PID 1s add, and the daemon's RSS growth, per sandbox.", "",
           "| figure | lm-sandbox | anchor | ratio | goal |", "|---|---:|---:|---:|---|",
           *([f"| POST /v1/sandboxes/{{id}}/exec of true (median ms) | {lasting['exec']:.3f} "
              f"| spawn {floor['bare_ms']:.3f} | {lasting['exec'] / floor['bare_ms']:.2f} | <= 1.5 |"] if floor else []),
           f"| create a sandbox and run its first command (ms) | {lasting['first']:.3f} "
           f"| one-shot {rt['exec']:.3f} | {lasting['first'] / rt['exec']:.2f} | <= 1.5 |",
           f"| memory per idle sandbox on the host (KiB, PSS) | {lasting['idle_kib']:.0f} | | | <= 512 |",
           f"| daemon RSS growth per idle sandbox (KiB) | {lasting['daemon_kib']:.1f} | | | <= 100 |", ""]
          if lasting else []),
        *(files_lines(files) if files else []),
        *(["## MCP", "",
           f"{args.rounds} interleaved rounds in one sandbox on a kept-alive connection: POST /mcp tools/call of "
           "bash `true` (Accept: application/json, text/event-stream, as the official clients send it) against "
           "POST /v1/sandboxes/{id}/exec {\"cmd\": \"true\"}; medians.", "",
           "| figure | lm-sandbox | anchor | ratio | goal |", "|---|---:|---:|---:|---|",
           f"| MCP tools/call of bash true (ms) | {mcp['mcp']:.3f} | exec {mcp['exec']:.3f} "
           f"| {mcp['mcp'] / mcp['exec']:.2f} | <= 1.3 |", ""] if mcp else []),
        "## LLM gateway", "",
        f"A fake llama-server (tests/fakes/fake_llm.py) streams {args.stream_chunks} chunks as fast as it can; "
        f"{args.stream_rounds} streamed chats straight to it and through lm-sandbox, interleaved; medians.", "",
        "| figure | through lm-sandbox | direct | result | goal |", "|---|---:|---:|---:|---|",
        f"| chunks per second | {gw['gateway'][2] / gw['gateway'][1]:.0f} | {gw['direct'][2] / gw['direct'][1]:.0f} "
        f"| {gw['direct'][1] / gw['gateway'][1]:.3f}x | >= 0.98x |",
        f"| time to the first chunk (ms) | {gw['gateway'][0] * 1e3:.2f} | {gw['direct'][0] * 1e3:.2f} "
        f"| {(gw['gateway'][0] - gw['direct'][0]) * 1e3:+.2f} ms | <= +1 ms |", ""]
    emit(lines, args.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
