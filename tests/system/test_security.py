"""The sandbox's security model (docs/DESIGN.md, "The sandbox (security model)"), one test per promise.

Each test makes the forbidden thing happen inside a fresh sandbox and expects it to fail, and where it is cheap it
also shows the same attempt succeeding where nothing stops it (the probe run on the host, or a harmless variant in
the sandbox), so that a test cannot pass because the probe itself is broken.
"""

import fcntl
import os
import pty
import re
import resource
import secrets
import shutil
import signal
import socket
import tempfile
import termios
from pathlib import Path

import pytest

from conftest import (
    cgroup_is_v2,
    host_pids_with,
    own_cgroup_dir,
    remove_cgroup_tree,
    unique_marker,
    wait_pids_gone,
)

pytestmark = pytest.mark.require_root


def denied(p, *errnos):
    """The probe's attempt failed (with one of `errnos`, when given)."""
    if p.ok:
        return False
    return not errnos or p.errno in errnos


# ---- host files ---------------------------------------------------------------------------------------------------


def test_etc_shadow_unreadable(probe, host_probe):
    assert host_probe("read", "/etc/shadow").ok, "control: root on the host reads /etc/shadow"
    control = probe("read", "/etc/passwd")
    assert control.ok and "root:" in control.detail, f"control: /etc/passwd is readable inside\n{control}"
    p = probe("read", "/etc/shadow")
    assert denied(p), f"/etc/shadow was readable in the sandbox\n{p}"


PRIVATE_BASES = ["/root", "/home", "/var/tmp", "/run", "/srv", "/opt", "/mnt", "/media"]


@pytest.fixture(params=PRIVATE_BASES, ids=PRIVATE_BASES)
def host_secret(request):
    """A file with a random secret in a fresh directory under one of the host's private places."""
    base = request.param
    if not os.path.isdir(base):
        pytest.skip(f"this host has no {base}")
    d = tempfile.mkdtemp(prefix="lms-test-secret-", dir=base)
    path = Path(d, "secret.txt")
    token = secrets.token_hex(16)
    path.write_text(token)
    yield path, token
    shutil.rmtree(d)


def test_host_secret_files_invisible(probe, host_probe, host_secret):
    path, token = host_secret
    assert host_probe("read", path).detail == token, "control: the probe reads the secret on the host"
    p = probe("read", path)
    assert denied(p), f"{path} was readable in the sandbox\n{p}"
    assert token not in p.run.json["stdout"] + p.run.json["stderr"]
    listing = probe("listdir", path.parent.parent)
    assert not listing.ok or path.parent.name not in listing.detail, f"{path.parent} is listed inside\n{listing}"


@pytest.mark.parametrize("path", ["/usr/lms-probe-x", "/etc/lms-probe-x", "/bin/lms-probe-x", "/sbin/lms-probe-x",
                                  "/lib/lms-probe-x", "/usr/local/lms-probe-x"])
def test_read_only_paths_not_writable(probe, host_probe, path):
    if path == "/usr/lms-probe-x":
        assert host_probe("write", path).ok, "control: root on the host creates (and removes) the file"
    p = probe("write", path)
    assert denied(p), f"{path} could be created in the sandbox\n{p}"
    assert not os.path.exists(path), f"{path} appeared on the host"


def test_existing_host_file_not_writable(probe, host_probe):
    assert host_probe("write", "/etc/passwd").ok, "control: root on the host may open /etc/passwd for writing"
    p = probe("write", "/etc/passwd")
    assert denied(p, "EROFS", "EACCES", "EPERM"), f"/etc/passwd could be opened for writing\n{p}"


KERNEL_KNOBS = ["/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
                "/proc/sys/vm/drop_caches", "/sys/kernel/uevent_helper", "/sys/fs/cgroup/memory/cgroup.procs",
                "/sys/fs/cgroup/cgroup.procs"]


# Only knobs this host has: where a file is missing on the host, its absence inside would prove nothing.
@pytest.mark.parametrize("path", [k for k in KERNEL_KNOBS if os.path.exists(k)])
def test_kernel_knobs_not_writable(probe, path):
    # Opening only: the probe never writes into an existing file, so this is harmless even if it succeeded.
    p = probe("write", path)
    assert denied(p), f"{path} could be opened for writing in the sandbox\n{p}"


