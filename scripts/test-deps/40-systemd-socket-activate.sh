#!/usr/bin/env bash
# systemd-socket-activate (Debian's systemd package) for the socket-activation test: it
# passes a listening socket the way systemd does (LISTEN_FDS, LISTEN_PID). Nothing is
# started as a service.
set -euo pipefail
. "$(dirname "$0")/lib/apt-command.sh"
apt_command systemd-socket-activate systemd
