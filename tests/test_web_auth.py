"""The console's token file, sessions and CSRF tokens (``msgstate.web.auth``)."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from msgstate import ErrorCode, InvalidArgument
from msgstate.web.auth import MIN_TOKEN_CHARS, Tokens, load_tokens, parse_tokens

TOKEN = "t" * MIN_TOKEN_CHARS
OTHER = "o" * MIN_TOKEN_CHARS
NAME_RULE = (
    "expected 'name:token' with a name of letters, digits and ._@- "
    "(at most 64 characters)"
)
TOKEN_RULE = (
    "must be at least 16 characters without spaces (make one with: "
    "python -c 'import secrets; print(secrets.token_urlsafe())')"
)


def refusal(text: str, source: str | None = None) -> str:
    with pytest.raises(InvalidArgument) as raised:
        if source is None:
            parse_tokens(text)
        else:
            parse_tokens(text, source=source)
    assert ErrorCode.INVALID_ARGUMENT == raised.value.code
    return str(raised.value.desc)


def test_parse_skips_blank_lines_and_comments_and_strips_spaces() -> None:
    text = f"# the console's users\n\n  ann : {TOKEN}  \n\tbob.ops@x-y_z:{OTHER}\n"
    assert {"ann": TOKEN, "bob.ops@x-y_z": OTHER} == parse_tokens(text)


def test_a_token_may_hold_colons_the_name_ends_at_the_first() -> None:
    token = "abc:" + TOKEN
    assert {"ann": token} == parse_tokens(f"ann:{token}")


def test_the_shortest_token_is_min_token_chars_long() -> None:
    assert 16 == MIN_TOKEN_CHARS
    assert {"ann": TOKEN} == parse_tokens(f"ann:{TOKEN}")
    message = refusal(f"ann:{TOKEN[1:]}")
    assert f"token file line 1: the token of 'ann' {TOKEN_RULE}" == message


@pytest.mark.parametrize(
    "line",
    ["ann", f"an n:{TOKEN}", f":{TOKEN}", f"{'a' * 65}:{TOKEN}", f"ann/x:{TOKEN}"],
)
def test_a_malformed_name_is_refused_naming_the_source_and_line(line: str) -> None:
    text = f"# users\nbob:{OTHER}\n{line}\n"
    assert f"token file line 3: {NAME_RULE}" == refusal(text)
    assert f"users.txt line 3: {NAME_RULE}" == refusal(text, source="users.txt")


def test_a_64_character_name_is_accepted() -> None:
    assert {"a" * 64: TOKEN} == parse_tokens(f"{'a' * 64}:{TOKEN}")


def test_a_token_with_a_space_inside_is_refused() -> None:
    message = refusal(f"ann:{TOKEN} {TOKEN}")
    assert f"token file line 1: the token of 'ann' {TOKEN_RULE}" == message


def test_names_and_tokens_must_be_unique() -> None:
    assert "token file line 2: the name 'ann' appears twice" == refusal(
        f"ann:{TOKEN}\nann:{OTHER}"
    )
    assert "token file line 2: the token of 'bob' is used twice" == refusal(
        f"ann:{TOKEN}\nbob:{TOKEN}"
    )


def test_a_file_without_a_token_line_is_refused() -> None:
    assert "token file has no 'name:token' line" == refusal("# nobody\n\n")
    assert "a.txt has no 'name:token' line" == refusal("", source="a.txt")


def test_load_reads_utf8_and_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    token = "ключ-" + TOKEN
    path.write_bytes(f"ann:{token}\n".encode())
    assert {"ann": token} == load_tokens(path)
    assert {"ann": token} == load_tokens(str(path))

    path.write_text(f"ann:{TOKEN}\nbob\n", encoding="utf-8")
    with pytest.raises(InvalidArgument) as raised:
        load_tokens(path)
    assert f"{path} line 2: {NAME_RULE}" == raised.value.desc

    missing = tmp_path / "missing.txt"
    with pytest.raises(InvalidArgument) as raised:
        load_tokens(missing)
    assert raised.value.desc.startswith(
        f"cannot read the token file {str(missing)!r}: "
    )
    assert "No such file" in raised.value.desc


def test_of_makes_a_fresh_32_byte_secret_per_start() -> None:
    first, second = Tokens.of({"ann": TOKEN}), Tokens.of({"ann": TOKEN})
    assert 32 == len(first.secret) == len(second.secret)
    assert first.secret != second.secret
    assert not Tokens.of(None).required
    assert Tokens.of({"ann": TOKEN}).required


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def test_session_and_csrf_values_are_the_documented_hmacs() -> None:
    """Known-answer test, computed here independently: a session cookie is
    ``name.HMAC-SHA256(secret, "session" NUL name NUL token)``, a CSRF token
    ``HMAC-SHA256(secret, "csrf" NUL nonce)``. The purpose label keeps one from
    standing in for the other; the token in the session's MAC means a changed token
    ends its sessions."""
    secret = bytes(range(32))
    tokens = Tokens({"ann": TOKEN, "ops.team": OTHER}, secret)
    signed = "session" + "\0" + "ann" + "\0" + TOKEN
    assert "ann." + _mac(secret, signed) == tokens.session_for("ann")
    assert _mac(secret, "csrf\0n0nce") == tokens.csrf_for("n0nce")
    assert re.fullmatch(r"[0-9a-f]{64}", tokens.csrf_for("n0nce"))


def test_sessions_round_trip_and_forgeries_are_refused() -> None:
    tokens = Tokens.of({"ann": TOKEN, "ops.team": OTHER})
    for name in ("ann", "ops.team"):
        assert name == tokens.name_of_session(tokens.session_for(name))
    ann = tokens.session_for("ann")
    assert None is tokens.name_of_session("ops.team" + ann[3:])
    assert None is tokens.name_of_session(ann[:-1] + ("0" if ann[-1] != "0" else "1"))
    assert None is tokens.name_of_session("nobody." + ann.partition(".")[2])
    assert None is tokens.name_of_session("")
    # Another start (another secret), or the same name with another token:
    assert None is Tokens.of({"ann": TOKEN}).name_of_session(ann)
    same_secret = Tokens({"ann": OTHER}, tokens.secret)
    assert None is same_secret.name_of_session(ann)


def test_csrf_tokens_match_their_nonce_only() -> None:
    tokens = Tokens.of({"ann": TOKEN})
    token = tokens.csrf_for("nonce-1")
    assert tokens.csrf_ok("nonce-1", token)
    assert not tokens.csrf_ok("nonce-2", token)
    assert not tokens.csrf_ok("nonce-1", token[:-1])
    assert not tokens.csrf_ok(None, token)
    assert not tokens.csrf_ok("nonce-1", None)
    assert not tokens.csrf_ok("", tokens.csrf_for(""))
    assert tokens.csrf_for("nonce-1") != tokens.csrf_for("nonce-2")


def test_name_of_token_compares_every_token() -> None:
    tokens = Tokens.of({"ann": TOKEN, "bob": OTHER})
    assert "ann" == tokens.name_of_token(TOKEN)
    assert "bob" == tokens.name_of_token(OTHER)
    assert None is tokens.name_of_token(TOKEN + "x")
    assert None is tokens.name_of_token("")
