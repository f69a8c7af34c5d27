"""Privacy: keyed stream ids, and per-message data keys that can be destroyed.

Two ideas live here, both about what someone holding a copy of the database can
learn:

* **Stream ids.** Without a cipher key a message's stream id is
  ``uuid5(MESSAGE_NAMESPACE, msg_id)``: anyone can recompute it and confirm a
  guessed ``msg_id``. A store *created* with a cipher key names streams with a keyed
  hash instead (HMAC-SHA256 under a key derived from the cipher key with HKDF,
  shaped as a version-8 UUID). The store records its scheme in its
  ``msgstate_meta`` table; stores made before keep ``uuid5``. :class:`StreamIds` is
  the one function from ``msg_id`` to stream id.
* **Forgetting (crypto-shredding).** In a *forgettable* store each message's
  personal fields (:data:`PERSONAL_FIELDS`) are encrypted (AES-GCM) with a data key
  of its own, kept in a :class:`KeyStore`; events and snapshots hold only the
  ciphertext. ``MessageService.forget`` destroys the key, after which no copy of
  the events (backups included) can be read back into those fields.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid5

from msgstate.errors import InvalidArgument, StorageError
from msgstate.ids import MESSAGE_NAMESPACE

__all__ = [
    "FORGOTTEN",
    "FORGOTTEN_CONTENT",
    "PERSONAL_FIELDS",
    "KeyStore",
    "StreamIds",
]

FORGOTTEN = "<forgotten>"
"""What a forgotten message shows in place of each personal text field."""

FORGOTTEN_CONTENT: Mapping[str, Any] = {"forgotten": True}
"""What a forgotten message shows in place of ``content`` (a fresh dict each time)."""

PERSONAL_FIELDS = ("sender", "user_id", "group_id", "cloud_custom_data", "content")
"""The creation fields sealed with a message's data key in a forgettable store.

