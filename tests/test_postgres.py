"""PostgreSQL-specific behaviour: URL options, errors, schema setup."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from msgstate import (
    ErrorCode,
    InvalidArgument,
    MessageService,
    StorageError,
    StorageUnavailable,
)
from msgstate.application import setup_schema
from msgstate.storage import persistence_env
from tests import pg
from tests.support import opened


def test_url_options_become_settings() -> None:
    """Pool, timeouts and schema come from the URL query; defaults never hang."""
    env = persistence_env(
        "postgresql://u:p%40ss@db.example:6543/chat?schema=tenant_1&pool_size=2"
        "&lock_timeout=9"
    )
    expected = {
        "POSTGRES_HOST": "db.example",
        "POSTGRES_PORT": "6543",
        "POSTGRES_DBNAME": "chat",
        "POSTGRES_USER": "u",
        "POSTGRES_PASSWORD": "p@ss",
        "POSTGRES_SCHEMA": "tenant_1",
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_LOCK_TIMEOUT": "9",
        "POSTGRES_CONNECT_TIMEOUT": "5",
    }
    assert expected == {k: env[k] for k in expected}
    defaults = persistence_env("postgresql://u@h/d")
    assert ("5", "public") == (
        defaults["POSTGRES_LOCK_TIMEOUT"],
        defaults["POSTGRES_SCHEMA"],
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:secret@h/d?schema=x;DROP TABLE y",
        "postgresql://u:secret@h/d?schema=1abc",
        'postgresql://u:secret@h/d?schema=a"b',
        "postgresql://u:secret@h/d?schema=" + "a" * 64,
        "postgresql://u:secret@h/d?lock_timeout=0",
        "postgresql://u:secret@h/d?pool_size=-1",
        "postgresql://u:secret@h/d?colour=blue",
        "postgresql://u:secret@h:notaport/d",
        "postgresql://u:secret@h/",
        "postgresql://:secret@h/d",
        "postgresql:///d",
    ],
)
def test_malformed_urls_are_invalid_and_hide_the_password(url: str) -> None:
    """A malformed URL or identifier raises InvalidArgument without the password."""
    with pytest.raises(InvalidArgument) as info:
        persistence_env(url)
    assert "secret" not in str(info.value)


def test_unreachable_server_is_a_storage_error_naming_host_and_db() -> None:
    """A refused connection raises StorageError naming host and database only.

    It is the StorageError subclass StorageUnavailable (try again later).
    """
    with pytest.raises(StorageError) as info:
        MessageService.open("postgresql://someone:hunter2@127.0.0.1:1/chatdb")
    text = str(info.value)
    assert isinstance(info.value, StorageUnavailable)
    assert ErrorCode.STORAGE_UNAVAILABLE == info.value.code
    assert "127.0.0.1" in text
    assert "chatdb" in text
    assert "hunter2" not in text


def test_missing_database_is_a_storage_error() -> None:
    """A database that does not exist raises StorageError saying so."""
    pg.require()
    parts = urlsplit(pg.BASE_URL)
    url = parts._replace(path="/msgstate_no_such_db").geturl()
    with pytest.raises(StorageError) as info:
        MessageService.open(url)
    assert "msgstate_no_such_db" in str(info.value)


def test_setup_schema_then_workers_without_create() -> None:
    """setup_schema creates schema and tables; create_tables=False workers use them."""
    url = pg.fresh_url()
    setup_schema(url)
    setup_schema(url)  # idempotent
    worker = MessageService.open(url, create_tables=False)
    worker.create("m1", sender="a", user_id="b")
    other = MessageService.open(url, create_tables=False)
    assert "m1" == other.get("m1").msg_id


def test_worker_without_setup_fails_clearly() -> None:
    """create_tables=False on an empty schema raises StorageError at opening."""
    url = pg.fresh_url()
    with pytest.raises(StorageError) as info:
        MessageService.open(url, create_tables=False)
    assert "does not exist" in str(info.value)


def test_subclass_uses_the_same_tables() -> None:
    """A MessageService subclass reads what MessageService wrote (same tables)."""

    class Audited(MessageService):
        pass

    url = pg.fresh_url()
    with opened(url) as service:
        service.create("m1", sender="a", user_id="b")
    audited = Audited.open(url)
    try:
        assert "m1" == audited.get("m1").msg_id
    finally:
        audited.close()  # not left to a garbage collection in a pool thread
