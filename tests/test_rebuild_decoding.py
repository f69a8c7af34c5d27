"""The read models' fast decoding (``changes_for``) against the domain events'.

``catch_up_projections`` and ``rebuild_projections`` read stored states as plain
JSON instead of building domain events; every row change must be the one
``change_for`` makes from the event the mapper decodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, settings

from msgstate import Message, MessageService, generate_cipher_key
from msgstate.projections import change_for, changes_for
from tests.conftest import backend_url
from tests.strategies import COMMANDS, initial_creates, run_commands
from tests.support import FakeClock, opened

KEY = generate_cipher_key()
OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "compressed": {"compress": True},
    "encrypted": {"cipher_key": KEY, "compress": True},
    "forgettable": {"forgettable": True},
}


def notifications(service: MessageService) -> list[Any]:
    return list(service.recorder.select_notifications(start=1, limit=100_000))


def slow(service: MessageService, stored: list[Any]) -> list[Any]:
    """What the service made before: a domain event per notification."""
    made = (change_for(service.mapper.to_domain_event(n), n.id) for n in stored)
    return [c for c in made if c is not None]


@pytest.mark.parametrize("options", sorted(OPTIONS))
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=COMMANDS)
def test_fast_decoding_makes_the_same_changes(
    options: str, tmp_path_factory: pytest.TempPathFactory, commands: Any
) -> None:
    """Every kind of event, on plain, compressed, encrypted and sealed stores."""
    clock = FakeClock()
    url = backend_url("sqlite", tmp_path_factory.mktemp("d"))
    with opened(url, clock=clock, **OPTIONS[options]) as service:
        run_commands(service, clock, initial_creates() + commands, "m")
        if options == "forgettable":
            service.forget("m0", actor="dpo", reason="asked")
        stored = notifications(service)
        assert slow(service, stored) == changes_for(stored, service.mapper)


def test_encode_key_gives_the_stored_key(tmp_path: Path) -> None:
    """With encode_key, a creation carries msg_key as prepare would make it."""
    with opened(backend_url("sqlite", tmp_path), cipher_key=KEY) as service:
        service.create("m1", sender="a", user_id="b")
        stored = notifications(service)
        views = service._views
        [change] = changes_for(stored, service.mapper, views.encode_key)
        assert "msg_id" not in change.columns
        assert "m1" == views.decode_key(change.columns["msg_key"])
        [prepared] = views.prepare(changes_for(stored, service.mapper))
        assert "m1" == views.decode_key(prepared.columns["msg_key"])
        assert change.columns.keys() == prepared.columns.keys()


def write(
    service: MessageService, msg_id: str, version: int, state: dict[str, Any]
) -> None:
    """Store a state as some other writer could have (an older or odd version)."""
    service.recorder.insert_events(
        [
            StoredEvent(
                originator_id=Message.create_id(msg_id),
                originator_version=version,
                topic=f"msgstate.domain:Message.{state.pop('_event')}",
                state=service.mapper.transcoder.encode(state),
            )
        ]
    )


def test_states_the_plain_decoding_cannot_read_go_through_the_mapper(
    tmp_path: Path,
) -> None:
    """Fields of unusual types give the same changes as the domain events do."""
    clock = FakeClock()
    with opened(backend_url("sqlite", tmp_path), clock=clock) as service:
        service.create("m1", sender="a", user_id="b")
        now = clock()
        write(
            service,
            "m1",
            2,
            {
                "_event": "SendFailed",
                "timestamp": now,
                "attempt": 1,
                "code": 6012,
                "desc": "",
                "retry_after": 2,
                "at": now,
            },
        )
        write(
            service,
            "m1",
            3,
            {
                "_event": "ResendRequested",
                "timestamp": now,
                "attempt": 2.0,
                "request_id": "r",
                "actor": None,
                "online_user_only": 1,
                "at": now,
            },
        )
        stored = notifications(service)
        fast = changes_for(stored, service.mapper)
        assert slow(service, stored) == fast
        assert (2, 2.0, 1) == (
            fast[1].columns["retry_after"],
            fast[2].columns["attempts"],
            fast[2].columns["online_user_only"],
        )


V1_FAILURE = {"_event": "SendFailed", "attempt": 1, "code": 6012, "desc": "v1"}


def test_an_older_state_without_its_upcaster_fails_as_before(tmp_path: Path) -> None:
    """A SendFailed an older version wrote (no retry_after) can't be decoded
    without an upcaster, by either path: the same error, not a guess."""
    clock = FakeClock()
    with opened(backend_url("sqlite", tmp_path), clock=clock) as service:
        service.create("m1", sender="a", user_id="b")
        write(service, "m1", 2, {**V1_FAILURE, "timestamp": clock(), "at": clock()})
        stored = notifications(service)
        with pytest.raises(KeyError, match="retry_after"):
            slow(service, stored)
        with pytest.raises(KeyError, match="retry_after"):
            changes_for(stored, service.mapper)


def test_events_with_upcasters_are_decoded_by_the_mapper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """class_version 2 with upcast_v1_v2: old and new states, as the mapper reads."""
    clock = FakeClock()
    with opened(backend_url("sqlite", tmp_path), clock=clock) as service:
        service.create("m1", sender="a", user_id="b")
        write(service, "m1", 2, {**V1_FAILURE, "timestamp": clock(), "at": clock()})
        monkeypatch.setattr(Message.SendFailed, "class_version", 2, raising=False)

        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["retry_after"] = 7.0

        monkeypatch.setattr(
            Message.SendFailed,
            "upcast_v1_v2",
            staticmethod(upcast_v1_v2),
            raising=False,
        )
        service.resend("m1")
        service.record_failure("m1", code=6012, retry_after=5)  # stored as version 2
        stored = notifications(service)
        fast = changes_for(stored, service.mapper)
        assert slow(service, stored) == fast
        # The creation's None, the upcast v1 failure's 7.0, the v2 failure's 5.0.
        assert [None, 7.0, 5.0] == [
            c.columns["retry_after"] for c in fast if "retry_after" in c.columns
        ]


def test_rebuild_equals_catching_up_event_by_event(tmp_path: Path) -> None:
    """The rebuilt rows are the rows kept live, command by command."""
    clock = FakeClock()
    with opened(backend_url("sqlite", tmp_path), clock=clock) as service:
        ids = run_commands(service, clock, initial_creates() * 2, "m")
        for msg_id in ids:
            service.record_failure(msg_id, code=6012, retry_after=1.5)
            service.catch_up_projections(batch=1)
        live = service._views._query("SELECT * FROM msgstate_views ORDER BY id", {})
        service.rebuild_projections()
        assert live == service._views._query(
            "SELECT * FROM msgstate_views ORDER BY id", {}
        )


@pytest.mark.parametrize(("start", "limit"), [(1, 1), (1, 1000), (3, 4), (50, 10)])
def test_read_notifications_equals_the_recorders_own(
    backend: str, tmp_path: Path, start: int, limit: int
) -> None:
    """The direct read returns what select_notifications does, on every backend."""
    from msgstate.storage import read_notifications

    clock = FakeClock()
    with opened(backend_url(backend, tmp_path), clock=clock) as service:
        run_commands(service, clock, initial_creates() * 3, "m")
        for i in range(6):
            service.record_failure(f"m{i}", code=6012)
        own = list(service.recorder.select_notifications(start=start, limit=limit))
        assert own == read_notifications(service.recorder, start, limit)
        assert (start < 13) == bool(own)


@pytest.mark.parametrize("copy_rows", [1, 10**9])
def test_postgres_rows_are_the_same_copied_or_inserted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy_rows: int
) -> None:
    """PostgreSQL upserts large groups through COPY: the rows are the same as
    SQLite's, whichever way they went, across several catch-up batches."""
    import msgstate._pg_views as pg_views

    monkeypatch.setattr(pg_views, "COPY_ROWS", copy_rows)
    rows = {}
    for backend in ("sqlite", "postgres"):
        clock = FakeClock()
        with opened(backend_url(backend, tmp_path), clock=clock) as service:
            ids = run_commands(service, clock, initial_creates() * 2, "m")
            service.catch_up_projections(batch=4)
            for msg_id in ids:
                service.record_failure(msg_id, code=6012, retry_after=1.5)
            service.resend("m1")
            service.catch_up_projections(batch=5)
            service.record_delivery("m1", seq="1")
            service.catch_up_projections()
            found = service._views._query(
                "SELECT id, msg_key, status, attempts, last_error_code, failed_at, "
                "retry_after, jitter_u, created_at, online_user_only, updated_at "
                "FROM " + service._views._table_sql(),
                {},
            )
            rows[backend] = sorted((str(r[0]), bytes(r[1]), *r[2:]) for r in found)
            assert 6 == len(rows[backend])
    assert rows["sqlite"] == rows["postgres"]


