"""msgstate.storage answers, word for word.

The exact refusals for bad database URLs and options (each option's range, the
long-path limits, bad cipher keys), passwords kept out of every message, the
eventsourcing environment :func:`service_env` gives for each URL and option,
what preparing a SQLite file or a PostgreSQL schema does (WAL mode, retries
while the file is locked, the schema created or left alone, the connection's
settings), which driver errors :func:`is_unavailable` counts as "unavailable",
:func:`store_name`, and :func:`select_streams` on each backend.
"""

from __future__ import annotations

import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import OperationalError, StoredEvent
from psycopg import errors, sql
from psycopg_pool import PoolClosed, PoolTimeout

from msgstate import (
    InvalidArgument,
    MessageService,
    StorageError,
    StorageUnavailable,
    generate_cipher_key,
)
from msgstate import storage as storage_module
from msgstate.storage import (
    is_unavailable,
    persistence_env,
    select_streams,
    service_env,
    storage_errors,
    store_name,
)
from tests import pg
from tests.test_unavailable import only_context

KNOWN = (
    "schema, pool_size, max_overflow, connect_timeout, lock_timeout, "
    "idle_in_transaction_timeout"
)
PG_DEFAULTS = {
    "POSTGRES_POOL_SIZE": "5",
    "POSTGRES_MAX_OVERFLOW": "10",
    "POSTGRES_CONNECT_TIMEOUT": "5",
    "POSTGRES_LOCK_TIMEOUT": "5",
    "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "5",
}


def refusal(url: object) -> str:
    """The description of the InvalidArgument ``persistence_env(url)`` raises."""
    with pytest.raises(InvalidArgument) as info:
        persistence_env(url)  # type: ignore[arg-type]
    return info.value.desc


def pg_env(**changes: str) -> dict[str, str]:
    """The environment of ``postgresql://u:pw@h/db`` with ``changes``."""
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_HOST": "h",
        "POSTGRES_PORT": "5432",
        "POSTGRES_DBNAME": "db",
        "POSTGRES_USER": "u",
        "POSTGRES_PASSWORD": "pw",
        "POSTGRES_SCHEMA": "public",
        "POSTGRES_PRE_PING": "y",
        **PG_DEFAULTS,
    }
    env.update(changes)
    return env


# --- URLs: memory, unknown schemes, encodings ------------------------------------


def test_url_refusals_word_for_word() -> None:
    assert "database URL must be a str, got 42" == refusal(42)
    assert (
        "database URL 'memory://\\udcff' is not valid Unicode (lone surrogates)"
        == refusal("memory://\udcff")
    )
    assert "database URL 'memory://\\x00' contains a NUL character" == refusal(
        "memory://\x00"
    )
    assert "database URL 'http://[::1': Invalid IPv6 URL" == refusal("http://[::1")
    assert (
        "database URL 'redis://u:***@h/' has an unknown scheme 'redis'; use "
        "memory://, sqlite:///path/to/file.db or sqlite:///:memory:"
        == refusal("redis://u:secret@h/")
    )


def test_postgres_scheme_spellings() -> None:
    """postgres:// is postgresql:// (any case), as libpq accepts both."""
    expected = pg_env(POSTGRES_PASSWORD="")
    assert expected == persistence_env("postgres://u@h/db")
    assert expected == persistence_env("POSTGRES://u@h/db")
    assert expected == persistence_env("postgresql://u@h/db")


# --- SQLite URLs ------------------------------------------------------------------


def test_sqlite_env(tmp_path: Path) -> None:
    assert {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": f"{tmp_path}/x.db",
        "SQLITE_LOCK_TIMEOUT": "30",
    } == persistence_env(f"sqlite:///{tmp_path}/x.db")


def test_sqlite_memory_env_names_a_private_shared_cache_database() -> None:
    env = persistence_env("sqlite:///:memory:")
    assert ["PERSISTENCE_MODULE", "SQLITE_DBNAME"] == sorted(env)
    assert "eventsourcing.sqlite" == env["PERSISTENCE_MODULE"]
    name = env["SQLITE_DBNAME"]
    assert name.startswith("file:msgstate-")
    assert name.endswith("?mode=memory&cache=shared")
    assert 32 == len(name) - len("file:msgstate-?mode=memory&cache=shared")
    assert name != persistence_env("sqlite:///:memory:")["SQLITE_DBNAME"]


