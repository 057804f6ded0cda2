#!/bin/bash
# Build the fuzz targets with sanitizers and fuzz them for a bounded time:
# fuzz-partitions (fuzz-partitions.c with src/partitions.c), fuzz-qcow2
# (fuzz-qcow2.c with src/qcow2.c) and fuzz-guest-lvm (fuzz-guest-lvm.c with
# src/guest-lvm*.c and src/lvm-text.c).  They are built with
# FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION defined, which makes the guest LVM
# reader take a bad checksum as good, so that mutated metadata gets past it.
#
#	tests/fuzz/run-fuzz.sh [BUILD_DIR]     (make fuzz runs it)
#
# BUILD_DIR is a configured build tree (its config.h; default: the current
# directory).  Each fuzzer, the corpus it grows (seeded from its corpus in
# the source tree, tests/fuzz/corpus/, corpus-qcow2/ or corpus-guest-lvm/, which it
# never writes) and what it finds go to BUILD_DIR/tests/fuzz/out/.
#
# Environment:
#   FUZZ_TARGET   partitions, qcow2, guest-lvm or all (the default: each,
#                 one after the other, FUZZ_SECONDS split between them)
#   FUZZ_SECONDS  how long to fuzz in all (60)
#   FUZZ_ENGINE   libfuzzer (clang's -fsanitize=fuzzer, the default) or afl
#                 (AFL++: afl-clang-fast and afl-fuzz)
#   FUZZ_JOBS     fuzzing processes (1): libFuzzer -fork=N, AFL++ secondaries
#   FUZZ_TIMEOUT  seconds one input may take before it is a hang (10)
#   FUZZ_ARGS     more arguments for the fuzzer
#   CC            libFuzzer's compiler (clang)
#
# Exit status: 0 nothing found; 1 a crash, a broken invariant, a hang or an
# allocation over 2 GiB, whose input is in BUILD_DIR/tests/fuzz/out/crashes/
# named for its target (replay it with tests/fuzz/replay-TARGET FILE; keep it
# in tests/fuzz/crashes/ until fixed, then in the corpus); 77 no fuzzer here
# (Debian: clang and libclang-rt-14-dev, or afl++); 2 it did not build.
set -euo pipefail

src=$(cd -- "$(dirname -- "$0")/../.." && pwd)
build=$(cd -- "${1:-.}" && pwd)
seconds=${FUZZ_SECONDS:-60}
target=${FUZZ_TARGET:-all}
engine=${FUZZ_ENGINE:-libfuzzer}
jobs=${FUZZ_JOBS:-1}
timeout=${FUZZ_TIMEOUT:-10}
# shellcheck disable=SC2206 # words on purpose
extra=(${FUZZ_ARGS-})
out=$build/tests/fuzz/out
say() { printf 'run-fuzz: %s\n' "$*" >&2; }

for n in seconds jobs timeout; do
	case ${!n} in '' | *[!0-9]*) say "FUZZ_${n^^} must be a number"; exit 2 ;; esac
done
case $target in
partitions | qcow2 | guest-lvm) targets=("$target") ;;
all) targets=(partitions qcow2 guest-lvm) ;;
*) say "FUZZ_TARGET must be partitions, qcow2, guest-lvm or all, not $target"; exit 2 ;;
esac
case $engine in
libfuzzer | afl) ;;
*) say "FUZZ_ENGINE must be libfuzzer or afl, not $engine"; exit 2 ;;
esac
[ -f "$build/config.h" ] || { say "$build has no config.h: run configure there first"; exit 2; }
mkdir -p "$out/crashes"

# What each target is built from, the libraries (pkg-config) it links, its
# seed corpus and its dictionary.
sources=() pkgs=() seeds='' dict=''
describe() { # TARGET
	case $1 in
	partitions)
		sources=("$src/tests/fuzz/fuzz-partitions.c" "$src/tests/fuzz/fuzz-log.c"
			"$src/src/partitions.c")
		pkgs=(blkid)
		seeds=$src/tests/fuzz/corpus
		;;
	qcow2)
		sources=("$src/tests/fuzz/fuzz-qcow2.c" "$src/tests/fuzz/fuzz-log.c"
			"$src/src/qcow2.c" "$src/src/util.c")
		pkgs=(zlib libzstd)
		seeds=$src/tests/fuzz/corpus-qcow2
		;;
	guest-lvm)
		sources=("$src/tests/fuzz/fuzz-guest-lvm.c" "$src/tests/fuzz/fuzz-log.c"
			"$src/src/guest-lvm.c" "$src/src/guest-lvm-label.c"
			"$src/src/guest-lvm-vg.c" "$src/src/lvm-text.c" "$src/src/util.c")
		pkgs=()
		seeds=$src/tests/fuzz/corpus-guest-lvm
		;;
	esac
	dict=$src/tests/fuzz/$1.dict
}

if [ "$engine" = libfuzzer ]; then
	cc=${CC:-clang}
	if ! command -v "$cc" >/dev/null ||
		! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
		"$cc" -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
		say "SKIP: $cc cannot build a libFuzzer target (install clang libclang-rt-14-dev)"
		exit 77
	fi