@pytest.mark.parametrize("options", ["plain", "encrypted"])
def test_fast_decoding_builds_no_domain_event_for_a_plain_state(
    tmp_path: Path, options: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every state msgstate writes (plain, or encrypted and compressed) is decoded
    without the mapper: that is what makes a rebuild fast."""
    clock = FakeClock()
    with opened(backend_url("sqlite", tmp_path), clock=clock, **OPTIONS[options]) as s:
        run_commands(s, clock, initial_creates() * 2, "m")
        s.record_failure("m1", code=6012, retry_after=2.5)
        s.resend("m1", online_user_only=True)
        s.record_delivery("m1", seq="1")
        stored = notifications(s)
        expected = slow(s, stored)

        def no_events(notification: Any) -> Any:
            raise AssertionError(f"built the domain event of {notification.topic}")

        monkeypatch.setattr(s.mapper, "to_domain_event", no_events)
        assert expected == changes_for(stored, s.mapper)


def test_an_upcast_state_is_read_as_its_upcaster_makes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class with upcasters (class_version 2) is decoded by the mapper only, even
    for a version-1 state that holds every field: its upcaster may change values."""
    clock = FakeClock()
    with opened(backend_url("sqlite", tmp_path), clock=clock) as service:
        service.create("m1", sender="a", user_id="b")
        state = {**V1_FAILURE, "retry_after": 1.0, "timestamp": clock(), "at": clock()}
        write(service, "m1", 2, state)
        monkeypatch.setattr(Message.SendFailed, "class_version", 2, raising=False)

        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["code"] += 1000  # version 1 stored codes differently

        monkeypatch.setattr(
            Message.SendFailed,
            "upcast_v1_v2",
            staticmethod(upcast_v1_v2),
            raising=False,
        )
        [_, failed] = changes_for(notifications(service), service.mapper)
        assert 7012 == failed.columns["last_error_code"]


def test_dead_letters_page_in_msg_id_order_in_an_encrypted_store(
    tmp_path: Path,
) -> None:
    """Encrypted keys are sorted after decryption: pages of two visit every dead
    message once, in msg_id order."""
    with opened(backend_url("sqlite", tmp_path), cipher_key=KEY) as service:
        for i in (3, 0, 4, 1, 2):
            service.create(f"m{i}", sender="a", user_id="b")
            service.record_failure(f"m{i}", code=6017)  # permanent: dead at once
        pages, after = [], None
        for _ in range(4):  # bounded: a wrong `after` could page forever
            page = service.dead_letters(limit=2, after=after)
            pages.append([d.msg_id for d in page])
            after = page[-1].msg_id if page else after
        assert [["m0", "m1"], ["m2", "m3"], ["m4"], []] == pages
