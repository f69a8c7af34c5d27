"""``msgstate archive`` and ``msgstate restore``, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from msgstate import MessageService
from tests.test_cli import invoke, ok

PERMANENT = 6017


def populate(db: str) -> None:
    service = MessageService.open(db)
    for i in range(5):
        service.create(f"d{i}", sender="a", user_id="b")
        service.record_delivery(f"d{i}", seq=str(i))
    service.create("dead", sender="a", user_id="b")
    service.record_failure("dead", code=PERMANENT)
    service.create("open", sender="a", user_id="b")
    service.close()


def test_archive_dry_run_counts_and_writes_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    populate(db)
    to = tmp_path / "a.jsonl"

    result = ok("archive", "--db", db, "--before", "2100-01-01", "--to", str(to))
    dry = ok(
        "archive",
        "--db",
        db,
        "--before",
        "2100-01-01",
        "--to",
        str(tmp_path / "b"),
        "--dry-run",
        "--json",
    )

    assert "deleted from the store" in result.stdout
    assert json.loads(dry.stdout)["messages"] == 0  # everything is archived already
    assert not (tmp_path / "b").exists()


def test_archive_json_include_and_restore(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    populate(db)
    to = tmp_path / "a.jsonl"
    dry = ok(
        "archive",
        "--db",
        db,
        "--before",
        "2100-01-01",
        "--to",
        str(to),
        "--include",
        "delivered",
        "--dry-run",
        "--json",
    )
    assert json.loads(dry.stdout)["messages"] == 5

    report = json.loads(
        ok(
            "archive",
            "--db",
            db,
            "--before",
            "2100-01-01",
            "--to",
            str(to),
            "--include",
            "dead",
            "--chunk",
            "1",
            "--json",
        ).stdout
    )
    shown = invoke("show", "dead", "--db", db)
    restored = json.loads(ok("restore", "--db", db, str(to), "--json").stdout)
    again = ok("restore", "--db", db, str(to))

    assert (report["messages"], report["archived"]) == (1, 1)
    assert shown.exit_code == 1
    assert "[MESSAGE_ARCHIVED]" in shown.stderr
    assert (restored["restored"], restored["events"]) == (1, 2)
    assert "already in the store" in again.stdout
    assert ok("show", "dead", "--db", db).exit_code == 0


def test_archive_refusals_are_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    populate(db)
    (tmp_path / "mine.txt").write_text("x")

    bad_time = invoke("archive", "--db", db, "--before", "soon", "--to", "a")
    taken = invoke(
        "archive",
        "--db",
        db,
        "--before",
        "2100-01-01",
        "--to",
        str(tmp_path / "mine.txt"),
    )
    missing = invoke("restore", "--db", db, str(tmp_path / "nothing.jsonl"))

    assert bad_time.exit_code == 2
    assert "'--before'" in bad_time.stderr
    assert taken.exit_code == 1
    assert taken.stderr.startswith("error: ")
    assert "[ARCHIVE_INVALID]" in taken.stderr
    assert missing.exit_code == 1
    assert "[ARCHIVE_INVALID]" in missing.stderr
