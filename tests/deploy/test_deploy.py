"""The deployment, with the real tools (scripts/test-deploy.sh, `make test-deploy`): the image of
deploy/Dockerfile built on a Debian base made here (mmdebstrap | docker import) and run with the narrow
privileges of docs/deploy.md; compose.yaml with the project's fake model servers; the Kubernetes
manifests as kubectl kustomize renders them; yamllint; shellcheck on every shell script.

A test whose tool is missing is skipped with the reason (scripts/test-deploy.sh counts a skip as a
failure under CI=true). Figures (image size, start-to-healthy) go to $LMS_DEPLOY_FIGURES when set.
"""
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_IMAGE = os.environ.get("LMS_DEPLOY_BASE", "lms-base:bookworm")
IMAGE = "lm-sandbox:test"
FAKE_IMAGE = "lms-fake-llm:test"
TAG = f"lms-deploy-{os.getpid()}"  # the containers and Compose project of this run

# docs/deploy.md, "Docker": the narrowest set found to work (Docker 20.10, cgroup v1 here).
NARROW = ["--cap-drop", "ALL", "--cap-add", "SETUID", "--cap-add", "SETGID", "--cap-add", "SETFCAP",
          "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
          "--security-opt", "systempaths=unconfined",
          "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]


def figure(line):
    path = os.environ.get("LMS_DEPLOY_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def run(*args, timeout=600, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)
    if check and r.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"SKIPPED LOUDLY: {tool} is not installed (scripts/test-deploy.sh installs it as root)")


def http(url, body=None, token=None, timeout=30):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_healthz(url, deadline_s=30):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            status, body = http(url + "/healthz", timeout=2)
            if status == 200:
                return body
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.02)
    pytest.fail(f"{url}/healthz did not answer 200 within {deadline_s} s")


@pytest.fixture(scope="session")
def docker():
    need("docker")
    r = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}} {{.CgroupVersion}}"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: no Docker daemon answers ({r.stderr.strip()[:200]}); "
                    "scripts/test-deploy.sh starts one as root")
    return r.stdout.strip()


