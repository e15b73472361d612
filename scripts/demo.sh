#!/bin/sh
# scripts/demo.sh - install, build, and run mailgend on sample events with throw-away servers
#
# Starts its own PostgreSQL cluster, SMTP server and GnuPG home (under /tmp),
# starts mailgend, loads sample IntelMQ events with notification directives,
# waits until the daemon has mailed them, verifies their signatures, and
# keeps the mails in ./demo/mails.  The servers are removed when it ends.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/install-deps.sh"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
exec /usr/bin/python3 "$top/scripts/demo.py" "$@"