def test_mounts_are_nosuid(run):
    # Only a directory mount can hold a setuid binary; single device nodes bound onto /dev/null etc. cannot.
    script = 'while read -r _ _ _ _ mp opts _; do [ -d "$mp" ] && echo "$mp $opts"; done < /proc/self/mountinfo'
    r = run(["--", "sh", "-c", script])
    assert r.returncode == 0 and r["exit_code"] == 0, str(r)
    mounts = [line.split() for line in r["stdout"].splitlines()]
    assert any(mp == "/usr" or mp == "/" for mp, _ in mounts), f"control: mounts were listed: {mounts}"
    suid = [f"{mp} ({opts})" for mp, opts in mounts if "nosuid" not in opts.split(",")]
    assert not suid, f"directory mounts inside the sandbox without nosuid: {suid}"


def test_host_private_dirs_absent_or_empty(run):
    script = 'for d in /home /root /var /run /srv /mnt /media /opt; do [ -e "$d" ] && echo "$d:" $(ls -A "$d"); done; true'
    r = run(["--", "sh", "-c", script])
    assert r.returncode == 0 and r["exit_code"] == 0, str(r)
    not_empty = [line for line in r["stdout"].splitlines() if line.split(":", 1)[1].strip()]
    assert not not_empty, f"host directories visible inside: {not_empty}"


def test_dev_is_minimal(run):
    allowed = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
               "fd", "stdin", "stdout", "stderr", "core", "mqueue"}
    r = run(["--", "ls", "-A", "/dev"])
    assert r.returncode == 0 and r["exit_code"] == 0, str(r)
    entries = set(r["stdout"].split())
    assert {"null", "zero", "urandom"} <= entries, f"control: /dev has the basics: {entries}"
    assert entries <= allowed, f"unexpected devices inside: {sorted(entries - allowed)}"


# ---- processes ----------------------------------------------------------------------------------------------------


def test_proc_shows_only_sandbox_processes(probe):
    p = probe("listdir", "/proc")
    assert p.ok, str(p)
    pids = sorted(int(n) for n in p.detail.split() if n.isdigit())
    assert pids, f"control: /proc lists the sandbox's own processes\n{p}"
    assert len(pids) <= 5 and max(pids) < 100, f"/proc shows more than the sandbox: {pids}"
    assert os.getpid() not in pids


def test_probe_pid_is_small(probe):
    p = probe("pid")
    pid = int(p.detail.split()[0])
    assert pid < 10, f"the sandbox has no PID namespace of its own: pid {pid}"


def test_host_process_not_signalable(probe, host_probe):
    me = os.getpid()
    assert host_probe("kill", me, 0).ok, "control: the probe can signal pytest from the host"
    assert probe("kill", "self", 0).ok, "control: kill works inside"
    p = probe("kill", me, 0)
    assert denied(p, "ESRCH"), f"pytest's pid {me} is reachable from the sandbox\n{p}"


# ---- network ------------------------------------------------------------------------------------------------------


@pytest.fixture
def listener():
    """listener(family, address) -> (address, port): a TCP listener on the host, closed after the test."""
    socks = []

    def _listen(family=socket.AF_INET, address="127.0.0.1"):
        s = socket.socket(family, socket.SOCK_STREAM)
        socks.append(s)
        s.bind((address, 0))
        s.listen(16)
        return s.getsockname()[:2]

    yield _listen
    for s in socks:
        s.close()


def test_host_loopback_unreachable(probe, host_probe, listener):
    addr, port = listener()
    assert host_probe("connect", addr, port).ok, "control: the listener accepts connections on the host"
    p = probe("connect", addr, port)
    assert denied(p), f"the sandbox reached the host's {addr}:{port}\n{p}"


def test_host_loopback_v6_unreachable(probe, host_probe, listener):
    if not socket.has_ipv6 or not Path("/proc/net/if_inet6").exists():
        pytest.skip("this host has no IPv6")
    addr, port = listener(socket.AF_INET6, "::1")
    assert host_probe("connect", addr, port).ok, "control: the listener accepts connections on the host"
    p = probe("connect", addr, port)
    assert denied(p), f"the sandbox reached the host's [{addr}]:{port}\n{p}"


