#!/bin/sh
# scripts/install-deps.sh - install the Debian 12 packages needed to build, test and demo
#
# Runs apt-get (as root) only when something is missing, so that a second run
# is fast.  CI and a fresh machine get everything from here.
set -eu

PACKAGES="build-essential cmake pkg-config clang clang-format-14 valgrind
	libpq-dev libevent-dev libgpgme-dev libesmtp-dev libssl-dev openssl libjson-c-dev
	libsystemd-dev libcmocka-dev
	postgresql postgresql-contrib gnupg python3 python3-aiosmtpd"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi
echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
