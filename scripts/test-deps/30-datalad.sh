#!/usr/bin/env bash
# DataLad for the publish test (issue #13 item 7): Debian's package (0.18.1 on bookworm), as a
# research group would use it. It needs git-annex, which install-git-annex.sh put there first.
set -euo pipefail
. "$(dirname "$0")/lib/apt-command.sh"
apt_command datalad datalad
