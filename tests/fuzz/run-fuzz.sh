#!/bin/bash
# Build the fuzz target of the partition-table code (fuzz-partitions.c with
# src/partitions.c) with sanitizers and fuzz it for a bounded time.
#
#	tests/fuzz/run-fuzz.sh [BUILD_DIR]     (make fuzz runs it)
#
# BUILD_DIR is a configured build tree (its config.h; default: the current
# directory).  The fuzzer, the corpus it grows (seeded from
# tests/fuzz/corpus/, which it never writes) and what it finds go to
# BUILD_DIR/tests/fuzz/out/.
#
# Environment:
#   FUZZ_SECONDS  how long to fuzz (60)
#   FUZZ_ENGINE   libfuzzer (clang's -fsanitize=fuzzer, the default) or afl
#                 (AFL++: afl-clang-fast and afl-fuzz)
#   FUZZ_JOBS     fuzzing processes (1): libFuzzer -fork=N, AFL++ secondaries
#   FUZZ_TIMEOUT  seconds one input may take before it is a hang (10)
#   FUZZ_ARGS     more arguments for the fuzzer
#   CC            libFuzzer's compiler (clang)
#
# Exit status: 0 nothing found; 1 a crash, a broken invariant, a hang or an
# allocation over 2 GiB, whose input is in BUILD_DIR/tests/fuzz/out/crashes/
# (replay it with tests/fuzz/replay-partitions FILE; keep it in
# tests/fuzz/crashes/ until fixed, then in the corpus); 77 no fuzzer here
# (Debian: clang and libclang-rt-14-dev, or afl++); 2 it did not build.
set -euo pipefail

src=$(cd -- "$(dirname -- "$0")/../.." && pwd)
build=$(cd -- "${1:-.}" && pwd)
seconds=${FUZZ_SECONDS:-60}
engine=${FUZZ_ENGINE:-libfuzzer}
jobs=${FUZZ_JOBS:-1}
timeout=${FUZZ_TIMEOUT:-10}
# shellcheck disable=SC2206 # words on purpose
extra=(${FUZZ_ARGS-})
out=$build/tests/fuzz/out
bin=$out/fuzz-partitions-$engine
say() { printf 'run-fuzz: %s\n' "$*" >&2; }

for n in seconds jobs timeout; do
	case ${!n} in '' | *[!0-9]*) say "FUZZ_${n^^} must be a number"; exit 2 ;; esac
done
[ -f "$build/config.h" ] || { say "$build has no config.h: run configure there first"; exit 2; }
mkdir -p "$out/crashes" "$out/corpus-partitions"

sources=("$src/tests/fuzz/fuzz-partitions.c" "$src/tests/fuzz/fuzz-log.c" "$src/src/partitions.c")
read -ra blkid_cflags <<<"$(pkg-config --cflags blkid)"
read -ra libs <<<"$(pkg-config --libs blkid)"
flags=(-g -O1 -fno-omit-frame-pointer -I"$build" -I"$src/src" -I"$src/tests/fuzz"
	"${blkid_cflags[@]}")

case $engine in
libfuzzer)
	cc=${CC:-clang}
	if ! command -v "$cc" >/dev/null ||
		! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
		"$cc" -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
		say "SKIP: $cc cannot build a libFuzzer target (install clang libclang-rt-14-dev)"
		exit 77
	fi
	"$cc" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		"${sources[@]}" "${libs[@]}" -o "$bin" || { say "build failed"; exit 2; }
	;;
afl)
	if ! command -v afl-clang-fast >/dev/null || ! command -v afl-fuzz >/dev/null; then
		say "SKIP: no afl-clang-fast or afl-fuzz (install afl++)"
		exit 77
	fi
	# afl-clang-fast links its own driver for -fsanitize=fuzzer targets.
	AFL_USE_ASAN=1 AFL_USE_UBSAN=1 AFL_QUIET=1 afl-clang-fast "${flags[@]}" \
		-fsanitize=fuzzer "${sources[@]}" "${libs[@]}" -o "$bin" ||
		{ say "build failed"; exit 2; }
	;;
*)
	say "FUZZ_ENGINE must be libfuzzer or afl, not $engine"
	exit 2
	;;
esac
say "built $bin"

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
touch "$out/.run-start"
sleep 1 # a finding of this run is strictly newer

rc=0
case $engine in
libfuzzer)
	args=(-max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048
		-use_value_profile=1 -dict="$src/tests/fuzz/partitions.dict"
		-artifact_prefix="$out/crashes/" -print_final_stats=1)
	[ "$jobs" -le 1 ] || args+=(-fork="$jobs")
	say "fuzzing for ${seconds}s with libFuzzer"
	"$bin" "${args[@]}" "${extra[@]}" "$out/corpus-partitions" "$src/tests/fuzz/corpus" || rc=$?
	;;
afl)
	afl_out=$out/afl-partitions
	rm -rf -- "$afl_out"
	export AFL_NO_UI=1 AFL_NO_COLOR=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
	export AFL_SUPPRESS_MALLOC_LIMIT_WARNING=1 ASAN_OPTIONS=abort_on_error=1:symbolize=0
	# Seeds: tests/fuzz/corpus and what earlier runs added.
	seeds=$(mktemp -d)
	trap 'rm -rf -- "$seeds"' EXIT
	cp -- "$src/tests/fuzz/corpus"/* "$seeds/"
	cp -- "$out/corpus-partitions"/* "$seeds/" 2>/dev/null || true
	afl=(afl-fuzz -i "$seeds" -o "$afl_out" -V "$seconds" -t "$((timeout * 1000))" -m none
		-x "$src/tests/fuzz/partitions.dict" "${extra[@]}")
	say "fuzzing for ${seconds}s with AFL++ ($jobs process(es))"
	pids=()
	for ((i = 1; i < jobs; i++)); do
		"${afl[@]}" -S "s$i" -- "$bin" >"$afl_out.s$i.log" 2>&1 &
		pids+=($!)
	done
	"${afl[@]}" -M main -- "$bin" >"$afl_out.log" 2>&1 || rc=$?
	for p in "${pids[@]}"; do wait "$p" || true; done
	tail -n 5 "$afl_out.log" >&2
	for d in "$afl_out"/*/; do
		for f in "$d"crashes/id:* "$d"hangs/id:*; do
			[ -f "$f" ] && cp -- "$f" "$out/crashes/afl-$(basename -- "$d")-$(basename -- "$(dirname -- "$f")")-${f##*/id:}"
		done
		cp -- "$d"queue/id:* "$out/corpus-partitions/" 2>/dev/null || true
	done
	;;
esac

if found; then
	say "FAIL: replay with: $bin FILE (or tests/fuzz/replay-partitions FILE)"
	exit 1
fi
if [ "$rc" != 0 ]; then
	say "FAIL: the fuzzer exited with status $rc and left no input behind"
	exit 1
fi
say "nothing found in ${seconds}s"
