"""The settings directory `jit-bridge init` writes: `bridge.toml` and `secrets/<name>`.

The secrets directory is 0700 and each file 0600 (the settings directory itself is created
0700, and left as it is when it already exists). `bridge.toml` names the secrets through
`<name>_file` keys, relative to itself, and never holds one.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from bridge.settings import SettingsError

SETTINGS_NAME = "bridge.toml"
SECRETS_DIR = "secrets"
HEADER = (
    "# Written by `jit-bridge init`; run it again to update (keys it does not manage are kept),\n"
    "# `jit-bridge init --undo --dir {dir}` to take the setup back.\n"
)


def read_existing(directory: Path) -> dict[str, Any]:
    """The settings an earlier run wrote (or the operator edited), or {}."""
    path = directory / SETTINGS_NAME
    if not path.exists():
        return {}
    try:
        values: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(
            f"{path}: cannot read the settings an earlier init wrote: {exc}"
        ) from None
    return values


def read_secret(directory: Path, name: str) -> str | None:
    path = directory / SECRETS_DIR / name
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from exc


def render_toml(values: dict[str, Any], directory: Path) -> str:
    lines = [HEADER.format(dir=directory)]
    for key, value in values.items():
        lines.append(f"{key} = {_toml_value(key, value)}\n")
    return "".join(lines)


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    raise SettingsError(f"setting '{key}': init cannot write a value of this kind: {value!r}")


def secret_path(directory: Path, name: str) -> Path:
    return directory / SECRETS_DIR / name


def would_change(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") != text
    except FileNotFoundError:
        return True


def write_private(path: Path, text: str) -> bool:
    """Write `text` to `path` with mode 0600 (its directory 0700 when created here);
    False when the file already held exactly that."""
    if path.parent.name == SECRETS_DIR:
        path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path.parent, 0o700)
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed = would_change(path, text)
    if changed:
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
        changed = True
    return changed
