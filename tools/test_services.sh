#!/usr/bin/env bash
# Install the services the test suite runs for real: redis-server (Debian's package),
# which the shared-state tests start on a free loopback port and stop. Does nothing
# when it is already installed; uses sudo when not root.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "redis-server is missing and this is no Debian/Ubuntu machine: install Redis >= 6 with your package manager" >&2
  exit 1
fi
run() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive
# Wait for a dpkg lock held by another apt run (an unattended upgrade, a parallel setup) rather than fail.
apt() { run apt-get -o DPkg::Lock::Timeout=300 "$@"; }
apt install -y -q redis-server >/dev/null || { apt update -q >/dev/null && apt install -y -q redis-server >/dev/null; }
# The package may start a system service on 6379; the tests use their own servers.
command -v redis-server >/dev/null
