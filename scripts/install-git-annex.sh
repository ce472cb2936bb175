#!/usr/bin/env bash
# Installs a git-annex new enough for p2phttp and clusters (>= 10.20240731).
# Debian bookworm's main suite is too old, so the backports suite is added on the
# same mirror the machine's apt sources already name (no host is written here).
set -euo pipefail

min=10.20240731

have_version() {
  command -v git-annex >/dev/null 2>&1 || return 1
  local v
  v=$(git annex version --raw 2>/dev/null || true)
  v=${v%%-*}
  [ -n "$v" ] || return 1
  # sort -V puts the smaller first: ours must not be the smaller one.
  [ "$(printf '%s\n%s\n' "$min" "$v" | sort -V | head -n1)" = "$min" ]
}

if have_version; then
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "annex-proxy tests need git-annex >= $min: run 'sudo bash scripts/install-git-annex.sh' (Debian bookworm-backports) or install it from your distribution." >&2
  exit 1
fi

# The first Debian archive mirror the existing sources use (deb822 or one-line form).
mirror=$(
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
  } | grep -E '/debian/?$' | head -n1 || true
)
if [ -z "$mirror" ]; then
  echo "no Debian mirror found in /etc/apt sources; cannot add bookworm-backports" >&2
  exit 1
fi

list=/etc/apt/sources.list.d/annex-proxy-backports.list
if ! grep -qs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null; then
  echo "deb $mirror bookworm-backports main" > "$list"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq -t bookworm-backports git-annex >/dev/null
have_version || { echo "git-annex install did not yield version >= $min" >&2; exit 1; }
echo "installed git-annex $(git annex version --raw)"