``msg_id`` is not among them: it is how the message is found (choose ids that carry
no personal data; Tencent's are random). ``user_id``/``group_id`` that were not
given stay ``None`` (whether a message went to a user or a group is not sealed).
"""

UUID5 = "uuid5"
"""Stream ids are ``uuid5(MESSAGE_NAMESPACE, msg_id)``: every store without a cipher
key, and encrypted stores created before keyed ids existed."""

HMAC_SHA256 = "hmac-sha256-v1"
"""Stream ids are HMAC-SHA256 of ``msg_id`` under a key derived from the cipher key."""

_SEALED_PREFIX = "v1:"
_NONCE_BYTES = 12
DATA_KEY_BYTES = 32


def hkdf_sha256(secret: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF (RFC 5869) with SHA-256 and an all-zero salt."""
    prk = hmac.new(b"\x00" * 32, secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


class StreamIds:
    """The one mapping from ``msg_id`` to stream id, for one store's scheme."""

    def __init__(self, scheme: str = UUID5, cipher_key: str | None = None) -> None:
        if scheme not in (UUID5, HMAC_SHA256):
            raise StorageError(
                f"the store records stream-id scheme {scheme!r}, which this version "
                "of msgstate does not know; upgrade msgstate"
            )
        if scheme == HMAC_SHA256 and cipher_key is None:
            raise InvalidArgument(
                "this store names its streams with a keyed hash; open it with its "
                "cipher_key"
            )
        self.scheme = scheme
        if scheme == UUID5:
            self._of: Callable[[str], UUID] = uuid5_stream_id
        else:
            assert cipher_key is not None
            key = hkdf_sha256(base64.b64decode(cipher_key), b"msgstate stream ids v1")
            self._of = lru_cache(maxsize=65_536)(lambda msg_id: _keyed(key, msg_id))

    def __call__(self, msg_id: str) -> UUID:
        """The stream id of ``msg_id``."""
        return self._of(msg_id)


@lru_cache(maxsize=65_536)
def uuid5_stream_id(msg_id: str) -> UUID:
    """``uuid5(MESSAGE_NAMESPACE, msg_id)``: the scheme without a keyed hash."""
    return uuid5(MESSAGE_NAMESPACE, msg_id)


def _keyed(key: bytes, msg_id: str) -> UUID:
    digest = bytearray(
        hmac.new(key, msg_id.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()[
            :16
        ]
    )
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: custom (RFC 9562)
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC variant
    return UUID(bytes=bytes(digest))


# -- sealing --


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:  # pragma: no cover - the encryption extra is missing
        raise InvalidArgument(
            "forgettable stores need the cryptography package: "
            "pip install 'msgstate[encryption]'"
        ) from None
    return AESGCM(key)


def require_cryptography() -> None:
    """Refuse (with an actionable sentence) when ``cryptography`` is missing."""
    _aesgcm(b"\x00" * DATA_KEY_BYTES)


def seal(key: bytes, stream_id: UUID, fields: Mapping[str, Any]) -> str:
    """The personal ``fields`` encrypted with ``key``, bound to ``stream_id``."""
    plain = json.dumps(dict(fields), sort_keys=True, ensure_ascii=False)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = _aesgcm(key).encrypt(
        nonce, plain.encode("utf-8", "surrogatepass"), stream_id.bytes
    )
    return _SEALED_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")


def unseal(key: bytes, stream_id: UUID, sealed: str) -> dict[str, Any]:
    """The fields :func:`seal` encrypted; :class:`StorageError` if they don't open."""
    from cryptography.exceptions import InvalidTag

    if not sealed.startswith(_SEALED_PREFIX):
        raise StorageError(f"sealed fields of stream {stream_id} have an unknown form")
    raw = base64.b64decode(sealed[len(_SEALED_PREFIX) :])
    try:
        plain = _aesgcm(key).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], stream_id.bytes
        )
    except InvalidTag:
        raise StorageError(
            f"the data key of stream {stream_id} does not open its sealed fields; "
            "is this the key store that belongs to these events?"
        ) from None
    fields: dict[str, Any] = json.loads(plain.decode("utf-8", "surrogatepass"))
    return fields


def placeholders(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What the event stores in place of sealed personal fields."""
    return {
        "sender": "",
        "user_id": None if fields["user_id"] is None else "",
        "group_id": None if fields["group_id"] is None else "",
        "cloud_custom_data": "",
        "content": "{}",
    }


def forgotten_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The markers a forgotten message shows, given its placeholder fields."""
    return {
        "sender": FORGOTTEN,
        "user_id": None if fields["user_id"] is None else FORGOTTEN,
        "group_id": None if fields["group_id"] is None else FORGOTTEN,
        "cloud_custom_data": FORGOTTEN,
        "content": dict(FORGOTTEN_CONTENT),
    }


# -- the key store --


class KeyStore(ABC):
    """Per-message data keys, by stream id. A destroyed key leaves a tombstone.

    The tombstone (stream id and the time it was forgotten, no key) keeps a
    forgotten message's id from being issued a new key.
    """

    @abstractmethod
    def issue(self, stream_id: UUID) -> bytes | None:
        """The stream's key, made now if it has none; ``None`` if destroyed."""

    @abstractmethod
    def get(self, stream_id: UUID) -> bytes | None:
        """The stream's key, or ``None`` if it has none or it was destroyed."""

    @abstractmethod
    def destroy(self, stream_id: UUID, at: datetime) -> None:
        """Destroy the stream's key for good (idempotent)."""

    def close(self) -> None:  # noqa: B027 - most key stores hold nothing to close
        """Release connections (a key store beside the events shares them)."""


class MemoryKeyStore(KeyStore):
    """Keys in a dict, for the memory store (and tests)."""

    def __init__(self) -> None:
        self._keys: dict[UUID, bytes | None] = {}
        self._lock = threading.Lock()

    def issue(self, stream_id: UUID) -> bytes | None:
        with self._lock:
            return self._keys.setdefault(stream_id, secrets.token_bytes(DATA_KEY_BYTES))

    def get(self, stream_id: UUID) -> bytes | None:
        with self._lock:
            return self._keys.get(stream_id)

    def destroy(self, stream_id: UUID, at: datetime) -> None:
        with self._lock:
            self._keys[stream_id] = None


KEYS_TABLE = "msgstate_data_keys"
META_TABLE = "msgstate_meta"


@contextmanager
def _sqlite_write(datastore: Any) -> Iterator[Any]:
    """A write transaction that takes SQLite's write lock first.

    ``BEGIN IMMEDIATE`` waits (up to the lock timeout) for other writers; a
    deferred transaction that reads first would fail at once if another process
    wrote in between.
    """
    with datastore.get_connection(commit=True) as connection:
        cursor = connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


class SQLiteKeyStore(KeyStore):
    """Keys in table ``msgstate_data_keys`` of a SQLite file (eventsourcing's pool).

    Destroying overwrites the key with zeros on disk (``secure_delete``) and
    truncates the write-ahead log, so the file no longer holds it.
    """

    def __init__(self, datastore: Any, *, shared: bool) -> None:
        self.datastore = datastore
        self._shared = shared
        with _sqlite_write(datastore) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (stream_id TEXT PRIMARY "
                "KEY, data_key BLOB, forgotten_at TEXT) WITHOUT ROWID"
            )

    def issue(self, stream_id: UUID) -> bytes | None:
        with _sqlite_write(self.datastore) as c:
            c.execute(
                f"INSERT INTO {KEYS_TABLE} (stream_id, data_key) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                [stream_id.hex, secrets.token_bytes(DATA_KEY_BYTES)],
            )
            c.execute(
                f"SELECT data_key FROM {KEYS_TABLE} WHERE stream_id = ?",
                [stream_id.hex],
            )
            row = c.fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def get(self, stream_id: UUID) -> bytes | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT data_key FROM {KEYS_TABLE} WHERE stream_id = ?",
                [stream_id.hex],
            )
            row = c.fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def destroy(self, stream_id: UUID, at: datetime) -> None:
        with _sqlite_write(self.datastore) as c:
            c.execute("PRAGMA secure_delete = ON")
            c.execute(
                f"INSERT INTO {KEYS_TABLE} (stream_id, data_key, forgotten_at) "
                "VALUES (?, NULL, ?) ON CONFLICT (stream_id) DO UPDATE SET "
                "data_key = NULL, forgotten_at = excluded.forgotten_at",
                [stream_id.hex, at.isoformat()],
            )
        # The old page (with the key) may still be in the write-ahead log.
        with self.datastore.get_connection(commit=True) as connection:
            connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        if not self._shared:
            self.datastore.close()


class PostgresKeyStore(KeyStore):
    """Keys in table ``<schema>.msgstate_data_keys`` of a PostgreSQL database.

    Destroying sets the key to NULL; the old row version stays in the table's
    files until VACUUM, and in write-ahead-log archives and base backups.
    """

    def __init__(self, datastore: Any, *, shared: bool) -> None:
        from psycopg.sql import SQL, Identifier

        self.datastore = datastore
        self._shared = shared
        self._table = SQL("{0}.{1}").format(
            Identifier(datastore.schema or "public"), Identifier(KEYS_TABLE)
        )
        statement = SQL(
            "CREATE TABLE IF NOT EXISTS {0} (stream_id uuid PRIMARY KEY, "
            "data_key bytea, forgotten_at timestamptz)"
        ).format(self._table)
        _create_concurrently(datastore, statement)

    def issue(self, stream_id: UUID) -> bytes | None:
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=True) as c:
            c.execute(
                SQL(
                    "INSERT INTO {0} (stream_id, data_key) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING"
                ).format(self._table),
                (stream_id, secrets.token_bytes(DATA_KEY_BYTES)),
            )
            c.execute(
                SQL("SELECT data_key FROM {0} WHERE stream_id = %s").format(
                    self._table
                ),
                (stream_id,),
            )
            row = c.fetchone()
        return (
            None if row is None or row["data_key"] is None else bytes(row["data_key"])
        )

    def get(self, stream_id: UUID) -> bytes | None:
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as c:
            c.execute(
                SQL("SELECT data_key FROM {0} WHERE stream_id = %s").format(
                    self._table
                ),
                (stream_id,),
            )
            row = c.fetchone()
        return (
            None if row is None or row["data_key"] is None else bytes(row["data_key"])
        )

    def destroy(self, stream_id: UUID, at: datetime) -> None:
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=True) as c:
            c.execute(
                SQL(
                    "INSERT INTO {0} (stream_id, data_key, forgotten_at) "
                    "VALUES (%s, NULL, %s) ON CONFLICT (stream_id) DO UPDATE SET "
                    "data_key = NULL, forgotten_at = excluded.forgotten_at"
                ).format(self._table),
                (stream_id, at),
            )

    def close(self) -> None:
        if not self._shared:
            self.datastore.close()


