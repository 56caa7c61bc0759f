"""`POST /webhooks/keycloak`: signed Keycloak events in, queued triggers out (docs/design.md,
Webhook and admin API).

Checks run cheapest first and nothing is enqueued until all of them pass: size (413),
content type (415), signature over the raw bytes (401), JSON and event shape (400). The 202 is
sent only after the queue has durably committed every trigger; if the queue fails the answer
is 503, so the sender keeps the event and retries.

The handler works on the raw body and plain dicts (no pydantic model per request): the
endpoint must keep up with a burst of logins on one core.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.intake.events import (
    EnqueueOutcome,
    EventError,
    KeycloakEvent,
    TriggerSink,
    enqueue_triggers,
    parse_listener_event,
    parse_phasetwo_event,
    triggers_for,
)
from bridge.intake.signatures import (
    SignatureError,
    verify_jit_bridge_signature,
    verify_phasetwo_signature,
)
from bridge.model import Mode

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/keycloak"
MAX_BODY_BYTES = 256 * 1024
LISTENER_SIGNATURE_HEADER = "x-jit-bridge-signature"
PHASETWO_SIGNATURE_HEADER = "x-keycloak-signature"
SOURCE_LISTENER = "webhook:jit-bridge"
SOURCE_PHASETWO = "webhook:phasetwo"
#: Seconds between two log lines saying the sender still signs with `webhook_secret_previous`.
PREVIOUS_SECRET_LOG_INTERVAL = 300


class IntakeMetrics(Protocol):
    """One counter of webhook requests by result: `queued` (new or merged into a waiting
    entry), `duplicate`, `ignored`, or the refusal reason `too_large`, `content_type`,
    `signature`, `malformed`, `unavailable`; and one of the requests signed with
    `webhook_secret_previous` alone, which tells when a rotation is over."""

    def webhook(self, result: str) -> None: ...

    def webhook_previous_secret(self) -> None: ...


class _RefusedError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class _PreviousSecretLog:
    """Says that the sender still signs with `webhook_secret_previous`: at the first such
    delivery, then at most once per PREVIOUS_SECRET_LOG_INTERVAL with how many came since,
    so a rotation in progress shows in the log without a line per delivery."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.last_logged: float | None = None
        self.unlogged = 0

    def delivered(self) -> None:
        self.unlogged += 1
        now = self.clock()
        if self.last_logged is None:
            log.info(
                "webhook: a delivery was signed with webhook_secret_previous: the sender still "
                "uses the old secret (counted in jit_bridge_webhook_previous_secret_total; "
                "said again at most every %d s)",
                PREVIOUS_SECRET_LOG_INTERVAL,
            )
        elif now - self.last_logged >= PREVIOUS_SECRET_LOG_INTERVAL:
            log.info(
                "webhook: %d more deliveries signed with webhook_secret_previous since the "
                "last such line: the sender still uses the old secret",
                self.unlogged,
            )
        else:
            return
        self.last_logged, self.unlogged = now, 0


