"""Where events are stored: database URLs, their settings, and storage errors.

One URL chooses the store (``memory://``, ``sqlite:///...``, ``postgresql://...``)
and is authoritative: eventsourcing's own environment variables never redirect
storage. Errors from the database drivers become :class:`~msgstate.StorageError`,
naming the store but never its password.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID, uuid4

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    MapperDeserialisationError,
    Notification,
    PersistenceError,
    Recorder,
    StoredEvent,
)

from msgstate import _validate as check
from msgstate.errors import (
    InvalidArgument,
    MsgStateError,
    ShardMoved,
    ShardMoving,
    StorageError,
    StorageUnavailable,
)

__all__ = [
    "DATABASE_URL_ENV",
    "generate_cipher_key",
    "is_unavailable",
    "persistence_env",
    "select_streams",
    "service_env",
    "storage_errors",
    "store_name",
]

NAME_MAX = 255
"""The longest file or directory name (bytes) in a SQLite URL's path."""
PATH_MAX = 4095
"""The longest SQLite path (bytes): Linux's PATH_MAX less its terminating NUL."""

DATABASE_URL_ENV = "MSGSTATE_DATABASE_URL"
"""The environment variable read when ``MessageService.open`` gets no URL."""


def persistence_env(url: str) -> dict[str, str]:
    """The eventsourcing settings for a msgstate database URL.

    ``memory://``; ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``
    or ``sqlite:///:memory:``. Raises :class:`InvalidArgument` naming the URL.
    """
    if not isinstance(url, str):
        raise InvalidArgument(f"database URL must be a str, got {url!r}")
    shown = _redact(url)
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(
            f"database URL {shown!r} is not valid Unicode (lone surrogates)"
        ) from None
    if "\x00" in url:
        raise InvalidArgument(f"database URL {shown!r} contains a NUL character")
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise _unparsable(url, shown, error) from None
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if url.lower() != "memory://":
            raise InvalidArgument(f"database URL {shown!r}: use exactly 'memory://'")
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if scheme == "sqlite":
        return _sqlite_env(url)
    if scheme in ("postgresql", "postgres"):
        return _postgres_env(url)
    raise InvalidArgument(
        f"database URL {_redact(url)!r} has an unknown scheme {parts.scheme!r}; "
        "use memory://, sqlite:///path/to/file.db or sqlite:///:memory:"
    )


def _sqlite_env(url: str) -> dict[str, str]:
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix) or len(url) == len(prefix):
        raise InvalidArgument(
            f"database URL {_redact(url)!r}: write sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite:///:memory:"
        )
    path = url[len(prefix) :]
    if path == ":memory:":
        # A private in-memory database for this service (shared by its connections).
        dbname = f"file:msgstate-{uuid4().hex}?mode=memory&cache=shared"
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": dbname}
    if "?" in path or "#" in path:
        raise InvalidArgument(f"database URL {url!r}: query strings are not supported")
    if path.lower().startswith("file:"):
        raise InvalidArgument(
            f"database URL {url!r}: SQLite 'file:' URIs are not supported; "
            "give a plain path"
        )
    if path.endswith("/"):
        raise InvalidArgument(f"database URL {url!r} names a directory, not a file")
    # Checked here: past these limits the OS answers with a raw OSError.
    shown = url if len(url) <= 100 else url[:97] + "..."
    *directories, name = path.split("/")
    too_long = [p for p in directories if len(os.fsencode(p)) > NAME_MAX]
    if too_long:
        raise InvalidArgument(
            f"database URL {shown!r}: a directory name in its path is "
            f"{len(os.fsencode(too_long[0]))} bytes long; the limit is "
            f"{NAME_MAX} bytes per name"
        )
    if len(os.fsencode(name)) > NAME_MAX - len("-journal"):
        raise InvalidArgument(
            f"database URL {shown!r}: its file name is {len(os.fsencode(name))} "
            f"bytes long; the limit is {NAME_MAX - len('-journal')} bytes (SQLite "
            "adds '-journal' or '-wal' to it for its own files)"
        )
    if len(os.fsencode(path)) > PATH_MAX:
        raise InvalidArgument(
            f"database URL {shown!r}: its path is {len(os.fsencode(path))} bytes "
            f"long; the limit is {PATH_MAX} bytes"
        )
    file = Path(path)
    try:
        is_dir, parent_is_dir = file.is_dir(), file.parent.is_dir()
    except OSError as error:  # e.g. a directory on the way that may not be read
        raise InvalidArgument(
            f"database URL {shown!r}: its path cannot be used: {error.strerror}"
        ) from None
    if is_dir:
        raise InvalidArgument(f"database URL {url!r} names a directory, not a file")
    if not parent_is_dir:
        raise InvalidArgument(
            f"database URL {url!r}: directory {str(file.parent)!r} does not exist"
        )
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(file),
        "SQLITE_LOCK_TIMEOUT": "30",
    }


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_POSTGRES_OPTIONS = {
    # URL query option: (eventsourcing setting, default, lowest, highest)
    "pool_size": ("POSTGRES_POOL_SIZE", 5, 1, 1000),
    "max_overflow": ("POSTGRES_MAX_OVERFLOW", 10, 0, 1000),
    "connect_timeout": ("POSTGRES_CONNECT_TIMEOUT", 5, 1, 3600),
    "lock_timeout": ("POSTGRES_LOCK_TIMEOUT", 5, 1, 3600),
    "idle_in_transaction_timeout": (
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
        5,
        1,
        3600,
    ),
}