def _create_concurrently(datastore: Any, statement: Any) -> None:
    """Run a CREATE ... IF NOT EXISTS that another process may run at once."""
    from eventsourcing.persistence import IntegrityError, ProgrammingError
    from psycopg import errors

    raced = (
        errors.UniqueViolation,
        errors.DuplicateTable,
        errors.DuplicateObject,
        IntegrityError,  # eventsourcing's datastore wraps the two above
        ProgrammingError,
    )
    for attempt in range(3):
        try:
            with datastore.transaction(commit=True) as c:
                c.execute(statement)
            return
        except raced:  # another process created it first: IF NOT EXISTS now holds
            if attempt == 2:
                raise


def open_key_store(url: str) -> KeyStore:
    """A key store of its own at ``url`` (memory://, sqlite:///..., postgresql://)."""
    from msgstate.storage import _prepare_postgres as prepare_postgres
    from msgstate.storage import persistence_env

    env = persistence_env(url)
    module = env["PERSISTENCE_MODULE"]
    if module == "eventsourcing.popo":
        return MemoryKeyStore()
    if module == "eventsourcing.sqlite":
        from eventsourcing.sqlite import SQLiteDatastore

        sqlite = SQLiteDatastore(
            env["SQLITE_DBNAME"], lock_timeout=int(env.get("SQLITE_LOCK_TIMEOUT", 30))
        )
        return SQLiteKeyStore(sqlite, shared=False)
    prepare_postgres(env, create_schema=True)
    from msgstate._pg_store import PostgresStoreFactory

    # The event store's own factory: the URL's pool, timeouts and pre-ping hold
    # for the key store too, and it recovers from a restart in the same way.
    datastore = PostgresStoreFactory(env).datastore
    return PostgresKeyStore(datastore, shared=False)


