"""The ``msgstate`` command line (``pip install 'msgstate[cli]'``).

Every subcommand takes ``--db URL`` (default ``sqlite:///msgstate.db``, or
``$MSGSTATE_DATABASE_URL``) and, where it prints data, ``--json``. Errors are one
line on stderr, ``error: <desc> [<CODE_NAME>]`` for a refusal (exit status 1) and
``error: <what is wrong>`` for bad usage (exit status 2); never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

try:
    import click
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table
except ImportError as missing:  # pragma: no cover - the cli extra is not installed
    raise SystemExit(
        f"msgstate's command line needs click and rich ({missing}); "
        "install them with: pip install 'msgstate[cli]'"
    ) from None

from attrs import fields

from msgstate import __version__
from msgstate._simulation import MAX_MESSAGES, SimulationSummary, simulate
from msgstate.application import DATABASE_URL_ENV, MessageService
from msgstate.archive import ArchiveReport
from msgstate.codes import CodeInfo, catalog, find, lookup
from msgstate.errors import ErrorCode, InvalidArgument, MsgStateError
from msgstate.policy import Decision, ResendPolicy
from msgstate.projections import DeadLetter
from msgstate.shards import SHARDS_SCHEME, _map_and_path, move_shard, shard_status
from msgstate.status import MessageStatus, to_dot, to_mermaid
from msgstate.storage import persistence_env
from msgstate.tencent import NOT_FOUND_CODE, V2TIMMessageManager
from msgstate.views import HistoryEntry, MessageView
from msgstate.whatif import WhatIfReport

__all__ = ["DEFAULT_DB", "cli", "main"]

DEFAULT_DB = "sqlite:///msgstate.db"
"""The store used without ``--db`` and without ``$MSGSTATE_DATABASE_URL``."""

DEBUG_ENV = "MSGSTATE_DEBUG"
KEY_STORE_ENV = "MSGSTATE_KEY_STORE"
"""The key store URL of a forgettable store that keeps its data keys apart."""
"""Set it to see the traceback of an unexpected error instead of one line."""

F = TypeVar("F", bound=Callable[..., Any])

_NO_ARGS_IS_HELP: tuple[type[BaseException], ...] = tuple(
    kind
    for kind in [getattr(click.exceptions, "NoArgsIsHelpError", None)]
    if kind is not None
)  # click >= 8.2 shows the help for a bare group as a "usage error"


# -- errors: one line, in one place --


class _Refused(click.ClickException):
    """A refused command or a failed operation: exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _BadUsage(click.ClickException):
    """Bad usage (an unknown option, a bad value): exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _bad_usage(error: click.UsageError) -> click.ClickException:
    if isinstance(error, _NO_ARGS_IS_HELP):
        return error  # the help text itself
    hint = ""
    if error.ctx is not None:
        hint = f" (see '{error.ctx.command_path} --help')"
    return _BadUsage(error.format_message() + hint)


class MsgStateGroup(click.Group):
    """Turns every error into one line on stderr and an exit status.

    :class:`~msgstate.MsgStateError` prints ``error: <desc> [<CODE_NAME>]`` and
    exits with 1; usage errors print ``error: <message>`` and exit with 2.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            raise _bad_usage(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MsgStateError as error:
            raise _Refused(str(error)) from None
        except (_Refused, _BadUsage, click.exceptions.Exit, click.Abort):
            raise
        except click.UsageError as error:
            raise _bad_usage(error) from None
        except click.ClickException as error:
            raise _Refused(error.format_message()) from None
        except BrokenPipeError:
            raise  # click's main quiets a closed pipe (`msgstate export | head`)
        except OSError as error:
            where = f" {error.filename!r}" if error.filename else ""
            raise _Refused(f"{error.strerror or error}{where}") from None
        except Exception as error:
            if os.environ.get(DEBUG_ENV):
                raise
            raise _Refused(
                f"unexpected {type(error).__name__}: {error} "
                f"(set {DEBUG_ENV}=1 to see the traceback)"
            ) from None


# -- shared options --


def db_option(function: F) -> F:
    """``--db URL``, from ``$MSGSTATE_DATABASE_URL`` or ``sqlite:///msgstate.db``."""
    return click.option(
        "--db",
        "db",
        default=DEFAULT_DB,
        envvar=DATABASE_URL_ENV,
        show_default=True,
        show_envvar=True,
        metavar="URL",
        help="The store: sqlite:///relative.db, sqlite:////absolute.db, "
        "postgresql://user:password@host/dbname, memory://, or a shard map "
        "file: shards:///absolute/path/shards.toml.",
    )(function)


def json_option(function: F) -> F:
    """``--json``: print JSON instead of a table."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
    )(function)


def policy_option(function: F) -> F:
    """``--policy FILE.toml``: the resend policy in force."""
    return click.option(
        "--policy",
        "policy_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        metavar="FILE.toml",
        help="Resend policy settings (ResendPolicy.from_dict keys, intervals in "
        "seconds); default: ResendPolicy().",
    )(function)


def load_policy(path: Path | None, option: str = "'--policy'") -> ResendPolicy | None:
    """The :class:`ResendPolicy` in the TOML file at ``path`` (``None``: none).

    The settings are top-level keys, or the keys of a ``[policy]`` table.
    """
    if path is None:
        return None
    try:
        with path.open("rb") as file:
            data: Mapping[str, Any] = tomllib.load(file)
        if set(data) == {"policy"} and isinstance(data["policy"], dict):
            data = data["policy"]
        return ResendPolicy.from_dict(data)
    except tomllib.TOMLDecodeError as error:
        raise click.BadParameter(f"{path}: {error}", param_hint=option) from None
    except InvalidArgument as error:
        raise click.BadParameter(f"{path}: {error.desc}", param_hint=option) from None
    except OSError as error:
        raise click.BadParameter(
            f"{path}: {error.strerror or error}", param_hint=option
        ) from None


def _check_db(db: str, *, must_exist: bool) -> None:
    """Refuse a malformed ``--db`` URL (or a missing SQLite file), naming it."""
    if db.startswith(SHARDS_SCHEME):
        try:
            _map_and_path(db)
        except InvalidArgument as error:
            raise click.BadParameter(error.desc, param_hint="'--db'") from None
        return
    try:
        env = persistence_env(db)
    except InvalidArgument as error:
        raise click.BadParameter(error.desc, param_hint="'--db'") from None
    name = env.get("SQLITE_DBNAME", "")
    sqlite_file = bool(name) and not name.startswith("file:")
    if must_exist and sqlite_file and not Path(name).is_file():
        raise click.BadParameter(
            f"database file {name!r} (from {db!r}) does not exist; "
            "create messages first (msgstate create, msgstate simulate)",
            param_hint="'--db'",
        )


@contextmanager
def open_service(
    db: str,
    *,
    policy: ResendPolicy | None = None,
    must_exist: bool = True,
    key_store: str | None = None,
) -> Iterator[MessageService]:
    """The service for ``--db``; closed on the way out.

    ``key_store`` (else ``$MSGSTATE_KEY_STORE``) is the data-key store of a
    forgettable store that keeps its keys apart.
    """
    _check_db(db, must_exist=must_exist)
    keys = key_store or os.environ.get(KEY_STORE_ENV) or None
    service = MessageService.open(db, policy=policy, key_store=keys)
    try:
        yield service
    finally:
        service.close()


# -- output helpers --


PIPE_WIDTH = 120
"""Table width when stdout is not a terminal and ``$COLUMNS`` is not set."""


def _console() -> Console:
    width = None
    if not sys.stdout.isatty() and not os.environ.get("COLUMNS"):
        width = PIPE_WIDTH
    return Console(highlight=False, soft_wrap=False, width=width)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    click.echo(json.dumps(_jsonable(value), indent=2, ensure_ascii=False))


def _when(moment: datetime | None) -> str:
    """A time for a table: UTC, to the millisecond."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _code_text(code: int | None) -> str:
    if code is None:
        return ""
    info = lookup(code)
    return f"{code}" if info is None else f"{code} {info.name}"


def view_dict(view: MessageView) -> dict[str, Any]:
    """``view`` as JSON-able data: enums by name, times in ISO 8601."""
    data: dict[str, Any] = {
        f.name: _jsonable(getattr(view, f.name)) for f in fields(MessageView)
    }
    info = None if view.last_error_code is None else lookup(view.last_error_code)
    data["last_error_name"] = None if info is None else info.name
    return data


def decision_dict(decision: Decision) -> dict[str, Any]:
    """A resend decision as JSON-able data."""
    return {
        "allowed": decision.allowed,
        "code": decision.code.name,
        "desc": decision.desc,
        "not_before": _jsonable(decision.not_before),
    }


def _print_view(view: MessageView, decision: Decision | None = None) -> None:
    table = Table(title=f"message {view.msg_id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    to = ", ".join(
        part
        for part in (
            None if view.user_id is None else f"user {view.user_id}",
            None if view.group_id is None else f"group {view.group_id}",
        )
        if part
    )
    rows: list[tuple[str, str]] = [
        ("status", view.status.name),
        ("attempts", str(view.attempts)),
        ("sender", view.sender),
        ("to", to),
        ("content", json.dumps(view.content, ensure_ascii=False)),
        ("created at", _when(view.created_at)),
        ("updated at", _when(view.updated_at)),
        ("version", str(view.version)),
    ]
    if view.last_error_code is not None:
        rows += [
            ("last error", _code_text(view.last_error_code)),
            (
                "error class",
                "" if view.last_error_class is None else view.last_error_class.name,
            ),
            ("error desc", view.last_error_desc or ""),
            ("failed at", _when(view.last_failed_at)),
        ]
        if view.last_retry_after is not None:
            rows.append(("retry after", f"{view.last_retry_after:g} s"))
    if view.next_retry_at is not None:
        rows.append(("next retry at", _when(view.next_retry_at)))
    if view.maybe_delivered:
        rows.append(("maybe delivered", "yes (an ack timed out)"))
    if view.seq is not None:
        rows += [("seq", view.seq), ("delivered at", _when(view.delivered_at))]
    if decision is not None:
        verdict = "allowed" if decision.allowed else decision.code.name
        rows.append(("resend now", f"{verdict}: {decision.desc}"))
    for name, value in rows:
        table.add_row(name, value)
    _console().print(table)


def _emit_view(
    view: MessageView, as_json: bool, decision: Decision | None = None
) -> None:
    if as_json:
        data = view_dict(view)
        if decision is not None:
            data["resend"] = decision_dict(decision)
        _print_json(data)
    else:
        _print_view(view, decision)


# -- the group --


@click.group(
    cls=MsgStateGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="msgstate")
def cli() -> None:
    """An auditable, replayable record of chat messages' delivery status.

    Start with `msgstate simulate` (a flaky transport and a resend loop), then
    look around with stats, due, dead, show, history and export.
    """


def main() -> None:
    """The ``msgstate`` executable."""
    cli.main(prog_name="msgstate")


# -- simulate --


@cli.command("simulate")
@db_option
@click.option(
    "--messages",
    type=click.IntRange(1, MAX_MESSAGES),
    default=10_000,
    show_default=True,
    help="How many messages to create and send.",
)
@click.option(
    "--failure-rate",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="The chance that any one send fails.",
)
@click.option(
    "--seed", type=int, help="Makes the outcome reproducible (default: random)."
)
@policy_option
@click.option(
    "--fresh",
    is_flag=True,
    help="Delete the SQLite store (and its -wal/-shm files) first.",
)
@json_option
def simulate_command(
    db: str,
    messages: int,
    failure_rate: float,
    seed: int | None,
    policy_file: Path | None,
    fresh: bool,
    as_json: bool,
) -> None:
    """Send messages through a simulated flaky transport and resend until settled.

    Failures carry real Tencent IM codes (transient, network, session,
    rate-limited, ambiguous ack timeouts of which some are acknowledged late, and
    permanent). A resend loop driven by the policy runs on a simulated clock
    until every message is delivered or dead. Running again on the same store
    adds a new batch (ids sim<run>-NNNNNN); --fresh starts over.
    """
    policy = load_policy(policy_file)
    _check_db(db, must_exist=False)
    show_progress = not as_json and sys.stderr.isatty()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show_progress,
        transient=True,
    ) as progress:
        task = progress.add_task("settled", total=messages)

        def report(settled: int, total: int) -> None:
            progress.update(task, completed=settled, total=total)

        summary = simulate(
            db,
            messages=messages,
            failure_rate=failure_rate,
            seed=seed,
            policy=policy,
            fresh=fresh,
            progress=report,
        )
    if as_json:
        _print_json(summary.to_dict())
    else:
        _console().print(summary_table(summary))