def host_ipv4_address():
    """A non-loopback IPv4 address of this host (a UDP connect sends nothing; it only picks a source address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def test_host_external_address_unreachable(probe, host_probe, listener):
    addr = host_ipv4_address()
    if addr is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    _, port = listener(socket.AF_INET, "0.0.0.0")
    assert host_probe("connect", addr, port).ok, f"control: the listener accepts connections on {addr}"
    p = probe("connect", addr, port)
    assert denied(p), f"the sandbox reached the host's {addr}:{port}\n{p}"


# ---- privileges ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check,args", [("mount", ("/tmp/x",)), ("umount", ("/proc",)), ("pivot_root", ())])
def test_mount_calls_denied(probe, check, args):
    p = probe(check, *args)
    assert denied(p, "EPERM"), f"{check} was not refused with EPERM\n{p}"


def test_pivot_root_reaches_the_kernel_on_the_host(host_probe):
    # The sandbox test above expects EPERM; this shows the probe's call gets something else where it is allowed.
    assert host_probe("pivot_root").errno != "EPERM"


@pytest.mark.parametrize("check", ["unshare-user", "clone-user"])
def test_new_user_namespace_denied(probe, host_probe, check):
    assert host_probe(check).ok, f"control: {check} works on the host"
    p = probe(check)
    assert denied(p, "EPERM"), f"{check} was not refused with EPERM\n{p}"


def test_clone3_is_enosys(probe, host_probe):
    # clone3 passes its flags in memory seccomp cannot read: it must be refused whole, with ENOSYS so that libc
    # falls back to clone, whose flags the filter does check.
    assert host_probe("clone3").ok, "control: clone3(CLONE_NEWUSER) works on the host"
    p = probe("clone3")
    assert denied(p, "ENOSYS"), f"clone3 was not refused with ENOSYS\n{p}"


SECCOMP_DENIED = [
    "setns", "keyctl", "add_key", "request_key", "bpf", "io_uring", "userfaultfd", "perf_event_open",
    "open_by_handle_at", "name_to_handle_at", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "process_vm_readv", "process_vm_writev", "acct", "swapon", "swapoff", "reboot",
    "settimeofday", "clock_settime", "adjtimex", "quotactl",
]


@pytest.mark.parametrize("check", SECCOMP_DENIED)
def test_seccomp_denies(probe, host_probe, check):
    host = host_probe(check)
    p = probe(check)
    # On the host the same call succeeds or fails otherwise (ENOENT, EINVAL, ENOSYS...), except where the host
    # itself refuses it to root: then this test cannot tell the filter from the kernel, but EPERM is still required.
    assert denied(p, "EPERM"), f"{check} was not refused with EPERM\n{p}\non the host: {host}"


# What Docker's default profile refuses a command without CAP_SYS_PTRACE or CAP_SYS_NICE, or a personality outside
# its safe set: each works for root on the host (the control), and fails with EPERM inside.
DOCKER_DENIED = ["kcmp", "personality", "set_mempolicy", "modify_ldt"]


@pytest.mark.parametrize("check", DOCKER_DENIED)
def test_seccomp_denies_what_docker_denies(probe, host_probe, check):
    host = host_probe(check)
    assert host.ok, f"control: {check} works on the host\n{host}"
    p = probe(check)
    assert denied(p, "EPERM"), f"{check} was not refused with EPERM\n{p}"


def test_linux_aio_is_enosys(probe, host_probe):
    # io_setup takes from fs.aio-max-nr, one budget for the whole host; ENOSYS is what a kernel without AIO says.
    host = host_probe("io_setup")
    assert host.ok, f"control: io_setup works on the host\n{host}"
    p = probe("io_setup")
    assert denied(p, "ENOSYS"), f"io_setup was not refused with ENOSYS\n{p}"


def test_vsock_denied(probe, host_probe):
    # A network namespace does not isolate vsock: it reaches the hypervisor and the host's other guests.
    if not os.path.exists("/dev/vsock"):
        pytest.skip("NO VSOCK: this host has no /dev/vsock, so the control cannot show the family works")
    host = host_probe("vsock")
    assert host.ok, f"control: socket(AF_VSOCK) works on the host\n{host}"
    for check in ("vsock", "vsock_pair"):
        p = probe(check)
        assert denied(p, "EPERM"), f"{check} was not refused with EPERM\n{p}"


def test_lookup_dcookie_denied(probe):
    p = probe("lookup_dcookie")
    assert denied(p, "EPERM", "ENOSYS"), str(p)


def test_tiocsti_denied(probe, host_probe):
    assert host_probe("tiocsti").errno != "EPERM", "control: the probe's ioctl reaches the tty layer on the host"
    p = probe("tiocsti")
    assert denied(p, "EPERM"), f"ioctl(TIOCSTI) was not refused with EPERM\n{p}"


def test_mknod_denied(probe):
    p = probe("mknod", "/tmp/lms-probe-node")
    assert denied(p), f"a device node could be created\n{p}"


def parse_status(detail):
    return dict(re.findall(r"^(\w+):\s*(\S+)", detail, re.M))


CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE = 21, 12, 19, 16
# Capabilities outside Docker's default set that no model-written command needs.
CAPS_NEVER = {
    "DAC_READ_SEARCH": 2, "NET_ADMIN": 12, "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_PTRACE": 19, "SYS_PACCT": 20,
    "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_TIME": 25, "AUDIT_CONTROL": 30, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33,
    "SYSLOG": 34, "BPF": 39, "PERFMON": 38, "CHECKPOINT_RESTORE": 40,
}


def test_capabilities_bounded(probe, host_probe):
    host = parse_status(host_probe("caps").detail)
    assert int(host["CapEff"], 16) >> CAP_SYS_ADMIN & 1, "control: root on the host has CAP_SYS_ADMIN"
    caps = parse_status(probe("caps").detail)
    for name in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert not int(caps[name], 16) >> CAP_SYS_ADMIN & 1, f"{name} has CAP_SYS_ADMIN: {caps}"
    for bit in (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE):
        for name in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"):
            assert not int(caps[name], 16) >> bit & 1, f"{name} has capability {bit}: {caps}"


def test_dangerous_capabilities_absent(probe):
    caps = parse_status(probe("caps").detail)
    held = {name: bit for name, bit in CAPS_NEVER.items()
            if any(int(caps[k], 16) >> bit & 1 for k in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"))}
    assert not held, f"capabilities a sandbox never needs are held: {sorted(held)} ({caps})"


def test_no_new_privs(probe, host_probe):
    assert parse_status(host_probe("nnp").detail)["NoNewPrivs"] == "0", "control"
    assert parse_status(probe("nnp").detail)["NoNewPrivs"] == "1"


def test_seccomp_filter_active(probe, host_probe):
    assert parse_status(host_probe("seccomp").detail)["Seccomp"] == "0", "control"
    assert parse_status(probe("seccomp").detail)["Seccomp"] == "2"


def parse_id_maps(detail):
    """'uid gid\\nuid_map:\\n...\\ngid_map:\\n...' -> (uid, gid, uid ranges, gid ranges)."""
    head, rest = detail.split("\nuid_map:\n", 1)
    uid_map, gid_map = rest.split("gid_map:\n", 1)
    ranges = lambda text: [tuple(map(int, line.split())) for line in text.strip().splitlines()]
    uid, gid = map(int, head.split())
    return uid, gid, ranges(uid_map), ranges(gid_map)


def test_uid_zero_is_unprivileged_on_host(probe):
    uid, gid, uid_map, gid_map = parse_id_maps(probe("uid").detail)
    assert (uid, gid) == (0, 0), "the command runs as root of its own user namespace"
    for name, ranges in (("uid_map", uid_map), ("gid_map", gid_map)):
        assert ranges, f"{name} is empty"
        for inside, outside, count in ranges:
            assert not outside <= 0 < outside + count, f"{name} maps host id 0: {ranges}"
        zero = [outside for inside, outside, count in ranges if inside <= 0 < inside + count]
        assert zero and zero[0] != 0, f"{name}: in-sandbox 0 is host 0 or unmapped: {ranges}"


def test_hostname_is_sandbox(probe):
    assert probe("hostname").detail == "sandbox"


# ---- limits -------------------------------------------------------------------------------------------------------


# Connections on the sandbox's own loopback whose receiver never reads: each send is queued in kernel socket
# buffers until EAGAIN. Stops at CAP MiB, so that even where nothing bounds them the host only lends that much.
TCP_QUEUE_SCRIPT = """
import socket, sys
cap, bufsize = int(sys.argv[1]) << 20, int(sys.argv[2])
srv = socket.socket()
if bufsize:
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
srv.bind(("127.0.0.1", 0))
srv.listen(512)
held, total, chunk = [], 0, b"x" * 65536
while total < cap and len(held) < 800:
    c = socket.socket()
    if bufsize:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
    c.connect(srv.getsockname())
    c.setblocking(False)
    held += [c, srv.accept()[0]]
    for _ in range(512):
        try:
            total += c.send(chunk)
        except BlockingIOError:
            break
        if total >= cap:
            break
