#!/usr/bin/env bash
# Puts promtool, which the alert rules' tests run (tests/test_deploy_prometheus.py), under
# ~/.cache/jit-bridge/bin/promtool/, taken from Debian's `prometheus` package: the package is
# downloaded and only its promtool unpacked. Installing the package itself would also install,
# enable and start a Prometheus server, which nothing here needs; promtool is one static binary.
# Prints the binary's absolute path as the last line of stdout; `--print-path` prints only where
# the binary belongs (the tests look there), fetching nothing. Needs root (or sudo) only when
# apt's package lists are missing (`apt-get update`).
set -euo pipefail

bin_dir="$HOME/.cache/jit-bridge/bin/promtool"
promtool="$bin_dir/promtool"

if [[ "${1:-}" == "--print-path" || -x "$promtool" ]]; then
    echo "$promtool"
    exit 0
fi

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "install-promtool.sh: apt's package lists are missing; run apt-get update as root" >&2
        exit 1
    fi
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" # apt downloads as its own user (_apt) where it can
cd "$work"
if ! apt-get download -qq prometheus 2>/dev/null; then
    as_root apt-get update -qq
    apt-get download -qq prometheus
fi
dpkg-deb -x prometheus_*.deb unpacked
mkdir -p "$bin_dir"
# Into place last, so an interrupted run never leaves a half-written binary behind.
install -m 755 unpacked/usr/bin/promtool "$bin_dir/promtool.part"
mv "$bin_dir/promtool.part" "$promtool"
"$promtool" --version >&2
echo "$promtool"
