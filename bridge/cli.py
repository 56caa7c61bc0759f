"""The `jit-bridge` command line (docs/design.md, Command line).

Exit codes: 0 success; 1 failure; 2 bad usage, settings or mapping; 3 removals held by the
safety budget; `plan --detailed-exitcode` exits 4 when there are changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.progress import RunProgress, TerminalProgress

# Only what parsing the command line needs is imported here: each command imports what it
# uses, so `--help` or an offline `plan` never loads the web, database or HTTP stacks.
if TYPE_CHECKING:
    from pydantic import ValidationError

    from bridge.mapping import Mapping
    from bridge.model import Plan, Trigger
    from bridge.overview import QueueView, RunView, StatusView
    from bridge.settings import Settings
    from bridge.store import QueueEntry

log = logging.getLogger("bridge.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_HELD, EXIT_CHANGES = 0, 1, 2, 3, 4


class UsageError(Exception):
    """Bad command-line usage; exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    from pydantic import ValidationError

    from bridge.logs import configure_logging
    from bridge.mapping_file import MappingError
    from bridge.settings import SettingsError, load_settings, unknown_environment, weak_secrets
    from bridge.sources.base import SourceError
    from bridge.targets.base import TargetError
    from bridge.wiring import SnapshotError

    try:
        settings = load_settings(args.settings)
        # The service logs what it does; another command prints it, and logs only trouble.
        quiet = args.handler is not cmd_run and settings.log_level == "INFO"
        configure_logging("WARNING" if quiet else settings.log_level, settings.log_format)
        for warning in unknown_environment():
            log.warning("%s", warning)
        if args.handler is cmd_run:
            for warning in weak_secrets(settings):
                log.warning("%s", warning)
        code: int = args.handler(args, settings)
        return code
    except (SettingsError, MappingError, UsageError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except SnapshotError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ValidationError as exc:
        _err(_describe_validation(exc))
        return EXIT_USAGE
    except (SourceError, TargetError) as exc:
        _err(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not isinstance(exc, _store_errors()):
            raise
        # The driver's own words, first line only: never the URL (it may hold a password).
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _err(f"the state store (database_url) is unusable: {cause}")
        return EXIT_FAILURE


def _store_errors() -> tuple[type[Exception], ...]:
    """The state store's errors and SQLAlchemy's, if they were imported: an exception of a
    class can only exist once its module is loaded, and a command that never opened the store
    should not load SQLAlchemy just to name its errors."""
    found: list[type[Exception]] = []
    store = sys.modules.get("bridge.store.errors")
    if store is not None:
        found.append(store.StoreError)
    sqlalchemy = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy is not None:
        found.append(sqlalchemy.SQLAlchemyError)
    return tuple(found)


# -- commands ----------------------------------------------------------------------------


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.masked(), indent=2, sort_keys=True, default=str))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.mapping_file import load_mapping
    from bridge.validation import check_against_target
    from bridge.wiring import build_target

    mapping = load_mapping(args.mapping_path)
    print(
        f"{args.mapping_path}: valid ({len(mapping.entries)} mapping entries, "
        f"{len(mapping.tenant_owner_groups)} owner groups, "
        f"{len(mapping.tenant_permissions)} permission grants)"
    )
    if not args.against_target:
        return EXIT_OK
    target = build_target(settings, dry_run=True)
    check = check_against_target(mapping, target)
    for note in check.notes:
        print(f"{args.mapping_path}: note: {note}")
    for problem in check.errors:
        _err(f"{args.mapping_path}: {problem}")
    if check.errors:
        return EXIT_USAGE
    print(f"the {target.name} target can hold everything the mapping grants")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    trigger = _trigger(args)
    plan = _make_plan(args, settings, trigger)
    if args.json:
        print(plan.to_json())
    else:
        print(render_plan(plan, verbose=args.verbose))
    if args.detailed_exitcode and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.keys import UserRef
    from bridge.wiring import build_reconciler, mapping_in_force, open_store

    trigger = _trigger(args)
    store = open_store(settings)
    terminal = TerminalProgress()
    reconciler = build_reconciler(
        settings,
        mapping_in_force(settings, args.mapping, store),
        store=store,
        dry_run=args.dry_run,
        idp_snapshot=args.idp_snapshot,
        progress=RunProgress(watchers=[terminal]),
    )
    try:
        if args.all:
            report = reconciler.sync_all(
                trigger, triggered_by=[], requested_by="cli", allow_removals=args.allow_removals
            )
        else:
            report = reconciler.sync_user(
                UserRef(email=args.user), trigger, triggered_by=[], requested_by="cli"
            )
    finally:
        terminal.close()
        store.close()
    print(render_plan(report.plan))
    print(_render_outcome(report.run_id, report.status, report.summary()))
    for selector, reason in sorted(report.unreadable_groups.items()):
        _err(f"group '{selector}' could not be read, nothing it grants was removed: {reason}")
    if report.error:
        _err(report.error)
    return report.exit_code


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.keys import UserRef
    from bridge.resolve import explain
    from bridge.wiring import build_source

    mapping = _mapping_for(args, settings, offline=args.idp_snapshot is not None)
    source = build_source(settings, args.idp_snapshot)
    identity = source.read_user(UserRef(email=args.user), mapping)
    if not identity.users:
        _err(f"{args.user}: no such user in the identity provider")
        return EXIT_FAILURE
    for user in identity.users:
        email = (user.email or user.username).lower()
        print(f"{email} (groups: {', '.join(user.groups) or 'none'})")
        for line in explain(mapping, settings.policy, user):
            print(f"  {line}")
    return EXIT_OK