print("queued", total, "connections", len(held) // 2)
"""


@pytest.mark.parametrize("bufsize", [0, 4 << 20], ids=["default-buffers", "SO_SNDBUF-4MiB"])
def test_socket_buffers_bounded(run, outer_cgroup, bufsize):
    # cgroup v1 does not charge TCP buffers to the memory limit: a 64 MiB sandbox queued 1.5 GiB on its loopback.
    args = ["--memory-mb", "64", "--timeout-ms", "30000", "--", "python3", "-c", TCP_QUEUE_SCRIPT]
    control = run([*args, "4", str(bufsize)], cgroup=outer_cgroup)
    assert control.returncode == 0 and control["exit_code"] == 0, str(control)
    assert int(control["stdout"].split()[1]) >= 4 << 20, f"control: 4 MiB queue on loopback\n{control.json}"
    r = run([*args, "256", str(bufsize)], cgroup=outer_cgroup, timeout=60)
    assert r.returncode == 0, str(r)
    if r["oom_killed"]:
        return  # the buffers were charged to the sandbox's memory: that bounds them too
    assert r["exit_code"] == 0, r.json
    queued = int(r["stdout"].split()[1])
    assert queued < 64 << 20, f"{queued >> 20} MiB queued in loopback socket buffers by a 64 MiB sandbox: {r.json}"


def test_memory_limit(run, outer_cgroup):
    small = run(["--memory-mb", "64", "--", "python3", "-c", "b = b'x' * (8 << 20); print(len(b))"],
                cgroup=outer_cgroup)
    assert small.returncode == 0 and small["stdout"].strip() == str(8 << 20), f"control: 8 MiB fits\n{small}"
    r = run(["--memory-mb", "64", "--", "python3", "-c", "b = b'x' * (300 << 20); print(len(b))"],
            cgroup=outer_cgroup)
    assert r.returncode == 0, str(r)
    assert r["oom_killed"] is True, f"300 MiB under a 64 MiB limit was not OOM-killed: {r.json}"
    assert r["exit_code"] == 137 or r["signal"] == "SIGKILL", r.json


def test_pids_limit(run, outer_cgroup):
    # sh (dash) gives up at the first failed fork; bash would retry for seconds. The sleeps outlive the loop only
    # until the main shell exits, when the sandbox takes them down.
    script = 'i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); done; echo started $i'
    control = run(["--pids", "256", "--timeout-ms", "20000", "--", "sh", "-c", script], cgroup=outer_cgroup)
    assert control.returncode == 0 and control["stdout"] == "started 100\n", f"control: 100 fit in 256\n{control}"
    r = run(["--pids", "16", "--timeout-ms", "20000", "--", "sh", "-c", script], cgroup=outer_cgroup, timeout=30)
    assert r.returncode == 0, str(r)
    assert r["timed_out"] is False and r["exit_code"] != 0, r.json
    assert "started 100" not in r["stdout"], r.json
    assert "fork" in r["stderr"].lower(), f"no fork failure reported: {r.json}"


def test_wall_clock_timeout(run):
    r = run(["--timeout-ms", "500", "--", "sleep", "30"])
    assert r.returncode == 0, str(r)
    assert r["timed_out"] is True, r.json
    assert r.elapsed < 20, f"returned after {r.elapsed:.1f} s"
    plain = run(["--timeout-ms", "500", "--", "sleep", "30"], json=False)
    assert plain.returncode == 124, str(plain)
    assert plain.elapsed < 20


def test_cpu_time_limit(run, outer_cgroup):
    r = run(["--cpu-ms", "300", "--timeout-ms", "20000", "--", "sh", "-c", "while :; do :; done"],
            cgroup=outer_cgroup, timeout=30)
    assert r.returncode == 0, str(r)
    assert r["timed_out"] is False, f"the busy loop ran to the wall-clock limit: {r.json}"
    assert r["signal"] in ("SIGKILL", "SIGXCPU"), r.json
    assert 250 <= r["cpu_ms"] < 5000, f"cpu_ms {r['cpu_ms']} is not near the 300 ms limit"


SPIN_SCRIPT = """
import os, time
end = time.monotonic() + 1.5
for _ in range(2):
    if os.fork() == 0:
        while time.monotonic() < end:
            pass
        os._exit(0)
for _ in range(2):
    os.wait()
"""


def test_cpu_bandwidth_limit(run, outer_cgroup):
    # Two busy processes for 1.5 s: without a limit they use more than a core (the control), under --cpus 0.5
    # about half of one. A bound on CPU time over wall time, never on speed.
    free = run(["--timeout-ms", "20000", "--", "python3", "-c", SPIN_SCRIPT], cgroup=outer_cgroup, timeout=30)
    assert free.returncode == 0 and free["exit_code"] == 0, str(free)
    assert free["cpu_ms"] / free["duration_ms"] > 0.8, f"control: two spinners use most of a core: {free.json}"
    r = run(["--cpus", "0.5", "--timeout-ms", "20000", "--", "python3", "-c", SPIN_SCRIPT], cgroup=outer_cgroup,
            timeout=30)
    assert r.returncode == 0 and r["exit_code"] == 0, str(r)
    ratio = r["cpu_ms"] / r["duration_ms"]
    assert ratio < 0.8, f"--cpus 0.5 used {ratio:.2f} cores over its wall time: {r.json}"


def test_output_limit(run):
    r = run(["--output-bytes", "1000", "--", "sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' a"])
    assert r.returncode == 0, str(r)
    assert len(r["stdout"]) == 1000 and r["stdout_truncated"] is True, (len(r["stdout"]), r["stdout_truncated"])
    assert r["stderr_truncated"] is False
    assert r["exit_code"] == 0, f"output past the cap must be read and discarded, not kill the writer: {r.json}"
    e = run(["--output-bytes", "1000", "--", "sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' a >&2"])
    assert len(e["stderr"]) == 1000 and e["stderr_truncated"] is True and e["stdout_truncated"] is False
    plain = run(["--output-bytes", "1000", "--", "sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' a"], json=False)
    assert plain.returncode == 0 and len(plain.stdout) == 1000, (plain.returncode, len(plain.stdout))


@pytest.mark.parametrize("first,second", [("/work", "/work"), ("/tmp", "/tmp"), ("/dev/shm", "/tmp")],
                         ids=["work", "tmp", "dev-shm-and-tmp"])
def test_disk_limit(run, first, second):
    # --disk-mb 8 holds /work, /tmp and /dev/shm together (one scratch tmpfs): 5 MiB fit, 5 MiB more do not.
    script = (f"head -c 5242880 /dev/zero > {first}/a && echo first-ok; "
              f'head -c 5242880 /dev/zero > {second}/b; echo "second-rc=$?"; wc -c < {second}/b')
    r = run(["--disk-mb", "8", "--", "sh", "-c", script])
    assert r.returncode == 0, str(r)
    out = r["stdout"].split()
    assert out[0] == "first-ok", f"control: 5 MiB fit in {first} under 8 MiB\n{r.json}"
    assert out[1] != "second-rc=0", f"10 MiB were written into {first} and {second} under --disk-mb 8: {r.json}"
    assert "No space left on device" in r["stderr"], r.json
    assert int(out[2]) <= 3 << 20, f"{second}/b holds {out[2]} bytes"


def limits_of(text):
    """/proc/self/limits as {name: (soft, hard)}, "unlimited" as None."""
    out = {}
    for line in text.splitlines()[1:]:
        m = re.match(r"(.+?)\s{2,}(\S+)\s+(\S+)", line)
        if m:
            out[m.group(1)] = tuple(None if v == "unlimited" else int(v) for v in m.group(2, 3))
    return out


def raise_nofile():
    """Soft and hard open-file limits as high as this process may set them (524288 where CAP_SYS_RESOURCE allows)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (524288, 524288))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def test_open_files_bounded_whatever_the_caller_has(run):
    # The CLI runs with a large limit (systemd gives services 524288): the sandbox still gets its own bound.
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] <= 4096:
        pytest.skip("NO LARGE LIMIT: this process's hard RLIMIT_NOFILE is not above the sandbox's 4096")
    r = run(["--", "sh", "-c", "cat /proc/self/limits; ulimit -Hn"], preexec_fn=raise_nofile)
    assert r.returncode == 0 and r["exit_code"] == 0, str(r)
    limits = limits_of(r["stdout"])
    assert limits["Max open files"] == (1024, 4096), f"open files inside: {limits['Max open files']}\n{r.json}"
    assert r["stdout"].split()[-1] == "4096", r.json


