# Sourced by scripts/test-deps/NN-name.sh (not run on its own: install-test-deps.sh runs
# only test-deps/*.sh). One dependency that is a command from one Debian package.

# apt_command COMMAND PACKAGE: returns 0 at once when COMMAND is on PATH; as root with
# apt-get, installs PACKAGE (without recommends; apt-get update only if the install
# fails, and waiting for other installs' dpkg lock) and checks COMMAND is there now;
# otherwise says in one line what to install by hand and returns 1.
apt_command() {
  local cmd=$1 pkg=$2
  if command -v "$cmd" >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "$cmd is missing: install it by hand (Debian/Ubuntu: apt-get install $pkg)" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$pkg" >/dev/null || {
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$pkg" >/dev/null
  }
  command -v "$cmd" >/dev/null
}