def test_sqlite_url_refusals_word_for_word(tmp_path: Path) -> None:
    assert (
        "database URL 'sqlite://x': write sqlite:///relative/path.db, "
        "sqlite:////absolute/path.db or sqlite:///:memory:" == refusal("sqlite://x")
    )
    for url in (f"sqlite:///{tmp_path}/a?b", f"sqlite:///{tmp_path}/a#b"):
        assert f"database URL {url!r}: query strings are not supported" == refusal(url)
    for path in ("file:x.db", "FILE:x.db", "File:x.db"):
        url = f"sqlite:///{path}"
        assert (
            f"database URL {url!r}: SQLite 'file:' URIs are not supported; "
            "give a plain path"
        ) == refusal(url)
    url = f"sqlite:///{tmp_path}/nodir/"
    assert f"database URL {url!r} names a directory, not a file" == refusal(url)
    (tmp_path / "adir").mkdir()
    url = f"sqlite:///{tmp_path}/adir"
    assert f"database URL {url!r} names a directory, not a file" == refusal(url)
    url = f"sqlite:///{tmp_path}/no/such/x.db"
    assert (
        f"database URL {url!r}: directory '{tmp_path}/no/such' does not exist"
        == refusal(url)
    )


FOUR_BYTES = "\U0001d11e"  # a 4-byte UTF-8 character, so short URLs hit the limits


def test_long_file_names_name_the_limit_and_shorten_the_url() -> None:
    """A URL up to 100 characters is shown whole; a longer one cut to 97 + '...'."""
    name = FOUR_BYTES * 62  # 248 bytes, in 62 characters
    url = "sqlite:///" + "a" * 27 + "/" + name
    assert 100 == len(url)
    tail = (
        ": its file name is 248 bytes long; the limit is 247 bytes (SQLite adds "
        "'-journal' or '-wal' to it for its own files)"
    )
    assert f"database URL {url!r}{tail}" == refusal(url)
    url = "sqlite:///" + "a" * 28 + "/" + name
    assert 101 == len(url)
    assert f"database URL {url[:97] + '...'!r}{tail}" == refusal(url)


def test_a_file_name_of_247_bytes_is_accepted(tmp_path: Path) -> None:
    name = "x" * 247
    url = f"sqlite:///{tmp_path}/{name}"
    assert f"{tmp_path}/{name}" == persistence_env(url)["SQLITE_DBNAME"]


def test_long_directory_names_name_the_limit(tmp_path: Path) -> None:
    url = "sqlite:///" + FOUR_BYTES * 64 + "/x.db"  # a 256-byte directory name
    assert (
        f"database URL {url!r}: a directory name in its path is 256 bytes long; "
        "the limit is 255 bytes per name"
    ) == refusal(url)
    # 255 bytes is allowed: the answer is then about the missing directory.
    directory = f"{tmp_path}/" + "d" * 255
    url = f"sqlite:///{directory}/x.db"
    assert f"database URL {url!r}: directory {directory!r} does not exist" == refusal(
        url
    )


def test_the_whole_path_limit_is_4095_bytes() -> None:
    path = "a/" * 2045 + "xxxxx"
    assert 4095 == len(path)
    url = "sqlite:///" + path
    # At the limit the path is accepted (its directories are then missing).
    parent = path.rsplit("/", 1)[0]
    assert f"database URL {url!r}: directory {parent!r} does not exist" == refusal(url)
    url = "sqlite:///" + path + "x"
    assert (
        f"database URL {url[:97] + '...'!r}: its path is 4096 bytes long; "
        "the limit is 4095 bytes"
    ) == refusal(url)


# --- PostgreSQL URLs --------------------------------------------------------------


