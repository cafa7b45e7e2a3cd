#!/bin/sh
# `make test`: unit tests (cmocka, through meson) then system tests (pytest against the built binary).
# Prints one closing line `N passed, N failed` over both.
set -u
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

meson test -C "$build" --print-errorlogs --no-rebuild >"$log/unit" 2>&1
unit_rc=$?
cat "$log/unit"
# Count cmocka's test cases, not meson's executables.
testlog="$build/meson-logs/testlog.txt"
unit_ok=$(grep -hoE '^\[  PASSED  \] [0-9]+' "$testlog" | awk '{s += $NF} END {print s + 0}')
unit_ok=$((unit_ok + $(grep -c '^replayed [0-9]* inputs' "$testlog")))  # fuzz corpus replays
unit_fail=$(grep -hoE '^\[  FAILED  \] [0-9]+' "$testlog" | awk '{s += $NF} END {print s + 0}')
[ "$unit_rc" -ne 0 ] && [ "$unit_fail" -eq 0 ] && unit_fail=1

# The probe links statically, so sanitizer builds leave it out and borrow the plain build's.
probe="$root/$build/tests/probe/lms-probe"
if [ ! -x "$probe" ]; then
	[ -f build/build.ninja ] || meson setup build >/dev/null
	ninja -C build tests/probe/lms-probe >/dev/null
	probe="$root/build/tests/probe/lms-probe"
fi

LMS_BIN="$root/$build/lm-sandbox" LMS_PROBE="$probe" \
	/usr/bin/python3 -m pytest tests/system -q -rs -p no:cacheprovider >"$log/system" 2>&1
sys_rc=$?
cat "$log/system"
# shellcheck source=scripts/pytest-counts.sh
. "$root/scripts/pytest-counts.sh"
pytest_counts "$log/system" "$sys_rc"
sys_ok=$pytest_passed
sys_fail=$pytest_failed
sys_skip=$pytest_skipped

passed=$((unit_ok + sys_ok))
failed=$((unit_fail + sys_fail))
echo "unit: $unit_ok passed, $unit_fail failed; system: $sys_ok passed, $sys_fail failed, $sys_skip skipped"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
