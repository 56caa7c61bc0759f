"""`jit-bridge init`: from an existing Keycloak realm to a working bridge in one command.

It gathers what it needs (flags, `JIT_BRIDGE_*` environment, an earlier run's settings, else
questions on a terminal), checks the mapping and the target before touching anything, then
sets up Keycloak (keycloak_setup.py), writes the settings directory (files.py) or prints
environment variables, and runs the checks a person would. Every Keycloak change is recorded
(record.py) so `--undo` can take it back; a refused step stops and lists what was done.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from bridge.init import files
from bridge.init.admin_api import AdminApiError, AdminCredentials, KeycloakAdminApi
from bridge.init.arguments import ADMIN_PASSWORD_ENV
from bridge.init.keycloak_setup import (
    LISTENER_ID,
    PHASETWO_LISTENER_ID,
    EventsWay,
    KeycloakSetup,
    service_account_roles,
    undo,
)
from bridge.init.prompts import Prompter
from bridge.init.record import Record, RecordError
from bridge.mapping import Mapping
from bridge.settings import ENV_PREFIX, Settings, SettingsError

EXIT_OK, EXIT_FAILURE = 0, 1
PLAN_LINES = 15
#: Where the project ships service files, if this is a checkout of it.
_REPO = Path(__file__).resolve().parents[2]


def run_init(args: argparse.Namespace, settings: Settings) -> int:
    directory = Path(args.dir).expanduser().resolve()
    interactive = not args.non_interactive and sys.stdin.isatty()
    prompter = Prompter(interactive)
    try:
        if args.undo:
            return _undo(args, directory, prompter)
        return _init(args, settings, directory, prompter)
    except RecordError as exc:
        raise SettingsError(str(exc)) from None


# -- init ----------------------------------------------------------------------------------


def _init(args: argparse.Namespace, settings: Settings, directory: Path, prompter: Prompter) -> int:
    from bridge.mapping_file import load_mapping

    earlier = files.read_existing(directory)

    def earlier_secret(name: str) -> str | None:
        return files.read_secret(directory, name)

    keycloak_url = prompter.text(
        "Keycloak URL",
        args.keycloak_url or settings.keycloak_url or earlier.get("keycloak_url"),
        flag="--keycloak-url",
    )
    realm = prompter.text(
        "Realm",
        args.realm or settings.keycloak_realm or earlier.get("keycloak_realm"),
        flag="--realm",
    )
    admin_user = prompter.text(
        "Keycloak admin user", args.admin_user, flag="--admin-user", default="admin"
    )
    admin_password = prompter.secret(
        f"Password of {admin_user}",
        _read_file(args.admin_password_file, "--admin-password-file")
        or os.environ.get(ADMIN_PASSWORD_ENV),
        flag=f"--admin-password-file (or {ADMIN_PASSWORD_ENV})",
    )
    target = prompter.choice(
        "Target",
        args.target or os.environ.get(f"{ENV_PREFIX}TARGET") or earlier.get("target"),
        ["tines", "scim"],
        flag="--target",
        default="tines",
    )
    target_secret_name = "tines_api_key" if target == "tines" else "scim_token"
    target_url_name = f"{target}_url"
    target_url = prompter.text(
        "Tines tenant URL" if target == "tines" else "SCIM base URL",
        getattr(args, target_url_name)
        or getattr(settings, target_url_name)
        or earlier.get(target_url_name),
        flag=f"--{target}-url",
    )
    target_secret_flag = f"--{target_secret_name.replace('_', '-')}-file"
    target_secret = prompter.secret(
        "Tines API key (a tenant owner's)" if target == "tines" else "SCIM bearer token",
        _read_file(getattr(args, f"{target_secret_name}_file"), target_secret_flag)
        or settings.secret(target_secret_name)
        or earlier_secret(target_secret_name),
        flag=f"{target_secret_flag} (or {ENV_PREFIX}{target_secret_name.upper()})",
    )
    mapping_text = prompter.text(
        "Mapping file",
        _str(getattr(args, "mapping", None))
        or os.environ.get(f"{ENV_PREFIX}MAPPING_FILE")
        or earlier.get("mapping_file"),
        flag="--mapping",
        default="mappings/mapping.json" if Path("mappings/mapping.json").exists() else None,
    )
    mode = prompter.choice(
        "Mode",
        args.mode or os.environ.get(f"{ENV_PREFIX}MODE") or earlier.get("mode"),
        ["jit", "enhanced"],
        flag="--mode",
        default="jit",
    )
    prompter.check_complete()
    if not (keycloak_url and realm and admin_user and admin_password and target_url):
        raise SettingsError("jit-bridge init: a needed value is empty")
    if not (target_secret and mapping_text):
        raise SettingsError("jit-bridge init: a needed value is empty")
    keycloak_url = keycloak_url.rstrip("/")
    mapping_path = Path(mapping_text).expanduser().resolve()
    mapping = load_mapping(mapping_path)

    client_id = (
        args.client_id
        or settings.keycloak_client_id
        or earlier.get("keycloak_client_id", "jit-bridge")
    )
    listen = args.listen or earlier.get("listen") or "127.0.0.1:8080"
    webhook_secret, webhook_secret_generated = _webhook_secret(args, settings, earlier_secret)
    admin_token = settings.secret("admin_token") or earlier_secret("admin_token")
    admin_token_generated = admin_token is None
    admin_token = admin_token or secrets.token_urlsafe(32)
    verify_tls = not args.no_verify_tls and earlier.get("verify_tls", True) is not False

    values = kept_settings(earlier)
    values.update(
        mode=mode,
        mapping_file=str(mapping_path),
        keycloak_url=keycloak_url,
        keycloak_realm=realm,
        keycloak_client_id=client_id,
        target=target,
        listen=listen,
        database_url=args.database_url
        or earlier.get("database_url")
        or f"sqlite:///{directory / 'jit-bridge.db'}",
    )
    values[target_url_name] = target_url.rstrip("/")
    if not verify_tls:
        values["verify_tls"] = False
    secret_values: dict[str, str] = {
        target_secret_name: target_secret,
        "webhook_secret": webhook_secret,
        "admin_token": admin_token,
    }

    # Check what can be checked before anything changes.
    _say(f"checking the target at {target_url} ...")
    candidate = _settings({**values, "poll_events": False}, secret_values)
    problem = _target_reachable(candidate)
    if problem:
        _err(f"the target is not usable, nothing was changed: {problem}")
        return EXIT_FAILURE

    admin_realm = args.admin_realm or "master"
    credentials = AdminCredentials(admin_user, admin_password, realm=admin_realm)
    api = KeycloakAdminApi(
        keycloak_url, realm, credentials, verify_tls=verify_tls, timeout=settings.request_timeout
    )
    record = (
        Record.open(directory, keycloak_url, realm)
        if not args.dry_run
        else _dry_record(directory, keycloak_url, realm)
    )
    record.admin_user, record.admin_realm = admin_user, admin_realm
    setup = KeycloakSetup(api, record, dry_run=args.dry_run)
    try:
        api.login()
        api.check_realm()
        installed = api.event_listener_providers()
        way = _events_way(args.events, installed, prompter)
        https = settings.https or "tls_cert_file" in values
        webhook_url = args.webhook_url or _webhook_url(listen, https=https)
        if way == "phasetwo" and not args.webhook_url:
            webhook_url = (
                prompter.text(
                    "The bridge's webhook URL, as Keycloak reaches it",
                    None,
                    flag="--webhook-url",
                    default=webhook_url,
                )
                or webhook_url
            )
        _say(f"realm '{realm}' at {keycloak_url}: bridge hears of events by {_WAYS[way]}")
        setup.ensure_events(way)
        setup.ensure_client(client_id)
        setup.ensure_roles(client_id, service_account_roles(mapping, way))
        if way == "phasetwo":
            setup.ensure_phasetwo_webhook(webhook_url, webhook_secret)
    except AdminApiError as exc:
        return _refused(str(exc), record, directory, args.dry_run)
    values["poll_events"] = way == "poll"

    client_secret = setup.outcome.client_secret
    if client_secret is not None:
        secret_values["keycloak_client_secret"] = client_secret
    file_changes = _settings_files(
        directory, values, secret_values, record, dry_run=args.dry_run, print_env=args.print_env
    )

    if args.dry_run:
        would = setup.outcome.would + file_changes
        if would:
            _say("would change:")
            for line in would:
                _say(f"  - {line}")
        else:
            _say(f"nothing would change: realm '{realm}' and {directory} are already set up")
        return EXIT_OK

    if record.done_now:
        _say("changed:")
        for line in record.done_now:
            _say(f"  - {line}")
    else:
        _say(f"nothing to change: realm '{realm}' and {directory} are already set up")
    if args.print_env:
        _print_env(
            values,
            secret_values,
            shown={
                "webhook_secret": webhook_secret_generated,
                "admin_token": admin_token_generated,
                "keycloak_client_secret": setup.outcome.client_created,
            },
        )

    effective = _settings(values, secret_values)
    ok = _checks(effective, mapping, service_account_roles(mapping, way))
    _next_steps(directory, values, way, webhook_url, args.print_env)
    return EXIT_OK if ok else EXIT_FAILURE


_WAYS: dict[str, str] = {
    "listener": f"the '{LISTENER_ID}' listener",
    "phasetwo": "Phase Two's keycloak-events webhook",
    "poll": "polling the event store",
}


def _events_way(asked: str, installed: set[str], prompter: Prompter) -> EventsWay:
    has_listener = LISTENER_ID in installed
    has_phasetwo = PHASETWO_LISTENER_ID in installed
    if asked == "listener" and not has_listener:
        raise SettingsError(
            f"--events listener: this Keycloak has no '{LISTENER_ID}' event listener installed "
            "(docs/keycloak-listener.md); use --events poll, or install the jar first"
        )
    if asked == "phasetwo" and not has_phasetwo:
        raise SettingsError(
            f"--events phasetwo: this Keycloak has no Phase Two '{PHASETWO_LISTENER_ID}' "
            "listener installed"
        )
    if asked in ("listener", "phasetwo", "poll"):
        way: EventsWay = asked  # type: ignore[assignment]
        return way
    if has_listener:
        return "listener"
    if has_phasetwo and prompter.confirm(
        "Phase Two's keycloak-events is installed: have it send events to the bridge's "
        "webhook (else the bridge polls the event store)?",
        default=True,
    ):
        return "phasetwo"
    return "poll"


def _webhook_secret(
    args: argparse.Namespace, settings: Settings, earlier: Callable[[str], str | None]
) -> tuple[str, bool]:
    given = (
        _read_file(args.webhook_secret_file, "--webhook-secret-file")
        or settings.secret("webhook_secret")
        or earlier("webhook_secret")
    )
    if given:
        return given, False
    return secrets.token_urlsafe(32), True


#: `<name>_file` settings of an earlier bridge.toml that are files of their own, not the
#: secret files init writes anew: a second init keeps them (and so keeps serving HTTPS).
_KEPT_FILE_SETTINGS = ("mapping_file", "tls_cert_file", "tls_key_file")


def kept_settings(earlier: dict[str, Any]) -> dict[str, Any]:
    """What a new bridge.toml takes over from the earlier one: everything but the references
    to secret files, which init writes again."""
    return {k: v for k, v in earlier.items() if not k.endswith("_file") or k in _KEPT_FILE_SETTINGS}


def _webhook_url(listen: str, *, https: bool = False) -> str:
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):  # noqa: S104 (a listen address, read here)
        host = "127.0.0.1"
    return f"{'https' if https else 'http'}://{host}:{port}/webhooks/keycloak"


def _settings(values: dict[str, Any], secret_values: dict[str, str]) -> Settings:
    try:
        return Settings(**{**values, **secret_values})
    except Exception as exc:  # pydantic's ValidationError, with every problem
        raise SettingsError(f"the settings init would write are not valid: {exc}") from None


def _target_reachable(settings: Settings) -> str | None:
    from bridge.targets.base import TargetError
    from bridge.wiring import build_target

    try:
        build_target(settings, dry_run=True).read_state()
    except TargetError as exc:
        return f"{type(exc).__name__}: {exc}"
    except requests.RequestException as exc:
        return f"cannot reach it: {type(exc).__name__}"
    return None


def _dry_record(directory: Path, keycloak_url: str, realm: str) -> Record:
    try:
        return Record.open(directory, keycloak_url, realm)
    except RecordError:
        return Record(path=directory / "unused", keycloak_url=keycloak_url, realm=realm)


def _refused(message: str, record: Record, directory: Path, dry_run: bool) -> int:
    _err(message)
    if dry_run:
        return EXIT_FAILURE
    if record.done_now:
        _err(f"init stopped; it had already done this (recorded in {record.path}):")
        for line in record.done_now:
            _err(f"  - {line}")
        _err(f"take it back with: jit-bridge init --undo --dir {directory}")
    elif not record.empty:
        _err(f"init stopped; this run changed nothing (earlier runs are recorded in {record.path})")
    else:
        _err("init stopped; nothing was changed")
    return EXIT_FAILURE


def _settings_files(
    directory: Path,
    values: dict[str, Any],
    secret_values: dict[str, str],
    record: Record,
    *,
    dry_run: bool,
    print_env: bool,
) -> list[str]:
    """Write (or, dry, compare) bridge.toml and the secret files; returns what would change."""
    if print_env:
        return []
    toml_values = dict(values)
    for name in sorted(secret_values):
        toml_values[f"{name}_file"] = f"{files.SECRETS_DIR}/{name}"
    would: list[str] = []
    planned: list[tuple[Path, str, str | None]] = [
        (files.secret_path(directory, n), v + "\n", n) for n, v in secret_values.items()
    ]
    planned.append(
        (directory / files.SETTINGS_NAME, files.render_toml(toml_values, directory), None)
    )
    for path, text, secret_name in planned:
        name = str(path.relative_to(directory))
        if dry_run:
            if files.would_change(path, text):
                would.append(f"write {path}" + (" (0600)" if secret_name else ""))
            continue
        existed = path.exists()
        if files.write_private(path, text):
            did = f"{'updated' if existed else 'wrote'} {path} (mode 0600)"
            if existed:
                record.done_now.append(did)
            else:
                record.add_file(name, did)
    return would


def _print_env(
    values: dict[str, Any], secret_values: dict[str, str], shown: dict[str, bool]
) -> None:
    _say("\nenvironment for jit-bridge (instead of a settings file):")
    for key, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        print(f"{ENV_PREFIX}{key.upper()}={_shell_quote(text)}")
    for name, value in sorted(secret_values.items()):
        variable = f"{ENV_PREFIX}{name.upper()}"
        if shown.get(name):
            print(f"{variable}={_shell_quote(value)}")
        else:
            print(f"# {variable}: the value you gave init (not shown)")


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


# -- checks --------------------------------------------------------------------------------


def _checks(settings: Settings, mapping: Mapping, roles: list[str]) -> bool:
    _say("checks:")
    ok = True
    problem = _service_account_login(settings, roles)
    if problem:
        _say(f"  FAIL Keycloak login as the service account: {problem}")
        ok = False
    else:
        _say(f"  ok   Keycloak login as the service account ({', '.join(roles)})")

    from bridge.validation import TargetCheck, check_against_target
    from bridge.wiring import build_target

    try:
        check = check_against_target(mapping, build_target(settings, dry_run=True))
    except Exception as exc:  # a target failure is reported, not raised
        check = TargetCheck(errors=[f"{type(exc).__name__}: {exc}"])
    if check.errors:
        ok = False
        _say(f"  FAIL validate --against-target: {len(check.errors)} problem(s)")
        for line in check.errors:
            _say(f"       {settings.mapping_file}: {line}")
    else:
        _say("  ok   validate --against-target: the target can hold what the mapping grants")
    for line in check.notes:
        _say(f"       note: {line}")
    if ok:
        problem, summary = _plan_summary(settings, mapping)
        if problem:
            ok = False
            _say(f"  FAIL plan --all: {problem}")
        else:
            _say("  ok   plan --all:")
            for line in summary.splitlines():
                _say(f"       {line}")
    return ok


def _service_account_login(settings: Settings, roles: list[str]) -> str | None:
    """Log in as the bridge's service account and read what its roles allow."""
    url = settings.keycloak_url or ""
    realm = quote(settings.keycloak_realm or "", safe="")
    verify, timeout = settings.verify_tls, settings.request_timeout
    try:
        answer = requests.post(
            f"{url}/realms/{realm}/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": settings.keycloak_client_id,
                "client_secret": settings.secret("keycloak_client_secret"),
            },
            verify=verify,
            timeout=timeout,
        )
        if answer.status_code != 200:
            return f"the token request answered HTTP {answer.status_code}"
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        reads = [("users", "reading users")]
        if "view-events" in roles:
            reads.append(("events", "reading stored events"))
        for path, what in reads:
            answer = requests.get(
                f"{url}/admin/realms/{realm}/{path}",
                params={"max": 1},
                headers=headers,
                verify=verify,
                timeout=timeout,
            )
            if answer.status_code != 200:
                return f"{what} answered HTTP {answer.status_code}"
    except requests.RequestException as exc:
        return f"cannot reach Keycloak: {type(exc).__name__}"
    return None


