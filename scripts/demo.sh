#!/bin/sh
# `make run`: shows the sandbox at work until the HTTP server exists (lm-sandbox serve comes next).
set -eu
bin=${1:-build/lm-sandbox}
echo "\$ $bin run -- sh -c 'id; hostname; ls /; cat /etc/shadow'"
"$bin" run -- sh -c 'id; hostname; ls /; cat /etc/shadow' || true
echo
echo "\$ $bin run --json --timeout-ms 500 -- sleep 5"
"$bin" run --json --timeout-ms 500 -- sleep 5