def test_postgres_env_from_url() -> None:
    assert pg_env() == persistence_env("postgresql://u:pw@h/db")
    assert pg_env(POSTGRES_PORT="6543") == persistence_env(
        "postgresql://u:pw@h:6543/db"
    )
    assert pg_env(POSTGRES_PORT="1") == persistence_env("postgresql://u:pw@h:1/db")
    assert pg_env(POSTGRES_PORT="65535") == persistence_env(
        "postgresql://u:pw@h:65535/db"
    )
    assert pg_env(POSTGRES_PASSWORD="") == persistence_env("postgresql://u@h/db")
    # Percent-encoding is undone; only the slash before the name is dropped.
    assert pg_env(
        POSTGRES_USER="a b", POSTGRES_PASSWORD="p@ss", POSTGRES_DBNAME="Xdb"
    ) == persistence_env("postgresql://a%20b:p%40ss@h/Xdb")


def test_postgres_options_at_their_limits() -> None:
    low = persistence_env(
        "postgresql://u:pw@h/db?schema=_S9&pool_size=1&max_overflow=0"
        "&connect_timeout=1&lock_timeout=1&idle_in_transaction_timeout=1"
    )
    assert (
        pg_env(
            POSTGRES_SCHEMA="_S9",
            POSTGRES_POOL_SIZE="1",
            POSTGRES_MAX_OVERFLOW="0",
            POSTGRES_CONNECT_TIMEOUT="1",
            POSTGRES_LOCK_TIMEOUT="1",
            POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT="1",
        )
        == low
    )
    high = persistence_env(
        "postgresql://u:pw@h/db?schema=" + "s" * 63 + "&pool_size=1000"
        "&max_overflow=1000&connect_timeout=3600&lock_timeout=3600"
        "&idle_in_transaction_timeout=3600"
    )
    assert (
        pg_env(
            POSTGRES_SCHEMA="s" * 63,
            POSTGRES_POOL_SIZE="1000",
            POSTGRES_MAX_OVERFLOW="1000",
            POSTGRES_CONNECT_TIMEOUT="3600",
            POSTGRES_LOCK_TIMEOUT="3600",
            POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT="3600",
        )
        == high
    )
    # Leading zeros are read as the number; the last of repeated options wins.
    assert pg_env(POSTGRES_POOL_SIZE="7") == persistence_env(
        "postgresql://u:pw@h/db?pool_size=5&pool_size=007"
    )


RANGES = [
    ("pool_size", 1, 1000),
    ("max_overflow", 0, 1000),
    ("connect_timeout", 1, 3600),
    ("lock_timeout", 1, 3600),
    ("idle_in_transaction_timeout", 1, 3600),
]


@pytest.mark.parametrize(("name", "low", "high"), RANGES)
def test_postgres_option_ranges_word_for_word(name: str, low: int, high: int) -> None:
    for value in (str(low - 1), str(high + 1), "", "abc", "-1", "1.5", "%EF%BC%95"):
        url = f"postgresql://u:pw@h/db?{name}={value}"
        shown = f"postgresql://u:***@h/db?{name}={value}"
        got = "\uff15" if value == "%EF%BC%95" else value
        assert (
            f"database URL {shown!r}: {name} must be a whole number from {low} to "
            f"{high}, got {got!r}"
        ) == refusal(url)


