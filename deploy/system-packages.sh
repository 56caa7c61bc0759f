#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when they are missing:
# a JDK (Keycloak and the listener), Maven (fetches Keycloak, builds the listener), the
# PostgreSQL server binaries (store and multi-process tests) and Chromium (the console's browser
# tests drive it headless through Playwright, which downloads no browser of its own). Needs root
# (or sudo) only when something is missing.
set -euo pipefail

need=()
command -v java >/dev/null || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need+=(maven)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "missing Debian packages: ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
    exit 1
  fi
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${need[@]}"
