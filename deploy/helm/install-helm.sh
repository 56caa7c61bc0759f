#!/usr/bin/env bash
# Builds the helm binary the chart's tests run (tests/test_deploy_helm.py) from the Go module
# proxy with the machine's Go, once: the binary is cached under ~/.cache/jit-bridge/bin/ and
# the Go module and build caches under ~/.cache/jit-bridge/go, so a second run does nothing.
# Prints the binary's absolute path as the last line of stdout; `--print-path` prints only where
# the binary belongs (the tests look there), building nothing.
#
# Version: helm v3.21.4. The newest v3 (v3.22.0) is served by the proxy but not approved for
# this project's machines, so we stay on the newest approved v3 release; the chart uses nothing
# newer than Helm 3.8's features (apiVersion v2 and `fail`).
# A clean build (module downloads included) compiles a few hundred packages (the k8s.io client
# modules): about 2 minutes on two busy cores; later runs only find the cached binary.
set -euo pipefail

version=v3.21.4
cache="$HOME/.cache/jit-bridge"
bin_dir="$cache/bin/helm-$version"
helm="$bin_dir/helm"

if [[ "${1:-}" == "--print-path" || -x "$helm" ]]; then
    echo "$helm"
    exit 0
fi

# The machine's Go toolchain (/usr/local/go) first: a distribution's `go` on PATH may be older
# than helm's go.mod asks for.
if [[ -x /usr/local/go/bin/go ]]; then
    go=/usr/local/go/bin/go
elif command -v go >/dev/null 2>&1; then
    go="$(command -v go)"
else
    echo "install-helm.sh: no Go toolchain (/usr/local/go/bin/go or go on PATH); install a Go" \
        "as new as helm $version's go.mod asks for and re-run make setup" >&2
    exit 1
fi

mkdir -p "$bin_dir" "$cache/go/mod" "$cache/go/build"
echo "building helm $version with $("$go" version) (a clean build takes minutes)" >&2
# Build into a temporary GOBIN and move the binary into place at the end, so an interrupted
# build never leaves a half-written binary that the check above would take for a cached one.
tmp_bin="$(mktemp -d "$bin_dir/.build.XXXXXX")"
trap 'rm -rf "$tmp_bin"' EXIT
export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOFLAGS=-modcacherw CGO_ENABLED=0
# helm's own Makefile stamps in its version and the Kubernetes version that `helm template` and
# `helm lint` assume (Kubernetes 1.N for its k8s.io/client-go module v0.N: v0.36 → 1.36); without
# them helm says it is "v3.21" and renders for Kubernetes 1.20.
gomod="$("$go" mod download -json "helm.sh/helm/v3@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
client_go="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")"
if [[ -z "$client_go" ]]; then
    echo "install-helm.sh: cannot find helm $version's k8s.io/client-go version in $gomod" >&2
    exit 1
fi
ldflags="-X helm.sh/helm/v3/internal/version.version=$version"
for package in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$client_go"
done
GOBIN="$tmp_bin" "$go" install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version" >&2
mv "$tmp_bin/helm" "$helm"
"$helm" version --short >&2
echo "$helm"
