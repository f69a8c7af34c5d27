"""msgstate.keys answers, word for word and byte for byte.

Golden stream ids for a fixed cipher key; the exact form of sealed fields (prefix,
nonce, JSON plaintext, tag) and the exact refusals when they don't open; the
placeholders and markers of forgotten messages; what each key store (memory,
SQLite file, PostgreSQL schema) holds, where, and how its tables look; what
closing a key store releases (its own connections, never the event store's);
how long a key store waits for a lock or a pooled connection, and how many
connections it opens; concurrent creation of its table; and the sentence given
when the ``cryptography`` package is missing.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid5

import pytest

from msgstate import (
    FORGOTTEN,
    MESSAGE_NAMESPACE,
    InvalidArgument,
    Message,
    MessageService,
    StorageError,
)
from msgstate.errors import ErrorCode
from msgstate.keys import (
    HMAC_SHA256,
    KeyStore,
    StreamIds,
    forgotten_fields,
    key_store_beside,
    open_key_store,
    placeholders,
    read_settings,
    record_setting,
    require_cryptography,
    seal,
    unseal,
)
from tests import pg
from tests.conftest import backend_url

CIPHER_KEY = base64.b64encode(bytes(range(32))).decode("ascii")
DATA_KEY = bytes(range(100, 132))
HERE = uuid5(MESSAGE_NAMESPACE, "here")
THERE = uuid5(MESSAGE_NAMESPACE, "there")
AT = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


# -- keyed stream ids --

GOLDEN_IDS = {
    "m1": "66d8c31f-e9b0-8a94-8091-cde0496b94fd",
    "m2": "7800a073-2472-87ca-9ea7-c0f0e3a995d4",
    "msg-3": "c493440a-bef0-8d45-b586-c9506242e101",
    "": "603be4b7-6494-856c-95fe-de3961579e48",
    "mé-1": "d2660e35-e558-8530-8be9-a7cfe72e7220",
    "\ud800": "45de494c-4d00-88c3-a2dc-693e41413ccd",
    "x\udfffy": "1ed44dc8-a652-8a05-99e1-d2135991bcf9",
    "0123456789": "40855af4-19d8-8682-b30b-11653c35e77e",
}


def test_keyed_stream_ids_are_fixed_for_a_key() -> None:
    """HMAC stream ids for a fixed cipher key, lone surrogates included (encoded
    with ``surrogatepass``): the same UUIDs, version 8, RFC variant, every time."""
    ids = StreamIds(HMAC_SHA256, CIPHER_KEY)
    got = {msg_id: str(ids(msg_id)) for msg_id in GOLDEN_IDS}
    assert GOLDEN_IDS == got
    assert {(8, "specified in RFC 4122")} == {
        (ids(m).version, ids(m).variant) for m in GOLDEN_IDS
    }
    assert (HMAC_SHA256, ids("m1")) == (ids.scheme, ids("m1"))


def test_stream_id_refusals_word_for_word() -> None:
    """An unknown scheme and a keyed scheme without its key: the exact sentences."""
    with pytest.raises(StorageError) as unknown:
        StreamIds("rot13")
    with pytest.raises(InvalidArgument) as keyless:
        StreamIds(HMAC_SHA256)
    assert (
        "the store records stream-id scheme 'rot13', which this version of "
        "msgstate does not know; upgrade msgstate [STORAGE_ERROR]"
    ) == str(unknown.value)
    assert (
        "this store names its streams with a keyed hash; open it with its "
        "cipher_key [INVALID_ARGUMENT]"
    ) == str(keyless.value)


def test_keyed_store_opened_without_its_key_says_so(tmp_path: Path) -> None:
    """Reopening a keyed store without ``cipher_key``: the exact refusal."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    MessageService.open(url, cipher_key=CIPHER_KEY).close()
    with pytest.raises(InvalidArgument) as refused:
        MessageService.open(url)
    assert (
        "this store names its streams with a keyed hash; open it with its cipher_key"
    ) == refused.value.desc


# -- sealing --

FIELDS = {
    "sender": "zoë",
    "user_id": "bob\ud800",
    "group_id": None,
    "cloud_custom_data": "日本",
    "content": '{"text": "hi"}',
}
PLAIN = (
    '{"cloud_custom_data": "日本", "content": "{\\"text\\": \\"hi\\"}", '
    '"group_id": null, "sender": "zoë", "user_id": "bob\ud800"}'
).encode("utf-8", "surrogatepass")


