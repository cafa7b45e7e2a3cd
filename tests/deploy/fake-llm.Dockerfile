# The project's fake Ollama and llama-server (tests/fakes/fake_llm.py) as an image, for the Compose test:
# built on the lm-sandbox image under test, which already has python3 (no registry is needed).
#   docker build -f tests/deploy/fake-llm.Dockerfile --build-arg BASE=lm-sandbox:test -t lms-fake-llm:test tests/fakes
ARG BASE=lm-sandbox:latest
FROM ${BASE}
COPY fake_llm.py /opt/fake_llm.py
HEALTHCHECK NONE
ENTRYPOINT ["/usr/bin/python3", "/opt/fake_llm.py", "--host", "0.0.0.0"]
