"""Shard maps for the test suite: three PostgreSQL servers, fresh schemas per map.

``MSGSTATE_TEST_SHARD_URLS`` (space-separated; set by ``.ci/run`` from
``.ci/shard-postgres``) names one database on each of three servers; the default
is the ``postgres`` database of the local clusters on ports 5433, 5434 and 5435.
Each map gets a new schema in each database, dropped at the end of the session.
Without the servers the tests skip, unless ``MSGSTATE_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from uuid import uuid4

import pytest

from msgstate import ShardMap
from tests import pg

BASE_URLS = tuple(
    os.environ.get(
        "MSGSTATE_TEST_SHARD_URLS",
        " ".join(
            f"postgresql://postgres@127.0.0.1:{port}/postgres"
            for port in (5433, 5434, 5435)
        ),
    ).split()
)
SCHEMA_PREFIX = "t_shard_"

_CREATED: list[tuple[str, str]] = []


@cache
def unavailable_reason() -> str | None:
    """Why the shard servers cannot be used, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'msgstate[postgres]')"
    for url in BASE_URLS:
        try:
            with psycopg.connect(url, connect_timeout=3) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as error:
            return f"shard server {url} is unreachable: {' '.join(str(error).split())}"
    return None


def require() -> None:
    """Skip (or fail, under MSGSTATE_REQUIRE_POSTGRES=1) without the servers."""
    reason = unavailable_reason()
    if reason is None:
        return
    if pg.required():
        pytest.fail(f"MSGSTATE_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def fresh_urls(count: int = 3) -> list[str]:
    """``count`` new empty stores, spread over the servers in turn."""
    require()
    urls = []
    for i in range(count):
        base = BASE_URLS[i % len(BASE_URLS)]
        schema = f"{SCHEMA_PREFIX}{uuid4().hex[:16]}"
        _CREATED.append((base, schema))
        urls.append(f"{base}?schema={schema}")
    return urls


def even_map(urls: list[str], virtual_shards: int = 16) -> ShardMap:
    """``urls`` owning equal runs of ``virtual_shards`` (the first gets the rest)."""
    per = virtual_shards // len(urls)
    databases: dict[str, str] = {}
    start = 0
    for i, url in enumerate(urls):
        end = virtual_shards - 1 if i == len(urls) - 1 else start + per - 1
        databases[url] = f"{start}-{end}" if end >= start else ""
        start = end + 1
    return ShardMap(virtual_shards, databases)


def fresh_map(directory: Path, count: int = 3, virtual_shards: int = 16) -> Path:
    """A map of ``count`` new stores written to ``directory/shards.toml``."""
    path = directory / "shards.toml"
    even_map(fresh_urls(count), virtual_shards).save(path)
    return path


def drop_schemas() -> None:
    """Drop the schemas this session made on the shard servers."""
    if not _CREATED or unavailable_reason() is not None:
        return
    import psycopg
    from psycopg import sql

    by_base: dict[str, list[str]] = {}
    for base, schema in _CREATED:
        by_base.setdefault(base, []).append(schema)
    for base, schemas in by_base.items():
        with psycopg.connect(base, autocommit=True) as connection:
            for schema in schemas:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(schema)
                    )
                )
