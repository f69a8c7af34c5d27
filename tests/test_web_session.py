"""Signing in and out of the console, and what a request without a session gets
(Starlette's test client; the browser tests cover the same rules in Chromium)."""

from __future__ import annotations

from collections.abc import Iterator
from http.cookies import SimpleCookie

import pytest
from starlette.testclient import TestClient

from msgstate import MessageService
from msgstate.web import create_app
from msgstate.web.app import (
    CONTENT_SECURITY_POLICY,
    CSRF_COOKIE,
    SESSION_COOKIE,
)
from tests.console_support import parse

TOKEN = "s3cret-token-of-alice-0123456789"
TOKENS = {"alice": TOKEN, "bob": "another-long-token-for-bob-xyz"}


@pytest.fixture
def service() -> Iterator[MessageService]:
    service = MessageService.open("memory://")
    service.create("m1", sender="u", user_id="v")
    try:
        yield service
    finally:
        service.close()


def form_of(response_text: str) -> dict[str, str]:
    """The hidden and visible fields of the page's sign-in form."""
    root = parse(response_text)
    return {
        field.attrs["name"]: field.attrs.get("value", "")
        for field in root.find_all("input")
        if "name" in field.attrs
    }


def cookies_set(response: object) -> dict[str, SimpleCookie]:
    found: dict[str, SimpleCookie] = {}
    for header in response.headers.get_list("set-cookie"):  # type: ignore[attr-defined]
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            found[name] = cookie
    return found


def sign_in(client: TestClient, token: str = TOKEN, next_: str = "/") -> object:
    fields = form_of(client.get("/login").text)
    return client.post(
        "/login",
        data={"token": token, "csrf": fields["csrf"], "next": next_},
        follow_redirects=False,
    )


@pytest.mark.parametrize(
    ("wanted", "kept"),
    [
        ("/due?size=2&now=x", "/due?size=2&now=x"),
        ("/message?msg_id=m1", "/message?msg_id=m1"),
        ("/", "/"),
    ],
)
def test_a_page_without_a_session_asks_to_sign_in_and_comes_back(
    service: MessageService, wanted: str, kept: str
) -> None:
    client = TestClient(create_app(service, tokens=TOKENS))
    response = client.get(wanted)
    assert 401 == response.status_code
    assert "text/html" in response.headers["content-type"]
    assert "WWW-Authenticate" not in response.headers
    fields = form_of(response.text)
    assert kept == fields["next"]
    assert "" == fields["token"]
    redirect = client.post(
        "/login",
        data={"token": TOKEN, "csrf": fields["csrf"], "next": fields["next"]},
        follow_redirects=False,
    )
    assert (303, kept) == (redirect.status_code, redirect.headers["location"])
    assert 200 == client.get("/").status_code


@pytest.mark.parametrize("path", ["/metrics", "/actions/resend", "/logout"])
def test_metrics_and_posts_without_a_session_get_a_bearer_challenge(
    service: MessageService, path: str
) -> None:
    client = TestClient(create_app(service, tokens=TOKENS, allow_actions=True))
    if path == "/metrics":
        response = client.get(path)
    else:
        response = client.post(path, data={"msg_id": "m1"})
    assert 401 == response.status_code
    assert 'Bearer realm="msgstate"' == response.headers["WWW-Authenticate"]
    assert "401: a token is required (Authorization: Bearer <token>)" == response.text
    assert 1 == len(service.history("m1"))


def test_the_sign_in_page_keeps_only_a_local_next(service: MessageService) -> None:
    client = TestClient(create_app(service, tokens=TOKENS))
    for unsafe in ("//evil.example/x", "https://evil.example/", "/\\evil", ""):
        fields = form_of(client.get("/login", params={"next": unsafe}).text)
        assert "/" == fields["next"], unsafe
    fields = form_of(client.get("/login", params={"next": "/dead?size=5"}).text)
    assert "/dead?size=5" == fields["next"]


