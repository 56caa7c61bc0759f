"""The web console at `/ui`: pages for operators, in the `jit-bridge run` process.

Every page is rendered on the server and works without JavaScript. Actions (approve a held
run, preview and apply a mapping) go through the admin API in-process (`bridge.ui.api`);
pages read the store, the mapping in force and Keycloak the same way the API and CLI do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp

from bridge.keys import EVERYONE, UserRef
from bridge.overview import queue_view
from bridge.resolve import desired_access, explain
from bridge.ui.api import AdminApiClient, ApiAnswer
from bridge.ui.session import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    SessionKeeper,
    login_nonce,
)

if TYPE_CHECKING:
    from bridge.app_state import ServiceContext

log = logging.getLogger(__name__)

FLASH_COOKIE = "jit_bridge_flash"
MAX_MAPPING_BYTES = 1024 * 1024
#: Rows of a plan shown on a page; the counts above them are always complete.
PLAN_ROWS = 500

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bridge.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["op_where"] = _op_where
    env.filters["op_detail"] = _op_detail
    return env


def console_router(ctx: ServiceContext, api_app: ASGIApp) -> APIRouter:
    """The console's routes under `/ui`. `api_app` serves `/api/v1` (the same FastAPI app)."""
    token = ctx.settings.secret("admin_token")
    keeper = SessionKeeper(token) if token else None
    api = AdminApiClient(api_app, token or "")
    env = _environment()
    router = APIRouter(include_in_schema=False)

    def page(
        request: Request,
        template: str,
        session: Session | None,
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        flash = unquote(request.cookies.get(FLASH_COOKIE) or "") or None
        html = env.get_template(template).render(
            csrf=keeper.csrf_token(session) if keeper and session else "",
            signed_in=session is not None,
            flash=flash,
            service={
                "mode": ctx.settings.mode,
                "target": ctx.settings.target,
                "dry_run": ctx.settings.dry_run,
            },
            path=request.url.path,
            **values,
        )
        response = HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)
        if flash:
            response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
        return response

    def current_session(request: Request) -> Session | None:
        return keeper.check(request.cookies.get(SESSION_COOKIE)) if keeper else None

    def redirect(request: Request, to: str, flash: str | None = None) -> RedirectResponse:
        response = RedirectResponse(to, status_code=303, headers=_SECURITY_HEADERS)
        if flash:
            _set_cookie(response, request, FLASH_COOKIE, quote(flash), 60)
        return response

    def signed_in_page(
        handler: Callable[[Request, Session], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A page for signed-in operators only: others are sent to sign in first."""

        async def guarded(request: Request) -> Response:
            if keeper is None:
                return page(request, "disabled.html", None, status_code=503)
            session = current_session(request)
            if session is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return redirect(request, f"/ui/login?next={quote(target, safe='')}")
            return await handler(request, session)

        return guarded

    def signed_in_form(
        handler: Callable[[Request, Session, dict[str, Any]], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A form post: needs a session, the session's CSRF token, and no foreign Origin."""

        async def guarded(request: Request) -> Response:
            if keeper is None:
                return page(request, "disabled.html", None, status_code=503)
            session = current_session(request)
            if session is None:
                return page(request, "refused.html", None, 401, reason="You are not signed in.")
            if not _same_origin(request):
                return page(request, "refused.html", session, 403, reason=_FORGED)
            form = await request.form(max_files=1, max_fields=20, max_part_size=MAX_MAPPING_BYTES)
            fields: dict[str, Any] = dict(form)
            if not keeper.csrf_ok(session, _text(fields.get("csrf"))):
                log.warning("console: a form post without a valid CSRF token was refused")
                return page(request, "refused.html", session, 403, reason=_FORGED)
            return await handler(request, session, fields)

        return guarded

    # -- signing in and out ---------------------------------------------------------------

    @router.get("/ui/login")
    async def login_form(request: Request, next: str = "/ui") -> Response:
        if keeper is None:
            return page(request, "disabled.html", None, status_code=503)
        if current_session(request) is not None:
            return redirect(request, _safe_next(next))
        nonce = login_nonce()
        response = page(request, "login.html", None, nonce=nonce, next=_safe_next(next))
        _set_cookie(response, request, LOGIN_COOKIE, nonce, 3600)
        return response

    @router.post("/ui/login")
    async def login(request: Request) -> Response:
        if keeper is None:
            return page(request, "disabled.html", None, status_code=503)
        form = await request.form(max_files=0, max_fields=5, max_part_size=65536)
        given, nonce = _text(form.get("token")), _text(form.get("nonce"))
        next_page = _safe_next(_text(form.get("next")) or "/ui")
        cookie_nonce = request.cookies.get(LOGIN_COOKIE) or ""
        if not _same_origin(request) or not nonce or nonce != cookie_nonce:
            return page(request, "refused.html", None, 403, reason=_FORGED)
        if not keeper.token_matches(given):
            log.warning("console: sign-in with a wrong admin token from %s", _client(request))
            again = login_nonce()
            response = page(
                request,
                "login.html",
                None,
                401,
                nonce=again,
                next=next_page,
                error="That is not the admin token.",
            )
            _set_cookie(response, request, LOGIN_COOKIE, again, 3600)
            return response
        log.info("console: signed in from %s", _client(request))
        signed_in = redirect(request, next_page)
        signed_in.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        _set_cookie(signed_in, request, SESSION_COOKIE, keeper.issue(), int(keeper.lifetime))
        return signed_in

    async def logout(request: Request, session: Session, form: dict[str, Any]) -> Response:
        assert keeper is not None
        keeper.revoke(session)
        response = redirect(request, "/ui/login")
        response.delete_cookie(
            SESSION_COOKIE,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    router.add_api_route("/ui/logout", signed_in_form(logout), methods=["POST"])

    # -- overview -------------------------------------------------------------------------

    async def overview(request: Request, session: Session) -> Response:
        status = await api.call("GET", "/status")
        ready = await _readiness(api_app)
        queue = (await run_in_threadpool(queue_view, ctx.store)).entries
        running = [
            r for r in (status.body or {}).get("recent_runs", []) if r["status"] == "running"
        ]
        progress = await run_in_threadpool(_progress_of, ctx, running, queue)
        return page(
            request,
            "overview.html",
            session,
            status=status.body if status.ok else None,
            error=None if status.ok else status.detail,
            ready=ready,
            queue=queue,
            progress=progress,
        )

    router.add_api_route("/ui", signed_in_page(overview), methods=["GET"])

    # -- held runs ------------------------------------------------------------------------

    async def held_runs(request: Request, session: Session) -> Response:
        runs = await run_in_threadpool(ctx.store.list_runs, 200, "held")
        return page(request, "runs.html", session, runs=runs)

    async def approve(request: Request, session: Session, form: dict[str, Any]) -> Response:
        run_id = request.path_params["run_id"]
        answer = await api.call("POST", f"/runs/{quote(run_id, safe='')}/approve")
        if answer.ok:
            body = answer.body
            log.info("console: run %s approved, applied in run %s", run_id, body.get("run_id"))
            outcomes = ", ".join(f"{n} {k}" for k, n in sorted(body.get("outcomes", {}).items()))
            note = f"Approved run {run_id}: run {body.get('run_id')} {body.get('status')}" + (
                f" ({outcomes})" if outcomes else " (nothing left to apply)"
            )
        else:
            note = f"Run {run_id} was not approved: {answer.detail}"
        return redirect(request, "/ui/runs", note)

    router.add_api_route("/ui/runs", signed_in_page(held_runs), methods=["GET"])
    router.add_api_route("/ui/runs/{run_id}/approve", signed_in_form(approve), methods=["POST"])

    # -- a user ---------------------------------------------------------------------------

    async def user(request: Request, session: Session) -> Response:
        email = (request.query_params.get("email") or "").strip()
        values: dict[str, Any] = {"email": email}
        if email and "@" not in email:
            values["error"] = f"'{email}' is not an email address."
        elif email:
            values["people"], values["explain_error"] = await run_in_threadpool(
                _explain_user, ctx, email
            )
            plan = await api.call("GET", "/plan", params={"user": email})
            values["plan"] = plan.body if plan.ok else None
            values["plan_error"] = None if plan.ok else plan.detail
            audit = await api.call("GET", "/audit", params={"user": email, "limit": 200})
            values["audit"] = list(reversed(audit.body)) if audit.ok else []
            values["audit_error"] = None if audit.ok else audit.detail
        return page(request, "user.html", session, **values)

    router.add_api_route("/ui/user", signed_in_page(user), methods=["GET"])

    # -- the mapping ----------------------------------------------------------------------

    async def mapping_page(
        request: Request,
        session: Session,
        *,
        text: str | None = None,
        problems: list[dict[str, str]] | None = None,
        status_code: int = 200,
    ) -> Response:
        current = await api.call("GET", "/mapping")
        versions = await run_in_threadpool(ctx.store.mapping_versions)
        in_force = current.body if current.ok else None
        if text is None and in_force is not None:
            text = json.dumps(in_force["mapping"], indent=2)
        return page(
            request,
            "mapping.html",
            session,
            status_code=status_code,
            current=in_force,
            versions=versions[:50],
            more_versions=max(0, len(versions) - 50),
            text=text or "",
            problems=problems,
        )

    async def mapping(request: Request, session: Session) -> Response:
        return await mapping_page(request, session)

    async def preview(request: Request, session: Session, form: dict[str, Any]) -> Response:
        raw = await _uploaded(form)
        if raw is None or len(raw) > MAX_MAPPING_BYTES:
            message = (
                "choose a file or paste the mapping"
                if raw is None
                else f"the mapping is larger than {MAX_MAPPING_BYTES // 1024} KiB"
            )
            problem = {"pointer": "", "message": message}
            return await mapping_page(request, session, text="", problems=[problem])
        answer = await api.call("PUT", "/mapping", params={"dry_run": "true"}, content=raw)
        text = raw.decode("utf-8", errors="replace")
        if answer.status == 422 and isinstance(answer.body, dict):
            return await mapping_page(
                request, session, text=text, problems=answer.body.get("problems"), status_code=422
            )
        if not answer.ok:
            problem = {"pointer": "", "message": answer.detail}
            return await mapping_page(request, session, text=text, problems=[problem])
        return page(
            request,
            "preview.html",
            session,
            plan=answer.body,
            rows=PLAN_ROWS,
            text=text,
        )

    async def apply(request: Request, session: Session, form: dict[str, Any]) -> Response:
        raw = _text(form.get("mapping_text")).encode("utf-8")
        answer = await api.call("PUT", "/mapping", content=raw)
        if answer.status == 422 and isinstance(answer.body, dict):
            text = raw.decode()
            problems = answer.body.get("problems")
            return await mapping_page(request, session, text=text, problems=problems)
        if not answer.ok:
            return redirect(request, "/ui/mapping", f"The mapping was not applied: {answer.detail}")
        body = answer.body
        log.info("console: mapping version %s applied", body.get("version"))
        queued = "; a full reconcile is queued" if body.get("full_reconcile") else ""
        return redirect(
            request, "/ui/mapping", f"Mapping version {body['version']} is in force{queued}."
        )

    router.add_api_route("/ui/mapping", signed_in_page(mapping), methods=["GET"])
    router.add_api_route("/ui/mapping/preview", signed_in_form(preview), methods=["POST"])
    router.add_api_route("/ui/mapping/apply", signed_in_form(apply), methods=["POST"])

    # -- orphans --------------------------------------------------------------------------

    async def orphans(request: Request, session: Session) -> Response:
        status = await api.call("GET", "/status")
        last = (status.body or {}).get("orphans") if status.ok else None
        if isinstance(last, int):  # a bare count
            last = {"count": last, "emails": [], "run_id": None}
        values: dict[str, Any] = {
            "last": last,
            "setting": getattr(ctx.settings, "orphan_accounts", None),
            "live": None,
            "error": None if status.ok else status.detail,
        }
        if request.query_params.get("live"):
            plan = await api.call("GET", "/plan", params={"all": "true"})
            if not plan.ok or not isinstance(plan.body, dict):
                values["error"] = plan.detail
            elif "orphans" in plan.body:
                emails = {e.lower() for e in plan.body["orphans"]}
                values["live"] = {
                    "orphans": plan.body["orphans"],
                    **{
                        part: [o for o in plan.body[part] if o.get("email", "").lower() in emails]
                        for part in ("operations", "held")
                    },
                }
        values["reported"] = (
            last is not None
            or values["live"] is not None
            or (status.ok and "orphans" in (status.body or {}))
        )
        return page(request, "orphans.html", session, **values)

    router.add_api_route("/ui/orphans", signed_in_page(orphans), methods=["GET"])

    # -- the style sheet ------------------------------------------------------------------

    css = resources.files("bridge.ui").joinpath("static/console.css").read_bytes()

    @router.get("/ui/static/console.css")
    def stylesheet() -> Response:
        return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    return router


_FORGED = (
    "This form did not come from this console's own page (or it is older than your "
    "sign-in). Reload the page and try again."
)


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """A console cookie: for /ui only, out of scripts' reach, never sent by another site's
    page, and only over HTTPS when the console is served over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


async def _uploaded(form: dict[str, Any]) -> bytes | None:
    """The mapping from the form: the chosen file if any, else the pasted text."""
    upload = form.get("mapping_file")
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(MAX_MAPPING_BYTES + 1)
        if data.strip():
            return data
    text = _text(form.get("mapping_text"))
    return text.encode("utf-8") if text.strip() else None


def _same_origin(request: Request) -> bool:
    """A browser names the page a form came from in `Origin`; it must be this console."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return (parts.scheme, parts.netloc) == (request.url.scheme, request.url.netloc)


def _safe_next(target: str) -> str:
    """Only a console path: never send a signed-in browser to another site."""
    if target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _readiness(app: ASGIApp) -> ApiAnswer:
    """`/readyz` of this process: the store, Keycloak and the target, asked now."""
    return await AdminApiClient(app, "").call("GET", "/readyz", prefix="")


def _explain_user(ctx: ServiceContext, email: str) -> tuple[list[dict[str, Any]], str | None]:
    """The user as Keycloak has them, and why each membership is (not) desired."""
    reconciler = ctx.reconciler(dry_run=True)
    mapping = ctx.mappings.get()
    try:
        identity = reconciler.source.read_user(UserRef(email=email), mapping)
    except Exception as exc:
        return [], f"Keycloak could not be read: {type(exc).__name__}: {exc}"
    policy = ctx.settings.policy
    people = []
    for person in identity.users:
        access = desired_access(mapping, policy, person)
        people.append(
            {
                "user": person,
                "explanations": explain(mapping, policy, person),
                "owner": access.tenant_owner,
                "owner_because": access.owner_because,
                "permissions": access.permissions,
            }
        )
    return people, None


def _progress_of(
    ctx: ServiceContext, running: list[dict[str, Any]], queue: list[Any]
) -> list[dict[str, Any]]:
    """What each running full reconcile has done so far (its audit records) of its plan."""
    result = []
    for run in running:
        if run.get("kind") not in (EVERYONE, "approval"):
            continue
        outcomes: dict[str, int] = {}
        for record in ctx.store.audit(run_id=run["id"], limit=1_000_000):
            outcomes[record.outcome] = outcomes.get(record.outcome, 0) + 1
        planned = (run.get("summary") or {}).get("operations")
        result.append({"run": run, "outcomes": outcomes, "planned": planned})
    if not result:
        for entry in queue:
            if entry.key == EVERYONE and entry.claimed_by:
                result.append({"reading": entry})
    return result


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    return str(value.strftime("%Y-%m-%d %H:%M:%S %Z"))


def _op_where(op: dict[str, Any]) -> str:
    team = op.get("team")
    if not team:
        return ""
    return f"{team} / {op['case_group']}" if op.get("case_group") else str(team)


def _op_detail(op: dict[str, Any]) -> str:
    kind = op.get("op")
    if kind == "add_membership":
        return f"as {op.get('role')}"
    if kind == "remove_membership":
        return f"was {op.get('role')}"
    if kind == "change_role":
        return f"{op.get('from')} → {op.get('to')}"
    if kind == "set_tenant_owner":
        return f"tenant owner = {op.get('value')}"
    if kind == "set_tenant_permissions":
        added, removed = ", ".join(op.get("add", [])), ", ".join(op.get("remove", []))
        return f"add {added or '—'}; remove {removed or '—'}"
    if kind == "update_profile":
        return ", ".join(f"{k} = {v}" for k, v in (op.get("changes") or {}).items())
    return ""
