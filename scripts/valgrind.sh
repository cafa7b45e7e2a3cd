#!/bin/sh
# $vg is a command line, split on purpose where it is used unquoted.
# shellcheck disable=SC2086
# Runs the unit tests, lm-sandbox and the daemon under valgrind (memcheck, full leak check); any error fails.
# Ends with `N passed, N failed`.
set -u
build=${1:-build-valgrind}
vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --track-fds=no"
passed=0
failed=0
check() {
	name=$1
	shift
	if "$@" >/tmp/lms-valgrind.$$ 2>&1; then
		passed=$((passed + 1))
		echo "ok    $name"
	else
		failed=$((failed + 1))
		echo "FAIL  $name"
		cat /tmp/lms-valgrind.$$
	fi
}
# test-seccomp is left out: valgrind emulates system calls itself, so a filter cannot be judged under it.
for t in "$build"/tests/unit/test-*; do
	[ -f "$t" ] && [ -x "$t" ] && [ "$(basename "$t")" != test-seccomp ] && check "$(basename "$t")" $vg "$t"
done
check "run --json echo" $vg "$build/lm-sandbox" run --json -- sh -c 'echo out; echo err >&2'
check "run timeout" sh -c "$vg $build/lm-sandbox run --timeout-ms 200 -- sleep 5; [ \$? -eq 124 ]"
check "run not found" sh -c "$vg $build/lm-sandbox run -- no-such-program; [ \$? -eq 127 ]"
check "run usage error" sh -c "$vg $build/lm-sandbox run --pids x -- true; [ \$? -eq 2 ]"
check "run stdin" sh -c "echo hello | $vg $build/lm-sandbox run -i -- cat | grep -qx hello"
check "serve: every kind of route, then SIGTERM" /usr/bin/python3 "$(dirname "$0")/valgrind-serve.py" $vg -- "$build/lm-sandbox-serve"
rm -f /tmp/lms-valgrind.$$
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
