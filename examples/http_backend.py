"""msgstate behind a small HTTP API: a chat backend's transport reports, users resend.

Run it (needs ``pip install fastapi uvicorn``)::

    MSGSTATE_DATABASE_URL=sqlite:///http_backend.db python examples/http_backend.py

or, with any ASGI server, ``uvicorn http_backend:app --app-dir examples``. Without
``MSGSTATE_DATABASE_URL`` the events go to the SQLite file ``http_backend.db`` in
the current directory. Importing this module has no side effects: ``app`` is built
(and the store opened) on first access; tests call :func:`create_app` with their own
:class:`~msgstate.MessageService`.

Endpoints (JSON in, JSON out)
    ``POST /messages``
        Create a message whose first send started: ``msg_id``, ``sender``,
        ``user_id`` and/or ``group_id``, optional ``elem_type``, ``priority``,
        ``online_user_only``, ``need_read_receipt``, ``cloud_custom_data``,
        ``content``. 201 with the message. Repeating it with the same fields
        answers the same message; different fields are a 409 ``DUPLICATE_MESSAGE``.
    ``POST /messages/{msg_id}/failures``
        The transport reports a failed send: ``code`` (non-zero), ``desc``,
        ``attempt``, ``retry_after`` (seconds). Send ``attempt``: a repeated report
        of the same attempt changes nothing, so the HTTP request can be retried
        safely (without it the report applies to whatever attempt is current).
    ``POST /messages/{msg_id}/resend``
        Ask for a resend. Body (optional): ``onlineUserOnly``, ``request_id``,
        ``actor``. The request id may instead come in an ``Idempotency-Key``
        header (both given and different: 422). The same id twice resends once
        and answers the current message again. Without any id every call is a
        new request. The answer is the Tencent-shaped ``V2TimValueCallback``
        ``{"code", "desc", "data"}`` of
        :meth:`msgstate.tencent.V2TIMMessageManager.reSendMessage`: HTTP 200 with
        ``code`` 0, ``desc`` ``"ok"`` and the ``V2TimMessage`` as ``data``. A
        refusal keeps that shape (``code`` the :class:`~msgstate.ErrorCode` value,
        ``data`` null), adds ``error``, the code's name, and answers **409** for
        every policy refusal (``SEND_IN_PROGRESS``, ``ALREADY_DELIVERED``,
        ``NOT_RETRYABLE``, ``ATTEMPTS_EXHAUSTED``, ``TOO_EARLY``, ``EXPIRED``):
        the request was understood, but the message's state forbids it now. An
        unknown message is a 404, a malformed id a 422, as below.
    ``POST /messages/{msg_id}/deliveries``
        The server acknowledged a send: ``seq``, optional ``server_time`` (ISO 8601
        with a time zone) and ``attempt``. Repeating it with the same ``seq``
        changes nothing; another ``seq`` is a 409 ``ALREADY_DELIVERED``.
    ``GET /messages/{msg_id}``
        The message now.
    ``GET /messages/{msg_id}/history``
        Every recorded event, oldest first: who resent what, when and why.

Errors
    Every refusal of every endpoint is ``{"code": <ErrorCode value>, "desc":
    "<sentence>", "data": null, "error": "<ErrorCode name>"}`` (the
    ``V2TimValueCallback`` keys plus the name), never a traceback, with the
    status: 404 ``MESSAGE_NOT_FOUND``; 422
    ``INVALID_ARGUMENT`` (also for a body that is not the documented JSON, with
    ``detail`` listing the problems); 409 ``DUPLICATE_MESSAGE``,
    ``ALREADY_DELIVERED``, the resend refusals and ``CONCURRENCY_CONFLICT`` (try
    again); 503 ``STORAGE_ERROR`` and ``PROJECTION_TIMEOUT``.

The app is thin on purpose: the :class:`~msgstate.MessageService` checks every
argument, decides, and records; the app only translates HTTP to calls and errors
to statuses.
"""

import contextlib
import os
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from msgstate import (
    DATABASE_URL_ENV,
    AsyncMessageService,
    ErrorCode,
    HistoryEntry,
    MessageService,
    MessageView,
    MsgStateError,
)
from msgstate.tencent import NOT_FOUND_CODE, V2TIMMessageManager

