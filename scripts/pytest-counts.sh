# shellcheck shell=sh disable=SC2034 # the variables it sets are read by the scripts that source it
# Sourced by test.sh and test-deploy.sh. pytest_counts LOG RC: from pytest's last summary line in LOG,
# sets pytest_passed, pytest_failed (errors included; at least 1 when pytest's exit status RC is not 0)
# and pytest_skipped.
pytest_counts() {
	_summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error|skipped)' "$1" | tail -n1)
	pytest_passed=$(_pytest_count passed)
	pytest_failed=$(($(_pytest_count failed) + $(_pytest_count error)))
	pytest_skipped=$(_pytest_count skipped)
	if [ "$2" -ne 0 ] && [ "$pytest_failed" -eq 0 ]; then
		pytest_failed=1
	fi
	return 0
}

_pytest_count() {
	echo "$_summary" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' || echo 0
}
