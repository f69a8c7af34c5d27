"""The ``msgstate`` command line, through click's CliRunner and once for real."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from msgstate import MessageService, ResendPolicy
from msgstate._simulation import (
    FAILURE_MIX,
    SimClock,
    fresh_start,
    run_simulation,
    transport_outcome,
)
from msgstate.cli import cli
from msgstate.codes import RetryClass, lookup
from tests.support import EPOCH

FAST_POLICY = "initial_interval = 0.001\nmaximum_interval = 0.001\n"


def make_runner() -> CliRunner:
    """A runner that keeps stderr apart from stdout (on every click >= 8.1)."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click 8.1
    except TypeError:
        return CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A fresh SQLite store URL in the test's own directory."""
    return f"sqlite:///{tmp_path / 'cli.db'}"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``msgstate ARGS`` in-process; never with an unexpected exception."""
    result = make_runner().invoke(cli, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.stdout + result.stderr
    return result


def ok(*args: str) -> Result:
    """Run ``msgstate ARGS`` and require success."""
    result = invoke(*args)
    assert 0 == result.exit_code, result.stderr
    return result


def ok_json(*args: str) -> Any:
    """Run ``msgstate ARGS --json`` and decode its stdout."""
    return json.loads(ok(*args, "--json").stdout)


def one_error_line(result: Result) -> str:
    """The single ``error: ...`` line a failed command writes to stderr."""
    lines = result.stderr.strip().splitlines()
    assert 1 == len(lines), result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def write_policy(tmp_path: Path, text: str, name: str = "policy.toml") -> str:
    """A policy TOML file in the test's directory."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def create(db: str, msg_id: str = "m1") -> None:
    """Create a C2C message through the command line."""
    ok("create", msg_id, "--sender", "alice", "--user-id", "bob", "--db", db)


# -- one message --


def test_create_and_show(db: str) -> None:
    """create records a sending message; show prints it with the resend decision."""
    view = ok_json(
        "create",
        "m1",
        "--sender",
        "alice",
        "--user-id",
        "bob",
        "--text",
        "hi",
        "--db",
        db,
    )
    assert "SENDING" == view["status"]
    assert {"text": "hi"} == view["content"]
    shown = ok_json("show", "m1", "--db", db)
    assert "m1" == shown["msg_id"]
    assert 1 == shown["attempts"]
    assert "SEND_IN_PROGRESS" == shown["resend"]["code"]
    table = ok("show", "m1", "--db", db).stdout
    assert "SENDING" in table
    assert "alice" in table


def test_create_group_message(db: str) -> None:
    """--group-id makes a group message."""
    view = ok_json(
        "create", "g1", "--sender", "alice", "--group-id", "room", "--db", db
    )
    assert "room" == view["group_id"]
    assert view["user_id"] is None


def test_create_needs_a_receiver(db: str) -> None:
    """Without --user-id or --group-id, create is a usage error."""
    result = invoke("create", "m1", "--sender", "alice", "--db", db)
    assert 2 == result.exit_code
    assert "--user-id" in one_error_line(result)


def test_record_failure_resend_and_delivery(db: str) -> None:
    """A failure, a resend (V2TimValueCallback JSON) and a delivery."""
    create(db)
    failed = ok_json(
        "record-failure",
        "m1",
        "--code",
        "6012",
        "--desc",
        "timeout",
        "--retry-after",
        "2",
        "--db",
        db,
    )
    assert "SEND_FAIL" == failed["status"]
    assert "TRANSIENT" == failed["last_error_class"]
    assert "ERR_REQUEST_TIME_OUT" == failed["last_error_name"]
    assert 2.0 == failed["last_retry_after"]
    answer = json.loads(
        ok("resend", "m1", "--request-id", "r1", "--actor", "ops", "--db", db).stdout
    )
    assert 0 == answer["code"]
    assert "ok" == answer["desc"]
    assert "m1" == answer["data"]["msgID"]
    assert 1 == answer["data"]["status"]  # V2TIMMessageStatus sending
    again = json.loads(ok("resend", "m1", "--request-id", "r1", "--db", db).stdout)
    assert 0 == again["code"]  # the same request: idempotent
    delivered = ok_json("record-delivery", "m1", "--seq", "1001", "--db", db)
    assert "SEND_SUCC" == delivered["status"]
    assert "1001" == delivered["seq"]
    assert 2 == delivered["attempts"]


