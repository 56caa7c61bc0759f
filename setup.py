"""The listener jar goes into the package before a wheel or an sdist is made.

pyproject.toml holds the project's metadata; this file only adds that step. From a checkout,
`deploy/keycloak-provider/build.sh` builds the jar with Maven (or reuses the cached one) and
copies it to bridge/data/, whose package data ships it. An sdist carries the built jar (not
the Java sources), so a wheel built from an sdist needs no Java or Maven: there the jar must
already be in bridge/data/. Editable installs (`pip install -e`) read bridge/data/ in place,
where `make setup` put the jar.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
JAR = ROOT / "bridge" / "data" / "jit-bridge-keycloak-provider.jar"
PROVIDER_BUILD = ROOT / "deploy" / "keycloak-provider" / "build.sh"


def provide_listener_jar() -> None:
    if PROVIDER_BUILD.is_file():
        done = subprocess.run(["bash", str(PROVIDER_BUILD)], stdout=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise SystemExit(f"building the Keycloak listener jar failed: bash {PROVIDER_BUILD}")
    if not JAR.is_file() or JAR.stat().st_size == 0:
        raise SystemExit(
            f"the Keycloak listener jar is missing: {JAR}; build the package from a checkout "
            "(`make dist`), where deploy/keycloak-provider/build.sh makes it"
        )


class BuildPy(build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            provide_listener_jar()
        super().run()


class Sdist(sdist):
    def run(self) -> None:
        provide_listener_jar()
        super().run()


cmdclass: dict[str, Any] = {"build_py": BuildPy, "sdist": Sdist}
setup(cmdclass=cmdclass)
