#!/bin/sh
# scripts/fuzz.sh - build the libFuzzer targets with clang and fuzz each for a while
#
# Usage: scripts/fuzz.sh [SECONDS [TARGET...]]
#
# Builds build-fuzz/ (clang, -DMG_FUZZ=ON, Debug) and runs every target of
# tests/fuzz/ (or the ones named: template config table hdr qp directive rules
# ctl) for SECONDS of fuzzing each (default 60), starting from the seed
# corpus tests/fuzz/corpus/<target>/ and the dictionary
# tests/fuzz/<target>.dict when there is one.  New inputs go to
# build-fuzz/fuzz-corpus/<target>/, crashes to build-fuzz/fuzz-artifacts/.
#
# Environment:
#   MG_FUZZ_JOBS=N   run N targets at a time (default 1; one core each)
#   MG_FUZZ_MERGE=1  afterwards, merge the inputs that add coverage into
#                    tests/fuzz/corpus/<target>/ (review before committing)
#   MG_FUZZ_ARGS     more libFuzzer options, e.g. "-max_len=8192"
#
# Exit status: 0 when no target found anything, 1 otherwise (the log of
# each target is build-fuzz/fuzz-<target>.log).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"template config table hdr qp directive ctl rules"}
jobs=${MG_FUZZ_JOBS:-1}
build="build-fuzz"

CC=clang cmake -S . -B "$build" -DMG_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"
mkdir -p "$build/fuzz-artifacts"

run_one() {
	t=$1
	mkdir -p "$build/fuzz-corpus/$t"
	dict=""
	[ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
	echo "fuzz.sh: $t for ${secs}s (log: $build/fuzz-$t.log)"
	# shellcheck disable=SC2086
	"$build/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/fuzz-artifacts/$t-" $dict ${MG_FUZZ_ARGS:-} \
		"$build/fuzz-corpus/$t" "tests/fuzz/corpus/$t" >"$build/fuzz-$t.log" 2>&1
}

status=0
pids=""
n=0
for t in $targets; do
	if [ ! -x "$build/fuzz_$t" ]; then
		echo "fuzz.sh: unknown target '$t'" >&2
		exit 2
	fi
	run_one "$t" &
	pids="$pids $!:$t"
	n=$((n + 1))
	if [ "$n" -ge "$jobs" ]; then
		for p in $pids; do
			wait "${p%%:*}" || { echo "fuzz.sh: ${p#*:}: FOUND A PROBLEM, see $build/fuzz-${p#*:}.log"; status=1; }
		done
		pids=""
		n=0
	fi
done
for p in $pids; do
	wait "${p%%:*}" || { echo "fuzz.sh: ${p#*:}: FOUND A PROBLEM, see $build/fuzz-${p#*:}.log"; status=1; }
done

for t in $targets; do
	grep -h "^Done [0-9]* runs" "$build/fuzz-$t.log" | sed "s/^/fuzz.sh: $t: /" || true
	if [ "${MG_FUZZ_MERGE:-0}" = 1 ]; then
		"$build/fuzz_$t" -merge=1 "tests/fuzz/corpus/$t" "$build/fuzz-corpus/$t" \
			>>"$build/fuzz-$t.log" 2>&1
	fi
done
find "$build/fuzz-artifacts" -type f | sed 's/^/fuzz.sh: artifact: /' || true
exit "$status"
