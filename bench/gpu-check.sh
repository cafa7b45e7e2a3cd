#!/bin/bash
# GPU passthrough on a machine with an NVIDIA GPU (issue 15): one prepared script for a session that is lent
# one. Run from the repository root as root, after `make build` (it builds when build/lm-sandbox is missing):
#     bench/gpu-check.sh 2>&1 | tee gpu-check.log
# Every command is printed with its output and exit status; a summary of the checks comes last, and the exit
# status is the number of failed checks. The exact commands and outputs go in the session's note and in
# bench/RESULTS-H200.md. What it checks: the driver as the host shows it (for the record: /proc, ldconfig,
# what a memory figure could be read from), `nvidia-smi -L` inside with --gpu and no NVIDIA device without,
# an index selection (--gpu 0: only its node and its /proc entry), an index the host lacks refused (125), a CUDA
# kernel built with nvcc run inside (when nvcc is there), PyTorch inside (when importable), and the daemon:
# /healthz and /metrics list the GPUs (memory_mb from NVML), gpu: [0] runs, a missing index is 422; and an
# imported image (a minimal root made here from the host's sh, coreutils and their libraries, without any driver
# file): with --gpu the driver's libraries and nvidia-smi appear at /usr/local/nvidia (nvidia-smi -L and the CUDA
# kernel run inside), without it nothing of the driver is there.
set -u
cd "$(dirname "$0")/.." || exit 1
LMS=${LMS_BIN:-$PWD/build/lm-sandbox}
WORK=$(mktemp -d /tmp/lms-gpu-check.XXXXXX)
PASS=0
FAIL=0
FAILED=()

run() { # prints the command, its output and its status; the status is returned
	echo "\$ $*"
	"$@" 2>&1
	local rc=$?
	echo "[exit $rc]"
	echo
	return $rc
}

check() { # check NAME COMMAND...: a check that must succeed
	local name=$1
	shift
	echo "=== check: $name"
	if run "$@"; then
		PASS=$((PASS + 1))
	else
		FAIL=$((FAIL + 1))
		FAILED+=("$name")
	fi
}

# A bash -c snippet that must succeed: the script's own assertions on what the commands print.
expect() {
	local name=$1 script=$2
	check "$name" bash -c "$script"
}

