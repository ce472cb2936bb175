#!/usr/bin/env bash
# redis-server for the fleet tests (--redis): Debian's package. The tests start their own
# server on a unix socket in a temp directory; the packaged service is not used.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "redis-server is missing: install it by hand (Debian/Ubuntu: apt-get install redis-server)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends redis-server >/dev/null || {
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends redis-server >/dev/null
}
# The package starts a service on port 6379 where systemd/invoke-rc.d runs it; the tests never use it.
command -v redis-server >/dev/null
