#!/bin/bash
# README command 1: build snapfs and show it on a built-in demo host.  Needs
# root on Debian 12; installs what it needs.  Where this kernel has no
# device-mapper, the demo runs inside a throw-away VM (tests/vm/run-test).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${SNAPFS_BUILD_DIR:-$top/build}

"$top/tests/install-deps.sh"
cd "$top"
[ -x configure ] || autoreconf -fi >/dev/null 2>&1
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$top/configure" -q
make -j"$(nproc)" >/dev/null

export SNAPFS_BIN=$build/fs/snapfs SNAPFS_SRCDIR=$top SNAPFS_BUILDDIR=$build
exec "$top/tests/vm/run-test" "$top/tests/demo-host.sh"