def test_resend_refusal_exits_1(db: str) -> None:
    """A refused resend prints its callback JSON, one error line, and exits 1."""
    create(db)
    ok("record-failure", "m1", "--code", "80001", "--db", db)
    result = invoke("resend", "m1", "--db", db)
    assert 1 == result.exit_code
    answer = json.loads(result.stdout)
    assert 1006 == answer["code"]
    assert ("m1", 3) == (answer["data"]["msgID"], answer["data"]["status"])
    assert one_error_line(result).endswith("[NOT_RETRYABLE]")


def test_resend_unknown_message(db: str) -> None:
    """An unknown message answers the plugin's -1 "message not found", exit 1."""
    create(db)
    result = invoke("resend", "nope", "--db", db)
    assert 1 == result.exit_code
    assert {"code": -1, "desc": "message not found", "data": None} == json.loads(
        result.stdout
    )
    assert one_error_line(result).endswith("[MESSAGE_NOT_FOUND]")


def test_delivery_conflict_is_one_line(db: str) -> None:
    """A second delivery with another seq: `error: <desc> [ALREADY_DELIVERED]`."""
    create(db)
    ok("record-delivery", "m1", "--seq", "1", "--db", db)
    result = invoke("record-delivery", "m1", "--seq", "2", "--db", db)
    assert 1 == result.exit_code
    assert one_error_line(result).endswith("[ALREADY_DELIVERED]")


def test_history_json_and_table(db: str) -> None:
    """history --json lists version, event, recorded_at, attempt and data."""
    create(db)
    ok("record-failure", "m1", "--code", "9520", "--db", db)
    ok("resend", "m1", "--actor", "ops", "--db", db)
    entries = ok_json("history", "m1", "--db", db)
    assert ["Created", "SendFailed", "ResendRequested"] == [e["event"] for e in entries]
    assert [1, 2, 3] == [e["version"] for e in entries]
    assert [1, 1, 2] == [e["attempt"] for e in entries]
    for entry in entries:
        assert {"version", "event", "recorded_at", "attempt", "data"} <= set(entry)
    assert 9520 == entries[1]["data"]["code"]
    assert "ops" == entries[2]["data"]["actor"]
    table = ok("history", "m1", "--db", db).stdout
    assert "ResendRequested" in table
    assert "ERR_SDK_NET_WAIT_ACK_TIMEOUT" in table


def test_show_unknown_message(db: str) -> None:
    """An unknown message: one line naming it and its code, exit 1."""
    create(db)
    result = invoke("show", "nope", "--db", db)
    assert 1 == result.exit_code
    assert "error: message 'nope' not found [MESSAGE_NOT_FOUND]" == one_error_line(
        result
    )


def test_invalid_argument_is_one_line(db: str) -> None:
    """A value the library refuses is `error: ... [INVALID_ARGUMENT]`, exit 1."""
    create(db)
    result = invoke(
        "record-failure", "m1", "--code", "6012", "--attempt", "9", "--db", db
    )
    assert 1 == result.exit_code
    assert one_error_line(result).endswith("[INVALID_ARGUMENT]")


# -- read models --


