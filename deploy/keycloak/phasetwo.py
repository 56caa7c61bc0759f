"""Phase Two's keycloak-events extension, for tests and for operators who already run it.

`keycloak-events` (io.phasetwo.keycloak:keycloak-events on Maven Central) sends Keycloak's
events as signed webhooks; jit-bridge accepts them on the same endpoint as its own listener.
This module fetches the pinned jar through Maven (checking a pinned SHA-1, as the harness
checks Keycloak's archive), finds a Java 21+ runtime for it (its classes are Java 21
bytecode) and gives the Keycloak options it needs. The webhook itself is made by
`jit-bridge init --events phasetwo` (or by hand: docs/phase-two.md).

    python deploy/keycloak/phasetwo.py fetch    # prints the jar and the Java 21+ home
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

VERSION = "0.59"
#: SHA-1 of keycloak-events-0.59.jar as Maven Central publishes it.
SHA1 = "724aeea2da6782a5c4958eed57e8c7f370f0536d"
ARTIFACT = f"io.phasetwo.keycloak:keycloak-events:{VERSION}"
LISTENER_ID = "ext-event-webhook"
#: Keycloak options the extension needs beside the jar. It adds an events store of its own;
#: without naming JPA Keycloak has none, and the event-store endpoints (`/events`,
#: `/admin-events`, which the bridge's poller reads) answer 500 (KC-SERVICES0082).
KEYCLOAK_OPTIONS = ("--spi-events-store--provider=jpa",)
JVM_ROOT = Path("/usr/lib/jvm")


class PhaseTwoError(RuntimeError):
    """The jar or a Java 21+ runtime cannot be had, or a webhook call failed."""


def maven_jar() -> Path:
    repo = Path(os.environ.get("MAVEN_REPO_LOCAL", Path.home() / ".m2" / "repository"))
    folder = repo / "io" / "phasetwo" / "keycloak" / "keycloak-events" / VERSION
    return folder / f"keycloak-events-{VERSION}.jar"


def fetch() -> Path:
    """The pinned jar, fetched through Maven when missing, its SHA-1 checked."""
    jar = maven_jar()
    if not jar.exists():
        mvn = shutil.which("mvn")
        if mvn is None:
            raise PhaseTwoError(
                f"{jar} is missing and Maven is not installed (apt-get install maven)"
            )
        cmd = [mvn, "-q", "-B", "dependency:get", "-Dtransitive=false", f"-Dartifact={ARTIFACT}"]
        if "MAVEN_REPO_LOCAL" in os.environ:
            cmd.append(f"-Dmaven.repo.local={os.environ['MAVEN_REPO_LOCAL']}")
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not jar.exists():
            tail = (done.stdout + done.stderr)[-2000:]
            raise PhaseTwoError(f"`{' '.join(cmd)}` failed (exit {done.returncode}):\n{tail}")
    digest = hashlib.sha1(jar.read_bytes()).hexdigest()  # noqa: S324 - Maven Central's checksum
    if digest != SHA1:
        raise PhaseTwoError(f"{jar} has SHA-1 {digest}, expected {SHA1}; delete it and fetch again")
    return jar


def java_major(java_home: Path) -> int | None:
    """The feature version of the JDK or JRE at `java_home` (from its `release` file)."""
    release = java_home / "release"
    if not release.exists():
        return None
    found = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), flags=re.MULTILINE)
    return int(found.group(1)) if found else None


def java_21_home() -> Path:
    """A Java 21 or newer for Keycloak with the extension: JIT_BRIDGE_KEYCLOAK_JAVA21_HOME,
    else the newest under /usr/lib/jvm (Debian 12 packages only Java 17; the machine images
    here ship Temurin 25 there)."""
    explicit = os.environ.get("JIT_BRIDGE_KEYCLOAK_JAVA21_HOME")
    if explicit:
        home = Path(explicit)
        major = java_major(home)
        if major is None or major < 21:
            raise PhaseTwoError(f"JIT_BRIDGE_KEYCLOAK_JAVA21_HOME={home} is not Java 21 or newer")
        return home
    found = [
        (major, home)
        for home in (sorted(JVM_ROOT.iterdir()) if JVM_ROOT.is_dir() else [])
        if (home / "bin" / "java").exists() and (major := java_major(home)) and major >= 21
    ]
    if not found:
        raise PhaseTwoError(
            "keycloak-events is Java 21 bytecode, and no Java 21 or newer is installed under "
            f"{JVM_ROOT}; install one (e.g. a Temurin or OpenJDK 21+ package) or set "
            "JIT_BRIDGE_KEYCLOAK_JAVA21_HOME"
        )
    return max(found)[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="fetch and check the pinned jar; print it and a Java 21+ home")
    parser.parse_args(argv)
    try:
        print(fetch())
        print(java_21_home())
    except PhaseTwoError as exc:
        print(f"phasetwo.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