def test_per_user_counters_bounded(run):
    # Host root created the user namespace: without bounds of its own, the sandbox would share root's queued-signal,
    # message-queue and inotify totals with systemd and every other sandbox.
    r = run(["--", "sh", "-c", "cat /proc/self/limits; cat /proc/sys/user/max_inotify_instances "
             "/proc/sys/user/max_inotify_watches"])
    assert r.returncode == 0 and r["exit_code"] == 0, str(r)
    limits = limits_of(r["stdout"])
    assert limits["Max pending signals"] == (1024, 1024), limits
    assert limits["Max msgqueue size"] == (65536, 65536), limits
    assert r["stdout"].split()[-2:] == ["8", "8192"], r.json


# Opens up to TRIES of a kind of kernel object, holding each; prints the error that stopped it, then the count.
HOLD_SCRIPT = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)


def inotify():
    if libc.inotify_init1(0) < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


make = {"inotify": inotify, "pty": os.openpty}[sys.argv[1]]
held = []
try:
    while len(held) < int(sys.argv[2]):
        held.append(make())
except OSError as e:
    print("failed", e.strerror)
print(len(held))
"""


# inotify: host root's fs.inotify.max_user_instances (128) counts the sandbox's too; ptys: every devpts instance
# takes from the host's kernel.pty.max (4096). Twice the bound in tries is harmless for the host even where nothing
# bounds them.
@pytest.mark.parametrize("kind,tries,bound,error", [("inotify", 16, 8, "Too many open files"),
                                                    ("pty", 80, 64, "No space left on device")])
def test_kernel_objects_bounded(run, kind, tries, bound, error):
    r = run(["--", "python3", "-c", HOLD_SCRIPT, kind, str(tries)])
    assert r.returncode == 0 and r["exit_code"] == 0, str(r)
    held = int(r["stdout"].split()[-1])
    assert 1 <= held <= bound, f"{held} {kind} objects were held under a bound of {bound}: {r.json}"
    assert error in r["stdout"], r.json


# ---- leaving nothing behind ---------------------------------------------------------------------------------------


def wait_for_sleeps(marker, count):
    """Shell that spins until `count` processes run exactly `sleep MARKER` (so the host can look for them)."""
    return f"""
