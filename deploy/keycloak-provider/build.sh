#!/usr/bin/env bash
# Builds the jit-bridge Keycloak event listener jar (running its JUnit tests) when src/ or pom.xml
# changed since the last build, and prints the jar's absolute path as the last line of stdout.
# It also copies the jar into the Python package (bridge/data/), which ships it in the wheel.
# Maven's own output goes to stderr. Dependencies come from ~/.m2, so after the first build no
# network is needed (released artifacts already in ~/.m2 are never downloaded again).
set -euo pipefail

project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jar="$project_dir/target/jit-bridge-keycloak-provider.jar"
stamp="$jar.sources.sha256"

sources_hash() {
    (
        cd "$project_dir"
        find src pom.xml -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    ) | sha256sum | cut -d' ' -f1
}

wanted="$(sources_hash)"
if [[ -f "$jar" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    echo "jit-bridge listener jar is up to date" >&2
else
    if ! command -v mvn >/dev/null 2>&1; then
        echo "build.sh: Maven (mvn) is not on PATH; install it (e.g. apt-get install maven) and retry" >&2
        exit 1
    fi
    rm -f "$stamp"
    mvn -q -B -Dstyle.color=never -f "$project_dir/pom.xml" package >&2
    echo "$wanted" >"$stamp"
fi
packaged="$project_dir/../../bridge/data/jit-bridge-keycloak-provider.jar"
if ! cmp -s "$jar" "$packaged"; then
    cp "$jar" "$packaged.tmp" && mv "$packaged.tmp" "$packaged"
fi
echo "$jar"
