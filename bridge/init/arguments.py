"""The command line of `jit-bridge init`; light to import (the command itself loads HTTP
clients only when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bridge.settings import ENV_PREFIX, Settings

ADMIN_PASSWORD_ENV = f"{ENV_PREFIX}INIT_ADMIN_PASSWORD"
DEFAULT_DIR = Path("jit-bridge")


def add_init_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register `jit-bridge init` on the command line's subparsers."""
    help_text = "set up Keycloak, the settings and the secrets for a new bridge"
    p = sub.add_parser("init", parents=[common], help=help_text, description=help_text)
    p.set_defaults(handler=_run_init)
    p.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="settings directory (./jit-bridge)"
    )
    p.add_argument("--keycloak-url", metavar="URL", help="Keycloak's base URL")
    p.add_argument("--realm", metavar="REALM", help="the realm whose users the bridge serves")
    p.add_argument("--admin-user", metavar="USER", help="a Keycloak admin (used once, not stored)")
    p.add_argument("--admin-realm", metavar="REALM", help="the admin's realm (master)")
    p.add_argument(
        "--admin-password-file",
        type=Path,
        metavar="F",
        help=f"the admin's password (also {ADMIN_PASSWORD_ENV}; asked without echo otherwise)",
    )
    p.add_argument("--client-id", metavar="ID", help="the bridge's client (jit-bridge)")
    p.add_argument("--target", choices=["tines", "scim"], help="the application to provision")
    p.add_argument("--tines-url", metavar="URL", help="the Tines tenant's base URL")
    p.add_argument(
        "--tines-api-key-file", type=Path, metavar="F", help="file holding a tenant-owner API key"
    )
    p.add_argument("--scim-url", metavar="URL", help="the SCIM service's base URL")
    p.add_argument(
        "--scim-token-file", type=Path, metavar="F", help="file holding the SCIM bearer token"
    )
    p.add_argument(
        "--mode", choices=["jit", "enhanced"], help="create at first login, or keep in sync"
    )
    p.add_argument(
        "--events",
        choices=["auto", "listener", "phasetwo", "poll"],
        default="auto",
        help="how the bridge hears of logins: the jit-bridge listener when installed, else "
        "Phase Two's webhook when installed, else polling the event store (auto)",
    )
    p.add_argument(
        "--listen", metavar="HOST:PORT", help="where the bridge serves its webhook and API"
    )
    p.add_argument("--webhook-url", metavar="URL", help="the bridge's webhook as Keycloak sees it")
    p.add_argument("--webhook-secret-file", type=Path, metavar="F", help="else generated")
    p.add_argument("--database-url", metavar="URL", help="the state store (SQLite file by default)")
    p.add_argument("--no-verify-tls", action="store_true", help="test installations only")
    p.add_argument("--print-env", action="store_true", help="print variables, write no settings")
    p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    p.add_argument("--undo", action="store_true", help="take back what init set up")
    p.add_argument("--non-interactive", action="store_true", help="never ask")


def _run_init(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.init.command import run_init

    return run_init(args, settings)
