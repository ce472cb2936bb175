#!/usr/bin/env bash
# Debian's chromium for the CORS test: a real browser, run headless, loads a page from one
# 127.0.0.1 origin that fetch()es from annex-proxy on another.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing: install it by hand (Debian/Ubuntu: apt-get install chromium)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium >/dev/null || {
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium >/dev/null
}
command -v chromium >/dev/null
