#!/bin/sh
# What the sandbox's init costs a call, and what the mount namespace's teardown does: builds lms-floor
# (bench/floor.c) with bench/experiments/init-cost.patch in a scratch worktree of BASE (HEAD), then alternates
# three ways of launching /usr/bin/true in a prepared sandbox, ROUNDS each, 20 ms apart:
#   init          as lm-sandbox runs it: PID 1 spawns the command, reaps it, reports, exits;
#   exec-as-pid1  PID 1 execs the command itself (as `docker run` without --init): no init;
#   hold-mnt      as init, but the parent holds the mount namespace until after the timing, which leaves
#                 its teardown (and the RCU grace period it waits for) out.
# Each line is lms-floor's JSON: medians of the whole launch and of its phases (see floor.c in the patch).
# The patch is an experiment, not a mode of lm-sandbox: API.md wants the mounts gone when a call returns,
# and DESIGN.md an init that reaps. It was written against commit 8177e09: where it no longer applies to
# HEAD, give that commit as BASE. Usage (as root, in the repository): bench/experiments/init-cost.sh [ROUNDS [BASE]]
set -eu
rounds=${1:-200}
base=${2:-HEAD}
# shellcheck source=bench/experiments/lib.sh
. "$(dirname "$0")/lib.sh"
patched_tree init-cost.patch "$base"
ninja -C "$work/build" bench/lms-floor >/dev/null
floor=$work/build/bench/lms-floor
for _ in 1 2 3; do
	echo "init $("$floor" "$rounds" 20 /usr/bin/true)"
	echo "exec-as-pid1 $(LMS_EXP_EXEC_AS_PID1=1 "$floor" "$rounds" 20 /usr/bin/true)"
	echo "hold-mnt $(LMS_EXP_HOLD_MNT=1 "$floor" "$rounds" 20 /usr/bin/true)"
done