elif ! command -v afl-clang-fast >/dev/null || ! command -v afl-fuzz >/dev/null; then
	say "SKIP: no afl-clang-fast or afl-fuzz (install afl++)"
	exit 77
fi

build_target() { # TARGET BINARY
	local cflags libs flags
	cflags=() libs=()
	if [ ${#pkgs[@]} -gt 0 ]; then
		read -ra cflags <<<"$(pkg-config --cflags "${pkgs[@]}")"
		read -ra libs <<<"$(pkg-config --libs "${pkgs[@]}")"
	fi
	flags=(-g -O1 -fno-omit-frame-pointer -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
		-I"$build" -I"$src/src" -I"$src/tests/fuzz" "${cflags[@]}")
	if [ "$engine" = libfuzzer ]; then
		"$cc" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
			"${sources[@]}" "${libs[@]}" -o "$2"
	else
		# afl-clang-fast links its own driver for -fsanitize=fuzzer targets.
		AFL_USE_ASAN=1 AFL_USE_UBSAN=1 AFL_QUIET=1 afl-clang-fast "${flags[@]}" \
			-fsanitize=fuzzer "${sources[@]}" "${libs[@]}" -o "$2"
	fi
}

# Fuzz TARGET, built as BINARY, for SECONDS; the fuzzer's exit status.
fuzz_target() { # TARGET BINARY SECONDS
	local t=$1 bin=$2 secs=$3 rc=0 args afl afl_out tmp pids d f i p
	mkdir -p "$out/corpus-$t"
	if [ "$engine" = libfuzzer ]; then
		args=(-max_total_time="$secs" -timeout="$timeout" -rss_limit_mb=2048
			-use_value_profile=1 -dict="$dict"
			-artifact_prefix="$out/crashes/$t-" -print_final_stats=1)
		[ "$jobs" -le 1 ] || args+=(-fork="$jobs")
		say "fuzzing $t for ${secs}s with libFuzzer"
		"$bin" "${args[@]}" "${extra[@]}" "$out/corpus-$t" "$seeds" || rc=$?
		return "$rc"
	fi
	afl_out=$out/afl-$t
	rm -rf -- "$afl_out"
	export AFL_NO_UI=1 AFL_NO_COLOR=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
	export AFL_SUPPRESS_MALLOC_LIMIT_WARNING=1 ASAN_OPTIONS=abort_on_error=1:symbolize=0
	# Seeds: the target's corpus and what earlier runs added.
	tmp=$(mktemp -d)
	cp -- "$seeds"/* "$tmp/"
	cp -- "$out/corpus-$t"/* "$tmp/" 2>/dev/null || true
	afl=(afl-fuzz -i "$tmp" -o "$afl_out" -V "$secs" -t "$((timeout * 1000))" -m none
		-x "$dict" "${extra[@]}")
	say "fuzzing $t for ${secs}s with AFL++ ($jobs process(es))"
	pids=()
	for ((i = 1; i < jobs; i++)); do
		"${afl[@]}" -S "s$i" -- "$bin" >"$afl_out.s$i.log" 2>&1 &
		pids+=($!)
	done
	"${afl[@]}" -M main -- "$bin" >"$afl_out.log" 2>&1 || rc=$?
	for p in "${pids[@]}"; do wait "$p" || true; done
	rm -rf -- "$tmp"
	tail -n 5 "$afl_out.log" >&2
	for d in "$afl_out"/*/; do
		for f in "$d"crashes/id:* "$d"hangs/id:*; do
			[ -f "$f" ] && cp -- "$f" "$out/crashes/$t-afl-$(basename -- "$d")-$(basename -- "$(dirname -- "$f")")-${f##*/id:}"
		done
		cp -- "$d"queue/id:* "$out/corpus-$t/" 2>/dev/null || true
	done
	return "$rc"
}

# Each finding is a file; report those this run added.
found() {
	local f n=0
	for f in "$out/crashes"/*; do
		[ -f "$f" ] || continue
		[ "$f" -nt "$out/.run-start" ] || continue
		say "found: $f"
		n=$((n + 1))
	done
	[ "$n" -gt 0 ]
}

bins=()
for t in "${targets[@]}"; do
	describe "$t"
	bins+=("$out/fuzz-$t-$engine")
	build_target "$t" "${bins[-1]}" || { say "build of fuzz-$t failed"; exit 2; }
	say "built ${bins[-1]}"
done
touch "$out/.run-start"
sleep 1 # a finding of this run is strictly newer

share=$((seconds / ${#targets[@]}))
[ "$share" -gt 0 ] || share=1
failed=()
for i in "${!targets[@]}"; do
	describe "${targets[i]}"
	fuzz_target "${targets[i]}" "${bins[i]}" "$share" || failed+=("${targets[i]}")
done

if found; then
	say "FAIL: replay with: $out/fuzz-TARGET-$engine FILE (or tests/fuzz/replay-TARGET FILE)"
	exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
	say "FAIL: the fuzzer of ${failed[*]} exited with an error and left no input behind"
	exit 1
fi
say "nothing found in ${seconds}s"