def test_sealed_fields_have_the_documented_form() -> None:
    """``v1:`` + base64(12-byte nonce + AES-GCM(JSON with sorted keys, non-ASCII
    kept, UTF-8 with surrogatepass) + 16-byte tag), the stream id as associated
    data; every seal has a fresh nonce."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    first, second = seal(DATA_KEY, HERE, FIELDS), seal(DATA_KEY, HERE, FIELDS)
    raw = base64.b64decode(first[3:], validate=True)
    opened = AESGCM(DATA_KEY).decrypt(raw[:12], raw[12:], HERE.bytes)
    assert ("v1:", PLAIN, 12 + len(PLAIN) + 16) == (first[:3], opened, len(raw))
    assert first != second
    assert (FIELDS, FIELDS) == (
        unseal(DATA_KEY, HERE, first),
        unseal(DATA_KEY, HERE, second),
    )


def test_sealed_by_hand_opens() -> None:
    """Fields sealed by hand in the documented form open to the same dict
    (the plaintext is decoded with surrogatepass)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = bytes(12)
    sealed = "v1:" + base64.b64encode(
        nonce + AESGCM(DATA_KEY).encrypt(nonce, PLAIN, HERE.bytes)
    ).decode("ascii")
    assert FIELDS == unseal(DATA_KEY, HERE, sealed)


def test_sealed_fields_refused_word_for_word() -> None:
    """Another stream, another key, a flipped byte: one sentence naming the
    stream; another prefix: 'unknown form'."""
    sealed = seal(DATA_KEY, HERE, FIELDS)
    raw = bytearray(base64.b64decode(sealed[3:]))
    raw[20] ^= 1
    tampered = "v1:" + base64.b64encode(bytes(raw)).decode("ascii")
    refusals = []
    for key, stream_id, text in [
        (DATA_KEY, THERE, sealed),
        (bytes(32), HERE, sealed),
        (DATA_KEY, HERE, tampered),
    ]:
        with pytest.raises(StorageError) as refused:
            unseal(key, stream_id, text)
        refusals.append(refused.value.desc)
    with pytest.raises(StorageError) as unknown:
        unseal(DATA_KEY, HERE, "v2:" + sealed[3:])
    assert [
        f"the data key of stream {THERE} does not open its sealed fields; "
        "is this the key store that belongs to these events?",
        f"the data key of stream {HERE} does not open its sealed fields; "
        "is this the key store that belongs to these events?",
        f"the data key of stream {HERE} does not open its sealed fields; "
        "is this the key store that belongs to these events?",
    ] == refusals
    assert (
        f"sealed fields of stream {HERE} have an unknown form",
        "STORAGE_ERROR",
    ) == (
        unknown.value.desc,
        unknown.value.code.name,
    )


def test_placeholders_and_markers() -> None:
    """Given fields become empty placeholders and markers; absent ones stay None."""
    user = {**FIELDS, "user_id": "bob", "group_id": None}
    group = {**FIELDS, "user_id": None, "group_id": "team"}
    assert [
        {
            "sender": "",
            "user_id": "",
            "group_id": None,
            "cloud_custom_data": "",
            "content": "{}",
        },
        {
            "sender": "",
            "user_id": None,
            "group_id": "",
            "cloud_custom_data": "",
            "content": "{}",
        },
    ] == [placeholders(user), placeholders(group)]
    assert {
        "sender": FORGOTTEN,
        "user_id": FORGOTTEN,
        "group_id": None,
        "cloud_custom_data": FORGOTTEN,
        "content": {"forgotten": True},
    } == forgotten_fields(placeholders(user))


def test_stored_user_message_holds_placeholders() -> None:
    """A forgettable store's Created event of a user message: user_id is ``""``,
    group_id stays None; the view opens the sealed fields."""
    service = MessageService.open("memory://", forgettable=True)
    view = service.create("m1", sender="alice", user_id="bob", content={"t": 1})
    created = next(iter(service.events.get(service.stream_id("m1"))))
    assert isinstance(created, Message.CreatedSealed)
    assert (
        {"sender": "", "user_id": "", "group_id": None, "content": "{}"},
        ("alice", "bob", None, {"t": 1}),
    ) == (
        {k: getattr(created, k) for k in ("sender", "user_id", "group_id", "content")},
        (view.sender, view.user_id, view.group_id, view.content),
    )
    service.close()