def test_due_and_dead(db: str, tmp_path: Path) -> None:
    """due lists resendable failures, dead the ones never resent (by code name)."""
    fast = write_policy(tmp_path, FAST_POLICY)
    for msg_id in ("a", "b", "c"):
        create(db, msg_id)
    ok("record-failure", "a", "--code", "6012", "--db", db)
    ok("record-failure", "b", "--code", "20007", "--db", db)
    ok("record-delivery", "c", "--seq", "9", "--db", db)
    time.sleep(0.01)
    due = ok_json("due", "--policy", fast, "--db", db)
    assert ["a"] == [d["msg_id"] for d in due]
    assert "SEND_FAIL" == due[0]["status"]
    assert 1 == due[0]["attempts"]
    dead = ok_json("dead", "--db", db)
    assert [("b", "SEND_FAIL", 1, "NOT_RETRYABLE")] == [
        (d["msg_id"], d["status"], d["attempts"], d["code"]) for d in dead
    ]
    assert "NOT_RETRYABLE" in ok("dead", "--db", db).stdout
    assert "a" in ok("due", "--policy", fast, "--db", db).stdout
    one_try = write_policy(tmp_path, "max_attempts = 1\n", "one.toml")
    exhausted = ok_json("dead", "--policy", one_try, "--db", db)
    assert {"a": "ATTEMPTS_EXHAUSTED", "b": "NOT_RETRYABLE"} == {
        d["msg_id"]: d["code"] for d in exhausted
    }


def test_stats(db: str) -> None:
    """stats --json: total, and by_status keyed by status name."""
    for msg_id in ("a", "b", "c"):
        create(db, msg_id)
    ok("record-failure", "a", "--code", "80001", "--db", db)
    ok("record-delivery", "b", "--seq", "1", "--db", db)
    stats = ok_json("stats", "--db", db)
    assert 3 == stats["total"]
    assert {"SENDING": 1, "SEND_SUCC": 1, "SEND_FAIL": 1} == {
        k: v for k, v in stats["by_status"].items() if v
    }
    assert [{"code": 80001, "name": "ERR_SVR_COMM_SENSITIVE_TEXT", "count": 1}] == (
        stats["failed_by_error_code"]
    )
    table = ok("stats", "--db", db).stdout
    assert "SEND_SUCC" in table
    assert "ERR_SVR_COMM_SENSITIVE_TEXT" in table


def test_replay_verify(db: str) -> None:
    """replay --verify rebuilds the read models and finds them unchanged."""
    create(db, "a")
    ok("record-failure", "a", "--code", "80001", "--db", db)
    result = ok_json("replay", "--verify", "--db", db)
    assert result["verified"] is True
    assert 2 == result["events_replayed"]
    assert [] == result["differences"]
    assert "rebuilt the read models from 2 events" in ok("replay", "--db", db).stdout


def test_replay_verify_exits_1_on_a_difference(db: str, tmp_path: Path) -> None:
    """A read model that lost a row differs from its rebuild: exit 1."""
    create(db, "a")
    ok("record-failure", "a", "--code", "80001", "--db", db)
    ok("stats", "--db", db)  # the read models catch up
    with sqlite3.connect(tmp_path / "cli.db") as connection:
        connection.execute("DELETE FROM msgstate_views")
    result = invoke("replay", "--verify", "--db", db)
    assert 1 == result.exit_code
    assert "dead" in one_error_line(result)
    assert 1 == ok_json("stats", "--db", db)["total"]  # rebuilt


# -- audit --


def test_export(db: str) -> None:
    """export writes one JSON line per event; --msg-id and --since filter."""
    create(db, "a")
    create(db, "b")
    ok("record-failure", "a", "--code", "6012", "--db", db)
    lines = [json.loads(line) for line in ok("export", "--db", db).stdout.splitlines()]
    assert 3 == len(lines)
    for line in lines:
        assert {"msg_id", "version", "event", "recorded_at", "data"} <= set(line)
    only_a = ok("export", "--msg-id", "a", "--db", db).stdout.splitlines()
    assert ["a", "a"] == [json.loads(line)["msg_id"] for line in only_a]
    both = ok("export", "--msg-id", "a", "--msg-id", "b", "--db", db).stdout
    assert 3 == len(both.splitlines())
    assert "" == ok("export", "--since", "2999-01-01T00:00:00", "--db", db).stdout
    assert 3 == len(
        ok("export", "--since", "2000-01-01T00:00:00Z", "--db", db).stdout.splitlines()
    )


def test_export_bad_since(db: str) -> None:
    """--since must be ISO 8601: a usage error otherwise."""
    create(db)
    result = invoke("export", "--since", "yesterday", "--db", db)
    assert 2 == result.exit_code
    assert "--since" in one_error_line(result)


def test_what_if(db: str, tmp_path: Path) -> None:
    """what-if replays histories under another policy and counts the refusals."""
    create(db, "a")
    ok("record-failure", "a", "--code", "9520", "--db", db)
    ok("resend", "a", "--db", db)
    strict = write_policy(tmp_path, "resend_ambiguous = false\n")
    report = ok_json("what-if", "--policy", strict, "--db", db)
    assert 1 == report["messages"]
    assert 1 == report["resends_recorded"]
    assert 1 == report["resends_refused"]
    assert 1 == report["dead_earlier"]
    assert {"NOT_RETRYABLE": 1} == report["first_refusals"]
    detailed = ok_json("what-if", "--policy", strict, "--per-message", "--db", db)
    assert "NOT_RETRYABLE" == detailed["per_message"][0]["first_refusal"]
    assert "dead earlier" in ok("what-if", "--policy", strict, "--db", db).stdout


def test_bad_policy_files(db: str, tmp_path: Path) -> None:
    """Bad TOML, an unknown key or a bad value: one line naming it, exit 2."""
    create(db)
    cases = {
        "broken.toml": ("max_attempts =\n", "broken.toml"),
        "unknown.toml": ("max_attemps = 3\n", "max_attemps"),
        "bad.toml": ('initial_interval = "1s"\n', "initial_interval"),
    }
    for name, (text, named) in cases.items():
        path = write_policy(tmp_path, text, name)
        result = invoke("what-if", "--policy", path, "--db", db)
        assert 2 == result.exit_code
        assert named in one_error_line(result)
    missing = invoke("due", "--policy", str(tmp_path / "none.toml"), "--db", db)
    assert 2 == missing.exit_code
    assert "none.toml" in one_error_line(missing)


def test_policy_table_form(db: str, tmp_path: Path) -> None:
    """A policy file may put its keys under a [policy] table."""
    create(db)
    ok("record-failure", "m1", "--code", "6012", "--db", db)
    path = write_policy(tmp_path, "[policy]\nmax_attempts = 1\n")
    dead = ok_json("dead", "--policy", path, "--db", db)
    assert ["ATTEMPTS_EXHAUSTED"] == [d["code"] for d in dead]


# -- reference --


def test_diagram() -> None:
    """diagram renders the transition table as Mermaid (default) or DOT."""
    mermaid = ok("diagram").stdout
    assert mermaid.startswith("stateDiagram-v2")
    assert "SEND_FAIL --> SENDING" in mermaid
    dot = ok("diagram", "--format", "dot").stdout
    assert dot.startswith("digraph msgstate {")
    assert 2 == invoke("diagram", "--format", "svg").exit_code


