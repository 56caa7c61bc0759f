"""Settings (docs/design.md, Settings and state): environment variables, an optional TOML file, and
`_FILE` secrets.

Precedence, highest first: `JIT_BRIDGE_<NAME>` environment variables or `JIT_BRIDGE_<NAME>_FILE`
files (for secrets mounted by an orchestrator; setting both for one name is refused, since one
would silently hide the other), the TOML file (`--settings F` or
`JIT_BRIDGE_SETTINGS`), then the defaults below. Secrets are `SecretStr`: they print as
`**********` and never reach logs, errors or audit records.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bridge.policy import Policy

ENV_PREFIX = "JIT_BRIDGE_"
SECRET_FIELDS = (
    "tines_api_key",
    "scim_token",
    "keycloak_client_secret",
    "webhook_secret",
    "webhook_secret_previous",
    "admin_token",
    "tls_key_password",
)
#: Settings that can be read from a file (`JIT_BRIDGE_<NAME>_FILE`): the secrets, and the
#: database URL, which carries the database password.
FILE_FIELDS = (*SECRET_FIELDS, "database_url")


class SettingsError(Exception):
    """The settings are unusable; the message names each bad setting and where it came from."""


class Settings(BaseSettings, Policy):
    """Every setting: the policy fields (inherited from `Policy`, one definition of each)
    and where things are. `policy` hands the pure core just the policy part."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        env_nested_delimiter=None,
        # List settings come as JSON or comma-separated text: `_list_from_env` reads both.
        enable_decoding=False,
    )

    dry_run: bool = False
    reconcile_interval: int = Field(default=900, ge=0)

    # -- where things are -------------------------------------------------------------------
    mapping_file: Path = Path("mappings/mapping.json")
    target: Literal["tines", "scim"] = "tines"
    tines_url: str | None = None
    tines_api_key: SecretStr | None = None
    #: How one Tines user is found: "auto" (by email, falling back to listing on an older
    #: tenant), "email" or "list". See bridge/targets/tines.py.
    tines_user_lookup: Literal["auto", "email", "list"] = "auto"
    scim_url: str | None = None
    scim_token: SecretStr | None = None
    scim_group_template: str = "{team}:{role}"
    scim_case_group_template: str = "{team}/{case_group}:{role}"
    scim_owner_group: str | None = None
    scim_create_groups: bool = True
    #: Members one SCIM request adds to a group at most (some services cap it, e.g. at 100).
    scim_patch_max_members: int = Field(default=100, ge=1)
    #: Users whose writes are sent at once in a run (never two requests for one user at once).
    write_concurrency: int = Field(default=4, ge=1, le=64)
    keycloak_url: str | None = None
    keycloak_realm: str | None = None
    keycloak_client_id: str | None = None
    keycloak_client_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    #: While `webhook_secret` is rotated: the secret it replaces, still accepted, so that the
    #: sender can switch after the bridge without a refused delivery (docs/operations.md).
    webhook_secret_previous: SecretStr | None = None
    poll_events: bool = False
    #: The longest a login waits to reach the target when polling: the poller runs a little
    #: more often than this (bridge.intake.poller.poll_period), so its reconcile fits too.
    poll_interval: float = Field(default=5, gt=0)
    database_url: str = "sqlite:///jit-bridge.db"
    listen: str = "127.0.0.1:8080"
    admin_token: SecretStr | None = None
    verify_tls: bool = True
    #: HTTPS on `listen`: the certificate chain (PEM, server certificate first) and its key
    #: (PEM; `tls_key_password` if encrypted). Both or neither; neither serves plain HTTP.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_key_password: SecretStr | None = None
    #: Addresses (IPs, CIDR ranges, or "*") of reverse proxies whose X-Forwarded-Proto and
    #: X-Forwarded-For are believed: behind a proxy that ends TLS, the console's cookies are
    #: then `Secure`. Empty (default): forwarded headers are ignored, from anyone.
    forwarded_allow_ips: tuple[str, ...] = ()

    # -- operational knobs ---------------------------------------------------------------
    workers: int = Field(default=2, ge=1, le=64)
    #: Seconds a stopping process (SIGTERM, SIGINT) takes at most to finish or hand back its
    #: work, mark its unfinished runs interrupted and release its leases.
    shutdown_timeout: float = Field(default=30, gt=0)
    request_timeout: float = Field(default=15, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: "text" (one readable line per record) or "json" (one JSON object per line).
    log_format: Literal["text", "json"] = "text"

    @field_validator(
        "role_precedence",
        "protected_users",
        "managed_email_domains",
        "forwarded_allow_ips",
        mode="before",
    )
    @classmethod
    def _list_from_env(cls, value: Any) -> Any:
        """An environment variable may hold a JSON list or a comma-separated list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each entry an IP address, a network (10.0.0.0/8) or "*": a typo must not be
        silently ignored (the proxy would then not be believed) or trust too much."""
        for entry in value:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address, a network like 10.0.0.0/8, or *"
                ) from None
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
        return value

    @model_validator(mode="after")
    def _urls_have_no_trailing_slash(self) -> Settings:
        for name in ("tines_url", "scim_url", "keycloak_url"):
            value = getattr(self, name)
            if value is not None and value.endswith("/"):
                object.__setattr__(self, name, value.rstrip("/"))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _SecretFileSource(settings_cls))

    # -- derived ---------------------------------------------------------------------------
    @property
    def policy(self) -> Policy:
        return Policy(**{name: getattr(self, name) for name in Policy.model_fields})

    @property
    def https(self) -> bool:
        """Whether `listen` serves HTTPS (`tls_cert_file` and `tls_key_file` set)."""
        return self.tls_cert_file is not None and self.tls_key_file is not None

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else None

    def masked(self) -> dict[str, Any]:
        """Every effective setting with secrets (and a database password) masked."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown[name] = "**********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                shown[name] = str(value)
            elif isinstance(value, frozenset):
                shown[name] = sorted(value)
            elif isinstance(value, tuple):
                shown[name] = list(value)
            else:
                shown[name] = value
        shown["database_url"] = mask_url_password(self.database_url)
        return shown


class _SecretFileSource(PydanticBaseSettingsSource):
    """`JIT_BRIDGE_<SECRET>_FILE=/run/secrets/x` reads the secret from that file."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name in FILE_FIELDS:
            path = os.environ.get(f"{ENV_PREFIX}{name.upper()}_FILE")
            if not path:
                continue
            if f"{ENV_PREFIX}{name.upper()}" in os.environ:
                raise SettingsError(
                    f"{ENV_PREFIX}{name.upper()} and {ENV_PREFIX}{name.upper()}_FILE are both "
                    "set: set one of them (the variable would hide the file's value)"
                )
            try:
                found[name] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingsError(
                    f"{ENV_PREFIX}{name.upper()}_FILE: cannot read {path}: {exc.strerror}"
                ) from exc
        return found


def mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":**********@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings(settings_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the effective settings; raises SettingsError naming every bad setting.

    `overrides` (from command-line flags) win over everything else.
    """
    path = settings_file or _env_path(f"{ENV_PREFIX}SETTINGS")
    env_names = {n for n in Settings.model_fields if f"{ENV_PREFIX}{n.upper()}" in os.environ} | {
        n for n in FILE_FIELDS if f"{ENV_PREFIX}{n.upper()}_FILE" in os.environ
    }
    from_file: dict[str, Any] = {}
    if path is not None:
        from_file = _read_secret_files(_read_toml(path), path, skip=env_names)
    # The TOML file sits below the environment: keep only what the environment leaves unset.
    init = {k: v for k, v in from_file.items() if k not in env_names}
    init.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = Settings(**init)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, path)) from None
    _check_tls_pair(settings, path)
    _check_previous_webhook_secret(settings, path)
    return settings


def _check_tls_pair(settings: Settings, path: Path | None) -> None:
    """`tls_cert_file` and `tls_key_file` go together: one alone would serve plain HTTP
    where HTTPS was meant."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if (cert is None) == (key is None):
        return
    given, missing = "tls_cert_file", "tls_key_file"
    if cert is None:
        given, missing = missing, given
    where = f"{ENV_PREFIX}{missing.upper()} or {path}" if path else f"{ENV_PREFIX}{missing.upper()}"
    raise SettingsError(
        f"setting '{missing}' ({where}): required when '{given}' is set "
        "(HTTPS needs both the certificate and its key)"
    )


