#!/bin/sh
# What the network namespace costs the sustained rate: builds lm-sandbox with bench/experiments/no-netns.patch
# in a scratch worktree of BASE (HEAD), which leaves the network namespace out while /run/lms-exp-nonet
# exists, then alternates `wrk -t2 -c16` runs of SECONDS against POST /v1/exec {"argv":["true"]}, with and
# without it, and prints each rate with the CPU time the machine spent (/proc/stat ticks).
# An experiment, not a mode: without a namespace of its own a sandbox shares the host's loopback and abstract
# Unix sockets. Written against commit 3d88fbe. Usage (as root, in the repository):
#   bench/experiments/no-netns.sh [SECONDS [BASE]]
set -eu
seconds=${1:-6}
base=${2:-HEAD}
# shellcheck source=bench/experiments/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck disable=SC2034 # read by lib.sh
cleanup_extra="rm -f /run/lms-exp-nonet"
patched_tree no-netns.patch "$base"
ninja -C "$work/build" lm-sandbox lm-sandbox-serve >/dev/null
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"argv":["true"]}'
wrk.headers["Content-Type"] = "application/json"
LUA
ticks() { awk '/^cpu / {print $2 + $3, $4, $5}' /proc/stat; }
for _ in 1 2; do
	for mode in netns no-netns; do
		if [ "$mode" = no-netns ]; then touch /run/lms-exp-nonet; else rm -f /run/lms-exp-nonet; fi
		"$work/build/lm-sandbox-serve" --listen 127.0.0.1:0 --max-concurrent 64 2>"$work/serve.log" &
		serve=$!
		url=
		for _ in $(seq 100); do
			url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/serve.log" | head -n 1) && [ -n "$url" ] && break
			sleep 0.1
		done
		before=$(ticks)
		rate=$(wrk -t2 -c16 -d"${seconds}s" -s "$work/post.lua" "$url/v1/exec" | awk '/Requests\/sec/ {print $2}')
		after=$(ticks)
		kill "$serve"
		wait "$serve" || true
		echo "$mode $rate req/s; ticks user, system, idle: $before -> $after"
	done
done
