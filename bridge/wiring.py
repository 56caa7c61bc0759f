"""Builds the edges (source, target, store, mapping) from settings, in one place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.mapping import Mapping
from bridge.mapping_file import load_mapping
from bridge.model import IdpSnapshot, TargetState
from bridge.settings import Settings, SettingsError
from bridge.sources.base import IdentitySource, SnapshotSource
from bridge.targets.base import Target

if TYPE_CHECKING:  # the store (SQLAlchemy, Alembic) is loaded only by commands that open it
    from bridge.progress import RunProgress
    from bridge.reconcile import Reconciler
    from bridge.store import Store


def mapping_path(settings: Settings, override: Path | None) -> Path:
    return override or settings.mapping_file


def read_mapping(settings: Settings, override: Path | None = None) -> Mapping:
    return load_mapping(mapping_path(settings, override))


def mapping_in_force(
    settings: Settings, override: Path | None, store: Store | None
) -> Callable[[], Mapping]:
    """What a command plans with: `--mapping F` alone (offline, what-if), or, with a store,
    the installation's mapping in force (the file recorded first if it changed)."""
    if override is not None or store is None:
        mapping = read_mapping(settings, override)
        return lambda: mapping
    from bridge.mapping_versions import MappingInForce

    return MappingInForce(store, settings.mapping_file).get


def build_source(
    settings: Settings,
    idp_snapshot: Path | None = None,
    *,
    observe: Callable[[int | None], None] | None = None,
) -> IdentitySource:
    """`observe`: told the status code of every read of Keycloak (None: no answer)."""
    if idp_snapshot is not None:
        return SnapshotSource(read_idp_snapshot(idp_snapshot))
    missing = [
        name
        for name in (
            "keycloak_url",
            "keycloak_realm",
            "keycloak_client_id",
            "keycloak_client_secret",
        )
        if getattr(settings, name) is None
    ]
    if missing:
        raise SettingsError(
            "reading Keycloak needs "
            + ", ".join(f"'{m}' (JIT_BRIDGE_{m.upper()})" for m in missing)
            + "; or pass --idp-snapshot FILE"
        )
    from bridge.sources.keycloak import KeycloakSource

    return KeycloakSource(
        settings.keycloak_url or "",
        settings.keycloak_realm or "",
        settings.keycloak_client_id or "",
        settings.secret("keycloak_client_secret") or "",
        verify_tls=settings.verify_tls,
        timeout=settings.request_timeout,
        observe=observe,
    )


def build_target(
    settings: Settings,
    *,
    dry_run: bool = False,
    observe: Callable[[str, int | None], None] | None = None,
) -> Target:
    """`observe`: told the method and status code of every request to the target (None: no
    answer)."""
    dry = dry_run or settings.dry_run
    if settings.target == "tines":
        if not settings.tines_url or not settings.secret("tines_api_key"):
            raise SettingsError(
                "target 'tines' needs 'tines_url' (JIT_BRIDGE_TINES_URL) and 'tines_api_key' "
                "(JIT_BRIDGE_TINES_API_KEY or JIT_BRIDGE_TINES_API_KEY_FILE)"
            )
        from bridge.targets.tines import TinesTarget

        return TinesTarget(
            settings.tines_url,
            settings.secret("tines_api_key") or "",
            dry_run=dry,
            verify_tls=settings.verify_tls,
            timeout=settings.request_timeout,
            user_lookup=settings.tines_user_lookup,
            observe=observe,
        )
    if not settings.scim_url or not settings.secret("scim_token"):
        raise SettingsError(
            "target 'scim' needs 'scim_url' (JIT_BRIDGE_SCIM_URL) and 'scim_token' "
            "(JIT_BRIDGE_SCIM_TOKEN or JIT_BRIDGE_SCIM_TOKEN_FILE)"
        )
    from bridge.targets.scim import ScimTarget

    return ScimTarget(
        settings.scim_url,
        settings.secret("scim_token") or "",
        group_template=settings.scim_group_template,
        case_group_template=settings.scim_case_group_template,
        owner_group=settings.scim_owner_group,
        create_groups=settings.scim_create_groups,
        patch_max_members=settings.scim_patch_max_members,
        dry_run=dry,
        verify_tls=settings.verify_tls,
        timeout=settings.request_timeout,
        observe=observe,
    )


def build_reconciler(
    settings: Settings,
    mapping: Callable[[], Mapping],
    *,
    source: IdentitySource | None = None,
    target: Target | None = None,
    store: Store | None = None,
    dry_run: bool = False,
    idp_snapshot: Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: RunProgress | None = None,
) -> Reconciler:
    """The one way a Reconciler is made, for the CLI and the service alike: the policy from
    the settings; a dry run when asked for or set (then a target built here refuses writes);
    the source and target built from the settings unless given. Without a store nothing is
    recorded (plans)."""
    from bridge.reconcile import Reconciler

    dry = dry_run or settings.dry_run
    return Reconciler(
        policy=settings.policy,
        mapping=mapping,
        source=source if source is not None else build_source(settings, idp_snapshot),
        target=target if target is not None else build_target(settings, dry_run=dry),
        store=store,
        dry_run=dry,
        should_stop=should_stop,
        write_concurrency=settings.write_concurrency,
        progress=progress,
    )


def open_store(settings: Settings) -> Store:
    from bridge.store import Store

    store = Store.open(settings.database_url)
    store.upgrade()
    return store


class SnapshotError(Exception):
    """A snapshot file is unreadable or not in the format of docs/design.md, Formats."""


def read_idp_snapshot(path: Path) -> IdpSnapshot:
    return IdpSnapshot.model_validate_json(_read(path, "IdP snapshot"))


def read_target_snapshot(path: Path) -> TargetState:
    return TargetState.model_validate_json(_read(path, "target snapshot"))


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read {what}: {exc.strerror}") from exc