def cmd_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.model import IdpSnapshot, TargetState
    from bridge.wiring import build_source, build_target

    if args.side == "idp":
        mapping = _mapping_for(args, settings, offline=False)
        identity = build_source(settings).read_all(mapping)
        if identity.unreadable_groups:
            for selector, reason in sorted(identity.unreadable_groups.items()):
                _err(f"group '{selector}' could not be read: {reason}")
            return EXIT_FAILURE
        text = IdpSnapshot(users=identity.users).model_dump_json(indent=2)
    else:
        state: TargetState = build_target(settings, dry_run=True).read_state()
        text = state.model_dump_json(indent=2)
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.overview import audit_page
    from bridge.wiring import open_store

    since = _parse_time(args.since) if args.since else None
    store = open_store(settings)
    try:
        page = audit_page(store, limit=args.limit, email=args.user, run_id=args.run, since=since)
    finally:
        store.close()
    if page.more:
        _err(f"showing the newest {args.limit} records; older ones exist (--limit N for more)")
    if args.json:
        print(json.dumps([r.to_json() for r in page.records], indent=2))
        return EXIT_OK
    for r in page.records:
        where = f" {r.team}" + (f"/{r.case_group}" if r.case_group else "") if r.team else ""
        change = _render_change(r.before, r.after)
        error = f" error: {r.error}" if r.error else ""
        outcome = "DRY RUN" if r.outcome == "dry_run" else r.outcome
        print(
            f"{_fmt_time(r.time)} {outcome:8} {r.email} {r.op}{where}{change} "
            f"[run {r.run_id}; {r.trigger}]{error}"
        )
    if not page.records:
        print("no audit records")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.overview import check_dependencies, status_view
    from bridge.wiring import build_source, build_target, open_store

    source = build_source(settings)
    target = build_target(settings, dry_run=True)
    checks = {"target": target.ping}
    ping = getattr(source, "ping", None)
    if callable(ping):
        checks = {"keycloak": ping, **checks}
    store = open_store(settings)
    try:
        current = store.current_mapping()
        health = check_dependencies(store, checks)
        view = status_view(store, health, mapping_version=current[0] if current else None)
    finally:
        store.close()
        target.close()
        source.close()
    if args.json:
        print(json.dumps(view.to_json(), indent=2))
        return EXIT_OK if view.healthy else EXIT_FAILURE
    for line in render_status(view):
        print(line)
    return EXIT_OK if view.healthy else EXIT_FAILURE


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.overview import recent_runs
    from bridge.wiring import open_store

    store = open_store(settings)
    try:
        runs = recent_runs(store, held=args.held, limit=args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.to_json() for r in runs], indent=2))
        return EXIT_OK
    for run in runs:
        print(render_run(run))
    if not runs:
        print("no held runs" if args.held else "no runs yet")
    return EXIT_OK


