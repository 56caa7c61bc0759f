#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when they are missing:
# a JDK (Keycloak and the listener; a Java 21+ too, for Phase Two's extension), Maven (fetches
# Keycloak, builds the listener), the PostgreSQL server binaries (store and multi-process tests)
# and Chromium (the console's browser tests drive it headless through Playwright, which
# downloads no browser of its own). Needs root (or sudo) only when something is missing.
set -euo pipefail

# Java 21 or newer under /usr/lib/jvm (Phase Two's keycloak-events is Java 21 bytecode).
has_java21() {
  local release version
  for release in /usr/lib/jvm/*/release; do
    version=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release" 2>/dev/null)
    [ "${version:-0}" -ge 21 ] && return 0
  done
  return 1
}

# promtool (the alert rules' tests), unpacked from Debian's prometheus package, not installed.
bash "$(dirname "$0")/prometheus/install-promtool.sh" >/dev/null

need=()
command -v java >/dev/null || need+=(openjdk-17-jdk-headless)
if ! has_java21; then
  if apt-cache show openjdk-21-jdk-headless >/dev/null 2>&1; then
    need+=(openjdk-21-jdk-headless)
  else
    echo "no Java 21+ under /usr/lib/jvm and no openjdk-21 package here (Debian 12 has 17 only):" \
      "install one (e.g. Temurin 21+) or set JIT_BRIDGE_KEYCLOAK_JAVA21_HOME for the Phase Two tests" >&2
  fi
fi
command -v mvn >/dev/null || need+=(maven)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
# systemd-analyze checks deploy/systemd/jit-bridge.service (systemd need not be running).
command -v systemd-analyze >/dev/null || need+=(systemd)
# buildah and debootstrap build deploy/container/Containerfile (deploy/container/base-image.sh).
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
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
