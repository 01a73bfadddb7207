#!/usr/bin/env bash
# Rebuild the compiled core (the nba._core package's extensions) in place for development. Serialized with flock so that
# parallel builds do not race, and the new .so is renamed into place so that
# processes that have the old one mapped keep running.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/nba-build.lock
flock 9
python setup.py -q build_ext --build-lib build/stage >/dev/null
for so in build/stage/nba/_core/*.so; do
  cp "$so" "src/nba/_core/.$(basename "$so").tmp"
  mv -f "src/nba/_core/.$(basename "$so").tmp" "src/nba/_core/$(basename "$so")"
done
echo "built $(cd build/stage/nba/_core && ls *.so | wc -l) core modules"