def test_codes() -> None:
    """codes lists the catalog, looks one code up (by number or name), or fails."""
    everything = ok_json("codes")
    assert 9520 in {c["code"] for c in everything}
    one = ok_json("codes", "9520")
    assert {
        "code": 9520,
        "name": "ERR_SDK_NET_WAIT_ACK_TIMEOUT",
        "retry_class": "AMBIGUOUS",
    }.items() <= one.items()
    assert 6012 == ok_json("codes", "err_request_timeout")["code"]
    spelled = ok_json("codes", "ERR_REQUEST_TIME_OUT")
    assert ("ERR_REQUEST_TIME_OUT", ["ERR_REQUEST_TIMEOUT"], True) == (
        spelled["name"],
        spelled["aliases"],
        spelled["legacy"],
    )
    span = ok_json("codes", "125000")
    assert (120001, 130000, "PERMANENT") == (
        span["code"],
        span["last"],
        span["retry_class"],
    )
    assert -302 == json.loads(ok("codes", "--json", "--", "-302").stdout)["code"]
    shown = ok("codes", "6012").stdout
    assert "ERR_REQUEST_TIMEOUT" in shown
    assert "请求超时" in shown
    assert "ERR_SVR_MSG_IN_PEER_BLACKLIST" in ok("codes").stdout
    unknown = invoke("codes", "4242")
    assert 1 == unknown.exit_code
    assert "4242" in one_error_line(unknown)


# -- errors and the store --


def test_bad_db_url_names_itself() -> None:
    """A malformed --db is a usage error naming the URL, in one line."""
    result = invoke("stats", "--db", "mysql://somewhere/db")
    assert 2 == result.exit_code
    line = one_error_line(result)
    assert "mysql://somewhere/db" in line
    assert "--db" in line


def test_missing_sqlite_file(tmp_path: Path) -> None:
    """Reading commands refuse a SQLite file that does not exist (and create none)."""
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    result = invoke("stats", "--db", url)
    assert 2 == result.exit_code
    assert "typo.db" in one_error_line(result)
    assert not (tmp_path / "typo.db").exists()


def test_not_a_database(tmp_path: Path) -> None:
    """A file that is not a store: one line naming it, STORAGE_ERROR, exit 1."""
    path = tmp_path / "notes.db"
    path.write_text("just some notes\n" * 100, encoding="utf-8")
    result = invoke("stats", "--db", f"sqlite:///{path}")
    assert 1 == result.exit_code
    line = one_error_line(result)
    assert "notes.db" in line
    assert line.endswith("[STORAGE_ERROR]")


def test_usage_errors_are_one_line() -> None:
    """Unknown commands and options: one line, exit 2."""
    for args in (["bogus"], ["stats", "--bogus"], ["simulate", "--messages", "0"]):
        result = invoke(*args)
        assert 2 == result.exit_code, args
        one_error_line(result)


def test_database_url_from_the_environment(db: str) -> None:
    """Without --db, MSGSTATE_DATABASE_URL names the store."""
    result = invoke(
        "create",
        "m1",
        "--sender",
        "a",
        "--user-id",
        "b",
        "--json",
        env={"MSGSTATE_DATABASE_URL": db},
    )
    assert 0 == result.exit_code
    assert 1 == ok_json("stats", "--db", db)["total"]


def test_help_and_version() -> None:
    """--help lists the subcommands; --version prints the version."""
    text = ok("--help").stdout
    for name in ("simulate", "show", "history", "resend", "due", "dead", "what-if"):
        assert name in text
    assert "0.1.0" in ok("--version").stdout


# -- simulate --


def test_simulate_settles_every_message(db: str) -> None:
    """Every simulated message ends delivered or dead; nothing is left due."""
    summary = ok_json("simulate", "--messages", "200", "--seed", "5", "--db", db)
    assert 200 == summary["messages"]
    assert 200 == summary["delivered"] + summary["dead"]
    assert summary["dead"] == sum(summary["dead_by_reason"].values())
    assert 200 == sum(summary["sends_histogram"].values())
    assert summary["failures"] > 0
    assert summary["resends"] > 0
    assert summary["events_written"] >= 2 * 200
    assert summary["commands"] > 0
    assert summary["commands_per_second"] > 0
    assert 5 == summary["seed"]
    assert 1 == summary["run"]
    stats = ok_json("stats", "--db", db)
    assert 200 == stats["total"]
    assert summary["delivered"] == stats["by_status"]["SEND_SUCC"]
    assert summary["dead"] == stats["by_status"]["SEND_FAIL"]
    assert 0 == stats["by_status"]["SENDING"]
    assert [] == ok_json("due", "--db", db)
    dead = ok_json("dead", "--limit", "1000", "--db", db)
    assert summary["dead"] == len(dead)
    reasons: dict[str, int] = {}
    for letter in dead:
        reasons[letter["code"]] = reasons.get(letter["code"], 0) + 1
    assert summary["dead_by_reason"] == reasons
    events = ok("export", "--db", db).stdout.splitlines()
    assert summary["events_written"] == len(events)