def _check_previous_webhook_secret(settings: Settings, path: Path | None) -> None:
    """`webhook_secret_previous` is the old secret during a rotation: it needs the new one
    beside it, and one equal to it is a rotation done the wrong way round (or not at all)."""
    previous = settings.secret("webhook_secret_previous")
    if not previous:
        return
    variable = f"{ENV_PREFIX}WEBHOOK_SECRET_PREVIOUS(_FILE)"
    where = f"{variable} or {path}" if path else variable
    current = settings.secret("webhook_secret")
    if not current:
        problem = "set without 'webhook_secret': set webhook_secret to the new secret"
    elif previous == current:
        problem = (
            "equal to 'webhook_secret': set webhook_secret to the new secret and "
            "webhook_secret_previous to the old one"
        )
    else:
        return
    raise SettingsError(
        f"setting 'webhook_secret_previous' ({where}): {problem}, or unset "
        "webhook_secret_previous (docs/operations.md, Rotating secrets)"
    )


#: JIT_BRIDGE_* variables that are not settings: the settings file, `init`'s admin password,
#: and those read by the Keycloak harness (deploy/keycloak) and the test suite.
_OTHER_VARIABLES = (
    "SETTINGS",
    "KEYCLOAK_HOME",
    "KEYCLOAK_JAVA_HOME",
    "KEYCLOAK_CACHE",
    "KEYCLOAK_START_TIMEOUT",
    "INIT_ADMIN_PASSWORD",
)
_OTHER_PREFIXES = ("TEST_",)


#: Shorter than this, a secret that guards what `listen` serves is named at `run`'s start:
#: wrong admin tokens and webhook signatures are refused, not rate-limited, so their length
#: is what keeps them from being guessed (`jit-bridge init` makes 43 random characters).
MIN_GUARD_SECRET_LENGTH = 24


def weak_secrets(settings: Settings) -> list[str]:
    """A warning for each secret guarding the bridge's endpoint that is short enough to
    guess (never the secret itself)."""
    found = []
    for name in ("admin_token", "webhook_secret", "webhook_secret_previous"):
        value = settings.secret(name)
        if value and len(value) < MIN_GUARD_SECRET_LENGTH:
            found.append(
                f"{name} is only {len(value)} characters long: anyone who reaches `listen` can "
                f"try to guess it; use at least {MIN_GUARD_SECRET_LENGTH} random characters "
                "(jit-bridge init makes them: python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
    return found


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """A warning for each `JIT_BRIDGE_*` variable that names no setting (a typo is otherwise
    silently ignored), with the nearest setting's variable when one is close."""
    environ = os.environ if environ is None else environ
    known = {f"{ENV_PREFIX}{n.upper()}" for n in Settings.model_fields}
    known |= {f"{ENV_PREFIX}{n.upper()}_FILE" for n in FILE_FIELDS}
    known |= {f"{ENV_PREFIX}{n}" for n in _OTHER_VARIABLES}
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        if name.removeprefix(ENV_PREFIX).startswith(_OTHER_PREFIXES):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"environment variable {name} is not a jit-bridge setting{hint}")
    return warnings


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read settings file: {exc.strerror}") from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not UTF-8 at byte {exc.start}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc


def _read_secret_files(values: dict[str, Any], path: Path, skip: set[str]) -> dict[str, Any]:
    """`<name>_file = "F"` in the TOML file reads that setting from F (relative to the TOML
    file's directory), so a settings file can name its secrets without holding them. Names
    in `skip` come from the environment, which wins: their files are not read."""
    found = dict(values)
    for name in FILE_FIELDS:
        key = f"{name}_file"
        if key not in found:
            continue
        where = found.pop(key)
        if name in found:
            raise SettingsError(f"{path}: give '{name}' or '{key}', not both")
        if name in skip:
            continue
        if not isinstance(where, str) or not where:
            raise SettingsError(f"{path}: '{key}' must be a file name")
        secret_path = Path(where) if Path(where).is_absolute() else path.parent / where
        try:
            found[name] = secret_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(
                f"{path}: '{key}': cannot read {secret_path}: {exc.strerror}"
            ) from exc
    return found


def _describe(exc: ValidationError, path: Path | None) -> str:
    lines = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        where = f"{ENV_PREFIX}{name.upper()} or {path}" if path else f"{ENV_PREFIX}{name.upper()}"
        message = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"setting '{name}' ({where}): {message}")
    return "\n".join(lines)