def webhook_handler(
    sink: TriggerSink,
    *,
    secret: str,
    previous_secret: str | None = None,
    mode_provider: Callable[[], Mode],
    clock: Callable[[], float] = time.time,
    metrics: IntakeMetrics | None = None,
    sink_in_thread: bool = False,
    realm: str | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint itself, for `webhook_router` and `WebhookFastPath` alike.

    The sink is called on the event loop by default, which suits a sink that never waits.
    A sink that waits, on an fsync (SQLite with `synchronous=FULL`) or on the network
    (PostgreSQL), should pass `sink_in_thread=True`: concurrent requests then wait in
    parallel and the store's group commit puts them in one transaction.

    `realm` (`keycloak_realm`): an event naming any other realm is ignored (202
    `{"ignored": true}`), whatever it says about users; None accepts every realm.

    `previous_secret` (`webhook_secret_previous`): while `secret` is rotated, a request
    signed with the secret it replaces is accepted too, counted and logged as such.
    """
    if not secret:
        raise ValueError("webhook_secret is empty: set JIT_BRIDGE_WEBHOOK_SECRET (or _FILE)")
    previous_use = _PreviousSecretLog(clock)
    # A plain executor: anyio's thread hop costs about a tenth of a delivery's CPU.
    enqueue_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="webhook-enqueue")

    def in_realm(named: str) -> bool:
        return realm is None or named == realm

    async def receive_keycloak_event(request: Request) -> Response:
        try:
            body = await _read_body(request)
            source, event, by_previous = _authenticated_event(
                request, body, secret, previous_secret, clock
            )
            if by_previous:
                previous_use.delivered()
                if metrics:
                    metrics.webhook_previous_secret()
            triggers = triggers_for(event, mode_provider()) if in_realm(event.realm) else []
        except _RefusedError as refused:
            return _refuse(refused, metrics)
        except EventError as error:
            return _refuse(_RefusedError(400, "malformed", f"invalid event: {error}"), metrics)
        if not triggers:
            if metrics:
                metrics.webhook("ignored")
            return JSONResponse({"ignored": True, "type": event.type}, status_code=202)
        try:
            if sink_in_thread:
                outcome = await asyncio.get_running_loop().run_in_executor(
                    enqueue_pool, partial(enqueue_triggers, sink, event, triggers, source=source)
                )
            else:
                outcome = enqueue_triggers(sink, event, triggers, source=source)
        except Exception:
            log.exception("queue refused event %s from %s; answering 503", event.dedupe_key, source)
            unavailable = _RefusedError(503, "unavailable", "the queue is unavailable; retry later")
            response = _refuse(unavailable, metrics)
            response.headers["Retry-After"] = "5"
            return response
        return _accepted(outcome, metrics)

    return receive_keycloak_event


def webhook_router(
    sink: TriggerSink,
    *,
    secret: str,
    previous_secret: str | None = None,
    mode_provider: Callable[[], Mode],
    clock: Callable[[], float] = time.time,
    metrics: IntakeMetrics | None = None,
    sink_in_thread: bool = False,
    realm: str | None = None,
) -> APIRouter:
    """The router serving `POST /webhooks/keycloak`. `mode_provider` is asked on each request
    so a settings reload takes effect without rebuilding the app."""
    handler = webhook_handler(
        sink,
        secret=secret,
        previous_secret=previous_secret,
        mode_provider=mode_provider,
        clock=clock,
        metrics=metrics,
        sink_in_thread=sink_in_thread,
        realm=realm,
    )
    router = APIRouter()
    router.add_api_route(
        WEBHOOK_PATH,
        handler,
        methods=["POST"],
        status_code=202,
        summary="Receive a signed Keycloak event and queue the user it names",
    )
    return router


class WebhookFastPath:
    """ASGI wrapper that serves `POST /webhooks/keycloak` before FastAPI's middleware and
    routing, which cost about a third of the CPU of each delivery (bench/README.md), and
    hands every other request to the app unchanged. Same handler as `webhook_router`."""

    def __init__(self, app: ASGIApp, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == WEBHOOK_PATH and scope["method"] == "POST":
            try:
                response = await self.handler(Request(scope, receive))
            except Exception:
                log.exception("webhook handler failed; answering 500")
                response = JSONResponse({"error": "internal error"}, status_code=500)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _read_body(request: Request) -> bytes:
    """The raw body, refused as soon as it is known to be too large: from Content-Length
    before reading, and by counting while reading (the header may be absent or lie)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise _RefusedError(400, "malformed", "Content-Length is not a number")
        if int(declared) > MAX_BODY_BYTES:
            raise _RefusedError(413, "too_large", f"body is larger than {MAX_BODY_BYTES} bytes")
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise _RefusedError(415, "content_type", "Content-Type must be application/json")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _RefusedError(413, "too_large", f"body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _authenticated_event(
    request: Request,
    body: bytes,
    secret: str,
    previous: str | None,
    clock: Callable[[], float],
) -> tuple[str, KeycloakEvent, bool]:
    """Where the event came from, the event, and whether only `previous` signed it."""
    headers = request.headers
    listener_signature = headers.get(LISTENER_SIGNATURE_HEADER)
    phasetwo_signature = headers.get(PHASETWO_SIGNATURE_HEADER)
    try:
        if listener_signature is not None:
            by_previous = verify_jit_bridge_signature(
                listener_signature, body, secret, clock(), previous=previous
            )
            return SOURCE_LISTENER, parse_listener_event(_json(body)), by_previous
        if phasetwo_signature is not None:
            by_previous = verify_phasetwo_signature(
                phasetwo_signature, body, secret, previous=previous
            )
            return SOURCE_PHASETWO, parse_phasetwo_event(_json(body)), by_previous
    except SignatureError as error:
        raise _RefusedError(401, "signature", error.reason) from None
    raise _RefusedError(
        401, "signature", "missing signature: send X-JIT-Bridge-Signature or X-Keycloak-Signature"
    )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise _RefusedError(400, "malformed", "body is not valid UTF-8 JSON") from None


def _refuse(refused: _RefusedError, metrics: IntakeMetrics | None) -> JSONResponse:
    if metrics:
        metrics.webhook(refused.reason)
    log.info("webhook refused (%s): %s", refused.status, refused.message)
    return JSONResponse({"error": refused.message}, status_code=refused.status)


def _accepted(outcome: EnqueueOutcome, metrics: IntakeMetrics | None) -> JSONResponse:
    if outcome.all_duplicates:
        if metrics:
            metrics.webhook("duplicate")
        return JSONResponse({"duplicate": True, "queued": 0}, status_code=202)
    if metrics:
        metrics.webhook("queued")
    return JSONResponse(
        {"queued": outcome.queued + outcome.merged, "merged": outcome.merged}, status_code=202
    )