def test_simulate_same_seed_same_summary(db: str) -> None:
    """The same seed gives the same counts."""
    first = ok_json("simulate", "--messages", "200", "--seed", "11", "--db", db)
    second = ok_json(
        "simulate", "--messages", "200", "--seed", "11", "--fresh", "--db", db
    )
    volatile = {"wall_seconds", "commands_per_second", "simulated_seconds"}
    for key in volatile:
        first.pop(key)
        second.pop(key)
    assert first == second
    other = ok_json(
        "simulate", "--messages", "200", "--seed", "12", "--fresh", "--db", db
    )
    assert (first["delivered"], first["sends_histogram"]) != (
        other["delivered"],
        other["sends_histogram"],
    )


def test_simulate_rerun_adds_a_batch_and_fresh_starts_over(db: str) -> None:
    """A rerun adds run 2's messages; --fresh deletes the store and starts at 1."""
    ok("simulate", "--messages", "100", "--seed", "1", "--db", db)
    second = ok_json("simulate", "--messages", "100", "--seed", "1", "--db", db)
    assert 2 == second["run"]
    assert "sim2-" == second["prefix"]
    assert 200 == ok_json("stats", "--db", db)["total"]
    ok("show", "sim1-000000", "--db", db)
    ok("show", "sim2-000099", "--db", db)
    fresh = ok_json("simulate", "--messages", "50", "--fresh", "--db", db)
    assert 1 == fresh["run"]
    assert 50 == ok_json("stats", "--db", db)["total"]


def test_simulate_with_a_policy(db: str, tmp_path: Path) -> None:
    """--policy drives the resend loop: max_attempts = 1 never resends."""
    path = write_policy(tmp_path, "max_attempts = 1\n")
    summary = ok_json(
        "simulate", "--messages", "100", "--seed", "3", "--policy", path, "--db", db
    )
    assert {"1": 100} == summary["sends_histogram"]
    assert 0 == summary["resends"]
    assert 1 == summary["policy"]["max_attempts"]
    assert summary["dead_by_reason"]["ATTEMPTS_EXHAUSTED"] > 0


def test_simulate_table(db: str) -> None:
    """Without --json, simulate prints the summary table."""
    text = ok("simulate", "--messages", "50", "--seed", "2", "--db", db).stdout
    for label in (
        "delivered",
        "dead",
        "1 send",
        "late acks",
        "events written",
        "commands per second",
    ):
        assert label in text


def test_simulate_fresh_refuses_postgres() -> None:
    """--fresh does not drop PostgreSQL tables: a clear refusal, exit 1."""
    result = invoke(
        "simulate",
        "--messages",
        "10",
        "--fresh",
        "--db",
        "postgresql://u:secret@localhost/db",
    )
    assert 1 == result.exit_code
    line = one_error_line(result)
    assert "PostgreSQL" in line
    assert "secret" not in line


def test_simulate_fresh_refuses_a_non_sqlite_file(tmp_path: Path) -> None:
    """--fresh deletes SQLite stores only, never some other file."""
    path = tmp_path / "precious.txt"
    path.write_text("keep me", encoding="utf-8")
    result = invoke(
        "simulate", "--messages", "10", "--fresh", "--db", f"sqlite:///{path}"
    )
    assert 1 == result.exit_code
    assert "precious.txt" in one_error_line(result)
    assert path.exists()


