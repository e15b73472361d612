#!/bin/sh
# scripts/demo.sh - install, build, and mail sample events through throw-away servers
#
# Starts its own PostgreSQL cluster, SMTP server and GnuPG home (under /tmp),
# loads sample IntelMQ events with notification directives, runs
# "intelmqcbmail --all", verifies the signatures of the mails received, and
# keeps the mails in ./demo/mails.  The servers are removed when it ends.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/install-deps.sh"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
exec /usr/bin/python3 "$top/scripts/demo.py" "$@"
