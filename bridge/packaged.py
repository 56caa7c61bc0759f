"""Files that ship inside the package (bridge/data/): the example mapping, the mapping's JSON
Schema and the Keycloak listener jar, and installing that jar into a Keycloak.

The jar is built from deploy/keycloak-provider/ by its build.sh, which copies it here; a wheel
or sdist always carries it (setup.py refuses to build one without it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
EXAMPLE_MAPPING = DATA / "example-mapping.json"
MAPPING_SCHEMA = DATA / "mapping-schema.json"
LISTENER_JAR = DATA / "jit-bridge-keycloak-provider.jar"

#: What Keycloak must be told once the jar is in providers/ (docs/keycloak-listener.md).
LISTENER_OPTIONS = (
    ("url", "https://<the bridge>/webhooks/keycloak"),
    ("secret", "<the bridge's webhook_secret>"),
)


class PackagedFileError(Exception):
    """A file that should ship in the package is missing from this installation."""


class ProvidersDirError(Exception):
    """The folder given for the listener jar cannot take it."""


def listener_jar() -> Path:
    """The listener jar of this installation; a clear error when it is not there."""
    if not LISTENER_JAR.is_file() or LISTENER_JAR.stat().st_size == 0:
        raise PackagedFileError(
            f"the Keycloak listener jar is not in this installation ({LISTENER_JAR}); "
            "in a checkout, build it with `bash deploy/keycloak-provider/build.sh` (make setup)"
        )
    return LISTENER_JAR


def install_listener(providers: Path) -> tuple[Path, bool]:
    """Copy the listener jar into a Keycloak `providers/` folder. Returns the installed file
    and whether it replaced a different jar of the same name."""
    if not providers.exists():
        raise ProvidersDirError(
            f"{providers} does not exist; give Keycloak's providers folder "
            "(e.g. /opt/keycloak/providers)"
        )
    if not providers.is_dir():
        raise ProvidersDirError(f"{providers} is not a directory; give Keycloak's providers folder")
    if not os.access(providers, os.W_OK | os.X_OK):
        raise ProvidersDirError(
            f"{providers} is not writable by this user; run as Keycloak's owner or with sudo"
        )
    jar = listener_jar()
    installed = providers / jar.name
    replaced = installed.exists() and installed.read_bytes() != jar.read_bytes()
    partial = providers / f".{jar.name}.tmp"
    try:
        shutil.copyfile(jar, partial)
        partial.replace(installed)  # Keycloak never sees a half-written jar
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ProvidersDirError(f"could not copy the jar to {installed}: {exc}") from exc
    return installed, replaced


def listener_options_text() -> str:
    """The SPI options to set and the steps left, for people who just installed the jar."""
    env = [
        f"  KC_SPI_EVENTS_LISTENER__JIT_BRIDGE__{name.upper().replace('-', '_')}={value}"
        for name, value in LISTENER_OPTIONS
    ]
    flags = [
        f"  --spi-events-listener--jit-bridge--{name}={value}" for name, value in LISTENER_OPTIONS
    ]
    return "\n".join(
        [
            "Now tell Keycloak where the bridge is, as environment variables:",
            *env,
            "or as options of kc.sh (or lines of conf/keycloak.conf, without the leading --):",
            *flags,
            "(Keycloak before 26.3 also reads the single-dash spelling, e.g.",
            "  --spi-events-listener-jit-bridge-url; the listener accepts both on every release.)",
            "Keep the secret out of the process list: prefer the variable or keycloak.conf.",
            "Then rebuild Keycloak so it loads the jar: bin/kc.sh build (start-dev rebuilds by",
            "itself), restart it, and add 'jit-bridge' to each realm's event listeners",
            "(Realm settings > Events > Event listeners; `jit-bridge init` does this).",
            "The listener's other options and how to check it works: docs/keycloak-listener.md.",
        ]
    )