def _plan_summary(settings: Settings, mapping: Mapping) -> tuple[str | None, str]:
    """(what stopped the plan, or None; the plan for people, cut to PLAN_LINES)."""
    from bridge.cli import render_plan
    from bridge.wiring import build_reconciler

    try:
        reconciler = build_reconciler(settings, lambda: mapping, dry_run=True)
        plan = reconciler.plan_all("reconcile", None)[0]
    except Exception as exc:  # reported as a failed check
        return f"{type(exc).__name__}: {exc}", ""
    lines = render_plan(plan).splitlines()
    if len(lines) > PLAN_LINES:
        hidden = len(lines) - PLAN_LINES
        lines = [*lines[:PLAN_LINES], f"… {hidden} more line(s): jit-bridge plan --all"]
    return None, "\n".join(lines)


def _next_steps(
    directory: Path, values: dict[str, Any], way: EventsWay, webhook_url: str, print_env: bool
) -> None:
    settings_flag = "" if print_env else f" --settings {directory / files.SETTINGS_NAME}"
    _say("next:")
    if way == "listener":
        _say(
            f"  - Keycloak's '{LISTENER_ID}' listener posts where its server options say; they"
            " must be\n"
            f"      KC_SPI_EVENTS_LISTENER__JIT_BRIDGE__URL={webhook_url}\n"
            "      KC_SPI_EVENTS_LISTENER__JIT_BRIDGE__SECRET=<the webhook secret"
            + ("" if print_env else f", {files.secret_path(directory, 'webhook_secret')}")
            + ">\n      (docs/keycloak-listener.md; restart Keycloak after changing them)"
        )
        _say(
            "  - the listener's jar ships with jit-bridge: jit-bridge keycloak-provider install"
            " <Keycloak's providers/ folder>"
        )
    _say(f"  - start the bridge: jit-bridge{settings_flag} run")
    if values.get("mode") == "jit":
        _say(f"  - then log in as a test user and read: jit-bridge{settings_flag} audit")
    for hint, path in (
        ("systemd unit", _REPO / "deploy" / "systemd"),
        ("Helm chart", _REPO / "deploy" / "helm"),
    ):
        if path.exists():
            _say(f"  - to run it as a service, see the {hint} in {path}")