# shellcheck disable=SC2317 # called by the trap
cleanup() {
	if [ -n "${DAEMON:-}" ]; then
		kill "$DAEMON" 2>/dev/null
		wait "$DAEMON" 2>/dev/null
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

echo "### the host"
run uname -a
run id
[ -x "$LMS" ] || run make build
run "$LMS" version
run nvidia-smi -L
run nvidia-smi --query-gpu=index,name,memory.total,pci.bus_id,uuid --format=csv
run sh -c 'ls -l /dev/nvidia* /dev/nvidia-caps 2>&1'
run sh -c 'for f in /proc/driver/nvidia/gpus/*/information; do echo "--- $f"; cat "$f"; done'
run sh -c 'cat /proc/driver/nvidia/version'
run sh -c 'ldconfig -p | grep -E "libcuda|libnvidia" | head -40'
run sh -c 'command -v nvidia-smi nvcc; nvcc --version 2>&1 | tail -2'
run sh -c 'for d in /proc/driver/nvidia/gpus/*; do b=$(basename "$d"); echo "--- /sys/bus/pci/devices/$b"; ls "/sys/bus/pci/devices/$b" | tr "\n" " "; echo; done'
run sh -c 'cat /proc/self/cgroup; stat -fc %T /sys/fs/cgroup'

echo "### lm-sandbox run"
expect "version lists the GPUs" "'$LMS' version | grep -E '^gpu 0: '"
expect "--gpu: nvidia-smi -L inside lists a GPU" \
	"'$LMS' run --gpu -- nvidia-smi -L | tee /dev/stderr | grep -q '^GPU 0:'"
expect "--gpu: the devices inside" \
	"'$LMS' run --gpu -- sh -c 'ls -l /dev /dev/nvidia-caps; ls /proc/driver/nvidia/gpus' | tee /dev/stderr | grep -q nvidiactl"
expect "without --gpu: no NVIDIA device, nvidia-smi fails" \
	"out=\$('$LMS' run -- sh -c 'ls /dev; nvidia-smi -L; echo exit of nvidia-smi: \$?' 2>&1); echo \"\$out\"; ! echo \"\$out\" | grep -q '^nvidia' && ! echo \"\$out\" | grep -q '^GPU 0:'"
expect "--gpu 0: index selection, only its node and its /proc entry" \
	"'$LMS' run --gpu 0 -- sh -c 'ls /dev | grep nvidia; ls /proc/driver/nvidia/gpus; nvidia-smi -L' | tee /dev/stderr | grep -q '^GPU 0:'"
expect "--gpu=0 with --json" \
	"'$LMS' run --json --gpu=0 -- nvidia-smi -L | tee /dev/stderr | grep -q '\"exit_code\":0'"
N=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
expect "--gpu $N (an index the host lacks) exits 125 naming it" \
	"'$LMS' run --gpu $N -- true; rc=\$?; echo rc=\$rc; [ \$rc = 125 ]"
expect "--gpu $N: the message" "'$LMS' run --gpu $N -- true 2>&1 | grep 'no GPU with index $N'"
if [ "$N" -ge 2 ]; then
	expect "--gpu 1: only the second GPU" \
		"'$LMS' run --gpu 1 -- nvidia-smi -L | tee /dev/stderr | grep -c '^GPU' | grep -qx 1"
fi

if command -v nvcc >/dev/null; then
	cat >"$WORK/add.cu" <<'CU'
#include <cstdio>
__global__ void add(int n, const float *x, float *y) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) y[i] = x[i] + y[i];
}
int main() {
	const int n = 1 << 20;
	float *x, *y;
	if (cudaMallocManaged(&x, n * sizeof(float)) != cudaSuccess || cudaMallocManaged(&y, n * sizeof(float)) != cudaSuccess) {
		printf("cudaMallocManaged failed: %s\n", cudaGetErrorString(cudaGetLastError()));
		return 1;
	}
	for (int i = 0; i < n; i++) { x[i] = 1.0f; y[i] = 2.0f; }
	add<<<(n + 255) / 256, 256>>>(n, x, y);
	cudaError_t e = cudaDeviceSynchronize();
	if (e != cudaSuccess) { printf("kernel failed: %s\n", cudaGetErrorString(e)); return 1; }
	for (int i = 0; i < n; i++) if (y[i] != 3.0f) { printf("wrong result at %d: %f\n", i, y[i]); return 1; }
	cudaDeviceProp p; cudaGetDeviceProperties(&p, 0);
	printf("CUDA kernel OK on %s (%zu MiB)\n", p.name, p.totalGlobalMem >> 20);
	return 0;
}
CU
	run nvcc -o "$WORK/add" "$WORK/add.cu"
	# The sandbox sees the host's /usr but not this folder: the program goes in on stdin, into /work.
	expect "CUDA kernel (nvcc) inside with --gpu" \
		"'$LMS' run --gpu -i -- sh -c 'cat >/work/add && chmod +x /work/add && /work/add' <'$WORK/add' | tee /dev/stderr | grep -q 'CUDA kernel OK'"
	expect "CUDA kernel without --gpu fails" \
		"! '$LMS' run -i -- sh -c 'cat >/work/add && chmod +x /work/add && /work/add' <'$WORK/add'"
else
	echo "(no nvcc: the CUDA kernel checks are left out)"
fi

if python3 -c 'import torch' 2>/dev/null; then
	expect "PyTorch inside with --gpu" \
		"'$LMS' run --gpu --memory-mb 8192 -- python3 -c 'import torch; x = torch.ones(1 << 20, device=\"cuda\"); print(torch.cuda.get_device_name(0), float(x.sum()))' | tee /dev/stderr | grep -q 1048576"
else
	echo "(no PyTorch for the host's python3: left out)"
fi

echo "### an imported image"
# A root file system with no driver at all: the host's sh and a few tools with their libraries (and the CUDA
# program's, when there is one), as tests/system/test_images.py makes its mini image.
python3 - "$WORK/image.tar" "$WORK/add" <<'PY'
import os, subprocess, sys, tarfile
out, extra = sys.argv[1], [p for p in sys.argv[2:] if os.path.exists(p)]
tools = ["/bin/sh", "/usr/bin/ls", "/usr/bin/cat", "/usr/bin/env", "/usr/bin/chmod", "/usr/bin/grep"]
files = set()
for t in tools + extra:
    files.add(os.path.realpath(t))
    for word in subprocess.run(["ldd", t], capture_output=True, text=True).stdout.split():
        if word.startswith("/"):
            files.update({word, os.path.realpath(word)})