def _postgres_env(url: str) -> dict[str, str]:
    """Settings for ``postgresql://user[:password]@host[:port]/dbname[?options]``.

    Options: ``schema`` (a plain identifier, default ``public``), ``pool_size``,
    ``max_overflow``, ``connect_timeout``, ``lock_timeout`` and
    ``idle_in_transaction_timeout`` (whole seconds; none can be 0, so nothing
    waits forever).
    """
    shown = _redact(url)
    try:
        parts = urlsplit(url)
        port = 5432 if parts.port is None else parts.port
    except ValueError as error:
        raise _unparsable(url, shown, error) from None
    if not 1 <= port <= 65535:
        raise InvalidArgument(f"database URL {shown!r}: port must be 1 to 65535")
    dbname = unquote(parts.path.lstrip("/"))
    names = (dbname, unquote(parts.username or ""), unquote(parts.password or ""))
    if any("\x00" in name for name in names):
        raise InvalidArgument(f"database URL {shown!r} contains a NUL character")
    if not parts.hostname or not dbname or "/" in dbname:
        raise InvalidArgument(
            f"database URL {shown!r}: write postgresql://user:password@host:port/dbname"
        )
    if not parts.username:
        raise InvalidArgument(f"database URL {shown!r} names no user")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(port),
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_USER": unquote(parts.username),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": "public",
        # Check each pooled connection before use, so connections broken by a
        # server restart are replaced rather than failing a command.
        "POSTGRES_PRE_PING": "y",
    }
    for setting, default, _, _ in _POSTGRES_OPTIONS.values():
        env[setting] = str(default)
    query = parse_qs(parts.query, keep_blank_values=True)  # lenient: never raises
    for name, values in query.items():
        value = values[-1]
        if name == "schema":
            if not _IDENTIFIER.fullmatch(value):
                raise InvalidArgument(
                    f"database URL {shown!r}: schema {value!r} is not a plain "
                    "identifier (letters, digits and _, at most 63, not first digit)"
                )
            env["POSTGRES_SCHEMA"] = value
        elif name in _POSTGRES_OPTIONS:
            setting, _, low, high = _POSTGRES_OPTIONS[name]
            if not (value.isascii() and value.isdigit()) or not (
                low <= int(value) <= high
            ):
                raise InvalidArgument(
                    f"database URL {shown!r}: {name} must be a whole number "
                    f"from {low} to {high}, got {value!r}"
                )
            env[setting] = str(int(value))
        else:
            known = ", ".join(["schema", *_POSTGRES_OPTIONS])
            raise InvalidArgument(
                f"database URL {shown!r}: unknown option {name!r} (known: {known})"
            )
    return env