# -- undo ----------------------------------------------------------------------------------


def _undo(args: argparse.Namespace, directory: Path, prompter: Prompter) -> int:
    record = Record.load(directory)
    admin_user = prompter.text(
        "Keycloak admin user",
        args.admin_user or record.admin_user,
        flag="--admin-user",
        default="admin",
    )
    admin_password = prompter.secret(
        f"Password of {admin_user}",
        _read_file(args.admin_password_file, "--admin-password-file")
        or os.environ.get(ADMIN_PASSWORD_ENV),
        flag=f"--admin-password-file (or {ADMIN_PASSWORD_ENV})",
    )
    prompter.check_complete()
    if not (admin_user and admin_password):
        raise SettingsError("jit-bridge init --undo: a needed value is empty")
    api = KeycloakAdminApi(
        record.keycloak_url,
        record.realm,
        AdminCredentials(
            admin_user, admin_password, realm=args.admin_realm or record.admin_realm or "master"
        ),
        verify_tls=not args.no_verify_tls,
    )
    try:
        said = undo(api, record, dry_run=args.dry_run)
    except AdminApiError as exc:
        _err(str(exc))
        _err(f"undo stopped; what is left to undo stays recorded in {record.path}")
        return EXIT_FAILURE
    removed = []
    for name in list(reversed(record.files)):
        path = directory / name
        if path.exists():
            removed.append(f"remove {path}")
            if not args.dry_run:
                path.unlink()
        if not args.dry_run:
            record.files.remove(name)
            record.save()
    verb = "would" if args.dry_run else "undone"
    lines = said + removed
    if not lines:
        _say("nothing to undo")
    else:
        _say(f"{verb}:")
        for line in lines:
            _say(f"  - {line}")
    if not args.dry_run:
        record.path.unlink(missing_ok=True)
        for leftover in (directory / files.SECRETS_DIR, directory):
            with contextlib.suppress(OSError):
                leftover.rmdir()  # only when empty
        if directory.exists():
            _say(f"left {directory} in place: it holds files init did not write")
    return EXIT_OK


# -- small helpers -------------------------------------------------------------------------


def _read_file(path: Path | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        text = (sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")).strip()
    except OSError as exc:
        raise SettingsError(f"{flag}: cannot read {path}: {exc.strerror}") from exc
    if not text:
        raise SettingsError(f"{flag}: {path} is empty")
    return text


def _str(value: Any) -> str | None:
    return str(value) if value else None


def _say(text: str) -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(f"jit-bridge: {text}", file=sys.stderr, flush=True)
