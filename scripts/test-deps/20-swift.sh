#!/usr/bin/env bash
# A real S3 server for the tests: OpenStack Swift with its s3api middleware, from Debian
# (python3-swift swift-proxy swift-object swift-container swift-account). scripts/test-s3
# configures and starts it per test; this only installs the packages. Debian's policy-rc.d
# keeps the packages' system services from starting; the tests never use /etc/swift.
set -euo pipefail

pkgs=(python3-swift swift-proxy swift-object swift-container swift-account)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "annex-proxy's S3 tests need OpenStack Swift: run 'sudo apt-get install --no-install-recommends ${pkgs[*]}' (Debian/Ubuntu)." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
install() { apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
if ! install; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  install
fi
echo "installed OpenStack Swift $(dpkg-query -W -f='${Version}' python3-swift) for the S3 tests"