def store_name(env: Mapping[str, str]) -> str:
    """How errors name a store: a path, or user@host:port/dbname, never a password."""
    if "POSTGRES_HOST" in env:
        return (
            f"postgresql://{env['POSTGRES_USER']}@{env['POSTGRES_HOST']}:"
            f"{env['POSTGRES_PORT']}/{env['POSTGRES_DBNAME']}"
            f" (schema {env['POSTGRES_SCHEMA']})"
        )
    return env.get("SQLITE_DBNAME", "memory")


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***``: everything from the first
    ``:`` after ``//user`` to the last ``@`` (a password with an unescaped ``@``,
    ``/`` or ``#`` is hidden whole, however a URL parser would split it)."""
    return re.sub(r"(//[^/@:]*):.*@", r"\1:***@", url, flags=re.DOTALL)


def _unparsable(url: str, shown: str, error: ValueError) -> InvalidArgument:
    """The refusal of a URL the parser refused; the parser's own words are left
    out when they quote a piece of a URL that holds a password."""
    if shown != url and "'" in str(error):
        return InvalidArgument(
            f"database URL {shown!r} cannot be parsed; percent-encode any of "
            "@ : / # ? in the user name and password"
        )
    return InvalidArgument(f"database URL {shown!r}: {error}")


@contextmanager
def storage_errors(
    where: str, secret: str = "", *, encrypted: bool = False
) -> Iterator[None]:
    """Translate the store's own errors into :class:`StorageError`."""
    try:
        yield
    except IntegrityError:
        raise
    except MapperDeserialisationError:
        hint = (
            "the cipher key does not match this store (or the data is damaged)"
            if encrypted
            else "its events cannot be decoded; if the store is encrypted or "
            "compressed, open it with the same cipher_key and compress options"
        )
        raise StorageError(f"store {where}: {hint}") from None
    except Exception as error:
        if not _is_storage_failure(error):
            raise
        _raise_fence_refusal(error, where)
        text = " ".join(str(error).split()) or type(error).__name__
        if secret:
            text = text.replace(secret, "***")
        if is_unavailable(error):
            raise StorageUnavailable(f"store {where} is unavailable: {text}") from None
        raise StorageError(f"store {where}: {text}") from None


def _raise_fence_refusal(error: BaseException, where: str) -> None:
    """A shard map's fence refused the insert: :class:`ShardMoving`/``Moved``."""
    if "psycopg" not in sys.modules:
        return
    from msgstate._pg_shards import fence_refusal

    refusal = fence_refusal(error)
    if refusal is None:
        return
    hint, text, peer = refusal
    text = text.removeprefix("msgstate: ")
    if hint == "SHARD_MOVING":
        raise ShardMoving(
            f"store {where}: {text}; nothing was written, retry shortly"
        ) from None
    raise ShardMoved(
        f"store {where}: {text}"
        + (f" (it moved to {_redact(peer)})" if peer else "")
        + "; nothing was written; reload the shard map",
        to=_redact(peer) if peer else "",
    ) from None


def is_unavailable(error: BaseException) -> bool:
    """The database could not be reached, or dropped the connection.

    True for a psycopg connection failure behind ``error`` (no SQLSTATE: the
    socket was lost or no connection came within ``connect_timeout``; class 08;
    57P01-57P03: the server is shutting down or starting up) and for
    :class:`StorageUnavailable` itself.
    """
    if isinstance(error, StorageUnavailable):
        return True
    psycopg = sys.modules.get("psycopg")  # only loaded when PostgreSQL is used
    if psycopg is None:
        return False
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, psycopg.Error):
        # eventsourcing re-raises some errors "from None": the context remains.
        cause = cause.__cause__ or cause.__context__
    if not isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    if type(cause).__name__ == "PoolClosed":
        return False  # the service was closed: not the database's doing
    state = cause.sqlstate
    return state is None or state.startswith(("08", "57P"))