# -- the simulation as a library --


def test_fresh_start_deletes_wal_and_shm(tmp_path: Path) -> None:
    """fresh_start removes the database and its -wal/-shm companions."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    service = MessageService.open(url)
    service.create("m", sender="a", user_id="b")
    deleted = {p.name for p in fresh_start(url)}
    service.close()
    assert "x.db" in deleted
    assert not (tmp_path / "x.db").exists()
    assert not (tmp_path / "x.db-wal").exists()
    assert [] == fresh_start("memory://")


def test_transport_outcome_is_pure_and_uses_catalog_codes() -> None:
    """An outcome depends on (seed, index, attempt) only; codes match their class."""
    outcomes = [transport_outcome(7, i, 1, 0.5) for i in range(2_000)]
    assert outcomes == [transport_outcome(7, i, 1, 0.5) for i in range(2_000)]
    failures = [o for o in outcomes if not o.delivered]
    assert 800 < len(failures) < 1_200
    classes = {o.retry_class for o in failures}
    assert {entry[1] for entry in FAILURE_MIX} == classes
    for outcome in failures:
        assert outcome.code is not None
        info = lookup(outcome.code)
        assert info is not None
        assert outcome.retry_class is info.retry_class
        if outcome.late_ack_after is not None:
            assert RetryClass.AMBIGUOUS is outcome.retry_class
        if outcome.retry_after is not None:
            assert RetryClass.RATE_LIMITED is outcome.retry_class
    assert any(o.late_ack_after is not None for o in failures)
    assert all(transport_outcome(1, i, 1, 0.0).delivered for i in range(100))
    assert not any(transport_outcome(1, i, 1, 1.0).delivered for i in range(100))


def test_run_simulation_in_memory() -> None:
    """run_simulation works on any service driven by its SimClock."""
    clock = SimClock(EPOCH)
    policy = ResendPolicy(jitter=0.3, enforce_backoff=True)
    service = MessageService.open("memory://", policy=policy, clock=clock)
    seen: list[int] = []
    summary = run_simulation(
        service,
        clock,
        messages=150,
        failure_rate=0.4,
        seed=9,
        progress=lambda settled, total: seen.append(settled),
    )
    assert 150 == summary.delivered + summary.dead
    assert 150 == seen[-1]
    assert seen == sorted(seen)
    assert summary.simulated_seconds > 0
    assert clock.now > EPOCH
    assert [] == service.due_resends(limit=1_000)
    counts = service.status_counts()
    assert summary.delivered == sum(
        n for status, n in counts.items() if status.name == "SEND_SUCC"
    )


# -- the installed executable --


def test_installed_executable(tmp_path: Path) -> None:
    """The `msgstate` script works in a subprocess, errors included."""
    executable = Path(sys.executable).parent / "msgstate"
    assert executable.exists(), "pip install -e '.[dev]' installs the script"
    url = f"sqlite:///{tmp_path / 'exe.db'}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(executable), *args, "--db", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    created = run("create", "m1", "--sender", "a", "--user-id", "b")
    assert 0 == created.returncode, created.stderr
    simulated = run("simulate", "--messages", "20", "--seed", "4", "--json")
    assert 0 == simulated.returncode, simulated.stderr
    assert 20 == json.loads(simulated.stdout)["messages"]
    stats = run("stats", "--json")
    assert 21 == json.loads(stats.stdout)["total"]
    refused = run("record-delivery", "nope", "--seq", "1")
    assert 1 == refused.returncode
    assert ["error: message 'nope' not found [MESSAGE_NOT_FOUND]"] == (
        refused.stderr.strip().splitlines()
    )
    module = subprocess.run(
        [sys.executable, "-m", "msgstate", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == module.returncode
    assert "0.1.0" in module.stdout