def _backend(recorder: Any) -> str | None:
    """``"sqlite"`` or ``"postgres"`` by the recorder's datastore (also for
    msgstate's own recorder subclasses), else ``None`` (memory)."""
    datastore = getattr(recorder, "datastore", None)
    from eventsourcing.sqlite import SQLiteDatastore

    if isinstance(datastore, SQLiteDatastore):
        return "sqlite"
    try:
        from eventsourcing.postgres import PostgresDatastore
    except ImportError:  # psycopg not installed: it can't be a PostgreSQL store
        return None
    if isinstance(datastore, PostgresDatastore):
        return "postgres"
    return None


def key_store_beside(recorder: Any) -> KeyStore:
    """A key store in the event store's own database (sharing its connections)."""
    backend = _backend(recorder)
    if backend == "sqlite":
        return SQLiteKeyStore(recorder.datastore, shared=True)
    if backend == "postgres":
        return PostgresKeyStore(recorder.datastore, shared=True)
    return MemoryKeyStore()


# -- the store's own settings (msgstate_meta) --


def read_settings(recorder: Any) -> dict[str, str]:
    """The rows of the event store's ``msgstate_meta`` table (none if absent)."""
    store = _meta(recorder)
    return {} if store is None else store.read()


def record_setting(recorder: Any, name: str, value: str) -> str:
    """Record ``name = value`` unless recorded already; the value now recorded."""
    store = _meta(recorder)
    if store is None:
        return value
    return store.record(name, value)


class _Meta(ABC):
    @abstractmethod
    def read(self) -> dict[str, str]: ...

    @abstractmethod
    def record(self, name: str, value: str) -> str: ...


class _SQLiteMeta(_Meta):
    def __init__(self, datastore: Any) -> None:
        self.datastore = datastore

    def read(self) -> dict[str, str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                [META_TABLE],
            )
            exists = c.fetchone()[0]
            if not exists:
                return {}  # nothing recorded yet (and no DDL until something is)
            c.execute(f"SELECT name, value FROM {META_TABLE}")
            return {str(row[0]): str(row[1]) for row in c.fetchall()}

    def record(self, name: str, value: str) -> str:
        with _sqlite_write(self.datastore) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {META_TABLE} (name TEXT PRIMARY KEY, "
                "value TEXT NOT NULL) WITHOUT ROWID"
            )
            c.execute(
                f"INSERT INTO {META_TABLE} (name, value) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                [name, value],
            )
            c.execute(f"SELECT value FROM {META_TABLE} WHERE name = ?", [name])
            return str(c.fetchone()[0])


class _PostgresMeta(_Meta):
    def __init__(self, datastore: Any) -> None:
        from psycopg.sql import SQL, Identifier

        self.datastore = datastore
        self._table = SQL("{0}.{1}").format(
            Identifier(datastore.schema or "public"), Identifier(META_TABLE)
        )

    def read(self) -> dict[str, str]:
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT to_regclass(%s) AS found", (self._table.as_string(),))
            row = c.fetchone()
            if row is None or row["found"] is None:
                return {}  # nothing recorded yet (and no DDL until something is)
            c.execute(SQL("SELECT name, value FROM {0}").format(self._table))
            return {row["name"]: row["value"] for row in c.fetchall()}

    def record(self, name: str, value: str) -> str:
        from psycopg.sql import SQL

        _create_concurrently(
            self.datastore,
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (name text PRIMARY KEY, "
                "value text NOT NULL)"
            ).format(self._table),
        )
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                SQL(
                    "INSERT INTO {0} (name, value) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING"
                ).format(self._table),
                (name, value),
            )
            c.execute(
                SQL("SELECT value FROM {0} WHERE name = %s").format(self._table),
                (name,),
            )
            row = c.fetchone()
            return str(row["value"])


def _meta(recorder: Any) -> _Meta | None:
    backend = _backend(recorder)
    if backend == "sqlite":
        return _SQLiteMeta(recorder.datastore)
    if backend == "postgres":
        return _PostgresMeta(recorder.datastore)
    return None  # memory: a new store each time, nothing to remember