def _is_storage_failure(error: Exception) -> bool:
    if isinstance(error, MsgStateError):
        return False  # already ours (ProjectionTimeout is also an OSError)
    if isinstance(error, PersistenceError | sqlite3.Error | OSError):
        return True
    psycopg = sys.modules.get("psycopg")  # only loaded when PostgreSQL is used
    return psycopg is not None and isinstance(error, psycopg.Error)


def _prepare_postgres(env: Mapping[str, str], *, create_schema: bool) -> None:
    """Connect once (so a failure names its real cause) and create the schema.

    Runs ``CREATE SCHEMA IF NOT EXISTS`` (which tolerates a concurrent creator)
    only when the schema is missing: an existing store's open runs no DDL.
    """
    import psycopg  # the postgres extra
    from psycopg import errors, sql

    with (
        storage_errors(store_name(env), env["POSTGRES_PASSWORD"]),
        psycopg.connect(
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            dbname=env["POSTGRES_DBNAME"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"]),
            autocommit=True,
        ) as connection,
    ):
        schema = env["POSTGRES_SCHEMA"]
        exists = connection.execute(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
        if create_schema and exists is None:
            statement = sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(env["POSTGRES_SCHEMA"])
            )
            with contextlib.suppress(errors.UniqueViolation, errors.DuplicateSchema):
                connection.execute(statement)


def service_env(
    url: str | None,
    *,
    create_tables: bool = True,
    cipher_key: str | None = None,
    compress: bool = False,
) -> dict[str, str]:
    """Every eventsourcing setting for a store, as :meth:`MessageService.open` uses.

    Checks the URL and options, and on PostgreSQL connects once (creating the
    schema when ``create_tables``), so that a failure names its real cause.
    """
    if url is None:
        url = os.environ.get(DATABASE_URL_ENV) or "memory://"
    env = persistence_env(url)
    check.flag("create_tables", create_tables)
    env["CREATE_TABLE"] = "y" if create_tables else "n"
    if check.flag("compress", compress):
        env["COMPRESSOR_TOPIC"] = "eventsourcing.compressor:ZlibCompressor"
    if cipher_key is not None:
        env["CIPHER_TOPIC"] = _cipher_topic()
        env["CIPHER_KEY"] = _check_cipher_key(cipher_key)
    if "POSTGRES_SCHEMA" in env:
        _prepare_postgres(env, create_schema=create_tables)
    elif env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite":
        _prepare_sqlite(env)
    return env


def _prepare_sqlite(env: Mapping[str, str]) -> None:
    """Put a SQLite file in WAL mode once, waiting for other processes if need be.

    eventsourcing runs ``PRAGMA journal_mode=WAL`` on every new connection. On a
    new file, several processes doing that at the same moment get ``database is
    locked`` at once (SQLite's busy timeout does not cover that switch). Once the
    file is in WAL mode the pragma needs no lock, so switching it here, retried
    until ``SQLITE_LOCK_TIMEOUT``, lets any number of processes open it together.
    """
    name = env["SQLITE_DBNAME"]
    timeout = float(env.get("SQLITE_LOCK_TIMEOUT", "30"))
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            connection = sqlite3.connect(name, timeout=timeout)
            try:
                connection.execute("PRAGMA journal_mode=WAL").fetchone()
            finally:
                connection.close()
            return
        except sqlite3.Error as error:
            locked = "locked" in str(error) or "busy" in str(error)
            if not locked or time.monotonic() >= deadline:
                raise StorageError(f"store {name}: {error}") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def generate_cipher_key() -> str:
    """A new random 256-bit AES key, base64-encoded, for ``cipher_key=``.

    Keep it in a secret store: without it the events cannot be read.
    """
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _check_cipher_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidArgument("cipher_key must be a str from generate_cipher_key()")
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) not in (16, 24, 32):
        raise InvalidArgument(
            "cipher_key must be 16, 24 or 32 bytes in base64 "
            "(use msgstate.generate_cipher_key())"
        )
    return key


