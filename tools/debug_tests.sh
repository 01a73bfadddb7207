#!/usr/bin/env bash
# Run the test suite against the bounds-checked debug build of the core (NBA_DEBUG=1:
# -O0 -g, with Cython's boundscheck, wraparound and initializedcheck back on), so the
# unchecked fast build is known to be safe. The debug core goes into a copy of the
# package under build/debug-pkg, first on PYTHONPATH; the installed build is untouched.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import Cython" 2>/dev/null || { echo "the debug build needs Cython: python -m pip install 'Cython>=3.0.10' 'setuptools>=77'" >&2; exit 2; }
rm -rf build/debug build/debug-pkg
NBA_DEBUG=1 python setup.py -q build_ext --build-temp build/debug-tmp --build-lib build/debug >/dev/null
mkdir -p build/debug-pkg
cp -r src/nba build/debug-pkg/
rm -f build/debug-pkg/nba/_core/*.so
cp build/debug/nba/_core/*.so build/debug-pkg/nba/_core/
export PYTHONPATH="$PWD/build/debug-pkg${PYTHONPATH:+:$PYTHONPATH}"
core=$(python -c "import nba._core.trees as c; print(c.__file__)")
case "$core" in
  "$PWD/build/debug-pkg/"*) echo "testing the debug core: $core" ;;
  *) echo "expected the debug core, got $core" >&2; exit 1 ;;
esac
exec python -m pytest -q -p no:randomly "$@"
