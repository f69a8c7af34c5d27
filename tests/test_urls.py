"""The database URL is parsed strictly and is authoritative."""

from __future__ import annotations

from pathlib import Path

import pytest

from msgstate import (
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MessageService,
    StorageError,
)
from msgstate.storage import persistence_env


def test_memory_url() -> None:
    """memory:// selects eventsourcing's in-process store."""
    assert {"PERSISTENCE_MODULE": "eventsourcing.popo"} == persistence_env("memory://")


def test_sqlite_relative_and_absolute(tmp_path: Path) -> None:
    """sqlite:/// + path: three slashes relative, four absolute (SQLAlchemy style)."""
    env = persistence_env(f"sqlite:///{tmp_path}/x.db")
    assert (f"{tmp_path}/x.db", "eventsourcing.sqlite") == (
        env["SQLITE_DBNAME"],
        env["PERSISTENCE_MODULE"],
    )
    assert "x.db" == persistence_env("sqlite:///x.db")["SQLITE_DBNAME"]


def test_sqlite_memory_databases_are_private() -> None:
    """Two sqlite:///:memory: services do not share messages."""
    one = MessageService.open("sqlite:///:memory:")
    two = MessageService.open("sqlite:///:memory:")
    one.create("m1", sender="a", user_id="b")
    assert "m1" == one.get("m1").msg_id
    with pytest.raises(MessageNotFound):
        two.get("m1")


@pytest.mark.parametrize(
    "url",
    [
        "mysql://localhost/db",
        "sqlite://",
        "sqlite:///",
        "sqlite://relative.db",
        "sqlite:///no/such/dir/x.db",
        "memory://somewhere",
        "memory://?x=1",
        "",
        "file.db",
    ],
)
def test_bad_urls_raise_invalid_argument_naming_the_url(url: str) -> None:
    """An unknown scheme or a bad path raises InvalidArgument that names the URL."""
    with pytest.raises(InvalidArgument) as info:
        MessageService.open(url)
    assert repr(url) in info.value.desc or url in info.value.desc


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("x" * 300, "247 bytes"),  # the file name (SQLite adds "-journal")
        ("x" * 248, "247 bytes"),
        ("é" * 200 + "/x.db", "255 bytes per name"),  # a directory name
        ("a/" * 2100 + "x.db", "4095 bytes"),  # the whole path
    ],
)
def test_too_long_sqlite_paths_name_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, limit: str
) -> None:
    """A path past the file system's limits is refused naming the limit, not OSError."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidArgument) as info:
        MessageService.open("sqlite:///" + path)
    assert limit in info.value.desc
    assert [] == list(tmp_path.iterdir())  # nothing written


def test_longest_sqlite_file_name_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file name of exactly the limit (247 bytes) opens and works."""
    monkeypatch.chdir(tmp_path)
    service = MessageService.open("sqlite:///" + "x" * 247)
    try:
        service.create("m1", sender="a", user_id="b")
        assert "m1" == service.get("m1").msg_id
    finally:
        service.close()


def test_directory_is_not_a_database(tmp_path: Path) -> None:
    """A URL naming a directory is refused."""
    with pytest.raises(InvalidArgument):
        MessageService.open(f"sqlite:///{tmp_path}")


def test_password_is_never_echoed() -> None:
    """Errors about a URL redact its password."""
    with pytest.raises(InvalidArgument) as info:
        MessageService.open("mysql://user:s3cret@host/db")
    assert "s3cret" not in str(info.value)


def test_not_a_database_file_is_a_storage_error(tmp_path: Path) -> None:
    """A file that is not SQLite raises StorageError, not a sqlite3 traceback."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError) as info:
        MessageService.open(f"sqlite:///{junk}")
    assert ErrorCode.STORAGE_ERROR == info.value.code


def test_environment_fallback_and_authority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No URL reads MSGSTATE_DATABASE_URL; eventsourcing's variables are ignored."""
    db = tmp_path / "env.db"
    monkeypatch.setenv("MSGSTATE_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.popo")
    monkeypatch.setenv("MSGSTATE_PERSISTENCE_MODULE", "eventsourcing.popo")
    monkeypatch.setenv("SQLITE_DBNAME", str(tmp_path / "elsewhere.db"))
    service = MessageService.open()
    service.create("m1", sender="a", user_id="b")
    assert db.exists()
    assert not (tmp_path / "elsewhere.db").exists()
    reopened = MessageService.open(f"sqlite:///{db}")
    assert "m1" == reopened.get("m1").msg_id


def test_no_url_and_no_environment_is_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a URL or MSGSTATE_DATABASE_URL the store is in memory."""
    monkeypatch.delenv("MSGSTATE_DATABASE_URL", raising=False)
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.sqlite")
    service = MessageService.open()
    assert "eventsourcing.popo" == service.env.get("PERSISTENCE_MODULE")