def test_postgres_url_refusals_word_for_word() -> None:
    cases = {
        "postgresql://u:pw@h:0/db": "port must be 1 to 65535",
        "postgresql://u:pw@/db": "write postgresql://user:password@host:port/dbname",
        "postgresql://u:pw@h/": "write postgresql://user:password@host:port/dbname",
        "postgresql://u:pw@h/a/b": "write postgresql://user:password@host:port/dbname",
        "postgresql://u:pw@h/db?schema=1a": "schema '1a' is not a plain identifier "
        "(letters, digits and _, at most 63, not first digit)",
        "postgresql://u:pw@h/db?schema=" + "s" * 64: f"schema {'s' * 64!r} is not a "
        "plain identifier (letters, digits and _, at most 63, not first digit)",
        "postgresql://u:pw@h/db?bogus=1": f"unknown option 'bogus' (known: {KNOWN})",
        "postgresql://u:pw@h/db?bogus": f"unknown option 'bogus' (known: {KNOWN})",
        "postgresql://u:pw@h/db?schema=s&Schema=t": "unknown option 'Schema' "
        f"(known: {KNOWN})",
    }
    for url, tail in cases.items():
        shown = url.replace(":pw@", ":***@")
        assert f"database URL {shown!r}: {tail}" == refusal(url)
    # The parser's own words are kept unless they quote a piece of a URL that
    # holds a password (they might quote the password).
    assert refusal("postgresql://h:x/db") == (
        "database URL 'postgresql://h:x/db': Port could not be cast to integer "
        "value as 'x'"
    )
    assert refusal("postgresql://u:pw@h:x/db") == (
        "database URL 'postgresql://u:***@h:x/db' cannot be parsed; percent-encode "
        "any of @ : / # ? in the user name and password"
    )
    for url in ("postgresql://u:p%00w@h/db", "postgresql://u%00:pw@h/db"):
        shown = url.replace(":p%00w@", ":***@").replace(":pw@", ":***@")
        assert f"database URL {shown!r} contains a NUL character" == refusal(url)
    url = "postgresql://u:pw@h/d%00b"
    assert "database URL 'postgresql://u:***@h/d%00b' contains a NUL character" == (
        refusal(url)
    )
    assert "database URL 'postgresql://:***@h/db' names no user" == refusal(
        "postgresql://:pw@h/db"
    )
    assert "database URL 'postgresql://h/db' names no user" == refusal(
        "postgresql://h/db"
    )


def test_passwords_never_appear_in_refusals() -> None:
    for url in (
        "postgresql://u:Sekr3t@h:0/db",
        "postgresql://u:Sekr3t@h/db?pool_size=0",
        "postgresql://u:Sekr3t@h/db?what=1",
        "redis://u:Sekr3t@h/db",
    ):
        desc = refusal(url)
        assert "Sekr3t" not in desc
        assert "//u:***@h" in desc


# --- store_name -------------------------------------------------------------------


def test_store_name() -> None:
    assert "postgresql://u@h:5432/db (schema public)" == store_name(pg_env())
    assert "postgresql://u@h:6543/db (schema s1)" == store_name(
        persistence_env("postgresql://u:pw@h:6543/db?schema=s1")
    )
    assert "/tmp/x.db" == store_name(persistence_env("sqlite:////tmp/x.db"))
    assert "memory" == store_name(persistence_env("memory://"))
    assert "memory" == store_name({})


# --- service_env: options, cipher keys, SQLite preparation -----------------------


def test_service_env_for_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSGSTATE_DATABASE_URL", raising=False)
    expected = {"PERSISTENCE_MODULE": "eventsourcing.popo", "CREATE_TABLE": "y"}
    assert expected == service_env(None)
    assert expected == service_env("memory://")
    assert {**expected, "CREATE_TABLE": "n"} == service_env(
        "memory://", create_tables=False
    )
    assert {
        **expected,
        "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
    } == service_env("memory://", compress=True)
    key = generate_cipher_key()
    assert {
        **expected,
        "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
        "CIPHER_KEY": key,
    } == service_env("memory://", cipher_key=key)


def test_service_env_flags_are_checked_by_name() -> None:
    with pytest.raises(InvalidArgument) as info:
        service_env("memory://", create_tables="yes")  # type: ignore[arg-type]
    assert "create_tables must be a bool, got 'yes'" == info.value.desc
    with pytest.raises(InvalidArgument) as info:
        service_env("memory://", compress=1)  # type: ignore[arg-type]
    assert "compress must be a bool, got 1" == info.value.desc


def test_cipher_keys_of_16_24_and_32_bytes_are_accepted() -> None:
    for size in (16, 24, 32):
        key = storage_module.base64.b64encode(bytes(range(size))).decode()
        assert key == service_env("memory://", cipher_key=key)["CIPHER_KEY"]


