"""PostgreSQL for the test suite: one fresh schema per store, dropped afterwards.

``MSGSTATE_TEST_POSTGRES_URL`` names the database (default: the local ``test``
database). Without a server the PostgreSQL tests skip with a one-line reason,
unless ``MSGSTATE_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
from functools import cache
from uuid import uuid4

import pytest

BASE_URL = os.environ.get(
    "MSGSTATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SCHEMA_PREFIX = "t_msgstate_"


def required() -> bool:
    return os.environ.get("MSGSTATE_REQUIRE_POSTGRES", "") not in ("", "0")


@cache
def unavailable_reason() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'msgstate[postgres]')"
    try:
        with psycopg.connect(BASE_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return (
            f"PostgreSQL at {BASE_URL} is unreachable: {' '.join(str(error).split())}"
        )
    return None


def require() -> None:
    """Skip (or fail, when required) the calling test if PostgreSQL is missing."""
    reason = unavailable_reason()
    if reason is None:
        return
    if required():
        pytest.fail(f"MSGSTATE_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


_CREATED: list[str] = []


def fresh_url() -> str:
    """A URL for a new, empty schema in the test database."""
    require()
    schema = f"{SCHEMA_PREFIX}{uuid4().hex[:16]}"
    _CREATED.append(schema)
    return f"{BASE_URL}?schema={schema}"


def register_schema(schema: str) -> str:
    """Have ``schema`` dropped at the end of the session (for schemas a test names
    itself, such as the URL fuzzer's); returns it."""
    if schema not in _CREATED:
        _CREATED.append(schema)
    return schema


def drop_test_schemas() -> None:
    """Drop the schemas this test session made (not other sessions' ones)."""
    if unavailable_reason() is not None or not _CREATED:
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(BASE_URL, autocommit=True) as connection:
        for name in _CREATED:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )
