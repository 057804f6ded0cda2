#!/bin/bash
# The whole test suite from a fresh checkout: install dependencies, build
# with warnings as errors, run the unit tests and the integration tests
# (inside a throw-away VM when this kernel lacks device-mapper).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${SNAPFS_BUILD_DIR:-$top/build}

"$top/tests/install-deps.sh"
cd "$top"
[ -x configure ] || autoreconf -fi
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$top/configure" --enable-werror
make -j"$(nproc)"
rc=0
make -j"$(nproc)" check || rc=$?

# One line per kind of test, then the closing count.
count() { { grep -l "^:test-result: $2" $1 2>/dev/null || true; } | wc -l; }
unit="tests/unit/*.trs tests/fuzz/*.trs tests/qcow2/*.trs"
unit_pass=$(count "$unit" PASS)
unit_fail=$(( $(count "$unit" FAIL) + $(count "$unit" ERROR) ))
unit_skip=$(count "$unit" SKIP)
int_pass=$(count "tests/integration/*.trs" PASS)
int_fail=$(( $(count "tests/integration/*.trs" FAIL) + $(count "tests/integration/*.trs" ERROR) ))
int_skip=$(count "tests/integration/*.trs" SKIP)
echo "unit tests (the fuzz corpus replays, the qcow2 decoder against qemu-img): $unit_pass passed, $unit_fail failed, $unit_skip skipped"
echo "integration tests: $int_pass passed, $int_fail failed, $int_skip skipped"
if [ "$rc" -ne 0 ]; then
	cat test-suite.log
fi
echo "$((unit_pass + int_pass)) passed, $((unit_fail + int_fail)) failed, $((unit_skip + int_skip)) skipped"
exit "$rc"
