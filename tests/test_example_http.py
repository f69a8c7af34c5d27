"""examples/http_backend.py: the FastAPI example, driven through its TestClient."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from msgstate import (
    ConcurrencyConflict,
    ErrorCode,
    MessageService,
    MsgStateError,
    ProjectionTimeout,
    ResendPolicy,
    StorageError,
)
from tests import shardpg
from tests.support import FakeClock

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork; plain httpx still works.
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "http_backend.py"


def load_example(name: str = "msgstate_example_http_backend") -> ModuleType:
    """The example module, imported by path (``examples/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the body models through it
    spec.loader.exec_module(module)
    return module


http_backend = load_example()


@pytest.fixture(params=["memory", "sqlite", "shards"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MessageService]:
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/h.db",
    }.get(request.param) or f"shards://{shardpg.fresh_map(tmp_path)}"
    opened = MessageService.open(
        url, policy=ResendPolicy(max_attempts=3), clock=FakeClock()
    )
    yield opened
    opened.close()


@pytest.fixture
def client(service: MessageService) -> TestClient:
    return TestClient(http_backend.create_app(service))


MESSAGE = {
    "msg_id": "msg-1",
    "sender": "alice",
    "user_id": "bob",
    "content": {"text": "hi"},
}


def create(client: TestClient, msg_id: str = "msg-1") -> dict[str, Any]:
    response = client.post("/messages", json={**MESSAGE, "msg_id": msg_id})
    assert 201 == response.status_code, response.text
    body: dict[str, Any] = response.json()
    return body


def fail(client: TestClient, msg_id: str = "msg-1", attempt: int = 1) -> None:
    response = client.post(
        f"/messages/{msg_id}/failures",
        json={"code": 6012, "desc": "request timeout", "attempt": attempt},
    )
    assert 200 == response.status_code, response.text


def events(client: TestClient, msg_id: str = "msg-1") -> list[str]:
    response = client.get(f"/messages/{msg_id}/history")
    assert 200 == response.status_code, response.text
    return [entry["event"] for entry in response.json()]


def test_a_message_fails_is_resent_and_delivered_over_http(client: TestClient) -> None:
    """Create, report a failure, resend, report the delivery, read the history."""
    created = create(client)
    assert ("SENDING", 1, 1) == (
        created["status"],
        created["status_value"],
        created["attempts"],
    )

    failed = client.post(
        "/messages/msg-1/failures",
        json={"code": 6012, "desc": "request timeout", "attempt": 1, "retry_after": 2},
    )
    assert 200 == failed.status_code
    assert ("SEND_FAIL", "TRANSIENT", 2.0) == (
        failed.json()["status"],
        failed.json()["last_error_class"],
        failed.json()["last_retry_after"],
    )

    resent = client.post(
        "/messages/msg-1/resend",
        json={"actor": "bob-app"},
        headers={"Idempotency-Key": "req-1"},
    )
    assert 200 == resent.status_code
    answer = resent.json()
    assert (0, "ok") == (answer["code"], answer["desc"])
    assert ("msg-1", 1, {"text": "hi"}) == (
        answer["data"]["msgID"],
        answer["data"]["status"],
        answer["data"]["textElem"],
    )

    delivered = client.post(
        "/messages/msg-1/deliveries",
        json={"seq": "1001", "server_time": "2026-01-01T00:00:05+00:00", "attempt": 2},
    )
    assert 200 == delivered.status_code
    assert ("SEND_SUCC", "1001", "2026-01-01T00:00:05+00:00") == (
        delivered.json()["status"],
        delivered.json()["seq"],
        delivered.json()["server_time"],
    )

    view = client.get("/messages/msg-1")
    assert 200 == view.status_code
    assert delivered.json() == view.json()

    history = client.get("/messages/msg-1/history").json()
    assert ["Created", "SendFailed", "ResendRequested", "Delivered"] == [
        entry["event"] for entry in history
    ]
    assert [1, 1, 2, 2] == [entry["attempt"] for entry in history]
    assert {"attempt": 2, "request_id": "req-1", "actor": "bob-app"} == {
        key: history[2]["data"][key] for key in ("attempt", "request_id", "actor")
    }


def test_a_refused_resend_keeps_the_callback_shape_with_409(
    client: TestClient,
) -> None:
    """SEND_IN_PROGRESS and ALREADY_DELIVERED answer 409 {code, desc, data, error}."""
    create(client)
    in_flight = client.post("/messages/msg-1/resend")
    assert 409 == in_flight.status_code
    body = in_flight.json()
    assert ["code", "data", "desc", "error"] == sorted(body)
    assert (int(ErrorCode.SEND_IN_PROGRESS), None, "SEND_IN_PROGRESS") == (
        body["code"],
        body["data"],
        body["error"],
    )
    assert "in flight" in body["desc"]

    client.post("/messages/msg-1/deliveries", json={"seq": "7"})
    delivered = client.post(
        "/messages/msg-1/resend", headers={"Idempotency-Key": "late"}
    )
    assert (409, int(ErrorCode.ALREADY_DELIVERED), "ALREADY_DELIVERED") == (
        delivered.status_code,
        delivered.json()["code"],
        delivered.json()["error"],
    )
    assert ["Created", "Delivered"] == events(client)


def test_attempts_exhausted_is_a_409_refusal(client: TestClient) -> None:
    """After max_attempts sends the policy refuses with ATTEMPTS_EXHAUSTED."""
    create(client)
    fail(client, attempt=1)
    assert 200 == client.post("/messages/msg-1/resend").status_code
    fail(client, attempt=2)
    assert 200 == client.post("/messages/msg-1/resend").status_code
    fail(client, attempt=3)
    refused = client.post("/messages/msg-1/resend")
    assert (409, "ATTEMPTS_EXHAUSTED") == (
        refused.status_code,
        refused.json()["error"],
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/messages/nope", None),
        ("GET", "/messages/nope/history", None),
        ("POST", "/messages/nope/failures", {"code": 6012}),
        ("POST", "/messages/nope/resend", None),
        ("POST", "/messages/nope/deliveries", {"seq": "1"}),
    ],
)
def test_an_unknown_message_is_404(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Every endpoint answers 404 MESSAGE_NOT_FOUND for an id never created."""
    response = client.request(method, path, json=body)
    assert 404 == response.status_code
    assert {
        "code": int(ErrorCode.MESSAGE_NOT_FOUND),
        "desc": "message 'nope' not found",
        "data": None,
        "error": "MESSAGE_NOT_FOUND",
    } == response.json()


@pytest.mark.parametrize(
    ("path", "body", "in_desc"),
    [
        # refused by the body model (JSON types)
        ("/messages", {"msg_id": "x", "user_id": "bob"}, "sender"),
        ("/messages", {**MESSAGE, "msg_id": 5}, "msg_id"),
        ("/messages", {**MESSAGE, "colour": "red"}, "colour"),
        ("/messages/msg-1/failures", {"code": "6012"}, "code"),
        ("/messages/msg-1/failures", {"code": 6012, "attempt": 1.5}, "attempt"),
        ("/messages/msg-1/resend", {"onlineUserOnly": "yes"}, "onlineUserOnly"),
        ("/messages/msg-1/deliveries", {"seq": 1001}, "seq"),
        ("/messages/msg-1/deliveries", {"seq": "1", "server_time": "soon"}, "server"),
        # refused by the service (values)
        ("/messages", {"msg_id": "x", "sender": "alice"}, "user_id"),
        ("/messages", {**MESSAGE, "msg_id": " padded"}, "msg_id"),
        ("/messages", {**MESSAGE, "priority": 9}, "priority"),
        ("/messages/msg-1/failures", {"code": 0}, "code"),
        ("/messages/msg-1/failures", {"code": 6012, "attempt": 2}, "attempt 2"),
        ("/messages/msg-1/failures", {"code": 6012, "retry_after": -1}, "retry"),
        ("/messages/msg-1/resend", {"actor": ""}, "actor"),
        (
            "/messages/msg-1/deliveries",
            {"seq": "1", "server_time": "2026-01-01T00:00:00"},
            "timezone",
        ),
        ("/messages/msg-1/deliveries", {"seq": ""}, "seq"),
    ],
)
def test_bad_input_is_422_invalid_argument(
    client: TestClient, path: str, body: dict[str, Any], in_desc: str
) -> None:
    """Malformed bodies and values the service refuses answer 422, nothing written."""
    create(client)
    response = client.post(path, json=body)
    assert 422 == response.status_code, response.text
    answer = response.json()
    assert (int(ErrorCode.INVALID_ARGUMENT), "INVALID_ARGUMENT", None) == (
        answer["code"],
        answer["error"],
        answer["data"],
    )
    assert in_desc in answer["desc"]
    assert ["Created"] == events(client)


def test_a_body_that_is_not_json_is_422(client: TestClient) -> None:
    """Text that is not JSON is a 422 INVALID_ARGUMENT, not a 500."""
    create(client)
    response = client.post(
        "/messages/msg-1/failures",
        content=b"code=6012",
        headers={"Content-Type": "application/json"},
    )
    assert (422, "INVALID_ARGUMENT") == (response.status_code, response.json()["error"])


def test_the_same_resend_request_twice_resends_once(client: TestClient) -> None:
    """The same POST /resend with the same Idempotency-Key: same answer, one event."""
    create(client)
    fail(client)
    first = client.post(
        "/messages/msg-1/resend",
        json={"actor": "bob-app"},
        headers={"Idempotency-Key": "retry-me"},
    )
    second = client.post(
        "/messages/msg-1/resend",
        json={"actor": "bob-app"},
        headers={"Idempotency-Key": "retry-me"},
    )
    assert (200, 200) == (first.status_code, second.status_code)
    assert first.json() == second.json()
    assert ["Created", "SendFailed", "ResendRequested"] == events(client)
    assert 2 == client.get("/messages/msg-1").json()["attempts"]


def test_the_request_id_may_come_in_the_body(client: TestClient) -> None:
    """A body request_id (alone, or equal to the header) is the same idempotency key;
    a header and a body id that differ are refused."""
    create(client)
    fail(client)
    first = client.post("/messages/msg-1/resend", json={"request_id": "req-9"})
    again = client.post(
        "/messages/msg-1/resend",
        json={"request_id": "req-9"},
        headers={"Idempotency-Key": "req-9"},
    )
    assert (200, 200) == (first.status_code, again.status_code)
    assert first.json() == again.json()
    clash = client.post(
        "/messages/msg-1/resend",
        json={"request_id": "req-9"},
        headers={"Idempotency-Key": "req-10"},
    )
    assert (422, "INVALID_ARGUMENT") == (clash.status_code, clash.json()["error"])
    history = client.get("/messages/msg-1/history").json()
    assert ["req-9"] == [
        e["data"]["request_id"] for e in history if e["event"] == "ResendRequested"
    ]


def test_resends_without_a_key_are_separate_requests(client: TestClient) -> None:
    """Without a request id each POST is new: the second meets the first's send."""
    create(client)
    fail(client)
    assert 200 == client.post("/messages/msg-1/resend").status_code
    assert 409 == client.post("/messages/msg-1/resend").status_code


def test_a_repeated_failure_report_records_one_failure(client: TestClient) -> None:
    """The same failure report (same attempt) sent twice: same answer, one event."""
    create(client)
    report = {"code": 6012, "desc": "request timeout", "attempt": 1}
    first = client.post("/messages/msg-1/failures", json=report)
    second = client.post("/messages/msg-1/failures", json=report)
    assert (200, 200) == (first.status_code, second.status_code)
    assert first.json() == second.json()
    assert ["Created", "SendFailed"] == events(client)

    # A late repeat of attempt 1's report does not fail the resend (attempt 2).
    client.post("/messages/msg-1/resend", headers={"Idempotency-Key": "r"})
    late = client.post("/messages/msg-1/failures", json=report)
    assert ("SENDING", 2) == (late.json()["status"], late.json()["attempts"])
    assert ["Created", "SendFailed", "ResendRequested"] == events(client)


def test_a_repeated_delivery_report_records_one_delivery(client: TestClient) -> None:
    """The same delivery twice: same answer, one event; another seq is a 409."""
    create(client)
    report = {"seq": "1001", "server_time": "2026-01-01T00:00:01Z", "attempt": 1}
    first = client.post("/messages/msg-1/deliveries", json=report)
    second = client.post("/messages/msg-1/deliveries", json=report)
    assert (200, 200) == (first.status_code, second.status_code)
    assert first.json() == second.json()
    assert ["Created", "Delivered"] == events(client)

    other = client.post("/messages/msg-1/deliveries", json={**report, "seq": "1002"})
    assert (409, "ALREADY_DELIVERED") == (other.status_code, other.json()["error"])
    assert ["Created", "Delivered"] == events(client)


def test_creating_again_is_idempotent_and_a_different_body_is_409(
    client: TestClient,
) -> None:
    """The same POST /messages twice answers the same message; other fields: 409."""
    first = create(client)
    second = create(client)
    assert first == second
    clash = client.post("/messages", json={**MESSAGE, "content": {"text": "bye"}})
    assert (409, "DUPLICATE_MESSAGE") == (clash.status_code, clash.json()["error"])
    assert ["Created"] == events(client)


def _failing(error: MsgStateError) -> MessageService:
    """A service whose every command and query raises ``error`` (the app wraps
    it in an AsyncMessageService, which takes only a MessageService)."""
    service = MessageService.open("memory://")

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    for name in (
        "create",
        "record_failure",
        "resend",
        "record_delivery",
        "get",
        "history",
        "check_resend",
        "_load",
        "_update",
    ):
        setattr(service, name, fail)
    return service


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (StorageError("store x.db: disk I/O error"), 503),
        (ProjectionTimeout("read models are late"), 503),
        (ConcurrencyConflict("message 'm' kept changing"), 409),
    ],
)
def test_service_failures_are_json_errors_not_tracebacks(
    error: MsgStateError, status: int
) -> None:
    """Storage errors answer 503 and lost races 409, with the code's name, on every
    endpoint (the resend one included)."""
    app = http_backend.create_app(_failing(error))
    client = TestClient(app)
    expected = {
        "code": int(error.code),
        "desc": error.desc,
        "data": None,
        "error": error.code.name,
    }
    for response in (
        client.get("/messages/m"),
        client.get("/messages/m/history"),
        client.post("/messages", json=MESSAGE),
        client.post("/messages/m/failures", json={"code": 6012}),
        client.post("/messages/m/resend"),
        client.post("/messages/m/deliveries", json={"seq": "1"}),
    ):
        assert (status, expected) == (response.status_code, response.json())


def test_importing_the_example_opens_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing builds nothing; ``app`` is built from MSGSTATE_DATABASE_URL on use."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MSGSTATE_DATABASE_URL", f"sqlite:///{tmp_path}/lazy.db")
    module = load_example("msgstate_example_http_backend_lazy")
    try:
        assert [] == sorted(p.name for p in tmp_path.iterdir())
        client = TestClient(module.app)
        assert 201 == client.post("/messages", json=MESSAGE).status_code
        assert module.app is module.app
        assert (tmp_path / "lazy.db").exists()
        module.app.state.service.close()
    finally:
        sys.modules.pop("msgstate_example_http_backend_lazy", None)
