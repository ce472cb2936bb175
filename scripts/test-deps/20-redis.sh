#!/usr/bin/env bash
# redis-server for the fleet tests (--redis): Debian's package. The tests start their own
# server on a unix socket in a temp directory; the packaged service is not used.
set -euo pipefail
. "$(dirname "$0")/lib/apt-command.sh"
# The package starts a service on port 6379 where systemd/invoke-rc.d runs it; the tests never use it.
apt_command redis-server redis-server
