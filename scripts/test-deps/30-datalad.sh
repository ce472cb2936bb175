#!/usr/bin/env bash
# DataLad for the publish test (issue #13 item 7): Debian's package (0.18.1 on bookworm), as a
# research group would use it. It needs git-annex, which install-git-annex.sh put there first.
set -euo pipefail
if command -v datalad >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "datalad is missing: install it by hand (Debian/Ubuntu: apt-get install datalad)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends datalad >/dev/null || {
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends datalad >/dev/null
}
command -v datalad >/dev/null
