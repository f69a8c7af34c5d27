"""The unit-of-work seam: ``MessageRepository`` (``service.messages``), which both
``MessageService`` and ``Batch`` load, make and save messages through.

The layout is checked from the source (a batch touches no other object's private
attributes; the query modules and the repository do not import the service at
run time); the repository's behaviours through its public methods.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from msgstate import (
    DuplicateMessage,
    MessageArchived,
    MessageNotFound,
    MessageService,
    MessageStatus,
)
from msgstate.commands import create_args, creation
from tests.conftest import ServiceFactory
from tests.support import FakeClock

PACKAGE = Path(__file__).resolve().parent.parent / "msgstate"
TIMEOUT = 6012
FIELDS = {"sender": "a", "user_id": "b"}


def reach_ins(path: Path) -> list[str]:
    """``line: base._name`` for every private (single-underscore) attribute that
    the module at ``path`` uses on anything other than ``self`` or ``cls``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def runtime_imports(path: Path) -> set[str]:
    """The msgstate modules that the module at ``path`` imports when it is
    imported (``if TYPE_CHECKING:`` blocks and imports inside functions left out)."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("msgstate")}


def make(service: MessageService, msg_id: str) -> Any:
    """A new message for ``msg_id`` from the repository, not yet saved."""
    checked, fields = creation(msg_id, **create_args(FIELDS))
    return service.messages.new(checked, fields)


# -- the layout --


def test_batch_uses_no_private_attribute_of_another_object() -> None:
    assert [] == reach_ins(PACKAGE / "batch.py")


@pytest.mark.parametrize("module", ["history.py", "readmodels.py"])
def test_query_modules_use_no_private_attribute_of_another_object(
    module: str,
) -> None:
    assert [] == reach_ins(PACKAGE / module)


def test_the_repository_reaches_only_into_the_message_it_copies() -> None:
    """Its one private use is ``Message._copy`` (the cheap copy for the cache)."""
    found = reach_ins(PACKAGE / "repository.py")
    assert found
    assert all(line.endswith("message._copy") for line in found), found


@pytest.mark.parametrize(
    "module", ["batch.py", "repository.py", "history.py", "readmodels.py"]
)
def test_the_service_imports_its_parts_not_the_other_way_round(module: str) -> None:
    assert "msgstate.application" not in runtime_imports(PACKAGE / module)


def test_constants_stay_importable_from_the_application_module() -> None:
    from msgstate import application, readmodels, repository

    assert (
        repository.READ_FIRST_SIZE,
        readmodels.CATCH_UP_BATCH,
        readmodels.REBUILD_BATCH,
    ) == (
        application.READ_FIRST_SIZE,
        application.CATCH_UP_BATCH,
        application.REBUILD_BATCH,
    )
    assert (10_000, 3) == (application.DEFAULT_CACHE_SIZE, application.CONFLICT_RETRIES)


# -- the repository's behaviours --

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@sqlite_only
def test_a_cached_message_is_taken_without_a_read(
    make_service: ServiceFactory,
) -> None:
    """cached() answers as this process last saw it (another writer's later change
    unseen: no read); find() brings it up to date from the store."""
    first, other = make_service(), make_service()
    first.create("m1", **FIELDS)
    other.record_failure("m1", code=TIMEOUT)
    cached = first.messages.cached("m1")
    found = first.messages.find("m1")
    assert cached is not None
    assert found is not None
    assert (1, 2) == (cached.version, found.version)


def test_cached_hands_out_copies(service: MessageService, clock: FakeClock) -> None:
    """A change to what cached() returned does not reach the cache."""
    service.create("m1", **FIELDS)
    copy = service.messages.cached("m1")
    assert copy is not None
    copy.record_failure(
        code=TIMEOUT, desc="", attempt=None, retry_after=None, at=clock()
    )
    again = service.messages.cached("m1")
    assert again is not None
    assert (1, MessageStatus.SENDING) == (again.version, again.status)


def test_without_a_cache_nothing_is_cached_and_every_create_reads(
    make_service: ServiceFactory,
) -> None:
    service = make_service(cache_size=0)
    service.create("m1", **FIELDS)
    assert service.messages.cached("m1") is None
    assert service.messages.must_read("never-made")


def test_save_keeps_a_copy_in_the_cache(service: MessageService) -> None:
    """What save() stored is what the next command starts from (no read)."""
    message = make(service, "m1")
    service.messages.save(message)
    cached = service.messages.cached("m1")
    assert cached is not None
    assert cached is not message
    assert service.messages.view(cached) == service.get("m1")


@sqlite_only
def test_a_lost_save_raises_integrity_error_and_caches_nothing(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    first, other = make_service(), make_service()
    first.create("m1", **FIELDS)
    other.record_failure("m1", code=TIMEOUT)
    stale = first.messages.cached("m1")
    assert stale is not None
    stale.record_delivery(seq="1", server_time=clock(), attempt=None, at=clock())
    with pytest.raises(IntegrityError):
        first.messages.save(stale)
    cached = first.messages.cached("m1")
    assert cached is not None
    assert (1, MessageStatus.SENDING) == (cached.version, cached.status)
    first.messages.forget_cached("m1")
    assert first.messages.cached("m1") is None
    assert MessageStatus.SEND_FAIL == first.get("m1").status


@sqlite_only
def test_learn_after_a_lost_save_caches_what_exists_and_reads_the_rest_first(
    make_service: ServiceFactory,
) -> None:
    first, other = make_service(), make_service()
    other.create("made-elsewhere", **FIELDS)
    assert not first.messages.must_read("made-elsewhere")
    first.messages.learn(["made-elsewhere", "absent"])
    cached = first.messages.cached("made-elsewhere")
    assert cached is not None
    assert "made-elsewhere" == cached.msg_id
    assert ("absent",) == first.messages.read_first
    assert first.messages.must_read("absent")
    assert not first.messages.must_read("made-elsewhere")


def test_refuse_archived_lets_a_new_id_be_created_without_a_read_again(
    service: MessageService,
) -> None:
    service.messages.learn(["new"])
    assert service.messages.must_read("new")
    service.messages.refuse_archived("new")
    assert () == service.messages.read_first
    assert not service.messages.must_read("new")


def test_an_archived_id_is_refused_by_name(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(clock=clock)
    service.create("done", **FIELDS)
    service.record_delivery("done", seq="1")
    service.create("newest", **FIELDS)  # the archive keeps it
    clock.advance(60)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")
    missing = service.messages.not_found("done")
    assert isinstance(missing, MessageArchived)
    assert "'done'" in str(missing)
    assert MessageNotFound is type(service.messages.not_found("never"))
    with pytest.raises(MessageArchived):
        service.messages.refuse_archived("done", always=True)
    service.messages.refuse_archived("done")  # not learnt: the store is not asked


def test_load_raises_where_find_answers_none(service: MessageService) -> None:
    assert service.messages.find("never") is None
    with pytest.raises(MessageNotFound):
        service.messages.load("never")


def test_load_many_answers_every_id_asked(service: MessageService) -> None:
    service.create("m1", **FIELDS)
    found = service.messages.load_many(["m1", "never"])
    assert ["m1", "never"] == list(found)
    assert found["never"] is None
    assert found["m1"] is not None
    assert "m1" == found["m1"].msg_id


def test_check_same_refuses_other_fields(service: MessageService) -> None:
    service.create("m1", **FIELDS)
    message = service.messages.load("m1")
    _, same = creation("m1", **create_args(FIELDS))
    _, other = creation("m1", **create_args({**FIELDS, "user_id": "c"}))
    service.messages.check_same(message, same)
    with pytest.raises(DuplicateMessage):
        service.messages.check_same(message, other)


def test_a_service_and_its_batches_share_one_repository(
    service: MessageService,
) -> None:
    """A read replaced on the service's repository (as tests do to watch reads)
    is the one its batches use."""
    reads: list[str] = []

    def counting(msg_id: str) -> Any:
        reads.append(msg_id)
        return None

    service.messages.find = counting  # type: ignore[method-assign]
    with service.batch() as batch, pytest.raises(MessageNotFound):
        batch.get("m1")
    assert ["m1"] == reads
