"""The HTTP face of the service (docs/design.md, Webhook and admin API): webhook, health, metrics
and the admin API."""

from __future__ import annotations

import hmac
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.app_state import ServiceContext
from bridge.intake.webhook import WEBHOOK_PATH, WebhookFastPath, webhook_handler
from bridge.keys import EVERYONE, TriggerKind, UserRef
from bridge.mapping_file import MappingError, dump_mapping, parse_mapping
from bridge.mapping_versions import API_SOURCE
from bridge.model import Trigger
from bridge.overview import check_dependencies, status_view
from bridge.store import RunAlreadyApprovedError, RunNotFoundError, RunNotHeldError
from bridge.tls import HSTS_VALUE
from bridge.ui import console_router
from bridge.ui.api import CALLER_HEADER

log = logging.getLogger(__name__)

#: Seconds a scrape of /metrics waits for the readiness checks; a dependency that has not
#: answered by then is reported down (Prometheus gives up on a scrape after 10 s by default).
METRICS_READINESS_WAIT = 5.0


def _caller(request: Request) -> str:
    """Who asked, for the audit: `console` or `admin-api`."""
    return "console" if request.headers.get(CALLER_HEADER) == "console" else "admin-api"


def create_app(ctx: ServiceContext) -> ASGIApp:
    """The service's HTTP app. The webhook is served in front of FastAPI (WebhookFastPath),
    the rest (health, metrics, admin API, the console at /ui) by FastAPI."""
    app = FastAPI(title="jit-bridge", docs_url=None, redoc_url=None, openapi_url=None)
    secret = ctx.settings.secret("webhook_secret")
    handler = None
    if secret:
        previous = ctx.settings.secret("webhook_secret_previous") or None
        if previous:
            log.info(
                "webhook_secret_previous is set: deliveries signed with it are accepted too "
                "until it is removed (docs/operations.md, Rotating secrets)"
            )
        handler = webhook_handler(
            ctx,
            secret=secret,
            previous_secret=previous,
            mode_provider=ctx.mode,
            metrics=ctx.metrics,
            realm=ctx.settings.keycloak_realm,
            # Off the event loop, concurrent deliveries share one commit (group commit
            # in the store): 905 durable events/s instead of 145 (bench/README.md).
            sink_in_thread=True,
        )
    else:
        log.warning("webhook_secret is not set: POST /webhooks/keycloak is disabled")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if ctx.stopping.is_set():
            return JSONResponse({"ready": False, "stopping": True}, status_code=503)
        checks = check_dependencies(ctx.store, ctx.readiness_checks)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        # A hung dependency must not make the scrape time out: the bridge would look down.
        checks = check_dependencies(ctx.store, ctx.readiness_checks, wait=METRICS_READINESS_WAIT)
        ctx.metrics.refresh_readiness(checks, stopping=ctx.stopping.is_set())
        try:
            ctx.metrics.refresh_from_store(ctx.store)
        except Exception as exc:  # the scrape still answers: the store shows as not ready
            log.warning("metrics: cannot read the state store (%s); store gauges kept", exc)
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    app.include_router(_admin_router(ctx), prefix="/api/v1")
    app.include_router(console_router(ctx, app))
    served = app if handler is None else WebhookFastPath(app, handler)
    return _StrictTransportSecurity(_RefuseWebhooksWhileStopping(served, ctx.stopping))


