"""ResendPolicy.to_dict / from_dict: plain data in, plain data out."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from typing import Any

import pytest

from msgstate import InvalidArgument, ResendPolicy, RetryClass


def test_default_policy_as_plain_data() -> None:
    """to_dict writes intervals as seconds, the retry class by name."""
    expected = {
        "max_attempts": 5,
        "initial_interval": 1.0,
        "backoff_coefficient": 2.0,
        "maximum_interval": 60.0,
        "jitter": 0.0,
        "enforce_backoff": False,
        "max_age": None,
        "online_only_max_age": None,
        "unknown_code_class": "TRANSIENT",
        "resend_ambiguous": True,
        "send_timeout": 60.0,
    }
    assert expected == ResendPolicy().to_dict()


@pytest.mark.parametrize(
    "policy",
    [
        ResendPolicy(),
        ResendPolicy(
            max_attempts=3,
            initial_interval=timedelta(milliseconds=250),
            backoff_coefficient=1.5,
            maximum_interval=timedelta(minutes=5),
            jitter=0.2,
            enforce_backoff=True,
            max_age=timedelta(hours=1),
            online_only_max_age=timedelta(seconds=30),
            unknown_code_class=RetryClass.PERMANENT,
            resend_ambiguous=False,
            send_timeout=timedelta(seconds=2.5),
        ),
    ],
)
def test_round_trip(policy: ResendPolicy) -> None:
    """from_dict(to_dict(p)) == p."""
    assert policy == ResendPolicy.from_dict(policy.to_dict())


def test_missing_keys_keep_defaults() -> None:
    """Only the keys given change; the rest are the defaults."""
    expected = ResendPolicy(max_attempts=2, max_age=timedelta(seconds=90))
    assert expected == ResendPolicy.from_dict({"max_attempts": 2, "max_age": 90})


def test_from_toml() -> None:
    """A TOML document (no nulls) reads straight into a policy."""
    text = """
    max_attempts = 4
    initial_interval = 0.5
    maximum_interval = 30
    unknown_code_class = "AMBIGUOUS"
    """
    policy = ResendPolicy.from_dict(tomllib.loads(text))
    expected = ResendPolicy(
        max_attempts=4,
        initial_interval=timedelta(seconds=0.5),
        maximum_interval=timedelta(seconds=30),
        unknown_code_class=RetryClass.AMBIGUOUS,
    )
    assert expected == policy


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"max_attemps": 3}, "max_attemps"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_interval": 0}, "initial_interval"),
        ({"initial_interval": -1.5}, "initial_interval"),
        ({"initial_interval": "1s"}, "initial_interval"),
        ({"initial_interval": None}, "initial_interval"),
        ({"initial_interval": True}, "initial_interval"),
        ({"initial_interval": 1e-9}, "initial_interval"),
        ({"maximum_interval": float("inf")}, "maximum_interval"),
        ({"maximum_interval": 1e300}, "maximum_interval"),
        ({"max_age": "1h"}, "max_age"),
        ({"max_age": float("nan")}, "max_age"),
        ({"jitter": 2}, "jitter"),
        ({"backoff_coefficient": 0.5}, "backoff_coefficient"),
        ({"enforce_backoff": "yes"}, "enforce_backoff"),
        ({"unknown_code_class": "transient"}, "unknown_code_class"),
        ({"unknown_code_class": 3}, "unknown_code_class"),
        ({"send_timeout": 0}, "send_timeout"),
        ({"send_timeout": None}, "send_timeout"),
        ({"send_timeout": 1e300}, "send_timeout"),
        ({"send_timeout": 4e9}, "send_timeout"),
    ],
)
def test_bad_data_names_the_key(data: dict[str, Any], key: str) -> None:
    """Unknown keys and bad values raise InvalidArgument naming the key."""
    with pytest.raises(InvalidArgument) as raised:
        ResendPolicy.from_dict(data)
    assert key in raised.value.desc


def test_not_a_mapping() -> None:
    """Anything but a mapping is refused."""
    with pytest.raises(InvalidArgument):
        ResendPolicy.from_dict([("max_attempts", 3)])  # type: ignore[arg-type]