@pytest.mark.parametrize(
    "key",
    [
        "",
        "not base64!",
        "c2hvcnQ=",
        "é" * 44,
        # Valid keys with characters outside the base64 alphabet are refused,
        # not silently cleaned.
        "AAAAAAAAAAAAAAAAAAAAAA==!",
        "AAAAAAAA AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        storage_module.base64.b64encode(bytes(17)).decode(),
        storage_module.base64.b64encode(bytes(25)).decode(),
        storage_module.base64.b64encode(bytes(64)).decode(),
    ],
)
def test_bad_cipher_keys_word_for_word(key: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        service_env("memory://", cipher_key=key)
    assert (
        "cipher_key must be 16, 24 or 32 bytes in base64 "
        "(use msgstate.generate_cipher_key())"
    ) == info.value.desc


def test_a_cipher_key_that_is_not_a_str() -> None:
    with pytest.raises(InvalidArgument) as info:
        service_env("memory://", cipher_key=b"x" * 32)  # type: ignore[arg-type]
    assert "cipher_key must be a str from generate_cipher_key()" == info.value.desc


def test_cipher_key_without_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)  # import now fails
    with pytest.raises(InvalidArgument) as info:
        service_env("memory://", cipher_key=generate_cipher_key())
    assert (
        "cipher_key needs the cryptography package: pip install 'msgstate[encryption]'"
    ) == info.value.desc


def test_generate_cipher_key_format() -> None:
    keys = {generate_cipher_key() for _ in range(20)}
    assert 20 == len(keys)
    for key in keys:
        assert 44 == len(key)
        assert key.endswith("=")
        assert 32 == len(storage_module.base64.b64decode(key, validate=True))


def test_service_env_puts_a_new_sqlite_file_in_wal_mode(tmp_path: Path) -> None:
    file = tmp_path / "new.db"
    env = service_env(f"sqlite:///{file}")
    assert {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(file),
        "SQLITE_LOCK_TIMEOUT": "30",
        "CREATE_TABLE": "y",
    } == env
    assert file.exists()
    with sqlite3.connect(file) as connection:
        assert ("wal",) == connection.execute("PRAGMA journal_mode").fetchone()
        assert [] == connection.execute("SELECT name FROM sqlite_master").fetchall()
    connection.close()


def test_sqlite_errors_name_the_file(tmp_path: Path) -> None:
    file = tmp_path / "junk.db"
    file.write_bytes(b"this is not a SQLite database, not at all" * 100)
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        service_env(f"sqlite:///{file}")
    assert f"store {file}: file is not a database" == info.value.desc
    assert time.monotonic() - start < 5  # not retried: only locks are waited out