def summary_table(summary: SimulationSummary) -> Table:
    """The simulation's summary as a rich table."""
    table = Table(
        title=f"simulate: run {summary.run} ({summary.prefix}…), seed {summary.seed}",
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("", justify="left")
    n = summary.messages

    def share(count: int) -> str:
        return f"{count / n:.1%}" if n else ""

    table.add_row("messages", f"{n:,}", f"failure rate {summary.failure_rate:g}")
    table.add_row("delivered", f"{summary.delivered:,}", share(summary.delivered))
    table.add_row("dead", f"{summary.dead:,}", share(summary.dead))
    for reason, count in summary.dead_by_reason.items():
        table.add_row(f"  dead: {reason}", f"{count:,}", share(count))
    table.add_section()
    widest = max(summary.sends_histogram.values(), default=1)
    table.add_row("messages by sends", "", "")
    for sends, count in summary.sends_histogram.items():
        bar = "█" * max(1, round(30 * count / widest)) if count else ""
        label = "send" if sends == 1 else "sends"
        table.add_row(f"  {sends} {label}", f"{count:,}", bar)
    table.add_section()
    table.add_row("failures recorded", f"{summary.failures:,}", "")
    for name, count in summary.failures_by_class.items():
        if count:
            table.add_row(f"  {name}", f"{count:,}", "")
    table.add_row("resends", f"{summary.resends:,}", "")
    table.add_row(
        "late acks",
        f"{summary.late_acks:,}",
        f"{summary.late_ack_deliveries:,} delivered a message",
    )
    table.add_section()
    table.add_row("events written", f"{summary.events_written:,}", "")
    table.add_row("commands", f"{summary.commands:,}", "")
    table.add_row("wall time", f"{summary.wall_seconds:.1f} s", "")
    table.add_row("commands per second", f"{summary.commands_per_second:,.0f}", "")
    table.add_row("simulated time", f"{summary.simulated_seconds:,.1f} s", "")
    return table


# -- one message --


@cli.command("create")
@click.argument("msg_id")
@click.option("--sender", required=True, help="The sender's user id.")
@click.option("--user-id", help="The receiver (C2C).")
@click.option("--group-id", help="The group (group message).")
@click.option("--text", help="The text of a text message.")
@db_option
@json_option
def create_command(
    msg_id: str,
    sender: str,
    user_id: str | None,
    group_id: str | None,
    text: str | None,
    db: str,
    as_json: bool,
) -> None:
    """Record a new message whose first send has started."""
    if user_id is None and group_id is None:
        raise click.UsageError("give --user-id (C2C) or --group-id (group)")
    with open_service(db, must_exist=False) as service:
        view = service.create(
            msg_id,
            sender=sender,
            user_id=user_id,
            group_id=group_id,
            content=None if text is None else {"text": text},
        )
    _emit_view(view, as_json)


@cli.command("show")
@click.argument("msg_id")
@db_option
@policy_option
@json_option
def show_command(msg_id: str, db: str, policy_file: Path | None, as_json: bool) -> None:
    """Show a message as it is now, and whether a resend would be allowed."""
    with open_service(db, policy=load_policy(policy_file)) as service:
        view = service.get(msg_id)
        decision = service.policy.decide(view, service.now())
    _emit_view(view, as_json, decision)


def history_dict(entry: HistoryEntry) -> dict[str, Any]:
    """One history entry as JSON-able data."""
    return {
        "version": entry.version,
        "event": entry.event,
        "recorded_at": entry.recorded_at.isoformat(),
        "attempt": entry.attempt,
        "data": _jsonable(entry.data),
    }


def _history_detail(entry: HistoryEntry) -> tuple[str, str, str]:
    """(code, actor, detail) columns of a timeline row."""
    data = entry.data
    if entry.event == "SendFailed":
        code = data.get("code")
        detail = (_name_of(code) if isinstance(code, int) else None) or ""
        if data.get("desc"):
            detail = f"{detail}: {data['desc']}" if detail else str(data["desc"])
        if data.get("retry_after") is not None:
            detail = f"{detail} (retry after {data['retry_after']:g} s)".strip()
        return str(code), "", detail
    if entry.event == "ResendRequested":
        return "", str(data.get("actor") or ""), f"request {data.get('request_id')}"
    if entry.event == "Delivered":
        return "", "", f"seq {data.get('seq')}"
    if entry.event == "Created":
        to = data.get("user_id") or f"group {data.get('group_id')}"
        return "", str(data.get("sender") or ""), f"to {to}"
    if entry.event == "Forgotten":
        return "", str(data.get("actor") or ""), f"forgotten: {data.get('reason')}"
    return "", "", ""


@cli.command("history")
@click.argument("msg_id")
@db_option
@json_option
def history_command(msg_id: str, db: str, as_json: bool) -> None:
    """A message's timeline: every recorded event, oldest first."""
    with open_service(db) as service:
        entries = service.history(msg_id)
    if as_json:
        _print_json([history_dict(e) for e in entries])
        return
    days = {e.recorded_at.astimezone(UTC).date() for e in entries}
    one_day = len(days) == 1
    title = f"history of {msg_id}" + (f" on {days.pop()}" if one_day else "")
    table = Table(title=title)
    for column in ("version", "time (UTC)", "event", "attempt", "code"):
        table.add_column(column, no_wrap=True)
    table.add_column("actor", overflow="fold")
    table.add_column("detail", overflow="fold")
    for entry in entries:
        code, actor, detail = _history_detail(entry)
        table.add_row(
            str(entry.version),
            _when(entry.recorded_at)[11 if one_day else 0 :],
            entry.event,
            str(entry.attempt),
            code,
            actor,
            detail,
        )
    _console().print(table)


@cli.command("resend")
@click.argument("msg_id")
@click.option("--request-id", help="Makes the request idempotent (default: a new id).")
@click.option("--actor", help="Who asks for the resend (kept in the history).")
@db_option
@policy_option
def resend_command(
    msg_id: str,
    request_id: str | None,
    actor: str | None,
    db: str,
    policy_file: Path | None,
) -> None:
    """Resend a message if the policy allows it now (V2TIM reSendMessage).

    Prints the V2TimValueCallback as JSON; exits with 1 if the resend was refused.
    """
    with open_service(db, policy=load_policy(policy_file)) as service:
        answer = V2TIMMessageManager(service).reSendMessage(
            msg_id, request_id=request_id, actor=actor
        )
    click.echo(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
    if answer.code != int(ErrorCode.OK):
        click.echo(f"error: {answer.desc} [{_error_name(answer.code)}]", err=True)
        sys.exit(1)


def _error_name(code: int) -> str:
    if code == NOT_FOUND_CODE:  # the plugin's answer for an unknown msgID
        return ErrorCode.MESSAGE_NOT_FOUND.name
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


@cli.command("record-failure")
@click.argument("msg_id")
@click.option("--code", type=int, required=True, help="The transport's error code.")
@click.option("--desc", default="", help="The transport's error text.")
@click.option(
    "--retry-after",
    type=float,
    metavar="SECONDS",
    help="How long the server asked to wait before a resend.",
)
@click.option("--attempt", type=int, help="Which send failed (default: the current).")
@db_option
@policy_option
@json_option
def record_failure_command(
    msg_id: str,
    code: int,
    desc: str,
    retry_after: float | None,
    attempt: int | None,
    db: str,
    policy_file: Path | None,
    as_json: bool,
) -> None:
    """Record that a send of the message failed with CODE."""
    with open_service(db, policy=load_policy(policy_file)) as service:
        view = service.record_failure(
            msg_id, code=code, desc=desc, attempt=attempt, retry_after=retry_after
        )
    _emit_view(view, as_json)


@cli.command("record-delivery")
@click.argument("msg_id")
@click.option("--seq", required=True, help="The sequence number the server assigned.")
@click.option("--attempt", type=int, help="Which send was acknowledged.")
@db_option
@json_option
def record_delivery_command(
    msg_id: str, seq: str, attempt: int | None, db: str, as_json: bool
) -> None:
    """Record the server's acknowledgement (possibly late, after a failure)."""
    with open_service(db) as service:
        view = service.record_delivery(msg_id, seq=seq, attempt=attempt)
    _emit_view(view, as_json)


@cli.command("forget")
@click.argument("msg_id")
@click.option("--actor", required=True, help="Who asks (kept in the history).")
@click.option("--reason", required=True, help="Why (kept in the history, in clear).")
@click.option(
    "--key-store",
    "key_store",
    envvar=KEY_STORE_ENV,
    show_envvar=True,
    metavar="URL",
    help="Where the data keys are, if kept apart from the events.",
)
@db_option
@json_option
def forget_command(
    msg_id: str,
    actor: str,
    reason: str,
    key_store: str | None,
    db: str,
    as_json: bool,
) -> None:
    """Destroy a message's personal fields (crypto-shredding); the status history
    stays. Needs a forgettable store; forgetting again changes nothing."""
    with open_service(db, key_store=key_store) as service:
        view = service.forget(msg_id, actor=actor, reason=reason)
    _emit_view(view, as_json)


# -- read models --


def due_dict(view: MessageView) -> dict[str, Any]:
    """A due message as JSON-able data."""
    return {
        "msg_id": view.msg_id,
        "status": view.status.name,
        "attempts": view.attempts,
        "last_error_code": view.last_error_code,
        "last_error_class": _jsonable(view.last_error_class),
        "next_retry_at": _jsonable(view.next_retry_at),
    }


def dead_dict(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON-able data (``code``: why it is never resent)."""
    view = letter.view
    return {
        "msg_id": letter.msg_id,
        "status": view.status.name,
        "attempts": view.attempts,
        "code": ErrorCode(letter.code).name,
        "desc": letter.desc,
        "last_error_code": view.last_error_code,
        "last_error_class": _jsonable(view.last_error_class),
        "last_failed_at": _jsonable(view.last_failed_at),
    }


_LIMIT = click.IntRange(1, 100_000)


@cli.command("due")
@click.option("--limit", type=_LIMIT, default=100, show_default=True)
@db_option
@policy_option
@json_option
def due_command(limit: int, db: str, policy_file: Path | None, as_json: bool) -> None:
    """Failed messages the policy would resend now, soonest first."""
    with open_service(db, policy=load_policy(policy_file)) as service:
        due = service.due_resends(limit=limit)
    if as_json:
        _print_json([due_dict(v) for v in due])
        return
    table = Table(title=f"due for a resend: {len(due)}")
    for column in ("msg_id", "attempts", "last error", "class", "next retry (UTC)"):
        table.add_column(column, overflow="fold")
    for view in due:
        table.add_row(
            view.msg_id,
            str(view.attempts),
            _code_text(view.last_error_code),
            "" if view.last_error_class is None else view.last_error_class.name,
            _when(view.next_retry_at),
        )
    _console().print(table)


@cli.command("dead")
@click.option("--limit", type=_LIMIT, default=100, show_default=True)
@click.option("--after", metavar="MSG_ID", help="Page on after this msg_id.")
@db_option
@policy_option
@json_option
def dead_command(
    limit: int, after: str | None, db: str, policy_file: Path | None, as_json: bool
) -> None:
    """Failed messages the policy will never resend, by msg_id."""
    with open_service(db, policy=load_policy(policy_file)) as service:
        letters = service.dead_letters(limit=limit, after=after)
    if as_json:
        _print_json([dead_dict(letter) for letter in letters])
        return
    table = Table(title=f"dead letters: {len(letters)}")
    for column in ("msg_id", "reason", "attempts"):
        table.add_column(column, overflow="fold")
    table.add_column("last error", overflow="fold")
    for letter in letters:
        table.add_row(
            letter.msg_id,
            ErrorCode(letter.code).name,
            str(letter.view.attempts),
            _code_text(letter.view.last_error_code),
        )
    _console().print(table)


def stats_dict(service: MessageService) -> dict[str, Any]:
    """``{"total", "by_status", "failed_by_error_code"}`` from the read models."""
    counts = service.status_counts()
    return {
        "total": sum(counts.values()),
        "by_status": {status.name: count for status, count in counts.items()},
        "failed_by_error_code": [
            {"code": code, "name": _name_of(code), "count": count}
            for code, count in service.counts_by_error_code().items()
        ],
    }


def _name_of(code: int) -> str | None:
    info = lookup(code)
    return None if info is None else info.name


@cli.command("stats")
@db_option
@json_option
def stats_command(db: str, as_json: bool) -> None:
    """How many messages are in each status, and failed ones by error code."""
    with open_service(db) as service:
        stats = stats_dict(service)
    if as_json:
        _print_json(stats)
        return
    table = Table(title="messages by status")
    table.add_column("status")
    table.add_column("messages", justify="right")
    shown = {
        MessageStatus.SENDING.name,
        MessageStatus.SEND_SUCC.name,
        MessageStatus.SEND_FAIL.name,
    }
    for name, count in stats["by_status"].items():
        if name in shown or count:
            table.add_row(name, f"{count:,}")
    table.add_section()
    table.add_row("total", f"{stats['total']:,}")
    console = _console()
    console.print(table)
    if stats["failed_by_error_code"]:
        codes = Table(title="failed messages by last error")
        codes.add_column("code", justify="right")
        codes.add_column("name")
        codes.add_column("messages", justify="right")
        for row in stats["failed_by_error_code"]:
            codes.add_row(str(row["code"]), row["name"] or "", f"{row['count']:,}")
        console.print(codes)


def _read_models(service: MessageService, now: datetime) -> dict[str, Any]:
    """What the read models answer at ``now``: due, dead and counts."""
    due = [
        (v.msg_id, v.attempts, _jsonable(v.next_retry_at))
        for v in service.due_resends(now=now, limit=100_000)
    ]
    dead: list[tuple[str, str]] = []
    after: str | None = None
    while True:
        page = service.dead_letters(now=now, limit=10_000, after=after)
        dead += [(letter.msg_id, ErrorCode(letter.code).name) for letter in page]
        if len(page) < 10_000:
            break
        after = page[-1].msg_id
    return {"due": due, "dead": dead, "stats": stats_dict(service)}


@cli.command("replay")
@click.option(
    "--verify",
    is_flag=True,
    help="Compare due, dead and stats before and after; exit 1 if they differ.",
)
@db_option
@policy_option
@json_option
def replay_command(
    verify: bool, db: str, policy_file: Path | None, as_json: bool
) -> None:
    """Rebuild the read models from the event log."""
    with open_service(db, policy=load_policy(policy_file)) as service:
        now = service.now()
        before = _read_models(service, now) if verify else None
        applied = service.rebuild_projections()
        after = _read_models(service, now) if verify else None
    result: dict[str, Any] = {"events_replayed": applied}
    differences: list[str] = []
    if before is not None and after is not None:
        differences = [
            key for key in ("due", "dead", "stats") if before[key] != after[key]
        ]
        result["verified"] = not differences
        result["differences"] = differences
        result["before"] = _counts(before)
        result["after"] = _counts(after)
    if as_json:
        _print_json(result)
    else:
        console = _console()
        console.print(f"rebuilt the read models from {applied:,} events")
        if before is not None and after is not None:
            table = Table(title="read models before and after")
            table.add_column("")
            table.add_column("before", justify="right")
            table.add_column("after", justify="right")
            table.add_column("same")
            for key, value in _counts(before).items():
                same = key.split()[0] not in differences
                table.add_row(
                    key,
                    f"{value:,}",
                    f"{_counts(after)[key]:,}",
                    "yes" if same else "NO",
                )
            console.print(table)
    if differences:
        click.echo(
            f"error: the rebuilt read models differ in {', '.join(differences)}",
            err=True,
        )
        sys.exit(1)


def _counts(models: Mapping[str, Any]) -> dict[str, int]:
    return {
        "due messages": len(models["due"]),
        "dead messages": len(models["dead"]),
        "stats total": models["stats"]["total"],
    }


# -- audit --


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-01-01T12:00:00+00:00)",
            param_hint="'--since'",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@cli.command("export")
@click.option(
    "--since",
    metavar="ISO",
    help="Only events recorded at or after this time (no zone: UTC).",
)
@click.option(
    "--msg-id",
    "msg_ids",
    multiple=True,
    metavar="MSG_ID",
    help="Only this message (repeatable).",
)
@db_option
def export_command(since: str | None, msg_ids: tuple[str, ...], db: str) -> None:
    """The audit trail as JSON lines on stdout, one per event."""
    moment = _parse_since(since)
    with open_service(db) as service:
        for line in service.export_history(msg_ids or None, since=moment):
            click.echo(line, nl=False)


@cli.command("what-if")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE.toml",
    help="The policy to replay the recorded histories under.",
)
@click.option(
    "--recorded-policy",
    "recorded_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE.toml",
    help="The policy the histories were recorded under (default: ResendPolicy()).",
)
@click.option(
    "--msg-id", "msg_ids", multiple=True, help="Only this message (repeatable)."
)
@click.option("--per-message", is_flag=True, help="Also list each message's result.")
@db_option
@json_option
def what_if_command(
    policy_file: Path,
    recorded_file: Path | None,
    msg_ids: tuple[str, ...],
    per_message: bool,
    db: str,
    as_json: bool,
) -> None:
    """Replay recorded histories under another policy; writes nothing."""
    new_policy = load_policy(policy_file)
    assert new_policy is not None  # the option is required
    recorded = load_policy(recorded_file, "'--recorded-policy'")
    with open_service(db, policy=recorded) as service:
        report = service.simulate_policy(new_policy, msg_ids or None)
    data = what_if_dict(report, per_message=per_message)
    if as_json:
        _print_json(data)
        return
    table = Table(title=f"what if: {policy_file}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in (
        "messages",
        "resends_recorded",
        "resends_allowed",
        "resends_refused",
        "resends_delayed",
        "dead_earlier",
        "dead_later",
    ):
        table.add_row(key.replace("_", " "), f"{data[key]:,}")
    for code, count in data["first_refusals"].items():
        table.add_row(f"  first refusal: {code}", f"{count:,}")
    console = _console()
    console.print(table)
    if per_message:
        rows = Table(title="per message")
        for column in (
            "msg_id",
            "recorded",
            "allowed",
            "refused",
            "delayed",
            "first refusal",
        ):
            rows.add_column(column)
        for item in data["per_message"]:
            rows.add_row(
                item["msg_id"],
                str(item["resends_recorded"]),
                str(item["resends_allowed"]),
                str(item["resends_refused"]),
                str(item["resends_delayed"]),
                item["first_refusal"] or "",
            )
        console.print(rows)


def what_if_dict(report: WhatIfReport, *, per_message: bool) -> dict[str, Any]:
    """A what-if report's totals (and, if asked, each message) as JSON-able data."""
    refusals: dict[str, int] = {}
    for item in report.per_message:
        if item.first_refusal is not None:
            name = item.first_refusal.name
            refusals[name] = refusals.get(name, 0) + 1
    data: dict[str, Any] = {
        "messages": report.messages,
        "resends_recorded": report.resends_recorded,
        "resends_allowed": report.resends_allowed,
        "resends_refused": report.resends_refused,
        "resends_delayed": report.resends_delayed,
        "dead_earlier": report.dead_earlier,
        "dead_later": report.dead_later,
        "first_refusals": dict(sorted(refusals.items())),
    }
    if per_message:
        data["per_message"] = [
            {f.name: _jsonable(getattr(item, f.name)) for f in fields(type(item))}
            for item in report.per_message
        ]
    return data


# -- the console --


@cli.command("serve")
@db_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on (0.0.0.0 exposes the console to the network).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8600, show_default=True)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="'name:token' lines; every page and /metrics then needs one of the tokens.",
)
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Offer resend (and expire-send) buttons; needs --token-file. Each action "
    "is recorded with actor = the token's name.",
)
@click.option(
    "--cipher-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The store's cipher key (from generate_cipher_key()), for encrypted stores.",
)
@policy_option
def serve_command(
    db: str,
    host: str,
    port: int,
    token_file: Path | None,
    allow_actions: bool,
    cipher_key_file: Path | None,
    policy_file: Path | None,
) -> None:
    """Run the audit console (a web app) and /metrics; needs msgstate[web]."""
    try:
        import uvicorn

        from msgstate.web import create_app, load_tokens
    except ImportError as missing:
        raise click.UsageError(
            f"the console needs the web extra ({missing}); "
            "install it with: pip install 'msgstate[web]'"
        ) from None
    if allow_actions and token_file is None:
        raise click.BadParameter(
            "actions need a token file (each action records the token's name)",
            param_hint="'--allow-actions'",
        )
    try:
        tokens = None if token_file is None else load_tokens(token_file)
    except InvalidArgument as error:
        raise click.BadParameter(error.desc, param_hint="'--token-file'") from None
    cipher_key = None
    if cipher_key_file is not None:
        cipher_key = cipher_key_file.read_text(encoding="utf-8").strip()
    policy = load_policy(policy_file)
    _check_db(db, must_exist=True)
    service = MessageService.open(db, policy=policy, cipher_key=cipher_key)
    try:
        app = create_app(service, tokens=tokens, allow_actions=allow_actions)
        where = f"http://{host}:{port}/"
        click.echo(
            f"msgstate console on {where} ({'token required' if tokens else 'no token'}"
            f", actions {'on' if allow_actions else 'off'}); Ctrl+C stops it",
            err=True,
        )
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        service.close()