DEFAULT_URL = "sqlite:///http_backend.db"

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.OK: 200,
    ErrorCode.MESSAGE_NOT_FOUND: 404,
    ErrorCode.INVALID_ARGUMENT: 422,
    ErrorCode.DUPLICATE_MESSAGE: 409,
    ErrorCode.ALREADY_DELIVERED: 409,
    ErrorCode.SEND_IN_PROGRESS: 409,
    ErrorCode.NOT_RETRYABLE: 409,
    ErrorCode.ATTEMPTS_EXHAUSTED: 409,
    ErrorCode.TOO_EARLY: 409,
    ErrorCode.EXPIRED: 409,
    ErrorCode.CONCURRENCY_CONFLICT: 409,
    ErrorCode.STORAGE_ERROR: 503,
    ErrorCode.PROJECTION_TIMEOUT: 503,
}
"""The HTTP status answering each msgstate code (an unlisted code answers 409)."""


def http_status(code: int) -> int:
    """The HTTP status for a msgstate :class:`~msgstate.ErrorCode` value."""
    try:
        return HTTP_STATUS.get(ErrorCode(code), 409)
    except ValueError:
        return 409


# -- request bodies: JSON types only; the service checks values and ranges --


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateBody(_Body):
    msg_id: str
    sender: str
    user_id: str | None = None
    group_id: str | None = None
    elem_type: int = 1
    priority: int = 0
    online_user_only: bool = False
    need_read_receipt: bool = False
    cloud_custom_data: str = ""
    content: dict[str, Any] | None = None


class FailureBody(_Body):
    code: int
    desc: str = ""
    attempt: int | None = None
    retry_after: float | None = None


class ResendBody(_Body):
    onlineUserOnly: bool | None = None  # noqa: N815 - the V2TIM parameter's name
    request_id: str | None = None
    actor: str | None = None


class DeliveryBody(_Body):
    seq: str
    # Strict JSON has no datetime type: an ISO 8601 string is parsed here.
    server_time: datetime | None = Field(default=None, strict=False)
    attempt: int | None = None


# -- answers --


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def view_json(view: MessageView) -> dict[str, Any]:
    """A :class:`~msgstate.MessageView` as JSON: statuses by name, times ISO 8601."""
    return {
        "msg_id": view.msg_id,
        "sender": view.sender,
        "user_id": view.user_id,
        "group_id": view.group_id,
        "elem_type": view.elem_type,
        "priority": view.priority,
        "online_user_only": view.online_user_only,
        "need_read_receipt": view.need_read_receipt,
        "cloud_custom_data": view.cloud_custom_data,
        "content": view.content,
        "status": view.status.name,
        "status_value": int(view.status),
        "attempts": view.attempts,
        "last_error_code": view.last_error_code,
        "last_error_desc": view.last_error_desc,
        "last_error_class": (
            None if view.last_error_class is None else str(view.last_error_class)
        ),
        "last_retry_after": view.last_retry_after,
        "last_failed_at": _iso(view.last_failed_at),
        "maybe_delivered": view.maybe_delivered,
        "seq": view.seq,
        "server_time": _iso(view.server_time),
        "created_at": _iso(view.created_at),
        "updated_at": _iso(view.updated_at),
        "delivered_at": _iso(view.delivered_at),
        "next_retry_at": _iso(view.next_retry_at),
        "version": view.version,
    }


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    """One :class:`~msgstate.HistoryEntry` as JSON."""
    data = {
        key: _iso(value) if isinstance(value, datetime) else value
        for key, value in entry.data.items()
    }
    return {
        "version": entry.version,
        "event": entry.event,
        "recorded_at": _iso(entry.recorded_at),
        "attempt": entry.attempt,
        "data": data,
    }


def error_json(code: ErrorCode, desc: str, **extra: Any) -> JSONResponse:
    """The JSON error answer for a msgstate code: ``{code, desc, data, error}``.

    A superset of the ``V2TimValueCallback`` shape (``data`` is null), plus the
    code's name, so that every refusal of every endpoint reads the same way.
    """
    body = {"code": int(code), "desc": desc, "data": None, "error": code.name}
    return JSONResponse({**body, **extra}, status_code=http_status(code))