def test_a_good_token_sets_a_strict_http_only_session_cookie(
    service: MessageService,
) -> None:
    client = TestClient(create_app(service, tokens=TOKENS))
    response = sign_in(client, next_="/due")
    assert (303, "/due") == (response.status_code, response.headers["location"])
    cookie = cookies_set(response)[SESSION_COOKIE][SESSION_COOKIE]
    assert cookie.value.startswith("alice.")
    assert TOKEN not in cookie.value
    assert cookie["httponly"]
    assert "strict" == cookie["samesite"].lower()
    assert not cookie["secure"]  # plain http (localhost)

    https = TestClient(create_app(service, tokens=TOKENS), base_url="https://ops")
    cookie = cookies_set(sign_in(https))[SESSION_COOKIE][SESSION_COOKIE]
    assert cookie["secure"]


def test_a_wrong_token_is_401_with_the_form_again(service: MessageService) -> None:
    client = TestClient(create_app(service, tokens=TOKENS))
    response = sign_in(client, token="wrong-token-wrong-token", next_="/dead")
    assert 401 == response.status_code
    assert SESSION_COOKIE not in cookies_set(response)
    root = parse(response.text)
    assert "that token is not in the token file" == root.by_id("error").text
    assert "/dead" == form_of(response.text)["next"]


def test_signing_out_needs_csrf_and_ends_the_session(service: MessageService) -> None:
    client = TestClient(create_app(service, tokens=TOKENS))
    sign_in(client)
    assert 200 == client.get("/").status_code
    refused = client.post("/logout", data={"csrf": "nope"})
    assert (403, "missing or wrong CSRF token") == (refused.status_code, refused.text)
    assert 200 == client.get("/").status_code  # still signed in
    csrf = form_of(client.get("/").text)["csrf"]
    response = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert (303, "/login") == (response.status_code, response.headers["location"])
    cookie = cookies_set(response)[SESSION_COOKIE][SESSION_COOKIE]
    assert "" == cookie.value
    assert "0" == cookie["max-age"]
    assert 401 == client.get("/").status_code


def test_every_response_has_the_security_headers_and_a_csrf_nonce(
    service: MessageService,
) -> None:
    client = TestClient(create_app(service, tokens=TOKENS))
    first = client.get("/login")
    nonce = cookies_set(first)[CSRF_COOKIE][CSRF_COOKIE]
    assert nonce["httponly"]
    assert "strict" == nonce["samesite"].lower()
    for response in (first, client.get("/"), client.get("/static/console.css")):
        assert CONTENT_SECURITY_POLICY == response.headers["Content-Security-Policy"]
        assert "nosniff" == response.headers["X-Content-Type-Options"]
        assert "no-referrer" == response.headers["Referrer-Policy"]
        assert "DENY" == response.headers["X-Frame-Options"]
    assert "no-store" == first.headers["Cache-Control"]
    assert "no-store" != client.get("/static/console.css").headers.get("Cache-Control")
    # The nonce is set once and kept; one too long is replaced.
    assert CSRF_COOKIE not in cookies_set(client.get("/login"))
    client.cookies.set(CSRF_COOKIE, "x" * 65)
    assert CSRF_COOKIE in cookies_set(client.get("/login"))


def test_a_bearer_token_works_without_a_session(service: MessageService) -> None:
    client = TestClient(create_app(service, tokens=TOKENS))
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"Authorization": f"{scheme} {TOKEN} "}
        assert 200 == client.get("/metrics", headers=headers).status_code
    assert 401 == client.get("/", headers={"Authorization": TOKEN}).status_code


def test_signing_in_without_the_csrf_token_is_refused(service: MessageService) -> None:
    client = TestClient(create_app(service, tokens=TOKENS))
    client.get("/login")
    refused = client.post("/login", data={"token": TOKEN, "csrf": "x"})
    assert (403, "missing or wrong CSRF token") == (refused.status_code, refused.text)
    missing = client.post(
        "/login", data={"csrf": form_of(client.get("/login").text)["csrf"]}
    )
    assert 401 == missing.status_code
    assert 401 == client.get("/").status_code