def _cipher_topic() -> str:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise InvalidArgument(
            "cipher_key needs the cryptography package: "
            "pip install 'msgstate[encryption]'"
        ) from None
    return "eventsourcing.cryptography:AESCipher"


STREAMS_PER_QUERY = 500
"""Streams read per SELECT by :func:`select_streams`."""


def select_streams(
    recorder: Recorder, ids: Sequence[UUID]
) -> dict[UUID, list[StoredEvent]] | None:
    """Every stored event of many streams, a few queries in all (not one a stream).

    Returns ``None`` for a recorder it does not know (the caller then reads
    stream by stream). Events are in version order within each stream.
    """
    from eventsourcing.sqlite import SQLiteAggregateRecorder

    found: dict[UUID, list[StoredEvent]] = {}
    if isinstance(recorder, SQLiteAggregateRecorder):
        table = recorder.events_table_name  # eventsourcing's own, not user input
        for start in range(0, len(ids), STREAMS_PER_QUERY):
            chunk = [i.hex for i in ids[start : start + STREAMS_PER_QUERY]]  # as stored
            marks = ",".join("?" * len(chunk))
            with recorder.datastore.transaction(commit=False) as c:
                c.execute(
                    f"SELECT originator_id, originator_version, topic, state "
                    f"FROM {table} WHERE originator_id IN ({marks}) "
                    f"ORDER BY originator_id, originator_version",
                    chunk,
                )
                rows = c.fetchall()
            for row in rows:
                aid = UUID(row[0])
                found.setdefault(aid, []).append(
                    StoredEvent(aid, row[1], row[2], bytes(row[3]))
                )
        return found
    postgres = sys.modules.get("eventsourcing.postgres")
    if postgres is not None and isinstance(
        recorder, postgres.PostgresAggregateRecorder
    ):
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {0}.{1} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(
            Identifier(recorder.datastore.schema),
            Identifier(recorder.events_table_name),
        )
        for start in range(0, len(ids), STREAMS_PER_QUERY):
            wanted = list(ids[start : start + STREAMS_PER_QUERY])
            with recorder.datastore.transaction(commit=False) as curs:
                curs.execute(statement, (wanted,))
                rows = curs.fetchall()
            for row in rows:
                aid = row["originator_id"]
                found.setdefault(aid, []).append(
                    StoredEvent(
                        aid,
                        row["originator_version"],
                        row["topic"],
                        bytes(row["state"]),
                    )
                )
        return found
    return None


def read_notifications(
    recorder: ApplicationRecorder, start: int, limit: int
) -> list[Notification]:
    """Notifications ``start``, ``start + 1``, ... (at most ``limit``), as
    ``recorder.select_notifications(start=start, limit=limit)`` returns them, read
    with plain tuples instead of mapping rows (the read models read millions)."""
    from eventsourcing.sqlite import SQLiteApplicationRecorder

    if isinstance(recorder, SQLiteApplicationRecorder):
        table = recorder.events_table_name  # eventsourcing's own, not user input
        with recorder.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT ?",
                [start, limit],
            )
            rows = c.fetchall()
        return [
            Notification(
                id=row[0],
                originator_id=UUID(row[1]),
                originator_version=row[2],
                topic=row[3],
                state=bytes(row[4]),
            )
            for row in rows
        ]
    postgres = sys.modules.get("eventsourcing.postgres")
    if postgres is not None and isinstance(
        recorder, postgres.PostgresApplicationRecorder
    ):
        from psycopg.rows import tuple_row
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {0}.{1} WHERE notification_id >= %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(
            Identifier(recorder.datastore.schema),
            Identifier(recorder.events_table_name),
        )
        with (
            recorder.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(statement, (start, limit), prepare=True)
            rows = curs.fetchall()
        return [
            Notification(
                id=row[0],
                originator_id=row[1],
                originator_version=row[2],
                topic=row[3],
                state=bytes(row[4]),
            )
            for row in rows
        ]
    return list(recorder.select_notifications(start=start, limit=limit))
