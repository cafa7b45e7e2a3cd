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

# Compose v2 (`docker compose`), as Docker's own packages carry it and Ubuntu users have it: Debian 12
# packages only docker-compose 1.29, so Debian 13's docker-compose package (a static binary; libc 2.34) is
# fetched from this machine's own Debian mirror, unpacked, and its plugin put where Docker's documentation
# puts a hand-installed one. Nothing is installed through dpkg, and apt's own lists stay as they were.
compose_v2() {
	docker compose version >/dev/null 2>&1 && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "test-deploy: no Compose v2 ('docker compose'): install Docker's docker-compose-plugin"
		return 0
	fi
	local site tmp
	# shellcheck disable=SC2016 # $(SITE) is apt's own placeholder
	site=$(apt-get indextargets --format '$(SITE)' 'Identifier: Packages' 'Origin: Debian' 'Release: bookworm' |
		head -1)
	if [ -z "$site" ]; then
		echo "test-deploy: no Debian mirror in apt's sources: Compose v2 not fetched"
		return 0
	fi
	tmp=$(mktemp -d)
	mkdir -p "$tmp/lists/partial" "$tmp/archives/partial" "$tmp/sources"
	printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$site" \
		/usr/share/keyrings/debian-archive-keyring.gpg >"$tmp/sources/trixie.sources"
	local apt=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$tmp/sources"
		-o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::archives=$tmp/archives" -o Dir::State::status=/dev/null
		-o APT::Sandbox::User=root)
	echo "test-deploy: fetching Compose v2 (Debian 13's docker-compose package)"
	if (cd "$tmp" && apt-get "${apt[@]}" -qq update && apt-get "${apt[@]}" -qq download docker-compose) >/dev/null &&
		dpkg-deb -x "$tmp"/docker-compose_*.deb "$tmp/x"; then
		mkdir -p "$HOME/.docker/cli-plugins"
		install -m 0755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" "$HOME/.docker/cli-plugins/"
	else
		echo "test-deploy: fetching Compose v2 failed; its tests will skip"
	fi
	rm -rf "$tmp"
}
compose_v2

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
