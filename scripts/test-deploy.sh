#!/bin/bash
# `make test-deploy` (and .ci/run): the deployment tests of tests/deploy/ with the real tools: Debian's
# docker.io (dockerd is started here when none runs, and stopped again), mmdebstrap, docker-compose,
# kubectl (kubernetes-client where it is missing), yamllint and shellcheck. Installs what is missing
# (root). A test that cannot run is skipped loudly; under CI (CI=true) a skip counts as a failure.
# Ends with one line `N passed, N failed`.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

missing=""
need() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
need dockerd docker.io
need mmdebstrap mmdebstrap
need docker-compose docker-compose
need kubectl kubernetes-client
need yamllint yamllint
need shellcheck shellcheck
/usr/bin/python3 -c 'import yaml, pytest' 2>/dev/null || missing="$missing python3-yaml python3-pytest"
if [ -n "$missing" ]; then
	echo "test-deploy: installing:$missing"
	if [ "$(id -u)" = 0 ]; then
		export DEBIAN_FRONTEND=noninteractive
		# shellcheck disable=SC2086 # one word per package
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
			echo "test-deploy: installing failed; the tests that need them will skip"
	else
		echo "test-deploy: not root: install them yourself: apt-get install$missing"
	fi
fi

log=$(mktemp -d)
dockerd_pid=""
cleanup() {
	if [ -n "$dockerd_pid" ]; then
		kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null
	fi
	rm -rf "$log"
}
trap cleanup EXIT

# A daemon of our own when none answers: stopped at the end, its log shown if it does not come up.
if command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		echo "test-deploy: starting dockerd"
		dockerd >"$log/dockerd.log" 2>&1 &
		dockerd_pid=$!
		for _ in $(seq 300); do
			docker info >/dev/null 2>&1 && break
			kill -0 "$dockerd_pid" 2>/dev/null || break
			sleep 0.1
		done
		docker info >/dev/null 2>&1 || { echo "test-deploy: dockerd did not come up:"; tail -20 "$log/dockerd.log"; }
	fi
fi

export DOCKER_BUILDKIT=0 # the classic builder: BuildKit would fetch its Dockerfile front end from a registry
export LMS_DEPLOY_FIGURES="$log/figures"
/usr/bin/python3 -m pytest tests/deploy -q -rs -p no:cacheprovider 2>&1 | tee "$log/pytest"
rc=${PIPESTATUS[0]}
# shellcheck source=scripts/pytest-counts.sh
. "$root/scripts/pytest-counts.sh"
pytest_counts "$log/pytest" "$rc"
passed=$pytest_passed
failed=$pytest_failed
skipped=$pytest_skipped
if [ -s "$log/figures" ]; then
	echo "figures:"
	cat "$log/figures"
fi
if [ "$skipped" -gt 0 ]; then
	if [ "${CI:-}" = true ]; then
		echo "test-deploy: $skipped skipped: CI=true counts them as failures"
		failed=$((failed + skipped))
	else
		echo "test-deploy: WARNING: $skipped skipped (see the reasons above)"
	fi
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
