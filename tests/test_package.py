"""The Python package as an operator gets it: `python -m build` (what `make dist` runs) makes an
sdist and, from that sdist, a wheel; the wheel, installed with its dependencies into a fresh
venv outside the checkout, runs the offline commands with nothing from the repository, and
installs the Keycloak listener jar it carries into a `providers/` folder.

The venv's dependencies come from the wheelhouse `make setup` fills, not from PyPI."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from bridge import __version__
from tests.test_cli_plan import SCENARIOS, toml_settings

pytestmark = [pytest.mark.package, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path.home() / ".cache" / "jit-bridge" / "wheels"
BUILT_JAR = REPO / "deploy" / "keycloak-provider" / "target" / "jit-bridge-keycloak-provider.jar"
MIGRATIONS = REPO / "bridge" / "migrations"
JAR_NAME = "jit-bridge-keycloak-provider.jar"
LISTENER_FACTORY = "dev.jitbridge.keycloak.JitBridgeEventListenerProviderFactory"

#: What the package must carry besides its modules.
PACKAGE_DATA = [
    "bridge/migrations/alembic.ini",
    "bridge/migrations/env.py",
    "bridge/migrations/script.py.mako",
    *(f"bridge/migrations/versions/{p.name}" for p in sorted(MIGRATIONS.glob("versions/*.py"))),
    "bridge/data/example-mapping.json",
    "bridge/data/mapping-schema.json",
    f"bridge/data/{JAR_NAME}",
]


@dataclass
class Dist:
    wheel: Path
    sdist: Path


@dataclass
class Installed:
    """A venv with the wheel installed, and a working directory outside the checkout."""

    venv: Path
    workdir: Path
    env: dict[str, str]

    def run(
        self, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "jit-bridge"), *args],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env={**self.env, **(extra_env or {})},
            check=False,
            timeout=120,
        )


def outside_env() -> dict[str, str]:
    """The environment without anything pointing into the checkout or its venv."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JIT_BRIDGE_", "PYTHON", "VIRTUAL_ENV", "PIP_FIND_LINKS"))
    }


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, (
        f"python -m build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    return Dist(
        wheel=out / f"jit_bridge-{__version__}-py3-none-any.whl",
        sdist=out / f"jit_bridge-{__version__}.tar.gz",
    )


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"no dependency wheels in {WHEELHOUSE}; run `make setup`")
    home = tmp_path_factory.mktemp("operator")
    venv, workdir = home / "venv", home / "work"
    workdir.mkdir()
    env = outside_env()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, cwd=home, env=env)
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(WHEELHOUSE),
            str(dist.wheel),
        ],
        capture_output=True,
        text=True,
        cwd=home,
        env=env,
        check=False,
    )
    assert done.returncode == 0, (
        f"installing the wheel failed (a dependency missing from {WHEELHOUSE}? `make setup`):\n"
        f"{done.stderr[-3000:]}"
    )
    return Installed(venv=venv, workdir=workdir, env=env)


def test_make_dist_builds_both_files_under_stable_names(dist: Dist) -> None:
    assert dist.wheel.is_file()
    assert dist.sdist.is_file()