def test_missing_cryptography_is_refused_word_for_word(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the encryption extra: the exact sentence and the install line."""
    monkeypatch.setitem(
        sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None
    )
    with pytest.raises(InvalidArgument) as refused:
        require_cryptography()
    with pytest.raises(InvalidArgument) as opening:
        MessageService.open("memory://", forgettable=True)
    expected = (
        "forgettable stores need the cryptography package: "
        "pip install 'msgstate[encryption]'"
    )
    assert (expected, expected, ErrorCode.INVALID_ARGUMENT) == (
        refused.value.desc,
        opening.value.desc,
        refused.value.code,
    )


# -- key stores of their own (key_store=URL) --


def test_key_store_of_its_own_issues_keeps_and_destroys(
    backend: str, tmp_path: Path
) -> None:
    """Every kind of key store: a 32-byte key per stream, the same on every issue
    and get; destroyed keys (and tombstones of unknown streams) are never
    issued again."""
    keys = open_key_store(backend_url(backend, tmp_path))
    first = keys.issue(HERE)
    assert isinstance(first, bytes)
    other = keys.issue(THERE)
    tomb = uuid5(MESSAGE_NAMESPACE, "never issued")
    answers = [
        len(first),
        keys.issue(HERE) == first,
        keys.get(HERE) == first,
        other != first,
        keys.get(tomb),
    ]
    keys.destroy(HERE, AT)
    keys.destroy(HERE, AT)  # idempotent
    keys.destroy(tomb, AT)
    answers += [keys.get(HERE), keys.issue(HERE), keys.issue(tomb), keys.get(THERE)]
    keys.close()
    assert [32, True, True, True, None, None, None, None, other] == answers


def test_sqlite_in_memory_key_store() -> None:
    """``key_store="sqlite:///:memory:"`` (a private in-memory SQLite database,
    no lock timeout in its URL settings) issues, keeps and destroys keys."""
    keys = open_key_store("sqlite:///:memory:")
    key = keys.issue(HERE)
    got = keys.get(HERE)
    keys.destroy(HERE, AT)
    answers = [len(key or b""), got == key, keys.get(HERE), keys.issue(HERE)]
    keys.close()
    assert [32, True, None, None] == answers


def test_memory_key_store_url_gives_a_memory_key_store() -> None:
    """``key_store="memory://"`` works as a key store kept apart, in memory."""
    service = MessageService.open("memory://", key_store="memory://")
    service.create("m1", sender="alice", user_id="bob", content={"t": 1})
    view = service.forget("m1", actor="dpo", reason="r")
    assert (True, FORGOTTEN) == (view.forgotten, view.sender)
    assert type(open_key_store("memory://")).__name__ == "MemoryKeyStore"
    service.close()


def test_sqlite_key_store_file_layout(tmp_path: Path) -> None:
    """The key file: table ``msgstate_data_keys`` (stream_id TEXT key, data_key
    BLOB, forgotten_at TEXT), without rowid; a hex stream id, a 32-byte key, a
    NULL key with the ISO time once destroyed."""
    path = tmp_path / "k.db"
    keys = open_key_store(f"sqlite:///{path}")
    kept = keys.issue(THERE)
    keys.issue(HERE)
    keys.destroy(HERE, AT)
    keys.close()
    with sqlite3.connect(path) as connection:
        columns = connection.execute("PRAGMA table_info(msgstate_data_keys)").fetchall()
        shown = connection.execute("SELECT * FROM msgstate_data_keys")
        names = [d[0] for d in shown.description]
        rows = sorted(shown.fetchall())
        with pytest.raises(sqlite3.OperationalError) as no_rowid:
            connection.execute("SELECT rowid FROM msgstate_data_keys")
    assert [
        (0, "stream_id", "TEXT", 1, None, 1),
        (1, "data_key", "BLOB", 0, None, 0),
        (2, "forgotten_at", "TEXT", 0, None, 0),
    ] == columns
    assert ["stream_id", "data_key", "forgotten_at"] == names
    assert (
        sorted(
            [
                (HERE.hex, None, "2026-03-04T05:06:07.890000+00:00"),
                (THERE.hex, kept, None),
            ]
        )
        == rows
    )
    assert "no such column: rowid" == str(no_rowid.value)


def test_sqlite_store_records_its_settings(tmp_path: Path) -> None:
    """A forgettable SQLite store: table ``msgstate_meta`` (name TEXT key, value
    TEXT NOT NULL), the settings as read back, and the keys beside the events."""
    path = tmp_path / "e.db"
    service = MessageService.open(
        f"sqlite:///{path}", forgettable=True, cipher_key=CIPHER_KEY
    )
    service.create("m1", sender="a", user_id="b")
    settings = read_settings(service.recorder)
    service.close()
    with sqlite3.connect(path) as connection:
        columns = connection.execute("PRAGMA table_info(msgstate_meta)").fetchall()
        names = [
            d[0] for d in connection.execute("SELECT * FROM msgstate_meta").description
        ]
        (keys,) = connection.execute(
            "SELECT count(*) FROM msgstate_data_keys"
        ).fetchone()
    assert [
        (0, "name", "TEXT", 1, None, 1),
        (1, "value", "TEXT", 1, None, 0),
    ] == columns
    assert (["name", "value"], 1) == (names, keys)
    assert {
        "stream_ids": HMAC_SHA256,
        "personal_fields": "sealed",
        "data_keys": "beside",
    } == settings


def test_sqlite_key_store_of_its_own_releases_its_file_on_close(
    tmp_path: Path,
) -> None:
    """Closing a key store of its own closes its connections: SQLite removes the
    write-ahead log of the key file when its last connection closes."""
    path = tmp_path / "k.db"
    keys = open_key_store(f"sqlite:///{path}")
    keys.issue(HERE)
    wal = path.with_name("k.db-wal")
    before = wal.exists()
    keys.close()
    assert (True, False) == (before, wal.exists())


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(pg.BASE_URL, autocommit=True)


def _schema_of(url: str) -> str:
    return url.partition("?schema=")[2].partition("&")[0]


def _backends(schema: str, where: str = "true") -> int:
    """How many other sessions run (or last ran) a query naming ``schema``."""
    with _pg_admin() as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            f"AND query LIKE %s AND {where}",
            (f"%{schema}%",),
        ).fetchone()
    return int(row[0])


def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _open_sockets() -> int:
    """How many sockets this process has open (Linux's /proc)."""
    gc.collect()
    fds = Path("/proc/self/fd")
    found = 0
    for fd in list(fds.iterdir()):
        with contextlib.suppress(OSError):
            found += os.readlink(fd).startswith("socket:")
    return found


def test_postgres_key_store_of_its_own_layout_and_close() -> None:
    """The key table lives in the URL's schema, is owned by the URL's user, and
    holds uuid / bytea / timestamptz; closing the key store closes its
    connections (this process's sockets go back to what they were)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("counting open sockets needs /proc")
    url = pg.fresh_url()
    schema = _schema_of(url)
    sockets = _open_sockets()
    keys = open_key_store(url)
    kept = keys.issue(THERE)
    keys.issue(HERE)
    keys.destroy(HERE, AT)
    assert keys.get(THERE) == kept
    opened = _open_sockets() - sockets
    keys.close()
    closed = _wait_for(lambda: _open_sockets() <= sockets, 3)
    with _pg_admin() as admin:
        owner = admin.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = %s "
            "AND tablename = 'msgstate_data_keys'",
            (schema,),
        ).fetchall()
        columns = admin.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'msgstate_data_keys' "
            "ORDER BY ordinal_position",
            (schema,),
        ).fetchall()
        rows = admin.execute(
            f'SELECT stream_id, data_key, forgotten_at FROM "{schema}".'
            "msgstate_data_keys ORDER BY forgotten_at NULLS FIRST"
        ).fetchall()
    assert [(urlsplit(pg.BASE_URL).username,)] == owner
    assert [
        ("stream_id", "uuid"),
        ("data_key", "bytea"),
        ("forgotten_at", "timestamp with time zone"),
    ] == columns
    assert [(THERE, kept, None), (HERE, None, AT)] == rows
    assert (True, True) == (opened >= 1, closed)


def test_postgres_store_records_its_settings_in_its_schema() -> None:
    """A forgettable PostgreSQL store keeps ``msgstate_meta`` and
    ``msgstate_data_keys`` in the URL's schema; its settings read back."""
    url = pg.fresh_url()
    schema = _schema_of(url)
    service = MessageService.open(url, forgettable=True, cipher_key=CIPHER_KEY)
    service.create("m1", sender="a", user_id="b")
    settings = read_settings(service.recorder)
    service.close()
    with _pg_admin() as admin:
        rows = admin.execute(
            f'SELECT name, value FROM "{schema}".msgstate_meta ORDER BY name'
        ).fetchall()
        (keys,) = admin.execute(
            f'SELECT count(*) FROM "{schema}".msgstate_data_keys'
        ).fetchone()
    expected = {
        "data_keys": "beside",
        "personal_fields": "sealed",
        "stream_ids": HMAC_SHA256,
    }
    assert (expected, sorted(expected.items()), 1) == (settings, rows, keys)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_key_store_beside_the_events_leaves_them_open(
    kind: str, tmp_path: Path
) -> None:
    """``key_store_beside`` (what MessageService uses for keys beside the events)
    shares the event store's connections: closing it leaves the events usable,
    and it sees the keys the service issued."""
    service = MessageService.open(backend_url(kind, tmp_path), forgettable=True)
    service.create("m1", sender="alice", user_id="bob", content={"t": 1})
    beside = key_store_beside(service.recorder)
    known = beside.get(service.stream_id("m1"))
    beside.close()
    service.create("m2", sender="carol", user_id="dave", content={"t": 2})
    assert (32, "carol", "alice") == (
        len(known or b""),
        service.get("m2").sender,
        service.get("m1").sender,
    )
    service.close()


# -- waiting: locks, pools, races --


class _Holder:
    """An outside SQLite connection holding the write lock of ``path``."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.connection.execute("COMMIT")
        self.connection.close()


def _answer(call: Callable[[], Any]) -> Any:
    """What ``call`` returns, or the exception it raised."""
    try:
        return call()
    except Exception as error:  # the test compares it
        return error


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except Exception as error:  # the test reports it
            out.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_sqlite_key_store_waits_for_other_writers_and_readers_do_not_wait(
    tmp_path: Path,
) -> None:
    """A key file kept apart waits (up to 30 s) for another process's write lock;
    meanwhile reading keys, and reading the store's settings while another thread
    waits to record one, answer at once. (``record_setting``/``read_settings``,
    msgstate.keys's helpers for ``msgstate_meta``, are the only way to record a
    setting on purpose.)"""
    events, key_file = tmp_path / "e.db", tmp_path / "k.db"
    service = MessageService.open(
        f"sqlite:///{events}", key_store=f"sqlite:///{key_file}"
    )
    service.create("m1", sender="alice", user_id="bob")
    key_lock, events_lock = _Holder(key_file), _Holder(events)
    creating, created = _in_thread(
        lambda: service.create("m2", sender="carol", user_id="dave")
    )
    recording, recorded = _in_thread(
        lambda: record_setting(service.recorder, "probe", "1")
    )
    try:
        time.sleep(0.3)  # both threads now wait for the other process's locks
        reading = time.monotonic()
        seen = (
            _answer(lambda: service.get("m1").sender),
            _answer(lambda: read_settings(service.recorder)["data_keys"]),
        )
        read_in = time.monotonic() - reading
        time.sleep(max(0.0, reading + 5.3 - time.monotonic()))
    finally:
        key_lock.release()
        events_lock.release()
        creating.join(30)
        recording.join(30)
    assert (("alice", "apart"), True) == (seen, read_in < 2)
    assert (["1"], "carol") == (recorded, getattr(created[0], "sender", created))
    service.close()


def test_postgres_key_store_opens_at_most_four_connections(
    backends_lock: Any,
) -> None:
    """A key store of its own uses the URL's pool, here 2 (+2 overflow)
    connections, over TCP to the URL's host: with four queries stuck on a lock, a
    fifth waits the URL's connect_timeout (1 s) for a connection, then fails; the
    four answer once the lock goes."""
    from eventsourcing.persistence import OperationalError

    url = pg.fresh_url() + "&connect_timeout=1&pool_size=2&max_overflow=2"
    schema = _schema_of(url)
    keys = open_key_store(url)
    key = keys.issue(HERE)
    stuck: list[tuple[threading.Thread, list[Any]]] = []
    waiting = "wait_event_type = 'Lock'"
    try:
        backends_lock.execute(
            f'LOCK TABLE "{schema}".msgstate_data_keys IN ACCESS EXCLUSIVE MODE'
        )
        stuck = [_in_thread(lambda: keys.get(HERE)) for _ in range(4)]
        _wait_for(lambda: _backends(schema, waiting) >= 4, 5)
        started = time.monotonic()
        fifth, fifth_out = _in_thread(lambda: keys.get(HERE))
        fifth.join(4.5)
        elapsed = time.monotonic() - started
        blocked = _backends(schema, waiting)
        over_tcp = _backends(schema, f"{waiting} AND client_addr IS NOT NULL")
    finally:
        backends_lock.rollback()
        for thread, _ in stuck:
            thread.join(10)
    keys.close()
    assert (4, 4) == (blocked, over_tcp)
    assert [[key]] * 4 == [out for _, out in stuck]
    assert 1 == len(fifth_out)
    assert isinstance(fifth_out[0], OperationalError)
    assert 0.8 < elapsed < 4.5


@pytest.fixture
def backends_lock() -> Iterator[Any]:
    """A PostgreSQL session in a transaction (for taking locks), closed after."""
    import psycopg

    pg.require()
    connection = psycopg.connect(pg.BASE_URL)
    yield connection
    connection.close()


def test_postgres_key_table_created_while_another_process_creates_it(
    backends_lock: Any,
) -> None:
    """Another session creates ``msgstate_data_keys`` at the same moment (its
    CREATE not yet committed): opening the key store waits, loses the race once,
    tries again and works with the other session's table."""
    url = pg.fresh_url()
    schema = _schema_of(url)
    other = backends_lock
    other.execute(f'CREATE SCHEMA "{schema}"')
    other.commit()
    other.execute(
        f'CREATE TABLE "{schema}".msgstate_data_keys (stream_id uuid PRIMARY KEY, '
        "data_key bytea, forgotten_at timestamptz)"
    )
    opening, opened = _in_thread(lambda: open_key_store(url))
    waited = _wait_for(
        lambda: (
            _backends(schema, "wait_event_type = 'Lock'") >= 1 or not opening.is_alive()
        ),
        5,
    )
    other.commit()
    opening.join(10)
    assert waited
    keys = opened[0]
    assert isinstance(keys, KeyStore), keys
    key = keys.issue(HERE)
    assert (32, key) == (len(key or b""), keys.get(HERE))
    keys.close()


def test_postgres_key_store_beside_a_dropped_schema_is_refused() -> None:
    """A key store beside events whose schema was dropped is refused when made
    (after its retries), not handed out without a table. (Through
    ``key_store_beside``, what MessageService uses: opening a service would
    recreate the schema first.)"""
    from eventsourcing.persistence import ProgrammingError

    url = pg.fresh_url()
    schema = _schema_of(url)
    service = MessageService.open(url)
    with _pg_admin() as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    with pytest.raises(ProgrammingError, match="does not exist"):
        key_store_beside(service.recorder)
    service.close()


def test_a_postgres_key_store_takes_the_urls_options() -> None:
    """pool_size, max_overflow, lock_timeout and idle_in_transaction_timeout of a
    key_store URL hold for the key store, which checks its connections before
    use as the event store does (it used to ignore them: a fixed pool of 2 + 2,
    no lock timeout)."""
    keys = open_key_store(
        pg.fresh_url()
        + "&pool_size=3&max_overflow=4&lock_timeout=7&idle_in_transaction_timeout=9"
    )
    try:
        datastore: Any = keys.datastore  # type: ignore[attr-defined]
        assert (3, 7) == (datastore.pool.min_size, datastore.pool.max_size)
        assert 7 == datastore.lock_timeout
        assert 9 == datastore.idle_in_transaction_session_timeout
        assert "_purging_check" in datastore.pool._check.__qualname__
    finally:
        keys.close()
