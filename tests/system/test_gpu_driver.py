"""The GPU driver's user-space files in an image sandbox, on a host without an NVIDIA GPU: in a mount namespace of
the test's own, /dev gets fake NVIDIA nodes (binds of /dev/null) and /etc/ld.so.cache a cache that lists fake driver
libraries (real ELF objects with the driver's sonames, built here), with a fake nvidia-smi on PATH. An image sandbox
with --gpu then has them at /usr/local/nvidia, on its LD_LIBRARY_PATH and PATH; without --gpu nothing of them is
there. The real driver: bench/gpu-check.sh on a GPU machine. Parsing over fake loader output: tests/unit/test-gpu.c.
"""

import gzip
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from test_images import image_cmd, mini_rootfs

pytestmark = pytest.mark.require_root

LIBS = ["libcuda.so.1", "libnvidia-ml.so.1", "libnvidia-ptxjitcompiler.so.1"]

# Runs "$@" in a private mount namespace where /dev is a tmpfs holding binds of the host's entries plus the fake
# NVIDIA nodes, and /etc/ld.so.cache is the fake cache ($FAKE/ld.so.cache).
NAMESPACE = r"""
set -eu
mkdir -p "$FAKE/hostdev"
mount --rbind /dev "$FAKE/hostdev"
mount -t tmpfs -o mode=0755 fake-dev /dev
for e in "$FAKE"/hostdev/*; do
    n=${e##*/}
    if [ -L "$e" ]; then cp -P "$e" "/dev/$n"
    elif [ -d "$e" ]; then mkdir "/dev/$n"; mount --rbind "$e" "/dev/$n"
    else touch "/dev/$n"; mount --bind "$e" "/dev/$n"; fi
done
for n in nvidiactl nvidia0 nvidia-uvm; do touch "/dev/$n"; mount --bind "$FAKE/hostdev/null" "/dev/$n"; done
mount --bind "$FAKE/ld.so.cache" /etc/ld.so.cache
exec "$@"
"""


def readable_dir():
    """A directory that the sandbox's root (an unprivileged id outside) can read, as a driver's are (pytest's own
    temporary directories are the test user's alone)."""
    d = Path(tempfile.mkdtemp(prefix="lms-fake-driver-", dir="/var/tmp"))
    d.chmod(0o755)
    return d


@pytest.fixture(scope="module")
def fake_driver():
    if shutil.which("gcc") is None or shutil.which("unshare") is None:
        pytest.fail("gcc and unshare (util-linux) are needed to make the fake driver")
    d = readable_dir()
    yield from _fake_driver(d)
    shutil.rmtree(d)


def _fake_driver(d):
    lib = d / "lib"
    lib.mkdir()
    src = d / "empty.c"
    src.write_text("int lms_fake_driver_marker(void) { return 42; }\n")
    for name in LIBS:
        subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{name}", "-o", lib / name, src], check=True)
    (d / "ld.so.conf").write_text(f"{lib}\ninclude /etc/ld.so.conf\n")
    subprocess.run(["ldconfig", "-C", d / "ld.so.cache", "-f", d / "ld.so.conf"], check=True)
    listed = subprocess.run(["ldconfig", "-p", "-C", d / "ld.so.cache"], capture_output=True, text=True).stdout
    assert all(f"{name} (libc6,x86-64) => {lib / name}" in listed for name in LIBS), listed
    bindir = d / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-fake)'\n")
    smi.chmod(0o755)
    for p in (lib, bindir, *lib.iterdir()):
        os.chmod(p, 0o755)
    yield d


@pytest.fixture(scope="module")
def image_state(lms_bin, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    f = state.parent / "mini.tar.gz"
    f.write_bytes(gzip.compress(mini_rootfs()))
    r = image_cmd(lms_bin, state, "import", "mini", str(f))
    assert r.returncode == 0, r.stderr
    return state


def run_faked(lms_bin, fake, state, *args):
    env = {"FAKE": str(fake), "PATH": f"{fake / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACE, "sh", str(lms_bin),
                           "run", "--state-dir", str(state), *args], capture_output=True, text=True, env=env,
                          timeout=120)


SCRIPT = ("ls /usr/local/nvidia/lib64 && nvidia-smi && echo LD=$LD_LIBRARY_PATH && echo PATH=$PATH && "
          "head -c 4 /usr/local/nvidia/lib64/libcuda.so.1 | od -c | head -1; "
          "touch /usr/local/nvidia/lib64/x 2>/dev/null || echo read-only")


def test_an_image_sandbox_with_a_gpu_has_the_drivers_files(lms_bin, fake_driver, image_state):
    r = run_faked(lms_bin, fake_driver, image_state, "--image", "mini", "--gpu", "--", "sh", "-c",
                  SCRIPT.replace(" | od -c | head -1", " >/dev/null && echo elf"))
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert sorted(lines[:len(LIBS)]) == sorted(LIBS), r.stdout
    assert "GPU 0: Fake GPU (UUID: GPU-fake)" in lines, r.stdout
    assert "LD=/usr/local/nvidia/lib64" in lines, r.stdout
    assert any(line.startswith("PATH=/usr/local/nvidia/bin:") for line in lines), r.stdout
    assert lines[-2:] == ["elf", "read-only"], r.stdout


def test_without_a_gpu_nothing_of_the_driver_is_there(lms_bin, fake_driver, image_state):
    r = run_faked(lms_bin, fake_driver, image_state, "--image", "mini", "--", "sh", "-c",
                  "ls /usr/local/nvidia 2>&1; ls /dev; echo LD=${LD_LIBRARY_PATH:-}")
    assert r.returncode == 0, r
    assert "nvidia" not in r.stdout.replace("ls: /usr/local/nvidia", "").replace("'/usr/local/nvidia'", ""), r.stdout
    assert "LD=" in r.stdout.splitlines(), r.stdout


def test_the_host_image_keeps_the_hosts_own_files(lms_bin, fake_driver, image_state):
    # The host image shows the host's /usr and /etc already: nothing is bound, nothing is added to the paths.
    r = run_faked(lms_bin, fake_driver, image_state, "--gpu", "--", "sh", "-c",
                  "test -e /usr/local/nvidia || echo none; echo LD=${LD_LIBRARY_PATH:-}; ls /dev | grep nvidia")
    assert r.returncode == 0, r
    assert r.stdout.splitlines() == ["none", "LD=", "nvidia-uvm", "nvidia0", "nvidiactl"], r.stdout


def test_no_driver_libraries_is_refused_naming_them(lms_bin, fake_driver, image_state, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "ld.so.conf").write_text("include /etc/ld.so.conf\n")
    subprocess.run(["ldconfig", "-C", empty / "ld.so.cache", "-f", empty / "ld.so.conf"], check=True)
    shutil.copytree(fake_driver / "bin", empty / "bin")
    r = run_faked(lms_bin, empty, image_state, "--image", "mini", "--gpu", "--", "true")
    assert r.returncode == 125, r
    assert "no NVIDIA driver libraries" in r.stderr and "ldconfig -p" in r.stderr, r.stderr