n=0
while [ $n -lt {count} ]; do
  n=0
  for f in /proc/[0-9]*/cmdline; do
    case "$(tr '\\0' ' ' 2>/dev/null < "$f")" in "sleep {marker} ") n=$((n+1));; esac
  done
done
"""


def daemonise_script(marker, then):
    """Starts `sleep MARKER` three ways a process escapes its parent, waits until all three run, then `then`."""
    return f"""
setsid sh -c 'exec sleep {marker}' </dev/null >/dev/null 2>&1 &
( sleep {marker} </dev/null >/dev/null 2>&1 & )
nohup sleep {marker} </dev/null >/dev/null 2>&1 &
{wait_for_sleeps(marker, 3)}
{then}
"""


def test_daemonised_processes_die_with_the_call(run):
    marker = unique_marker()
    r = run(["--timeout-ms", "20000", "--", "sh", "-c", daemonise_script(marker, "echo started")], timeout=40)
    assert r.returncode == 0 and r["stdout"] == "started\n", f"control: the three daemons started\n{r}"
    assert r["timed_out"] is False
    left = host_pids_with(marker)
    assert not left, f"processes outlived the call: {left}"


def test_daemonised_processes_die_on_timeout(spawn):
    marker = unique_marker()
    s = spawn(["--timeout-ms", "4000", "--", "sh", "-c", daemonise_script(marker, "echo ready; wait")])
    assert s.read_until(b"ready\n", 20), f"the sandbox never said ready: {s.out!r}"
    running = host_pids_with(marker)
    assert len(running) == 3, f"control: the host sees the sandbox's 3 sleeps (output streamed): {running}"
    status, _, err = s.wait(30)
    assert status == 124, f"exit status {status}, stderr {err!r}"
    left = host_pids_with(marker)
    assert not left, f"processes outlived the timeout: {left}"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_killed_cli_takes_the_sandbox_down(spawn, sig):
    marker = unique_marker()
    s = spawn(["--timeout-ms", "60000", "--", "sh", "-c", daemonise_script(marker, "echo ready; wait")])
    assert s.read_until(b"ready\n", 20), f"the sandbox never said ready: {s.out!r}"
    running = host_pids_with(marker)
    assert len(running) == 3, f"control: the host sees the sandbox's 3 sleeps: {running}"
    groups = sandbox_cgroups(running[0])
    s.proc.send_signal(getattr(signal, sig))
    s.proc.wait(30)
    try:
        alive = wait_pids_gone(running, 10)
        assert not alive, f"after {sig} to the CLI, sandbox processes still run 10 s later: {alive}"
    finally:
        for pid in host_pids_with(marker):
            os.kill(pid, signal.SIGKILL)
        for d in groups:  # tidy the host: this sandbox's cgroups only (other runs may share the parent)
            remove_cgroup_tree(d)


def own_cgroup_dirs():
    if cgroup_is_v2():
        return {"unified": own_cgroup_dir(None)}
    return {c: own_cgroup_dir(c) for c in ("memory", "pids", "cpuacct")}


def sandbox_cgroups(pid):
    """The lms-* cgroup directories (one per hierarchy) that host process `pid` is in or below. On cgroup v1 the
    contract puts them right below the caller's own cgroup; on v2 only the lms- name is required."""
    found = []
    for controller, own in own_cgroup_dirs().items():
        assert own is not None, f"no {controller} cgroup hierarchy found for pytest"
        d = own_cgroup_dir(None if controller == "unified" else controller, pid)
        if controller == "unified":
            tops = [p for p in [d, *d.parents] if p.name.startswith("lms-")] if d else []
            top = tops[-1] if tops else None
            where = "in an lms-* cgroup"
        else:
            top = own / d.relative_to(own).parts[0] if d and d.is_relative_to(own) and d != own else None
            where = f"inside an lms-* child of {own}"
        assert top is not None and top.name.startswith("lms-"), f"the command's {controller} cgroup is {d}, not {where}"
        found.append(top)
    return found


