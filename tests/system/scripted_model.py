"""The scripted fake model (tests/fakes/fake_llm.py, `script`) for the agent's tests and `lm-sandbox chat`'s: the
module, a fixture of a llama-server kind fake, a daemon that reaches it, and helpers to set its script."""

import importlib.util
from pathlib import Path

import pytest

from server_fixtures import closed_url, daemons

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("fake_llm", REPO / "tests" / "fakes" / "fake_llm.py")
fake_llm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_llm)

MODEL = "llamacpp/scripted"


@pytest.fixture
def model():
    fake = fake_llm.Fake("llamacpp", models=["scripted"], script=[])
    yield fake
    fake.stop()


@pytest.fixture
def server(lms_bin, tmp_path, model):
    with daemons(lms_bin, tmp_path, base_args=("--pool-size", "0")) as start:
        yield start("--llamacpp-url", model.url, "--ollama-url", closed_url())


def script(model, *turns):
    """The fake answers conversation N (N assistant messages so far) with turns[N]."""
    with model.state.cond:
        model.state.config = dict(model.state.config, script=list(turns))


def bash(command, **extra):
    return {"name": "bash", "arguments": dict(command=command, **extra)}
