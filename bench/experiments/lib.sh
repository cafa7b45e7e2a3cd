# shellcheck shell=bash
# Sourced by the experiments here. patched_tree PATCH BASE: a scratch directory $work (removed at exit,
# with the `cleanup_extra` command when one is set) holding a worktree of BASE at $work/tree with PATCH
# (a file of this directory) applied, configured for a release build in $work/build.
patched_tree() {
	repo=$(git rev-parse --show-toplevel)
	work=$(mktemp -d /tmp/lms-experiment.XXXXXX)
	trap experiment_cleanup EXIT
	trap 'exit 1' HUP INT PIPE TERM
	git -C "$repo" worktree add --quiet --detach "$work/tree" "$2"
	git -C "$work/tree" apply "$repo/bench/experiments/$1"
	meson setup --buildtype=release "$work/build" "$work/tree" >/dev/null
}

experiment_cleanup() {
	${cleanup_extra:-true}
	git -C "$repo" worktree remove --force "$work/tree" 2>/dev/null || true
	rm -rf "$work"
}