def test_the_wheel_carries_the_migrations_the_mapping_files_and_the_built_jar(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        assert [p for p in PACKAGE_DATA if p not in names] == []
        assert wheel.read(f"bridge/data/{JAR_NAME}") == BUILT_JAR.read_bytes()
        assert (
            wheel.read("bridge/data/mapping-schema.json")
            == (REPO / "bridge" / "data" / "mapping-schema.json").read_bytes()
        )
        # The license pyproject declares (Apache-2.0), its text in the wheel's metadata.
        dist_info = f"jit_bridge-{__version__}.dist-info"
        assert wheel.read(f"{dist_info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        assert "License-Expression: Apache-2.0" in wheel.read(f"{dist_info}/METADATA").decode()


def test_the_sdist_carries_the_package_data_and_the_built_jar_but_no_tests(dist: Dist) -> None:
    root = f"jit_bridge-{__version__}"
    with tarfile.open(dist.sdist) as sdist:
        names = set(sdist.getnames())
        assert [p for p in PACKAGE_DATA if f"{root}/{p}" not in names] == []
        member = sdist.extractfile(f"{root}/bridge/data/{JAR_NAME}")
        assert member is not None
        assert member.read() == BUILT_JAR.read_bytes()
    assert f"{root}/setup.py" in names
    assert f"{root}/LICENSE" in names
    assert not any(n.startswith(f"{root}/tests/") for n in names)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    done = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import bridge; print(bridge.__file__)"],
        capture_output=True,
        text=True,
        cwd=installed.workdir,
        env=installed.env,
        check=True,
    )
    location = Path(done.stdout.strip())
    assert location.is_relative_to(installed.venv)
    assert not location.is_relative_to(REPO)


def test_version(installed: Installed) -> None:
    done = installed.run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"jit-bridge {__version__}"


def test_the_example_mapping_and_schema_ship_and_the_example_validates(
    installed: Installed,
) -> None:
    done = installed.run("example-mapping", "-o", "mapping.json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote mapping.json"
    written = (installed.workdir / "mapping.json").read_text(encoding="utf-8")
    assert written == (REPO / "bridge" / "data" / "example-mapping.json").read_text("utf-8")

    done = installed.run("validate", "mapping.json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("mapping.json: valid (4 mapping entries, 1 owner groups")

    done = installed.run("mapping-schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "mappings" in schema["properties"]


def test_an_offline_plan_from_snapshots(installed: Installed) -> None:
    scenario = installed.workdir / "scenario"
    shutil.copytree(SCENARIOS / "enhanced-reconcile", scenario)
    settings = json.loads((scenario / "settings.json").read_text(encoding="utf-8"))
    done = installed.run(
        "plan",
        "--all",
        "--trigger",
        "reconcile",
        "--allow-removals",
        "1000",
        "--json",
        "--idp-snapshot",
        "scenario/idp.json",
        "--target-snapshot",
        "scenario/target.json",
        "--mapping",
        "scenario/mapping.json",
        "--settings",
        str(toml_settings(scenario, settings)),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (scenario / "plan.json").read_text(encoding="utf-8") + "\n"


def test_db_upgrade_creates_a_fresh_sqlite_store_at_the_newest_revision(
    installed: Installed,
) -> None:
    database = installed.workdir / "state.db"
    done = installed.run(
        "db", "upgrade", extra_env={"JIT_BRIDGE_DATABASE_URL": f"sqlite:///{database}"}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "database schema is up to date"
    with sqlite3.connect(database) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert revision == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert {"work_queue", "runs", "alembic_version"} <= tables


def test_keycloak_provider_install_copies_the_built_jar_and_says_what_to_set(
    installed: Installed,
) -> None:
    providers = installed.workdir / "keycloak" / "providers"
    providers.mkdir(parents=True)

    done = installed.run("keycloak-provider", "install", str(providers))

    assert done.returncode == 0, done.stderr
    jar = providers / JAR_NAME
    assert jar.read_bytes() == BUILT_JAR.read_bytes()
    with zipfile.ZipFile(jar) as archive:  # what Keycloak's service loader reads
        services = archive.read(
            "META-INF/services/org.keycloak.events.EventListenerProviderFactory"
        ).decode()
        assert LISTENER_FACTORY in services.split()
        assert f"{LISTENER_FACTORY.replace('.', '/')}.class" in archive.namelist()
    out = done.stdout
    assert f"copied the jit-bridge Keycloak listener to {jar}" in out
    for option in (
        "KC_SPI_EVENTS_LISTENER__JIT_BRIDGE__URL=",
        "KC_SPI_EVENTS_LISTENER__JIT_BRIDGE__SECRET=",
        "--spi-events-listener--jit-bridge--url=",
        "--spi-events-listener--jit-bridge--secret=",
        "bin/kc.sh build",
    ):
        assert option in out

    done = installed.run("keycloak-provider", "path")
    assert done.returncode == 0, done.stderr
    shipped = Path(done.stdout.strip())
    assert shipped.is_relative_to(installed.venv)
    assert shipped.read_bytes() == BUILT_JAR.read_bytes()


def test_keycloak_provider_install_refuses_a_folder_that_is_not_there(
    installed: Installed,
) -> None:
    missing = installed.workdir / "no-such-keycloak" / "providers"
    done = installed.run("keycloak-provider", "install", str(missing))
    assert done.returncode == 2
    assert f"{missing} does not exist" in done.stderr
    assert not missing.exists()

    a_file = installed.workdir / "providers-file"
    a_file.write_text("not a folder\n")
    done = installed.run("keycloak-provider", "install", str(a_file))
    assert done.returncode == 2
    assert f"{a_file} is not a directory" in done.stderr
    assert a_file.read_text() == "not a folder\n"


def test_a_wheel_is_not_built_without_the_listener_jar(dist: Dist, tmp_path: Path) -> None:
    """Outside a checkout (no build.sh) the jar must come with the sources: an sdist that lost
    it is refused with the reason, instead of making a wheel without the listener."""
    with tarfile.open(dist.sdist) as sdist:
        sdist.extractall(tmp_path, filter="data")
    sources = tmp_path / f"jit_bridge-{__version__}"
    (sources / "bridge" / "data" / JAR_NAME).unlink()

    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", "out", "."],
        capture_output=True,
        text=True,
        cwd=sources,
        check=False,
    )

    assert done.returncode != 0
    assert "the Keycloak listener jar is missing" in done.stdout + done.stderr
    assert not (sources / "out").exists() or not any((sources / "out").glob("*.whl"))
