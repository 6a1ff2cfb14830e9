#!/usr/bin/env bash
# Installs what the end-to-end tests run (`make e2e`), outside the repository, once; later runs take seconds:
#   Node.js + npm and redis-server from Debian's packages when missing (as root, like .ci/run),
#   @mojaloop/sdk-scheme-adapter and ml-testing-toolkit from npm, each `npm ci` from our lock file (e2e/node/*/)
#   into $MOJAFLOW_E2E_DIR (default ~/.cache/mojaflow-e2e)/{sdk,ttk}. A lock file that changed reinstalls.
# Prints the install directory as its last line.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR=${MOJAFLOW_E2E_DIR:-$HOME/.cache/mojaflow-e2e}
mkdir -p "$DIR"

say() { printf '[e2e install] %s\n' "$*" >&2; }

apt_install() { # apt_install PACKAGE...: only as root; `apt-get update` first when the lists are too old to know it
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    say "missing $*: install it (Debian: apt-get install $*) or run as root"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$@" >&2 || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "$@" >&2; }
}

command -v redis-server >/dev/null || { say "installing redis-server (Debian)"; apt_install redis-server; }
command -v node >/dev/null && command -v npm >/dev/null || { say "installing nodejs and npm (Debian)"; apt_install nodejs npm; }
command -v openssl >/dev/null || apt_install openssl

node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 18)); then
  say "Node $(node --version) is too old: the SDK and the Testing Toolkit need 18 or newer (proven on 20)"
  exit 1
fi

install_package() { # install_package NAME: npm ci into $DIR/NAME unless the same lock file is installed there
  local name=$1 target=$DIR/$1 want
  want=$(cat "$HERE/node/$name/package.json" "$HERE/node/$name/package-lock.json" | sha256sum | cut -d' ' -f1)
  if [[ -f $target/.installed && $(cat "$target/.installed") == "$want" ]]; then
    return 0
  fi
  say "installing $name from npm into $target (well under a minute)"
  rm -rf "$target"
  mkdir -p "$target"
  cp "$HERE/node/$name/package.json" "$HERE/node/$name/package-lock.json" "$target/"
  # --ignore-scripts: nothing the two need at run time builds anything at install time (grpc, protobufjs, ...)
  if ! (cd "$target" && npm ci --no-audit --no-fund --ignore-scripts >"$target/npm.log" 2>&1); then
    say "npm ci for $name failed; last lines of $target/npm.log:"
    tail -20 "$target/npm.log" >&2
    exit 1
  fi
  echo "$want" >"$target/.installed"
}

started=$SECONDS
install_package sdk
install_package ttk
((SECONDS - started < 2)) || say "installed in $((SECONDS - started)) s"
echo "$DIR"
