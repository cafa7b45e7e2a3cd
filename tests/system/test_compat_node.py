"""The clients people actually use, unchanged, against the LLM gateway: the official OpenAI Node SDK (npm `openai`,
pinned in tests/compat/package.json) lists the models, completes a chat and streams one through `lm-sandbox serve`,
with the llama-server fake of tests/fakes/fake_llm.py behind it. The SDK's side is tests/compat/openai-sdk.test.mjs
(node:test); this test starts the fake and the daemon, installs the SDK when needed (npm ci) and runs it.

Needs `node` (and `npm` the first time); without it the test is skipped, which CI=true turns into a failure.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from server_fixtures import closed_url, cut, start_server

REPO = Path(__file__).resolve().parents[2]
COMPAT = REPO / "tests" / "compat"
_spec = importlib.util.spec_from_file_location("fake_llm", REPO / "tests" / "fakes" / "fake_llm.py")
fake_llm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_llm)

NPM_TIMEOUT = 300
NODE_TIMEOUT = 120
CHUNKS = 8
MODEL = "tiny.gguf"  # the llamacpp fake's default model


def pinned_versions(directory=COMPAT):
    return json.loads((directory / "package.json").read_text())["devDependencies"]


def installed_version(package, directory=COMPAT):
    try:
        return json.loads((directory / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def installed_sdk_version():
    return installed_version("openai")


def missing_packages(directory=COMPAT):
    return {p: v for p, v in pinned_versions(directory).items() if installed_version(p, directory) != v}


def ensure_sdk(directory=COMPAT):
    """directory/node_modules holds every package its package.json pins (tests/compat: the OpenAI SDK, the MCP SDK),
    or npm ci (npm install without a lock file) puts them there."""
    if not missing_packages(directory):
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"NO NPM: {', '.join(missing_packages(directory))} not installed in {directory}/node_modules and "
                    f"npm is missing; install npm (Debian: apt-get install npm) or run `npm ci` in {directory}")
    argv = [npm, "ci" if (directory / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
    try:
        proc = subprocess.run(argv, cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=NPM_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(argv)} in {directory} ran past {NPM_TIMEOUT} s\n"
                    f"{cut((e.stdout or b'').decode('utf-8', 'replace'))}")
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, f"{' '.join(argv)} in {directory} exited {proc.returncode}:\n{cut(out)}"
    assert not missing_packages(directory), (f"after {' '.join(argv)}, {directory}/node_modules lacks the pinned "
                                             f"{missing_packages(directory)}:\n{cut(out)}")


def run_node_test(node, test_file, env, timeout=NODE_TIMEOUT):
    """`node --test tests/compat/TEST_FILE` with `env`: (exit status or None after `timeout`, its output)."""
    argv = [node, "--test", str(COMPAT / test_file)]
    try:
        proc = subprocess.run(argv, cwd=COMPAT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)
        return proc.returncode, proc.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or b"").decode("utf-8", "replace") + f"\n(killed after {timeout} s)"


def test_openai_node_sdk_lists_chats_and_streams(lms_bin, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("NO NODE: the OpenAI Node SDK compatibility test needs Node.js (Debian: apt-get install nodejs "
                    "npm); without it no real client has been tried against the gateway")
    ensure_sdk()

    fake_url, stop_fake = fake_llm.start_fake("llamacpp", chunks=CHUNKS)
    server = None
    try:
        token = f"tok-{uuid.uuid4().hex}"
        state = tmp_path / "state"
        state.mkdir()
        server = start_server(lms_bin, ["--pool-size", "0", "--llamacpp-url", fake_url,
                                        "--ollama-url", closed_url()],
                              env={"LM_SANDBOX_API_TOKEN": token}, state_dir=state)
        # The caller's OPENAI_* (a real key, another base URL, OPENAI_LOG) must not reach the SDK.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update({
            "LMS_URL": server.url + "/v1",
            "LMS_TOKEN": token,
            "LMS_EXPECT_MODEL": f"llamacpp/{MODEL}",
            "LMS_EXPECT_TEXT": "".join(fake_llm.piece(i) for i in range(CHUNKS)),
            "NO_PROXY": "127.0.0.1,localhost,::1",
            "no_proxy": "127.0.0.1,localhost,::1",
            "NO_COLOR": "1",
        })
        rc, out = run_node_test(node, "openai-sdk.test.mjs", env)
        assert rc == 0, (f"the OpenAI Node SDK (openai {installed_sdk_version()}, {node}) failed against the "
                         f"gateway: exit {rc}\n{cut(out, 8000)}\n--- daemon ---\n{server.describe()}")
    finally:
        problem = None
        if server is not None:
            was_running = server.alive()
            status, killed = server.stop()
            if not was_running or killed or status != 0:
                problem = (f"daemon running at the end: {was_running}; after SIGTERM: status {status}, "
                           f"needed SIGKILL: {killed}\n{server.describe()}")
        stop_fake()
    assert problem is None, problem
