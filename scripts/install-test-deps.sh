#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine: git-annex first, then every
# scripts/test-deps/*.sh in name order (each installs one dependency and is a no-op when
# it is already there). `npm test` and .ci/run both call this, so the suite never depends
# on anything the repository does not install itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/install-git-annex.sh"
for s in "$here"/test-deps/*.sh; do
  [ -e "$s" ] || continue
  bash "$s"
done
