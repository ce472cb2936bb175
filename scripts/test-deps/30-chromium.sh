#!/usr/bin/env bash
# Debian's chromium for the CORS test: a real browser, run headless, loads a page from one
# 127.0.0.1 origin that fetch()es from annex-proxy on another.
set -euo pipefail
. "$(dirname "$0")/lib/apt-command.sh"
apt_command chromium chromium