@pytest.fixture(scope="session")
def image(docker):
    """deploy/Dockerfile built on a Debian 12 minbase made here: no registry is needed."""
    if run("docker", "image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        need("mmdebstrap")
        # The base of the image: Debian's own packages, without the documentation Debian's slim images leave out.
        excludes = [f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info", "locale")]
        mm = subprocess.Popen(["mmdebstrap", "--variant=minbase", "--quiet", *excludes, "bookworm", "-"],
                              stdout=subprocess.PIPE)
        imp = subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=mm.stdout, capture_output=True,
                             text=True, timeout=900)
        mm.stdout.close()
        assert mm.wait(timeout=60) == 0 and imp.returncode == 0, imp.stderr
    t0 = time.monotonic()
    run("docker", "build", "-q", "-f", "deploy/Dockerfile", "--build-arg", f"BASE={BASE_IMAGE}", "-t", IMAGE, ".",
        timeout=1200)
    figure(f"image build: {time.monotonic() - t0:.0f} s")
    return IMAGE


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(uuid.uuid4().hex + "\n")
    path.chmod(0o600)
    return path


def start(image, token_file, *flags, name=None):
    name = name or f"{TAG}-{uuid.uuid4().hex[:6]}"
    run("docker", "run", "-d", "--name", name, "-p", "127.0.0.1::8000",
        "-v", f"{token_file}:/run/secrets/token:ro", "-e", "LM_SANDBOX_TOKEN_FILE=/run/secrets/token",
        *flags, image)
    port = run("docker", "port", name, "8000").stdout.split()[0].rsplit(":", 1)[1]
    return name, f"http://127.0.0.1:{port}"


@pytest.fixture
def container(image, token_file):
    name, url = start(image, token_file, *NARROW, "--health-interval", "100ms")
    wait_healthz(url)
    yield name, url, token_file.read_text().strip()
    run("docker", "rm", "-f", "-v", name, check=False)


def test_image_is_slim_and_has_the_userland(image):
    info = json.loads(run("docker", "image", "inspect", image).stdout)[0]
    size_mb = info["Size"] / 1e6
    figure(f"image size: {size_mb:.0f} MB ({image} on {BASE_IMAGE})")
    assert size_mb < 250, f"{size_mb:.0f} MB: the goal is under 250"
    config = info["Config"]
    assert config["Entrypoint"][0] == "/usr/bin/tini", config["Entrypoint"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert config["Labels"]["org.opencontainers.image.title"] == "lm-sandbox"
    # What a model's commands expect, and nothing of the build.
    r = run("docker", "run", "--rm", "--entrypoint", "/bin/sh", image, "-c",
            "for p in bash python3 ls sed grep curl ps lm-sandbox lm-sandbox-serve; do command -v $p >/dev/null "
            "|| echo missing $p; done; for p in cc gcc meson ninja pkg-config; do command -v $p && echo build $p; "
            "done; ls /usr/include 2>/dev/null | head -3; ls /var/lib/apt/lists | grep -v '^lock$\\|^partial$' | "
            "head -3; ls /usr/share/doc | head -3")
    assert r.stdout.strip() == "", r.stdout


def test_healthy_fast_and_a_sandbox_inside(image, token_file):
    t0 = time.monotonic()
    name, url = start(image, token_file, *NARROW, "--health-interval", "100ms")
    try:
        wait_healthz(url)
        to_healthz = time.monotonic() - t0
        while run("docker", "inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip() != "healthy":
            assert time.monotonic() - t0 < 30, "Docker never saw it healthy"
            time.sleep(0.02)
        to_healthy = time.monotonic() - t0
        figure(f"start to /healthz 200: {to_healthz * 1000:.0f} ms; to Docker 'healthy' "
               f"(--health-interval 100ms): {to_healthy * 1000:.0f} ms (from `docker run -d`)")
        assert to_healthz < 2, f"{to_healthz:.2f} s to answer /healthz (the goal is under 1)"
        status, result = http(url + "/v1/exec", {"cmd": "id -u; echo ok"}, token_file.read_text().strip())
        assert status == 200 and result["stdout"] == "0\nok\n", result
    finally:
        run("docker", "rm", "-f", "-v", name, check=False)


def test_sandbox_in_the_container_reads_no_shadow_and_has_no_network(container):
    name, url, token = container
    # Positive controls: the container itself has the file and a network that reaches the daemon.
    ip = run("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).stdout.strip()
    run("docker", "exec", name, "test", "-s", "/etc/shadow")
    run("docker", "exec", name, "curl", "-fsS", "-o", "/dev/null", f"http://{ip}:8000/healthz")
    status, r = http(url + "/v1/exec", {
        "cmd": f"cat /etc/shadow; echo shadow=$?; cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '; "
               f"curl -sS -m 3 -o /dev/null http://{ip}:8000/healthz; echo curl=$?"}, token)
    assert status == 200, r
    assert "shadow=1" in r["stdout"] and "Permission denied" in r["stderr"], r
    interfaces = [line for line in r["stdout"].splitlines() if "=" not in line]
    assert interfaces == ["lo"], r
    assert "curl=0" not in r["stdout"], r


def test_fork_bomb_is_stopped_by_its_pids_limit(container):
    name, url, token = container
    t0 = time.monotonic()
    status, r = http(url + "/v1/exec", {"cmd": "bomb() { bomb | bomb & }; bomb; sleep 2", "pids": 64,
                                        "timeout_ms": 5000}, token)
    assert status == 200, r
    assert time.monotonic() - t0 < 15
    assert "Resource temporarily unavailable" in r["stderr"], r["stderr"][:500]
    # Nothing of it is left, and the daemon goes on.
    status, r = http(url + "/v1/exec", {"cmd": "echo after"}, token)
    assert status == 200 and r["stdout"] == "after\n", r
    procs = run("docker", "top", name).stdout.splitlines()
    assert not any("bomb" in p for p in procs), procs


def test_sigterm_stops_the_container_cleanly_within_10_s(container):
    name, url, token = container
    status, r = http(url + "/v1/sandboxes", {"ttl_s": 600}, token)
    assert status in (200, 201), r
    t0 = time.monotonic()
    run("docker", "stop", "-t", "10", name)
    elapsed = time.monotonic() - t0
    figure(f"docker stop (SIGTERM) with a lasting sandbox: {elapsed * 1000:.0f} ms")
    assert elapsed < 10
    assert run("docker", "inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    logs = run("docker", "logs", name).stderr
    assert '"msg":"stopped"' in logs, logs[-2000:]


@pytest.mark.parametrize("flags, named, grant", [
    ([], "missing privilege: seccomp", "--security-opt seccomp=unconfined"),
    (["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"],
     "missing privilege: an unmasked /proc", "--security-opt systempaths=unconfined"),
    (["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
      "--security-opt", "systempaths=unconfined"],
     "missing privilege: a writable cgroup", "--cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw"),
    (["--cap-drop", "SETFCAP", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
      "--security-opt", "systempaths=unconfined"],
     "missing privilege: capabilities SETUID, SETGID and SETFCAP", "--cap-add SETFCAP"),
], ids=["default", "no-systempaths", "no-cgroup", "no-setfcap"])
def test_without_the_privileges_it_fails_with_one_line(image, token_file, flags, named, grant):
    r = run("docker", "run", "--rm", "-v", f"{token_file}:/run/secrets/token:ro",
            "-e", "LM_SANDBOX_TOKEN_FILE=/run/secrets/token", *flags, image, timeout=120, check=False)
    assert r.returncode != 0, r
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert named in lines[0] and grant in lines[0], lines[0]


# --- Compose

def compose_env(token_file, **more):
    env = dict(os.environ, LMS_TOKEN_FILE=str(token_file), LMS_IMAGE=IMAGE, LMS_FAKE_IMAGE=FAKE_IMAGE,
               LMS_PUBLISH="127.0.0.1:0")
    env.pop("COMPOSE_FILE", None)  # the files are named on the command line
    env.update(more)
    return env


def test_compose_config_of_the_real_files(token_file):
    need("docker-compose")
    env = compose_env(token_file)
    cfg = yaml.safe_load(run("docker-compose", "-f", "compose.yaml", "config", env=env).stdout)
    services = cfg["services"]
    assert set(services) == {"lm-sandbox", "ollama", "llamacpp"}
    lms = services["lm-sandbox"]
    assert lms["environment"]["LM_SANDBOX_OLLAMA_URL"] == "http://ollama:11434"
    assert lms["environment"]["LM_SANDBOX_LLAMACPP_URL"] == "http://llamacpp:8080"
    assert lms["environment"]["LM_SANDBOX_TOKEN_FILE"] == "/run/secrets/lm_sandbox_token"
    assert not any("TOKEN=" in str(v) or k == "LM_SANDBOX_API_TOKEN" for k, v in lms["environment"].items())
    assert [s if isinstance(s, str) else s["source"] for s in lms["secrets"]] == ["lm_sandbox_token"]
    assert set(lms["cap_add"]) == {"SETUID", "SETGID", "SETFCAP"} and lms["cap_drop"] == ["ALL"]
    assert "privileged" not in lms
    assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= set(lms["security_opt"])
    assert "ollama list" in " ".join(services["ollama"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["llamacpp"]["healthcheck"]["test"])
    gpu = yaml.safe_load(run("docker-compose", "-f", "compose.yaml", "-f", "deploy/compose.gpu.yaml", "config",
                             env=env).stdout)
    for name, service in gpu["services"].items():
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"], name
    # .env.example is a valid .env for it.
    env_lines = [line for line in open(os.path.join(ROOT, ".env.example")) if line.strip() and line[0] != "#"]
    assert all("=" in line for line in env_lines)


@pytest.fixture(scope="session")
def fake_image(image):
    run("docker", "build", "-q", "-f", "tests/deploy/fake-llm.Dockerfile", "--build-arg", f"BASE={image}",
        "-t", FAKE_IMAGE, "tests/fakes")
    return FAKE_IMAGE


def compose_v2():
    """`docker compose` (Compose v2) as a command, or a loud skip. Debian 12 packages only docker-compose
    1.29; scripts/test-deploy.sh fetches Debian 13's package as a CLI plugin."""
    need("docker")
    r = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not r.stdout.strip().lstrip("v").startswith("2"):
        pytest.skip("SKIPPED LOUDLY: no Compose v2 (`docker compose`); scripts/test-deploy.sh fetches it as root")
    return ["docker", "compose"]


@contextlib.contextmanager
def compose_up(compose, token_file, **env_more):
    """`compose up` of compose.yaml with the fakes (tests/deploy/compose.test.yaml) under a project of its
    own: yields (url, token, logs) where logs() reads lm-sandbox's; `down` at the end, which must leave no
    container, network or volume of the project."""
    project = TAG.replace("-", "") + compose[-1].replace("-", "")
    env = compose_env(token_file, **env_more)
    files = ["-p", project, "-f", "compose.yaml", "-f", "tests/deploy/compose.test.yaml"]
    label = f"label=com.docker.compose.project={project}"

    def logs():
        return run(*compose, *files, "logs", "--no-color", "lm-sandbox", env=env, check=False).stdout

    try:
        run(*compose, *files, "up", "-d", "--no-build", env=env, timeout=300)
        port = run(*compose, *files, "port", "lm-sandbox", "8000", env=env).stdout.strip().rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 60
        while True:
            health = wait_healthz(url)
            if all(b.get("reachable") for b in health["backends"].values()) or time.monotonic() > end:
                break
            time.sleep(0.2)
        assert health["backends"]["ollama"]["reachable"] and health["backends"]["llamacpp"]["reachable"], health
        yield url, token_file.read_text().strip(), logs
    finally:
        run(*compose, *files, "down", "-v", "--remove-orphans", "-t", "10", env=env, check=False)
    for kind in ("ps -a", "network ls", "volume ls"):
        left = run("docker", *kind.split(), "-q", "--filter", label).stdout.strip()
        assert left == "", f"docker {kind}: {left}"


def assert_gateway_answers(url, token):
    status, models = http(url + "/v1/models", token=token)
    assert status == 200, models
    ids = {m["id"] for m in models["data"]}
    assert {"ollama/llama3.2:latest", "llamacpp/tiny.gguf"} <= ids, ids
    for model in ("ollama/llama3.2:latest", "llamacpp/tiny.gguf"):
        status, answer = http(url + "/v1/chat/completions",
                              {"model": model, "messages": [{"role": "user", "content": "hi"}]}, token)
        assert status == 200, answer
        assert answer["choices"][0]["message"]["content"].startswith("chunk 0"), answer
    status, _ = http(url + "/v1/models")
    assert status == 401


def test_compose_up_with_the_fakes_then_down_leaves_nothing(fake_image, token_file):
    need("docker-compose")
    # Debian 12's docker-compose 1.29 cannot unmask /proc (compose.yaml): the gateway alone is served.
    up = compose_up(["docker-compose"], token_file, LMS_PROC_OPT="no-new-privileges=false",
                    LMS_SANDBOX_OPTIONAL="true")
    with up as (url, token, logs):
        assert_gateway_answers(url, token)
        assert "no sandbox can be made here" in logs(), logs()[-2000:]


def test_compose_v2_config_grants_the_narrow_privileges_and_the_gpus(token_file):
    compose, env = compose_v2(), compose_env(token_file)
    cfg = yaml.safe_load(run(*compose, "-f", "compose.yaml", "config", env=env).stdout)
    lms = cfg["services"]["lm-sandbox"]
    assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= set(lms["security_opt"])
    assert set(lms["cap_add"]) == {"SETUID", "SETGID", "SETFCAP"} and lms["cap_drop"] == ["ALL"]
    assert "privileged" not in lms
    assert all("deploy" not in service for service in cfg["services"].values()), "GPUs reserved without the overlay"
    # The GPU overlay as Compose v2 reads it: every service reserves NVIDIA GPUs, all of them (-1) by default
    # and the number .env gives otherwise.
    for count, want in ((None, -1), ("1", 1)):
        more = {} if count is None else {"LMS_GPUS": count, "OLLAMA_GPUS": count, "LLAMACPP_GPUS": count}
        gpu = yaml.safe_load(run(*compose, "-f", "compose.yaml", "-f", "deploy/compose.gpu.yaml", "config",
                                 env=compose_env(token_file, **more)).stdout)
        for name, service in gpu["services"].items():
            devices = service["deploy"]["resources"]["reservations"]["devices"]
            assert devices == [{"driver": "nvidia", "count": want, "capabilities": ["gpu"]}], (name, devices)


def test_compose_v2_up_runs_sandboxes_and_the_gateway_then_down_leaves_nothing(fake_image, token_file):
    # compose.yaml as a user runs it: /proc unmasked, a sandbox required (no LMS_PROC_OPT, no optional).
    with compose_up(compose_v2(), token_file) as (url, token, logs):
        assert_gateway_answers(url, token)
        status, r = http(url + "/v1/exec", {"cmd": "id -u; cat /etc/shadow; echo shadow=$?; "
                                                   "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '"}, token)
        assert status == 200, r
        assert r["stdout"].splitlines() == ["0", "shadow=1", "lo"] and "Permission denied" in r["stderr"], r
        # A sandbox that lasts, in the state volume.
        status, sbx = http(url + "/v1/sandboxes", {"ttl_s": 600}, token)
        assert status == 201, sbx
        status, r = http(url + f"/v1/sandboxes/{sbx['id']}/exec", {"cmd": "echo kept > /work/f; cat /work/f"}, token)
        assert status == 200 and r["stdout"] == "kept\n", r
        assert "no sandbox can be made here" not in logs(), logs()[-2000:]


# --- Kubernetes

def kustomize(path):
    need("kubectl")
    return [d for d in yaml.safe_load_all(run("kubectl", "kustomize", path).stdout) if d]


def test_kustomize_base_renders_what_a_sandbox_needs():
    docs = kustomize("deploy/k8s/base")
    kinds = {d["kind"]: d for d in docs}
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Secret", "Service", "Service", "StatefulSet"]
    sts = kinds["StatefulSet"]["spec"]
    pod = sts["template"]["spec"]
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert sc["seccompProfile"]["type"] == "Unconfined"
    assert sc["appArmorProfile"]["type"] == "Unconfined"
    assert sc["procMount"] == "Unmasked"
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SETUID", "SETGID", "SETFCAP"]}
    assert not sc.get("privileged")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/healthz", probe
    volumes = {v["name"]: v for v in pod["volumes"]}
    # Each pod its own state volume; the state dir is on it.
    assert [t["metadata"]["name"] for t in sts["volumeClaimTemplates"]] == ["state"]
    assert next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "state") == \
        kinds["ConfigMap"]["data"]["LM_SANDBOX_STATE_DIR"]
    assert volumes["token"]["secret"]["secretName"] == kinds["Secret"]["metadata"]["name"]
    assert volumes["cgroup"]["hostPath"]["path"] == "/sys/fs/cgroup"
    config = kinds["ConfigMap"]["data"]
    assert config["LM_SANDBOX_TOKEN_FILE"].startswith(
        next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "token"))
    services = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Service"}
    assert services["lm-sandbox"]["ports"][0]["port"] == 8000
    # Scaling (docs/deploy.md): stable pod names reached through the headless Service, listed as the peers,
    # one per replica, each at POD.SERVICE:PORT.
    headless = services[sts["serviceName"]]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    name = kinds["StatefulSet"]["metadata"]["name"]
    peers = dict(p.strip().split("=", 1) for p in config["LM_SANDBOX_PEERS"].split(","))
    assert peers == {f"{name}-{i}": f"http://{name}-{i}.{sts['serviceName']}:8000" for i in range(sts["replicas"])}
    assert sts["replicas"] >= 2
    assert "nvidia.com/gpu" not in json.dumps(docs)


def test_kustomize_gpu_overlay_requests_a_gpu():
    docs = kustomize("deploy/k8s/overlays/gpu")
    deployment = next(d for d in docs if d["kind"] == "StatefulSet")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["containers"][0]["securityContext"]["procMount"] == "Unmasked"  # the base's, kept
    assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"


# --- Linters

def tracked_files():
    out = run("git", "ls-files", "--cached", "--others", "--exclude-standard").stdout.split("\n")
    return [f for f in out if f and os.path.isfile(os.path.join(ROOT, f))]


def test_yamllint():
    need("yamllint")
    files = [f for f in tracked_files() if f.endswith((".yaml", ".yml")) and not f.startswith("tests/fuzz/")]
    assert "compose.yaml" in files and ".github/workflows/ci.yml" in files
    run("yamllint", "--strict", *files)


def test_shellcheck_every_shell_script():
    need("shellcheck")
    scripts = []
    for f in tracked_files():
        if f.endswith(".sh"):
            scripts.append(f)
            continue
        with open(os.path.join(ROOT, f), "rb") as fh:
            first = fh.readline(80)
        if first.startswith(b"#!") and (first.rstrip().endswith((b"/sh", b"/bash", b" sh", b" bash"))):
            scripts.append(f)
    assert ".ci/run" in scripts and "scripts/test-deploy.sh" in scripts
    run("shellcheck", "-x", "-P", "SCRIPTDIR", *scripts)
