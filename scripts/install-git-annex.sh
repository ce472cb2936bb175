#!/usr/bin/env bash
# Finds, or installs, a git-annex new enough for p2phttp and clusters (>= 10.20240731).
# Used by `npm start` (prestart), `npm test` (pretest, through install-test-deps.sh) and .ci/run.
#   - already on PATH and new enough: nothing to do;
#   - apt machines (as root): the distribution's own git-annex when new enough (Debian 13
#     "trixie" and later); on Debian 12 "bookworm", whose git-annex is too old, the
#     bookworm-backports suite on the mirror the apt sources already use (no host is written here);
#   - anything else: one line on stderr saying what to install, exit 1.
set -euo pipefail

min=10.20240731
where="https://git-annex.branchable.com/install/"

# 0 when version $1 >= $min (sort -V puts the smaller first).
new_enough() {
  [ -n "$1" ] && [ "$(printf '%s\n%s\n' "$min" "$1" | sort -V | head -n1)" = "$min" ]
}

installed_version() {
  command -v git-annex >/dev/null 2>&1 || return 0
  local v
  v=$(git-annex version --raw 2>/dev/null || true)
  printf '%s' "${v%%-*}"
}

have=$(installed_version)
if new_enough "$have"; then
  exit 0
fi
found=${have:+git-annex $have is too old}
found=${found:-no git-annex is on PATH}

say() {
  echo "annex-proxy needs git-annex >= $min and $found: $*" >&2
  exit 1
}

id=; version_id=; codename=
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  id=${ID:-}; version_id=${VERSION_ID:-}; codename=${VERSION_CODENAME:-}
fi

if ! command -v apt-get >/dev/null 2>&1; then
  say "install it from your distribution if it has one that new, or the standalone build from $where"
fi
if [ "$(id -u)" != 0 ]; then
  say "run 'sudo bash scripts/install-git-annex.sh' (apt: ${id:-this system} ${version_id}), or install it from $where"
fi

export DEBIAN_FRONTEND=noninteractive
apt() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }

# The version apt would install from the suites configured now (epoch and Debian revision dropped).
candidate() {
  local v
  v=$(apt-cache policy git-annex 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ "$v" = "(none)" ] && v=
  v=${v#*:}
  printf '%s' "${v%%-*}"
}

apt update -qq
suite=
if ! new_enough "$(candidate)"; then
  if [ "$id" = debian ] && [ "$codename" = bookworm ]; then
    # The first Debian archive mirror the existing sources use (deb822 or one-line form).
    mirror=$(
      { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true
        grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' || true
      } | grep -E '/debian/?$' | head -n1 || true
    )
    [ -n "$mirror" ] || say "no Debian mirror found in the apt sources to add bookworm-backports from; add it (https://backports.debian.org/Instructions/) and run this again"
    if ! grep -qs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null; then
      echo "deb $mirror bookworm-backports main" > /etc/apt/sources.list.d/annex-proxy-backports.list
    fi
    apt update -qq
    suite=bookworm-backports
  else
    c=$(candidate)
    say "${id:-this system} ${version_id} offers ${c:+git-annex $c}${c:-no git-annex package}; use Debian 12 with bookworm-backports or Debian 13, or install the standalone build from $where"
  fi
fi

apt install -y -qq ${suite:+-t "$suite"} git-annex >/dev/null
have=$(installed_version)
new_enough "$have" || { found="apt installed ${have:-nothing usable}"; say "install a newer one from $where"; }
echo "installed git-annex $have${suite:+ from $suite}" >&2