class _StrictTransportSecurity:
    """Over HTTPS (served directly, or by a trusted proxy that ended TLS), every answer tells
    the browser to use only HTTPS for this host from now on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"strict-transport-security", HSTS_VALUE.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_hsts)


class _RefuseWebhooksWhileStopping:
    """A stopping process takes no new triggers: the sender retries them (at another
    process behind a load balancer, or at this one's successor)."""

    def __init__(self, app: ASGIApp, stopping: threading.Event) -> None:
        self.app, self.stopping = app, stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.stopping.is_set() and scope["type"] == "http" and scope["path"] == WEBHOOK_PATH:
            answer = JSONResponse(
                {"error": "stopping; deliver again"}, 503, headers={"Retry-After": "5"}
            )
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _admin_router(ctx: ServiceContext) -> APIRouter:
    token = ctx.settings.secret("admin_token")

    def require_token(request: Request) -> None:
        if not token:
            raise HTTPException(401, "the admin API is disabled: set admin_token")
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
            raise HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    router = APIRouter(dependencies=[Depends(require_token)])

    @router.get("/status")
    def status() -> dict[str, Any]:
        health = check_dependencies(ctx.store, {})
        for name, dep in ctx.health.snapshot().items():
            health[name] = "ok" if dep["ok"] else f"failing: {dep['last_error']}"
        view = status_view(ctx.store, health, mapping_version=ctx.mappings.version)
        running = ctx.full_reconcile()
        summary = view.to_json()
        return {
            "healthy": summary["healthy"],
            "health": summary["health"],
            "queue": summary["queue"],
            "last_full_reconcile": summary["last_full_reconcile"],
            "full_reconcile_in_progress": None if running is None else running.to_json(),
            "mode": ctx.settings.mode,
            "target": ctx.settings.target,
            "dry_run": ctx.settings.dry_run,
            "mapping_version": ctx.mappings.version,
            "queue_depth": ctx.store.queue_depth(),
            "in_progress": sum(1 for e in ctx.store.queue_items() if e.claimed_by),
            "dependencies": ctx.health.snapshot(),
            "failing": ctx.health.failing(),
            "held_runs": [r.to_json() for r in ctx.store.list_runs(limit=20, status="held")],
            "orphans": _orphans(ctx.store.list_runs(limit=50)),
            "recent_runs": [r.to_json() for r in ctx.store.list_runs(limit=20)],
        }

    @router.post("/sync", status_code=202)
    async def sync(request: Request) -> dict[str, Any]:
        body = await _json_object(request)
        trigger = body.get("trigger")
        if trigger not in (None, "login", "reconcile"):
            raise HTTPException(400, "trigger must be login or reconcile")
        kind: TriggerKind
        if body.get("all") is True:
            key, kind = EVERYONE, "reconcile" if trigger in (None, "reconcile") else "login"
        elif isinstance(body.get("user"), str) and "@" in body["user"]:
            key = UserRef(email=body["user"]).key
            kind = "change" if trigger == "reconcile" else "login"
        else:
            raise HTTPException(400, 'body must be {"user": EMAIL} or {"all": true}')
        result = ctx.enqueue(key, kind, source=_caller(request))
        return {"queued": key, "result": result}

    @router.get("/plan")
    def plan(user: str | None = None, all: bool = False, trigger: str | None = None) -> Response:
        if bool(user) == bool(all):
            raise HTTPException(400, "give exactly one of ?user=EMAIL or ?all=true")
        chosen: Trigger = "reconcile" if all else "login"
        if trigger == "login":
            chosen = "login"
        elif trigger == "reconcile":
            chosen = "reconcile"
        elif trigger is not None:
            raise HTTPException(400, "trigger must be login or reconcile")
        reconciler = ctx.reconciler(dry_run=True)
        if all:
            result = reconciler.plan_all(chosen)[0]
        else:
            result = reconciler.plan_user(UserRef(email=user), chosen)[0]
        return Response(result.to_json(), media_type="application/json")

    @router.get("/audit")
    def audit(
        user: str | None = None,
        since: str | None = None,
        limit: int = 1000,
        run: str | None = None,
    ) -> list[Any]:
        when = None
        if since:
            try:
                when = datetime.fromisoformat(since)
            except ValueError as exc:
                raise HTTPException(400, f"since: '{since}' is not an ISO time") from exc
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
        records = ctx.store.audit(
            email=user.lower() if user else None, since=when, limit=limit, run_id=run
        )
        return [r.to_json() for r in records]

    @router.get("/mapping")
    def get_mapping() -> dict[str, Any]:
        in_use = ctx.mappings.current()
        return {"version": in_use.version, "mapping": dump_mapping(in_use.mapping)}

    @router.put("/mapping")
    async def put_mapping(request: Request, dry_run: bool = False) -> Response:
        """Replace the mapping for every process, then reconcile everyone under it (its
        removals budgeted as usual). `?dry_run=true`: only the plan, nothing stored."""
        raw = await request.body()
        try:
            mapping = parse_mapping(raw, source="PUT /api/v1/mapping")
        except MappingError as exc:
            problems = [{"pointer": p.pointer, "message": p.message} for p in exc.problems]
            return JSONResponse({"error": "mapping refused", "problems": problems}, 422)
        if dry_run:
            preview = ctx.reconciler(dry_run=True, mapping=mapping)
            plan = await run_in_threadpool(preview.plan_all, "reconcile")
            return Response(plan[0].to_json(), media_type="application/json")
        version = ctx.store.save_mapping(raw.decode("utf-8"), source=API_SOURCE)
        ctx.mappings.refresh()
        queued = ctx.enqueue(EVERYONE, "reconcile", source="mapping-put")
        log.info("mapping version %s stored from the admin API; full reconcile %s", version, queued)
        return JSONResponse({"version": version, "full_reconcile": queued}, 200)

    @router.post("/runs/{run_id}/approve")
    def approve(run_id: str, request: Request) -> dict[str, Any]:
        try:
            report = ctx.reconciler().approve(run_id, approved_by=_caller(request))
        except RunNotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        except (RunNotHeldError, RunAlreadyApprovedError) as exc:
            raise HTTPException(409, str(exc)) from exc
        return {"run_id": report.run_id, "approved": run_id, **report.summary()}

    return router


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise HTTPException(400, "body is not JSON") from exc
    if not isinstance(body, dict):
        raise HTTPException(400, "body must be a JSON object")
    return body


def _orphans(runs: list[Any]) -> dict[str, Any] | None:
    """What the newest full reconcile that planned found about orphan accounts (target
    accounts in `managed_email_domains` that no Keycloak user has); None before the first."""
    for run in runs:
        summary = run.summary or {}
        if run.kind == EVERYONE and "orphans" in summary:
            return {
                "count": summary["orphans"],
                "emails": summary.get("orphan_emails", []),
                "run_id": run.id,
            }
    return None
