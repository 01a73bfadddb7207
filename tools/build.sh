#!/usr/bin/env bash
# Rebuild nba._core in place for development. Serialized with flock so that
# parallel builds do not race, and the new .so is renamed into place so that
# processes that have the old one mapped keep running.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/nba-build.lock
flock 9
python setup.py -q build_ext --build-lib build/stage >/dev/null
so=$(ls build/stage/nba/_core*.so)
cp "$so" "src/nba/.$(basename "$so").tmp"
mv -f "src/nba/.$(basename "$so").tmp" "src/nba/$(basename "$so")"
echo "built $(basename "$so")"