# -- reference --


@cli.command("diagram")
@click.option(
    "--format",
    "form",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
)
def diagram_command(form: str) -> None:
    """The status transition table as a Mermaid or Graphviz DOT diagram."""
    click.echo(to_mermaid() if form == "mermaid" else to_dot(), nl=False)


def code_dict(info: CodeInfo) -> dict[str, Any]:
    """A catalog entry as JSON-able data."""
    return {
        "code": info.code,
        "last": info.last,
        "name": info.name,
        "aliases": list(info.aliases),
        "names": dict(info.names),
        "retry_class": info.retry_class.name,
        "desc": info.desc,
        "header_desc": info.header_desc,
        "legacy": info.legacy,
        "source": info.source,
    }


@cli.command("codes")
@click.argument("code", required=False)
@json_option
def codes_command(code: str | None, as_json: bool) -> None:
    """Look a Tencent IM error code up in the catalog: by number or any name.

    Any header's spelling of a name works (ERR_REQUEST_TIMEOUT and
    ERR_REQUEST_TIME_OUT are both 6012); a number inside 120001-130000 finds the
    before-send callback range. Without CODE, lists every catalogued code.
    """
    entries = list(catalog().values())
    if code is not None:
        info = find(code)
        if info is None:
            raise _Refused(
                f"code {code!r} is not in the catalog; a policy treats unknown "
                "codes as its unknown_code_class (TRANSIENT by default)"
            )
        entries = [info]
    if as_json:
        _print_json(
            code_dict(entries[0])
            if code is not None
            else [code_dict(e) for e in entries]
        )
        return
    table = Table(title="Tencent IM error codes" if code is None else None)
    for column in ("code", "name", "retry class", "desc"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        number = str(entry.code) if entry.last is None else f"{entry.code}-{entry.last}"
        name = "\n".join(entry.spellings())
        desc = entry.desc + (" (legacy: IM SDK V3 only)" if entry.legacy else "")
        table.add_row(number, name, entry.retry_class.name, desc)
    if code is not None:
        only = entries[0]
        _console().print(table)
        _console().print(f"header: {only.header_desc}", markup=False)
        _console().print(f"source: {only.source}", markup=False)
        return
    _console().print(table)


# -- worker --


def _default_worker_id() -> str:
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"[-96:]


@cli.command("worker")
@db_option
@click.option(
    "--transport",
    type=click.Choice(["simulated"]),
    required=True,
    help="What sends: 'simulated' is msgstate's flaky SimulatedTransport (a real "
    "transport is plugged in from Python: msgstate.worker.ResendWorker).",
)
@click.option(
    "--failure-rate",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="The chance that any one simulated send fails.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="The seed.")
@click.option(
    "--latency",
    type=click.FloatRange(0, 60),
    default=0.0,
    show_default=True,
    help="Seconds each simulated send takes.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    help="Sends in flight at once: 1 runs ResendWorker, more AsyncResendWorker.",
)
@click.option(
    "--once", is_flag=True, help="One pass (sweep, claim, send, record), then exit."
)
@click.option(
    "--worker-id",
    default=None,
    help="The worker's name in claims (default: <host>-<pid>).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=100,
    show_default=True,
    help="Due (and stuck) messages read per pass.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0, 3600),
    default=1.0,
    show_default=True,
    help="Seconds to wait after a pass with nothing to do.",
)
@policy_option
def worker_command(
    db: str,
    transport: str,
    failure_rate: float,
    seed: int,
    latency: float,
    concurrency: int,
    once: bool,
    worker_id: str | None,
    batch_size: int,
    poll_interval: float,
    policy_file: Path | None,
) -> None:
    """Resend due messages through a transport until SIGTERM or Ctrl-C.

    Each pass expires stuck sends, claims due resends (expected_attempt), sends
    and records them. A live display on stderr (when it is a terminal) shows the
    counts; on exit (after the sends in flight are recorded) a JSON summary is
    printed on stdout.
    """
    import asyncio
    import signal
    import time

    from msgstate.transports import SimulatedTransport
    from msgstate.worker import AsyncResendWorker, ResendWorker, WorkerReport

    policy = load_policy(policy_file)
    simulated = SimulatedTransport(
        seed=seed, failure_rate=failure_rate, latency=latency
    )
    name = worker_id if worker_id is not None else _default_worker_id()
    show_progress = sys.stderr.isatty()
    passes = 0
    total = WorkerReport()
    started = time.monotonic()
    with (
        open_service(db, policy=policy, must_exist=False) as service,
        Progress(
            TextColumn("[progress.description]{task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not show_progress,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task(f"worker {name}: starting")

        def show(report: WorkerReport) -> None:
            nonlocal passes, total
            passes += 1
            total += report
            rate = total.claimed / max(time.monotonic() - started, 1e-9)
            progress.update(
                task,
                description=(
                    f"worker {name}: pass {passes}, claimed {total.claimed} "
                    f"({rate:.0f}/s), delivered {total.delivered}, failed "
                    f"{total.failed}, expired {total.expired}, skipped {total.skipped}"
                ),
            )

        worker: ResendWorker | AsyncResendWorker
        if concurrency == 1:
            worker = ResendWorker(
                service,
                simulated,
                worker_id=name,
                batch_size=batch_size,
                poll_interval=poll_interval,
            )
        else:
            worker = AsyncResendWorker(
                service,
                simulated.as_async(),
                worker_id=name,
                concurrency=concurrency,
                batch_size=batch_size,
                poll_interval=poll_interval,
            )
        previous_int = signal.signal(signal.SIGINT, lambda *_: worker.stop())
        try:
            if isinstance(worker, ResendWorker):
                if once:
                    show(worker.run_once())
                else:
                    worker.run(on_pass=show)
            else:
                async_worker = worker

                async def drive() -> None:
                    try:
                        if once:
                            show(await async_worker.run_once())
                        else:
                            await async_worker.run(on_pass=show)
                    finally:
                        await async_worker.aclose()

                asyncio.run(drive())
        finally:
            signal.signal(signal.SIGINT, previous_int)
        elapsed = time.monotonic() - started
        counts = service.status_counts()
    summary = {
        "worker_id": name,
        "transport": repr(simulated),
        "concurrency": concurrency,
        "passes": passes,
        **total.to_dict(),
        "elapsed_s": round(elapsed, 3),
        "claimed_per_s": round(total.claimed / elapsed, 1) if elapsed else None,
        "status_counts": {s.name: n for s, n in counts.items() if n},
    }
    _print_json(summary)


# -- retention --


def _parse_before(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00+00:00)",
            param_hint="'--before'",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@contextmanager
def _phase_progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback for archive/restore: a bar per phase on a terminal."""
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet or not sys.stderr.isatty(),
        transient=True,
    ) as progress:
        tasks: dict[str, Any] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total or None)
            progress.update(tasks[phase], completed=done, total=total or None)

        yield report


@cli.command("archive")
@db_option
@click.option(
    "--before",
    required=True,
    metavar="ISO",
    help="Archive finished messages last changed before this time (no zone: UTC).",
)
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="The archive file (JSON lines); its manifest is PATH.manifest.json. "
    "Give the same PATH again to finish an interrupted archive.",
)
@click.option(
    "--include",
    "include",
    multiple=True,
    type=click.Choice(["delivered", "dead"]),
    help="What to archive (repeatable; default: delivered and dead).",
)
@click.option("--dry-run", is_flag=True, help="Only count; write nothing.")
@click.option(
    "--chunk",
    type=click.IntRange(1, 100_000),
    default=500,
    show_default=True,
    help="Messages deleted per transaction.",
)
@policy_option
@json_option
def archive_command(
    db: str,
    before: str,
    to: Path,
    include: tuple[str, ...],
    dry_run: bool,
    chunk: int,
    policy_file: Path | None,
    as_json: bool,
) -> None:
    """Move finished histories out of the store into an archive file.

    Delivered messages, and dead ones (failed, and the policy (--policy) will
    never resend them), whose last change is older than --before: written with
    a manifest, read back and checked, then deleted from the store in chunks.
    Their ids answer MESSAGE_ARCHIVED until restored and are never reused.
    """
    moment = _parse_before(before)
    kinds = include or ("delivered", "dead")
    with (
        open_service(db, policy=load_policy(policy_file)) as service,
        _phase_progress(as_json) as report,
    ):
        result = service.archive(
            before=moment,
            to=to,
            include=kinds,
            dry_run=dry_run,
            chunk=chunk,
            progress=report,
        )
    if as_json:
        _print_json(archive_dict(result))
        return
    table = Table(
        title=f"archive{' (dry run)' if result.dry_run else ''}: {result.path}",
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("messages", f"{result.messages:,}")
    table.add_row("events", f"{result.events:,}")
    if not result.dry_run:
        table.add_row("deleted from the store", f"{result.archived:,}")
        if result.resumed:
            table.add_row("deleted by the interrupted run", f"{result.already:,}")
        for reason, count in sorted(result.kept.items()):
            table.add_row(f"kept in the store: {reason}", f"{count:,}")
        table.add_row("sha256", result.sha256)
    _console().print(table)


def archive_dict(result: ArchiveReport) -> dict[str, Any]:
    """An :class:`ArchiveReport` as JSON."""
    return {f.name: getattr(result, f.name) for f in fields(type(result))}


@cli.command("restore")
@db_option
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def restore_command(db: str, path: Path, as_json: bool) -> None:
    """Put the messages of an archive file back into the store, unchanged.

    Checks the manifest (PATH.manifest.json) and the file first. Restoring twice
    restores nothing the second time.
    """
    with open_service(db) as service, _phase_progress(as_json) as report:
        result = service.restore(path, progress=report)
    if as_json:
        _print_json({f.name: getattr(result, f.name) for f in fields(type(result))})
        return
    table = Table(title=f"restore: {result.path}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("restored messages", f"{result.restored:,}")
    table.add_row("restored events", f"{result.events:,}")
    for reason, count in sorted(result.skipped.items()):
        table.add_row(f"skipped: {reason}", f"{count:,}")
    _console().print(table)


# -- shard maps --


def _map_option(function: F) -> F:
    return click.option(
        "--map",
        "map_file",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        metavar="FILE.toml",
        help="The shard map (virtual_shards and a [databases] table).",
    )(function)


def _cipher_option(function: F) -> F:
    function = click.option(
        "--compress",
        is_flag=True,
        help="The map's stores are compressed (opened with compress=True).",
    )(function)
    return click.option(
        "--cipher-key-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The map's cipher key (from generate_cipher_key()), if encrypted.",
    )(function)


def _read_key(path: Path | None) -> str | None:
    return None if path is None else path.read_text(encoding="utf-8").strip()


@cli.group("shards")
def shards_group() -> None:
    """Look after a shard map of PostgreSQL databases (docs/sharding.md)."""


@shards_group.command("status")
@_map_option
@_cipher_option
@json_option
def shards_status_command(
    map_file: Path, cipher_key_file: Path | None, compress: bool, as_json: bool
) -> None:
    """Each database's shards (as the map and the database record them),
    messages and read-model lag; shards in the middle of a move are named."""
    report = shard_status(
        f"{SHARDS_SCHEME}//{map_file.resolve()}",
        cipher_key=_read_key(cipher_key_file),
        compress=compress,
    )
    if as_json:
        _print_json(report)
        return
    table = Table(title=f"shard map {map_file}")
    for column in ("database", "shards (map)", "owned (database)", "moving"):
        table.add_column(column)
    table.add_column("messages", justify="right")
    table.add_column("lag", justify="right")
    for row in report:
        moving = ", ".join(f"{s}: {st}" for s, st in row["moving"].items())
        table.add_row(
            row["database"],
            row["map_shards"] or "-",
            row["owned"] or "-",
            moving or "-",
            f"{row['messages']:,}",
            f"{row['projection_lag']:,}",
        )
    _console().print(table)


@shards_group.command("move")
@_map_option
@click.option("--shard", type=int, required=True, help="The virtual shard to move.")
@click.option(
    "--to", "to", required=True, metavar="URL", help="The receiving database."
)
@click.option(
    "--abort",
    is_flag=True,
    help="Roll back an interrupted move that has not handed over yet.",
)
@click.option(
    "--chunk",
    type=click.IntRange(1, 100_000),
    default=2000,
    show_default=True,
    help="Events copied per transaction.",
)
@_cipher_option
@json_option
def shards_move_command(
    map_file: Path,
    shard: int,
    to: str,
    abort: bool,
    chunk: int,
    cipher_key_file: Path | None,
    compress: bool,
    as_json: bool,
) -> None:
    """Move one shard's messages to another database while the others keep
    working, then rewrite the map file.

    Copies (versions and timestamps intact), freezes the shard for the last
    events, verifies every stream's last version, hands ownership over in both
    databases, and deletes the old copy. Interrupted, it resumes when run again
    (or rolls back with --abort, before the handover).
    """

    def report(step: str, count: int) -> None:
        if not as_json:
            click.echo(f"{step}: {count:,}" if count else step, err=True)

    result = move_shard(
        map_file,
        shard,
        to,
        cipher_key=_read_key(cipher_key_file),
        compress=compress,
        chunk=chunk,
        progress=report,
        abort=abort,
    )
    if as_json:
        _print_json({f.name: getattr(result, f.name) for f in fields(type(result))})
        return
    click.echo(
        f"shard {result.shard}: {result.streams:,} messages "
        f"({result.events:,} events copied) from {result.source} to "
        f"{result.target} in {result.seconds:.2f} s; writes waited "
        f"{result.frozen_seconds:.2f} s"
    )
