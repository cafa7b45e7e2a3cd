#!/bin/sh
# Installs the Debian/Ubuntu packages lm-sandbox needs to build and test, when any is missing.
# Idempotent: with everything present it only checks (no root, no network needed).
set -eu
quiet=false
[ "${1:-}" = "--quiet" ] && quiet=true

packages="build-essential meson ninja-build pkg-config clang clang-format libclang-rt-14-dev libseccomp-dev libjansson-dev libmicrohttpd-dev libcurl4-gnutls-dev libarchive-dev libssl-dev
libcmocka-dev valgrind python3 python3-pytest python3-requests bubblewrap util-linux wrk
docker-registry skopeo umoci iproute2 passt nftables mmdebstrap docker.io zstd"

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# libclang-rt-14-dev is Debian 12's name; other releases ship the sanitizer runtime with clang itself.
if echo "$missing" | grep -q libclang-rt && ! apt-cache show libclang-rt-14-dev >/dev/null 2>&1; then
	missing=$(echo "$missing" | sed 's/libclang-rt-14-dev//')
fi
# shellcheck disable=SC2086,SC2116 # squeezes the spaces
missing=$(echo $missing)
if [ -z "$missing" ]; then
	$quiet || echo "deps: everything is installed"
	exit 0
fi
echo "deps: installing:$missing"
sudo=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || { echo "deps: not root and no sudo: install as root: apt-get install $missing" >&2; exit 1; }
	sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