def cmd_queue(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.overview import queue_view
    from bridge.wiring import open_store

    store = open_store(settings)
    try:
        view = queue_view(store)
    finally:
        store.close()
    if args.json:
        print(json.dumps(view.to_json(), indent=2))
        return EXIT_OK
    print(_render_queue_counts(view))
    now = datetime.now(UTC).timestamp()
    for entry in view.entries:
        print("  " + _render_queue_entry(entry, now))
    return EXIT_OK


def cmd_approve(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.store.errors import RunAlreadyApprovedError, RunNotFoundError, RunNotHeldError
    from bridge.wiring import build_reconciler, mapping_in_force, open_store

    store = open_store(settings)
    try:
        reconciler = build_reconciler(
            settings,
            mapping_in_force(settings, args.mapping, store),
            store=store,
            idp_snapshot=args.idp_snapshot,
        )
        report = reconciler.approve(args.run_id, approved_by="cli")
    except (LookupError, RunNotFoundError, RunNotHeldError, RunAlreadyApprovedError) as exc:
        raise UsageError(str(exc)) from exc
    finally:
        store.close()
    print(render_plan(report.plan))
    print(_render_outcome(report.run_id, report.status, report.summary()))
    return report.exit_code


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.wiring import open_store

    open_store(settings).close()
    print("database schema is up to date")
    return EXIT_OK


def cmd_db_backup(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.store.backup import BackupError, backup_sqlite

    try:
        done = backup_sqlite(settings.database_url, args.file)
    except BackupError as exc:
        _err(str(exc))
        return EXIT_FAILURE
    revision = done.revision or "none: no jit-bridge schema in it"
    print(f"wrote {done.path} ({done.size} bytes, schema revision {revision})")
    return EXIT_OK


def cmd_example_mapping(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.packaged import EXAMPLE_MAPPING

    return _write_output(EXAMPLE_MAPPING.read_text(encoding="utf-8"), args.output)


def cmd_mapping_schema(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.packaged import MAPPING_SCHEMA

    return _write_output(MAPPING_SCHEMA.read_text(encoding="utf-8"), args.output)


def cmd_provider_path(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.packaged import PackagedFileError, listener_jar

    try:
        print(listener_jar())
    except PackagedFileError as exc:
        _err(str(exc))
        return EXIT_FAILURE
    return EXIT_OK


def cmd_provider_install(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.packaged import (
        PackagedFileError,
        ProvidersDirError,
        install_listener,
        listener_options_text,
    )

    try:
        installed, replaced = install_listener(args.providers_dir)
    except ProvidersDirError as exc:
        raise UsageError(str(exc)) from exc
    except PackagedFileError as exc:
        _err(str(exc))
        return EXIT_FAILURE
    size = installed.stat().st_size
    note = ", replacing a different jar of that name" if replaced else ""
    print(f"copied the jit-bridge Keycloak listener to {installed} ({size} bytes{note})")
    print(listener_options_text())
    return EXIT_OK


def _write_output(text: str, output: str) -> int:
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
        print(f"wrote {output}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.service import ListenError, run_service
    from bridge.tls import TlsError

    try:
        return run_service(settings, mapping_override=args.mapping)
    except TlsError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ListenError as exc:
        _err(str(exc))
        return EXIT_FAILURE


# -- plan helpers ------------------------------------------------------------------------


def _mapping_for(args: argparse.Namespace, settings: Settings, *, offline: bool) -> Mapping:
    """`--mapping F` or, offline (snapshots), the mapping file; live, the installation's
    mapping in force from the state store, as the service and `sync` use it."""
    from bridge.wiring import mapping_in_force, open_store, read_mapping

    if args.mapping is not None or offline:
        return read_mapping(settings, args.mapping)
    store = open_store(settings)
    try:
        return mapping_in_force(settings, None, store)()
    finally:
        store.close()


def _make_plan(args: argparse.Namespace, settings: Settings, trigger: Trigger) -> Plan:
    from bridge.gcpause import paused_gc

    with paused_gc():  # reading the snapshots and planning build one large object graph
        return _plan_from(args, settings, trigger)


def _plan_from(args: argparse.Namespace, settings: Settings, trigger: Trigger) -> Plan:
    from bridge.keys import UserRef
    from bridge.sources.base import SnapshotSource
    from bridge.targets.snapshot import SnapshotTarget
    from bridge.wiring import (
        build_reconciler,
        build_source,
        build_target,
        read_idp_snapshot,
        read_target_snapshot,
    )

    offline = args.idp_snapshot is not None or args.target_snapshot is not None
    mapping = _mapping_for(args, settings, offline=offline)
    if args.target_snapshot is not None:
        if args.idp_snapshot is None:
            raise UsageError("--target-snapshot needs --idp-snapshot as well")
        source: Any = SnapshotSource(read_idp_snapshot(args.idp_snapshot))
        target: Any = SnapshotTarget(read_target_snapshot(args.target_snapshot))
    else:
        source = build_source(settings, args.idp_snapshot)
        target = build_target(settings, dry_run=True)
    terminal = TerminalProgress()
    reconciler = build_reconciler(
        settings,
        lambda: mapping,
        source=source,
        target=target,
        progress=RunProgress(watchers=[terminal]),
    )
    try:
        if args.all:
            return reconciler.plan_all(trigger, args.allow_removals)[0]
        return reconciler.plan_user(UserRef(email=args.user), trigger)[0]
    finally:
        terminal.close()


def render_plan(plan: Plan, *, verbose: bool = False) -> str:
    """A plan for people: one line per operation, then what was held or skipped. Users left
    for their first login are one line (how many) unless `verbose`."""
    from bridge.planner import NOT_YET_CREATED

    header = f"mode {plan.mode}, trigger {plan.trigger}: {len(plan.operations)} operation(s)"
    if plan.held:
        header += f", {len(plan.held)} held for approval"
    lines = [header]
    for op in plan.operations:
        lines.append("  + " + _describe_op(op.model_dump(by_alias=True)))
    for op in plan.held:
        lines.append("  ! held: " + _describe_op(op.model_dump(by_alias=True)))
    waiting = [s for s in plan.skipped if s.reason == NOT_YET_CREATED]
    for skipped in plan.skipped:
        if verbose or skipped.reason != NOT_YET_CREATED:
            lines.append(f"  - skipped {skipped.email}: {skipped.reason}")
    if waiting and not verbose:
        lines.append(
            f"  - {len(waiting)} user(s) not in the target yet, created at their first login "
            "(--verbose lists them)"
        )
    for orphan in plan.orphans:
        lines.append(f"  ? orphan {orphan}: no Keycloak user has this account's email")
    if not plan.has_changes:
        lines.append("  no changes")
    return "\n".join(lines)


def render_run(run: RunView) -> str:
    """One line per run: when, what, for whom, how it ended, its counts and duration."""
    took = f"{run.duration_seconds:.2f} s" if run.duration_seconds is not None else "running"
    line = (
        f"{run.id} {_fmt_time(run.started_at)} {run.trigger:9} {run.who} {run.status}: "
        f"{run.applied} applied, {run.failed} failed, {run.held} held, {run.skipped} skipped, "
        f"{took}"
    )
    if run.status == "held":
        line += f"\n    approve with: jit-bridge approve {run.id}"
    elif run.error:
        line += f"\n    error: {run.error}"
    return line


def render_status(view: StatusView) -> list[str]:
    failing = {k: v for k, v in view.health.items() if v != "ok"}
    names = ", ".join(view.health)
    lines = [f"health: ok ({names})" if not failing else "health: FAILING"]
    lines += [f"  {name}: {problem}" for name, problem in failing.items()]
    lines.append(_render_queue_counts(view.queue))
    last = view.last_full_reconcile
    if last is None:
        lines.append("last full reconcile: none completed yet")
    else:
        lines.append(
            f"last full reconcile: {_fmt_time(last.finished_at or last.started_at)} "
            f"(run {last.id}, {last.status})"
        )
    lines.append(f"held runs: {len(view.held_runs)}")
    lines += [f"  {render_run(run)}" for run in view.held_runs]
    orphans = "not counted yet (by a full reconcile)" if view.orphans is None else view.orphans
    lines.append(f"orphans: {orphans}")
    lines.append(f"mapping version: {view.mapping_version or 'none stored yet'}")
    return lines


def _render_queue_counts(view: QueueView) -> str:
    oldest = view.oldest_waiting_seconds
    age = f", oldest waiting {_fmt_age(oldest)}" if oldest is not None else ""
    return f"queue: {view.waiting} waiting{age}, {view.in_progress} in progress"


def _render_queue_entry(entry: QueueEntry, now: float) -> str:
    age = _fmt_age(now - entry.enqueued_at) if entry.enqueued_at else "?"
    if entry.claimed_by:
        state = f"in progress ({entry.claimed_by})"
        if entry.rerun_pending:
            state += ", runs again after"
    elif entry.not_before and entry.not_before > now:
        state = f"retry in {_fmt_age(entry.not_before - now)} after {entry.attempts} attempt(s)"
    else:
        state = "waiting"
    error = f": {entry.last_error}" if entry.last_error else ""
    return f"{entry.key} {entry.trigger or '-'} {state}, queued {age} ago{error}"


def _fmt_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _describe_op(op: dict[str, Any]) -> str:
    kind = op["op"]
    where = ""
    if "team" in op:
        where = f" {op['team']}" + (f" / {op['case_group']}" if op.get("case_group") else "")
    detail = {
        "add_membership": lambda: f" as {op['role']}",
        "remove_membership": lambda: f" (was {op['role']})",
        "change_role": lambda: f" {op['from']} → {op['to']}",
        "set_tenant_owner": lambda: f" = {op['value']}",
        "set_tenant_permissions": lambda: f" add {op['add']} remove {op['remove']}",
        "update_profile": lambda: f" {op['changes']}",
        "change_email": lambda: f" → {op['to']}",
    }.get(kind, lambda: "")()
    because = f"  ({'; '.join(op['because'])})" if op.get("because") else ""
    return f"{kind} {op['email']}{where}{detail}{because}"


def _render_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """`EDITOR → TEAM_ADMIN`, `→ EDITOR`, `tenant_owner: True → False`: short, for people."""
    if not before and not after:
        return ""
    if set(before) <= {"role"} and set(after) <= {"role"}:
        return f" {before.get('role', '')} → {after.get('role', '(none)')}".replace("  ", " ")
    parts = []
    for key in sorted(set(before) | set(after)):
        if key in before and key in after:
            parts.append(f"{key}: {before[key]} → {after[key]}")
        elif key in after:
            parts.append(f"{key}: {after[key]}")
        else:
            parts.append(f"{key}: {before[key]} (removed)")
    return " " + ", ".join(parts)


def _render_outcome(run_id: str | None, status: str, summary: dict[str, Any]) -> str:
    outcomes = ", ".join(f"{v} {k}" for k, v in sorted(summary["outcomes"].items())) or "nothing"
    text = f"run {run_id}: {status} ({outcomes})"
    if status == "held":
        text += f"\nremovals held by the safety budget; review, then: jit-bridge approve {run_id}"
    return text


def _trigger(args: argparse.Namespace) -> Trigger:
    if args.trigger:
        trigger: Trigger = args.trigger
        return trigger
    return "reconcile" if args.all else "login"


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"--since: '{text}' is not an ISO time (e.g. 2026-11-28T10:00)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fmt_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    return str(value)


def _describe_validation(exc: ValidationError) -> str:
    lines = [f"{exc.title}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        pointer = "/" + "/".join(str(p) for p in err["loc"])
        lines.append(f"  {pointer}: {err['msg']}")
    return "\n".join(lines)


def _err(message: str) -> None:
    print(f"jit-bridge: {message}", file=sys.stderr)


# -- argument parsing --------------------------------------------------------------------


SETTINGS_HELP = (
    "TOML settings file; its keys are the setting names, overridden by JIT_BRIDGE_<NAME> "
    "environment variables (default: $JIT_BRIDGE_SETTINGS, if set)"
)
MAPPING_HELP = "mapping JSON file to use instead of the mapping_file setting"
EPILOG = (
    "exit codes: 0 success; 1 failure; 2 bad usage, settings or mapping; 3 removals held "
    "by the safety budget (approve them with `jit-bridge approve RUN_ID`); 4 `plan "
    "--detailed-exitcode` found changes"
)


def _parser() -> argparse.ArgumentParser:
    from bridge import __version__

    # --settings and --mapping go before or after the command. The subcommands' copies
    # default to SUPPRESS so that they never overwrite a value given before the command.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--settings", type=Path, metavar="FILE", help=SETTINGS_HELP)
    common.add_argument("--mapping", type=Path, metavar="FILE", help=MAPPING_HELP)

    parser = argparse.ArgumentParser(
        prog="jit-bridge",
        description="Keycloak groups to application teams and roles.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"jit-bridge {__version__}")
    parser.add_argument("--settings", type=Path, metavar="FILE", help=SETTINGS_HELP)
    parser.add_argument("--mapping", type=Path, metavar="FILE", help=MAPPING_HELP)
    sub = parser.add_subparsers(title="commands")

    def add(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, parents=[common], help=help_text, description=help_text, epilog=EPILOG
        )
        p.set_defaults(handler=handler)
        return p

    def idp_snapshot(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--idp-snapshot",
            type=Path,
            metavar="FILE",
            help="read the identity side from this snapshot file instead of Keycloak",
        )

    def as_json(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--json", action="store_true", help=f"print {what} as JSON")

    add("run", cmd_run, "run the service: webhook, admin API, poller, scheduler, workers")
    add("config", cmd_config, "print the effective settings, secrets masked")

    p = add("validate", cmd_validate, "check a mapping file")
    p.add_argument("mapping_path", type=Path, metavar="MAPPING", help="the mapping JSON to check")
    p.add_argument(
        "--against-target",
        action="store_true",
        help="also check that the target can hold what it grants: its teams and case groups "
        "exist (or will be created), and it has the tenant permissions and owners named",
    )

    for name, handler, help_text in (
        ("plan", cmd_plan, "show what a sync would do"),
        ("sync", cmd_sync, "apply: make the target match the mapping"),
    ):
        p = add(name, handler, help_text)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", metavar="EMAIL", help="one user, by email")
        who.add_argument("--all", action="store_true", help="everyone (a full reconcile)")
        p.add_argument(
            "--trigger",
            choices=["login", "reconcile"],
            help="plan as for a login (may create the user) or a reconcile; default: login "
            "with --user, reconcile with --all",
        )
        idp_snapshot(p)
        p.add_argument(
            "--allow-removals",
            type=int,
            metavar="N",
            help="accept up to N removals in a full run instead of the removal budget",
        )
        if name == "plan":
            p.add_argument(
                "--target-snapshot",
                type=Path,
                metavar="FILE",
                help="read the target from this snapshot file (needs --idp-snapshot): offline",
            )
            as_json(p, "the plan")
            p.add_argument(
                "--detailed-exitcode",
                action="store_true",
                help="exit 4 when the plan has changes, 0 when it has none",
            )
            p.add_argument(
                "--verbose",
                action="store_true",
                help="list every user left for their first login, not only how many",
            )
        else:
            p.add_argument(
                "--dry-run",
                action="store_true",
                help="plan and audit as dry run; send no change to the target",
            )

    p = add("explain", cmd_explain, "why each desired membership is desired")
    p.add_argument("--user", metavar="EMAIL", required=True, help="the user, by email")
    idp_snapshot(p)

    p = add("snapshot", cmd_snapshot, "export the current state in the snapshot format")
    p.add_argument("side", choices=["idp", "target"], help="Keycloak's side or the target's")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="where to write it ('-': stdout)"
    )

    p = add("audit", cmd_audit, "the audit log, oldest first")
    p.add_argument("--user", metavar="EMAIL", help="only records about this user")
    p.add_argument("--run", metavar="RUN_ID", help="only records of this run")
    p.add_argument(
        "--since", metavar="TIME", help="only records at or after this ISO time (UTC if no zone)"
    )
    p.add_argument(
        "--limit",
        type=_positive,
        default=100,
        metavar="N",
        help="show the newest N matching records (default 100); says so when there are more",
    )
    as_json(p, "the records")

    p = add("approve", cmd_approve, "apply the removals a safety hold kept back")
    p.add_argument("run_id", metavar="RUN_ID", help="the held run (see `jit-bridge runs --held`)")
    idp_snapshot(p)

    p = add(
        "status",
        cmd_status,
        "health, queue, last full reconcile, held runs and orphans; exits 1 when a "
        "dependency fails",
    )
    as_json(p, "the status")

    p = add("runs", cmd_runs, "recent runs, newest first")
    p.add_argument("--held", action="store_true", help="only runs waiting for approval")
    p.add_argument(
        "--limit", type=_positive, default=20, metavar="N", help="at most N runs (default 20)"
    )
    as_json(p, "the runs")

    p = add("queue", cmd_queue, "what waits in the queue and what is in progress")
    as_json(p, "the queue")

    for name, handler, what in (
        ("example-mapping", cmd_example_mapping, "an example mapping file, to start from"),
        ("mapping-schema", cmd_mapping_schema, "the mapping file's JSON Schema"),
    ):
        p = add(name, handler, f"print {what}")
        p.add_argument(
            "-o", "--output", default="-", metavar="FILE", help="write it to FILE (default stdout)"
        )

    provider = sub.add_parser(
        "keycloak-provider", help="the Keycloak event listener jar shipped in this package"
    )
    provider_sub = provider.add_subparsers(title="keycloak-provider commands")
    help_text = (
        "copy the listener jar into Keycloak's providers folder and print the options to set"
    )
    p = provider_sub.add_parser(
        "install", parents=[common], help=help_text, description=help_text, epilog=EPILOG
    )
    p.add_argument(
        "providers_dir",
        type=Path,
        metavar="DIR",
        help="Keycloak's providers folder, e.g. /opt/keycloak/providers",
    )
    p.set_defaults(handler=cmd_provider_install)
    help_text = "print where the listener jar of this installation is"
    p = provider_sub.add_parser("path", parents=[common], help=help_text, description=help_text)
    p.set_defaults(handler=cmd_provider_path)

    from bridge.init.arguments import add_init_command

    add_init_command(sub, common)

    db = sub.add_parser("db", help="state store maintenance")
    db_sub = db.add_subparsers(title="db commands")
    p = db_sub.add_parser("upgrade", parents=[common], help="migrate the schema to the newest")
    p.set_defaults(handler=cmd_db_upgrade)
    p = db_sub.add_parser(
        "backup",
        parents=[common],
        help="copy a SQLite state store to FILE while the service runs (PostgreSQL: pg_dump)",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="where to write the copy")
    p.set_defaults(handler=cmd_db_backup)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
