"""The console's ASGI application: routes, authentication, CSRF and headers.

Pages are rendered on the server with Jinja2 (autoescaping on, so every string
from the store, message content and descs included, is shown as text); the only
scripts are the package's static files (Chart.js and ``console.js``), so the
``Content-Security-Policy: default-src 'self'`` every response sends holds.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from attrs import fields
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from msgstate.application import MessageService
from msgstate.codes import RetryClass, lookup
from msgstate.errors import (
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MsgStateError,
    StorageError,
    StorageUnavailable,
)
from msgstate.metrics import READ_LIMIT, MsgStateCollector, dead_letters_by_reason
from msgstate.policy import ResendPolicy
from msgstate.status import TRANSITIONS, MessageStatus
from msgstate.tencent import V2TimValueCallback
from msgstate.views import HistoryEntry, MessageView
from msgstate.web.auth import Tokens
from msgstate.web.diagram import transitions_svg
from msgstate.web.rates import EventRates

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CSRF_COOKIE",
    "DEFAULT_PAGE_SIZE",
    "SESSION_COOKIE",
    "create_app",
]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Sent with every response: scripts, styles and images from the console only."""

SESSION_COOKIE = "msgstate_session"
CSRF_COOKIE = "msgstate_csrf"
DEFAULT_PAGE_SIZE = 50
_PUBLIC_PREFIXES = ("/static/", "/login")


def _package_dir(name: str) -> str:
    return str(files("msgstate.web").joinpath(name))