def create_app(service: MessageService) -> FastAPI:
    """The HTTP API over ``service`` (which the caller opens and closes).

    The endpoints are ``async def``: they await an
    :class:`~msgstate.AsyncMessageService` (a bounded thread pool over
    ``service``), so the event loop never blocks on the store.
    """
    aservice = AsyncMessageService(service)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await aservice.aclose()  # the pool; the caller closes the service

    app = FastAPI(title="msgstate HTTP backend example", lifespan=lifespan)
    app.state.service = service
    app.state.aservice = aservice
    manager = V2TIMMessageManager(service)

    @app.exception_handler(MsgStateError)
    async def msgstate_error(_: Request, error: MsgStateError) -> JSONResponse:
        return error_json(error.code, error.desc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "loc": [str(part) for part in problem.get("loc", ())],
                "msg": str(problem.get("msg", "")),
            }
            for problem in error.errors()
        ]
        desc = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems)
        return error_json(ErrorCode.INVALID_ARGUMENT, desc, detail=problems)

    # ``async def`` endpoints awaiting the AsyncMessageService's thread pool.

    @app.post("/messages", status_code=201)
    async def create(body: CreateBody) -> dict[str, Any]:
        return view_json(await aservice.create(**body.model_dump()))

    @app.post("/messages/{msg_id}/failures")
    async def report_failure(msg_id: str, body: FailureBody) -> dict[str, Any]:
        view = await aservice.record_failure(
            msg_id,
            code=body.code,
            desc=body.desc,
            attempt=body.attempt,
            retry_after=body.retry_after,
        )
        return view_json(view)

    @app.post("/messages/{msg_id}/resend")
    async def resend(
        msg_id: str,
        body: ResendBody | None = None,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        body = body or ResendBody()
        if (
            idempotency_key is not None
            and body.request_id is not None
            and idempotency_key != body.request_id
        ):
            return error_json(
                ErrorCode.INVALID_ARGUMENT,
                "the Idempotency-Key header and the body's request_id differ; "
                "give one, or the same id in both",
            )
        answer = await aservice.run(
            manager.reSendMessage,
            msg_id,
            body.onlineUserOnly,
            request_id=idempotency_key or body.request_id,
            actor=body.actor,
        )
        if answer.code == NOT_FOUND_CODE:  # the plugin's -1 "message not found"
            return error_json(
                ErrorCode.MESSAGE_NOT_FOUND, f"message {msg_id!r} not found"
            )
        if answer.code != ErrorCode.OK:
            return error_json(ErrorCode(answer.code), answer.desc)
        return JSONResponse(answer.to_dict())

    @app.post("/messages/{msg_id}/deliveries")
    async def report_delivery(msg_id: str, body: DeliveryBody) -> dict[str, Any]:
        view = await aservice.record_delivery(
            msg_id, seq=body.seq, server_time=body.server_time, attempt=body.attempt
        )
        return view_json(view)

    @app.get("/messages/{msg_id}")
    async def get(msg_id: str) -> dict[str, Any]:
        return view_json(await aservice.get(msg_id))

    @app.get("/messages/{msg_id}/history")
    async def history(msg_id: str) -> list[dict[str, Any]]:
        return [history_json(entry) for entry in await aservice.history(msg_id)]

    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    """``app``, built on first access over ``MSGSTATE_DATABASE_URL`` (or SQLite)."""
    global _app
    if name == "app":
        if _app is None:
            url = os.environ.get(DATABASE_URL_ENV, DEFAULT_URL)
            _app = create_app(MessageService.open(url))
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    try:
        import uvicorn  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        print(
            "uvicorn is not installed. Install it and run:\n"
            "  pip install uvicorn\n"
            "  uvicorn http_backend:app --app-dir examples\n"
            f"(the store is ${DATABASE_URL_ENV}, default {DEFAULT_URL})"
        )
        return
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    service = MessageService.open(os.environ.get(DATABASE_URL_ENV, DEFAULT_URL))
    try:
        uvicorn.run(create_app(service), host=host, port=port)
    finally:
        service.close()


if __name__ == "__main__":
    main()