with tarfile.open(out, "w") as tar:
    for d in ["bin", "usr/bin", "tmp", "work", "etc"]:
        info = tarfile.TarInfo(d); info.type = tarfile.DIRTYPE; info.mode = 0o755; tar.addfile(info)
    for f in sorted(files):  # each under the path the loader asks for, as a file (no link to resolve inside)
        if f not in extra:
            tar.add(os.path.realpath(f), arcname=f.lstrip("/"), recursive=False)
    for t in tools:
        if not os.path.exists(os.path.realpath(t)) or t.lstrip("/") == os.path.realpath(t).lstrip("/"):
            continue
        info = tarfile.TarInfo(t.lstrip("/")); info.type = tarfile.SYMTYPE; info.linkname = os.path.realpath(t)
        tar.addfile(info)
PY
IMG=(--state-dir "$WORK/image-state")
check "import the driver-less image" "$LMS" image import gpu-mini "$WORK/image.tar" "${IMG[@]}"
expect "--image --gpu: nvidia-smi -L inside an image that has no driver" \
	"'$LMS' run ${IMG[*]} --image gpu-mini --gpu -- sh -c 'ls -l /usr/local/nvidia/lib64 /usr/local/nvidia/bin; echo PATH=\$PATH LD_LIBRARY_PATH=\$LD_LIBRARY_PATH; nvidia-smi -L' | tee /dev/stderr | grep -q '^GPU 0:'"
expect "--image without --gpu: no driver file, no NVIDIA device" \
	"out=\$('$LMS' run ${IMG[*]} --image gpu-mini -- sh -c 'ls /usr/local/nvidia /dev; nvidia-smi -L' 2>&1); echo \"\$out\"; ! echo \"\$out\" | grep -q '^GPU 0:\\|^nvidia'"
if [ -x "$WORK/add" ]; then
	expect "--image --gpu: the CUDA kernel inside the image" \
		"'$LMS' run ${IMG[*]} --image gpu-mini --gpu -i -- sh -c 'cat >/work/add && chmod +x /work/add && /work/add' <'$WORK/add' | tee /dev/stderr | grep -q 'CUDA kernel OK'"
fi

echo "### the daemon"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$LMS" serve --listen "127.0.0.1:$PORT" --state-dir "$WORK/state" >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT"
expect "/healthz lists the GPUs" "curl -s $URL/healthz | tee /dev/stderr | grep -q '\"gpus\":\[{\"index\":0'"
expect "/healthz has each GPU's memory (NVML)" \
	"curl -s $URL/healthz | python3 -c 'import json,sys; g = json.load(sys.stdin)[\"gpus\"]; print(g); sys.exit(not g or not all(isinstance(x[\"memory_mb\"], int) and x[\"memory_mb\"] > 0 for x in g))'"
expect "/metrics has lms_gpus" "curl -s $URL/metrics | grep lms_gpu | tee /dev/stderr | grep -qE '^lms_gpus [1-9]'"
expect "POST /v1/exec gpu: [0] runs nvidia-smi -L" \
	"curl -s $URL/v1/exec -d '{\"cmd\": \"nvidia-smi -L\", \"gpu\": [0]}' | tee /dev/stderr | grep -q 'GPU 0:'"
expect "POST /v1/exec gpu: true" \
	"curl -s $URL/v1/exec -d '{\"cmd\": \"nvidia-smi -L\", \"gpu\": true}' | tee /dev/stderr | grep -q 'GPU 0:'"
expect "POST /v1/exec without gpu has no NVIDIA device" \
	"! curl -s $URL/v1/exec -d '{\"cmd\": \"ls /dev\"}' | tee /dev/stderr | grep -q nvidia"
expect "POST /v1/exec gpu: [$N] is 422" \
	"curl -s -o /dev/stderr -w '%{http_code}' $URL/v1/exec -d '{\"cmd\": \"true\", \"gpu\": [$N]}' | grep -qx 422"
expect "a persistent sandbox with gpu: [0]" \
	"id=\$(curl -s $URL/v1/sandboxes -d '{\"gpu\": [0]}' | tee /dev/stderr | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])') && curl -s $URL/v1/sandboxes/\$id/exec -d '{\"cmd\": \"nvidia-smi -L\"}' | tee /dev/stderr | grep -q 'GPU 0:' && curl -s -X DELETE $URL/v1/sandboxes/\$id"
kill "$DAEMON"
wait "$DAEMON"
echo "daemon exit $?"
DAEMON=
run tail -20 "$WORK/daemon.log"

echo "### summary: $PASS passed, $FAIL failed"
for f in "${FAILED[@]}"; do echo "FAILED: $f"; done
exit "$FAIL"
