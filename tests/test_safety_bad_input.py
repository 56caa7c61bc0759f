"""`jit-bridge validate F` on every bad mapping: exit 2, each problem's JSON pointer on stderr,
never a traceback (docs/design.md: Mapping, Command line). The corpus itself is
tests/data/mappings/bad."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from tests.test_mapping_file import BAD_FILES, CORPUS


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert out == ""  # nothing claims the file is valid
    return code, err


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_every_bad_mapping_exits_2_with_its_pointers(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = validate(CORPUS / "bad" / name, capsys)
    assert code == 2
    assert name in err
    for pointer in BAD_FILES[name]:
        if pointer:
            assert f"{pointer}:" in err, pointer
    assert "Traceback" not in err


def test_a_huge_mapping_is_refused_without_reading_it_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = '{"group_name": "G", "team_name": "T", "role_name": "EDITOR"},'
    huge = tmp_path / "huge.json"
    huge.write_text('{"mappings": [' + entry * 30_000 + "]}")
    code, err = validate(huge, capsys)
    assert code == 2
    assert "huge.json" in err
    assert "Traceback" not in err


def test_a_deeply_nested_mapping_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"mappings": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code, err = validate(deep, capsys)
    assert code == 2
    assert "Traceback" not in err


def test_non_utf8_through_the_installed_command_has_no_traceback(tmp_path: Path) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes(
        b'{"mappings": [{"group_name": "Caf\xe9", "team_name": "T", "role_name": "EDITOR"}]}'
    )
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "validate", str(latin)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "latin.json" in done.stderr
    assert "UTF-8" in done.stderr or "utf-8" in done.stderr
    assert "Traceback" not in done.stderr