class FlakyConnect:
    """sqlite3.connect whose first connections fail with the given errors.

    SQLite's busy handler covers most waits, so the retry loop of the private
    ``_prepare_sqlite`` (reached through ``service_env``) is driven by faults
    injected at the driver.
    """

    def __init__(self, *messages: str) -> None:
        self.messages = list(messages)
        self.timeouts: list[object] = []
        self.real = sqlite3.connect

    def __call__(self, name: str, **kwargs: Any) -> sqlite3.Connection:
        self.timeouts.append(kwargs.get("timeout"))
        if self.messages:
            raise sqlite3.OperationalError(self.messages.pop(0))
        return self.real(name, **kwargs)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses ``_prepare_sqlite`` takes (nothing sleeps)."""
    slept: list[float] = []
    monkeypatch.setattr(storage_module.time, "sleep", slept.append)
    return slept


def test_a_locked_sqlite_file_is_retried_with_growing_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    flaky = FlakyConnect(*["database is locked"] * 6, "database is busy")
    monkeypatch.setattr(storage_module.sqlite3, "connect", flaky)
    file = tmp_path / "locked.db"
    service_env(f"sqlite:///{file}")
    assert [0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1] == sleeps
    assert [30.0] * 8 == flaky.timeouts
    with sqlite3.connect(file) as connection:
        assert ("wal",) == connection.execute("PRAGMA journal_mode").fetchone()
    connection.close()


def test_a_sqlite_lock_is_waited_out_until_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    flaky = FlakyConnect("database is locked")
    monkeypatch.setattr(storage_module.sqlite3, "connect", flaky)
    clock = iter([100.0, 129.9, 200.0])
    monkeypatch.setattr(storage_module.time, "monotonic", lambda: next(clock))
    service_env(f"sqlite:///{tmp_path / 'a.db'}")  # 129.9 < 130: retried
    assert [0.005] == sleeps
    flaky = FlakyConnect("database is locked", "database is locked")
    monkeypatch.setattr(storage_module.sqlite3, "connect", flaky)
    clock = iter([100.0, 110.0, 130.0])
    monkeypatch.setattr(storage_module.time, "monotonic", lambda: next(clock))
    with pytest.raises(StorageError) as info:
        service_env(f"sqlite:///{tmp_path / 'b.db'}")
    assert f"store {tmp_path / 'b.db'}: database is locked" == info.value.desc
    assert [0.005, 0.005] == sleeps


# --- storage_errors and is_unavailable -------------------------------------------


def wrapped(cause: BaseException) -> Exception:
    """An eventsourcing error raised from ``cause``, as its datastore does."""
    try:
        raise OperationalError(str(cause)) from cause
    except OperationalError as error:
        return error


UNAVAILABLE = [
    psycopg.OperationalError("server closed the connection unexpectedly"),
    psycopg.InterfaceError("the connection is closed"),
    PoolTimeout("couldn't get a connection after 2.00 sec"),
    errors.AdminShutdown("terminating connection"),  # 57P01
    errors.CrashShutdown("crash"),  # 57P02
    errors.CannotConnectNow("the database system is starting up"),  # 57P03
    errors.ConnectionFailure("connection failure"),  # 08006
    errors.SqlclientUnableToEstablishSqlconnection("cannot connect"),  # 08001
]
AVAILABLE = [
    errors.LockNotAvailable("lock timeout"),  # 55P03, an OperationalError
    errors.QueryCanceled("canceling statement"),  # 57014, an OperationalError
    errors.UniqueViolation("duplicate key"),
    errors.UndefinedTable("no such table"),
    PoolClosed("the pool is closed"),
    ValueError("not a database error"),
    sqlite3.OperationalError("database is locked"),
]


@pytest.mark.parametrize("cause", UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_unavailable_driver_errors(cause: Exception) -> None:
    assert [True, True, True] == [
        is_unavailable(cause),
        is_unavailable(wrapped(cause)),
        is_unavailable(only_context(cause)),
    ]


@pytest.mark.parametrize("cause", AVAILABLE, ids=lambda e: type(e).__name__)
def test_other_errors_are_available(cause: Exception) -> None:
    assert [False, False, False] == [
        is_unavailable(cause),
        is_unavailable(wrapped(cause)),
        is_unavailable(only_context(cause)),
    ]


def test_storage_unavailable_is_unavailable_without_psycopg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert is_unavailable(StorageUnavailable("down")) is True
    monkeypatch.delitem(sys.modules, "psycopg")
    assert is_unavailable(StorageUnavailable("down")) is True
    assert is_unavailable(OSError("no route")) is False
    assert is_unavailable(StorageError("damaged")) is False


def test_storage_errors_translate_driver_errors() -> None:
    with pytest.raises(StorageUnavailable) as down, storage_errors("db", "pw"):
        raise psycopg.OperationalError("connection to pw lost")
    assert "store db is unavailable: connection to *** lost" == down.value.desc
    with pytest.raises(StorageError) as dup, storage_errors("db"):
        raise errors.UniqueViolation("duplicate\n  key")
    assert type(dup.value) is StorageError
    assert "store db: duplicate key" == dup.value.desc
    with pytest.raises(StorageError) as locked, storage_errors("f.db"):
        raise sqlite3.OperationalError("database is locked")
    assert "store f.db: database is locked" == locked.value.desc
    with pytest.raises(StorageError) as disk, storage_errors("f.db"):
        raise OSError(28, "No space left on device")
    assert "store f.db: [Errno 28] No space left on device" == disk.value.desc


def test_storage_errors_leave_other_errors_alone() -> None:
    with pytest.raises(InvalidArgument) as ours, storage_errors("db"):
        raise InvalidArgument("ours already")
    assert "ours already" == ours.value.desc
    with pytest.raises(ValueError, match=r"\Anot storage\Z"), storage_errors("db"):
        raise ValueError("not storage")


# --- PostgreSQL preparation --------------------------------------------------------


def base() -> dict[str, str]:
    """The test database's environment (user, host, port, dbname)."""
    pg.require()
    return persistence_env(pg.BASE_URL)


