"""The console's two actions, resend and expire: what each answer says and where it
sends the browser (Starlette's test client)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from msgstate import MessageService
from msgstate.web import create_app
from tests.console_support import parse
from tests.support import FakeClock
from tests.test_web_session import TOKENS, form_of, sign_in


@pytest.fixture
def service() -> Iterator[MessageService]:
    clock = FakeClock()
    service = MessageService.open("memory://", clock=clock)
    service.create("m1", sender="u", user_id="v")
    service.record_failure("m1", code=6012)
    service.create("gone", sender="u", user_id="v")
    service.record_failure("gone", code=20007)  # permanent
    service.create("s1", sender="u", user_id="v")  # sending
    clock.advance(3600)
    try:
        yield service
    finally:
        service.close()


def client_for(service: MessageService, allow_actions: bool = True) -> TestClient:
    client = TestClient(create_app(service, tokens=TOKENS, allow_actions=allow_actions))
    sign_in(client)
    return client


def post(client: TestClient, action: str, **data: str) -> object:
    csrf = form_of(client.get("/").text)["csrf"]
    return client.post(
        f"/actions/{action}", data={"csrf": csrf, **data}, follow_redirects=False
    )


def test_a_resend_redirects_to_the_message_saying_it_was_done(
    service: MessageService,
) -> None:
    response = post(client_for(service), "resend", msg_id="m1")
    assert 303 == response.status_code  # type: ignore[attr-defined]
    location = response.headers["location"]  # type: ignore[attr-defined]
    assert "/message?msg_id=m1&done=resend" == location
    assert ("ResendRequested", "alice") == (
        service.history("m1")[-1].event,
        service.history("m1")[-1].data["actor"],
    )


def test_an_expire_redirects_and_records_the_failure(service: MessageService) -> None:
    response = post(client_for(service), "expire", msg_id="s1", attempt="1")
    location = response.headers["location"]  # type: ignore[attr-defined]
    assert "/message?msg_id=s1&done=expire" == location
    assert 1015 == service.history("s1")[-1].data["code"]


@pytest.mark.parametrize(
    ("attempt", "named"),
    [
        ("one", "attempt must be a whole number, got 'one'"),
        ("0", "attempt must be from 1 to 2147483648, got 0"),
        ("2147483649", "attempt must be from 1 to 2147483648, got 2147483649"),
    ],
)
def test_an_expire_with_a_bad_attempt_is_400_and_records_nothing(
    service: MessageService, attempt: str, named: str
) -> None:
    response = post(client_for(service), "expire", msg_id="s1", attempt=attempt)
    assert 400 == response.status_code  # type: ignore[attr-defined]
    root = parse(response.text)  # type: ignore[attr-defined]
    assert f"{named} [INVALID_ARGUMENT]" == root.by_id("error").text
    assert 1 == len(service.history("s1"))


def test_a_refused_resend_is_409_naming_the_code(service: MessageService) -> None:
    response = post(client_for(service), "resend", msg_id="gone")
    assert 409 == response.status_code  # type: ignore[attr-defined]
    text = parse(response.text).by_id("error").text  # type: ignore[attr-defined]
    assert text.endswith("[NOT_RETRYABLE]")
    assert 2 == len(service.history("gone"))


def test_a_bad_message_id_is_400(service: MessageService) -> None:
    response = post(client_for(service), "resend", msg_id="")
    assert 400 == response.status_code  # type: ignore[attr-defined]
    assert "[INVALID_ARGUMENT]" in response.text  # type: ignore[attr-defined]


def test_refusals_before_the_action_say_why(service: MessageService) -> None:
    off = post(client_for(service, allow_actions=False), "resend", msg_id="m1")
    assert (403, "actions are off; start the console with --allow-actions") == (
        off.status_code,  # type: ignore[attr-defined]
        off.text,  # type: ignore[attr-defined]
    )
    client = client_for(service)
    forged = client.post("/actions/resend", data={"msg_id": "m1", "csrf": "x"})
    assert (403, "missing or wrong CSRF token") == (forged.status_code, forged.text)
    unknown = post(client, "delete", msg_id="m1")
    assert (404, "no such action") == (
        unknown.status_code,  # type: ignore[attr-defined]
        unknown.text,  # type: ignore[attr-defined]
    )
    assert 2 == len(service.history("m1"))


def test_a_missing_field_is_400_with_the_services_reason(
    service: MessageService,
) -> None:
    client = client_for(service)
    no_id = post(client, "resend")
    assert 400 == no_id.status_code  # type: ignore[attr-defined]
    root = parse(no_id.text)  # type: ignore[attr-defined]
    assert "msg_id must not be empty, got '' [INVALID_ARGUMENT]" == (
        root.by_id("error").text
    )
    no_attempt = post(client, "expire", msg_id="s1")
    assert 400 == no_attempt.status_code  # type: ignore[attr-defined]
    root = parse(no_attempt.text)  # type: ignore[attr-defined]
    assert "attempt must be between 1 and 1000000, got 0 [INVALID_ARGUMENT]" == (
        root.by_id("error").text
    )
    assert 1 == len(service.history("s1"))


def test_a_refusal_links_back_to_its_message(service: MessageService) -> None:
    response = post(client_for(service), "resend", msg_id="gone")
    links = [a.attrs["href"] for a in parse(response.text).find_all("a")]  # type: ignore[attr-defined]
    assert "/message?msg_id=gone" in links
