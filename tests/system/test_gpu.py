"""GPU passthrough as a user meets it on a host without an NVIDIA GPU (every machine here but the lent GPU
machines, where bench/gpu-check.sh runs): the selection is parsed, refused with a message naming what is missing,
and the daemon and `lm-sandbox version` say that no GPU was found. Discovery over fake trees: tests/unit/test-gpu.c.
"""

import os
import subprocess

import pytest

from server_fixtures import assert_error, parse_metrics, show, start_server

root = pytest.mark.require_root
# One test for both kinds of host, so that neither kind skips it (a skip fails CI): without a GPU every request
# for one is refused; with one, an index it does not have is.
HAS_GPU = os.path.exists("/dev/nvidiactl")
REFUSED = [[63]] if HAS_GPU else [True, [0], [0, 1]]
MISSING = "no GPU with index 63" if HAS_GPU else "no NVIDIA GPU (/dev/nvidiactl does not exist)"


@pytest.fixture(scope="module")
def server(lms_bin, tmp_path_factory):
    s = start_server(lms_bin, state_dir=tmp_path_factory.mktemp("state"))
    yield s
    status, killed = s.stop()
    assert not killed and status == 0, s.describe()


def test_version_lists_the_gpus(lms_bin):
    r = subprocess.run([lms_bin, "version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()[1:]
    if HAS_GPU:
        assert lines and all(line.startswith(f"gpu {i}: ") for i, line in enumerate(lines)), r.stdout
    else:
        assert lines == ["gpus: none"], r.stdout


@root
def test_healthz_and_metrics_list_the_gpus(server):
    r = server.get("/healthz")
    assert r.status_code == 200, show(r)
    gpus = r.json()["gpus"]
    assert [g["index"] for g in gpus] == list(range(len(gpus))), gpus
    assert bool(gpus) == HAS_GPU, gpus
    for g in gpus:
        assert set(g) == {"index", "name", "uuid", "bus", "memory_mb"}, g
    samples = parse_metrics(server.get("/metrics").text)
    assert [v for name, _, v in samples if name == "lms_gpus"] == [float(len(gpus))], samples
    assert len([1 for name, _, _ in samples if name == "lms_gpu_info"]) == len(gpus), samples


@root
def test_exec_with_a_missing_gpu_is_422_naming_it(server):
    for gpu in REFUSED:
        err = assert_error(server.post("/v1/exec", {"cmd": "true", "gpu": gpu}), 422)
        assert MISSING in err["message"], (gpu, err)


@root
def test_sandbox_with_a_missing_gpu_is_422_and_not_created(server):
    before = server.get("/v1/sandboxes").json()["data"]
    err = assert_error(server.post("/v1/sandboxes", {"gpu": REFUSED[-1]}), 422)
    assert MISSING in err["message"], err
    assert server.get("/v1/sandboxes").json()["data"] == before


@root
@pytest.mark.parametrize("gpu", [[], [64], [-1], ["0"], 1, "all"])
def test_a_malformed_gpu_is_400(server, gpu):
    err = assert_error(server.post("/v1/exec", {"cmd": "true", "gpu": gpu}), 400)
    assert "gpu" in err["message"], err


@root
def test_run_with_a_missing_gpu_exits_125_naming_it(run):
    flag_sets = [["--gpu", "63"], ["--gpu=63"]] if HAS_GPU else [["--gpu"], ["--gpu", "all"], ["--gpu", "0,1"],
                                                                  ["--gpu=1"]]
    for flags in flag_sets:
        r = run([*flags, "--", "true"], json=False)
        assert r.returncode == 125, r
        assert MISSING.encode() in r.stderr, r


@pytest.mark.parametrize("value", ["--gpu=x", "--gpu=0,,1", "--gpu=64"])
def test_run_bad_gpu_selection_is_a_usage_error(run, value):
    r = run([value, "--", "true"], json=False)
    assert r.returncode == 2 and b"--gpu takes all or GPU indices" in r.stderr, r