class _Console:
    """The state behind one app: the service (used under a lock), tokens, templates."""

    def __init__(
        self,
        service: MessageService,
        tokens: Tokens,
        allow_actions: bool,
        page_size: int,
    ) -> None:
        self.service = service
        self.tokens = tokens
        self.allow_actions = allow_actions
        self.page_size = page_size
        self.lock = threading.RLock()
        self.rates = EventRates(service)
        self.registry = CollectorRegistry()
        self.registry.register(MsgStateCollector(service))
        self.templates = Environment(
            loader=FileSystemLoader(_package_dir("templates")),
            autoescape=True,  # every template is HTML
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["when"] = _when
        self.templates.filters["code_name"] = _code_name
        self.templates.filters["retry_class"] = self.retry_class
        self.templates.filters["number"] = lambda n: f"{n:,}"
        self.templates.filters["pretty"] = _pretty
        self.templates.filters["show"] = _show
        self.templates.globals["chart"] = _chart_attr

    def retry_class(self, code: object) -> str:
        if not isinstance(code, int) or isinstance(code, bool):
            return ""
        return self.service.policy.classify(code).name

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        nonce = request.state.csrf_nonce
        page = self.templates.get_template(template).render(
            user=request.state.user,
            actions=self.allow_actions and request.state.user is not None,
            csrf=self.tokens.csrf_for(nonce),
            path=request.url.path,
            **context,
        )
        return HTMLResponse(page, status_code=status_code)


# -- formatting helpers (also template filters) --


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _code_name(code: object) -> str:
    if not isinstance(code, int) or isinstance(code, bool):
        return ""
    info = lookup(code)
    if info is not None:
        return info.name
    try:
        return ErrorCode(code).name
    except ValueError:
        return ""


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _show(value: object) -> str:
    """A view field as text: times in UTC, statuses and classes by name."""
    if isinstance(value, datetime):
        return _when(value)
    if isinstance(value, MessageStatus | RetryClass):
        return value.name
    if isinstance(value, dict):
        return _pretty(value)
    return "" if value is None else str(value)


def _chart_attr(config: Mapping[str, Any]) -> str:
    """A chart's Chart.js config as JSON for a ``data-chart`` attribute (escaped by
    the template's autoescaping)."""
    return json.dumps(config, separators=(",", ":"))


def _parse_now(value: str | None, service: MessageService) -> datetime:
    if not value:
        return service.now()
    try:
        moment = datetime.fromisoformat(value)  # Python 3.11+ reads a final Z
    except ValueError:
        raise InvalidArgument(
            f"now must be an ISO 8601 time like 2026-01-31T12:00:00Z, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        raise InvalidArgument(
            f"now must include a timezone (Z or +00:00), got {value!r}"
        )
    return moment.astimezone(UTC)


def _parse_int(name: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidArgument(f"{name} must be from {low} to {high}, got {number}")
    return number


def _query(**params: Any) -> str:
    return "?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})


def _bar(
    labels: Sequence[str], datasets: Sequence[tuple[str, Sequence[float], str]]
) -> dict[str, Any]:
    return {
        "type": "bar",
        "data": {
            "labels": list(labels),
            "datasets": [
                {"label": label, "data": list(values), "backgroundColor": colour}
                for label, values, colour in datasets
            ],
        },
    }


# -- filters of the paged tables --


def _filters(request: Request) -> dict[str, str]:
    params = request.query_params
    filters = {key: params.get(key, "").strip() for key in ("reason", "code", "class")}
    if filters["code"]:
        _parse_int("code", filters["code"], 0, -(2**31), 2**31 - 1)
    if filters["class"] and filters["class"] not in RetryClass.__members__:
        raise InvalidArgument(
            f"class must be one of {', '.join(RetryClass.__members__)}, "
            f"got {filters['class']!r}"
        )
    if filters["reason"] and filters["reason"] not in ErrorCode.__members__:
        raise InvalidArgument(
            f"reason must be an ErrorCode name, got {filters['reason']!r}"
        )
    return filters


def _matches(
    console: _Console, view: MessageView, reason: str | None, f: Mapping[str, str]
) -> bool:
    if f.get("reason") and reason != f["reason"]:
        return False
    if f.get("code") and view.last_error_code != int(f["code"]):
        return False
    return not (
        f.get("class") and console.retry_class(view.last_error_code) != f["class"]
    )


# -- pages --


def _overview(console: _Console, request: Request) -> Response:
    service = console.service
    statuses = service.status_counts()
    by_code = service.counts_by_error_code()
    by_class = dict.fromkeys(RetryClass, 0)
    codes = []
    for code, count in by_code.items():
        retry_class = service.policy.classify(code)
        by_class[retry_class] += count
        codes.append((code, _code_name(code), retry_class.name, count))
    now = service.now()
    due = len(service.due_resends(now=now, limit=READ_LIMIT))
    dead = dead_letters_by_reason(service)
    stuck = len(service.stuck_sends(now=now, limit=READ_LIMIT))
    charts = {}
    for key, span in (("hour", timedelta(hours=1)), ("day", timedelta(days=1))):
        series = console.rates.series(span)
        charts[key] = _bar(
            series.labels,
            [
                ("failures (SendFailed)", series.counts["SendFailed"], "#d9534f"),
                (
                    "resends (ResendRequested)",
                    series.counts["ResendRequested"],
                    "#3e7cc9",
                ),
            ],
        ) | {"totals": {k: sum(v) for k, v in series.counts.items()}}
    return console.render(
        request,
        "overview.html",
        statuses=statuses,
        total=sum(statuses.values()),
        by_class=by_class,
        codes=codes,
        due=due,
        due_capped=due >= READ_LIMIT,
        dead=dead,
        dead_total=sum(dead.values()),
        stuck=stuck,
        charts=charts,
        now=now,
    )


def _timeline_row(entry: HistoryEntry) -> dict[str, Any]:
    data = entry.data
    code = data.get("code")
    return {
        "version": entry.version,
        "recorded_at": entry.recorded_at,
        "event": entry.event,
        "attempt": entry.attempt,
        "actor": data.get("actor") or "",
        "code": "" if code is None else code,
        "desc": data.get("desc") or "",
        "request_id": data.get("request_id") or "",
    }


_VIEW_FIELDS = [f.name for f in fields(MessageView)]


def _message(console: _Console, request: Request) -> Response:
    service = console.service
    params = request.query_params
    msg_id = params.get("msg_id", "").strip()
    context: dict[str, Any] = {"msg_id": msg_id, "fields": _VIEW_FIELDS}
    if not msg_id:
        return console.render(request, "message.html", **context)
    try:
        view = service.get(msg_id)
    except MessageNotFound as error:
        return console.render(
            request, "message.html", status_code=404, error=error, **context
        )
    history = service.history(msg_id)
    version = _parse_int("version", params.get("version"), 0, 0, 2**63 - 1)
    then = None
    if version:
        then = service.get_at(msg_id, version=version)
    answer = V2TimValueCallback.ok(view).to_dict()
    context.update(
        view=view,
        timeline=[_timeline_row(e) for e in history],
        version=version,
        then=then,
        decision=service.check_resend(msg_id),
        tencent_json=json.dumps(answer, indent=2, ensure_ascii=False),
        can_expire=view.status is MessageStatus.SENDING,
        done=params.get("done", ""),
    )
    return console.render(request, "message.html", **context)


def _due(console: _Console, request: Request) -> Response:
    service = console.service
    params = request.query_params
    now = _parse_now(params.get("now"), service)
    size = _parse_int("size", params.get("size"), console.page_size, 1, 1000)
    offset = _parse_int("offset", params.get("offset"), 0, 0, READ_LIMIT)
    filters = _filters(request)
    filtered = any(filters.values())
    limit = READ_LIMIT if filtered else min(READ_LIMIT, offset + size + 1)
    views = service.due_resends(now=now, limit=limit)
    if filtered:
        views = [v for v in views if _matches(console, v, None, filters)]
    rows = views[offset : offset + size]
    pinned = _when(now)
    return console.render(
        request,
        "due.html",
        rows=rows,
        now=pinned,
        filters=filters,
        next_link=_query(now=pinned, offset=offset + size, size=size, **filters)
        if len(views) > offset + size
        else None,
        prev_link=_query(now=pinned, offset=max(0, offset - size), size=size, **filters)
        if offset
        else None,
        offset=offset,
        classes=list(RetryClass.__members__),
    )


def _dead(console: _Console, request: Request) -> Response:
    service = console.service
    params = request.query_params
    now = _parse_now(params.get("now"), service)
    size = _parse_int("size", params.get("size"), console.page_size, 1, 1000)
    after = params.get("after") or None
    filters = _filters(request)
    rows: list[Any] = []
    cursor = after
    more = False
    while True:
        page = service.dead_letters(now=now, limit=size + 1, after=cursor)
        for letter in page:
            if len(rows) == size:
                more = True
                break
            cursor = letter.msg_id
            if _matches(console, letter.view, letter.code.name, filters):
                rows.append(letter)
        if more or len(page) < size + 1:
            break
    pinned = _when(now)
    return console.render(
        request,
        "dead.html",
        rows=rows,
        now=pinned,
        filters=filters,
        next_link=_query(now=pinned, after=rows[-1].msg_id, size=size, **filters)
        if more and rows
        else None,
        first_link=_query(now=pinned, size=size, **filters) if after else None,
        reasons=["ATTEMPTS_EXHAUSTED", "NOT_RETRYABLE", "EXPIRED"],
        classes=list(RetryClass.__members__),
    )


def _stuck(console: _Console, request: Request) -> Response:
    service = console.service
    params = request.query_params
    now = _parse_now(params.get("now"), service)
    size = _parse_int("size", params.get("size"), console.page_size, 1, 1000)
    offset = _parse_int("offset", params.get("offset"), 0, 0, READ_LIMIT)
    views = service.stuck_sends(now=now, limit=min(READ_LIMIT, offset + size + 1))
    rows = views[offset : offset + size]
    pinned = _when(now)
    return console.render(
        request,
        "stuck.html",
        rows=rows,
        now=pinned,
        next_link=_query(now=pinned, offset=offset + size, size=size)
        if len(views) > offset + size
        else None,
        prev_link=_query(now=pinned, offset=max(0, offset - size), size=size)
        if offset
        else None,
    )


_BOOLS = ("enforce_backoff", "resend_ambiguous")
_OPTIONAL = ("max_age", "online_only_max_age")


def policy_from_form(form: Mapping[str, str], base: ResendPolicy) -> ResendPolicy:
    """The :class:`ResendPolicy` a what-if form describes (its fields, as
    :meth:`ResendPolicy.to_dict` names them; a missing checkbox is ``False``,
    another missing field keeps ``base``'s value, an empty one is refused)."""
    data: dict[str, Any] = {}
    for key, default in base.to_dict().items():
        if key not in _BOOLS and key not in form:
            data[key] = default
            continue
        raw = form.get(key, "").strip()
        if key in _BOOLS:
            data[key] = raw in ("on", "true", "1")
        elif key == "unknown_code_class":
            data[key] = raw or default
        elif key in _OPTIONAL and raw == "":
            data[key] = None
        elif raw == "":
            raise InvalidArgument(f"{key} is empty; give a number")
        else:
            try:
                data[key] = int(raw) if key == "max_attempts" else float(raw)
            except ValueError:
                raise InvalidArgument(f"{key} must be a number, got {raw!r}") from None
    return ResendPolicy.from_dict(data)


def _schedule(policy: ResendPolicy, attempts: int) -> list[float]:
    return [policy.base_delay(n) for n in range(1, attempts + 1)]


def _what_if(console: _Console, request: Request) -> Response:
    service = console.service
    params = request.query_params
    recorded = service.policy
    settings = recorded.to_dict()
    context: dict[str, Any] = {
        "settings": settings,
        "classes": list(RetryClass.__members__),
        "bools": _BOOLS,
    }
    if params.get("run"):
        # A field the form did not send keeps the recorded policy's value, in the
        # form as in the policy (see policy_from_form).
        context["settings"] = {k: params.get(k, v) for k, v in settings.items()} | {
            k: params.get(k) in ("on", "true", "1") for k in _BOOLS
        }
        try:
            policy = policy_from_form(params, recorded)
        except InvalidArgument as error:
            return console.render(
                request, "whatif.html", status_code=400, error=error, **context
            )
        report = service.simulate_policy(policy)
        refusals: dict[str, int] = {}
        for item in report.per_message:
            if item.first_refusal is not None:
                name = item.first_refusal.name
                refusals[name] = refusals.get(name, 0) + 1
        attempts = max(policy.max_attempts, recorded.max_attempts)
        attempts = min(attempts, 30)
        context.update(
            report=report,
            refusals=dict(sorted(refusals.items())),
            changed=[
                m
                for m in report.per_message
                if m.dead_earlier or m.dead_later  # dead earlier: refused once
            ][:500],
            outcome_chart=_bar(
                ["resends", "refused", "delayed", "dead earlier", "dead later"],
                [
                    ("recorded policy", [report.resends_recorded, 0, 0, 0, 0], "#999"),
                    (
                        "new policy",
                        [
                            report.resends_allowed,
                            report.resends_refused,
                            report.resends_delayed,
                            report.dead_earlier,
                            report.dead_later,
                        ],
                        "#3e7cc9",
                    ),
                ],
            ),
            schedule_chart={
                "type": "line",
                "data": {
                    "labels": [f"after send {n}" for n in range(1, attempts + 1)],
                    "datasets": [
                        {
                            "label": "recorded policy: wait (s)",
                            "data": _schedule(recorded, attempts),
                            "borderColor": "#999",
                            "stepped": True,
                        },
                        {
                            "label": "new policy: wait (s)",
                            "data": _schedule(policy, attempts),
                            "borderColor": "#3e7cc9",
                            "stepped": True,
                        },
                    ],
                },
            },
        )
    return console.render(request, "whatif.html", **context)


def _machine(console: _Console, request: Request) -> Response:
    return console.render(
        request,
        "machine.html",
        transitions=TRANSITIONS,
        svg=Markup(transitions_svg()),  # built from TRANSITIONS, labels escaped
        statuses=list(MessageStatus),
    )


def _machine_svg(console: _Console, request: Request) -> Response:
    return Response(transitions_svg(), media_type="image/svg+xml")


def _metrics(console: _Console, request: Request) -> Response:
    return Response(generate_latest(console.registry), media_type=CONTENT_TYPE_LATEST)


# -- actions and login (POST) --


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _csrf_refused(console: _Console, request: Request, form: Mapping[str, str]) -> bool:
    return not console.tokens.csrf_ok(
        request.cookies.get(CSRF_COOKIE), form.get("csrf")
    )


async def _action(request: Request) -> Response:
    console: _Console = request.app.state.console
    form = await _form(request)
    if not console.allow_actions:
        return PlainTextResponse(
            "actions are off; start the console with --allow-actions", status_code=403
        )
    if _csrf_refused(console, request, form):
        return PlainTextResponse("missing or wrong CSRF token", status_code=403)
    name = request.path_params["name"]
    msg_id = form.get("msg_id", "")
    actor = request.state.user
    if name not in ("resend", "expire"):
        return PlainTextResponse("no such action", status_code=404)

    def act() -> None:
        with console.lock:
            if name == "resend":
                console.service.resend(msg_id, actor=actor)
            else:
                attempt = _parse_int("attempt", form.get("attempt"), 0, 1, 2**31)
                console.service.expire_send(msg_id, attempt=attempt, actor=actor)

    try:
        await run_in_threadpool(act)  # the service blocks; the event loop must not
    except MsgStateError as error:
        return console.render(
            request,
            "error.html",
            status_code=_http_status(error),
            error=f"{error.desc} [{error.code.name}]",
            msg_id=msg_id,
        )
    return RedirectResponse(
        "/message" + _query(msg_id=msg_id, done=name), status_code=303
    )


def _http_status(error: MsgStateError) -> int:
    """The HTTP status for a refused page or action: the database down is 503,
    another storage failure 500, a bad argument 400, any other refusal 409."""
    if isinstance(error, StorageUnavailable):
        return 503
    if isinstance(error, StorageError):
        return 500
    if isinstance(error, InvalidArgument):
        return 400
    return 409


def _safe_next(value: str | None) -> str:
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
    ):
        return value
    return "/"


async def _login(request: Request) -> Response:
    console: _Console = request.app.state.console
    if request.method == "GET":
        return console.render(
            request, "login.html", next=_safe_next(request.query_params.get("next"))
        )
    form = await _form(request)
    if _csrf_refused(console, request, form):
        return PlainTextResponse("missing or wrong CSRF token", status_code=403)
    name = console.tokens.name_of_token(form.get("token", ""))
    if name is None:
        return console.render(
            request,
            "login.html",
            status_code=401,
            error="that token is not in the token file",
            next=_safe_next(form.get("next")),
        )
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        console.tokens.session_for(name),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def _logout(request: Request) -> Response:
    console: _Console = request.app.state.console
    form = await _form(request)
    if _csrf_refused(console, request, form):
        return PlainTextResponse("missing or wrong CSRF token", status_code=403)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# -- wiring --

Page = Callable[[_Console, Request], Response]


def _page(handler: Page) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        console: _Console = request.app.state.console
        try:
            with console.lock:
                return handler(console, request)
        except InvalidArgument as error:
            return console.render(
                request, "error.html", status_code=400, error=error.desc
            )
        except MsgStateError as error:
            return console.render(
                request,
                "error.html",
                status_code=_http_status(error),
                error=f"{error.desc} [{error.code.name}]",
            )

    endpoint.__name__ = handler.__name__.lstrip("_")
    return endpoint


class _Guard(BaseHTTPMiddleware):
    """Authentication, the CSRF nonce cookie and the security headers."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        console: _Console = request.app.state.console
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = not nonce or len(nonce) > 64
        request.state.csrf_nonce = secrets.token_urlsafe(24) if fresh else nonce
        request.state.user = self._user(console, request)
        path = request.url.path
        if (
            console.tokens.required
            and request.state.user is None
            and not path.startswith(_PUBLIC_PREFIXES)
        ):
            response = self._unauthorised(console, request)
        else:
            response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                request.state.csrf_nonce,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    @staticmethod
    def _user(console: _Console, request: Request) -> str | None:
        if not console.tokens.required:
            return None
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return console.tokens.name_of_token(header[7:].strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        return console.tokens.name_of_session(cookie) if cookie else None

    @staticmethod
    def _unauthorised(console: _Console, request: Request) -> Response:
        if request.url.path == "/metrics" or request.method != "GET":
            return PlainTextResponse(
                "401: a token is required (Authorization: Bearer <token>)",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="msgstate"'},
            )
        wanted = request.url.path + (
            "?" + request.url.query if request.url.query else ""
        )
        return console.render(
            request, "login.html", status_code=401, next=_safe_next(wanted)
        )


def create_app(
    service: MessageService,
    *,
    tokens: Mapping[str, str] | None = None,
    allow_actions: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Starlette:
    """The console for ``service`` as an ASGI application (Starlette).

    ``tokens`` (``{name: token}``, e.g. from :func:`msgstate.web.load_tokens`)
    makes every page and ``/metrics`` require a token: a browser signs in at
    ``/login``; scripts send ``Authorization: Bearer <token>``. ``allow_actions``
    adds the resend (and, when the service has it, expire-send) buttons; it needs
    ``tokens``, and each action is recorded with ``actor`` = the token's name.
    ``page_size`` rows per page in the Due, Dead and Stuck tables.
    """
    if not isinstance(service, MessageService):
        raise InvalidArgument(f"service must be a MessageService, got {service!r}")
    if allow_actions and not tokens:
        raise InvalidArgument(
            "actions need a token file (each action records the token's name as "
            "its actor); give --token-file, or leave out --allow-actions"
        )
    if (
        not isinstance(page_size, int)
        or isinstance(page_size, bool)
        or not 1 <= page_size <= 1000
    ):
        raise InvalidArgument(f"page_size must be from 1 to 1000, got {page_size!r}")
    console = _Console(service, Tokens.of(tokens), allow_actions, page_size)
    routes = [
        Route("/", _page(_overview)),
        Route("/message", _page(_message)),
        Route("/due", _page(_due)),
        Route("/dead", _page(_dead)),
        Route("/stuck", _page(_stuck)),
        Route("/what-if", _page(_what_if)),
        Route("/status-machine", _page(_machine)),
        Route("/status-machine.svg", _page(_machine_svg)),
        Route("/metrics", _page(_metrics)),
        Route("/login", _login, methods=["GET", "POST"]),
        Route("/logout", _logout, methods=["POST"]),
        Route("/actions/{name}", _action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=_package_dir("static")), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_Guard)])
    app.state.console = console
    return app
