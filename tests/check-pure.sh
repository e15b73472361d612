#!/bin/sh
# tests/check-pure.sh - fail when a pure object calls outside the allowlist
#
# Usage: tests/check-pure.sh path/to/libmailgen_pure.a
#
# Pure modules (STYLE.md, "Keep pure modules pure") may use memory, string
# and formatting functions, json-c for config parsing and each other, and
# nothing that does I/O, reads the clock, the environment or a random
# source, or logs: no time, open, read, write, fopen, getenv, rand, syslog,
# printf, fprintf, localtime_r, ...  Every undefined symbol of every object
# in the archive must be on the allowlist below, or be an mg_* symbol that
# another object of the same archive defines (so a pure module calling
# mg_log() from the I/O library is caught).
#
# Exit status: 0 clean, 1 offenders found (listed as "member: symbol"),
# 2 usage or tool error.

set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 ARCHIVE" >&2
	exit 2
fi
archive=$1
if [ ! -r "$archive" ]; then
	echo "check-pure: cannot read '$archive'" >&2
	exit 2
fi
NM=${NM:-nm}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-pure.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# POSIX format with the file name: "archive[member.o]: symbol TYPE ..."
if ! "$NM" -A -P -g --defined-only "$archive" >"$tmp/defined" 2>"$tmp/nm.err" ||
	! "$NM" -A -P -u "$archive" >"$tmp/undefined" 2>>"$tmp/nm.err"; then
	echo "check-pure: $NM failed on '$archive':" >&2
	cat "$tmp/nm.err" >&2
	exit 2
fi
awk '$2 ~ /^mg_/ { print $2 }' "$tmp/defined" | sort -u >"$tmp/mg-defined"

# Is symbol $1 a libc or library function pure code may call?
allowed() {
	case $1 in
	malloc | calloc | realloc | free) return 0 ;;
	# formatting, but no stream: only the bounded, buffer-writing ones
	snprintf | vsnprintf) return 0 ;;
	# strftime may load the time zone (TZ, /etc/localtime), strerror and
	# strsignal may open message catalogs, strfry is random, memfd_create
	# makes a file descriptor
	strftime | strerror | strerror_r | strerror_l | __xpg_strerror_r) return 1 ;;
	strsignal | strfry | memfd_*) return 1 ;;
	# mem* and str* also cover strtol, strtoll, strtoul and strtoull
	mem* | str*) return 0 ;;
	# clang turns memcmp() == 0 into bcmp() and may emit bzero()
	bcmp | bzero) return 0 ;;
	gmtime_r | qsort | bsearch) return 0 ;;
	__errno_location | __stack_chk_fail | __assert_fail) return 0 ;;
	__ctype_b_loc | __ctype_tolower_loc | __ctype_toupper_loc) return 0 ;;
	# json-c (config parsing): objects, iterators, the tokener
	json_*) return 0 ;;
	# sanitizer runtimes (-DMG_SANITIZE=address,undefined)
	__asan_* | __ubsan_* | __sanitizer_*) return 0 ;;
	# provided by the linker in position-independent code
	_GLOBAL_OFFSET_TABLE_) return 0 ;;
	esac
	return 1
}

# Is symbol $1 allowed, directly or as a fortify variant of an allowed one?
ok() {
	if allowed "$1"; then
		return 0
	fi
	case $1 in
	__*_chk)
		# __memcpy_chk is memcpy, __printf_chk is still printf
		base=${1#__}
		base=${base%_chk}
		allowed "$base" && return 0
		;;
	mg_*)
		grep -qx "$1" "$tmp/mg-defined" && return 0
		;;
	esac
	return 1
}

bad=0
while read -r member sym _rest; do
	[ -n "$sym" ] || continue
	if ! ok "$sym"; then
		# "archive[member.o]:" -> "member.o"
		member=${member##*[}
		member=${member%]:}
		case $sym in
		mg_*) why="which no object of the archive defines (an I/O module?)" ;;
		*) why="which is not allowed in a pure module" ;;
		esac
		echo "check-pure: $member: calls '$sym', $why"
		bad=1
	fi
done <"$tmp/undefined"

if [ "$bad" -ne 0 ]; then
	echo "check-pure: '$archive' is not pure (see STYLE.md, \"Keep pure modules pure\")" >&2
	exit 1
fi
exit 0