def test_cgroups_used_and_removed(spawn):
    # Other runs on this machine may share our cgroup's parent: only the cgroups of this call are looked at.
    marker = unique_marker()
    script = f"sleep {marker} & {wait_for_sleeps(marker, 1)} echo ready; wait"
    s = spawn(["--timeout-ms", "3000", "--", "sh", "-c", script])
    assert s.read_until(b"ready\n", 20), f"the sandbox never said ready: {s.out!r}"
    pids = host_pids_with(marker)
    assert len(pids) == 1, pids
    groups = sandbox_cgroups(pids[0])
    assert all(d.is_dir() for d in groups)
    status, _, err = s.wait(30)
    assert status == 124, err
    left = [str(d) for d in groups if d.exists()]
    assert not left, f"cgroups left after the call: {left}"


def test_no_mounts_left(run):
    before = Path("/proc/self/mountinfo").read_text().splitlines()
    r = run(["--", "echo", "hi"])
    assert r.returncode == 0 and r["stdout"] == "hi\n", str(r)
    after = Path("/proc/self/mountinfo").read_text().splitlines()
    assert len(after) == len(before) and set(after) == set(before), \
        f"host mounts changed: +{set(after) - set(before)} -{set(before) - set(after)}"


SCRATCH_DIRS = ["/tmp", "/var/tmp", "/dev/shm", "/run", "/var/lib", "/root"]


