#!/bin/sh
# scripts/test.sh - install what is needed, build, and run the whole test suite
#
# The passes (docs/hacking.md):
#   1. gcc, warnings as errors, every test (unit, lint, integration)
#   2. clang with AddressSanitizer + UndefinedBehaviorSanitizer, every test
#   3. valgrind memcheck over the unit tests
#   4. clang-format check of lib/, daemon/ and tests/
# Set MG_PASSES="1 2" to run only some of them.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/install-deps.sh"

passes=${MG_PASSES:-"1 2 3 4"}
jobs=$(nproc 2>/dev/null || echo 2)
status=0

run_pass() {
	echo "=== pass $1: $2"
}

for p in $passes; do
	case $p in
	1)
		run_pass 1 "gcc -Werror, full suite"
		cmake -S . -B build-ci -DCMAKE_BUILD_TYPE=RelWithDebInfo \
			-DCMAKE_C_COMPILER=gcc -DCMAKE_COMPILE_WARNING_AS_ERROR=ON
		cmake --build build-ci -j "$jobs"
		ctest --test-dir build-ci --output-on-failure -j "$jobs" || status=1
		;;
	2)
		run_pass 2 "clang + ASan/UBSan, full suite"
		cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
			-DCMAKE_COMPILE_WARNING_AS_ERROR=ON -DMG_SANITIZE=address,undefined
		cmake --build build-asan -j "$jobs"
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
			ctest --test-dir build-asan --output-on-failure -j "$jobs" || status=1
		;;
	3)
		run_pass 3 "valgrind memcheck, unit tests"
		[ -d build-ci ] || cmake -S . -B build-ci -DCMAKE_COMPILE_WARNING_AS_ERROR=ON
		cmake --build build-ci -j "$jobs"
		for t in build-ci/test_*; do
			[ -x "$t" ] || continue
			echo "valgrind: $t"
			valgrind -q --error-exitcode=99 --leak-check=full \
				--errors-for-leak-kinds=definite,indirect "$t" >"$t.valgrind.log" 2>&1 \
				|| { cat "$t.valgrind.log"; echo "valgrind: $t FAILED"; status=1; }
		done
		;;
	4)
		run_pass 4 "clang-format"
		# shellcheck disable=SC2046
		clang-format-14 --dry-run -Werror $(git ls-files 'lib/*.[ch]' 'daemon/*.[ch]' 'tests/*.[ch]' 'bench/*.[ch]') \
			|| status=1
		;;
	*)
		echo "test.sh: unknown pass '$p'" >&2
		exit 2
		;;
	esac
done
if [ "$status" -ne 0 ]; then
	echo "test.sh: FAILED"
else
	echo "test.sh: all passes succeeded"
fi
exit "$status"
