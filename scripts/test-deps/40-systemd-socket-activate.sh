#!/usr/bin/env bash
# systemd-socket-activate (Debian's systemd package) for the socket-activation test: it
# passes a listening socket the way systemd does (LISTEN_FDS, LISTEN_PID). Nothing is
# started as a service.
set -euo pipefail
if command -v systemd-socket-activate >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "systemd-socket-activate is missing: install it by hand (Debian/Ubuntu: apt-get install systemd)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends systemd >/dev/null || {
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends systemd >/dev/null
}
command -v systemd-socket-activate >/dev/null