def test_no_scratch_files_left(run):
    def snapshot():
        return {d: set(os.listdir(d)) for d in SCRATCH_DIRS if os.path.isdir(d)}

    before = snapshot()
    r = run(["--disk-mb", "16", "--", "sh", "-c", "echo x > /work/f; echo y > /tmp/g; echo done"])
    assert r.returncode == 0 and r["stdout"] == "done\n", str(r)
    after = snapshot()
    new = {d: sorted(after[d] - before.get(d, set())) for d in after if after[d] - before.get(d, set())}
    assert not new, f"files left on the host: {new}"


# ---- inheriting nothing -------------------------------------------------------------------------------------------


def test_no_inherited_fds(probe, host_probe, tmp_path):
    f = tmp_path / "inherited"
    f.write_text("secret")
    fd = os.open(f, os.O_RDONLY)
    try:
        os.set_inheritable(fd, True)
        assert str(fd) in host_probe("fds", pass_fds=(fd,)).detail.split(), "control: the fd is passed on"
        p = probe("fds", pass_fds=(fd,))
        assert p.detail == "0 1 2", f"the sandbox has fds {p.detail!r}; the CLI was given {fd}"
    finally:
        os.close(fd)


def test_no_inherited_environment(probe):
    token = secrets.token_hex(8)
    env = {**os.environ, "LMS_SECRET_TEST": token}
    p = probe("env", extra_run_args=("--env", "FOO=bar"), env=env)
    names = dict(line.split("=", 1) for line in p.detail.splitlines())
    assert "LMS_SECRET_TEST" not in names and token not in p.detail, f"the caller's variable leaked: {names}"
    assert "PATH" in names and "HOME" in names, names
    assert names.get("FOO") == "bar", names


def test_environment_is_exactly_the_documented_one(run):
    env = {**os.environ, "LMS_SECRET_TEST": "x"}
    r = run(["--env", "FOO=bar", "--", "env"], env=env)
    assert r.returncode == 0 and r["exit_code"] == 0, str(r)
    names = {line.split("=", 1)[0] for line in r["stdout"].splitlines()}
    assert {"PATH", "HOME", "FOO"} <= names <= {"PATH", "HOME", "LANG", "TERM", "FOO"}, names


def test_no_controlling_terminal(probe, host_probe):
    master, slave = pty.openpty()

    def take_tty():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    try:
        assert host_probe("tty", pass_fds=(slave,), preexec_fn=take_tty).ok, \
            "control: with a controlling terminal, /dev/tty opens"
        p = probe("tty", pass_fds=(slave,), preexec_fn=take_tty)
        assert denied(p), f"the sandbox opened the caller's controlling terminal\n{p}"
    finally:
        os.close(master)
        os.close(slave)