def schema_exists(schema: str) -> bool:
    with psycopg.connect(pg.BASE_URL) as connection:
        row = connection.execute(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    return row is not None


def test_service_env_creates_the_schema_only_when_asked() -> None:
    url = pg.fresh_url()
    schema = url.split("schema=")[1]
    env = service_env(url, create_tables=False)
    assert not schema_exists(schema)
    assert {**base(), "POSTGRES_SCHEMA": schema, "CREATE_TABLE": "n"} == env
    env = service_env(url)
    assert schema_exists(schema)
    assert {**base(), "POSTGRES_SCHEMA": schema, "CREATE_TABLE": "y"} == env
    assert env == service_env(url)  # an existing schema is fine


def test_an_unreachable_server_is_named_without_its_password() -> None:
    """The password is replaced wherever it appears in the driver's message."""
    parts = urlsplit(pg.BASE_URL)
    url = f"postgresql://{parts.username}:refused@127.0.0.1:1{parts.path}"
    with pytest.raises(StorageUnavailable) as info:
        service_env(url)
    assert (
        f"store postgresql://{parts.username}@127.0.0.1:1{parts.path} (schema "
        "public) is unavailable: connection failed: connection to server at "
        '"127.0.0.1", port 1 failed: Connection *** Is the server running on '
        "that host and accepting TCP/IP connections?"
    ) == info.value.desc


def test_the_connection_uses_every_setting_of_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What reaches psycopg.connect (a spy: the test server trusts any password)."""
    calls: list[dict[str, Any]] = []
    real = psycopg.connect

    def spy(*args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(psycopg, "connect", spy)
    env = base()
    url = pg.fresh_url().replace("//", f"//{env['POSTGRES_USER']}:pa%3Ass@", 1)
    url = url.replace(f"{env['POSTGRES_USER']}@", "", 1) + "&connect_timeout=7"
    service_env(url)
    assert [
        {
            "host": env["POSTGRES_HOST"],
            "port": env["POSTGRES_PORT"],
            "dbname": env["POSTGRES_DBNAME"],
            "user": env["POSTGRES_USER"],
            "password": "pa:ss",
            "connect_timeout": 7,
            "autocommit": True,
        }
    ] == calls


def test_connect_timeout_bounds_the_wait_for_a_silent_server() -> None:
    """A server that never answers fails after connect_timeout, as unavailable."""
    env = base()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts TCP connections, never answers them
    port = listener.getsockname()[1]
    url = (
        f"postgresql://{env['POSTGRES_USER']}@127.0.0.1:{port}/"
        f"{env['POSTGRES_DBNAME']}?connect_timeout=2"
    )
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            service_env(url)
        except BaseException as error:  # reported below
            outcome.append(error)

    thread = threading.Thread(target=run)
    start = time.monotonic()
    thread.start()
    thread.join(8)
    elapsed = time.monotonic() - start
    listener.close()  # releases a connection still waiting (if the test fails)
    thread.join(10)
    assert elapsed < 8
    assert [StorageUnavailable] == [type(e) for e in outcome]
    assert "timeout expired" in str(outcome[0])


# --- select_streams ---------------------------------------------------------------


def filled(url: str) -> tuple[MessageService, list[UUID]]:
    service = MessageService.open(url, cache_size=0)
    for msg_id in ("m1", "m2", "m3"):
        service.create(msg_id, sender="a", user_id="b")
        service.record_failure(msg_id, code=6012)
    return service, [service.stream_id(m) for m in ("m1", "m2", "m3")]


def expected_streams(
    service: MessageService, ids: list[UUID]
) -> dict[UUID, list[StoredEvent]]:
    return {aid: list(service.recorder.select_events(aid)) for aid in ids}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_select_streams_reads_every_stream_once(backend: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}" if backend == "sqlite" else pg.fresh_url()
    service, ids = filled(url)
    unknown = UUID(int=7)
    got = select_streams(service.recorder, [*ids, unknown])
    assert got is not None
    assert expected_streams(service, ids) == got
    assert [2, 2, 2] == [len(got[aid]) for aid in ids]
    for aid in ids:
        assert [aid, aid] == [event.originator_id for event in got[aid]]
        assert [1, 2] == [event.originator_version for event in got[aid]]
    assert {} == select_streams(service.recorder, [])
    assert {ids[1]: got[ids[1]]} == select_streams(service.recorder, [ids[1]])


def test_select_streams_does_not_know_the_memory_store() -> None:
    import eventsourcing.postgres  # noqa: F401 - loaded, as a PostgreSQL user has it

    service, ids = filled("memory://")
    assert select_streams(service.recorder, ids) is None


def test_opening_an_existing_schema_runs_no_ddl() -> None:
    """A role that may not create schemas opens an existing one all the same.

    (PostgreSQL checks the CREATE privilege before ``IF NOT EXISTS``, so any
    CREATE SCHEMA run on an existing schema would fail for this role.)
    """
    env = base()
    url = pg.fresh_url()
    schema = url.split("schema=")[1]
    service_env(url)
    role = f"{pg.SCHEMA_PREFIX}role_{uuid4().hex[:12]}"
    with psycopg.connect(pg.BASE_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        where = f"{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}"
        role_url = f"postgresql://{role}@{where}/{env['POSTGRES_DBNAME']}"
        got = service_env(f"{role_url}?schema={schema}")
        assert (role, schema) == (got["POSTGRES_USER"], got["POSTGRES_SCHEMA"])
        missing = pg.fresh_url().split("schema=")[1]
        assert {"POSTGRES_SCHEMA": missing, "CREATE_TABLE": "n"}.items() <= (
            service_env(f"{role_url}?schema={missing}", create_tables=False).items()
        )
        with pytest.raises(StorageError) as info:
            service_env(f"{role_url}?schema={missing}")
        assert (
            f"store postgresql://{role}@{where}/{env['POSTGRES_DBNAME']} (schema "
            f"{missing}): permission denied for database {env['POSTGRES_DBNAME']}"
        ) == info.value.desc
    finally:
        with psycopg.connect(pg.BASE_URL, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_schema_created_meanwhile_by_another_session_is_accepted() -> None:
    """The loser of a race to create the schema carries on (UniqueViolation)."""
    url = pg.fresh_url()
    schema = url.split("schema=")[1]
    other = psycopg.connect(pg.BASE_URL)
    watcher = psycopg.connect(pg.BASE_URL, autocommit=True)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(service_env(url)["POSTGRES_SCHEMA"])
        except BaseException as error:  # reported below
            outcome.append(error)

    thread = threading.Thread(target=run)
    try:
        other.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        thread.start()  # sees no schema, then waits for the other session
        deadline = time.monotonic() + 10
        waiting = None
        while waiting is None and time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query ILIKE %s",
                (f"%CREATE SCHEMA%{schema}%",),
            ).fetchone()
            time.sleep(0.01)
        assert waiting is not None
        other.commit()
        thread.join(10)
    finally:
        other.close()
        watcher.close()
    assert [schema] == outcome


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:Kq7@Zx9@h:0/db", "postgresql://u:***@h:0/db"),
        ("postgresql://u:Kq7/Zx9@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:Kq7#Zx9@h:0/db", "postgresql://u:***@h:0/db"),
    ],
)
def test_a_password_with_unescaped_characters_is_never_shown(
    url: str, shown: str
) -> None:
    """@, / and # in a password (they should be percent-encoded) used to show
    part or all of it: the redaction ran to the first @ only, and the parser's
    message quoted what it read as the port."""
    message = refusal(url)
    assert f"database URL {shown!r}" in message
    assert "Kq7" not in message
    assert "Zx9" not in message


def test_the_parsers_words_are_kept_when_no_password_is_in_the_url() -> None:
    assert refusal("postgresql://h\u2100x/db") == (
        "database URL 'postgresql://h\u2100x/db': netloc 'h\u2100x' contains "
        "invalid characters under NFKC normalization"
    )


@pytest.mark.parametrize(
    "url", ["postgresql://u:Kq7\u2100Zx9@h/db", "postgresql://u:Kq7\nZx9@h:0/db"]
)
def test_a_password_is_hidden_from_the_parsers_words_and_across_lines(
    url: str,
) -> None:
    """The parser's NFKC message quotes the whole netloc (the password with it),
    and a newline in the password must not end the redaction early."""
    message = refusal(url)
    assert "Kq7" not in message
    assert "Zx9" not in message
